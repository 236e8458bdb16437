"""Command-line start-up: the CPU a `python -m custody ...` process spends around its work.

The test suite runs about 2,000 such processes and a field team runs one per command, so the cost
of starting (the interpreter, the imports, building the command table) is paid on every call. Each
command here is timed as a whole process (user + system CPU from wait4's rusage, which a busy
machine disturbs less than wall time), interleaved A B C, C B A, ... against the floor: an
interpreter that starts and imports nothing (`python -c pass`). With --against DIR the same
commands also run from another source tree (PYTHONPATH=DIR), e.g. the main branch, so that a
change is measured side by side on the same machine at the same moment.

Commands timed: `--version`, `--help`, `verify --help` (parse and print only), and `verify`,
`list --json` on a small archive made once (its imports and the work of a tiny archive).

    python benchmarks/startup.py [--rounds 15] [--against /work/main]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from floor import Figures, interleave

HERE = Path(__file__).resolve().parent.parent
PASSPHRASE = "startup benchmark passphrase"


def cpu_of(cmd: Sequence[str], env: Mapping[str, str]) -> Figures:
    """Run `cmd` once; its user + system CPU seconds and wall seconds. A failing run is void."""
    import time

    started = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=dict(env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        assert proc.stderr is not None
        sys.exit(f"startup: {' '.join(cmd)} failed:\n{proc.stderr.read().decode()[-2000:]}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "seconds": seconds}


def make_archive(folder: Path, env: dict[str, str]) -> None:
    """A key and an archive with one ingested file, made with the tree under test's own CLI."""
    custody = [sys.executable, "-m", "custody"]
    subprocess.run([*custody, "key", "new", "--name", "Bench Admin"], env=env, check=True,
                   capture_output=True)
    subprocess.run([*custody, "init", "--name", "Startup bench"], env=env, check=True,
                   capture_output=True)
    sample = folder / "sample.txt"
    sample.write_text("a small evidence file\n")
    subprocess.run([*custody, "ingest", str(sample)], env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--against", type=Path, help="another source tree to compare with")
    args = parser.parse_args()
    trees = {"this": HERE} | ({"against": args.against.resolve()} if args.against else {})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "CUSTODY_ARCHIVE": str(folder / "archive"),
               "CUSTODY_KEY": str(folder / "key"), "CUSTODY_PASSPHRASE": PASSPHRASE,
               "CUSTODY_ARCHIVE_PASSPHRASE": "the archive key: " + PASSPHRASE, "HOME": str(folder),
               "XDG_CONFIG_HOME": str(folder / ".config"), "PYTHONPATH": str(HERE)}
        make_archive(folder, env)
        commands = {"--version": ["--version"], "--help": ["--help"],
                    "verify --help": ["verify", "--help"], "verify": ["verify"],
                    "list --json": ["list", "--json"]}
        for label, argv in commands.items():
            contenders = {"floor: python -c pass": lambda: cpu_of([sys.executable, "-c", "pass"],
                                                                  env)}
            for tree_name, tree in trees.items():
                tree_env = {**env, "PYTHONPATH": str(tree)}
                contenders[f"{tree_name}: custody {label}"] = (
                    lambda e=tree_env, a=argv: cpu_of([sys.executable, "-m", "custody", *a], e))
            runs = interleave(contenders, args.rounds)
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"custody {label}: CPU seconds, {args.rounds} interleaved rounds, median "
                  f"(min..max); load now {load}")
            base = statistics.median(r["cpu"] for r in runs["floor: python -c pass"])
            medians = {name: statistics.median(r["cpu"] for r in rs) for name, rs in runs.items()}
            for name, rs in runs.items():
                xs = [r["cpu"] for r in rs]
                print(f"  {name:40} {medians[name]:7.3f} ({min(xs):.3f}..{max(xs):.3f})"
                      f"  x{medians[name] / base:.1f} of the floor")
            if "against" in trees:
                this, other = (medians[f"{t}: custody {label}"] for t in ("this", "against"))
                print(f"  this / against: x{this / other:.2f}")
            print(flush=True)


if __name__ == "__main__":
    main()
