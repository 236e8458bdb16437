"""Search results with each item's C2PA verdict (trusted, valid, invalid, unreadable, none), and
the `--c2pa VERDICT` filter: read from the metadata document the ingest entry signed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from custody.core import canonical
from custody.core.chain import FIRST_RECORD
from custody.core.entry import parse_leaving_form
from custody.errors import UsageError
from custody.metadata import provenance
from custody.ops import encryption
from custody.ops.archive import Archive

LISTS = ("items", "undetermined", "unplaced")
UNCHECKED = "unchecked"  # the metadata document is missing or differs from its signed digest


def wanted(value: str | None) -> str | None:
    """The --c2pa value, checked."""
    if value is None:
        return None
    word = value.strip().lower()
    if word not in provenance.VERDICTS:
        raise UsageError(f"--c2pa {value}: choose one of {', '.join(provenance.VERDICTS)}")
    return word


def verdict_of(archive: Archive, item: str) -> str:
    """The verdict of the document whose digest the item's first record names, read from the
    ledger: what the index keeps for each item (custody/search/indexer.py derives it as the
    item is indexed; the tests hold the two to the same answer). Search reads the
    rows as stored (verify checks their signatures and form), so neither the entry nor the
    document, whose bytes are the signed ones once the digest matches, is re-encoded to check its
    canonical form: that cost ~10 ms a document (rfc8785 on a real ExifTool dump)."""
    raw = archive.ledger.metadata(item)
    if raw is None or encryption.is_sealed(raw):  # a sealed document is not read by search
        return UNCHECKED
    entries = (parse_leaving_form(r.body) for r in archive.ledger.rows_for_item(item))
    signed = next((e.details.get("metadata_sha256") for e in entries
                   if e.action in FIRST_RECORD), None)  # fmt: skip
    if signed != hashlib.sha256(raw).hexdigest():
        return UNCHECKED
    return provenance.verdict(canonical.load_json(raw.decode("utf-8")))


def annotate(result: dict[str, Any], only: str | None, limit: int | None,
             verdicts: dict[str, str]) -> dict[str, Any]:
    """Give each listed item its `c2pa` verdict (from `verdicts`: the index keeps each item's,
    derived from its signed document when indexed); with `only`, keep those with that verdict."""
    for key in LISTS:
        if key not in result:
            continue
        rows = result[key]
        for row in rows:
            row["c2pa"] = verdicts.get(row["sha256"], UNCHECKED)
        if only is not None:
            rows = [r for r in rows if r["c2pa"] == only][:limit]
            result[key] = rows
    if only is not None:
        result["count"] = len(result["items"])
        result["undetermined_count"] = len(result["undetermined"])
        result["query"]["c2pa"] = only
    return result
