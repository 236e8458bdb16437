"""The search index port: what custody's search asks of the derived index of items, the rows it
stores and returns, and its errors. store/index.py is the SQLite adapter; others plug in here.

Rows only: turning ledger entries and metadata documents into rows is custody's job
(custody/search/indexer.py); an adapter stores them, answers the queries below and gives its rows
back in one logical form (`COMPARED`) so that verify can compare an index with a replay.
Nothing in an index is evidence: it may be dropped at any time and rebuilt from the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

Box = tuple[float, float, float, float]  # (min_lat, max_lat, min_lon, max_lon)
Mode = Literal["match", "missing", "either"]  # how a time or place filter applies (`select`)
LinkKind = Literal["case", "incident", "tag"]
# A track point as stored: (segment, t, lat, lon, alt, ref); a leg: both ends, each (t, lat, lon,
# alt, ref), after the segment.
PointRow = tuple[str, float, float, float, float | None, str]
LegRow = tuple[Any, ...]
# An item's perceptual hash (docs/SIMILAR.md): (sha256, the keyframe's time in seconds or None for
# an image's hash, the 64-bit hash as 16 hex digits).
PerceptualRow = tuple[str, float | None, str]
MakeLegs = Callable[[Iterator[tuple[Any, ...]]], Iterable[tuple[LegRow, list[tuple[float, ...]]]]]


class IndexStoreError(Exception):
    """The index cannot do what was asked (the message says what)."""


class IndexUnusable(IndexStoreError):
    """An existing index cannot be read as an index of this version: damaged, not an index, or
    of another version. Search rebuilds such an index; verify reports it as a notice."""


class ItemRow(NamedTuple):
    """One indexed item. A named tuple, not a frozen dataclass: a search may build 10^5 of them,
    and a frozen dataclass's __init__ costs several times more."""

    id: int
    sha256: str
    first_seq: int
    captured_at: str | None  # UTC, sortable: YYYY-MM-DDTHH:MM:SS.ffffffZ
    captured_text: str | None  # as the metadata document has it
    captured_t: float | None  # Unix seconds
    basis: str | None
    lat: float | None
    lon: float | None
    alt: float | None
    make: str | None
    model: str | None
    mime: str | None
    names: list[str]
    notes: list[str]
    cases: list[str]
    incidents: list[str]
    tags: list[str]
    warnings: list[str]
    c2pa: str | None = None  # the C2PA verdict of the signed metadata document, when indexed


@dataclass(frozen=True, slots=True)
class IncidentRow:
    incident: str
    seq: int
    case_id: str | None
    date: str | None
    t_lo: float | None  # the date as an interval of Unix seconds (equal for an instant)
    t_hi: float | None
    offset_unknown: bool
    lat: float | None
    lon: float | None
    place_name: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """captured_at bounds (inclusive, sortable text); rows of `wide_basis` use the wide ones."""

    lo: str
    hi: str
    wide_basis: str | None = None
    wide_lo: str = ""
    wide_hi: str = ""


@dataclass(frozen=True, slots=True)
class ItemQuery:
    """Filters that combine (AND). `boxes` is a prefilter: exact distances are the caller's.
    `case` also holds items linked to one of the case's incidents."""

    case: str | None = None
    incident: str | None = None
    tag: str | None = None
    time: TimeRange | None = None
    boxes: tuple[Box, ...] | None = None
    device: str | None = None  # "make model" contains it, any case
    mime: str | None = None  # exact, or a prefix ending in "/"
    words: tuple[str, ...] = field(default=())  # each a substring of a name or note (lower case)


# The index's rows in the form two indexes are compared by (verify: an index against a replay):
# per logical table, its columns, keyed by the leading `key` columns (the item's SHA-256, never an
# adapter's row id), rows ordered by key. Every adapter yields exactly these from `compared_rows`.
@dataclass(frozen=True, slots=True)
class Compared:
    columns: tuple[str, ...]
    key: int


COMPARED: dict[str, Compared] = {
    "items": Compared(("sha256", "first_seq", "captured_at", "captured_text", "captured_t",
                       "basis", "lat", "lon", "alt", "make", "model", "device", "mime",
                       "warnings", "names", "notes", "cases", "incidents", "tags", "c2pa"), 1),
    "item_names": Compared(("sha256", "name", "seq"), 2),
    "item_cases": Compared(("sha256", "case_id", "seq"), 2),
    "item_incidents": Compared(("sha256", "incident", "seq"), 2),
    "item_tags": Compared(("sha256", "tag", "seq"), 2),
    "notes": Compared(("sha256", "seq", "text"), 2),
    "incidents": Compared(("incident", "seq", "case_id", "date", "t_lo", "t_hi",
                           "offset_unknown", "lat", "lon", "place_name", "description"), 1),
    "item_geo": Compared(("sha256", "min_t", "max_t", "min_lat", "max_lat", "min_lon",
                          "max_lon"), 1),
    "item_text": Compared(("sha256", "body"), 1),
    "item_phash": Compared(("sha256", "frame", "t", "hash"), 2),
    "item_unhashed": Compared(("sha256", "reason"), 1),
}


class TrackIndex(Protocol):
    """One track's points, legs and their search boxes, held beside the index for one
    cross-reference (on disk when large) and dropped afterwards."""

    def add_points(self, rows: Iterable[PointRow]) -> None:
        """Store points as they stream in (any order)."""

    def build_legs(self, make: MakeLegs) -> int:
        """Feed the points, by segment then time (then arrival order), to `make`, which yields
        legs each with its search boxes (min_t, max_t, min_lat, max_lat, min_lon, max_lon);
        store them; the number of legs."""

    def item_pairs(self, query: ItemQuery) -> Iterator[tuple[ItemRow, LegRow]]:
        """(item, leg) for every timed, placed item passing `query` whose place row meets one
        of the leg's search boxes."""

    def segments(self) -> int: ...

    def lines(self) -> Iterator[tuple[str, list[tuple[float, float]]]]:
        """Each segment's positions in time order, (lon, lat) pairs, for drawing."""

    def legs_near(self, t_lo: float, t_hi: float, lat: float, lon: float) -> Iterator[LegRow]:
        """Legs whose search box holds the place and meets the time interval."""


