"""Ledger entries: the record of one event (ingest, sighting, enrolment, …), pure.

An entry is an RFC 8785 canonical JSON object; its leaf hash is RFC 9162's SHA-256(0x00 || bytes).
Format 1 entries are signed whole by their actor, `seq` and `prev` included: every entry a
custodian makes with their key at hand. Format 2 entries embed a custodian's signed *statement*
(actor, action, item, details, their time, a nonce), which names nothing the archive assigns, and
chain it (seq, prev, the archive's time): a statement signed on a field device, far from the
archive's write lock. A log mixes both in any order. docs/FORMAT.md §5 specifies both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from custody.core import canonical
from custody.core.signing import SigningKey, verify_signature

ENTRY_VERSION = 1
STATEMENT_ENTRY_VERSION = 2  # an entry chaining a signed statement (docs/FORMAT.md §5.8)
STATEMENT_VERSION = 1
# Signature input = tag || entry bytes: an entry signature can never be replayed as any other
# signature custody makes (checkpoints are signed-notes, with their own framing).
SIGNATURE_TAG = b"custody:entry:v1\x00"
# A statement's signature input: tag || statement bytes; its id: SHA-256(id tag || same bytes).
STATEMENT_TAG = b"custody:statement:v1\x00"
STATEMENT_ID_TAG = b"custody:statement-id:v1\x00"
LEAF_PREFIX = b"\x00"  # RFC 9162 §2.1.1: leaf hashes are domain-separated from interior nodes

FIELDS = ("v", "log", "seq", "time", "actor", "action", "item", "details", "prev")
ENTRY_FIELDS_2 = ("v", "log", "seq", "time", "prev", "statement")
STATEMENT_FIELDS = ("v", "log", "actor", "action", "item", "details", "time", "nonce")
NONCE_HEX = 32  # 16 random bytes, hex


class MalformedEntry(ValueError):
    """Entry bytes that do not hold a well-formed entry."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger event. `prev` is the leaf hash (hex) of entry seq-1, None for seq 0. `time` is
    when the archive appended it; in a format 2 entry `claimed_time` is the time the custodian's
    statement gives and `statement_id` identifies that statement (format 1: both None)."""

    log: str
    seq: int
    time: str
    actor: str
    action: str
    item: str | None
    details: dict[str, Any]
    prev: str | None
    version: int = ENTRY_VERSION
    claimed_time: str | None = None
    statement_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A format 1 entry's signed members (format 2 entries are written by `chain`)."""
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
    """A format 1 entry, signed whole: what every local append writes (format 2 is only for
    statements signed elsewhere, `chain`)."""
    if entry.actor != key.key_id:
        raise ValueError("an entry must be signed by its actor")
    body = entry.encode()
    return SignedEntry(body=body, signature=key.sign(SIGNATURE_TAG + body))


def signature_valid(signed: SignedEntry, public_key: bytes) -> bool:
    """The entry's signature checks with `public_key`: over the whole entry (format 1) or over
    the statement it embeds (format 2)."""
    return verify_signature(public_key, signed_message(signed.body), signed.signature)


def signed_message(body: bytes) -> bytes:
    """What an entry's signature signs. A canonical format 1 entry starts with its first member,
    `action`; a canonical format 2 entry's members are log, prev, seq, statement, time, v, so its
    statement's bytes stand between `"statement":` and the last `,"time":` (no string holds an
    unescaped quote). Anything else is parsed, and read as format 2 when it says so."""
    if body.startswith(b'{"log":') and body.endswith(b',"v":2}'):
        start, end = body.find(b'"statement":'), body.rfind(b',"time":')
        if 0 < start < end:
            return STATEMENT_TAG + body[start + len(b'"statement":'):end]
    if not body.startswith(b'{"action":'):
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and value.get("v") == STATEMENT_ENTRY_VERSION \
                and isinstance(value.get("statement"), dict):
            try:
                return STATEMENT_TAG + canonical.encode(value["statement"])
            except ValueError:
                pass
    return SIGNATURE_TAG + body


# Statements (format 2) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """What a custodian attests, before any archive has placed it: nothing here is assigned by
    the archive, so it can be signed on a field device and appended later."""

    log: str
    actor: str
    action: str
    item: str | None
    details: dict[str, Any]
    time: str
    nonce: str

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATEMENT_VERSION,
            "log": self.log,
            "actor": self.actor,
            "action": self.action,
            "item": self.item,
            "details": self.details,
            "time": self.time,
            "nonce": self.nonce,
        }


@dataclass(frozen=True, slots=True)
class SignedStatement:
    """A statement's canonical bytes and its actor's signature, as sent to the archive."""

    body: bytes
    signature: bytes

    @property
    def statement_id(self) -> str:
        return statement_id(self.body)

    def statement(self) -> Statement:
        return parse_statement(self.body)

    def signature_valid(self, public_key: bytes) -> bool:
        return verify_signature(public_key, STATEMENT_TAG + self.body, self.signature)


def statement_id(body: bytes) -> str:
    """The statement's id: hex SHA-256 of a tag and its bytes. An archive appends it once."""
    return hashlib.sha256(STATEMENT_ID_TAG + body).hexdigest()


