"""`custody crossref`: items (or incidents) captured within D km and T minutes of a timed track,
each with the track position nearest it in space-time, best first (docs/SEARCH.md §4).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.core import geo
from custody.errors import NotFound, UsageError
from custody.ops.archive import Archive
from custody.search import render, trackfile, tracks
from custody.search.indexer import open_index, refresh
from custody.search.query import collector_paused, distance_limit
from custody.search.times import OFFSET_UNKNOWN, UNKNOWN_OFFSET_S
from custody.search.tracks import Tally, TrackError, TrackPoint
from store.index_port import ItemQuery, ItemRow, SearchIndex, TrackIndex


@dataclass(frozen=True, slots=True)
class Crossref:
    """What `custody crossref` asks for."""

    track: Path
    km: float
    minutes: float
    clock_tolerance: float = 0.0  # minutes
    max_gap: float | None = None  # minutes
    incidents: bool = False
    case: str | None = None
    fmt: str | None = None
    naive_utc: bool = False
    limit: int | None = None


def crossref(archive: Archive, x: Crossref, *, draw_track: bool = False) -> dict[str, Any]:
    """Items (or incidents) captured within `km` and `minutes` of the track, each with the
    track position nearest it in space-time, best first. `draw_track` adds the track's lines
    (for GeoJSON)."""
    _check(x)
    trackfile.read_track(x.track, x.fmt)  # a missing file or bad --format before any work
    store = open_index(archive)
    try:
        status = refresh(archive, store)
        result = cross(store, x, draw_track=draw_track)
    finally:
        store.close()
    result["index"] = status
    return result


def cross(store: SearchIndex, x: Crossref, *, draw_track: bool = False) -> dict[str, Any]:
    """`crossref` on an up-to-date index."""
    km, window = _check(x)
    fmt, points, tally = trackfile.read_track(x.track, x.fmt, naive_utc=x.naive_utc)
    if x.case is not None and not store.case_known(x.case):
        raise NotFound(f"no case {x.case!r} in this archive")
    with store.track() as tables:
        info = _load(tables, points, tally, x, fmt, km, window)
        if x.incidents:
            result = _incident_matches(store, tables, x, km, window)
        else:
            result = _item_matches(store, tables, x, km, window)
        if draw_track:
            result["track_lines"] = (list(tables.lines())
                                     if info["points"] <= render.TRACK_DRAW_LIMIT else None)
    matches = result["matches"]
    if x.limit is not None:
        result["matches"] = matches[: x.limit]
    query = {"km": km, "minutes": x.minutes, "clock_tolerance_minutes": x.clock_tolerance,
             "max_gap_minutes": x.max_gap, "subjects": "incidents" if x.incidents else "items",
             "case": x.case}
    return {"track": info, "query": query, "count": len(matches), **result}


def _check(x: Crossref) -> tuple[float, float]:
    km = distance_limit(x.km, "--km")
    for value, flag in ((x.minutes, "--minutes"), (x.clock_tolerance, "--clock-tolerance")):
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} must be 0 or more minutes")
    if x.max_gap is not None and (not math.isfinite(x.max_gap) or x.max_gap <= 0):
        raise UsageError("--max-gap must be more than 0 minutes")
    if x.limit is not None and x.limit < 1:
        raise UsageError("--limit must be 1 or more")
    return km, (x.minutes + x.clock_tolerance) * 60.0


def _load(tables: TrackIndex, points: Iterator[TrackPoint], tally: Tally, x: Crossref, fmt: str,
          km: float, window: float) -> dict[str, Any]:
    """Stream the track into temporary tables, then join it into legs with search boxes."""
    bounds = [math.inf, -math.inf, math.inf, -math.inf, math.inf, -math.inf]  # t, lat, lon

    def rows() -> Iterator[tuple[str, float, float, float, float | None, str]]:
        for p in points:
            bounds[:] = [min(bounds[0], p.t), max(bounds[1], p.t), min(bounds[2], p.lat),
                         max(bounds[3], p.lat), min(bounds[4], p.lon), max(bounds[5], p.lon)]
            yield p.segment, p.t, p.lat, p.lon, p.alt, p.ref

    tables.add_points(rows())
    if tally.points == 0:
        raise TrackError(f"{x.track.name}: no timed points ({tally.untimed} without a time, "
                         f"{tally.unplaced} without a position, {tally.ignored} other features)")
    gap = x.max_gap * 60.0 if x.max_gap is not None else None

    def make(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[tuple[Any, ...], list[Any]]]:
        for a, b in tracks.legs_of((TrackPoint(*r) for r in rows), gap):
            leg = geo.Leg(a.segment, a.t, a.lat, a.lon, a.alt, a.ref,
                          b.t, b.lat, b.lon, b.alt, b.ref)
            lat_lo, lat_hi, west, east = leg.box()
            boxes = [(leg.t0 - window, leg.t1 + window, *box)
                     for box in geo.boxes_around(lat_lo, lat_hi, west, east, km)]
            yield (leg.segment, leg.t0, leg.lat0, leg.lon0, leg.alt0, leg.ref0,
                   leg.t1, leg.lat1, leg.lon1, leg.alt1, leg.ref1), boxes

    legs = tables.build_legs(make)
    return {"file": str(x.track), "format": fmt, "points": tally.points,
            "segments": tables.segments(), "legs": legs,
            "start": tracks.format_time(bounds[0]), "end": tracks.format_time(bounds[1]),
            "bbox": [bounds[4], bounds[2], bounds[5], bounds[3]],
            "untimed_points": tally.untimed, "unplaced_points": tally.unplaced,
            "ignored": tally.ignored}


def _item_matches(store: SearchIndex, tables: TrackIndex, x: Crossref, km: float,
                  window: float) -> dict[str, Any]:
    query = ItemQuery(case=x.case)
    best: dict[str, tuple[ItemRow, geo.Approach, geo.Leg]] = {}
    with collector_paused():
        _pairs(tables, query, km, window, best)
    cases = render.incident_cases(store)
    matches = []
    for item, found, leg in best.values():
        row = render.item_json(item, cases)
        unknown = item.basis == OFFSET_UNKNOWN
        row.update(_approach_json(found, leg, x.minutes * 60.0,
                                  "offset-unknown" if unknown else None))
        if unknown and item.captured_t is not None:
            row["implied_utc_offset"] = _offset(item.captured_t - found.t)
        matches.append(row)
    matches.sort(key=_order)
    no_time, no_place = store.count_missing(query)
    return {"matches": matches,
            "not_checked": {"no_capture_time": no_time, "no_position": no_place}}


def _pairs(tables: TrackIndex, query: ItemQuery, km: float, window: float,
           best: dict[str, tuple[ItemRow, geo.Approach, geo.Leg]]) -> None:
    """Keep, per item, its best position on the legs whose search boxes meet its place."""
    for item, leg_row in tables.item_pairs(query):
        t = item.captured_t
        assert t is not None and item.lat is not None and item.lon is not None
        wide = UNKNOWN_OFFSET_S if item.basis == OFFSET_UNKNOWN else 0.0
        leg = geo.Leg(*leg_row)
        found = geo.best_on_leg(leg, geo.Subject(item.lat, item.lon, t, t, window + wide), km)
        if found is not None:
            held = best.get(item.sha256)
            if held is None or _rank(found) < _rank(held[1]):
                best[item.sha256] = (item, found, leg)


def _incident_matches(store: SearchIndex, tables: TrackIndex, x: Crossref, km: float,
                      window: float) -> dict[str, Any]:
    matches = []
    not_checked = []
    for inc in store.incidents(case=x.case):
        if inc.t_lo is None or inc.t_hi is None or inc.lat is None or inc.lon is None:
            row = render.incident_json(inc)
            row["missing"] = [m for m, absent in (("date", inc.t_lo is None),
                                                  ("place", inc.lat is None)) if absent]
            not_checked.append(row)
            continue
        wide = UNKNOWN_OFFSET_S if inc.offset_unknown else 0.0
        subject = geo.Subject(inc.lat, inc.lon, inc.t_lo, inc.t_hi, window + wide)
        held: tuple[geo.Approach, geo.Leg] | None = None
        for leg_row in tables.legs_near(inc.t_lo - wide, inc.t_hi + wide, inc.lat, inc.lon):
            leg = geo.Leg(*leg_row)
            found = geo.best_on_leg(leg, subject, km)
            if found is not None and (held is None or _rank(found) < _rank(held[0])):
                held = (found, leg)
        if held is not None:
            row = render.incident_json(inc)
            flag = None
            if inc.offset_unknown:
                flag = "date-only" if inc.t_hi > inc.t_lo else "offset-unknown"
            row.update(_approach_json(held[0], held[1], x.minutes * 60.0, flag))
            matches.append(row)
    matches.sort(key=_order)
    return {"matches": matches, "not_checked": not_checked}


def _order(m: dict[str, Any]) -> tuple[bool, float, float]:
    return any(f in UNCERTAIN for f in m["flags"]), m["score"], m["distance_km"]


def _rank(a: geo.Approach) -> tuple[float, float, float]:
    return a.score, a.distance_km, abs(a.dt_s)


UNCERTAIN = ("offset-unknown", "date-only")  # flags of matches ranked after the others


def _approach_json(a: geo.Approach, leg: geo.Leg, strict_s: float,
                   uncertain: str | None) -> dict[str, Any]:
    ends = {(leg.t0, leg.lat0, leg.lon0), (leg.t1, leg.lat1, leg.lon1)}
    flags = []
    if uncertain:
        flags.append(uncertain)
    elif abs(a.dt_s) > strict_s:
        flags.append("clock-tolerance")
    return {
        "distance_km": a.distance_km,
        "dt_seconds": a.dt_s,
        "dt_minutes": a.dt_s / 60.0,
        "score": a.score,
        "flags": flags,
        "track_point": {
            "time": tracks.format_time(a.t), "lat": a.lat, "lon": a.lon, "alt": a.alt,
            "segment": leg.segment,
            "interpolated": (a.t, a.lat, a.lon) not in ends,
            "from": {"time": tracks.format_time(leg.t0), "ref": leg.ref0},
            "to": {"time": tracks.format_time(leg.t1), "ref": leg.ref1},
            "leg_seconds": leg.t1 - leg.t0,
        },
    }


def _offset(seconds: float) -> str:
    minutes = round(seconds / 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
