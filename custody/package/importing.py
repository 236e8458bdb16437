"""Import a custody package: verify all of it first, then store its files and record one
`received` entry per item in one transaction, keeping the sender's signed records as evidence.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from custody.core import canonical, note
from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD
from custody.core.replay import Replay
from custody.core.signing import SigningKey
from custody.errors import ArchiveError, DiskFull, VerificationFailed
from custody.ops import encryption
from custody.ops.annotate import _check_id
from custody.ops.archive import Archive, Draft
from custody.ops.ingest import replaced_details
from custody.package import layout
from custody.package.bagsafe import Limits, open_file
from custody.package.verify import PackageReport, audit, checked
from store.ports import (
    ByteSource,
    Digests,
    LedgerTransaction,
    ObjectError,
    ObjectWriteError,
    StoreFull,
)

# Tag files kept as evidence with every received item (plus that item's own metadata document).
KEPT = ("bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt",
        "tagmanifest-sha256.txt", "tagmanifest-sha512.txt", layout.PACKAGE, layout.SIGNATURE,
        layout.CHECKPOINT, layout.KEYS, layout.ITEMS, layout.LEDGER, layout.PROOFS)


def import_package(
    archive: Archive,
    key: SigningKey,
    path: Path,
    *,
    case: str | None = None,
    pinned: note.VerifierKey | None = None,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Verify the package at `path`; only if it all verifies, store and record its items."""
    if case is not None:
        case = _check_id(case, "case")
    archive.authorize(key, "received", attempted="import")
    with checked(Path(path), pinned, limits) as c:
        report = c.report
        if not report.ok:
            raise VerificationFailed(report.problems)
        # Nothing was written before this point. Objects first, then every entry at once.
        repairs: dict[str, dict[str, Any]] = {}  # object -> the damaged copy its put set aside
        evidence = {
            rel: _put(archive, io.BytesIO(c.tags[rel]), repairs).sha256
            for rel in KEPT if rel in c.tags
        }
        for item in report.items:
            meta = layout.metadata_path(item.sha256)
            evidence[meta] = _put(archive, io.BytesIO(c.tags[meta]), repairs).sha256
        mismatched = []
        for item in report.items:
            with open_file(c.listing, item.path) as stream:
                got = _put(archive, stream, repairs).as_dict()
            signed = item.first.details.get("digests") or {}
            if any(got[a] != signed.get(a) for a in ("sha256", "sha512", "sha1", "md5")):
                mismatched.append(f"{item.path}: its digests differ from those signed in entry "
                                  f"{item.first.seq} (or it changed during the import)")
        if mismatched:
            raise VerificationFailed(mismatched)
        drafts = _with_repairs(received_drafts(report, c.tags, evidence, case,
                                               str(uuid.uuid4())), evidence, repairs)
    recorded: set[str] = set()

    def decide(writer: LedgerTransaction, draft: Draft) -> Draft:
        # Under the write lock: content this archive already holds is a sighting, not a receipt.
        item = draft.item or ""
        if draft.action != "received":
            return draft
        if item in recorded or any(writer.has_action(item, a) for a in FIRST_RECORD):
            details = {k: v for k, v in draft.details.items()
                       if k not in ("mime", "metadata_sha256")}
            return Draft("sighting", item, details)
        recorded.add(item)
        return draft

    signed = archive.append(key, drafts, decide=decide, attempted="import")
    done = [s.entry() for s in signed]
    firsts = [e for e in done if e.action in ("received", "sighting")]
    return {
        "package": str(path),
        "package_sha256": report.package_sha256,
        "package_id": report.package_id,
        "archive": report.archive,
        "verdict": report.verdict,
        "items": [
            {"sha256": e.item, "action": e.action, "seq": e.seq,
             "path": e.details["source"]["path"]}
            for e in firsts
        ],
        "received": sum(e.action == "received" for e in firsts),
        "present": sum(e.action == "sighting" for e in firsts),
        "entries": [e.seq for e in done],
    }


def _put(archive: Archive, stream: ByteSource, repairs: dict[str, dict[str, Any]]) -> Digests:
    """Store one object; a full disk is said as such (nothing is recorded: entries come last)."""
    try:
        put = archive.objects.put(stream)
    except StoreFull:
        raise DiskFull(
            "the disk holding the archive's objects is full: nothing was imported",
            hint="free space, then import the package again",
        ) from None
    except ObjectWriteError as exc:
        raise ArchiveError(f"cannot store an object of the package: {exc}") from None
    if put.replaced is not None:
        repairs[put.digests.sha256] = replaced_details(put.replaced)
    return put.digests


def _with_repairs(
    drafts: list[Draft], evidence: dict[str, str], repairs: dict[str, dict[str, Any]]
) -> list[Draft]:
    """Name every damaged copy this import set aside, as ingest does (docs/FORMAT.md, `replaced`):
    an item's own object in its entry; a kept record in the first entry of the batch."""
    if not repairs:
        return drafts
    kept = sorted({sha for sha in evidence.values() if sha in repairs})
    out = []
    for n, draft in enumerate(drafts):
        details = dict(draft.details)
        if draft.action == "received" and draft.item in repairs:
            details["replaced"] = repairs[draft.item]
        if n == 0 and kept:
            details["replaced_evidence"] = [repairs[sha] for sha in kept]
        out.append(replace(draft, details=details))
    return out


