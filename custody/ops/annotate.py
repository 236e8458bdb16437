"""What is said about items: cases, incidents, notes and tags, each a signed entry.

Nothing is edited in place. A correction is a new entry naming the one it `supersedes`; both stay
in the history, and views show the latest.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.errors import NotFound, UsageError
from custody.ops import encryption
from custody.ops.archive import Archive, Draft

_ID = re.compile(r"^[\w.\-:/]{1,100}$", re.UNICODE)


def _check_id(value: str, what: str) -> str:
    value = value.strip()
    if not _ID.match(value):
        raise UsageError(f"{what} {value!r} must be 1-100 letters, digits or . - _ : /")
    return value


def _items_exist(archive: Archive, items: list[str]) -> None:
    known = set(archive.ledger.items())
    for item in items:
        if item not in known:
            raise NotFound(f"no item {item} in this archive")


def _append(archive: Archive, key: SigningKey, action: str, drafts: list[Draft]) -> list[int]:
    archive.authorize(key, action, item=drafts[0].item)
    return [s.entry().seq for s in archive.append(key, drafts, attempted=action)]


def _superseded(archive: Archive, seq: int | None, action: str, match: dict[str, Any]) -> None:
    """A `supersedes` must name an earlier entry of the same kind about the same thing."""
    if seq is None:
        return
    row = archive.ledger.row(seq)
    if row is None:
        raise NotFound(f"no entry {seq} to supersede")
    old = entries.parse(row.body)
    if old.action != action or any(
        (old.item if k == "item" else old.details.get(k)) != v for k, v in match.items()
    ):
        raise UsageError(f"entry {seq} is not a {action} about the same thing; cannot supersede")


def case_add(archive: Archive, key: SigningKey, items: list[str], case: str) -> list[int]:
    case = _check_id(case, "case")
    _items_exist(archive, items)
    return _append(
        archive,
        key,
        "case-add",
        [Draft("case-add", i, {"case": case}) for i in dict.fromkeys(items)],
    )


def case_remove(
    archive: Archive, key: SigningKey, items: list[str], case: str, reason: str
) -> list[int]:
    case = _check_id(case, "case")
    if not reason.strip():
        raise UsageError("removing an item from a case needs a --reason")
    _items_exist(archive, items)
    return _append(
        archive,
        key,
        "case-remove",
        [
            Draft("case-remove", i, {"case": case, "reason": reason.strip()})
            for i in dict.fromkeys(items)
        ],
    )


def parse_date(text: str) -> str:
    """An incident date: YYYY-MM-DD, or an RFC 3339 time with an offset (kept as given)."""
    text = text.strip()
    try:
        if len(text) == 10:
            datetime.strptime(text, "%Y-%m-%d")
            return text
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"date {text!r} is not YYYY-MM-DD or an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise UsageError(f"time {text!r} has no offset (add Z or +HH:MM)")
    return text


def parse_place(text: str) -> dict[str, Any]:
    """`LAT,LON[,NAME]` in decimal degrees (WGS 84)."""
    parts = [p.strip() for p in text.split(",", 2)]
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except (ValueError, IndexError):
        raise UsageError(f"place {text!r} is not LAT,LON[,NAME]") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise UsageError(f"place {text!r} is out of range (lat -90..90, lon -180..180)")
    return {"lat": lat, "lon": lon, "name": parts[2] if len(parts) > 2 else None}


def incident_new(
    archive: Archive,
    key: SigningKey,
    incident: str,
    *,
    case: str | None,
    date: str,
    place: str | None,
    description: str,
    supersedes: int | None = None,
) -> int:
    incident = _check_id(incident, "incident")
    if not description.strip():
        raise UsageError("an incident needs a --description")
    _superseded(archive, supersedes, "incident", {"incident": incident})
    details = {
        "incident": incident,
        "case": _check_id(case, "case") if case else None,
        "date": parse_date(date),
        "place": parse_place(place) if place else None,
        "description": description.strip(),
        "supersedes": supersedes,
    }
    return _append(archive, key, "incident", [Draft("incident", None, details)])[0]


def incident_add(archive: Archive, key: SigningKey, incident: str, items: list[str]) -> list[int]:
    incident = _check_id(incident, "incident")
    if not any(
        entries.parse(r.body).details.get("incident") == incident
        for r in archive.ledger.rows_with_action("incident")
    ):
        raise NotFound(f"no incident {incident}", hint="make it with 'custody incident new'")
    _items_exist(archive, items)
    return _append(
        archive,
        key,
        "incident-add",
        [Draft("incident-add", i, {"incident": incident}) for i in dict.fromkeys(items)],
    )


def incidents(archive: Archive) -> list[dict[str, Any]]:
    """Every incident as last stated (latest entry per incident id), with its items."""
    latest: dict[str, dict[str, Any]] = {}
    for row in archive.ledger.rows_with_action("incident", "incident-add"):
        e = entries.parse(row.body)
        iid = str(e.details.get("incident"))
        if e.action == "incident":
            items = latest.get(iid, {}).get("items", [])
            # a sealed archive's place and description, opened when this reader's keys open them
            details = encryption.opened_or_sealed(archive.content_key, e.details)
            latest[iid] = {**details, "seq": e.seq, "time": e.time, "items": items}
        elif iid in latest and e.item not in latest[iid]["items"]:
            latest[iid]["items"].append(e.item)
    return list(latest.values())


def note(
    archive: Archive, key: SigningKey, item: str, text: str, supersedes: int | None = None
) -> int:
    if not text.strip():
        raise UsageError("a note needs --text")
    _items_exist(archive, [item])
    _superseded(archive, supersedes, "note", {"item": item})
    return _append(
        archive,
        key,
        "note",
        [Draft("note", item, {"text": text.strip(), "supersedes": supersedes})],
    )[0]


def tag(archive: Archive, key: SigningKey, item: str, name: str, removed: bool = False) -> int:
    name = _check_id(name, "tag")
    _items_exist(archive, [item])
    return _append(archive, key, "tag", [Draft("tag", item, {"tag": name, "removed": removed})])[0]

