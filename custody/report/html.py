"""Render a report model as one self-contained HTML page: Jinja2 template, CSS and previews inline.

The model itself is embedded as JSON (`script#custody-report-model`) so the page can be re-checked.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from custody.metadata.clocks import CAMERA_NO_OFFSET, shown_capture
from custody.ops.lineage import operations_text
from custody.report import places
from custody.report.model import Report

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

ACTIONS = {
    "ingest": "Ingested",
    "sighting": "Seen again",
    "received": "Received from a package",
    "access": "Content read",
    "transfer-offer": "Custody offered",
    "transfer-accept": "Custody accepted",
    "transfer-withdraw": "Offer withdrawn",
    "case-add": "Filed under a case",
    "case-remove": "Removed from a case",
    "incident-add": "Added to an incident",
    "note": "Note",
    "tag": "Tag",
    "verification": "Verification",
    "refused": "Refused",
    "derived": "Derived from another item",
}

BASIS = {
    "gps": "GPS clock: satellite time of the last position fix, not settable by the user",
    "camera-clock+offset": "camera clock with the UTC offset the file states",
    "camera-clock-offset-unknown": "camera clock with NO UTC offset: its local wall-clock reading "
    "is shown, not UTC; the true instant lies within 14 hours either side of it",
    "container+offset": "the video container's creation date with the offset it states",
    "container-utc": "the video container's header time (UTC by the QuickTime specification)",
}


# Long values (docs/REPORTS.md "Long values"): WeasyPrint lays a text out again for every line it
# breaks, so one long text costs time quadratic in its length (20,000 characters: 48 s). Every
# value printed into the page is cut at MAX_SHOWN characters, with a visible marker (the whole
# value stays in the report's data and the ledger), and laid out as short pieces.
MAX_SHOWN = 1000
LEFT_WHOLE = 160  # shorter values (every hash, key and name in practice) are printed as they are
PIECE = 16  # characters of an unbroken run per piece (a timeline cell holds about 18)
TITLE = 100  # characters of a value in an attribute or the page title
_PIECES = re.compile(rf"\s*\S{{1,{PIECE}}}")


def _pieces(text: str) -> Markup:
    """`text` as short inline pieces: words kept whole (Arabic letters join within a word), an
    unbroken run longer than PIECE split with a break opportunity (<wbr>) between its pieces."""
    spans = "".join(
        ("" if n == 0 or p[0].isspace() else "<wbr>") + f"<span>{escape(p)}</span>"
        for n, p in enumerate(_PIECES.findall(text))
    )
    return Markup(f'<span class="long">{spans}</span>')


def shown(value: Any) -> Any:
    """Every value the template prints (Jinja's `finalize`): long text cut and laid out in
    pieces; markup made here (Markup) and non-text values pass unchanged."""
    if isinstance(value, Markup) or not isinstance(value, str) or len(value) <= LEFT_WHOLE:
        return value
    if len(value) <= MAX_SHOWN:
        return _pieces(value)
    marker = (f"… [cut: {MAX_SHOWN:,} of {len(value):,} characters shown; the whole text is in "
              "this report's data and in the ledger entry]")
    return _pieces(value[:MAX_SHOWN]) + Markup('<span class="cut">') + marker + Markup("</span>")


def whole(value: Any) -> Any:
    """Like `shown`, never cut: for the checkpoint's signed note, which must be copyable whole."""
    text = str(value)
    return text if len(text) <= LEFT_WHOLE else _pieces(text)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(value: Any) -> Markup:
    """A value for an attribute or the page title: escaped text, cut at TITLE characters."""
    return escape(_cut(str(value), TITLE))


def textdir(text: Any) -> str:
    """`rtl` when the first strong character is right-to-left (what HTML's dir=auto does)."""
    for ch in str(text or ""):
        kind = unicodedata.bidirectional(ch)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return "ltr"


def when(rfc3339: str | None, basis: str | None = None) -> str:
    """`2016-10-03T11:22:05.123456Z` as `2016-10-03 11:22:05 UTC` (the model keeps the exact);
    a camera clock of unknown offset as its local reading, never "UTC" (docs/METADATA.md)."""
    if not rfc3339:
        return "unknown"
    if basis == CAMERA_NO_OFFSET:
        local = (shown_capture(rfc3339, basis) or "").replace("T", " ").split(".")[0]
        return f"{local} local time, UTC offset unknown"
    text = rfc3339.replace("T", " ")
    if text.endswith("Z"):
        text = text[:-1].split(".")[0] + " UTC"
    return text


def size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.1f} {unit})"
    return f"{n:,} bytes"


