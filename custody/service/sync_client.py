"""Sync to the centre, the field laptop's half (`custody sync`): hand in what this archive holds
and the centre lacks, as a verified package with the items' signed history, and record the
centre's signed receipt here. docs/SERVICE.md, "Sync to the centre".

1. ask the centre which items it holds (`POST /api/v1/held`); nothing missing: `present`;
2. export the missing ones as a package (a local `export` access entry, as `custody export`);
   build the `received` entries the centre will make of it (importing.received_drafts, the
   centre's own code) and sign each as a statement here;
3. upload the package over tus (push.py's client; a rerun resumes it), then
   `POST /api/v1/imports` with the statements: the centre verifies and appends them, or nothing;
4. wait for the centre's checkpoint covering the new entries, check it with the pinned centre key,
   and append one `handed_in` entry per item here.
A state folder keeps the package, statements and the import's answer until the receipt is
recorded, so an interruption at any step is finished by a rerun.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from custody.core import handin, merkle, note, tiles
from custody.core.signing import SigningKey
from custody.errors import CustodyError, UsageError
from custody.ops.archive import Archive, Draft
from custody.package.export import export
from custody.package.importing import kept_evidence, received_drafts
from custody.package.verify import checked
from custody.service.push import TUS, Pusher, PushError, PushResult, _said, resume_dir
from custody.service.signing import signed_statement

PURPOSE = "handed in to the centre"


class SyncFailed(CustodyError):
    """The sync stopped; a rerun continues from where it stopped."""


def state_dir(server: str, archive: Archive) -> Path:
    """$XDG_CACHE_HOME/custody/sync/<server and archive>: the package being handed in."""
    name = hashlib.sha256(f"{server}\n{archive.config.origin}".encode()).hexdigest()[:32]
    return resume_dir().parent / "sync" / name


def sync(archive: Archive, key: SigningKey, load_archive_key: Callable[[], SigningKey],
         server: str, auth: httpx.Auth, centre_key: str, *, chunk_size: int = 4 << 20,
         wait: float = 60.0) -> dict[str, Any]:
    if not server.startswith(("http://", "https://")):
        raise UsageError(f"--server must be an http:// or https:// URL, not {server[:60]!r}")
    try:
        verifier = note.parse_verifier_key(centre_key)
    except note.NoteError as exc:
        raise UsageError(f"--centre-key: {exc.message}") from None
    server = server.rstrip("/")
    folder = state_dir(server, archive)
    pusher = Pusher(server, key, auth, None, chunk_size=chunk_size,
                    state_dir=folder.parent / "resume")
    try:
        _check_centre_key(pusher, verifier)
        state = _load(folder)
        result = PushResult(path=str(folder / "package.zip"), status="new")
        if state is None:
            state = _prepare(archive, key, load_archive_key, pusher, folder)
            if state is None:
                return {"status": "present", "items": [], "bytes_sent": 0}
        if state.get("imported") is None:
            state["imported"] = _hand_in(pusher, folder, state, result)
            _save(folder, state)
        entries = state["imported"]["entries"]
        receipt = _receipt(archive, key, pusher, state, str(verifier), verifier, wait)
    except PushError as exc:
        raise SyncFailed(f"sync stopped: {exc} (run custody sync again to continue)") from None
    finally:
        pusher.http.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {"status": "new", "items": entries, "centre": state["log"],
            "package_sha256": state["imported"].get("package_sha256"),
            "bytes_sent": result.bytes_sent, "bytes_skipped": result.bytes_skipped,
            "receipt": receipt}


def _prepare(archive: Archive, key: SigningKey, load_archive_key: Callable[[], SigningKey],
             pusher: Pusher, folder: Path) -> dict[str, Any] | None:
    """Export what the centre lacks and sign its received statements; None if it lacks nothing."""
    items = archive.ledger.items()
    missing: list[str] = []
    for start in range(0, len(items), 10_000):
        answer = _post(pusher, "/api/v1/held", {"sha256": items[start:start + 10_000]}, 200)
        missing += answer["missing"]
    if not missing:
        return None
    log = str(pusher._json("GET", "/uploads/")["log"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    package = folder / "package.zip"
    export(archive, key, load_archive_key, missing, None, f"{PURPOSE} {pusher.server}", package)
    with checked(package, None, None) as c:
        if not c.report.ok:
            raise SyncFailed(f"the package made here does not verify: {c.report.problems[0]}")
        drafts = received_drafts(c.report, c.tags, kept_evidence(c.report, c.tags), None,
                                 str(uuid.uuid4()))
    statements = [signed_statement(key, log, d.action, d.item, d.details) for d in drafts]
    with package.open("rb") as stream:
        sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
    state = {"server": pusher.server, "log": log, "items": missing, "package_file": sha256,
             "size": package.stat().st_size, "statements": statements, "upload": None,
             "imported": None}
    _save(folder, state)
    return state


def _hand_in(pusher: Pusher, folder: Path, state: dict[str, Any],
             result: PushResult) -> dict[str, Any]:
    """Upload the package (resuming an upload a earlier run began), then ask for its import."""
    package, size, sha256 = folder / "package.zip", int(state["size"]), state["package_file"]
    result.sha256 = sha256
    url, offset = state.get("upload"), 0
    if url is not None:
        head = pusher._request("HEAD", url)
        if head.status_code == 200:
            offset = int(head.headers["upload-offset"])
            result.bytes_skipped = offset
        else:
            url = None
    if url is None:
        meta = ",".join(f"{k} {_b64(v)}" for k, v in (("package", sha256),
                                                      ("filename", "package.zip")))
        response = pusher._request("POST", f"{pusher.server}/uploads/", headers={
            **TUS, "Upload-Length": str(size), "Upload-Metadata": meta})
        if response.status_code != 201:
            raise PushError(_said(response))
        url = str(httpx.URL(pusher.server).join(response.headers["location"]))
        state["upload"] = url
        _save(folder, state)
    pusher._send(package, url, offset, size, result)
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    described = pusher._request("GET", url)
    if described.status_code == 200 and described.json().get("state") == "imported":
        return {"entries": described.json()["result"]["entries"]}  # an earlier run's answer lost
    return _post(pusher, "/api/v1/imports", {"upload": upload_id,
                                             "statements": state["statements"]}, 201)


def _receipt(archive: Archive, key: SigningKey, pusher: Pusher, state: dict[str, Any],
             centre_key: str, verifier: note.VerifierKey, wait: float) -> dict[str, Any]:
    """The centre's checkpoint over the new entries, checked, recorded here as handed_in."""
    entries = state["imported"]["entries"]
    last = max(e["seq"] for e in entries)
    deadline = time.monotonic() + wait
    while True:
        response = pusher._request("GET", f"{pusher.server}/checkpoint")
        if response.status_code == 200:
            text = response.text
            try:
                checkpoint, _ = note.open_checkpoint(text, [verifier])
            except note.NoteError as exc:
                raise SyncFailed(f"the centre's checkpoint does not verify with --centre-key: "
                                 f"{exc.message}") from None
            if checkpoint.origin != state["log"]:
                raise SyncFailed(f"the centre's checkpoint is of log {checkpoint.origin!r}, not "
                                 f"{state['log']!r}")
            if checkpoint.size > last:
                break
        if time.monotonic() > deadline:
            raise SyncFailed("handed in, but the centre has signed no checkpoint covering the "
                             "new entries yet: run custody sync again later to record the "
                             "receipt")
        time.sleep(0.5)
    drafts = []
    fetched: dict[tiles.Tile, bytes] = {}
    for e in entries:
        details = {"centre": state["log"], "centre_key": centre_key, "server": pusher.server,
                   "checkpoint": text, "seq": e["seq"], "statement_id": e["statement_id"],
                   "package_sha256": state["imported"].get("package_sha256")}
        if isinstance(e.get("entry"), str):  # a centre that returns its entry: prove it (§12.4)
            details[handin.ENTRY] = e["entry"]
            details[handin.INCLUSION] = _inclusion(pusher, checkpoint, e["seq"], fetched)
        problems = handin.receipt_problems(details, e["item"])
        if problems:
            raise SyncFailed(f"the centre's receipt does not hold: {problems[0]}")
        drafts.append(Draft("handed_in", e["item"], details))
    signed = archive.append(key, drafts, attempted="sync")
    return {"checkpoint_size": checkpoint.size, "root_hash": checkpoint.root_hash.hex(),
            "entries": [s.entry().seq for s in signed]}


