"""Which entry fields a sealed archive keeps secret, and how they leave and rejoin `details`.

Pure (docs/FORMAT.md §12.2): the sensitive members of an entry's details are split out into one
JSON object (sealed by custody/ops/encryption.py into `details.sealed`) and merged back on reading.
"""

from __future__ import annotations

from typing import Any

from custody.core import canonical

SCHEME = "age-v1-x25519"
SEALED = "sealed"  # the details member holding base64 of the age file of the secret members
CIPHERTEXT = "ciphertext"  # an item's first record: {"sha256", "size"} of its stored age file

SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "ingest": ("note", "source"),
    "sighting": ("note", "source"),
    "access": ("purpose", "destination"),
    "note": ("text",),
    # why custody was offered, and what a refused attempt said it was for (issue 19 item 3)
    "transfer-offer": ("purpose",),
    "refused": ("purpose",),
}


def split(action: str, details: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    """(the details without their secret members, those members as canonical JSON bytes), or
    (details, None) when the action has nothing secret present."""
    names = [n for n in SECRET_FIELDS.get(action, ()) if n in details]
    if not names:
        return details, None
    clear = {k: v for k, v in details.items() if k not in names}
    return clear, canonical.encode({n: details[n] for n in names})


def merge(details: dict[str, Any], secret: bytes) -> dict[str, Any]:
    """The details as signed, with the opened secret members back in place of `sealed`."""
    opened = canonical.decode(secret)
    if not isinstance(opened, dict):
        raise ValueError("sealed fields are not a JSON object")
    return {**{k: v for k, v in details.items() if k != SEALED}, **opened}
