"""Sealed archives (docs/FORMAT.md §12): the content key, wrapped per custodian, and sealing and
opening drafts, metadata documents and entry fields with age (pyrage).

Sealing needs only the archive's public recipient (signed in entry 0); opening needs a custodian's
key, which opens their wrapped copy of the content key. `lock` drops every plaintext left behind.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import pyrage

from custody.core import canonical, sealing
from custody.core import entry as entries
from custody.core.signing import PublicKey, SigningKey
from custody.errors import ArchiveError, CustodyError, NotPermitted
from store.durable import fsync_folder
from store.ports import Ledger, LedgerReads

AGE_MAGIC = b"age-encryption.org/v1\n"
AGE_ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"
CONTENT_KEYS = Path("keys") / "content"
FIRST_RECORDS = ("ingest", "received", "derived")


class SealedDraft(Protocol):
    """What `Sealer.seal` reads of a draft (custody.ops.archive.Draft)."""

    @property
    def action(self) -> str: ...
    @property
    def item(self) -> str | None: ...
    @property
    def details(self) -> dict[str, Any]: ...
    @property
    def metadata(self) -> bytes | None: ...


def new_content_key() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


def recipient_of(identity: pyrage.x25519.Identity) -> str:
    return str(identity.to_public())


def sealing_details(identity: pyrage.x25519.Identity) -> dict[str, str]:
    """What entry 0 signs (and custody.json repeats) of a sealed archive."""
    return {"scheme": sealing.SCHEME, "recipient": recipient_of(identity)}


def signed_recipient(ledger: LedgerReads | Ledger) -> str | None:
    """The content key's recipient entry 0 signed, or None for a clear archive."""
    row = ledger.row(0) if hasattr(ledger, "row") else None
    if row is None:
        return None
    try:
        found = entries.parse(row.body).details.get("sealing")
    except entries.MalformedEntry:
        return None
    if not isinstance(found, dict) or found.get("scheme") != sealing.SCHEME:
        return None
    return str(found.get("recipient"))


# Wrapped content keys ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Epoch:
    """A content key's period (docs/FORMAT.md §12.5): number 0 from entry 0, each next one from
    the `revoke` (or admin's `key-rotate` after a loss) whose `details.sealing` names its
    recipient."""

    number: int
    seq: int
    recipient: str


@dataclass(frozen=True, slots=True)
class ContentKeys:
    """The content keys a custodian's key opened, by epoch: they read what was sealed in those
    epochs (age tries each identity against a file's stanza)."""

    by_epoch: dict[int, pyrage.x25519.Identity]

    @property
    def identities(self) -> list[pyrage.x25519.Identity]:
        return [self.by_epoch[n] for n in sorted(self.by_epoch)]


def epochs(ledger: LedgerReads | Ledger, first: str | None = None) -> list[Epoch]:
    """The content key epochs the log signed, in order; empty for a clear archive. `first`:
    entry 0's recipient when the caller knows it (a write transaction reads no entry 0)."""
    first = first or signed_recipient(ledger)
    if first is None:
        return []
    found = [Epoch(0, 0, first)]
    for row in ledger.rows_with_action(*sealing.EPOCH_ACTIONS):  # in log order
        try:
            e = entries.parse(row.body)
        except entries.MalformedEntry:
            continue  # verify names it
        started = sealing.epoch_started(e.details)
        # the replay's own rule: an epoch out of order, or started by a key-rotate the old key
        # signed, is no epoch (verify names it)
        if started is not None and sealing.epoch_problem(
                e.action, e.details, True, [x.recipient for x in found], e.actor) is None:
            found.append(Epoch(started[0], row.seq, started[1]))
    return found


def wrapped_path(root: Path, key_id: str, epoch: int = 0) -> Path:
    """Epoch 0 where archives before epochs kept it; a later epoch in a folder of its own."""
    folder = root / CONTENT_KEYS if epoch == 0 else root / CONTENT_KEYS / str(epoch)
    return folder / f"{key_id}.age"