def details(row: dict[str, Any], names: dict[str, str]) -> list[tuple[str, str]]:
    """What an entry says, as (label, value) lines; values may be in any script."""
    d, a = row["details"], row["action"]
    src = d.get("source") or {}
    lines: list[tuple[str, Any]] = []
    if a in ("ingest", "sighting", "received"):
        lines += [("as", src.get("name")), ("from", src.get("path")),
                  ("file time (claimed)", when(src.get("mtime")) if src.get("mtime") else None),
                  ("case", d.get("case")), ("note", d.get("note"))]
    elif a == "access":
        lines += [("kind", d.get("kind")), ("to", d.get("destination"))]
    elif a == "transfer-offer":
        lines += [("to", names.get(d.get("to"), "(unknown key)")), ("key", str(d.get("to"))[:16])]
    elif a in ("transfer-accept", "transfer-withdraw"):
        lines += [("offer", f"entry #{d.get('offer')}")]
    elif a in ("case-add", "case-remove"):
        lines += [("case", d.get("case"))]
    elif a == "incident-add":
        lines += [("incident", d.get("incident"))]
    elif a == "note":
        lines += [("text", d.get("text")),
                  ("corrects", f"note #{d['supersedes']}" if d.get("supersedes") else None)]
    elif a == "tag":
        lines += [("tag", f"{d.get('tag')}" + (" (removed)" if d.get("removed") else ""))]
    elif a == "verification":
        ok = "all checks passed" if d.get("ok") else f"{d.get('problems')} problem(s)"
        lines += [("result", f"{ok}; {d.get('entries')} entries, scope {d.get('scope')}")]
    elif a == "refused":
        lines += [("attempted", d.get("attempted"))]
    elif a == "derived":  # custody derive: what it was made from, and how (docs/DERIVATIVES.md)
        lines += [("from", d.get("original")), ("operations", operations_text(d.get("operations"))),
                  ("tools", ", ".join(f"{k} {v}" for k, v in (d.get("tools") or {}).items())),
                  ("case", d.get("case"))]
    if a in ("ingest", "sighting") and src.get("container"):  # a member of a dump (--unpack)
        lines += [("in dump", src.get("container")), ("at", src.get("member")),
                  ("file time (claimed, offset unknown)", src.get("mtime_local"))]
    return [(k, str(v)) for k, v in lines if v not in (None, "")]


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      finalize=shown)
    env.filters.update(textdir=textdir, when=when, size=size, whole=whole, plain=plain)
    env.filters["operations"] = operations_text  # a derivative's operations, in one line
    env.globals.update(ACTIONS=ACTIONS, BASIS=BASIS, details=details)
    return env


def _css_string(text: str) -> str:
    """A value for a CSS string literal (the PDF's running footer)."""
    safe = " .,:;-_/()#·…"
    return "".join(ch if ch.isalnum() or ch in safe else f"\\{ord(ch):x} " for ch in text)


def render(report: Report, *, for_pdf: bool = False) -> str:
    model = report.model
    names = {c["key_id"]: c["name"] for c in model["custodians"]}
    cp = model["checkpoint"]
    scope = (f"Case {model['scope']['case']}" if model["scope"]["case"]
             else ", ".join(i["names"][0] if i["names"] else i["sha256"][:16]
                            for i in model["items"][:3])
             + ("…" if len(model["items"]) > 3 else ""))
    cases = list(dict.fromkeys(c for i in model["items"] for c in i["cases"]))
    named = scope if model["scope"]["case"] else (
        (f"Case {', '.join(cases)}" if cases else "No case") + f" · {scope}")
    footer = _cut(named, 70) + (
        f" · Checkpoint: {cp['size']} entries, root {cp['root_hash'][:16]}…" if cp
        else " · no checkpoint")
    previews = {sha: Markup("data:image/png;base64," + base64.b64encode(png).decode())
                for sha, png in report.previews.items()}
    maps = {i["sha256"]: Markup(places.svg_map(i["place"]))
            for i in model["items"] if i["place"].get("known")}
    label = {i["sha256"]: i["names"][0] if i["names"] else i["sha256"][:16] for i in model["items"]}
    problems = [("Ledger", p) for p in model["verification"]["problems"]] + [
        (label[i["sha256"]], p) for i in model["items"] for p in i["problems"]]
    unproven = [(label[i["sha256"]], f"{c['check']}: {c['detail']}")
                for i in model["items"] for c in i["checks"] if c["ok"] is None]
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    return _environment().get_template("report.html").render(
        m=model, digest=report.digest, problems=problems, unproven=unproven, names=names,
        previews=previews, maps=maps,
        css=Markup(css), for_pdf=for_pdf, scope=scope,
        footer=Markup(_css_string(footer)),
        header=Markup(_css_string(_cut(model["archive"]["name"], 70))),
        digest_footer=Markup(_css_string(report.digest[:16])),
    )


def write(report: Report, path: Path) -> None:
    """Write the page to `path` (via a temporary name beside it, so no half file is left)."""
    partial = path.with_name(f".{path.name}.custody-partial")
    try:
        partial.write_text(render(report), encoding="utf-8")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
