"""Proof bundles: an inclusion or consistency proof packed with the signed checkpoint(s) it is
against, verifiable with nothing but the bundle and the archive's public key (no archive open).

Pure: JSON-able dicts in, a verdict out. docs/FORMAT.md §9 specifies the two bundle types.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from custody.core import entry as entries
from custody.core import merkle, note
from custody.core.custodians import Custodian, archive_key_for
from custody.errors import VerificationFailed

INCLUSION = "custody/inclusion-proof/v1"
CONSISTENCY = "custody/consistency-proof/v1"


def archive_verifier(origin: str, archive_public_key: bytes) -> note.VerifierKey:
    """The C2SP verifier key of an archive's checkpoints: its origin is the key name."""
    return note.make_verifier(origin, archive_public_key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationFailed([f"proof field {what} is not a base64 string"])
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise VerificationFailed([f"proof field {what} is not valid base64"]) from None


def inclusion_bundle(
    checkpoint_note: str, seq: int, body: bytes, signature: bytes, proof: list[bytes]
) -> dict[str, Any]:
    return {
        "type": INCLUSION,
        "checkpoint": checkpoint_note,
        "leaf_index": seq,
        "entry": _b64(body),
        "entry_signature": _b64(signature),
        "proof": [_b64(h) for h in proof],
    }


def consistency_bundle(old_note: str, new_note: str, proof: list[bytes]) -> dict[str, Any]:
    return {
        "type": CONSISTENCY,
        "old_checkpoint": old_note,
        "new_checkpoint": new_note,
        "proof": [_b64(h) for h in proof],
    }


@dataclass(frozen=True, slots=True)
class ProofVerdict:
    """What a verified bundle proves: an entry is in (or an old tree is a prefix of) a tree."""

    checkpoint: note.Checkpoint
    entry: entries.Entry | None = None
    old_checkpoint: note.Checkpoint | None = None


def open_with_key_chain(text: str, origin: str, keys: list[Custodian]) -> note.Checkpoint:
    """A checkpoint signed by the archive key in force at its size (the key chain of `init` and
    `archive-key-rotate` entries, docs/KEYS.md), or VerificationFailed."""
    verifiers = {k.key_id: archive_verifier(origin, k.public_key) for k in keys}
    try:
        checkpoint, opened = note.open_checkpoint(text, list(verifiers.values()))
    except note.NoteError as exc:
        raise VerificationFailed([f"checkpoint: {exc.message}"]) from None
    if checkpoint.origin != origin:
        raise VerificationFailed([f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}"])
    expected = archive_key_for(keys, checkpoint.size)
    signers = {s.key_id for s in opened.verified}
    if expected is not None and verifiers[expected.key_id].key_id not in signers:
        raise VerificationFailed([
            f"checkpoint of size {checkpoint.size} is not signed by archive key "
            f"{expected.key_id}, the one in force at that size (a retired archive key signs "
            "only trees that do not hold its rotation)"])
    return checkpoint


def open_archive_checkpoint(text: str, verifier: note.VerifierKey) -> note.Checkpoint:
    """A checkpoint whose signature by the archive key verifies, or VerificationFailed."""
    try:
        checkpoint, _ = note.open_checkpoint(text, [verifier])
    except note.NoteError as exc:
        raise VerificationFailed([f"checkpoint: {exc.message}"]) from None
    if checkpoint.origin != verifier.name:
        raise VerificationFailed(
            [f"checkpoint is for log {checkpoint.origin!r}, not {verifier.name!r}"]
        )
    return checkpoint


def proof_hashes(bundle: dict[str, Any]) -> list[bytes]:
    """The bundle's proof path, decoded (VerificationFailed if it is not base64)."""
    return [_unb64(h, "proof") for h in bundle.get("proof") or []]


def verify_bundle(bundle: Any, verifier: note.VerifierKey) -> ProofVerdict:
    """Verify an inclusion or consistency bundle against the archive's verifier key."""
    if not isinstance(bundle, dict):
        raise VerificationFailed(["proof is not a JSON object"])
    kind = bundle.get("type")
    proof = [_unb64(h, "proof") for h in bundle.get("proof") or []]
    try:
        if kind == INCLUSION:
            return _verify_inclusion(bundle, proof, verifier)
        if kind == CONSISTENCY:
            return _verify_consistency(bundle, proof, verifier)
    except merkle.ProofError as exc:
        raise VerificationFailed([f"proof does not verify: {exc.message}"]) from None
    raise VerificationFailed([f"unknown proof type {kind!r}"])


def _verify_inclusion(
    bundle: dict[str, Any], proof: list[bytes], verifier: note.VerifierKey
) -> ProofVerdict:
    checkpoint = open_archive_checkpoint(str(bundle.get("checkpoint")), verifier)
    return verify_inclusion_in(bundle, proof, checkpoint)


def verify_inclusion_in(
    bundle: dict[str, Any], proof: list[bytes], checkpoint: note.Checkpoint
) -> ProofVerdict:
    """The Merkle part of an inclusion bundle, against a checkpoint whose signature the caller
    has already checked (a report's custodian-signed tree head, docs/REPORTS.md)."""
    body = _unb64(bundle.get("entry"), "entry")
    index = bundle.get("leaf_index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise VerificationFailed(["proof leaf_index is not an integer"])
    try:
        entry = entries.parse(body)
    except entries.MalformedEntry as exc:
        raise VerificationFailed([f"proof entry is malformed: {exc}"]) from None
    if entry.seq != index:
        raise VerificationFailed([f"entry says it is entry {entry.seq}, proof says {index}"])
    if entry.log != checkpoint.origin:
        raise VerificationFailed([f"entry belongs to log {entry.log!r}"])
    merkle.verify_inclusion(
        entries.leaf_hash(body), index, checkpoint.size, proof, checkpoint.root_hash
    )
    return ProofVerdict(checkpoint=checkpoint, entry=entry)


def _verify_consistency(
    bundle: dict[str, Any], proof: list[bytes], verifier: note.VerifierKey
) -> ProofVerdict:
    old = open_archive_checkpoint(str(bundle.get("old_checkpoint")), verifier)
    new = open_archive_checkpoint(str(bundle.get("new_checkpoint")), verifier)
    if old.size > new.size:
        raise VerificationFailed(
            [f"old checkpoint ({old.size}) is larger than the new one ({new.size}): the log shrank"]
        )
    merkle.verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    return ProofVerdict(checkpoint=new, old_checkpoint=old)
