"""Crash and concurrency: SIGKILL at any moment of an ingest, export, import, accept or checkpoint
never leaves an inconsistent archive, and two ingests at once both succeed and lose nothing.

An ingest is killed once in each of its phases, each found by watching the archive (an object
being written, the n-th object stored, the ledger being written, the index being updated, ...),
so a few kills cover the whole run whatever the machine's load; each kill gets its own copy of an
archive prepared once per module. A larger seeded run (each phase several times, at seeded delays
after it starts): CUSTODY_CRASH_KILLS=50 CUSTODY_CRASH_SEED=7 (docs/TESTING.md). Export and
import are killed once in each of their phases the same way; accept and checkpoint once in each
fifth of a run timed beforehand.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from custody.ops.archive import Archive
from custody.ops.verify import audit

from .conftest import DATA, Cli, copy_archive

SEED = int(os.environ.get("CUSTODY_CRASH_SEED", "20161003"))


def _popen(cli, *args):
    return subprocess.Popen([sys.executable, "-m", "custody", *map(str, args)], env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _fill(folder, rng, n, tag):
    """n files: real media with a unique tail (so each is new content) and random blobs."""
    folder.mkdir(parents=True, exist_ok=True)
    media = sorted(p for p in (DATA / "media").iterdir() if p.is_file())
    for i in range(n):
        if i % 3 == 0:
            data = rng.randbytes(rng.randint(1, 3 << 20))
        else:
            data = media[i % len(media)].read_bytes() + f"{tag}-{i}".encode()
        (folder / f"{tag}-{i:03d}.bin").write_bytes(data)


def _stored(archive):
    return sum(len(os.listdir(d)) for d in (archive / "objects" / "sha256").iterdir())


def _size(path):
    return path.stat().st_size if path.exists() else 0


def _index(archive):
    return _size(archive / "index.db") + _size(archive / "index.db-wal")


# An ingest's phases, each a test on the archive (`at`: the sizes of its files before the run).
PHASES = {
    "starting: nothing touched yet": lambda archive, at: True,
    "the first object being written": lambda archive, at: any((archive / "objects" / "tmp").iterdir()),
    "one object stored": lambda archive, at: _stored(archive) >= at["objects"] + 1,
    "a later object being written": lambda archive, at: (
        _stored(archive) >= at["objects"] + 3 and any((archive / "objects" / "tmp").iterdir())),
    "half the objects stored": lambda archive, at: _stored(archive) >= at["objects"] + 6,
    "every object stored": lambda archive, at: _stored(archive) >= at["objects"] + 12,
    "the ledger being written": lambda archive, at: _size(archive / "ledger.db-wal") != at["wal"],
    "the search index being written": lambda archive, at: _index(archive) != at["index"],
}
KILLS = int(os.environ.get("CUSTODY_CRASH_KILLS", str(len(PHASES))))


def _kill_in_phase(cli, folder, phase, delay):
    """Start `custody ingest FOLDER`, SIGKILL it `delay` seconds after PHASE begins (or once it
    has exited, if it never does); its stdout, and True if it was still running at the kill."""
    archive = cli.archive
    at = {"objects": _stored(archive), "wal": _size(archive / "ledger.db-wal"),
          "index": _index(archive)}
    proc = _popen(cli, "ingest", folder)
    began = PHASES[phase]
    while proc.poll() is None and not began(archive, at):
        time.sleep(0.001)
    time.sleep(delay)
    running = proc.poll() is None
    stdout, _ = _kill(proc)
    return stdout, running


def _kill(proc):
    with contextlib.suppress(ProcessLookupError):  # it may have finished, group and all
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()


@pytest.fixture(scope="module")
def ingest_run(tmp_path_factory, session_made_key):
    """An initialised archive and a folder of 12 new files for it (a third of them random blobs of
    up to 3 MB, so writing an object takes a moment)."""
    tmp = tmp_path_factory.mktemp("crash-ingest")
    prepared = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    session_made_key(prepared.key, "Alice Admin")
    prepared("init", "--name", "Test Documentation Centre", check=True)
    folder = tmp / "card"
    _fill(folder, random.Random(SEED), 12, "card")
    return prepared, folder


@pytest.mark.slow
def test_sigkill_in_every_phase_of_an_ingest_leaves_a_consistent_archive(ingest_run, tmp_path):
    prepared, folder = ingest_run
    rng = random.Random(SEED)
    names = list(PHASES)
    killed_mid_run = 0
    for n in range(KILLS):
        phase = names[n % len(names)]
        # the start and any repeat: a seeded moment after the phase begins
        delay = rng.uniform(0.0, 0.25) if n % len(names) == 0 or n >= len(names) else 0.0
        cli = copy_archive(prepared, tmp_path / f"kill{n}")
        stdout, running = _kill_in_phase(cli, folder, phase, delay)
        killed_mid_run += running
        archive = Archive.open(cli.archive)
        report = audit(archive)
        assert report.ok, f"killed when {phase} (+{delay:.2f} s): {report.problems}"
        # every file the command said it stored has its entry and a sound object
        stored = {line.split()[1] for line in stdout.splitlines() if line.startswith("new ")}
        recorded = set(archive.ledger.items())
        assert stored <= recorded, f"killed when {phase}: reported as stored but not in the ledger"
        for item in recorded:
            archive.objects.check(item)
        # an interrupted run's leftovers are recorded by simply ingesting again
        again = cli("ingest", folder, "--json", check=True).json()
        assert [f for f in again["files"] if f["status"] == "failed"] == [], phase
        assert set(Archive.open(cli.archive).ledger.items()) == {f["sha256"] for f in
                                                                 again["files"]}, phase
        final = audit(Archive.open(cli.archive))
        assert final.ok, f"killed when {phase}, then ingested again: {final.problems}"
        assert not [x for x in final.notices if "has no ingest entry" in x], (phase, final.notices)
    assert killed_mid_run >= KILLS // 2, "most kills should land while the ingest is running"


@pytest.mark.slow
def test_two_ingests_at_once_both_succeed_and_lose_nothing(cli_archive, tmp_path):
    cli = cli_archive
    rng = random.Random(7)
    a, b = tmp_path / "a", tmp_path / "b"
    _fill(a, rng, 60, "a")
    _fill(b, rng, 60, "b")
    shared = sorted(a.iterdir())[:10]
    for p in shared:  # the same content ingested by both at once: one ingest, one sighting
        (b / ("same-" + p.name)).write_bytes(p.read_bytes())
    pa, pb = _popen(cli, "ingest", a, "--json"), _popen(cli, "ingest", b, "--json")
    out_a, err_a = pa.communicate(timeout=300)
    out_b, err_b = pb.communicate(timeout=300)
    assert pa.returncode == 0, err_a
    assert pb.returncode == 0, err_b
    import json

    files = json.loads(out_a)["files"] + json.loads(out_b)["files"]
    assert len(files) == 130 and all(f["status"] in ("new", "present") for f in files)
    archive = Archive.open(cli.archive)
    items = archive.ledger.items()
    distinct = {f["sha256"] for f in files}
    assert set(items) == distinct and len(items) == len(distinct) == 120
    sightings = archive.ledger.rows_with_action("sighting")
    assert len(sightings) == 10
    assert archive.ledger.size() == 1 + 130
    assert audit(archive).ok


# Killed during export, import, accept and checkpoint ----------------------------------------------

OP_KILLS = 5  # per command: one per phase (export, import) or per fifth of a timed run


def _kill_at(cli, rng, duration, n, *args):
    """Start `custody ARGS`, SIGKILL it inside the n-th of OP_KILLS slices of 30-85% of
    `duration` (the first part is Python starting up); True if it was still running then."""
    proc = _popen(cli, *args)
    slice_ = 0.55 / OP_KILLS
    time.sleep((0.3 + slice_ * n + rng.uniform(0.0, slice_)) * duration)
    running = proc.poll() is None
    _kill(proc)
    return running


def _kill_when(cli, began, delay, *args):
    """Start `custody ARGS`, SIGKILL it `delay` seconds after began() turns true (or once it has
    exited, if it never does); True if it was still running at the kill."""
    proc = _popen(cli, *args)
    while proc.poll() is None and not began():
        time.sleep(0.001)
    time.sleep(delay)
    running = proc.poll() is None
    _kill(proc)
    return running


def _timed(cli, *args):
    start = time.monotonic()
    cli(*args, check=True, timeout=300)
    return time.monotonic() - start


def _sound(archive_path):
    """The archive audits clean: notices (objects an interrupted import stored, not yet
    recorded) are legitimately pending, problems are not."""
    report = audit(Archive.open(archive_path))
    assert report.ok, report.problems


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith(".custody-partial") or p.name.startswith(".custody-unpack-"))


@pytest.fixture(scope="module")
def _stock(tmp_path_factory, session_made_key):
    """Made once per module: an archive of 8 items (a few MB, so an export takes a moment), and
    Bob, an investigator enrolled in it."""
    tmp = tmp_path_factory.mktemp("crash-stock")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    session_made_key(cli.key, "Alice Admin")
    cli("init", "--name", "Test Documentation Centre", check=True)
    _fill(tmp / "stock", random.Random(1), 8, "stock")
    done = cli("ingest", tmp / "stock", "--json", check=True).json()
    items = [f["sha256"] for f in done["files"]]
    session_made_key(tmp / "keys" / "bob.key", "Bob Investigator")
    cli("enroll", tmp / "keys" / "bob.key.pub", "--role", "investigator", check=True)
    return cli, items


@pytest.fixture
def stocked(_stock, tmp_path):
    """A copy of the module's stocked archive (and its keys) for this test, with Bob's key
    (`cli.bob`, an environment) and the items (`cli.items`)."""
    prepared, items = _stock
    cli = copy_archive(prepared, tmp_path)
    cli.items = items
    cli.bob = {"CUSTODY_KEY": str(tmp_path / "keys" / "bob.key")}
    return cli


@pytest.mark.slow
def test_sigkill_during_export_leaves_no_half_package_and_a_retry_succeeds(stocked, tmp_path):
    cli, rng = stocked, random.Random(11)
    out = tmp_path / "out"
    out.mkdir()
    killed = 0
    for n in range(OP_KILLS):  # one kill in each phase of the export, watched on the disk
        target = out / ["pkg{}", "pkg{}.zip", "pkg{}.tar"][n % 3].format(n)
        wal = _size(cli.archive / "ledger.db-wal")
        phases = [("starting", lambda: True, rng.uniform(0.0, 0.25)),
                  ("the package being written", lambda: _leftovers(out) != [], 0.0),
                  ("the package half written", lambda: _leftovers(out) != [], rng.uniform(0.05, 0.3)),
                  ("the export being recorded",
                   lambda: _size(cli.archive / "ledger.db-wal") != wal, 0.0),  # noqa: B023
                  ("the package in place", target.exists, 0.0)]
        _phase, began, delay = phases[n % len(phases)]
        args = ("export", *cli.items, "--purpose", f"handover {n}", "-o", target)
        killed += _kill_when(cli, began, delay, *args)
        _sound(cli.archive)
        if target.exists():  # the kill came after the rename: then it is the whole package
            cli("verify-package", target, check=True)
        else:  # nothing under the final name; what the kill left must not block the retry
            cli(*args, check=True, timeout=300)
            cli("verify-package", target, check=True)
        assert _leftovers(out) == []
    assert killed >= 2, "kills should land while the export is running"
    cli("verify", check=True)


@pytest.mark.slow
def test_sigkill_during_import_stores_nothing_half_and_a_retry_succeeds(stocked, tmp_path):
    cli, rng = stocked, random.Random(12)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    package = incoming / "pkg.zip"
    cli("export", *cli.items, "--purpose", "to bob", "-o", package, check=True)
    prepared = type(cli)(tmp_path, tmp_path / "bob-prepared", tmp_path / "keys" / "bob.key")
    prepared("init", "--name", "Bob's archive", check=True)
    size = prepared("log", "--json", check=True).stdout.count("\n")
    killed = 0
    for n in range(OP_KILLS):  # one kill in each phase of the import, each on a fresh receiver
        receiver = copy_archive(prepared, tmp_path / f"bob{n}")
        bob = receiver.archive
        phases = [("starting", lambda: True, rng.uniform(0.0, 0.25)),
                  ("the package being unpacked", lambda: _leftovers(incoming) != [], 0.0),
                  ("an object stored", lambda: _stored(bob) > 0, 0.0),  # noqa: B023
                  ("the ledger being written",
                   lambda: _size(bob / "ledger.db-wal") > 0, 0.0),  # noqa: B023
                  ("the search index being written", lambda: _index(bob) > 0, 0.0)]  # noqa: B023
        _phase, began, delay = phases[n % len(phases)]
        killed += _kill_when(receiver, began, delay, "import", package)
        _sound(receiver.archive)
        log = [json.loads(x) for x in receiver("log", "--json", check=True).stdout.splitlines()]
        firsts = [e for e in log[size:] if e["action"] in ("received", "sighting")]
        assert len(firsts) % len(cli.items) == 0, "an import recorded part of a package"
        done = receiver("import", package, "--json", check=True, timeout=300).json()
        assert done["received"] + done["present"] == len(cli.items)
        assert _leftovers(incoming) == []
        received = {e["item"] for e in (json.loads(x) for x in receiver(
            "log", "--json", check=True).stdout.splitlines()) if e["action"] == "received"}
        assert received == set(cli.items)
        assert audit(Archive.open(receiver.archive)).ok
    assert killed >= 2, "kills should land while the import is running"


@pytest.mark.slow
def test_sigkill_during_accept_leaves_custody_whole_and_a_retry_succeeds(stocked):
    cli, rng = stocked, random.Random(13)
    offers = [cli("transfer", item, "--to", "Bob Investigator", "--purpose", "handover",
                  "--json", check=True).json()[0]["offer"] for item in cli.items[:OP_KILLS]]
    duration = _timed(cli, "transfers", "--json") * 1.5
    for n, offer in enumerate(offers):
        _kill_at(_as(cli, cli.bob), rng, duration, n, "accept", str(offer))
        _sound(cli.archive)
        state = {t["offer"]: t["state"] for t in cli("transfers", "--json", check=True).json()}
        assert state[offer] in ("pending", "accepted")
        again = _as(cli, cli.bob)("accept", str(offer), "--json", check=True).json()
        assert again[0]["offer"] == offer
        state = {t["offer"]: t["state"] for t in cli("transfers", "--json", check=True).json()}
        assert state[offer] == "accepted"
    cli("verify", check=True)


@pytest.mark.slow
def test_sigkill_during_checkpoint_keeps_the_log_provable_and_a_retry_succeeds(stocked):
    cli, rng = stocked, random.Random(14)
    duration = _timed(cli, "checkpoint")
    for n in range(OP_KILLS):
        cli("note", cli.items[n], "--text", f"note {n}", check=True)  # something to cover
        _kill_at(cli, rng, duration, n, "checkpoint")
        _sound(cli.archive)
        done = cli("checkpoint", "--json", check=True).json()
        assert done["size"] == Archive.open(cli.archive).ledger.size()
    cli("verify", check=True)
    cli("prove", cli.items[0], "-o", cli.tmp / "proof.json", check=True)


def _as(cli, env):
    """`cli` acting with another key."""
    other = type(cli)(cli.tmp, cli.archive, cli.key)
    other.env = {**cli.env, **env}
    return other
