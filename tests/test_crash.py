"""Crash and concurrency: SIGKILL at random moments never leaves an inconsistent archive, and two
ingests at once both succeed and lose nothing."""

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

from .conftest import DATA

KILLS = 50


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


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_consistent_archive(cli_archive, tmp_path):
    cli = cli_archive
    rng = random.Random(20161003)
    archive = Archive.open(cli.archive)
    # time one whole run first, so the kills land inside a run on a fast machine as on a slow one
    _fill(tmp_path / "calibrate", rng, 12, "calibrate")
    started = time.monotonic()
    cli("ingest", tmp_path / "calibrate", check=True)
    duration = time.monotonic() - started
    killed_mid_run = 0
    for round_no in range(KILLS):
        folder = tmp_path / f"batch{round_no}"
        _fill(folder, rng, 12, f"r{round_no}")
        proc = _popen(cli, "ingest", folder)
        time.sleep(rng.uniform(0.0, 1.1) * duration)
        if proc.poll() is None:
            killed_mid_run += 1
        with contextlib.suppress(ProcessLookupError):  # it may have finished, group and all
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        report = audit(archive)
        assert report.ok, f"round {round_no}: {report.problems}"
        # every file the command said it stored has its entry and a sound object
        stored = {line.split()[1] for line in stdout.splitlines() if line.startswith("new ")}
        recorded = set(archive.ledger.items())
        assert stored <= recorded, f"round {round_no}: reported as stored but not in the ledger"
        for item in recorded:
            archive.objects.check(item)
    assert killed_mid_run >= KILLS // 2, "most kills should land while the ingest is running"
    # an interrupted run's leftovers are recorded by simply ingesting again
    r = cli("ingest", *[tmp_path / f"batch{i}" for i in range(KILLS)], check=True)
    assert "FAILED" not in r.stdout
    final = cli("verify", "--json", check=True).json()
    assert final["ok"]
    assert not [n for n in final["notices"] if "has no ingest entry" in n]


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

OP_KILLS = 5  # per command; each kill lands at a random moment of a run timed beforehand


def _kill_at_random(cli, rng, duration, *args):
    """Start `custody ARGS`, SIGKILL it after a random part of `duration`; True if it was
    still running then."""
    proc = _popen(cli, *args)
    time.sleep(rng.uniform(0.3, 0.85) * duration)  # the first part is Python starting up
    running = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):  # it may have finished, group and all
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
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


@pytest.fixture
def stocked(cli_archive, tmp_path):
    """An archive of 8 items (a few MB, so an export takes a moment), and Bob, an investigator
    enrolled in it, with his own archive to import into."""
    cli = cli_archive
    _fill(tmp_path / "stock", random.Random(1), 8, "stock")
    cli("ingest", tmp_path / "stock", check=True)
    cli.items = [json.loads(line)["item"] for line in
                 cli("log", "--json", check=True).stdout.splitlines()
                 if json.loads(line)["action"] == "ingest"]
    bob = tmp_path / "keys" / "bob.key"
    cli("key", "new", "--name", "Bob Investigator", "-o", bob, check=True)
    cli("enroll", str(bob) + ".pub", "--role", "investigator", check=True)
    cli.bob = {"CUSTODY_KEY": str(bob)}
    return cli


@pytest.mark.slow
def test_sigkill_during_export_leaves_no_half_package_and_a_retry_succeeds(stocked, tmp_path):
    cli, rng = stocked, random.Random(11)
    out = tmp_path / "out"
    out.mkdir()
    duration = _timed(cli, "export", *cli.items, "--purpose", "timing", "-o", out / "timing")
    killed = 0
    for n in range(OP_KILLS):
        target = out / ["pkg{}", "pkg{}.zip", "pkg{}.tar"][n % 3].format(n)
        args = ("export", *cli.items, "--purpose", f"handover {n}", "-o", target)
        killed += _kill_at_random(cli, rng, duration, *args)
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
    receiver = type(cli)(tmp_path, tmp_path / "bob-archive", tmp_path / "keys" / "bob.key")
    receiver("init", "--name", "Bob's archive", check=True)
    size = receiver("log", "--json", check=True).stdout.count("\n")
    duration = _timed(receiver, "verify-package", package)
    killed = 0
    for _ in range(OP_KILLS):
        killed += _kill_at_random(receiver, rng, duration * 1.5, "import", package)
        _sound(receiver.archive)
        log = [json.loads(x) for x in receiver("log", "--json", check=True).stdout.splitlines()]
        firsts = [e for e in log[size:] if e["action"] in ("received", "sighting")]
        assert len(firsts) % len(cli.items) == 0, "an import recorded part of a package"
        done = receiver("import", package, "--json", check=True, timeout=300).json()
        assert done["received"] + done["present"] == len(cli.items)
        assert _leftovers(incoming) == []
    assert killed >= 2, "kills should land while the import is running"
    received = {e["item"] for e in (json.loads(x) for x in receiver(
        "log", "--json", check=True).stdout.splitlines()) if e["action"] == "received"}
    assert received == set(cli.items)
    receiver("verify", check=True)


@pytest.mark.slow
def test_sigkill_during_accept_leaves_custody_whole_and_a_retry_succeeds(stocked):
    cli, rng = stocked, random.Random(13)
    offers = [cli("transfer", item, "--to", "Bob Investigator", "--purpose", "handover",
                  "--json", check=True).json()[0]["offer"] for item in cli.items[:OP_KILLS]]
    duration = _timed(cli, "transfers", "--json") * 1.5
    for offer in offers:
        _kill_at_random(_as(cli, cli.bob), rng, duration, "accept", str(offer))
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
        _kill_at_random(cli, rng, duration, "checkpoint")
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
