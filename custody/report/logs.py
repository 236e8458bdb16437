"""The ledger for a reviewer's own tools: one row per entry, as JSON Lines or CSV (RFC 4180).

Columns are documented in docs/REPORTS.md; `entry` (the signed bytes, base64) lets any Ed25519
tool check `signature` without custody.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterator
from typing import IO, Any

from custody.core import canonical
from custody.core import entry as entries
from custody.ops import transfer
from custody.ops.archive import Archive
from custody.ops.items import entry_json, holder_name

COLUMNS = (
    "seq", "time", "action", "item", "actor", "actor_name", "purpose", "reason", "kind",
    "holder_after", "holder_after_name", "details_json", "prev", "leaf_hash", "signature", "entry",
    "entry_format", "signed_at", "statement_id",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets may run as a formula
TEXT_COLUMNS = ("actor_name", "purpose", "reason", "holder_after_name")


def rows(archive: Archive, item: str | None = None) -> Iterator[dict[str, Any]]:
    """Every entry (or `item`'s), oldest first, with the holder of its item just after it."""
    registry = archive.registry()
    book, _ = transfer.book(archive.ledger)
    source = archive.ledger.rows_for_item(item) if item else archive.ledger.rows()
    for r in source:
        row = entry_json(r, registry)
        e = entries.parse(r.body)
        holder = book.holder(e.item, at_seq=e.seq) if e.item else None
        d = e.details
        row.update(
            purpose=d.get("purpose"), reason=d.get("reason"), kind=d.get("kind"),
            holder_after=holder, holder_after_name=holder_name(holder, registry),
            entry=base64.b64encode(r.body).decode(),
        )
        yield row


def write_jsonl(stream: IO[str], archive: Archive, item: str | None = None) -> int:
    n = 0
    for row in rows(archive, item):
        stream.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n


def write_csv(stream: IO[str], archive: Archive, item: str | None = None) -> int:
    """RFC 4180 CSV, UTF-8, CRLF; a header row; `details` as canonical JSON text."""
    out = csv.writer(stream, lineterminator="\r\n")
    out.writerow(COLUMNS)
    n = 0
    for row in rows(archive, item):
        row["details_json"] = canonical.encode(row["details"]).decode()
        out.writerow([_cell(c, row.get(c)) for c in COLUMNS])
        n += 1
    return n


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if column in TEXT_COLUMNS and text.startswith(FORMULA_START):
        return "'" + text  # OWASP: keep a spreadsheet from running free text as a formula
    return text
