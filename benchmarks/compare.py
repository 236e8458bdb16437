"""Before and after: one measurement run on two source trees, interleaved, on the same data.

Used by ledger.py and ingest.py (`--compare OLD_TREE`). Each run of a tree is a subprocess with
`PYTHONPATH=<tree>` (a script in benchmarks/ or `python -P -m custody`: the current folder is never
searched first), so each tree's own custody is measured, never an installed one. Rounds alternate
which tree goes first (A B, B A, A B, ...) so that a drift in the machine's load, or a cache warmed
by the previous run, favours neither. A shared machine is noisy: read the medians and the spread,
not one run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


def tree_env(tree: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment whose Python imports custody (and store) from `tree` first."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
    return env


def check_tree(tree: Path) -> str:
    """Fail now, not after minutes, unless `tree` is a custody source tree its Python imports."""
    if not (tree / "custody" / "__init__.py").is_file():
        sys.exit(f"compare: {tree} is not a custody source tree (no custody/__init__.py)")
    found = subprocess.run(
        [sys.executable, "-P", "-c", "import custody; print(custody.__file__)"],
        env=tree_env(tree), capture_output=True, text=True, check=False,
    ).stdout.strip()
    if Path(found).resolve() != (tree / "custody" / "__init__.py").resolve():
        sys.exit(f"compare: with PYTHONPATH={tree}, custody is imported from {found or 'nowhere'}")
    head = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
                          capture_output=True, text=True, check=False).stdout.strip()
    return head[:72] or "(not a git work tree)"


def run_child(tree: Path, argv: Sequence[str]) -> dict[str, float]:
    """Run `python argv...` with `tree` on PYTHONPATH; its last stdout line is a JSON object."""
    done = subprocess.run([sys.executable, *argv], env=tree_env(tree), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"compare: the run on {tree} failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def interleave(
    trees: dict[str, Path], rounds: int, measure: Callable[[str, Path], dict[str, float]]
) -> dict[str, list[dict[str, float]]]:
    """`rounds` runs of every tree, alternating which tree goes first; runs per tree name."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    order = list(trees)
    for r in range(rounds):
        for name in order if r % 2 == 0 else reversed(order):
            runs[name].append(measure(name, trees[name]))
            print(f"  round {r + 1}/{rounds}: {name} done", file=sys.stderr, flush=True)
    return runs


def summarise(title: str, runs: dict[str, list[dict[str, float]]], metrics: list[Metric]) -> None:
    """Median (min..max) per tree and metric, and the ratio new/old of the medians."""
    old, new = runs["old"], runs["new"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{title}: {len(new)} runs per tree, interleaved; median (min..max); load now {load}")
    print(f"  {'':24} {'old':>24} {'new':>24}  new/old")
    for m in metrics:
        cells = []
        for values in ([run[m.key] for run in old], [run[m.key] for run in new]):
            cells.append(f"{_n(statistics.median(values))} ({_n(min(values))}..{_n(max(values))})")
        ratio = statistics.median(run[m.key] for run in new) / statistics.median(
            run[m.key] for run in old)
        better = "higher is better" if m.higher_is_better else "lower is better"
        print(f"  {m.label + ' (' + m.unit + ')':24} {cells[0]:>24} {cells[1]:>24}  {ratio:5.2f}"
              f"  ({better})")
    print(flush=True)


def _n(x: float) -> str:
    return f"{x:.4g}"
