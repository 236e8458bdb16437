"""Enrichment: ExifTool's full reading of the items the fast path left it for, each recorded in
its own signed `enriched` entry (docs/FORMAT.md §5.4, docs/METADATA.md "The fast path").

The ingest entry signs the document the fast path read (exifread, the JPEG marker walk, c2pa,
the perceptual hash) with `metadata_deferred: ["exiftool"]`; this reading completes it later.
A reading that fails (a time-out, ExifTool missing) is recorded too, with its errors: nothing of
the item changes, and `custody enrich --retry-failed` may try it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from queue import Queue
from typing import Any

from custody.core import canonical
from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.metadata.record import enriched
from custody.ops.archive import Archive, Draft
from store.ports import LedgerReads, ObjectError

ACTION = "enriched"
READER = "exiftool"
BATCH = 64  # entries per transaction, as ingest's batches


@dataclass(frozen=True, slots=True)
class Deferred:
    """An item whose first record's document left a reader for later."""

    item: str
    metadata_sha256: str


@dataclass(slots=True)
class EnrichReport:
    recorded: list[dict[str, Any]] = field(default_factory=list)  # {"sha256", "seq", "errors"}

    def to_json(self) -> dict[str, Any]:
        failed = sum(1 for r in self.recorded if r["failed"])
        return {"items": self.recorded,
                "summary": {"enriched": len(self.recorded) - failed, "failed": failed}}


def deferred_of(details: dict[str, Any]) -> list[str]:
    """The readers a first record's signed details say were left for later."""
    found = details.get("metadata_deferred")
    return [r for r in found if isinstance(r, str)] if isinstance(found, list) else []


def pending(archive: Archive, *, retry_failed: bool = False) -> list[Deferred]:
    """Items whose ingest deferred ExifTool and that have no `enriched` entry yet (with
    `retry_failed`, also those whose every enrichment failed), in log order."""
    done: set[str] = set()
    waiting: dict[str, Deferred] = {}
    for row in archive.ledger.rows_with_action("ingest", ACTION):
        e = entries.parse(row.body)
        item = e.item or ""
        if e.action == "ingest" and READER in deferred_of(e.details):
            waiting[item] = Deferred(item, str(e.details.get("metadata_sha256")))
        elif e.action == ACTION and not (retry_failed and failed(e.details)):
            done.add(item)
    return [d for item, d in waiting.items() if item not in done]


def failed(details: dict[str, Any]) -> bool:
    """An enrichment that gave no reading (ExifTool timed out, was missing, found nothing)."""
    reading = details.get(READER)
    return not isinstance(reading, dict) or reading.get("raw") is None


def latest(history: Iterable[dict[str, Any]], metadata_sha256: str | None) -> dict[str, Any] | None:
    """The ExifTool reading of the item's latest successful `enriched` entry that completes the
    signed document `metadata_sha256`, from show's history (dicts with `action`, `details`)."""
    found = None
    for h in history:
        d = h.get("details") or {}
        if (h.get("action") == ACTION and d.get("metadata_sha256") == metadata_sha256
                and not failed(d)):
            found = d[READER]
    return found


def latest_by_item(ledger: LedgerReads) -> dict[tuple[str, str], dict[str, Any]]:
    """Every item's latest successful reading, keyed by (item, the document it completes)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in ledger.rows_with_action(ACTION):
        d = entries.parse(row.body).details
        if not failed(d):
            found[(row.item or "", str(d.get("metadata_sha256")))] = d[READER]
    return found


def state(first: dict[str, Any], history: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """show's `metadata_enrichment`: null when nothing was deferred; else the readers deferred,
    `state` (`pending`, `enriched`, `failed`: every attempt failed) and the entries' seqs."""
    deferred = deferred_of(first)
    if not deferred:
        return None
    tries = [h for h in history if h.get("action") == ACTION
             and (h.get("details") or {}).get("metadata_sha256") == first.get("metadata_sha256")]
    ok = [h for h in tries if not failed(h.get("details") or {})]
    return {"deferred": deferred,
            "state": "enriched" if ok else "failed" if tries else "pending",
            "entries": [h.get("seq") for h in tries]}


def document(doc: dict[str, Any], reading: dict[str, Any] | None) -> dict[str, Any]:
    """The enriched document: the signed one completed with ExifTool's reading, when there is
    one (what show, list and search use); the signed one as it is otherwise."""
    return enriched(doc, reading) if reading is not None and doc.get("deferred") else doc


def enrich(
    archive: Archive, key: SigningKey, readers: list[Any], todo: list[Deferred],
    *, on_item: Callable[[dict[str, Any]], None] | None = None,
) -> EnrichReport:
    """Read each item with ExifTool (the readers' workers, in parallel) and record each reading in
    an `enriched` entry, BATCH to a transaction, as the readings come in."""
    report = EnrichReport()
    free: Queue[Any] = Queue()
    for reader in readers:
        free.put(reader)

    def read(d: Deferred) -> tuple[Deferred, dict[str, Any]]:
        reader = free.get()
        try:
            with archive.objects.local_file(d.item) as path:
                reading: dict[str, Any] = reader.read_exiftool(path)
            canonical.encode(reading)
            return d, reading
        except ValueError as exc:  # not RFC 8785-encodable (a NaN): recorded as a failure
            return d, {"version": None, "raw": None, "fields": None,
                       "errors": [f"reading not encodable: {exc}"]}
        except ObjectError as exc:  # the object is not here: recorded as a failed reading
            return d, {"version": None, "raw": None, "fields": None,
                       "errors": [f"object not readable: {exc}"]}
        finally:
            free.put(reader)

    with ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="enrich") as pool:
        for chunk in _chunks(pool.map(read, todo), BATCH):
            drafts = [Draft(ACTION, d.item, {"reader": READER, "metadata_sha256":
                                             d.metadata_sha256, READER: reading})
                      for d, reading in chunk]
            signed = archive.append(key, drafts, attempted=ACTION)
            for draft, s in zip(drafts, signed, strict=True):
                reading = draft.details[READER]
                done = {"sha256": draft.item, "seq": s.entry().seq,
                        "failed": failed(draft.details), "errors": reading.get("errors", [])}
                report.recorded.append(done)
                if on_item is not None:
                    on_item(done)
    return report


def _chunks(values: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(values, size)):
        yield chunk
