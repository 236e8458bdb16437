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
from custody.core.chain import FIRST_RECORD
from custody.core.custodians import Registry
from custody.core.replay import may_enrich
from custody.core.signing import SigningKey
from custody.errors import NotPermitted
from custody.metadata.readings import COMPARED, disagreements
from custody.metadata.record import enriched
from custody.ops.archive import Archive, Draft, Refusal, registry_of
from store.ports import LedgerTransaction, ObjectError

ACTION = "enriched"
READER = "exiftool"
BATCH = 64  # entries per transaction, as ingest's batches


@dataclass(frozen=True, slots=True)
class Deferred:
    """An item whose first record's document left a reader for later."""

    item: str
    metadata_sha256: str
    recorded_by: str = ""  # the key that signed its first record (who may enrich it)


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
    registry = archive.registry()
    for row in archive.ledger.rows_with_action("ingest", ACTION):
        e = entries.parse(row.body)
        item = e.item or ""
        if e.action == "ingest" and READER in deferred_of(e.details):
            waiting[item] = Deferred(item, str(e.details.get("metadata_sha256")), e.actor)
        elif e.action == ACTION and not (retry_failed and failed(e.details)) \
                and item in waiting and signer_rule(registry, waiting[item].recorded_by)(e.actor) \
                and e.details.get("metadata_sha256") == waiting[item].metadata_sha256:
            done.add(item)  # one the rules refuse (enriched-by, -record) leaves it waiting
    return [d for item, d in waiting.items() if item not in done]


def mine(archive: Archive, key: SigningKey, todo: list[Deferred]) -> list[Deferred]:
    """The items of `todo` this key may enrich (docs/FORMAT.md §5.6 rule `enriched-by`: the
    custodian who recorded the item, or an admin); NotPermitted, one line and nothing appended,
    when there are items waiting and none of them is this custodian's to enrich."""
    registry = archive.registry()
    who = registry.by_id.get(key.key_id)
    ok = [d for d in todo if who is not None and may_enrich(registry, who, d.recorded_by)]
    if todo and not ok:
        name = who.name if who is not None else key.key_id
        raise NotPermitted(f"{name} may not enrich the {len(todo)} item(s) waiting: only the "
                           "custodian who ingested an item, or an admin, may sign its later "
                           "reading", hint="ask them, or an admin, to run custody enrich")
    return ok


def _check_signer(key: SigningKey) -> Callable[[LedgerTransaction, Draft], Draft]:
    """`Archive.append`'s decision under the write lock: the same rule as `mine`, from the
    transaction's own reads (a hand-made or racing call is refused there too)."""
    # The registry read once per transaction (a batch's drafts share it); the transaction itself is
    # held, not its id(), so a later transaction can never be handed an earlier one's registry.
    read: list[tuple[LedgerTransaction, Registry]] = []

    def decide(writer: LedgerTransaction, draft: Draft) -> Draft:
        if not read or read[0][0] is not writer:
            read[:] = [(writer, registry_of(writer))]
        registry = read[0][1]
        who = registry.by_id.get(key.key_id)
        first = next((entries.parse(r.body) for r in writer.rows_for_item(draft.item or "")
                      if r.action in FIRST_RECORD), None)
        if who is None or first is None or not may_enrich(registry, who, first.actor):
            raise Refusal(f"only the custodian who ingested item {draft.item}, or an admin, may "
                          "sign its enriched reading", item=draft.item)
        return draft

    return decide


def failed(details: dict[str, Any]) -> bool:
    """An enrichment that gave no reading (ExifTool timed out, was missing, found nothing)."""
    reading = details.get(READER)
    return not isinstance(reading, dict) or reading.get("raw") is None


