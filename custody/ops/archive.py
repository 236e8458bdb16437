"""An archive: its config and keys, built on two ports (an object store and a ledger: see
store/ports.py), and the one way to append.

The archive folder holds custody.json and keys/archive.key (+ .pub); where objects and entries are
kept is the adapters' business (custody/ops/backends.py opens the local ones in the same folder).
Every entry is appended through `Archive.append`, where the acting custodian signs it whole (format
1: `seq` and `prev` under their signature), or `Archive.append_statement`, which chains a statement
a custodian signed elsewhere (format 2, docs/FORMAT.md §5.8).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custody.core import canonical, merkle, permissions
from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD
from custody.core.custodians import (
    ARCHIVE_ROLE,
    REGISTRY_ACTIONS,
    Custodian,
    Registry,
    decode_public_key,
)
from custody.core.replay import SKEW, Replay, parse_time
from custody.core.signing import PublicKey, SigningKey, key_id
from custody.errors import (
    AmbiguousItem,
    ArchiveError,
    NotFound,
    NotPermitted,
    StatementRefused,
    UsageError,
    VerificationFailed,
)
from custody.ops import encryption
from custody.ops.backends import (
    create_ledger,
    create_objects,
    custody_error,
    ledger_label,
    open_backends,
    prepare_ledger,
    prepare_objects,
    sealed_objects,
)
from custody.ops.keyfiles import check_new_passphrase, load_key, write_new_key
from store.index_port import IndexLocation
from store.ports import (
    EntryRow,
    Ledger,
    LedgerReads,
    LedgerStoreError,
    LedgerTransaction,
    ObjectStore,
    StoreError,
)

FORMAT = "custody-archive"
FORMAT_VERSION = 1
CONFIG = "custody.json"
PRIVATE_FOLDER, PRIVATE_FILE = 0o700, 0o600  # whatever the umask: evidence is owner-only


def _check_identity(ledger: Ledger, stated: ArchiveConfig, label: str) -> None:
    """A ledger on a server is shared by address, so custody.json could name another archive's
    database: its entry 0 must be this archive's genesis (same origin, same archive key)."""
    first = ledger.row(0)
    if first is None:  # as a missing ledger.db: what was recorded is not there
        raise VerificationFailed([f"the ledger {label} holds no entries: custody.json names the "
                                  "wrong database, or it was emptied"])
    signed = signed_config(first)
    if signed is None:
        return  # an entry 0 that is no sound init entry: verify names it (exit 1)
    if signed.origin != stated.origin or signed.archive_key.raw != stated.archive_key.raw:
        raise ArchiveError(f"the ledger {label} belongs to another archive ({signed.name}, "
                           f"{signed.origin}), not this one ({stated.origin}): custody.json "
                           "names the wrong database")


def _signed_recipient(ledger: Ledger) -> str | None:
    """A sealed archive's recipient as entry 0 signed it (never custody.json's, which anyone
    with the disk could edit to redirect sealing); None for a clear archive or an unreadable
    entry 0 (verify says why)."""
    try:
        return encryption.signed_recipient(ledger)
    except StoreError:
        return None


