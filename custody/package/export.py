"""Export items (or a case) as a custody package: each file read through a logged access, then
its signed history, inclusion proofs against a fresh checkpoint and the signers' keys beside it.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import uuid
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from custody.core import canonical, merkle
from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD
from custody.core.custodians import ARCHIVE_ROLE, REGISTRY_ACTIONS
from custody.core.proofs import archive_verifier
from custody.core.replay import Replay
from custody.core.signing import SigningKey
from custody.errors import (
    ArchiveError,
    CustodyError,
    NotFound,
    NotPermitted,
    UsageError,
)
from custody.ops import access, checkpoints, encryption
from custody.ops.archive import Archive, replayed, utc_now
from custody.package import layout
from custody.package import lineage as lineage_proof
from store.ports import EntryRow

EXPORT_ROLES = layout.EXPORT_ROLES
SOFTWARE = "custody 0.1.0 (BagIt 1.0, custody-package v1)"


def case_items(archive: Archive, case: str) -> list[str]:
    """The items filed under `case` now, in order of filing (the replay's case membership)."""
    return list(replayed(archive.ledger).case_members(case))


def authorize_export(archive: Archive, key: SigningKey, purpose: str) -> None:
    """Every export's rule (a package or a CASE graph): reviewers may read content, not send its
    record away. A refusal is signed by the one refused."""
    who = archive.authorize(key, "access", attempted="export", purpose=purpose)
    if who.role not in EXPORT_ROLES:
        reason = (
            f"{who.name} has role '{who.role}', which may not export evidence "
            f"(needs {' or '.join(EXPORT_ROLES)})"
        )
        archive.record_refusal(key, "export", reason, purpose=purpose)
        raise NotPermitted(reason)


def checked_request(items: list[str], case: str | None, purpose: str) -> str:
    """What every export is asked first: a stated purpose (returned stripped), ITEM… or --case."""
    purpose = (purpose or "").strip()
    if not purpose:
        raise UsageError("an export needs a stated purpose (--purpose TEXT)")
    if bool(items) == bool(case):
        raise UsageError("give ITEM… or --case ID (one of the two)")
    return purpose


def check_output_free(output: Path) -> None:
    """An export never writes over anything, and only into a folder that exists."""
    if output.exists() or output.is_symlink():
        raise CustodyError(f"{output} already exists; refusing to overwrite it")
    if not output.parent.is_dir():
        raise NotFound(f"no folder {output.parent} to write {output.name} into")


def _describe(
    rows: list[EntryRow], cases: tuple[str, ...]
) -> tuple[entries.Entry, list[str], list[str]]:
    """An item's first record and the names it was seen under, from its history; its `cases`
    (from the replay) passed through."""
    parsed = [entries.parse(r.body) for r in rows]
    first = next((e for e in parsed if e.action in FIRST_RECORD), None)
    if first is None:
        raise ArchiveError(f"item {rows[0].item} has no ingest entry")
    names: list[str] = []
    for e in parsed:
        name = (e.details.get("source") or {}).get("name")
        if e.action in (*FIRST_RECORD, "sighting") and isinstance(name, str) and name not in names:
            names.append(name)
    return first, names, list(cases)


Described = dict[str, tuple[entries.Entry, list[str], list[str]]]


def _plan(
    archive: Archive, chosen: list[str], case: str | None
) -> tuple[Described, dict[str, str], Replay]:
    """Each item's first record, names and cases, and its path in the bag."""
    described = {}
    replay = replayed(archive.ledger)
    for sha in chosen:
        rows = archive.ledger.rows_for_item(sha)
        if not rows:
            raise NotFound(f"no item {sha} in this archive")
        described[sha] = _describe(rows, replay.cases_of(sha))
    paths = layout.payload_paths(
        [(sha, case or (d[2][0] if d[2] else None), d[1][0] if d[1] else None)
         for sha, d in described.items()]
    )
    return described, paths, replay


def export(
    archive: Archive,
    key: SigningKey,
    load_archive_key: Callable[[], SigningKey],
    items: list[str],
    case: str | None,
    purpose: str,
    output: Path,
    on_bytes: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the package to `output` (a folder, or a .zip/.tar by its suffix); return a summary.
    `on_bytes` hears the count of content bytes copied, as they are copied (a progress bar)."""
    output = Path(output)
    purpose = checked_request(items, case, purpose)
    check_output_free(output)
    authorize_export(archive, key, purpose)
    archive.unlock(key)  # a sealed archive: content and metadata are opened for the court
    archive_key = load_archive_key()
    chosen = list(dict.fromkeys(items)) if items else case_items(archive, case or "")
    if not chosen:
        raise NotFound(f"no items in case {case}")

    described, paths, replay = _plan(archive, chosen, case)
    destination = str(output.absolute())
    try:
        writer = layout.writer_for(output)
    except FileExistsError:  # another export created it between the check and now
        raise CustodyError(f"another export is writing .{output.name}.custody-partial") from None
    except OSError as exc:
        raise CustodyError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        # every access is logged, in one transaction, before the first byte is read
        with closing(access.contents(archive, key, chosen, purpose, "export",
                                     destination)) as readers:
            _write_payload(writer, readers, described, paths, on_bytes)
        issued = checkpoints.issue(archive, archive_key)
        tags, package_json, summary = _tag_files(archive, key.key_id, chosen, described, paths,
                                                 purpose, issued, replay)
        tags = _signed(tags, package_json, key.sign(layout.statement_message(package_json)),
                       summary)
        for rel, data in tags.items():
            writer.add_bytes(rel, data)
        writer.commit()
    except OSError as exc:
        writer.abort()
        raise CustodyError(
            f"cannot write {output}: {exc.strerror or exc}; nothing was left there",
            hint="free some space or choose another place, and export again"
            if exc.errno == errno.ENOSPC else "",
        ) from None
    except BaseException:  # a missing or corrupt object too: said by custody/ops/backends.py
        writer.abort()
        raise
    summary["path"] = str(output)
    return summary


def _write_payload(
    writer: layout.BagWriter,
    readers: Iterable[tuple[str, Any]],
    described: dict[str, tuple[entries.Entry, list[str], list[str]]],
    paths: dict[str, str],
    on_bytes: Callable[[int], None] | None,
) -> None:
    """Each item's content into the bag, read through its (verifying) reader, hashed ahead."""
    for sha, reader in readers:
        with layout.Prefetch(_Counted(reader, on_bytes)) as ahead:
            writer.add_stream(paths[sha], int(described[sha][0].details["size"]), ahead)


def _signed(
    tags: dict[str, bytes], package_json: bytes, signature: bytes, summary: dict[str, Any]
) -> dict[str, bytes]:
    """The tag files with the statement, the exporter's signature over it and the tag
    manifests; `summary` gains the package digest."""
    tags = {**tags, layout.PACKAGE: package_json,
            layout.SIGNATURE: (_b64(signature) + "\n").encode()}
    tags.update(layout.tag_manifests(tags))
    summary["package_sha256"] = _sha256(tags["tagmanifest-sha256.txt"])
    return tags


def _tag_files(
    archive: Archive,
    exporter: str,
    chosen: list[str],
    described: dict[str, tuple[entries.Entry, list[str], list[str]]],
    paths: dict[str, str],
    purpose: str,
    issued: checkpoints.Issued,
    state: Replay | None = None,
) -> tuple[dict[str, bytes], bytes, dict[str, Any]]:
    """Every tag file of the package but the statement, its signature and the tag manifests;
    the statement (package.json's bytes, for `exporter` to sign); the summary `export` returns
    (its package digest set by `_signed`)."""
    ledger = archive.ledger
    size = issued.checkpoint.size
    now = utc_now()
    history = {sha: [r for r in ledger.rows_for_item(sha) if r.seq < size] for sha in chosen}
    registry_rows = [r for r in ledger.rows_with_action(*REGISTRY_ACTIONS) if r.seq < size]
    rows = {r.seq: r for r in registry_rows} | {r.seq: r for h in history.values() for r in h}
    # a derivative carries its originals' first records (not their bytes): its lineage proof
    lineage = lineage_proof.rows_to_carry(ledger, state, chosen, size) if state else []
    rows |= {r.seq: r for r in lineage}
    replay = Replay()
    for r in registry_rows:
        replay.apply(entries.parse(r.body))
    registry = replay.registry

    ledger_lines = b"".join(
        canonical.encode({"seq": seq, "entry": _b64(r.body), "signature": _b64(r.signature)})
        + b"\n"
        for seq, r in sorted(rows.items())
    )
    carried = sorted(rows)
    proofs = {
        "checkpoint": layout.CHECKPOINT,
        "tree_size": size,
        "root_hash": issued.checkpoint.root_hash.hex(),
        "proofs": [
            {"leaf_index": seq, "proof": [_b64(h) for h in proof]}
            for seq, proof in zip(carried, merkle.inclusion_proofs(
                carried, size, ledger.get_nodes, ledger.get_node), strict=True)
        ],
    }
    config = archive.config
    # the archive's identity is entry 0's key; a rotated key signs the checkpoint, and the
    # rotation entries it follows from are carried with the registry (docs/KEYS.md)
    verifier = archive_verifier(config.origin, config.archive_key.raw)
    keys = {
        "archive": {
            "name": config.archive_key.name,
            "origin": config.origin,
            "key_id": config.archive_key.key_id,
            "public_key": config.archive_key.b64(),
            "public_key_pem": layout.public_key_pem(config.archive_key.raw),
            "verifier_key": str(verifier),
        },
        "custodians": [
            {
                "key_id": c.key_id,
                "name": c.name,
                "role": c.role,
                "public_key": _b64(c.public_key),
                "public_key_pem": layout.public_key_pem(c.public_key),
                "enrolled": c.enrolled_seq,
                "revoked": c.revoked_seq,
            }
            for c in sorted(registry.by_id.values(), key=lambda c: c.enrolled_seq)
            if c.role != ARCHIVE_ROLE
        ],
        "archive_keys": [
            {"key_id": c.key_id, "public_key": _b64(c.public_key), "named_in": c.enrolled_seq,
             "retired_in": c.retired_seq,
             "verifier_key": str(archive_verifier(config.origin, c.public_key))}
            for c in registry.archive_keys
        ],
    }
    tags: dict[str, bytes] = {}
    item_rows = []
    metadata_docs = {}
    for sha in chosen:
        first, names, cases = described[sha]
        doc = ledger.metadata(sha)
        if doc is None:
            raise ArchiveError(f"item {sha}: its metadata document is missing")
        metadata_docs[layout.metadata_path(sha)] = doc
        if archive.content_key is not None:  # signed by the exporter, like every tag file
            metadata_docs[layout.opened_path(sha)] = layout.json_bytes(encryption.opened_record(
                archive.content_key, doc,
                [(r.seq, entries.parse(r.body).details) for r in ledger.rows_for_item(sha)]))
        item_rows.append({
            "sha256": sha,
            "path": paths[sha],
            "size": first.details.get("size"),
            "digests": first.details.get("digests"),
            "mime": first.details.get("mime"),
            "names": names,
            "cases": cases,
            "first_record": first.seq,
            "entries": [r.seq for r in history[sha]],
            "metadata": layout.metadata_path(sha),
        })
    manifests = {
        f"manifest-{alg}.txt": layout.manifest(
            {paths[sha]: described[sha][0].details["digests"][alg] for sha in chosen}
        )
        for alg in layout.PAYLOAD_ALGORITHMS
    }
    octets = sum(int(described[sha][0].details["size"]) for sha in chosen)
    who = registry.by_id[exporter]
    package_id = str(uuid.uuid4())
    info = layout.bag_info([
        ("Source-Organization", config.name),
        ("Bagging-Date", now[:10]),
        ("Bag-Software-Agent", SOFTWARE),
        ("External-Identifier", package_id),
        ("External-Description",
         f"{len(chosen)} evidence item(s) exported from {config.name} for: {purpose}"),
        ("Payload-Oxum", f"{octets}.{len(chosen)}"),
        ("Custody-Origin", config.origin),
        ("Custody-Archive-Key", str(verifier)),
        ("Custody-Exported-By", f"{who.name} ({who.key_id})"),
        ("Custody-Purpose", purpose),
        ("Custody-Export-Time", now),
        ("Custody-Checkpoint-Size", str(size)),
    ])
    tags = {
        "bagit.txt": layout.bagit_txt(),
        "bag-info.txt": info,
        **manifests,
        layout.CHECKPOINT: issued.row.note.encode("utf-8"),
        layout.KEYS: layout.json_bytes(keys),
        layout.ITEMS: layout.json_bytes({"items": item_rows}),
        layout.LEDGER: ledger_lines,
        layout.PROOFS: layout.json_bytes(proofs),
        **metadata_docs,
    }
    signed_files = {rel: _sha256(data) for rel, data in tags.items()}
    statement = {
        "format": layout.FORMAT,
        "version": layout.VERSION,
        "id": package_id,
        "time": now,
        "purpose": purpose,
        "archive": {
            "name": config.name,
            "origin": config.origin,
            "public_key": config.archive_key.b64(),
            "verifier_key": str(verifier),
        },
        "exported_by": {"key_id": who.key_id, "public_key": _b64(who.public_key),
                        "name": who.name},
        "checkpoint": {"size": size, "root_hash": issued.checkpoint.root_hash.hex(),
                       "sha256": _sha256(tags[layout.CHECKPOINT])},
        "items": [{"sha256": sha, "path": paths[sha], "entries": [r.seq for r in history[sha]]}
                  for sha in chosen],
        "registry": [r.seq for r in registry_rows],
        "files": signed_files,
    }
    if lineage:  # only then: a package without derivatives is as before
        statement["lineage"] = [r.seq for r in lineage]
    package_json = canonical.encode(statement)
    summary = {
        "items": len(chosen),
        "bytes": octets,
        "entries": len(rows),
        "package_sha256": None,  # set by _signed
        "package_id": package_id,
        "checkpoint": {"size": size, "root_hash": issued.checkpoint.root_hash.hex()},
        "verifier_key": str(verifier),
        "files": [{"sha256": sha, "path": paths[sha]} for sha in chosen],
    }
    return tags, package_json, summary


class _Counted:
    """A reader that reports how many bytes were read through it."""

    def __init__(self, reader: Any, on_bytes: Callable[[int], None] | None) -> None:
        self._reader = reader
        self._on_bytes = on_bytes or (lambda _n: None)

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._reader.read(n)
        self._on_bytes(len(data))
        return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
