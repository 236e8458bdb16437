"""Each backend against the embedded default (SQLite ledger, local folder), in one run.

    eval "$(bash scripts/services.sh start)"      # S3 (radosgw) and PostgreSQL
    python benchmarks/backends.py [--entries 1000000] [--verify-entries 100000] [--rounds 3]
    python benchmarks/backends.py --quick         # small sizes, a minute or less (the test's run)
    python benchmarks/backends.py --parts proofs  # one part: appends, verify, proofs or ingest

The ledger part runs in this process, through the Ledger port (store/ports.py):
- batched appends/s: entries signed up front by custody's own entry code (so the figure is the
  backend's: tree nodes read and written, rows, commits), 1,000 to a write transaction;
- single appends/s: one entry per transaction through the real Archive.append (signing, the
  signer's check under the write lock, the tree nodes, the commit);
- inclusion proofs at --entries (default 10^6): p50/p99 over --proofs random leaves of
  custody's proof code (custody.core.merkle) reading nodes from the port, plus the check against
  the root;
- verify of --verify-entries (default 10^5): custody's audit of the record (entries, signatures,
  rules, every tree node), what `verify --ledger-only` checks, no objects.
Built ledgers are kept in --cache (default ~/.cache/custody-benchmarks) for the next run.

The ingest part runs the real command (`python -m custody init`, `ingest`): MB/s of one large file
(with `cp` as the floor) and files/s of camera JPEGs (benchmarks/ingest.py makes them from real
samples), into the folder and into S3, and with a PostgreSQL ledger when there is one.

PostgreSQL is measured when store.pg_ledger is in this tree and a server is given (--pg URL or
$CUSTODY_TEST_PG); otherwise one line says it was skipped and why. Every contender runs in
interleaved rounds (A B, B A, ...: benchmarks/floor.py); the report gives medians (min..max) and
ratios to the embedded default, which are what to quote on a shared machine.

Targets (issue 15): PostgreSQL batched appends >= 5,000/s; inclusion proofs < 5 ms at 10^6
entries; ingest into S3 >= 50% of the folder's throughput. S3 objects are written under Object
Lock (one day, the shortest) into a new bucket per run and cannot be deleted: the test radosgw's
memstore OSD (4 GiB) bounds --size-mib x --rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from backend_ledgers import (
    ARCHIVE_PASSPHRASE,
    PASSPHRASE,
    Backend,
    Home,
    PostgresBackend,
    SqliteBackend,
    append_batched,
    draft,
    postgres,
)
from floor import Figures, interleave, report, timed_command
from ingest import SAMPLES, make_jpegs

from custody.core import merkle
from custody.ops.verify import audit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = "SQLite (embedded default)"
LEDGER_PARTS = {"appends", "verify", "proofs"}
QUICK = {"entries": 2000, "verify_entries": 2000, "appends": 2000, "singles": 20,
         "proofs": 200, "size_mib": 8, "photos": 10, "rounds": 1}
FULL = {"entries": 10**6, "verify_entries": 10**5, "appends": 20_000, "singles": 300,
        "proofs": 1000, "size_mib": 1024, "photos": 1000, "rounds": 3}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def number(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def rates(runs: Mapping[str, list[Figures]], key: str, count: float, what: str,
          target: Callable[[str, float], str] = lambda _name, _rate: "") -> None:
    """`count / seconds` per contender: median (min..max), and its ratio to the default's."""
    base = statistics.median(count / r[key] for r in runs[DEFAULT])
    for name, values in runs.items():
        xs = [count / r[key] for r in values]
        mid = statistics.median(xs)
        print(f"  {name:34} {number(mid):>10} {what} ({number(min(xs))}..{number(max(xs))})"
              f"  x{mid / base:.2f} of the default{target(name, mid)}")
    print(flush=True)


# The ledger ----------------------------------------------------------------------------------


