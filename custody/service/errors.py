"""The service's errors: one JSON shape for every 4xx and 5xx, mapped in one place.

`{"error": {"code": "<kebab-case>", "message": "<one line>"}}`; never a stack trace or a path.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse as StarletteJSON
from starlette.responses import Response

from custody.errors import (
    CustodyError,
    NotFound,
    NotPermitted,
    StatementRefused,
    UsageError,
    VerificationFailed,
)
from custody.ops.backends import custody_error
from custody.search.tracks import TrackError
from store.index_port import IndexStoreError
from store.ports import StoreError

log = logging.getLogger("custody.service")

INTERNAL = "internal error: the server could not complete the request (see its log)"


class JSONResponse(StarletteJSON):
    """JSON as the CLI's --json writes it: UTF-8, and names holding undecodable bytes (lone
    surrogates, kept as read from a file system) escaped rather than failing the response."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class ServiceError(Exception):
    """An error a handler means to send: its HTTP status, a stable code and a one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Unauthorized(ServiceError):
    """The request's signature is missing, bad, expired, replayed or by no active custodian."""

    def __init__(self, message: str) -> None:
        super().__init__(401, "unauthorized", message)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": one_line(message)}}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


PATH = re.compile(r"(?<![\w.:/])/(?:[\w.\-]+/)+[\w.\-]*")  # an absolute path in a message


def one_line(message: str) -> str:
    """One line, at most 500 characters, no filesystem path (the server's layout is its own)."""
    return PATH.sub("<path>", " ".join(message.split()))[:500]


def kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def status_of(exc: CustodyError) -> int:
    """The HTTP status of a custody error, as the CLI's exit codes sort them."""
    if isinstance(exc, NotPermitted):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, UsageError | TrackError):  # the client's input
        return 400
    if isinstance(exc, StatementRefused | VerificationFailed):
        return 422
    return 500


def custody_response(exc: CustodyError) -> JSONResponse:
    status = status_of(exc)
    if status == 500:  # an operational failure: its message may name the server's paths
        log.error("custody error: %s: %s", type(exc).__name__, exc.message)
        return error_response(500, "internal-error", INTERNAL)
    return error_response(status, kebab(type(exc).__name__), exc.message)


async def handle_service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": 'Signature realm="custody"'} if exc.status == 401 else None
    return error_response(exc.status, exc.code, exc.message, headers)


async def handle_custody_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CustodyError)
    return custody_response(exc)


async def handle_store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError | IndexStoreError)
    return custody_response(custody_error(exc))


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """The last resort: the traceback goes to the server's log, a generic line to the client."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal-error", INTERNAL)


HANDLERS: dict[Any, Any] = {
    ServiceError: handle_service_error,
    CustodyError: handle_custody_error,
    StoreError: handle_store_error,
    IndexStoreError: handle_store_error,
    HTTPException: handle_http_error,
    Exception: handle_unexpected,
}
