"""Verify an archive: every entry's form, chain link and signature, and every object's fixity.

`audit` walks everything and collects every finding (a reviewer sees all problems, not the first);
`verify` raises VerificationFailed listing them. Problems fail (exit 1); what could not be read
(`unreadable`: permissions, I/O errors) fails with exit 3 when nothing else is wrong; notices (an
object left unreferenced by a crash, a stray temp file) are reported and do not fail.
Verify only reads: nothing in the archive is written (docs/FORMAT.md §6.3).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custody.core import entry as entries
from custody.core import merkle, note, proofs
from custody.core.custodians import ARCHIVE_ROLE, Custodian
from custody.core.replay import FirstRecord, Replay
from custody.core.signing import SigningKey, private_key_form
from custody.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PROBLEM,
    CustodyError,
    NotFound,
    VerificationFailed,
)
from custody.ops import encryption, travel_records
from custody.ops.archive import Archive, registry_of, signed_config
from custody.ops.checkpoints import check_extras
from custody.ops.keyfiles import read_public_key
from custody.ops.migrate import migration_claims, migration_problems
from custody.ops.verify_pool import PARALLEL_FROM, EntryFindings, VerifyPool
from store.index_port import IndexStoreError
from store.ports import (
    Ledger,
    LedgerDamaged,
    LedgerUnreadable,
    ObjectCorrupt,
    ObjectMissing,
    ObjectStore,
    ObjectUnreadable,
)
from store.spill import ScratchError, SpillMapping, SpillTables

# From this many items a metadata check reads every document in one scan ordered by SHA-256 (as
# the items are sorted) instead of looking each one up.
METADATA_SCAN_FROM = 1000


@dataclass(slots=True)
class AuditReport:
    entries: int = 0
    objects: int = 0
    items: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # could not be read, so not checked
    retention: dict[str, dict[str, str | None]] = field(default_factory=dict)  # S3 Object Lock

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unreadable

    @property
    def exit_code(self) -> int:
        """1 when a problem was found, else 3 when something could not be read, else 0."""
        if self.problems:
            return EXIT_PROBLEM
        return EXIT_ERROR if self.unreadable else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries_checked": self.entries,
            "objects_checked": self.objects,
            "items": self.items,
            "checkpoints_checked": self.checkpoints,
            "problems": self.problems,
            "unreadable": self.unreadable,
            "notices": self.notices,
            "retention": self.retention,
        }


def audit(
    archive: Archive,
    item: str | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    external: list[note.Checkpoint] | None = None,
    objects: bool = True,
    now: datetime | None = None,
) -> AuditReport:
    """Check the whole ledger, its Merkle tree against every checkpoint the archive kept (and any
    `external` ones a reviewer holds), and the fixity of every object (or of `item`'s only).
    With `objects=False` only the record is checked (entries, tree, checkpoints), not content.
    `now` is the verifier's clock (default: this machine's), against which no entry may be dated
    ahead by more than the allowed skew (docs/FORMAT.md §5.6)."""
    global _index_keys
    pool = VerifyPool(archive.objects)
    _index_keys = archive.content_key  # before any worker forks
    scratch: list[SpillTables] = []  # the replay's state, closed (deleted) when verify ends
    report = AuditReport()
    try:
        return _audit(archive, pool, item, on_progress, external or [], objects, now, scratch,
                      report)
    except ScratchError as exc:  # a full temporary folder: what was found so far, and that
        report.unreadable.append(f"cannot check the log to its end: {exc}")
        return report
    finally:
        pool.close()
        _index_keys = None
        for tables in scratch:
            tables.close()


def _audit(
    archive: Archive,
    pool: VerifyPool,
    item: str | None,
    on_progress: Callable[[str, int], None] | None,
    external: list[note.Checkpoint],
    objects: bool,
    now: datetime | None,
    scratch: list[SpillTables],
    report: AuditReport,
) -> AuditReport:
    progress = on_progress or (lambda _stage, _n: None)
    try:
        archive.ledger.open()  # read-only, or says why it cannot
        pool.start(parallel=archive.ledger.size() >= PARALLEL_FROM)
        # The search index's check replays the whole log on its own: started first, on a worker,
        # it runs beside the walk instead of after everything else.
        index_check = pool.beside(_search_index_findings, archive.root,
                                  archive.content_key is not None) \
            if objects and item is None else None
        kept = _open_checkpoints(archive, report)
        moved = migration_claims(archive.ledger)  # a copy's `migrated` entries state a root
        wanted = {cp.size for _, cp in kept} | {cp.size for cp in external} | \
            {count for _, count, _ in moved}
        clock = now or datetime.now(UTC)
        ingested, roots = _check_ledger(archive, report, progress, wanted, clock, pool, scratch)
        report.problems.extend(migration_problems(moved, roots))
        _check_checkpoints(archive, kept, roots, report)
        _check_external(external, roots, archive, report)
        check_extras(archive, report.problems, report.notices)
        _check_identity(archive, report)
    except LedgerDamaged as exc:  # missing, foreign, or a page torn or overwritten inside it
        report.problems.append(f"the ledger is destroyed: {exc}")
        return report
    except LedgerUnreadable as exc:
        report.unreadable.append(f"cannot read the ledger: {exc}")
        return report
    report.items = len(ingested)
    targets = {item: ingested[item]} if item is not None and item in ingested else ingested
    if item is not None and item not in ingested:
        report.problems.append(f"item {item} has no ingest entry")
    if not objects:
        return report
    pool.objects(sha for sha, _ in _in_order(targets))  # hashed by the workers meanwhile
    metadata = _metadata_problems(archive, targets, ingested, whole=item is None)
    _check_objects(archive, targets, report, progress, whole=item is None, pool=pool)
    report.problems.extend(metadata)
    if item is None:
        _check_search_index(archive, report, index_check)
    return report


def verify(archive: Archive, item: str | None = None) -> AuditReport:
    report = audit(archive, item)
    if report.problems or report.unreadable:
        raise VerificationFailed(report.problems + report.unreadable)
    return report


class _WalkAgain(Exception):
    """The quick walk met an entry it leaves to the exact walk (one not canonical or malformed)."""


def _check_ledger(
    archive: Archive,
    report: AuditReport,
    progress: Callable[[str, int], None],
    wanted_sizes: set[int],
    now: datetime,
    pool: VerifyPool,
    scratch: list[SpillTables],
) -> tuple[Mapping[str, FirstRecord], dict[int, bytes]]:
    """The quick walk when the pool runs workers (they check each entry's canonical form while
    this process replays it); if any entry is malformed or not canonical, the whole log is walked
    again the exact way (each entry parsed and checked here, in order), so a damaged log gets the
    same findings either way. Each walk keeps its replay's state in its own scratch tables."""
    if pool.parallel:
        entries_before, problems_before = report.entries, len(report.problems)
        notices_before = len(report.notices)
        scratch.append(SpillTables())
        try:
            return _walk(archive, report, progress, wanted_sizes, now, pool, scratch[-1],
                         exact=False)
        except _WalkAgain:
            pool.entries_done()  # drain the quick walk's checks; their findings are dropped
            pool.entry_findings = EntryFindings()
            report.entries = entries_before
            del report.problems[problems_before:]
            del report.notices[notices_before:]
            scratch.pop().close()
    scratch.append(SpillTables())
    return _walk(archive, report, progress, wanted_sizes, now, pool, scratch[-1], exact=True)


