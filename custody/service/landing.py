"""An upload becomes evidence, or is refused: its bytes against the digests the custodian signed,
the archive's own metadata reading against the document digest they signed, then the object
stored and the signed statement appended (docs/SERVICE.md, "Uploads (tus)").

No HTTP here: uploads.py calls `admit` when an upload is created and `land` when its last byte
is durable. The push client builds the same statement with `ingest_details`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.core import canonical
from custody.core import entry as entries
from custody.errors import StatementRefused
from custody.ops import dryrun
from custody.ops.archive import Archive, registry_of
from custody.ops.ingest import Claims
from custody.ops.statements import read_statement_file
from store.ports import Digests

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
UPLOADABLE = ("ingest", "sighting")


class Refused(Exception):
    """An upload the archive will not take: an HTTP status, a stable code and one line."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Landed:
    """How an upload ended: `new` (stored, its ingest entry appended) or `present` (the archive
    held these bytes already: nothing stored twice; a `sighting` statement is appended)."""

    status: str
    sha256: str
    seq: int | None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "sha256": self.sha256, "seq": self.seq}


def metadata_document(reader: Any, path: Path) -> bytes:
    """The metadata document of a file as ingest records it (RFC 8785 bytes), read by a
    MetadataReader (the supervised worker): the same function on the device and the server."""
    doc: dict[str, Any] = reader.read(path)
    try:
        return canonical.encode(doc)
    except ValueError as exc:  # as ingest does: keep the file, record why
        return canonical.encode({
            "mime": doc.get("mime"),
            "errors": [*doc.get("errors", []), f"metadata not encodable: {exc}"],
        })


def ingest_details(digests: Digests, claims: Claims, document: bytes, *, batch: str,
                   case: str | None = None, note: str | None = None) -> dict[str, Any]:
    """An ingest statement's details (docs/FORMAT.md §5.4), as `custody ingest` writes them."""
    return {
        "digests": {k: v for k, v in digests.as_dict().items() if k != "size"},
        "size": digests.size,
        "source": claims.to_json(),
        "case": case,
        "note": note,
        "batch": batch,
        "mime": canonical.load_json(document.decode()).get("mime"),
        "metadata_sha256": hashlib.sha256(document).hexdigest(),
    }


def admit(archive: Archive, caller_key_id: str, text: str,
          length: int) -> entries.SignedStatement:
    """The early answer at creation (append_statement decides again under the lock): a statement
    file of an ingest or sighting, signed by the caller for this archive, of `length` bytes."""
    try:
        signed, _document = read_statement_file(text)
        statement = signed.statement()
    except StatementRefused as exc:
        raise Refused(422, "statement-refused", exc.message) from None
    except entries.MalformedEntry as exc:
        raise Refused(422, "statement-refused", f"statement refused: {exc}") from None
    if statement.actor != caller_key_id:
        raise Refused(403, "not-your-statement", "the statement is signed by another key than "
                      "the one this request is signed with")
    if statement.log != archive.config.origin:
        raise Refused(422, "statement-refused", f"statement refused: it is for log "
                      f"{statement.log!r}, not this archive's")
    if statement.action not in UPLOADABLE:
        raise Refused(422, "statement-refused", f"an upload's statement is an ingest or a "
                      f"sighting, not {statement.action!r}")
    d = statement.details
    digests = d.get("digests")
    item = statement.item
    if not (isinstance(item, str) and SHA256_HEX.fullmatch(item)
            and isinstance(digests, dict) and digests.get("sha256") == item):
        raise Refused(422, "statement-refused", "the statement names no item SHA-256 (its item "
                      "and digests.sha256)")
    if d.get("size") != length:
        raise Refused(422, "length-mismatch", f"Upload-Length is {length} but the statement "
                      f"signs a size of {d.get('size')!r}")
    if statement.action == "ingest" and not isinstance(d.get("metadata_sha256"), str):
        raise Refused(422, "statement-refused", "an ingest statement must sign the metadata "
                      "document's SHA-256 (metadata_sha256): the archive reads the bytes itself "
                      "and checks it")
    who = registry_of(archive.ledger).by_id.get(statement.actor)
    if who is None or not signed.signature_valid(who.public_key):
        raise Refused(422, "statement-refused", "statement refused: its signature does not "
                      "verify with the caller's key")
    return signed


def land(archive: Archive, reader: Any, path: Path, text: str) -> Landed:
    """The last byte is durable: store and record it, or raise Refused (nothing stored)."""
    signed, _document = read_statement_file(text)
    statement = signed.statement()
    item, d = statement.item or "", statement.details
    with path.open("rb") as stream:
        got = dryrun.hashed(stream).digests
    signed_digests = d.get("digests") or {}
    if got.sha256 != item:
        raise Refused(422, "digest-mismatch", f"the bytes received hash to {got.sha256[:16]}, "
                      f"not the {item[:16]} the custodian signed: nothing was stored")
    if got.size != d.get("size") or any(
            got.as_dict()[a] != signed_digests.get(a) for a in ("sha512", "sha1", "md5")):
        raise Refused(422, "digest-mismatch", "the bytes' size, SHA-512, SHA-1 or MD5 differ "
                      "from those the custodian signed: nothing was stored")
    if archive.ledger.recorded(item):
        return _present(archive, signed, statement)
    if statement.action != "ingest":
        raise Refused(422, "not-held", "a sighting names bytes the archive does not hold: "
                      "upload them with an ingest statement")
    document = metadata_document(reader, path)
    if hashlib.sha256(document).hexdigest() != d.get("metadata_sha256"):
        raise Refused(422, "metadata-mismatch", "the archive's reading of the bytes differs "
                      "from the metadata document the custodian signed (reader versions or "
                      "C2PA trust anchors differ?): nothing was stored")
    with path.open("rb") as stream:
        put = archive.objects.put(stream)
    if put.digests.sha256 != item:  # the part file changed between the checks and the put
        raise Refused(409, "upload-changed", "the upload changed while it was being stored")
    try:
        entry = archive.append_statement(signed, metadata=document)
    except StatementRefused as exc:
        if archive.ledger.recorded(item):  # another upload of the same bytes landed first
            return _present(archive, signed, statement)
        raise Refused(422, "statement-refused", exc.message) from None
    return Landed("new", item, entry.entry().seq)


def _present(archive: Archive, signed: entries.SignedStatement,
             statement: entries.Statement) -> Landed:
    """Bytes the archive holds already: a sighting statement is appended; an ingest one cannot
    be (its item has a first record) and nothing is stored or recorded twice."""
    item = statement.item or ""
    if statement.action != "sighting":
        return Landed("present", item, None)
    try:
        entry = archive.append_statement(signed)
    except StatementRefused as exc:
        raise Refused(422, "statement-refused", exc.message) from None
    return Landed("present", item, entry.entry().seq)
