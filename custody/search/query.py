"""`custody search`: the filters (checked and normalised from what the command was given), and
their evaluation through the search index port, with nothing silently dropped (docs/SEARCH.md §2).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from custody import display
from custody.core import geo
from custody.errors import NotFound, UsageError
from custody.ops.archive import Archive
from custody.search import c2pa_filter, render, speed, tracks
from custody.search.indexer import open_index, refresh
from custody.search.times import OFFSET_UNKNOWN, UNKNOWN_OFFSET_S, shifted, time_key
from custody.search.tracks import TrackError
from store.index_port import ItemQuery, ItemRow, SearchIndex, TimeRange


@dataclass(frozen=True, slots=True)
class Search:
    """What `custody search` asks for; every filter given must hold (AND)."""

    case: str | None = None
    incident: str | None = None
    tag: str | None = None
    since: str | None = None
    until: str | None = None
    near: str | None = None  # "LAT,LON"
    within_km: float | None = None
    bbox: str | None = None  # "WEST,SOUTH,EAST,NORTH" (RFC 7946 order)
    device: str | None = None
    mime: str | None = None
    text: str | None = None
    limit: int | None = None
    list_unplaced: bool = False
    c2pa: str | None = None  # keep items whose C2PA verdict is this (custody/search/c2pa_filter)


@dataclass(frozen=True, slots=True)
class _Plan:
    query: ItemQuery
    near: tuple[float, float, float] | None  # lat, lon, km
    echo: dict[str, Any]


def plan(s: Search) -> _Plan:
    """Check and normalise the filters (UsageError on any that cannot be read)."""
    echo: dict[str, Any] = {}
    time = None
    if s.since is not None or s.until is not None:
        lo = _instant(s.since, "--since", end=False) if s.since is not None else None
        hi = _instant(s.until, "--until", end=True) if s.until is not None else None
        if lo is not None and hi is not None and lo > hi:
            raise UsageError("--since is after --until")
        wide = timedelta(seconds=UNKNOWN_OFFSET_S)
        time = TimeRange(
            lo=time_key(lo) if lo else "", hi=time_key(hi) if hi else "~",
            wide_basis=OFFSET_UNKNOWN, wide_lo=shifted(lo, -wide, ""),
            wide_hi=shifted(hi, wide, "~"))
        echo["since"] = time_key(lo) if lo else None
        echo["until"] = time_key(hi) if hi else None
    boxes = None
    near = None
    if (s.near is None) != (s.within_km is None):
        raise UsageError("--near LAT,LON and --within-km KM go together")
    if s.near is not None and s.within_km is not None:
        if s.bbox is not None:
            raise UsageError("give --near or --bbox, not both")
        lat, lon = _pair(s.near, "--near", "LAT,LON")
        if not geo.valid_position(lat, lon):
            raise UsageError(f"--near {s.near}: out of range (lat -90..90, lon -180..180)")
        km = distance_limit(s.within_km, "--within-km")
        near = (lat, lon, km)
        boxes = tuple(geo.boxes_around(lat, lat, lon, lon, km))
        echo["near"] = {"lat": lat, "lon": lon, "within_km": km}
    if s.bbox is not None:
        boxes = tuple(_bbox(s.bbox))
        echo["bbox"] = [float(v) for v in s.bbox.split(",")]
    words = tuple(w.lower() for w in (s.text or "").split())
    mime = s.mime.strip().lower() if s.mime else None
    if mime is not None and (mime.endswith("/*") or "/" not in mime):
        mime = mime.rstrip("*").rstrip("/") + "/"
    if s.limit is not None and s.limit < 1:
        raise UsageError("--limit must be 1 or more")
    for key in ("case", "incident", "tag", "device", "mime", "text", "limit"):
        if getattr(s, key) is not None:
            echo[key] = getattr(s, key)
    query = ItemQuery(case=s.case, incident=s.incident, tag=s.tag, time=time, boxes=boxes,
                      device=s.device.strip() if s.device else None, mime=mime, words=words)
    return _Plan(query=query, near=near, echo=echo)


def search(archive: Archive, s: Search, *, rebuild: bool = False) -> dict[str, Any]:
    """Items matching every filter, plus the undetermined ones (see `find`)."""
    p = plan(s)  # usage errors before any work
    only = c2pa_filter.wanted(s.c2pa)
    store = open_index(archive)
    verdicts: dict[str, str] = {}
    try:
        status = refresh(archive, store, rebuild=rebuild)
        # with --c2pa the limit applies after that filter
        result = find(store, replace(s, limit=None) if only else s, p, verdicts)
    finally:
        store.close()
    c2pa_filter.annotate(result, only, s.limit, verdicts)
    result["index"] = status
    return result


def streams(s: Search) -> bool:
    """Whether `search_streamed` can answer `s`: no place filter (whose results are sorted by
    distance or filtered by flags over the whole result) and no --c2pa (counted after it)."""
    return s.near is None and s.bbox is None and s.c2pa is None


def search_streamed(archive: Archive, s: Search, write: Callable[[dict[str, Any]], None], *,
                    rebuild: bool = False) -> dict[str, int]:
    """`search` for a query that `streams`: `write` gets the same document, key for key, with
    its lists as display.Streamed rows read from the index as they are written (memory stays
    flat whatever the count); returns the counts for the summary line."""
    if not streams(s):
        raise ValueError("search_streamed: a place or --c2pa filter needs `search`")
    p = plan(s)
    q = p.query
    store = open_index(archive)
    try:
        status = refresh(archive, store, rebuild=rebuild)
        incident = _incident(store, q)
        cases = render.incident_cases(store)
        timed = q.time is not None
        count = _at_most(store.count(q), s.limit)
        undetermined = _at_most(store.count(q, time="missing", place="either"), s.limit) \
            if timed else 0
        problems = speed.archive_problems(store)

        def items() -> Iterator[dict[str, Any] | bytes]:
            for sha256, basis, row in store.select_rendered(q, limit=s.limit):
                if type(row) is bytes:  # kept as listed_json renders it (render_stale_rows)
                    if sha256 not in problems and not (timed and basis == OFFSET_UNKNOWN):
                        yield row
                        continue
                    # this row depends on the query or on other items: built here
                    found = store.item(sha256)
                    assert found is not None
                    row = found
                assert isinstance(row, ItemRow)
                yield render.listed_json(row, cases, timed, problems.get(sha256))

        def undated() -> Iterator[dict[str, Any]]:
            for r in store.select(q, time="missing", place="either", limit=s.limit) if timed \
                    else ():
                out = render.item_json(r, cases, timed)
                out["missing"] = ["captured_at"]
                out["c2pa"] = r.c2pa or c2pa_filter.UNCHECKED
                yield out

        document: dict[str, Any] = {"query": p.echo}
        if incident is not None:
            document["incident"] = incident
        document.update({"count": count, "items": display.Streamed(items()),
                         "undetermined_count": undetermined,
                         "undetermined": display.Streamed(undated()), "index": status})
        with collector_paused():
            write(document)
    finally:
        store.close()
    return {"count": count, "undetermined_count": undetermined, "unplaced_count": 0}


def _at_most(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def _incident(store: SearchIndex, q: ItemQuery) -> dict[str, Any] | None:
    """The case and incident asked for, checked (NotFound when unknown); the incident's row."""
    if q.case is not None and not store.case_known(q.case):
        raise NotFound(f"no case {q.case!r} in this archive")
    if q.incident is None:
        return None
    row = store.incident(q.incident)
    if row is None and not store.incident_linked(q.incident):
        raise NotFound(f"no incident {q.incident!r} in this archive")
    return render.incident_json(row) if row else {"incident": q.incident}


