"""Ingest throughput against `cp` on the same data in the same run, and memory for a large file.

Prints, for one large file (default 1 GiB): best-of-N wall time of `cp`, of `cp` + `sha256sum`, and
of `custody ingest` (a new archive each time), their ratios, and custody's peak RSS; then files per
second for 1,000 small JPEGs with EXIF (each made unique) against `cp -r`.

    python benchmarks/ingest.py [--size-mib 1024] [--small 1000] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_JPEG = ROOT / "tests" / "data" / "media" / "aleppo-gps.jpg"
PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one run of the command."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss_kib(cmd: list[str], env: dict[str, str]) -> int:
    """Peak RSS of the command's own process, by GNU time when present, else getrusage."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if gnu_time:
        out = subprocess.run([gnu_time, "-f", "%M", *cmd], env=env, check=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return int(out.stderr.strip().splitlines()[-1])
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def custody_env(work: Path, tag: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CUSTODY_ARCHIVE=str(work / f"archive-{tag}"), CUSTODY_KEY=str(work / "bench.key"),
               CUSTODY_PASSPHRASE=PASSPHRASE, CUSTODY_ARCHIVE_PASSPHRASE=ARCHIVE_PASSPHRASE)
    return env


def custody(*args: str) -> list[str]:
    return [sys.executable, "-m", "custody", *args]


def new_archive(work: Path, tag: str) -> dict[str, str]:
    env = custody_env(work, tag)
    shutil.rmtree(env["CUSTODY_ARCHIVE"], ignore_errors=True)
    subprocess.run(custody("init", "--name", "bench"), env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return env


def best(times: list[float]) -> float:
    return min(times)


def large_file(work: Path, size_mib: int, repeat: int) -> None:
    big = work / "large.bin"
    with open(big, "wb") as out:
        block = os.urandom(1 << 20)
        for i in range(size_mib):
            out.write(block[:-8] + i.to_bytes(8, "big"))
    subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    cp, cp_sha, ing = [], [], []
    rss = 0
    for r in range(repeat):
        dst = work / "copy.bin"
        dst.unlink(missing_ok=True)
        cp.append(timed(["cp", str(big), str(dst)]))
        dst.unlink()
        t0 = time.perf_counter()
        subprocess.run(["cp", str(big), str(dst)], check=True)
        subprocess.run(["sha256sum", str(dst)], check=True, stdout=subprocess.DEVNULL)
        cp_sha.append(time.perf_counter() - t0)
        dst.unlink()
        env = new_archive(work, f"large{r}")
        ing.append(timed(custody("ingest", str(big)), env))
        shutil.rmtree(env["CUSTODY_ARCHIVE"])
    env = new_archive(work, "large-rss")
    rss = peak_rss_kib(custody("ingest", str(big)), env)
    shutil.rmtree(env["CUSTODY_ARCHIVE"])
    mib_s = size_mib / best(ing)
    print(f"large file: {size_mib} MiB, best of {repeat}")
    print(f"  cp                   {best(cp):7.2f} s   (median {statistics.median(cp):.2f})")
    median = statistics.median(cp_sha)
    print(f"  cp + sha256sum       {best(cp_sha):7.2f} s   (median {median:.2f})")
    print(f"  custody ingest       {best(ing):7.2f} s   (median {statistics.median(ing):.2f}),"
          f" {mib_s:.0f} MiB/s, 4 digests + fsync + metadata + signed entry")
    print(f"  ratio ingest / cp            {best(ing) / best(cp):5.2f}x   (target <= 1.2x)")
    print(f"  ratio ingest / cp+sha256sum  {best(ing) / best(cp_sha):5.2f}x")
    print(f"  custody peak RSS     {rss / 1024:7.1f} MiB   (target < 100 MiB)")
    big.unlink()


def small_files(work: Path, count: int, repeat: int) -> None:
    folder = work / "small"
    folder.mkdir()
    jpeg = SAMPLE_JPEG.read_bytes()
    for i in range(count):  # bytes after EOI keep the EXIF intact and make each file unique
        (folder / f"IMG_{i:05d}.jpg").write_bytes(jpeg + f"unique-{i}".encode())
    cp, ing = [], []
    for r in range(repeat):
        dst = work / "small-copy"
        cp.append(timed(["cp", "-r", str(folder), str(dst)]))
        shutil.rmtree(dst)
        env = new_archive(work, f"small{r}")
        ing.append(timed(custody("ingest", str(folder)), env))
        shutil.rmtree(env["CUSTODY_ARCHIVE"])
    print(f"small files: {count} JPEGs with EXIF+GPS ({len(jpeg)} bytes each), best of {repeat}")
    print(f"  cp -r                {best(cp):7.2f} s   {count / best(cp):8.0f} files/s")
    print(f"  custody ingest       {best(ing):7.2f} s   {count / best(ing):8.0f} files/s"
          "   (target >= 300 files/s; includes ~0.5 s of interpreter start-up)")
    shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines())
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (same disk as /tmp)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="custody-bench-", dir=args.dir))
    try:
        env = custody_env(work, "none")
        subprocess.run(custody("key", "new", "--name", "Bench"), env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"machine: {os.cpu_count()} cores; work folder {work}")
        if args.size_mib:
            large_file(work, args.size_mib, args.repeat)
        if args.small:
            small_files(work, args.small, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
