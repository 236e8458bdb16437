"""`custody sync` against a real `custody serve`: a field laptop that ingested offline hands its
items in with their signed history (a verified package, `received` statements the field custodian
signed), records the centre's signed receipt, and a rerun sends nothing. A tampered package or a
statement that is not the centre's own draft is refused with nothing recorded."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
import uuid
import zipfile

import httpx
import pytest

from custody.ops.keyfiles import load_key
from custody.package.importing import kept_evidence, received_drafts
from custody.package.verify import checked
from custody.service.push import TUS, Pusher
from custody.service.signing import RequestSigner, signed_statement

from .conftest import DATA, PASSPHRASE, Cli, one_line_error
from .service_server import Subprocess

PHOTOS = ("aleppo-gps.jpg", "carbon-south-west.jpg")


@pytest.fixture(scope="module")
def sync(tmp_path_factory):
    """The centre (Alice, admin) served; Farah's field archive (her own, she is its admin) with
    two photos ingested offline and a note; Farah also enrolled at the centre."""
    tmp = tmp_path_factory.mktemp("sync")
    centre = Cli(tmp, tmp / "centre", tmp / "keys" / "alice.key")
    centre("key", "new", "--name", "Alice Admin", check=True)
    centre("init", "--name", "Documentation Centre", check=True)
    farah = tmp / "keys" / "farah.key"
    field = Cli(tmp, tmp / "field", farah)
    field("key", "new", "--name", "Farah Field", check=True)
    field("init", "--name", "Farah's laptop", check=True)
    centre("enroll", str(farah) + ".pub", "--role", "investigator", check=True)
    card = tmp / "DCIM"
    card.mkdir()
    for name in PHOTOS:
        shutil.copy(DATA / "media" / name, card / name)
    field("ingest", card, "--note", "market, 14:05", check=True)
    field.items = [r["sha256"] for r in field("list", "--json", check=True).json()]
    field("note", field.items[0], "second photo taken from the roof", check=True)
    field.centre_key = centre("checkpoint", "--json", check=True).json()["verifier_key"]
    field.env["XDG_CACHE_HOME"] = str(tmp / "farah-cache")
    field.centre = centre
    field.server = Subprocess(centre.archive, tmp / "serve.log", "--checkpoint-every", "1",
                              "--rate", "1000", "--burst", "1000")
    try:
        yield field
    finally:
        field.server.stop()


def _sync(field: Cli):
    return field("sync", "--server", field.server.base, "--centre-key", field.centre_key,
                 "--json", "--chunk-size", "65536")


def _log(cli: Cli, *args: str) -> list[dict]:
    out = cli("log", *args, "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _centre_size(field: Cli) -> int:
    with sqlite3.connect(field.centre.archive / "ledger.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])


def test_sync_hands_in_the_field_history_and_records_the_centre_receipt(sync):
    result = _sync(sync)
    assert result.code == 0, result.stderr
    done = result.json()
    assert done["status"] == "new"
    assert sorted(e["item"] for e in done["items"]) == sorted(sync.items)
    farah_id = load_key(sync.key, PASSPHRASE).key_id
    for sha in sync.items:  # at the centre: Farah's statement, the field history as provenance
        log = _log(sync.centre, sha)
        received = [e for e in log if e["action"] == "received"]
        assert len(received) == 1 and received[0]["actor"] == farah_id
        prov = sync.centre("provenance", sha, "--json", check=True).json()
        assert prov["receipts"][0]["verified"] is True
        actions = [h["action"] for h in prov["receipts"][0]["sender_history"]]
        assert "ingest" in actions
    noted = sync.centre("provenance", sync.items[0], "--json", check=True).json()
    assert "note" in [h["action"] for h in noted["receipts"][0]["sender_history"]]
    # in the field archive: one handed_in entry per item, the centre's checkpoint covering it
    for e in done["items"]:
        mine = _log(sync, e["item"])
        receipt = [x for x in mine if x["action"] == "handed_in"]
        assert len(receipt) == 1
        assert receipt[0]["details"]["seq"] == e["seq"]
        assert receipt[0]["details"]["centre_key"] == sync.centre_key
    assert "handed in:" in sync("show", done["items"][0]["item"], check=True).stdout
    assert sync("verify", check=True).code == 0
    assert sync.centre("verify", check=True).code == 0


def test_a_second_sync_sends_nothing_and_says_present(sync):
    before = _centre_size(sync)
    result = _sync(sync)
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "present"
    assert _centre_size(sync) == before


def test_a_forged_receipt_fails_verify(sync, tmp_path):
    """A handed_in entry whose checkpoint the centre key did not sign is a verify failure."""
    from custody.ops.archive import Archive, Draft

    copy = tmp_path / "field"
    shutil.copytree(sync.archive, copy)
    archive = Archive.open(copy)
    key = load_key(sync.key, PASSPHRASE)
    row = [r for r in _log(sync) if r["action"] == "handed_in"][0]
    details = dict(row["details"])
    details["checkpoint"] = details["checkpoint"].replace("\n\n", "\nextra\n\n", 1)
    archive.append(key, [Draft("handed_in", row["item"], details)], check_signer=False)
    result = sync("--archive", copy, "verify")
    assert result.code == 1
    assert "centre checkpoint does not verify" in result.stdout + result.stderr


# -- refusals at the centre: the client's steps by hand, each a real request ------------------

def _new_item_package(sync, tmp_path, name: str):
    """A third photo ingested in the field, exported as a package; its signed statements."""
    photo = tmp_path / name
    photo.write_bytes((DATA / "media" / "aleppo-gps.jpg").read_bytes() + uuid.uuid4().bytes)
    sync("ingest", photo, check=True)
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    package = tmp_path / f"{name}.zip"
    sync("export", sha, "--purpose", "hand in", "-o", package, check=True)
    return package


def _statements(sync, package):
    key = load_key(sync.key, PASSPHRASE)
    log = httpx.get(sync.server.base + "/uploads/", auth=RequestSigner(key)).json()["log"]
    with checked(package, None, None) as c:
        drafts = received_drafts(c.report, c.tags, kept_evidence(c.report, c.tags), None,
                                 str(uuid.uuid4()))
    return key, log, drafts


def _hand_in(sync, key, package, statements) -> httpx.Response:
    pusher = Pusher(sync.server.base, key, RequestSigner(key), None,
                    state_dir=package.parent / "resume")
    data = package.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    meta = f"package {base64.b64encode(sha.encode()).decode()}"
    made = pusher._request("POST", sync.server.base + "/uploads/",
                           headers={**TUS, "Upload-Length": str(len(data)),
                                    "Upload-Metadata": meta})
    assert made.status_code == 201
    url = str(httpx.URL(sync.server.base).join(made.headers["location"]))
    sent = pusher._request("PATCH", url, content=data, headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert sent.status_code == 204, sent.text
    body = json.dumps({"upload": url.rsplit("/", 1)[-1], "statements": statements}).encode()
    return pusher._request("POST", sync.server.base + "/api/v1/imports", content=body,
                           headers={"Content-Type": "application/json"})


def _flip_object_byte(name: str, data: bytes, files: dict[str, bytes]) -> bytes:
    if "/data/" in "/" + name and name.endswith(".jpg"):
        return data[:100] + bytes([data[100] ^ 1]) + data[101:]
    return data


def _alter_history(name: str, data: bytes, files: dict[str, bytes]) -> bytes:
    """The ingest entry's file name altered in the carried ledger, and the bag's tag manifests
    made to match: only the entry's signature can tell."""
    if name.endswith("custody/ledger.jsonl"):
        rows = [json.loads(line) for line in data.decode().splitlines()]
        for row in rows:
            body = base64.b64decode(row["entry"])
            if b'"ingest"' in body:
                row["entry"] = base64.b64encode(body.replace(b'.jpg"', b'.jpe"', 1)).decode()
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    for alg in ("sha256", "sha512"):
        if name.endswith(f"tagmanifest-{alg}.txt"):
            ledger = _alter_history("custody/ledger.jsonl", files["custody/ledger.jsonl"], files)
            lines = [f"{hashlib.new(alg, ledger).hexdigest()}  {line.split(maxsplit=1)[1]}"
                     if line.endswith("custody/ledger.jsonl") else line
                     for line in data.decode().splitlines()]
            return ("\n".join(lines) + "\n").encode()
    return data


