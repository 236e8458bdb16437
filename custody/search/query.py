"""Search items by case, incident, time, place, device, type and text; cross-reference items and
incidents against a timed track. The data behind `custody search` and `custody crossref`.

The index (store/index.py, ARCHIVE/index.db) is derived from the ledger and brought up to date
before every query; docs/SEARCH.md gives the rules (unknown clock offsets, undetermined items,
how a track is interpolated and what "nearest in space-time" means).
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from custody import display
from custody.core import canonical, geo
from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD  # ingest or received: an item's metadata arrives
from custody.errors import NotFound, UsageError
from custody.ops.archive import Archive
from custody.search import tracks
from custody.search.tracks import Tally, TrackError, TrackPoint
from store.index import (
    COMPARED,
    IncidentRow,
    IndexStore,
    IndexStoreError,
    ItemQuery,
    ItemRow,
    TimeRange,
    TrackTables,
)
from store.ports import LedgerStoreError

INDEX_FILE = "index.db"
OFFSET_UNKNOWN = "camera-clock-offset-unknown"  # docs/METADATA.md: wall clock read as if UTC
UNKNOWN_OFFSET_S = 14 * 3600  # UTC offsets run from -12:00 to +14:00: +-14 h covers them all
GEOJSON_MAX_BYTES = 32 << 20  # one GeoJSON document is parsed whole: larger ones are refused
MAX_LINE = 1 << 20  # characters in one CSV line
MAX_FEATURE_LINE = 16 << 20  # characters in one line of a GeoJSON text sequence
TRACK_DRAW_LIMIT = 50_000  # --geojson draws the track itself up to this many points
FORMATS = ("gpx", "geojson", "geojsonseq", "csv")
SEQ_SUFFIXES = (".geojsons", ".geojsonl", ".geojsonseq", ".ndjson", ".jsonl")


# The index ----------------------------------------------------------------------------------------

def open_index(archive: Archive) -> IndexStore:
    """ARCHIVE/index.db; in memory (rebuilt for this run) when the folder cannot be written."""
    path = archive.root / INDEX_FILE
    may_write = os.access(archive.root, os.W_OK) and (
        not path.exists() or os.access(path, os.W_OK))  # False on a read-only mount, even for root
    if not may_write:  # a write-blocked copy: nothing is created or changed beside the ledger
        return IndexStore(None)
    store = IndexStore(path)
    try:
        store.conn  # noqa: B018 - opens, creates or repairs the file
    except (sqlite3.OperationalError, OSError):
        store = IndexStore(None)
    return store


def refresh(archive: Archive, store: IndexStore, *, rebuild: bool = False,
            until: int | None = None) -> dict[str, Any]:
    """Index the ledger entries added since the last refresh (all of them when rebuilding, when
    the index belongs to another archive, or when the entry it stopped at is no longer there);
    with `until`, only up to that entry."""
    with store.writing():
        last = int(store.get("last_seq") or -1)
        reason = "asked" if rebuild else None
        origin = store.get("origin")
        if reason is None and origin is not None and origin != archive.config.origin:
            reason = "index of another archive"
        if reason is None and last >= 0:
            row = archive.ledger.row(last)
            if row is None or row.leaf_hash.hex() != store.get("last_leaf"):
                reason = "the ledger no longer holds the entry the index stopped at"
        if reason is not None:
            store.reset()
            last = -1
        store.put("origin", archive.config.origin)
        indexer = _Indexer(archive, store, int(store.get("skipped") or 0))
        count = 0
        leaf = None
        for row in archive.ledger.rows(last + 1):
            if until is not None and row.seq > until:
                break
            indexer.apply(row.seq, row.body)
            last, count, leaf = row.seq, count + 1, row.leaf_hash
        indexer.finish()
        if leaf is not None:
            store.put("last_leaf", leaf.hex())
        store.put("last_seq", str(last))
        store.put("skipped", str(indexer.skipped))
    return {"file": str(store.path) if store.path else None, "entries": last + 1,
            "indexed_now": count, "rebuilt": reason, "items": store.count_items(),
            "skipped_entries": indexer.skipped}


@dataclass(slots=True)
class IndexCheck:
    problems: list[str]
    notices: list[str]


MAX_NAMED = 20  # index differences named one by one; the rest are counted


def index_differences(archive: Archive) -> IndexCheck:
    """index.db against a replay of the ledger up to the entry it says it indexed: every row that
    differs is named (an edited index hides items from search). Reads index.db, writes nothing;
    what search would rebuild anyway (another archive's index, a damaged file) is a notice."""
    check = IndexCheck([], [])
    path = archive.root / INDEX_FILE
    if not path.exists():
        return check
    try:
        disk = IndexStore.for_reading(path)
    except (LedgerStoreError, IndexStoreError, sqlite3.DatabaseError) as exc:
        check.notices.append(f"search index {path.name} is unusable ({exc}); search rebuilds it")
        return check
    try:
        last = int(disk.get("last_seq") or -1)
        row = archive.ledger.row(last) if last >= 0 else None
        if disk.get("origin") not in (None, archive.config.origin) or (
                last >= 0 and (row is None or row.leaf_hash.hex() != disk.get("last_leaf"))):
            check.notices.append(f"search index {path.name} is of another ledger; search "
                                 "rebuilds it")
            return check
        fresh = IndexStore(None, rtree=disk.rtree, fts=disk.fts)
        try:
            refresh(archive, fresh, until=last)
            named = list(_differences(disk, fresh))
        finally:
            fresh.close()
    finally:
        disk.close()
    for text in named[:MAX_NAMED]:
        check.problems.append(f"search index: {text}, unlike the ledger (search results would "
                              "be wrong; 'custody search --reindex' rebuilds it)")
    if len(named) > MAX_NAMED:
        check.problems.append(f"search index: {len(named) - MAX_NAMED} more differences")
    return check


# What a difference in each index table means, in a reviewer's words.
_TABLE_WORDS = {"items": "row", "item_names": "file name", "item_cases": "case",
                "item_incidents": "incident link", "item_tags": "tag", "notes": "note",
                "incidents": "incident", "item_geo": "position (place index)",
                "item_text": "searchable text"}
_COLUMN_WORDS = {"first_seq": "first entry", "captured_at": "capture time",
                 "captured_text": "capture time", "captured_t": "capture time",
                 "basis": "capture time basis", "lat": "position", "lon": "position",
                 "alt": "position", "make": "device", "model": "device", "device": "device",
                 "mime": "type", "warnings": "warnings", "names": "file names", "notes": "notes",
                 "cases": "cases", "incidents": "incidents", "tags": "tags"}
_ITEM_COLUMNS = ["sha256", *_COLUMN_WORDS]


def _differences(disk: IndexStore, fresh: IndexStore) -> Iterator[str]:
    """Every keyed row that is only in one index, or differs, merged in key order."""
    for table, (_, width) in COMPARED.items():
        try:
            yield from _table_differences(table, width, disk, fresh)
        except TypeError:  # a key of another type (a BLOB where text belongs): edited by hand
            yield f"table {table} holds values of a type the index never writes"


def _table_differences(table: str, width: int, disk: IndexStore,
                       fresh: IndexStore) -> Iterator[str]:
    words = _TABLE_WORDS[table]
    subject = "incident" if table == "incidents" else "item"
    a, b = disk.table_rows(table), fresh.table_rows(table)
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[:width] < y[:width]):
            assert x is not None
            yield f"{subject} {x[0]}: {words} {_rest(x[:width])}has no ledger entry behind it"
            x = next(a, None)
        elif x is None or y[:width] < x[:width]:
            yield f"{subject} {y[0]}: {words} {_rest(y[:width])}is missing"
            y = next(b, None)
        else:
            if x != y:
                what = words
                if table == "items":
                    what = ", ".join(dict.fromkeys(
                        _COLUMN_WORDS[c] for c, u, v in zip(_ITEM_COLUMNS, x, y, strict=True)
                        if u != v))
                yield f"{subject} {x[0]}: {what} {_rest(x[:width])}differs"
            x, y = next(a, None), next(b, None)


