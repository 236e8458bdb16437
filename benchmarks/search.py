"""Search benchmark: searches and track cross-references over 100,000 indexed items.

The index is filled with synthetic rows through store/index.py (as `custody search` would after
indexing 100,000 ingests): capture times over two years, 70 % with a position in Syria, 10 % with
a camera clock of unknown offset, 20 devices, 40 cases, 400 incidents, file names and notes. 1,000
of the items are placed near the flight the track follows, at its times. The track is a CSV of
10,000 points (one every 10 s, a meandering flight of about 28 hours).

It prints, for each search, the items found and the time of the query (`custody.search.query.find`),
and for each cross-reference the matches and the whole time from reading the CSV to the ranked
list (`custody.search.crossref.cross`). Targets: under 1 s per search, under 5 s per
cross-reference.
With --ledger N it also times indexing a real archive of N signed ingest entries (from scratch,
and an incremental refresh after 100 more).

`--cli N` times the command line instead, on an archive of N real entries (benchmarks/
realarchive.py: real camera JPEGs ingested, then variants of them, cached in --dir): `custody
search --json` returning all N items against the same command returning one (`--limit 1`: the
start-up, the index refresh and the query, without the N results), interleaved, with peak RSS;
then `custody search --reindex --json --limit 1` (the index rebuilt from the ledger). Targets:
all 100,000 items < 1 s and < 100 MiB; the reindex of 100,000 < 10 s.

    python benchmarks/search.py [--items 100000] [--points 10000] [--ledger 5000] [--dir DIR]
    python benchmarks/search.py --cli 100000 [--repeat 5] [--dir DIR] [--against TREE]
                                [--no-reindex | --reindex-only] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from custody.core import canonical
from custody.ops.archive import Archive, Draft
from custody.ops.keyfiles import write_new_key
from custody.search import crossref as xref
from custody.search import indexer, times
from custody.search import query as finder
from store.index import IndexStore
from store.index_port import IncidentRow

START = datetime(2016, 1, 1, tzinfo=UTC).timestamp()
SPAN = 2 * 365 * 86400
FLIGHT_START = datetime(2016, 10, 3, 4, 0, tzinfo=UTC).timestamp()
DEVICES = [("samsung", f"SM-G9{n}0F") for n in range(10)] + [("Apple", f"iPhone {n}")
                                                             for n in range(4, 14)]
MIMES = ["image/jpeg"] * 6 + ["image/heic", "video/mp4", "video/quicktime", "video/3gpp"]


def flight(points: int, rng: random.Random) -> list[tuple[float, float, float]]:
    """(t, lat, lon) every 10 s: a random walk over Syria, about 500 km/h."""
    lat, lon, heading = 35.0, 38.5, rng.uniform(0, 2 * math.pi)
    out = []
    for k in range(points):
        out.append((FLIGHT_START + 10 * k, lat, lon))
        heading += rng.gauss(0, 0.08)
        lat += 0.0125 * math.cos(heading)
        lon += 0.0125 * math.sin(heading) / math.cos(math.radians(lat))
        if not (32.5 < lat < 37.2 and 35.8 < lon < 42.2):  # turn back inside
            heading += math.pi
            lat = min(37.2, max(32.5, lat))
            lon = min(42.2, max(35.8, lon))
    return out


def fill(store: IndexStore, items: int, track: list[tuple[float, float, float]],
         rng: random.Random) -> None:
    with store.writing():
        for i in range(items):
            sha = hashlib.sha256(str(i).encode()).hexdigest()
            store.ensure_item(sha, i + 1)
            if i < 1000:  # near the flight, at its time
                t, lat, lon = track[rng.randrange(len(track))]
                t += rng.uniform(-1800, 1800)
                lat += rng.uniform(-0.05, 0.05)
                lon += rng.uniform(-0.05, 0.05)
                has_place = True
            else:
                t = START + rng.uniform(0, SPAN)
                lat, lon = rng.uniform(32.3, 37.3), rng.uniform(35.7, 42.4)
                has_place = rng.random() < 0.7
            dated = rng.random() < 0.95
            unknown = dated and rng.random() < 0.1
            moment = datetime.fromtimestamp(t, UTC)
            wide = times.UNKNOWN_OFFSET_S if unknown else 0
            make, model = DEVICES[i % len(DEVICES)]
            store.set_facts(
                sha, captured_at=times.time_key(moment) if dated else None,
                captured_text=moment.strftime("%Y-%m-%dT%H:%M:%SZ") if dated else None,
                captured_t=t if dated else None,
                basis=(times.OFFSET_UNKNOWN if unknown else "gps") if dated else None,
                lat=lat if has_place else None, lon=lon if has_place else None, alt=400.0,
                make=make, model=model, mime=MIMES[i % len(MIMES)],
                time_bounds=(t - wide, t + wide) if dated else None, warnings=[])
            store.add_name(sha, f"IMG_{i:06d}.JPG", i + 1)
            store.link("case", f"CASE-{i % 40:02d}", sha, i + 1)
            if i % 250 < 10:
                store.link("incident", f"INC-{i // 250:03d}", sha, i + 1)
            if i % 5 == 0:
                store.put_note(i + 1, sha, rng.choice(["strike near the market", "ambulance hit",
                                                        "school damaged", "hospital entrance"]))
            store.refresh_item(sha)
        for n in range(400):  # half of them where and when the flight passes
            t, lat, lon = track[n * 25 % len(track)] if n % 2 else (START, 36.2, 37.1)
            day = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
            lo, hi, _ = times.incident_interval(day)
            store.put_incident(IncidentRow(f"INC-{n:03d}", items + n, f"CASE-{n % 40:02d}",
                                           day, lo, hi, True, lat, lon, None, "incident"))


SEARCHES = [
    ("time window (one week)", finder.Search(since="2016-10-01", until="2016-10-07")),
    ("near Aleppo, 10 km", finder.Search(near="36.2,37.15", within_km=10)),
    ("bbox (Aleppo governorate)", finder.Search(bbox="36.5,35.6,38.3,36.7")),
    ("case", finder.Search(case="CASE-07")),
    ("incident", finder.Search(incident="INC-042")),
    ("device", finder.Search(device="iphone 7")),
    ("mime family", finder.Search(mime="video")),
    ("text (notes)", finder.Search(text="hospital")),
    ("text (file name)", finder.Search(text="IMG_04217")),
    ("time + place + device", finder.Search(since="2016-06-01", until="2016-12-31",
                                            near="35.0,38.5", within_km=50, device="samsung")),
    ("everything (no filter)", finder.Search()),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--ledger", type=int, default=5_000, help="0 to skip indexing a ledger")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--cli", type=int, metavar="N", help="time `custody search` on N real entries")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds with --cli")
    ap.add_argument("--against", type=Path, metavar="TREE",
                    help="with --cli: time TREE's custody too, in the same rounds")
    ap.add_argument("--no-reindex", action="store_true", help="with --cli: skip the reindex")
    ap.add_argument("--reindex-only", action="store_true", help="with --cli: only the reindex")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="with --cli: no bytecode cache of each tree's own (see command_line)")
    args = ap.parse_args()
    if args.cli:
        command_line(args.cli, args.repeat, args.dir, args.against, not args.no_reindex,
                     not args.no_bytecode, args.reindex_only)
        return
    work = Path(tempfile.mkdtemp(prefix="custody-search-bench-", dir=args.dir))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def command_line(size: int, repeat: int, work: Path | None, against: Path | None = None,
                 reindex: bool = True, bytecode: bool = True, reindex_only: bool = False) -> None:
    """`custody search --json` of every item against one item, then a reindex, through the CLI.
    `against`: another source tree's custody too (PYTHONPATH=against), in the same rounds, on
    the same archive. Each run's CPU time (user + system, from wait4) is reported beside its
    wall time: on a shared machine it is the steadier measure. `bytecode`: each tree keeps its
    compiled modules in its own cache folder, as an installed custody has them; without it, a
    PYTHONDONTWRITEBYTECODE in the environment makes every run of a tree that has no
    __pycache__ compile its modules again (~0.2 s), and a tree that has one not."""
    import sys

    import realarchive
    from floor import interleave, paired_ratios, report, timed_command

    archive = realarchive.build(size, work)
    trees = {"": Path(__file__).resolve().parents[1]}
    if against is not None:
        trees[f" [{against.name}]"] = against.resolve()
    envs = {}
    caches = Path(tempfile.mkdtemp(prefix="custody-search-bytecode-"))
    for label, tree in trees.items():
        # each tree its own search index: two trees of different index schemas would each
        # rebuild the other's at every run (the rest is hard-linked: search only reads it)
        folder = archive if not envs else realarchive.linked_copy(archive, len(envs))
        env = dict(realarchive.environment(archive.parent, folder), PYTHONPATH=str(tree))
        if bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(caches / f"tree{len(envs)}")
        envs[label] = env
    search = [sys.executable, "-P", "-m", "custody", "search", "--json"]

    def timed(args: list[str], env: dict[str, str]) -> dict[str, float]:
        before = os.times()
        figures = timed_command(search + args, env)
        after = os.times()
        figures["cpu_seconds"] = (after.children_user - before.children_user
                                  + after.children_system - before.children_system)
        return figures

    if reindex_only:
        other = envs.get(f" [{against.name}]") if against is not None else None
        time_reindex(search, envs[""], repeat, against, other)
        shutil.rmtree(caches, ignore_errors=True)
        return
    for env in envs.values():  # bring the index up to date (and the bytecode), untimed
        timed(["--limit", "1"], env)
    contenders = {}
    for label, env in envs.items():
        contenders[f"search --json --limit 1{label}"] = lambda env=env: timed(["--limit", "1"],
                                                                                env)
        contenders[f"search --json (all {size:,}){label}"] = lambda env=env: timed([], env)
    one, every = "search --json --limit 1", f"search --json (all {size:,})"
    runs = interleave(contenders, repeat)
    report(f"custody search on {size:,} real entries, wall", runs, floor=one)
    report(f"custody search on {size:,} real entries, CPU (user + system)", runs, floor=one,
           key="cpu_seconds")
    for label in envs:
        print(paired_ratios(runs, every + label, one + label))
        print(paired_ratios(runs, every + label, one + label, key="cpu_seconds") + " (CPU)")
    if against is not None:
        other = f" [{against.name}]"
        for name in (every, one):
            print(paired_ratios(runs, name, name + other) + " (wall, this tree / the other)")
            print(paired_ratios(runs, name, name + other, key="cpu_seconds")
                  + " (CPU, this tree / the other)")
        for name in (every, every + other):
            rss = [r["peak_rss_mib"] for r in runs[name]]
            print(f"  {name} peak RSS {statistics.median(rss):.0f} MiB "
                  f"({min(rss):.0f}..{max(rss):.0f})")
    print(flush=True)
    if reindex:
        other = envs.get(f" [{against.name}]") if against is not None else None
        time_reindex(search, envs[""], max(1, repeat // 2), against, other)
    shutil.rmtree(caches, ignore_errors=True)


def time_reindex(search: list[str], env: dict[str, str], repeat: int, against: Path | None,
            old_env: dict[str, str] | None = None) -> None:
    """`custody search --reindex --json --limit 1` (the index rebuilt from the ledger), of this
    tree and of `against` (run with `old_env`), interleaved: wall and CPU time, peak RSS."""
    from floor import interleave, paired_ratios, report

    name = "search --reindex --json --limit 1"
    command = search + ["--reindex", "--limit", "1"]
    contenders = {name: lambda: _timed_cpu(command, env)}
    if against is not None:
        theirs = old_env or dict(env, PYTHONPATH=str(against.resolve()))
        contenders[f"{name} of {against.name}"] = lambda: _timed_cpu(command, theirs)
    runs = interleave(contenders, repeat)
    base = f"{name} of {against.name}" if against is not None else name
    report("custody search --reindex (wall)", runs, floor=base)
    report("custody search --reindex (CPU: user + system)", runs, floor=base, key="cpu_seconds")
    if against is not None:
        print(paired_ratios(runs, name, base))
        print(paired_ratios(runs, name, base, key="cpu_seconds") + " (CPU)")
    for who, values in runs.items():
        print(f"  {who}: {statistics.median(r['cpu_seconds'] for r in values):.2f} s CPU, "
              f"{statistics.median(r['seconds'] for r in values):.2f} s wall (medians)")


def _timed_cpu(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """floor.timed_command's figures and the CPU time (user + system) of the process and the
    children it waited for, from wait4."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode(errors='replace')[-2000:]}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024}