def wrap_for(root: Path, identity: pyrage.x25519.Identity, public: PublicKey,
             epoch: int = 0) -> Path:
    """Write the content key sealed to one custodian's Ed25519 key (age ssh-ed25519), 0600."""
    recipient = pyrage.ssh.Recipient.from_str(public.openssh_line().split(" ", 2)[0] + " "
                                              + public.openssh_line().split(" ", 2)[1])
    blob = pyrage.encrypt(str(identity).encode("ascii"), [recipient])
    path = wrapped_path(root, public.key_id, epoch)
    made = not path.parent.is_dir()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(blob)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    # the name and, for a new epoch, its folder must outlive a power cut before the entry that
    # names the recipient commits: otherwise later content is sealed to a key nobody holds
    fsync_folder(path.parent)
    if made:
        fsync_folder(path.parent.parent)
    return path


def wrap_all(root: Path, keys: ContentKeys, public: PublicKey) -> None:
    """Give a custodian (newly enrolled, or a rotated key) every content key `keys` holds."""
    for number, identity in sorted(keys.by_epoch.items()):
        wrap_for(root, identity, public, number)


def open_content_key(root: Path, recipient: str, key: SigningKey,
                     epoch: int = 0) -> pyrage.x25519.Identity:
    """The content key, opened with the acting custodian's key and checked against entry 0."""
    path = wrapped_path(root, key.key_id, epoch)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise NotPermitted(f"key {key.key_id} holds no content key of this sealed archive "
                           "(not a custodian here, or enrolled without one)") from None
    try:
        secret = pyrage.decrypt(blob, [key.age_identity()]).decode("ascii")
        identity = pyrage.x25519.Identity.from_str(secret)
    except (pyrage.DecryptError, pyrage.IdentityError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{path} does not open with key {key.key_id}: {exc}") from None
    if recipient_of(identity) != recipient:
        raise ArchiveError(f"{path} holds a content key the log did not sign: refused")
    return identity


def open_content_keys(root: Path, known: list[Epoch], key: SigningKey) -> ContentKeys:
    """Every epoch's content key this custodian's key holds (a custodian revoked in one epoch
    holds none of the next). NotPermitted when it holds none at all."""
    held: dict[int, pyrage.x25519.Identity] = {}
    for epoch in known:
        try:
            held[epoch.number] = open_content_key(root, epoch.recipient, key, epoch.number)
        except NotPermitted:
            continue
    if not held:
        raise NotPermitted(f"key {key.key_id} holds no content key of this sealed archive "
                           "(not a custodian here, or enrolled without one)")
    return ContentKeys(held)


def start_epoch(root: Path, number: int, readers: list[PublicKey]) -> dict[str, Any]:
    """A new content key for epoch `number`, wrapped for `readers` only, BEFORE the entry that
    signs it commits (a key that is signed but wrapped for no one would seal evidence nobody
    can read). What that entry signs as `details.sealing` is returned; files a rolled-back
    attempt left in the epoch's folder are removed first."""
    identity = new_content_key()
    folder = wrapped_path(root, "x", number).parent
    if folder.is_dir():
        for stale in folder.iterdir():
            stale.unlink()
    for public in readers:
        wrap_for(root, identity, public, number)
    return {**sealing_details(identity), "epoch": number}


# Sealing -----------------------------------------------------------------------------------------


def seal_bytes(recipient: str, data: bytes, armored: bool = False) -> bytes:
    return pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(recipient)], armored=armored)


def is_sealed(doc: bytes) -> bool:
    return doc.startswith(AGE_MAGIC) or doc.startswith(AGE_ARMOR)


