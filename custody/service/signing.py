"""The client side of the service's two signatures: requests (RFC 9421) and statements (§5.8).

`RequestSigner` is an `httpx.Auth` that signs each request with a custodian's key the way
docs/SERVICE.md's profile says; `signed_statement` builds and signs a format 2 statement file
(docs/FORMAT.md §5.8) on the custodian's own device, for a write the server only appends.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

import httpx
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPSignatureAlgorithm,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)

from custody.core import entry as entries
from custody.core.signing import SigningKey, verify_signature
from custody.ops.statements import statement_file

# The request-signature profile (docs/SERVICE.md "Authentication")
COVERED = ("@method", "@target-uri")  # and content-digest (RFC 9530, sha-256) when a body
LABEL = "custody"
TAG = "custody-request"  # RFC 9421 `tag`: names this application's profile


class CustodyEd25519(HTTPSignatureAlgorithm):
    """RFC 9421's `ed25519` through custody's own key and verifier (custody/core/signing.py):
    no second copy of private key bytes, and the verifier every ledger signature goes through."""

    algorithm_id = "ed25519"

    def __init__(self, public_key: bytes | None = None,
                 private_key: SigningKey | None = None) -> None:
        self.public_key = public_key
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        assert self.private_key is not None
        return self.private_key.sign(message)

    def verify(self, signature: bytes, message: bytes) -> None:
        if self.public_key is None or not verify_signature(self.public_key, message, signature):
            raise InvalidSignature("the signature does not verify with the custodian's key")


class _OwnKey(HTTPSignatureKeyResolver):
    """The signer's key resolver: only the one key it was given."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def resolve_private_key(self, key_id: str) -> SigningKey:
        if key_id != self.key.key_id:
            raise KeyError(key_id)
        return self.key

    def resolve_public_key(self, key_id: str) -> bytes | None:
        return self.key.public.raw if key_id == self.key.key_id else None


def new_nonce() -> str:
    return secrets.token_hex(16)


class RequestSigner(httpx.Auth):
    """Sign every request with `key`: keyid = its custodian key id, `created` now, a fresh nonce,
    covering the method, the target URI and (with a body) its Content-Digest."""

    requires_request_body = True

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.signer = HTTPMessageSigner(signature_algorithm=CustodyEd25519,
                                        key_resolver=_OwnKey(key))

    def sign(self, request: httpx.Request, *, created: datetime | None = None,
             nonce: str | None = None) -> None:
        body = request.content
        self.signer.sign(request, key_id=self.key.key_id, label=LABEL, tag=TAG,
                         created=created or datetime.now(UTC), nonce=nonce or new_nonce(),
                         covered_component_ids=COVERED, body=body or None)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


class RequestsSigner:
    """The same signature for the `requests` library (tuspy, schemathesis): `auth=` of a
    request or a Session; signs the prepared request in place."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.signer = HTTPMessageSigner(signature_algorithm=CustodyEd25519,
                                        key_resolver=_OwnKey(key))

    def __call__(self, request: Any) -> Any:
        body = request.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None and not isinstance(body, bytes):
            raise TypeError("a streamed body cannot be signed: give its bytes")
        self.signer.sign(request, key_id=self.key.key_id, label=LABEL, tag=TAG,
                         created=datetime.now(UTC), nonce=new_nonce(),
                         covered_component_ids=COVERED, body=body or None)
        return request


def signed_statement(key: SigningKey, log: str, action: str, item: str | None,
                     details: dict[str, Any], *, metadata: bytes | None = None,
                     now: datetime | None = None) -> dict[str, Any]:
    """A statement file (docs/FORMAT.md §5.8) signed by `key` on this device: the body of a write
    to the service (`POST /api/v1/statements`, the `access` of a content read)."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    statement = entries.Statement(log=log, actor=key.key_id, action=action, item=item,
                                  details=details, time=when, nonce=new_nonce())
    return statement_file(entries.sign_statement(statement, key), metadata)


# The statements of the API's writes (details as docs/FORMAT.md §5.4 has them) ---------------------

def note_statement(key: SigningKey, log: str, item: str, text: str,
                   supersedes: int | None = None) -> dict[str, Any]:
    return signed_statement(key, log, "note", item, {"text": text.strip(),
                                                     "supersedes": supersedes})


def tag_statement(key: SigningKey, log: str, item: str, tag: str,
                  removed: bool = False) -> dict[str, Any]:
    return signed_statement(key, log, "tag", item, {"tag": tag, "removed": removed})


def offer_statement(key: SigningKey, log: str, item: str, to: str, purpose: str,
                    group: str | None = None) -> dict[str, Any]:
    """A custody offer of `item` to the custodian whose key id is `to`."""
    import uuid

    return signed_statement(key, log, "transfer-offer", item, {
        "to": to, "purpose": purpose.strip(), "group": group or str(uuid.uuid4())})


def accept_statement(key: SigningKey, log: str, item: str, offer: int) -> dict[str, Any]:
    """Accept offer `offer` (its entry's seq) of `item`."""
    return signed_statement(key, log, "transfer-accept", item, {"offer": offer})


def access_statement(key: SigningKey, log: str, item: str, purpose: str,
                     destination: str | None = None) -> dict[str, Any]:
    """The access a download (`POST /api/v1/items/{item}/content`) needs: who reads and why."""
    return signed_statement(key, log, "access", item, {
        "purpose": purpose.strip(), "kind": "get", "destination": destination})
