"""Search and cross-reference results for output: each row as JSON, RFC 7946 GeoJSON, and text
tables for people (names escaped, times in one style).
"""

from __future__ import annotations

from typing import Any

from custody import display
from custody.core import geo
from custody.metadata.clocks import shown_capture
from custody.search.c2pa_filter import UNCHECKED
from custody.search.times import OFFSET_UNKNOWN
from store.index_port import IncidentRow, ItemRow, SearchIndex

TRACK_DRAW_LIMIT = 50_000  # --geojson draws the track itself up to this many points


def item_json(r: ItemRow, incident_cases: dict[str, str], timed: bool = False,
              distance: float | None = None) -> dict[str, Any]:
    cases = r.cases  # the row's own list: copied only when an incident's case joins it
    for incident in r.incidents:
        case = incident_cases.get(incident)
        if case and case not in cases:
            cases = [*cases, case]
    dated = r.captured_at
    out: dict[str, Any] = {
        "sha256": r.sha256,
        "names": r.names,
        "mime": r.mime,
        "captured_at": shown_capture(r.captured_text, r.basis) if dated else None,
        "captured_at_basis": r.basis if dated else None,
        "gps": None if r.lat is None else {"lat": r.lat, "lon": r.lon, "alt": r.alt},
        "device": None if r.make is None and r.model is None else {"make": r.make,
                                                                    "model": r.model},
        "cases": cases,
        "incidents": r.incidents,
        "tags": r.tags,
        "notes": r.notes,
    }
    if distance is not None:
        out["distance_km"] = distance
    if timed and r.basis == OFFSET_UNKNOWN and r.captured_at:
        out["flags"] = ["offset-unknown"]
    if r.warnings:
        out["warnings"] = r.warnings
    return out


def incident_cases(store: SearchIndex) -> dict[str, str]:
    """incident -> its case, for the incidents that have one: the case an incident brings to the
    items linked to it (`item_json`)."""
    return {i.incident: i.case_id for i in store.incidents() if i.case_id}


def listed_json(r: ItemRow, incident_cases: dict[str, str], timed: bool = False,
                gps_problems: list[str] | None = None) -> dict[str, Any]:
    """An item as `search --json` lists it: `item_json`, what an impossible journey takes from
    it (as speed.flag does), and its C2PA verdict last."""
    out = item_json(r, incident_cases, timed)
    if gps_problems is not None and out["gps"] and out["device"]:
        out["gps_problems"] = gps_problems
        out["gps"] = None
    out["c2pa"] = r.c2pa or UNCHECKED
    return out


# The version of the code that renders kept rows (listed_json, display.row_text, json_exact): a
# change to the bytes a row renders to must change it, so that every kept row is rendered again.
RENDERING = "1"
RENDER_BATCH = 1000  # rows rendered, then written, at a time


def render_stale_rows(store: SearchIndex) -> int:
    """Render every item whose kept search row is stale, as a search without a time filter
    lists it (`listed_json`, written by display.row_text): a search then writes the rows as
    they are instead of building them (docs/SEARCH.md "Rendered rows"). A row that depends on
    the query or on other items (a time filter's flag, an impossible journey) is built at search
    time. Returns how many were rendered."""
    _forget_other_rendering(store)
    cases = incident_cases(store)
    batch: list[tuple[int, bytes]] = []
    count = 0
    for r in store.unrendered():
        batch.append((r.id, display.row_text(listed_json(r, cases))))
        if len(batch) >= RENDER_BATCH:
            store.put_rendered(batch)
            count += len(batch)
            batch = []
    if batch:
        store.put_rendered(batch)
        count += len(batch)
    return count


def render_while_writing(store: SearchIndex) -> None:
    """Let the index keep a new item's row as it writes the item whole (a bulk fill): rendered
    once, not written stale and updated (docs/PERFORMANCE.md "Reindex, round 30"). An item
    linked to an incident is left stale: its row holds the incident's case, which
    render_stale_rows reads once every incident is known."""
    _forget_other_rendering(store)
    store.render_new_items(_rendered_alone)


def _rendered_alone(r: ItemRow) -> bytes | None:
    return None if r.incidents else display.row_text(listed_json(r, {}))


def _forget_other_rendering(store: SearchIndex) -> None:
    if store.get("rendering") != RENDERING:  # kept by another version of this code
        store.forget_rendered()
        store.put("rendering", RENDERING)


