"""Several field custodians push at once to a real `custody serve`; the server is SIGKILLed
mid-upload and started again on the same archive; the pushes that were running carry on, one
laptop dies with the server, and every push is rerun: each file is stored once, every rerun says
`new` or `present`, no partial object is in the store and `custody verify` passes (issue 16,
item 9; benchmarks/service.py measures the same at scale)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from .conftest import Cli
from .upload_helpers import Server

CLIENTS = 3
CHUNK = "65536"  # 1-2 MB files are 16-32 signed PATCHes each: the kill lands mid-upload


def _cards(tmp: Path) -> list[Path]:
    """One card folder per custodian, random bytes; card 0 and card 1 share one file (two
    custodians who both hold the same video)."""
    shared = os.urandom(700_000)
    cards = []
    for i in range(CLIENTS):
        card = tmp / f"card{i}"
        card.mkdir()
        (card / "A.bin").write_bytes(os.urandom(2_000_000 - i * 300_000))
        (card / "B.bin").write_bytes(os.urandom(90_000 + i))
        if i < 2:
            (card / "SHARED.bin").write_bytes(shared)
        cards.append(card)
    return cards


def _wait_mid_upload(uploads: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for info in uploads.glob("*.json"):
            try:
                upload = json.loads(info.read_text())
            except (ValueError, FileNotFoundError):
                continue
            if 0 < upload["offset"] < upload["length"] and upload["length"] > 1_000_000:
                return
        time.sleep(0.01)
    raise AssertionError("no push got part-way")


def test_a_server_killed_mid_upload_under_concurrent_pushes_stores_every_file_once(
        tmp_path, made_key):
    cli = Cli(tmp_path, tmp_path / "archive", tmp_path / "keys" / "admin.key")
    made_key(cli.key, "Alice Admin")
    cli("init", "--name", "Aleppo Documentation Centre", check=True)
    envs = []
    for i in range(CLIENTS):
        key = tmp_path / "keys" / f"field{i}.key"
        made_key(key, f"Field Custodian {i}")
        cli("enroll", f"{key}.pub", "--role", "field", check=True)
        envs.append({**cli.env, "CUSTODY_KEY": str(key),
                     "XDG_CACHE_HOME": str(tmp_path / f"cache{i}")})
    cards = _cards(tmp_path)
    uploads = tmp_path / "uploads"
    server = Server(cli.archive, uploads).start()

    def push(i: int) -> list[str]:
        return [sys.executable, "-m", "custody", "push", str(cards[i]), "--server", server.url,
                "--chunk-size", CHUNK, "--json"]

    try:
        running = [subprocess.Popen(push(i), env=envs[i], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                   for i in range(CLIENTS)]
        _wait_mid_upload(uploads)
        server.kill()
        running[0].send_signal(signal.SIGKILL)  # one laptop goes down with the server
        server.start()
        for proc in running:
            proc.communicate(timeout=120)  # the others retry through the outage
        assert running[0].returncode == -signal.SIGKILL
        reruns = [subprocess.run(push(i), env=envs[i], capture_output=True, text=True,
                                 timeout=120, stdin=subprocess.DEVNULL) for i in range(CLIENTS)]
    finally:
        server.stop()

    for rerun in reruns:
        assert rerun.returncode == 0, rerun.stderr
        results = [json.loads(line) for line in rerun.stdout.splitlines()]
        assert len(results) == len(list(cards[reruns.index(rerun)].iterdir()))
        assert {r["status"] for r in results} <= {"new", "present"}, results
    files = {hashlib.sha256(p.read_bytes()).hexdigest() for c in cards for p in c.iterdir()}
    entries = [json.loads(x) for x in cli("log", "--json", check=True).stdout.splitlines()]
    ingests = Counter(e["item"] for e in entries if e["action"] == "ingest")
    assert ingests == Counter(files)  # each file's ingest recorded once, nothing else ingested
    assert {i["sha256"] for i in cli("list", "--json", check=True).json()} == files
    objects = [p for p in (cli.archive / "objects" / "sha256").rglob("*") if p.is_file()]
    assert sorted(p.name for p in objects) == sorted(files)
    for obj in objects:  # no partial object: every object's bytes hash to its name
        assert hashlib.sha256(obj.read_bytes()).hexdigest() == obj.name
    verify = cli("verify")
    assert verify.code == 0, verify.stdout + verify.stderr
