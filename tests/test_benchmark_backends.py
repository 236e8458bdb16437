"""benchmarks/backends.py --quick runs end to end, so the figures of docs/BACKENDS.md can always
be taken again: SQLite and the real S3 (radosgw); PostgreSQL is left out here (--no-pg) to keep
this under ~30 s, and the script says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_backends_benchmark_quick_measures_every_figure(s3_services: dict[str, str],
                                                        tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "backends.py"), "--quick", "--no-pg",
         "--samples", str(ROOT / "tests" / "data" / "exiftool"), "--dir", str(tmp_path),
         "--cache", str(tmp_path / "cache")],
        env={**os.environ, **s3_services, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "PostgreSQL skipped: --no-pg" in out
    for figure in ("appends/s", "inclusion proofs at 2,000 entries", "p99",
                   "verify of the record: 2,000 entries", "entries/s",
                   "ingest of one 8 MiB file", "MB/s", "ingest of 10 camera JPEGs", "files/s",
                   "S3 objects, SQLite ledger / default throughput"):
        assert figure in out, figure
    assert "Traceback" not in done.stderr
