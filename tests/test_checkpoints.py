"""Signed checkpoints, inclusion and consistency proofs, and the ledger tamper matrix.

The tamper matrix plays an insider who holds every key: signatures and the hash chain can be
re-made, so only the checkpoints the archive already signed can catch the rewrite.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.core import canonical, merkle, note
from custody.core import entry as entries
from custody.ops.archive import Archive
from custody.ops.keyfiles import load_key

from .conftest import ARCHIVE_PASSPHRASE, PASSPHRASE, Cli, copy_archive, one_line_error

TRIGGERS = ("entries_no_update", "entries_no_delete", "entries_in_order", "nodes_no_update",
            "nodes_no_delete", "checkpoints_no_update", "checkpoints_no_delete")


def independent_open_signed_note(text: str, name: str, public_key: bytes) -> tuple[str, int, bytes]:
    """C2SP signed-note + tlog-checkpoint verification written from the specs alone (no custody
    code): returns (origin, size, root) or raises."""
    body, _, sigs = text.partition("\n\n")
    body += "\n"
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key).digest()[:4]
    for line in sigs.splitlines():
        assert line.startswith("\u2014 "), line
        line_name, b64 = line[2:].rsplit(" ", 1)
        raw = base64.b64decode(b64)
        if line_name == name and raw[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], body.encode())
            origin, size, root = body.splitlines()[:3]
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature by the archive key")


@pytest.fixture(scope="module")
def _logged(tmp_path_factory, session_made_key):
    """Made once per module: an archive with a dozen entries and a first checkpoint saved to a
    file (cp1.txt beside it)."""
    tmp = tmp_path_factory.mktemp("logged")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    session_made_key(cli.key, "Alice Admin")
    cli("init", "--name", "Test Documentation Centre", check=True)
    folder = tmp / "in"
    folder.mkdir()
    for i in range(10):
        (folder / f"photo-{i}.bin").write_bytes(f"evidence {i}".encode())
    cli("ingest", folder, check=True)
    cli("checkpoint", "-o", tmp / "cp1.txt", check=True)
    return cli


@pytest.fixture
def logged(_logged, tmp_path):
    """This test's own copy of that archive, its keys and cp1.txt (tests damage it)."""
    shutil.copy2(_logged.tmp / "cp1.txt", tmp_path / "cp1.txt")
    return copy_archive(_logged, tmp_path)


def test_checkpoint_verifies_independently(logged, tmp_path):
    archive = Archive.open(logged.archive)
    info = logged("checkpoint", "--json", check=True).json()
    assert info["new"] is False and info["size"] == 11  # nothing appended since: reused
    origin, size, root = independent_open_signed_note(
        info["note"], archive.config.origin, archive.config.archive_key.raw)
    assert origin == archive.config.origin and size == 11
    leaves = [r.leaf_hash for r in archive.ledger.rows()]
    tree = merkle.TreeBuilder()
    tree.extend(leaves)
    assert root == tree.root()
    assert info["verifier_key"].startswith(archive.config.origin + "+")
    tampered = info["note"].replace("\n11\n", "\n12\n")
    with pytest.raises(InvalidSignature):
        independent_open_signed_note(tampered, archive.config.origin,
                                     archive.config.archive_key.raw)


def test_checkpoint_appends_nothing_and_keeps_every_issued_one(logged, tmp_path):
    archive = Archive.open(logged.archive)
    before = archive.ledger.size()
    (tmp_path / "more.bin").write_bytes(b"more")
    logged("ingest", tmp_path / "more.bin", check=True)
    logged("checkpoint", check=True)
    assert archive.ledger.size() == before + 1
    assert [c.size for c in archive.ledger.checkpoints()] == [11, 12]
    assert logged("verify", "--json", check=True).json()["checkpoints_checked"] == 2


