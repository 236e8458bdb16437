"""Travel mode: `custody travel empty` removes this device's objects once a verified package of
this archive holds every one of them, or (`--handed-in`) those the centre's signed receipts of
`custody sync` prove it holds, after a signed `held-elsewhere` entry says so (FORMAT §12.4).

The signed ledger, its tree and the (sealed) metadata documents stay: verify still checks every
signature and reports the content as held elsewhere, never as missing evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custody.core import entry as entries
from custody.core import handin, note
from custody.core.proofs import archive_verifier
from custody.core.signing import SigningKey
from custody.errors import CustodyError, UsageError, VerificationFailed
from custody.ops.archive import Archive, Draft
from custody.ops.backends import custody_error
from custody.ops.travel_records import held_elsewhere
from custody.package.verify import verify_package
from store.ports import StoreError

SHOWN = 5  # items named in a refusal; the count says the rest


@dataclass(frozen=True, slots=True)
class Emptied:
    """What `travel empty` removed, and the entry that records where it is held."""

    items: list[str]
    package: dict[str, Any] | None
    seq: int | None
    centre: dict[str, Any] | None = None
    kept: dict[str, str] = field(default_factory=dict)  # item -> why it stays (--handed-in)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"emptied": self.items, "package": self.package, "entry": self.seq}
        if self.centre is not None:
            out["centre"] = self.centre
            out["kept"] = [{"item": sha, "reason": why} for sha, why in self.kept.items()]
        return out


def empty(archive: Archive, key: SigningKey, package: Path) -> Emptied:
    """Empty this device of every object a verified package of THIS archive holds; refuse (and
    remove nothing) while any object here is held nowhere else."""
    archive.authorize(key, "held-elsewhere")
    current, _ = archive.current_archive_key()
    report = verify_package(package, pinned=archive_verifier(archive.config.origin, current.raw))
    if report.problems:
        raise VerificationFailed([f"{package}: {p}" for p in report.problems])
    held = {str(r.first.item) for r in report.items if r.first.item}
    already = held_elsewhere(archive.ledger)
    here = [sha for sha in archive.ledger.items()
            if sha not in already and archive.objects.has(sha)]
    missing = [sha for sha in here if sha not in held]
    if missing:
        shown = ", ".join(m[:16] for m in missing[:SHOWN])
        more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
        raise CustodyError(
            f"{len(missing)} item(s) on this device are not held in {package} ({shown}{more}): "
            "nothing removed", hint="export them (custody export) and verify the package first")
    where = {"id": report.package_id, "sha256": report.package_sha256, "exported_at": report.time}
    if not here:
        return Emptied([], where, None)
    return Emptied(here, where, _release(archive, key, {"items": here, "package": where}))


def empty_handed_in(archive: Archive, key: SigningKey, centre_key: str) -> Emptied:
    """Empty this device of the objects whose content the centre's receipts prove it holds: a
    `handed_in` entry here whose checkpoint, signed by the pinned `centre_key`, includes the
    centre's `received` entry of the item (handin.covers). Every other object stays, named."""
    archive.authorize(key, "held-elsewhere")
    try:
        pinned = str(note.parse_verifier_key(centre_key.strip()))
    except note.NoteError as exc:
        raise UsageError(f"--centre-key: {exc.message}") from None
    already = held_elsewhere(archive.ledger)
    here = [sha for sha in archive.ledger.items()
            if sha not in already and archive.objects.has(sha)]
    receipts: dict[str, int] = {}
    kept: dict[str, str] = {}
    for sha in here:
        why = "no receipt of the centre: not handed in (custody sync)"
        for row in archive.ledger.rows_for_item(sha):
            if row.action != "handed_in":
                continue
            try:
                found = entries.parse(row.body)
            except entries.MalformedEntry:
                continue
            why = handin.covers(found.details, sha, pinned) or ""
            if not why:
                receipts[sha] = row.seq
                break
        if sha not in receipts:
            kept[sha] = why
    origin = note.parse_verifier_key(pinned).name
    centre = {"origin": origin, "key": pinned, "receipts": sorted(set(receipts.values()))}
    emptied = [sha for sha in here if sha in receipts]
    if not emptied:
        return Emptied([], None, None, centre, kept)
    seq = _release(archive, key, {"items": emptied, "centre": centre})
    return Emptied(emptied, None, seq, centre, kept)


def _release(archive: Archive, key: SigningKey, details: dict[str, Any]) -> int:
    """Sign the `held-elsewhere` entry first, then remove the objects it names."""
    here = details["items"]
    signed = archive.append(key, [Draft("held-elsewhere", None, details)],
                            attempted="travel empty")[0]
    release = getattr(archive.objects, "release", None)
    if release is None:
        raise CustodyError("this archive's object store cannot be emptied (a folder only)")
    try:
        for sha in here:
            release(sha)
    except StoreError as exc:
        raise custody_error(exc) from None
    return signed.entry().seq
