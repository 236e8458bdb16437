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
REGISTRY_ACTIONS = ("init", "enroll", "revoke")


@dataclass(frozen=True, slots=True)
class Custodian:
    key_id: str
    public_key: bytes
    name: str
    role: str
    enrolled_seq: int
    revoked_seq: int | None = None

    def active_at(self, seq: int) -> bool:
        """May this key sign entry `seq`? Enrolled by an earlier entry and not yet revoked."""
        after_enrolment = seq > self.enrolled_seq or (seq == 0 and self.role == ARCHIVE_ROLE)
        return after_enrolment and (self.revoked_seq is None or seq < self.revoked_seq)


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


class Registry:
    """Custodians by key id, built by applying registry entries in sequence order."""

    def __init__(self) -> None:
        self.by_id: dict[str, Custodian] = {}

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

    def refusal_to_enrol(self, key_id: str) -> str | None:
        """Why `key_id` may not be enrolled (the rules `apply` enforces), or None if it may."""
        old = self.by_id.get(key_id)
        if old is not None and old.role == ARCHIVE_ROLE:
            return "the archive key signs entry 0 and checkpoints only; it is no custodian"
        if old is not None and old.revoked_seq is not None:
            return (f"key {key_id} ({old.name}) was revoked in entry {old.revoked_seq} and is "
                    "never enrolled again; make a new key")
        return None

    def signer(self, key_id: str, seq: int) -> Custodian | None:
        found = self.by_id.get(key_id)
        return found if found is not None and found.active_at(seq) else None

    def name_of(self, key_id: str) -> str:
        found = self.by_id.get(key_id)
        return found.name if found else "(unknown key)"
