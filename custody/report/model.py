"""The data of a chain-of-custody report, built from the archive as plain JSON values (the model).

`build` reads content only through access.content (when a purpose is stated), makes sure a signed
checkpoint covers the log, verifies, and returns the model whose RFC 8785 digest the report prints.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from custody.core import canonical, note
from custody.core.chain import FIRST_RECORD
from custody.core.custodians import REGISTRY_ACTIONS, Registry
from custody.core.signing import SigningKey
from custody.errors import CustodyError, NotFound, UsageError
from custody.metadata import clocks
from custody.metadata import provenance as c2pa_record
from custody.ops import annotate, checkpoints, encryption, lineage
from custody.ops import items as views
from custody.ops.archive import Archive, replayed, utc_now
from custody.ops.verify import audit
from custody.report import checks, content, places, treehead
from store.ports import CheckpointRow, LedgerReadOnly

REPORT_TYPE = "custody/report/v1"


@dataclass(slots=True)
class Report:
    """The model (what the digest covers) and the previews made from content read for it."""

    model: dict[str, Any]
    previews: dict[str, bytes] = field(default_factory=dict)
    remarks: list[str] = field(default_factory=list)  # for the operator (stderr), not the page

    @property
    def digest(self) -> str:
        return digest(self.model)

    @property
    def ok(self) -> bool:
        return bool(self.model["status"] != "failed")


def digest(model: dict[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 encoding of a report model: what the report prints."""
    return hashlib.sha256(canonical.encode(model)).hexdigest()


