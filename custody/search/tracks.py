"""Timed tracks (GPX, GeoJSON, CSV) read as streams of timed points, with one-line errors.

Pure: the parsers take lines or byte chunks (the caller opens the file) and yield one TrackPoint at
a time, so memory stays bounded whatever the track's size. docs/SEARCH.md gives the formats.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from xml.parsers import expat

from custody.core import canonical
from custody.core.geo import valid_position
from custody.errors import CustodyError

MAX_TEXT = 1024  # characters of text in a GPX <time>, <ele> or <name>
TIME_COLUMNS = ("time", "timestamp", "datetime", "date_time", "utc", "time_utc", "when")
LAT_COLUMNS = ("lat", "latitude")
LON_COLUMNS = ("lon", "lng", "long", "longitude")
ALT_COLUMNS = ("alt", "altitude", "ele", "elevation")
ID_COLUMNS = ("id", "track", "track_id", "segment", "callsign", "flight")
POINT_TIME_KEYS = ("time", "timestamp", "datetime", "when")
LINE_TIME_KEYS = ("coordTimes", "times")


class TrackError(CustodyError):
    """A track that cannot be read; the message names the line, feature or point."""


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """One timed position: `segment` names the piece of track it belongs to (points are joined
    in time order within a segment, never across), `ref` where it is in the file."""

    segment: str
    t: float  # Unix seconds, UTC
    lat: float
    lon: float
    alt: float | None
    ref: str


@dataclass(slots=True)
class Tally:
    """What a parser saw besides the points it yielded (counted, never silently dropped)."""

    points: int = 0
    untimed: int = 0  # points without a time: skipped
    unplaced: int = 0  # CSV rows with an empty latitude or longitude: skipped
    ignored: int = 0  # features and elements that are not track points (waypoints, polygons)


# Times ------------------------------------------------------------------------------------------

_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d)(?::(\d\d)(\.\d{1,9})?)?"
    r"\s*([Zz]|[+-]\d\d(?::?\d\d)?)?"
)
_UNIX = re.compile(r"\d{9,}(\.\d+)?")
MAX_UNIX = 1e11  # Unix seconds beyond this (year 5138) are taken for milliseconds: refused


def parse_time(value: object, where: str, *, naive_utc: bool = False) -> float:
    """Unix seconds from an RFC 3339 time (`T` or a space; offset `Z`, +HH:MM, +HHMM or +HH) or
    from Unix seconds (a JSON number, or a string of 9 or more digits). A time without an offset
    is UTC only when `naive_utc` (GPX says so); otherwise it is refused."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _unix(float(value), value, where)
    if not isinstance(value, str):
        raise TrackError(f"{where}: time {_show(value)} is not a string or a number")
    text = value.strip()
    if _UNIX.fullmatch(text):
        return _unix(float(text), value, where)
    m = _TIME.fullmatch(text)
    if m is None:
        raise TrackError(f"{where}: time {_show(value)} is not an RFC 3339 time")
    year, month, day, hour, minute, sec, frac, zone = m.groups()
    if zone is None:
        if not naive_utc:
            raise TrackError(f"{where}: time {_show(value)} has no UTC offset "
                             "(add Z or +HH:MM, or pass --assume-utc)")
        tz = UTC
    elif zone in ("Z", "z"):
        tz = UTC
    else:
        digits = zone[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + (int(digits[2:]) if len(digits) > 2 else 0)
        if minutes > 24 * 60:
            raise TrackError(f"{where}: time {_show(value)} has an impossible offset")
        tz = timezone(timedelta(minutes=-minutes if zone[0] == "-" else minutes))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute),
                          int(sec or 0), tzinfo=tz)
    except ValueError as exc:
        raise TrackError(f"{where}: time {_show(value)} is not a valid time ({exc})") from None
    return moment.timestamp() + (float(frac) if frac else 0.0)


def _unix(seconds: float, value: object, where: str) -> float:
    if not math.isfinite(seconds) or not 0 < seconds < MAX_UNIX:
        raise TrackError(f"{where}: time {_show(value)} is not Unix seconds "
                         "(milliseconds are not accepted)")
    return seconds


