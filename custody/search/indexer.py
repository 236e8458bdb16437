"""Turning ledger entries and metadata documents into search index rows, and keeping the index
current. What the rows mean is decided here; storing and querying them is the index port's job
(store/index_port.py; its SQLite adapter is store/index.py). docs/SEARCH.md §1 gives the rules.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from custody.core import entry as entries
from custody.core import geo, sealing
from custody.core.chain import FIRST_RECORD  # ingest or received: an item's metadata arrives
from custody.core.custodians import Registry
from custody.core.replay import case_change
from custody.errors import CustodyError, UsageError
from custody.metadata import provenance
from custody.metadata.gps import fix_problems
from custody.ops import encryption
from custody.ops import enrich as enrichment
from custody.ops.archive import Archive
from custody.ops.backends import sealed_index
from custody.search import c2pa_filter, fastparse, fingerprints
from custody.search.times import (
    OFFSET_UNKNOWN,
    UNKNOWN_OFFSET_S,
    incident_interval,
    time_key,
    utc,
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
            until: int | None = None) -> dict[str, Any]:
    """Index the ledger entries added since the last refresh (all of them when rebuilding, when
    the index belongs to another archive, or when the entry it stopped at is no longer there);
    with `until`, only up to that entry."""
    with store.writing():
        last = int(store.get("last_seq") or -1)
        reason = "asked" if rebuild else None
        origin = store.get("origin")
        if reason is None and origin is not None and origin != archive.config.origin:
            reason = "index of another archive"
        if reason is None and last >= 0:
            row = archive.ledger.row(last)
            if row is None or row.leaf_hash.hex() != store.get("last_leaf"):
                reason = "the ledger no longer holds the entry the index stopped at"
        if reason is not None:
            store.reset()
            last = -1
        store.put("origin", archive.config.origin)
        indexer = Indexer(archive, store, int(store.get("skipped") or 0))
        count = 0
        leaf = None
        for row in archive.ledger.rows(last + 1):
            if until is not None and row.seq > until:
                break
            indexer.apply(row.seq, row.body)
            last, count, leaf = row.seq, count + 1, row.leaf_hash
        indexer.finish()
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
                self._facts(item, d)
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

    def _facts(self, item: str, d: dict[str, Any], later: str | None = None) -> None:
        warnings: list[str] = []
        doc: dict[str, Any] = {}
        c2pa = c2pa_filter.UNCHECKED  # unless the document is the signed one, read in the clear
        raw = self.archive.ledger.metadata(item)
        if raw is not None and encryption.is_sealed(raw) and \
                hashlib.sha256(raw).hexdigest() == d.get("metadata_sha256"):
            # the signed (sealed) bytes, opened in memory only
            try:
                raw = encryption.readable_document(self.archive.content_key, raw)
                if raw is None:
                    warnings.append("metadata document sealed under a content key not held "
                                    "here: not used")
            except CustodyError:
                warnings.append("metadata document does not open (damaged): not used (run "
                                "custody verify)")
                raw = None
            if raw is None:
                raw = b"{}"
            d = {**d, "metadata_sha256": hashlib.sha256(raw).hexdigest()}
        if raw is None:
            warnings.append("no metadata document")
        elif hashlib.sha256(raw).hexdigest() != d.get("metadata_sha256"):
            warnings.append("metadata document does not match its signed digest: not used "
                            "(run custody verify)")
        else:
            # json.loads's value, not canonical.decode: the index is derived, verify checks
            # the form
            value = fastparse.document(raw)
            doc = value if isinstance(value, dict) else {}
            c2pa = provenance.verdict(doc)  # kept in the index: a search reads no documents
        text = _text(doc.get("captured_at"))
        moment = utc(text)
        if text and moment is None:
            warnings.append(f"capture time {text!r} is not RFC 3339: not used")
        basis = _text(doc.get("captured_at_basis"))
        t = moment.timestamp() if moment else None
        gps = _dict(doc.get("gps"))
        lat, lon, alt = (_number(gps.get(k)) for k in ("lat", "lon", "alt"))
        if lat is None or lon is None or not geo.valid_position(lat, lon):
            if gps:
                warnings.append(f"GPS position {gps!r} is not usable")
            lat = lon = alt = None
        elif problems := fix_problems(doc):  # null island, no fix, poor dilution: no place
            warnings.append("GPS fix not used as a place: " + "; ".join(problems))
            lat = lon = alt = None
        device = _dict(doc.get("device"))
        if later is not None:
            warnings.append(later)
        mime = _text(d.get("mime")) or _text(doc.get("mime"))
        wide = UNKNOWN_OFFSET_S if basis == OFFSET_UNKNOWN else 0
        self.store.set_facts(
            item, captured_at=time_key(moment) if moment else None, captured_text=text,
            captured_t=t, basis=basis, lat=lat, lon=lon, alt=alt,
            make=_text(device.get("make")), model=_text(device.get("model")),
            mime=mime.lower() if mime else None,
            time_bounds=(t - wide, t + wide) if t is not None else None, warnings=warnings,
            c2pa=c2pa)
        self.store.set_perceptual(item, *fingerprints.index_rows(doc, mime))

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


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