def _inclusion(pusher: Pusher, checkpoint: note.Checkpoint, seq: int,
               fetched: dict[tiles.Tile, bytes]) -> list[str]:
    """The inclusion proof of centre entry `seq` in `checkpoint`'s tree, read from the centre's
    public hash tiles (C2SP tlog-tiles). The tiles need no trust: the proof is checked against
    the root the pinned key signed (handin.receipt_problems)."""
    size = checkpoint.size
    for tile in tiles.tiles_for_nodes(merkle.inclusion_proof_nodes(seq, size), size):
        if tile not in fetched:
            response = pusher._request("GET", f"{pusher.server}/{tile.path}")
            if response.status_code != 200:
                raise PushError(_said(response))
            fetched[tile] = response.content
    try:
        proof = merkle.inclusion_proof(seq, size, tiles.node_reader(size, fetched))
    except (tiles.TileError, ValueError) as exc:
        raise SyncFailed(f"the centre's tiles do not give an inclusion proof: {exc}") from None
    return [base64.b64encode(h).decode() for h in proof]


def _check_centre_key(pusher: Pusher, verifier: note.VerifierKey) -> None:
    """Before anything is sent: the centre's latest checkpoint (if it has signed one) verifies
    with the pinned key, so a wrong key or a server that is not the centre stops the sync here."""
    response = pusher._request("GET", f"{pusher.server}/checkpoint")
    if response.status_code != 200:
        return
    try:
        note.open_checkpoint(response.text, [verifier])
    except note.NoteError as exc:
        raise SyncFailed(f"the centre's checkpoint does not verify with --centre-key: "
                         f"{exc.message}; nothing was sent") from None


def _post(pusher: Pusher, path: str, body: dict[str, Any], expect: int) -> dict[str, Any]:
    response = pusher._request("POST", f"{pusher.server}{path}",
                               content=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
    if response.status_code != expect:
        raise PushError(_said(response))
    out: dict[str, Any] = response.json()
    return out


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _load(folder: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((folder / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) and (folder / "package.zip").exists() else None


def _save(folder: Path, state: dict[str, Any]) -> None:
    temp = folder / "state.json.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(state).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, folder / "state.json")
