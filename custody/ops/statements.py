"""Statements signed away from the archive: the statement file and appending one.

A custodian's device signs a statement (docs/FORMAT.md §5.8) and sends it as a statement file; the
archive checks and chains it under its write lock (`Archive.append_statement`), holding no key of
theirs. `custody submit` (and later `custody serve`) read one here.
"""

from __future__ import annotations

import base64
from typing import Any

from custody.core import canonical
from custody.core import entry as entries
from custody.errors import StatementRefused
from custody.ops.archive import Archive

FILE_FORMAT = "custody-statement"


def statement_file(
    signed: entries.SignedStatement, metadata: bytes | None = None
) -> dict[str, Any]:
    """The JSON a device sends: the statement's exact bytes and signature, base64."""
    out: dict[str, Any] = {
        "format": FILE_FORMAT,
        "statement": base64.b64encode(signed.body).decode(),
        "signature": base64.b64encode(signed.signature).decode(),
    }
    if metadata is not None:
        out["metadata"] = base64.b64encode(metadata).decode()
    return out


def read_statement_file(text: str) -> tuple[entries.SignedStatement, bytes | None]:
    """A statement file's statement, signature and metadata document; StatementRefused, one line,
    for anything else."""
    try:
        value = canonical.load_json(text)
    except ValueError as exc:
        raise StatementRefused(f"statement refused: the file is not JSON ({exc})") from None
    if not isinstance(value, dict) or value.get("format") != FILE_FORMAT:
        raise StatementRefused(f"statement refused: the file is not a {FILE_FORMAT} file")
    try:
        body = base64.b64decode(value["statement"], validate=True)
        signature = base64.b64decode(value["signature"], validate=True)
        raw = value.get("metadata")
        metadata = base64.b64decode(raw, validate=True) if raw is not None else None
    except (KeyError, TypeError, ValueError) as exc:  # binascii.Error, and non-ASCII text
        raise StatementRefused(f"statement refused: the file's {exc} is missing or not "
                               "base64") from None
    return entries.SignedStatement(body=body, signature=signature), metadata


def submit(archive: Archive, text: str) -> entries.SignedEntry:
    """Append the statement a statement file holds (refused whole, with nothing appended)."""
    signed, metadata = read_statement_file(text)
    return archive.append_statement(signed, metadata=metadata)