def latest(history: Iterable[dict[str, Any]], metadata_sha256: str | None,
           allowed: Callable[[str], bool] = lambda actor: True) -> dict[str, Any] | None:
    """The ExifTool reading of the item's latest successful `enriched` entry that completes the
    signed document `metadata_sha256` and whose signer is `allowed`, from show's history (dicts
    with `action`, `actor`, `details`)."""
    found = None
    for h in history:
        d = h.get("details") or {}
        if (h.get("action") == ACTION and d.get("metadata_sha256") == metadata_sha256
                and not failed(d) and allowed(str(h.get("actor")))):
            found = d[READER]
    return found


def signer_rule(registry: Registry, recorded_by: str) -> Callable[[str], bool]:
    """Whether a key may sign an item's later reading (rule `enriched-by`), for `latest`."""
    def allowed(actor: str) -> bool:
        who = registry.by_id.get(actor)
        return who is not None and may_enrich(registry, who, recorded_by)
    return allowed


def readings(history: Iterable[dict[str, Any]], first: dict[str, Any], ingest: dict[str, Any],
             registry: Registry) -> list[dict[str, Any]]:
    """show's `enriched_readings`: each `enriched` entry as a later reading beside the ingest's,
    attributed (entry, who, when, the tool and its version), its normalised fields, whether its
    signer and document are the ones the rules allow, and where it disagrees with the ingest's
    signed document (docs/METADATA.md "Two readings")."""
    allowed = signer_rule(registry, str(first.get("actor")))
    out = []
    for h in history:
        if h.get("action") != ACTION:
            continue
        d = h.get("details") or {}
        found = d.get(READER)
        reading: dict[str, Any] = found if isinstance(found, dict) else {}
        fields = reading.get("fields") if isinstance(reading.get("fields"), dict) else None
        out.append({
            "seq": h.get("seq"), "time": h.get("time"), "by": h.get("actor_name"),
            "actor": h.get("actor"), "tool": d.get("reader"), "version": reading.get("version"),
            "failed": failed(d), "errors": reading.get("errors") or [],
            "by_permitted": allowed(str(h.get("actor"))),
            "completes_record": d.get("metadata_sha256") == first["details"].get(
                "metadata_sha256"),
            "fields": None if fields is None else {k: fields.get(k) for k in COMPARED},
            "disagreements": disagreements(ingest, fields),
        })
    return out


def disagreement_line(ingest: dict[str, Any], details: dict[str, Any], *, seq: int, by: str,
                      time: str) -> str | None:
    """One line for search's `warnings`: a later reading that disagrees with the ingest's."""
    given = details.get(READER)
    reading: dict[str, Any] = given if isinstance(given, dict) else {}
    found = disagreements(ingest, reading.get("fields"))
    if not found:
        return None
    fields = ", ".join(f"{d['field']} {d['ingest']!r} (ingest) vs {d['later']!r}" for d in found)
    return (f"a later reading disagrees with the ingest's (entry {seq} by {by} at {time}, "
            f"{details.get('reader')} {reading.get('version')}): {fields}; search matches the "
            "ingest's reading")


def state(first: dict[str, Any], history: Iterable[dict[str, Any]],
          allowed: Callable[[str], bool] = lambda actor: True) -> dict[str, Any] | None:
    """show's `metadata_enrichment`: null when nothing was deferred; else the readers deferred,
    `state` (`pending`, `enriched`, `failed`: every attempt failed) and the entries' seqs. Only
    a reading whose signer is `allowed` enriches: one by anyone else leaves it `pending`."""
    deferred = deferred_of(first)
    if not deferred:
        return None
    tries = [h for h in history if h.get("action") == ACTION
             and (h.get("details") or {}).get("metadata_sha256") == first.get("metadata_sha256")]
    mine = [h for h in tries if allowed(str(h.get("actor")))]
    ok = [h for h in mine if not failed(h.get("details") or {})]
    return {"deferred": deferred,
            "state": "enriched" if ok else "failed" if mine else "pending",
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
    decide = _check_signer(key)
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
            signed = archive.append(key, drafts, attempted=ACTION, decide=decide)
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
