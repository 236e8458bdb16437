"""C2SP signed notes, tlog checkpoints and Ed25519 cosignatures (c2sp.org/signed-note,
c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature): text and keys in, text and verdicts out.

A checkpoint body is `origin\\n<size>\\n<base64 root>\\n` plus optional extension lines. A signed
note is its text, a blank line, then signature lines `— <key name> base64(key id || signature)\\n`.
Two signature types are understood: 0x01 (Ed25519 over the note text) and 0x04 (Ed25519
cosignature/v1: a timestamped signature over `cosignature/v1\\ntime <t>\\n` || the checkpoint).
Key id = SHA-256(key name || 0x0A || type || public key)[:4]; verifier key =
`name+<hex key id>+base64(type || public key)`.

Opening follows golang.org/x/mod/sumdb/note `Open`, with stricter edges: base64 must be canonical
(so no two spellings of one signature exist), the note is capped at MAX_NOTE_BYTES, and every
signature line of a known key is verified (Go verifies only the first per key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from custody.core.signing import verify_signature
from custody.errors import EXIT_ERROR, EXIT_PROBLEM, CustodyError

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
_ALGORITHMS = {ALG_ED25519: "Ed25519", ALG_COSIGNATURE_V1: "Ed25519 cosignature/v1"}

EM_DASH = "\u2014"
SIGNATURE_PREFIX = EM_DASH + " "
KEY_ID_SIZE = 4
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
TIMESTAMP_SIZE = 8
HASH_SIZE = 32

MAX_SIGNATURES = 100  # as golang.org/x/mod/sumdb/note; the spec asks for at least 16
MAX_NOTE_BYTES = 1 << 20  # ours: a checkpoint is a few hundred bytes
MAX_TREE_SIZE = (1 << 64) - 1  # tree sizes are uint64 everywhere else (Go, RFC 9162)
MAX_TIMESTAMP = (1 << 63) - 1  # c2sp.org/tlog-cosignature

COSIGNATURE_HEADER = "cosignature/v1\n"

_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)")
_DIGITS = re.compile(r"[0-9]+")
_HEX_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(r"[\x00-\x1f]")  # any ASCII control character, newline included
_CONTROL_NOT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f]")


# ---------------------------------------------------------------------------------------------
# Errors


class NoteError(CustodyError, ValueError):
    """Base class: a note, checkpoint or key that cannot be trusted. `reason` is a stable slug."""

    exit_code = EXIT_PROBLEM

    def __init__(self, reason: str, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.reason = reason


class MalformedNote(NoteError):
    """The text is not a syntactically valid signed note."""


class MalformedCheckpoint(NoteError):
    """The note text is not a valid tlog checkpoint body."""


class BadVerifierKey(NoteError):
    """A verifier key string (`name+keyid+base64`) that cannot be used."""

    exit_code = EXIT_ERROR


class AmbiguousKey(NoteError):
    """Two different known keys share a name and key id, and a signature names them."""

    exit_code = EXIT_ERROR


class InvalidSignature(NoteError):
    """A signature line of a known key that does not verify: the note was altered or forged."""

    def __init__(self, name: str, key_id: bytes) -> None:
        super().__init__("invalid-signature", f"invalid signature for key {name}+{key_id.hex()}")
        self.name = name
        self.key_id = key_id


class UnverifiedNote(NoteError):
    """The note is well formed but carries no signature by any known key."""

    def __init__(self, unverified: tuple[SignatureLine, ...]) -> None:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in unverified) or "none"
        super().__init__(
            "no-known-signature",
            "note has no signature by a known key",
            hint=f"signatures present from unknown keys: {names}",
        )
        self.unverified = unverified


# ---------------------------------------------------------------------------------------------
# Types


class NoteSigner(Protocol):
    """What signing needs: custody.core.signing.SigningKey fits."""

    def sign(self, message: bytes) -> bytes: ...

    @property
    def public(self) -> _HasRaw: ...


class _HasRaw(Protocol):
    @property
    def raw(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: who (origin), how many leaves (size), and their RFC 9162 root."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The checkpoint as note text (what is signed)."""
        return format_checkpoint(self.origin, self.size, self.root_hash, self.extensions)


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A public key a note may be checked against: name, 4-byte key id, type and raw key."""

    name: str
    key_id: bytes
    public_key: bytes
    algorithm: int = ALG_ED25519

    def __str__(self) -> str:
        material = base64.b64encode(bytes([self.algorithm]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"


@dataclass(frozen=True, slots=True)
class SignatureLine:
    """One parsed signature line: key name, key id and the bytes after the key id."""

    name: str
    key_id: bytes
    signature: bytes

    def __str__(self) -> str:
        return _signature_line(self.name, self.key_id + self.signature)


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """A signature that verified under a known key; `timestamp` only for cosignatures."""

    name: str
    key_id: bytes
    algorithm: int
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """The result of `open_note`: the trusted text, who signed it, and what was ignored."""

    text: str
    verified: tuple[VerifiedSignature, ...]
    unverified: tuple[SignatureLine, ...]

    @property
    def verified_names(self) -> list[str]:
        return [s.name for s in self.verified]


# ---------------------------------------------------------------------------------------------
# Checkpoints


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Iterable[str] = ()) -> str:
    """The checkpoint body `origin\\nsize\\nbase64(root)\\n[extension\\n...]`."""
    extensions = tuple(extensions)
    if not origin:
        raise MalformedCheckpoint("empty-origin", "checkpoint origin is empty")
    _check_checkpoint_line(origin, "origin")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise MalformedCheckpoint("bad-size", f"checkpoint tree size {size!r} is out of range")
    if len(root) != HASH_SIZE:
        raise MalformedCheckpoint(
            "bad-root-length", f"checkpoint root hash is {len(root)} bytes, want {HASH_SIZE}"
        )
    for extension in extensions:
        if not extension:
            raise MalformedCheckpoint("empty-line", "checkpoint extension line is empty")
        _check_checkpoint_line(extension, "extension line")
    lines = [origin, str(size), base64.b64encode(root).decode(), *extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly; MalformedCheckpoint names the first problem found."""
    if not text.endswith("\n"):
        raise MalformedCheckpoint("no-final-newline", "checkpoint does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint(
            "too-few-lines", f"checkpoint has {len(lines)} lines, want at least 3"
        )
    for number, line in enumerate(lines, start=1):
        if not line:
            raise MalformedCheckpoint("empty-line", f"checkpoint line {number} is empty")
        _check_checkpoint_line(line, f"line {number}")
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        reason = "size-leading-zero" if _DIGITS.fullmatch(size_text) else "bad-size"
        raise MalformedCheckpoint(
            reason,
            f"checkpoint tree size {size_text!r} is not a decimal number without leading zeros",
        )
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise MalformedCheckpoint("bad-size", f"checkpoint tree size {size} is out of range")
    root = _strict_b64decode(root_text)
    if root is None:
        raise MalformedCheckpoint(
            "bad-root-base64", "checkpoint root hash is not canonical standard base64"
        )
    if len(root) != HASH_SIZE:
        raise MalformedCheckpoint(
            "bad-root-length", f"checkpoint root hash is {len(root)} bytes, want {HASH_SIZE}"
        )
    return Checkpoint(origin=origin, size=size, root_hash=root, extensions=tuple(extensions))


