"""Dumps and their members as `show` presents them: which dump (and path inside it) an item was
unpacked from, and which items were unpacked from a dump, read from the signed entries' `source`.
"""

from __future__ import annotations

from typing import Any

from custody.core import entry as entries
from store.ports import Ledger


def unpacked_from(ledger: Ledger, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each dump this item was found in, with its path there and the names the dump was ingested
    under, once each (from the item's own entries)."""
    out: list[dict[str, Any]] = []
    for h in history:
        if h["action"] not in ("ingest", "sighting"):
            continue
        src = h["details"].get("source") or {}
        if isinstance(src.get("container"), str):
            found = {"container": src["container"], "member": src.get("member"), "seq": h["seq"]}
            if all((f["container"], f["member"]) != (found["container"], found["member"])
                   for f in out):
                out.append(found)
    for f in out:
        f["container_names"] = _names(ledger, f["container"])
    return out


def _names(ledger: Ledger, item: str) -> list[str]:
    names: list[str] = []
    for row in ledger.rows_for_item(item):
        e = entries.parse(row.body)
        name = (e.details.get("source") or {}).get("name") if e.action in (
            "ingest", "sighting", "received") else None
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


# What libmagic calls the containers ingest --unpack opens: only these are looked up (a scan).
ARCHIVE_MIMES = ("application/zip", "application/x-tar", "application/gzip", "application/x-gzip",
                 "application/x-bzip2", "application/x-xz")


def members_of(ledger: Ledger, dump: str, mime: str | None) -> list[dict[str, Any]]:
    """Every item recorded as unpacked from `dump` (a zip or tar by its MIME type): its SHA-256,
    path inside and entry seq, in log order."""
    out: list[dict[str, Any]] = []
    if mime not in ARCHIVE_MIMES:
        return out
    needle = dump.encode("ascii")
    for row in ledger.rows_with_action("ingest", "sighting"):
        if needle not in row.body:  # cheap: most entries name no container at all
            continue
        e = entries.parse(row.body)
        src = e.details.get("source") or {}
        if src.get("container") == dump:
            out.append({"sha256": e.item, "member": src.get("member"), "seq": e.seq})
    return out