def _rest(key: tuple[Any, ...]) -> str:
    return "".join(f"{part!r} " for part in key[1:])


class _Indexer:
    """Turns ledger entries into index rows; unknown actions are ignored."""

    def __init__(self, archive: Archive, store: IndexStore, skipped: int) -> None:
        self.archive = archive
        self.store = store
        self.skipped = skipped
        self.dirty: set[str] = set()

    def apply(self, seq: int, body: bytes) -> None:
        try:
            e = entries.parse(body)
        except entries.MalformedEntry:
            self.skipped += 1  # verify reports it; the index just cannot use it
            return
        d, item, store = e.details, e.item, self.store
        if e.action == "incident":
            self._incident(e.seq, d)
            return
        if item is None:
            return
        if e.action in (*FIRST_RECORD, "sighting"):
            store.ensure_item(item, seq)
            if e.action in FIRST_RECORD:
                self._facts(item, d)
            source = d.get("source")
            name = _text(source.get("name")) if isinstance(source, dict) else None
            if name:
                store.add_name(item, name, seq)
            if case := _text(d.get("case")):
                store.link("case", case, item, seq)
            if note := _text(d.get("note")):
                store.put_note(seq, item, note)
        elif e.action in ("case-add", "case-remove") and (case := _text(d.get("case"))):
            store.link("case", case, item, seq, present=e.action == "case-add")
        elif e.action == "incident-add" and (incident := _text(d.get("incident"))):
            store.link("incident", incident, item, seq)
        elif e.action == "tag" and (tag := _text(d.get("tag"))):
            store.link("tag", tag, item, seq, present=d.get("removed") is not True)
        elif e.action == "note":
            if isinstance(d.get("supersedes"), int) and (old := store.drop_note(d["supersedes"])):
                self.dirty.add(old)
            if text := _text(d.get("text")):
                store.put_note(seq, item, text)
        else:
            return
        self.dirty.add(item)

    def finish(self) -> None:
        for sha256 in self.dirty:
            if self.store.conn.execute("SELECT 1 FROM items WHERE sha256 = ?",
                                       (sha256,)).fetchone():
                self.store.refresh_item(sha256)
        self.dirty.clear()

    def _facts(self, item: str, d: dict[str, Any]) -> None:
        warnings: list[str] = []
        doc: dict[str, Any] = {}
        raw = self.archive.ledger.metadata(item)
        if raw is None:
            warnings.append("no metadata document")
        elif hashlib.sha256(raw).hexdigest() != d.get("metadata_sha256"):
            warnings.append("metadata document does not match its signed digest: not used "
                            "(run custody verify)")
        else:
            # json, not canonical.decode: the index is derived, verify checks the form.
            value = json.loads(raw)
            doc = value if isinstance(value, dict) else {}
        text = _text(doc.get("captured_at"))
        moment = _utc(text)
        if text and moment is None:
            warnings.append(f"capture time {text!r} is not RFC 3339: not used")
        basis = _text(doc.get("captured_at_basis"))
        t = moment.timestamp() if moment else None
        gps = _dict(doc.get("gps"))
        lat, lon, alt = (_number(gps.get(k)) for k in ("lat", "lon", "alt"))
        if lat is None or lon is None or not geo.valid_position(lat, lon):
            if gps:
                warnings.append(f"GPS position {gps!r} is not usable")
            lat = lon = alt = None
        device = _dict(doc.get("device"))
        mime = _text(d.get("mime")) or _text(doc.get("mime"))
        wide = UNKNOWN_OFFSET_S if basis == OFFSET_UNKNOWN else 0
        self.store.set_facts(
            item, captured_at=_key(moment) if moment else None, captured_text=text,
            captured_t=t, basis=basis, lat=lat, lon=lon, alt=alt,
            make=_text(device.get("make")), model=_text(device.get("model")),
            mime=mime.lower() if mime else None,
            time_bounds=(t - wide, t + wide) if t is not None else None, warnings=warnings)

    def _incident(self, seq: int, d: dict[str, Any]) -> None:
        incident = _text(d.get("incident"))
        if not incident:
            return
        if isinstance(d.get("supersedes"), int):
            self.store.drop_incident_version(d["supersedes"], keep=incident)
        date = _text(d.get("date"))
        t_lo, t_hi, unknown = incident_interval(date)
        place = _dict(d.get("place"))
        lat, lon = _number(place.get("lat")), _number(place.get("lon"))
        if lat is None or lon is None or not geo.valid_position(lat, lon):
            lat = lon = None
        self.store.put_incident(IncidentRow(
            incident=incident, seq=seq, case_id=_text(d.get("case")), date=date, t_lo=t_lo,
            t_hi=t_hi, offset_unknown=unknown, lat=lat, lon=lon,
            place_name=_text(place.get("name")), description=_text(d.get("description"))))


