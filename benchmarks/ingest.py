"""Ingest against its floor and its peer tool, interleaved on the same data (benchmarks/floor.py).

Two workloads, each run A B C, C B A, ... so that the machine's drift favours no contender:

- one large file (default 1 GiB of random bytes): `custody ingest` into a fresh archive against
  the floor, the four digests in four parallel `openssl dgst` beside `cp` + `sync` of the file;
- many real camera JPEGs (default 1,000, built from the ExifTool sample images, each made unique
  by a COM segment and padded to camera size, ~150 KB): `custody ingest` against the peer tool,
  `exiftool -j -n` over the same files, and the floor of storing them, `cp -r` + `sync`.

Per contender: median wall time (min..max) and the ratio of medians to the floor; custody's peak
RSS of the main process and, separately, of its largest metadata
worker, sampled from /proc while it runs.

    python benchmarks/ingest.py [--size-mib 1024] [--small 1000] [--rounds 5] [--dir DIR]
    python benchmarks/ingest.py --samples ../shared/corpora/exiftool-samples
    python benchmarks/ingest.py --old ../old-tree   # a third contender: another source tree
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from floor import Figures, PeakRss, interleave, paired_ratios, report, timed_command

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "corpora" / "exiftool-samples"
PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"
OLD = "custody ingest (--old tree)"
ENRICHED = "custody ingest --enrich"  # the fast path's deferred ExifTool readings in the same run

WORKER_MARK = "custody.metadata.worker"  # in the metadata worker's command line



def custody_env(work: Path, tree: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
    env.update(CUSTODY_ARCHIVE=str(work / "archive"), CUSTODY_KEY=str(work / "bench.key"),
               CUSTODY_PASSPHRASE=PASSPHRASE, CUSTODY_ARCHIVE_PASSPHRASE=ARCHIVE_PASSPHRASE)
    return env


def custody(*args: str) -> list[str]:
    # -P: the current folder is not put on sys.path, so PYTHONPATH alone says which custody runs
    return [sys.executable, "-P", "-m", "custody", *args]


def fresh_archive(work: Path, tree: Path = ROOT) -> None:
    env = custody_env(work, tree)
    shutil.rmtree(env["CUSTODY_ARCHIVE"], ignore_errors=True)
    subprocess.run(custody("init", "--name", "bench"), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ingest(work: Path, path: Path, tree: Path = ROOT, *flags: str) -> Figures:
    """One `custody ingest PATH` into the fresh archive: time, main and largest-child peak RSS."""
    with PeakRss(b"\0ingest\0", WORKER_MARK.encode()) as peak:
        figures = timed_command(custody("ingest", str(path), *flags), env=custody_env(work, tree))
    figures["tree_rss_mib"] = figures.pop("peak_rss_mib")  # the largest of the whole tree
    figures["main_rss_mib"] = peak.main_kib / 1024
    figures["worker_rss_mib"] = peak.worker_kib / 1024
    return figures


def make_large(work: Path, size_mib: int) -> Path:
    big = work / "large.bin"
    with open(big, "wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(1 << 20))
    subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    return big


def _segments(marker: bytes, data: bytes) -> bytes:
    """`data` as JPEG segments of one marker (each at most 65,533 bytes of payload)."""
    out = bytearray()
    for i in range(0, len(data), 65533):
        part = data[i:i + 65533]
        out += marker + struct.pack(">H", len(part) + 2) + part
    return bytes(out)


def _after_app_segments(jpeg: bytes) -> int:
    """The offset just past SOI and the APPn/COM segments that follow it (EXIF stays first)."""
    at = 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and (0xE0 <= jpeg[at + 1] <= 0xEF
                                                         or jpeg[at + 1] == 0xFE):
        at += 2 + struct.unpack(">H", jpeg[at + 2:at + 4])[0]
    return at


def make_jpegs(work: Path, samples: Path, count: int, pad_kib: int) -> Path:
    """`count` camera JPEGs: the samples' real EXIF and maker notes, each made unique by a COM
    segment and padded to about `pad_kib` KiB by an APP15 segment of random bytes, both placed
    after the file's own APPn segments (its structure stays valid; ExifTool skips APP15)."""
    sources = sorted(p for p in samples.glob("*.jpg") if p.read_bytes()[:2] == b"\xff\xd8")
    if not sources:
        sys.exit(f"ingest: no JPEG samples in {samples}")
    folder = work / "jpegs"
    folder.mkdir()
    for i in range(count):
        jpeg = sources[i % len(sources)].read_bytes()
        at = _after_app_segments(jpeg)
        extra = _segments(b"\xff\xfe", f"custody benchmark {i}".encode())
        extra += _segments(b"\xff\xef", os.urandom(max(0, pad_kib * 1024 - len(jpeg))))
        (folder / f"IMG_{i:05d}.jpg").write_bytes(jpeg[:at] + extra + jpeg[at:])
    subprocess.run(["cat", *map(str, folder.iterdir())], stdout=subprocess.DEVNULL, check=True)
    return folder


def large_file(work: Path, size_mib: int, rounds: int, old: Path | None) -> dict[str, float]:
    big = make_large(work, size_mib)
    copy = work / "copy.bin"
    hashes = " & ".join(f"openssl dgst -{h} {big} >/dev/null" for h in
                        ("sha256", "sha512", "sha1", "md5"))
    floor_cmd = ["sh", "-c", f"{hashes} & cp {big} {copy} && sync {copy}; wait"]

    def before(name: str) -> None:
        copy.unlink(missing_ok=True)
        if name.startswith("custody ingest"):
            fresh_archive(work, old if name == OLD else ROOT)
        subprocess.run(["sync"], check=True)

    contenders = {
        "floor: 4x openssl dgst | cp + sync": lambda: timed_command(floor_cmd),
        "custody ingest": lambda: ingest(work, big),
    }
    if old is not None:
        contenders[OLD] = lambda: ingest(work, big, old)
    runs = interleave(contenders, rounds, before)
    ratios = report(f"ingest of one {size_mib} MiB file", runs,
                    "floor: 4x openssl dgst | cp + sync")
    for name in (n for n in runs if n.startswith("custody ingest")):
        _rss(name, runs[name])
    big.unlink()
    return ratios


def small_files(work: Path, samples: Path, count: int, pad_kib: int,
                rounds: int, old: Path | None) -> dict[str, float]:
    folder = make_jpegs(work, samples, count, pad_kib)
    size = sum(p.stat().st_size for p in folder.iterdir())
    copy = work / "jpegs-copy"

    def before(name: str) -> None:
        shutil.rmtree(copy, ignore_errors=True)
        if name.startswith("custody ingest"):
            fresh_archive(work, old if name == OLD else ROOT)
        subprocess.run(["sync"], check=True)

    contenders = {
        "floor: cp -r + sync": lambda: timed_command(
            ["sh", "-c", f"cp -r {folder} {copy} && sync -f {copy}"]),
        "peer: exiftool -j -n": lambda: timed_command(["exiftool", "-j", "-n", str(folder)]),
        "custody ingest": lambda: ingest(work, folder),
        ENRICHED: lambda: ingest(work, folder, ROOT, "--enrich"),
    }
    if old is not None:
        contenders[OLD] = lambda: ingest(work, folder, old)
    runs = interleave(contenders, rounds, before)
    title = f"ingest of {count} camera JPEGs ({size / 1e6:.0f} MB)"
    ratios = report(title, runs, "peer: exiftool -j -n")
    for name in (n for n in runs if n.startswith("custody ingest")):
        rates = sorted(count / r["seconds"] for r in runs[name])
        print(f"  {name}: {rates[len(rates) // 2]:.0f} files/s ({rates[0]:.0f}..{rates[-1]:.0f})"
              + (", target >= 300" if name == "custody ingest" else ""))
    if old is not None:
        print("  " + paired_ratios(runs, "custody ingest", OLD))
    for name in (n for n in runs if n.startswith("custody ingest")):
        _rss(name, runs[name])
    shutil.rmtree(folder)
    return ratios


def _rss(name: str, runs: list[Figures]) -> None:
    main = max(r["main_rss_mib"] for r in runs)
    child = max(r["worker_rss_mib"] for r in runs)
    tree = max(r["tree_rss_mib"] for r in runs)
    print(f"  {name}: peak RSS of the main process {main:.0f} MiB, of the largest metadata worker"
          f" {child:.0f} MiB, largest of any process (wait4) {tree:.0f} MiB (max over the runs;"
          " target < 100 MB)\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the large file (0: skip)")
    parser.add_argument("--small", type=int, default=1000, help="camera JPEGs (0: skip)")
    parser.add_argument("--pad-kib", type=int, default=148, help="each JPEG's size, about")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder of sample JPEGs")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (same disk as /tmp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the ratios here")
    parser.add_argument("--old", type=Path, default=None, metavar="TREE",
                        help="also run another custody source tree, interleaved (before/after)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="custody-bench-", dir=args.dir))
    try:
        print(f"machine: {os.cpu_count()} cores; work folder {work}")
        subprocess.run(custody("key", "new", "--name", "Bench"), env=custody_env(work),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ratios: dict[str, dict[str, float]] = {}
        if args.size_mib:
            ratios["large"] = large_file(work, args.size_mib, args.rounds, args.old)
        if args.small:
            ratios["small"] = small_files(work, args.samples, args.small, args.pad_kib,
                                          args.rounds, args.old)
        if args.json is not None:
            args.json.write_text(json.dumps(ratios, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
