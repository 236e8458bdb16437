"""Ledger benchmark: signed appends, Merkle proofs and full verify at 10^4, 10^5, 10^6 entries.

For each size it builds a fresh archive whose entries are ingest-sized (about 950 bytes of canonical
JSON, signed by an enrolled custodian), then prints: append rate committed in batches of 1,000 and
one entry per transaction; mean inclusion and consistency proof time (generation from the stored
tree nodes plus verification, 1,000 random proofs each); and the time of a RECORD-ONLY verify
(every entry parsed, chained, signature-checked, the tree rebuilt and compared with the stored
nodes and the checkpoint: what `verify --ledger-only` checks; its entries name no objects, so it
is not the full verify: that is `--verify N`). Targets: proofs < 1 ms at 10^6; record-only
verify of 10^6 < 60 s on 2 cores; batched appends >= 5,000/s.

`--verify N` times the FULL `custody verify --json` (entries, signatures, tree, every object's
fixity, every metadata document, the search index brought up to date first) through the command
line, on an archive of N real entries with their objects and metadata documents
(benchmarks/realarchive.py: real camera JPEGs ingested, then variants of them; built once and
cached in --dir), interleaved with its floor (benchmarks/verify_floor.py: the Ed25519 verifies and
the objects' SHA-256 over every core); it reports the median (min..max), the ratio of medians and
round by round, the load average, and the peak RSS of verify's process and of its largest worker.
Target: <= 1.5x the floor, peak RSS < 100 MB.

Before and after a change: `--compare OLD_TREE` runs the same measurement on OLD_TREE's custody and
on this tree's (or `--tree NEW_TREE`), each run a subprocess with PYTHONPATH=<tree>, interleaved
(benchmarks/compare.py), and prints median/min/max per tree and the ratio new/old. Its default is
10^4 entries, 5 runs per tree: about 2 minutes on 2 cores.

    python benchmarks/ledger.py [--sizes 10000,100000,1000000] [--dir DIR]
    python benchmarks/ledger.py --compare ../old-tree [--sizes 10000] [--repeat 5]
    python benchmarks/ledger.py --verify 100000 [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from compare import Metric, check_tree, interleave, run_child, summarise

BATCH = 1000
PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"


METRICS = [
    Metric("batched", "append batched", "/s", True),
    Metric("single", "one per commit", "/s", True),
    Metric("inclusion_ms", "inclusion proof", "ms", False),
    Metric("consistency_ms", "consistency proof", "ms", False),
    Metric("verify_s", "record-only verify", "s", False),
]


def module(*names: str) -> ModuleType:
    """The first of `names` this tree has: the layered layout (custody.core.merkle) or the flat
    one before it (custody.merkle). Benchmarks compare trees across that change."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise  # a missing dependency, not a missing layout
    raise ModuleNotFoundError(f"none of {', '.join(names)}")


class Custody:
    """The functions measured, imported from whichever layout the tree on sys.path has."""

    def __init__(self) -> None:
        self.merkle: Any = module("custody.core.merkle", "custody.merkle")
        self.checkpoints: Any = module("custody.ops.checkpoints", "custody.checkpoints")
        archive = module("custody.ops.archive", "custody.archive")
        self.Archive: Any = archive.Archive
        self.Draft: Any = archive.Draft
        self.write_new_key: Any = module("custody.ops.keyfiles", "custody.keyfiles").write_new_key
        self.audit: Any = module("custody.ops.verify", "custody.verify").audit


def draft(c: Custody, i: int) -> Any:
    digest = f"{i:064x}"
    return c.Draft(
        action="ingest",  # real ingest entries; their objects are not made (see `objects=False`)
        item=digest,
        details={
            "digests": {"md5": digest[:32], "sha1": digest[:40], "sha256": digest,
                        "sha512": digest * 2},
            "size": 1_000_000 + i,
            "source": {"name": f"IMG_{i:06d}.JPG", "path": f"/media/card/DCIM/IMG_{i:06d}.JPG",
                       "mtime": "2016-10-03T11:22:05.000000Z"},
            "case": "BENCH-2016", "note": None, "batch": "b" * 36, "mime": "image/jpeg",
            "metadata_sha256": digest,
        },
    )


