"""tus 1.0 uploads under /uploads/: core, creation, checksum, termination, expiration.

Any tus client can send bytes; an upload becomes evidence only through landing.py (the digests
the custodian signed, the archive's own metadata reading, object and entry together). Partial
uploads live in the upload folder (partials.py), outside the object store. docs/SERVICE.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from custody.ops.archive import Archive
from custody.service import landing
from custody.service.auth import Authenticate
from custody.service.errors import error_response
from custody.service.openapi import Operation, error_responses, json_content, path_param
from custody.service.partials import COMPLETE, RECEIVING, Upload, UploadFolder, rfc3339, write_at

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,checksum,termination,expiration"
CHECKSUMS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}
OFFSET_TYPE = "application/offset+octet-stream"
METADATA_STATEMENT = "statement"  # Upload-Metadata key: base64 of the statement file's JSON
METADATA_FILENAME = "filename"
# instead of a statement: the SHA-256 of a package handed in (`custody sync`)
METADATA_PACKAGE = PACKAGE = "package"
MAX_CHUNK = 64 << 20  # bytes one PATCH may carry: held in memory while its signature is checked


def _error(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    """The service's error shape (custody.service.errors), with tus's version header."""
    return error_response(status, code, message, {"Tus-Resumable": TUS_VERSION, **(headers or {})})


def _http_date(rfc3339: str) -> str:
    return format_datetime(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")), usegmt=True)


def parse_metadata(header: str) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64value` pairs (a key alone: empty value)."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"Upload-Metadata value of {key[:40]!r} is not base64 of UTF-8") \
                from None
    return out


def upload_routes(open_archive: Callable[[], Archive], authenticate: Authenticate,
                  upload_dir: Path, *, max_upload_bytes: int,
                  expire_after: timedelta) -> list[BaseRoute]:
    """The tus routes of one served archive; partial uploads in `upload_dir`."""
    service = _Uploads(open_archive, authenticate, UploadFolder(upload_dir), max_upload_bytes,
                       expire_after)
    return [
        Route("/uploads", service.collection, methods=["OPTIONS", "POST", "GET"]),
        Route("/uploads/", service.collection, methods=["OPTIONS", "POST", "GET"]),
        Route("/uploads/held/{sha256}", service.held, methods=["GET"]),
        Route("/uploads/{upload_id}", service.one,
              methods=["OPTIONS", "HEAD", "GET", "PATCH", "DELETE"]),
    ]


class _Uploads:
    def __init__(self, open_archive: Callable[[], Archive], authenticate: Authenticate,
                 folder: UploadFolder, max_bytes: int, expire_after: timedelta) -> None:
        self.open_archive = open_archive
        self.authenticate = authenticate
        self.folder = folder
        self.max_bytes = max_bytes
        self.expire_after = expire_after
        self.sweep_every = min(60.0, expire_after.total_seconds() / 2)
        self.last_sweep = 0.0
        self.locks: dict[str, asyncio.Lock] = {}
        self._reader: Any = None  # the metadata worker, started at the first landing
        self._reader_made = threading.Lock()

    # -- shared --------------------------------------------------------------------------------

    def _options(self) -> Response:
        return Response(status_code=204, headers={
            "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS, "Tus-Max-Size": str(self.max_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUMS)})

    async def _sweep_if_due(self) -> None:
        if time.monotonic() - self.last_sweep >= self.sweep_every:
            self.last_sweep = time.monotonic()
            busy = frozenset(k for k, lock in self.locks.items() if lock.locked())
            await run_in_threadpool(self.folder.sweep, datetime.now(UTC), busy)
            for k in [k for k, lock in self.locks.items() if not lock.locked()]:
                del self.locks[k]  # recreated on the next request for that upload

    def _version_refused(self, request: Request) -> Response | None:
        if request.headers.get("tus-resumable") != TUS_VERSION:
            return _error(412, "tus-version", f"this server speaks tus {TUS_VERSION} only "
                          "(send Tus-Resumable: 1.0.0)", {"Tus-Version": TUS_VERSION})
        return None

    def reader(self, archive: Archive) -> Any:
        """The metadata worker. Called in the thread pool: making it imports heavy libraries,
        which on the event loop would stall every other request (found under load)."""
        with self._reader_made:
            if self._reader is None:
                from custody.metadata import MetadataReader
                from custody.ops.c2pa_trust import configured_files, load_trust

                self._reader = MetadataReader(
                    c2pa_trust=load_trust(configured_files(archive.root)))
            return self._reader

    # -- /uploads/ -----------------------------------------------------------------------------

    async def collection(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options()
        caller = await self.authenticate(request)
        if request.method == "GET":  # what a client needs to sign for this archive
            archive = await run_in_threadpool(self.open_archive)
            return JSONResponse({"log": archive.config.origin, "tus_version": TUS_VERSION,
                                 "max_size": self.max_bytes,
                                 "checksum_algorithms": list(CHECKSUMS),
                                 "expire_after_seconds": int(self.expire_after.total_seconds())})
        if (refused := self._version_refused(request)) is not None:
            return refused
        await self._sweep_if_due()
        return await self._create(request, caller.key_id)

    async def _create(self, request: Request, key_id: str) -> Response:
        if "upload-defer-length" in request.headers:
            return _error(400, "defer-length", "Upload-Defer-Length is not supported: the "
                          "signed statement fixes the length")
        length_text = request.headers.get("upload-length", "")
        if not length_text.isdigit():
            return _error(400, "upload-length", "Upload-Length must be a non-negative integer")
        length = int(length_text)
        if length > self.max_bytes:
            return _error(413, "too-large", f"the upload ({length} bytes) exceeds this "
                          f"server's Tus-Max-Size ({self.max_bytes})")
        try:
            meta = parse_metadata(request.headers.get("upload-metadata", ""))
        except ValueError as exc:
            return _error(400, "upload-metadata", str(exc))
        package = meta.get(METADATA_PACKAGE)
        if package is not None:
            return await self._create_package(request, key_id, length, package,
                                              meta.get(METADATA_FILENAME))
        text = meta.get(METADATA_STATEMENT)
        if text is None:
            return _error(400, "no-statement", "Upload-Metadata must carry 'statement': the "
                          "custodian-signed statement file of the bytes (docs/SERVICE.md)")
        archive = await run_in_threadpool(self.open_archive)
        try:
            await run_in_threadpool(landing.admit, archive, key_id, text, length)
        except landing.Refused as refused:
            return _error(refused.status, refused.code, refused.message)
        now = datetime.now(UTC)
        upload = await run_in_threadpool(
            lambda: self.folder.create(owner=key_id, length=length, statement=text,
                                       filename=meta.get(METADATA_FILENAME), now=now,
                                       expires=now + self.expire_after))
        # relative (tus allows it): right behind a reverse proxy that terminates TLS
        location = request.url.path.rstrip("/") + "/" + upload.id
        return Response(status_code=201, headers={
            "Location": location,
            "Tus-Resumable": TUS_VERSION, "Upload-Offset": "0",
            "Upload-Expires": _http_date(upload.expires)})

    async def _create_package(self, request: Request, key_id: str, length: int, sha256: str,
                              filename: str | None) -> Response:
        """A package to hand in: its bytes are only kept until `POST /api/v1/imports` verifies
        and imports it (custody/service/sync.py); nothing is recorded at upload."""
        if not landing.SHA256_HEX.fullmatch(sha256):
            return _error(400, "upload-metadata", "'package' must be the package file's SHA-256 "
                          "(64 lowercase hex digits)")
        now = datetime.now(UTC)
        upload = await run_in_threadpool(
            lambda: self.folder.create(owner=key_id, length=length, statement="",
                                       filename=filename, now=now,
                                       expires=now + self.expire_after, kind=PACKAGE,
                                       package_sha256=sha256))
        location = request.url.path.rstrip("/") + "/" + upload.id
        return Response(status_code=201, headers={
            "Location": location, "Tus-Resumable": TUS_VERSION, "Upload-Offset": "0",
            "Upload-Expires": _http_date(upload.expires)})

    async def held(self, request: Request) -> Response:
        """Whether the archive already holds these bytes as an item (push asks before sending)."""
        await self.authenticate(request)
        sha256 = request.path_params["sha256"].lower()
        if not landing.SHA256_HEX.fullmatch(sha256):
            return _error(400, "not-a-digest", "give a SHA-256 as 64 hex digits")
        archive = await run_in_threadpool(self.open_archive)
        held = await run_in_threadpool(archive.ledger.recorded, sha256)
        return JSONResponse({"sha256": sha256, "held": held})

    # -- /uploads/{id} -------------------------------------------------------------------------

    async def one(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options()
        if request.method == "PATCH" and (refused := _chunk_refused(request)) is not None:
            return refused  # before authenticate, which reads the whole body into memory
        caller = await self.authenticate(request)
        if request.method != "GET" and (refused := self._version_refused(request)) is not None:
            return refused
        await self._sweep_if_due()
        upload_id = request.path_params["upload_id"]
        lock = self.locks.setdefault(upload_id, asyncio.Lock())
        async with lock:
            upload = await run_in_threadpool(self.folder.get, upload_id)
            if upload is None or upload.owner != caller.key_id:  # another's upload: not found
                return _error(404, "no-such-upload", "no such upload (finished and expired, "
                              "terminated, or not yours)")
            if upload.state == RECEIVING and upload.expired(datetime.now(UTC)):
                await run_in_threadpool(self.folder.remove, upload.id)
                return _error(410, "upload-expired", "the upload expired and was removed")
            if request.method == "DELETE":
                await run_in_threadpool(self.folder.remove, upload.id)
                self.locks.pop(upload_id, None)
                return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})
            if request.method == "GET":
                return JSONResponse(_describe(upload))
            if request.method == "HEAD":
                return self._head(upload)
            return await self._patch(request, upload)

    def _head(self, upload: Upload) -> Response:
        if upload.state == "refused":
            return Response(status_code=410, headers={"Tus-Resumable": TUS_VERSION,
                                                      "Cache-Control": "no-store"})
        headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store",
                   "Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length),
                   "Upload-Expires": _http_date(upload.expires)}
        return Response(status_code=200, headers=headers | _outcome(upload))

    async def _patch(self, request: Request, upload: Upload) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != OFFSET_TYPE:
            return _error(415, "content-type", f"a PATCH's Content-Type is {OFFSET_TYPE}")
        offset_text = request.headers.get("upload-offset", "")
        if not offset_text.isdigit():
            return _error(400, "upload-offset", "Upload-Offset must be a non-negative integer")
        if upload.state != RECEIVING or int(offset_text) != upload.offset:
            return _error(409, "offset-mismatch", f"the upload is at offset {upload.offset}, "
                          f"not {offset_text}: ask with HEAD",
                          {"Upload-Offset": str(upload.offset)})
        checksum = _checksum(request.headers.get("upload-checksum"))
        if isinstance(checksum, Response):
            return checksum
        received = await self._receive(request, upload, checksum)
        if isinstance(received, Response):
            return received
        upload = received
        if upload.offset < upload.length:
            return Response(status_code=204, headers={
                "Tus-Resumable": TUS_VERSION, "Upload-Offset": str(upload.offset),
                "Upload-Expires": _http_date(upload.expires)})
        return await self._land(upload)

    async def _receive(self, request: Request, upload: Upload,
                       checksum: tuple[Any, bytes] | None) -> Upload | Response:
        """Write the body at the durable offset; fsync; record the new offset. A chunk whose
        checksum fails (or that is cut off while a checksum was asked for) is discarded."""
        fd = await run_in_threadpool(self.folder.open_at, upload)
        hasher = checksum[0]() if checksum is not None else None
        written = 0
        try:
            try:
                async for piece in request.stream():
                    if upload.offset + written + len(piece) > upload.length:
                        await run_in_threadpool(os.ftruncate, fd, upload.offset)
                        return _error(413, "beyond-length", "the chunk runs past Upload-Length",
                                      {"Upload-Offset": str(upload.offset)})
                    await run_in_threadpool(write_at, fd, upload.offset + written, piece)
                    written += len(piece)
                    if hasher is not None:
                        hasher.update(piece)
            except ClientDisconnect:
                if hasher is not None:  # an unverifiable chunk is not kept
                    written = 0
                    await run_in_threadpool(os.ftruncate, fd, upload.offset)
                return await run_in_threadpool(self._advance, upload, fd, written)
            if checksum is not None and hasher is not None and hasher.digest() != checksum[1]:
                await run_in_threadpool(os.ftruncate, fd, upload.offset)
                return _error(460, "checksum-mismatch", "the chunk's Upload-Checksum does not "
                              "match its bytes: it was discarded",
                              {"Upload-Offset": str(upload.offset)})
            return await run_in_threadpool(self._advance, upload, fd, written)
        finally:
            os.close(fd)

    def _advance(self, upload: Upload, fd: int, written: int) -> Upload:
        moved = self.folder.advance(upload, fd, written)
        if written:  # an upload in progress keeps living: the expiry runs from its last chunk
            later = datetime.now(UTC) + self.expire_after
            moved = replace(moved, expires=rfc3339(later))
            self.folder.save(moved)
        return moved

    async def _land(self, upload: Upload) -> Response:
        if upload.kind == PACKAGE:
            return await self._package_arrived(upload)
        archive = await run_in_threadpool(self.open_archive)
        path = self.folder.data_path(upload.id)
        try:
            reader = await run_in_threadpool(self.reader, archive)
            landed = await run_in_threadpool(landing.land, archive, reader, path,
                                             upload.statement)
        except landing.Refused as refused:
            await run_in_threadpool(self._refuse, upload, refused)
            return _error(refused.status, refused.code, refused.message)
        ended = await run_in_threadpool(self.folder.end, upload, landed.status,
                                        landed.to_json())
        return Response(status_code=204, headers={
            "Tus-Resumable": TUS_VERSION, "Upload-Offset": str(ended.offset),
            "Upload-Expires": _http_date(ended.expires)} | _outcome(ended))

    async def _package_arrived(self, upload: Upload) -> Response:
        """Every byte of a package: it must be the file its sender named, else refused."""
        path = self.folder.data_path(upload.id)
        got = await run_in_threadpool(_sha256_of, path)
        if got != upload.package_sha256:
            refused = landing.Refused(422, "digest-mismatch", "the package's bytes do not have "
                                      "the SHA-256 its sender named: nothing was kept")
            await run_in_threadpool(self._refuse, upload, refused)
            return _error(refused.status, refused.code, refused.message)
        done = await run_in_threadpool(self.folder.complete, upload,
                                       {"status": COMPLETE, "sha256": got})
        return Response(status_code=204, headers={
            "Tus-Resumable": TUS_VERSION, "Upload-Offset": str(done.offset),
            "Upload-Expires": _http_date(done.expires)} | _outcome(done))

    def _refuse(self, upload: Upload, refused: landing.Refused) -> None:
        """Nothing stored; the partial deleted; the refusal kept (the statement as signed)."""
        self.folder.record_refusal({
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "upload": upload.id,
            "key_id": upload.owner, "code": refused.code, "reason": refused.message,
            "statement": upload.statement, "filename": upload.filename,
            "length": upload.length})
        self.folder.end(upload, "refused", {"status": "refused", "code": refused.code,
                                            "error": refused.message})


def _sha256_of(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _chunk_refused(request: Request) -> Response | None:
    """A PATCH states its length and stays within MAX_CHUNK: its body is read whole (its
    signature covers its Content-Digest) before anything is written."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        return _error(411, "length-required", "a PATCH needs a Content-Length (send the upload "
                      f"in chunks of at most {MAX_CHUNK} bytes)")
    if int(declared) > MAX_CHUNK:
        return _error(413, "chunk-too-large", f"a PATCH may carry at most {MAX_CHUNK} bytes: "
                      "send the upload in chunks (tus clients: set a chunk size)")
    return None