def _check_checkpoint_line(line: str, what: str) -> None:
    found = _CONTROL.search(line)
    if found:
        raise MalformedCheckpoint(
            "control-character", f"checkpoint {what} contains control character {found[0]!r}"
        )


# ---------------------------------------------------------------------------------------------
# Keys


def key_id(name: str, public_key: bytes, algorithm: int = ALG_ED25519) -> bytes:
    """SHA-256(name || 0x0A || algorithm || public key)[:4] (c2sp.org/signed-note)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([algorithm]) + public_key).digest()[
        :KEY_ID_SIZE
    ]


def verifier_key(name: str, public_key: bytes, algorithm: int = ALG_ED25519) -> str:
    """The verifier key string `name+hexkeyid+base64(algorithm || public key)`."""
    return str(make_verifier(name, public_key, algorithm))


def cosigner_key(name: str, public_key: bytes) -> str:
    """The verifier key string of an Ed25519 cosigner (type 0x04)."""
    return verifier_key(name, public_key, ALG_COSIGNATURE_V1)


def make_verifier(name: str, public_key: bytes, algorithm: int = ALG_ED25519) -> VerifierKey:
    """A VerifierKey from a name and a raw 32-byte Ed25519 public key."""
    if not is_valid_key_name(name):
        raise BadVerifierKey("bad-name", f"invalid key name {name!r}")
    if algorithm not in _ALGORITHMS:
        raise BadVerifierKey("unknown-algorithm", f"unsupported key type 0x{algorithm:02x}")
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise BadVerifierKey(
            "bad-key-length", f"public key is {len(public_key)} bytes, want {PUBLIC_KEY_SIZE}"
        )
    return VerifierKey(name, key_id(name, public_key, algorithm), bytes(public_key), algorithm)


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse `name+hexkeyid+base64(type || key)` (types 0x01 and 0x04); the key id must match."""
    name, _, rest = vkey.partition("+")
    id_hex, _, material = rest.partition("+")
    if not is_valid_key_name(name):
        raise BadVerifierKey("bad-name", "verifier key has an invalid key name")
    if not _HEX_KEY_ID.fullmatch(id_hex):
        raise BadVerifierKey("bad-key-id", "verifier key id is not 8 hex digits")
    raw = _strict_b64decode(material)
    if not raw:
        raise BadVerifierKey("bad-base64", "verifier key material is not canonical base64")
    algorithm, public_key = raw[0], raw[1:]
    if algorithm not in _ALGORITHMS:
        raise BadVerifierKey("unknown-algorithm", f"unsupported key type 0x{algorithm:02x}")
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise BadVerifierKey(
            "bad-key-length", f"public key is {len(public_key)} bytes, want {PUBLIC_KEY_SIZE}"
        )
    declared = bytes.fromhex(id_hex)
    if declared != key_id(name, public_key, algorithm):
        raise BadVerifierKey("key-id-mismatch", "verifier key id does not match its key")
    return VerifierKey(name, declared, public_key, algorithm)


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space, no '+', no control character (c2sp.org/signed-note)."""
    return bool(name) and not any(c.isspace() or c == "+" or c < " " for c in name)


# ---------------------------------------------------------------------------------------------
# Signing


def sign_note(text: str, name: str, signing_key: NoteSigner) -> str:
    """The note `text` signed (type 0x01) by `signing_key` under key name `name`."""
    _check_note_text(text)
    public_key = signing_key.public.raw
    verifier = make_verifier(name, public_key)
    signature = signing_key.sign(text.encode())
    return text + "\n" + _signature_line(name, verifier.key_id + signature)


def cosign(checkpoint: str, name: str, signing_key: NoteSigner, timestamp: int) -> str:
    """Add an Ed25519 cosignature/v1 (type 0x04) made at `timestamp` (Unix seconds).

    `checkpoint` is a bare checkpoint body (the result is body + blank line + the cosignature) or
    an already signed checkpoint note (the cosignature line is appended; existing signatures are
    kept, not checked). The caller supplies the time: this module has no clock.
    """
    if "\n\n" in checkpoint:
        text, existing = _split_note(checkpoint)
        _parse_signature_lines(existing)
    else:
        text, existing = checkpoint, ""
    line = cosignature_line(text, name, signing_key, timestamp)
    return text + "\n" + existing + line


def cosignature_line(text: str, name: str, signing_key: NoteSigner, timestamp: int) -> str:
    """The signature line of an Ed25519 cosignature/v1 over checkpoint body `text`."""
    parse_checkpoint(text)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError("cosignature timestamp must be an integer")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} is out of range")
    verifier = make_verifier(name, signing_key.public.raw, ALG_COSIGNATURE_V1)
    signature = signing_key.sign(cosigned_message(text, timestamp))
    payload = verifier.key_id + timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature
    return _signature_line(name, payload)


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What an Ed25519 cosignature/v1 signs: header, time line, then the checkpoint body."""
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{text}".encode()


