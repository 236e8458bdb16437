"""`custody serve` under load and faults, against plain HTTP PUTs to a static server, in one run.

    python benchmarks/service.py                  # 20 clients, 200 files, sizes x0.25 (~330 MB)
    python benchmarks/service.py --scale 1        # the issue's sizes: 50 KB to 50 MB (~1.3 GB)
    python benchmarks/service.py --quick          # 3 clients, 9 small files, one round (the test)

The files: a fixed, seeded size distribution (log-uniform from 50 KB to 50 MB, then times
--scale, never under 50 KB), real media made unique and padded to size: the ones drawn at 8 MB or
more are MP4 videos (tests/data/media's phone MP4s, a top-level `free` box of seeded random bytes
appended), the others camera JPEGs (tests/data/exiftool's samples, an APP15 segment of seeded
random bytes after their own EXIF, as benchmarks/ingest.py makes them). Every reader on either
side parses them as what they are.

Two contenders, interleaved A B, B A, ... on the same files (benchmarks/floor.py), each round on
a fresh store and a fresh server process on a free loopback port:
- custody: `custody serve` over a copy of one prepared archive; --clients `custody push` processes
  at once, each its own enrolled field custodian with its own share of the files (hashed, read
  and signed on the "device", sent over tus in 4 MiB signed PATCHes), while --readers reviewer
  threads each search (`GET /api/v1/search`) and read an item (`GET /api/v1/items/{sha256}`)
  every --read-every seconds, every request signed (RFC 9421). The server runs with --rate and
  --burst raised so that the per-key limit measures nothing here.
- static PUT: WsgiDAV (a maintained WebDAV server on cheroot; PUT writes the file, with no
  fsync and no hashing) on a fresh folder; --clients `curl -T` processes, each PUTting the same
  share of the same files over one connection.
Each reports uploads/s and MB/s (median, min..max) and custody's ratio to the static server.
The item request's latency is taken idle (before the pushes start, --idle-requests in a row)
and under the load, p50 and p99 pooled over the rounds.

Then one fault run (--no-faults to skip): the same pushes, the server SIGKILLed once a third of
the files have landed and one client in four killed with it, the server started again on the
same archive and port, every client's push rerun. It reports whether every rerun said new or
present, each file's ingest entries (must be one), items and objects (must be the files) and
`custody verify`'s exit code (must be 0); any miss ends the run with a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from floor import Figures, interleave, report
from ingest import _after_app_segments, _segments

from custody.ops.keyfiles import write_new_key
from custody.service.signing import RequestSigner

ROOT = Path(__file__).resolve().parent.parent
JPEGS = ROOT / "tests" / "data" / "exiftool"
VIDEOS = [ROOT / "tests" / "data" / "media" / n for n in ("homs-loci.mp4", "santiago-android.mp4")]
SEEDS = [ROOT / "tests" / "data" / "media" / n for n in
         ("aleppo-gps.jpg", "carbon-south-west.jpg", "clock-no-offset.jpg")]
PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"
SMALLEST, LARGEST, VIDEO_FROM = 50_000, 50_000_000, 8_000_000
CUSTODY, STATIC = "custody serve + push", "static PUT (WsgiDAV + curl)"
FULL = {"clients": 20, "files": 200, "scale": 0.25, "rounds": 3, "readers": 2,
        "idle_requests": 100}
QUICK = {"clients": 3, "files": 9, "scale": 0.01, "rounds": 1, "readers": 1,
         "idle_requests": 20}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# The files ------------------------------------------------------------------------------------


def sizes(count: int, scale: float, seed: int) -> list[tuple[int, bool]]:
    """(size, is a video) per file: log-uniform over 50 KB..50 MB, seeded, then scaled."""
    draw = random.Random(seed)
    out = []
    for _ in range(count):
        drawn = math.exp(draw.uniform(math.log(SMALLEST), math.log(LARGEST)))
        out.append((max(SMALLEST, int(drawn * scale)), drawn >= VIDEO_FROM))
    return out


def make_files(work: Path, clients: int, count: int, scale: float, seed: int) -> list[Path]:
    """One card folder per client, the files dealt round-robin; returns the folders."""
    jpegs = sorted(p for p in JPEGS.glob("*.jpg") if p.read_bytes()[:2] == b"\xff\xd8")
    cards = [work / "cards" / f"client{c:02d}" for c in range(clients)]
    for card in cards:
        card.mkdir(parents=True)
    for i, (size, video) in enumerate(sizes(count, scale, seed)):
        fill = random.Random(seed * 100_003 + i)
        card = cards[i % clients]
        if video:
            mp4 = VIDEOS[i % len(VIDEOS)].read_bytes()
            pad = max(0, size - len(mp4) - 8)
            body = mp4 + struct.pack(">I", pad + 8) + b"free" + fill.randbytes(pad)
            (card / f"CLIP{i:04d}.MP4").write_bytes(body)
        else:
            jpeg = jpegs[i % len(jpegs)].read_bytes()
            at = _after_app_segments(jpeg)
            pad = max(0, size - len(jpeg) - 64)
            extra = _segments(b"\xff\xfe", f"custody service benchmark {seed} {i}".encode())
            extra += _segments(b"\xff\xef", fill.randbytes(pad - pad // 65533 * 4))
            (card / f"IMG_{i:04d}.JPG").write_bytes(jpeg[:at] + extra + jpeg[at:])
    return cards


# The prepared archive ---------------------------------------------------------------------------


class Site:
    """The prepared archive (admin, one field custodian per client, a reviewer, a few seed items
    the readers read), copied for each run; the clients' environments."""

    def __init__(self, work: Path, clients: int) -> None:
        self.work = work
        self.template = work / "template"
        keys = work / "keys"
        admin = keys / "admin.key"
        write_new_key(admin, "Bench Admin", PASSPHRASE)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "CUSTODY_KEY": str(admin),
                    "CUSTODY_PASSPHRASE": PASSPHRASE,
                    "CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE,
                    "CUSTODY_ARCHIVE": str(self.template)}
        self.custody("init", "--name", "Bench Documentation Centre")
        self.custody("ingest", *map(str, SEEDS))
        self.client_envs = []
        for c in range(clients):
            key = keys / f"field{c:02d}.key"
            write_new_key(key, f"Field Custodian {c}", PASSPHRASE)
            self.custody("enroll", f"{key}.pub", "--role", "field")
            self.client_envs.append({**self.env, "CUSTODY_KEY": str(key)})
        self.reviewer = write_new_key(keys / "reviewer.key", "Rami Reviewer", PASSPHRASE)
        self.custody("enroll", str(keys / "reviewer.key.pub"), "--role", "reviewer")
        listed = subprocess.run(self.command("list", "--json"), env=self.env, check=True,
                                capture_output=True, text=True).stdout
        self.seed_items = [i["sha256"] for i in json.loads(listed)]
        self.runs = 0

    @staticmethod
    def command(*args: str) -> list[str]:
        return [sys.executable, "-P", "-m", "custody", *args]

    def custody(self, *args: str, archive: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "CUSTODY_ARCHIVE": str(archive or self.template)}
        done = subprocess.run(self.command(*args), env=env, capture_output=True, text=True,
                              check=False)
        if done.returncode:
            sys.exit(f"service: custody {' '.join(args)} failed ({done.returncode}):\n"
                     f"{done.stderr[-2000:]}")
        return done

    def fresh(self) -> tuple[Path, list[dict[str, str]]]:
        """A copy of the prepared archive, and client environments with empty resume caches."""
        self.runs += 1
        run = self.work / f"run{self.runs}"
        shutil.copytree(self.template, run / "archive")
        envs = [{**env, "XDG_CACHE_HOME": str(run / f"cache{c:02d}")}
                for c, env in enumerate(self.client_envs)]
        return run, envs