def _checksum(header: str | None) -> tuple[Any, bytes] | Response | None:
    if header is None:
        return None
    name, _, value = header.strip().partition(" ")
    if name not in CHECKSUMS:
        return _error(400, "checksum-algorithm", f"Upload-Checksum algorithm {name[:20]!r} is "
                      f"not supported ({', '.join(CHECKSUMS)})")
    try:
        return CHECKSUMS[name], base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        return _error(400, "checksum-value", "Upload-Checksum's value is not base64")


def _outcome(upload: Upload) -> dict[str, str]:
    """How a finished upload ended, for a client that lost the last response."""
    result = upload.result or {}
    if upload.state == RECEIVING or "sha256" not in result:
        return {}
    out = {"Custody-Status": str(result["status"]), "Custody-Sha256": str(result["sha256"])}
    if result.get("seq") is not None:
        out["Custody-Seq"] = str(result["seq"])
    return out


def _describe(upload: Upload) -> dict[str, Any]:
    return {"id": upload.id, "length": upload.length, "offset": upload.offset,
            "state": upload.state, "result": upload.result, "expires": upload.expires,
            "created": upload.created, "filename": upload.filename}


def upload_operations() -> list[Operation]:
    """The tus routes in the OpenAPI document (the protocol itself: https://tus.io/protocols/)."""
    tus = {"description": "tus 1.0 headers only (Tus-Resumable, Upload-Offset, ...)"}
    upload = path_param("upload_id", "The upload's id (32 hex digits), from Location")
    obj = json_content({"type": "object"})
    return [
        Operation("options", "/uploads/", "tus discovery: Tus-Version, Tus-Extension, "
                  "Tus-Max-Size, Tus-Checksum-Algorithm", {"204": tus}, signed=False),
        Operation("get", "/uploads/", "What a client signs for: this archive's log origin and "
                  "the upload limits", {"200": {"description": "Upload settings",
                                                "content": obj}}),
        Operation("post", "/uploads/", "tus creation: Upload-Length and Upload-Metadata "
                  "`statement` (base64 of a custodian-signed statement file of the bytes), "
                  "or `package` (the SHA-256 of a package to hand in, `custody sync`)",
                  {"201": {"description": "Created; Location names the upload"},
                   **error_responses(412)}),
        Operation("get", "/uploads/held/{sha256}", "Whether the archive holds these bytes as "
                  "an item", {"200": {"description": "held or not", "content": obj}},
                  [path_param("sha256", "SHA-256, 64 hex digits")]),
        Operation("head", "/uploads/{upload_id}", "tus core: the durable Upload-Offset; a "
                  "finished upload adds Custody-Status", {"200": tus, "412": tus}, [upload]),
        Operation("get", "/uploads/{upload_id}", "The upload's state and outcome",
                  {"200": {"description": "The upload", "content": obj}}, [upload]),
        Operation("patch", "/uploads/{upload_id}", "tus core: bytes at Upload-Offset "
                  "(Upload-Checksum sha256 per chunk; 460 on mismatch); the last one lands "
                  "the upload or refuses it (422)", {"204": tus, "409": tus, "460": tus,
                                                     **error_responses(412)},
                  [upload]),
        Operation("delete", "/uploads/{upload_id}", "tus termination",
                  {"204": tus, **error_responses(412)},
                  [upload]),
    ]
