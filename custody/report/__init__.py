"""Chain-of-custody reports for legal reviewers (HTML and PDF) and the log as CSV or JSON Lines.

model.build gathers and verifies; html.render and pdf.write present; recheck re-checks a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.report.model import Report

FORMATS = {".html": "html", ".htm": "html", ".pdf": "pdf"}


def output_format(path: Path) -> str:
    """`html` or `pdf`, from the output file's suffix (checked before anything is read)."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"{path}: the report file must end in .html or .pdf")
    if not path.parent.is_dir():
        raise UsageError(f"no folder {path.parent} to write {path.name} into")
    return kind


def save(report: Report, path: Path) -> None:
    """Write `report` as HTML or PDF, by the suffix of `path`."""
    from custody.report import html, pdf

    if output_format(path) == "pdf":
        pdf.write(report, path)
    else:
        html.write(report, path)
