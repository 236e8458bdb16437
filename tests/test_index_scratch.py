"""verify's scratch index (the log replayed to compare with ARCHIVE/index.db) lives in a temporary
file SQLite deletes on close, not in RAM: at 100,000 entries the in-memory one was the index
worker's 149 MiB (docs/PERFORMANCE.md, "Verify"). A sealed archive's stays in memory: its rows are
plaintext the archive keeps only sealed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Writes 64 MiB of rows into a scratch index in a fresh process and prints how much its peak
# resident memory grew.
GROWTH = textwrap.dedent("""
    import sys
    from store.index import IndexStore

    def peak():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))

    scratch = IndexStore(None).scratch()
    conn = scratch.conn
    before = peak()
    filler = "x" * 1024
    with scratch.writing():
        for n in range(64 * 1024):
            conn.execute("INSERT INTO items (sha256, first_seq, warnings) VALUES (?, ?, ?)",
                         (f"{n:064x}", n, filler))
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 64 * 1024
    print((peak() - before) // 1024)
""")


def test_verify_scratch_index_keeps_its_rows_on_disk_not_in_memory() -> None:
    done = subprocess.run([sys.executable, "-c", GROWTH], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    grown_mib = int(done.stdout.strip())
    assert grown_mib < 24, f"the scratch index grew resident memory by {grown_mib} MiB for 64 MiB"


def test_a_scratch_index_is_gone_once_closed(tmp_path: Path) -> None:
    """Nothing of it is left in the temporary folder (SQLite's own unnamed file)."""
    script = GROWTH.replace("print((peak() - before) // 1024)", "scratch.close()")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True,
                   env={"PATH": "/usr/bin:/bin", "SQLITE_TMPDIR": str(tmp_path),
                        "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert list(tmp_path.iterdir()) == []
