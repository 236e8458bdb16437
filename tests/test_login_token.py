"""The web sign-in token (custody/core/login_token.py, docs/WEB.md "The sign-in token"): pure,
so checked here without a server; the browser tests check the server's use of it."""

from __future__ import annotations

import base64

import pytest

from custody.core import canonical, login_token
from custody.core.signing import SigningKey

KEY = SigningKey.from_seed(bytes(range(32)), "Rami Reviewer")
SERVER = "https://archive.example.org"
NOW = 1_800_000_000
NONCE = "n" * 32


def _checked(token: str, server: str = SERVER, now: int = NOW, key: SigningKey = KEY) -> None:
    claims, payload, signature = login_token.read(token)
    login_token.check(claims, payload, signature, key.public.raw, server, now)


def test_a_token_round_trips_and_names_its_key_server_and_lifetime():
    token = login_token.make(KEY, SERVER, NOW, NONCE)
    claims, _, _ = login_token.read(token)
    assert (claims.key_id, claims.server, claims.created, claims.expires, claims.nonce) == (
        KEY.key_id, SERVER, NOW, NOW + 120, NONCE)
    _checked(token, now=NOW + 120)


@pytest.mark.parametrize("damage,reason", [
    (lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), "signature"),
    (lambda t: t.replace(".", ""), "damaged"),
    (lambda t: "x" + t, "damaged"),
])
def test_a_damaged_token_is_refused(damage, reason):
    with pytest.raises(login_token.LoginTokenError, match=reason):
        _checked(damage(login_token.make(KEY, SERVER, NOW, NONCE)))


def test_a_token_is_refused_after_its_life_before_its_time_and_on_another_server():
    token = login_token.make(KEY, SERVER, NOW, NONCE)
    with pytest.raises(login_token.LoginTokenError, match="expired"):
        _checked(token, now=NOW + 121)
    with pytest.raises(login_token.LoginTokenError, match="future"):
        _checked(token, now=NOW - 31)
    with pytest.raises(login_token.LoginTokenError, match="not this server"):
        _checked(token, server="https://other.example.org")
    with pytest.raises(login_token.LoginTokenError, match="signature"):
        _checked(token, key=SigningKey.from_seed(bytes(32), "Someone Else"))
    long_lived = login_token.make(KEY, SERVER, NOW, NONCE, lifetime=3600)
    with pytest.raises(login_token.LoginTokenError, match="too long"):
        _checked(long_lived)


def test_the_signature_is_domain_separated_from_other_custody_signatures():
    """A signature over the bare payload (as another signed thing might be) is no token."""
    token = login_token.make(KEY, SERVER, NOW, NONCE)
    _, payload, _ = login_token.read(token)
    bare = base64.urlsafe_b64encode(KEY.sign(payload)).rstrip(b"=").decode()
    head = token.split(".")[0]
    with pytest.raises(login_token.LoginTokenError, match="signature"):
        _checked(f"{head}.{bare}")
    assert canonical.decode(payload)["kind"] == "custody-web-login"


@pytest.mark.parametrize("url,origin", [
    ("https://Archive.Example.org/", "https://archive.example.org"),
    ("http://127.0.0.1:8080/anything?x=1", "http://127.0.0.1:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
])
def test_a_server_url_is_reduced_to_its_origin(url, origin):
    assert login_token.origin(url) == origin


@pytest.mark.parametrize("url", ["ftp://example.org", "example.org", "https://", ""])
def test_a_server_that_is_not_an_http_url_is_refused(url):
    with pytest.raises(login_token.LoginTokenError):
        login_token.origin(url)