def incident_interval(date: str | None) -> tuple[float | None, float | None, bool]:
    """An incident's date as Unix seconds [lo, hi] and whether its UTC offset is unknown:
    YYYY-MM-DD is that whole day read as UTC (offset unknown); an RFC 3339 time is an instant."""
    if not date:
        return None, None, False
    try:
        if len(date) == 10:
            day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
            return day.timestamp(), (day + timedelta(days=1)).timestamp() - 1e-6, True
        moment = datetime.fromisoformat(date.replace("z", "Z"))
    except ValueError:
        return None, None, False
    if moment.tzinfo is None:
        t = moment.replace(tzinfo=UTC).timestamp()
        return t, t, True
    t = moment.timestamp()
    return t, t, False


# Search -------------------------------------------------------------------------------------------

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
            lo=_key(lo) if lo else "", hi=_key(hi) if hi else "~",
            wide_basis=OFFSET_UNKNOWN, wide_lo=_shifted(lo, -wide, ""),
            wide_hi=_shifted(hi, wide, "~"))
        echo["since"] = _key(lo) if lo else None
        echo["until"] = _key(hi) if hi else None
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
        km = _distance(s.within_km, "--within-km")
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
    store = open_index(archive)
    try:
        status = refresh(archive, store, rebuild=rebuild)
        result = find(store, s, p)
    finally:
        store.close()
    result["index"] = status
    return result


