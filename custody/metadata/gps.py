"""Positions: EXIF degrees-minutes-seconds with their Ref tags, ISO 6709 strings, 3GPP loci text.

Pure functions, no I/O: text and numbers in, `{"lat", "lon", "alt"}` (decimal degrees, metres) out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

Position = dict[str, float | None]

_NUMBER = r"[+-]\d+(?:\.\d*)?"
# One ISO 6709 point: latitude, longitude, optional altitude and CRS, then "/" (optional here).
_ISO6709 = re.compile(
    rf"^\s*(?P<lat>{_NUMBER})(?P<lon>{_NUMBER})(?P<alt>{_NUMBER})?(?:CRS[^/]*)?/?\s*$"
)
_LOCI_FIELD = re.compile(r"\b(Lat|Lon|Alt)=([+-]?\d+(?:\.\d*)?)")


def position(lat: float | None, lon: float | None, alt: float | None = None) -> Position | None:
    """A position if latitude and longitude are finite and in range, else None."""
    if lat is None or lon is None:
        return None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    if alt is not None and not math.isfinite(alt):
        alt = None
    # 8 decimals is about a millimetre: drops float noise from the DMS arithmetic, nothing real.
    return {
        "lat": round(float(lat), 8),
        "lon": round(float(lon), 8),
        "alt": None if alt is None else round(float(alt), 3),
    }


def dms_to_decimal(parts: Sequence[float], ref: str | None) -> float | None:
    """Degrees, minutes, seconds (any may be fractional; missing ones are 0) to signed degrees.

    A ref of S or W (any case, also "South"/"West") makes the result negative; so does a negative
    degree value, which some writers use instead of the ref.
    """
    if not parts or len(parts) > 3:
        return None
    values = [float(p) for p in parts] + [0.0] * (3 - len(parts))
    if not all(math.isfinite(v) for v in values):
        return None
    degrees, minutes, seconds = values
    negative = degrees < 0
    value = abs(degrees) + minutes / 60.0 + seconds / 3600.0
    if ref and ref.strip()[:1].upper() in ("S", "W"):
        negative = True
    return -value if negative else value


def altitude(value: float | None, ref: int | str | None) -> float | None:
    """Metres above sea level; EXIF GPSAltitudeRef 1 means below sea level (negative)."""
    if value is None or not math.isfinite(float(value)):
        return None
    below = ref is not None and str(ref).strip() == "1"
    return -abs(float(value)) if below else float(value)


def _iso_component(text: str, degree_digits: int) -> float:
    """One ISO 6709 component: ±DD[.d], ±DDMM[.m] or ±DDMMSS[.s] (longitude one digit wider)."""
    sign = -1.0 if text[0] == "-" else 1.0
    body = text[1:]
    whole, _, fraction = body.partition(".")
    fraction = f".{fraction}" if fraction else ""
    extra = len(whole) - degree_digits
    if extra == 0:
        return sign * float(whole + fraction)
    if extra not in (2, 4):
        raise ValueError(f"not an ISO 6709 component: {text!r}")
    degrees = int(whole[:degree_digits])
    if extra == 2:
        minutes, seconds = float(whole[degree_digits:] + fraction), 0.0
    else:
        minutes = float(whole[degree_digits : degree_digits + 2])
        seconds = float(whole[degree_digits + 2 :] + fraction)
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"minutes or seconds out of range: {text!r}")
    return sign * (degrees + minutes / 60.0 + seconds / 3600.0)


def parse_iso6709(text: str) -> Position | None:
    """An ISO 6709 point such as "+33.9856+035.4987+012.000/" (Apple, ©xyz) or "+4016-07418/".

    Latitude has 2 degree digits, longitude 3; more digits mean minutes (and seconds) follow.
    Returns None for anything else.
    """
    match = _ISO6709.match(text)
    if match is None:
        return None
    try:
        lat = _iso_component(match["lat"], 2)
        lon = _iso_component(match["lon"], 3)
    except ValueError:
        return None
    alt = float(match["alt"]) if match["alt"] else None
    return position(lat, lon, alt)


def parse_decimal_triplet(text: str) -> Position | None:
    """ExifTool's -n form of GPSCoordinates: "lat lon [alt]" in signed decimal degrees."""
    parts = str(text).replace(",", " ").split()
    if len(parts) not in (2, 3):
        return None
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    return position(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else None)


def parse_loci(text: str) -> Position | None:
    """ExifTool's text for a 3GPP 'loci' box: "(none) Role=shooting Lat=36.20209 Lon=... Alt=...".

    loci stores an altitude field always; a writer that had none stores 0.
    """
    fields = {name: float(value) for name, value in _LOCI_FIELD.findall(str(text))}
    return position(fields.get("Lat"), fields.get("Lon"), fields.get("Alt"))


# Impossible or unusable fixes (issue 12): kept as read in `gps`, named in `gps_problems`, never
# shown as a place. docs/METADATA.md "Impossible fixes" says why each threshold.
MAX_DOP = 20.0  # dilution of precision above 20 is "poor": errors of hundreds of metres and more
NULL_ISLAND = "null-island"
NO_FIX = "no-fix"
DILUTION = "dilution-too-high"


def _raw_value(raw: Any, exiftool_key: str, exifread_key: str) -> str | None:
    """A tag's text from ExifTool's raw fields, else exifread's."""
    for reader, key in (("exiftool", exiftool_key), ("exifread", exifread_key)):
        value = (raw.get(reader) or {}).get(key) if isinstance(raw, dict) else None
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _ratio(text: str | None) -> float | None:
    """"35", "35.0" or exifread's "7/2" as a number."""
    if text is None:
        return None
    try:
        top, _, bottom = text.partition("/")
        value = float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) else None


def fix_problems(record: Mapping[str, Any]) -> list[str]:
    """Why the record's GPS position is not a place (empty when it is one, or there is none):
    0,0 ("null island", what receivers without a fix report), GPSStatus V (measurement void),
    GPSDOP above MAX_DOP. Each entry starts with its code."""
    position = record.get("gps")
    if not isinstance(position, dict):
        return []
    lat, lon = position.get("lat"), position.get("lon")
    found = []
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        if abs(lat) < 1e-7 and abs(lon) < 1e-7:
            found.append(f"{NULL_ISLAND} (0, 0: what a receiver without a fix reports)")
    raw = record.get("raw")
    status = _raw_value(raw, "GPS:GPSStatus", "GPS GPSStatus")
    if status is not None and status[:1].upper() == "V":
        found.append(f"{NO_FIX} (GPSStatus V: measurement void)")
    dop = _ratio(_raw_value(raw, "GPS:GPSDOP", "GPS GPSDOP"))
    if dop is not None and dop > MAX_DOP:
        found.append(f"{DILUTION} (GPSDOP {dop:g} > {MAX_DOP:g})")
    return found


def shown_place(record: Mapping[str, Any]) -> Position | None:
    """The record's position as a place, or None when it has none or it is flagged."""
    position = record.get("gps")
    if not isinstance(position, dict) or fix_problems(record):
        return None
    return position