def test_prove_entry_item_and_consistency_verify_offline(logged, tmp_path):
    vkey = logged("checkpoint", "--json", check=True).json()["verifier_key"]
    (tmp_path / "vkey").write_text(vkey)
    logged("prove", "--entry", "3", "-o", tmp_path / "p3.json", check=True)
    r = logged("verify-proof", tmp_path / "p3.json", "--archive-key", vkey, check=True)
    assert "entry 3" in r.stdout

    item = logged("list", "--json", check=True).json()[2]["sha256"]
    logged("prove", item[:12], "-o", tmp_path / "item.json", check=True)
    assert json.loads((tmp_path / "item.json").read_text())["item"] == item
    logged("verify-proof", tmp_path / "item.json", "--archive-key", tmp_path / "vkey", check=True)

    (tmp_path / "later.bin").write_bytes(b"later evidence")
    logged("ingest", tmp_path / "later.bin", check=True)
    logged("checkpoint", "-o", tmp_path / "cp2.txt", check=True)
    logged("prove", "--from", tmp_path / "cp1.txt", "--to", tmp_path / "cp2.txt",
           "-o", tmp_path / "cons.json", check=True)
    r = logged("verify-proof", tmp_path / "cons.json", "--archive-key", vkey, "--json", check=True)
    assert r.json()["verified"][0] == {"checkpoint_size": 12, "entry": None, "action": None,
                                       "old_size": 11}
    logged("verify", "--checkpoint", tmp_path / "cp1.txt", check=True)


@pytest.mark.parametrize("damage", ["flip-proof-hash", "other-entry", "wrong-index",
                                    "resized-checkpoint", "other-key"])
def test_altered_proofs_fail_offline(logged, tmp_path, damage):
    vkey = logged("checkpoint", "--json", check=True).json()["verifier_key"]
    proof = json.loads(logged("prove", "--entry", "4", check=True).stdout)
    if damage == "flip-proof-hash":
        raw = bytearray(base64.b64decode(proof["proof"][1]))
        raw[7] ^= 0x10
        proof["proof"][1] = base64.b64encode(bytes(raw)).decode()
    elif damage == "other-entry":
        other = json.loads(logged("prove", "--entry", "5", check=True).stdout)
        proof["entry"] = other["entry"]
    elif damage == "wrong-index":
        proof["leaf_index"] = 5
    elif damage == "resized-checkpoint":
        proof["checkpoint"] = proof["checkpoint"].replace("\n11\n", "\n10\n", 1)
    elif damage == "other-key":
        vkey = note.verifier_key(vkey.split("+")[0], b"\x07" * 32)
    (tmp_path / "bad.json").write_text(json.dumps(proof))
    r = logged("verify-proof", tmp_path / "bad.json", "--archive-key", vkey)
    assert r.code == 1, r.stdout + r.stderr
    assert "verification failed" in one_line_error(r)


# --- the tamper matrix ------------------------------------------------------------------------

def _raw(cli):
    conn = sqlite3.connect(cli.archive / "ledger.db", isolation_level=None)
    for t in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    return conn


def _keys(cli):
    archive = Archive.open(cli.archive)
    alice = load_key(cli.key, PASSPHRASE)
    return archive, {alice.key_id: alice,
                     archive.config.archive_key.key_id: archive.load_archive_key(ARCHIVE_PASSPHRASE)}


def _rebuild(cli, bodies):
    """Write `bodies` (entry JSON values) as the whole log: re-chained, re-signed with the real
    keys, tree nodes rebuilt, as an insider with every key would."""
    archive, keys = _keys(cli)
    conn = _raw(cli)
    conn.execute("DELETE FROM entries")
    conn.execute("DELETE FROM merkle_nodes")
    prev = None
    nodes: dict[tuple[int, int], bytes] = {}
    for seq, value in enumerate(bodies):
        value = dict(value, seq=seq, prev=prev)
        e = entries.parse(canonical.encode(value))
        signed = entries.sign(e, keys[e.actor])
        for level, idx, h in merkle.nodes_after_append(seq, signed.leaf_hash,
                                                       lambda lv, ix: nodes[(lv, ix)]):
            nodes[(level, idx)] = h
        conn.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (seq, signed.body, signed.signature, signed.leaf_hash, e.time, e.actor,
                      e.action, e.item))
        prev = signed.leaf_hash.hex()
    conn.executemany("INSERT INTO merkle_nodes VALUES (?, ?, ?)",
                     [(lv, ix, h) for (lv, ix), h in nodes.items()])