def appends(home: Home, backends: list[Backend], args: argparse.Namespace) -> None:
    rows = list(home.signed(1, args.appends, home.genesis.leaf_hash))  # signed once, up front

    def run(backend: Backend) -> Figures:
        ledger = backend.fresh(home)
        started = time.perf_counter()
        append_batched(ledger, rows)
        batched = time.perf_counter() - started
        archive = home.archive(ledger)
        started = time.perf_counter()
        for j in range(args.singles):
            archive.append(home.key, [draft(args.appends + 1 + j)])
        single = time.perf_counter() - started
        ledger.close()
        return {"seconds": batched, "single": single}

    runs = interleave({b.name: (lambda b=b: run(b)) for b in backends}, args.rounds)
    report(f"batched appends: {args.appends:,} signed entries, {1000:,} a transaction",
           runs, DEFAULT)
    rates(runs, "seconds", args.appends, "appends/s", lambda name, rate: (
        f"  (target for PostgreSQL >= 5,000/s: {'met' if rate >= 5000 else 'NOT met'})"
        if name == PostgresBackend.name else ""))
    report(f"single appends: {args.singles} entries through Archive.append, one a transaction",
           runs, DEFAULT, key="single")
    rates(runs, "single", args.singles, "appends/s")


def proofs(home: Home, backends: list[Backend], args: argparse.Namespace) -> None:
    size = args.entries
    ledgers = {b.name: b.cached(home, size, say) for b in backends}
    default = ledgers[DEFAULT]
    assert default.size() == size, f"the cached ledger holds {default.size()}, not {size}"
    root = merkle.root_hash(size, default.get_node)
    picked = random.Random(size).sample(range(size), min(args.proofs, size))
    leaves = {i: default.row(i).leaf_hash for i in picked}  # type: ignore[union-attr]

    def run(name: str) -> Figures:
        ledger = ledgers[name]
        times, cpu = [], []
        for i, leaf in leaves.items():
            started, busy = time.perf_counter(), time.thread_time()
            get = merkle.prefetched(ledger.get_nodes(merkle.inclusion_proof_nodes(i, size)),
                                    ledger.get_node)  # one request for the proof's nodes
            merkle.verify_inclusion(leaf, i, size, merkle.inclusion_proof(i, size, get), root)
            times.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - busy)
        return {"seconds": sum(times), **{f"t{k}": t for k, t in enumerate(times)},
                **{f"c{k}": t for k, t in enumerate(cpu)}}

    runs = interleave({name: (lambda name=name: run(name)) for name in ledgers}, args.rounds)
    print(f"inclusion proofs at {size:,} entries: {len(leaves):,} random leaves x {args.rounds}"
          f" interleaved rounds, proof + check against the root; load now {load()}")
    p50s: dict[str, float] = {}
    for name, values in runs.items():
        rounds = [sorted(v * 1000 for k, v in r.items() if k.startswith("t")) for r in values]
        ms = sorted(t for one in rounds for t in one)
        p50, p99 = percentile(ms, 0.5), percentile(ms, 0.99)
        p50s[name] = p50
        each = [percentile(one, 0.99) for one in rounds]
        cpu = sorted(v * 1000 for r in values for k, v in r.items() if k.startswith("c"))
        verdict = "met" if p99 < 5 else "NOT met"
        print(f"  {name:34} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms (a round's p99: "
              f"{min(each):.3f}..{max(each):.3f})  max {ms[-1]:7.3f} ms"
              f"  p50 x{p50 / p50s[DEFAULT]:.2f} of the default"
              f"  (target < 5 ms at 10^6: {verdict} at {size:,})")
        print(f"  {'':34} CPU time of this thread per proof: p50 {percentile(cpu, 0.5):.3f} ms,"
              f" p99 {percentile(cpu, 0.99):.3f} ms (the rest of the wall time is waiting: for"
              f" a CPU on a loaded machine, for I/O, for the server)")
    for backend in backends:
        on_disk = backend.disk_bytes(home, size)
        print(f"  {backend.name:34} the ledger of {size:,} entries takes {on_disk / 1e6:,.0f} MB"
              f" on disk ({on_disk / size:,.0f} bytes an entry)")
    print(flush=True)
    for ledger in ledgers.values():
        ledger.close()


