"""`custody serve`: the real server over HTTP, requests signed by custodians' keys (RFC 9421)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from custody.core.signing import SigningKey
from custody.ops.keyfiles import write_new_key
from custody.service.signing import (
    RequestSigner,
    accept_statement,
    offer_statement,
    signed_statement,
    tag_statement,
)
from tests.conftest import PASSPHRASE, Cli, one_line_error
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
                      ("reviewer", "Rami Reviewer"), ("revoked", "Omar Revoked"),
                      ("investigator", "Ines Investigator")]:
        keys[who] = write_new_key(tmp / "keys" / f"{who}.key", name, PASSPHRASE)
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "admin.key")
    cli("init", "--name", "Service Test Centre", check=True)
    cli("enroll", tmp / "keys" / "field.key.pub", "--role", "field", check=True)
    cli("enroll", tmp / "keys" / "reviewer.key.pub", "--role", "reviewer", check=True)
    cli("enroll", tmp / "keys" / "revoked.key.pub", "--role", "investigator", check=True)
    cli("enroll", tmp / "keys" / "investigator.key.pub", "--role", "investigator", check=True)
    cli("revoke", keys["revoked"].key_id, "--reason", "left the team", check=True)
    cli("ingest", MEDIA / "aleppo-gps.jpg", "--case", "ALP-1", check=True)
    item = cli("list", "--json", check=True).json()[0]["sha256"]
    origin = json.loads((tmp / "archive" / "custody.json").read_text())["origin"]
    server = Subprocess(tmp / "archive", tmp / "serve.log", "--checkpoint-every", "1")
    yield Served(cli, server.base, origin, item, keys, server)
    server.stop()


@pytest.mark.quick  # the quick suite's smoke test of this area
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


def test_a_tag_and_a_custody_transfer_are_statements_the_custodians_signed(served):
    admin, inv = served.keys["admin"], served.keys["investigator"]
    with served.client("field") as c:
        tagged = c.post("/api/v1/statements",
                        json=tag_statement(served.keys["field"], served.origin, served.item,
                                           "strike"))
    assert tagged.status_code == 201, tagged.text
    with served.client("admin") as c:
        offered = c.post("/api/v1/statements", json=offer_statement(
            admin, served.origin, served.item, inv.key_id, "to the investigation team"))
    assert offered.status_code == 201, offered.text
    offer = offered.json()["seq"]
    with served.client("investigator") as c:
        accepted = c.post("/api/v1/statements",
                          json=accept_statement(inv, served.origin, served.item, offer))
        assert accepted.status_code == 201, accepted.text
        offers = c.get("/api/v1/transfers").json()
    assert [(o["offer"], o["state"]) for o in offers] == [(offer, "accepted")]
    shown = served.cli("show", served.item, "--json", check=True).json()
    assert "strike" in shown["tags"]
    assert served.cli("verify").code == 0


def test_serve_refuses_a_bad_listen_address_in_one_line(served):
    r = served.cli("serve", "--listen", "nowhere")
    assert r.code == 2 and "--listen wants HOST:PORT" in r.stderr and "Traceback" not in r.stderr


def test_serve_refuses_a_wrong_archive_passphrase_in_one_line(served):
    """The server signs checkpoints with the archive key: a wrong passphrase stops it at start."""
    r = served.cli("serve", "--listen", "127.0.0.1:9", env={"CUSTODY_ARCHIVE_PASSPHRASE":
                                                           "not the archive passphrase"})
    assert r.code != 0 and "passphrase" in one_line_error(r).lower()


def test_a_statement_appended_by_the_server_is_covered_by_a_checkpoint_within_seconds(served):
    """A remote custodian's statement (format 2) has no signature over its position: the
    server's own checkpoint, signed as the log grows, is what binds it (FORMAT.md §5.8)."""
    with served.client("field") as c:
        r = c.post("/api/v1/statements", json=_note(served, "field", "checkpointed soon"))
        assert r.status_code in (200, 201), r.text
    size = _size(served)
    deadline = time.monotonic() + 60
    while True:
        text = httpx.get(served.base + "/checkpoint", timeout=30).text
        lines = text.splitlines()
        if len(lines) > 1 and lines[1].isdigit() and int(lines[1]) >= size:
            break
        assert time.monotonic() < deadline, f"no checkpoint covers the log's {size} entries"
        time.sleep(0.5)
    assert "entries-not-public" in httpx.get(served.base + "/tile/entries/000.p/1").text


