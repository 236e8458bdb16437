"""Read-only views of the archive: the item list, one item's record, and ledger entries as JSON.

These are the data behind `list`, `show` and `log`; `--json` prints exactly what they return.
"""

from __future__ import annotations

import base64
from typing import Any

from custody.core import canonical
from custody.core import entry as entries
from custody.core.chain import ARCHIVE_HOLDER, FIRST_RECORD
from custody.core.custodians import Registry
from custody.metadata.clocks import shown_capture
from custody.metadata.gps import fix_problems, shown_place
from custody.ops import containment, encryption, lineage
from custody.ops import enrich as enrichment
from custody.ops.archive import Archive, replayed
from custody.ops.sidecars import for_show as sidecars_for_show
from store.ports import EntryRow


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
        "entry_format": e.version,  # 2: `signature` signs the statement; `time` is the archive's
        "signed_at": e.claimed_time,
        "statement_id": e.statement_id,
    }


def log(archive: Archive, item: str | None = None) -> list[dict[str, Any]]:
    registry = archive.registry()
    rows = archive.ledger.rows_for_item(item) if item else archive.ledger.rows()
    return [entry_json(r, registry) for r in rows]


def holder_name(holder: str | None, registry: Registry) -> str | None:
    if holder is None:
        return None
    return "the archive (handed in by the field team)" if holder == ARCHIVE_HOLDER else (
        registry.name_of(holder))


def chain_of_custody(archive: Archive, item: str, registry: Registry) -> dict[str, Any]:
    """The item's history in order, each entry with the holder after it, and what is said of it:
    cases, incidents, notes (latest and superseded), tags, accesses and refusals."""
    replay = replayed(archive.ledger)
    history: list[dict[str, Any]] = []
    notes: dict[int, dict[str, Any]] = {}
    tags: list[str] = []
    for row in archive.ledger.rows_for_item(item):
        h = entry_json(row, registry)
        e = entries.parse(row.body)
        holder = replay.holder(item, at_seq=e.seq)
        h["holder_after"] = holder
        h["holder_after_name"] = holder_name(holder, registry)
        history.append(h)
        d = h["details"] = encryption.opened_or_sealed(archive.content_key, e.details)
        if e.action == "tag":
            if d.get("removed") and d.get("tag") in tags:
                tags.remove(d["tag"])
            elif not d.get("removed") and d.get("tag") not in tags:
                tags.append(d["tag"])
        if e.action == "note" or (e.action in ("ingest", "sighting") and d.get("note")):
            text = d.get("text") if e.action == "note" else d.get("note")
            notes[e.seq] = {
                "seq": e.seq,
                "time": e.time,
                "by": h["actor_name"],
                "text": text,
                "superseded_by": None,
            }
            if isinstance(d.get("supersedes"), int) and d["supersedes"] in notes:
                notes[d["supersedes"]]["superseded_by"] = e.seq
    holders = [
        {
            "holder": p.holder,
            "name": registry.name_of(p.holder),
            "since": p.since_time,
            "seq": p.since_seq,
        }
        for p in replay.book.holdings.get(item, [])
    ]
    return {
        "holder": holders[-1] if holders else None,
        "holders": holders,
        "cases": list(replay.cases_of(item)),
        "incidents": list(replay.incidents_of(item)),
        "notes": list(notes.values()),
        "tags": tags,
        "accesses": [
            {k: h["details"].get(k) for k in ("purpose", "kind", "destination")}
            | {"seq": h["seq"], "time": h["time"], "by": h["actor_name"]}
            for h in history
            if h["action"] == "access"
        ],
        "refusals": [h for h in history if h["action"] == "refused"],
        "pending_offers": [
            {"offer": o.seq, "to": o.to, "to_name": registry.name_of(o.to),
             "purpose": o.purpose if archive.sealer is None else encryption.opened_member(
                 archive.ledger, archive.content_key, o.seq, "purpose")}
            for o in replay.pending_offers() if o.item == item
        ],
        "history": history,
    }


