"""`custody push` against a real `custody serve`: signed locally, sent over tus, resumed after the
push or the server is SIGKILLed mid-upload, stored once, `present` when pushed again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .conftest import DATA, Cli, one_line_error
from .upload_helpers import Server

CHUNK = "32768"  # small chunks: a 4 MB file is 128 signed PATCHes, so a kill lands mid-upload


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """Alice's archive served; Farah (field) pushes from her laptop's card folder."""
    tmp = tmp_path_factory.mktemp("push")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Aleppo Documentation Centre", check=True)
    farah = tmp / "keys" / "farah.key"
    cli("key", "new", "--name", "Farah Field", "-o", farah, check=True)
    cli("enroll", str(farah) + ".pub", "--role", "field", check=True)
    cli.farah = {"CUSTODY_KEY": str(farah), "XDG_CACHE_HOME": str(tmp / "farah-cache")}
    cli.server = Server(cli.archive, tmp / "uploads").start()
    try:
        yield cli
    finally:
        cli.server.stop()


def _card(tmp_path, big_name: str) -> tuple:
    card = tmp_path / "DCIM"
    card.mkdir()
    for name in ("aleppo-gps.jpg", "carbon-south-west.jpg"):
        shutil.copy(DATA / "media" / name, card / name.upper())
    big = card / big_name
    big.write_bytes(os.urandom(4 << 20))
    return card, big


def _push_args(cli, card) -> list[str]:
    return ["push", str(card), "--server", cli.server.url, "--chunk-size", CHUNK, "--json"]


def _start_push(cli, card) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "custody", *_push_args(cli, card)],
                            env={**cli.env, **cli.farah}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def _wait_mid_upload(cli, length: int, timeout: float = 60) -> None:
    """Until the server has made part of an upload of `length` bytes durable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for info in cli.server.upload_dir.glob("*.json"):
            try:
                upload = json.loads(info.read_text())
            except (ValueError, FileNotFoundError):
                continue
            if upload["length"] == length and 0 < upload["offset"] < length // 2:
                return
        time.sleep(0.02)
    raise AssertionError("the push never got part-way")


def _results(result) -> dict[str, dict]:
    return {os.path.basename(r["path"]): r for r in map(json.loads, result.stdout.splitlines())}


def _history(cli, sha: str) -> list[str]:
    return [e["action"] for e in cli("show", sha, "--json", check=True).json()["history"]]


def test_a_killed_push_reruns_sending_only_the_missing_bytes_and_stores_once(field, tmp_path):
    card, big = _card(tmp_path, "CLIP0001.MOV")
    push = _start_push(field, card)
    _wait_mid_upload(field, big.stat().st_size)
    push.send_signal(signal.SIGKILL)
    push.wait()
    rerun = field(*_push_args(field, card), env=field.farah)
    assert rerun.code == 0, rerun.stderr
    got = _results(rerun)
    clip = got.pop("CLIP0001.MOV")
    # the photos (sorted first) had landed before the kill: held now, so not sent again
    assert [r["status"] for r in got.values()] == ["present", "present"]
    assert all(r["bytes_sent"] == 0 for r in got.values())
    assert clip["status"] == "new"
    assert clip["bytes_skipped"] > 0 and clip["bytes_sent"] < big.stat().st_size
    assert clip["bytes_skipped"] + clip["bytes_sent"] == big.stat().st_size
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    assert clip["sha256"] == sha and _history(field, sha) == ["ingest"]
    again = _results(field(*_push_args(field, card), env=field.farah, check=True))
    assert {r["status"] for r in again.values()} == {"present"}
    assert all(r["bytes_sent"] == 0 for r in again.values())
    assert _history(field, sha) == ["ingest"]
    entry = field("show", sha, "--json", check=True).json()["history"][0]
    assert entry["details"]["source"]["name"] == "CLIP0001.MOV"
    field("verify", check=True)


def test_a_server_killed_mid_upload_resumes_at_its_durable_offset(field, tmp_path):
    card, big = _card(tmp_path, "CLIP0002.MOV")
    (card / "ALEPPO-GPS.JPG").unlink()  # pushed by the test before, or not: either way fine
    push = _start_push(field, card)
    _wait_mid_upload(field, big.stat().st_size)
    field.server.kill()
    push.send_signal(signal.SIGKILL)  # the laptop gives up too
    push.wait()
    field.server.start()
    rerun = field(*_push_args(field, card), env=field.farah)
    assert rerun.code == 0, rerun.stderr
    clip = _results(rerun)["CLIP0002.MOV"]
    assert clip["status"] == "new" and clip["bytes_skipped"] > 0
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    assert _history(field, sha) == ["ingest"]
    field("verify", check=True)


def test_a_push_by_a_key_the_archive_does_not_know_fails_every_file(field, tmp_path):
    mallory = tmp_path / "mallory.key"
    field("key", "new", "--name", "Mallory", "-o", mallory, check=True)
    card = tmp_path / "card"
    card.mkdir()
    shutil.copy(DATA / "media" / "clock-no-offset.jpg", card / "x.jpg")
    r = field(*_push_args(field, card), env={**field.farah, "CUSTODY_KEY": str(mallory)})
    assert r.code == 3
    line = json.loads(r.stdout.splitlines()[0])
    assert line["status"] == "failed" and line["error"].startswith("unauthorized")
    assert "failed to push" in one_line_error(r)