# Authentication: refused requests change nothing -------------------------------------------------

def _size(served) -> int:
    from custody.ops.archive import Archive

    return Archive.open(served.cli.archive).ledger.size()


def _note(served, who: str, text: str) -> dict:
    return signed_statement(served.keys[who], served.origin, "note", served.item,
                            {"text": text, "supersedes": None})


def _refused(served, request: httpx.Request) -> httpx.Response:
    before = _size(served)
    with httpx.Client(timeout=30) as c:
        r = c.send(request)
    assert r.status_code == 401, r.text
    assert set(r.json()) == {"error"} and r.json()["error"]["code"] == "unauthorized"
    assert _size(served) == before
    return r


def _post_note(served, who: str, text: str) -> httpx.Request:
    return httpx.Request("POST", served.base + "/api/v1/statements",
                         json=_note(served, "field", text))


def test_an_unsigned_write_gets_401_and_appends_nothing(served):
    _refused(served, _post_note(served, "field", "unsigned"))


def test_a_key_not_enrolled_gets_401(served):
    request = _post_note(served, "field", "by a stranger")
    RequestSigner(SigningKey.generate("Mallory")).sign(request)
    assert "not an active custodian" in _refused(served, request).json()["error"]["message"]


def test_a_revoked_custodian_gets_401(served):
    request = httpx.Request("GET", served.base + "/api/v1/items")
    RequestSigner(served.keys["revoked"]).sign(request)
    _refused(served, request)


def test_an_altered_body_gets_401(served):
    request = _post_note(served, "field", "original words")
    RequestSigner(served.keys["field"]).sign(request)
    altered = httpx.Request("POST", request.url, headers=request.headers,
                            content=request.content.replace(b"\"format\"", b"\"Format\""))
    assert altered.content != request.content and len(altered.content) == len(request.content)
    _refused(served, altered)


def test_an_expired_signature_gets_401(served):
    from datetime import UTC, datetime, timedelta

    request = _post_note(served, "field", "signed long ago")
    RequestSigner(served.keys["field"]).sign(
        request, created=datetime.now(UTC) - timedelta(seconds=301))
    _refused(served, request)


def test_a_replayed_request_gets_401_the_second_time(served):
    request = _post_note(served, "field", "said once")
    RequestSigner(served.keys["field"]).sign(request, nonce="a" * 32)
    with httpx.Client(timeout=30) as c:
        assert c.send(request).status_code == 201
    r = _refused(served, request)
    assert "nonce was used before" in r.json()["error"]["message"]