def _walk(
    archive: Archive,
    report: AuditReport,
    progress: Callable[[str, int], None],
    wanted_sizes: set[int],
    now: datetime,
    pool: VerifyPool,
    tables: SpillTables,
    exact: bool,
) -> tuple[Mapping[str, FirstRecord], dict[int, bytes]]:
    origin = archive.config.origin
    archive_key = archive.config.archive_key
    # every rule of docs/FORMAT.md §5.6, and the items it records; its state per item (first
    # records, holders, cases) kept mostly on disk, so a huge log does not grow this process
    replay = Replay(now=now, tables=tables.table)
    expected_seq = 0
    prev_hash: bytes | None = None
    problems = report.problems
    tree = merkle.TreeBuilder()  # the tree as the entries' own bytes make it
    roots: dict[int, bytes] = {}
    stored_tree = StoredTree(archive.ledger)
    parse = entries.parse if exact else entries.parse_leaving_form
    for row in archive.ledger.rows():
        report.entries += 1
        if row.seq != expected_seq:
            problems.append(
                f"entries {expected_seq}..{row.seq - 1} are missing from the ledger"
                if row.seq > expected_seq
                else f"entry {row.seq} is out of order"
            )
        expected_seq = row.seq + 1
        where = f"entry {row.seq}"
        leaf = entries.leaf_hash(row.body)
        stored_tree.expect(tree.append(leaf))
        if tree.size in wanted_sizes:
            roots[tree.size] = tree.root()
        if row.leaf_hash != leaf:
            problems.append(f"{where}: stored leaf hash does not match its bytes")
        try:
            entry = parse(row.body)
        except entries.MalformedEntry as exc:
            if not exact:
                raise _WalkAgain from None
            problems.append(f"{where}: malformed: {exc}")
            prev_hash = leaf
            continue
        if entry.seq != row.seq:
            problems.append(f"{where}: its bytes say it is entry {entry.seq} (reordered?)")
        if entry.log != origin:
            problems.append(f"{where}: belongs to log {entry.log!r}, not this archive's")
        expected_prev = prev_hash.hex() if prev_hash is not None else None
        if entry.prev != expected_prev:
            problems.append(f"{where}: does not link to the entry before it (hash chain broken)")
        columns = (row.time, row.actor, row.action, row.item)
        if columns != (entry.time, entry.actor, entry.action, entry.item):
            problems.append(f"{where}: index columns disagree with the signed entry")
        signed = entries.SignedEntry(body=row.body, signature=row.signature)
        signer = None
        if row.seq == 0:
            _check_genesis(entry, signed, archive_key.raw, problems)
        else:
            signer = replay.signer(entry)
        if signer is not None or not exact:  # the quick walk leaves every form check to the pool
            key = signer.public_key if signer is not None else None
            pool.entry(row.seq, key, row.body, row.signature)
        broken, advised = replay.verdicts(entry)
        problems.extend(broken)
        report.notices.extend(advised)
        prev_hash = leaf
        if report.entries % 10000 == 0:
            progress("ledger", report.entries)
    findings = pool.entries_done()
    if findings.not_canonical and not exact:
        raise _WalkAgain
    for seq in findings.bad_signatures:
        actor = entries.parse(archive.ledger.row(seq).body).actor  # type: ignore[union-attr]
        problems.append(f"entry {seq}: bad signature by {replay.name_of(actor)} ({actor})")
    if report.entries == 0:
        problems.append("the ledger is empty (no genesis entry)")
    roots[tree.size] = tree.root()
    problems.extend(stored_tree.finish(tree.size))
    if len(replay.epochs()) > 1:  # a sealed archive re-keyed on revocations (FORMAT.md §12.5)
        report.notices.append("content keys: " + ", ".join(
            f"epoch {n} from entry {seq}" for n, (seq, _) in enumerate(replay.epochs())))
    return replay.first_records(), roots


