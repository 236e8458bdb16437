"""The public log served as C2SP tlog-tiles by a real uvicorn server over a real archive, read with
httpx by an independent reader (as a monitor would) and by `custody witness cosign URL`."""

from __future__ import annotations

import hashlib
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from custody.core import note
from custody.core.tiles import (
    Tile,
    bundles_of_tree,
    decode_bundle,
    decode_hashes,
    tiles_of_tree,
)
from custody.ops.archive import Archive
from custody.ops.keyfiles import write_new_key
from custody.service.tiles import tile_routes

from .conftest import PASSPHRASE, Cli, one_line_error


@contextmanager
def serving(open_archive: Callable[[], Archive], public_entries: bool = True) -> Iterator[str]:
    """tile_routes on a small Starlette app, run by uvicorn on a free loopback port."""
    app = Starlette(routes=tile_routes(open_archive, public_entries=public_entries))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 MTH over leaf hashes, written out again: the reader trusts nothing of custody's."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


@pytest.fixture(scope="module")
def public_log(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """One archive of 300+ entries (a full level-0 tile, a partial level-1 tile) with a signed
    checkpoint, served with its entries public; tests only read it, the last one grows it."""
    tmp = tmp_path_factory.mktemp("public-log")
    key = tmp / "keys" / "alice.key"
    write_new_key(key, "Alice Admin", PASSPHRASE)
    cli = Cli(tmp, tmp / "archive", key)
    cli("init", "--name", "Test Documentation Centre", check=True)
    folder = tmp / "photos"
    folder.mkdir()
    for i in range(300):
        (folder / f"p{i:03d}.bin").write_bytes(b"evidence %d" % i)
    cli("ingest", folder, check=True)
    made = cli("checkpoint", "--json", check=True).json()
    with serving(lambda: Archive.open(cli.archive)) as url:
        yield SimpleNamespace(cli=cli, url=url, tmp=tmp, vkey=made["verifier_key"],
                              note=made["note"], size=made["size"])


def test_an_independent_reader_recomputes_the_checkpoint_root_from_tiles(public_log):
    log = public_log
    with httpx.Client(base_url=log.url) as web:
        got = web.get("/checkpoint")
        assert got.status_code == 200
        assert got.headers["content-type"] == "text/plain; charset=utf-8"
        assert got.headers["cache-control"] == "no-cache"
        note.open_checkpoint(got.text, [note.parse_verifier_key(log.vkey)])
        checkpoint, _ = note.open_checkpoint(log.note, [note.parse_verifier_key(log.vkey)])
        size = checkpoint.size
        assert size > 300

        # Every tile of the tree, and the level-0 hashes the entries must hash to.
        fetched: dict[Tile, list[bytes]] = {}
        for tile in tiles_of_tree(size):
            r = web.get("/" + tile.path)
            assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
            assert r.headers["cache-control"] == (
                "public, max-age=31536000, immutable" if tile.full else "public, max-age=60")
            fetched[tile] = decode_hashes(tile, r.content)
        assert {t.level for t in fetched} == {0, 1}
        leaves = [h for t in sorted(fetched, key=lambda t: t.index) if t.level == 0
                  for h in fetched[t]]
        # A level-1 hash is the MTH of the full level-0 tile under it.
        assert fetched[Tile(1, 0, 1)] == [mth(fetched[Tile(0, 0)])]

        # Each entry bundle holds the entries whose RFC 9162 leaf hashes are the level-0 tile.
        entries: list[bytes] = []
        for bundle in bundles_of_tree(size):
            r = web.get("/" + bundle.path, headers={"Accept-Encoding": "gzip"})
            assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
            entries += decode_bundle(bundle, r.content)
        assert [hashlib.sha256(b"\x00" + e).digest() for e in entries] == leaves
        assert b'"action":"ingest"' in entries[-1]  # the entry bytes, in clear
        assert mth(leaves) == checkpoint.root_hash

        # Nothing beyond the checkpoint's tree, nothing off the spec's paths: the JSON error.
        for path, code in [(f"/tile/0/001.p/{size - 255}", "tile-not-in-tree"),
                           ("/tile/0/002", "tile-not-in-tree"),
                           ("/tile/entries/002", "tile-not-in-tree"),
                           ("/tile/0/01", "no-such-tile"), ("/tile/1/000.p/256", "no-such-tile")]:
            r = web.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == code, path


def test_a_third_party_tlog_tiles_client_audits_the_served_log(public_log):
    """aics-tlog (PyPI, Apache-2.0; an independent Python tlog-tiles verifier) checks the
    checkpoint's signature and authenticates every tile and entry bundle against its root. It
    declares Python >= 3.12, so it is no dependency of custody: this runs where it is
    installed (docs/SERVICE.md says how) and is skipped elsewhere."""
    aics = pytest.importorskip("aics_tlog")
    verdict = aics.verify_checkpoint(aics.parse_note(public_log.note),
                                     aics.parse_vkey(public_log.vkey))
    assert verdict.ok, verdict
    checkpoint, _ = aics.checkpoint.checkpoint_from_note(public_log.note)
    reader = aics.HttpTileReader(public_log.url, proxies={})
    report = aics.audit_tiles(reader, checkpoint.size, checkpoint.root, entries=True)
    assert report.tiles == len(tiles_of_tree(checkpoint.size)) and report.bundles == 2
    assert aics.tree_root_from_tiles(reader, checkpoint.size) == checkpoint.root


def test_an_entry_too_large_for_a_bundle_is_refused_and_its_hashes_still_served(public_log):
    """Last in the module: it grows the log. An entry past 65,535 bytes has no tlog-tiles
    encoding; its bundle is refused with a named error, the hash tiles are served."""
    log = public_log
    (log.tmp / "big.bin").write_bytes(b"with a long note")
    log.cli("ingest", log.tmp / "big.bin", "--note", "n" * 70_000, check=True)
    log.cli("checkpoint", check=True)
    with httpx.Client(base_url=log.url) as web:
        grown = note.parse_checkpoint(note.split_note(web.get("/checkpoint").text)[0]).size
        assert grown == log.size + 1
        r = web.get("/" + bundles_of_tree(grown)[-1].path)
        assert r.status_code == 422 and r.json()["error"]["code"] == "entry-too-large"
        assert f"entry {grown - 1} is " in r.json()["error"]["message"]
        for tile in tiles_of_tree(grown):
            assert web.get("/" + tile.path).status_code == 200
        assert web.get("/" + bundles_of_tree(grown)[0].path).status_code == 200


def test_entries_are_not_served_unless_the_log_is_made_public(cli_archive):
    archive_dir = cli_archive.archive
    with serving(lambda: Archive.open(archive_dir), public_entries=False) as url:
        r = httpx.get(url + "/checkpoint")
        assert r.status_code == 404 and r.json() == {"error": {
            "code": "no-checkpoint", "message": "this archive has signed no checkpoint yet"}}
        cli_archive("checkpoint", check=True)
        assert httpx.get(url + "/tile/0/000.p/1").status_code == 200
        r = httpx.get(url + "/tile/entries/000.p/1")
        assert r.status_code == 404 and r.json()["error"]["code"] == "entries-not-public"


@pytest.fixture
def witness(made_key, tmp_path):
    made_key(tmp_path / "witness.key", "Witness W")
    return {"CUSTODY_KEY": str(tmp_path / "witness.key")}


def test_witness_cosigns_a_served_log_as_it_grows_and_refuses_a_fork(cli_archive, witness,
                                                                    tmp_path):
    cli = cli_archive
    (tmp_path / "a.bin").write_bytes(b"first evidence")
    cli("ingest", tmp_path / "a.bin", check=True)
    vkey = cli("checkpoint", "--json", check=True).json()["verifier_key"]
    fork = tmp_path / "fork"
    shutil.copytree(cli.archive, fork)  # the same archive key, from here on another history
    served = {"archive": cli.archive}
    state = tmp_path / "state.json"
    with serving(lambda: Archive.open(served["archive"]), public_entries=False) as url:
        first = cli("witness", "cosign", url, "--state", state, "--archive-key", vkey, "--json",
                    env=witness, check=True).json()
        # The archive keeps the cosignature; /checkpoint then carries it (C2SP: MAY).
        (tmp_path / "cosigned.txt").write_text(first["note"])
        cli("witness", "add", tmp_path / "cosigned.txt", "--witness-key", first["witness_key"],
            check=True)
        served_note = httpx.get(url + "/checkpoint").text
        assert served_note == first["note"]
        note.open_note(served_note, [note.parse_verifier_key(first["witness_key"])])
        for i in range(3):  # grow the log, then cosign its new checkpoint: proof from tiles
            (tmp_path / f"b{i}.bin").write_bytes(b"more evidence %d" % i)
        cli("ingest", *(tmp_path / f"b{i}.bin" for i in range(3)), check=True)
        cli("checkpoint", check=True)
        second = cli("witness", "cosign", url, "--state", state, "--json", env=witness,
                     check=True).json()
        assert second["size"] == first["size"] + 3
        note.open_note(second["note"], [note.parse_verifier_key(second["witness_key"]),
                                        note.parse_verifier_key(vkey)])

        # The fork: other entries after the first checkpoint, signed by the same archive key.
        for i in range(4):
            (tmp_path / f"c{i}.bin").write_bytes(b"other evidence %d" % i)
        on_fork = {"CUSTODY_ARCHIVE": str(fork)}
        cli("ingest", *(tmp_path / f"c{i}.bin" for i in range(4)), env=on_fork, check=True)
        cli("checkpoint", env=on_fork, check=True)
        served["archive"] = fork
        refused = cli("witness", "cosign", url, "--state", state, env=witness)
        assert refused.code == 1, refused.stderr
        assert "does not lead to the root" in one_line_error(refused)
        assert state.read_text().count(f'"size": {second["size"]}') == 1  # nothing advanced

        served["archive"] = Path("/nonexistent")  # a server that fails: a one-line error
        broken = cli("witness", "cosign", url, "--state", state, env=witness)
        assert broken.code == 3 and "answered HTTP 500" in one_line_error(broken)


def test_the_tile_routes_are_in_the_services_openapi_document():
    """custody serve mounts the public log, and /openapi.json says what each tile route answers,
    unsigned."""
    from custody.service.tiles import tile_operations

    paths = {(op.method, op.path): op.to_json() for op in tile_operations()}
    assert set(paths) == {("get", "/checkpoint"), ("get", "/tile/{path}")}
    assert {"200", "404", "422"} <= set(paths[("get", "/tile/{path}")]["responses"])
    assert all("security" not in op for op in paths.values())
