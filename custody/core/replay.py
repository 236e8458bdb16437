"""The one replay of the log, pure: entries folded in order into everything the log implies.

Who may sign (the registry), who holds each item and the open transfer offers (the custody book),
which items each case and incident holds, and each item's first record and sightings are never
stored: they follow from the entries. This module is the only place that derives them, and the only
place that states the rules an entry must keep (docs/FORMAT.md §5.6). `Replay.apply` folds in one
parsed entry and returns the rules it breaks, one line each, naming the entry and the rule:

    entry 7: time 'yesterday' is not RFC 3339 UTC with microseconds and Z (rule time-format)

Signatures are not checked here (the verifiers check them with `signer(entry)`'s key, in parallel
on a large log); no clock is read: a verifier passes its own clock in as `now`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from custody.core import derivation, handin, permissions, sealing
from custody.core.chain import (
    ARCHIVE_HOLDER,
    FIRST_RECORD,
    ChainError,
    CustodyBook,
    Offer,
    Tables,
    in_memory,
)
from custody.core.custodians import (
    ARCHIVE_ROLE,
    Custodian,
    Registry,
    RegistryError,
    custodian_from,
)
from custody.core.entry import Entry

TIME_PATTERN = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\Z")
"""An entry's `time`: RFC 3339 in UTC, exactly six fraction digits, `Z` (docs/FORMAT.md §5.1)."""
SKEW = timedelta(minutes=5)
"""How far an entry's time may run behind the latest earlier entry's, or ahead of the verifier's
clock: the clocks of several intake stations writing to one archive (docs/FORMAT.md §5.6)."""

# Actions about an item that must already have a first record (`ingest` or `received`).
ABOUT_AN_ITEM = frozenset({
    "sighting", "access", "transfer-offer", "transfer-accept", "transfer-withdraw",
    "case-add", "case-remove", "incident-add", "note", "tag", "handed_in", "enriched",
})
# with a `case`: files the item
CASE_FILING = ("ingest", "sighting", "received", "derived", "case-add")
ADVISORY = frozenset({"enriched-by"})
"""Rules every writer refuses (custody enrich, submit, the API) but a verifier reports as a
notice, not a problem: round 25 let any field custodian or investigator sign an `enriched`
reading, and an archive or package holding one must still verify (the log is append-only and
copies of it are in court). No reader uses such a reading (docs/FORMAT.md §5.6)."""


