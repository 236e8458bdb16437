"""A centre's receipt for an item handed in (`handed_in`, docs/FORMAT.md §5.4), pure: the
checkpoint the centre's archive key signed must verify with the centre key the entry names, be of
the centre's log, and cover the centre entry that received the item."""

from __future__ import annotations

from collections.abc import Mapping

from custody.core import note


def receipt_problems(details: Mapping[str, object]) -> list[str]:
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
    return []
