"""Impossible speeds: two fixes of one device whose clocks and places no traveller could join.

A GPS fix is a claim about a place at a time; two claims of the same device (make and model) that
need more than MAX_SPEED_KMH between them cannot both be true, and the index cannot tell which one
is wrong, so both are flagged (docs/METADATA.md, "Impossible fixes"). Pure core, then the search
step that applies it to a result.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any, NamedTuple

from custody.core import geo
from custody.search.times import OFFSET_UNKNOWN
from store.index_port import ItemQuery, SearchIndex

MAX_SPEED_KMH = 1200.0  # above an airliner's ground speed with a jet-stream tailwind
MIN_DISTANCE_KM = 1.0  # closer fixes are GPS noise, whatever the clocks say
SPEED = "speed-impossible"


class Fix(NamedTuple):
    sha256: str
    t: float  # Unix seconds, a known instant (never an offset-unknown clock)
    lat: float
    lon: float


def impossible_speeds(fixes: Iterable[Fix]) -> dict[str, list[str]]:
    """For each fix that cannot be joined to the one before or after it in time (same device),
    why: "speed-impossible (K km in S s from item X: V km/h)"."""
    ordered = sorted(fixes, key=lambda f: (f.t, f.sha256))
    found: dict[str, list[str]] = {}
    for a, b in zip(ordered, ordered[1:], strict=False):
        km = geo.haversine_km(a.lat, a.lon, b.lat, b.lon)
        seconds = b.t - a.t
        if km <= MIN_DISTANCE_KM:
            continue
        if seconds > 0 and km / (seconds / 3600.0) <= MAX_SPEED_KMH:
            continue
        speed = "any speed" if seconds <= 0 else f"{km / (seconds / 3600.0):,.0f} km/h"
        for this, other in ((a, b), (b, a)):
            found.setdefault(this.sha256, []).append(
                f"{SPEED} ({km:,.1f} km in {seconds:,.0f} s from item {other.sha256[:16]}: "
                f"{speed} > {MAX_SPEED_KMH:,.0f} km/h)")
    return found


def _fix(r: Any) -> Fix | None:
    if r.captured_t is None or r.lat is None or r.lon is None or r.basis == OFFSET_UNKNOWN:
        return None
    return Fix(r.sha256, r.captured_t, r.lat, r.lon)


def archive_problems(store: SearchIndex) -> dict[str, list[str]]:
    """What `flag` would say of every item of the archive, device by device, in one ordered scan
    of the index: a result streamed item by item looks each item up here. Each device's fixes
    are all its items' (as `flag` takes them), so an item's problems are the same either way."""
    problems: dict[str, list[str]] = {}
    for _device, rows in groupby(store.device_fixes(), key=lambda r: (r[0], r[1])):
        fixes = [Fix(sha, t, lat, lon) for _make, _model, sha, t, lat, lon, basis in rows
                 if basis != OFFSET_UNKNOWN]
        problems.update(impossible_speeds(fixes))
    return problems


def flag(store: SearchIndex, items: list[dict[str, Any]]) -> set[str]:
    """Mark result items whose fix is flagged against another fix of the same device in the
    whole archive: `gps` set to null, the reason added to `gps_problems`. Returns their digests."""
    devices = {(i["device"]["make"], i["device"]["model"]) for i in items
               if i.get("gps") and i.get("device")}
    problems: dict[str, list[str]] = {}
    for make, model in devices:
        text = " ".join(v for v in (make, model) if v)
        rows = store.select(ItemQuery(device=text), limit=None)
        fixes = [f for r in rows if (r.make, r.model) == (make, model) and (f := _fix(r))]
        problems.update(impossible_speeds(fixes))
    for i in items:
        if i["sha256"] in problems and i.get("gps"):
            i["gps_problems"] = [*i.get("gps_problems", []), *problems[i["sha256"]]]
            i["gps"] = None
    return set(problems) & {i["sha256"] for i in items}