def find(store: IndexStore, s: Search, p: _Plan | None = None) -> dict[str, Any]:
    """Search an up-to-date index. `items` pass every filter (sorted by distance with --near,
    else by capture time). Never silently dropped: with a time filter, items without a capture
    time that pass the other filters are listed in `undetermined`; with a place filter, items
    with no position are counted in `unplaced_count` (listed in `unplaced` on request)."""
    p = p or plan(s)
    q = p.query
    if q.case is not None and not store.case_known(q.case):
        raise NotFound(f"no case {q.case!r} in this archive")
    incident = None
    if q.incident is not None:
        row = store.incident(q.incident)
        if row is None and not store.incident_linked(q.incident):
            raise NotFound(f"no incident {q.incident!r} in this archive")
        incident = incident_json(row) if row else {"incident": q.incident}
    cases = {i.incident: i.case_id for i in store.incidents() if i.case_id}
    timed, placed = q.time is not None, q.boxes is not None
    with _collector_paused():
        items = []
        for r in store.select(q, limit=None if p.near else s.limit):
            distance = _distance_to(r, p.near)
            if p.near is None or distance is not None:
                items.append(item_json(r, cases, timed, distance))
        if p.near is not None:
            items.sort(key=lambda i: (i["distance_km"], i["captured_at"] or "~"))
            items = items[: s.limit] if s.limit else items
        undetermined = []
        if timed:
            for r in store.select(q, time="missing", place="either", limit=s.limit):
                distance = _distance_to(r, p.near)
                if p.near is not None and r.lat is not None and distance is None:
                    continue
                out = item_json(r, cases, timed, distance)
                out["missing"] = ["captured_at"] + (["gps"] if placed and r.lat is None else [])
                undetermined.append(out)
        result: dict[str, Any] = {"query": p.echo}
        if incident is not None:
            result["incident"] = incident
        result.update({"count": len(items), "items": items,
                       "undetermined_count": len(undetermined), "undetermined": undetermined})
        if placed:
            result["unplaced_count"] = store.count(q, time="match", place="missing")
            if s.list_unplaced:
                result["unplaced"] = [item_json(r, cases, timed) for r in
                                      store.select(q, time="match", place="missing",
                                                   limit=s.limit)]
    return result


@contextmanager
def _collector_paused() -> Iterator[None]:
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