class StoredTree:
    """Every stored Merkle node (what proofs and exports are made from) against the tree the
    entries' own bytes make: a node off the root's path is checked too, not only the root.
    Nodes are compared a batch of one level at a time (one query, one list comparison); at most
    NODE_PROBLEMS are named."""

    BATCH = 4096
    NODE_PROBLEMS = 20

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._pending: dict[int, list[tuple[int, bytes]]] = {}
        self.problems: list[str] = []

    def expect(self, created: list[merkle.NodeEntry]) -> None:
        """The nodes one appended leaf creates (TreeBuilder.append's result)."""
        for level, index, value in created:
            batch = self._pending.setdefault(level, [])
            batch.append((index, value))
            if len(batch) >= self.BATCH:
                self._compare(level)

    def _compare(self, level: int) -> None:
        expected = self._pending.pop(level, [])
        if not expected:
            return
        stored = self._ledger.nodes_between(level, expected[0][0], expected[-1][0])
        if stored == expected:
            return
        have = dict(stored)
        for index, value in expected:
            where = f"stored Merkle tree node ({level}, {index})"
            if index not in have:
                self.problems.append(f"{where} is missing (proofs from this archive would fail)")
            elif have[index] != value:
                self.problems.append(
                    f"{where} does not match the entries (proofs and exports using it would fail)"
                )

    def finish(self, size: int) -> list[str]:
        for level in sorted(self._pending):
            self._compare(level)
        for level, index in self._ledger.nodes_beyond(size, self.NODE_PROBLEMS):
            self.problems.append(
                f"stored Merkle tree node ({level}, {index}) lies beyond the ledger's "
                f"{size} entries"
            )
        if len(self.problems) > self.NODE_PROBLEMS:
            more = len(self.problems) - self.NODE_PROBLEMS
            self.problems[self.NODE_PROBLEMS:] = [
                f"... and {more} more stored Merkle tree node problems"
            ]
        return self.problems