def find(store: SearchIndex, s: Search, p: _Plan | None = None,
         verdicts: dict[str, str] | None = None) -> dict[str, Any]:
    """Search an up-to-date index. `items` pass every filter (sorted by distance with --near,
    else by capture time). Never silently dropped: with a time filter, items without a capture
    time that pass the other filters are listed in `undetermined`; with a place filter, items
    with no position are counted in `unplaced_count` (listed in `unplaced` on request).
    `verdicts` (when given) receives each listed item's C2PA verdict from its index row."""
    p = p or plan(s)
    q = p.query
    incident = _incident(store, q)
    seen = verdicts if verdicts is not None else {}
    cases = render.incident_cases(store)
    timed, placed = q.time is not None, q.boxes is not None
    with collector_paused():
        items = []
        for r in store.select(q, limit=None if p.near else s.limit):
            distance = _distance_to(r, p.near)
            seen[r.sha256] = r.c2pa or c2pa_filter.UNCHECKED
            if p.near is None or distance is not None:
                items.append(render.item_json(r, cases, timed, distance))
        flagged = speed.flag(store, items)  # fixes no traveller could join: no place
        left_out = [i for i in items if placed and i["sha256"] in flagged]
        items = [i for i in items if not (placed and i["sha256"] in flagged)]
        if p.near is not None:
            items.sort(key=lambda i: (i["distance_km"], i["captured_at"] or "~"))
            items = items[: s.limit] if s.limit else items
        undetermined = []
        if timed:
            for r in store.select(q, time="missing", place="either", limit=s.limit):
                distance = _distance_to(r, p.near)
                seen[r.sha256] = r.c2pa or c2pa_filter.UNCHECKED
                if p.near is not None and r.lat is not None and distance is None:
                    continue
                out = render.item_json(r, cases, timed, distance)
                out["missing"] = ["captured_at"] + (["gps"] if placed and r.lat is None else [])
                undetermined.append(out)
        result: dict[str, Any] = {"query": p.echo}
        if incident is not None:
            result["incident"] = incident
        result.update({"count": len(items), "items": items,
                       "undetermined_count": len(undetermined), "undetermined": undetermined})
        if placed:
            result["gps_flagged"] = left_out
            result["unplaced_count"] = store.count(q, time="match", place="missing")
            if s.list_unplaced:
                unplaced = list(store.select(q, time="match", place="missing", limit=s.limit))
                seen.update((r.sha256, r.c2pa or c2pa_filter.UNCHECKED) for r in unplaced)
                result["unplaced"] = [render.item_json(r, cases, timed) for r in unplaced]
    return result


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many result rows: they hold no
    cycles, and collections triggered by the allocations alone doubled the time of a search."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _distance_to(r: ItemRow, near: tuple[float, float, float] | None) -> float | None:
    if near is None or r.lat is None or r.lon is None:
        return None
    d = geo.haversine_km(near[0], near[1], r.lat, r.lon)
    return d if d <= near[2] else None


