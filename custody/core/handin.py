"""A centre's receipt for an item handed in (`handed_in`, docs/FORMAT.md §5.4), pure: the
checkpoint the centre's archive key signed must verify with the centre key the entry names, be of
the centre's log, and cover the centre entry that received the item. A receipt that also carries
that centre entry and its inclusion proof (§12.4) proves the centre's signed log holds the item's
`received` statement; only such a receipt lets `custody travel empty --handed-in` remove content."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from custody.core import entry as entries
from custody.core import merkle, note

ENTRY = "entry"  # base64 of the centre's entry bytes (format 2, embedding our statement)
INCLUSION = "inclusion"  # its RFC 9162 inclusion proof to the checkpoint: base64 hashes


def receipt_problems(details: Mapping[str, object], item: str | None = None) -> list[str]:
    """What is wrong with a `handed_in` entry's receipt; empty when it holds."""
    centre, key, text, seq = (details.get(k) for k in ("centre", "centre_key", "checkpoint",
                                                       "seq"))
    if not isinstance(centre, str) or not isinstance(key, str) or not isinstance(text, str) \
            or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return ["a handed_in entry needs centre, centre_key, checkpoint (strings) and seq (an "
                "entry number)"]
    try:
        checkpoint, _ = note.open_checkpoint(text, [note.parse_verifier_key(key)])
    except note.NoteError as exc:
        return [f"its centre checkpoint does not verify with the centre key it names: "
                f"{exc.message}"]
    if checkpoint.origin != centre:
        return [f"its centre checkpoint is of log {checkpoint.origin!r}, not {centre!r}"]
    if checkpoint.size <= seq:
        return [f"its centre checkpoint (size {checkpoint.size}) does not cover centre entry "
                f"{seq}"]
    if ENTRY in details or INCLUSION in details:
        return _inclusion_problems(details, checkpoint, seq, item)
    return []


def covers(details: Mapping[str, object], item: str, centre_key: str) -> str | None:
    """None when this receipt proves that the centre whose verifier key is `centre_key` holds
    `item` (its checkpoint, signed by that key, includes the centre's `received` entry of the
    item, embedding the statement this archive's custodian signed); else why not."""
    if details.get("centre_key") != centre_key:
        return "its receipt is signed by another centre key"
    if ENTRY not in details or INCLUSION not in details:
        return "its receipt carries no centre entry and inclusion proof (sync again)"
    problems = receipt_problems(details, item)
    return problems[0] if problems else None


def _inclusion_problems(details: Mapping[str, object], checkpoint: note.Checkpoint, seq: int,
                        item: str | None) -> list[str]:
    body, proof = details.get(ENTRY), details.get(INCLUSION)
    if not isinstance(body, str) or not isinstance(proof, list) \
            or not all(isinstance(h, str) for h in proof):
        return ["its centre entry (base64) and inclusion proof (base64 hashes) are malformed"]
    try:
        raw = base64.b64decode(body, validate=True)
        hashes = [base64.b64decode(h, validate=True) for h in proof]
        centre_entry = entries.parse(raw)
    except (binascii.Error, ValueError, entries.MalformedEntry) as exc:
        return [f"its centre entry does not parse: {exc}"]
    try:
        merkle.verify_inclusion(entries.leaf_hash(raw), seq, checkpoint.size, hashes,
                                checkpoint.root_hash)
    except (merkle.ProofError, ValueError) as exc:
        return [f"its centre entry is not leaf {seq} of the centre's checkpoint: {exc}"]
    if centre_entry.seq != seq or centre_entry.log != checkpoint.origin \
            or centre_entry.action != "received" \
            or centre_entry.statement_id != details.get("statement_id") \
            or (item is not None and centre_entry.item != item):
        return [f"centre entry {seq} is not the received statement "
                f"{str(details.get('statement_id'))[:16]} of item {(item or '-')[:16]}"]
    return []
