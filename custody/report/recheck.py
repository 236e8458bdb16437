"""Re-check a report without the archive: its data against the archive-signed checkpoint it names.

Every timeline row must be a proven, validly signed entry saying the same; the digests, metadata
and holders shown must follow from those entries. Fixity needs the objects, so it is not redone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from custody.core import canonical, note, proofs
from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD
from custody.core.custodians import archive_key_chain, archive_key_for
from custody.core.merkle import ProofError
from custody.core.replay import Replay
from custody.errors import CustodyError, NotFound, UsageError, VerificationFailed
from custody.metadata.clocks import shown_capture
from custody.metadata.gps import shown_place
from custody.ops.items import holder_name
from custody.report import pdfdata, treehead
from custody.report.model import REPORT_TYPE, digest

SHOWN_FROM_METADATA = ("mime", "captured_at", "captured_at_basis", "gps", "device")


@dataclass(slots=True)
class Recheck:
    digest: str
    checkpoint_size: int | None = None
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "digest": self.digest, "checkpoint_size": self.checkpoint_size,
                "entries_proven": self.entries, "problems": self.problems,
                "notices": self.notices}


class _Embedded(HTMLParser):
    """The model in script#custody-report-model and the digest printed in #report-digest."""

    def __init__(self) -> None:
        super().__init__()
        self.model: str | None = None
        self.digest: str | None = None
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if ident in ("custody-report-model", "report-digest"):
            self._in = ident

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "custody-report-model":
            self.model = (self.model or "") + data
        elif self._in == "report-digest":
            self.digest = (self.digest or "") + data.strip()


def check_file(path: Path, verifier_text: str | None) -> Recheck:
    if not path.is_file():
        raise NotFound(f"no report at {path}")
    printed = identifier = None
    if path.suffix.lower() == ".pdf":
        embedded = pdfdata.read(path)
        text, identifier = embedded.data, embedded.identifier
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in (".html", ".htm"):
        parser = _Embedded()
        parser.feed(text)
        if parser.model is None:
            raise VerificationFailed([f"{path.name} embeds no report data (not made by custody "
                                      "report?)"])
        text, printed = parser.model, parser.digest
    try:
        model = canonical.load_json(text)
    except json.JSONDecodeError as exc:
        raise VerificationFailed([f"{path.name}: the report data is not JSON: {exc}"]) from None
    if not isinstance(model, dict) or model.get("type") != REPORT_TYPE:
        raise VerificationFailed([f"{path.name} is not report data of type {REPORT_TYPE}"])
    try:
        result = check(model, verifier_text, now=datetime.now(UTC))
    except CustodyError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a field missing or mistyped
        raise VerificationFailed([f"{path.name}: the report data is malformed "
                                  f"({type(exc).__name__}: {exc})"]) from None
    if printed is not None and printed != result.digest:
        result.problems.append(f"the page prints digest {printed}, but its data hashes to "
                               f"{result.digest}")
    if identifier is not None and identifier != bytes.fromhex(result.digest[:32]):
        result.problems.append(f"the PDF's identifier {identifier.hex()} is not the first 16 "
                               f"bytes of its data's digest {result.digest}")
    return result