def format_time(t: float) -> str:
    """Unix seconds as RFC 3339 UTC (`Z`), with microseconds only when there are any."""
    moment = datetime.fromtimestamp(t, UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _position(lat: float, lon: float, where: str) -> None:
    if not valid_position(lat, lon):
        raise TrackError(f"{where}: position lat {lat!r}, lon {lon!r} is out of range "
                         "(lat -90..90, lon -180..180)")


# CSV --------------------------------------------------------------------------------------------

def parse_csv(lines: Iterable[str], tally: Tally, *,
              naive_utc: bool = False) -> Iterator[TrackPoint]:
    """CSV with a header row naming time, lat, lon and optionally alt and id columns (case-blind;
    aliases in TIME_COLUMNS etc.). Delimiter: comma, or tab or semicolon when the header has no
    comma. Rows with the same id form one segment."""
    it = iter(lines)
    first = next(it, None)
    if first is None:
        return
    delimiter = ","
    if "," not in first:
        delimiter = "\t" if "\t" in first else ";" if ";" in first else ","
    reader = csv.reader(itertools.chain([first], it), delimiter=delimiter)
    try:
        header = [h.strip().lstrip("\ufeff").lower() for h in next(reader)]
    except csv.Error as exc:
        raise TrackError(f"line 1: {exc}") from None
    cols = {name: _column(header, names) for name, names in
            (("time", TIME_COLUMNS), ("lat", LAT_COLUMNS), ("lon", LON_COLUMNS),
             ("alt", ALT_COLUMNS), ("id", ID_COLUMNS))}
    for need in ("time", "lat", "lon"):
        if cols[need] is None:
            raise TrackError(f"line 1: no {need} column in the header "
                             f"(columns: {', '.join(header) or 'none'})")
    width = max(c for c in cols.values() if c is not None) + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TrackError(f"line {reader.line_num}: {exc}") from None
        where = f"line {reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < width:
            raise TrackError(f"{where}: {len(row)} fields, but the header needs {width}")
        point = _csv_point(row, cols, where, tally, naive_utc)
        if point is not None:
            tally.points += 1
            yield point


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None


def _csv_point(row: list[str], cols: dict[str, int | None], where: str, tally: Tally,
               naive_utc: bool) -> TrackPoint | None:
    def cell(name: str) -> str:
        index = cols[name]
        return "" if index is None else row[index].strip()

    lat_text, lon_text, time_text = cell("lat"), cell("lon"), cell("time")
    if not lat_text or not lon_text:
        tally.unplaced += 1
        return None
    lat, lon = _number(lat_text, "lat", where), _number(lon_text, "lon", where)
    _position(lat, lon, where)
    if not time_text:
        tally.untimed += 1
        return None
    t = parse_time(time_text, where, naive_utc=naive_utc)
    alt_text = cell("alt")
    alt = _number(alt_text, "alt", where) if alt_text else None
    return TrackPoint(segment=cell("id") or "track", t=t, lat=lat, lon=lon, alt=alt, ref=where)


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TrackError(f"{where}: {what} {_show(text)} is not a number") from None
    if not math.isfinite(value):
        raise TrackError(f"{where}: {what} {_show(text)} is not a finite number")
    return value


# GPX --------------------------------------------------------------------------------------------

class _Gpx:
    """pyexpat handlers: the points of <trk>/<trkseg>/<trkpt>, line numbers kept for errors."""

    def __init__(self, parser: Any, tally: Tally) -> None:
        self.parser = parser
        self.tally = tally
        self.stack: list[str] = []
        self.ready: list[TrackPoint] = []
        self.trk = 0
        self.seg = 0
        self.trk_name: str | None = None
        self.point: dict[str, Any] | None = None
        self.text: list[str] | None = None
        self.text_len = 0

    def where(self) -> str:
        return f"line {self.parser.CurrentLineNumber}"

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rsplit(" ", 1)[-1]
        parent = self.stack[-1] if self.stack else None
        if parent is None and local != "gpx":
            hint = " (convert KML to GPX or GeoJSON)" if local == "kml" else ""
            raise TrackError(f"{self.where()}: not a GPX document (root element <{local}>){hint}")
        self.stack.append(local)
        if local == "trk":
            self.trk, self.seg, self.trk_name = self.trk + 1, 0, None
        elif local == "trkseg":
            self.seg += 1
        elif local == "trkpt":
            where = self.where()
            lat = _number(attrs.get("lat", ""), "lat", where) if "lat" in attrs else None
            lon = _number(attrs.get("lon", ""), "lon", where) if "lon" in attrs else None
            if lat is None or lon is None:
                raise TrackError(f"{where}: <trkpt> without lat and lon attributes")
            _position(lat, lon, where)
            self.point = {"lat": lat, "lon": lon, "where": where, "time": None, "ele": None}
        elif local in ("wpt", "rtept"):
            self.tally.ignored += 1
        if (local in ("time", "ele") and parent == "trkpt") or (local, parent) == ("name", "trk"):
            self.text, self.text_len = [], 0

    def data(self, text: str) -> None:
        if self.text is not None:
            self.text_len += len(text)
            if self.text_len > MAX_TEXT:
                raise TrackError(f"{self.where()}: text of <{self.stack[-1]}> is longer than "
                                 f"{MAX_TEXT} characters")
            self.text.append(text)

    def end(self, name: str) -> None:
        local = self.stack.pop()
        if self.text is not None and local in ("time", "ele", "name"):
            value = "".join(self.text).strip()
            self.text = None
            if local == "name":
                self.trk_name = value or None
            elif self.point is not None:
                self.point[local] = value or None
        elif local == "trkpt" and self.point is not None:
            self._finish(self.point)
            self.point = None

    def _finish(self, p: dict[str, Any]) -> None:
        if p["time"] is None:
            self.tally.untimed += 1
            return
        t = parse_time(p["time"], p["where"], naive_utc=True)  # GPX times are UTC by the spec
        alt = _number(p["ele"], "ele", p["where"]) if p["ele"] else None
        label = self.trk_name or f"trk {self.trk}"
        self.tally.points += 1
        self.ready.append(TrackPoint(segment=f"{label}/{max(self.seg, 1)}", t=t, lat=p["lat"],
                                     lon=p["lon"], alt=alt, ref=p["where"]))

    def refuse_dtd(self, *args: object) -> None:
        raise TrackError(f"{self.where()}: a GPX document with a DOCTYPE or entities is refused")


def parse_gpx(chunks: Iterable[bytes], tally: Tally) -> Iterator[TrackPoint]:
    """GPX 1.0 or 1.1: every <trkpt> of every <trkseg> (a segment each); waypoints and routes
    are counted as ignored. Times without an offset are UTC, as GPX defines them. A DOCTYPE is
    refused (no entity expansion). Text inside a point is capped at MAX_TEXT characters."""
    parser = expat.ParserCreate(namespace_separator=" ")
    gpx = _Gpx(parser, tally)
    parser.StartElementHandler = gpx.start
    parser.EndElementHandler = gpx.end
    parser.CharacterDataHandler = gpx.data
    parser.StartDoctypeDeclHandler = gpx.refuse_dtd
    parser.EntityDeclHandler = gpx.refuse_dtd
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    for chunk in itertools.chain(chunks, [None]):
        try:
            if chunk is None:
                parser.Parse(b"", True)
            else:
                parser.Parse(chunk, False)
        except expat.ExpatError as exc:
            raise TrackError(f"line {exc.lineno}: not well-formed XML "
                             f"({expat.ErrorString(exc.code)})") from None
        yield from gpx.ready
        gpx.ready.clear()


# GeoJSON ----------------------------------------------------------------------------------------

def parse_geojson(doc: Any, tally: Tally, *, naive_utc: bool = False,
                  where: str = "") -> Iterator[TrackPoint]:
    """A FeatureCollection, Feature or bare geometry (RFC 7946: [lon, lat, alt] order).

    Timed geometries: a Point with a time in properties `time` (or timestamp, datetime, when);
    LineString and MultiPoint with `coordTimes` (or `times`, or coordinateProperties.times), one
    per position; MultiLineString with one such list per line. Points of Point features with the
    same `id` (or name, or none) form one segment; each line is a segment of its own.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise TrackError(f"{where or 'document'}: not a GeoJSON object (no \"type\")")
    if doc["type"] == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise TrackError(f"{where or 'document'}: FeatureCollection without a features list")
        for n, feature in enumerate(features, 1):
            yield from _feature(feature, f"{where + ', ' if where else ''}feature {n}", tally,
                                naive_utc)
    elif doc["type"] == "Feature":
        yield from _feature(doc, where or "feature 1", tally, naive_utc)
    else:
        yield from _feature({"type": "Feature", "geometry": doc, "properties": None},
                            where or "geometry", tally, naive_utc)


def parse_geojson_lines(lines: Iterable[str], tally: Tally, *,
                        naive_utc: bool = False) -> Iterator[TrackPoint]:
    """GeoJSON text sequences (RFC 8142; or newline-delimited): one GeoJSON object per line."""
    for n, line in enumerate(lines, 1):
        text = line.strip().strip("\x1e").strip()
        if not text:
            continue
        try:
            doc = canonical.load_json(text)
        except json.JSONDecodeError as exc:
            raise TrackError(f"line {n}: not JSON ({exc.msg} at column {exc.colno})") from None
        yield from parse_geojson(doc, tally, naive_utc=naive_utc, where=f"line {n}")


def _feature(feature: Any, where: str, tally: Tally, naive_utc: bool) -> Iterator[TrackPoint]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise TrackError(f"{where}: not a GeoJSON Feature")
    geometry = feature.get("geometry")
    props = feature.get("properties")
    props = props if isinstance(props, dict) else {}
    name = feature.get("id", props.get("id", props.get("name")))
    label = str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) else None
    if not isinstance(geometry, dict):
        tally.ignored += 1
        return
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Point":
        time = next((props[k] for k in POINT_TIME_KEYS if props.get(k) is not None), None)
        yield from _positions([coords], [time], label or "points", where, tally, naive_utc,
                              single=True)
    elif kind in ("LineString", "MultiPoint"):
        times = _times(props, where)
        seg = f"{label} ({where})" if label else where
        yield from _positions(coords, times, seg, where, tally, naive_utc)
    elif kind == "MultiLineString":
        if not isinstance(coords, list):
            raise TrackError(f"{where}: MultiLineString coordinates are not a list")
        times = _times(props, where)
        for k, line in enumerate(coords):
            part = times[k] if isinstance(times, list) and k < len(times) else None
            seg = f"{label} ({where}, line {k + 1})" if label else f"{where}, line {k + 1}"
            yield from _positions(line, part, seg, f"{where}, line {k + 1}", tally, naive_utc)
    else:
        tally.ignored += 1


def _times(props: dict[str, Any], where: str) -> Any:
    for key in LINE_TIME_KEYS:
        if key in props:
            return props[key]
    nested = props.get("coordinateProperties")
    if isinstance(nested, dict) and "times" in nested:
        return nested["times"]
    return None


def _positions(coords: Any, times: Any, segment: str, where: str, tally: Tally,
               naive_utc: bool, single: bool = False) -> Iterator[TrackPoint]:
    if not isinstance(coords, list):
        raise TrackError(f"{where}: coordinates are not a list")
    if times is None:
        tally.untimed += len(coords)
        return
    if not isinstance(times, list) or len(times) != len(coords):
        count = len(times) if isinstance(times, list) else "no list of"
        raise TrackError(f"{where}: {len(coords)} positions but {count} times")
    for n, (position, time) in enumerate(zip(coords, times, strict=True), 1):
        at = where if single else f"{where}, point {n}"
        if (not isinstance(position, list) or len(position) < 2
                or not all(_is_number(v) for v in position)):
            raise TrackError(f"{at}: position {_show(position)} is not [lon, lat(, alt)]")
        lon, lat = float(position[0]), float(position[1])
        _position(lat, lon, at)
        if time is None:
            tally.untimed += 1
            continue
        t = parse_time(time, at, naive_utc=naive_utc)
        alt = float(position[2]) if len(position) > 2 else None
        tally.points += 1
        yield TrackPoint(segment=segment, t=t, lat=lat, lon=lon, alt=alt, ref=at)


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


# Joining points into legs -----------------------------------------------------------------------

def legs_of(points: Iterable[TrackPoint], max_gap: float | None = None) -> Iterator[tuple[
        TrackPoint, TrackPoint]]:
    """Consecutive pairs of points sorted by (segment, time): the legs positions are
    interpolated along. Every point is in at least one leg (a lone point pairs with itself);
    points more than `max_gap` seconds apart are not joined; exact repeats are dropped."""
    prev: TrackPoint | None = None
    joined = False  # prev is already the end of a leg
    for p in points:
        if prev is not None and p.segment == prev.segment:
            if (p.t, p.lat, p.lon, p.alt) == (prev.t, prev.lat, prev.lon, prev.alt):
                continue
            if max_gap is None or p.t - prev.t <= max_gap:
                yield prev, p
                prev, joined = p, True
                continue
        if prev is not None and not joined:
            yield prev, prev
        prev, joined = p, False
    if prev is not None and not joined:
        yield prev, prev
