"""Signed checkpoints of the ledger, and the proofs against them.

The archive key signs C2SP tlog-checkpoints (origin, tree size, RFC 9162 root) as signed-notes;
every checkpoint issued is kept, so verify can hold today's tree to everything it ever signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from custody import merkle, note, proofs
from custody.archive import Archive, utc_now
from custody.errors import NotFound, UsageError
from custody.signing import SigningKey
from store.ledger import CheckpointRow


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
            "new": self.new,
            "note": self.row.note,
            "verifier_key": str(verifier),
        }


def verifier(archive: Archive) -> note.VerifierKey:
    return proofs.archive_verifier(archive.config.origin, archive.config.archive_key.raw)


def issue(archive: Archive, archive_key: SigningKey) -> Issued:
    """Sign a checkpoint of the whole log, unless the latest kept one already covers it."""
    if archive_key.public.raw != archive.config.archive_key.raw:
        raise UsageError("checkpoints must be signed by the archive key")
    ledger = archive.ledger
    with ledger.writing() as w:  # holds the write lock: the size cannot move under us
        size = w.next_seq
        latest = w.latest_checkpoint()
        if latest is not None and latest.size == size:
            return Issued(latest, note.parse_checkpoint(_text(latest.note)), new=False)
        root = merkle.root_hash(size, w.get_node)
        body = note.format_checkpoint(archive.config.origin, size, root)
        signed = note.sign_note(body, archive.config.origin, archive_key)
        row = w.put_checkpoint(size, signed, utc_now())
    return Issued(row, note.parse_checkpoint(body), new=True)


def _text(signed_note: str) -> str:
    return signed_note.split("\n\n", 1)[0] + "\n"


def latest(archive: Archive) -> CheckpointRow:
    kept = archive.ledger.checkpoints()
    if not kept:
        raise NotFound("this archive has issued no checkpoint yet",
                       hint="run 'custody checkpoint'")
    return kept[-1]


def covering(archive: Archive, seq: int) -> CheckpointRow:
    """The latest kept checkpoint whose tree holds entry `seq`."""
    row = latest(archive)
    if row.size <= seq:
        raise NotFound(f"no checkpoint covers entry {seq} yet", hint="run 'custody checkpoint'")
    return row


def inclusion(archive: Archive, seq: int, checkpoint_note: str | None = None) -> dict[str, Any]:
    """An inclusion bundle for entry `seq` against a checkpoint (given, or the latest covering)."""
    v = verifier(archive)
    if checkpoint_note is None:
        checkpoint_note = covering(archive, seq).note
    cp = proofs.open_archive_checkpoint(checkpoint_note, v)
    if cp.size > archive.ledger.size():
        raise UsageError(f"the checkpoint is of size {cp.size}, larger than this log "
                         f"({archive.ledger.size()} entries)")
    if seq >= cp.size:
        raise UsageError(f"entry {seq} is not in a checkpoint of size {cp.size}")
    row = archive.ledger.row(seq)
    if row is None:
        raise NotFound(f"no entry {seq} in the ledger")
    path = merkle.inclusion_proof(seq, cp.size, archive.ledger.get_node)
    return proofs.inclusion_bundle(checkpoint_note, seq, row.body, row.signature, path)


def consistency(archive: Archive, old_note: str, new_note: str | None = None) -> dict[str, Any]:
    """A consistency bundle from an old checkpoint to a newer one (or the latest kept)."""
    v = verifier(archive)
    old = proofs.open_archive_checkpoint(old_note, v)
    if new_note is None:
        new_note = latest(archive).note
    new = proofs.open_archive_checkpoint(new_note, v)
    if old.size > new.size:
        raise UsageError(f"--from checkpoint ({old.size}) is larger than --to ({new.size})")
    if new.size > archive.ledger.size():
        raise UsageError(f"the checkpoint is of size {new.size}, larger than this log")
    path = ([] if old.size == new.size
            else merkle.consistency_proof(old.size, new.size, archive.ledger.get_node))
    return proofs.consistency_bundle(old_note, new_note, path)
