"""Clock readings: parse the date-time texts that media carry, turn them into UTC, pick captured_at.

Pure functions, no I/O and no system clock: what each clock in a file said, the offset if the file
states one, and the RFC 3339 UTC instant when it is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

_DATE_TIME = re.compile(
    r"^\s*(?P<y>\d{4})[:\-](?P<mo>\d{2})[:\-](?P<d>\d{2})"
    r"(?:[ T](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?)?"
    r"\s*(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_OFFSET = re.compile(r"^\s*(?:(?P<z>Z)|(?P<sign>[+-])(?P<h>\d{2})(?::?(?P<m>\d{2}))?)\s*$")
_TIME_OF_DAY = re.compile(r"^\s*(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*$")

# What each basis means is written down in docs/METADATA.md.
GPS = "gps"
CAMERA_OFFSET = "camera-clock+offset"
CAMERA_NO_OFFSET = "camera-clock-offset-unknown"
CONTAINER_UTC = "container-utc"
CONTAINER_OFFSET = "container+offset"


@dataclass(frozen=True, slots=True)
class Reading:
    """What one clock in a file said.

    `local` is the wall-clock time it states (None when the text is only a date), `offset` the UTC
    offset the file states for it, and `utc_by_spec` whether the format defines it as UTC (the EXIF
    GPS clock, the QuickTime movie header), in which case no offset is needed to know the instant.
    """

    source: str
    value: str
    local: datetime | None
    offset: str | None = None
    utc_by_spec: bool = False

    @property
    def utc(self) -> str | None:
        if self.local is None:
            return None
        if self.offset is not None:
            return format_utc(self.local - offset_delta(self.offset))
        if self.utc_by_spec:
            return format_utc(self.local)
        return None

    def as_dict(self) -> dict[str, str | None]:
        return {"source": self.source, "value": self.value, "utc": self.utc, "offset": self.offset}


def parse_offset(text: object) -> str | None:
    """An offset such as "+03:00", "+0300", "+03" or "Z" as "±HH:MM"; None if it is not one."""
    match = _OFFSET.match(str(text)) if text is not None else None
    if match is None:
        return None
    if match["z"]:
        return "+00:00"
    hours, minutes = int(match["h"]), int(match["m"] or 0)
    if hours > 14 or minutes > 59:
        return None
    return f"{match['sign']}{hours:02d}:{minutes:02d}"


def offset_delta(offset: str) -> timedelta:
    sign = -1 if offset[0] == "-" else 1
    return sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))


def parse_datetime(text: object) -> tuple[datetime | None, str | None] | None:
    """EXIF/QuickTime/ISO date-time text to (local wall-clock time, offset stated in the text).

    "2016:10:03 14:22:05", "2016:10:03 14:22:05.5+03:00", "2016-10-03T11:22:05Z" all parse; a
    date alone gives (None, None); zero dates ("0000:00:00 00:00:00"), impossible dates and
    anything else give None.
    """
    match = _DATE_TIME.match(str(text)) if text is not None else None
    if match is None:
        return None
    try:
        year, month, day = int(match["y"]), int(match["mo"]), int(match["d"])
        datetime(year, month, day)  # validates the date, zero dates included
        if match["h"] is None:
            return None, None
        fraction = (match["frac"] or "")[:6].ljust(6, "0")
        local = datetime(
            year, month, day, int(match["h"]), int(match["mi"]), int(match["s"] or 0), int(fraction)
        )
    except ValueError:
        return None
    zone = match["zone"]
    return local, parse_offset(zone) if zone else None


def with_subseconds(local: datetime, subseconds: object) -> datetime:
    """Add EXIF SubSecTime* digits ("813" is .813 s) to a time that has none of its own."""
    digits = str(subseconds or "").strip().strip("\x00").strip()
    if not digits.isdigit() or local.microsecond:
        return local
    return local.replace(microsecond=int(digits[:6].ljust(6, "0")))


def parse_time_of_day(text: object) -> tuple[float, float, float] | None:
    """A time such as "11:22:05" or "07:41:29.5" (ExifTool's GPSTimeStamp) as h, m, s."""
    match = _TIME_OF_DAY.match(str(text)) if text is not None else None
    if match is None:
        return None
    return float(match[1]), float(match[2]), float(match[3])


def gps_reading(source: str, date_text: object, hms: tuple[float, float, float]) -> Reading:
    """The GPS clock: GPSDateStamp plus GPSTimeStamp, which EXIF defines as UTC."""
    hours, minutes, seconds = hms
    time_text = f"{int(hours):02d}:{int(minutes):02d}:{format_seconds(seconds)}"
    parsed = parse_datetime(f"{date_text} 00:00:00") if date_text is not None else None
    if parsed is None or parsed[0] is None or not (0 <= hours < 24 and 0 <= minutes < 60):
        value = f"{date_text} {time_text}" if date_text is not None else time_text
        return Reading(source, value, None)
    local = parsed[0] + timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return Reading(source, f"{date_text} {time_text}", local, utc_by_spec=True)


def format_seconds(seconds: float) -> str:
    whole = int(seconds)
    rest = f"{seconds - whole:.6f}"[1:].rstrip("0").rstrip(".")
    return f"{whole:02d}{rest}"


def format_utc(moment: datetime) -> str:
    """RFC 3339 with 'Z', seconds precision, sub-seconds kept (trailing zeros dropped)."""
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


# Roles of a clock in a file. Only the first three can be a capture time; "modified" (IFD0
# DateTime/ModifyDate, XMP ModifyDate/MetadataDate: when software last wrote the file) never is.
RANKED_ROLES = ("gps", "camera", "container")
MODIFIED = "modified"
MODIFIED_MARK = " (modification time)"  # appended to the source of a modification clock

# captured_at's order (docs/METADATA.md "captured_at"): a clock whose instant is known beats one
# whose offset is unknown, whatever its tag; within one tier the caller's order decides.
TIERS = (GPS, CAMERA_OFFSET, CONTAINER_OFFSET, CONTAINER_UTC, CAMERA_NO_OFFSET)


def modified(reading: Reading) -> Reading:
    """The same reading, its source saying that it is a modification time."""
    return Reading(reading.source + MODIFIED_MARK, reading.value, reading.local, reading.offset,
                   reading.utc_by_spec)


@dataclass(frozen=True, slots=True)
class Capture:
    """The clock chosen as the capture time: its text, its basis and the tags it was read from."""

    at: str
    basis: str
    source: str
    rank: tuple[int, int]  # (tier, position among the candidates): lower is better


def _basis(role: str, reading: Reading) -> tuple[str | None, str | None]:
    """(captured_at text, basis) this clock would give, or (None, None) if it cannot be one."""
    if reading.local is None or role not in RANKED_ROLES:
        return None, None
    if role == "gps":
        return (reading.utc, GPS) if reading.utc is not None else (None, None)
    if role == "container" and (reading.utc_by_spec or reading.value.rstrip().endswith("Z")):
        return reading.utc or format_utc(reading.local), CONTAINER_UTC
    if reading.offset is not None:
        return reading.utc, CAMERA_OFFSET if role == "camera" else CONTAINER_OFFSET
    return format_local(reading.local), CAMERA_NO_OFFSET


def capture(candidates: list[tuple[str, Reading]]) -> Capture | None:
    """The best clock for captured_at: the lowest tier (TIERS), then the caller's order.

    Each candidate is (role, reading); roles other than gps, camera and container are not
    capture times. A GPS clock counts only with a full UTC instant. A clock with no offset gives
    its wall-clock reading with no zone, basis camera-clock-offset-unknown.
    """
    best: Capture | None = None
    for position, (role, reading) in enumerate(candidates):
        at, basis = _basis(role, reading)
        if at is None or basis is None:
            continue
        rank = (TIERS.index(basis), position)
        if best is None or rank < best.rank:
            best = Capture(at, basis, reading.source, rank)
    return best


def captured_at(candidates: list[tuple[str, Reading]]) -> tuple[str | None, str | None]:
    """captured_at and its basis from `capture` (None, None when no clock can be one)."""
    chosen = capture(candidates)
    return (chosen.at, chosen.basis) if chosen else (None, None)


def format_local(moment: datetime) -> str:
    """A wall-clock reading of unknown offset: RFC 3339's date-time without any zone."""
    return format_utc(moment)[:-1]


def shown_capture(value: str | None, basis: str | None) -> str | None:
    """captured_at as every output shows it: an offset-unknown clock as its local reading, never
    with a zone (records signed before issue 12 stored it with a "Z", read as if UTC)."""
    if value and basis == CAMERA_NO_OFFSET and value.endswith("Z"):
        return value[:-1]
    return value


def tag_rank(source: str | None) -> int:
    """How original the tag a capture time came from is, across readers' naming: 0 for
    DateTimeOriginal / DateCreated (the shot), 1 for CreateDate / DateTimeDigitized (the
    digitising), 2 for any other."""
    first = (source or "").split("+", 1)[0]
    if first.endswith(("DateTimeOriginal", "DateCreated")):
        return 0
    if first.endswith(("CreateDate", "DateTimeDigitized", "CreationDate")):
        return 1
    return 2


def compared_rank(basis: str | None, source: str | None) -> tuple[int, int]:
    """The rank of one reader's capture time against another's (lower is better)."""
    tier = TIERS.index(basis) if basis in TIERS else len(TIERS)
    return tier, tag_rank(source)


# How far a file's clocks may spread before they "disagree": a video's start and end clocks
# (Apple's creationdate and the movie header written when recording stopped) differ by its
# duration; a second more for the rounding of whole-second clocks.
SPREAD_SLACK_S = 2.0
_MODIFIED_TAGS = ("ModifyDate", "TrackModifyDate", "MediaModifyDate", "MetadataDate")


def is_modification(source: str) -> bool:
    """Whether a clock (by its source) is a modification time, in records of any age (those
    before issue 12 lack the mark)."""
    if source.endswith(MODIFIED_MARK):
        return True
    first = source.split("+", 1)[0]
    return first == "Image DateTime" or first.rsplit(":", 1)[-1] in _MODIFIED_TAGS


def listed_once(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The clocks of a record for display: clocks that say the same (value, offset and instant)
    become one entry whose source names every tag, joined by " = "."""
    merged: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for clock in found:
        key = (clock.get("value"), clock.get("offset"), clock.get("utc"))
        if key in merged:
            merged[key]["source"] = f"{merged[key]['source']} = {clock.get('source')}"
        else:
            merged[key] = dict(clock)
    return list(merged.values())


def disagreement(found: list[dict[str, Any]], duration_s: float | None) -> tuple[str, str] | None:
    """(earliest, latest) UTC instants of the capture clocks when they spread further than the
    file's duration (plus SPREAD_SLACK_S); None when they agree. Modification times are not
    capture clocks and never make a disagreement."""
    instants = []
    for clock in found:
        utc = clock.get("utc")
        if isinstance(utc, str) and not is_modification(str(clock.get("source", ""))):
            parsed = parse_datetime(utc)
            if parsed is not None and parsed[0] is not None:
                instants.append((parsed[0], utc))
    if len(instants) < 2:
        return None
    instants.sort()
    spread = (instants[-1][0] - instants[0][0]).total_seconds()
    allowed = (duration_s if isinstance(duration_s, int | float) else 0.0) + SPREAD_SLACK_S
    return (instants[0][1], instants[-1][1]) if spread > allowed else None