def test_a_statement_file_with_non_ascii_base64_is_refused_not_an_internal_error(served):
    # found by schemathesis: base64 of non-ASCII text raised ValueError, not binascii.Error
    body = {"format": "custody-statement", "statement": "g{N\u00fa", "signature": ""}
    with served.client("field") as c:
        r = c.post("/api/v1/statements", json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "statement-refused"


def test_a_huge_log_offset_is_a_bad_request_not_an_internal_error(served):
    # found by schemathesis: ?offset=13246697378392878088192 overflowed islice (a 500)
    with served.client("admin") as c:
        huge = c.get("/api/v1/log", params={"offset": 13246697378392878088192})
        largest = c.get("/api/v1/log", params={"offset": 2**53 - 1, "limit": 1000})
    assert huge.status_code == 400 and huge.json()["error"]["code"] == "usage-error"
    assert "offset must be at most 9007199254740991" in huge.json()["error"]["message"]
    assert largest.status_code == 200 and largest.json()["entries"] == []


# Roles, reads of content ---------------------------------------------------------------------------

def test_a_role_that_may_not_read_content_gets_403_and_nothing_appended(served):
    access = signed_statement(served.keys["field"], served.origin, "access", served.item,
                              {"purpose": "look", "kind": "get", "destination": None})
    before = _size(served)
    with served.client("field") as c:
        r = c.post(f"/api/v1/items/{served.item}/content", json=access)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not-permitted"
    assert _size(served) == before


def test_a_statement_signed_by_another_custodian_is_refused(served):
    with served.client("reviewer") as c:
        r = c.post("/api/v1/statements", json=_note(served, "field", "not the sender's"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "not-your-statement"


def test_a_download_logs_the_access_and_its_purpose_before_the_first_byte(served):
    import hashlib

    access = signed_statement(served.keys["reviewer"], served.origin, "access", served.item,
                              {"purpose": "court exhibit 4", "kind": "get", "destination": None})
    with served.client("reviewer") as c, \
            c.stream("POST", f"/api/v1/items/{served.item}/content", json=access) as r:
        assert r.status_code == 200
        last = served.entries()[-1]  # headers in, no byte of content read yet
        assert last["action"] == "access" and last["item"] == served.item
        assert last["details"]["purpose"] == "court exhibit 4"
        assert last["actor"] == served.keys["reviewer"].key_id
        content = r.read()
    assert hashlib.sha256(content).hexdigest() == served.item
    assert served.cli("verify").code == 0


# Limits, CORS, the document ------------------------------------------------------------------------

def test_an_oversized_body_gets_413_and_nothing_appended(served):
    before = _size(served)
    with served.client("field") as c:
        r = c.post("/api/v1/statements", content=b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413 and r.json()["error"]["code"] == "body-too-large"
    assert _size(served) == before


def test_a_cors_preflight_is_refused_by_default(served):
    r = httpx.options(served.base + "/api/v1/items", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert r.status_code >= 400
    assert "access-control-allow-origin" not in r.headers


def test_the_openapi_document_is_valid_and_names_every_route(served):
    from openapi_spec_validator import validate

    spec = httpx.get(served.base + "/openapi.json").json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for path in ("/api/v1/items", "/api/v1/items/{item}", "/api/v1/log", "/api/v1/search",
                 "/api/v1/crossref", "/api/v1/verification", "/api/v1/reports",
                 "/api/v1/transfers", "/api/v1/statements", "/api/v1/items/{item}/content"):
        assert path in spec["paths"]


def test_each_read_is_the_cli_commands_data(served):
    with served.client("admin") as c:
        shown = c.get(f"/api/v1/items/{served.item[:12]}").json()
        page = c.get("/api/v1/log", params={"offset": 1, "limit": 2}).json()
        found = c.get("/api/v1/search", params={"case": "ALP-1"}).json()
        report = c.get("/api/v1/reports", params={"item": served.item}).json()
        html = c.get("/api/v1/reports", params={"case": "ALP-1", "format": "html"})
        offers = c.get("/api/v1/transfers").json()
        latest = c.get("/api/v1/verification").json()
        verified = c.post("/api/v1/verification", params={"ledger_only": "true"}).json()
        track = (Path(__file__).parent / "data" / "tracks" / "flights.csv").read_bytes()
        matched = c.post("/api/v1/crossref", params={"km": 5, "minutes": 30}, content=track)
    assert shown == served.cli("show", served.item, "--json", check=True).json()
    cli_log = served.entries()
    assert page["total"] == len(cli_log) and page["entries"] == cli_log[1:3]
    assert [i["sha256"] for i in found["items"]] == [served.item]
    assert report["items"][0]["sha256"] == served.item and report["report_digest"]
    assert html.status_code == 200 and html.text.lstrip().lower().startswith("<!doctype html")
    assert offers == served.cli("transfers", "--json", check=True).json()
    assert latest == {"latest": None} and verified["ok"] is True
    assert matched.status_code == 200, matched.text
    assert "count" in matched.json()


def test_the_access_log_has_one_json_line_per_request_and_no_secret(served):
    lines = [json.loads(x) for x in served.server.log.read_text().splitlines()
             if x.startswith("{")]
    assert lines and {"time", "method", "path", "status", "duration_ms", "key_id", "bytes_in",
                      "bytes_out"} <= set(lines[-1])
    text = served.server.log.read_text()
    assert "signature" not in text.lower() and "court exhibit" not in text