def _signature_line(name: str, payload: bytes) -> str:
    return f"{SIGNATURE_PREFIX}{name} {base64.b64encode(payload).decode()}\n"


# ---------------------------------------------------------------------------------------------
# Opening


def open_note(note: str | bytes, known_verifiers: Iterable[VerifierKey | str]) -> OpenedNote:
    """Parse `note` and verify every signature line made by a known key.

    `known_verifiers` holds VerifierKey values or verifier key strings.

    Signatures by unknown keys (no known key with both that name and key id) are ignored and
    listed in `unverified`. Raises MalformedNote, InvalidSignature (a known key's signature fails:
    the whole note is rejected), AmbiguousKey, or UnverifiedNote (no known key signed it).
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise MalformedNote("too-large", f"note is larger than {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("not-utf8", "note is not valid UTF-8") from None
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedNote("not-utf8", "note is not valid UTF-8") from None
    if size > MAX_NOTE_BYTES:
        raise MalformedNote("too-large", f"note is larger than {MAX_NOTE_BYTES} bytes")
    text, signature_block = _split_note(note)
    lines = _parse_signature_lines(signature_block)

    if isinstance(known_verifiers, str):
        raise TypeError("known_verifiers is a collection of keys, not one key string")
    known: dict[tuple[str, bytes], set[VerifierKey]] = {}
    for verifier in known_verifiers:
        if isinstance(verifier, str):
            verifier = parse_verifier_key(verifier)
        known.setdefault((verifier.name, verifier.key_id), set()).add(verifier)

    message = text.encode()
    verified: list[VerifiedSignature] = []
    unverified: list[SignatureLine] = []
    seen: set[SignatureLine] = set()
    for line in lines:
        if line in seen:  # an identical line adds nothing
            continue
        seen.add(line)
        candidates = known.get((line.name, line.key_id))
        if not candidates:
            unverified.append(line)
            continue
        if len(candidates) > 1:
            raise AmbiguousKey("ambiguous-key", f"ambiguous key {line.name}+{line.key_id.hex()}")
        (verifier,) = candidates
        result = _verify_line(verifier, message, text, line)
        if result is None:
            raise InvalidSignature(line.name, line.key_id)
        if all(v.key_id != result.key_id or v.name != result.name for v in verified):
            verified.append(result)
    if not verified:
        raise UnverifiedNote(tuple(unverified))
    return OpenedNote(text=text, verified=tuple(verified), unverified=tuple(unverified))


def open_checkpoint(
    note: str | bytes, known_verifiers: Iterable[VerifierKey | str]
) -> tuple[Checkpoint, OpenedNote]:
    """`open_note`, then parse its text as a checkpoint."""
    opened = open_note(note, known_verifiers)
    return parse_checkpoint(opened.text), opened


def cosignature_timestamp(line: SignatureLine) -> int:
    """The timestamp carried by a cosignature/v1 line (not a verification)."""
    if len(line.signature) != TIMESTAMP_SIZE + SIGNATURE_SIZE:
        raise MalformedNote("not-cosignature", "signature is not an Ed25519 cosignature/v1")
    return int.from_bytes(line.signature[:TIMESTAMP_SIZE], "big")


def _verify_line(
    verifier: VerifierKey, message: bytes, text: str, line: SignatureLine
) -> VerifiedSignature | None:
    if verifier.algorithm == ALG_ED25519:
        if verify_signature(verifier.public_key, message, line.signature):
            return VerifiedSignature(line.name, line.key_id, ALG_ED25519)
        return None
    if verifier.algorithm == ALG_COSIGNATURE_V1:
        if len(line.signature) != TIMESTAMP_SIZE + SIGNATURE_SIZE:
            return None
        timestamp = int.from_bytes(line.signature[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            return None
        signed = cosigned_message(text, timestamp)
        if verify_signature(verifier.public_key, signed, line.signature[TIMESTAMP_SIZE:]):
            return VerifiedSignature(line.name, line.key_id, ALG_COSIGNATURE_V1, timestamp)
        return None
    return None  # pragma: no cover - VerifierKey construction admits no other algorithm


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNote("no-final-newline", "note text does not end with a newline")
    found = _CONTROL_NOT_NEWLINE.search(text)
    if found:
        raise MalformedNote(
            "control-character", f"note text contains control character {found[0]!r}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedNote("not-utf8", "note text is not valid UTF-8") from None


def split_note(note: str) -> tuple[str, str]:
    """A signed note's (text, signature block), checked for form but not for signatures."""
    return _split_note(note)