class SearchIndex(Protocol):
    """The index of one archive's items. Writes happen inside `writing()`, one transaction."""

    @property
    def location(self) -> str | None:
        """Where it is kept (for people), None when it lives in memory for this run."""

    def close(self) -> None: ...

    def scratch(self) -> SearchIndex:
        """A new, empty, in-memory index built the same way (verify replays into it)."""

    # Writing: (re)build and incremental update from rows the caller derives -----------------

    def writing(self) -> AbstractContextManager[None]:
        """One write transaction: concurrent writers wait for each other."""

    def get(self, key: str) -> str | None:
        """A value of the index's own state (the last entry indexed, the archive's origin)."""

    def put(self, key: str, value: str) -> None: ...

    def reset(self, *, zero: bool = True) -> None:
        """Drop every row and start empty (inside `writing`). `zero` False: the space the rows
        held need not be overwritten, because every row came from the ledger beside it, whose
        entries and documents hold them in the clear anyway (a store may zero it all the same)."""

    def has_item(self, sha256: str) -> bool: ...

    def ensure_item(self, sha256: str, seq: int) -> None:
        """Add an item first recorded by entry `seq` (nothing if it is there)."""

    def set_facts(self, sha256: str, *, captured_at: str | None, captured_text: str | None,
                  captured_t: float | None, basis: str | None, lat: float | None,
                  lon: float | None, alt: float | None, make: str | None, model: str | None,
                  mime: str | None, time_bounds: tuple[float, float] | None,
                  warnings: list[str], c2pa: str | None = None) -> None:
        """The facts read from an item's metadata; `time_bounds` is its place row's time
        extent (the caller widens it for clocks of unknown offset; None: any time); `c2pa` the
        C2PA verdict of its signed metadata document."""

    def add_name(self, sha256: str, name: str, seq: int) -> None: ...

    def link(self, kind: LinkKind, key: str, sha256: str, seq: int,
             present: bool = True) -> None:
        """Put an item in (or take it out of) a case, an incident or a tag."""

    def put_note(self, seq: int, sha256: str, text: str) -> None: ...

    def drop_note(self, seq: int) -> str | None:
        """Remove the note made by entry `seq`; the item it was about, if any."""

    def put_incident(self, row: IncidentRow) -> None: ...

    def drop_incident_version(self, seq: int, keep: str) -> None:
        """Remove an incident whose current version is entry `seq`, unless it is `keep`."""

    def refresh_item(self, sha256: str) -> None:
        """Rebuild an item's output lists and searchable text from its names, notes and links."""

    def refresh_items(self, sha256s: Iterable[str]) -> None:
        """`refresh_item` for each of these items that the index holds (the others are left
        alone), in as few statements as the adapter can."""

    def set_perceptual(self, sha256: str, hashes: list[tuple[float | None, str]],
                       unhashed: str | None) -> None:
        """An item's perceptual hashes, `(t, hex)` with `t` None for an image's, replacing any it
        had; or, for an image or video without one, why (`unhashed`)."""

    # Queries --------------------------------------------------------------------------------

    def count_items(self) -> int: ...

    def device_fixes(self) -> Iterator[tuple[str | None, str | None, str, float, float, float,
                                             str | None]]:
        """(make, model, sha256, captured_t, lat, lon, basis) of every item with a capture time,
        a place and a device, those of one device next to each other."""

    def case_known(self, case: str) -> bool:
        """An item or an incident is in the case."""

    def incident(self, incident: str) -> IncidentRow | None: ...

    def incidents(self, case: str | None = None) -> list[IncidentRow]:
        """The incidents (of one case), by id."""

    def incident_linked(self, incident: str) -> bool:
        """An item is linked to the incident."""

    def select(self, query: ItemQuery, *, time: Mode = "match", place: Mode = "match",
               limit: int | None = None) -> Iterator[ItemRow]:
        """Items passing the filters, dated ones in capture-time order, then the undated.
        `time`/`place` say how the time and place filters (when given) apply: "match" (the row
        passes), "missing" (the row lacks the field), "either"."""

    def select_rendered(self, query: ItemQuery, *, time: Mode = "match", place: Mode = "match",
                        limit: int | None = None) -> Iterator[tuple[str, str | None,
                                                                     bytes | ItemRow]]:
        """`select`'s items in its order as (sha256, capture time basis, the row `put_rendered`
        kept for the item, or its ItemRow when that is stale or the adapter keeps none)."""

    def unrendered(self) -> Iterator[ItemRow]:
        """The items whose rendered row is stale: changed since it was rendered, or never
        rendered (none from an adapter that keeps none). `put_rendered` may be called while
        this is iterated."""

    def rendered_rows(self) -> Iterator[tuple[str, ItemRow | None, Any]]:
        """Every item that has a kept rendered row: (sha256, its row, or None when its columns
        do not read as an ItemRow, the kept row as stored), by item id (verify checks each
        against the item's rendering)."""

    def rendering_guarded(self) -> bool:
        """What makes a kept row stale on any change is in place, unaltered (verify)."""

    def forget_rendered(self) -> None:
        """Make every kept row stale (rendered by another version of custody)."""

    def put_rendered(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Keep items' rendered search rows, (item id, row), until the item or an incident it
        is linked to changes (the adapter makes the row stale then, whoever writes)."""

    def render_new_items(self, render: Callable[[ItemRow], bytes | None]) -> None:
        """Until this writing transaction ends, an adapter that keeps rendered rows may keep a
        new item's row as `render` makes it (None: left stale) when it writes the item's row
        whole, lists included (a bulk fill), instead of writing it stale and rendering it
        again. Nothing for an adapter that keeps none."""

    def count(self, query: ItemQuery, *, time: Mode = "match", place: Mode = "match") -> int: ...

    def count_missing(self, query: ItemQuery) -> tuple[int, int]:
        """(items without a capture time, items with one but without a place) that pass the
        other filters."""

    def item(self, sha256: str) -> ItemRow | None: ...

    def perceptual_rows(self) -> Iterator[PerceptualRow]:
        """Every perceptual hash, by item, then keyframe order."""

    def unhashed(self) -> Iterator[tuple[str, str]]:
        """(sha256, why) for every image or video without a perceptual hash, by item."""

    def track(self) -> AbstractContextManager[TrackIndex]:
        """Room for one track, dropped when the block ends."""

    # Consistency (verify) -------------------------------------------------------------------

    def compared_rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        """Every row of one `COMPARED` table in its logical form, ordered by its key."""


class IndexLocation(Protocol):
    """Where an archive keeps its index."""

    @property
    def name(self) -> str:
        """The index's name in messages (index.db)."""

    def open(self) -> SearchIndex:
        """The index, created or repaired as needed (a damaged one is dropped: it is derived);
        in memory for this run when it cannot be written (read-only media)."""

    def open_existing(self) -> SearchIndex | None:
        """The index as it is, only to be read (nothing created, repaired or rebuilt); None when
        there is none. Raises IndexUnusable."""
