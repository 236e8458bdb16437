"""Travel mode: `custody travel empty` removes this device's objects once a verified package of
this archive holds every one of them, after a signed `held-elsewhere` entry says so (FORMAT §12.4).

The signed ledger, its tree and the (sealed) metadata documents stay: verify still checks every
signature and reports the content as held elsewhere, never as missing evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.core.proofs import archive_verifier
from custody.core.signing import SigningKey
from custody.errors import CustodyError, VerificationFailed
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
    package: dict[str, Any]
    seq: int | None

    def to_json(self) -> dict[str, Any]:
        return {"emptied": self.items, "package": self.package, "entry": self.seq}


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
    signed = archive.append(key, [Draft("held-elsewhere", None,
                                        {"items": here, "package": where})],
                            attempted="travel empty")[0]
    release = getattr(archive.objects, "release", None)
    if release is None:
        raise CustodyError("this archive's object store cannot be emptied (a folder only)")
    try:
        for sha in here:
            release(sha)
    except StoreError as exc:
        raise custody_error(exc) from None
    return Emptied(here, where, signed.entry().seq)
