"""Turning ledger entries and metadata documents into search index rows, and keeping the index
current. What the rows mean is decided here; storing and querying them is the index port's job
(store/index_port.py; its SQLite adapter is store/index.py). docs/SEARCH.md §1 gives the rules.
"""

from __future__ import annotations

import hashlib
from typing import Any

from custody.core import entry as entries
from custody.core import geo, sealing
from custody.core.chain import FIRST_RECORD  # ingest or received: an item's metadata arrives
from custody.core.custodians import Registry
from custody.core.replay import case_change
from custody.errors import CustodyError, UsageError
from custody.ops import encryption
from custody.ops import enrich as enrichment
from custody.ops.archive import Archive
from custody.ops.backends import sealed_index
from custody.search import c2pa_filter, fastparse
from custody.search.prefetch import NOT_PREFETCHED, Prefetch
from custody.search.reading import HASHED_KINDS, NO_READING, Reading, read_document
from custody.search.reading import as_dict as _dict
from custody.search.reading import clean_text as _text
from custody.search.reading import finite_number as _number
from custody.search.render import render_stale_rows, render_while_writing
from custody.search.times import (
    incident_interval,
)
from store.index_port import IncidentRow, IndexLocation, SearchIndex


def index_location(archive: Archive) -> IndexLocation:
    """Where this archive keeps its search index (a port the archive was built with); a sealed
    archive's is in memory, kept sealed whole, opened with the reader's content keys."""
    if archive.sealer is None:
        return archive.index
    return sealed_index(archive.root, archive.ledger, archive.sealer.recipient,
                        archive.content_key)


def open_index(archive: Archive) -> SearchIndex:
    """The archive's index (ARCHIVE/index.db); in memory, rebuilt for this run, when it cannot
    be written. A sealed archive's needs a custodian's key (docs/SEARCH.md "Sealed archives")."""
    if archive.sealer is not None and archive.content_key is None:
        raise UsageError("this archive is sealed: searching it needs a custodian's key",
                         hint="give --key FILE or set $CUSTODY_KEY")
    return index_location(archive).open()


def refresh(archive: Archive, store: SearchIndex, *, rebuild: bool = False,
            until: int | None = None, render: bool = True) -> dict[str, Any]:
    """Index the ledger entries added since the last refresh (all of them when rebuilding, when
    the index belongs to another archive, or when the entry it stopped at is no longer there);
    with `until`, only up to that entry. `render`: keep the stale items' search rows rendered
    (verify's replay, which only compares, does without)."""
    with store.writing():
        last = int(store.get("last_seq") or -1)
        origin = store.get("origin")
        foreign = origin is not None and origin != archive.config.origin
        gone = False  # the entry it stopped at is no longer in this ledger
        if not foreign and last >= 0:
            row = archive.ledger.row(last)
            gone = row is None or row.leaf_hash.hex() != store.get("last_leaf")
        reason = None
        if rebuild:
            reason = "asked"
        elif foreign:
            reason = "index of another archive"
        elif gone:
            reason = "the ledger no longer holds the entry the index stopped at"
        if reason is not None:
            # rows this ledger vouches for need not be overwritten as they are dropped; rows it
            # does not hold (another archive's, or entries no longer here) are
            store.reset(zero=foreign or gone)
            last = -1
        store.put("origin", archive.config.origin)
        if render:
            render_while_writing(store)
        indexer = Indexer(archive, store, int(store.get("skipped") or 0))
        indexer.prefetch = Prefetch.start(archive, last + 1, until)  # documents, on a 2nd core
        count = 0
        leaf = None
        try:
            for row in archive.ledger.rows(last + 1):
                if until is not None and row.seq > until:
                    break
                indexer.apply(row.seq, row.body)
                last, count, leaf = row.seq, count + 1, row.leaf_hash
        finally:
            if indexer.prefetch is not None:
                indexer.prefetch.close()
        indexer.finish()
        if render:
            render_stale_rows(store)  # in this transaction: no reader sees a stale row kept
        if leaf is not None:
            store.put("last_leaf", leaf.hex())
        store.put("last_seq", str(last))
        store.put("skipped", str(indexer.skipped))
    return {"file": store.location, "entries": last + 1,
            "indexed_now": count, "rebuilt": reason, "items": store.count_items(),
            "skipped_entries": indexer.skipped}


