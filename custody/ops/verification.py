"""Recording a verification's outcome as a signed `verification` entry (`verify --record`).

The audit itself is custody/ops/verify.py; this is the one entry it may leave behind, so that a
reviewer sees in the log who checked the archive, when, and what they found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from custody.core.signing import SigningKey
from custody.ops.archive import Archive, Draft


@dataclass(frozen=True, slots=True)
class RecordedVerification:
    seq: int
    ok: bool
    problems: int
    entries: int
    objects: int
    scope: str  # "item" or "archive"

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "ok": self.ok, "problems": self.problems,
                "entries": self.entries, "objects": self.objects, "scope": self.scope}


def record_verification(
    archive: Archive,
    key: SigningKey,
    item: str | None,
    *,
    ok: bool,
    problems: int,
    entries: int,
    objects: int,
) -> RecordedVerification:
    """Append the outcome of a verification of `item` (None: the whole archive), signed by `key`."""
    archive.authorize(key, "verification", item=item)
    scope = "item" if item else "archive"
    details = {"ok": ok, "problems": problems, "entries": entries, "objects": objects,
               "scope": scope}
    signed = archive.append(key, [Draft("verification", item, details)], attempted="verification")
    return RecordedVerification(signed[0].entry().seq, ok, problems, entries, objects, scope)