def sign_statement(statement: Statement, key: SigningKey) -> SignedStatement:
    if statement.actor != key.key_id:
        raise ValueError("a statement must be signed by its actor")
    body = canonical.encode(statement.to_json())
    return SignedStatement(body=body, signature=key.sign(STATEMENT_TAG + body))


def parse_statement(body: bytes) -> Statement:
    """Parse and check statement bytes (canonical form, members, types)."""
    try:
        value = canonical.decode(body)
    except canonical.NotCanonical as exc:
        raise MalformedEntry(f"statement: {exc}") from None
    return _statement_shaped(value)


def chain(signed: SignedStatement, *, seq: int, time: str, prev: str | None,
          statement: Statement | None = None) -> SignedEntry:
    """The format 2 entry placing a signed statement at `seq` of its log, after `prev`, at the
    archive's `time`; the statement's signature stays the entry's signature. `statement`: the
    statement already parsed from `signed.body` (or made and signed by the caller)."""
    statement = statement or parse_statement(signed.body)
    body = canonical.encode({
        "v": STATEMENT_ENTRY_VERSION,
        "log": statement.log,
        "seq": seq,
        "time": time,
        "prev": prev,
        "statement": statement.to_json(),
    })
    return SignedEntry(body=body, signature=signed.signature)


def statement_of(signed: SignedEntry) -> SignedStatement | None:
    """The signed statement a format 2 entry embeds (None for a format 1 entry)."""
    e = parse(signed.body)
    if e.version != STATEMENT_ENTRY_VERSION:
        return None
    return SignedStatement(signed_message(signed.body)[len(STATEMENT_TAG):], signed.signature)


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


def shaped(value: Any) -> Entry:
    """The Entry a parsed value holds, after `parse`'s checks of members and types (not of the
    canonical form: the caller has made sure of it, as custody/search/fastparse.py does)."""
    return _shaped(value)


def _shaped(value: Any) -> Entry:
    if isinstance(value, dict) and value.get("v") == STATEMENT_ENTRY_VERSION:
        return _statement_entry(value)
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


def _statement_entry(value: dict[str, Any]) -> Entry:
    if set(value) != set(ENTRY_FIELDS_2):
        raise MalformedEntry("entry does not have exactly the fields " + ", ".join(ENTRY_FIELDS_2))
    checks = [
        isinstance(value["log"], str),
        isinstance(value["seq"], int) and not isinstance(value["seq"], bool) and value["seq"] >= 0,
        isinstance(value["time"], str),
        value["prev"] is None or isinstance(value["prev"], str),
    ]
    if not all(checks):
        raise MalformedEntry("entry field of the wrong type")
    s = _statement_shaped(value["statement"])
    if s.log != value["log"]:
        raise MalformedEntry("its statement is for another log")
    try:
        sid = statement_id(canonical.encode(value["statement"]))
    except ValueError as exc:
        raise MalformedEntry(str(exc)) from None
    return Entry(
        log=value["log"], seq=value["seq"], time=value["time"], actor=s.actor, action=s.action,
        item=s.item, details=s.details, prev=value["prev"], version=STATEMENT_ENTRY_VERSION,
        claimed_time=s.time, statement_id=sid,
    )


def _statement_shaped(value: Any) -> Statement:
    if not isinstance(value, dict) or set(value) != set(STATEMENT_FIELDS):
        raise MalformedEntry("statement does not have exactly the fields "
                             + ", ".join(STATEMENT_FIELDS))
    if value["v"] != STATEMENT_VERSION:
        raise MalformedEntry(f"unknown statement version {value['v']!r}")
    nonce = value["nonce"]
    checks = [
        isinstance(value["log"], str),
        isinstance(value["actor"], str),
        isinstance(value["action"], str) and value["action"] != "",
        value["item"] is None or isinstance(value["item"], str),
        isinstance(value["details"], dict),
        isinstance(value["time"], str),
        isinstance(nonce, str) and len(nonce) == NONCE_HEX
        and all(c in "0123456789abcdef" for c in nonce),
    ]
    if not all(checks):
        raise MalformedEntry("statement field of the wrong type")
    return Statement(log=value["log"], actor=value["actor"], action=value["action"],
                     item=value["item"], details=value["details"], time=value["time"],
                     nonce=nonce)
