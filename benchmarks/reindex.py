"""The search index's rebuild in-process, this tree against another, interleaved: no start-up,
so a change to the rebuild itself shows at its own size (docs/PERFORMANCE.md "Reindex, round 30").

Each tree rebuilds its own linked copy of the cached real archive (benchmarks/realarchive.py) in a
process of its own (PYTHONPATH=TREE): `indexer.refresh(rebuild=True)`, timed around the call, with
the CPU of the indexing process and of the reader it forks (getrusage of itself and its children).
The command-line figure, start-up included, is `search.py --cli N --reindex-only`.

    python benchmarks/reindex.py 100000 --against OLD_TREE [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor  # noqa: E402
import realarchive  # noqa: E402

TREE = Path(__file__).resolve().parents[1]
# Run by each tree's interpreter, its own custody on the path: prints one JSON line of figures.
_TIMED = """
import json, resource, sys, time
from pathlib import Path
from custody.ops.archive import Archive
from custody.search.indexer import open_index, refresh
archive = Archive.open(Path(sys.argv[1]))
store = open_index(archive)
me, kids = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
r0, c0 = resource.getrusage(me), resource.getrusage(kids)
started = time.perf_counter()
done = refresh(archive, store, rebuild=True)
seconds = time.perf_counter() - started
r1, c1 = resource.getrusage(me), resource.getrusage(kids)
store.close()
print(json.dumps({"seconds": seconds, "items": done["items"],
                  "cpu_indexer": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
                  "cpu_reader": c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime,
                  "peak_rss_mib": r1.ru_maxrss / 1024}))
"""


def contender(tree: Path, archive: Path) -> floor.Contender:
    env = dict(os.environ, PYTHONPATH=str(tree))

    def run() -> floor.Figures:
        out = subprocess.run([sys.executable, "-P", "-c", _TIMED, str(archive)], env=env,
                             check=True, capture_output=True, text=True).stdout
        return {k: float(v) for k, v in json.loads(out.splitlines()[-1]).items()}
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", type=int)
    ap.add_argument("--against", type=Path, required=True, help="the other source tree")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    archive = realarchive.build(args.size, args.dir)
    this, other = "rebuild, this tree", f"rebuild, {args.against.name}"
    contenders = {this: contender(TREE, realarchive.linked_copy(archive, 1)),
                  other: contender(args.against.resolve(), realarchive.linked_copy(archive, 2))}
    runs = floor.interleave(contenders, args.repeat)
    floor.report(f"indexer.refresh(rebuild=True) of {args.size:,} real entries (wall)", runs,
                 other)
    for key in ("cpu_indexer", "cpu_reader"):
        floor.report(f"... CPU of the {key[4:]} process", runs, other, key=key)
    print(floor.paired_ratios(runs, this, other))
    for name, values in runs.items():
        print(f"  {name}: {statistics.median(v['items'] for v in values):,.0f} items")


if __name__ == "__main__":
    main()
