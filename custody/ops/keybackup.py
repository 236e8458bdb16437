"""Key backup and recovery: a key split into SLIP-39 shares, and rebuilt from enough of them.

What is split is the key's 32-byte Ed25519 seed (RFC 8032), the master secret SLIP-39 takes; the
shares carry their own RS1024 checksum. A `key-backup` / `key-restore` entry records who, which
key, N and T, never any share material (docs/KEYS.md).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.core.custodians import ARCHIVE_ROLE, Custodian
from custody.core.signing import ShareError, SigningKey
from custody.errors import CustodyError, NotPermitted, UsageError
from custody.ops.archive import Archive, Draft
from custody.ops.keyfiles import check_new_passphrase, public_path, write_key
from custody.ops.sharecards import CardHeader, write_card

MAX_SHARES = 16  # SLIP-39's limit for one group


@dataclass(frozen=True, slots=True)
class BackedUp:
    seq: int
    key_id: str
    name: str
    count: int
    threshold: int
    folder: str
    files: tuple[str, ...]
    shares: tuple[str, ...]  # the words, printed once; never in the ledger

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "key_id": self.key_id, "name": self.name, "shares": self.count,
                "threshold": self.threshold, "folder": self.folder, "files": list(self.files),
                "mnemonics": list(self.shares)}


@dataclass(frozen=True, slots=True)
class Restored:
    seq: int
    key_id: str
    name: str
    path: str
    shares_used: int

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "key_id": self.key_id, "name": self.name, "path": self.path,
                "shares_used": self.shares_used}


def _check_split(count: int, threshold: int) -> None:
    if not 1 <= threshold <= count <= MAX_SHARES:
        raise UsageError(f"need 1 <= threshold ({threshold}) <= shares ({count}) <= {MAX_SHARES}")
    if threshold == 1 and count > 1:
        raise UsageError("a threshold of 1 makes every share a full copy of the key: use 2 or more")


def backup(archive: Archive, signer: SigningKey, key: SigningKey, *, count: int, threshold: int,
           share_passphrase: str, folder: Path, now: str) -> BackedUp:
    """Split `key` (the signer's own, or the archive key, backed up by an admin `signer`) into
    `count` shares, any `threshold` of which rebuild it; write a card per share in `folder`
    (made here, 0700; it must not exist) and record a `key-backup` entry signed by `signer`."""
    _check_split(count, threshold)
    who = _whose(archive, key)
    _only_admins_for_the_archive_key(archive, signer, key.key_id)
    if folder.exists():
        raise UsageError(f"{folder} already exists; give a new folder for the shares")
    shares = key.to_shares(threshold, count, share_passphrase)
    folder.mkdir(mode=0o700, parents=True)
    os.chmod(folder, 0o700)
    files: list[str] = []
    try:
        for i, words in enumerate(shares, 1):
            header = CardHeader(archive.config.name, who.name, key.key_id, i, count, threshold,
                                now[:10], bool(share_passphrase))
            files += [str(p) for p in write_card(folder, header, words)]
        draft = Draft("key-backup", None, {"key_id": key.key_id, "name": who.name,
                                           "shares": count, "threshold": threshold,
                                           "slip39_passphrase": bool(share_passphrase)})
        signed = archive.append(signer, [draft], attempted="key-backup")[0]
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no share outlives a backup not recorded
        raise
    return BackedUp(signed.entry().seq, key.key_id, who.name, count, threshold, str(folder),
                    tuple(files), tuple(shares))


def read_shares(texts: list[str]) -> list[str]:
    """Mnemonics from arguments or share files: every line that is not empty nor a `#` header."""
    found: list[str] = []
    for text in texts:
        for line in text.splitlines():
            words = " ".join(line.strip().lower().split())
            if words and not words.startswith("#") and words not in found:
                found.append(words)
    if not found:
        raise UsageError("no shares given: pass the share words, or --from FILE")
    return found


def restore(archive: Archive, shares: list[str], share_passphrase: str, *, output: Path,
            new_passphrase: str, archive_key: bool, admin: SigningKey | None) -> Restored:
    """Rebuild a key from shares, check it is the archive's record of that custodian (or the
    archive key in force), write it passphrase-protected at `output` and record `key-restore`
    (signed by the restored key itself; for the archive key, by the admin)."""
    if output.exists() or public_path(output).exists():
        raise UsageError(f"{output} already exists; refusing to overwrite a key")
    check_new_passphrase(new_passphrase, "archive key" if archive_key else "key")
    try:
        key = SigningKey.from_shares(shares, share_passphrase, "")
    except ShareError as exc:
        raise ShareError(f"the shares do not rebuild a key: {exc}") from None
    if archive_key:
        current, _ = archive.current_archive_key()
        if key.public.raw != current.raw:
            raise NotPermitted(_mismatch(key, "the archive key in force", current.key_id))
        if admin is None:
            raise UsageError("restoring the archive key needs an admin's --key")
        _only_admins_for_the_archive_key(archive, admin, key.key_id)
        named = key.with_name(current.name)
        signer = admin
    else:
        who = archive.registry().by_id.get(key.key_id)
        if who is None or who.role == ARCHIVE_ROLE:
            raise NotPermitted(_mismatch(key, "any custodian of this archive", None))
        if (ended := who.ended()) is not None:
            raise NotPermitted(f"the shares rebuild key {key.key_id} ({who.name}), which was "
                               f"{ended}: restore its successor's shares instead")
        named = signer = key.with_name(who.name)
    draft = Draft("key-restore", None, {"key_id": key.key_id, "name": named.public.name,
                                        "shares_used": len(shares)})
    write_key(output, named, new_passphrase)
    try:
        signed = archive.append(signer, [draft], attempted="key-restore")[0]
    except CustodyError:
        output.unlink(missing_ok=True)
        public_path(output).unlink(missing_ok=True)
        raise
    return Restored(signed.entry().seq, key.key_id, named.public.name, str(output),
                    len(shares))


def _only_admins_for_the_archive_key(archive: Archive, signer: SigningKey, key_id: str) -> None:
    """The archive key's backup or restore is recorded by an admin (rule key-own)."""
    if key_id == signer.key_id:
        return
    who = archive.registry().by_id.get(signer.key_id)
    if who is None or who.role != "admin":
        raise NotPermitted("only an admin may back up or restore the archive key")


def _whose(archive: Archive, key: SigningKey) -> Custodian:
    registry = archive.registry()
    who = registry.by_id.get(key.key_id)
    if who is None:
        raise NotPermitted(f"key {key.key_id} is not enrolled in this archive")
    if (ended := who.ended()) is not None:
        raise NotPermitted(f"key {key.key_id} ({who.name}) was {ended}: back up its successor")
    return who


def _mismatch(key: SigningKey, what: str, expected: str | None) -> str:
    named = f" ({expected})" if expected else ""
    return (f"the shares rebuild key {key.key_id}, not {what}{named}: a share of another set, "
            "or a wrong or missing SLIP-39 passphrase ($CUSTODY_SHARE_PASSPHRASE)")
