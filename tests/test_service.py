"""`custody serve`: the real server over HTTP, requests signed by custodians' keys (RFC 9421)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from custody.core.signing import SigningKey
from custody.ops.keyfiles import write_new_key
from custody.service.signing import RequestSigner, signed_statement
from tests.conftest import PASSPHRASE, Cli
from tests.service_server import Subprocess

MEDIA = Path(__file__).parent / "data" / "media"


@dataclass
class Served:
    cli: Cli
    base: str
    origin: str
    item: str
    keys: dict[str, SigningKey]
    server: Subprocess

    def client(self, who: str | None) -> httpx.Client:
        auth = RequestSigner(self.keys[who]) if who else None
        return httpx.Client(base_url=self.base, auth=auth, timeout=30)

    def entries(self) -> list[dict]:
        out = self.cli("log", "--json", check=True).stdout
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("served")
    keys: dict[str, SigningKey] = {}
    for who, name in [("admin", "Alice Admin"), ("field", "Farah Field"),
                      ("reviewer", "Rami Reviewer"), ("revoked", "Omar Revoked")]:
        keys[who] = write_new_key(tmp / "keys" / f"{who}.key", name, PASSPHRASE)
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "admin.key")
    cli("init", "--name", "Service Test Centre", check=True)
    cli("enroll", tmp / "keys" / "field.key.pub", "--role", "field", check=True)
    cli("enroll", tmp / "keys" / "reviewer.key.pub", "--role", "reviewer", check=True)
    cli("enroll", tmp / "keys" / "revoked.key.pub", "--role", "investigator", check=True)
    cli("revoke", keys["revoked"].key_id, "--reason", "left the team", check=True)
    cli("ingest", MEDIA / "aleppo-gps.jpg", "--case", "ALP-1", check=True)
    item = cli("list", "--json", check=True).json()[0]["sha256"]
    origin = json.loads((tmp / "archive" / "custody.json").read_text())["origin"]
    server = Subprocess(tmp / "archive", tmp / "serve.log")
    yield Served(cli, server.base, origin, item, keys, server)
    server.stop()


def test_a_signed_request_is_answered_with_the_archive_data(served):
    with served.client("reviewer") as c:
        r = c.get("/api/v1/items")
        assert r.status_code == 200, r.text
        assert [i["sha256"] for i in r.json()] == [served.item]
        me = c.get("/api/v1/whoami").json()
    assert me == {"key_id": served.keys["reviewer"].key_id, "name": "Rami Reviewer",
                  "role": "reviewer"}


def test_an_unsigned_request_gets_401_json(served):
    with served.client(None) as c:
        r = c.get("/api/v1/items")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


def test_a_note_statement_is_appended_and_shown_by_custody_log(served):
    body = signed_statement(served.keys["field"], served.origin, "note", served.item,
                            {"text": "seen from the roof", "supersedes": None})
    with served.client("field") as c:
        r = c.post("/api/v1/statements", json=body)
    assert r.status_code == 201, r.text
    last = served.entries()[-1]
    assert last["seq"] == r.json()["seq"] and last["action"] == "note"
    assert last["details"]["text"] == "seen from the roof"
    assert last["actor"] == served.keys["field"].key_id