def verify(home: Home, backends: list[Backend], args: argparse.Namespace) -> None:
    size = args.verify_entries
    archives = {b.name: home.archive(b.cached(home, size, say)) for b in backends}

    def run(name: str) -> Figures:
        started = time.perf_counter()
        found = audit(archives[name], objects=False)
        seconds = time.perf_counter() - started
        if not found.ok:
            sys.exit(f"backends: verify of the {name} ledger failed: {found.problems[:3]}")
        return {"seconds": seconds}

    runs = interleave({name: (lambda name=name: run(name)) for name in archives}, args.rounds)
    report(f"verify of the record: {size:,} entries (custody's audit, objects=False)", runs,
           DEFAULT)
    rates(runs, "seconds", size, "entries/s")
    for archive in archives.values():
        archive.ledger.close()


def ledger_part(args: argparse.Namespace, work: Path, pg_url: str | None) -> None:
    args.cache.mkdir(parents=True, exist_ok=True)
    home = Home.at(args.cache)
    sqlite = SqliteBackend(work, args.cache)
    pg, why = postgres(pg_url, sqlite) if not args.no_pg else (None, "--no-pg")
    if pg is None:
        print(f"PostgreSQL skipped: {why}", flush=True)
    backends: list[Backend] = [sqlite, *([pg] if pg is not None else [])]
    try:
        for part, measure in (("appends", appends), ("verify", verify), ("proofs", proofs)):
            if part in args.parts:
                measure(home, backends, args)
    finally:
        for backend in backends:
            backend.close()


# Ingest through the command line -------------------------------------------------------------


class Ingests:
    """Fresh archives for `custody ingest` on each backend pair, through the real command."""

    def __init__(self, work: Path, pg: PostgresBackend | None) -> None:
        self.work, self.pg = work, pg
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "CUSTODY_KEY": str(work / "bench.key"),
                    "CUSTODY_PASSPHRASE": PASSPHRASE,
                    "CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE}
        self.custody = [sys.executable, "-P", "-m", "custody"]
        subprocess.run([*self.custody, "key", "new", "--name", "Bench", "-o",
                        str(work / "bench.key")], env=self.env, check=True, capture_output=True)
        self.s3 = None
        if endpoint := os.environ.get("CUSTODY_S3_ENDPOINT"):
            import boto3
            from botocore.config import Config

            self.s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(
                request_checksum_calculation="when_required", s3={"addressing_style": "path"}))

    def contenders(self, path: Path) -> dict[str, Callable[[], Figures]]:
        """Each backend pair this run can reach, the default first."""
        pairs: dict[str, tuple[bool, bool]] = {DEFAULT: (False, False)}
        if self.s3 is not None:
            pairs["S3 objects, SQLite ledger"] = (True, False)
        if self.pg is not None:
            pairs["folder objects, PostgreSQL ledger"] = (False, True)
            if self.s3 is not None:
                pairs["S3 objects, PostgreSQL ledger"] = (True, True)
        return {name: (lambda s3=s3, pg=pg: self.ingest(path, s3, pg))
                for name, (s3, pg) in pairs.items()}

    def ingest(self, path: Path, s3: bool, pg: bool) -> Figures:
        archive = self.work / f"archive-{uuid.uuid4().hex[:8]}"
        where: list[str] = []
        if s3:
            assert self.s3 is not None
            bucket = f"custody-bench-{uuid.uuid4().hex[:12]}"
            self.s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            where += ["--objects", f"s3://{bucket}/bench", "--retention-days", "1"]
        if pg:
            assert self.pg is not None
            name = f"custody_bench_{uuid.uuid4().hex[:12]}"
            self.pg.made.append(name)
            where += ["--ledger", self.pg._database(name)]
        subprocess.run([*self.custody, "init", str(archive), "--name", "Bench", *where],
                       env=self.env, check=True, capture_output=True)
        figures = timed_command([*self.custody, "--archive", str(archive), "ingest", str(path)],
                                env=self.env)
        shutil.rmtree(archive)
        return figures


