"""Witness cosignatures (C2SP tlog-cosignature) and RFC 3161 timestamps on kept checkpoints."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from custody.core import note
from custody.ops.archive import Archive

from .conftest import ARCHIVE_PASSPHRASE, one_line_error
from .tsa import LocalTSA, make_pki, openssl


@pytest.fixture
def two_checkpoints(cli_archive, tmp_path):
    cli = cli_archive
    (tmp_path / "a.bin").write_bytes(b"first evidence")
    cli("ingest", tmp_path / "a.bin", check=True)
    info = cli("checkpoint", "-o", tmp_path / "cp1.txt", "--json", check=True).json()
    (tmp_path / "b.bin").write_bytes(b"second evidence")
    cli("ingest", tmp_path / "b.bin", check=True)
    cli("checkpoint", "-o", tmp_path / "cp2.txt", check=True)
    cli("prove", "--from", tmp_path / "cp1.txt", "--to", tmp_path / "cp2.txt",
        "-o", tmp_path / "c12.json", check=True)
    cli("key", "new", "--name", "Witness W", "-o", tmp_path / "witness.key", check=True)
    cli.vkey = info["verifier_key"]
    cli.witness = {"CUSTODY_KEY": str(tmp_path / "witness.key")}
    return cli


def test_witness_cosigns_consistent_checkpoints_and_archive_keeps_them(two_checkpoints, tmp_path):
    cli = two_checkpoints
    state = tmp_path / "witness-state.json"
    first = cli("witness", "cosign", tmp_path / "cp1.txt", "--state", state, "--archive-key",
                cli.vkey, "-o", tmp_path / "cp1.cosigned", "--json", env=cli.witness, check=True)
    wkey = first.json()["witness_key"]
    # the next checkpoint needs a consistency proof from the last cosigned one
    no_proof = cli("witness", "cosign", tmp_path / "cp2.txt", "--state", state, env=cli.witness)
    assert no_proof.code == 2 and "is needed" in one_line_error(no_proof)
    cli("witness", "cosign", tmp_path / "cp2.txt", "--state", state, "--proof",
        tmp_path / "c12.json", "-o", tmp_path / "cp2.cosigned", env=cli.witness, check=True)
    for f in ("cp1.cosigned", "cp2.cosigned"):
        cli("witness", "add", tmp_path / f, "--witness-key", wkey, check=True)
    v = cli("verify", "--json", check=True).json()
    assert sum("cosigned by witness" in n for n in v["notices"]) == 2
    # the cosigned note verifies with the published C2SP algorithm (our note module, both keys)
    opened = note.open_note((tmp_path / "cp2.cosigned").read_text(),
                            [note.parse_verifier_key(wkey), note.parse_verifier_key(cli.vkey)])
    assert {s.algorithm for s in opened.verified} == {note.ALG_ED25519, note.ALG_COSIGNATURE_V1}


def test_witness_refuses_a_split_view(two_checkpoints, tmp_path):
    """The archive shows the witness a second, different checkpoint of the same size."""
    cli = two_checkpoints
    state = tmp_path / "state.json"
    cli("witness", "cosign", tmp_path / "cp2.txt", "--state", state, "--archive-key", cli.vkey,
        env=cli.witness, check=True)
    archive = Archive.open(cli.archive)
    key = archive.load_archive_key(ARCHIVE_PASSPHRASE)
    size = archive.ledger.size()
    fork = note.sign_note(note.format_checkpoint(archive.config.origin, size,
                                                 hashlib.sha256(b"other history").digest()),
                          archive.config.origin, key)
    (tmp_path / "fork.txt").write_text(fork)
    r = cli("witness", "cosign", tmp_path / "fork.txt", "--state", state, env=cli.witness)
    assert r.code == 1 and "split view" in one_line_error(r)
    # and a forked, larger history cannot come with a proof that verifies
    bigger = note.sign_note(note.format_checkpoint(archive.config.origin, size + 3,
                                                   hashlib.sha256(b"forked").digest()),
                            archive.config.origin, key)
    (tmp_path / "bigger.txt").write_text(bigger)
    proof = json.loads((tmp_path / "c12.json").read_text())
    proof["old_checkpoint"], proof["new_checkpoint"] = (tmp_path / "cp2.txt").read_text(), bigger
    (tmp_path / "fake-proof.json").write_text(json.dumps(proof))
    r = cli("witness", "cosign", tmp_path / "bigger.txt", "--state", state, "--proof",
            tmp_path / "fake-proof.json", env=cli.witness)
    assert r.code == 1 and "proof does not verify" in one_line_error(r)
    assert json.loads(state.read_text())["logs"][archive.config.origin]["size"] == size


def test_witness_add_refuses_a_foreign_or_forged_cosignature(two_checkpoints, tmp_path):
    cli = two_checkpoints
    state = tmp_path / "s.json"
    out = cli("witness", "cosign", tmp_path / "cp1.txt", "--state", state, "--archive-key",
              cli.vkey, "--json", env=cli.witness, check=True).json()
    forged = out["note"][:-10] + ("A" if out["note"][-10] != "A" else "B") + out["note"][-9:]
    (tmp_path / "forged.txt").write_text(forged)
    r = cli("witness", "add", tmp_path / "forged.txt", "--witness-key", out["witness_key"])
    assert r.code != 0 and "Traceback" not in r.stderr


@pytest.mark.skipif(openssl() is None, reason="openssl not installed")
def test_checkpoint_timestamped_by_a_local_tsa(cli_archive, tmp_path):
    cli = cli_archive
    with LocalTSA() as tsa:
        bundle = tmp_path / "tsa-bundle.pem"
        bundle.write_bytes(tsa.certificates_pem)
        r = cli("checkpoint", "--tsa", tsa.url, "--tsa-certs", bundle, "--json", check=True)
        assert r.json()["timestamp"]["gen_time"].endswith("Z")
        tsa.mode = "http500"
        (tmp_path / "x.bin").write_bytes(b"x")
        cli("ingest", tmp_path / "x.bin", check=True)
        bad = cli("checkpoint", "--tsa", tsa.url, "--tsa-certs", bundle)
        assert bad.code == 3 and "HTTP 500" in one_line_error(bad)
    v = cli("verify", "--json", check=True).json()
    assert any("timestamped at" in n for n in v["notices"])
    # a damaged token in the archive is a verification problem
    conn = sqlite3.connect(cli.archive / "ledger.db", isolation_level=None)
    conn.execute("DROP TRIGGER extras_no_update")
    data = json.loads(conn.execute("SELECT data FROM checkpoint_extras").fetchone()[0])
    (tmp_path / "impostor").mkdir()
    make_pki(tmp_path / "impostor", "Local Test")  # same names, other keys
    data["tsa_certificates"] = (tmp_path / "impostor" / "bundle.pem").read_text()
    conn.execute("UPDATE checkpoint_extras SET data = ?", (json.dumps(data),))
    r = cli("verify")
    assert r.code == 1 and "rfc3161 does not verify" in r.stdout