def item_json(r: ItemRow, incident_cases: dict[str, str], timed: bool = False,
              distance: float | None = None) -> dict[str, Any]:
    cases = list(r.cases)
    for incident in r.incidents:
        case = incident_cases.get(incident)
        if case and case not in cases:
            cases.append(case)
    out: dict[str, Any] = {
        "sha256": r.sha256,
        "names": r.names,
        "mime": r.mime,
        "captured_at": r.captured_text if r.captured_at else None,
        "captured_at_basis": r.basis if r.captured_at else None,
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


def incident_json(i: IncidentRow) -> dict[str, Any]:
    return {"incident": i.incident, "case": i.case_id, "date": i.date,
            "place": None if i.lat is None else {"lat": i.lat, "lon": i.lon,
                                                 "name": i.place_name},
            "description": i.description, "seq": i.seq}


# Tracks -------------------------------------------------------------------------------------------

def read_track(path: Path, fmt: str | None = None, *, naive_utc: bool = False) -> tuple[
        str, Iterator[TrackPoint], Tally]:
    """(format, points as a stream, tally). The file is read as the points are consumed."""
    if not path.exists():
        raise NotFound(f"no track file at {path}")
    if not path.is_file():
        raise TrackError(f"{path} is not a file")
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    fmt = fmt or sniff(path)
    tally = Tally()
    if fmt == "geojson" and path.stat().st_size > GEOJSON_MAX_BYTES:
        raise TrackError(
            f"{path.name}: a GeoJSON document of {path.stat().st_size:,} bytes is over the "
            f"{GEOJSON_MAX_BYTES >> 20} MiB limit for one document (it is parsed whole); write "
            "it as a GeoJSON text sequence (one feature per line), GPX or CSV, which stream")
    return fmt, _points(path, fmt, tally, naive_utc), tally


def sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<"):
        return "gpx"
    if head.startswith(b"\x1e"):
        return "geojsonseq"
    if head.startswith((b"{", b"[")):
        return "geojsonseq" if path.suffix.lower() in SEQ_SUFFIXES else "geojson"
    return "csv"


def _points(path: Path, fmt: str, tally: Tally, naive_utc: bool) -> Iterator[TrackPoint]:
    try:
        with path.open("rb") as f:
            if fmt == "gpx":
                yield from tracks.parse_gpx(iter(lambda: f.read(1 << 16), b""), tally)
            elif fmt == "csv":
                yield from tracks.parse_csv(_lines(f, MAX_LINE), tally, naive_utc=naive_utc)
            elif fmt == "geojsonseq":
                yield from tracks.parse_geojson_lines(_lines(f, MAX_FEATURE_LINE), tally,
                                                      naive_utc=naive_utc)
            else:
                try:
                    doc = canonical.load_json(f.read().decode())
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    hint = (" (one object per line? use --format geojsonseq)"
                            if "Extra data" in str(exc) else "")
                    raise TrackError(f"not JSON: {exc}{hint}") from None
                yield from tracks.parse_geojson(doc, tally, naive_utc=naive_utc)
    except TrackError as exc:
        raise TrackError(f"{path.name}: {exc.message}") from None
    except OSError as exc:
        raise TrackError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None


def _lines(binary: Any, limit: int) -> Iterator[str]:
    """Text lines of at most `limit` characters (longer: an error, never a huge string)."""
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    n = 0
    while True:
        try:
            line = text.readline(limit + 1)
        except UnicodeDecodeError:
            raise TrackError(f"line {n + 1} (or the next few): not UTF-8 text") from None
        if not line:
            return
        n += 1
        if len(line) > limit:
            raise TrackError(f"line {n}: longer than {limit:,} characters")
        yield line


# Cross-reference ----------------------------------------------------------------------------------

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
    read_track(x.track, x.fmt)  # a missing file or bad --format before any work
    store = open_index(archive)
    try:
        status = refresh(archive, store)
        result = cross(store, x, draw_track=draw_track)
    finally:
        store.close()
    result["index"] = status
    return result


def cross(store: IndexStore, x: Crossref, *, draw_track: bool = False) -> dict[str, Any]:
    """`crossref` on an up-to-date index."""
    km, window = _check(x)
    fmt, points, tally = read_track(x.track, x.fmt, naive_utc=x.naive_utc)
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
                                     if info["points"] <= TRACK_DRAW_LIMIT else None)
    matches = result["matches"]
    if x.limit is not None:
        result["matches"] = matches[: x.limit]
    query = {"km": km, "minutes": x.minutes, "clock_tolerance_minutes": x.clock_tolerance,
             "max_gap_minutes": x.max_gap, "subjects": "incidents" if x.incidents else "items",
             "case": x.case}
    return {"track": info, "query": query, "count": len(matches), **result}


