"""Travel mode's record: which items' content a signed `held-elsewhere` entry says this device
no longer holds, and where it is held: a package, or the centre by its receipts (docs/FORMAT.md
§12.4). Read by verify and show."""

from __future__ import annotations

from custody.core import entry as entries
from store.ports import LedgerReads


def held_elsewhere(ledger: LedgerReads) -> dict[str, str]:
    """Item SHA-256 -> where its content is held, from every `held-elsewhere` entry."""
    held: dict[str, str] = {}
    for row in ledger.rows_with_action("held-elsewhere"):
        try:
            details = entries.parse(row.body).details
        except entries.MalformedEntry:
            continue  # the ledger check names it
        package, centre = details.get("package"), details.get("centre")
        if isinstance(package, dict):
            where = f"package {package.get('id')}, entry {row.seq}"
        elif isinstance(centre, dict):  # the centre's signed receipts (handed_in entries)
            where = f"at the centre {centre.get('origin')}, entry {row.seq}"
        else:
            where = f"entry {row.seq}"
        for sha in details.get("items") or []:
            held[str(sha)] = where
    return held