@pytest.mark.parametrize("tamper", [_flip_object_byte, _alter_history],
                         ids=["an-object-byte", "a-history-entry"])
def test_a_tampered_package_is_refused_and_nothing_recorded(sync, tmp_path, tamper):
    package = _new_item_package(sync, tmp_path, f"tampered-{tamper.__name__}.jpg")
    key, log, drafts = _statements(sync, package)
    statements = [signed_statement(key, log, d.action, d.item, d.details) for d in drafts]
    tampered = tmp_path / "tampered-package.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(tampered, "w") as out:
        files = {i.filename.split("/", 1)[1]: src.read(i) for i in src.infolist()}
        for info in src.infolist():
            out.writestr(info, tamper(info.filename, src.read(info), files))
    before = _centre_size(sync)
    answer = _hand_in(sync, key, tampered, statements)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "verification-failed"
    assert _centre_size(sync) == before
    assert not json.loads(httpx.post(
        sync.server.base + "/api/v1/held", auth=RequestSigner(key),
        json={"sha256": [drafts[0].item]}).text)["held"]


def test_a_received_statement_unlike_the_centre_draft_is_refused(sync, tmp_path):
    package = _new_item_package(sync, tmp_path, "altered.jpg")
    key, log, drafts = _statements(sync, package)
    statements = []
    for d in drafts:  # the sender claims another name for the file than its own package has
        details = json.loads(json.dumps(d.details))
        details["source"]["name"] = "someone-else.jpg"
        statements.append(signed_statement(key, log, d.action, d.item, details))
    before = _centre_size(sync)
    answer = _hand_in(sync, key, package, statements)
    assert answer.status_code == 422, answer.text
    assert "differs from the received entry" in answer.json()["error"]["message"]
    assert _centre_size(sync) == before
    # the same package with the statements the centre's draft makes is taken
    good = [signed_statement(key, log, d.action, d.item, d.details) for d in drafts]
    answer = _hand_in(sync, key, package, good)
    assert answer.status_code == 201, answer.text
    assert _centre_size(sync) == before + 1


