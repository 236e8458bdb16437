"""Lineage, read from the log: what a derivative was made from and what was made from an item
(docs/DERIVATIVES.md). `show`, the reports and export take it from here; verify checks the rules
in the replay (custody/core/replay.py, rules derived-original and derived-record).
"""

from __future__ import annotations

from typing import Any

from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD
from custody.core.custodians import Registry
from store.ports import LedgerReads

RECORD = ("purpose", "operations", "tools", "commands", "output", "access")


def derived_from(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A derivative's original and how it was made (from its `derived` entry), or None."""
    first = next((h for h in history if h["action"] == "derived"), None)
    if first is None:
        return None
    d = first["details"]
    return {"sha256": d.get("original"), "seq": first["seq"], "time": first["time"],
            "by": first["actor_name"]} | {k: d.get(k) for k in RECORD}


def derivatives(ledger: LedgerReads, item: str, registry: Registry) -> list[dict[str, Any]]:
    """The items derived from `item`, in log order, each with what was done."""
    found: list[dict[str, Any]] = []
    for row in ledger.rows_with_action("derived"):
        e = entries.parse(row.body)
        if e.details.get("original") != item:
            continue
        found.append({"sha256": e.item, "seq": e.seq, "time": e.time,
                      "by": registry.name_of(e.actor), "purpose": e.details.get("purpose"),
                      "operations": e.details.get("operations")})
    return found


def for_show(ledger: LedgerReads, item: str, history: list[dict[str, Any]],
             registry: Registry) -> dict[str, Any]:
    """`show`'s lineage keys: `derived_from` (object or null) and `derivatives` (a list)."""
    return {"derived_from": derived_from(history),
            "derivatives": derivatives(ledger, item, registry)}


def ancestor_first_records(ledger: LedgerReads, item: str) -> list[int]:
    """The seqs of the first records of a derivative's original, that one's original, and so
    on (empty for an item that is no derivative): what proves its lineage."""
    seqs: list[int] = []
    seen = {item}
    current: str | None = item
    while current is not None:
        first = next((entries.parse(r.body) for r in ledger.rows_for_item(current)
                      if r.action in FIRST_RECORD), None)
        original = first.details.get("original") if first and first.action == "derived" else None
        current = original if isinstance(original, str) and original not in seen else None
        if current is None:
            break
        seen.add(current)
        parent = next((r.seq for r in ledger.rows_for_item(current) if r.action in FIRST_RECORD),
                      None)
        if parent is not None:
            seqs.append(parent)
    return seqs


def operations_text(operations: object) -> str:
    """Operations in one line for people: `redact 2 box(es), strip-metadata`."""
    if not isinstance(operations, list):
        return "-"
    said: list[str] = []
    for op in operations:
        if not isinstance(op, dict):
            continue
        name = str(op.get("op"))
        if name == "redact":
            boxes = op.get("boxes") if isinstance(op.get("boxes"), list) else []
            said.append(f"redact {' '.join(','.join(map(str, b)) for b in boxes or [])}")
        elif name == "trim":
            said.append(f"trim {op.get('start')}-{op.get('end')} s")
        elif name == "transcode":
            said.append(f"transcode {op.get('preset')}")
        elif name == "still":
            said.append(f"still at {op.get('at')} s")
        else:
            said.append(name)
    return ", ".join(said) or "-"
