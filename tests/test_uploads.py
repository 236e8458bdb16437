"""tus 1.0 under /uploads/ on a real `custody serve` (a subprocess on a loopback port), requests
signed with RFC 9421 by the custodian's key: an upload becomes an item only when its bytes are
the ones the custodian signed. The tuspy test runs against the upload routes behind a stand-in
authentication (tests/upload_server.py): tuspy sends fixed headers and cannot sign each request."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import time

import httpx
import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.uploader import Uploader

from custody.metadata import MetadataReader
from custody.ops.keyfiles import load_key
from custody.service.signing import RequestSigner

from .conftest import DATA, PASSPHRASE, Cli
from .upload_helpers import Server, upload_statement
from .upload_server import TEST_HEADER

PHOTO = DATA / "media" / "aleppo-gps.jpg"
TUS = {"Tus-Resumable": "1.0.0"}


class Sha256Uploader(Uploader):
    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Alice's archive and Bob (field, enrolled), served by one server for the module."""
    tmp = tmp_path_factory.mktemp("uploads")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Aleppo Documentation Centre", check=True)
    cli.bob = tmp / "keys" / "bob.key"
    cli("key", "new", "--name", "Bob Field", "-o", cli.bob, check=True)
    cli("enroll", str(cli.bob) + ".pub", "--role", "field", check=True)
    cli.alice_key = load_key(cli.key, PASSPHRASE)
    cli.bob_key = load_key(cli.bob, PASSPHRASE)
    cli.uploads = tmp / "archive" / "uploads"
    server = Server(cli.archive, cli.uploads).start()
    cli.server = server
    try:
        with MetadataReader() as reader:
            cli.reader = reader
            yield cli
    finally:
        server.stop()


def _random_file(tmp, name: str, size: int):
    import os
    path = tmp / name
    path.write_bytes(os.urandom(size))
    return path


def _as(key) -> httpx.Client:
    """An httpx client whose every request is signed by `key` (RFC 9421)."""
    return httpx.Client(auth=RequestSigner(key), headers=TUS, timeout=60)  # a loaded CI machine


