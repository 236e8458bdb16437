"""Evidence packages on a realistic payload: `custody export` against its floor, `custody
verify-package` against `bagit.py --validate`, interleaved (A B, B A, ...) on the same files.

Makes SIZE of media (default 1 GiB: four large random files, as videos are, plus --jpegs real
camera JPEGs: those of ../shared/corpora/exiftool-samples and variants of them, each the same JPEG
with a comment segment naming its number), ingests it under a case through `custody ingest`, then
runs each pair interleaved and prints the median (min..max), the ratio of medians and the
round-by-round ratio. The floor of an export is `cp -r` of the objects it copies overlapped with
one SHA-256 of them (`openssl dgst -sha256`, SHA-NI): the bytes must be read, hashed once (export
proves each copy against its SHA-256) and written.
Targets: export <= 1.3x its floor; verify-package <= 1.25x bagit.py --validate. Every output is
removed, and the disk synced, before each run, so none pays for another's write-back.

    python benchmarks/package.py [--size-mib 1024] [--jpegs 1000] [--repeat 5] [--dir DIR]
                                 [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from floor import interleave, paired_ratios, report, timed_command

PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"
CASE = "BENCH-1"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "exiftool-samples"


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_media(src: Path, size: int, jpegs: int) -> tuple[int, int]:
    """`jpegs` real camera JPEGs (the corpus's, then variants of them: a COM segment after SOI
    naming the variant's number, as benchmarks/realarchive.py makes them), the rest of `size`
    in four large random files."""
    src.mkdir(parents=True)
    bases = [p.read_bytes() for p in sorted(SAMPLES.glob("*.jpg"))]
    if not bases:
        raise SystemExit(f"no camera JPEGs in {SAMPLES}")
    made = 0
    for i in range(jpegs):
        content = bases[i % len(bases)]
        if i >= len(bases):
            comment = f"custody benchmark variant {i}".encode()
            content = (content[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big")
                       + comment + content[2:])
        (src / f"IMG_{i:05d}.JPG").write_bytes(content)
        made += len(content)
    rest = size - made
    for i in range(4):
        with open(src / f"VID_{i:04d}.MP4", "wb") as f:
            left = rest // 4
            while left > 0:
                chunk = os.urandom(min(left, 16 << 20))
                f.write(chunk)
                left -= len(chunk)
    return jpegs, 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--jpegs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="work folder [a temp folder]")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--against", type=Path, default=None,
                    help="another source tree whose export runs interleaved too (before/after)")
    ap.add_argument("--no-verify-package", action="store_true",
                    help="time the export only")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="custody-bench-package-", dir=args.dir))
    env = dict(os.environ, CUSTODY_ARCHIVE=str(work / "archive"),
               CUSTODY_KEY=str(work / "bench.key"), CUSTODY_PASSPHRASE=PASSPHRASE,
               CUSTODY_ARCHIVE_PASSPHRASE=ARCHIVE_PASSPHRASE)
    custody = [sys.executable, "-P", "-m", "custody"]
    try:
        size = args.size_mib << 20
        jpegs, videos = make_media(work / "src", size, args.jpegs)
        total = sum(p.stat().st_size for p in (work / "src").iterdir())
        run([*custody, "key", "new", "--name", "Bench Investigator"], env)
        run([*custody, "init", "--name", "Benchmark archive"], env)
        start = time.perf_counter()
        run([*custody, "ingest", str(work / "src"), "--case", CASE], env)
        ingest = time.perf_counter() - start

        bag, copy, objects = work / "bag", work / "copy", work / "archive" / "objects" / "sha256"

        def clear(_name: str) -> None:
            for p in (bag, copy):
                shutil.rmtree(p, ignore_errors=True)
            os.sync()

        floor_cmd = (f"find '{objects}' -type f -exec openssl dgst -sha256 {{}} + >/dev/null & "
                     f"cp -r '{objects}' '{copy}'; wait")
        export_floor = "floor: cp -r || one SHA-256"
        export_cmd = [*custody, "export", "--case", CASE, "--purpose", "benchmark", "-o", str(bag)]
        contenders = {
            export_floor: lambda: timed_command(["sh", "-c", floor_cmd]),
            "custody export (folder bag)": lambda: timed_command(
                export_cmd, dict(env, PYTHONPATH=str(Path(__file__).resolve().parents[1]))),
        }
        if args.against:
            contenders[f"export of {args.against}"] = lambda: timed_command(
                export_cmd, dict(env, PYTHONPATH=str(args.against.resolve())))
        runs = interleave(contenders, args.repeat, before_each=clear)
        mib = total / (1 << 20)
        print(f"payload: {mib:.0f} MiB in {jpegs} JPEGs and {videos} large files; "
              f"{os.cpu_count()} cores; (setup: custody ingest took {ingest:.2f} s)")
        report("export", runs, floor=export_floor)
        print(paired_ratios(runs, "custody export (folder bag)", export_floor))
        if args.against:
            print(paired_ratios(runs, f"export of {args.against}", export_floor))
        if args.no_verify_package:
            return
        clear("")
        run([*custody, "export", "--case", CASE, "--purpose", "benchmark", "-o", str(bag)], env)
        runs = interleave({
            "bagit.py --validate": lambda: timed_command(
                [sys.executable, "-m", "bagit", "--validate", "--quiet", str(bag)]),
            "custody verify-package": lambda: timed_command(
                [*custody, "verify-package", str(bag)], env),
        }, args.repeat)
        report("verify-package", runs, floor="bagit.py --validate")
        print(paired_ratios(runs, "custody verify-package", "bagit.py --validate"), flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
