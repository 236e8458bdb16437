"""What every page uses: the signed-in caller and role check, the CSRF check of every POST, the
rendering of templates in the reader's language, and errors shown as pages.

docs/WEB.md "Adding a page": `web.page(path, handler)` is the one way a page is routed.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from custody.core import permissions
from custody.core.custodians import ARCHIVE_ROLE
from custody.errors import CustodyError, NotPermitted
from custody.ops.archive import Archive, registry_of
from custody.ops.backends import custody_error
from custody.service.auth import CALLER_KEY, Caller
from custody.service.errors import ServiceError, status_of
from custody.web import i18n
from custody.web.sessions import COOKIE, Session, Sessions
from store.index_port import IndexStoreError
from store.ports import StoreError

log = logging.getLogger("custody.web")
TEMPLATES = Path(__file__).parent / "templates"
CSRF_FIELD = "csrf_token"
SESSION_STATE = "custody_web_session"  # request.state attribute: the request's Session
NEW_SESSION = "custody_web_new_session"  # set when a cookie must be (re)sent
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


class SignInNeeded(Exception):
    """The page needs a signed-in custodian and the browser has none (or it expired)."""


class Refused(Exception):
    """A request a page refuses, shown as a page: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Web:
    """The web interface's shared parts, one per app (custody/web/routes.py makes it)."""

    def __init__(self, open_archive: Callable[[], Archive], sessions: Sessions) -> None:
        self.open_archive = open_archive
        self.sessions = sessions
        self.envs = {language: _environment(language) for language in i18n.LANGUAGES}
        self.exports = False  # whether packages can be exported from pages (an archive key)

    # sessions ------------------------------------------------------------------------------
    def session(self, request: Request) -> Session:
        """The request's session; an anonymous one is started (and its cookie sent) if none."""
        known = getattr(request.state, SESSION_STATE, None)
        if isinstance(known, Session):
            return known
        found = self.sessions.get(request.cookies.get(COOKIE))
        if found is None:
            found = self.sessions.anonymous()
            setattr(request.state, NEW_SESSION, True)
        setattr(request.state, SESSION_STATE, found)
        return found

    def replace_session(self, request: Request, session: Session) -> None:
        """After sign-in: the response carries the new session's cookie."""
        setattr(request.state, SESSION_STATE, session)
        setattr(request.state, NEW_SESSION, True)

    async def caller(self, request: Request) -> Caller:
        """The signed-in custodian, re-checked against the archive's registry on each page: a
        key revoked or retired since sign-in ends its sessions; a changed role applies at once."""
        session = self.session(request)
        if session.caller is None:
            raise SignInNeeded()
        key_id = session.caller.key_id
        who = await run_in_threadpool(
            lambda: registry_of(self.open_archive().ledger).by_id.get(key_id))
        if who is None or who.role == ARCHIVE_ROLE or who.ended() is not None:
            self.sessions.end_all_of(key_id)
            raise SignInNeeded()
        request.scope[CALLER_KEY] = who.key_id  # the access log names who asked
        return Caller(key_id=who.key_id, name=who.name, role=who.role)

    @staticmethod
    def require(caller: Caller, action: str) -> None:
        """Refuse unless the caller's role may sign `action`: the command line's own table
        (custody/core/permissions.py)."""
        if not permissions.may(caller.role, action):
            raise NotPermitted(f"a custodian of role {caller.role} may not {action} "
                               f"(needs {' or '.join(permissions.roles_for(action))})")

    async def read(self, work: Callable[[Archive], T]) -> T:
        """Run `work` on a freshly opened archive off the event loop."""
        return await run_in_threadpool(lambda: work(self.open_archive()))

    # forms -----------------------------------------------------------------------------------
    async def form(self, request: Request) -> FormData:
        """The POSTed form, its CSRF token already checked by `page` (the one check)."""
        form = getattr(request.state, "custody_web_form", None)
        if not isinstance(form, FormData):
            raise Refused(400, "no form in this request")
        return form

    async def _check_csrf(self, request: Request) -> None:
        form = await request.form()
        request.state.custody_web_form = form
        sent = form.get(CSRF_FIELD)
        expected = self.session(request).csrf
        if not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
            raise Refused(403, "this form is stale or was not sent from this site (CSRF "
                               "check): reload the page and try again")

    # rendering -------------------------------------------------------------------------------
    def render(self, request: Request, template: str, context: Mapping[str, Any] | None = None,
               status: int = 200) -> HTMLResponse:
        language = i18n.language_of(request)
        session = self.session(request)
        page = self.envs[language].get_template(template).render({
            "request": request, "lang": language, "dir": i18n.direction(language),
            "languages": i18n.NAMES, "caller": session.caller, "csrf_token": session.csrf,
            "csrf_field": CSRF_FIELD, "path": request.url.path, **(context or {})})
        return HTMLResponse(page, status_code=status,
                            headers={"Cache-Control": "no-store"})

    def page(self, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> Route:
        """A route for a page: every POST's CSRF token checked before `handler` runs, errors
        and refusals shown as pages, the session and language cookies sent when they change."""

        async def endpoint(request: Request) -> Response:
            try:
                if request.method == "POST":
                    await self._check_csrf(request)
                response = await handler(request)
            except SignInNeeded:
                response = RedirectResponse("/signin", status_code=303)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a readable page
                response = self.error_page(request, exc)
            self._cookies(request, response)
            return response

        return Route(path, endpoint, methods=list(methods))

    def error_page(self, request: Request, exc: Exception) -> Response:
        status, message = _status_and_message(exc)
        return self.render(request, "error.html", {"status": status, "message": message},
                           status=status)

    def _cookies(self, request: Request, response: Response) -> None:
        secure = request.url.scheme == "https"
        if getattr(request.state, NEW_SESSION, False):
            session = getattr(request.state, SESSION_STATE)
            response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict",
                                secure=secure, path="/")
        if chosen := i18n.asked(request):
            response.set_cookie(i18n.COOKIE, chosen, max_age=365 * 86400, httponly=True,
                                samesite="strict", secure=secure, path="/")


def _status_and_message(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, Refused):
        return exc.status, exc.message
    if isinstance(exc, ServiceError):
        return exc.status, exc.message
    if isinstance(exc, StoreError | IndexStoreError):
        exc = custody_error(exc)
    if isinstance(exc, CustodyError):
        status = status_of(exc)
        if status != 500:
            return status, exc.message
        log.error("custody error: %s: %s", type(exc).__name__, exc.message)
    else:
        log.error("unexpected error in a page", exc_info=exc)
    return 500, "the server could not show this page (see its log)"


def _environment(language: str) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = when
    return env


STAMP = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?")


def when(value: object) -> str:
    """A time as people read it: seconds, no fraction, `UTC` for Z (the full value is kept in
    the `datetime` attribute of the <time> element that shows it)."""
    if not isinstance(value, str):
        return "—" if value is None else str(value)
    found = STAMP.fullmatch(value)
    if found is None:
        return value
    zone = found.group(3)
    return f"{found.group(1)} {found.group(2)}" + (
        " UTC" if zone == "Z" else f" {zone}" if zone else "")
