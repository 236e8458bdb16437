"""The report data a custody PDF carries: its embedded file `custody-report.json`, read with pypdf.

So `custody verify-report FILE.pdf` needs no outside tool; a damaged or foreign PDF is one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from custody.errors import VerificationFailed

ATTACHMENT = "custody-report.json"  # the name custody/report/pdf.py gives the attachment


@dataclass(frozen=True, slots=True)
class Embedded:
    """The report's data (RFC 8785 JSON text) and the PDF's first file identifier."""

    data: str
    identifier: bytes | None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read(path: Path) -> Embedded:
    """The embedded report data of the PDF at `path`; VerificationFailed (one line) if the file
    is not a readable PDF, carries no report data, or its data is not UTF-8 text."""
    import pypdf
    from pypdf.errors import PyPdfError

    quiet = logging.getLogger("pypdf")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False  # pypdf logs what it repairs; the verdict below is the one message
    try:
        reader = pypdf.PdfReader(path, strict=True)
        found = reader.attachments.get(ATTACHMENT)
        ident = reader.trailer.get("/ID")
        first = bytes(ident[0].original_bytes) if ident else None
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationFailed(
            [f"{path.name} is not a readable PDF ({_first_line(exc)})"]) from None
    if not found:
        raise VerificationFailed([f"{path.name} carries no report data (no embedded "
                                  f"{ATTACHMENT}): not a report made by custody report"])
    if len(found) != 1:
        raise VerificationFailed([f"{path.name} carries {len(found)} files named {ATTACHMENT}"])
    try:
        return Embedded(found[0].decode("utf-8"), first)
    except UnicodeDecodeError:
        raise VerificationFailed([f"{path.name}: its {ATTACHMENT} is not UTF-8 text"]) from None
