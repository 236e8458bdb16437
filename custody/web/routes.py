"""The web interface's routes, mounted at `/` by custody/service/app.py beside the API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from custody.core.signing import SigningKey
from custody.ops.archive import Archive
from custody.service.auth import Nonces
from custody.web import maps
from custody.web.auditlog import log_routes
from custody.web.content import content_routes
from custody.web.crossref_page import crossref_routes
from custody.web.dashboard import dashboard_routes
from custody.web.export_page import export_routes
from custody.web.item import item_routes
from custody.web.search_page import search_routes
from custody.web.sessions import Sessions
from custody.web.signin import signin_routes
from custody.web.site import Web

STATIC = Path(__file__).parent / "static"


def web_routes(open_archive: Callable[[], Archive], nonces: Nonces,
               tiles: maps.Tiles | None = None,
               max_track_bytes: int = 16 << 20,
               archive_key: SigningKey | None = None) -> list[BaseRoute]:
    """Every page, and the static files under /static/. A page's module adds its routes here.
    `tiles`: the map tile server (`custody serve --tile-url`), None for none. `archive_key`: the
    server's (it signs checkpoints), which a package exported from a page needs; None for none."""
    web = Web(open_archive, Sessions())
    web.exports = archive_key is not None
    return [
        *signin_routes(web, nonces),
        *dashboard_routes(web),
        *search_routes(web, tiles),
        *crossref_routes(web, tiles, max_track_bytes),
        *log_routes(web),
        *content_routes(web),
        *item_routes(web),
        *export_routes(web, archive_key),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
