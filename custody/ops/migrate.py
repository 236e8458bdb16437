"""`custody migrate`: copy an archive, checked piece by piece, onto another pair of backends.

Written against the ports only (store/ports.py), so any object store and any ledger pair. The
source is only read. The target is a new archive folder that becomes an archive (custody.json)
only once everything is copied, checked, and sealed by a signed `migrated` entry; until then its
`migration.json` lets a rerun continue where a killed run stopped (docs/BACKENDS.md).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from custody.core import canonical, merkle
from custody.core import entry as entries
from custody.core.custodians import ARCHIVE_ROLE
from custody.core.replay import Replay
from custody.core.signing import SigningKey
from custody.errors import ArchiveError, NotPermitted, UsageError, VerificationFailed
from custody.ops.archive import CONFIG, PRIVATE_FILE, PRIVATE_FOLDER, Archive, Draft
from custody.ops.backends import (
    as_stored,
    create_objects,
    custody_error,
    index_for,
    ledger_config,
    prepare_objects,
    target_ledger,
)
from custody.ops.c2pa_trust import configured_files
from store.durable import fsync_folder
from store.ports import (
    EntryRow,
    Ledger,
    LedgerReads,
    ObjectCorrupt,
    ObjectError,
    ObjectMissing,
    ObjectReader,
    ObjectStore,
    StoreError,
)

MARKER = "migration.json"  # in the target folder until the migration is sealed
ENTRY_BATCH = 1000  # entries per target transaction: a kill loses at most one batch's work
METADATA_BATCH = 500

Progress = Callable[[str, int, int], None]
"""on_progress(stage, done, total): stages `objects`, `metadata`, `entries`, `checkpoints`."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to: the new archive folder, its ledger (`sqlite` or a postgresql:// URL) and its
    objects (custody.json's `objects`: None for the folder)."""

    root: Path
    ledger: str
    objects: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Migrated:
    target: str
    entries: int  # copied from the source (the `migrated` entry is one more)
    root: str  # the Merkle root of those entries, hex: the same in source and target
    objects: int
    objects_copied: int  # this run (the rest were there already, and re-checked)
    bytes_copied: int
    metadata: int
    metadata_set_aside: int
    checkpoints: int
    checkpoint_extras: int
    seq: int  # the `migrated` entry
    resumed: bool
    quarantined_in_source: list[str]  # set-aside files the source keeps (not objects: not copied)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "entries": self.entries, "root": self.root,
            "objects": self.objects, "objects_copied": self.objects_copied,
            "bytes_copied": self.bytes_copied, "metadata": self.metadata,
            "metadata_set_aside": self.metadata_set_aside, "checkpoints": self.checkpoints,
            "checkpoint_extras": self.checkpoint_extras, "migrated_entry": self.seq,
            "resumed": self.resumed, "quarantined_in_source": self.quarantined_in_source,
        }


class _SourceRead(Exception):
    """A source object's read failed inside the target's put: said as the source's, not the
    target's, once the put has left nothing behind."""

    def __init__(self, error: ObjectError) -> None:
        super().__init__(str(error))
        self.error = error


class _ReadsInto:
    """The port's verified reader as the stream `put` takes (readinto): its ObjectCorrupt at end
    of content aborts the put before anything is placed."""

    def __init__(self, reader: ObjectReader) -> None:
        self._reader = reader

    def readinto(self, buffer: memoryview, /) -> int:
        try:
            data = self._reader.read(len(buffer))
        except ObjectError as exc:
            raise _SourceRead(exc) from None
        buffer[: len(data)] = data
        return len(data)


def migrate(source: Archive, key: SigningKey, target: Target,
            on_progress: Progress | None = None) -> Migrated:
    """Copy `source` to `target` and seal it with a `migrated` entry signed by `key` (an admin).
    Refuses, changing nothing, a target that is another archive or not empty; stops, naming it, at
    the first source object or entry that does not verify."""
    try:
        return _Migration(source, key, target, on_progress or (lambda *_: None)).run()
    except StoreError as exc:
        raise custody_error(exc) from None