def _split_note(note: str) -> tuple[str, str]:
    """(text, signature block), split at the last blank line, after the character checks."""
    found = _CONTROL_NOT_NEWLINE.search(note)
    if found:
        raise MalformedNote("control-character", f"note contains control character {found[0]!r}")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNote("no-signatures", "note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNote(
            "bad-signature-block", "note signatures are missing or do not end with a newline"
        )
    return text, block


def _parse_signature_lines(block: str) -> list[SignatureLine]:
    raw_lines = block[:-1].split("\n")
    if len(raw_lines) > MAX_SIGNATURES:
        raise MalformedNote(
            "too-many-signatures", f"note has more than {MAX_SIGNATURES} signatures"
        )
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.startswith(SIGNATURE_PREFIX):
            raise MalformedNote(
                "bad-signature-line", f"signature line {number} does not start with '— '"
            )
        name, _, b64 = raw[len(SIGNATURE_PREFIX) :].partition(" ")
        if not is_valid_key_name(name):
            raise MalformedNote(
                "bad-signature-line", f"signature line {number} has an invalid key name"
            )
        payload = _strict_b64decode(b64)
        if payload is None or len(payload) <= KEY_ID_SIZE:
            raise MalformedNote(
                "bad-signature-line", f"signature line {number} has no valid base64 signature"
            )
        lines.append(SignatureLine(name, payload[:KEY_ID_SIZE], payload[KEY_ID_SIZE:]))
    return lines


def _strict_b64decode(text: str) -> bytes | None:
    """Standard padded base64, canonical only (no stray bits, no whitespace), else None."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw
