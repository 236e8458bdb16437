"""What searching a sealed archive costs (docs/SEARCH.md "Sealed archives"): a clear and a sealed
archive of the same N real camera JPEGs (tests/data/media/aleppo-gps.jpg, each variant made
distinct by a JPEG comment segment after SOI, so the worker reads the same EXIF and GPS), both
made and filled through the real command. Then, interleaved A B A B:

- `search --reindex --json --limit 1`: the index rebuilt from the ledger (for the sealed
  archive: every sealed document and field opened, the index sealed whole and written);
- `search --near … --json --limit 1`: a search with nothing new to index (sealed: the index
  opened from its age file into memory).

Each sealed run includes unlocking the custodian's key (scrypt, about 0.25 s) and the content key.
Then the same two in one process (no start-up, no key unlock): the index rebuilt from the ledger
and saved, and opened with nothing new. Prints the median, min and max of each, the ratios, and
the load average.

    python benchmarks/sealed_search.py [--items 1000] [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TREE = Path(__file__).resolve().parents[1]
JPEG = TREE / "tests" / "data" / "media" / "aleppo-gps.jpg"
PASSPHRASE = "benchmark passphrase, long"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"


def run(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "custody", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def variants(folder: Path, count: int) -> None:
    data = JPEG.read_bytes()
    folder.mkdir()
    for n in range(count):
        comment = f"variant {n}".encode()
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        (folder / f"photo-{n:05d}.jpg").write_bytes(data[:2] + segment + data[2:])


def in_process(path: Path, key: Path, rebuild: bool) -> float:
    """The index rebuilt (or opened with nothing new) and closed, in this process."""
    from custody.ops.archive import Archive
    from custody.ops.keyfiles import load_key
    from custody.search.indexer import open_index, refresh

    archive = Archive.open(path)
    if archive.sealer is not None:
        archive.unlock(load_key(key, PASSPHRASE))
    start = time.perf_counter()
    store = open_index(archive)
    refresh(archive, store, rebuild=rebuild)
    store.close()
    took = time.perf_counter() - start
    archive.ledger.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="sealed-search-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "run").mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(TREE), "CUSTODY_KEY": str(work / "key"),
           "CUSTODY_PASSPHRASE": PASSPHRASE, "CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE,
           "XDG_RUNTIME_DIR": str(work / "run"), "HOME": str(work)}
    if not (work / "key").exists():
        run(env, "key", "new", "--name", "Bench Admin", "-o", str(work / "key"))
    photos = work / "photos"
    if not photos.exists():
        variants(photos, args.items)
    archives = {"clear": work / "clear", "sealed": work / "sealed"}
    for label, path in archives.items():
        if not path.exists():
            run(env, "--archive", str(path), "init", "--name", "Bench",
                *(["--encrypt"] if label == "sealed" else []))
            took = run(env, "--archive", str(path), "ingest", str(photos))
            print(f"{label}: ingested {args.items} JPEGs in {took:.1f} s")
    searches = {
        "reindex": ("search", "--reindex", "--json", "--limit", "1"),
        "search": ("search", "--near", "36.2,37.13", "--within-km", "5", "--json", "--limit",
                   "1"),
    }
    times: dict[tuple[str, str], list[float]] = {}
    for path in archives.values():  # one unmeasured run each: the index exists
        run(env, "--archive", str(path), *searches["search"])
    for _ in range(args.repeat):
        for what, argv in searches.items():
            for label, path in archives.items():
                times.setdefault((what, label), []).append(
                    run(env, "--archive", str(path), *argv))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{args.items} items, {args.repeat} interleaved runs each")
    for what in searches:
        medians = {}
        for label in archives:
            t = times[(what, label)]
            medians[label] = statistics.median(t)
            print(f"{what:8} {label:7} median {medians[label]:.2f} s "
                  f"(min {min(t):.2f}, max {max(t):.2f})")
        print(f"{what:8} sealed/clear {medians['sealed'] / medians['clear']:.2f}")
    sys.path.insert(0, str(TREE))
    for what, rebuild in (("rebuild in process", True), ("open in process", False)):
        inner: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for label, path in archives.items():
                inner.setdefault(label, []).append(in_process(path, work / "key", rebuild))
        for label, t in inner.items():
            print(f"{what:18} {label:7} median {statistics.median(t) * 1000:.0f} ms "
                  f"(min {min(t) * 1000:.0f}, max {max(t) * 1000:.0f})")
        print(f"{what:18} sealed/clear "
              f"{statistics.median(inner['sealed']) / statistics.median(inner['clear']):.2f}")
    sealed_index = archives["sealed"] / "index.age"
    print(f"index.age: {sealed_index.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