@dataclass(frozen=True, slots=True)
class Sealer:
    """Seals each draft just before it is signed (Archive.append): secret fields into
    `details.sealed`, the metadata document as an age file, the ciphertext's digest on a first
    record. `stored` names the age file the object store kept for an item in this process."""

    recipient: str
    stored: Callable[[str], tuple[str, int] | None]
    sealed_to: Callable[[str], str | None] = lambda _sha256: None

    def seal(self, draft: SealedDraft, recipient: str | None = None) -> Any:
        """`recipient`: the content key in force where the entry lands (read under the write
        lock; docs/FORMAT.md §12.5), else the one this archive was opened with."""
        recipient = recipient or self.recipient
        details, secret = sealing.split(draft.action, draft.details)
        details = dict(details)
        if secret is not None:
            details[sealing.SEALED] = base64.b64encode(seal_bytes(recipient, secret)).decode()
        metadata = draft.metadata
        if metadata is not None and not is_sealed(metadata):
            # armored (ASCII): a package carries the document as a UTF-8 tag file (§11)
            metadata = seal_bytes(recipient, metadata, armored=True)
            details["metadata_sha256"] = hashlib.sha256(metadata).hexdigest()
        if draft.action in FIRST_RECORDS and draft.item is not None:
            kept = self.stored(draft.item)
            if kept is not None:
                if self.sealed_to(draft.item) not in (None, recipient):
                    raise ArchiveError(
                        f"the archive's content key changed (a revocation) while item "
                        f"{draft.item[:16]} was being stored: nothing of this batch was "
                        "recorded (run the command again)")
                details[sealing.CIPHERTEXT] = {"sha256": kept[0], "size": kept[1]}
        return replace(draft, details=details, metadata=metadata)  # type: ignore[type-var]


# Opening -----------------------------------------------------------------------------------------


def open_details(keys: ContentKeys | None, details: dict[str, Any]) -> dict[str, Any]:
    """Details with their sealed fields opened; as stored when there is no key or nothing sealed."""
    blob = details.get(sealing.SEALED)
    if keys is None or not isinstance(blob, str):
        return details
    try:
        return sealing.merge(details, pyrage.decrypt(base64.b64decode(blob), keys.identities))
    except (pyrage.DecryptError, ValueError) as exc:
        raise CustodyError(f"sealed fields do not open: {exc}") from None


def opened_or_sealed(keys: ContentKeys | None, details: dict[str, Any]) -> dict[str, Any]:
    """Details for a view (show, list, transfers, incidents, the search index): opened when the
    reader's keys open them, else as stored, with `sealed` (shown as sealed): no key, or sealed
    in a content key epoch this reader does not hold (§12.5). Whether the sealed bytes are the
    ones signed is verify's check, not a view's."""
    try:
        return open_details(keys, details)
    except CustodyError as exc:
        if not _not_for_these_keys(exc):
            raise  # damaged, not another epoch's: a one-line error, as before (run custody verify)
        return details


def opened_member(ledger: Ledger, keys: ContentKeys | None, seq: int, name: str) -> Any:
    """One member of entry `seq`'s details, opened when it was sealed; None while it stays
    sealed (no key, or not one of its epoch): e.g. a transfer offer's purpose, which the custody
    book does not hold for a sealed archive."""
    row = ledger.row(seq)
    if row is None:
        return None
    return opened_or_sealed(keys, entries.parse(row.body).details).get(name)


def open_document(keys: ContentKeys | None, doc: bytes | None) -> bytes | None:
    """A metadata document opened; None when it is sealed and there is no key."""
    if doc is None or not is_sealed(doc):
        return doc
    if keys is None:
        return None
    try:
        return pyrage.decrypt(doc, keys.identities)
    except pyrage.DecryptError as exc:
        raise CustodyError(f"a sealed metadata document does not open: {exc}") from None


def readable_document(keys: ContentKeys | None, doc: bytes | None) -> bytes | None:
    """A metadata document for a view: opened, or None (shown as sealed) when no key is held or
    none of the reader's keys opens it (another epoch's); as `opened_or_sealed` for fields."""
    try:
        return open_document(keys, doc)
    except CustodyError as exc:
        if not _not_for_these_keys(exc):
            raise
        return None


