"""The export in phases that the web interface uses (custody/package/export_drafts.py): no
package without the exporter's logged accesses and their own signature over the statement; the
package draft signed with `custody sign-statement` only by its exporter."""

from __future__ import annotations

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
        export_drafts.prepare(archive, alice.key_id, archive_key, [sha], "court")
    assert len(archive.ledger.checkpoints()) == kept  # refused before anything was signed

    body = drafts.compose(archive.config.origin, alice.key_id, "access", sha,
                          {"purpose": "court", "kind": "export", "destination": "test"})
    statement, _ = statements.read_statement_file(
        canonical.encode(drafts.sign(alice, drafts.as_text(body))).decode())
    archive.append_statement(statement)
    unsigned = export_drafts.prepare(archive, alice.key_id, archive_key, [sha], "court")
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