class Indexer:
    """Turns ledger entries, in log order, into index rows; unknown actions are ignored."""

    def __init__(self, archive: Archive, store: SearchIndex, skipped: int) -> None:
        self.archive = archive
        self.store = store
        self.skipped = skipped
        self.dirty: set[str] = set()
        self._registry: Registry | None = None  # names for attributed warnings, when needed
        self.prefetch: Prefetch | None = None  # documents read ahead by a forked reader

    def apply(self, seq: int, body: bytes) -> None:
        try:
            e = fastparse.entry(body)  # entries.parse, through orjson where that is exact
        except entries.MalformedEntry:
            self.skipped += 1  # verify reports it; the index just cannot use it
            return
        d, item, store = e.details, e.item, self.store
        if sealing.SEALED in d:  # a sealed archive: notes and names, opened in memory (§12.6)
            try:
                d = encryption.opened_or_sealed(self.archive.content_key, d)
            except CustodyError:  # damaged sealed bytes: verify names them; the index skips them
                pass
        if e.action == "incident":
            self._incident(e.seq, d)
            return
        if item is None:
            return
        membership = case_change(e)  # the replay's one rule
        if e.action in (*FIRST_RECORD, "sighting"):
            store.ensure_item(item, seq)
            if e.action in FIRST_RECORD:
                self._facts(item, d, seq=seq)  # the row's place in the log, not its claim
            source = d.get("source")
            name = _text(source.get("name")) if isinstance(source, dict) else None
            if name:
                store.add_name(item, name, seq)
            if note := _text(d.get("note")):
                store.put_note(seq, item, note)
        elif e.action == "incident-add" and (incident := _text(d.get("incident"))):
            store.link("incident", incident, item, seq)
        elif e.action == "tag" and (tag := _text(d.get("tag"))):
            store.link("tag", tag, item, seq, present=d.get("removed") is not True)
        elif e.action == enrichment.ACTION and not enrichment.failed(d):
            self._enriched(e, item, d)
        elif e.action == "note":
            if isinstance(d.get("supersedes"), int) and (old := store.drop_note(d["supersedes"])):
                self.dirty.add(old)
            if text := _text(d.get("text")):
                store.put_note(seq, item, text)
        elif membership is None:
            return
        if membership is not None:
            case, member = membership
            store.link("case", case, item, seq, present=member)
        self.dirty.add(item)

    def finish(self) -> None:
        self.store.refresh_items(sorted(self.dirty))
        self.dirty.clear()

    def _enriched(self, e: entries.Entry, item: str, d: dict[str, Any]) -> None:
        """An `enriched` entry: filters keep matching the ingest's signed reading; a later
        reading that disagrees with it adds a warning to the item's results, attributed
        (docs/SEARCH.md "Two readings")."""
        raw = self.archive.ledger.metadata(item)
        if raw is None or hashlib.sha256(raw).hexdigest() != d.get("metadata_sha256"):
            return
        if self._registry is None:
            self._registry = self.archive.registry()
        recorded_by = next((r.actor for r in self.archive.ledger.rows_for_item(item)
                            if r.action in FIRST_RECORD), None)
        if recorded_by is None or \
                not enrichment.signer_rule(self._registry, recorded_by)(e.actor):
            return  # rule enriched-by: a reading no one uses, not even as a warning
        value = fastparse.document(raw)
        line = enrichment.disagreement_line(
            value if isinstance(value, dict) else {}, d, seq=e.seq, time=e.time,
            by=self._registry.name_of(e.actor))
        if line is not None:
            self._facts(item, d, later=line)

    def _facts(self, item: str, d: dict[str, Any], later: str | None = None,
               seq: int | None = None) -> None:
        warnings: list[str] = []
        reading: Reading | None = None  # the signed document's, read in the clear
        found = NOT_PREFETCHED if seq is None or self.prefetch is None \
            else self.prefetch.get(seq, item)
        if found is None or (found is not NOT_PREFETCHED and
                             found.sha256 != d.get("metadata_sha256")):
            # the reader is only a shortcut: a missing or differing document is read here, so
            # a warning never rests on what another process saw
            found = NOT_PREFETCHED
        if found is NOT_PREFETCHED:
            raw = self.archive.ledger.metadata(item)
            if raw is not None and encryption.is_sealed(raw) and \
                    hashlib.sha256(raw).hexdigest() == d.get("metadata_sha256"):
                # the signed (sealed) bytes, opened in memory only
                try:
                    raw = encryption.readable_document(self.archive.content_key, raw)
                    if raw is None:
                        warnings.append("metadata document sealed under a content key not "
                                        "held here: not used")
                except CustodyError:
                    warnings.append("metadata document does not open (damaged): not used (run "
                                    "custody verify)")
                    raw = None
                if raw is None:
                    raw = b"{}"
                d = {**d, "metadata_sha256": hashlib.sha256(raw).hexdigest()}
            if raw is not None and hashlib.sha256(raw).hexdigest() != d.get("metadata_sha256"):
                found = NO_READING._replace(sha256=hashlib.sha256(raw).hexdigest())  # not read
            else:
                found = None if raw is None else read_document(raw)
        if found is None:
            warnings.append("no metadata document")
        elif found.sha256 != d.get("metadata_sha256"):
            warnings.append("metadata document does not match its signed digest: not used "
                            "(run custody verify)")
        else:
            reading = found
        r = reading or NO_READING
        warnings += r.warnings
        if later is not None:
            warnings.append(later)
        mime = _text(d.get("mime")) or r.mime
        self.store.set_facts(
            item, captured_at=r.captured_at, captured_text=r.captured_text,
            captured_t=r.captured_t, basis=r.basis, lat=r.lat, lon=r.lon, alt=r.alt,
            make=r.make, model=r.model, mime=mime.lower() if mime else None,
            time_bounds=r.time_bounds, warnings=warnings,
            c2pa=c2pa_filter.UNCHECKED if reading is None else r.c2pa)
        if (mime or "").split("/", 1)[0] in HASHED_KINDS:
            self.store.set_perceptual(item, list(r.hashes), r.unhashed)
        else:
            self.store.set_perceptual(item, [], None)

    def _incident(self, seq: int, d: dict[str, Any]) -> None:
        incident = _text(d.get("incident"))
        if not incident:
            return
        if isinstance(d.get("supersedes"), int):
            self.store.drop_incident_version(d["supersedes"], keep=incident)
        date = _text(d.get("date"))
        t_lo, t_hi, unknown = incident_interval(date)
        place = _dict(d.get("place"))
        lat, lon = _number(place.get("lat")), _number(place.get("lon"))
        if lat is None or lon is None or not geo.valid_position(lat, lon):
            lat = lon = None
        self.store.put_incident(IncidentRow(
            incident=incident, seq=seq, case_id=_text(d.get("case")), date=date, t_lo=t_lo,
            t_hi=t_hi, offset_unknown=unknown, lat=lat, lon=lon,
            place_name=_text(place.get("name")), description=_text(d.get("description"))))