class Served:
    """`custody serve` on a free loopback port (again on the same port after a kill)."""

    def __init__(self, site: Site, run: Path) -> None:
        self.site, self.run = site, run
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Served:
        self.proc = subprocess.Popen(
            [*self.site.command("--archive", str(self.run / "archive"), "serve", "--listen",
                                f"127.0.0.1:{self.port}", "--rate", "100000", "--burst",
                                "100000", "--upload-dir", str(self.run / "uploads"),
                                "--access-log", str(self.run / "access.log"))],
            env=self.site.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.run / "serve.err", "ab"))  # noqa: SIM115 - the child keeps it
        wait_until_up(f"{self.url}/openapi.json", self.proc)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"service: the server exited {proc.returncode} at start")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    sys.exit(f"service: no server answered at {url}")


# The readers ----------------------------------------------------------------------------------


class Readers:
    """Reviewer threads: search, then read one item, every `every` seconds each; latencies kept."""

    def __init__(self, base: str, site: Site, count: int, every: float) -> None:
        self.base, self.site, self.count, self.every = base, site, count, every
        self.item_ms: list[float] = []
        self.search_ms: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def item(self, client: httpx.Client, sha: str) -> float:
        started = time.perf_counter()
        response = client.get(f"/api/v1/items/{sha}")
        ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            self.failures += 1
        return ms

    def idle(self, requests: int) -> list[float]:
        with self.client() as c:
            return [self.item(c, self.site.seed_items[n % len(self.site.seed_items)])
                    for n in range(requests)]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, auth=RequestSigner(self.site.reviewer),
                            timeout=120)

    def _loop(self, n: int) -> None:
        pick = random.Random(n)
        with self.client() as c:
            while not self._stop.wait(self.every * pick.uniform(0.5, 1.5)):
                started = time.perf_counter()
                if c.get("/api/v1/search", params={"mime": "image/jpeg"}).status_code != 200:
                    self.failures += 1
                self.search_ms.append((time.perf_counter() - started) * 1000)
                self.item_ms.append(self.item(c, pick.choice(self.site.seed_items)))

    def __enter__(self) -> Readers:
        self._threads = [threading.Thread(target=self._loop, args=(n,), daemon=True)
                         for n in range(self.count)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


# The contenders -------------------------------------------------------------------------------


def start_pushes(cards: list[Path], envs: list[dict[str, str]], url: str,
                 out: Path) -> list[subprocess.Popen[bytes]]:
    out.mkdir(exist_ok=True)
    return [subprocess.Popen(
        Site.command("push", str(card), "--server", url, "--json"), env=env,
        stdin=subprocess.DEVNULL, stdout=open(out / f"{card.name}.jsonl", "wb"),  # noqa: SIM115
        stderr=open(out / f"{card.name}.err", "wb"))  # noqa: SIM115
        for card, env in zip(cards, envs, strict=True)]


def results(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for f in sorted(out.glob("*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]


def custody_run(site: Site, cards: list[Path], args: argparse.Namespace,
                latencies: dict[str, list[float]]) -> Figures:
    run, envs = site.fresh()
    server = Served(site, run).start()
    try:
        readers = Readers(server.url, site, args.readers, args.read_every)
        latencies["idle"] += readers.idle(args.idle_requests)
        with readers:
            started = time.perf_counter()
            pushes = start_pushes(cards, envs, server.url, run / "out")
            codes = [p.wait() for p in pushes]
            seconds = time.perf_counter() - started
    finally:
        server.stop()
    said = Counter(str(r["status"]) for r in results(run / "out"))
    if any(codes) or said != Counter({"new": args.files}) or readers.failures:
        sys.exit(f"service: the custody run failed: exits {codes}, statuses {dict(said)}, "
                 f"{readers.failures} failed reads; see {run}")
    latencies["load"] += readers.item_ms
    latencies["search"] += readers.search_ms
    shutil.rmtree(run)
    return {"seconds": seconds}


def static_run(work: Path, cards: list[Path]) -> Figures:
    root = work / "static"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "wsgidav.server.server_cli", "--host", "127.0.0.1", "--port",
         str(port), "--root", str(root), "--auth", "anonymous", "--no-config", "-q", "-q"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", server)  # type: ignore[arg-type]
        started = time.perf_counter()
        clients = []
        for card in cards:
            pairs = [a for f in sorted(card.iterdir())
                     for a in ("-T", str(f), f"http://127.0.0.1:{port}/{card.name}-{f.name}")]
            clients.append(subprocess.Popen(["curl", "-sS", "-f", "-H", "Expect:", *pairs],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        errors = [c.communicate()[1] for c in clients]
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(30)
    stored = sum(1 for _ in root.iterdir())
    if any(c.returncode for c in clients) or stored != sum(len(list(c.iterdir())) for c in cards):
        sys.exit(f"service: the static PUTs failed ({stored} stored): {errors}")
    shutil.rmtree(root)
    return {"seconds": seconds}


# The fault run --------------------------------------------------------------------------------


def fault_run(site: Site, cards: list[Path], args: argparse.Namespace) -> bool:
    run, envs = site.fresh()
    server = Served(site, run).start()
    ok = True
    try:
        started = time.perf_counter()
        pushes = start_pushes(cards, envs, server.url, run / "first")
        while landed(run / "uploads") < max(1, args.files // 3):
            if all(p.poll() is not None for p in pushes):
                sys.exit("service: the pushes ended before the kill")
            time.sleep(0.05)
        at_kill = landed(run / "uploads")
        server.kill()
        killed = pushes[::4]  # one laptop in four dies with the server
        for push in killed:
            push.send_signal(signal.SIGKILL)
        server.start()
        for push in pushes:
            push.wait()
        first = results(run / "first")
        rerun_started = time.perf_counter()
        reruns = start_pushes(cards, envs, server.url, run / "rerun")
        codes = [p.wait() for p in reruns]
        seconds, rerun_seconds = (time.perf_counter() - t for t in (started, rerun_started))
    finally:
        server.stop()
    again = results(run / "rerun")
    said = Counter(str(r["status"]) for r in again)
    resent = sum(int(r["bytes_sent"]) for r in again)  # type: ignore[call-overload]
    skipped = sum(int(r["bytes_skipped"]) for r in again)  # type: ignore[call-overload]
    files = {str(r["sha256"]) for r in again}
    archive = run / "archive"
    log = site.custody("log", "--json", archive=archive).stdout.splitlines()
    ingests = Counter(e["item"] for e in map(json.loads, log) if e["action"] == "ingest")
    items = {i["sha256"] for i in json.loads(site.custody("list", "--json",
                                                          archive=archive).stdout)}
    objects = {p.name for p in (archive / "objects" / "sha256").rglob("*") if p.is_file()}
    verify = subprocess.run(site.command("verify"), env={**site.env, "CUSTODY_ARCHIVE":
                            str(archive)}, capture_output=True, text=True, check=False)
    expected = files | set(site.seed_items)
    checks = {
        "every rerun exited 0 and said new or present": not any(codes)
        and set(said) <= {"new", "present"} and len(again) == args.files,
        "each file's ingest recorded once": len(files) == args.files
        and all(ingests[f] == 1 for f in files),
        "items = the files + the seed items": items == expected,
        "objects = the files + the seed items": objects == expected,
        "custody verify exit 0": verify.returncode == 0,
    }
    print(f"fault run: {args.clients} clients, {args.files} files; the server SIGKILLed with "
          f"{at_kill} landed, {len(killed)} clients killed with it; restarted on the same archive"
          f" and port; load now {load()}")
    survivors = [p.returncode for p in pushes if p not in killed]
    print(f"  first runs' statuses: {dict(Counter(str(r['status']) for r in first))} (the "
          f"killed clients' up to their kill); of the {len(survivors)} not killed, "
          f"{survivors.count(0)} exited 0 by themselves")
    print(f"  reruns: {dict(said)}; bytes sent {resent / 1e6:.1f} MB, skipped (already there) "
          f"{skipped / 1e6:.1f} MB; reruns took {rerun_seconds:.1f} s, the whole run "
          f"{seconds:.1f} s")
    for what, held in checks.items():
        print(f"  {what}: {'yes' if held else 'NO'}")
        ok = ok and held
    print(flush=True)
    if not ok:
        say(f"service: the fault run failed; kept {run}; verify said:\n{verify.stdout[-2000:]}")
    else:
        shutil.rmtree(run)
    return ok


def landed(uploads: Path) -> int:
    count = 0
    for info in uploads.glob("*.json"):
        try:
            count += json.loads(info.read_text())["state"] in ("new", "present")
        except (ValueError, KeyError, FileNotFoundError):
            continue
    return count


# The report -----------------------------------------------------------------------------------


def throughput(runs: dict[str, list[Figures]], files: int, megabytes: float) -> None:
    for unit, amount in (("uploads/s", files), ("MB/s", megabytes)):
        base = statistics.median(amount / r["seconds"] for r in runs[STATIC])
        for name, values in runs.items():
            xs = [amount / r["seconds"] for r in values]
            print(f"  {name:30} {statistics.median(xs):8.2f} {unit} ({min(xs):.2f}.."
                  f"{max(xs):.2f})  x{statistics.median(xs) / base:.2f} of the static server")
    print(flush=True)


def latency(latencies: dict[str, list[float]], args: argparse.Namespace) -> None:
    idle, loaded = latencies["idle"], latencies["load"]
    print(f"item request (GET /api/v1/items/{{sha256}}, signed), pooled over {args.rounds} "
          f"round(s): idle {len(idle)} in a row, under load {len(loaded)} from {args.readers} "
          f"reader(s) while {args.clients} clients pushed")
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        a, b = percentile(idle, q), percentile(loaded, q)
        print(f"  {label}: idle {a:8.1f} ms   under load {b:8.1f} ms   x{b / a:.1f} of idle")
    search = latencies["search"]
    print(f"  search (GET /api/v1/search?mime=image/jpeg) under load: p50 "
          f"{percentile(search, 0.5):.1f} ms, p99 {percentile(search, 0.99):.1f} ms "
          f"({len(search)} requests)")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    for name, value in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None,
                            help=f"default {value} ({QUICK[name]} with --quick)")
    parser.add_argument("--read-every", type=float, default=0.25,
                        help="seconds between one reader's search+read (about) [0.25]")
    parser.add_argument("--seed", type=int, default=16, help="the size and content seed")
    parser.add_argument("--no-faults", action="store_true", help="skip the fault run")
    parser.add_argument("--dir", type=Path, default=None, help="work folder")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if shutil.which("curl") is None:
        sys.exit("service: curl is needed for the static server's PUTs")
    print(f"machine: {os.cpu_count()} cores; load {load()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="custody-service-") as tmp:
        work = Path(tmp)
        say("service: making the files and the archive")
        cards = make_files(work, args.clients, args.files, args.scale, args.seed)
        every = [f for c in cards for f in c.iterdir()]
        megabytes = sum(f.stat().st_size for f in every) / 1e6
        videos = sum(f.suffix == ".MP4" for f in every)
        site = Site(work, args.clients)
        subprocess.run(["cat", *map(str, every)], stdout=subprocess.DEVNULL, check=True)
        latencies: dict[str, list[float]] = {"idle": [], "load": [], "search": []}
        contenders: dict[str, Callable[[], Figures]] = {
            CUSTODY: lambda: custody_run(site, cards, args, latencies),
            STATIC: lambda: static_run(work, cards),
        }
        runs = interleave(contenders, args.rounds)
        report(f"upload of {args.files} files ({videos} MP4, {args.files - videos} JPEG; "
               f"{megabytes:,.0f} MB; {min(f.stat().st_size for f in every) / 1e3:,.0f} KB.."
               f"{max(f.stat().st_size for f in every) / 1e6:,.2f} MB) by {args.clients} "
               f"concurrent clients", runs, STATIC)
        throughput(runs, args.files, megabytes)
        latency(latencies, args)
        if not args.no_faults and not fault_run(site, cards, args):
            sys.exit(1)


if __name__ == "__main__":
    main()