def run(args: argparse.Namespace, work: Path) -> None:
    rng = random.Random(7)
    track = flight(args.points, rng)
    csv = work / "flight.csv"
    with csv.open("w") as f:
        f.write("time,lat,lon,id\n")
        for t, lat, lon in track:
            f.write(f"{datetime.fromtimestamp(t, UTC):%Y-%m-%dT%H:%M:%SZ},{lat:.6f},"
                    f"{lon:.6f},BENCH-1\n")
    store = IndexStore(work / "index.db")
    start = time.perf_counter()
    fill(store, args.items, track, rng)
    print(f"index of {args.items:,} synthetic items filled in "
          f"{time.perf_counter() - start:.1f} s (R*Tree: {store.rtree}, FTS5: {store.fts})")

    print(f"\n{'search':<28} {'items':>8} {'undetermined':>13} {'unplaced':>9} {'time':>9}")
    worst = 0.0
    for label, s in SEARCHES:
        start = time.perf_counter()
        result = finder.find(store, s)
        took = time.perf_counter() - start
        worst = max(worst, took)
        print(f"{label:<28} {result['count']:>8,} {result['undetermined_count']:>13,} "
              f"{result.get('unplaced_count', 0):>9,} {took * 1000:>7.0f} ms")
    print(f"slowest search {worst * 1000:.0f} ms (target < 1000 ms)")

    print(f"\n{'cross-reference (' + str(args.points) + ' points)':<40} {'matches':>8} "
          f"{'time':>9}")
    worst = 0.0
    for label, km, minutes, tolerance in (("1 km, 5 min", 1, 5, 0), ("5 km, 15 min", 5, 15, 0),
                                          ("10 km, 30 min, +-10 min clock", 10, 30, 10)):
        x = xref.Crossref(track=csv, km=km, minutes=minutes, clock_tolerance=tolerance)
        start = time.perf_counter()
        result = xref.cross(store, x)
        took = time.perf_counter() - start
        worst = max(worst, took)
        flagged = sum("offset-unknown" in m["flags"] for m in result["matches"])
        print(f"{label:<40} {result['count']:>8,} {took:>7.2f} s   "
              f"({flagged} offset-unknown)")
    x = xref.Crossref(track=csv, km=5, minutes=15, incidents=True)
    start = time.perf_counter()
    result = xref.cross(store, x)
    took = time.perf_counter() - start
    worst = max(worst, took)
    print(f"{'incidents, 5 km, 15 min':<40} {result['count']:>8,} {took:>7.2f} s")
    print(f"slowest cross-reference {worst:.2f} s (target < 5 s)")
    store.close()
    if args.ledger:
        ledger(args.ledger, work)


