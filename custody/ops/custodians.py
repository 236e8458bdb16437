"""Enrolling and revoking custodians: the registry's use cases, for the CLI, a library or a server.

Each is one signed entry by an admin; whether the admin may sign it, and whether the target is
still unrevoked, is decided under the write lock by `Archive.append` (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from custody.core.custodians import ARCHIVE_ROLE, ROLES
from custody.core.signing import PublicKey, SigningKey
from custody.errors import NotPermitted, UsageError
from custody.ops import encryption
from custody.ops.archive import Archive, Draft, custodian_json, registry_of
from store.ports import LedgerTransaction


@dataclass(frozen=True, slots=True)
class Enrolled:
    seq: int
    key_id: str
    name: str
    role: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "key_id": self.key_id, "name": self.name, "role": self.role}


@dataclass(frozen=True, slots=True)
class Revoked:
    seq: int
    key_id: str
    name: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"entries": [self.seq], "key_id": self.key_id, "name": self.name,
                "reason": self.reason}


def enroll(archive: Archive, admin: SigningKey, public: PublicKey, role: str) -> Enrolled:
    """Enrol `public` (its name is the custodian's) with `role`; signed by `admin`."""
    if role not in ROLES:
        raise UsageError(f"unknown role '{role}': choose one of {', '.join(ROLES)}")
    if not public.name:
        raise UsageError("the public key has no name: pass --name")
    archive.authorize(admin, "enroll")
    if (refused := archive.registry().refusal_to_enrol(public.key_id)) is not None:
        raise NotPermitted(refused)  # early answer; decided again under the lock below
    archive.unlock(admin)  # a sealed archive: the admin opens the content key to share it

    def may_be_enrolled(writer: LedgerTransaction, draft: Draft) -> Draft:
        if (refused := registry_of(writer).refusal_to_enrol(public.key_id)) is not None:
            raise NotPermitted(refused)
        _holds_current_key(archive, writer)
        return draft

    draft = Draft(action="enroll", item=None,
                  details={"custodian": custodian_json(public), "role": role})
    signed = archive.append(admin, [draft], decide=may_be_enrolled, attempted="enroll")[0]
    if archive.content_key is not None:  # the new custodian reads the archive (FORMAT.md §12.1)
        encryption.wrap_all(archive.root, archive.content_key, public)
    return Enrolled(signed.entry().seq, public.key_id, public.name, role)


def _holds_current_key(archive: Archive, writer: LedgerTransaction) -> None:
    """In a sealed archive, the enrolling admin must hold the content key in force (decided under
    the lock: a revocation just before may have started a new one), else the new custodian
    could not read what is sealed from now on."""
    if archive.sealer is None or archive.content_key is None:
        return
    current = encryption.epochs(writer, archive.sealer.recipient)[-1]
    if current.number not in archive.content_key.by_epoch:
        raise NotPermitted(f"you hold no copy of the archive's current content key (epoch "
                           f"{current.number}, entry {current.seq}): another admin must enrol")


def revoke(archive: Archive, admin: SigningKey, custodian: str, reason: str) -> Revoked:
    """Revoke the custodian named by key id (8+ hex digits) or name; signed by `admin`. Their
    past entries stay valid; from this entry on, nothing they sign is accepted."""
    target = archive.resolve_custodian(custodian)
    if not reason.strip():
        raise UsageError("a revocation needs a --reason")
    archive.authorize(admin, "revoke", attempted="revoke")

    def not_yet_revoked(writer: LedgerTransaction, draft: Draft) -> Draft:
        registry = registry_of(writer)
        now = registry.by_id[target.key_id]  # under the lock: two admins at once
        if now.revoked_seq is not None:
            raise UsageError(f"{now.name} was already revoked in entry {now.revoked_seq}")
        # A sealed archive is re-keyed: what is sealed from this entry on, the revoked key
        # cannot open (docs/FORMAT.md §12.5)
        return rekeyed(archive, writer, draft, leaving=now.key_id)

    draft = Draft("revoke", None, {"key_id": target.key_id, "name": target.name,
                                   "reason": reason.strip()})
    signed = archive.append(admin, [draft], decide=not_yet_revoked, attempted="revoke")[0]
    return Revoked(signed.entry().seq, target.key_id, target.name, reason.strip())


def rekeyed(archive: Archive, writer: LedgerTransaction, draft: Draft, leaving: str,
            joining: PublicKey | None = None) -> Draft:
    """`draft` starting a new content key epoch of a sealed archive (as is for a clear one):
    wrapped, under the write lock and fsynced before the entry commits, for every custodian
    enrolled and neither revoked nor retired here except `leaving`, and for `joining` (the new
    key of a rotation). A revoke, and an admin's key rotation after a loss (FORMAT.md §12.5)."""
    if archive.sealer is None:
        return draft
    readers = [PublicKey(raw=c.public_key, name=c.name) for c in registry_of(writer).by_id.values()
               if c.role != ARCHIVE_ROLE and c.ended() is None and c.key_id != leaving]
    readers += [joining] if joining is not None else []
    number = len(encryption.epochs(writer, archive.sealer.recipient))
    started = encryption.start_epoch(archive.root, number, readers)
    return replace(draft, details={**draft.details, "sealing": started})
