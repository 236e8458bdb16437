"""Who may sign: the custodians a ledger has enrolled, derived from its own entries, pure.

Nothing about custodians is stored beside the log; replaying `init`, `enroll` and `revoke` entries
gives the registry as of any sequence number, which is how verify judges each entry's signer.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace

from custody.core.entry import Entry
from custody.core.signing import key_id as derive_key_id

ROLES = ("admin", "field", "investigator", "reviewer")
ARCHIVE_ROLE = "archive"  # the archive's own key: signs the genesis entry and checkpoints
REGISTRY_ACTIONS = ("init", "enroll", "revoke", "key-rotate", "archive-key-rotate")
# A rotation by an admin (after a loss) must say why; one by the old key itself may.


@dataclass(frozen=True, slots=True)
class Custodian:
    key_id: str
    public_key: bytes
    name: str
    role: str
    enrolled_seq: int
    revoked_seq: int | None = None
    retired_seq: int | None = None  # a `key-rotate` replaced this key from that entry on
    successor: str | None = None  # the key that replaced it
    predecessor: str | None = None  # the key this one replaced

    def active_at(self, seq: int) -> bool:
        """May this key sign entry `seq`? Enrolled by an earlier entry, not yet revoked, not yet
        retired by a rotation."""
        after_enrolment = seq > self.enrolled_seq or (seq == 0 and self.role == ARCHIVE_ROLE)
        return (after_enrolment and (self.revoked_seq is None or seq < self.revoked_seq)
                and (self.retired_seq is None or seq < self.retired_seq))

    def ended(self) -> str | None:
        """Why this key may no longer sign ("revoked in entry 7", "retired in entry 9 ..."), or
        None while it may."""
        if self.revoked_seq is not None:
            return f"revoked in entry {self.revoked_seq}"
        if self.retired_seq is not None:
            return f"retired in entry {self.retired_seq} (rotated to key {self.successor})"
        return None


class RegistryError(ValueError):
    """A registry entry the rules do not allow; `rule` names the rule (docs/FORMAT.md §5.6)."""

    def __init__(self, message: str, rule: str = "registry") -> None:
        super().__init__(message)
        self.rule = rule


def decode_public_key(b64: object) -> bytes:
    if not isinstance(b64, str):
        raise RegistryError("public key is not a string")
    try:
        raw = base64.b64decode(b64, validate=True)
    except binascii.Error:
        raise RegistryError("public key is not base64") from None
    if len(raw) != 32:
        raise RegistryError("public key is not 32 bytes")
    return raw


def custodian_from(spec: object, role: str, seq: int) -> Custodian:
    """A custodian from the `{"key_id", "public_key", "name"}` object an entry carries."""
    if not isinstance(spec, dict):
        raise RegistryError("custodian is not an object")
    raw = decode_public_key(spec.get("public_key"))
    if spec.get("key_id") != derive_key_id(raw):
        raise RegistryError("custodian key id does not match its public key")
    name = spec.get("name")
    if not isinstance(name, str):
        raise RegistryError("custodian name is not a string")
    return Custodian(
        key_id=derive_key_id(raw), public_key=raw, name=name, role=role, enrolled_seq=seq
    )


def archive_key_for(keys: list[Custodian], size: int) -> Custodian | None:
    """The archive key that signs a checkpoint of `size` entries: the one named by the last
    `init` or `archive-key-rotate` entry among entries 0..size-1 (docs/FORMAT.md §9.2)."""
    found = None
    for key in keys:
        if key.enrolled_seq < size or found is None:
            found = key
    return found


def archive_key_chain(entries: list[Entry]) -> list[Custodian]:
    """The archive keys named by `init` and `archive-key-rotate` among `entries` (in seq order),
    each with the entry that named it; what a rule-breaking entry names is left out."""
    registry = Registry()
    for e in entries:
        if e.action in ("init", "archive-key-rotate"):
            try:
                registry.apply(e)
            except RegistryError:
                continue
    return registry.archive_keys


class Registry:
    """Custodians by key id, built by applying registry entries in sequence order."""

    def __init__(self) -> None:
        self.by_id: dict[str, Custodian] = {}
        self.archive_keys: list[Custodian] = []  # entry 0's, then each archive-key-rotate's

    def apply(self, entry: Entry) -> None:
        """Fold one entry in; raises RegistryError for a malformed registry entry."""
        d = entry.details
        if entry.action == "init":
            if entry.seq != 0:
                raise RegistryError("an init entry may only be entry 0", "genesis")
            archive = custodian_from(d.get("archive"), ARCHIVE_ROLE, 0)
            admin = custodian_from(d.get("admin"), "admin", 0)
            self.by_id[archive.key_id] = archive
            self.by_id[admin.key_id] = admin
            self.archive_keys = [archive]
        elif entry.action == "enroll":
            role = d.get("role")
            if role not in ROLES:
                raise RegistryError(f"unknown role {role!r}")
            new = custodian_from(d.get("custodian"), str(role), entry.seq)
            old = self.by_id.get(new.key_id)
            if old is not None and old.role == ARCHIVE_ROLE:
                raise RegistryError("enrols the archive key, which signs entry 0 and checkpoints "
                                    "only", "archive-key")
            if old is not None and old.revoked_seq is not None:
                # A revoked key may have been seized or copied: it is never trusted again. A
                # returning custodian makes a new key (docs/FORMAT.md §5.6).
                raise RegistryError(f"enrols key {new.key_id} again, which was revoked in entry "
                                    f"{old.revoked_seq}", "re-enrol")
            if old is not None and old.retired_seq is not None:
                raise RegistryError(f"enrols key {new.key_id} again, which was retired in entry "
                                    f"{old.retired_seq}", "re-enrol")
            if old is not None:
                # a role change: the key stays valid throughout
                self.by_id[new.key_id] = replace(old, role=new.role, name=new.name)
            else:
                self.by_id[new.key_id] = new
        elif entry.action == "revoke":
            target = d.get("key_id")
            found = self.by_id.get(target) if isinstance(target, str) else None
            if found is None:
                raise RegistryError(f"revokes unknown key {target!r}")
            if found.role == ARCHIVE_ROLE:
                raise RegistryError("revokes the archive key, which is no custodian", "archive-key")
            if found.revoked_seq is not None:
                raise RegistryError(f"revokes key {found.key_id} again (revoked in entry "
                                    f"{found.revoked_seq})")
            self.by_id[found.key_id] = replace(found, revoked_seq=entry.seq)
        elif entry.action == "key-rotate":
            self._rotate(entry)
        elif entry.action == "archive-key-rotate":
            self._rotate_archive_key(entry)

    def _rotate(self, entry: Entry) -> None:
        d = entry.details
        new = custodian_from(d.get("custodian"), "field", entry.seq)
        old_id, reason = d.get("old_key_id"), d.get("reason")
        refused = self.refusal_to_rotate(
            old_id if isinstance(old_id, str) else "", new.key_id, entry.actor, entry.seq,
            reason if isinstance(reason, str) else None)
        if refused is not None:
            raise RegistryError(refused[1], refused[0])
        old = self.by_id[str(old_id)]
        self.by_id[old.key_id] = replace(old, retired_seq=entry.seq, successor=new.key_id)
        self.by_id[new.key_id] = replace(new, role=old.role, predecessor=old.key_id)

    def _rotate_archive_key(self, entry: Entry) -> None:
        d = entry.details
        new = custodian_from(d.get("archive"), ARCHIVE_ROLE, entry.seq)
        current = self.archive_keys[-1] if self.archive_keys else None
        if current is None or d.get("previous") != current.key_id:
            raise RegistryError(f"names previous archive key {d.get('previous')!r}, which is not "
                                "the archive key in force", "archive-key-rotate")
        if new.key_id in self.by_id:
            raise RegistryError(f"rotates the archive key to key {new.key_id}, which this log "
                                "already knows (a new archive key is a new key)",
                                "archive-key-rotate")
        retired = replace(current, retired_seq=entry.seq, successor=new.key_id)
        self.by_id[current.key_id] = retired
        self.archive_keys[-1] = retired
        new = replace(new, predecessor=current.key_id)
        self.by_id[new.key_id] = new
        self.archive_keys.append(new)

    def archive_key_for(self, size: int) -> Custodian | None:
        return archive_key_for(self.archive_keys, size)

    def refusal_to_rotate(
        self, old_id: str, new_id: str, actor: str, seq: int, reason: str | None
    ) -> tuple[str, str] | None:
        """(rule, why) a `key-rotate` of `old_id` to `new_id` signed by `actor` at entry `seq`
        breaks, or None: the old key is an active custodian's; the new key was never seen; it is
        signed by the old key itself, or by an active admin who states a reason."""
        old = self.by_id.get(old_id)
        if old is None or old.role == ARCHIVE_ROLE:
            return "registry", f"rotates key {old_id!r}, which is no enrolled custodian's"
        if (ended := old.ended()) is not None:
            return "registry", f"rotates key {old_id} ({old.name}), which was {ended}"
        if new_id in self.by_id:
            return "re-enrol", (f"rotates to key {new_id}, which this log already knows (a new "
                                "key must be new)")
        if actor == old_id:
            return None
        signer = self.signer(actor, seq)
        if signer is None or signer.role != "admin":
            return "rotate-by", ("a key is rotated by the old key itself or by an admin, and "
                                 f"{self.name_of(actor)} is neither")
        if not (reason or "").strip():
            return "rotate-by", "an admin's rotation of another custodian's key needs a reason"
        return None

    def refusal_to_enrol(self, key_id: str) -> str | None:
        """Why `key_id` may not be enrolled (the rules `apply` enforces), or None if it may."""
        old = self.by_id.get(key_id)
        if old is not None and old.role == ARCHIVE_ROLE:
            return "the archive key signs entry 0 and checkpoints only; it is no custodian"
        if old is not None and old.revoked_seq is not None:
            return (f"key {key_id} ({old.name}) was revoked in entry {old.revoked_seq} and is "
                    "never enrolled again; make a new key")
        if old is not None and old.retired_seq is not None:
            return (f"key {key_id} ({old.name}) was retired in entry {old.retired_seq} and is "
                    "never enrolled again")
        return None

    def chain(self, key_id: str) -> list[Custodian]:
        """Every key of the custodian holding `key_id`, oldest first (rotations link them)."""
        found = self.by_id.get(key_id)
        if found is None:
            return []
        while found.predecessor is not None and found.predecessor in self.by_id:
            found = self.by_id[found.predecessor]
        keys = [found]
        while found.successor is not None and found.successor in self.by_id:
            found = self.by_id[found.successor]
            keys.append(found)
        return keys

    def signer(self, key_id: str, seq: int) -> Custodian | None:
        found = self.by_id.get(key_id)
        return found if found is not None and found.active_at(seq) else None

    def name_of(self, key_id: str) -> str:
        found = self.by_id.get(key_id)
        return found.name if found else "(unknown key)"
