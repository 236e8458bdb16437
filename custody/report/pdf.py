"""Print a report to PDF with WeasyPrint, from the same HTML, with its data model attached.

Nothing is fetched while printing: only `data:` URLs (the inline previews) are allowed.
"""

from __future__ import annotations

import io
from pathlib import Path

from custody.core import canonical
from custody.errors import CustodyError
from custody.report import html
from custody.report.model import Report
from custody.report.pdfdata import ATTACHMENT


def write(report: Report, path: Path) -> None:
    """Write the PDF to `path` (via a temporary name beside it, so no half file is left)."""
    try:
        import weasyprint
    except ImportError as exc:  # pango or another native library missing
        raise CustodyError(f"PDF output needs WeasyPrint, which could not load: {exc}",
                           hint="pip install weasyprint; Debian: apt-get install libpango-1.0-0 "
                           "libpangoft2-1.0-0 fonts-noto-core") from None
    fetcher = weasyprint.URLFetcher(allowed_protocols=["data"])
    document = weasyprint.HTML(string=html.render(report, for_pdf=True), url_fetcher=fetcher)
    model = weasyprint.Attachment(
        file_obj=io.BytesIO(canonical.encode(report.model)), name=ATTACHMENT,
        description=f"The report's data (RFC 8785 JSON); SHA-256 {report.digest}",
    )
    partial = path.with_name(f".{path.name}.custody-partial")
    try:
        document.write_pdf(partial, attachments=[model], pdf_identifier=bytes.fromhex(
            report.digest[:32]))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