def test_sync_with_a_wrong_centre_key_records_no_receipt(sync, tmp_path):
    """The receipt is only what the pinned centre key signed."""
    _new_item_package(sync, tmp_path, "wrong-key.jpg")
    other = sync("--archive", sync.archive, "checkpoint", "--json", check=True).json()
    result = sync("sync", "--server", sync.server.base, "--centre-key", other["verifier_key"],
                  "--json")
    assert result.code != 0
    assert "does not verify with --centre-key" in one_line_error(result)
    mine = _log(sync)
    assert not [r for r in mine if r["action"] == "handed_in"
                and r["details"]["centre_key"] == other["verifier_key"]]


def test_a_sync_killed_mid_upload_resumes_and_finishes(sync, tmp_path):
    """SIGKILLed while the package is on its way; the same command again sends only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    big = tmp_path / "long-video.bin"
    big.write_bytes(os.urandom(3 << 20))
    sync("ingest", big, check=True)
    args = [sys.executable, "-m", "custody", "sync", "--server", sync.server.base,
            "--centre-key", sync.centre_key, "--json", "--chunk-size", "32768"]
    proc = subprocess.Popen(args, env=sync.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    uploads = sync.centre.archive / "uploads"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        parts = []
        for info in uploads.glob("*.json"):
            try:
                parts.append(json.loads(info.read_text()))
            except ValueError:
                continue
        if any(u.get("kind") == "package" and u["length"] > 3 << 20
               and 0 < u["offset"] < u["length"] for u in parts):
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the sync never got part-way")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    result = _sync(sync)
    assert result.code == 0, result.stderr
    done = result.json()
    assert done["status"] == "new" and done["bytes_skipped"] > 0
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    assert sha in [e["item"] for e in done["items"]]
    assert [r for r in _log(sync, sha) if r["action"] == "handed_in"]
    assert sync.centre("verify", check=True).code == 0


def test_a_package_upload_is_imported_once(sync, tmp_path):
    """Posting the same upload's import again is refused and appends nothing."""
    package = _new_item_package(sync, tmp_path, "twice.jpg")
    key, log, drafts = _statements(sync, package)
    good = [signed_statement(key, log, d.action, d.item, d.details) for d in drafts]
    first = _hand_in(sync, key, package, good)
    assert first.status_code == 201, first.text
    before = _centre_size(sync)
    again = httpx.post(sync.server.base + "/api/v1/imports", auth=RequestSigner(key),
                       json={"upload": first.json()["upload"], "statements": good})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already-imported"
    assert _centre_size(sync) == before
