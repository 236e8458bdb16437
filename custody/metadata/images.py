"""exifread's tags for an image: the raw tags as text and the normalised fields (EXIF and GPS IFDs).

Pure over exifread's result (tag name to IfdTag, or bytes for a thumbnail); reading is the worker's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import clocks, gps
from .record import empty_fields, safe_text

RAW_TEXT_LIMIT = 2000  # longer printable values (maker notes, XMP packets) are noted, not kept

# (date-time tag, sub-seconds tag, offset tag), in the order captured_at prefers them.
CAMERA_CLOCKS = (
    ("EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal", "EXIF OffsetTimeOriginal"),
    ("Image DateTimeOriginal", "EXIF SubSecTimeOriginal", "EXIF OffsetTimeOriginal"),
    ("EXIF DateTimeDigitized", "EXIF SubSecTimeDigitized", "EXIF OffsetTimeDigitized"),
)
# IFD0 DateTime is when software last wrote the file: kept as a clock, never a capture time.
MODIFIED_CLOCK = ("Image DateTime", "EXIF SubSecTime", "EXIF OffsetTime")
FALLBACK_OFFSET = "EXIF OffsetTime"  # cameras that write only one offset write this one


def raw_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Every tag as exifread prints it; binary blobs and very long values are noted as skipped."""
    raw: dict[str, str] = {}
    for name, tag in tags.items():
        if isinstance(tag, bytes | bytearray):
            raw[name] = f"(skipped: binary, {len(tag)} bytes)"
            continue
        text = safe_text(tag)
        raw[name] = text if len(text) <= RAW_TEXT_LIMIT else f"(skipped: {len(text)} characters)"
    return raw


def _text(tags: Mapping[str, Any], name: str) -> str | None:
    tag = tags.get(name)
    if tag is None or isinstance(tag, bytes | bytearray):
        return None
    text = safe_text(tag).strip().strip("\x00").strip()
    return text or None


def _numbers(tags: Mapping[str, Any], name: str) -> list[float] | None:
    values = getattr(tags.get(name), "values", None)
    if not isinstance(values, list) or not values:
        return None
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _source(*names: str) -> str:
    """Name the tags a clock came from: "GPS GPSDate+GPSTimeStamp", IFD prefix once."""
    prefixes = {n.split(" ", 1)[0] for n in names}
    if len(prefixes) == 1:
        return names[0] + "".join("+" + n.split(" ", 1)[1] for n in names[1:])
    return "+".join(names)


def _gps_clock(tags: Mapping[str, Any]) -> clocks.Reading | None:
    date, hms = _text(tags, "GPS GPSDate"), _numbers(tags, "GPS GPSTimeStamp")
    if hms is not None and len(hms) == 3:
        names = ("GPS GPSDate", "GPS GPSTimeStamp") if date else ("GPS GPSTimeStamp",)
        return clocks.gps_reading(_source(*names), date, (hms[0], hms[1], hms[2]))
    if date:
        return clocks.Reading("GPS GPSDate", date, None)
    return None


def _camera_clock(
    tags: Mapping[str, Any], names: tuple[str, str, str], fallback_offset: str = FALLBACK_OFFSET
) -> clocks.Reading | None:
    name, subsec_name, offset_name = names
    value = _text(tags, name)
    parsed = clocks.parse_datetime(value) if value else None
    if value is None or parsed is None:
        return None
    local, offset = parsed
    used = [name]
    if local is not None and _text(tags, subsec_name):
        local = clocks.with_subseconds(local, _text(tags, subsec_name))
        used.append(subsec_name)
    for candidate in (offset_name, fallback_offset):
        if offset is None and clocks.parse_offset(_text(tags, candidate)) is not None:
            offset = clocks.parse_offset(_text(tags, candidate))
            used.append(candidate)
    return clocks.Reading(_source(*used), value, local, offset)


def fields(tags: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised fields from exifread's tags (those it cannot give stay None or empty)."""
    out = empty_fields()
    candidates: list[tuple[str, clocks.Reading]] = []
    gps_clock = _gps_clock(tags)
    if gps_clock is not None:
        candidates.append(("gps", gps_clock))
    known = {names[0] for names in (*CAMERA_CLOCKS, MODIFIED_CLOCK)}
    for names in CAMERA_CLOCKS:
        reading = _camera_clock(tags, names)
        if reading is not None:
            candidates.append(("camera", reading))
    modified = _camera_clock(tags, MODIFIED_CLOCK)
    if modified is not None:
        candidates.append((clocks.MODIFIED, clocks.modified(modified)))
    for name in tags:
        if "DateTime" in name and name not in known:
            reading = _camera_clock(tags, (name, "", ""), fallback_offset="")
            if reading is not None:
                candidates.append(("other", reading))
    chosen = clocks.capture(candidates)
    if chosen is not None:
        out["captured_at"], out["captured_at_basis"] = chosen.at, chosen.basis
        out["captured_at_source"] = chosen.source
    out["clocks"] = [reading.as_dict() for _, reading in candidates]

    lat = _numbers(tags, "GPS GPSLatitude")
    lon = _numbers(tags, "GPS GPSLongitude")
    if lat and lon:
        alt = _numbers(tags, "GPS GPSAltitude")
        out["gps"] = gps.position(
            gps.dms_to_decimal(lat, _text(tags, "GPS GPSLatitudeRef")),
            gps.dms_to_decimal(lon, _text(tags, "GPS GPSLongitudeRef")),
            gps.altitude(alt[0], _text(tags, "GPS GPSAltitudeRef")) if alt else None,
        )

    make, model = _text(tags, "Image Make"), _text(tags, "Image Model")
    if make or model:
        out["device"] = {"make": make, "model": model}

    orientation = _numbers(tags, "Image Orientation")
    if orientation and orientation[0] in range(1, 9):
        out["orientation"] = int(orientation[0])

    for width_name, height_name in (
        ("Image ImageWidth", "Image ImageLength"),
        ("EXIF ExifImageWidth", "EXIF ExifImageLength"),
    ):
        width, height = _numbers(tags, width_name), _numbers(tags, height_name)
        if width and height and width[0] > 0 and height[0] > 0:
            out["dimensions"] = {"width": int(width[0]), "height": int(height[0])}
            break
    return out
