"""The local adapters' own physical guarantees (folder layout and modes, SQLite triggers, schema
upgrade); what every adapter must do is tests/test_backend_contract.py."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3

import pytest

from store.local_objects import LocalObjectStore
from store.ports import EntryRow, ObjectCorrupt, ObjectMissing
from store.sqlite_ledger import SqliteLedger


@pytest.fixture
def objects(tmp_path):
    s = LocalObjectStore(tmp_path / "objects")
    s.create()
    return s


def test_put_stores_once_under_sha256_with_all_digests(objects):
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks, a ragged end
    result = objects.put(io.BytesIO(data))
    d = result.digests
    assert result.created
    assert (d.sha256, d.sha512, d.sha1, d.md5, d.size) == (
        hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(),
        hashlib.sha1(data).hexdigest(), hashlib.md5(data).hexdigest(), len(data))
    path = objects.path(d.sha256)
    assert path == objects.root / "sha256" / d.sha256[:2] / d.sha256
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o400  # owner-only, read-only
    assert objects.has(d.sha256) and list(objects) == [d.sha256]
    assert objects.unfinished_writes() == []


def test_an_existing_object_is_never_rewritten(objects):
    first = objects.put(io.BytesIO(b"evidence"))
    path = objects.path(first.digests.sha256)
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    again = objects.put(io.BytesIO(b"evidence"))
    assert not again.created and again.digests == first.digests
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)
    assert objects.unfinished_writes() == []


def test_empty_file_is_an_object(objects):
    d = objects.put(io.BytesIO(b"")).digests
    assert d.sha256 == hashlib.sha256(b"").hexdigest() and d.size == 0
    objects.check(d.sha256)


def test_check_finds_corruption_and_missing(objects):
    d = objects.put(io.BytesIO(b"original bytes")).digests
    objects.check(d.sha256)
    path = objects.path(d.sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"original bytez")
    with pytest.raises(ObjectCorrupt, match=d.sha256):
        objects.check(d.sha256)
    with pytest.raises(ObjectCorrupt):
        with objects.open(d.sha256) as r:
            r.read()
            r.read()
    path.unlink()
    with pytest.raises(ObjectMissing):
        objects.check(d.sha256)


def test_failed_put_leaves_no_temp_file(objects):
    class Broken(io.RawIOBase):
        def __init__(self):
            self.n = 0

        def readinto(self, b):
            self.n += 1
            if self.n > 2:
                raise OSError("device unplugged")
            b[:4] = b"abcd"
            return 4

    with pytest.raises(OSError):
        objects.put(Broken())
    assert objects.unfinished_writes() == [] and list(objects) == []


def _row(seq, prev=b""):
    return EntryRow(seq=seq, body=b"{}", signature=b"s" * 64, leaf_hash=bytes([seq]) * 32,
                    time="t", actor="a", action="x", item=None)


def test_ledger_triggers_refuse_update_delete_and_out_of_order(tmp_path):
    ledger = SqliteLedger(tmp_path / "ledger.db")
    ledger.create()
    with ledger.writing() as w:
        w.append(_row(0))
        w.append(_row(1))
    conn = sqlite3.connect(tmp_path / "ledger.db")
    for sql in ["UPDATE entries SET action = 'y' WHERE seq = 0", "DELETE FROM entries WHERE seq = 1",
                "INSERT INTO entries VALUES (5, x'00', x'00', x'00', 't', 'a', 'x', NULL)",
                "INSERT INTO entries VALUES (1, x'00', x'00', x'00', 't', 'a', 'x', NULL)"]:
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(sql)
    assert [r.seq for r in ledger.rows()] == [0, 1]


def test_ledger_batch_is_all_or_nothing(tmp_path):
    ledger = SqliteLedger(tmp_path / "ledger.db")
    ledger.create()
    with pytest.raises(RuntimeError):
        with ledger.writing() as w:
            w.append(_row(0))
            w.put_metadata("ab" * 32, b"{}")
            raise RuntimeError("crash mid-batch")
    assert ledger.size() == 0 and ledger.metadata("ab" * 32) is None


def test_put_sets_aside_a_damaged_file_at_the_objects_name(objects):
    data = b"the real evidence"
    sha = hashlib.sha256(data).hexdigest()
    final = objects.path(sha)
    final.parent.mkdir(parents=True)
    final.write_bytes(b"junk")
    result = objects.put(io.BytesIO(data))
    assert result.created and result.replaced is not None
    assert result.replaced.sha256 == hashlib.sha256(b"junk").hexdigest()
    assert result.replaced.size == 4
    assert final.read_bytes() == data and final.stat().st_mode & 0o777 == 0o400
    assert result.replaced.path.startswith(f"objects/quarantine/{sha}.")
    assert (objects.root.parent / result.replaced.path).read_bytes() == b"junk"
    assert objects.quarantined() == [result.replaced.path]
    assert objects.unfinished_writes() == []


def test_put_sets_aside_a_folder_at_the_objects_name(objects):
    data = b"more evidence"
    final = objects.path(hashlib.sha256(data).hexdigest())
    (final / "inside").mkdir(parents=True)
    result = objects.put(io.BytesIO(data))
    assert result.replaced is not None and result.replaced.sha256 is None
    assert (objects.root.parent / result.replaced.path / "inside").is_dir()
    assert final.read_bytes() == data


def test_unsigned_metadata_row_is_set_aside_and_signed_rows_stay(tmp_path):
    ledger = SqliteLedger(tmp_path / "ledger.db")
    ledger.create()
    item = "ab" * 32
    with ledger.writing() as w:
        w.put_metadata(item, b'{"planted":true}')  # no entry records the item: unsigned
    with ledger.writing() as w:
        w.put_metadata(item, b'{"read":true}')
        w.append(EntryRow(seq=0, body=b"{}", signature=b"s" * 64, leaf_hash=b"\0" * 32,
                          time="t", actor="a", action="ingest", item=item))
    assert ledger.metadata(item) == b'{"read":true}'
    kept = ledger.conn.execute("SELECT sha256, doc FROM metadata_set_aside").fetchall()
    assert kept == [(item, b'{"planted":true}')]
    conn = sqlite3.connect(tmp_path / "ledger.db")
    for sql in ["UPDATE metadata SET doc = x'00'", "DELETE FROM metadata",
                "DELETE FROM metadata_set_aside", "UPDATE metadata_set_aside SET doc = x'00'"]:
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(sql)


def test_a_version_1_ledger_is_upgraded_in_its_first_write(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = SqliteLedger(path)
    ledger.create()
    ledger.close()
    conn = sqlite3.connect(path)  # as round 1 made it: no set-aside table, strict triggers
    conn.executescript("""
        DROP TABLE metadata_set_aside;
        DROP TRIGGER metadata_no_update;
        CREATE TRIGGER metadata_no_update BEFORE UPDATE ON metadata
        BEGIN SELECT RAISE(ABORT, 'metadata is write-once: UPDATE refused'); END;
        PRAGMA user_version = 1;
    """)
    conn.execute("INSERT INTO metadata VALUES (?, ?)", ("cd" * 32, b"planted"))
    conn.commit()
    conn.close()
    ledger = SqliteLedger(path)
    with ledger.writing() as w:
        w.put_metadata("cd" * 32, b"read")
    assert ledger.metadata("cd" * 32) == b"read"
    assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == 2
