"""The one-time sign-in link of the web interface: a token the custodian's key signs.

Pure: the caller passes the time and the nonce. Format in docs/WEB.md ("The sign-in token").
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from custody.core import canonical
from custody.core.signing import SigningKey, verify_signature

TAG = b"custody-web-login-v1\x00"  # domain separation: this signature can be nothing else
KIND = "custody-web-login"
LIFETIME_SECONDS = 120
MAX_LIFETIME_SECONDS = 600  # a server refuses a token claiming to live longer
NONCE = re.compile(r"[A-Za-z0-9_\-]{22,128}")
KEY_ID = re.compile(r"[0-9a-f]{32}")
MAX_TOKEN_CHARS = 2048


class LoginTokenError(ValueError):
    """A token that cannot be read, or whose claims are not acceptable; the message says why."""


@dataclass(frozen=True, slots=True)
class LoginClaims:
    key_id: str
    server: str  # the origin it is for: scheme://host[:port], lower case, no path
    created: int  # Unix seconds
    expires: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise LoginTokenError("the sign-in link is damaged (not base64url)") from None


def _payload(claims: LoginClaims) -> bytes:
    return canonical.encode({"kind": KIND, "key_id": claims.key_id, "server": claims.server,
                             "created": claims.created, "expires": claims.expires,
                             "nonce": claims.nonce})


def make(key: SigningKey, server: str, now: int, nonce: str,
         lifetime: int = LIFETIME_SECONDS) -> str:
    """`base64url(payload) "." base64url(Ed25519(TAG || payload))`."""
    claims = LoginClaims(key.key_id, server, now, now + lifetime, nonce)
    payload = _payload(claims)
    return f"{_b64(payload)}.{_b64(key.sign(TAG + payload))}"


def read(token: str) -> tuple[LoginClaims, bytes, bytes]:
    """The token's claims, its signed payload and its signature; nothing is verified yet."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise LoginTokenError("the sign-in link is damaged (not a custody sign-in token)")
    head, tail = token.split(".")
    payload, signature = _unb64(head), _unb64(tail)
    try:
        fields = canonical.decode(payload)
    except ValueError:
        raise LoginTokenError("the sign-in link is damaged (its payload is not JSON)") from None
    if not isinstance(fields, dict) or set(fields) != {"kind", "key_id", "server", "created",
                                                        "expires", "nonce"} \
            or fields["kind"] != KIND:
        raise LoginTokenError("the sign-in link is damaged (not a custody sign-in token)")
    key_id, server, nonce = fields["key_id"], fields["server"], fields["nonce"]
    created, expires = fields["created"], fields["expires"]
    if not (isinstance(key_id, str) and KEY_ID.fullmatch(key_id) and isinstance(server, str)
            and isinstance(nonce, str) and NONCE.fullmatch(nonce)
            and type(created) is int and type(expires) is int):
        raise LoginTokenError("the sign-in link is damaged (a field is malformed)")
    return LoginClaims(key_id, server, created, expires, nonce), payload, signature


def check(claims: LoginClaims, payload: bytes, signature: bytes, public_key: bytes,
          server: str, now: int, skew: int = 30) -> None:
    """Raise LoginTokenError unless the signature is the key's, the token is for `server`,
    and `now` lies within its lifetime (a `skew` of clock difference allowed at its start)."""
    if not verify_signature(public_key, TAG + payload, signature):
        raise LoginTokenError("the sign-in link's signature does not verify")
    if claims.server != server:
        raise LoginTokenError(f"the sign-in link is for {claims.server}, not this server")
    if claims.expires - claims.created > MAX_LIFETIME_SECONDS or claims.expires < claims.created:
        raise LoginTokenError("the sign-in link claims too long a life")
    if now < claims.created - skew:
        raise LoginTokenError("the sign-in link is dated in the future (check the clocks)")
    if now > claims.expires:
        raise LoginTokenError("the sign-in link has expired: run `custody login` again")


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, lower case, as a token names its server."""
    match = re.fullmatch(r"(https?)://([^/?#]+)(?:[/?#].*)?", url.strip(), re.IGNORECASE)
    if not match:
        raise LoginTokenError(f"not an http(s) server URL: {url!r}")
    return f"{match.group(1).lower()}://{match.group(2).lower()}"
