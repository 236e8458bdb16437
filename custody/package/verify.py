"""Verify a custody package offline: the bag's fixity, then every signature, inclusion proof and
signed digest it carries, against the archive key inside it or one the receiver pins.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custody.core import canonical, merkle, note, proofs
from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD
from custody.core.custodians import (
    ARCHIVE_ROLE,
    REGISTRY_ACTIONS,
    Custodian,
    Registry,
    RegistryError,
    archive_key_chain,
    decode_public_key,
)
from custody.core.replay import Replay
from custody.core.signing import key_id, verify_signature
from custody.errors import CustodyError, VerificationFailed
from custody.package import bag as bagit
from custody.package import layout
from custody.package import lineage as lineage_proof
from custody.package.bagsafe import Limits, Listing, opened, read_file


class NotACustodyPackage(CustodyError):
    """A valid BagIt bag that does not carry custody's tag files."""


class _Stop(Exception):
    """The statement cannot be read at all; the problem is already recorded."""


@dataclass(slots=True)
class Received:
    """What import needs of one verified item."""

    sha256: str
    path: str
    first: entries.Entry
    entries: list[int]
    names: list[str]


@dataclass(slots=True)
class PackageReport:
    """The verdict on a package, and what it claims once verified."""

    package_sha256: str | None = None
    archive: dict[str, Any] = field(default_factory=dict)
    pinned: bool = False
    exported_by: dict[str, Any] = field(default_factory=dict)
    purpose: str | None = None
    time: str | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)
    items: list[Received] = field(default_factory=list)
    entries: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    package_id: str | None = None
    sender_history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lineage: list[dict[str, Any]] = field(default_factory=list)  # derivatives and originals

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "does not verify"
        if self.pinned:
            return "verified: from the archive whose key you pinned"
        return ("verified: internally consistent (pin the sender's archive key with "
                "--archive-key to know it came from that archive)")

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "pinned": self.pinned,
            "package_sha256": self.package_sha256,
            "package_id": self.package_id,
            "archive": self.archive,
            "exported_by": self.exported_by,
            "purpose": self.purpose,
            "time": self.time,
            "checkpoint": self.checkpoint,
            "entries_checked": self.entries,
            "bytes_checked": self.bytes,
            "items": [
                {"sha256": i.sha256, "path": i.path, "first_record": i.first.action,
                 "size": i.first.details.get("size"), "mime": i.first.details.get("mime"),
                 "names": i.names, "entries": i.entries}
                for i in self.items
            ],
            "problems": self.problems,
            "notices": self.notices,
            "lineage": self.lineage,
        }


@dataclass(slots=True)
class Checked:
    """A package opened, read and verified; valid only inside `checked(...)`."""

    listing: Listing
    tags: dict[str, bytes]
    report: PackageReport


def parse_pinned(value: str | None) -> note.VerifierKey | None:
    """`--archive-key`: a verifier key string, or a file holding one."""
    if value is None:
        return None
    text = value.strip()
    if "+" not in text and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8").strip()
    try:
        return note.parse_verifier_key(text)
    except note.NoteError as exc:
        raise CustodyError(f"--archive-key: {exc.message}") from None


@contextmanager
def checked(
    path: Path,
    pinned: note.VerifierKey | None = None,
    limits: Limits | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Checked]:
    """Open, read and verify the package at `path`; the report lists every problem."""
    with opened(path, limits) as listing:
        bag = bagit.read(listing)
        if bag.version is not None:
            bagit.check_fixity(bag, on_bytes)
        report = PackageReport(problems=list(bag.problems), notices=list(bag.notices))
        if layout.PACKAGE not in listing.files:
            if bag.problems:
                yield Checked(listing, {}, report)
                return
            raise NotACustodyPackage(
                f"{path} is a valid BagIt bag but not a custody package (no {layout.PACKAGE})"
            )
        _custody_layout(bag, report.problems)
        tags = {rel: read_file(listing, rel) for rel in bag.tag_files}
        if "tagmanifest-sha256.txt" in tags:
            report.package_sha256 = hashlib.sha256(tags["tagmanifest-sha256.txt"]).hexdigest()
        payload = {
            p: {"sha256": d.get("sha256"), "sha512": d.get("sha512"), "size": listing.files[p]}
            for p, d in bag.computed.items()
        }
        report.bytes = sum(bag.payload.values())
        audit(tags, payload, pinned, report, now=datetime.now(UTC))
        origin = bag.info_value("Custody-Origin")
        if origin is not None and report.archive and origin != report.archive.get("origin"):
            report.problems.append("bag-info.txt: Custody-Origin is not the package's archive")
        yield Checked(listing, tags, report)


