"""Tampering with a real archive, one damage at a time: `custody verify` must exit 1 and name it.

Each damage works as an adversary with write access would: raw file writes and a raw SQLite
connection with the append-only triggers dropped first (triggers stop accidents, not attackers).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest

from custody.core import canonical, merkle
from custody.core import entry as entries
from custody.core.signing import SigningKey

from .conftest import DATA, Cli


def _db(cli):
    conn = sqlite3.connect(cli.archive / "ledger.db", isolation_level=None)
    for name in ("entries_no_update", "entries_no_delete", "entries_in_order",
                 "metadata_no_update", "metadata_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    return conn


def _first_item(cli):
    return cli("list", "--json", check=True).json()[0]["sha256"]


def _rewrite_body(conn, seq, change):
    body = conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
    value = canonical.decode(bytes(body))
    change(value)
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
    value["actor"] = mallory.key_id
    value["details"]["note"] = "forged"
    e = entries.parse(canonical.encode(value))
    signed = entries.sign(e, mallory)
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


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_verify_names_the_damage(filled, damage):
    expected = damage(filled)
    r = filled("verify")
    assert r.code == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert expected in r.stdout, r.stdout
    assert "verification failed" in r.stderr
    j = filled("verify", "--json")
    assert j.code == 1 and not j.json()["ok"]


def test_an_orphan_object_is_a_notice_not_a_failure(filled):
    import io

    from store.local_objects import LocalObjectStore

    LocalObjectStore(filled.archive / "objects").put(io.BytesIO(b"stored, then the power went"))
    r = filled("verify", "--json")
    assert r.code == 0
    assert any("has no ingest entry" in n for n in r.json()["notices"])


# Both formats in one log (docs/FORMAT.md §5.8): entries 7 and 9 of the mixed archive are
# statements signed away from the archive (format 2), 8 and 10 entries signed here (format 1).


def edit_a_statements_text(cli):
    _rewrite_body(_db(cli), 7, lambda v: v["statement"]["details"].update(text="not seen"))
    return "entry 7: bad signature"


def edit_a_local_entry_after_a_statement(cli):
    _rewrite_body(_db(cli), 8, lambda v: v["details"].update(text="never noted"))
    return "entry 8: bad signature"


def edit_the_archive_time_of_a_statement(cli):
    """The archive's part of a format 2 entry is signed by no one: the next entry's prev and the
    tree bind it."""
    def later(v):
        v["time"] = v["time"][:-2] + ("1" if v["time"][-2] != "1" else "2") + "Z"
    _rewrite_body(_db(cli), 7, later)
    return "entry 8:"


def resign_a_statement_with_an_unenrolled_key(cli):
    mallory = SigningKey.generate("Mallory")
    conn = _db(cli)
    body = conn.execute("SELECT body FROM entries WHERE seq = 7").fetchone()[0]
    value = canonical.decode(bytes(body))
    statement = entries.parse_statement(canonical.encode(
        dict(value["statement"], actor=mallory.key_id)))
    signed = entries.chain(entries.sign_statement(statement, mallory), seq=7, time=value["time"],
                           prev=value["prev"])
    conn.execute("UPDATE entries SET body = ?, signature = ?, leaf_hash = ?, actor = ? "
                 "WHERE seq = 7", (signed.body, signed.signature, signed.leaf_hash,
                                   mallory.key_id))
    return "not an enrolled custodian"


def delete_a_statement(cli):
    _db(cli).execute("DELETE FROM entries WHERE seq = 7")
    return "entries 7..7 are missing"


def swap_a_statement_and_a_local_entry(cli):
    conn = _db(cli)
    a = conn.execute("SELECT body, signature FROM entries WHERE seq = 7").fetchone()
    b = conn.execute("SELECT body, signature FROM entries WHERE seq = 8").fetchone()
    conn.execute("UPDATE entries SET body = ?, signature = ? WHERE seq = 7", b)
    conn.execute("UPDATE entries SET body = ?, signature = ? WHERE seq = 8", a)
    return "reordered"


def replay_a_statement(cli):
    """Entry 7's signed statement chained again at the log's end, hashes and tree all right."""
    conn = _db(cli)
    body, sig = conn.execute("SELECT body, signature FROM entries WHERE seq = 7").fetchone()
    statement = entries.statement_of(entries.SignedEntry(bytes(body), bytes(sig)))
    rows = [(bytes(b), bytes(s)) for b, s in
            conn.execute("SELECT body, signature FROM entries ORDER BY seq")]
    tip = rows[-1][0]
    e = entries.parse(tip)
    again = entries.chain(statement, seq=len(rows), time=e.time,
                          prev=entries.leaf_hash(tip).hex())
    _rewrite_log(conn, rows + [(again.body, again.signature)])
    return f"entry {len(rows)}: embeds statement"


def _rewrite_log(conn, rows):
    """Write `rows` (body, signature) as the whole log, leaf hashes and tree nodes recomputed, as
    an insider with write access and no key can: nothing is re-signed."""
    for name in ("nodes_no_update", "nodes_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute("DELETE FROM entries")
    conn.execute("DELETE FROM merkle_nodes")
    nodes: dict[tuple[int, int], bytes] = {}
    for seq, (body, signature) in enumerate(rows):
        e = entries.parse(body)
        leaf = entries.leaf_hash(body)
        for level, idx, h in merkle.nodes_after_append(seq, leaf, lambda lv, ix: nodes[(lv, ix)]):
            nodes[(level, idx)] = h
        conn.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (seq, body, signature, leaf, e.time, e.actor, e.action, e.item))
    conn.executemany("INSERT INTO merkle_nodes VALUES (?, ?, ?)",
                     [(lv, ix, h) for (lv, ix), h in nodes.items()])


MIXED_DAMAGES = [edit_a_statements_text, edit_a_local_entry_after_a_statement,
                 edit_the_archive_time_of_a_statement, resign_a_statement_with_an_unenrolled_key,
                 delete_a_statement, swap_a_statement_and_a_local_entry, replay_a_statement,
                 edit_entry_note, forge_signature]


@pytest.fixture(scope="module")
def mixed_template(tmp_path_factory):
    from .test_statements import mixed_cli

    cli = mixed_cli(tmp_path_factory.mktemp("mixed"))
    cli("verify", check=True)
    return cli.tmp


@pytest.fixture
def mixed(mixed_template, tmp_path):
    """A copy of the mixed-format archive (tests/test_statements.py `mixed_cli`)."""
    for name in ("archive", "alice.key", "alice.key.pub"):
        src = mixed_template / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    return Cli(tmp_path, tmp_path / "archive", tmp_path / "alice.key")


@pytest.mark.parametrize("damage", MIXED_DAMAGES, ids=[d.__name__ for d in MIXED_DAMAGES])
def test_verify_names_the_damage_to_either_format_in_a_mixed_log(mixed, damage):
    expected = damage(mixed)
    r = mixed("verify")
    assert r.code == 1, r.stdout + r.stderr
    assert expected in r.stdout, r.stdout
    assert "Traceback" not in r.stderr and "verification failed" in r.stderr


def test_statements_reordered_by_an_insider_are_caught_by_the_checkpoint_made_after_them(mixed):
    """No signature binds a statement's place (its seq and prev are the archive's): an insider
    who swaps two statements and recomputes the chain and the tree, with no key, leaves a log
    that verifies on its own. The checkpoint made after the batch (as `custody serve` will) is
    what catches it. (Local entries, format 1, need no checkpoint: their signature binds seq.)"""
    from .test_statements import _note_statement, _submit

    assert _submit(mixed, _note_statement(mixed, "first of a batch"), "s11") == 11
    assert _submit(mixed, _note_statement(mixed, "second of a batch"), "s12") == 12
    unchecked = mixed.tmp / "unchecked"
    shutil.copytree(mixed.archive, unchecked)
    mixed("checkpoint", check=True)  # after the batch
    for archive in (mixed.archive, unchecked):
        conn = _db(Cli(mixed.tmp, archive, mixed.key))
        rows = [(bytes(b), bytes(s)) for b, s in
                conn.execute("SELECT body, signature FROM entries ORDER BY seq")]
        rechained = rows[:11]
        for body, signature in (rows[12], rows[11]):  # swapped
            e = entries.parse(body)
            again = entries.chain(entries.statement_of(entries.SignedEntry(body, signature)),
                                  seq=len(rechained), time=e.time,
                                  prev=entries.leaf_hash(rechained[-1][0]).hex())
            rechained.append((again.body, again.signature))
        _rewrite_log(conn, rechained)
        conn.close()
    assert Cli(mixed.tmp, unchecked, mixed.key)("verify").code == 0  # the gap, until a checkpoint
    r = mixed("verify")
    assert r.code == 1 and "history was rewritten" in r.stdout, r.stdout + r.stderr
