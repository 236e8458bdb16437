"""A witness: another party that cosigns an archive's checkpoints (C2SP tlog-cosignature), but
only after checking each new one is consistent with the last it cosigned, so a split view (two
incompatible histories shown to two reviewers) cannot both carry its cosignature.

The witness keeps its own state file: per log origin, the archive's verifier key (pinned at first
use) and the last checkpoint it cosigned.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from custody.core import canonical, merkle, note, proofs, tiles
from custody.core.signing import SigningKey
from custody.errors import CustodyError, UsageError, VerificationFailed

STATE_VERSION = 1


class WitnessRefused(VerificationFailed):
    """The witness will not cosign: the checkpoint is inconsistent with what it cosigned before."""


@dataclass(frozen=True, slots=True)
class Cosigned:
    line: str  # the cosignature line to append to the checkpoint note
    note: str  # the checkpoint note with the cosignature appended
    witness_key: str  # the witness's C2SP cosigner verifier key
    size: int


def witness_name(key: SigningKey) -> str:
    """A valid C2SP key name for the witness: `witness/<key id>` (names may not hold spaces)."""
    return f"witness/{key.key_id}"


def _load_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"version": STATE_VERSION, "logs": {}}
    try:
        state = canonical.load_json(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CustodyError(f"witness state {path} is unreadable: {exc}") from None
    if (not isinstance(state, dict) or state.get("version") != STATE_VERSION
            or not isinstance(state.get("logs"), dict)):
        raise CustodyError(f"witness state {path} is not a version {STATE_VERSION} state file")
    return state


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cosign(
    checkpoint_note: str,
    archive_vkey: str | None,
    key: SigningKey,
    state_path: Path,
    proof: dict[str, Any] | None,
    now: int,
) -> Cosigned:
    """Check `checkpoint_note` against the witness state, cosign it, and advance the state."""
    state = _load_state(state_path)
    origin = note.parse_checkpoint(note.split_note(checkpoint_note)[0]).origin
    known = state["logs"].get(origin)
    vkey_text = archive_vkey or (known or {}).get("verifier_key")
    if vkey_text is None:
        raise UsageError(f"first checkpoint of {origin} seen by this witness: pass --archive-key")
    if known is not None and archive_vkey is not None and archive_vkey != known["verifier_key"]:
        raise WitnessRefused(
            [f"the archive key for {origin} differs from the one this witness pinned"]
        )
    vkey = note.parse_verifier_key(vkey_text)
    new = proofs.open_archive_checkpoint(checkpoint_note, vkey)
    if known is not None:
        old = proofs.open_archive_checkpoint(known["note"], vkey)
        _check_consistent(old, known["note"], new, checkpoint_note, proof, vkey)
    name = witness_name(key)
    line = note.cosignature_line(new.body(), name, key, now)
    state["logs"][origin] = {"verifier_key": vkey_text, "note": checkpoint_note, "size": new.size}
    _save_state(state_path, state)
    return Cosigned(
        line=line,
        note=checkpoint_note + line,
        witness_key=note.cosigner_key(name, key.public.raw),
        size=new.size,
    )


def _check_consistent(
    old: note.Checkpoint,
    old_note: str,
    new: note.Checkpoint,
    new_note: str,
    proof: dict[str, Any] | None,
    vkey: note.VerifierKey,
) -> None:
    if new.size < old.size:
        raise WitnessRefused(
            [
                f"checkpoint of size {new.size} is older than the one already "
                f"cosigned ({old.size}): refusing to go back"
            ]
        )
    if new.size == old.size:
        if new.root_hash != old.root_hash:
            raise WitnessRefused(
                [
                    f"split view: a checkpoint of size {new.size} with a different "
                    "root than the one already cosigned"
                ]
            )
        return
    if proof is None:
        raise UsageError(
            f"a consistency proof from size {old.size} to {new.size} is needed "
            "(custody prove --from OLD --to NEW)"
        )
    verdict = proofs.verify_bundle(proof, vkey)
    if verdict.old_checkpoint is None or verdict.old_checkpoint != old or verdict.checkpoint != new:
        raise WitnessRefused(
            ["the consistency proof is not between the last cosigned checkpoint and this one"]
        )


class TileSource(Protocol):
    """A tlog-tiles log as a witness reads it (custody/service/tile_client.py over HTTP)."""

    def checkpoint(self) -> str: ...
    def tile(self, tile: tiles.Tile) -> bytes: ...


def cosign_from_log(
    log: TileSource, archive_vkey: str | None, key: SigningKey, state_path: Path, now: int
) -> Cosigned:
    """Cosign a tlog-tiles log's current checkpoint: the consistency proof from the last
    checkpoint this witness cosigned is computed from the log's hash tiles (fetched only after
    the new checkpoint's signature holds), then checked by `cosign` as any proof is."""
    text = log.checkpoint()
    origin = note.parse_checkpoint(note.split_note(text)[0]).origin
    known = _load_state(state_path)["logs"].get(origin)
    bundle = None
    if known is not None:
        vkey = note.parse_verifier_key(archive_vkey or known["verifier_key"])
        new = proofs.open_archive_checkpoint(text, vkey)
        old_size = int(known["size"])
        if 0 < old_size < new.size:
            wanted = merkle.consistency_proof_nodes(old_size, new.size)
            fetched = {t: log.tile(t) for t in tiles.tiles_for_nodes(wanted, new.size)}
            try:
                path = merkle.consistency_proof(
                    old_size, new.size, tiles.node_reader(new.size, fetched))
            except tiles.TileError as exc:
                raise WitnessRefused([f"the log's tiles are malformed: {exc.message}"]) from None
            bundle = proofs.consistency_bundle(known["note"], text, path)
    return cosign(text, archive_vkey, key, state_path, bundle, now)


def cosignature_valid(checkpoint_text: str, line: str, witness_key: str) -> note.VerifiedSignature:
    """Check a stored cosignature line over a checkpoint body; raises NoteError."""
    opened = note.open_note(checkpoint_text + "\n" + line, [note.parse_verifier_key(witness_key)])
    return opened.verified[0]
