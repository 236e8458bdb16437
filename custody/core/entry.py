"""Ledger entries: the signed record of one event (ingest, sighting, enrolment, …), pure.

An entry is an RFC 8785 canonical JSON object; its leaf hash is RFC 9162's SHA-256(0x00 || bytes);
its signature is Ed25519 over a domain tag and the same bytes. docs/FORMAT.md specifies both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from custody.core import canonical
from custody.core.signing import SigningKey, verify_signature

ENTRY_VERSION = 1
# Signature input = tag || entry bytes: an entry signature can never be replayed as any other
# signature custody makes (checkpoints are signed-notes, with their own framing).
SIGNATURE_TAG = b"custody:entry:v1\x00"
LEAF_PREFIX = b"\x00"  # RFC 9162 §2.1.1: leaf hashes are domain-separated from interior nodes

FIELDS = ("v", "log", "seq", "time", "actor", "action", "item", "details", "prev")


class MalformedEntry(ValueError):
    """Entry bytes that do not hold a well-formed entry."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger event, as signed. `prev` is the leaf hash (hex) of entry seq-1, None for seq 0."""

    log: str
    seq: int
    time: str
    actor: str
    action: str
    item: str | None
    details: dict[str, Any]
    prev: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": ENTRY_VERSION,
            "log": self.log,
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "item": self.item,
            "details": self.details,
            "prev": self.prev,
        }

    def encode(self) -> bytes:
        return canonical.encode(self.to_json())


@dataclass(frozen=True, slots=True)
class SignedEntry:
    """An entry's canonical bytes and its signature, as stored and exported."""

    body: bytes
    signature: bytes

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.body)

    def entry(self) -> Entry:
        return parse(self.body)


def leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + body).digest()


def sign(entry: Entry, key: SigningKey) -> SignedEntry:
    if entry.actor != key.key_id:
        raise ValueError("an entry must be signed by its actor")
    body = entry.encode()
    return SignedEntry(body=body, signature=key.sign(SIGNATURE_TAG + body))


def signature_valid(signed: SignedEntry, public_key: bytes) -> bool:
    return verify_signature(public_key, SIGNATURE_TAG + signed.body, signed.signature)


def parse(body: bytes) -> Entry:
    """Parse and check the shape of entry bytes (canonical form, fields, types)."""
    try:
        value = canonical.decode(body)
    except canonical.NotCanonical as exc:
        raise MalformedEntry(str(exc)) from None
    return _shaped(value)


def parse_leaving_form(body: bytes) -> Entry:
    """`parse` without its canonical-form check, which the caller makes itself (`form_problem`),
    elsewhere: verify re-encodes in its workers while one process replays the log. Bytes that are
    not JSON (or nest too deeply for the parser) are MalformedEntry here too; an entry that passes
    this and not `form_problem` is not canonical, and `parse` would refuse it."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise MalformedEntry(f"not JSON: {exc}") from None
    return _shaped(value)


def form_problem(body: bytes) -> str | None:
    """Why `body` is not RFC 8785 canonical JSON (what `parse` would say), or None."""
    try:
        canonical.decode(body)
    except canonical.NotCanonical as exc:
        return str(exc)
    return None


def _shaped(value: Any) -> Entry:
    if not isinstance(value, dict) or set(value) != set(FIELDS):
        raise MalformedEntry("entry does not have exactly the fields " + ", ".join(FIELDS))
    if value["v"] != ENTRY_VERSION:
        raise MalformedEntry(f"unknown entry version {value['v']!r}")
    checks = [
        isinstance(value["log"], str),
        isinstance(value["seq"], int) and not isinstance(value["seq"], bool) and value["seq"] >= 0,
        isinstance(value["time"], str),
        isinstance(value["actor"], str),
        isinstance(value["action"], str) and value["action"] != "",
        value["item"] is None or isinstance(value["item"], str),
        isinstance(value["details"], dict),
        value["prev"] is None or isinstance(value["prev"], str),
    ]
    if not all(checks):
        raise MalformedEntry("entry field of the wrong type")
    return Entry(
        log=value["log"],
        seq=value["seq"],
        time=value["time"],
        actor=value["actor"],
        action=value["action"],
        item=value["item"],
        details=value["details"],
        prev=value["prev"],
    )