def _open_checkpoints(archive: Archive, report: AuditReport) -> list[tuple[int, note.Checkpoint]]:
    keys = registry_of(archive.ledger).archive_keys  # entry 0's key, then each rotation's
    if not keys:
        keys = [Custodian(archive.config.archive_key.key_id, archive.config.archive_key.raw,
                          archive.config.archive_key.name, ARCHIVE_ROLE, 0)]
    kept: list[tuple[int, note.Checkpoint]] = []
    for row in archive.ledger.checkpoints():
        try:
            cp = proofs.open_with_key_chain(row.note, archive.config.origin, keys)
        except VerificationFailed as exc:
            report.problems.extend(f"checkpoint #{row.id}: {p.removeprefix('checkpoint: ')}"
                                   for p in exc.problems)
            continue
        if cp.size != row.size:
            report.problems.append(
                f"checkpoint #{row.id}: stored size {row.size} differs from "
                f"the signed size {cp.size}"
            )
        kept.append((row.id, cp))
    return kept


def _check_against(
    label: str, cp: note.Checkpoint, roots: dict[int, bytes], size: int, problems: list[str]
) -> None:
    if cp.size > size:
        problems.append(
            f"{label} covers {cp.size} entries but the ledger holds only {size}: "
            "the log was truncated"
        )
    elif roots.get(cp.size) != cp.root_hash:
        problems.append(
            f"{label} (size {cp.size}) does not match the ledger's tree at that size: "
            "history was rewritten since it was signed"
        )


def _check_checkpoints(
    archive: Archive,
    kept: list[tuple[int, note.Checkpoint]],
    roots: dict[int, bytes],
    report: AuditReport,
) -> None:
    size = report.entries
    by_size: dict[int, tuple[int, bytes]] = {}
    for cid, cp in kept:
        if cp.origin != archive.config.origin:
            report.problems.append(f"checkpoint #{cid} is for another log ({cp.origin})")
            continue
        seen = by_size.get(cp.size)
        if seen is not None and seen[1] != cp.root_hash:
            report.problems.append(
                f"fork: checkpoints #{seen[0]} and #{cid} both sign size "
                f"{cp.size} with different roots"
            )
        by_size.setdefault(cp.size, (cid, cp.root_hash))
        _check_against(f"checkpoint #{cid}", cp, roots, size, report.problems)
    report.checkpoints = len(kept)


def _check_external(
    external: list[note.Checkpoint], roots: dict[int, bytes], archive: Archive, report: AuditReport
) -> None:
    for cp in external:
        if cp.origin != archive.config.origin:
            report.problems.append(f"the given checkpoint is for another log ({cp.origin})")
            continue
        _check_against("the given checkpoint", cp, roots, report.entries, report.problems)


