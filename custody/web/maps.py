"""The map the search and crossref pages draw (vendored Leaflet, static/map.js): the tile server
`custody serve --tile-url` names, if any, and the data a map is given (docs/WEB.md "Maps").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from custody.errors import UsageError
from custody.web import security

LEAFLET = "/static/vendor/leaflet-1.9.4"
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = "© OpenStreetMap contributors"
_PLACEHOLDERS = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True, slots=True)
class Tiles:
    """A raster tile server: its URL template ({z}/{x}/{y}, optionally {s}) and attribution."""

    url: str
    attribution: str

    @property
    def origin(self) -> str:
        """For the CSP: `{s}.host` (Leaflet's subdomains a, b, c) becomes `*.host`."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"


def tiles_from(url: str | None, attribution: str | None = None) -> Tiles | None:
    """`--tile-url` checked (UsageError if it cannot be a tile template); `osm` names
    OpenStreetMap's. None: no tile server, the map shows positions on a blank background."""
    if url is None or url == "":
        return None
    if url.lower() == "osm":
        return Tiles(OSM_TILES, attribution or OSM_ATTRIBUTION)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--tile-url {url!r}: give an http(s) URL template such as "
                         f"{OSM_TILES} (or 'osm')")
    if "{" in parts.netloc.replace("{s}.", "", 1) if parts.netloc.startswith("{s}.") \
            else "{" in parts.netloc:
        raise UsageError(f"--tile-url {url!r}: only a leading {{s}}. may stand in the host")
    if not all(p in url for p in ("{z}", "{x}", "{y}")):
        raise UsageError(f"--tile-url {url!r} must hold {{z}}, {{x}} and {{y}}")
    unknown = set(_PLACEHOLDERS.findall(url)) - {"{z}", "{x}", "{y}", "{s}", "{r}"}
    if unknown or any(c in url for c in "\"'<> \\"):
        raise UsageError(f"--tile-url {url!r}: only {{z}}, {{x}}, {{y}}, {{s}} and {{r}} may "
                         "be filled in, and no quotes, spaces or angle brackets")
    return Tiles(url, attribution or parts.netloc)


def image_sources(tiles: Tiles | None) -> tuple[str, ...]:
    """The Content-Security-Policy's img-src of an app whose maps load tiles from `tiles`: the
    tile server's origin and nothing else new (security.SecurityHeaders takes it)."""
    return security.IMG_SOURCES + ((tiles.origin,) if tiles is not None else ())


def map_context(tiles: Tiles | None, data: dict[str, Any]) -> dict[str, Any]:
    """What templates/map.html needs: the data as JSON for a data- attribute (autoescaped there;
    no inline script, the CSP forbids it) and the tile server."""
    return {"map_json": json.dumps(data, ensure_ascii=False, separators=(",", ":")),
            "tiles": tiles}


def item_point(item: dict[str, Any], distance: float | None = None) -> dict[str, Any] | None:
    """A search result as a marker: position, SHA-256, the first name, capture time."""
    gps = item.get("gps")
    if not gps:
        return None
    point = {"lat": gps["lat"], "lon": gps["lon"], "sha256": item["sha256"],
             "name": (item.get("names") or [item["sha256"][:12]])[0],
             "time": item.get("captured_at")}
    if distance is not None:
        point["km"] = round(distance, 3)
    return point
