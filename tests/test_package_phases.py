"""The export in phases that the web interface uses (custody/package/export_drafts.py): no
package without the exporter's logged accesses and their own signature over the statement; the
package draft signed with `custody sign-statement` only by its exporter."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from custody.core import canonical
from custody.core import entry as entries
from custody.errors import NotPermitted, StatementRefused
from custody.ops import drafts, statements
from custody.ops.archive import Archive
from custody.ops.keyfiles import load_key
from custody.package import export_drafts, layout
from tests.conftest import ARCHIVE_PASSPHRASE, PASSPHRASE, one_line_error


def test_the_phases_refuse_a_missing_access_and_a_signature_not_the_exporters(cli_archive,
                                                                             tmp_path):
    cli = cli_archive
    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"evidence bytes")
    cli("ingest", photo, check=True)
    sha = cli("list", "--json", check=True).json()[0]["sha256"]
    archive = Archive.open(cli.archive)
    alice = load_key(cli.key, PASSPHRASE)
    archive_key = archive.load_archive_key(ARCHIVE_PASSPHRASE)
    kept = len(archive.ledger.checkpoints())
    with pytest.raises(NotPermitted, match="no export access"):
        export_drafts.prepare(archive, alice.key_id, archive_key, [sha], "court", {})
    assert len(archive.ledger.checkpoints()) == kept  # refused before anything was signed

    body = drafts.compose(archive.config.origin, alice.key_id, "access", sha,
                          {"purpose": "court", "kind": "export", "destination": "test"})
    statement, _ = statements.read_statement_file(
        canonical.encode(drafts.sign(alice, drafts.as_text(body))).decode())
    seq = archive.append_statement(statement).entry().seq
    unsigned = export_drafts.prepare(archive, alice.key_id, archive_key, [sha], "court",
                                     {sha: seq})
    output = tmp_path / "package.zip"
    wrong = alice.sign(entries.STATEMENT_TAG + unsigned.statement)  # not a package signature
    with pytest.raises(StatementRefused, match="does not verify"):
        export_drafts.finish(archive, unsigned, wrong, output)
    assert not output.exists()

    signed = cli("sign-statement", export_drafts.as_text(unsigned.statement), check=True)
    assert "signing this evidence package" in signed.stderr
    signature = export_drafts.read_signature(signed.stdout, unsigned.statement)
    export_drafts.finish(archive, unsigned, signature, output)
    cli("verify-package", output, check=True)


def test_a_package_draft_is_signed_only_by_its_exporter(cli_archive):
    other = canonical.encode({"format": layout.FORMAT, "exported_by": {"key_id": "0" * 32}})
    refused = cli_archive("sign-statement", export_drafts.as_text(other))
    assert refused.code == 2 and "not yours" in one_line_error(refused)
    assert refused.stdout == ""
    broken = cli_archive("sign-statement", export_drafts.PREFIX + "e30")
    assert broken.code == 2 and "package draft" in one_line_error(broken)


def _export_access(archive: Archive, key, sha: str, purpose: str) -> int:
    """The exporter's signed export access appended as the web page appends it; its seq."""
    body = drafts.compose(archive.config.origin, key.key_id, "access", sha,
                          {"purpose": purpose, "kind": "export", "destination": "test"})
    statement, _ = statements.read_statement_file(
        canonical.encode(drafts.sign(key, drafts.as_text(body))).decode())
    return archive.append_statement(statement).entry().seq


def test_an_earlier_access_with_the_same_purpose_backs_no_new_package(cli_archive, tmp_path):
    """A package is bound to the access entry its own export appended: not to any earlier one
    of the same custodian and purpose, not to another item's, not to a `get` access."""
    cli = cli_archive
    for name in ("a.bin", "b.bin"):
        (tmp_path / name).write_bytes(f"evidence {name}".encode())
        cli("ingest", tmp_path / name, check=True)
    first, second = (row["sha256"] for row in cli("list", "--json", check=True).json())
    archive = Archive.open(cli.archive)
    alice = load_key(cli.key, PASSPHRASE)
    archive_key = archive.load_archive_key(ARCHIVE_PASSPHRASE)
    earlier = _export_access(archive, alice, first, "court")
    other_item = _export_access(archive, alice, second, "court")
    cli("get", first[:12], "--purpose", "court", "-o", tmp_path / "copy.bin", check=True)
    a_get = archive.ledger.size() - 1
    assert archive.ledger.row(a_get).action == "access"
    for named in (other_item, a_get, archive.ledger.size() + 5):
        with pytest.raises(NotPermitted, match=f"entry {named} is not it"):
            export_drafts.prepare(archive, alice.key_id, archive_key, [first], "court",
                                  {first: named})
    with pytest.raises(NotPermitted, match="no entry is named"):
        export_drafts.prepare(archive, alice.key_id, archive_key, [first, second], "court",
                              {first: earlier})

    unsigned = export_drafts.prepare(archive, alice.key_id, archive_key, [first], "court",
                                     {first: earlier})
    assert unsigned.accesses == (earlier,)
    # finish reads only through that entry: a draft re-pointed at another is refused unread
    moved = dataclasses.replace(unsigned, accesses=(other_item,))
    signature = base64.b64decode(export_drafts.sign(alice, export_drafts.as_text(
        unsigned.statement))["signature"])
    with pytest.raises(NotPermitted, match=f"entry {other_item} is not"):
        export_drafts.finish(archive, moved, signature, tmp_path / "moved.zip")
    assert not (tmp_path / "moved.zip").exists()
    export_drafts.finish(archive, unsigned, signature, tmp_path / "package.zip")
    cli("verify-package", tmp_path / "package.zip", check=True)
