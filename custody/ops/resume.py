"""Resuming an ingest: a file this custodian already recorded from the same source, saying the
same, is not recorded again (a re-run of an interrupted or repeated ingest adds no entries).
"""

from __future__ import annotations

from typing import Any

from custody.core import entry as entries
from custody.core.replay import case_change
from store.ports import LedgerReads


def recorded_before(
    ledger: LedgerReads, actor: str, item: str, details: dict[str, Any]
) -> int | None:
    """The seq of an earlier `ingest` or `sighting` of `item` by `actor` that says what a new one
    would: the same `source` (name, path or dump member, claimed times), `case` and `note`; None
    when there is none, or when the item has since left that case (the new entry files it again).
    Content seen at another path, or by another custodian, is always recorded."""
    same: int | None = None
    cases: set[str] = set()
    for row in ledger.rows_for_item(item):
        e = entries.parse(row.body)
        if (change := case_change(e)) is not None:
            (cases.add if change[1] else cases.discard)(change[0])
        if (
            e.action in ("ingest", "sighting")
            and e.actor == actor
            and all(e.details.get(k) == details.get(k) for k in ("source", "case", "note"))
        ):
            same = e.seq
    case = details.get("case")
    if same is not None and case and case not in cases:
        return None
    return same
