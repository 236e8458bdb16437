"""Ingest's look-alike check in a large archive: the CPU of one new image's comparison with every
perceptual hash held (`Fingerprints.nearest`) and its addition (`add`), N hashes held.

Floor: one XOR and bit count of N 64-bit integers in numpy (the comparison cannot do less). With
`--against TREE`, that tree's Fingerprints runs interleaved too (before/after). Each contender is
a fresh process timing its own CPU over `--files` new images; A B A B ..., median (min..max).

    python benchmarks/lookalike.py [--held 100000] [--files 300] [--rounds 5] [--against TREE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from floor import interleave, paired_ratios, report

ROOT = Path(__file__).resolve().parent.parent

# Printed: CPU seconds a new file. The held hashes are random; each new image is one of 46
# scenes, as a shoot of many frames of few scenes is.
PROGRAM = """
import random, sys, time
held, files, floor = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "floor"
rng = random.Random(13)
rows = [(f"{i:064x}", None, f"{rng.getrandbits(64):016x}") for i in range(held)]
scenes = [f"{rng.getrandbits(64):016x}" for _ in range(46)]
if floor:
    import numpy as np
    values = np.array([int(h, 16) for _, _, h in rows], dtype=np.uint64)
    started = time.process_time()
    for i in range(files):
        np.flatnonzero(np.bitwise_count(values ^ np.uint64(int(scenes[i % 46], 16))) <= 12)
else:
    from custody.search.fingerprints import Fingerprints
    known = Fingerprints(rows)
    started = time.process_time()
    for i in range(files):
        query = [(None, scenes[i % 46])]
        known.nearest(query, 12, exclude=f"new{i}")
        known.add(f"new{i}", query)
print((time.process_time() - started) / files)
"""


def per_file(tree: Path | None, held: int, files: int) -> dict[str, float]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-P", "-c", PROGRAM, str(held), str(files),
                          "floor" if tree is None else "custody"],
                         env=env, check=True, capture_output=True, text=True).stdout
    return {"seconds": time.perf_counter() - started, "ms": float(out) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another source tree, interleaved")
    args = parser.parse_args()
    floor = "floor: numpy XOR + bit count"
    contenders = {floor: lambda: per_file(None, args.held, args.files),
                  "custody Fingerprints": lambda: per_file(ROOT, args.held, args.files)}
    if args.against is not None:
        contenders["custody Fingerprints (--against)"] = \
            lambda: per_file(args.against.resolve(), args.held, args.files)
    runs = interleave(contenders, args.rounds)
    report(f"look-alike check of one new image, {args.held:,} hashes held (CPU ms a file)",
           runs, floor, key="ms", unit="ms")
    for name in list(contenders)[1:]:
        print(paired_ratios(runs, name, floor, key="ms"))


if __name__ == "__main__":
    main()
