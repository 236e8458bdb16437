"""The web interface's routes, mounted at `/` by custody/service/app.py beside the API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from custody.ops.archive import Archive
from custody.service.auth import Nonces
from custody.web.dashboard import dashboard_routes
from custody.web.item import item_routes
from custody.web.sessions import Sessions
from custody.web.signin import signin_routes
from custody.web.site import Web

STATIC = Path(__file__).parent / "static"


def web_routes(open_archive: Callable[[], Archive], nonces: Nonces) -> list[BaseRoute]:
    """Every page, and the static files under /static/. A page's module adds its routes here."""
    web = Web(open_archive, Sessions())
    return [
        *signin_routes(web, nonces),
        *dashboard_routes(web),
        *item_routes(web),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