def _check(x: Crossref) -> tuple[float, float]:
    km = _distance(x.km, "--km")
    for value, flag in ((x.minutes, "--minutes"), (x.clock_tolerance, "--clock-tolerance")):
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} must be 0 or more minutes")
    if x.max_gap is not None and (not math.isfinite(x.max_gap) or x.max_gap <= 0):
        raise UsageError("--max-gap must be more than 0 minutes")
    if x.limit is not None and x.limit < 1:
        raise UsageError("--limit must be 1 or more")
    return km, (x.minutes + x.clock_tolerance) * 60.0


def _load(tables: TrackTables, points: Iterator[TrackPoint], tally: Tally, x: Crossref, fmt: str,
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


def _item_matches(store: IndexStore, tables: TrackTables, x: Crossref, km: float,
                  window: float) -> dict[str, Any]:
    query = ItemQuery(case=x.case)
    best: dict[str, tuple[ItemRow, geo.Approach, geo.Leg]] = {}
    with _collector_paused():
        _pairs(store, tables, query, km, window, best)
    cases = {i.incident: i.case_id for i in store.incidents() if i.case_id}
    matches = []
    for item, found, leg in best.values():
        row = item_json(item, cases)
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


def _pairs(store: IndexStore, tables: TrackTables, query: ItemQuery, km: float, window: float,
           best: dict[str, tuple[ItemRow, geo.Approach, geo.Leg]]) -> None:
    """Keep, per item, its best position on the legs whose search boxes meet its place."""
    for item, leg_row in tables.item_pairs(store, query):
        t = item.captured_t
        assert t is not None and item.lat is not None and item.lon is not None
        wide = UNKNOWN_OFFSET_S if item.basis == OFFSET_UNKNOWN else 0.0
        leg = geo.Leg(*leg_row)
        found = geo.best_on_leg(leg, geo.Subject(item.lat, item.lon, t, t, window + wide), km)
        if found is not None:
            held = best.get(item.sha256)
            if held is None or _rank(found) < _rank(held[1]):
                best[item.sha256] = (item, found, leg)


def _incident_matches(store: IndexStore, tables: TrackTables, x: Crossref, km: float,
                      window: float) -> dict[str, Any]:
    matches = []
    not_checked = []
    for inc in store.incidents(case=x.case):
        if inc.t_lo is None or inc.t_hi is None or inc.lat is None or inc.lon is None:
            row = incident_json(inc)
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
            row = incident_json(inc)
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
    every = [*result["items"], *result["undetermined"], *result.get("unplaced", [])]
    if any(i["captured_at_basis"] == OFFSET_UNKNOWN for i in every):
        out.append(display.UNKNOWN_OFFSET_LEGEND)
    return out


def _items_table(items: list[dict[str, Any]], missing: bool = False) -> list[str]:
    distance = any("distance_km" in i for i in items)
    headers = ["SHA-256", "CAPTURED (UTC)", "PLACE", "TYPE", *(["KM"] if distance else []),
               *(["MISSING"] if missing else []), "NAME"]
    rows = []
    for i in items:
        gps = i["gps"]
        rows.append([
            display.short(i["sha256"]), display.when(i["captured_at"], i["captured_at_basis"]),
            f"{gps['lat']:.5f},{gps['lon']:.5f}" if gps else "-", i["mime"] or "-",
            *([f"{i['distance_km']:.3f}" if "distance_km" in i else "-"] if distance else []),
            *([", ".join(i.get("missing", []))] if missing else []),
            i["names"][0] if i["names"] else "-",
        ])
    return display.table(headers, rows, right=["KM"])


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
    out = display.table(["#", "ITEM", "CAPTURED (UTC)", "KM", "MINUTES", "TRACK TIME (UTC)",
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


def _distance(km: float, flag: str) -> float:
    if not math.isfinite(km) or km <= 0:
        raise UsageError(f"{flag} must be more than 0 km")
    return min(km, geo.HALF_CIRCUMFERENCE_KM)


def _offset(seconds: float) -> str:
    minutes = round(seconds / 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _shifted(moment: datetime | None, by: timedelta, unbounded: str) -> str:
    """The sortable key of moment + by; `unbounded` when there is none or it leaves the
    calendar."""
    if moment is None:
        return unbounded
    try:
        return _key(moment + by)
    except OverflowError:
        return unbounded


def _key(moment: datetime) -> str:
    """The sortable UTC text the index compares: fixed width, microseconds, Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None