def measure(size: int, work: Path) -> dict[str, float]:
    """Build an archive of `size` entries in `work` and time appends, proofs and verify."""
    c = Custody()
    merkle = c.merkle
    root = work / f"archive-{size}"
    key = c.write_new_key(work / f"key-{size}", "Bench Custodian", PASSPHRASE)
    archive = c.Archive.create(root, "bench", key, ARCHIVE_PASSPHRASE)
    start = time.perf_counter()
    done = archive.ledger.size()
    while done < size:
        n = min(BATCH, size - done)
        archive.append(key, [draft(c, done + j) for j in range(n)], check_signer=(done == 1))
        done += n
    batched = (size - 1) / (time.perf_counter() - start)

    singles = 300
    start = time.perf_counter()
    for j in range(singles):
        archive.append(key, [draft(c, size + j)], check_signer=False)
    single = singles / (time.perf_counter() - start)
    total = archive.ledger.size()

    cp = c.checkpoints.issue(archive, archive.load_archive_key(ARCHIVE_PASSPHRASE)).checkpoint
    rng = random.Random(size)
    get = archive.ledger.get_node
    leaves = {i: archive.ledger.row(i).leaf_hash for i in rng.sample(range(total), 1000)}
    start = time.perf_counter()
    for i, leaf in leaves.items():
        merkle.verify_inclusion(leaf, i, total, merkle.inclusion_proof(i, total, get),
                                cp.root_hash)
    inclusion_ms = (time.perf_counter() - start) / len(leaves) * 1000
    olds = [rng.randrange(1, total) for _ in range(1000)]
    old_roots = {m: merkle.root_hash(m, get) for m in olds}
    start = time.perf_counter()
    for m in olds:
        merkle.verify_consistency(m, total, merkle.consistency_proof(m, total, get),
                                  old_roots[m], cp.root_hash)
    consistency_ms = (time.perf_counter() - start) / len(olds) * 1000

    start = time.perf_counter()
    report = c.audit(archive, objects=False)  # the record: entries, signatures, tree, checkpoint
    verify_s = time.perf_counter() - start
    assert report.ok, report.problems[:3]
    db_mib = (root / "ledger.db").stat().st_size / (1 << 20)
    archive.ledger.close()
    shutil.rmtree(root)
    return {"size": size, "total": total, "batched": batched, "single": single,
            "inclusion_ms": inclusion_ms, "consistency_ms": consistency_ms, "verify_s": verify_s,
            "db_mib": db_mib}


def show(r: dict[str, float]) -> None:
    print(f"{r['size']:>9.0f} entries | append batched {r['batched']:8.0f}/s"
          f" | one per commit {r['single']:6.0f}/s"
          f" | inclusion {r['inclusion_ms']:6.3f} ms | consistency {r['consistency_ms']:6.3f} ms"
          f" | record-only verify {r['verify_s']:7.1f} s ({r['total'] / r['verify_s']:7.0f}/s)"
          f" | db {r['db_mib']:6.0f} MiB", flush=True)


def compare(old: Path, new: Path, sizes: list[int], repeat: int, base: Path | None) -> None:
    trees = {"old": old.resolve(), "new": new.resolve()}
    for name, tree in trees.items():
        print(f"{name}: {tree}  {check_tree(tree)}")
    for size in sizes:
        def one(name: str, tree: Path, size: int = size) -> dict[str, float]:
            work = Path(tempfile.mkdtemp(prefix=f"custody-ledger-{name}-", dir=base))
            try:
                return run_child(tree, [__file__, "--one", str(size), "--dir", str(work)])
            finally:
                shutil.rmtree(work, ignore_errors=True)

        summarise(f"{size} entries", interleave(trees, repeat, one), METRICS)


