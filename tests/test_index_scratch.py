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


def test_a_scratch_index_is_a_temporary_file_gone_once_closed(tmp_path: Path) -> None:
    """While open it is a file in the temporary folder (SQLite unlinks it at once; the process
    still holds it); once closed nothing of it is left."""
    script = GROWTH.replace("print((peak() - before) // 1024)", textwrap.dedent("""
        import os
        def held():
            targets = []
            for n in os.listdir("/proc/self/fd"):
                try:
                    targets.append(os.readlink(f"/proc/self/fd/{n}"))
                except FileNotFoundError:  # the listing's own descriptor, closed since
                    pass
            return [t for t in targets if t.startswith(os.environ["SQLITE_TMPDIR"])]
        print(len(held()))
        scratch.close()
        print(len(held()))
    """))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True,
                          capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "SQLITE_TMPDIR": str(tmp_path),
                               "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    open_count, closed_count = map(int, done.stdout.split())
    assert open_count >= 1, "the scratch index held no file in the temporary folder"
    assert closed_count == 0
    assert list(tmp_path.iterdir()) == []


def test_a_full_temporary_folder_is_one_line_about_the_scratch_index(tmp_path: Path,
                                                                     mount_tmpfs) -> None:
    """verify's index check on a machine whose temporary folder fills: the scratch index says so
    as an IndexStoreError (verify reports it as unreadable, in one line), not a raw SQLite error
    that would end verify with an internal error."""
    full = mount_tmpfs(tmp_path / "tmp", "64k")
    script = textwrap.dedent("""
        from store.index import IndexStore
        from store.index_port import IndexStoreError
        scratch = IndexStore(None).scratch()
        try:
            with scratch.writing():
                for n in range(64 * 1024):
                    scratch.conn.execute(
                        "INSERT INTO items (sha256, first_seq, warnings) VALUES (?, ?, ?)",
                        (f"{n:064x}", n, "x" * 1024))
        except IndexStoreError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "SQLITE_TMPDIR": str(full),
                               "TMPDIR": str(full), "PYTHONPATH": str(ROOT)})
    assert done.stdout.startswith("the scratch copy of the search index (a temporary file) "
                                  "failed: "), done.stdout + done.stderr
    assert "full" in done.stdout
