"""verify's check of the search index: the index as it is against a replay of the ledger into a
fresh one, row by row, each difference named in a reviewer's words (docs/SEARCH.md §1.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from custody import display
from custody.ops.archive import Archive
from custody.search.indexer import index_location, refresh
from custody.search.render import RENDERING, incident_cases, listed_json
from store.index_port import COMPARED, IndexUnusable, SearchIndex


@dataclass(slots=True)
class IndexCheck:
    problems: list[str]
    notices: list[str]


MAX_NAMED = 20  # index differences named one by one; the rest are counted
SAME_RUN = 1024  # rows of each index read and compared at once before any is merged one by one


def index_differences(archive: Archive) -> IndexCheck:
    """index.db against a replay of the ledger up to the entry it says it indexed: every row that
    differs is named (an edited index hides items from search). Reads index.db, writes nothing;
    what search would rebuild anyway (another archive's index, a damaged file) is a notice."""
    check = IndexCheck([], [])
    where = index_location(archive)
    sealed = archive.sealer is not None
    if sealed and archive.content_key is None:
        # a sealed archive's index opens only with a custodian's key (FORMAT.md §12.6): say so,
        # rather than pass in silence
        if (archive.root / where.name).exists():
            check.notices.append(f"search index {where.name} is sealed and was NOT checked "
                                 "against the ledger: no custodian's key was given (verify "
                                 "--key FILE checks it)")
        return check
    try:
        disk = where.open_existing()
    except IndexUnusable as exc:
        if sealed:
            check.notices.append(f"search index {where.name} was NOT checked: it does not open "
                                 f"with the keys given, or is of another version ({exc}); "
                                 "search rebuilds it")
        else:
            check.notices.append(f"search index {where.name} is unusable ({exc}); search "
                                 "rebuilds it")
        return check
    if disk is None:
        return check
    try:
        last = int(disk.get("last_seq") or -1)
        row = archive.ledger.row(last) if last >= 0 else None
        if disk.get("origin") not in (None, archive.config.origin) or (
                last >= 0 and (row is None or row.leaf_hash.hex() != disk.get("last_leaf"))):
            check.notices.append(f"search index {where.name} is of another ledger; search "
                                 "rebuilds it")
            return check
        fresh = disk.scratch()
        try:
            refresh(archive, fresh, until=last, render=False)
            named = list(_differences(disk, fresh))
            named += _kept_row_differences(disk, check)
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
                "item_text": "searchable text", "item_phash": "perceptual hash",
                "item_unhashed": "missing perceptual hash"}
_COLUMN_WORDS = {"first_seq": "first entry", "captured_at": "capture time",
                 "captured_text": "capture time", "captured_t": "capture time",
                 "basis": "capture time basis", "lat": "position", "lon": "position",
                 "alt": "position", "make": "device", "model": "device", "device": "device",
                 "mime": "type", "warnings": "warnings", "names": "file names", "notes": "notes",
                 "cases": "cases", "incidents": "incidents", "tags": "tags",
                 "c2pa": "C2PA verdict"}
assert COMPARED["items"].columns == ("sha256", *_COLUMN_WORDS)


def _differences(disk: SearchIndex, fresh: SearchIndex) -> Iterator[str]:
    """Every keyed row that is only in one index, or differs, merged in key order."""
    for table, compared in COMPARED.items():
        try:
            yield from _table_differences(table, compared.key, disk, fresh)
        except TypeError:  # a key of another type (a BLOB where text belongs): edited by hand
            yield f"table {table} holds values of a type the index never writes"


def _table_differences(table: str, width: int, disk: SearchIndex,
                       fresh: SearchIndex) -> Iterator[str]:
    a, b = disk.compared_rows(table), fresh.compared_rows(table)
    while True:  # equal runs of rows compared a run at a time (C speed): they name nothing
        run_a, run_b = list(islice(a, SAME_RUN)), list(islice(b, SAME_RUN))
        if run_a != run_b:
            yield from _merged_differences(table, width, chain(run_a, a), chain(run_b, b))
            return
        if not run_a:
            return


def _merged_differences(table: str, width: int, a: Iterator[tuple[Any, ...]],
                        b: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    """Both tables' rows merged in key order: each row only in one, each pair that differs."""
    words = _TABLE_WORDS[table]
    subject = "incident" if table == "incidents" else "item"
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
                        _COLUMN_WORDS[c] for c, u, v in zip(COMPARED["items"].columns, x, y,
                                                              strict=True)
                        if u != v))
                yield f"{subject} {x[0]}: {what} {_rest(x[:width])}differs"
            x, y = next(a, None), next(b, None)


def _kept_row_differences(disk: SearchIndex, check: IndexCheck) -> list[str]:
    """Each row the index keeps for search to write (docs/SEARCH.md §1.6) that is not its item's
    rendering: the columns it is rendered from are compared with the replay above, so a kept row
    that is their rendering is the ledger's. And the triggers that make a kept row stale on any
    change: without them a later change would leave the old row shown."""
    named = []
    if not disk.rendering_guarded():
        named.append("the triggers that keep its listed rows current are missing or altered "
                     "(a later change would not show in search)")
    if disk.get("rendering") != RENDERING:
        check.notices.append("search index: its listed rows were rendered by another version "
                             "of custody and were not checked; search renders them again")
        return named
    cases = incident_cases(disk)
    for sha256, row, kept in disk.rendered_rows():
        try:
            same = row is not None and kept == display.row_text(listed_json(row, cases))
        except (TypeError, ValueError, AttributeError):  # columns of types never written
            same = False
        if not same:
            named.append(f"item {sha256}: listed row (what search --json writes for it) "
                         "differs")
    return named


def _rest(key: tuple[Any, ...]) -> str:
    return "".join(f"{part!r} " for part in key[1:])
