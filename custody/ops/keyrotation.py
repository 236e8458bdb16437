"""Key rotation: a custodian's new key enrolled in place of the old one, or a new archive key.

One signed entry each (docs/FORMAT.md §5.4, docs/KEYS.md): `key-rotate` by the old key itself or
by an admin after a loss, `archive-key-rotate` by an admin. The old key is retired from that entry
on; verify follows the chain, so everything it signed before still verifies.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.core.custodians import ARCHIVE_ROLE
from custody.core.signing import PublicKey, SigningKey
from custody.errors import CustodyError, NotPermitted, UsageError
from custody.ops import encryption
from custody.ops.archive import CONFIG, Archive, Draft, custodian_json, registry_of
from custody.ops.custodians import rekeyed
from custody.ops.keyfiles import check_new_passphrase, public_path, write_new_key
from store.ports import LedgerTransaction


@dataclass(frozen=True, slots=True)
class Rotated:
    seq: int
    name: str
    old_key_id: str
    new_key_id: str
    by: str  # "self", "admin" or "archive"
    reason: str | None
    key_path: str | None  # where the new private key was written, if here

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "name": self.name, "old_key_id": self.old_key_id,
                "new_key_id": self.new_key_id, "by": self.by, "reason": self.reason,
                "key_path": self.key_path}


def _decide_rotation(old_id: str, new_id: str, actor: str, reason: str | None,
                     after_loss: tuple[Archive, PublicKey] | None = None) -> Any:
    """Decided under the write lock; `after_loss` (an admin's rotation: the archive and the new
    key) also starts a content key epoch in a sealed archive (FORMAT.md §12.5)."""
    def decide(writer: LedgerTransaction, draft: Draft) -> Draft:
        refused = registry_of(writer).refusal_to_rotate(old_id, new_id, actor, writer.next_seq,
                                                        reason)
        if refused is not None:
            raise NotPermitted(refused[1])
        if after_loss is None:
            return draft
        archive, new = after_loss
        return rekeyed(archive, writer, draft, leaving=old_id, joining=new)
    return decide


def _rotation_draft(old_id: str, new: PublicKey, reason: str | None) -> Draft:
    return Draft("key-rotate", None, {"old_key_id": old_id, "custodian": custodian_json(new),
                                      "reason": reason})


def rotate_own(archive: Archive, old: SigningKey, key_path: Path, new_passphrase: str,
               reason: str | None) -> Rotated:
    """The custodian holding `old` (its file at `key_path`) makes a new key, enrols it by an entry
    the old key signs, and the new key file takes the old one's place; the old file is kept
    beside it as `<file>.retired-<key id>` (it can sign nothing accepted any more)."""
    who = archive.registry().by_id.get(old.key_id)
    if who is None or who.role == ARCHIVE_ROLE:
        raise NotPermitted(f"key {old.key_id} is not enrolled in this archive")
    if (ended := who.ended()) is not None:
        raise NotPermitted(f"key {old.key_id} ({who.name}) was {ended}")
    check_new_passphrase(new_passphrase)
    reason = reason.strip() if reason and reason.strip() else None
    archive.unlock(old)  # a sealed archive: the new key is given the content key (FORMAT §12.1)
    staged = key_path.with_name(key_path.name + ".new")
    for path in (staged, public_path(staged)):
        path.unlink(missing_ok=True)  # a rotation interrupted before its entry left these
    new = write_new_key(staged, who.name, new_passphrase)
    try:
        signed = archive.append(old, [_rotation_draft(old.key_id, new.public, reason)],
                                decide=_decide_rotation(old.key_id, new.key_id, old.key_id, reason),
                                attempted="key-rotate")[0]
    except BaseException:
        staged.unlink(missing_ok=True)
        public_path(staged).unlink(missing_ok=True)
        raise
    if archive.content_key is not None:
        encryption.wrap_all(archive.root, archive.content_key, new.public)
    retired = key_path.with_name(f"{key_path.name}.retired-{old.key_id}")
    os.replace(key_path, retired)
    if public_path(key_path).exists():
        os.replace(public_path(key_path), public_path(retired))
    os.replace(staged, key_path)
    os.replace(public_path(staged), public_path(key_path))
    return Rotated(signed.entry().seq, who.name, old.key_id, new.key_id, "self", reason,
                   str(key_path))


def rotate_by_admin(archive: Archive, admin: SigningKey, custodian: str, new: PublicKey,
                    reason: str) -> Rotated:
    """After a loss: an admin enrols `new` in place of `custodian`'s key, stating why. A sealed
    archive is re-keyed as on a revocation: what is sealed from this entry on, the lost key
    cannot open (FORMAT.md §12.5); the new key is also given every older content key the admin
    holds, so it reads what the old one read."""
    target = archive.resolve_custodian(custodian)
    if not reason.strip():
        raise UsageError("an admin's rotation of another custodian's key needs a --reason")
    archive.authorize(admin, "key-rotate", attempted="key-rotate")
    refused = archive.registry().refusal_to_rotate(target.key_id, new.key_id, admin.key_id,
                                                   archive.ledger.size(), reason)
    if refused is not None:
        raise NotPermitted(refused[1])
    public = PublicKey(raw=new.raw, name=new.name or target.name)
    archive.unlock(admin)  # a sealed archive: the new key is given the content key
    signed = archive.append(admin, [_rotation_draft(target.key_id, public, reason.strip())],
                            decide=_decide_rotation(
                                target.key_id, new.key_id, admin.key_id, reason,
                                # an admin rotating their own key signs with it: not lost
                                after_loss=(archive, public) if admin.key_id != target.key_id
                                else None),
                            attempted="key-rotate")[0]
    if archive.content_key is not None:
        encryption.wrap_all(archive.root, archive.content_key, public)
    return Rotated(signed.entry().seq, target.name, target.key_id, new.key_id, "admin",
                   reason.strip(), None)


def rotate_archive_key(archive: Archive, admin: SigningKey, new_passphrase: str,
                       reason: str) -> Rotated:
    """A new archive key, enrolled by an admin's `archive-key-rotate` entry: checkpoints of a
    tree holding that entry are signed by the new key, earlier ones stay the old key's. The old
    key need not be at hand (lost or seized is when this is done); its file, if here, is kept as
    `keys/archive.key.retired-<key id>`, and custody.json names the new key."""
    if not reason.strip():
        raise UsageError("a rotation of the archive key needs a --reason")
    archive.authorize(admin, "archive-key-rotate", attempted="archive-key-rotate")
    check_new_passphrase(new_passphrase, "archive key")
    keys = archive.root / "keys"
    current, _ = archive.current_archive_key()
    staged = keys / "archive.key.new"
    for path in (staged, public_path(staged)):
        path.unlink(missing_ok=True)
    new = write_new_key(staged, current.name or f"{archive.config.name} archive", new_passphrase,
                        what="archive key")

    def still_current(writer: LedgerTransaction, draft: Draft) -> Draft:
        now = registry_of(writer).archive_keys
        if not now or now[-1].key_id != current.key_id:
            raise NotPermitted("the archive key was rotated meanwhile; nothing was recorded")
        return draft

    draft = Draft("archive-key-rotate", None, {"archive": custodian_json(new.public),
                                               "previous": current.key_id,
                                               "reason": reason.strip()})
    try:
        signed = archive.append(admin, [draft], decide=still_current,
                                attempted="archive-key-rotate")[0]
    except BaseException:
        staged.unlink(missing_ok=True)
        public_path(staged).unlink(missing_ok=True)
        raise
    _install_archive_key(archive, staged, new.public, current.key_id)
    return Rotated(signed.entry().seq, archive.config.name, current.key_id, new.key_id,
                   "archive", reason.strip(), str(keys / "archive.key"))


def _install_archive_key(archive: Archive, staged: Path, new: PublicKey, old_id: str) -> None:
    """Put the new archive key where checkpoints are signed from, and name it in custody.json."""
    keys = archive.root / "keys"
    live = keys / "archive.key"
    retired = keys / f"archive.key.retired-{old_id}"
    if live.exists():
        os.replace(live, retired)
    if public_path(live).exists():
        os.replace(public_path(live), public_path(retired))
    os.replace(staged, live)
    os.replace(public_path(staged), public_path(live))
    path = archive.root / CONFIG
    try:
        config = json.loads(path.read_text())
        config["archive_key"] = custodian_json(new)
    except (OSError, ValueError) as exc:
        raise CustodyError(f"the archive key was rotated but {CONFIG} could not be updated: "
                           f"{exc}") from None
    tmp = path.with_name(CONFIG + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(config, indent=2) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
