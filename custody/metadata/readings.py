"""Two readings of one file compared: the ingest's signed document and a later reading (ExifTool's,
from an `enriched` entry). Pure: which normalised fields disagree, each with both values.

A court must see what was recorded at ingest and, beside it, what a later reading said; where
they differ it must see both, never one silently replacing the other (docs/METADATA.md).
"""

from __future__ import annotations

import math
from typing import Any

# The normalised fields compared, in the order shown.
COMPARED = ("captured_at", "captured_at_basis", "gps", "device", "orientation", "dimensions")
DEGREES = 1e-6  # about 0.1 m: exifread's rationals and ExifTool's decimals round differently
METRES = 0.01


def disagreements(ingest: dict[str, Any], later: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`[{"field", "ingest", "later"}]` for each compared field both readings give and give
    differently; a field only one of them gives is no disagreement (it is shown, not flagged)."""
    if not later:
        return []
    found = []
    for name in COMPARED:
        mine, theirs = ingest.get(name), later.get(name)
        if mine is None or theirs is None or _same(name, mine, theirs):
            continue
        found.append({"field": name, "ingest": mine, "later": theirs})
    return found


def _same(name: str, mine: Any, theirs: Any) -> bool:
    if name == "captured_at":
        return _instant(mine) == _instant(theirs)
    if name == "gps" and isinstance(mine, dict) and isinstance(theirs, dict):
        return (_near(mine.get("lat"), theirs.get("lat"), DEGREES)
                and _near(mine.get("lon"), theirs.get("lon"), DEGREES)
                and _near(mine.get("alt"), theirs.get("alt"), METRES))
    if name == "device" and isinstance(mine, dict) and isinstance(theirs, dict):
        return all(_text(mine.get(k)) == _text(theirs.get(k)) for k in ("make", "model"))
    return bool(mine == theirs)


def _instant(value: Any) -> str:
    """A capture time without trailing fraction zeros: `…:52.000000Z` and `…:52Z` say the same."""
    text = str(value)
    zone = ""
    for mark in ("Z", "+", "-"):
        at = text.rfind(mark)
        if at > 10:  # past the date's own hyphens
            text, zone = text[:at], text[at:]
            break
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + zone


def _near(a: Any, b: Any, tolerance: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
        return bool(a == b)
    return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=tolerance)


def _text(value: Any) -> str | None:
    return " ".join(value.split()) if isinstance(value, str) else value
