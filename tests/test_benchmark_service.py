"""benchmarks/service.py --quick runs end to end, so the figures of docs/SCALING.md ("Load and
faults, measured") can always be taken again: custody serve + push against WsgiDAV + curl PUTs,
the item request's latency idle and under load, and the fault run's checks (figures, not values)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_service_benchmark_quick_prints_every_figure_and_ratio(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "service.py"), "--quick", "--dir",
         str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "upload of 9 files" in out and "by 3 concurrent clients" in out
    for name in ("custody serve + push", "static PUT (WsgiDAV + curl)"):
        for unit in ("uploads/s", "MB/s"):
            assert re.search(rf"{re.escape(name)} +[\d.]+ {unit} \([\d.]+\.\.[\d.]+\)  "
                             rf"x[\d.]+ of the static server", out), (name, unit)
    for label in ("p50", "p99"):
        assert re.search(rf"{label}: idle +[\d.]+ ms +under load +[\d.]+ ms +x[\d.]+ of idle",
                         out), label
    assert "search (GET /api/v1/search?mime=image/jpeg) under load: p50" in out
    assert "fault run: 3 clients, 9 files; the server SIGKILLed" in out
    for check in ("every rerun exited 0 and said new or present", "each file's ingest "
                  "recorded once", "items = the files + the seed items",
                  "objects = the files + the seed items", "custody verify exit 0"):
        assert f"{check}: yes" in out, check
    assert "Traceback" not in done.stderr
