"""The checks a report states for each item at report time: fixity, metadata, signatures, proofs.

Each check is a row {"check", "ok", "detail"} (ok: true, false, or null for "not established");
the inclusion proofs are kept in the model so the report can be re-checked without the archive.
"""

from __future__ import annotations

import hashlib
from typing import Any

from custody.core import entry as entries
from custody.core import proofs
from custody.core.custodians import Registry
from custody.core.note import Checkpoint
from custody.errors import VerificationFailed
from custody.ops import checkpoints
from custody.ops.archive import Archive
from custody.report import treehead
from store.ports import ObjectCorrupt, ObjectMissing


def row(check: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"check": check, "ok": ok, "detail": detail}


def fixity(
    archive: Archive,
    item: str,
    signed: dict[str, Any],
    read_digests: dict[str, str] | None,
    read_error: str | None = None,
) -> dict[str, Any]:
    """The stored bytes against the digests signed at ingest (all four when content was read)."""
    want = signed.get("digests") or {}
    if read_error is not None:
        return row("fixity", False, f"reading the content for this report failed: {read_error}")
    if read_digests is not None:
        algos = ("sha256", "sha512", "sha1", "md5")
        wrong = [a for a in algos if read_digests.get(a) != want.get(a)]
        if wrong:
            return row("fixity", False, "recomputed " + ", ".join(wrong).upper()
                       + " differ from the digests signed at ingest")
        return row("fixity", True, "SHA-256, SHA-512, SHA-1 and MD5 recomputed from the content "
                   "read for this report; all equal the digests signed at ingest")
    try:
        size = archive.objects.check(item)
    except ObjectMissing:
        return row("fixity", False, "the stored object is MISSING")
    except ObjectCorrupt as exc:
        return row("fixity", False, f"the stored object is CORRUPT: {exc}")
    if size != signed.get("size"):
        return row("fixity", False, f"the stored object is {size} bytes; signed: {signed['size']}")
    return row("fixity", True, "SHA-256 recomputed from the stored object (not shown, no access "
               "needed, as custody verify does): equals its name and the signed digest")


def metadata(archive: Archive, item: str, signed: dict[str, Any]) -> dict[str, Any]:
    doc = archive.ledger.metadata(item)
    if signed.get("metadata_sha256") is None:
        return row("metadata", None, "the first record signs no metadata digest")
    if doc is None:
        return row("metadata", False, "the metadata document is missing")
    if hashlib.sha256(doc).hexdigest() != signed["metadata_sha256"]:
        return row("metadata", False, "the metadata document does not match its signed digest")
    return row("metadata", True, "the metadata shown hashes to the SHA-256 signed at ingest")


def signatures(archive: Archive, item: str, registry: Registry) -> dict[str, Any]:
    """Each of the item's entries: signed by a key enrolled (and not revoked) at that entry."""
    rows = archive.ledger.rows_for_item(item)
    bad = []
    for r in rows:
        e = entries.parse(r.body)
        signer = registry.signer(e.actor, e.seq)
        signed = entries.SignedEntry(body=r.body, signature=r.signature)
        if signer is None or not entries.signature_valid(signed, signer.public_key):
            bad.append(e.seq)
    if bad:
        return row("signatures", False, "bad or unauthorised signature on entries "
                   + ", ".join(f"#{s}" for s in bad))
    return row("signatures", True, f"all {len(rows)} entries carry a valid Ed25519 signature by "
               "a custodian enrolled at that entry")


def inclusion(
    archive: Archive, seqs: list[int], checkpoint_note: str, cp: Checkpoint,
    head: tuple[dict[str, Any], Checkpoint] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """RFC 9162 inclusion proofs of `seqs` in the checkpoint (entries newer than it: in the
    custodian-signed tree `head`, when there is one), each verified as it is made."""
    verifier = checkpoints.verifier(archive)
    bundles: list[dict[str, Any]] = []
    failed: list[str] = []
    uncovered = [s for s in seqs if s >= cp.size]
    for seq in (s for s in seqs if s < cp.size):
        try:
            bundle = checkpoints.inclusion(archive, seq, checkpoint_note)
            proofs.verify_bundle(bundle, verifier)
            bundles.append(bundle)
        except VerificationFailed as exc:
            failed.append(f"#{seq}: {exc.problems[0]}")
    where = f"the report's checkpoint (size {cp.size})"
    if head is not None and uncovered and not failed:
        later = [treehead.inclusion(archive, s, head[0], head[1]) for s in uncovered]
        by = head[0]["signed_by"]["name"]
        return row("inclusion", True, f"all {len(bundles) + len(later)} entries proven: "
                   f"{len(bundles)} in the archive-signed checkpoint (size {cp.size}), "
                   f"{len(later)} newer ones in the tree head of {head[1].size} entries signed "
                   f"by {by}, proven to extend it"), bundles + later
    if failed:
        detail = f"proofs fail against {where}: " + "; ".join(failed)
        return row("inclusion", False, detail), bundles
    if uncovered:
        return row("inclusion", None, f"{len(bundles)} entries proven in {where}; entries "
                   + ", ".join(f"#{s}" for s in uncovered) + " are newer than it and unproven"
                   ), bundles
    return row("inclusion", True, f"all {len(bundles)} entries proven included in {where}, "
               "whose root is the archive-signed tree head"), bundles