def _not_for_these_keys(exc: CustodyError) -> bool:
    """Whether an age file did not open because none of the reader's keys is a recipient of it
    (age's "No matching keys found": another epoch's), rather than because its bytes are damaged
    (a payload that fails its authentication): damage is never shown as merely sealed. age's
    recipient stanzas name no recipient, so a flipped bit in one reads as another epoch's too;
    the signed digests verify checks catch that."""
    return "No matching keys found" in exc.message


def opened_record(identity: ContentKeys, doc: bytes | None,
                  rows: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """An export's opened view of one item of a sealed archive (docs/FORMAT.md §12.3): its
    metadata document and the sealed fields of its entries, as the exporter's key opened them."""
    opened = open_document(identity, doc)
    return {
        "metadata": canonical.decode(opened) if opened is not None else None,
        "entries": {str(seq): open_details(identity, d) for seq, d in rows if sealing.SEALED in d},
    }


# Where sealed objects are ------------------------------------------------------------------------


def _ciphertext_of(row_body: bytes) -> tuple[str, int, int] | None:
    """(ciphertext SHA-256, its size, the plaintext size) a first record signed."""
    if b'"ciphertext"' not in row_body:
        return None
    try:
        details = entries.parse(row_body).details
        found = details[sealing.CIPHERTEXT]
        return str(found["sha256"]), int(found["size"]), int(details["size"])
    except (entries.MalformedEntry, KeyError, TypeError, ValueError, AttributeError):
        return None


def locator(ledger: Ledger) -> Callable[[str], tuple[str, int, int] | None]:
    def locate(sha256: str) -> tuple[str, int, int] | None:
        for row in ledger.rows_for_item(sha256):
            if (name := _ciphertext_of(row.body)) is not None:
                return name
        return None
    return locate


def listing(ledger: Ledger) -> Callable[[], dict[str, tuple[str, int, int]]]:
    def every() -> dict[str, tuple[str, int, int]]:
        out: dict[str, tuple[str, int, int]] = {}
        for row in ledger.rows_with_action(*FIRST_RECORDS):
            if row.item is not None and (found := _ciphertext_of(row.body)) is not None:
                out.setdefault(row.item, found)
        return out
    return every


class _Sealable(Protocol):
    @property
    def root(self) -> Path: ...
    @property
    def sealer(self) -> Sealer | None: ...


def working_folder(archive: _Sealable) -> Path | None:
    """Where a report or a derivative keeps its working copy of content: a sealed archive's spool
    (owner-only, memory where offered), so `custody lock` finds what a killed one left; None (the
    system's temporary folder, as before) for a clear archive."""
    if archive.sealer is None:
        return None
    place = spool_dir(archive.root)
    place.mkdir(mode=0o700, parents=True, exist_ok=True)
    return place


# The spool and `custody lock` --------------------------------------------------------------------


def spool_dir(root: Path) -> Path:
    """Where plaintext is spooled while a command runs: memory where the system offers it."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "custody-spool"
    if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
        return Path("/dev/shm") / f"custody-spool-{os.getuid()}"
    return root / "spool" / "plain"


@dataclass(frozen=True, slots=True)
class Locked:
    """What `custody lock` removed: plaintext files left in the spools."""

    removed: list[str]
    places: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"removed": self.removed, "checked": self.places}


def lock(root: Path) -> Locked:
    """Drop every cached plaintext at once. custody keeps no key in memory between commands and
    no agent: what can be left is the spool of a command that was killed (metadata reading,
    a read being copied out, a report's or a derivative's working folder). The spool this
    environment uses (the rule every command follows) and the archive's own fallback are emptied."""
    places = {spool_dir(root), root / "spool" / "plain"}  # where this environment's commands spool
    removed: list[str] = []
    for place in sorted(places):
        if not place.is_dir():
            continue
        for one in sorted(place.iterdir()):
            removed.append(str(one))
            if one.is_dir() and not one.is_symlink():
                shutil.rmtree(one)
            else:
                one.unlink(missing_ok=True)
    return Locked(removed=removed, places=[str(p) for p in sorted(places)])
