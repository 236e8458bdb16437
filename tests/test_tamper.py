"""Tampering with a real archive, one damage at a time: `custody verify` must exit 1 and name it.

Each damage works as an adversary with write access would: raw file writes and a raw SQLite
connection with the append-only triggers dropped first (triggers stop accidents, not attackers).
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from custody.core import canonical
from custody.core import entry as entries
from custody.core.signing import SigningKey

from .conftest import DATA


def _db(cli):
    conn = sqlite3.connect(cli.archive / "ledger.db", isolation_level=None)
    for name in ("entries_no_update", "entries_no_delete", "entries_in_order",
                 "metadata_no_update", "metadata_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    return conn


def _first_item(cli):
    return cli("list", "--json", check=True).json()[0]["sha256"]


def _signed(value):
    """The signed members: the whole entry (format 1) or its statement (format 2)."""
    return value["statement"] if value["v"] == 2 else value


def _rewrite_body(conn, seq, change):
    body = conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
    value = canonical.decode(bytes(body))
    change(_signed(value))
    new = canonical.encode(value)
    conn.execute("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?",
                 (new, entries.leaf_hash(new), seq))


def flip_object_byte(cli):
    path = cli.archive / "objects" / "sha256" / _first_item(cli)[:2] / _first_item(cli)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return "is corrupt"


def delete_object(cli):
    item = _first_item(cli)
    (cli.archive / "objects" / "sha256" / item[:2] / item).unlink()
    return "is missing"


def edit_entry_note(cli):
    _rewrite_body(_db(cli), 2, lambda v: v["details"].update(note="nothing happened"))
    return "entry 2: bad signature"


def edit_entry_and_resign_with_unenrolled_key(cli):
    mallory = SigningKey.generate("Mallory")
    conn = _db(cli)
    body = conn.execute("SELECT body FROM entries WHERE seq = 2").fetchone()[0]
    value = canonical.decode(bytes(body))
    _signed(value)["actor"] = mallory.key_id
    _signed(value)["details"]["note"] = "forged"
    e = entries.parse(canonical.encode(value))
    if e.version == 1:
        signed = entries.sign(e, mallory)
    else:
        statement = entries.sign_statement(entries.parse_statement(
            canonical.encode(value["statement"])), mallory)
        signed = entries.chain(statement, seq=e.seq, time=e.time, prev=e.prev)
    conn.execute("UPDATE entries SET body = ?, signature = ?, leaf_hash = ?, actor = ? "
                 "WHERE seq = 2", (signed.body, signed.signature, signed.leaf_hash, e.actor))
    return "not an enrolled custodian"


def delete_entry(cli):
    _db(cli).execute("DELETE FROM entries WHERE seq = 2")
    return "entries 2..2 are missing"


def swap_entries(cli):
    conn = _db(cli)
    a = conn.execute("SELECT body, signature FROM entries WHERE seq = 2").fetchone()
    b = conn.execute("SELECT body, signature FROM entries WHERE seq = 3").fetchone()
    conn.execute("UPDATE entries SET body = ?, signature = ? WHERE seq = 2", b)
    conn.execute("UPDATE entries SET body = ?, signature = ? WHERE seq = 3", a)
    return "reordered"


def forge_signature(cli):
    _db(cli).execute("UPDATE entries SET signature = ? WHERE seq = 3", (b"\x00" * 64,))
    return "entry 3: bad signature"


def edit_index_column(cli):
    _db(cli).execute("UPDATE entries SET action = 'sighting' WHERE seq = 2")
    return "index columns disagree"


def edit_metadata_document(cli):
    item = _first_item(cli)
    conn = _db(cli)
    doc = canonical.decode(bytes(conn.execute("SELECT doc FROM metadata WHERE sha256 = ?",
                                              (item,)).fetchone()[0]))
    doc["gps"] = {"lat": 51.5, "lon": -0.12, "alt": None}
    conn.execute("UPDATE metadata SET doc = ? WHERE sha256 = ?", (canonical.encode(doc), item))
    return "metadata document does not match"


def replace_archive_key_in_config(cli):
    path = cli.archive / "custody.json"
    config = json.loads(path.read_text())
    other = SigningKey.generate("other")
    config["archive_key"]["public_key"] = other.public.b64()
    path.write_text(json.dumps(config))
    return "entry 0"


def edit_interior_merkle_node(cli):
    # A level-0 node under a complete parent: the root (from the parent) stays right, but
    # every proof that uses this node as a sibling is wrong.
    conn = _db(cli)
    conn.execute("DROP TRIGGER IF EXISTS nodes_no_update")
    conn.execute("UPDATE merkle_nodes SET hash = ? WHERE level = 0 AND idx = 1", (b"\x42" * 32,))
    return "stored Merkle tree node (0, 1) does not match"


def drop_merkle_node(cli):
    conn = _db(cli)
    conn.execute("DROP TRIGGER IF EXISTS nodes_no_delete")
    conn.execute("DELETE FROM merkle_nodes WHERE level = 1 AND idx = 0")
    return "stored Merkle tree node (1, 0) is missing"


def replace_archive_public_key_file(cli):
    other = SigningKey.generate("Test Documentation Centre archive")
    (cli.archive / "keys" / "archive.key.pub").write_text(other.public.openssh_line() + "\n")
    return "keys/archive.key.pub is not the archive key signed in entry 0"


def replace_archive_key_file_with_junk(cli):
    (cli.archive / "keys" / "archive.key").write_text("not a key\n")
    return "keys/archive.key is not an encrypted private key"


def edit_archive_name_in_config(cli):
    path = cli.archive / "custody.json"
    config = json.loads(path.read_text())
    config["name"] = "Ministry of Truth"
    path.write_text(json.dumps(config))
    return "custody.json: name 'Ministry of Truth' differs from entry 0's"


def edit_origin_in_config(cli):
    path = cli.archive / "custody.json"
    config = json.loads(path.read_text())
    config["origin"] = "custody.archive/00000000"
    path.write_text(json.dumps(config))
    return "custody.json: origin 'custody.archive/00000000' differs from entry 0's"


def replay_a_statement(cli):
    """Format 2: entry 2's signed statement chained again at the log's end, hashes all right."""
    conn = _db(cli)
    body, sig = conn.execute("SELECT body, signature FROM entries WHERE seq = 2").fetchone()
    tip_seq, tip = conn.execute("SELECT seq, body FROM entries ORDER BY seq DESC").fetchone()
    e = entries.parse(bytes(body))
    statement = entries.statement_of(entries.SignedEntry(bytes(body), bytes(sig)))
    again = entries.chain(statement, seq=tip_seq + 1, time=e.time,
                          prev=entries.leaf_hash(bytes(tip)).hex())
    conn.execute("INSERT INTO entries (seq, body, signature, leaf_hash, time, actor, action, item)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (tip_seq + 1, again.body, again.signature,
                                                      again.leaf_hash, e.time, e.actor, e.action,
                                                      e.item))
    return f"entry {tip_seq + 1}: embeds statement"


def append_a_format_1_entry_after_format_2(cli):
    """A format 1 entry, properly signed by an enrolled admin, after format 2 entries."""
    from custody.ops.keyfiles import load_key

    from .conftest import PASSPHRASE

    key = load_key(cli.key, PASSPHRASE)
    conn = _db(cli)
    tip_seq, tip = conn.execute("SELECT seq, body FROM entries ORDER BY seq DESC").fetchone()
    last = entries.parse(bytes(tip))
    e = entries.Entry(log=last.log, seq=tip_seq + 1, time=last.time, actor=key.key_id,
                      action="tag", item=last.item, details={"tag": "x", "remove": False},
                      prev=entries.leaf_hash(bytes(tip)).hex())
    signed = entries.sign(e, key)
    conn.execute("INSERT INTO entries (seq, body, signature, leaf_hash, time, actor, action, item)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (e.seq, signed.body, signed.signature,
                                                      signed.leaf_hash, e.time, e.actor, e.action,
                                                      e.item))
    return "(rule entry-format)"


DAMAGES = [flip_object_byte, delete_object, edit_entry_note,
           edit_entry_and_resign_with_unenrolled_key, delete_entry, swap_entries, forge_signature,
           edit_index_column, edit_metadata_document, replace_archive_key_in_config,
           edit_interior_merkle_node, drop_merkle_node, replace_archive_public_key_file,
           replace_archive_key_file_with_junk, edit_archive_name_in_config,
           edit_origin_in_config]


@pytest.fixture
def filled(cli_archive, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, p in enumerate(sorted((DATA / "media").iterdir())[:3]):
        (folder / f"{i}-{p.name}").write_bytes(p.read_bytes())
    cli_archive("ingest", folder, "--note", "original note", check=True)
    cli_archive("verify", check=True)
    return cli_archive


@pytest.fixture
def filled_v1(tmp_path):
    """The format 1 archive of tests/data/format-v1, written before format 2."""
    from .test_statements import v1_cli

    return v1_cli(tmp_path)


FORMAT_2_DAMAGES = [replay_a_statement, append_a_format_1_entry_after_format_2]


@pytest.mark.parametrize("damage", DAMAGES + FORMAT_2_DAMAGES,
                         ids=[d.__name__ for d in DAMAGES + FORMAT_2_DAMAGES])
def test_verify_names_the_damage(filled, damage):
    expected = damage(filled)
    r = filled("verify")
    assert r.code == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert expected in r.stdout, r.stdout
    assert "verification failed" in r.stderr
    j = filled("verify", "--json")
    assert j.code == 1 and not j.json()["ok"]


# The same damages to an archive written in format 1 (entries signed whole) are caught as before.
V1_DAMAGES = DAMAGES


@pytest.mark.parametrize("damage", V1_DAMAGES, ids=[d.__name__ for d in V1_DAMAGES])
def test_verify_names_the_damage_in_a_format_1_archive(filled_v1, damage):
    expected = damage(filled_v1)
    r = filled_v1("verify")
    assert r.code == 1, r.stdout + r.stderr
    assert expected in r.stdout, r.stdout
    assert "Traceback" not in r.stderr and "verification failed" in r.stderr


def test_an_orphan_object_is_a_notice_not_a_failure(filled):
    import io

    from store.local_objects import LocalObjectStore

    LocalObjectStore(filled.archive / "objects").put(io.BytesIO(b"stored, then the power went"))
    r = filled("verify", "--json")
    assert r.code == 0
    assert any("has no ingest entry" in n for n in r.json()["notices"])
