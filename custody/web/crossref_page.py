"""The crossref page: a track (GPX, GeoJSON, CSV) uploaded in a form, cross-referenced by the
library's own `crossref.crossref` (as `custody crossref`), its matches on a map and a timeline.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from custody.errors import NotFound, UsageError
from custody.ops.archive import Archive
from custody.search import crossref as finder
from custody.search import uploaded_track
from custody.search.tracks import TrackError
from custody.service.limits import BodyLimit
from custody.web import maps
from custody.web.search_page import parse_number
from custody.web.site import Refused, Web

PATH = "/crossref"
FORMATS = ("gpx", "geojson", "geojsonseq", "csv")
DEFAULTS = {"km": "5", "minutes": "15", "clock_tolerance": "0", "max_gap": "", "case": "",
            "format": "", "limit": "", "incidents": "", "assume_utc": ""}
CHUNK = 1 << 16
TIMELINE_WIDTH = 1000  # SVG user units


def crossref_routes(web: Web, tiles: maps.Tiles | None, max_track_bytes: int) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        await web.caller(request)  # every custodian may cross-reference, as on the command line
        context: dict[str, Any] = {"form": dict(DEFAULTS), "formats": FORMATS, "result": None,
                                   "problem": None, "max_bytes": max_track_bytes,
                                   **maps.map_context(tiles, {})}
        if request.method == "GET":
            return web.render(request, "crossref.html", context)
        form = await web.form(request)
        context["form"] = {k: _text(form, k) for k in DEFAULTS}
        try:
            upload = form.get("track")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise UsageError("choose a track file (GPX, GeoJSON or CSV) to upload")
            options = _options(form)
            with _saved(upload, max_track_bytes) as track:
                x = finder.Crossref(track=track, **options)
                result = await web.read(lambda a: _cross(a, x))
            result["track"]["file"] = upload.filename
            context.update(result=result, timeline=timeline(result),
                           **maps.map_context(tiles, map_data(result)))
        except (UsageError, NotFound, TrackError) as exc:  # said above the form, kept as typed
            context["problem"] = exc.message
            return web.render(request, "crossref.html", context,
                              status=404 if isinstance(exc, NotFound) else 400)
        return web.render(request, "crossref.html", context)

    route = web.page(PATH, page, ("GET", "POST"))
    return [_limited(web, route, max_track_bytes)]


def _cross(archive: Archive, x: finder.Crossref) -> dict[str, Any]:
    return finder.crossref(archive, x, draw_track=True)


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _options(form: FormData) -> dict[str, Any]:
    """The form as `custody crossref`'s options (UsageError when one cannot be read)."""
    def number(key: str, flag: str) -> float | None:
        text = _text(form, key)
        return parse_number(text, flag) if text else None

    km, minutes = number("km", "--km"), number("minutes", "--minutes")
    if km is None or minutes is None:
        raise UsageError("give --km and --minutes")
    limit = _text(form, "limit")
    if limit and not limit.isdigit():
        raise UsageError(f"--limit must be a whole number, not {limit!r}")
    fmt = _text(form, "format") or None
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return {"km": km, "minutes": minutes,
            "clock_tolerance": number("clock_tolerance", "--clock-tolerance") or 0.0,
            "max_gap": number("max_gap", "--max-gap"), "case": _text(form, "case") or None,
            "fmt": fmt, "limit": int(limit) if limit else None,
            "incidents": bool(_text(form, "incidents")),
            "naive_utc": bool(_text(form, "assume_utc"))}


def _saved(upload: UploadFile, limit: int) -> contextlib.AbstractContextManager[Path]:
    """The uploaded track under its own name (errors name it, and a .geojsonl suffix tells its
    format, as on the command line), at most `limit` bytes: the form's body is already capped
    by `_limited`; this holds if that ever changes."""
    upload.file.seek(0)
    return uploaded_track.spooled(upload.filename, iter(lambda: upload.file.read(CHUNK), b""),
                                  limit)


def _limited(web: Web, route: Route, max_bytes: int) -> Route:
    """The route with its own body limit (the service's --max-body exempts this path): a form
    declared larger is refused with a readable page before any of it is read."""
    inner = BodyLimit(route.app, max_bytes)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max_bytes:
            request = Request(scope, receive)
            refusal = Refused(413, f"the track is larger than this server takes "
                                   f"({max_bytes:,} bytes; custody serve --max-track)")
            response = web.error_page(request, refusal)
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        await inner(scope, receive, send)

    route.app = app
    return route


# What the map and the timeline are given ------------------------------------------------------

def map_data(result: dict[str, Any]) -> dict[str, Any]:
    points, links = [], []
    for rank, m in enumerate(result["matches"], 1):
        where = m.get("gps") or m.get("place")
        tp = m["track_point"]
        name = (m.get("names") or [None])[0] or m.get("incident") or ""
        point = {"lat": where["lat"], "lon": where["lon"], "name": f"{rank}. {name}",
                 "time": m.get("captured_at") or m.get("date"),
                 "km": round(m["distance_km"], 3), "dt": round(m["dt_minutes"], 1)}
        if "sha256" in m:
            point["sha256"] = m["sha256"]
        points.append(point)
        links.append({"from": [where["lat"], where["lon"]], "to": [tp["lat"], tp["lon"]],
                      "position": {"lat": tp["lat"], "lon": tp["lon"],
                                   "name": f"{rank}. {tp['segment']}", "time": tp["time"]}})
    tracks = [[[lat, lon] for lon, lat in coords]
              for _, coords in result.get("track_lines") or []]
    return {"points": points, "links": links, "tracks": tracks}


def timeline(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per match in time order: the capture (or incident date) at the centre of its own
    window, the track's passage at dt, both as SVG x positions (0..TIMELINE_WIDTH)."""
    window = (result["query"]["minutes"] + result["query"]["clock_tolerance_minutes"]) * 60
    rows = []
    for rank, m in enumerate(result["matches"], 1):
        tp = m["track_point"]
        passed = datetime.fromisoformat(tp["time"].replace("Z", "+00:00"))
        captured = passed - timedelta(seconds=m["dt_seconds"])
        span = max(window, abs(m["dt_seconds"]), 60.0)  # widened windows still fit
        half = TIMELINE_WIDTH / 2
        rows.append({"rank": rank, "match": m, "captured": captured.isoformat(),
                     "passed": tp["time"], "x_capture": half,
                     "x_track": half + m["dt_seconds"] / span * (half - 20),
                     "x_lo": half - window / span * (half - 20),
                     "x_hi": half + window / span * (half - 20),
                     "span_minutes": span / 60, "window_minutes": round(window / 60, 1)})
    rows.sort(key=lambda r: r["captured"])
    return rows
