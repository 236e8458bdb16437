"""Ingest throughput against `cp` on the same data in the same run, and memory for a large file.

Prints, for one large file (default 1 GiB): best-of-N wall time of `cp`, of `cp` + `sha256sum`, and
of `custody ingest` (a new archive each time), their ratios, and custody's peak RSS; then files per
second for 1,000 small JPEGs with EXIF (each made unique) against `cp -r`.

Before and after a change: `--compare OLD_TREE` runs `python -m custody ingest` of OLD_TREE and of
this tree (or `--tree NEW_TREE`) on the same large file and the same small files, interleaved
(benchmarks/compare.py), each time beside a `cp` of the same data, and prints median/min/max per
tree and the ratio new/old. Its defaults are 256 MiB, 300 small files, 5 runs per tree: a few
minutes on 2 cores.

    python benchmarks/ingest.py [--size-mib 1024] [--small 1000] [--repeat 3] [--dir DIR]
    python benchmarks/ingest.py --compare ../old-tree [--size-mib 256] [--small 300] [--repeat 5]
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

from compare import Metric, check_tree, interleave, summarise, tree_env

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_JPEG = ROOT / "tests" / "data" / "media" / "aleppo-gps.jpg"
PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"


METRICS = [
    Metric("large_s", "large file ingest", "s", False),
    Metric("large_cp", "large ingest / cp", "x", False),
    Metric("small_s", "small files ingest", "s", False),
    Metric("small_rate", "small files", "files/s", True),
    Metric("small_cp", "small ingest / cp -r", "x", False),
]


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


def custody_env(work: Path, tag: str, tree: Path = ROOT, name: str = "bench") -> dict[str, str]:
    """The environment of `python -m custody` from `tree`, with archive `tag` and key `name`."""
    env = tree_env(tree)
    env.update(CUSTODY_ARCHIVE=str(work / f"archive-{tag}"), CUSTODY_KEY=str(work / f"{name}.key"),
               CUSTODY_PASSPHRASE=PASSPHRASE, CUSTODY_ARCHIVE_PASSPHRASE=ARCHIVE_PASSPHRASE)
    return env


def custody(*args: str) -> list[str]:
    # -P: the current folder is not put on sys.path, so PYTHONPATH alone says which custody runs
    return [sys.executable, "-P", "-m", "custody", *args]


def new_key(work: Path, tree: Path = ROOT, name: str = "bench") -> None:
    env = custody_env(work, "none", tree, name)
    subprocess.run(custody("key", "new", "--name", "Bench"), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def new_archive(work: Path, tag: str, tree: Path = ROOT, name: str = "bench") -> dict[str, str]:
    env = custody_env(work, tag, tree, name)
    shutil.rmtree(env["CUSTODY_ARCHIVE"], ignore_errors=True)
    subprocess.run(custody("init", "--name", "bench"), env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return env


def best(times: list[float]) -> float:
    return min(times)


def make_large(work: Path, size_mib: int) -> Path:
    big = work / "large.bin"
    with open(big, "wb") as out:
        block = os.urandom(1 << 20)
        for i in range(size_mib):
            out.write(block[:-8] + i.to_bytes(8, "big"))
    subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    return big


def make_small(work: Path, count: int) -> Path:
    folder = work / "small"
    folder.mkdir()
    jpeg = SAMPLE_JPEG.read_bytes()
    for i in range(count):  # bytes after EOI keep the EXIF intact and make each file unique
        (folder / f"IMG_{i:05d}.jpg").write_bytes(jpeg + f"unique-{i}".encode())
    return folder


def large_file(work: Path, size_mib: int, repeat: int) -> None:
    big = make_large(work, size_mib)
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
    folder = make_small(work, count)
    jpeg = SAMPLE_JPEG.read_bytes()
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


def one_run(work: Path, name: str, tree: Path, big: Path | None, folder: Path | None,
            count: int) -> dict[str, float]:
    """One tree's ingest of the large file and of the small files, each beside a cp of them."""
    result: dict[str, float] = {}
    if big is not None:
        dst = work / "copy.bin"
        cp = timed(["cp", str(big), str(dst)])
        dst.unlink()
        env = new_archive(work, f"large-{name}", tree, name)
        result["large_s"] = timed(custody("ingest", str(big)), env)
        result["large_cp"] = result["large_s"] / cp
        shutil.rmtree(env["CUSTODY_ARCHIVE"])
    if folder is not None:
        dst = work / "small-copy"
        cp = timed(["cp", "-r", str(folder), str(dst)])
        shutil.rmtree(dst)
        env = new_archive(work, f"small-{name}", tree, name)
        result["small_s"] = timed(custody("ingest", str(folder)), env)
        result["small_rate"] = count / result["small_s"]
        result["small_cp"] = result["small_s"] / cp
        shutil.rmtree(env["CUSTODY_ARCHIVE"])
    return result


def compare(work: Path, old: Path, new: Path, size_mib: int, count: int, repeat: int) -> None:
    trees = {"old": old.resolve(), "new": new.resolve()}
    for name, tree in trees.items():
        print(f"{name}: {tree}  {check_tree(tree)}")
        new_key(work, tree, name)  # each tree makes and reads its own key file
    big = make_large(work, size_mib) if size_mib else None
    folder = make_small(work, count) if count else None
    runs = interleave(trees, repeat,
                      lambda name, tree: one_run(work, name, tree, big, folder, count))
    shown = [m for m in METRICS if m.key in runs["new"][0]]
    summarise(f"ingest of {size_mib} MiB and of {count} small JPEGs", runs, shown)
    if big is not None:
        for name, tree in trees.items():
            env = new_archive(work, f"rss-{name}", tree, name)
            rss = peak_rss_kib(custody("ingest", str(big)), env)
            shutil.rmtree(env["CUSTODY_ARCHIVE"])
            print(f"  {name}: custody peak RSS {rss / 1024:7.1f} MiB (one run; target < 100 MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=None,
                        help="the large file (default 1024; 256 to compare)")
    parser.add_argument("--small", type=int, default=None,
                        help="small files (default 1000; 300 to compare)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs (default 3; 5 per tree to compare)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (same disk as /tmp)")
    parser.add_argument("--compare", type=Path, metavar="OLD_TREE",
                        help="also measure this source tree, interleaved, and print new/old")
    parser.add_argument("--tree", type=Path, default=ROOT, metavar="NEW_TREE",
                        help="the tree compared with OLD_TREE (default: this one)")
    args = parser.parse_args()
    comparing = args.compare is not None
    size_mib = args.size_mib if args.size_mib is not None else (256 if comparing else 1024)
    count = args.small if args.small is not None else (300 if comparing else 1000)
    repeat = args.repeat if args.repeat is not None else (5 if comparing else 3)
    work = Path(tempfile.mkdtemp(prefix="custody-bench-", dir=args.dir))
    try:
        print(f"machine: {os.cpu_count()} cores; work folder {work}")
        if comparing:
            compare(work, args.compare, args.tree, size_mib, count, repeat)
            return
        new_key(work)
        if size_mib:
            large_file(work, size_mib, repeat)
        if count:
            small_files(work, count, repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