def ledger(n: int, work: Path) -> None:
    """Index a real archive: signed ingest entries with metadata documents."""
    key = write_new_key(work / "key", "Bench", "benchmark passphrase")
    archive = Archive.create(work / "archive", "bench", key, "benchmark archive passphrase")
    rng = random.Random(3)

    def drafts(lo: int, hi: int) -> list[Draft]:
        out = []
        for i in range(lo, hi):
            sha = hashlib.sha256(f"ledger {i}".encode()).hexdigest()
            doc = canonical.encode({
                "mime": "image/jpeg", "captured_at": "2016-10-03T11:22:05Z",
                "captured_at_basis": "gps", "device": {"make": "samsung", "model": "SM-G935F"},
                "gps": {"lat": round(rng.uniform(32, 37), 5), "lon": round(rng.uniform(36, 42), 5),
                        "alt": 379.0},
                "errors": [], "raw": {"exiftool": {"EXIF:Make": "samsung"}}})
            out.append(Draft("ingest", sha, {
                "digests": {"sha256": sha}, "size": 1000 + i,
                "source": {"name": f"IMG_{i:06d}.JPG", "path": f"/card/IMG_{i:06d}.JPG",
                           "mtime": "2016-10-03T11:22:05.000000Z"},
                "case": "BENCH", "note": None, "batch": "b", "mime": "image/jpeg",
                "metadata_sha256": hashlib.sha256(doc).hexdigest()}, metadata=doc))
        return out

    for lo in range(0, n, 1000):
        archive.append(key, drafts(lo, min(n, lo + 1000)))
    store = indexer.open_index(archive)
    start = time.perf_counter()
    status = indexer.refresh(archive, store)
    took = time.perf_counter() - start
    print(f"\nindexing a ledger of {status['entries']:,} entries from scratch: {took:.2f} s "
          f"({status['indexed_now'] / took:,.0f} entries/s)")
    archive.append(key, drafts(n, n + 100))
    start = time.perf_counter()
    status = indexer.refresh(archive, store)
    print(f"incremental refresh after 100 more: {(time.perf_counter() - start) * 1000:.0f} ms")
    start = time.perf_counter()
    indexer.refresh(archive, store)
    print(f"refresh with nothing new: {(time.perf_counter() - start) * 1000:.1f} ms")
    store.close()


if __name__ == "__main__":
    main()