def _bodies(cli):
    archive = Archive.open(cli.archive)
    return [canonical.decode(r.body) for r in archive.ledger.rows()]


def edited_entry(cli):
    bodies = _bodies(cli)
    bodies[4]["details"]["note"] = "rewritten by an insider"
    _rebuild(cli, bodies)
    return "history was rewritten"


def deleted_entry(cli):
    bodies = _bodies(cli)
    del bodies[5]
    _rebuild(cli, bodies)
    return "the log was truncated"


def deleted_entry_size_restored(cli):
    """Delete one entry and pad the end with a re-signed copy, so the size is as signed."""
    bodies = _bodies(cli)
    del bodies[5]
    bodies.append(dict(bodies[-1], details=dict(bodies[-1]["details"], note="padding")))
    _rebuild(cli, bodies)
    return "history was rewritten"


def swapped_entries(cli):
    bodies = _bodies(cli)
    bodies[3], bodies[4] = bodies[4], bodies[3]
    _rebuild(cli, bodies)
    return "history was rewritten"


def forged_entry_inserted(cli):
    bodies = _bodies(cli)
    forged = dict(bodies[2])
    forged["details"] = dict(forged["details"], note="backdated forgery")
    forged["item"] = "ab" * 32
    bodies.insert(3, forged)
    _rebuild(cli, bodies)
    return "history was rewritten"


def truncated_below_checkpoint(cli):
    bodies = _bodies(cli)
    _rebuild(cli, bodies[:8])
    return "the log was truncated"


def checkpoint_bad_signature(cli):
    conn = _raw(cli)
    text = conn.execute("SELECT note FROM checkpoints WHERE id = 1").fetchone()[0]
    root = text.splitlines()[2]
    forged_root = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    conn.execute("UPDATE checkpoints SET note = ? WHERE id = 1", (text.replace(root, forged_root),))
    return "checkpoint #1"


def forked_log(cli):
    """Two checkpoints of the same size with different roots, both really signed."""
    archive, keys = _keys(cli)
    key = keys[archive.config.archive_key.key_id]
    size = archive.ledger.checkpoints()[0].size
    body = note.format_checkpoint(archive.config.origin, size, hashlib.sha256(b"fork").digest())
    _raw(cli).execute("INSERT INTO checkpoints (size, note, created) VALUES (?, ?, ?)",
                      (size, note.sign_note(body, archive.config.origin, key), "2026-01-01T00:00:00Z"))
    return "fork"


MATRIX = [edited_entry, deleted_entry, deleted_entry_size_restored, swapped_entries, forged_entry_inserted,
          truncated_below_checkpoint, checkpoint_bad_signature, forked_log]


@pytest.mark.parametrize("damage", MATRIX, ids=[d.__name__ for d in MATRIX])
def test_tamper_matrix(logged, tmp_path, damage):
    expected = damage(logged)
    r = logged("verify")
    assert r.code == 1, r.stdout + r.stderr
    assert expected in r.stdout, r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("damage", [edited_entry, deleted_entry, truncated_below_checkpoint],
                         ids=["edited", "deleted", "truncated"])
def test_a_reviewer_holding_an_old_checkpoint_catches_a_full_rewrite(logged, tmp_path, damage):
    """Even with the archive's own kept checkpoints wiped too, the one a reviewer holds fails."""
    damage(logged)
    _raw(logged).execute("DELETE FROM checkpoints")
    held = logged("verify", "--checkpoint", tmp_path / "cp1.txt")
    assert held.code == 1 and "the given checkpoint" in held.stdout
    # and no consistency proof from the held checkpoint to a fresh one can be made to verify
    logged("checkpoint", "-o", tmp_path / "cp-new.txt", check=True)
    r = logged("prove", "--from", tmp_path / "cp1.txt", "--to", tmp_path / "cp-new.txt",
               "-o", tmp_path / "c.json")
    if r.code == 0:
        vkey = logged("checkpoint", "--json", check=True).json()["verifier_key"]
        v = logged("verify-proof", tmp_path / "c.json", "--archive-key", vkey)
        assert v.code == 1
    else:
        assert r.code != 0 and "Traceback" not in r.stderr
