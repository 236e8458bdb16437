"""A tree head of the whole log signed by the custodian making a report, for when the archive key
is not at hand: a reviewer's report proves every entry without the archive key's passphrase.

The custodian cosigns (C2SP tlog-cosignature, Ed25519 cosignature/v1, with its time) the
checkpoint body of the log as they read it; an RFC 9162 consistency proof binds it to the
archive's latest signed checkpoint, so entries up to that one rest on the archive key and the
newer ones on the custodian's signature (docs/REPORTS.md, "Which checkpoint").
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from custody.core import entry as entries
from custody.core import merkle, note, proofs
from custody.core.custodians import Registry
from custody.core.signing import SigningKey
from custody.errors import VerificationFailed
from custody.ops.archive import Archive
from store.ports import CheckpointRow

TYPE = "custody/report-tree-head/v1"


def key_name(key_id: str) -> str:
    """The C2SP key name of a custodian signing a report's tree head (names hold no spaces)."""
    return f"custodian/{key_id}"


def sign(
    archive: Archive, key: SigningKey, registry: Registry, row: CheckpointRow, now: datetime
) -> tuple[dict[str, Any], note.Checkpoint]:
    """Cosign the whole log as it stands, with a consistency proof from the archive's `row`."""
    ledger = archive.ledger
    size = ledger.size()
    root = merkle.root_hash(size, ledger.get_node)
    body = note.format_checkpoint(archive.config.origin, size, root)
    at = int(now.timestamp())
    signed = note.cosign(body, key_name(key.key_id), key, at)
    old = note.parse_checkpoint(note.split_note(row.note)[0])
    path = merkle.consistency_proof(old.size, size, merkle.prefetched(
        ledger.get_nodes(merkle.consistency_proof_nodes(old.size, size)), ledger.get_node))
    try:  # handed out only if it holds: stored nodes can be damaged or edited
        merkle.verify_consistency(old.size, size, path, old.root_hash, root)
    except merkle.ProofError as exc:
        raise VerificationFailed([f"the log does not extend its latest checkpoint ({exc}): "
                                  "run 'custody verify'"]) from None
    c = registry.by_id.get(key.key_id)
    head = {
        "type": TYPE,
        "signed_by": {"key_id": key.key_id, "name": c.name if c else key.public.name,
                      "role": c.role if c else None},
        "key_name": key_name(key.key_id),
        "size": size,
        "root_hash": root.hex(),
        "signed_at": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": signed,
        "extends": {"checkpoint_size": old.size,
                    "consistency": [base64.b64encode(h).decode() for h in path]},
    }
    return head, note.parse_checkpoint(body)


def inclusion(archive: Archive, seq: int, head: dict[str, Any], cp: note.Checkpoint
              ) -> dict[str, Any]:
    """An inclusion bundle (FORMAT.md §9.3) of entry `seq` against the custodian's tree head."""
    row = archive.ledger.row(seq)
    assert row is not None, seq
    path = merkle.inclusion_proof(seq, cp.size, merkle.prefetched(
        archive.ledger.get_nodes(merkle.inclusion_proof_nodes(seq, cp.size)),
        archive.ledger.get_node))
    merkle.verify_inclusion(entries.leaf_hash(row.body), seq, cp.size, path, cp.root_hash)
    return proofs.inclusion_bundle(head["note"], seq, row.body, row.signature, path)


def opened(head: dict[str, Any], archive_cp: note.Checkpoint) -> note.Checkpoint:
    """The tree head's checkpoint, if it is of the archive's log and extends `archive_cp`
    (its signature is checked by `check_signature`, once the signer's key is known)."""
    text = note.split_note(head["note"])[0]
    cp = note.parse_checkpoint(text)
    if cp.origin != archive_cp.origin:
        raise VerificationFailed([f"the report's tree head is of log {cp.origin!r}"])
    if cp.size != head["size"] or cp.root_hash.hex() != head["root_hash"]:
        raise VerificationFailed(["the tree head's size or root shown differ from its note"])
    extends = head["extends"]
    path = [base64.b64decode(h, validate=True) for h in extends["consistency"]]
    if extends["checkpoint_size"] != archive_cp.size:
        raise VerificationFailed(["the tree head extends another checkpoint than the report's"])
    try:
        merkle.verify_consistency(archive_cp.size, cp.size, path, archive_cp.root_hash,
                                  cp.root_hash)
    except merkle.ProofError as exc:
        raise VerificationFailed([f"the tree head does not extend the archive's checkpoint: "
                                  f"{exc.message}"]) from None
    return cp


def check_signature(head: dict[str, Any], public_key: bytes) -> int:
    """The cosignature's time (Unix seconds) if the custodian's key made it; else
    VerificationFailed."""
    name = key_name(head["signed_by"]["key_id"])
    try:
        found = note.open_note(head["note"], [note.cosigner_key(name, public_key)])
    except note.NoteError as exc:
        raise VerificationFailed([f"the tree head is not signed by "
                                  f"{head['signed_by']['name']}: {exc.message}"]) from None
    return found.verified[0].timestamp or 0