def _create(cli, text: str, length: int, key=None) -> str:
    meta = "statement " + base64.b64encode(text.encode()).decode()
    with _as(key or cli.alice_key) as c:
        r = c.post(f"{cli.server.url}/uploads/", headers={
            "Upload-Length": str(length), "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    return str(httpx.URL(cli.server.url).join(r.headers["location"]))  # relative, as tus allows


def _patch(url: str, key, offset: int, data: bytes, checksum: bytes | None = None):
    digest = checksum if checksum is not None else hashlib.sha256(data).digest()
    with _as(key) as c:
        return c.patch(url, content=data, headers={
            "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
            "Upload-Checksum": "sha256 " + base64.b64encode(digest).decode()})


def _head(url: str, key) -> httpx.Response:
    with _as(key) as c:
        return c.head(url)


def _entries(cli) -> list[dict]:
    return [json.loads(x) for x in cli("log", "--json", check=True).stdout.splitlines()]


def test_options_advertise_tus_1_0_and_its_extensions(served):
    r = httpx.options(f"{served.server.url}/uploads/")
    assert r.status_code == 204 and r.headers["tus-version"] == "1.0.0"
    assert set(r.headers["tus-extension"].split(",")) == {
        "creation", "checksum", "termination", "expiration"}
    assert "sha256" in r.headers["tus-checksum-algorithm"].split(",")
    assert int(r.headers["tus-max-size"]) > 0


def test_a_tuspy_upload_in_chunks_becomes_an_item_whose_ingest_is_the_custodians_statement(
        served, tmp_path):
    photo = tmp_path / "IMG_0001.JPG"
    shutil.copy(PHOTO, photo)
    text, statement_id = upload_statement(served.archive, served.bob_key, photo, served.reader)
    stand_in = Server(served.archive, tmp_path / "uploads", stand_in=True).start()
    try:
        url = _tuspy_upload(stand_in, served.bob_key, photo, text)
        head = httpx.head(url, headers={**TUS, TEST_HEADER: served.bob_key.key_id})
    finally:
        stand_in.stop()
    assert head.headers["custody-status"] == "new"
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    shown = served("show", sha, "--json", check=True).json()
    ingest = shown["history"][0]
    assert ingest["action"] == "ingest" and ingest["statement_id"] == statement_id
    assert ingest["actor"] == served.bob_key.key_id and shown["gps"] is not None
    assert not (tmp_path / "uploads" / (url.rsplit("/", 1)[1])).exists()
    served("verify", check=True)


def _tuspy_upload(server, key, photo, text) -> str:
    client = tus_client.TusClient(f"{server.url}/uploads/", headers={TEST_HEADER: key.key_id})
    uploader = Sha256Uploader(file_path=str(photo), client=client, chunk_size=32 * 1024,
                              metadata={"statement": text, "filename": photo.name},
                              upload_checksum=True)
    uploader.upload()
    return str(uploader.url)


def test_a_custody_serve_upload_in_signed_chunks_becomes_an_item(served, tmp_path):
    photo = tmp_path / "IMG_0002.JPG"
    shutil.copy(DATA / "media" / "clock-no-offset.jpg", photo)
    text, statement_id = upload_statement(served.archive, served.bob_key, photo, served.reader)
    data = photo.read_bytes()
    url = _create(served, text, len(data), served.bob_key)
    offset = 0
    while offset < len(data):
        r = _patch(url, served.bob_key, offset, data[offset:offset + 4096])
        assert r.status_code == 204, r.text
        offset = int(r.headers["upload-offset"])
    assert r.headers["custody-status"] == "new"
    history = served("show", hashlib.sha256(data).hexdigest(), "--json",
                     check=True).json()["history"]
    assert history[0]["statement_id"] == statement_id


def test_bytes_other_than_those_signed_are_refused_and_nothing_is_stored(served, tmp_path):
    signed_file = _random_file(tmp_path, "signed.bin", 40_000)
    other = _random_file(tmp_path, "other.bin", 40_000)
    text, _ = upload_statement(served.archive, served.bob_key, signed_file, served.reader)
    before = len(_entries(served))
    url = _create(served, text, 40_000, served.bob_key)
    r = _patch(url, served.bob_key, 0, other.read_bytes())
    assert r.status_code == 422 and r.json()["error"]["code"] == "digest-mismatch"
    assert "nothing was stored" in r.json()["error"]["message"]
    for f in (signed_file, other):
        sha = hashlib.sha256(f.read_bytes()).hexdigest()
        assert served("show", sha).code != 0
        assert not list((served.archive / "objects").rglob(sha))
    assert len(_entries(served)) == before
    upload_id = url.rsplit("/", 1)[1]
    assert not (served.uploads / f"{upload_id}").exists()
    refusal = [r for r in json.loads("[" + ",".join(
        (served.uploads / "refusals.jsonl").read_text().splitlines()) + "]")
        if r["upload"] == upload_id]
    assert refusal[0]["code"] == "digest-mismatch" and refusal[0]["statement"] == text
    assert _head(url, served.bob_key).status_code == 410


def test_a_chunk_with_a_bad_checksum_gets_460_and_is_discarded(served, tmp_path):
    f = _random_file(tmp_path, "chunked.bin", 30_000)
    text, _ = upload_statement(served.archive, served.bob_key, f, served.reader)
    url = _create(served, text, 30_000, served.bob_key)
    data = f.read_bytes()
    assert _patch(url, served.bob_key, 0, data[:10_000]).status_code == 204
    r = _patch(url, served.bob_key, 10_000, data[10_000:20_000], checksum=b"\0" * 32)
    assert r.status_code == 460 and r.json()["error"]["code"] == "checksum-mismatch"
    assert _head(url, served.bob_key).headers["upload-offset"] == "10000"
    r = _patch(url, served.bob_key, 10_000, data[10_000:])
    assert r.status_code == 204 and r.headers["custody-status"] == "new"


def test_delete_terminates_an_upload(served, tmp_path):
    f = _random_file(tmp_path, "dropped.bin", 20_000)
    text, _ = upload_statement(served.archive, served.bob_key, f, served.reader)
    url = _create(served, text, 20_000, served.bob_key)
    _patch(url, served.bob_key, 0, f.read_bytes()[:5000])
    upload_id = url.rsplit("/", 1)[1]
    assert (served.uploads / f"{upload_id}").stat().st_size == 5000
    with _as(served.bob_key) as c:
        assert c.delete(url).status_code == 204
    assert not (served.uploads / f"{upload_id}").exists()
    assert _head(url, served.bob_key).status_code == 404


def test_an_upload_belongs_to_the_key_that_created_it(served, tmp_path):
    f = _random_file(tmp_path, "bobs.bin", 10_000)
    text, _ = upload_statement(served.archive, served.bob_key, f, served.reader)
    url = _create(served, text, 10_000, served.bob_key)
    assert _head(url, served.alice_key).status_code == 404
    assert _patch(url, served.alice_key, 0, f.read_bytes()).status_code == 404
    with _as(served.alice_key) as c:
        assert c.delete(url).status_code == 404
        # nor may one upload bytes under another custodian's statement
        meta = "statement " + base64.b64encode(text.encode()).decode()
        r = c.post(f"{served.server.url}/uploads/", headers={
            "Upload-Length": "10000", "Upload-Metadata": meta})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not-your-statement"


def test_a_sighting_of_held_bytes_ends_present_and_stores_nothing_twice(served, tmp_path):
    photo = tmp_path / "copy-of-photo.jpg"
    shutil.copy(DATA / "media" / "carbon-south-west.jpg", photo)
    text, _ = upload_statement(served.archive, served.bob_key, photo, served.reader)
    url = _create(served, text, photo.stat().st_size, served.bob_key)
    assert _patch(url, served.bob_key, 0, photo.read_bytes()).headers["custody-status"] == "new"
    again, sighting_id = upload_statement(served.archive, served.bob_key, photo, served.reader,
                                          action="sighting")
    url = _create(served, again, photo.stat().st_size, served.bob_key)
    r = _patch(url, served.bob_key, 0, photo.read_bytes())
    assert r.status_code == 204 and r.headers["custody-status"] == "present"
    history = served("show", hashlib.sha256(photo.read_bytes()).hexdigest()[:12], "--json",
                     check=True).json()["history"]
    assert [e["action"] for e in history] == ["ingest", "sighting"]
    assert history[1]["statement_id"] == sighting_id


def test_an_expired_upload_is_swept(tmp_path, cli_archive):
    cli = cli_archive
    key = load_key(cli.key, PASSPHRASE)
    uploads = tmp_path / "uploads"
    # 4 s, not 1: under load, creating and then patching the upload alone took over a second
    server = Server(cli.archive, uploads, expire_seconds=4).start()
    try:
        f = _random_file(tmp_path, "slow.bin", 20_000)
        with MetadataReader() as reader:
            text, _ = upload_statement(cli.archive, key, f, reader)
        cli.server, cli.alice_key = server, key
        url = _create(cli, text, 20_000)
        r = _patch(url, key, 0, f.read_bytes()[:4000])
        assert r.status_code == 204 and "GMT" in r.headers["upload-expires"]
        upload_id = url.rsplit("/", 1)[1]
        time.sleep(4.6)
        _create(cli, text, 20_000)  # any request past the sweep interval sweeps
        assert not (uploads / f"{upload_id}").exists()
        assert not (uploads / f"{upload_id}.json").exists()
        assert _head(url, key).status_code == 404
    finally:
        server.stop()


def _uploads_held(served) -> list[str]:
    """The upload folder's files; the folder itself is made by the first upload."""
    return sorted(p.name for p in served.uploads.iterdir()) if served.uploads.exists() else []


def test_an_unsigned_request_gets_401_and_creates_nothing(served):
    before = _uploads_held(served)
    r = httpx.post(f"{served.server.url}/uploads/", headers={**TUS, "Upload-Length": "1",
                                                              TEST_HEADER: served.bob_key.key_id})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    with pytest.raises((TusCommunicationError, TusUploadFailed)):
        client = tus_client.TusClient(f"{served.server.url}/uploads/")
        Sha256Uploader(file_path=str(PHOTO), client=client, metadata={"statement": "{}"}).upload()
    assert _uploads_held(served) == before


def test_the_protocol_refuses_what_tus_1_0_refuses_and_creates_nothing_for_it(served, tmp_path):
    f = _random_file(tmp_path, "protocol.bin", 8_000)
    text, _ = upload_statement(served.archive, served.bob_key, f, served.reader)
    meta = "statement " + base64.b64encode(text.encode()).decode()
    with _as(served.bob_key) as c:
        base = f"{served.server.url}/uploads/"
        r = c.post(base, headers={"Tus-Resumable": "0.2.2", "Upload-Length": "8000",
                                  "Upload-Metadata": meta})
        assert r.status_code == 412 and r.headers["tus-version"] == "1.0.0"
        r = c.post(base, headers={"Upload-Length": "7999", "Upload-Metadata": meta})
        assert r.status_code == 422 and r.json()["error"]["code"] == "length-mismatch"
        r = c.post(base, headers={"Upload-Length": "8000"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "no-statement"
        r = c.post(base, headers={"Upload-Length": str(1 << 40), "Upload-Metadata": meta})
        assert r.status_code == 413
    url = _create(served, text, 8_000, served.bob_key)
    data = f.read_bytes()
    assert _patch(url, served.bob_key, 100, data[:10]).status_code == 409
    with _as(served.bob_key) as c:
        r = c.patch(url, content=data[:10], headers={"Upload-Offset": "0",
                                                     "Content-Type": "text/plain"})
        assert r.status_code == 415
        r = c.patch(url, content=data[:10], headers={
            "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
            "Upload-Checksum": "crc32 AAAA"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "checksum-algorithm"
    assert _patch(url, served.bob_key, 0, data + b"extra").status_code == 413
    assert _head(url, served.bob_key).headers["upload-offset"] == "0"


def test_a_chunk_larger_than_the_server_holds_is_refused_before_it_is_read(served, tmp_path):
    from custody.service.uploads import MAX_CHUNK

    f = _random_file(tmp_path, "huge-chunk.bin", 1_000)
    text, _ = upload_statement(served.archive, served.bob_key, f, served.reader)
    path = _create(served, text, 1_000, served.bob_key).split("://", 1)[-1]
    path = path[path.index("/"):] if not path.startswith("/") else path
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=10) as s:
        s.sendall(f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                  "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                  f"Content-Length: {MAX_CHUNK + 1}\r\n\r\n".encode())
        status = s.recv(4096).split(b"\r\n")[0]
    assert b" 413 " in status