def _check_genesis(
    entry: entries.Entry, signed: entries.SignedEntry, archive_key: bytes, problems: list[str]
) -> None:
    if entry.action != "init":
        return  # the replay names it (rule genesis)
    genesis_key = entry.details.get("archive", {}).get("public_key")
    if genesis_key != base64.b64encode(archive_key).decode():
        problems.append("entry 0: names an archive key other than the one in custody.json")
    if not entries.signature_valid(signed, archive_key):
        problems.append("entry 0: bad signature by the archive key")


def _in_order(records: Mapping[str, FirstRecord]) -> Iterator[tuple[str, FirstRecord]]:
    """(item, first record) in item order, read from disk a page at a time when spilled."""
    if isinstance(records, SpillMapping):
        return records.sorted_items()
    return iter(sorted(records.items()))


def _check_objects(
    archive: Archive,
    targets: Mapping[str, FirstRecord],
    report: AuditReport,
    progress: Callable[[str, int], None],
    whole: bool,
    pool: VerifyPool,
) -> None:
    """The outcomes of the fixity checks queued on `pool` (every target, in sorted order)."""
    store = archive.objects
    held = travel_records.held_elsewhere(archive.ledger)
    for (sha256, outcome, value), (queued, info) in zip(pool.object_outcomes(),
                                                        _in_order(targets), strict=True):
        assert sha256 == queued
        if outcome == "missing" and sha256 in held:  # emptied on purpose, held elsewhere (§12.4)
            report.notices.append(f"object {sha256}: held elsewhere ({held[sha256]}), not on "
                                  "this device")
            continue
        if outcome == "missing":
            report.problems.append(f"object {sha256} (ingested in entry {info.seq}) is missing")
            continue
        if outcome == "corrupt":
            report.problems.append(f"{value} (ingested in entry {info.seq})")
            continue
        if outcome == "unreadable":  # permissions, an I/O error: not checked, and said so
            report.unreadable.append(f"{value} (ingested in entry {info.seq})")
            continue
        if value != info.size:
            report.problems.append(
                f"object {sha256} is {value} bytes; its ingest entry says {info.size}"
            )
        if store.keeps_retention:  # a local folder's stat would repeat what fixity just found
            _check_retention(store, sha256, report)
        report.objects += 1
        progress("objects", report.objects)
    if whole:
        kept = _kept_evidence(archive, report)
        try:
            for sha256 in store:
                if sha256 not in targets and sha256 not in kept:
                    report.notices.append(
                        f"object {sha256} has no ingest entry (left by an "
                        "interrupted ingest; harmless, re-ingest to record it)"
                    )
            for where in store.unfinished_writes():
                report.notices.append(
                    f"temporary file {where} left by an interrupted write (harmless)"
                )
            for where in store.quarantined():
                report.notices.append(
                    f"{where}: a damaged file set aside when its object was "
                    "repaired (kept; the entry that repaired it names it)"
                )
        except ObjectUnreadable as exc:
            report.unreadable.append(f"cannot list the objects: {exc}")


def _check_retention(store: ObjectStore, sha256: str, report: AuditReport) -> None:
    """A store with retention (S3 Object Lock) must hold every object under one that has not
    lapsed: without it the object could be deleted by whoever holds the store's credentials."""
    try:
        held = store.retention(sha256)
    except (ObjectMissing, ObjectCorrupt):
        return  # named already by the check
    except ObjectUnreadable as exc:
        report.unreadable.append(f"retention of {sha256}: {exc}")
        return
    if held is None:
        return  # the folder keeps no retention
    report.retention[sha256] = {"mode": held.mode, "retain_until": held.retain_until}
    if held.mode is None or held.retain_until is None:
        report.problems.append(f"object {sha256} has no Object Lock retention: it could be "
                               "deleted")
    elif held.retain_until <= datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"):
        report.problems.append(f"object {sha256}: its Object Lock retention lapsed on "
                               f"{held.retain_until}: it could be deleted")


