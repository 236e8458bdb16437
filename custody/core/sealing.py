"""Which entry fields a sealed archive keeps secret, and how they leave and rejoin `details`.

Pure (docs/FORMAT.md §12.2): the sensitive members of an entry's details are split out into one
JSON object (sealed by custody/ops/encryption.py into `details.sealed`) and merged back on reading.
"""

from __future__ import annotations

from typing import Any

from custody.core import canonical

SCHEME = "age-v1-x25519"
# the actions whose entry may start a content key epoch (§12.5): a revoke, and an admin's
# key-rotate after a loss (not one signed by the old key itself)
EPOCH_ACTIONS = ("revoke", "key-rotate")
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
    # an incident's place is a GPS position and its description names people and events; why an
    # item left a case, and what a derivative was made for, are the team's own words
    "incident": ("place", "description"),
    "case-remove": ("reason",),
    "derived": ("purpose",),
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


def epoch_started(details: dict[str, Any]) -> tuple[int, str] | None:
    """(number, recipient) of the content key epoch a `revoke` or `key-rotate` entry starts in a
    sealed archive (`details.sealing`, docs/FORMAT.md §12.5), or None when it starts none or is
    malformed."""
    found = details.get("sealing")
    if not isinstance(found, dict) or found.get("scheme") != SCHEME:
        return None
    number, recipient = found.get("epoch"), found.get("recipient")
    if isinstance(number, bool) or not isinstance(number, int) or not isinstance(recipient, str):
        return None
    return number, recipient


def epoch_problem(action: str, details: dict[str, Any], sealed: bool, known: list[str],
                  actor: str | None = None) -> str | None:
    """What is wrong with an entry's `details.sealing` (None: nothing, or it has none), given
    whether entry 0 sealed the archive, the recipients of the epochs so far and the entry's
    signer (§12.5)."""
    if action == "init" or "sealing" not in details:
        return None
    if action not in EPOCH_ACTIONS:
        return (f"a {action} entry may not start a content key epoch (only a revoke may, or an "
                "admin's key-rotate after a loss)")
    if action == "key-rotate" and actor == details.get("old_key_id"):
        return ("a key-rotate signed by the old key itself may not start a content key epoch "
                "(only an admin's rotation after a loss does)")
    if not sealed:
        return "starts a content key epoch in an archive entry 0 did not seal"
    started = epoch_started(details)
    if started is None:
        return ("its sealing is not {\"scheme\": \"" + SCHEME
                + "\", \"recipient\", \"epoch\"} with an integer epoch")
    number, recipient = started
    if number != len(known):
        return f"starts content key epoch {number}; the next epoch is {len(known)}"
    if not recipient.startswith("age1") or recipient in known:
        return f"names recipient {recipient[:24]!r}, not a new age X25519 recipient"
    return None