class _Migration:
    def __init__(self, source: Archive, key: SigningKey, target: Target,
                 progress: Progress) -> None:
        self.src = source
        self.key = key
        self.target = target
        self.root = Path(target.root)
        self.progress = progress
        self.copied = 0
        self.bytes = 0
        # A sealed archive (docs/FORMAT.md §12) moves as it is stored: its age files, under the
        # ciphertext names its first records sign, copied and checked without any key.
        self.objects: ObjectStore = as_stored(source.objects)

    def run(self) -> Migrated:
        ledger = self.src.ledger
        ledger.open()
        size = ledger.size()
        genesis = ledger.row(0)
        if genesis is None:
            raise ArchiveError(f"{self.src.root}: the ledger is empty (no genesis entry)")
        self._check_admin()
        self._check_apart()
        ledger_cfg = ledger_config(self.target.ledger)
        wanted = {"genesis": genesis.leaf_hash.hex(), "origin": self.src.config.origin,
                  "entries": size, "ledger": _public_ledger(ledger_cfg),
                  "objects": self.target.objects}
        resumed = self._check_target(wanted)
        store = prepare_objects(self.root, self.target.objects)  # S3: Object Lock, credentials
        names = sorted(self.objects)
        if not resumed:
            ours = set(names)
            foreign = next((s for s in store if s not in ours), None)
            if foreign is not None:
                raise ArchiveError(f"the target object store already holds object {foreign}, "
                                   "which this archive does not: it belongs to another archive")
            self.root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER)
            os.chmod(self.root, PRIVATE_FOLDER)
            _write_json(self.root / MARKER, wanted)
        create_objects(self.root, store)
        dst = target_ledger(self.root, self.target.ledger)
        try:
            sealed = self._check_ledger(dst, size, genesis, fresh=not resumed)
            self._copy_files()
            if not sealed:
                self._copy_objects(store, names)
                metadata, aside = self._copy_metadata(dst)
                self._copy_entries(dst, size)
                kept, extras = self._copy_checkpoints(dst, size)
            archive = Archive(store, dst, index_for(self.root, ledger_config(self.target.ledger)),
                              replace(self.src.stated, objects=self.target.objects),
                              root=self.root)
            root_hex = merkle.root_hash(size, ledger.get_node).hex()
            if sealed:
                seq = size
                metadata = sum(1 for _ in dst.metadata_items())
                aside = sum(1 for _ in dst.set_aside_metadata())
                kept, extras = len(dst.checkpoints()), len(dst.checkpoint_extras())
            else:
                self._check_record(archive, dst, size, [cp.size for cp in dst.checkpoints()])
                seq = self._seal(archive, size, root_hex, len(names), ledger_cfg)
            self._write_config(ledger_cfg)
        finally:
            dst.close()
        return Migrated(
            target=str(self.root), entries=size, root=root_hex, objects=len(names),
            objects_copied=self.copied, bytes_copied=self.bytes, metadata=metadata,
            metadata_set_aside=aside, checkpoints=kept, checkpoint_extras=extras, seq=seq,
            resumed=resumed, quarantined_in_source=self.src.objects.quarantined(),
        )

    # Before anything is written ---------------------------------------------------------------

    def _check_admin(self) -> None:
        """Only an admin moves an archive: the `migrated` entry is theirs (decided again, under
        the target's write lock, when it is appended)."""
        who = self.src.registry().by_id.get(self.key.key_id)
        if who is None or who.role == ARCHIVE_ROLE or who.ended() is not None:
            raise NotPermitted(f"key {self.key.key_id} is not an enrolled custodian of the "
                               "source archive")
        if who.role != "admin":
            raise NotPermitted(f"{who.name} has role '{who.role}'; only an admin may migrate "
                               "an archive")

    def _check_apart(self) -> None:
        """A copy shares nothing with its source: not its folder, not its object store."""
        here, there = self.src.root.resolve(), self.root.resolve()
        if here == there or here in there.parents or there in here.parents:
            raise UsageError(f"--to {self.root}: the copy's folder must be outside the source "
                             "archive's folder, and the source outside it")
        where = ("backend", "bucket", "prefix", "endpoint")
        theirs, ours = self.target.objects, self.src.stated.objects
        if theirs is not None and ours is not None and \
                all(theirs.get(k) == ours.get(k) for k in where):
            raise UsageError("--objects names the source archive's own object store: a copy "
                             "needs a store (or prefix) of its own")

    def _check_target(self, wanted: dict[str, Any]) -> bool:
        """True when the target holds this archive's unfinished migration to the same backends
        (a rerun continues it); False for an absent or empty folder; else refused."""
        root = self.root
        if (root / CONFIG).exists():
            raise ArchiveError(f"{root} already holds an archive: migrate into a new folder")
        if (root / MARKER).exists():
            try:
                found = json.loads((root / MARKER).read_text())
            except (OSError, ValueError) as exc:
                raise ArchiveError(f"{root / MARKER} cannot be read: {exc}") from None
            if found.get("genesis") != wanted["genesis"]:
                raise ArchiveError(f"{root} holds an unfinished migration of another archive")
            if {k: found.get(k) for k in ("ledger", "objects")} != \
                    {k: wanted[k] for k in ("ledger", "objects")}:
                raise UsageError(f"{root} holds this archive's unfinished migration to other "
                                 "backends: give the same --ledger and --objects to resume it")
            return True
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ArchiveError(f"{root} exists and is not empty: migrate into a new folder")
        return False

    def _check_ledger(self, dst: Ledger, size: int, genesis: EntryRow, fresh: bool) -> bool:
        """The target ledger holds nothing, or a prefix of this log (True: and the `migrated`
        entry sealing it). Anything else is another archive's: refused."""
        have = dst.size()
        first = dst.row(0)
        if first is not None and (first.body, first.signature) != (genesis.body,
                                                                  genesis.signature):
            if fresh:
                shutil.rmtree(self.root)  # only what this run made: the marker, an empty ledger
            kind = _public_ledger(ledger_config(self.target.ledger))["backend"]
            raise ArchiveError(f"the target ledger ({kind}) holds another archive's log")
        if have == size + 1:
            last = dst.row(size)
            if last is not None and entries.parse(last.body).action == "migrated":
                return True
        if have > size:
            raise ArchiveError(f"the target ledger holds {have} entries, more than the source's "
                               f"{size}: it is not this archive's unfinished migration")
        if have > 0:
            tip, ours = dst.row(have - 1), self.src.ledger.row(have - 1)
            if tip is None or ours is None or (tip.body, tip.signature) != (ours.body,
                                                                            ours.signature):
                raise ArchiveError(f"the target ledger's entry {have - 1} differs from the "
                                   "source's: it is not this archive's unfinished migration")
        return False

    # Copying ----------------------------------------------------------------------------------

    def _copy_files(self) -> None:
        """The key files (the archive key, encrypted, and its .pub) and the C2PA trust anchors
        custody.json names: the same bytes, owner-only."""
        # keys/content/: a sealed archive's content keys, wrapped per custodian (§12.1)
        files = [p for p in sorted((self.src.root / "keys").rglob("*")) if p.is_file()]
        files += [p for p in configured_files(self.src.root) if p.is_file()]
        for path in files:
            rel = path.relative_to(self.src.root)
            out = self.root / rel
            out.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER)
            tmp = out.with_name(out.name + ".tmp")
            shutil.copyfile(path, tmp)
            os.chmod(tmp, PRIVATE_FILE)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, out)

    def _copy_objects(self, store: ObjectStore, names: list[str]) -> None:
        for done, sha256 in enumerate(names, 1):
            self._copy_object(store, sha256)
            self.progress("objects", done, len(names))

    def _copy_object(self, store: ObjectStore, sha256: str) -> None:
        """One object, checked as read from the source (the verified reader) and as stored in
        the target (re-read). One already there is re-checked, never trusted."""
        if store.has(sha256):
            try:
                store.check(sha256)
                return
            except (ObjectCorrupt, ObjectMissing):
                pass  # a damaged copy: put sets it aside and stores the object again
        try:
            with self.objects.open(sha256) as reader:
                result = store.put(_ReadsInto(reader))
        except ObjectMissing as exc:
            raise VerificationFailed([f"source object {exc}: the migration stopped"]) from None
        except _SourceRead as exc:
            if isinstance(exc.error, ObjectCorrupt | ObjectMissing):
                raise VerificationFailed(
                    [f"source {exc.error}: the migration stopped before copying it (the "
                     "target is unfinished; nothing corrupt was copied)"]) from None
            raise custody_error(exc.error) from None
        if result.digests.sha256 != sha256:
            raise VerificationFailed([f"source object {sha256} read back as "
                                      f"{result.digests.sha256}: the migration stopped"])
        try:
            stored = store.check(sha256)
        except (ObjectCorrupt, ObjectMissing) as exc:
            raise VerificationFailed([f"the target store does not hold what was sent: {exc}"]) \
                from None
        if stored != result.digests.size:
            raise VerificationFailed([f"the target store holds {stored} bytes of object "
                                      f"{sha256}, not {result.digests.size}"])
        self.copied += 1
        self.bytes += stored

    def _copy_metadata(self, dst: Ledger) -> tuple[int, int]:
        """Every metadata document, each preceded by the unsigned ones the source set aside for
        its item (put_metadata sets them aside again, in order), before any entry records it."""
        aside: dict[str, list[bytes]] = {}
        for sha256, doc, _when in self.src.ledger.set_aside_metadata():
            aside.setdefault(sha256, []).append(doc)
        todo = [(s, d) for s, d in self.src.ledger.all_metadata() if dst.metadata(s) != d]
        total = len(todo)
        for start in range(0, total, METADATA_BATCH):
            with dst.writing() as writer:
                for sha256, doc in todo[start:start + METADATA_BATCH]:
                    for old in aside.get(sha256, []):
                        writer.put_metadata(sha256, old)
                    writer.put_metadata(sha256, doc)
            self.progress("metadata", min(start + METADATA_BATCH, total), total)
        return (sum(1 for _ in dst.metadata_items()),
                sum(len(docs) for docs in aside.values()))

    def _copy_entries(self, dst: Ledger, size: int) -> None:
        """Every entry, byte for byte with its signature, each checked first (form, log, chain,
        leaf hash, signature by the key enrolled at that point), and the tree nodes it adds."""
        have = dst.size()
        replay = Replay()
        prev: bytes | None = None
        batch: list[EntryRow] = []
        origin = self.src.config.origin
        for row in self.src.ledger.rows():
            if row.seq >= size:
                break
            _check_entry(row, prev, origin, replay)
            prev = row.leaf_hash
            if row.seq >= have:
                batch.append(row)
            if len(batch) == ENTRY_BATCH or row.seq == size - 1:
                self._append(dst, batch)
                batch = []
            if row.seq % ENTRY_BATCH == 0 or row.seq == size - 1:
                self.progress("entries", row.seq + 1, size)
        if prev is None or dst.size() != size:
            raise ArchiveError(f"the source ledger changed while it was read: {size} entries "
                               "expected")

    @staticmethod
    def _append(dst: Ledger, rows: list[EntryRow]) -> None:
        if not rows:
            return
        with dst.writing() as writer:
            if writer.next_seq != rows[0].seq:
                raise ArchiveError(f"something else appended to the target ledger (entry "
                                   f"{writer.next_seq} is due, not {rows[0].seq})")
            for row in rows:
                writer.put_nodes(merkle.nodes_after_append(row.seq, row.leaf_hash,
                                                           writer.get_node))
                writer.append(row)

    def _copy_checkpoints(self, dst: Ledger, size: int) -> tuple[int, int]:
        """The kept checkpoints under the same ids, and their cosignatures and RFC 3161 tokens, in
        one transaction. One issued after the source was first read (larger than the copied log)
        stays in the source."""
        src = self.src.ledger
        kept = [cp for cp in src.checkpoints() if cp.size <= size]
        ids = {cp.id for cp in kept}
        extras = [x for x in src.checkpoint_extras() if x.checkpoint_id in ids]
        have, have_extras = dst.checkpoints(), dst.checkpoint_extras()
        if have != kept[:len(have)] or have_extras != extras[:len(have_extras)]:
            raise ArchiveError("the target ledger's checkpoints differ from the source's: it is "
                               "not this archive's unfinished migration")
        with dst.writing() as writer:
            for cp in kept[len(have):]:
                made = writer.put_checkpoint(cp.size, cp.note, cp.created)
                if made.id != cp.id:
                    raise ArchiveError(f"the target ledger numbered checkpoint {cp.id} as "
                                       f"{made.id}: nothing of the checkpoints was copied")
            for x in extras[len(have_extras):]:
                writer.put_checkpoint_extra(x.checkpoint_id, x.kind, x.data, x.added)
        self.progress("checkpoints", len(kept), len(kept))
        return len(kept), len(extras)

    # Checking and sealing ---------------------------------------------------------------------

    def _check_record(self, archive: Archive, dst: Ledger, size: int, sizes: list[int]) -> None:
        """The target's tree has the source's root at every checkpoint's size and at the copied
        size, and the target's record passes verify's checks (entries, tree, checkpoints and
        their extras, key files): a target that fails is left unsealed."""
        from custody.ops.verify import audit  # verify imports archive; imported when needed

        for at in sorted({*sizes, size}):
            if merkle.root_hash(at, dst.get_node) != merkle.root_hash(at, self.src.ledger.get_node):
                raise VerificationFailed([f"the target's Merkle root at size {at} differs from "
                                          "the source's"])
        report = audit(archive, objects=False)
        if report.problems or report.unreadable:
            raise VerificationFailed([f"the copy: {p}" for p in
                                      report.problems + report.unreadable])

    def _seal(self, archive: Archive, size: int, root_hex: str, objects: int,
              ledger_cfg: dict[str, Any] | None) -> int:
        source_ledger = _public_ledger(_source_ledger_config(self.src.root))
        details = {
            "from": {"ledger": source_ledger,
                     "objects": self.src.stated.objects or {"backend": "folder"}},
            "to": {"ledger": _public_ledger(ledger_cfg),
                   "objects": self.target.objects or {"backend": "folder"}},
            "entries": size,
            "root": root_hex,
            "objects": objects,
        }
        [signed] = archive.append(self.key, [Draft("migrated", None, details)],
                                  attempted="migrate")
        return signed.entry().seq

    def _write_config(self, ledger_cfg: dict[str, Any] | None) -> None:
        """custody.json last: the source's, naming the new backends. Only now is the folder an
        archive; the marker goes after it."""
        config = dict(_source_config(self.src.root))
        config.pop("objects", None)
        config.pop("ledger", None)
        if self.target.objects is not None:
            config["objects"] = self.target.objects
        if ledger_cfg is not None:
            config["ledger"] = ledger_cfg
        tmp = self.root / (CONFIG + ".tmp")
        _write_json(tmp, config)
        os.replace(tmp, self.root / CONFIG)
        fsync_folder(self.root)
        (self.root / MARKER).unlink(missing_ok=True)