def verify_package(
    path: Path,
    pinned: note.VerifierKey | None = None,
    limits: Limits | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> PackageReport:
    with checked(path, pinned, limits, on_bytes) as c:
        return c.report


def _custody_layout(bag: bagit.Bag, problems: list[str]) -> None:
    """What custody packages add to BagIt: version 1.0, UTF-8, SHA-256 and SHA-512 manifests
    and tag manifests covering every tag file, no fetch.txt."""
    if bag.version is not None and bag.version != (1, 0):
        major, minor = bag.version
        problems.append(f"custody packages are BagIt 1.0, this bag is {major}.{minor}")
    if bag.encoding != "utf-8":
        problems.append("custody packages' tag files are UTF-8")
    if bag.fetch or "fetch.txt" in bag.listing.files:
        problems.append("custody packages carry every file: fetch.txt is not allowed")
    for alg in layout.PAYLOAD_ALGORITHMS:
        if alg not in bag.manifests:
            problems.append(f"manifest-{alg}.txt is missing")
        if alg not in bag.tagmanifests:
            problems.append(f"tagmanifest-{alg}.txt is missing")
            continue
        listed = bag.tagmanifests[alg]
        for rel in sorted(bag.tag_files):
            if not rel.startswith("tagmanifest-") and rel not in listed:
                problems.append(f"tag file {rel} is not in tagmanifest-{alg}.txt")


# The custody layer: pure, over tag file bytes and the payload's computed digests ---------------


def _text(tags: Mapping[str, bytes], rel: str, problems: list[str]) -> str:
    data = tags.get(rel)
    if data is None:
        problems.append(f"{rel} is missing")
        raise _Stop
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{rel} is not valid UTF-8")
        raise _Stop from None
    if "\r" in text:
        problems.append(f"{rel}: line endings must be LF")
    return text


def _json(tags: Mapping[str, bytes], rel: str, problems: list[str]) -> Any:
    text = _text(tags, rel, problems)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("duplicate key")
        return dict(pairs)

    try:
        return canonical.load_json(text, object_pairs_hook=no_duplicates)
    except ValueError as exc:
        problems.append(f"{rel} is not valid JSON: {exc}")
        raise _Stop from None


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("not valid base64") from None
    if base64.b64encode(raw).decode() != value:
        raise ValueError("not canonical base64")
    return raw


def audit(
    tags: Mapping[str, bytes],
    payload: Mapping[str, Mapping[str, Any]],
    pinned: note.VerifierKey | None,
    report: PackageReport,
    only: set[str] | None = None,
    now: datetime | None = None,
) -> None:
    """Check the custody tag files against each other and the payload; add to `report`.

    `only` limits the per-item checks to those items (and tolerates the other items' files being
    absent): how kept evidence of one received item is checked again later. `now` is the
    verifier's clock: no entry may be dated ahead of it by more than the skew (FORMAT §5.6).
    """
    problems = report.problems
    try:
        _audit(tags, payload, pinned, report, only, now)
    except _Stop:
        pass
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problems.append(f"{layout.PACKAGE} is malformed: {type(exc).__name__}: {exc}")


def _audit(
    tags: Mapping[str, bytes],
    payload: Mapping[str, Mapping[str, Any]],
    pinned: note.VerifierKey | None,
    report: PackageReport,
    only: set[str] | None,
    now: datetime | None,
) -> None:
    problems = report.problems
    raw_statement = tags.get(layout.PACKAGE, b"")
    try:
        statement = canonical.decode(raw_statement)
    except canonical.NotCanonical as exc:
        problems.append(f"{layout.PACKAGE} is not RFC 8785 canonical JSON: {exc}")
        raise _Stop from None
    if not isinstance(statement, dict) or statement.get("format") != layout.FORMAT:
        problems.append(f"{layout.PACKAGE} is not a custody package statement")
        raise _Stop
    if statement.get("version") != layout.VERSION:
        problems.append(f"custody package version {statement.get('version')!r} is not supported")
        raise _Stop
    for rel in sorted(tags):
        if rel.startswith("custody/") and rel != layout.PACKAGE:
            try:
                if "\r" in tags[rel].decode("utf-8"):
                    problems.append(f"{rel}: line endings must be LF")
            except UnicodeDecodeError:
                problems.append(f"{rel} is not valid UTF-8")
    report.package_id = statement.get("id")
    report.purpose = statement.get("purpose")
    report.time = statement.get("time")

    # The ledger entries the package carries, in log order.
    carried: dict[int, tuple[entries.SignedEntry, entries.Entry]] = {}
    for n, line in enumerate(_text(tags, layout.LEDGER, problems).splitlines(), 1):
        try:
            row = canonical.load_json(line)
            signed = entries.SignedEntry(_unb64(row["entry"]), _unb64(row["signature"]))
            e = entries.parse(signed.body)
        except (ValueError, KeyError, TypeError, entries.MalformedEntry) as exc:
            problems.append(f"{layout.LEDGER} line {n}: malformed: {exc}")
            continue
        if row.get("seq") != e.seq:
            problems.append(f"{layout.LEDGER} line {n}: says entry {row.get('seq')}, holds {e.seq}")
        if e.seq in carried:
            problems.append(f"{layout.LEDGER}: entry {e.seq} appears twice")
        carried[e.seq] = (signed, e)
    report.entries = len(carried)

    # The archive: its key is in entry 0, and the log's origin names that key.
    archive_pk, origin = _archive(statement, carried, problems)
    verifier = proofs.archive_verifier(origin, archive_pk)
    report.archive = {"name": statement["archive"].get("name"), "origin": origin,
                      "verifier_key": str(verifier)}
    if pinned is not None:
        report.pinned = True
        if str(pinned) != str(verifier):
            problems.append(
                f"the package's archive key is not the pinned one (package: {verifier}, "
                f"pinned: {pinned})"
            )

    # The checkpoint, signed by that key; every entry is proven included in it.
    checkpoint = None
    cp_text = _text(tags, layout.CHECKPOINT, problems)
    try:
        checkpoint = proofs.open_with_key_chain(cp_text, origin, _archive_keys(carried, archive_pk))
    except VerificationFailed as exc:
        problems.extend(f"{layout.CHECKPOINT}: {p}" for p in exc.problems)
    signed_cp = statement.get("checkpoint") or {}
    if checkpoint is not None:
        report.checkpoint = {"size": checkpoint.size, "root_hash": checkpoint.root_hash.hex()}
        if (signed_cp.get("size"), signed_cp.get("root_hash")) != (
            checkpoint.size, checkpoint.root_hash.hex()
        ):
            problems.append(f"{layout.CHECKPOINT} is not the checkpoint the exporter signed")
    inclusion = _proofs(_json(tags, layout.PROOFS, problems), problems)

    replay = Replay(now=now)  # every rule of docs/FORMAT.md §5.6, over the carried entries
    registry = replay.registry
    first: dict[str, entries.Entry] = {}
    item_seqs: dict[str, list[int]] = {}
    wanted = {i["sha256"] for i in statement["items"]}
    lineage = lineage_proof.signed_seqs(statement, problems)
    for seq in sorted(carried):
        signed, e = carried[seq]
        where = f"entry {seq}"
        if e.log != origin:
            problems.append(f"{where}: belongs to log {e.log!r}, not {origin!r}")
        if checkpoint is not None:
            path = inclusion.get(seq)
            if path is None:
                problems.append(f"{where}: no inclusion proof")
            elif seq >= checkpoint.size:
                problems.append(f"{where}: beyond the checkpoint (size {checkpoint.size})")
            else:
                try:
                    merkle.verify_inclusion(
                        signed.leaf_hash, seq, checkpoint.size, path, checkpoint.root_hash
                    )
                except merkle.ProofError as exc:
                    problems.append(f"{where}: inclusion proof does not verify: {exc.message}")
        _check_signature(signed, e, replay, problems)
        broken, advised = replay.verdicts(e)
        problems.extend(broken)
        report.notices.extend(advised)
        if e.item is None:
            if e.action not in REGISTRY_ACTIONS:
                problems.append(f"{where}: a {e.action} entry about no exported item")
        elif e.item not in wanted:
            if lineage_proof.carried_for_lineage(seq, e, lineage):
                continue  # an original's first record: what a derivative was made from
            problems.append(f"{where}: about item {e.item[:16]}…, which the package does not hold")
        else:
            item_seqs.setdefault(e.item, []).append(seq)
            if e.action in FIRST_RECORD and e.item not in first:
                first[e.item] = e  # a second one, or any entry before it: the replay says so

    registry_seqs = sorted(s for s, (_, e) in carried.items() if e.action in REGISTRY_ACTIONS)
    if sorted(statement["registry"]) != registry_seqs:
        problems.append(
            f"the package carries registry entries {registry_seqs}, the exporter signed "
            f"{sorted(statement['registry'])}"
        )
    report.lineage = lineage_proof.check(lineage, carried, replay, wanted, problems)
    log_size = checkpoint.size if checkpoint is not None else max(carried, default=-1) + 1
    exporter = _check_statement(tags, statement, registry, log_size, problems, only)
    report.exported_by = exporter
    _check_items(statement, first, item_seqs, carried, payload, tags, exporter, report, only)
    _check_keys(tags, registry, archive_pk, problems)


def _archive_keys(
    carried: dict[int, tuple[entries.SignedEntry, entries.Entry]], archive_pk: bytes
) -> list[Custodian]:
    """The archive's key chain from the carried `init` and `archive-key-rotate` entries (a
    package carries every registry entry below its checkpoint): which key signs the checkpoint.
    Each rotation entry is itself proven included and checked by the replay below."""
    keys = archive_key_chain([carried[s][1] for s in sorted(carried)])
    if not keys:  # no usable entry 0: the statement's key, whose problems are named elsewhere
        keys = [Custodian(key_id(archive_pk), archive_pk, "", ARCHIVE_ROLE, 0)]
    return keys


def _archive(
    statement: dict[str, Any],
    carried: dict[int, tuple[entries.SignedEntry, entries.Entry]],
    problems: list[str],
) -> tuple[bytes, str]:
    claimed = statement["archive"]
    archive_pk = decode_public_key(claimed["public_key"])
    origin = str(claimed["origin"])
    if 0 not in carried:
        problems.append("the package lacks the archive's genesis entry (entry 0)")
    else:
        signed, genesis = carried[0]
        try:
            named = decode_public_key((genesis.details.get("archive") or {}).get("public_key"))
        except RegistryError:
            named = b""
        if genesis.action != "init" or named != archive_pk:
            problems.append("entry 0 does not name the package's archive key")
        if not entries.signature_valid(signed, archive_pk):
            problems.append("entry 0: bad signature by the archive key")
        if genesis.log != origin:
            problems.append("entry 0 belongs to another log than the package's archive")
        report_name = genesis.details.get("name")
        if report_name is not None and claimed.get("name") != report_name:
            problems.append("the package names its archive differently from entry 0")
    if origin != f"custody.archive/{key_id(archive_pk)}":
        problems.append(f"origin {origin!r} does not name the archive key")
    return archive_pk, origin


def _proofs(value: Any, problems: list[str]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    if not isinstance(value, dict) or not isinstance(value.get("proofs"), list):
        problems.append(f"{layout.PROOFS} is not a proofs document")
        return out
    for p in value["proofs"]:
        try:
            out[int(p["leaf_index"])] = [_unb64(h) for h in p["proof"]]
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{layout.PROOFS}: malformed proof: {exc}")
    return out


def _check_signature(
    signed: entries.SignedEntry, e: entries.Entry, replay: Replay, problems: list[str]
) -> None:
    """The signature by the key the replay says must have made it (entry 0: checked against the
    package's archive key in _archive; an unenrolled signer: the replay names it)."""
    if e.seq == 0:
        return
    signer = replay.signer(e)
    if signer is not None and not entries.signature_valid(signed, signer.public_key):
        problems.append(f"entry {e.seq}: bad signature by {signer.name} ({signer.key_id})")


def _check_statement(
    tags: Mapping[str, bytes],
    statement: dict[str, Any],
    registry: Registry,
    log_size: int,
    problems: list[str],
    only: set[str] | None,
) -> dict[str, Any]:
    """The exporter's signature over package.json, and the files it pins by digest."""
    by = statement["exported_by"]
    raw = decode_public_key(by["public_key"])
    exporter = {"key_id": key_id(raw), "name": by.get("name")}
    if by.get("key_id") != exporter["key_id"]:
        problems.append(f"{layout.PACKAGE}: the exporter's key id does not match their key")
    sig_text = _text(tags, layout.SIGNATURE, problems)
    try:
        signature = _unb64(sig_text[:-1]) if sig_text.endswith("\n") else b""
    except ValueError:
        signature = b""
    if not verify_signature(raw, layout.statement_message(tags[layout.PACKAGE]), signature):
        problems.append(
            f"{layout.SIGNATURE}: the package statement's signature by {by.get('name')} "
            "does not verify"
        )
    enrolled = registry.by_id.get(exporter["key_id"])
    if enrolled is None or enrolled.public_key != raw or not enrolled.active_at(log_size):
        problems.append(f"the exporter {by.get('name')} is not an enrolled custodian")
    elif enrolled.role not in layout.EXPORT_ROLES:
        problems.append(f"the exporter {enrolled.name} (role {enrolled.role}) may not export")
    cp_digest = hashlib.sha256(tags.get(layout.CHECKPOINT, b"")).hexdigest()
    if statement["checkpoint"].get("sha256") != cp_digest:
        problems.append(f"{layout.CHECKPOINT} differs from what the exporter signed")
    files = statement["files"]
    for rel, digest in sorted(files.items()):
        if rel not in tags:
            if only is not None and rel.startswith(layout.METADATA):
                continue  # another item's metadata, not kept with this one
            problems.append(f"{rel}, which the exporter signed, is missing")
        elif hashlib.sha256(tags[rel]).hexdigest() != digest:
            problems.append(f"{rel} differs from what the exporter signed")
    for rel in sorted(tags):
        unsigned = rel in (layout.PACKAGE, layout.SIGNATURE)
        if not unsigned and not rel.startswith("tagmanifest-") and rel not in files:
            problems.append(f"{rel} is not part of the package the exporter signed")
    return exporter


def _check_items(
    statement: dict[str, Any],
    first: dict[str, entries.Entry],
    item_seqs: dict[str, list[int]],
    carried: dict[int, tuple[entries.SignedEntry, entries.Entry]],
    payload: Mapping[str, Mapping[str, Any]],
    tags: Mapping[str, bytes],
    exporter: dict[str, Any],
    report: PackageReport,
    only: set[str] | None,
) -> None:
    """Each item's file is the one its first record signed, with its metadata, as listed."""
    problems = report.problems
    paths: set[str] = set()
    shas: set[str] = set()
    for listed in statement["items"]:
        sha, path = str(listed["sha256"]), str(listed["path"])
        if sha in shas:
            problems.append(f"{layout.PACKAGE} lists item {sha[:16]}… twice")
            continue
        shas.add(sha)
        paths.add(path)
        seqs = item_seqs.get(sha, [])
        if sorted(listed["entries"]) != seqs:
            problems.append(
                f"item {sha[:16]}…: the exporter signed entries {sorted(listed['entries'])}, "
                f"the package carries {seqs}"
            )
        if only is not None and sha not in only:
            continue
        label = f"item {sha[:16]}… ({path})"
        fr = first.get(sha)
        if fr is None:
            problems.append(f"{label}: no ingest or received entry in the package")
            continue
        digests = fr.details.get("digests") or {}
        if digests.get("sha256") != sha:
            problems.append(f"{label}: entry {fr.seq} signed another SHA-256")
        facts = payload.get(path)
        if not path.startswith("data/") or facts is None:
            problems.append(f"{label}: its file is not in the payload")
        else:
            if facts.get("sha256") != sha:
                problems.append(f"{label}: the file's SHA-256 is not the item's")
            if facts.get("sha512") != digests.get("sha512"):
                problems.append(f"{label}: the file's SHA-512 differs from entry {fr.seq}'s")
            if facts.get("size") != fr.details.get("size"):
                problems.append(f"{label}: the file's size differs from entry {fr.seq}'s")
        doc = tags.get(layout.metadata_path(sha))
        if doc is None:
            problems.append(f"{label}: its metadata document is missing")
        elif hashlib.sha256(doc).hexdigest() != fr.details.get("metadata_sha256"):
            problems.append(
                f"{layout.metadata_path(sha)} does not match the metadata digest signed in "
                f"entry {fr.seq}"
            )
        exported = any(
            e.action == "access" and e.details.get("kind") == "export"
            and e.actor == exporter["key_id"]
            for s in seqs for e in [carried[s][1]]
        )
        if not exported:
            problems.append(f"{label}: no export access entry by the exporter")
        names = [
            n for s in seqs for n in [(carried[s][1].details.get("source") or {}).get("name")]
            if isinstance(n, str)
        ]
        report.items.append(Received(sha, path, fr, seqs, list(dict.fromkeys(names))))
    if len(paths) != len(statement["items"]):
        problems.append(f"{layout.PACKAGE} lists a file path twice")
    if only is None:
        for path in sorted(set(payload) - paths):
            problems.append(f"payload file {path} belongs to no item of the package")


def _check_keys(
    tags: Mapping[str, bytes], registry: Registry, archive_pk: bytes, problems: list[str]
) -> None:
    """keys.json is a convenience for outsiders; it must agree with the registry entries."""
    try:
        keys = _json(tags, layout.KEYS, problems)
    except _Stop:
        return
    try:
        if _unb64(keys["archive"]["public_key"]) != archive_pk:
            problems.append(f"{layout.KEYS}: the archive key is not the package's")
        for c in keys["custodians"]:
            known = registry.by_id.get(c["key_id"])
            if known is None or known.public_key != _unb64(c["public_key"]):
                problems.append(f"{layout.KEYS}: key {c['key_id']} is not in the registry entries")
    except (KeyError, TypeError, ValueError):
        problems.append(f"{layout.KEYS} is malformed")