def incident_json(i: IncidentRow) -> dict[str, Any]:
    return {"incident": i.incident, "case": i.case_id, "date": i.date,
            "place": None if i.lat is None else {"lat": i.lat, "lon": i.lon,
                                                 "name": i.place_name},
            "description": i.description, "seq": i.seq}


# GeoJSON (RFC 7946) -------------------------------------------------------------------------------

def search_geojson(result: dict[str, Any]) -> dict[str, Any]:
    """The matching items as Point features; items without a position are left out, counted."""
    features = [_point(i["gps"], i["sha256"], {k: v for k, v in i.items() if k != "gps"})
                for i in result["items"] if i["gps"]]
    return {"type": "FeatureCollection", "features": features,
            "custody": {"query": result["query"], "count": result["count"],
                        "omitted_without_position": result["count"] - len(features),
                        "undetermined_count": result["undetermined_count"],
                        "unplaced_count": result.get("unplaced_count", 0)}}


def crossref_geojson(result: dict[str, Any]) -> dict[str, Any]:
    """Per match a Point at the item (or incident place), a Point at the matched track position
    and a LineString between them; the track's lines when it is small enough to draw."""
    features = []
    for rank, m in enumerate(result["matches"], 1):
        ident = m.get("sha256") or m.get("incident")
        where = m.get("gps") or m.get("place")
        tp = m["track_point"]
        props = {k: v for k, v in m.items() if k not in ("gps", "track_point")}
        features.append(_point(where, f"{ident}", {"role": "subject", "rank": rank, **props}))
        features.append(_point(tp, f"{ident}/track", {"role": "track-position", "rank": rank,
                                                      "subject": ident, **tp}))
        features.append({"type": "Feature", "id": f"{ident}/link", "geometry": {
            "type": "LineString", "coordinates": [[where["lon"], where["lat"]],
                                                  [tp["lon"], tp["lat"]]]},
            "properties": {"role": "link", "rank": rank, "subject": ident,
                           "distance_km": m["distance_km"], "dt_minutes": m["dt_minutes"]}})
    lines = result.get("track_lines")
    for segment, coords in lines or []:
        features.append({"type": "Feature", "id": f"track/{segment}",
                         "geometry": _line(coords),
                         "properties": {"role": "track", "segment": segment}})
    meta = {k: result[k] for k in ("track", "query", "count", "not_checked")}
    if lines is None:
        meta["track_not_drawn"] = f"more than {TRACK_DRAW_LIMIT} points"
    return {"type": "FeatureCollection", "features": features, "custody": meta}


def _point(where: dict[str, Any], ident: str, props: dict[str, Any]) -> dict[str, Any]:
    # [lon, lat] only: RFC 7946 altitude is above the ellipsoid, GPS EXIF altitude above sea
    # level, so altitude stays in the properties.
    return {"type": "Feature", "id": ident,
            "geometry": {"type": "Point", "coordinates": [where["lon"], where["lat"]]},
            "properties": props}


def _line(coords: list[tuple[float, float]]) -> dict[str, Any]:
    """A LineString, or a MultiLineString cut at the antimeridian (RFC 7946 §3.1.9)."""
    parts: list[list[list[float]]] = [[]]
    for lon, lat in coords:
        last = parts[-1][-1] if parts[-1] else None
        if last is not None and abs(lon - last[0]) > 180:
            step = geo.lon_delta(last[0], lon)
            edge = 180.0 if step > 0 else -180.0
            f = (edge - last[0]) / step
            cross = last[1] + f * (lat - last[1])
            parts[-1].append([edge, cross])
            parts.append([[-edge, cross]])
        parts[-1].append([lon, lat])
    if len(parts) == 1:
        if len(parts[0]) == 1:
            return {"type": "Point", "coordinates": parts[0][0]}
        return {"type": "LineString", "coordinates": parts[0]}
    return {"type": "MultiLineString", "coordinates": parts}


# Text output ------------------------------------------------------------------------------------

