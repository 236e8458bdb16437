"""Signing in with the custodian's key: `custody login` signs a one-time token, the browser
brings it here, and the server starts a session for that custodian (docs/WEB.md)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from custody.core import login_token
from custody.core.custodians import ARCHIVE_ROLE
from custody.ops.archive import Archive, registry_of
from custody.service.auth import Caller, Nonces
from custody.web.sessions import COOKIE
from custody.web.site import Refused, Web

NONCE_PREFIX = "web-login:"  # beside the API's request nonces in the same store, never equal
KEEP_SECONDS = 2 * login_token.MAX_LIFETIME_SECONDS + 60  # longer than any token can live


def check_token(archive: Archive, token: str, server: str, now: int) -> Caller:
    """The custodian a token signs in, or Refused: damaged, forged, expired, for another server,
    or by a key that is not an enrolled, unrevoked, unretired custodian (the API's rule)."""
    try:
        claims, payload, signature = login_token.read(token)
        who = registry_of(archive.ledger).by_id.get(claims.key_id)
        if who is None or who.role == ARCHIVE_ROLE or who.ended() is not None:
            raise Refused(401, "the sign-in link's key is not an active custodian of this "
                               "archive (unknown, revoked or retired)")
        login_token.check(claims, payload, signature, who.public_key, server, now)
    except login_token.LoginTokenError as exc:
        raise Refused(401, str(exc)) from None
    return Caller(key_id=who.key_id, name=who.name, role=who.role)


def signin_routes(web: Web, nonces: Nonces) -> list[BaseRoute]:
    def server_of(request: Request) -> str:
        return login_token.origin(str(request.base_url))

    async def signin(request: Request) -> Response:
        token = request.query_params.get("token")
        if request.method == "GET":
            if not token:
                return web.render(request, "signin.html", {"server": server_of(request)})
            now = int(time.time())
            who = await web.read(lambda a: check_token(a, token, server_of(request), now))
            return web.render(request, "signin_confirm.html", {"who": who, "token": token})
        form = await web.form(request)
        sent = form.get("token")
        if not isinstance(sent, str) or not sent:
            raise Refused(400, "no sign-in token in the form")
        now = int(time.time())
        who = await web.read(lambda a: check_token(a, sent, server_of(request), now))
        claims = login_token.read(sent)[0]
        if not nonces.claim(who.key_id, NONCE_PREFIX + claims.nonce, now, KEEP_SECONDS):
            raise Refused(401, "this sign-in link was used already: run `custody login` again")
        web.replace_session(request, web.sessions.sign_in(web.session(request), who))
        return RedirectResponse("/", status_code=303)

    async def signout(request: Request) -> Response:
        web.sessions.end(web.session(request).id)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [web.page("/signin", signin, ("GET", "POST")),
            web.page("/signout", signout, ("POST",))]