def s3_ratio(runs: Mapping[str, list[Figures]]) -> None:
    folder = statistics.median(r["seconds"] for r in runs[DEFAULT])
    for name, values in runs.items():
        if name.startswith("S3"):
            ratio = folder / statistics.median(r["seconds"] for r in values)
            print(f"  {name} / default throughput: {ratio:.2f} (target >= 0.50: "
                  f"{'met' if ratio >= 0.5 else 'NOT met'})")
    print(flush=True)


def ingest_part(args: argparse.Namespace, work: Path, pg_url: str | None) -> None:
    pg, why = postgres(pg_url, SqliteBackend(work, args.cache)) if not args.no_pg else (
        None, "--no-pg")
    if pg is None:
        print(f"PostgreSQL skipped for ingest: {why}", flush=True)
    if not os.environ.get("CUSTODY_S3_ENDPOINT"):
        print("S3 skipped: no $CUSTODY_S3_ENDPOINT (eval \"$(bash scripts/services.sh start)\")",
              flush=True)
    ingests = Ingests(work, pg)
    try:
        big = work / "large.bin"
        with open(big, "wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1 << 20))

        def copy() -> Figures:
            figures = timed_command(["cp", str(big), str(work / "copy.bin")])
            (work / "copy.bin").unlink()
            return figures

        runs = interleave({"cp (floor)": copy, **ingests.contenders(big)}, args.rounds)
        report(f"ingest of one {args.size_mib} MiB file", runs, DEFAULT)
        rates(runs, "seconds", args.size_mib * 1.048576, "MB/s")
        s3_ratio(runs)
        big.unlink()

        photos = make_jpegs(work, args.samples, args.photos, args.pad_kib)
        runs = interleave(ingests.contenders(photos), args.rounds)
        report(f"ingest of {args.photos:,} camera JPEGs", runs, DEFAULT)
        rates(runs, "seconds", args.photos, "files/s")
        s3_ratio(runs)
    finally:
        if pg is not None:
            pg.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    for name, value in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default {value:,} ({QUICK[name]:,} with --quick)")
    parser.add_argument("--pad-kib", type=int, default=None, help="each JPEG's size, about")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder of sample JPEGs")
    parser.add_argument("--parts", default="ledger,ingest",
                        help="which to run, comma-separated: ledger (= appends,verify,proofs), "
                             "appends, verify, proofs, ingest")
    parser.add_argument("--pg", default=os.environ.get("CUSTODY_TEST_PG"), metavar="URL",
                        help="a PostgreSQL server (superuser: databases are made per run)")
    parser.add_argument("--no-pg", action="store_true", help="measure no PostgreSQL")
    parser.add_argument("--dir", type=Path, default=None, help="work folder")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "XDG_CACHE_HOME", Path.home() / ".cache")) / "custody-benchmarks",
        help="where built ledgers are kept between runs")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.pad_kib is None:
        args.pad_kib = 0 if args.quick else 148
    print(f"machine: {os.cpu_count()} cores; load {load()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="custody-backends-") as tmp:
        parts = set(args.parts.split(","))
        if "ledger" in parts:
            parts |= LEDGER_PARTS
        args.parts = parts
        if parts & LEDGER_PARTS:
            ledger_part(args, Path(tmp), args.pg)
        if "ingest" in parts:
            ingest_part(args, Path(tmp), args.pg)


if __name__ == "__main__":
    main()
