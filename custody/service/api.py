"""The JSON API under /api/v1/ for the web interface: each route is a CLI command's operation.

Reads return the data the command's `--json` prints; every write is a statement the caller signed
on their own device (docs/FORMAT.md §5.8), appended with `Archive.append_statement`.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from custody.core import permissions
from custody.errors import NotPermitted, UsageError
from custody.ops import statements
from custody.ops.archive import Archive
from custody.service.auth import Authenticate, Caller
from custody.service.errors import JSONResponse, ServiceError
from custody.service.openapi import Operation, json_content, path_param, query
from store.ports import CHUNK

OBJ = {"type": "object"}
ARR = {"type": "array", "items": {"type": "object"}}
STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, \
    {"type": "boolean"}
APPENDED = {"type": "object", "required": ["seq", "action", "statement_id"], "properties": {
    "seq": INT, "action": STR, "item": {"type": ["string", "null"]}, "statement_id": STR}}
STATEMENT_BODY = {"required": True, "content": json_content({
    "type": "object", "required": ["format", "statement", "signature"],
    "properties": {"format": {"const": "custody-statement"}, "statement": STR,
                   "signature": STR, "metadata": STR}})}
ITEM_REF = {"type": "string", "pattern": "^[0-9a-fA-F]{8,64}$"}
ITEM = {**path_param("item", "SHA-256 or a unique prefix of 8+ hex digits"), "schema": ITEM_REF}
TEXT = {"type": "string", "minLength": 1}
SEARCH_FILTERS: dict[str, dict[str, Any]] = {
    "case": TEXT, "incident": TEXT, "tag": TEXT, "since": TEXT, "until": TEXT, "near": TEXT,
    "within_km": NUM, "bbox": TEXT, "device": TEXT, "mime": TEXT, "text": TEXT,
    "limit": {"type": "integer", "minimum": 0}, "list_unplaced": BOOL,
    "c2pa": {"enum": ["trusted", "valid", "invalid", "unreadable", "none"]},
}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
CROSSREF_OPTIONS: dict[str, dict[str, Any]] = {
    "km": POSITIVE, "minutes": POSITIVE, "clock_tolerance": {"type": "number", "minimum": 0},
    "max_gap": POSITIVE, "incidents": BOOL, "case": TEXT,
    "format": {"enum": ["gpx", "geojson", "geojsonseq", "csv"]}, "assume_utc": BOOL,
    "limit": {"type": "integer", "minimum": 0},
    "name": {**TEXT, "description": "the track's file name, for messages (and its suffix for "
             "the format); default uploaded-track"},
}
LATEST = {"type": "object", "required": ["latest"],
          "properties": {"latest": {"type": ["object", "null"]}}}
LOG_PAGE_MAX = 1000
MAX_QUERY_INT = 2**53 - 1  # an integer query parameter's largest value (a JSON-safe integer)


def api_routes(open_archive: Callable[[], Archive],
               authenticate: Authenticate) -> tuple[list[BaseRoute], list[Operation]]:
    """The /api/v1 routes and their OpenAPI operations."""
    handlers: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    operations: list[Operation] = []

    def route(op: Operation, handler: Callable[[Request], Awaitable[Response]]) -> None:
        operations.append(op)
        handlers.setdefault(op.path, {})[op.method.upper()] = handler

    async def read(request: Request, work: Callable[[Archive, Caller], Any]) -> Any:
        """Run `work` on a freshly opened archive off the event loop, for the caller the
        request was signed by (`authenticate` runs first in every handler: nothing about a
        request is said back before its signature is checked)."""
        caller = await authenticate(request)  # a second call returns the first's Caller
        return await run_in_threadpool(lambda: work(open_archive(), caller))

    async def whoami(request: Request) -> Response:
        caller = await authenticate(request)
        return JSONResponse({"key_id": caller.key_id, "name": caller.name, "role": caller.role})

    route(Operation("get", "/api/v1/whoami", "The custodian the request was signed by",
                    {"200": {"description": "The caller", "content": json_content(
                        {"type": "object", "required": ["key_id", "name", "role"],
                         "properties": {"key_id": STR, "name": STR, "role": STR}})}}), whoami)

    async def items(request: Request) -> Response:
        await authenticate(request)
        from custody.ops import items as views

        return JSONResponse(await read(request, lambda a, c: views.listing(a)))

    route(Operation("get", "/api/v1/items", "Every item, in order of first ingest (`list --json`)",
                    {"200": {"description": "Items", "content": json_content(ARR)}}), items)

    async def item(request: Request) -> Response:
        await authenticate(request)
        from custody.ops import items as views

        ref = request.path_params["item"]
        return JSONResponse(await read(request, lambda a, c: views.show(a, a.resolve_item(ref))))

    route(Operation("get", "/api/v1/items/{item}", "One item (`show --json`)",
                    {"200": {"description": "The item", "content": json_content(OBJ)}},
                    [ITEM]), item)

    async def log(request: Request) -> Response:
        await authenticate(request)
        from custody.report import logs

        ref = request.query_params.get("item")
        offset = _int(request, "offset", 0)
        limit = min(_int(request, "limit", 100), LOG_PAGE_MAX)

        def page(a: Archive, c: Caller) -> dict[str, Any]:
            if ref:  # one item's entries: few
                rows = list(logs.rows(a, a.resolve_item(ref)))  # `log --json`'s rows
                return {"total": len(rows), "offset": offset, "limit": limit,
                        "entries": rows[offset:offset + limit]}
            entries = list(itertools.islice(logs.rows(a, None), offset, offset + limit))
            return {"total": a.ledger.size(), "offset": offset, "limit": limit,
                    "entries": entries}

        return JSONResponse(await read(request, page))

    route(Operation(
        "get", "/api/v1/log", "Ledger entries, all or one item's, a page at a time (`log`)",
        {"200": {"description": "A page of entries", "content": json_content({
            "type": "object", "required": ["total", "offset", "limit", "entries"],
            "properties": {"total": INT, "offset": INT, "limit": INT, "entries": ARR}})}},
        [query("item", ITEM_REF, "Only this item's entries"),
         query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_QUERY_INT}),
         query("limit", {"type": "integer", "minimum": 0, "maximum": LOG_PAGE_MAX})]), log)

    async def search(request: Request) -> Response:
        await authenticate(request)
        from custody.search import query as finder
        from custody.search import render

        options = _options(request, SEARCH_FILTERS)
        geojson = _bool(request, "geojson")

        def find(a: Archive, c: Caller) -> Any:
            result = finder.search(a, finder.Search(**options))
            return render.search_geojson(result) if geojson else result

        return JSONResponse(await read(request, find))

    route(Operation(
        "get", "/api/v1/search", "Find items (`search`: the same filters, combined)",
        {"200": {"description": "The search result (or a GeoJSON FeatureCollection)",
                 "content": json_content(OBJ)}},
        [query(k, v) for k, v in SEARCH_FILTERS.items()] + [query("geojson", BOOL)]), search)

    async def crossref(request: Request) -> Response:
        await authenticate(request)
        from custody.search import crossref as finder
        from custody.search import render, uploaded_track

        options = _options(request, CROSSREF_OPTIONS)
        geojson = _bool(request, "geojson")
        if "km" not in options or "minutes" not in options:
            raise UsageError("give km and minutes")
        body = await request.body()
        name = options.pop("name", None)

        def match(a: Archive, c: Caller) -> Any:
            # saved under the caller's name for it: messages name their track, not a temp file
            with uploaded_track.spooled(name, [body]) as track:
                x = finder.Crossref(track=track, fmt=options.pop("format", None),
                                    naive_utc=options.pop("assume_utc", False), **options)
                result = finder.crossref(a, x, draw_track=geojson)
            result["track"]["file"] = track.name  # no server path
            return render.crossref_geojson(result) if geojson else result

        return JSONResponse(await read(request, match))

    route(Operation(
        "post", "/api/v1/crossref",
        "Items (or incidents) near a timed track (`crossref`); the body is the track file",
        {"200": {"description": "The matches (or GeoJSON)", "content": json_content(OBJ)}},
        [query(k, v, required=k in ("km", "minutes")) for k, v in CROSSREF_OPTIONS.items()]
        + [query("geojson", BOOL)],
        request_body={"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/gpx+xml": {"schema": STR}, "application/geo+json": {"schema": OBJ},
            "text/csv": {"schema": STR}}}), crossref)

    async def verification(request: Request) -> Response:
        await authenticate(request)
        from custody.ops import items as views

        def latest(a: Archive, c: Caller) -> Any:
            done = [r for r in views.log(a) if r["action"] == "verification"]
            return {"latest": done[-1] if done else None}

        return JSONResponse(await read(request, latest))

    route(Operation("get", "/api/v1/verification",
                    "The latest recorded verification (a `verification` entry), or null",
                    {"200": {"description": "The latest verification entry",
                             "content": json_content(LATEST)}}),
          verification)

    async def verify(request: Request) -> Response:
        await authenticate(request)
        from custody.ops.verify import audit

        ref = request.query_params.get("item")
        ledger_only = _bool(request, "ledger_only")

        def run(a: Archive, c: Caller) -> Any:
            return audit(a, a.resolve_item(ref) if ref else None,
                         objects=not ledger_only).to_json()

        return JSONResponse(await read(request, run))

    route(Operation(
        "post", "/api/v1/verification",
        "Run `verify` now and return its report (synchronous; nothing is appended)",
        {"200": {"description": "The verify report (`verify --json`)",
                 "content": json_content(OBJ)}},
        [query("item", ITEM_REF), query("ledger_only", BOOL)]), verify)

    async def report(request: Request) -> Response:
        await authenticate(request)
        from custody.report import html
        from custody.report import model as reports

        refs = request.query_params.getlist("item")
        case = request.query_params.get("case")
        kind = request.query_params.get("format", "json")
        if kind not in ("json", "html"):
            raise UsageError(f"unknown format {kind!r}: choose json or html")
        if not refs and case is None:
            raise UsageError("name the items to report on, or give case")

        def build(a: Archive, c: Caller) -> Any:
            built = reports.build(a, [a.resolve_item(r) for r in refs], case=case)
            if kind == "html":
                return html.render(built)
            return {**built.model, "report_digest": built.digest}

        done = await read(request, build)
        return HTMLResponse(done) if kind == "html" else JSONResponse(done)

    route(Operation(
        "get", "/api/v1/reports",
        "A chain-of-custody report of items or a case (`report --json`, or the HTML page); no "
        "content is read",
        {"200": {"description": "The report", "content": {
            **json_content(OBJ), "text/html": {"schema": STR}}}},
        [query("item", {"type": "array", "items": ITEM_REF}), query("case", TEXT),
         query("format", {"enum": ["json", "html"]})]), report)

    async def transfers(request: Request) -> Response:
        await authenticate(request)
        from custody.ops import transfer as transfer_ops

        pending = _bool(request, "pending")
        return JSONResponse(await read(request, lambda a, c: transfer_ops.listing(a, pending)))

    route(Operation("get", "/api/v1/transfers", "Custody offers (`transfers --json`)",
                    {"200": {"description": "Offers", "content": json_content(ARR)}},
                    [query("pending", BOOL)]), transfers)

    async def statement(request: Request) -> Response:
        await authenticate(request)
        text = _text(await request.body())

        def append(a: Archive, c: Caller) -> dict[str, Any]:
            signed, metadata = statements.read_statement_file(text)
            _check_signer(signed, c)
            entry = a.append_statement(signed, metadata=metadata).entry()
            return {"seq": entry.seq, "action": entry.action, "item": entry.item,
                    "statement_id": entry.statement_id}

        return JSONResponse(await read(request, append), status_code=201)

    route(Operation(
        "post", "/api/v1/statements",
        "Append a statement the caller signed (notes, tags, transfer offers and accepts, ...: "
        "`custody submit`)",
        {"201": {"description": "Appended", "content": json_content(APPENDED)}},
        request_body=STATEMENT_BODY), statement)

    async def content(request: Request) -> Response:
        await authenticate(request)
        from custody.ops import access

        ref = request.path_params["item"]
        text = _text(await request.body())

        def open_reader(a: Archive, c: Caller) -> tuple[str, Any]:
            signed, _ = statements.read_statement_file(text)
            _check_signer(signed, c)
            sha256 = a.resolve_item(ref)
            return sha256, access.content_for_statement(a, sha256, signed)

        sha256, reader = await read(request, open_reader)
        return StreamingResponse(chunks(reader), media_type="application/octet-stream",
                                 headers={"X-Custody-SHA256": sha256})

    route(Operation(
        "post", "/api/v1/items/{item}/content",
        "Download an item's bytes: the body is the caller's signed `access` statement (kind "
        "get, a purpose), appended before the first byte is sent",
        {"200": {"description": "The item's bytes, verified against its SHA-256 as read",
                 "content": {"application/octet-stream": {
                     "schema": {"type": "string", "format": "binary"}}}}},
        [ITEM], request_body=STATEMENT_BODY), content)

    return [_one_route(path, by_method) for path, by_method in handlers.items()], operations


def _one_route(path: str, by_method: dict[str, Callable[[Request], Awaitable[Response]]]) -> Route:
    """One Route a path, so that a 405 names every method the path has in its Allow header."""

    async def dispatch(request: Request) -> Response:
        return await by_method[request.method if request.method in by_method else "GET"](request)

    return Route(path, dispatch, methods=list(by_method))


def _check_signer(signed: Any, caller: Caller) -> None:
    """The request's signer is the statement's, and their role may sign its action (the archive's
    own table; `append_statement` decides again under its lock)."""
    from custody.core import entry as entries
    from custody.errors import StatementRefused

    try:
        statement = signed.statement()
    except entries.MalformedEntry as exc:
        raise StatementRefused(f"statement refused: {exc}") from None
    if statement.actor != caller.key_id:
        raise ServiceError(403, "not-your-statement", "a statement is sent by the custodian who "
                           "signed it: its actor is not the request's signer")
    if not permissions.may(caller.role, statement.action):
        raise NotPermitted(f"{caller.name} has role '{caller.role}', which may not sign "
                           f"{statement.action!r}")


check_signer = _check_signer  # the web pages' content route checks statements the same way


def chunks(reader: Any) -> Iterator[bytes]:
    """A content reader's bytes, CHUNK by CHUNK, the reader closed at the end (or on a cut)."""
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    finally:
        reader.close()


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the body is not UTF-8 text (a statement file)") from None


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise UsageError(f"{name} must be a whole number, not {raw!r}")
    value = int(raw)
    if value > MAX_QUERY_INT:  # no count here comes near; beyond, slicing and SQLite would fail
        raise UsageError(f"{name} must be at most {MAX_QUERY_INT}, not {raw[:40]}")
    return value


def _bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false", "1", "0"):
        raise UsageError(f"{name} must be true or false, not {raw!r}")
    return raw.lower() in ("true", "1")


def _options(request: Request, spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The query's options the spec names, typed as the CLI's; a bad value is a usage error."""
    out: dict[str, Any] = {}
    for name, schema in spec.items():
        raw = request.query_params.get(name)
        if raw is None:
            continue
        kind = schema.get("type")
        if kind == "boolean":
            out[name] = _bool(request, name)
        elif kind == "integer":
            out[name] = _int(request, name, 0)
        elif kind == "number":
            try:
                out[name] = float(raw)
            except ValueError:
                raise UsageError(f"{name} must be a number, not {raw!r}") from None
            if out[name] != out[name] or out[name] in (float("inf"), float("-inf")):
                raise UsageError(f"{name} must be a finite number")
        else:
            out[name] = raw
    return out