def utc_now() -> str:
    """Now, as the RFC 3339 UTC string every entry carries (microseconds, 'Z')."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_archive_path() -> Path:
    return Path(os.environ.get("CUSTODY_ARCHIVE") or "archive")


@dataclass(frozen=True, slots=True)
class Draft:
    """An entry before it has a place in the log; `metadata` is a document stored alongside."""

    action: str
    item: str | None
    details: dict[str, Any]
    metadata: bytes | None = None


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    name: str
    origin: str
    archive_key: PublicKey
    created: str
    extra: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, Any] | None = None  # where the objects are (docs/BACKENDS.md); None: folder
    ledger: dict[str, Any] | None = None  # where the ledger is (docs/BACKENDS.md); None: SQLite
    sealing: dict[str, Any] | None = None  # a sealed archive's recipient (docs/FORMAT.md §12)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "origin": self.origin,
            "archive_key": {
                "key_id": self.archive_key.key_id,
                "public_key": self.archive_key.b64(),
                "name": self.archive_key.name,
            },
            "created": self.created,
            **({"objects": self.objects} if self.objects is not None else {}),
            **({"ledger": self.ledger} if self.ledger is not None else {}),
            **({"sealing": self.sealing} if self.sealing is not None else {}),
        }


class Archive:
    """`stated` is custody.json, unsigned; `config` is what entry 0 signed (the archive's name,
    origin and key), read on first use. verify names any difference between the two."""

    def __init__(
        self,
        objects: ObjectStore,
        ledger: Ledger,
        index: IndexLocation,
        config: ArchiveConfig,
        *,
        root: Path,
        signed: bool = False,
    ) -> None:
        self.objects = objects
        self.ledger = ledger
        self.index = index  # derived from the ledger; search opens it (custody/search/indexer.py)
        self.root = root  # custody.json and keys/
        self.stated = config
        self._signed: ArchiveConfig | None = config if signed else None
        self.sealer: encryption.Sealer | None = None  # set for a sealed archive (FORMAT.md §12)
        # once a custodian unlocked it: the content key of every epoch they hold (FORMAT.md §12.5)
        self.content_key: encryption.ContentKeys | None = None
        recipient = _signed_recipient(ledger)
        if recipient is not None:
            current = encryption.epochs(ledger, recipient)[-1].recipient
            self.objects = sealed_objects(root, objects, ledger, current)
            self.sealer = encryption.Sealer(recipient, self.objects.sealed_as,
                                            self.objects.sealed_to)

    @property
    def config(self) -> ArchiveConfig:
        """The archive's identity as entry 0 signed it; custody.json's only when entry 0 cannot
        be read as an init entry (verify reports that as a problem of its own)."""
        if self._signed is None:
            self._signed = signed_config(self.ledger.row(0)) or self.stated
        return self._signed

    # Creating and opening ---------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, name: str, admin: SigningKey, archive_passphrase: str,
               *, objects: dict[str, Any] | None = None,
               ledger: dict[str, Any] | None = None, encrypt: bool = False) -> Archive:
        """`objects`: where the objects go (backends.s3_objects_config), None for the folder;
        `ledger`: where the ledger is (backends.pg_ledger_config), None for SQLite in it."""
        root = Path(root)
        if (root / CONFIG).exists():
            raise ArchiveError(f"{root} already holds an archive")
        if root.exists() and any(root.iterdir()):
            raise ArchiveError(f"{root} exists and is not empty")
        check_new_passphrase(archive_passphrase, "archive key")
        try:
            store = prepare_objects(root, objects)  # before anything is written
            log = prepare_ledger(root, ledger)
        except StoreError as exc:
            raise custody_error(exc) from None
        root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER)
        os.chmod(root, PRIVATE_FOLDER)
        archive_key = write_new_key(
            root / "keys" / "archive.key", f"{name} archive", archive_passphrase,
            what="archive key",
        )
        now = utc_now()
        origin = f"custody.archive/{archive_key.key_id}"
        content = encryption.new_content_key() if encrypt else None
        sealed = encryption.sealing_details(content) if content is not None else None
        config = ArchiveConfig(
            name=name, origin=origin, archive_key=archive_key.public, created=now, objects=objects,
            ledger=ledger, sealing=sealed,
        )
        index = open_backends(root, objects, ledger).index  # backends.index_for: where it goes
        create_objects(root, store)
        create_ledger(log)
        archive = cls(store, log, index, config, root=root, signed=True)
        genesis = Draft(
            action="init",
            item=None,
            details={
                "name": name,
                "format": FORMAT_VERSION,
                "archive": custodian_json(archive_key.public),
                "admin": custodian_json(admin.public),
                **({"sealing": sealed} if sealed is not None else {}),
            },
        )
        archive.append(archive_key, [genesis], now=now, check_signer=False)
        if content is not None:  # the first admin can read; enroll gives each custodian a copy
            encryption.wrap_for(root, content, admin.public)
            archive = cls(store, log, index, config, root=root, signed=True)
        # custody.json is written last: a folder without it is not an archive, so a crash
        # during init leaves nothing that could be mistaken for one.
        tmp = root / (CONFIG + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), PRIVATE_FILE)
            out.write(json.dumps(config.to_json(), indent=2) + "\n")
        os.replace(tmp, root / CONFIG)
        return archive

    @classmethod
    def open(cls, root: Path) -> Archive:
        root = Path(root)
        path = root / CONFIG
        if not path.is_file():
            raise NotFound(
                f"no archive at {root} (no {CONFIG})",
                hint="make one with 'custody init DIR --name ORG' or pass --archive DIR",
            )
        try:
            raw = canonical.load_json(path.read_text())
        except OSError as exc:
            raise ArchiveError(f"{path} cannot be read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ArchiveError(f"{path} is damaged: {exc}") from None
        try:
            if raw.get("format") != FORMAT:
                raise ArchiveError(f"{path} is not a custody archive config")
            if raw.get("version") != FORMAT_VERSION:
                raise ArchiveError(f"archive format version {raw.get('version')} is not supported")
            ak = raw["archive_key"]
            public = PublicKey(raw=decode_public_key(ak["public_key"]), name=ak.get("name", ""))
            objects = raw.get("objects")
            if objects is not None and not isinstance(objects, dict):
                raise ValueError("objects is not an object")
            ledger = raw.get("ledger")
            if ledger is not None and not isinstance(ledger, dict):
                raise ValueError("ledger is not an object")
            config = ArchiveConfig(
                name=raw["name"], origin=raw["origin"], archive_key=public, created=raw["created"],
                objects=objects, ledger=ledger, sealing=raw.get("sealing"),
            )
            opened = open_backends(root, objects, ledger)
            label = ledger_label(ledger)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArchiveError(f"{path} is damaged: {exc}") from None
        if ledger is not None:
            _check_identity(opened.ledger, config, label)
        return cls(opened.objects, opened.ledger, opened.index, config, root=root)

    def unlock(self, key: SigningKey) -> None:
        """Open a sealed archive's content key with a custodian's key, for reads (FORMAT.md §12):
        NotPermitted when the key holds none. A clear archive needs nothing."""
        if self.sealer is None or self.content_key is not None:
            return
        self.content_key = encryption.open_content_keys(
            self.root, encryption.epochs(self.ledger, self.sealer.recipient), key)
        unlock = getattr(self.objects, "unlock", None)
        if unlock is not None:
            unlock(*self.content_key.identities)

    def load_archive_key(self, passphrase: str) -> SigningKey:
        return self.checked_archive_key(load_key(self.root / "keys" / "archive.key", passphrase))

    def checked_archive_key(self, key: SigningKey) -> SigningKey:
        """`key` if it is the archive key in force (VerificationFailed if not)."""
        current, seq = self.current_archive_key()
        if key.public.raw != current.raw:
            raise VerificationFailed(
                [f"keys/archive.key is not the archive key signed in entry {seq} (it holds key "
                 f"{key.key_id}, entry {seq} names {current.key_id})"]
            )
        return key

    def current_archive_key(self) -> tuple[PublicKey, int]:
        """The archive key in force and the entry naming it: entry 0's, or the last
        `archive-key-rotate` entry's (docs/KEYS.md)."""
        keys = registry_of(self.ledger).archive_keys
        if not keys:
            return self.config.archive_key, 0
        return PublicKey(raw=keys[-1].public_key, name=keys[-1].name), keys[-1].enrolled_seq

    # Reading ------------------------------------------------------------------------------------

    def signed_entries(self, start: int = 0) -> Iterator[tuple[EntryRow, entries.SignedEntry]]:
        for row in self.ledger.rows(start):
            yield row, entries.SignedEntry(body=row.body, signature=row.signature)

    def registry(self) -> Registry:
        """Custodians as of now (for acting; verify rebuilds its own as it walks the log)."""
        return registry_of(self.ledger)

    def resolve_item(self, ref: str) -> str:
        """An item by full SHA-256 or a unique prefix of 8 to 64 hex digits."""
        ref = ref.strip().lower()
        if not 8 <= len(ref) <= 64 or any(c not in "0123456789abcdef" for c in ref):
            shown = ref if len(ref) <= 72 else f"{ref[:64]}… ({len(ref)} characters)"
            raise UsageError(f"'{shown}' is not an item: give its SHA-256 (64 hex digits) or "
                             "a prefix of at least 8")
        found = self.ledger.items_with_prefix(ref)
        if not found:
            raise NotFound(f"no item {ref} in this archive")
        if len(found) > 1:
            raise AmbiguousItem(f"{ref} matches more than one item; give more digits")
        return found[0]

    # Appending ----------------------------------------------------------------------------------

    def append(
        self,
        key: SigningKey,
        drafts: list[Draft],
        *,
        now: str | None = None,
        check_signer: bool = True,
        decide: Decide | None = None,
        attempted: str | None = None,
        purpose: str | None = None,
    ) -> list[entries.SignedEntry]:
        """Sign and append drafts in one transaction: all land or none do.

        Every decision is taken under the write lock (`BEGIN IMMEDIATE`), from the transaction's
        own reads, so nothing committed in between can make an entry verify would reject: the
        signer must be enrolled and not revoked (else NotPermitted and no entry: it could not sign
        one), its role must allow each draft's action, and `decide(writer, draft) -> Draft` may
        rewrite a draft (ingest: a first ingest or a sighting) or refuse it by raising Refusal.
        A refusal rolls the whole batch back, is recorded as a signed `refused` entry (named
        `attempted`, with `purpose`) in a transaction of its own, and raises NotPermitted.
        `check_signer=False` skips the signer and role checks: entry 0 needs it (the archive key
        signs it before there is a registry); nothing else in custody passes it.
        """
        out: list[entries.SignedEntry] = []
        try:
            with self.writing() as writer:
                # the time is read once the lock is held: entries are timed in the order they land
                now = now or utc_now()
                _check_clock(now, writer.tip_time)
                who = self._active(key, writer) if check_signer else None
                for draft in drafts:
                    if who is not None:
                        _check_role(who, draft.action, attempted)
                    if decide is not None:
                        draft = decide(writer, draft)
                    if who is not None:
                        _check_role(who, draft.action, attempted)  # as decided
                    out.append(self._append_one(writer, key, draft, now))
        except Refusal as refusal:
            item = refusal.item or (drafts[0].item if drafts else None)
            what = attempted or (drafts[0].action if drafts else "append")
            self.record_refusal(key, what, refusal.reason, item=item, purpose=purpose)
            raise NotPermitted(refusal.message or refusal.reason) from None
        return out

    @contextmanager
    def writing(self) -> Iterator[LedgerTransaction]:
        """The ledger's write transaction, its failures said as custody errors (backends.py): all
        of it lands, or (disk full, ledger unwritable) none of it and the caller hears why."""
        try:
            with self.ledger.writing() as writer:
                yield writer
        except LedgerStoreError as exc:
            raise custody_error(exc) from None

    def _append_one(
        self, writer: LedgerTransaction, key: SigningKey, draft: Draft, now: str
    ) -> entries.SignedEntry:
        """A format 1 entry: the acting custodian signs it whole, `seq` and `prev` included, under
        the write lock, so no one can move or drop it without breaking its signature."""
        entry = entries.Entry(
            log=self.config.origin,
            seq=writer.next_seq,
            time=now,
            actor=key.key_id,
            action=draft.action,
            item=draft.item,
            details=draft.details,
            prev=writer.tip_hash.hex() if writer.tip_hash is not None else None,
        )
        if self.sealer is not None:  # after decide, which sees plaintext; before the signature
            # sealed to the content key in force here, as this transaction reads the log (§12.5)
            draft = self.sealer.seal(
                draft, encryption.epochs(writer, self.sealer.recipient)[-1].recipient)
            entry = replace(entry, details=draft.details)
        return self._write(writer, entries.sign(entry, key), entry, draft.metadata)

    def _write(
        self, writer: LedgerTransaction, signed: entries.SignedEntry, entry: entries.Entry,
        metadata: bytes | None,
    ) -> entries.SignedEntry:
        """Write a signed entry (`entry`, parsed) at the log's end: the one way an entry is
        written, whatever its format."""
        if metadata is not None and entry.item is not None:
            writer.put_metadata(entry.item, metadata)  # before the entry that records it
        # The tree's complete-subtree nodes grow with the log, in the same transaction, so proofs
        # never rebuild the tree (custody/core/merkle.py, docs/FORMAT.md §9.1). A ledger error
        # here is said by `writing`, after the rollback.
        writer.put_nodes(merkle.nodes_after_append(entry.seq, signed.leaf_hash, writer.get_node))
        writer.append(
            EntryRow(
                seq=entry.seq,
                body=signed.body,
                signature=signed.signature,
                leaf_hash=signed.leaf_hash,
                time=entry.time,
                actor=entry.actor,
                action=entry.action,
                item=entry.item,
            )
        )
        return signed

    def append_statement(
        self, signed: entries.SignedStatement, *, metadata: bytes | None = None,
        now: str | None = None,
    ) -> entries.SignedEntry:
        """Append a statement a custodian signed elsewhere (a field device, `custody serve`),
        without their key: everything is decided under the write lock, and a statement that is
        malformed, for another log, badly signed, by a key not enrolled (or revoked), beyond its
        signer's role, dated ahead of the archive's clock, or already in the log is refused
        (StatementRefused, one line) with nothing appended. docs/FORMAT.md §5.8."""
        try:
            statement = signed.statement()
        except entries.MalformedEntry as exc:
            raise StatementRefused(f"statement refused: {exc}") from None
        if statement.log != self.config.origin:
            raise StatementRefused(f"statement refused: it is for log {statement.log!r}, not "
                                   f"this archive's ({self.config.origin})")
        if self.sealer is not None:
            # A statement is signed as its custodian wrote it, so the archive cannot seal its
            # notes, purposes or names afterwards; sealing on the device is not built yet.
            raise StatementRefused("statement refused: this archive is sealed (init --encrypt) "
                                   "and takes no statement signed elsewhere yet (docs/FORMAT.md "
                                   "§12.3)")
        with self.writing() as writer:
            now = now or utc_now()
            _check_clock(now, writer.tip_time)
            who = registry_of(writer).by_id.get(statement.actor)
            if who is None or who.role == ARCHIVE_ROLE or who.ended() is not None:
                why = (who.ended() if who is not None else None) or "not enrolled"
                raise StatementRefused(f"statement refused: its signer {statement.actor} is "
                                       f"{why} in this archive")
            if not signed.signature_valid(who.public_key):
                raise StatementRefused("statement refused: its signature does not verify with "
                                       f"{who.name}'s key (altered or not theirs)")
            if not permissions.may(who.role, statement.action):
                raise StatementRefused(f"statement refused: {who.name} has role '{who.role}', "
                                       f"which may not sign {statement.action!r}")
            claimed, stamped = parse_time(statement.time), parse_time(now)
            if claimed is None:
                raise StatementRefused(f"statement refused: time {statement.time!r} is not "
                                       "RFC 3339 UTC with microseconds and Z")
            if stamped is not None and claimed > stamped + SKEW:
                raise StatementRefused(f"statement refused: its time {statement.time} is ahead "
                                       f"of the archive's clock ({now})")
            # the statement's bytes appear verbatim in the entry that embeds it (RFC 8785)
            earlier = (writer.rows_for_item(statement.item) if statement.item is not None
                       else writer.rows_with_action(statement.action))
            if any(signed.body in row.body for row in earlier):
                raise StatementRefused(f"statement refused: statement {signed.statement_id[:16]} "
                                       "is already in the log (a replay)")
            self._check_record(statement, metadata)
            tip = writer.tip_hash
            chained = entries.chain(signed, seq=writer.next_seq, time=now, statement=statement,
                                    prev=tip.hex() if tip is not None else None)
            entry = chained.entry()
            broken = replayed(writer).apply(entry)  # every rule verify will hold it to
            if broken:
                raise StatementRefused(f"statement refused: {broken[0]}")
            return self._write(writer, chained, entry, metadata)

    def _check_record(self, statement: entries.Statement, metadata: bytes | None) -> None:
        """A first record names bytes the archive holds, and the metadata document it signs."""
        if statement.action in FIRST_RECORD and statement.item is not None \
                and not self.objects.has(statement.item):
            raise StatementRefused(f"statement refused: item {statement.item[:16]} is not in "
                                   "the archive's store (upload its bytes first)")
        named = statement.details.get("metadata_sha256")
        if named is not None and (metadata is None
                                  or hashlib.sha256(metadata).hexdigest() != named):
            raise StatementRefused("statement refused: it names a metadata document "
                                   f"({str(named)[:16]}) that was not sent with it")

    def authorize(
        self,
        key: SigningKey,
        action: str,
        *,
        item: str | None = None,
        attempted: str | None = None,
        purpose: str | None = None,
    ) -> Custodian:
        """The acting custodian, if their role may sign `action`; else refuse, and record it.

        An early answer, so that no work is done for someone who will be refused: the decision
        that counts is taken again by `append`, under the write lock, as the entry is signed.
        A refusal of an enrolled custodian is itself an entry (signed by them: attempts matter in
        an audit). An unknown or revoked key is refused without an entry: it could not sign one.
        """
        who = self._active(key)
        try:
            _check_role(who, action, attempted)
        except Refusal as refusal:
            self.record_refusal(key, attempted or action, refusal.reason, item=item,
                                purpose=purpose)
            raise NotPermitted(refusal.reason) from None
        return who

    def record_refusal(
        self,
        key: SigningKey,
        attempted: str,
        reason: str,
        *,
        item: str | None = None,
        purpose: str | None = None,
    ) -> None:
        """A signed `refused` entry, in its own transaction. The signer is checked under the lock
        like any other: a key revoked meanwhile gets NotPermitted and no entry."""
        details = {"attempted": attempted, "reason": reason, "purpose": purpose}
        self.append(key, [Draft("refused", item, details)])

    def resolve_custodian(self, ref: str) -> Custodian:
        """An enrolled custodian by key id, a unique prefix of 8+ hex digits, or exact name."""
        ref = ref.strip()
        reg = self.registry()
        found = [
            c
            for c in reg.by_id.values()
            if c.role != ARCHIVE_ROLE
            and (c.key_id.startswith(ref.lower()) and len(ref) >= 8 or c.name == ref)
        ]
        if not found:
            raise NotFound(f"no enrolled custodian {ref!r}")
        if len(found) > 1:  # a rotated custodian's name: the key in use, not the retired ones
            found = [c for c in found if c.retired_seq is None] or found
        if len(found) > 1:
            raise UsageError(f"{ref!r} names more than one custodian; give more of the key id")
        return found[0]

    def _active(self, key: SigningKey, writer: LedgerTransaction | None = None) -> Custodian:
        """The custodian `key` belongs to, if it may sign now; with `writer`, decided from the
        write transaction's own reads (what the entry about to be appended will be judged by)."""
        who = registry_of(writer or self.ledger).by_id.get(key.key_id)
        if who is None or who.role == ARCHIVE_ROLE:
            raise NotPermitted(
                f"key {key.key_id} ({key.public.name or 'unnamed'}) is not enrolled in this "
                "archive",
                hint="ask an admin to run 'custody enroll'",
            )
        if (ended := who.ended()) is not None:
            raise NotPermitted(f"key {key.key_id} ({who.name}) was {ended}")
        return who


