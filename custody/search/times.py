"""Capture times as search compares them: sortable UTC keys, camera clocks of unknown offset, and
incident dates as intervals. Pure (docs/SEARCH.md §2.2).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

OFFSET_UNKNOWN = "camera-clock-offset-unknown"  # docs/METADATA.md: wall clock read as if UTC
UNKNOWN_OFFSET_S = 14 * 3600  # UTC offsets run from -12:00 to +14:00: +-14 h covers them all


def time_key(moment: datetime) -> str:
    """The sortable UTC text the index compares: fixed width, microseconds, Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def shifted(moment: datetime | None, by: timedelta, unbounded: str) -> str:
    """The sortable key of moment + by; `unbounded` when there is none or it leaves the
    calendar."""
    if moment is None:
        return unbounded
    try:
        return time_key(moment + by)
    except OverflowError:
        return unbounded


def incident_interval(date: str | None) -> tuple[float | None, float | None, bool]:
    """An incident's date as Unix seconds [lo, hi] and whether its UTC offset is unknown:
    YYYY-MM-DD is that whole day read as UTC (offset unknown); an RFC 3339 time is an instant."""
    if not date:
        return None, None, False
    try:
        if len(date) == 10:
            day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
            return day.timestamp(), (day + timedelta(days=1)).timestamp() - 1e-6, True
        moment = datetime.fromisoformat(date.replace("z", "Z"))
    except ValueError:
        return None, None, False
    if moment.tzinfo is None:
        t = moment.replace(tzinfo=UTC).timestamp()
        return t, t, True
    t = moment.timestamp()
    return t, t, False
