"""Sync to the centre, the server's half: which items the archive holds (many at once), and the
import of a package handed in over tus, whose `received` statements the sender signed.
docs/SERVICE.md, "Sync to the centre"; the client is custody/service/sync_client.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from custody.core import permissions
from custody.errors import CustodyError, NotPermitted
from custody.ops.archive import Archive
from custody.package.handin import import_signed
from custody.service.auth import Authenticate, Caller
from custody.service.errors import ServiceError, status_of
from custody.service.landing import SHA256_HEX
from custody.service.openapi import Operation, error_responses, json_content
from custody.service.partials import COMPLETE, UPLOAD_ID, UploadFolder

MAX_DIGESTS = 10_000  # per `held` request: a larger archive asks in several


def sync_routes(open_archive: Callable[[], Archive], authenticate: Authenticate,
                upload_dir: Path) -> list[BaseRoute]:
    """`POST /api/v1/held` and `POST /api/v1/imports`; package uploads in `upload_dir` (the tus
    routes' folder)."""
    folder = UploadFolder(upload_dir)
    importing: dict[str, asyncio.Lock] = {}  # one import of an upload at a time

    async def held(request: Request) -> Response:
        await authenticate(request)
        digests = _body(await request.body()).get("sha256")
        if not isinstance(digests, list) or len(digests) > MAX_DIGESTS or not all(
                isinstance(d, str) and SHA256_HEX.fullmatch(d) for d in digests):
            raise ServiceError(400, "usage-error", f"give {{\"sha256\": [...]}}: at most "
                               f"{MAX_DIGESTS} SHA-256s, 64 lowercase hex digits each")
        archive = await run_in_threadpool(open_archive)
        found = await run_in_threadpool(lambda: [d for d in digests if archive.ledger.recorded(d)])
        return JSONResponse({"held": found, "missing": [d for d in digests if d not in found]})

    async def imports(request: Request) -> Response:
        caller = await authenticate(request)
        body = _body(await request.body())
        upload_id, files = body.get("upload"), body.get("statements")
        if not isinstance(upload_id, str) or not isinstance(files, list) \
                or not all(isinstance(f, dict) for f in files):
            raise ServiceError(400, "usage-error", "give {\"upload\": ID, \"statements\": "
                               "[statement files]}")
        if not UPLOAD_ID.fullmatch(upload_id) or folder.get(upload_id) is None:
            raise ServiceError(404, "no-such-upload", "no such package upload (expired, "
                               "refused, imported, or not yours)")
        # one lock per existing upload (a few bytes each, for the server's life): two posts of
        # one upload must not both import it, nor the loser's refusal overwrite the winner's record
        async with importing.setdefault(upload_id, asyncio.Lock()):
            return await _import(caller, upload_id, files)

    async def _import(caller: Caller, upload_id: str, files: list[Any]) -> Response:
        try:
            upload = folder.get(upload_id)
        except ValueError:
            upload = None
        if upload is None or upload.owner != caller.key_id or upload.kind != "package":
            raise ServiceError(404, "no-such-upload", "no such package upload (expired, "
                               "refused, imported, or not yours)")
        if upload.state == "imported":
            raise ServiceError(409, "already-imported", "this package upload was imported: "
                               "GET /uploads/ID has its entries")
        if upload.state != COMPLETE:
            raise ServiceError(409, "upload-not-complete", f"the package upload is {upload.state}"
                               ": send its remaining bytes first")
        if not permissions.may(caller.role, "received"):
            raise NotPermitted(f"{caller.name} has role '{caller.role}', which may not sign "
                               "'received'")
        archive = await run_in_threadpool(open_archive)
        texts = [json.dumps(f) for f in files]
        try:
            result = await run_in_threadpool(import_signed, archive, caller.key_id,
                                             folder.data_path(upload.id), texts)
        except CustodyError as exc:  # refused whole: the package is dropped, the refusal kept
            if status_of(exc) != 500:
                await run_in_threadpool(_refuse, folder, upload, exc, texts)
            raise
        result["upload"] = upload.id
        await run_in_threadpool(folder.end, upload, "imported",
                                {"status": "imported", "sha256": upload.package_sha256,
                                 "entries": result["entries"]})
        return JSONResponse(result, status_code=201)

    return [Route("/api/v1/held", held, methods=["POST"]),
            Route("/api/v1/imports", imports, methods=["POST"])]


def _body(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ServiceError(400, "usage-error", "the body must be a JSON object")
    return value


def _refuse(folder: UploadFolder, upload: Any, exc: CustodyError, texts: list[str]) -> None:
    folder.record_refusal({
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "upload": upload.id,
        "key_id": upload.owner, "code": "import-refused", "reason": exc.message,
        "package_sha256": upload.package_sha256, "statements": texts,
        "length": upload.length})
    folder.end(upload, "refused", {"status": "refused", "code": "import-refused",
                                   "error": exc.message})


def sync_operations() -> list[Operation]:
    digests = {"type": "object", "required": ["sha256"],
               "properties": {"sha256": {"type": "array", "maxItems": MAX_DIGESTS,
                                         "items": {"type": "string",
                                                   "pattern": "^[0-9a-f]{64}$"}}}}
    return [
        Operation("post", "/api/v1/held", "Which of these SHA-256s the archive holds as items",
                  {"200": {"description": "held and missing", "content": json_content({
                      "type": "object", "properties": {
                          "held": {"type": "array", "items": {"type": "string"}},
                          "missing": {"type": "array", "items": {"type": "string"}}}})},
                   **error_responses(400, 401, 413, 429)},
                  request_body={"required": True, "content": json_content(digests)}),
        Operation("post", "/api/v1/imports", "Import a package handed in over tus, with the "
                  "sender's signed received statements",
                  {"201": {"description": "the entries appended", "content": json_content(
                      {"type": "object"})},
                   **error_responses(400, 401, 403, 404, 409, 413, 422, 429)},
                  request_body={"required": True, "content": json_content({
                      "type": "object", "required": ["upload", "statements"],
                      "properties": {"upload": {"type": "string"},
                                     "statements": {"type": "array",
                                                    "items": {"type": "object"}}}})}),
    ]