def case_items(archive: Archive, case: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Items filed under `case` now (in order of filing), and those taken out of it (and why),
    from the replay's case membership."""
    replay = replayed(archive.ledger)
    removed = [{"item": r.item, "seq": r.seq, "time": r.time, "reason": r.reason}
               for r in replay.case_removals(case)]
    return list(replay.case_members(case)), removed


def build(
    archive: Archive,
    items: list[str],
    *,
    case: str | None = None,
    purpose: str | None = None,
    reader: SigningKey | None = None,
    destination: str | None = None,
    unlock_archive_key: Callable[[], SigningKey] | None = None,
    now: str | None = None,
    unlock_custodian_key: Callable[[], SigningKey] | None = None,
) -> Report:
    """Build the report of `items` (or of every item of `case`), reading content for `purpose`."""
    removed: list[dict[str, Any]] = []
    targets = list(dict.fromkeys(items))
    if case is not None:
        members, removed = case_items(archive, case)
        if not members:
            raise NotFound(f"no item is filed under case {case!r}")
        targets = list(dict.fromkeys(targets + members))
    if not targets:
        raise UsageError("name the items to report on, or --case ID")
    if purpose is not None and not purpose.strip():
        raise UsageError("--purpose needs some text: why the content is read")
    if purpose and reader is None:
        raise UsageError("reading content for a report needs the acting custodian's key")
    reads: dict[str, content.ContentRead] = {}
    if purpose:  # first, so that these access entries are under the checkpoint issued next
        assert reader is not None
        archive.unlock(reader)  # a sealed archive: its metadata and content (FORMAT.md §12.3)
        for sha in targets:
            doc = canonical.decode(
                encryption.open_document(archive.content_key, archive.ledger.metadata(sha))
                or b"{}")
            reads[sha] = content.read(archive, reader, sha, purpose, doc.get("mime"),
                                      destination or "", doc.get("duration_s"))
    row, issued, remarks = _checkpoint(archive, unlock_archive_key)
    whole = audit(archive, targets[0])
    cp = note.parse_checkpoint(note.split_note(row.note)[0]) if row else None
    registry = archive.registry()
    head, warnings = _tree_head(archive, row, registry, reader, unlock_custodian_key, remarks)
    incidents = annotate.incidents(archive)
    model_items = [
        _item(archive, sha, registry, reads.get(sha), row, cp, incidents, head) for sha in targets
    ]
    first_object = (f"object {targets[0]}", f"item {targets[0]}: metadata")  # shown per item
    ledger_problems = [p for p in whole.problems if not p.startswith(first_object)]
    status = _status(ledger_problems, model_items, warnings)
    model: dict[str, Any] = {
        "type": REPORT_TYPE,
        "generated_at": now or utc_now(),
        "archive": {"name": archive.config.name, "origin": archive.config.origin,
                    "verifier_key": str(checkpoints.verifier(archive))},
        "scope": {"case": case, "items": targets, "removed_from_case": removed},
        "generated_by": _who(reader, registry),
        "purpose": purpose.strip() if purpose else None,
        "content_read": bool(purpose),
        "log_size": archive.ledger.size(),
        "checkpoint": _checkpoint_json(row, cp, issued),
        "verification": {"ok": not ledger_problems, "entries_checked": whole.entries,
                         "checkpoints_checked": whole.checkpoints, "problems": ledger_problems,
                         "notices": whole.notices},
        "warnings": warnings,
        "status": status,
        "summary": _summary(model_items, incidents, targets, case),
        "custodians": _custodians(model_items, registry),
        "items": model_items,
        "registry_proofs": _registry_proofs(archive, row, cp, head),
    }
    if head is not None:  # only then: reports made with the archive key keep their old shape
        model["tree_head"] = head[0]
    previews = {sha: r.thumbnail_png for sha, r in reads.items() if r.thumbnail_png}
    return Report(model, previews, remarks)


def _checkpoint(
    archive: Archive, unlock: Callable[[], SigningKey] | None
) -> tuple[CheckpointRow | None, bool, list[str]]:
    """The latest checkpoint if it covers the whole log; else a new one, if the archive key
    unlocks; else the latest, and why no new one was signed (for the operator, not the page:
    a reviewer who does not hold the archive key has done nothing wrong)."""
    latest = archive.ledger.latest_checkpoint()
    if latest is not None and latest.size == archive.ledger.size():
        return latest, False, []
    if unlock is None:
        return latest, False, []
    try:
        issued = checkpoints.issue(archive, unlock())
        return issued.row, issued.new, []
    except CustodyError as exc:
        reason = exc.message
    except LedgerReadOnly as exc:  # a write-blocked copy: report on what it holds
        reason = str(exc)
    return latest, False, [f"no new archive checkpoint was signed ({reason})"]


def _tree_head(
    archive: Archive,
    row: CheckpointRow | None,
    registry: Registry,
    reader: SigningKey | None,
    unlock: Callable[[], SigningKey] | None,
    remarks: list[str],
) -> tuple[tuple[dict[str, Any], Any] | None, list[str]]:
    """When the archive's checkpoint does not cover the log: a tree head signed by the acting
    custodian (the reader, else the key `unlock` gives), or a plain warning of what is unproven."""
    size = archive.ledger.size()
    if row is None or row.size >= size:
        return None, [] if row is not None else ["the archive has no signed checkpoint: no entry "
                                                 "of this report is proven in a signed log"]
    span = f"entry #{row.size} is" if size - row.size == 1 else \
        f"entries #{row.size} to #{size - 1} are"
    key = reader
    if key is None and unlock is not None:
        try:
            key = unlock()
        except CustodyError as exc:
            remarks.append(f"no custodian key signed the report's tree head ({exc.message})")
    if key is not None:
        head, cp = treehead.sign(archive, key, registry, row,
                                 datetime.now(UTC))
        remarks.append(f"{span} newer than the archive's latest checkpoint: the report "
                       "proves them in a tree head signed with your key")
        return (head, cp), []
    return None, [f"{span} newer than the archive's latest signed checkpoint (of {row.size} "
                  "entries) and no custodian signed a tree head for this report: shown with "
                  "signatures checked, but their place in the log is not proven here"]


def _checkpoint_json(row: CheckpointRow | None, cp: Any, issued: bool) -> dict[str, Any] | None:
    if row is None or cp is None:
        return None
    return {"id": row.id, "size": cp.size, "root_hash": cp.root_hash.hex(),
            "created": row.created, "created_basis": checkpoints.CREATED_BASIS,
            "issued_for_report": issued, "note": row.note}


def _who(key: SigningKey | None, registry: Registry) -> dict[str, Any] | None:
    if key is None:
        return None
    c = registry.by_id.get(key.key_id)
    return {"key_id": key.key_id, "name": c.name if c else key.public.name,
            "role": c.role if c else None}


def _item(
    archive: Archive,
    sha: str,
    registry: Registry,
    read: content.ContentRead | None,
    row: CheckpointRow | None,
    cp: Any,
    incidents: list[dict[str, Any]],
    head: tuple[dict[str, Any], Any] | None = None,
) -> dict[str, Any]:
    shown = views.show(archive, sha)
    history = shown["history"]
    signed = next(h for h in history if h["action"] in FIRST_RECORD)["details"]
    doc = shown["metadata"]
    holders = [{**h, "name": views.holder_name(h["holder"], registry)} for h in shown["holders"]]
    mine = [i for i in incidents if sha in i.get("items", [])]
    place = places.describe(shown["gps"], [
        {"incident": i["incident"], **i["place"]} for i in mine if i.get("place")])
    checklist = [
        checks.fixity(archive, sha, signed, read.digests if read else None,
                      read.error if read else None),
        checks.metadata(archive, sha, signed),
        checks.signatures(archive, sha, registry),
    ]
    seqs = [h["seq"] for h in history]
    # a derivative's originals' first records are proven too: the report's re-check replays them
    seqs += lineage.ancestor_first_records(archive.ledger, sha)
    bundles: list[dict[str, Any]] = []
    if row is None:
        checklist.append(checks.row("inclusion", None, "no checkpoint: inclusion not proven"))
    else:
        inc, bundles = checks.inclusion(archive, seqs, row.note, cp, head)
        checklist.append(inc)
    return {
        "sha256": sha,
        "size": shown["size"],
        "digests": shown["digests"],
        "mime": shown["mime"],
        "kind": doc.get("kind"),
        "names": shown["names"],
        "ingested_at": shown["ingested_at"],
        "ingested_by": shown["ingested_by"],
        "captured_at": shown["captured_at"],
        "captured_at_basis": shown["captured_at_basis"],
        "clocks": doc.get("clocks") or [],
        "clocks_shown": clocks.listed_once(doc.get("clocks") or []),
        "clocks_disagree": _disagree(doc),
        "gps": shown["gps"],
        "gps_problems": shown["gps_problems"],
        "place": place,
        "device": shown["device"],
        # later readings (enriched entries) beside the ingest's, attributed; disagreements flagged
        "enriched_readings": [_later_reading(r) for r in shown["enriched_readings"]],
        "dimensions": doc.get("dimensions"),
        "duration_s": doc.get("duration_s"),
        "codecs": doc.get("codecs") or [],
        "metadata_errors": shown["metadata_errors"],
        "c2pa": _c2pa(doc),
        "sidecars": shown["sidecars"],  # proof files beside it and what was checked
        "sidecar_of": shown["sidecar_of"],
        "derived_from": shown["derived_from"],  # custody derive: lineage both ways
        "derivatives": shown["derivatives"],
        "cases": shown["cases"],
        "incidents": [{k: i.get(k) for k in ("incident", "date", "description", "place", "case")}
                      for i in mine],
        "tags": shown["tags"],
        "notes": shown["notes"],
        "holder": holders[-1] if holders else None,
        "holders": holders,
        "pending_offers": [o for o in shown["pending_offers"] if _offer_is_for(o, history)],
        "timeline": [_timeline_row(h) for h in history],
        "content": {
            "read": read is not None,
            "access_entry": read.access_seq if read else None,
            "preview": read.preview_note if read else None,
        },
        "checks": checklist,
        "problems": [f"{c['check']}: {c['detail']}" for c in checklist if c["ok"] is False],
        "proofs": bundles,
        "metadata_document": doc,
    }


def _later_reading(reading: dict[str, Any]) -> dict[str, Any]:
    """show's later reading, with each disagreement also as one line a lawyer reads."""
    def text(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
        return str(value)
    return {**reading, "disagreement_lines": [
        f"{d['field']}: at ingest {text(d['ingest'])}; in this later reading {text(d['later'])}"
        for d in reading["disagreements"]]}


def _c2pa(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The file's own C2PA claim as validated at ingest (not a custody check: an invalid manifest
    says the file was changed after its maker signed it, not that the archive changed it)."""
    found = c2pa_record.c2pa_of(doc)
    if found is None:
        return None
    return {
        "verdict": c2pa_record.verdict(doc),
        "summary": c2pa_record.describe(found),
        "validation_state": found.get("validation_state"),
        "claim_generator": found.get("claim_generator"),
        "codes": [c for c in found.get("validation_status") or [] if c.get("result") != "success"],
        "trust_anchors": found.get("trust_anchors") or [],
    }


def _offer_is_for(offer: dict[str, Any], history: list[dict[str, Any]]) -> bool:
    return any(h["seq"] == offer["offer"] for h in history)


def _timeline_row(h: dict[str, Any]) -> dict[str, Any]:
    d = h["details"]
    return {
        "seq": h["seq"], "time": h["time"], "action": h["action"],
        "actor": h["actor"], "actor_name": h["actor_name"],
        "purpose": d.get("purpose"), "reason": d.get("reason"),
        "details": d,
        "holder_after": h["holder_after"], "holder_after_name": h["holder_after_name"],
        "leaf_hash": h["leaf_hash"], "signature": h["signature"],
    }


def _status(ledger_problems: list[str], items: list[dict[str, Any]], warnings: list[str]) -> str:
    if ledger_problems or any(i["problems"] for i in items):
        return "failed"
    if warnings or any(c["ok"] is None for i in items for c in i["checks"]):
        return "incomplete"
    return "passed"


def _disagree(doc: dict[str, Any]) -> dict[str, str] | None:
    """The spread of the capture clocks when it is more than the file's duration explains."""
    found = clocks.disagreement(doc.get("clocks") or [], doc.get("duration_s"))
    return {"from": found[0], "to": found[1]} if found else None


def _summary(
    items: list[dict[str, Any]], incidents: list[dict[str, Any]], targets: list[str],
    case: str | None,
) -> dict[str, Any]:
    holders: dict[str, dict[str, Any]] = {}
    for i in items:
        h = i["holder"]
        if h:
            entry = holders.setdefault(h["holder"], {"holder": h["holder"], "name": h["name"],
                                                     "items": 0})
            entry["items"] += 1
    related = [i for i in incidents
               if (case is not None and i.get("case") == case)
               or any(t in i.get("items", []) for t in targets)]
    return {
        "items": len(items),
        "failed_items": sum(1 for i in items if i["problems"]),
        "holders": list(holders.values()),
        "incidents": [{k: i.get(k) for k in ("incident", "date", "description", "place", "case")}
                      | {"items": [t for t in i.get("items", []) if t in targets]}
                      for i in related],
    }


def _custodians(items: list[dict[str, Any]], registry: Registry) -> list[dict[str, Any]]:
    """Everyone named in the report: key id, name, role, public key, enrolment and revocation."""
    ids: dict[str, None] = {}
    for i in items:
        for t in i["timeline"]:
            ids.setdefault(t["actor"])
            for other in (t["holder_after"], t["details"].get("to")):
                if other in registry.by_id:
                    ids.setdefault(other)
    out: list[dict[str, Any]] = []
    for kid in ids:
        c = registry.by_id.get(kid)
        if c is None:
            out.append({"key_id": kid, "name": "(unknown key)", "role": None, "public_key": None,
                        "enrolled_in": None, "revoked_in": None})
            continue
        out.append({"key_id": kid, "name": c.name, "role": c.role,
                    "public_key": base64.b64encode(c.public_key).decode(),
                    "enrolled_in": c.enrolled_seq, "revoked_in": c.revoked_seq})
    return out


def _registry_proofs(
    archive: Archive, row: CheckpointRow | None, cp: Any, head: tuple[dict[str, Any], Any] | None
) -> list[dict[str, Any]]:
    """Inclusion proofs of every init/enroll/revoke entry: who could sign, provable offline
    (in the archive's checkpoint, or in the report's tree head for those newer than it)."""
    if row is None:
        return []
    out = []
    for r in archive.ledger.rows_with_action(*REGISTRY_ACTIONS):
        if r.seq < cp.size:
            out.append(checkpoints.inclusion(archive, r.seq, row.note))
        elif head is not None and r.seq < head[1].size:
            out.append(treehead.inclusion(archive, r.seq, head[0], head[1]))
    return out
