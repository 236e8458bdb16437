"""custody against the floor (the work that cannot be avoided) and its peer tools, in one run.

Each workload is a set of named contenders (custody, the floor, a peer tool), each a callable that
does the work once and returns its figures (at least "seconds"; "peak_rss_mib" where measured). The
contenders run interleaved, A B C, C B A, A B C, ... on the same data, so that a drift in the
machine's load or a warm cache favours none; the report gives, per contender, the median with min
and max, and the ratio of medians against the floor. A shared machine is noisy: quote the ratios.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Figures = dict[str, float]
Contender = Callable[[], Figures]


def timed_command(cmd: Sequence[str], env: Mapping[str, str] | None = None,
                  cwd: Path | None = None, stdout: int | None = subprocess.DEVNULL) -> Figures:
    """Run `cmd` once; its wall time and the peak RSS of its largest process (MiB).

    The peak RSS is read from wait4's rusage of the direct child (a process's own peak, not its
    children's). Exits with the command's stderr if it fails: a benchmark of a failing run is void.
    """
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None, cwd=cwd,
                                stdout=stdout, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            sys.exit(f"floor: {' '.join(cmd)} failed ({proc.returncode}):\n"
                     f"{err.read().decode(errors='replace')[-2000:]}")
    # wait4's CPU time is the child's and its reaped children's (verify's workers): the tree's
    figures: Figures = {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024,
                        "cpu_s": usage.ru_utime + usage.ru_stime}
    return figures


def children_peak_rss_mib() -> float:
    """The largest peak RSS among this process's waited-for children so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def interleave(contenders: Mapping[str, Contender], rounds: int,
               before_each: Callable[[str], None] | None = None) -> dict[str, list[Figures]]:
    """`rounds` runs of each contender, the order reversed every other round."""
    runs: dict[str, list[Figures]] = {name: [] for name in contenders}
    order = list(contenders)
    for r in range(rounds):
        for name in order if r % 2 == 0 else list(reversed(order)):
            if before_each is not None:
                before_each(name)
            runs[name].append(contenders[name]())
            print(f"  round {r + 1}/{rounds}: {name} done in {runs[name][-1]['seconds']:.2f} s "
                  f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return runs


def report(title: str, runs: Mapping[str, list[Figures]], floor: str,
           key: str = "seconds", unit: str = "s") -> dict[str, float]:
    """Print median (min..max) per contender and its ratio to the floor; return the ratios."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rounds = min(len(v) for v in runs.values())
    print(f"{title}: {rounds} interleaved rounds; median (min..max); load now {load}")
    base = statistics.median(r[key] for r in runs[floor])
    ratios: dict[str, float] = {}
    for name, values in runs.items():
        xs = [r[key] for r in values]
        ratios[name] = statistics.median(xs) / base
        rss = [r["peak_rss_mib"] for r in values if "peak_rss_mib" in r]
        rss_cell = f"  peak RSS {statistics.median(rss):.0f} MiB" if rss else ""
        print(f"  {name:34} {statistics.median(xs):9.3f} {unit} ({min(xs):.3f}..{max(xs):.3f})"
              f"  x{ratios[name]:.2f} of {floor}{rss_cell}")
    print(flush=True)
    return ratios


def paired_ratios(runs: Mapping[str, list[Figures]], name: str, floor: str,
                  key: str = "seconds") -> str:
    """`name`'s ratio to the floor in each round (the two ran back to back): median (min..max)."""
    ratios = [a[key] / b[key] for a, b in zip(runs[name], runs[floor], strict=False)]
    return (f"{name} / {floor}, round by round: x{statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}..{max(ratios):.2f})")


class PeakRss:
    """Peak RSS (VmHWM, KiB) of each child of this process whose command line holds `mark` (the
    timed custody command) and, apart, of the largest of their own children whose command line
    holds `worker_mark` (any child when None: verify's forked workers; ingest's metadata workers),
    sampled from /proc every 20 ms. wait4's rusage cannot tell them apart: its ru_maxrss is the
    largest of the process and every descendant it waited for."""

    def __init__(self, mark: bytes, worker_mark: bytes | None = None) -> None:
        self.mark, self.worker_mark = mark, worker_mark
        self.main_kib = 0
        self.worker_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = os.getpid()
        mains: set[int] = set()
        while not self._stop.wait(0.02):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    status = (proc / "status").read_text()
                    ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
                    if ppid == me and self.mark in (proc / "cmdline").read_bytes():
                        mains.add(int(proc.name))
                        main = True
                    elif ppid in mains and (self.worker_mark is None
                                            or self.worker_mark in (proc / "cmdline").read_bytes()):
                        main = False
                    else:
                        continue
                except (OSError, ValueError, AttributeError):  # gone meanwhile
                    continue
                found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
                if found and main:
                    self.main_kib = max(self.main_kib, int(found.group(1)))
                elif found:
                    self.worker_kib = max(self.worker_kib, int(found.group(1)))