def check(
    model: dict[str, Any], verifier_text: str | None, now: datetime | None = None
) -> Recheck:
    """Re-check report data; `now` is the checker's clock (no entry may be dated ahead of it
    by more than the skew, docs/FORMAT.md §5.6)."""
    result = Recheck(digest=digest(model))
    if verifier_text is None:
        verifier_text = model["archive"]["verifier_key"]
        result.notices.append("checked against the verifier key the report names; pass "
                              "--archive-key from a source you trust to prove who signed it")
    elif "+" not in verifier_text and Path(verifier_text).is_file():
        verifier_text = Path(verifier_text).read_text().strip()
    try:
        verifier = note.parse_verifier_key(verifier_text.strip())
    except note.NoteError as exc:
        raise UsageError(f"--archive-key: {exc.message}") from None
    cp_json = model.get("checkpoint")
    if not cp_json:
        result.problems.append("the report names no checkpoint: nothing in it is proven")
        return result
    verifier = _key_in_force(model, cp_json["note"], verifier)
    try:
        cp = proofs.open_archive_checkpoint(cp_json["note"], verifier)
    except VerificationFailed as exc:
        result.problems.extend(exc.problems)
        return result
    result.checkpoint_size = cp.size
    if cp.size != cp_json["size"] or cp.root_hash.hex() != cp_json["root_hash"]:
        result.problems.append("the checkpoint's size or root shown differ from its signed note")
    head, head_cp = model.get("tree_head"), None
    if head is not None:
        try:
            head_cp = treehead.opened(head, cp)
        except VerificationFailed as exc:
            result.problems.extend(exc.problems)
    proven = _proven(model, cp, verifier, result, head if head_cp else None, head_cp)
    replay = _replay(proven, verifier, result, now)
    registry = replay.registry
    in_force = registry.archive_key_for(cp.size)
    if in_force is not None and in_force.public_key != verifier.public_key:
        result.problems.append("the checkpoint is not signed by the archive key in force at its "
                               "size, as the proven registry entries name it")
    if head is not None and head_cp is not None:
        _check_tree_head(head, registry, result)
    for item in model["items"]:
        _check_item(item, proven, replay, result)
    for c in model.get("custodians", []):
        known = registry.by_id.get(c["key_id"])
        if known is None and (c.get("enrolled_in") or 0) >= cp.size:
            result.notices.append(f"custodian {c['key_id']}: enrolled after the checkpoint")
        elif known is None or known.name != c["name"] or c["public_key"] != base64.b64encode(
                known.public_key).decode():
            result.problems.append(f"custodian {c['key_id']}: not enrolled as shown")
    return result


def _key_in_force(model: dict[str, Any], note_text: str, verifier: note.VerifierKey
                  ) -> note.VerifierKey:
    """After an archive-key rotation (docs/KEYS.md) the report's checkpoint is signed by a later
    archive key: given entry 0's verifier key (the archive's identity), follow the report's
    `archive-key-rotate` entries to the key in force. Nothing is trusted here: the checkpoint
    must open with that key, and the entries naming it are then proven and replayed."""
    try:
        parsed = [entries.parse(_unb64(b["entry"])) for b in model.get("registry_proofs", [])]
        size = note.parse_checkpoint(note.split_note(note_text)[0]).size
    except (KeyError, TypeError, ValueError, entries.MalformedEntry, note.NoteError):
        return verifier
    chain = archive_key_chain(sorted(parsed, key=lambda e: e.seq))
    in_force = archive_key_for(chain, size)
    if chain and chain[0].public_key == verifier.public_key and in_force is not None:
        return proofs.archive_verifier(verifier.name, in_force.public_key)
    return verifier


def _check_tree_head(head: dict[str, Any], registry: Any, result: Recheck) -> None:
    """The custodian-signed tree head: by an enrolled custodian named as shown, signature valid."""
    by = head["signed_by"]
    signer = registry.by_id.get(by["key_id"])
    if signer is not None and signer.revoked_seq is not None and signer.revoked_seq < head["size"]:
        result.problems.append(f"the tree head's signer {by['name']} was revoked in entry "
                               f"#{signer.revoked_seq}, before it")
        return
    if signer is None or signer.name != by["name"]:
        result.problems.append(f"the tree head's signer {by['key_id']} is not an enrolled "
                               "custodian named as shown")
        return
    try:
        treehead.check_signature(head, signer.public_key)
    except VerificationFailed as exc:
        result.problems.extend(exc.problems)
        return
    result.notices.append(f"entries from #{head['extends']['checkpoint_size']} are proven in the "
                          f"tree head of {head['size']} entries signed by {by['name']} "
                          f"({by['key_id']}), which extends the archive's checkpoint")


