"""Ingest throughput of one large file into an archive whose objects are in S3 (the radosgw of
scripts/services.sh) against the same into the embedded default (the archive folder), with `cp`
of the same file as the floor, interleaved in one run (benchmarks/floor.py).

    eval "$(bash scripts/services.sh start)"
    python benchmarks/backends.py [--size-mib 256] [--rounds 3] [--dir DIR]

Each run ingests into a new archive (a new bucket for S3: objects under Object Lock cannot be
deleted, so the memstore OSD's 4 GiB bounds size x rounds). Issue 15's target: S3 at least half
the folder's MB/s. The S3 figure includes the local spool copy each put makes (docs/BACKENDS.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from floor import Figures, interleave, report, timed_command

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    endpoint = os.environ.get("CUSTODY_S3_ENDPOINT")
    if not endpoint:
        sys.exit("backends: no $CUSTODY_S3_ENDPOINT: eval \"$(bash scripts/services.sh start)\"")
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(
        request_checksum_calculation="when_required", s3={"addressing_style": "path"}))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="custody-backends-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CUSTODY_KEY": str(tmp / "bench.key"),
               "CUSTODY_PASSPHRASE": "benchmark passphrase",
               "CUSTODY_ARCHIVE_PASSPHRASE": "benchmark archive passphrase"}
        custody = [sys.executable, "-m", "custody"]
        subprocess.run([*custody, "key", "new", "--name", "Bench", "-o", str(tmp / "bench.key")],
                       env=env, check=True, capture_output=True)
        big = tmp / "large.bin"
        with open(big, "wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1 << 20))
        count = iter(range(10**6))

        def fresh(objects: list[str]) -> Path:
            archive = tmp / f"archive-{next(count)}"
            subprocess.run([*custody, "init", str(archive), "--name", "Bench", *objects],
                           env=env, check=True, capture_output=True)
            return archive

        def ingest(objects: list[str]) -> Figures:
            archive = fresh(objects)
            figures = timed_command([*custody, "--archive", str(archive), "ingest", str(big)],
                                    env=env)
            subprocess.run(["rm", "-rf", str(archive)], check=True)
            return figures

        def s3_ingest() -> Figures:
            bucket = f"custody-bench-{uuid.uuid4().hex[:12]}"
            s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            return ingest(["--objects", f"s3://{bucket}/bench", "--retention-days", "1"])

        def copy() -> Figures:
            figures = timed_command(["cp", str(big), str(tmp / "copy.bin")])
            (tmp / "copy.bin").unlink()
            return figures

        runs = interleave({"cp (floor)": copy, "custody ingest, folder": lambda: ingest([]),
                           "custody ingest, S3 (radosgw)": s3_ingest}, args.rounds)
        report(f"ingest of one {args.size_mib} MiB file", runs, "cp (floor)")
        for name, values in runs.items():
            mbs = args.size_mib * 1.048576 / statistics.median(r["seconds"] for r in values)
            print(f"  {name:34} {mbs:8.1f} MB/s (median)")
        folder = statistics.median(r["seconds"] for r in runs["custody ingest, folder"])
        remote = statistics.median(r["seconds"] for r in runs["custody ingest, S3 (radosgw)"])
        print(f"  S3 / folder throughput: {folder / remote:.2f} (issue 15's target: >= 0.50)")


if __name__ == "__main__":
    main()
