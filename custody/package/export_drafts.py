"""An export in phases, for an exporter whose key is elsewhere (the web interface, docs/WEB.md
"Exporting a package"): the same package as `custody export`, from the same code (export.py).

1. The exporter's `access` entries (kind `export`) are appended from statements they signed
   (custody/ops/drafts.py), before any content is read.
2. `prepare`: bound to those entries by their seq (each item's own access; an earlier access
   with the same purpose backs nothing), a checkpoint is signed with the archive key and every
   tag file made; the package statement (package.json's exact bytes) becomes a draft,
   `custody-package-draft:` + base64url.
3. The exporter signs the draft on their own device (`custody sign-statement`, `sign` below).
4. `finish`: the signature is checked against the exporter's enrolled key, the content read
   (through `access.contents_logged`: only with the access entries of step 1, by seq) and
   the bag written, exactly as `export` writes it.

One access makes one package: the caller finishes an `Unsigned` at most once (the web page
claims its draft before `finish`, custody/web/awaiting.py) and prepares one for each access.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.core import canonical
from custody.core.signing import SigningKey, verify_signature
from custody.errors import CustodyError, NotPermitted, StatementRefused, UsageError
from custody.ops import access, checkpoints
from custody.ops.archive import Archive, registry_of
from custody.package import layout
from custody.package.export import (
    EXPORT_ROLES,
    Described,
    _plan,
    _signed,
    _tag_files,
    _write_payload,
    check_output_free,
    checked_request,
)

PREFIX = "custody-package-draft:"
SIGNATURE_FORMAT = "custody-package-signature"


@dataclass(frozen=True, slots=True)
class Unsigned:
    """A package whose access entries are logged and whose tag files are made: all it lacks is
    the exporter's signature over `statement` (package.json's bytes) and its content.
    `accesses[i]` is the seq of the entry that logged the export access to `chosen[i]`."""

    exporter: str
    purpose: str
    chosen: tuple[str, ...]
    described: Described
    paths: dict[str, str]
    tags: dict[str, bytes]
    statement: bytes
    summary: dict[str, Any]
    accesses: tuple[int, ...]


def check_exporter(archive: Archive, exporter: str) -> None:
    """The rule of `custody export` (`authorize_export`) for a key that is not here: an enrolled,
    active custodian whose role may export; and an archive that takes statements signed
    elsewhere (a sealed one does not yet, docs/FORMAT.md §12.3)."""
    who = registry_of(archive.ledger).by_id.get(exporter)
    if who is None or who.ended() is not None:
        raise NotPermitted(f"key {exporter} is not an active custodian of this archive")
    if who.role not in EXPORT_ROLES:
        raise NotPermitted(f"{who.name} has role '{who.role}', which may not export evidence "
                           f"(needs {' or '.join(EXPORT_ROLES)})")
    if archive.sealer is not None:
        raise NotPermitted("this archive is sealed (init --encrypt): export it with custody "
                           "export on the archive's machine")


def prepare(archive: Archive, exporter: str, archive_key: SigningKey, items: list[str],
            purpose: str, accesses: Mapping[str, int]) -> Unsigned:
    """Step 2: a fresh checkpoint over the log and every tag file but the signed ones, for a
    package backed by `accesses` (item -> seq of the entry step 1 appended for it): each must
    be the exporter's export access of that item for this purpose, else NotPermitted."""
    purpose = checked_request(items, None, purpose)
    check_exporter(archive, exporter)
    chosen = list(dict.fromkeys(items))
    described, paths, replay = _plan(archive, chosen, None)
    for sha in chosen:
        seq = accesses.get(sha)
        if seq is None or not access.logged_at(archive, seq, sha, exporter, "export", purpose):
            named = "no entry is named" if seq is None else f"entry {seq} is not it"
            raise NotPermitted(f"no export access to item {sha[:16]} is logged for this package "
                               f"({named}): each export logs its own accesses first")
    issued = checkpoints.issue(archive, archive_key)
    tags, statement, summary = _tag_files(archive, exporter, chosen, described, paths, purpose,
                                          issued, replay)
    return Unsigned(exporter, purpose, tuple(chosen), described, paths, tags, statement, summary,
                    tuple(accesses[sha] for sha in chosen))