def full_verify(size: int, repeat: int, work: Path | None, against: Path | None = None) -> None:
    """`custody verify --json` of a real archive against its floor, interleaved (A B, B A, ...)
    through the command line; median (min..max), the ratio round by round, and peak RSS of the
    verifying process and of its largest worker. `against`: another source tree's custody too
    (the same command, PYTHONPATH=against), in the same rounds."""
    import realarchive
    from floor import PeakRss, paired_ratios, report, timed_command
    from floor import interleave as alternate

    archive = realarchive.build(size, work)
    env = realarchive.environment(archive.parent, archive)
    here = Path(__file__).resolve().parent
    # A used archive's search index is current (every search brings it up to date), and verify
    # checks every row of it against a replay of the log: bring it up to date, as a search would.
    # Another tree gets its own copy of the archive and index (realarchive.linked_copy).
    envs = {None: env}
    if against is not None:
        copy = realarchive.linked_copy(archive, 1)
        envs[against] = dict(realarchive.environment(archive.parent, copy),
                             PYTHONPATH=str(against.resolve()))
    for run_env in envs.values():
        subprocess.run([sys.executable, "-P", "-m", "custody", "search", "--limit", "1",
                        "--json"], env=run_env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def custody_verify(tree: Path | None = None) -> dict[str, float]:
        run_env = envs[tree]
        with PeakRss(b"\0verify\0") as peak:
            figures = timed_command([sys.executable, "-P", "-m", "custody", "verify", "--json"],
                                    run_env)
        figures["tree_rss_mib"] = figures.pop("peak_rss_mib")
        figures["main_rss_mib"] = peak.main_kib / 1024
        figures["worker_rss_mib"] = peak.worker_kib / 1024
        return figures

    floor = "floor (Ed25519 + SHA-256, all cores)"
    contenders = {
        floor: lambda: timed_command(
            [sys.executable, "-P", str(here / "verify_floor.py"), str(archive)], env),
        "custody verify --json": custody_verify,
    }
    if against is not None:
        contenders[f"verify --json of {against.name}"] = lambda: custody_verify(against)
    runs = alternate(contenders, repeat)
    report(f"full verify of {size:,} real entries with objects, metadata and a current search "
           "index", runs, floor=floor)
    for name in runs:
        cpu = [r["cpu_s"] for r in runs[name]]
        print(f"  {name} CPU (user+sys, its process tree): {statistics.median(cpu):.2f} s "
              f"({min(cpu):.2f}..{max(cpu):.2f})")
    for name in [n for n in runs if n != floor]:
        print(paired_ratios(runs, name, floor), flush=True)
        for what in ("main_rss_mib", "worker_rss_mib", "tree_rss_mib"):
            values = [r[what] for r in runs[name]]
            print(f"  {name} peak RSS, {what.removesuffix('_rss_mib')}: "
                  f"{statistics.median(values):.0f} MiB ({min(values):.0f}..{max(values):.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None,
                        help="entries per archive (default 10000,100000,1000000; 10000 to compare)")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--compare", type=Path, metavar="OLD_TREE",
                        help="also measure this source tree, interleaved, and print new/old")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        metavar="NEW_TREE", help="the tree compared with OLD_TREE (default: this)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tree with --compare")
    parser.add_argument("--verify", type=int, metavar="N",
                        help="time the full `custody verify` of N real entries against its floor")
    parser.add_argument("--against", type=Path, metavar="OLD_TREE",
                        help="with --verify: time OLD_TREE's custody verify in the same rounds")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child run: JSON out
    args = parser.parse_args()
    if args.verify:
        full_verify(args.verify, args.repeat, args.dir, args.against)
        return
    if args.one is not None:
        print(json.dumps(measure(args.one, args.dir)))
        return
    default = "10000" if args.compare else "10000,100000,1000000"
    sizes = [int(s) for s in (args.sizes or default).split(",")]
    print(f"machine: {os.cpu_count()} cores; targets: proofs < 1 ms at 10^6, record-only verify"
          " of 10^6 < 60 s, batched appends >= 5000/s")
    if args.compare:
        compare(args.compare, args.tree, sizes, args.repeat, args.dir)
        return
    work = Path(tempfile.mkdtemp(prefix="custody-ledger-bench-", dir=args.dir))
    try:
        for size in sizes:
            show(measure(size, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
