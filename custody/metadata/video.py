"""ExifTool's tags (-G1 -a -n JSON) for any file: raw fields as text and the normalised fields.

Written for video containers (QuickTime/MP4/3GP atoms, Matroska, RIFF) and also used for images
when exifread fails on them (EXIF groups). Pure over one file's JSON object.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from . import clocks, gps
from .record import empty_fields, safe_text

RAW_TEXT_LIMIT = 2000
NOT_RAW_GROUPS = ("System", "Composite")  # the stored file's own fs facts; values ExifTool derived
NOT_CLOCK_GROUPS = ("System", "Composite", "ExifTool", "File")
_TRACK = re.compile(r"^Track(\d+)$")

CAMERA_CLOCKS = (  # (date-time tag, sub-seconds tag, offset tag), preferred first
    ("ExifIFD:DateTimeOriginal", "ExifIFD:SubSecTimeOriginal", "ExifIFD:OffsetTimeOriginal"),
    # XMP dates carry their zone in the text, or none (offset unknown); no sub-second tags.
    ("XMP-exif:DateTimeOriginal", "", ""),
    ("XMP-photoshop:DateCreated", "", ""),
    ("ExifIFD:CreateDate", "ExifIFD:SubSecTimeDigitized", "ExifIFD:OffsetTimeDigitized"),
    ("XMP-exif:DateTimeDigitized", "", ""),
    ("XMP-xmp:CreateDate", "", ""),
)
# When software last wrote the file or its metadata: kept as clocks, never a capture time.
MODIFIED_CLOCKS = (
    ("IFD0:ModifyDate", "ExifIFD:SubSecTime", "ExifIFD:OffsetTime"),
    ("XMP-xmp:ModifyDate", "", ""),
    ("XMP-xmp:MetadataDate", "", ""),
)
MODIFIED_TAGS = ("ModifyDate", "TrackModifyDate", "MediaModifyDate", "MetadataDate")
FALLBACK_OFFSET = "ExifIFD:OffsetTime"
# Apple's com.apple.quicktime.creationdate (Keys) and its kin: local time with its zone.
ZONED_CONTAINER_CLOCKS = ("Keys:CreationDate", "ItemList:CreationDate", "UserData:CreationDate")
MOVIE_HEADER_CLOCK = "QuickTime:CreateDate"  # mvhd: seconds since 1904 in UTC, by the spec
HEADER_CLOCK_TAGS = (  # mvhd, tkhd and mdhd times: UTC by the same spec
    "CreateDate", "ModifyDate", "TrackCreateDate", "TrackModifyDate", "MediaCreateDate",
    "MediaModifyDate",
)  # fmt: skip
COORDINATE_TAGS = ("Keys:GPSCoordinates", "UserData:GPSCoordinates", "ItemList:GPSCoordinates")
LOCI_TAG = "UserData:LocationInformation"
MAKE_TAGS = (
    "IFD0:Make", "Keys:Make", "Keys:AndroidMake", "Keys:AndroidManufacturer", "UserData:Make",
    "ItemList:Make",
)  # fmt: skip
MODEL_TAGS = ("IFD0:Model", "Keys:Model", "Keys:AndroidModel", "UserData:Model", "ItemList:Model")
DURATION_TAGS = ("QuickTime:Duration", "Matroska:Duration", "M2TS:Duration", "Composite:Duration")
TRACK_CODEC_TAGS = ("CompressorID", "AudioFormat", "VideoCodecID", "AudioCodecID")
OTHER_CODEC_TAGS = ("RIFF:VideoCodec", "RIFF:AudioCodec")


def _group(key: str) -> str:
    return key.split(":", 1)[0] if ":" in key else ""


def _tag(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else key


def _raw_value(value: Any) -> str | int | float:
    if isinstance(value, bool) or value is None:
        return safe_text(value)
    if isinstance(value, int | float):
        return value if math.isfinite(value) else safe_text(value)
    if isinstance(value, list):
        text = ", ".join(safe_text(v) for v in value)
    elif isinstance(value, dict):
        text = safe_text(json.dumps(value, sort_keys=True, ensure_ascii=False))
    else:
        text = safe_text(value)
    return text if len(text) <= RAW_TEXT_LIMIT else f"(skipped: {len(text)} characters)"


def raw_tags(meta: Mapping[str, Any]) -> dict[str, str | int | float]:
    """Every tag ExifTool found, as text or number; ExifTool itself notes binary data it skipped."""
    return {
        key: _raw_value(value)
        for key, value in meta.items()
        if ":" in key and _group(key) not in NOT_RAW_GROUPS and key != "ExifTool:ExifToolVersion"
    }


def problems(meta: Mapping[str, Any]) -> list[str]:
    """ExifTool's error and its warnings (except the ones it marks [minor], kept in raw only)."""
    found = []
    for key in ("ExifTool:Error", "ExifTool:Warning"):
        text = " ".join(safe_text(meta.get(key, "")).split())
        if text and not text.lower().startswith("[minor]"):
            found.append(text)
    return found


