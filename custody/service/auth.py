"""Who sent a request: RFC 9421 signatures checked against the served archive's custodians.

A request is accepted only when its `custody` signature verifies with the key of an enrolled,
unrevoked, unretired custodian, was `created` within the window, carries a nonce not seen
before, and covers @method, @target-uri and (with a body) a Content-Digest that matches it.
Roles are the archive's own (custody/core/permissions.py), as on the command line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from custody.core.custodians import ARCHIVE_ROLE, Custodian
from custody.ops.archive import Archive, registry_of
from custody.service.errors import ServiceError, Unauthorized
from custody.service.limits import RateLimiter
from custody.service.signing import COVERED, TAG, CustodyEd25519

CALLER_KEY = "custody.caller"  # where the verified key id is kept in the ASGI scope (access log)
CALLER = "custody.caller.verified"  # and the Caller, for the handler's later calls
NONCE_FORM = re.compile(r"[A-Za-z0-9_\-]{16,128}")


class Nonces(Protocol):
    """The served archive's nonce store (custody.ops.backends.nonce_store)."""

    def claim(self, key_id: str, nonce: str, now: int, keep_seconds: int) -> bool: ...


@dataclass(frozen=True)
class Caller:
    """The custodian a request was verified as."""

    key_id: str
    name: str
    role: str


Authenticate = Callable[[Request], Awaitable[Caller]]  # raises Unauthorized (-> 401 JSON error)


class _Fields:
    """A request's header lines as the verifier reads them (names ASCII, values Latin-1)."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.lines = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]

    def items(self) -> list[tuple[str, str]]:
        return self.lines

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(n for n, _ in self.lines))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self.lines)


@dataclass
class _Message:
    method: str
    url: str
    headers: _Fields


class _ActiveCustodians(HTTPSignatureKeyResolver):
    """Key resolver: a key id -> its public key, only while its custodian may sign."""

    def __init__(self, archive: Archive) -> None:
        self.registry = registry_of(archive.ledger)
        self.found: Custodian | None = None

    def resolve_public_key(self, key_id: str) -> bytes | None:
        who = self.registry.by_id.get(key_id)
        if who is None or who.role == ARCHIVE_ROLE or who.ended() is not None:
            return None
        self.found = who
        return who.public_key

    def resolve_private_key(self, key_id: str) -> None:
        raise KeyError(key_id)  # the server holds no custodian's key


class Authenticator:
    """`await authenticator(request)` -> the Caller, or Unauthorized / 429 ServiceError."""

    def __init__(self, open_archive: Callable[[], Archive], nonces: Nonces, *,
                 window_seconds: int, limiter: RateLimiter) -> None:
        self.open_archive = open_archive
        self.nonces = nonces
        self.window = window_seconds
        self.limiter = limiter

    async def __call__(self, request: Request) -> Caller:
        known = request.scope.get(CALLER)
        if isinstance(known, Caller):  # verified once per request (its nonce is spent)
            return known
        if "signature" not in request.headers or "signature-input" not in request.headers:
            raise Unauthorized("the request is not signed (RFC 9421 Signature and "
                               "Signature-Input; docs/SERVICE.md)")
        body = await request.body()
        message = _Message(request.method, _target_uri(request), _Fields(request.headers.raw))
        caller = await run_in_threadpool(self._verify, message, body)
        request.scope[CALLER_KEY] = caller.key_id
        request.scope[CALLER] = caller
        if not self.limiter.allow(caller.key_id):
            raise ServiceError(429, "rate-limited", f"too many requests from key "
                               f"{caller.key_id}: slow down (docs/SERVICE.md)")
        return caller

    def _verify(self, message: _Message, body: bytes) -> Caller:
        keys = _ActiveCustodians(self.open_archive())
        verifier = HTTPMessageVerifier(signature_algorithm=CustodyEd25519, key_resolver=keys)
        verifier.max_clock_skew = timedelta(seconds=self.window)
        try:
            results = verifier.verify(message, max_age=timedelta(0), expect_tag=TAG,
                                      require_components=COVERED, body=body)
        except HTTPMessageSignaturesException as exc:
            raise Unauthorized(f"signature refused: {_reason(exc, keys)}") from None
        nonce = results[0].nonce
        who = keys.found
        if who is None:  # cannot happen once a signature verified; refuse rather than assume
            raise Unauthorized("signature refused: no custodian key")
        if not isinstance(nonce, str) or not NONCE_FORM.fullmatch(nonce):
            raise Unauthorized("signature refused: it needs a nonce of 16-128 letters, digits, "
                               "'-' or '_'")
        if not self.nonces.claim(who.key_id, nonce, int(time.time()), 2 * self.window + 1):
            raise Unauthorized("signature refused: its nonce was used before (a replay)")
        return Caller(key_id=who.key_id, name=who.name, role=who.role)


def _target_uri(request: Request) -> str:
    """The URI as the client sent it: the raw (still percent-encoded) path and query, which the
    client signed, not Starlette's decoded path."""
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return str(request.url)
    query = request.scope.get("query_string", b"")
    return (f"{request.url.scheme}://{request.url.netloc}{raw.decode('latin-1')}"
            + (f"?{query.decode('latin-1')}" if query else ""))


def _reason(exc: Exception, keys: _ActiveCustodians) -> str:
    text = str(exc)
    if "resolve verification key" in text:
        return "its keyid is not an active custodian of this archive (unknown, revoked or retired)"
    return " ".join(text.split())[:200] or type(exc).__name__