def migration_claims(ledger: LedgerReads) -> list[tuple[int, int, str]]:
    """(seq, entries, root) that each `migrated` entry states, for verify to check against the
    tree: entries 0..entries-1 had that root, and the entry comes right after them."""
    claims = []
    for row in ledger.rows_with_action("migrated"):
        try:
            details = entries.parse_leaving_form(row.body).details
        except entries.MalformedEntry:
            continue  # the ledger walk names it
        count, root = details.get("entries"), details.get("root")
        claims.append((row.seq, count if isinstance(count, int) else -1,
                       root if isinstance(root, str) else ""))
    return claims


def migration_problems(claims: list[tuple[int, int, str]], roots: dict[int, bytes]) -> list[str]:
    """What verify says of `migration_claims` against the roots it computed at those sizes."""
    found = []
    for seq, count, root in claims:
        if count != seq:
            found.append(f"entry {seq}: a migrated entry must follow the {seq} entries it copied "
                         f"(it says {count})")
        elif roots.get(count, b"").hex() != root:
            found.append(f"entry {seq}: the Merkle root of the {count} entries it says it copied "
                         "is not the one it states")
    return found


def _check_entry(row: EntryRow, prev: bytes | None, origin: str, replay: Replay) -> None:
    """One source entry, before it is written anywhere: its bytes, place, link and signature."""
    where = f"source entry {row.seq}"
    problems = []
    if entries.leaf_hash(row.body) != row.leaf_hash:
        problems.append(f"{where}: its stored leaf hash does not match its bytes")
    try:
        entry = entries.parse(row.body)
    except entries.MalformedEntry as exc:
        raise VerificationFailed([f"{where} is malformed: {exc}: the migration stopped"]) \
            from None
    if entry.seq != row.seq or entry.log != origin:
        problems.append(f"{where}: its bytes say entry {entry.seq} of log {entry.log!r}")
    if entry.prev != (prev.hex() if prev is not None else None):
        problems.append(f"{where}: does not link to the entry before it (hash chain broken)")
    signer = replay.signer(entry)
    signed = entries.SignedEntry(body=row.body, signature=row.signature)
    if signer is None or not entries.signature_valid(signed, signer.public_key):
        problems.append(f"{where}: bad signature (or signed by a key not enrolled then)")
    replay.apply(entry)  # the rules' findings are verify's to report, on both archives alike
    if problems:
        raise VerificationFailed([f"{p}: the migration stopped" for p in problems])


def _public_ledger(config: dict[str, Any] | None) -> dict[str, Any]:
    """A ledger as a signed entry may name it: its kind, never a URL (it may carry a password)."""
    return {"backend": str((config or {}).get("backend", "sqlite"))}


def _source_config(root: Path) -> dict[str, Any]:
    config = canonical.load_json((root / CONFIG).read_text())
    if not isinstance(config, dict):
        raise ArchiveError(f"{root / CONFIG} is damaged")
    return config


def _source_ledger_config(root: Path) -> dict[str, Any] | None:
    found = _source_config(root).get("ledger")
    return found if isinstance(found, dict) else None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), PRIVATE_FILE)
        out.write(json.dumps(value, indent=2) + "\n")
        out.flush()
        os.fsync(out.fileno())
