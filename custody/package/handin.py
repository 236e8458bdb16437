"""A package handed in by a custodian (`custody sync`): the verified import of importing.py, whose
`received` entries are statements the custodian signed on their device, not entries the archive
signs. The archive builds its own drafts from the package; each statement must state exactly its
draft, or nothing is recorded. docs/SERVICE.md, "Sync to the centre".
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from custody.core import canonical
from custody.core import entry as entries
from custody.errors import StatementRefused, VerificationFailed
from custody.ops.archive import Archive, Draft
from custody.ops.statements import read_statement_file
from custody.package.bagsafe import Limits, open_file
from custody.package.importing import _put, kept_evidence, received_drafts
from custody.package.verify import checked


def import_signed(
    archive: Archive, signer: str, path: Path, statement_files: list[str], *,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Verify the package at `path`, check that `statement_files` are `signer`'s statements of
    exactly the drafts this archive makes from it, store its files, then append the statements.
    Refused whole (VerificationFailed, StatementRefused) before anything is appended."""
    statements = [read_statement_file(text) for text in statement_files]
    with checked(Path(path), None, limits) as c:
        report = c.report
        if not report.ok:
            raise VerificationFailed(report.problems)
        if not statements:
            raise StatementRefused("statement refused: no received statements were sent")
        batch = statements[0][0].statement().details.get("batch")
        if not isinstance(batch, str):
            raise StatementRefused("statement refused: the first statement names no batch")
        drafts = received_drafts(report, c.tags, kept_evidence(report, c.tags), None, batch)
        _check_against(drafts, [s for s, _ in statements], signer)
        repairs: dict[str, dict[str, Any]] = {}
        for rel in kept_evidence(report, c.tags):
            _put(archive, io.BytesIO(c.tags[rel]), repairs)
        for item in report.items:
            with open_file(c.listing, item.path) as stream:
                got = _put(archive, stream, repairs).as_dict()
            signed = item.first.details.get("digests") or {}
            if any(got[a] != signed.get(a) for a in ("sha256", "sha512", "sha1", "md5")):
                raise VerificationFailed([f"{item.path}: its digests differ from those signed "
                                          f"in entry {item.first.seq}"])
        if repairs:  # the damaged copies set aside must be named, and no statement names them
            raise VerificationFailed([f"the archive set aside {len(repairs)} damaged stored "
                                      "cop(ies) while storing the package: run custody verify, "
                                      "then sync again"])
    appended = [archive.append_statement(s, metadata=d.metadata)
                for (s, _), d in zip(statements, drafts, strict=True)]
    return {
        "package_sha256": report.package_sha256,
        "package_id": report.package_id,
        "archive": report.archive,
        # `entry`: the entry's bytes, so the sender can prove them in a checkpoint (§12.4)
        "entries": [{"item": e.item, "seq": e.seq, "action": e.action,
                     "statement_id": e.statement_id,
                     "entry": base64.b64encode(signed.body).decode()}
                    for signed in appended for e in [signed.entry()]],
    }


def _check_against(drafts: list[Draft], statements: list[entries.SignedStatement],
                   signer: str) -> None:
    if len(statements) != len(drafts):
        raise StatementRefused(f"statement refused: the package makes {len(drafts)} received "
                               f"entries, {len(statements)} statements were sent")
    for n, (signed, draft) in enumerate(zip(statements, drafts, strict=True)):
        try:
            st = signed.statement()
        except entries.MalformedEntry as exc:
            raise StatementRefused(f"statement refused: statement {n}: {exc}") from None
        if st.actor != signer:
            raise StatementRefused(f"statement refused: statement {n} is signed by {st.actor}, "
                                   "not by the custodian sending it")
        if (st.action, st.item) != (draft.action, draft.item) \
                or canonical.encode(st.details) != canonical.encode(draft.details):
            raise StatementRefused(
                f"statement refused: statement {n} ({st.action} of {(st.item or '-')[:16]}) "
                f"differs from the {draft.action} entry this archive makes from the package "
                f"for item {(draft.item or '-')[:16]}")
