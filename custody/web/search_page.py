"""The search page, `GET /search`: every filter of `custody search` as a query parameter of the
same name, the results as a list and on a map, through the library's own `query.search`.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from custody.errors import NotFound, UsageError
from custody.ops.archive import Archive
from custody.search import query as finder
from custody.web import maps
from custody.web.site import Web

TEXT_FILTERS = ("case", "incident", "tag", "since", "until", "near", "bbox", "device", "mime",
                "text", "c2pa")
FILTERS = (*TEXT_FILTERS, "within_km", "limit", "list_unplaced")  # `custody search`'s options
WEB_LIMIT = 1000  # each list, when the form names no limit: a page stays readable
C2PA_VERDICTS = ("trusted", "valid", "invalid", "unreadable", "none")


def search_of(params: dict[str, str]) -> finder.Search | None:
    """The query parameters as `custody search`'s filters (UsageError when one cannot be read);
    None when no filter is given (the page then shows only the form)."""
    given = {k: v.strip() for k, v in params.items() if k in FILTERS and v.strip()}
    if not set(given) - {"limit", "list_unplaced"}:
        return None
    options: dict[str, Any] = {k: given.get(k) for k in TEXT_FILTERS}
    if "within_km" in given:
        options["within_km"] = parse_number(given["within_km"], "--within-km")
    options["limit"] = _count(given["limit"], "--limit") if "limit" in given else WEB_LIMIT
    options["list_unplaced"] = given.get("list_unplaced") in ("1", "on", "true", "yes")
    return finder.Search(**options)


def parse_number(text: str, flag: str) -> float:
    """A finite number typed into a form field, or the CLI's own one-line UsageError."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number")
    return value


def _count(text: str, flag: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{flag} must be a whole number, not {text!r}")
    return int(text)


def search_routes(web: Web, tiles: maps.Tiles | None) -> list[BaseRoute]:
    async def search(request: Request) -> Response:
        await web.caller(request)  # every custodian may search, as on the command line
        # the CLI's option names, with `_` (as /api/v1/search) or `-` (`within-km`) alike
        params = {k.replace("-", "_"): v for k, v in request.query_params.items()}
        form = {k: params.get(k, "") for k in FILTERS}
        context: dict[str, Any] = {"form": form, "verdicts": C2PA_VERDICTS, "result": None,
                                   "problem": None, **maps.map_context(tiles, {"points": []})}
        try:
            wanted = search_of(params)
            if wanted is not None:
                result = await web.read(lambda a: _search(a, wanted))
                points = [p for p in (maps.item_point(i, i.get("distance_km"))
                                      for i in result["items"]) if p]
                near = result["query"].get("near")
                data = {"points": points, "bbox": result["query"].get("bbox")}
                if near:
                    data.update(center=[near["lat"], near["lon"]], radius_km=near["within_km"])
                context.update(result=result, limited=wanted.limit,
                               **maps.map_context(tiles, data))
        except (UsageError, NotFound) as exc:  # a filter that cannot be read, an unknown case:
            context["problem"] = exc.message  # said above the form, which keeps what was typed
            status = 404 if isinstance(exc, NotFound) else 400
            return web.render(request, "search.html", context, status=status)
        return web.render(request, "search.html", context)

    return [web.page("/search", search)]


def _search(archive: Archive, wanted: finder.Search) -> dict[str, Any]:
    return finder.search(archive, wanted)