def parse_time(value: str) -> datetime | None:
    """An entry time as an aware UTC datetime, or None if it is not in the one allowed form."""
    if not TIME_PATTERN.match(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:  # the right shape but no such date (month 13, 30 February)
        return None


@dataclass(frozen=True, slots=True)
class FirstRecord:
    """How an item came into the archive: its `ingest` or `received` entry."""

    seq: int
    time: str
    actor: str
    action: str
    size: object
    metadata_sha256: object

    def __reduce__(self) -> tuple[type[FirstRecord], tuple[object, ...]]:
        """Pickled as its fields (verify keeps first records in scratch tables: store/spill.py);
        faster to read back than a slotted dataclass's own state."""
        return FirstRecord, (self.seq, self.time, self.actor, self.action, self.size,
                             self.metadata_sha256)


@dataclass(frozen=True, slots=True)
class Removal:
    """An item taken out of a case, and why."""

    item: str
    seq: int
    time: str
    reason: object


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule an entry breaks: `rule` is its id in docs/FORMAT.md §5.6."""

    seq: int
    rule: str
    text: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.text} (rule {self.rule})"


@dataclass(slots=True)
class _Case:
    members: MutableMapping[str, int]  # item -> seq that filed it, in order
    removed: MutableMapping[str, Removal]



def case_change(e: Entry) -> tuple[str, bool] | None:
    """How one entry changes its item's case membership: (case, True) when it files the item
    under `details.case` (ingest, received, sighting, case-add), (case, False) for case-remove,
    None otherwise. The one rule of membership: the replay and the search index both follow it.
    The case is the signed string as it is (a verifier normalises nothing)."""
    case = e.details.get("case")
    if e.item is None or not isinstance(case, str) or not case:
        return None
    if e.action in CASE_FILING:
        return case, True
    if e.action == "case-remove":
        return case, False
    return None


class Replay:
    """Fold entries in log order (`apply`); read the state through the views below."""

    def __init__(self, now: datetime | None = None, skew: timedelta = SKEW,
                 tables: Tables = in_memory) -> None:
        """`tables`: where the state that grows with the log is kept (dicts by default; verify
        passes tables that keep most of it out of memory, store/spill.py)."""
        self.now = now
        self.skew = skew
        self.registry = Registry()
        self.book = CustodyBook(tables)
        self._tables = tables
        self._latest: datetime | None = None
        self._latest_seq = -1
        self._archive_key: str | None = None
        self._first: MutableMapping[str, FirstRecord] = tables("first")
        self._sightings: MutableMapping[str, list[int]] = tables("sightings")
        self._cases: dict[str, _Case] = {}
        self._item_cases: MutableMapping[str, list[str]] = tables("item-cases")
        self._incidents: dict[str, Mapping[str, object]] = {}  # one an incident: few
        self._incident_items: MutableMapping[str, list[str]] = tables("incident-items")
        self._item_incidents: MutableMapping[str, list[str]] = tables("item-incidents")
        # derivative -> original (docs/FORMAT.md §5.4.1)
        self._originals: MutableMapping[str, str] = tables("originals")
        self._derivatives: MutableMapping[str, list[str]] = tables("derivatives")
        # statement id -> the entry that embeds it
        self._statements: MutableMapping[str, int] = tables("statements")
        self._epochs: list[tuple[int, str]] = []  # a sealed archive's content keys (§12.5)
        # handed_in seq -> (item, centre key) of a receipt whose inclusion proof holds (§12.4)
        self._receipts: MutableMapping[int, tuple[str, str]] = tables("receipts")

    # Folding ------------------------------------------------------------------------------------

    def signer(self, entry: Entry) -> Custodian | None:
        """Whose key must verify `entry`'s signature (call before `apply`): for entry 0 the
        archive key it names, else its actor if enrolled and unrevoked at that entry."""
        if entry.seq == 0:
            try:
                return custodian_from(entry.details.get("archive"), ARCHIVE_ROLE, 0)
            except RegistryError:
                return None
        return self.registry.signer(entry.actor, entry.seq)

    def apply(self, entry: Entry) -> list[str]:
        """Fold in one entry; the rules it breaks, one line each (empty when it keeps them all).
        A rule-breaking entry changes the state only where it still can (a first record still
        records its item), so later entries are judged against the log as it stands."""
        return [str(v) for v in self.fold(entry)]

    def verdicts(self, entry: Entry) -> tuple[list[str], list[str]]:
        """As `apply`, for a verifier: (problems, notices), a rule in ADVISORY being a notice."""
        problems: list[str] = []
        notices: list[str] = []
        for v in self.fold(entry):
            if v.rule in ADVISORY:
                notices.append(f"{v}: a reading no one uses")
            else:
                problems.append(str(v))
        return problems, notices

    def fold(self, entry: Entry) -> list[Violation]:
        """As `apply`, the violations as values."""
        return [Violation(entry.seq, rule, text) for rule, text in self._violations(entry)]

    def _violations(self, e: Entry) -> list[tuple[str, str]]:
        found = self._check_time(e)
        if e.statement_id is not None:  # format 2; a log mixes both formats in any order
            found += self._check_statement(e)
        signer = self.registry.signer(e.actor, e.seq)
        if e.seq == 0:
            if e.action != "init":
                found.append(("genesis", "is not the archive's init entry"))
        elif e.actor == self._archive_key or self._is_archive_key(e.actor):
            found.append(("archive-key", "signed by the archive key, which signs entry 0 only"))
        elif signer is None:
            known = self.registry.by_id.get(e.actor)
            why = (known.ended() if known is not None else None) or "never enrolled"
            found.append(("signer-active", f"signed by key {e.actor}, which is not an enrolled "
                                           f"custodian at that point ({why})"))
        elif e.action not in permissions.MAY_SIGN:
            found.append(("action-known", f"unknown action {e.action!r}"))
        elif not permissions.may(signer.role, e.action):
            found.append(("role", f"{signer.name} (role {signer.role}) may not sign a "
                                  f"{e.action} entry"))
        found += self._check_item(e)
        if e.action == "derived":
            found += self._check_derived(e)
        if e.action in ("key-backup", "key-restore"):
            found += self._check_own_key(e, signer)
        if e.action == "handed_in":
            found += self._check_receipt(e)
        if e.action == "enriched":
            found += self._check_enriched(e, signer)
        found += self._check_epoch(e)
        role = signer.role if signer is not None else None
        if e.action == "transfer-offer":
            found += self._check_receiver(e)
        try:
            self.book.apply(e, role)
        except ChainError as exc:
            found.append((exc.rule, str(exc)))
        try:
            self.registry.apply(e)
        except RegistryError as exc:
            found.append((exc.rule, str(exc)))
        else:
            if e.action == "key-rotate":  # the new key holds what the old one held
                new = self.registry.by_id[str(e.details["old_key_id"])].successor
                self.book.rotate(str(e.details["old_key_id"]), str(new), e.seq, e.time)
        if e.seq == 0 and e.action == "init":
            archive = self.signer(e)
            self._archive_key = archive.key_id if archive is not None else None
            if archive is not None and e.actor != archive.key_id:
                found.append(("genesis", "is not signed by the archive key it names"))
        self._fold_item(e)
        return found

    def _check_epoch(self, e: Entry) -> list[tuple[str, str]]:
        """A sealed archive's content key epochs: entry 0's, then one per re-keying revoke or
        admin's key rotation after a loss."""
        if e.seq == 0 and e.action == "init":
            first = e.details.get("sealing")
            if isinstance(first, dict) and isinstance(first.get("recipient"), str):
                self._epochs = [(0, first["recipient"])]
            return []
        known = [recipient for _, recipient in self._epochs]
        problem = sealing.epoch_problem(e.action, e.details, bool(known), known, e.actor)
        if problem is not None:
            return [("sealing-epoch", problem)]
        started = sealing.epoch_started(e.details) if e.action in sealing.EPOCH_ACTIONS else None
        if started is not None:
            self._epochs.append((e.seq, started[1]))
        return []

    def _is_archive_key(self, key_id: str) -> bool:
        known = self.registry.by_id.get(key_id)
        return known is not None and known.role == ARCHIVE_ROLE

    def _check_own_key(self, e: Entry, signer: Custodian | None) -> list[tuple[str, str]]:
        """A key backup or restore names the signer's own key, or (an admin's) the archive key
        in force (docs/KEYS.md)."""
        named = e.details.get("key_id")
        if named == e.actor:
            return []
        archive = self.registry.archive_key_for(e.seq + 1)
        if archive is not None and named == archive.key_id and signer is not None \
                and signer.role == "admin":
            return []
        return [("key-own", f"records a {e.action} of key {named!r}, which is neither the "
                            "signer's own nor (by an admin) the archive key")]

    def _check_time(self, e: Entry) -> list[tuple[str, str]]:
        when = parse_time(e.time)
        if when is None:
            return [("time-format", f"time {e.time!r} is not RFC 3339 UTC with microseconds "
                                    "and Z")]
        found: list[tuple[str, str]] = []
        if self._latest is not None and when < self._latest - self.skew:
            found.append(("time-order", f"time {e.time} is more than {_minutes(self.skew)} "
                                        f"before entry {self._latest_seq}'s"))
        if self.now is not None and when > self.now + self.skew:
            found.append(("time-future", f"time {e.time} is more than {_minutes(self.skew)} "
                                         "ahead of the verifier's clock"))
            return found  # not a mark for later entries: one forged date is one problem
        if self._latest is None or when > self._latest:
            self._latest, self._latest_seq = when, e.seq
        return found

    def _check_statement(self, e: Entry) -> list[tuple[str, str]]:
        """A format 2 entry's statement: in the log once, and not dated after its entry."""
        found: list[tuple[str, str]] = []
        sid = str(e.statement_id)
        if sid in self._statements:
            found.append(("statement-replay", f"embeds statement {sid[:16]}, which entry "
                                              f"{self._statements[sid]} already embeds"))
        else:
            self._statements[sid] = e.seq
        claimed, when = parse_time(str(e.claimed_time)), parse_time(e.time)
        if claimed is None:
            found.append(("statement-time", f"its statement's time {e.claimed_time!r} is not "
                                            "RFC 3339 UTC with microseconds and Z"))
        elif when is not None and claimed > when + self.skew:
            found.append(("statement-time", f"its statement's time {e.claimed_time} is more than "
                                            f"{_minutes(self.skew)} after the entry's {e.time}"))
        return found

    def _check_item(self, e: Entry) -> list[tuple[str, str]]:
        if e.action in FIRST_RECORD and e.item is not None and e.item in self._first:
            return [("first-record", f"item {e.item} was already recorded (second {e.action})")]
        if e.action in ABOUT_AN_ITEM and (e.item is None or e.item not in self._first):
            if e.action == "transfer-offer":
                return []  # the custody book says it, in its own words
            return [("first-record", f"{e.action} of item {e.item}, which was never ingested")]
        if e.action == "held-elsewhere":
            named = e.details.get("items")
            if not isinstance(named, list) or not named:
                return [("held-recorded", "names no items")]
            return [("held-recorded", f"names item {sha}, which was never recorded")
                    for sha in named if sha not in self._first] + self._check_held_at_centre(e)
        return []

    def _check_enriched(self, e: Entry, signer: Custodian | None) -> list[tuple[str, str]]:
        """A later reading of an item (docs/FORMAT.md §5.4 `enriched`) is signed by the custodian
        who recorded the item (any key of theirs, rotations included) or an admin, and completes
        the document its first record signed: no one else's reading stands beside the record."""
        first = self._first.get(e.item or "")
        if first is None or signer is None:
            return []  # first-record and signer-active say it
        found: list[tuple[str, str]] = []
        if not may_enrich(self.registry, signer, first.actor):
            found.append(("enriched-by", f"enriched reading of item {e.item} signed by "
                                         f"{signer.name} (role {signer.role}), who neither "
                                         f"recorded the item ({self.name_of(first.actor)} did, "
                                         f"entry {first.seq}) nor is an admin"))
        if e.details.get("metadata_sha256") != first.metadata_sha256:
            found.append(("enriched-record", f"enriched reading of item {e.item} names document "
                                             f"{str(e.details.get('metadata_sha256'))[:16]}, not "
                                             f"the one its first record (entry {first.seq}) "
                                             "signed"))
        return found

    def _check_receipt(self, e: Entry) -> list[tuple[str, str]]:
        problems = handin.receipt_problems(e.details, e.item)
        if not problems and handin.ENTRY in e.details and e.item is not None:
            self._receipts[e.seq] = (e.item, str(e.details.get("centre_key")))
        return [("handed-in", p) for p in problems]

    def _check_held_at_centre(self, e: Entry) -> list[tuple[str, str]]:
        """A `held-elsewhere` by the centre's receipts (§12.4): each item named has, among the
        `receipts` listed, an earlier handed_in entry whose inclusion proof holds, of that item,
        signed by the centre key named."""
        centre = e.details.get("centre")
        if centre is None:
            return []
        receipts = centre.get("receipts") if isinstance(centre, dict) else None
        if not isinstance(receipts, list):
            return [("held-receipt", "its centre names no receipts")]
        covered = {self._receipts[s] for s in receipts if isinstance(s, int)
                   and not isinstance(s, bool) and s in self._receipts}
        key = str(centre.get("key"))
        return [("held-receipt", f"names item {sha}, which no listed receipt of centre key "
                                 f"{key[:40]} covers")
                for sha in e.details.get("items") or [] if (sha, key) not in covered]

    def _check_derived(self, e: Entry) -> list[tuple[str, str]]:
        found = derivation.record_problems(e.details, e.item)
        original = e.details.get("original")
        if not found and isinstance(original, str) and original not in self._first:
            found.append(("derived-original", f"names original {original}, which has no first "
                                              "record before it"))
        return found

    def _check_receiver(self, e: Entry) -> list[tuple[str, str]]:
        to = e.details.get("to")
        who = self.registry.signer(to, e.seq) if isinstance(to, str) else None
        if who is None or who.role == ARCHIVE_ROLE:
            return [("offer-receiver", f"offers custody to key {to!r}, which is not an enrolled, "
                                       "unrevoked custodian at that point")]
        if not permissions.may(who.role, "transfer-accept"):
            return [("offer-receiver", f"offers custody to {who.name} (role {who.role}), who "
                                       "may not accept it")]
        return []

    def _fold_item(self, e: Entry) -> None:
        item, d = e.item, e.details
        if item is None:
            if e.action == "incident" and isinstance(d.get("incident"), str):
                self._incidents[d["incident"]] = MappingProxyType(dict(d) | {"seq": e.seq})
            return
        if e.action in FIRST_RECORD and item not in self._first:
            self._first[item] = FirstRecord(e.seq, e.time, e.actor, e.action, d.get("size"),
                                            d.get("metadata_sha256"))
            original = d.get("original")
            if e.action == "derived" and isinstance(original, str) and original in self._first:
                self._originals[item] = original
                _add(self._derivatives.setdefault(original, []), item)
        elif e.action in (*FIRST_RECORD, "sighting"):
            self._sightings.setdefault(item, []).append(e.seq)
        change = case_change(e)
        if change is not None and change[1]:
            self._file(item, change[0], e.seq)
        elif change is not None:
            self._unfile(item, change[0], e)
        elif e.action == "incident-add" and isinstance(d.get("incident"), str):
            _add(self._incident_items.setdefault(d["incident"], []), item)
            _add(self._item_incidents.setdefault(item, []), d["incident"])

    def _file(self, item: str, case: str, seq: int) -> None:
        c = self._cases.get(case)
        if c is None:
            c = self._cases[case] = _Case(self._tables(f"case-members {case}"),
                                          self._tables(f"case-removed {case}"))
        c.members.setdefault(item, seq)
        c.removed.pop(item, None)
        _add(self._item_cases.setdefault(item, []), case)

    def _unfile(self, item: str, case: str, e: Entry) -> None:
        c = self._cases.get(case)
        if c is None or item not in c.members:
            return
        del c.members[item]
        c.removed[item] = Removal(item, e.seq, e.time, e.details.get("reason"))
        self._item_cases[item].remove(case)

    # Views --------------------------------------------------------------------------------------

    def epochs(self) -> tuple[tuple[int, str], ...]:
        """(seq of the entry that signed it, recipient) of each content key epoch, in order:
        empty for a clear archive (docs/FORMAT.md §12.5)."""
        return tuple(self._epochs)

    @property
    def archive_key(self) -> str | None:
        """The archive key's id, named by entry 0."""
        return self._archive_key

    def custodians(self) -> Mapping[str, Custodian]:
        return MappingProxyType(self.registry.by_id)

    def name_of(self, key_id: str) -> str:
        return self.registry.name_of(key_id)

    def holder(self, item: str, at_seq: int | None = None) -> str | None:
        """The item's holder now or just after entry `at_seq`: a key id, `ARCHIVE_HOLDER` for an
        item a field custodian handed in, or None before its first record."""
        return self.book.holder(item, at_seq)

    def offers(self) -> list[Offer]:
        return sorted(self.book.offers.values(), key=lambda o: o.seq)

    def pending_offers(self) -> list[Offer]:
        return sorted(self.book.pending(), key=lambda o: o.seq)

    def items(self) -> tuple[str, ...]:
        """Every recorded item, in order of first record."""
        return tuple(self._first)

    def first_record(self, item: str) -> FirstRecord | None:
        return self._first.get(item)

    def first_records(self) -> Mapping[str, FirstRecord]:
        """Every recorded item's first record, by item (the replay's own table, as kept by its
        `tables`: read it once the fold is done)."""
        return self._first

    def sightings(self, item: str) -> tuple[int, ...]:
        """Seqs of the entries that saw the item again after its first record."""
        return tuple(self._sightings.get(item, ()))

    def cases(self) -> tuple[str, ...]:
        return tuple(c for c, v in self._cases.items() if v.members)

    def cases_of(self, item: str) -> tuple[str, ...]:
        """The cases the item is filed under now, in order of filing."""
        return tuple(self._item_cases.get(item, ()))

    def case_members(self, case: str) -> tuple[str, ...]:
        """The items filed under `case` now, in order of filing."""
        c = self._cases.get(case)
        return tuple(c.members) if c is not None else ()

    def case_removals(self, case: str) -> tuple[Removal, ...]:
        """Items taken out of `case` and not filed again, in order of removal."""
        c = self._cases.get(case)
        return tuple(sorted(c.removed.values(), key=lambda r: r.seq)) if c is not None else ()

    def incident(self, incident: str) -> Mapping[str, object] | None:
        """The latest `incident` entry's details for this id (plus its `seq`)."""
        return self._incidents.get(incident)

    def original_of(self, item: str) -> str | None:
        """The item a derivative was made from (its `derived` entry's `original`), or None."""
        return self._originals.get(item)

    def derivatives_of(self, item: str) -> tuple[str, ...]:
        """The items derived from this one, in order of their `derived` entries."""
        return tuple(self._derivatives.get(item, ()))

    def ancestors(self, item: str) -> tuple[str, ...]:
        """Its original, that one's original, and so on (a log has no cycles: an original is
        recorded before its derivative)."""
        found: list[str] = []
        current = self._originals.get(item)
        while current is not None and current not in found:
            found.append(current)
            current = self._originals.get(current)
        return tuple(found)

    def incidents_of(self, item: str) -> tuple[str, ...]:
        return tuple(self._item_incidents.get(item, ()))

    def incident_members(self, incident: str) -> tuple[str, ...]:
        return tuple(self._incident_items.get(incident, ()))


def may_enrich(registry: Registry, signer: Custodian, recorded_by: str) -> bool:
    """Whether `signer` may sign an `enriched` reading of an item whose first record
    `recorded_by` signed: that custodian (any of their keys, rotations linking them) or an admin.
    Not a later holder: a transfer hands over custody, not the authorship of the record."""
    if signer.role == "admin":
        return True
    return signer.key_id in {c.key_id for c in registry.chain(recorded_by)}


def _add(values: list[str], value: str) -> None:
    if value not in values:
        values.append(value)


def _minutes(skew: timedelta) -> str:
    return f"{int(skew.total_seconds() // 60)} minutes"


__all__ = ["ADVISORY", "ARCHIVE_HOLDER", "SKEW", "TIME_PATTERN", "FirstRecord", "Removal", "Replay",
           "Violation", "may_enrich", "parse_time"]