def kept_evidence(report: PackageReport, tags: dict[str, bytes]) -> dict[str, str]:
    """The package's records kept as evidence with its items, each by its SHA-256 (what storing
    them gives): the same on the sending device and at the importing archive."""
    kept = [rel for rel in KEPT if rel in tags]
    kept += [layout.metadata_path(item.sha256) for item in report.items]
    return {rel: hashlib.sha256(tags[rel]).hexdigest() for rel in kept}


def received_drafts(
    report: PackageReport, tags: dict[str, bytes], evidence: dict[str, str], case: str | None,
    batch: str,
) -> list[Draft]:
    """The entries an import of a verified package records, pure: the importing archive and a
    device signing those entries as statements (`custody sync`) build the same ones."""
    checkpoint_note = tags[layout.CHECKPOINT].decode("utf-8")
    statement = canonical.decode(tags[layout.PACKAGE])
    drafts = []
    for item in report.items:
        fr = item.first.details
        meta = layout.metadata_path(item.sha256)
        document, opened_from = _readable_metadata(tags, item.sha256, tags[meta])
        details = {
            "digests": fr["digests"],
            "size": fr["size"],
            "mime": fr.get("mime"),
            "metadata_sha256": (fr["metadata_sha256"] if opened_from is None
                                else hashlib.sha256(document).hexdigest()),
            "source": {
                "archive": report.archive.get("name"),
                "origin": report.archive["origin"],
                "archive_key": statement["archive"]["public_key"],
                "checkpoint": checkpoint_note,
                "package_sha256": report.package_sha256,
                "package_id": report.package_id,
                "entries": item.entries,
                "name": item.names[0] if item.names else None,
                "path": item.path,
            },
            "evidence": {rel: sha for rel, sha in evidence.items()
                         if not rel.startswith(layout.METADATA) or rel == meta},
            "case": case,
            "batch": batch,
        }
        if opened_from is not None:
            details["metadata_opened_from"] = opened_from
        drafts.append(Draft("received", item.sha256, details, metadata=document))
        if case is not None:
            drafts.append(Draft("case-add", item.sha256, {"case": case}))
    return drafts


def _readable_metadata(tags: dict[str, bytes], sha256: str, carried: bytes
                       ) -> tuple[bytes, str | None]:
    """The metadata document a receiving archive keeps: the carried one, or, when a sealed
    archive exported it (an age file the receiver has no key for), the document the exporter's
    key opened (`custody/opened/`, signed by the exporter, re-derivable from the payload),
    canonical, with the SHA-256 of the sealed one it was opened from (docs/FORMAT.md §12.3)."""
    opened = tags.get(layout.opened_path(sha256))
    if not encryption.is_sealed(carried) or opened is None:
        return carried, None
    try:
        document = json.loads(opened)["metadata"]
    except (ValueError, KeyError, TypeError):
        return carried, None
    if not isinstance(document, dict):
        return carried, None
    return canonical.encode(document), hashlib.sha256(carried).hexdigest()


def provenance(archive: Archive, item: str) -> dict[str, Any]:
    """How an item came in from packages: each receipt, the sender's kept records re-verified,
    and the sender's history of the item as those records show it."""
    out = []
    for row in archive.ledger.rows_for_item(item):
        e = entries.parse(row.body)
        evidence = e.details.get("evidence")
        if e.action not in ("received", "sighting") or not isinstance(evidence, dict):
            continue
        tags: dict[str, bytes] = {}
        report = PackageReport()
        for rel, sha in sorted(evidence.items()):
            try:
                with archive.objects.open(sha) as reader:
                    tags[rel] = reader.read()
                    reader.read()  # end of file: the digest is checked here
            except (ObjectError, ValueError) as exc:
                report.problems.append(f"kept evidence {rel} ({sha[:16]}…): {exc}")
        source = e.details.get("source") or {}
        digests = e.details.get("digests") or {}
        payload = {source.get("path", ""): {"sha256": item, "sha512": digests.get("sha512"),
                                            "size": e.details.get("size")}}
        if not report.problems:
            audit(tags, payload, None, report, only={item})
        out.append({
            "seq": e.seq,
            "action": e.action,
            "time": e.time,
            "from": source.get("archive"),
            "origin": source.get("origin"),
            "package_sha256": source.get("package_sha256"),
            "verified": report.ok,
            "problems": report.problems,
            "sender_history": _sender_history(tags, item) if report.ok else [],
        })
    return {"item": item, "receipts": out}


def _sender_history(tags: dict[str, bytes], item: str) -> list[dict[str, Any]]:
    replay = Replay()  # names as the sender's registry entries give them
    registry = replay.registry
    history = []
    for line in tags[layout.LEDGER].decode("utf-8").splitlines():
        row = canonical.decode(line.encode())
        signed = entries.SignedEntry(base64.b64decode(row["entry"]),
                                     base64.b64decode(row["signature"]))
        e = signed.entry()
        if e.action in ("init", "enroll", "revoke"):
            replay.apply(e)
        if e.item == item:
            history.append({
                "seq": e.seq, "time": e.time, "action": e.action, "actor": e.actor,
                "actor_name": registry.name_of(e.actor), "details": e.details,
                "signature": row["signature"],
            })
    return history
