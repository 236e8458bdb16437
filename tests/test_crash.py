"""Crash and concurrency: SIGKILL at random moments never leaves an inconsistent archive, and two
ingests at once both succeed and lose nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from custody.archive import Archive
from custody.verify import audit

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
    killed_mid_run = 0
    for round_no in range(KILLS):
        folder = tmp_path / f"batch{round_no}"
        _fill(folder, rng, 12, f"r{round_no}")
        proc = _popen(cli, "ingest", folder)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            killed_mid_run += 1
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
