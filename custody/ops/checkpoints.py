"""Signed checkpoints of the ledger, and the proofs against them.

The archive key signs C2SP tlog-checkpoints (origin, tree size, RFC 9162 root) as signed-notes;
every checkpoint issued is kept, so verify can hold today's tree to everything it ever signed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from custody.core import entry as entries
from custody.core import merkle, note, proofs
from custody.core.signing import SigningKey
from custody.errors import CustodyError, NotFound, UsageError, VerificationFailed
from custody.ops.archive import Archive, registry_of, utc_now
from store.ports import CheckpointRow

# A kept checkpoint's `created` column is the issuing machine's clock, outside the signed note.
CREATED_BASIS = "unsigned: the archive's local clock"


@dataclass(frozen=True, slots=True)
class Issued:
    row: CheckpointRow
    checkpoint: note.Checkpoint
    new: bool  # False when the latest kept checkpoint already covered the whole log

    def to_json(self, verifier: note.VerifierKey) -> dict[str, Any]:
        return {
            "id": self.row.id,
            "size": self.checkpoint.size,
            "root_hash": self.checkpoint.root_hash.hex(),
            "created": self.row.created,
            "created_basis": CREATED_BASIS,
            "new": self.new,
            "note": self.row.note,
            "verifier_key": str(verifier),
        }


def verifier(archive: Archive) -> note.VerifierKey:
    """The verifier key of the archive key in force (entry 0's until a rotation)."""
    return proofs.archive_verifier(archive.config.origin, archive.current_archive_key()[0].raw)


def open_kept(archive: Archive, checkpoint_note: str) -> note.Checkpoint:
    """A checkpoint of this log signed by the archive key in force at its size (docs/KEYS.md)."""
    keys = registry_of(archive.ledger).archive_keys
    return proofs.open_with_key_chain(checkpoint_note, archive.config.origin, keys)


def issue(archive: Archive, archive_key: SigningKey) -> Issued:
    """Sign a checkpoint of the whole log, unless the latest kept one already covers it."""
    with archive.writing() as w:  # holds the write lock: the size cannot move under us
        size = w.next_seq
        in_force = registry_of(w).archive_key_for(size)
        if in_force is not None and archive_key.public.raw != in_force.public_key:
            raise UsageError("checkpoints must be signed by the archive key in force")
        latest = w.latest_checkpoint()
        if latest is not None and latest.size == size:
            return Issued(latest, note.parse_checkpoint(note.split_note(latest.note)[0]), new=False)
        root = merkle.root_hash(size, w.get_node)
        body = note.format_checkpoint(archive.config.origin, size, root)
        signed = note.sign_note(body, archive.config.origin, archive_key)
        row = w.put_checkpoint(size, signed, utc_now())
    return Issued(row, note.parse_checkpoint(body), new=True)


def latest(archive: Archive) -> CheckpointRow:
    row = archive.ledger.latest_checkpoint()
    if row is None:
        raise NotFound("this archive has issued no checkpoint yet", hint="run 'custody checkpoint'")
    return row


def covering(archive: Archive, seq: int) -> CheckpointRow:
    """The latest kept checkpoint whose tree holds entry `seq`."""
    row = latest(archive)
    if row.size <= seq:
        raise NotFound(f"no checkpoint covers entry {seq} yet", hint="run 'custody checkpoint'")
    return row


def inclusion(archive: Archive, seq: int, checkpoint_note: str | None = None) -> dict[str, Any]:
    """An inclusion bundle for entry `seq` against a checkpoint (given, or the latest covering)."""
    if checkpoint_note is None:
        checkpoint_note = covering(archive, seq).note
    cp = open_kept(archive, checkpoint_note)
    if cp.size > archive.ledger.size():
        raise UsageError(
            f"the checkpoint is of size {cp.size}, larger than this log "
            f"({archive.ledger.size()} entries)"
        )
    if seq >= cp.size:
        raise UsageError(f"entry {seq} is not in a checkpoint of size {cp.size}")
    row = archive.ledger.row(seq)
    if row is None:
        raise NotFound(f"no entry {seq} in the ledger")
    path = merkle.inclusion_proof(seq, cp.size, merkle.prefetched(
        archive.ledger.get_nodes(merkle.inclusion_proof_nodes(seq, cp.size)),
        archive.ledger.get_node))
    try:  # a proof is only handed out if it holds: stored nodes can be damaged or edited
        merkle.verify_inclusion(entries.leaf_hash(row.body), seq, cp.size, path, cp.root_hash)
    except merkle.ProofError as exc:
        raise VerificationFailed([_BAD_NODES.format(what=f"entry {seq}", why=exc)]) from None
    return proofs.inclusion_bundle(checkpoint_note, seq, row.body, row.signature, path)


@dataclass(frozen=True, slots=True)
class ItemProofs:
    """Inclusion bundles of every entry of one item, against one checkpoint."""

    item: str
    proofs: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {"item": self.item, "proofs": list(self.proofs)}


def prove_item(archive: Archive, item: str, checkpoint_note: str | None = None) -> ItemProofs:
    """Inclusion proofs of each of `item`'s entries (given checkpoint, or the latest covering)."""
    rows = archive.ledger.rows_for_item(item)
    return ItemProofs(item, tuple(inclusion(archive, r.seq, checkpoint_note) for r in rows))


def consistency(archive: Archive, old_note: str, new_note: str | None = None) -> dict[str, Any]:
    """A consistency bundle from an old checkpoint to a newer one (or the latest kept)."""
    old = open_kept(archive, old_note)
    if new_note is None:
        new_note = latest(archive).note
    new = open_kept(archive, new_note)
    if old.size > new.size:
        raise UsageError(f"--from checkpoint ({old.size}) is larger than --to ({new.size})")
    if new.size > archive.ledger.size():
        raise UsageError(f"the checkpoint is of size {new.size}, larger than this log")
    path = (
        []
        if old.size == new.size
        else merkle.consistency_proof(old.size, new.size, merkle.prefetched(
            archive.ledger.get_nodes(merkle.consistency_proof_nodes(old.size, new.size)),
            archive.ledger.get_node))
    )
    try:
        merkle.verify_consistency(old.size, new.size, path, old.root_hash, new.root_hash)
    except merkle.ProofError as exc:
        what = f"sizes {old.size} to {new.size}"
        raise VerificationFailed([_BAD_NODES.format(what=what, why=exc)]) from None
    return proofs.consistency_bundle(old_note, new_note, path)


_BAD_NODES = (
    "the proof for {what} made from the stored Merkle tree nodes does not hold ({why}): "
    "run 'custody verify'"
)


# Timestamps and cosignatures: kept beside the checkpoint they are about -------------------------


def add_timestamp(archive: Archive, row: CheckpointRow, url: str, certificates_pem: bytes) -> Any:
    """Ask the TSA at `url` to timestamp the signed checkpoint note; verify it; keep it."""
    from custody.ops import timestamp

    data = row.note.encode()
    ts = timestamp.request_timestamp(url, data)
    timestamp.verify_timestamp(ts.token, data, certificates_pem)  # refuse to keep what fails
    record = {
        "timestamp": timestamp.to_json(ts),
        "tsa_certificates": certificates_pem.decode("ascii", errors="strict"),
    }
    with archive.writing() as w:
        w.put_checkpoint_extra(row.id, "rfc3161", json.dumps(record, sort_keys=True), utc_now())
    return ts


@dataclass(frozen=True, slots=True)
class KeptCosignature:
    """A witness's cosignature kept beside checkpoint #`checkpoint`, made at `cosigned_at`
    (Unix time, as the cosignature states it)."""

    checkpoint: int
    cosigned_at: int
    witness_key: str

    def to_json(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "cosigned_at": self.cosigned_at,
                "witness_key": self.witness_key}


def add_cosignature(archive: Archive, cosigned_note: str, witness_key: str) -> KeptCosignature:
    """Keep a witness's cosignature of a checkpoint this archive issued."""
    from custody.ops import witness

    text, block = note.split_note(cosigned_note)
    row = next(
        (r for r in archive.ledger.checkpoints() if note.split_note(r.note)[0] == text), None
    )
    if row is None:
        raise NotFound("the cosigned checkpoint is not one this archive issued")
    try:
        opened = note.open_note(cosigned_note, [note.parse_verifier_key(witness_key)])
    except note.NoteError as exc:
        raise VerificationFailed([f"cosignature: {exc.message}"]) from None
    names = {(v.name, v.key_id) for v in opened.verified}
    lines = [
        ln
        for ln in block.splitlines(keepends=True)
        if any(ln.startswith(f"\u2014 {name} ") for name, _ in names)
    ]
    if not lines:
        raise VerificationFailed(["the note carries no cosignature by that witness key"])
    verified = witness.cosignature_valid(text, lines[0], witness_key)
    record = {"witness_key": witness_key, "line": lines[0]}
    with archive.writing() as w:
        w.put_checkpoint_extra(row.id, "cosignature", json.dumps(record, sort_keys=True), utc_now())
    return KeptCosignature(row.id, verified.timestamp or 0, witness_key)


def check_extras(archive: Archive, problems: list[str], notices: list[str]) -> None:
    """Verify every kept timestamp and cosignature against the checkpoint it is about."""
    kept = {r.id: r for r in archive.ledger.checkpoints()}
    for extra in archive.ledger.checkpoint_extras():
        # imported only when there is one to check: an RFC 3161 client and urllib are 40 ms of
        # every verify's start otherwise
        from custody.ops import timestamp, witness

        row = kept.get(extra.checkpoint_id)
        label = f"checkpoint #{extra.checkpoint_id}"
        if row is None:
            problems.append(f"{extra.kind} kept for {label}, which does not exist")
            continue
        try:
            record = json.loads(extra.data)
            if extra.kind == "rfc3161":
                ts = timestamp.from_json(record["timestamp"])
                ts = timestamp.verify_timestamp(
                    ts.token, row.note.encode(), record["tsa_certificates"].encode()
                )
                notices.append(
                    f"{label} timestamped at {ts.gen_time} by {ts.tsa} "
                    "(trust rests on that TSA's certificate)"
                )
            elif extra.kind == "cosignature":
                text = note.split_note(row.note)[0]
                v = witness.cosignature_valid(text, record["line"], record["witness_key"])
                notices.append(f"{label} cosigned by witness {v.name} at Unix time {v.timestamp}")
            else:
                problems.append(f"{label}: unknown kind of record {extra.kind!r}")
        except (KeyError, TypeError, ValueError, CustodyError) as exc:
            message = exc.message if isinstance(exc, CustodyError) else str(exc)
            problems.append(f"{label}: {extra.kind} does not verify: {message}")
