"""`custody export --format case`: items and their custody as a CASE/UCO JSON-LD graph.

An export like the package's (docs/CASE.md): a stated purpose, an export role, and each item read
through the logged access path (its SHA-256 verified) before the graph states its hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from custody.core import canonical
from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.errors import ArchiveError, CustodyError, NotFound, UsageError
from custody.ops import access
from custody.ops.archive import Archive, replayed
from custody.package import case_graph
from custody.package.export import authorize_export, case_items, check_output_free, checked_request
from store.ports import CHUNK, EntryRow

FORMAT = "case"
SUFFIXES = (".jsonld", ".json")


def export_case(
    archive: Archive,
    key: SigningKey,
    items: list[str],
    case: str | None,
    purpose: str,
    output: Path,
    software_version: str,
    on_bytes: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the CASE graph of these items (or the case's) to `output`; return a summary."""
    output = Path(output)
    purpose = checked_request(items, case, purpose)
    if output.suffix.lower() not in SUFFIXES:
        raise UsageError(f"a CASE export is JSON-LD: name the file FILE.jsonld, not {output.name}")
    check_output_free(output)
    authorize_export(archive, key, purpose)
    chosen = list(dict.fromkeys(items)) if items else case_items(archive, case or "")
    if not chosen:
        raise NotFound(f"no items in case {case}")
    for sha in chosen:
        if not archive.ledger.rows_for_item(sha):
            raise NotFound(f"no item {sha} in this archive")

    partial = output.with_name(f".{output.name}.custody-partial")
    try:  # made before any entry is appended: an unwritable place records nothing
        handle = open(partial, "xb")  # noqa: SIM115 - closed in the finally below
    except FileExistsError:
        raise CustodyError(f"another export is writing {partial.name} beside {output}") from None
    except OSError as exc:
        raise CustodyError(f"cannot write {output}: {exc.strerror or exc}") from None
    destination = str(output.absolute())
    try:
        made_now, octets = _read_each(archive, key, chosen, purpose, destination, on_bytes)
        rows = {sha: archive.ledger.rows_for_item(sha) for sha in chosen}
        records = [_record(archive, sha, rows[sha]) for sha in chosen]
        source = case_graph.Archive(
            name=archive.config.name,
            origin=archive.config.origin,
            key_id=archive.config.archive_key.key_id,
            software_version=software_version,
            custodians=dict(replayed(archive.ledger).registry.by_id),
            leaf_hashes={r.seq: r.leaf_hash.hex() for rs in rows.values() for r in rs},
            made_now=frozenset(made_now),
        )
        graph = case_graph.build(source, records, case)
        data = json.dumps(graph, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.link(partial, output)  # never replaces a file that appeared meanwhile
    except FileExistsError:
        raise CustodyError(f"{output} appeared while exporting; left it alone") from None
    except OSError as exc:
        raise CustodyError(f"cannot write {output}: {exc.strerror or exc}; nothing was left there"
                           ) from None
    finally:
        handle.close()
        partial.unlink(missing_ok=True)
    return {
        "path": str(output),
        "format": FORMAT,
        "items": len(chosen),
        "bytes": octets,
        "entries": sorted(made_now),
        "nodes": len(graph["@graph"]),
        "graph_sha256": hashlib.sha256(data).hexdigest(),
        "namespace": case_graph.base_iri(archive.config.archive_key.key_id),
    }


def _read_each(
    archive: Archive, key: SigningKey, chosen: list[str], purpose: str, destination: str,
    on_bytes: Callable[[int], None] | None,
) -> tuple[list[int], int]:
    """Each item read through the logged access path, whole, so that its SHA-256 is verified
    (a corrupt object stops the export). The seqs of the access entries made, and the bytes."""
    made, octets = [], 0
    for sha in chosen:
        with access.content(archive, key, sha, purpose, "export", destination,
                            {"format": FORMAT}) as reader:
            while chunk := reader.read(CHUNK):
                octets += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        mine = [r.seq for r in archive.ledger.rows_for_item(sha)
                if r.action == "access" and r.actor == key.key_id]
        made.append(mine[-1])
    return made, octets


def _record(archive: Archive, sha: str, rows: list[EntryRow]) -> case_graph.ItemRecord:
    """An item's facts from its signed entries, and its readers from its metadata document when
    that document is the one its first record signed (anything else is not stated)."""
    parsed = tuple(entries.parse(r.body) for r in rows)
    first = next((e for e in parsed if e.action in case_graph.FIRST_RECORDS), None)
    if first is None:
        raise ArchiveError(f"item {sha} has no ingest entry")
    names: list[str] = []
    for e in parsed:
        name = (e.details.get("source") or {}).get("name")
        if e.action in (*case_graph.FIRST_RECORDS, "sighting") and isinstance(name, str) \
                and name not in names:
            names.append(name)
    readers: dict[str, str] = {}
    doc = archive.ledger.metadata(sha)
    if doc is not None and hashlib.sha256(doc).hexdigest() == first.details.get("metadata_sha256"):
        try:
            said = canonical.decode(doc).get("readers") or {}
        except ValueError:
            said = {}
        readers = {str(k): str(v) for k, v in said.items() if v}
    return case_graph.ItemRecord(
        sha256=sha,
        size=int(first.details.get("size") or 0),
        digests=dict(first.details.get("digests") or {"sha256": sha}),
        mime=first.details.get("mime"),
        names=tuple(names),
        entries=parsed,
        readers=readers,
    )
