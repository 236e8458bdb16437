"""Where an item was captured, for a reader without a network: coordinates, links, a small map.

Pure: the geo: URI (RFC 5870), an OpenStreetMap address as text, degrees-minutes-seconds, and an
SVG of the point on a latitude/longitude graticule (no map tiles: nothing is fetched).
"""

from __future__ import annotations

import math
from typing import Any

from custody.core.geo import haversine_km


def describe(gps: dict[str, Any] | None, incident_places: list[dict[str, Any]]) -> dict[str, Any]:
    """The place block of an item: links and distances to its incidents' stated places."""
    if not gps or gps.get("lat") is None or gps.get("lon") is None:
        return {"known": False}
    lat, lon, alt = float(gps["lat"]), float(gps["lon"]), gps.get("alt")
    geo = f"geo:{lat:.6f},{lon:.6f}" + (f",{float(alt):g}" if alt is not None else "")
    osm = f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=15/{lat:.5f}/{lon:.5f}"
    near = []
    for p in incident_places:
        km = haversine_km(lat, lon, float(p["lat"]), float(p["lon"]))
        near.append({**p, "km": round(km, 3)})
    return {"known": True, "lat": lat, "lon": lon, "alt": alt, "dms": dms(lat, lon),
            "geo_uri": geo, "osm_url": osm, "incidents": near}


def dms(lat: float, lon: float) -> str:
    def one(v: float, pos: str, neg: str) -> str:
        a = abs(v)
        d = int(a)
        m = int((a - d) * 60)
        s = (a - d - m / 60) * 3600
        return f"{d}°{m:02d}′{s:04.1f}″{pos if v >= 0 else neg}"

    return f"{one(lat, 'N', 'S')} {one(lon, 'E', 'W')}"


def svg_map(place: dict[str, Any], size: int = 200) -> str:
    """An SVG of the point (red) and incident places (blue) on a graticule with a scale bar."""
    lat, lon = place["lat"], place["lon"]
    near = [p for p in place.get("incidents", []) if p["km"] < 200]
    span_km = max([2.0] + [2.4 * p["km"] for p in near])
    half_lat = span_km / 2 / 111.32
    half_lon = half_lat / max(math.cos(math.radians(lat)), 0.01)
    ox, oy = 40, 4  # the plot's offset: latitude labels on the left, longitude labels below

    def xy(la: float, lo: float) -> tuple[float, float]:
        return (ox + (lo - lon + half_lon) / (2 * half_lon) * size,
                oy + (lat + half_lat - la) / (2 * half_lat) * size)

    width, height = ox + size + 4, oy + size + 34
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="position map">',
             f'<rect x="{ox}" y="{oy}" width="{size}" height="{size}" fill="#f7f7f2" '
             'stroke="#999"/>']
    step = _nice(2 * half_lat / 4)
    g = math.ceil((lat - half_lat) / step) * step
    while g <= lat + half_lat:
        _, y = xy(g, lon)
        parts.append(f'<line x1="{ox}" y1="{y:.1f}" x2="{ox + size}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{ox - 3}" y="{y + 2.5:.1f}" font-size="7" fill="#666" '
                     f'text-anchor="end">{g:.3f}°</text>')
        g += step
    lstep = _nice(2 * half_lon / 3)
    g = math.ceil((lon - half_lon) / lstep) * lstep
    while g <= lon + half_lon:
        x, _ = xy(lat, g)
        parts.append(f'<line x1="{x:.1f}" y1="{oy}" x2="{x:.1f}" y2="{oy + size}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{oy + size + 9}" font-size="7" fill="#666" '
                     f'text-anchor="middle">{g:.3f}°</text>')
        g += lstep
    for p in near:
        x, y = xy(p["lat"], p["lon"])
        if ox <= x <= ox + size and oy <= y <= oy + size:
            parts.append(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" '
                         'fill="none" stroke="#1f4e9c" stroke-width="2"/>')
    x, y = xy(lat, lon)
    parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="#c0392b" stroke="#fff"/>')
    bar_km = _nice(span_km / 3)
    bar_px = bar_km / span_km * size
    base = oy + size + 24
    parts.append(f'<line x1="{ox}" y1="{base}" x2="{ox + bar_px:.1f}" y2="{base}" '
                 f'stroke="#333" stroke-width="2"/><text x="{ox + bar_px + 4:.1f}" y="{base + 3}" '
                 f'font-size="8" fill="#333">{bar_km:g} km · north up · WGS 84</text></svg>')
    return "".join(parts)


def _nice(x: float) -> float:
    """1, 2 or 5 times a power of ten, at most x."""
    p = 10.0 ** math.floor(math.log10(x))
    return max(m * p for m in (1, 2, 5) if m * p <= x)
