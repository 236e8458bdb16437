"""The search index's rows as both adapters store and read them (store/index.py for SQLite,
store/pg_index.py for PostgreSQL): one column list, one value encoding, one way to build the
filters, so the two adapters give the same rows for the same archive (tests/test_index_contract.py).

SQL placeholders differ (`?` in SQLite, `%s` in psycopg): the builders take the one to use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from store.index_port import IncidentRow, ItemRow, Mode, TimeRange

ITEM_COLUMNS = ("id, sha256, first_seq, captured_at, captured_text, captured_t, basis, lat, lon, "
                "alt, make, model, mime, warnings, names, notes, cases, incidents, tags, c2pa")
LEG_COLUMNS = "seg, t0, lat0, lon0, alt0, ref0, t1, lat1, lon1, alt1, ref1"
# Every timed, placed item of a known device, grouped by device (for impossible-speed checks).
FIXES_SQL = ("SELECT make, model, sha256, captured_t, lat, lon, basis FROM {items} "
             "WHERE (make IS NOT NULL OR model IS NOT NULL) AND captured_t IS NOT NULL "
             "AND lat IS NOT NULL AND lon IS NOT NULL ORDER BY make, model")
INCIDENT_COLUMNS = ("incident, seq, case_id, date, t_lo, t_hi, offset_unknown, lat, lon, "
                    "place_name, description")

# The output lists are read for every row a search returns, so they are stored in a form cheaper
# to read than JSON: NULL for none, else the values joined by U+001F; JSON after U+001E when a
# value holds either separator.
_SEP, _JSON = "\x1f", "\x1e"


def pack(values: list[str]) -> str | None:
    if not values:
        return None
    if any(_SEP in v or _JSON in v for v in values):
        return _JSON + json.dumps(values)
    return _SEP.join(values)


def unpack(text: str | None) -> list[str]:
    if text is None:
        return []
    if text.startswith(_JSON):
        return list(json.loads(text[1:]))
    return text.split(_SEP)


def item_row(r: Sequence[Any]) -> ItemRow:
    """An ItemRow from a row selected as ITEM_COLUMNS. A search reads one per listed item, so
    `unpack` is written out for the common cases (none, or plain text) and the tuple made by
    `_make` (C) rather than the named tuple's __new__ (Python)."""
    names, notes, cases, incidents, tags = r[14], r[15], r[16], r[17], r[18]
    return _make_item((
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
        [] if names is None else unpack(names) if names[:1] == _JSON else names.split(_SEP),
        [] if notes is None else unpack(notes) if notes[:1] == _JSON else notes.split(_SEP),
        [] if cases is None else unpack(cases) if cases[:1] == _JSON else cases.split(_SEP),
        [] if incidents is None else unpack(incidents) if incidents[:1] == _JSON
        else incidents.split(_SEP),
        [] if tags is None else unpack(tags) if tags[:1] == _JSON else tags.split(_SEP),
        json.loads(r[13]) if r[13] else [], r[19]))


_make_item = ItemRow._make


def incident_row(r: Sequence[Any]) -> IncidentRow:
    """An IncidentRow from a row selected as INCIDENT_COLUMNS."""
    return IncidentRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], r[10])


def time_match(t: TimeRange, mark: str) -> tuple[str, list[Any]]:
    """The filter on an item's capture time (table alias `i`); `mark` is the placeholder."""
    if t.wide_basis is None:
        return f"i.captured_at BETWEEN {mark} AND {mark}", [t.lo, t.hi]
    return (f"(i.captured_at BETWEEN {mark} AND {mark} AND (i.basis = {mark} OR i.captured_at "
            f"BETWEEN {mark} AND {mark}))", [t.wide_lo, t.wide_hi, t.wide_basis, t.lo, t.hi])


def apply_filter(where: list[str], params: list[Any], match: str, args: list[Any], absent: str,
                 mode: Mode) -> None:
    """Add one filter: rows that match, rows that lack the field, or either."""
    if mode == "match":
        where.append(match)
        params += args
    elif mode == "missing":
        where.append(absent)
    else:  # either: passes, or lacks the field
        where.append(f"({match} OR {absent})")
        params += args


def like_escape(text: str) -> str:
    """`text` as a LIKE pattern matching itself (used with ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