def finish(archive: Archive, unsigned: Unsigned, signature: bytes, output: Path
           ) -> dict[str, Any]:
    """Step 4: the package at `output` (a folder, .zip or .tar), once the signature is the
    exporter's over the statement; the content read only now, through the logged accesses."""
    check_exporter(archive, unsigned.exporter)
    who = registry_of(archive.ledger).by_id[unsigned.exporter]
    if not verify_signature(who.public_key, layout.statement_message(unsigned.statement),
                            signature):
        raise StatementRefused(f"the package signature does not verify with {who.name}'s key "
                               "(another draft, or not theirs)")
    output = Path(output)
    check_output_free(output)
    summary = dict(unsigned.summary)
    try:
        writer = layout.writer_for(output)
    except OSError as exc:
        raise CustodyError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        with closing(access.contents_logged(archive, list(unsigned.chosen), unsigned.accesses,
                                            unsigned.exporter, "export",
                                            unsigned.purpose)) as readers:
            _write_payload(writer, readers, unsigned.described, unsigned.paths, None)
        for rel, data in _signed(unsigned.tags, unsigned.statement, signature, summary).items():
            writer.add_bytes(rel, data)
        writer.commit()
    except OSError as exc:
        writer.abort()
        raise CustodyError(f"cannot write {output}: {exc.strerror or exc}; nothing was left "
                           "there", hint="free some space" if exc.errno == errno.ENOSPC
                           else "") from None
    except BaseException:
        writer.abort()
        raise
    summary["path"] = str(output)
    return summary


# The draft and its signature ------------------------------------------------------------------

def as_text(statement: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(statement).decode("ascii").rstrip("=")


def is_draft(text: str) -> bool:
    return "".join(text.split()).startswith(PREFIX)


def read(text: str) -> tuple[bytes, dict[str, Any]]:
    """A package draft's statement bytes and what they say; UsageError, one line, otherwise."""
    text = "".join(text.split())
    if not text.startswith(PREFIX):
        raise UsageError(f"not a package draft (it must start with {PREFIX})")
    raw = text[len(PREFIX):]
    try:
        body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        statement = canonical.decode(body)
        if canonical.encode(statement) != body:
            raise ValueError("not canonical JSON")
        if not isinstance(statement, dict) or statement.get("format") != layout.FORMAT:
            raise ValueError("not a custody package statement")
        if not isinstance(statement.get("exported_by"), dict) \
                or not isinstance(statement["exported_by"].get("key_id"), str):
            raise ValueError("it names no exporter")
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise UsageError(f"not a well-formed package draft ({exc})") from None
    return body, statement


def described(statement: dict[str, Any]) -> list[str]:
    """What a package draft says, one fact a line, for the exporter to read before signing."""
    archive = statement.get("archive") or {}
    checkpoint = statement.get("checkpoint") or {}
    lines = ["action:  export (sign an evidence package)",
             f"archive: {archive.get('name')} ({archive.get('origin')})",
             f"signer:  {statement['exported_by'].get('key_id')}",
             f"time:    {statement.get('time')}",
             f"purpose: {statement.get('purpose')}",
             f"package: {statement.get('id')}",
             f"checkpoint: size {checkpoint.get('size')}, root {checkpoint.get('root_hash')}"]
    lines += [f"item:    {i.get('sha256')} {i.get('path')}" for i in statement.get("items", [])]
    return lines


def sign(key: SigningKey, text: str) -> dict[str, Any]:
    """The signature file of a package draft, signed by `key` (which must be its exporter)."""
    body, statement = read(text)
    if statement["exported_by"]["key_id"] != key.key_id:
        raise UsageError(f"this draft is for key {statement['exported_by']['key_id']}, not "
                         f"yours ({key.key_id})")
    return {"format": SIGNATURE_FORMAT, "package_statement": hashlib.sha256(body).hexdigest(),
            "signature": base64.b64encode(key.sign(layout.statement_message(body))).decode()}


def read_signature(text: str, statement: bytes) -> bytes:
    """The signature in a signature file, for `statement`; StatementRefused, one line, else."""
    try:
        value = canonical.load_json(text.strip())
        if not isinstance(value, dict) or value.get("format") != SIGNATURE_FORMAT:
            raise ValueError("not a package signature (custody sign-statement prints one)")
        signature = base64.b64decode(value["signature"], validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError) as exc:
        raise StatementRefused(f"not a package signature: {exc}") from None
    if value.get("package_statement") != hashlib.sha256(statement).hexdigest():
        raise StatementRefused("this signature is for another package draft: sign the draft "
                               "shown, with custody sign-statement")
    return signature