# The actions the replayed state depends on (registry, holders, offers, cases, incidents, first
# records and sightings); notes, tags, accesses and verifications change none of it.
STATE_ACTIONS = (*REGISTRY_ACTIONS, *FIRST_RECORD, "sighting", "transfer-offer",
                 "transfer-accept", "transfer-withdraw", "case-add", "case-remove", "incident",
                 "incident-add")


def replayed(ledger: LedgerReads, actions: tuple[str, ...] = STATE_ACTIONS) -> Replay:
    """The log's state as the ledger (or a write transaction, seeing its own reads) holds it now,
    from the one replay (custody/core/replay.py). What it finds against the rules is verify's to
    report; readers take the state as the log states it (a registry entry that breaks a rule is
    not obeyed)."""
    replay = Replay()
    for row in ledger.rows_with_action(*actions):
        replay.apply(entries.parse(row.body))
    return replay


def registry_of(ledger: LedgerReads) -> Registry:
    """Custodians as the ledger (or a write transaction) holds them now."""
    return replayed(ledger, REGISTRY_ACTIONS).registry


def _check_clock(now: str, tip_time: str | None) -> None:
    """Refuse to stamp an entry that verify would reject for its time (FORMAT §5.6
    `time-order`): this machine's clock set back, by hand or by a dead battery."""
    last = parse_time(tip_time) if tip_time is not None else None
    stamped = parse_time(now)
    if last is not None and stamped is not None and stamped < last - SKEW:
        raise ArchiveError(
            f"this machine's clock ({now}) is behind the log's last entry ({tip_time}) by more "
            f"than {int(SKEW.total_seconds() // 60)} minutes: nothing was recorded",
            hint="set the clock right, then run the command again",
        )