def search_lines(result: dict[str, Any]) -> list[str]:
    """The result for people: tables with headers, names escaped, times in one style."""
    out = []
    if "incident" in result:
        i = result["incident"]
        place = i.get("place") or {}
        out.append(f"incident {i['incident']}: {i.get('date') or '-'} "
                   f"{place.get('name') or ''} {i.get('description') or ''}".rstrip())
    out += _items_table(result["items"])
    if result["undetermined"]:
        out.append(f"undetermined: {result['undetermined_count']} item(s) without a capture "
                   "time to test against --since/--until")
        out += _items_table(result["undetermined"], missing=True)
    if result.get("unplaced_count"):
        out.append(f"unplaced: {result['unplaced_count']} item(s) without a position to test "
                   "against --near/--bbox" + ("" if "unplaced" in result
                                              else " (list them with --list-unplaced)"))
        out += _items_table(result.get("unplaced", [])) if result.get("unplaced") else []
    if result.get("gps_flagged"):
        out.append(f"left out: {len(result['gps_flagged'])} item(s) in the place searched whose "
                   "GPS fix is flagged as impossible (gps_problems in --json)")
        out += _items_table(result["gps_flagged"])
    every = [*result["items"], *result["undetermined"], *result.get("unplaced", [])]
    if any(i["captured_at_basis"] == OFFSET_UNKNOWN for i in every):
        out.append(display.UNKNOWN_OFFSET_LEGEND)
    return out


def _items_table(items: list[dict[str, Any]], missing: bool = False) -> list[str]:
    distance = any("distance_km" in i for i in items)
    c2pa = any(i.get("c2pa") not in (None, "none") for i in items)  # a column only when any has
    headers = ["SHA-256", "CAPTURED", "PLACE", "TYPE", *(["C2PA"] if c2pa else []),
               *(["KM"] if distance else []), *(["MISSING"] if missing else []), "NAME"]
    rows = []
    for i in items:
        gps = i["gps"]
        rows.append([
            display.short(i["sha256"]), display.when(i["captured_at"], i["captured_at_basis"]),
            f"{gps['lat']:.5f},{gps['lon']:.5f}" if gps else "-", i["mime"] or "-",
            *([_c2pa_cell(i.get("c2pa"))] if c2pa else []),
            *([f"{i['distance_km']:.3f}" if "distance_km" in i else "-"] if distance else []),
            *([", ".join(i.get("missing", []))] if missing else []),
            i["names"][0] if i["names"] else "-",
        ])
    return display.table(headers, rows, right=["KM"])


def _c2pa_cell(verdict: str | None) -> str:
    """INVALID in capitals: a manifest whose hashes or signature fail must not be missed."""
    return "INVALID" if verdict == "invalid" else (verdict or "-")


def crossref_lines(result: dict[str, Any]) -> list[str]:
    """The matches for people, best first: one table with headers, names escaped."""
    rows = []
    for rank, m in enumerate(result["matches"], 1):
        tp = m["track_point"]
        if "sha256" in m:
            who, name = display.short(m["sha256"]), (m["names"][0] if m["names"] else "-")
        else:
            who, name = f"incident {m['incident']}", "-"
        basis = OFFSET_UNKNOWN if "offset-unknown" in m["flags"] else m.get("captured_at_basis")
        when = (display.when(m["captured_at"], basis) if m.get("captured_at")
                else m.get("date") or "-")
        offset = f"implied offset {m['implied_utc_offset']}" if "implied_utc_offset" in m else ""
        rows.append([rank, who, when, f"{m['distance_km']:.3f}", f"{m['dt_minutes']:+.1f}",
                     display.when(tp["time"]), f"{tp['lat']:.5f},{tp['lon']:.5f}",
                     tp["segment"], ", ".join([*m["flags"], *([offset] if offset else [])]), name])
    if not rows:
        return []
    out = display.table(["#", "ITEM", "CAPTURED", "KM", "MINUTES", "TRACK TIME (UTC)",
                         "TRACK POSITION", "SEGMENT", "FLAGS", "NAME"], rows,
                        right=["#", "KM", "MINUTES"])
    if any("offset-unknown" in m["flags"] for m in result["matches"]):
        out.append(display.UNKNOWN_OFFSET_LEGEND)
    return out


def not_checked_text(result: dict[str, Any]) -> str:
    """What a cross-reference could not test, in words (for the command's summary line)."""
    nc = result["not_checked"]
    if isinstance(nc, dict):
        return (f"{nc['no_capture_time']} item(s) without a capture time, "
                f"{nc['no_position']} without a position")
    return f"{len(nc)} incident(s) without a date or place"