# Parsing arguments ------------------------------------------------------------------------------

def _instant(text: str, flag: str, *, end: bool) -> datetime:
    """--since/--until: YYYY-MM-DD (the whole UTC day) or an RFC 3339 time with an offset."""
    text = text.strip()
    if len(text) == 10:
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise UsageError(f"{flag} {text!r} is not YYYY-MM-DD or an RFC 3339 time") from None
        return day + timedelta(days=1, microseconds=-1) if end else day
    try:
        return datetime.fromtimestamp(tracks.parse_time(text, flag), UTC)
    except TrackError as exc:
        if "no UTC offset" in exc.message:
            raise UsageError(f"{flag} {text!r} has no UTC offset (add Z or +HH:MM)") from None
        raise UsageError(exc.message) from None
    except (OverflowError, OSError, ValueError):
        raise UsageError(f"{flag} {text!r} is out of range") from None


def _pair(text: str, flag: str, form: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        a, b = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not {form}") from None
    return a, b


def _bbox(text: str) -> list[geo.Box]:
    parts = text.split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--bbox {text!r} is not WEST,SOUTH,EAST,NORTH "
                         "(min lon, min lat, max lon, max lat, as GeoJSON)") from None
    if not (geo.valid_position(south, west) and geo.valid_position(north, east)):
        raise UsageError(f"--bbox {text!r} is out of range (lon -180..180, lat -90..90; "
                         "the order is WEST,SOUTH,EAST,NORTH)")
    if south > north:
        raise UsageError(f"--bbox {text!r}: SOUTH is above NORTH "
                         "(the order is WEST,SOUTH,EAST,NORTH)")
    return geo.bbox_boxes(west, south, east, north)


def distance_limit(km: float, flag: str) -> float:
    if not math.isfinite(km) or km <= 0:
        raise UsageError(f"{flag} must be more than 0 km")
    return min(km, geo.HALF_CIRCUMFERENCE_KM)