def _proven(
    model: dict[str, Any], cp: note.Checkpoint, verifier: note.VerifierKey, result: Recheck,
    head: dict[str, Any] | None = None, head_cp: note.Checkpoint | None = None,
) -> dict[int, Any]:
    """Every bundle in the report that verifies: seq -> (entry, body, signature); a bundle may
    be against the report's custodian-signed tree head, whose signature is checked apart."""
    out: dict[int, Any] = {}
    bundles = list(model.get("registry_proofs", []))
    for item in model["items"]:
        bundles += item.get("proofs", [])
    for b in bundles:
        try:
            if head is not None and head_cp is not None and b.get("checkpoint") == head["note"]:
                verdict = proofs.verify_inclusion_in(b, proofs.proof_hashes(b), head_cp)
            else:
                verdict = proofs.verify_bundle(b, verifier)
        except (VerificationFailed, ProofError) as exc:
            why = exc.problems[0] if isinstance(exc, VerificationFailed) else exc.message
            result.problems.append(f"proof of entry {b.get('leaf_index')}: {why}")
            continue
        if verdict.checkpoint not in (cp, head_cp):
            result.problems.append(f"entry {b.get('leaf_index')} is proven in another checkpoint")
            continue
        assert verdict.entry is not None
        out[verdict.entry.seq] = (verdict.entry, _unb64(b["entry"]),
                                  _unb64(b["entry_signature"]))
    return out


def _unb64(value: str) -> bytes:
    return base64.b64decode(value)


def _replay(
    proven: dict[int, Any], verifier: note.VerifierKey, result: Recheck, now: datetime | None
) -> Replay:
    """Every proven entry (registry and items') replayed in log order: each signature by the key
    the replay names, and every rule of docs/FORMAT.md §5.6 (roles, custody, time)."""
    replay = Replay(now=now)
    for seq in sorted(proven):
        e, body, signature = proven[seq]
        signer = replay.signer(e)
        valid = signer is not None and entries.signature_valid(
            entries.SignedEntry(body, signature), signer.public_key)
        if seq == 0 and (not valid or signer is None):
            result.problems.append("entry 0 is not signed by the archive's key")
        elif seq != 0 and signer is not None and not valid:
            result.problems.append(f"entry {seq}: bad signature by {signer.name} "
                                   f"({signer.key_id})")
        result.problems.extend(replay.apply(e))  # an unenrolled signer: rule signer-active
    return replay


def _check_item(
    item: dict[str, Any], proven: dict[int, Any], replay: Replay, result: Recheck
) -> None:
    """Each timeline row says what its proven entry says; the holders follow from the replay."""
    sha = item["sha256"]
    where = f"item {sha[:16]}"
    registry = replay.registry
    for row in item["timeline"]:
        seq = row["seq"]
        if seq not in proven:
            result.notices.append(f"{where}: entry {seq} is newer than the checkpoint: unproven")
            continue
        e = proven[seq][0]
        result.entries += 1
        said = {"time": e.time, "action": e.action, "actor": e.actor, "details": e.details,
                "actor_name": registry.name_of(e.actor)}
        for k, v in said.items():
            if row.get(k) != v:
                result.problems.append(f"{where}: entry {seq}'s {k} as shown differs from "
                                       "the signed entry")
        if e.item != sha:
            result.problems.append(f"{where}: entry {seq} is about another item")
        holder = replay.holder(sha, at_seq=seq)
        if row.get("holder_after") != holder or row.get("holder_after_name") != holder_name(
                holder, registry):
            result.problems.append(f"{where}: the holder shown after entry {seq} does not "
                                   "follow from the entries")
        if e.action in FIRST_RECORD:
            _check_first_record(item, e.details, result, where)


def _check_first_record(
    item: dict[str, Any], signed: dict[str, Any], result: Recheck, where: str
) -> None:
    if item["digests"] != signed.get("digests") or item["size"] != signed.get("size"):
        result.problems.append(f"{where}: the digests or size shown differ from those signed")
    doc = item.get("metadata_document") or {}
    if hashlib.sha256(canonical.encode(doc)).hexdigest() != signed.get("metadata_sha256"):
        result.problems.append(f"{where}: the metadata shown is not the document signed")
        return
    # as every output shows it: an offset-unknown time as its local reading (docs/METADATA.md)
    expected = {**doc, "captured_at": shown_capture(doc.get("captured_at"),
                                                    doc.get("captured_at_basis")),
                "gps": shown_place(doc)}
    for k in SHOWN_FROM_METADATA:
        if item.get(k) != expected.get(k):
            result.problems.append(f"{where}: {k} as shown differs from the signed metadata")
