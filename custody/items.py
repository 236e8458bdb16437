"""Read-only views of the archive: the item list, one item's record, and ledger entries as JSON.

These are the data behind `list`, `show` and `log`; `--json` prints exactly what they return.
"""

from __future__ import annotations

import base64
from typing import Any

from custody import canonical
from custody import entry as entries
from custody.archive import Archive
from custody.custodians import Registry
from store.ledger import EntryRow


def entry_json(row: EntryRow, registry: Registry) -> dict[str, Any]:
    """An entry as reviewers' tools see it: the signed fields plus signature and leaf hash."""
    e = entries.parse(row.body)
    return {
        "seq": e.seq,
        "time": e.time,
        "action": e.action,
        "item": e.item,
        "actor": e.actor,
        "actor_name": registry.name_of(e.actor),
        "details": e.details,
        "prev": e.prev,
        "leaf_hash": row.leaf_hash.hex(),
        "signature": base64.b64encode(row.signature).decode(),
    }


def log(archive: Archive, item: str | None = None) -> list[dict[str, Any]]:
    registry = archive.registry()
    rows = archive.ledger.rows_for_item(item) if item else archive.ledger.rows()
    return [entry_json(r, registry) for r in rows]


def show(archive: Archive, item: str) -> dict[str, Any]:
    registry = archive.registry()
    history = [entry_json(r, registry) for r in archive.ledger.rows_for_item(item)]
    first = next(h for h in history if h["action"] == "ingest")
    doc_bytes = archive.ledger.metadata(item)
    doc: dict[str, Any] = canonical.decode(doc_bytes) if doc_bytes else {}
    names: list[str] = []
    cases: list[str] = []
    for h in history:
        src = h["details"].get("source") or {}
        if src.get("name") and src["name"] not in names:
            names.append(src["name"])
        case = h["details"].get("case")
        if case and case not in cases:
            cases.append(case)
    return {
        "sha256": item,
        "size": first["details"].get("size"),
        "digests": first["details"].get("digests"),
        "mime": doc.get("mime"),
        "names": names,
        "cases": cases,
        "captured_at": doc.get("captured_at"),
        "captured_at_basis": doc.get("captured_at_basis"),
        "gps": doc.get("gps"),
        "device": doc.get("device"),
        "ingested_at": first["time"],
        "ingested_by": first["actor_name"],
        "metadata": doc,
        "metadata_errors": doc.get("errors", []),
        "history": history,
    }


def listing(archive: Archive) -> list[dict[str, Any]]:
    """One row per item, in order of first ingest."""
    rows: list[dict[str, Any]] = []
    registry = archive.registry()
    for r in archive.ledger.rows_with_action("ingest"):
        e = entries.parse(r.body)
        doc_bytes = archive.ledger.metadata(e.item or "")
        doc = canonical.decode(doc_bytes) if doc_bytes else {}
        rows.append(
            {
                "sha256": e.item,
                "size": e.details.get("size"),
                "mime": doc.get("mime"),
                "name": (e.details.get("source") or {}).get("name"),
                "captured_at": doc.get("captured_at"),
                "gps": doc.get("gps"),
                "case": e.details.get("case"),
                "ingested_at": e.time,
                "ingested_by": registry.name_of(e.actor),
                "metadata_errors": len(doc.get("errors", [])),
            }
        )
    return rows