def _kept_evidence(archive: Archive, report: AuditReport) -> set[str]:
    """Objects an import keeps as evidence (the sender's signed records, docs/PACKAGES.md): named
    by `received`/`sighting` entries, they must be present and intact, and are no orphans."""
    kept: dict[str, int] = {}
    for row in archive.ledger.rows_with_action("received", "sighting"):
        if b'"evidence"' in row.body:
            try:
                evidence = entries.parse(row.body).details.get("evidence")
            except entries.MalformedEntry:
                continue  # already a problem of the ledger check
            if isinstance(evidence, dict):
                kept.update({str(sha): row.seq for sha in evidence.values()})
    for sha256, seq in sorted(kept.items()):
        try:
            archive.objects.check(sha256)
        except (ObjectMissing, ObjectCorrupt, ValueError) as exc:
            report.problems.append(f"evidence kept by entry {seq}: {exc}")
        except ObjectUnreadable as exc:
            report.unreadable.append(f"evidence kept by entry {seq}: {exc}")
    return set(kept)


def _metadata_problems(
    archive: Archive,
    targets: Mapping[str, FirstRecord],
    ingested: Mapping[str, FirstRecord],
    whole: bool,
) -> list[str]:
    """Each target's metadata document against the digest its first record signed, then (for a
    whole audit) any document row belonging to no recorded item; in SHA-256 order. Many targets
    are read in one ordered scan of the documents, a few by lookup."""
    wrong: list[str] = []
    unrecorded: list[str] = []

    def judge(sha256: str, info: FirstRecord, doc: bytes | None) -> None:
        if doc is None:
            wrong.append(f"item {sha256}: its metadata document is missing")
        elif hashlib.sha256(doc).hexdigest() != info.metadata_sha256:
            wrong.append(
                f"item {sha256}: metadata document does not match the digest "
                f"signed in entry {info.seq}"
            )

    if len(targets) < METADATA_SCAN_FROM:
        for sha256, info in _in_order(targets):
            judge(sha256, info, archive.ledger.metadata(sha256))
        if whole:
            unrecorded = [sha for sha in archive.ledger.metadata_items() if sha not in ingested]
    else:
        wanted = _in_order(targets)
        due = next(wanted, None)
        for sha256, doc in archive.ledger.all_metadata():
            while due is not None and due[0] < sha256:
                judge(*due, None)
                due = next(wanted, None)
            if due is not None and due[0] == sha256:
                judge(*due, doc)
                due = next(wanted, None)
            elif whole and sha256 not in ingested:
                unrecorded.append(sha256)
        while due is not None:
            judge(*due, None)
            due = next(wanted, None)
    # custody writes a metadata row only with the entry that records its item: any other row was
    # put there by hand. It is never signed; the ingest that first records the item sets it aside.
    return wrong + [
        f"metadata row for {sha256} belongs to no recorded item "
        "(not written by custody: ledger.db was edited)"
        for sha256 in unrecorded
    ]


