"""`custody serve`: the Starlette app over one archive, its middleware and its OpenAPI document.

`create_app(settings)` mounts every part's routes; `serve(settings)` runs it on uvicorn.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from custody.core.signing import SigningKey
from custody.errors import CustodyError
from custody.ops.archive import Archive
from custody.ops.backends import nonce_store
from custody.service.api import api_routes
from custody.service.auth import CALLER_KEY, Authenticator
from custody.service.checkpointer import Checkpointer
from custody.service.errors import HANDLERS, ServiceError, log
from custody.service.limits import BodyLimit, RateLimiter
from custody.service.openapi import Operation, document, json_content
from custody.service.sync import sync_operations, sync_routes
from custody.service.tiles import tile_operations, tile_routes
from custody.service.uploads import upload_operations, upload_routes
from custody.web import maps
from custody.web.crossref_page import PATH as CROSSREF_PAGE  # its own limit: --max-track
from custody.web.routes import web_routes
from custody.web.security import SecurityHeaders
from store.ports import StoreError

UPLOADS = "/uploads/"  # tus uploads keep their own size limit (custody/service/uploads.py)


@dataclass(frozen=True)
class ServiceSettings:
    """What `custody serve` is told (docs/SERVICE.md "Limits" says each default's reason)."""

    archive: Path
    allow_origins: tuple[str, ...] = ()  # CORS closed unless named
    max_body_bytes: int = 1024 * 1024  # API bodies: statements, tracks
    rate_per_second: float = 10.0  # per custodian key, token bucket
    rate_burst: int = 60
    signature_window_seconds: int = 300  # |now - created| allowed
    access_log: Path | None = None  # None: stderr
    extra_routes: tuple[BaseRoute, ...] = field(default=())
    upload_dir: Path | None = None  # partial tus uploads; None: <archive>/uploads
    max_upload_bytes: int = 64 << 30  # Tus-Max-Size: one file, whole
    upload_expire_after: timedelta = timedelta(days=7)  # from an upload's last chunk
    public_log: bool = False  # serve entry bundles (entries in clear), not only hashes
    archive_key: SigningKey | None = None  # signs checkpoints as the log grows (checkpointer.py)
    checkpoint_every: float = 10.0  # seconds between checks for growth
    tile_url: str | None = None  # the web maps' tile server (docs/WEB.md "Maps"); None: none
    tile_attribution: str | None = None
    max_track_bytes: int = 16 << 20  # a track uploaded on the web crossref page


def create_app(settings: ServiceSettings) -> Starlette:
    Archive.open(settings.archive)  # refuse to start on a folder that is not an archive

    def open_archive() -> Archive:
        try:
            return Archive.open(settings.archive)
        except (CustodyError, StoreError) as exc:  # moved, unmounted, unreadable: said in our log
            log.error("cannot open the archive: %s", exc)
            raise ServiceError(503, "archive-unavailable", "the archive cannot be opened now "
                               "(see the server's log)") from None

    limiter = RateLimiter(settings.rate_per_second, settings.rate_burst)
    nonces = nonce_store(settings.archive)
    authenticate = Authenticator(open_archive, nonces,
                                 window_seconds=settings.signature_window_seconds,
                                 limiter=limiter)
    routes, operations = api_routes(open_archive, authenticate)
    routes += upload_routes(open_archive, authenticate,
                            settings.upload_dir or settings.archive / "uploads",
                            max_upload_bytes=settings.max_upload_bytes,
                            expire_after=settings.upload_expire_after)
    routes += tile_routes(open_archive, public_entries=settings.public_log)
    routes += sync_routes(open_archive, authenticate,
                          settings.upload_dir or settings.archive / "uploads")
    tiles = maps.tiles_from(settings.tile_url, settings.tile_attribution)
    routes += web_routes(open_archive, nonces,  # the pages, at / (docs/WEB.md)
                         tiles=tiles,
                         max_track_bytes=settings.max_track_bytes,
                         archive_key=settings.archive_key)  # a web export signs a checkpoint
    operations = [Operation("get", "/openapi.json", "This document", {"200": {
        "description": "OpenAPI 3.1", "content": json_content({"type": "object"})}},
        signed=False), *operations, *upload_operations(), *tile_operations(),
        *sync_operations()]
    spec = document("custody", _version(), operations)

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    middleware = [Middleware(AccessLog, stream=_log_stream(settings.access_log)),
                  # CSP and friends on every response; img-src names this app's tile server
                  Middleware(SecurityHeaders, img_sources=maps.image_sources(tiles)),
                  Middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                             exempt=(UPLOADS, CROSSREF_PAGE))]
    if settings.allow_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(settings.allow_origins),
            allow_methods=["GET", "POST", "PATCH", "HEAD", "DELETE", "OPTIONS"],
            allow_headers=["signature", "signature-input", "content-digest", "content-type",
                           "tus-resumable", "upload-length", "upload-offset",
                           "upload-metadata", "upload-checksum"],
            expose_headers=["x-custody-sha256", "location", "upload-offset", "upload-length",
                            "tus-resumable", "tus-version", "tus-extension", "tus-max-size",
                            "tus-checksum-algorithm", "upload-expires", "custody-status",
                            "custody-sha256", "custody-seq"]))
    lifespan = None
    if settings.archive_key is not None:
        lifespan = Checkpointer(open_archive, settings.archive_key,
                                settings.checkpoint_every).running
    app = Starlette(routes=[Route("/openapi.json", openapi, methods=["GET"]), *routes,
                            *settings.extra_routes],
                    middleware=middleware, exception_handlers=HANDLERS, lifespan=lifespan)
    app.state.openapi = spec
    return app


class AccessLog:
    """One JSON line per request: time, method, path, status, duration, caller key id, bytes.
    No query string, header or body is written (signatures, purposes and tracks stay out)."""

    def __init__(self, app: Any, stream: IO[str]) -> None:
        self.app = app
        self.stream = stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 500, "bytes_in": 0, "bytes_out": 0}

        async def counted() -> Any:
            message = await receive()
            state["bytes_in"] += len(message.get("body", b""))
            return message

        async def watched(message: Any) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes_out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted, watched)
        finally:
            line = {"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "method": scope["method"], "path": scope["path"], "status": state["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "key_id": scope.get(CALLER_KEY), "bytes_in": state["bytes_in"],
                    "bytes_out": state["bytes_out"]}
            self.stream.write(json.dumps(line) + "\n")
            self.stream.flush()


def _log_stream(path: Path | None) -> IO[str]:
    if path is None:
        return sys.stderr
    return open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the server's life


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("custody")
    except PackageNotFoundError:
        return "unknown"


def serve(settings: ServiceSettings, host: str, port: int, *,
          ssl_certfile: Path | None = None, ssl_keyfile: Path | None = None) -> None:
    """Run the app on uvicorn until interrupted (uvicorn's own access log off: ours is above)."""
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning",
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
                server_header=False)
