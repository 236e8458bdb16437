"""What an item's metadata document gives the search index (docs/SEARCH.md §1), read apart from
the entry that records the item, so that a forked reader can read documents while the indexer
writes (custody/search/prefetch.py). The entry decides whether the reading is used.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, NamedTuple

from custody.core import geo
from custody.metadata import provenance
from custody.metadata.gps import fix_problems
from custody.search import c2pa_filter, fastparse, fingerprints
from custody.search.times import OFFSET_UNKNOWN, UNKNOWN_OFFSET_S, time_key, utc


class Reading(NamedTuple):
    """What an item's metadata document gives the index, whatever its entry says: the entry
    decides whether it is used (its signed digest) and may name the type (`mime`). A named tuple:
    the forked reader sends thousands (custody/search/prefetch.py)."""

    sha256: str  # of the bytes read
    warnings: tuple[str, ...]
    captured_at: str | None
    captured_text: str | None
    captured_t: float | None
    basis: str | None
    lat: float | None
    lon: float | None
    alt: float | None
    make: str | None
    model: str | None
    mime: str | None  # the document's, used when the entry names none
    time_bounds: tuple[float, float] | None
    c2pa: str
    hashes: tuple[tuple[float | None, str], ...]  # for an image or a video
    unhashed: str | None  # why an image or a video has none


def read_document(raw: bytes) -> Reading:
    """A clear metadata document's reading (the same warnings in the same order as ever)."""
    value = fastparse.document(raw)  # json.loads's value: the index is derived, verify checks
    return _reading(hashlib.sha256(raw).hexdigest(), value if isinstance(value, dict) else {},
                    used=True)


def _reading(sha256: str, doc: dict[str, Any], used: bool) -> Reading:
    warnings: list[str] = []
    text = clean_text(doc.get("captured_at"))
    moment = utc(text)
    if text and moment is None:
        warnings.append(f"capture time {text!r} is not RFC 3339: not used")
    basis = clean_text(doc.get("captured_at_basis"))
    t = moment.timestamp() if moment else None
    gps = as_dict(doc.get("gps"))
    lat, lon, alt = (finite_number(gps.get(k)) for k in ("lat", "lon", "alt"))
    if lat is None or lon is None or not geo.valid_position(lat, lon):
        if gps:
            warnings.append(f"GPS position {gps!r} is not usable")
        lat = lon = alt = None
    elif problems := fix_problems(doc):  # null island, no fix, poor dilution: no place
        warnings.append("GPS fix not used as a place: " + "; ".join(problems))
        lat = lon = alt = None
    device = as_dict(doc.get("device"))
    wide = UNKNOWN_OFFSET_S if basis == OFFSET_UNKNOWN else 0
    hashes, unhashed = fingerprints.index_rows(doc, HASHED_KINDS[0])  # as if an image
    return Reading(
        sha256, tuple(warnings), time_key(moment) if moment else None, text, t, basis, lat, lon,
        alt, clean_text(device.get("make")), clean_text(device.get("model")),
        clean_text(doc.get("mime")),
        (t - wide, t + wide) if t is not None else None,
        provenance.verdict(doc) if used else c2pa_filter.UNCHECKED,  # a search reads no docs
        tuple(hashes), unhashed)


HASHED_KINDS = ("image", "video")  # the kinds fingerprints.index_rows hashes (docs/SIMILAR.md)


def clean_text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def finite_number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


NO_READING = _reading("", {}, used=False)  # no document, or not the signed one: no facts