def _text(meta: Mapping[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if not isinstance(value, str):
        return None
    text = value.strip().strip("\x00").strip()
    return text or None


def _number(meta: Mapping[str, Any], key: str) -> float | None:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _first_text(meta: Mapping[str, Any], preferred: tuple[str, ...], tag: str) -> str | None:
    """The first of the preferred keys with text, else the same tag in any other group."""
    for key in preferred:
        if _text(meta, key):
            return _text(meta, key)
    for key in meta:
        if _tag(key) == tag and _group(key) not in NOT_CLOCK_GROUPS and _text(meta, key):
            return _text(meta, key)
    return None


def _camera_clock(
    meta: Mapping[str, Any], names: tuple[str, str, str], fallback_offset: str
) -> clocks.Reading | None:
    name, subsec_name, offset_name = names
    value = _text(meta, name)
    parsed = clocks.parse_datetime(value) if value else None
    if value is None or parsed is None:
        return None
    local, offset = parsed
    used = [name]
    subsec = meta.get(subsec_name)
    if local is not None and subsec is not None and str(subsec).strip():
        local = clocks.with_subseconds(local, subsec)
        used.append(subsec_name)
    for candidate in (offset_name, fallback_offset):
        if offset is None and clocks.parse_offset(meta.get(candidate)) is not None:
            offset = clocks.parse_offset(meta.get(candidate))
            used.append(candidate)
    return clocks.Reading("+".join(used), value, local, offset)


def _clock_candidates(meta: Mapping[str, Any]) -> list[tuple[str, clocks.Reading]]:
    """Every clock in the file with its role, in the order captured_at prefers them."""
    found: list[tuple[str, clocks.Reading]] = []
    date = _text(meta, "GPS:GPSDateStamp")
    hms = clocks.parse_time_of_day(meta.get("GPS:GPSTimeStamp"))
    if hms is not None:
        source = "GPS:GPSDateStamp+GPS:GPSTimeStamp" if date else "GPS:GPSTimeStamp"
        found.append(("gps", clocks.gps_reading(source, date, hms)))
    elif date:
        found.append(("gps", clocks.Reading("GPS:GPSDateStamp", date, None)))
    for names in CAMERA_CLOCKS:
        offset_fallback = FALLBACK_OFFSET if names[0].startswith("ExifIFD:") else ""
        reading = _camera_clock(meta, names, offset_fallback)
        if reading is not None:
            found.append(("camera", reading))
    for names in MODIFIED_CLOCKS:
        offset_fallback = FALLBACK_OFFSET if names[0].startswith("IFD0:") else ""
        reading = _camera_clock(meta, names, offset_fallback)
        if reading is not None:
            found.append((clocks.MODIFIED, clocks.modified(reading)))
    for key in ZONED_CONTAINER_CLOCKS:
        reading = _camera_clock(meta, (key, "", ""), "")
        if reading is not None:
            found.append(("container", reading))
    used = {r.source.removesuffix(clocks.MODIFIED_MARK).split("+", 1)[0] for _, r in found}
    used |= {"GPS:GPSDateStamp", "GPS:GPSTimeStamp"}
    for key in [MOVIE_HEADER_CLOCK, *meta]:
        if key in used or _group(key) in NOT_CLOCK_GROUPS:
            continue
        if "Date" not in _tag(key) and "Time" not in _tag(key):
            continue
        used.add(key)
        reading = _camera_clock(meta, (key, "", ""), "")
        if reading is None or reading.local is None:  # dates alone stay in raw
            continue
        if _is_header_clock(key):
            reading = clocks.Reading(reading.source, reading.value, reading.local, None, True)
        if key == MOVIE_HEADER_CLOCK or _tag(key) == "DateTimeOriginal":
            found.append(("container", reading))
        elif _tag(key) in MODIFIED_TAGS:
            found.append((clocks.MODIFIED, clocks.modified(reading)))
        else:
            found.append(("other", reading))
    return found


def _is_header_clock(key: str) -> bool:
    group = _group(key)
    return (group == "QuickTime" or _TRACK.match(group) is not None) and (
        _tag(key) in HEADER_CLOCK_TAGS
    )


def _position(meta: Mapping[str, Any]) -> gps.Position | None:
    lat, lon = _number(meta, "GPS:GPSLatitude"), _number(meta, "GPS:GPSLongitude")
    if lat is not None and lon is not None:
        alt = _number(meta, "GPS:GPSAltitude")
        return gps.position(
            gps.dms_to_decimal([lat], _text(meta, "GPS:GPSLatitudeRef")),
            gps.dms_to_decimal([lon], _text(meta, "GPS:GPSLongitudeRef")),
            gps.altitude(alt, meta.get("GPS:GPSAltitudeRef")),
        )
    for key in COORDINATE_TAGS:
        if key in meta:
            text = safe_text(meta[key])
            found = gps.parse_decimal_triplet(text) or gps.parse_iso6709(text)
            if found:
                return found
    if LOCI_TAG in meta:
        found = gps.parse_loci(safe_text(meta[LOCI_TAG]))
        if found:
            return found
    for key in meta:  # e.g. a bare "location" key holding ISO 6709 text
        if _tag(key) in ("Location", "GPSCoordinates") and _group(key) not in NOT_CLOCK_GROUPS:
            found = gps.parse_iso6709(safe_text(meta[key]))
            if found:
                return found
    lat, lon = _number(meta, "Composite:GPSLatitude"), _number(meta, "Composite:GPSLongitude")
    alt = _number(meta, "Composite:GPSAltitude")
    alt = gps.altitude(alt, meta.get("Composite:GPSAltitudeRef")) if alt is not None else None
    return gps.position(lat, lon, alt)


def _track_groups(meta: Mapping[str, Any]) -> list[str]:
    numbers = {int(m[1]) for key in meta if (m := _TRACK.match(_group(key)))}
    return [f"Track{n}" for n in sorted(numbers)]


def _dimensions(meta: Mapping[str, Any]) -> dict[str, int] | None:
    groups = ["File", *_track_groups(meta)]
    groups += [_group(k) for k in meta if _tag(k) == "ImageWidth" and _group(k) not in groups]
    for group in groups:
        width, height = _number(meta, f"{group}:ImageWidth"), _number(meta, f"{group}:ImageHeight")
        if width and height and width > 0 and height > 0:
            return {"width": int(width), "height": int(height)}
    return None


def _codecs(meta: Mapping[str, Any]) -> list[str]:
    keys = [f"{group}:{tag}" for group in _track_groups(meta) for tag in TRACK_CODEC_TAGS]
    found: list[str] = []
    for key in [*keys, *OTHER_CODEC_TAGS]:
        text = _text(meta, key)
        if text and text not in found:
            found.append(text)
    return found


def fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised fields from ExifTool's tags (those it cannot give stay None or empty)."""
    out = empty_fields()
    candidates = _clock_candidates(meta)
    chosen = clocks.capture(candidates)
    if chosen is not None:
        out["captured_at"], out["captured_at_basis"] = chosen.at, chosen.basis
        out["captured_at_source"] = chosen.source
    out["clocks"] = [r.as_dict() for _, r in candidates]
    out["gps"] = _position(meta)
    make, model = _first_text(meta, MAKE_TAGS, "Make"), _first_text(meta, MODEL_TAGS, "Model")
    if make or model:
        out["device"] = {"make": make, "model": model}
    orientation = _number(meta, "IFD0:Orientation")
    if orientation is not None and orientation in range(1, 9):
        out["orientation"] = int(orientation)
    out["dimensions"] = _dimensions(meta)
    for key in DURATION_TAGS:
        duration = _number(meta, key)
        if duration is not None and duration > 0:
            out["duration_s"] = duration
            break
    out["codecs"] = _codecs(meta)
    return out