class Refusal(Exception):
    """Raised under the write lock to refuse a draft: `append` rolls back, records a signed
    `refused` entry giving `reason`, and raises NotPermitted(`message` or `reason`)."""

    def __init__(
        self, reason: str, *, message: str | None = None, item: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.item = item


Decide = Callable[[LedgerTransaction, Draft], Draft]


def _check_role(who: Custodian, action: str, attempted: str | None) -> None:
    if not permissions.may(who.role, action):
        raise Refusal(
            f"{who.name} has role '{who.role}', which may not {attempted or action} "
            f"(needs {' or '.join(permissions.roles_for(action))})"
        )


def signed_config(row: EntryRow | None) -> ArchiveConfig | None:
    """The archive's identity from its init entry (entry 0), or None if that is unusable (not an
    init entry, or not signed by the key it names)."""
    if row is None:
        return None
    try:
        entry = entries.parse(row.body)
        archive_key = entry.details["archive"]
        if entry.seq != 0 or entry.action != "init" or not isinstance(entry.details["name"], str):
            return None
        public = PublicKey(
            raw=decode_public_key(archive_key["public_key"]), name=str(archive_key.get("name", ""))
        )
        if not entries.signature_valid(entries.SignedEntry(row.body, row.signature), public.raw):
            return None
        return ArchiveConfig(
            name=entry.details["name"], origin=entry.log, archive_key=public, created=entry.time
        )
    except (entries.MalformedEntry, KeyError, TypeError, ValueError, AttributeError):
        return None  # RegistryError is a ValueError


def custodian_json(public: PublicKey) -> dict[str, str]:
    """The custodian object entries carry (docs/FORMAT.md §5.4)."""
    return {"key_id": key_id(public.raw), "public_key": public.b64(), "name": public.name}