def _check_identity(archive: Archive, report: AuditReport) -> None:
    """custody.json and keys/archive.key(.pub) are unsigned files: each must agree with what
    entry 0 signed (the archive's name, origin, creation time and key), or it is named."""
    signed = signed_config(archive.ledger.row(0))
    if signed is None:
        return  # entry 0 itself is unusable: the ledger check names that
    stated = archive.stated
    for what, claimed, real in (
        ("name", stated.name, signed.name),
        ("origin", stated.origin, signed.origin),
        ("created", stated.created, signed.created),
        ("archive_key name", stated.archive_key.name, archive.current_archive_key()[0].name),
    ):
        if claimed != real:
            report.problems.append(
                f"custody.json: {what} {claimed!r} differs from entry 0's {real!r} "
                "(custody.json is unsigned; the archive is what entry 0 signed)"
            )
    # after a rotation (docs/KEYS.md) the files name the archive key in force, not entry 0's
    current, named_in = archive.current_archive_key()
    if stated.archive_key.raw != current.raw:
        report.problems.append(
            f"custody.json: archive_key is not the archive key signed in entry {named_in}"
        )
    keys = archive.root / "keys"
    try:
        public = read_public_key(keys / "archive.key.pub")
        if public.raw != current.raw:
            report.problems.append(
                f"keys/archive.key.pub is not the archive key signed in entry {named_in} (it "
                f"holds key {public.key_id}, entry {named_in} names {current.key_id})"
            )
    except NotFound:
        report.notices.append("keys/archive.key.pub is missing (entry 0 holds the archive key)")
    except OSError as exc:
        report.unreadable.append(f"cannot read keys/archive.key.pub: {exc.strerror or exc}")
    except CustodyError as exc:
        report.problems.append(f"keys/archive.key.pub is not a public key file: {exc.message}")
    try:
        form = private_key_form((keys / "archive.key").read_bytes())
    except FileNotFoundError:
        report.notices.append(
            "keys/archive.key is not in this copy: new checkpoints cannot be signed here"
        )
        return
    except OSError as exc:
        report.unreadable.append(f"cannot read keys/archive.key: {exc.strerror or exc}")
        return
    # Which key an encrypted file holds is inside the encryption: it is checked against entry 0
    # whenever the key is unlocked (Archive.load_archive_key), not here.
    if form == "unencrypted":
        report.problems.append("keys/archive.key is not encrypted (anyone who reads it can sign)")
    elif form != "encrypted":
        report.problems.append("keys/archive.key is not an encrypted private key")


IndexFindings = tuple[list[str], list[str], list[str]]  # problems, notices, unreadable

# A sealed archive's content keys verify was given, for the index check on a pool worker: set
# before the workers fork, so they inherit it; never pickled to them (FORMAT.md §12.6).
_index_keys: encryption.ContentKeys | None = None


def unlock_to_check_index(archive: Archive, load_key: Callable[[], SigningKey]) -> str | None:
    """Open a sealed archive's content keys with the custodian's key verify was given, so that
    its sealed search index is checked like a clear one's. Returns why not, when that key opens
    none (verify goes on: nothing else it checks needs a key)."""
    try:
        archive.unlock(load_key())
    except CustodyError as exc:
        return exc.message
    return None


def _search_index_findings(root: Path, keyed: bool) -> IndexFindings:
    """The search index's check on a pool worker, on the archive opened afresh from its folder
    (a forked worker never uses its parent's ledger connection), as the command opens it, with
    the content keys verify holds (`keyed`) inherited from it."""
    archive = Archive.open(root)
    if keyed:
        if _index_keys is None:  # not inherited (a spawned worker): the caller runs it itself
            archive.ledger.close()
            raise RuntimeError("the content keys were not inherited")
        archive.content_key = _index_keys
    try:
        report = AuditReport()
        _check_search_index(archive, report)
        return report.problems, report.notices, report.unreadable
    finally:
        archive.ledger.close()


def _check_search_index(
    archive: Archive, report: AuditReport, on_worker: Future[IndexFindings] | None = None
) -> None:
    """index.db is derived, but a search that drops an item misrepresents the archive: its rows
    must be what a replay of the ledger gives (custody/search.py, docs/SEARCH.md). `on_worker`:
    the same check already running on a pool worker; if the worker could not run it, it is run
    here (so its failure, if any, is met exactly as without a worker)."""
    if on_worker is not None:
        try:
            problems, notices, unreadable = on_worker.result()
        except Exception:  # noqa: BLE001 - not swallowed: the check runs again here, below
            pass
        else:
            report.problems.extend(problems)
            report.notices.extend(notices)
            report.unreadable.extend(unreadable)
            return
    from custody.search.consistency import index_differences  # heavy; only verify needs it

    try:
        differences = index_differences(archive)
    except OSError as exc:
        report.unreadable.append(f"cannot read the search index: {exc.strerror or exc}")
        return
    except IndexStoreError as exc:  # its scratch replay is a temporary file: a full /tmp, say
        report.unreadable.append(f"cannot check the search index: {exc}")
        return
    report.problems.extend(differences.problems)
    report.notices.extend(differences.notices)