def show(archive: Archive, item: str) -> dict[str, Any]:
    registry = archive.registry()
    chain = chain_of_custody(archive, item, registry)
    history = chain["history"]
    first = next(h for h in history if h["action"] in FIRST_RECORD)
    stored = archive.ledger.metadata(item)
    doc_bytes = encryption.readable_document(archive.content_key, stored)
    doc: dict[str, Any] = canonical.decode(doc_bytes) if doc_bytes else {}
    # The existing keys say what the ingest signed; a later reading (an `enriched` entry) is
    # shown beside it, attributed, never in its place (docs/METADATA.md "Two readings").
    allowed = enrichment.signer_rule(registry, first["actor"])  # rule enriched-by
    reading = enrichment.latest(history, first["details"].get("metadata_sha256"), allowed)
    names: list[str] = []
    for h in history:
        src = h["details"].get("source") or {}
        if src.get("name") and src["name"] not in names:
            names.append(src["name"])
    return {
        "sha256": item,
        "size": first["details"].get("size"),
        "digests": first["details"].get("digests"),
        "mime": doc.get("mime", first["details"].get("mime")),
        "names": names,
        # a sealed archive (docs/FORMAT.md §12): "sealed" shown without a custodian's key
        "sealing": None if archive.sealer is None else (
            "sealed" if stored is not None and doc_bytes is None else "opened"),
        "captured_at": shown_capture(doc.get("captured_at"), doc.get("captured_at_basis")),
        "captured_at_basis": doc.get("captured_at_basis"),
        "gps": shown_place(doc),  # a flagged fix is no place; metadata.gps keeps what was read
        "gps_problems": fix_problems(doc),
        "device": doc.get("device"),
        "ingested_at": first["time"],
        "ingested_by": first["actor_name"],
        "metadata": doc,
        "metadata_errors": doc.get("errors", []),
        # docs/METADATA.md "The fast path": null, or ExifTool's reading pending or recorded
        "metadata_enrichment": enrichment.state(first["details"], history, allowed),
        # each later reading, attributed, with where it disagrees with the ingest's; and the
        # ingest's document completed with the latest one allowed (what `metadata` was before)
        "enriched_readings": enrichment.readings(history, first, doc, registry),
        "metadata_enriched": enrichment.document(doc, reading) if reading is not None else None,
        # what the file says of its own origin (C2PA), as read and validated at ingest
        "provenance": {"c2pa": None, **(doc.get("provenance") or {})},
        **chain,
        # phone dumps (docs/CLI.md, ingest --unpack): where it was unpacked from, what it holds
        "unpacked_from": containment.unpacked_from(archive.ledger, history),
        "members": containment.members_of(archive.ledger, item, doc.get("mime")),
        **sidecars_for_show(archive.ledger, item, history),
        # derivatives (custody derive): what it was made from, what was made from it
        **lineage.for_show(archive.ledger, item, history, registry),
    }


def listing(archive: Archive) -> list[dict[str, Any]]:
    """One row per item, in order of first ingest, under the same key names as `show`: `names`
    seen at ingest, `cases` the item is filed under now, `metadata_errors` as a list."""
    replay = replayed(archive.ledger)
    names: dict[str, list[str]] = {}
    for r in archive.ledger.rows_with_action(*FIRST_RECORD, "sighting"):
        e = entries.parse(r.body)
        name = (encryption.opened_or_sealed(archive.content_key, e.details).get("source") or {}
                ).get("name")
        seen = names.setdefault(e.item or "", [])
        if name and name not in seen:
            seen.append(name)
    rows: list[dict[str, Any]] = []
    for item in replay.items():
        first = replay.first_record(item)
        assert first is not None
        doc_bytes = encryption.readable_document(archive.content_key,
                                                 archive.ledger.metadata(item))
        doc = canonical.decode(doc_bytes) if doc_bytes else {}
        seen = names.get(item, [])
        rows.append({
            "sha256": item,
            "size": first.size,
            "mime": doc.get("mime"),
            "name": seen[0] if seen else None,  # the first of `names` (for scripts before it)
            "names": seen,
            "captured_at": shown_capture(doc.get("captured_at"), doc.get("captured_at_basis")),
            "captured_at_basis": doc.get("captured_at_basis"),
            "gps": shown_place(doc),
            "gps_problems": fix_problems(doc),
            "device": doc.get("device"),
            "cases": list(replay.cases_of(item)),
            "ingested_at": first.time,
            "ingested_by": replay.name_of(first.actor),
            "metadata_errors": doc.get("errors", []),
        })
    return rows
