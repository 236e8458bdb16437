"""The backend contract (as restic's backend tests): what EVERY object store and EVERY ledger must do.

Each test runs once per adapter. An adapter joins by adding a harness below: how to make one, and
how an outsider (a crash, a failing disk, an insider with write access) damages what it holds.
Today: the local folder store and the SQLite ledger; the PostgreSQL and S3 adapters plug in here.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from custody.core import merkle
from store.local_objects import LocalObjectStore
from store.pg_ledger import SCHEMA, PostgresLedger
from store.ports import (
    EntryRow,
    Ledger,
    LedgerDamaged,
    LedgerFull,
    LedgerReadOnly,
    LedgerStoreError,
    LedgerUnreadable,
    NodeMissing,
    ObjectCorrupt,
    ObjectMissing,
    ObjectStore,
    ObjectWriteError,
    StoreFull,
)
from store.s3_objects import S3Location, S3ObjectStore
from store.sqlite_ledger import SqliteLedger
from tests.s3_services import (
    drop_database,
    drop_role,
    new_bucket,
    new_database,
    new_role,
    url_as,
)

# Harnesses ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectHarness:
    name: str
    make: Callable[[Path], ObjectStore]  # a new, empty store whose data lives under the folder
    overwrite: Callable[[ObjectStore, str, bytes], None]  # bytes at an object's name, as damage
    remove: Callable[[ObjectStore, str], None]
    leave_temp: Callable[[ObjectStore], None]  # what a write killed halfway leaves behind
    on_small_disk: Callable[[Path, Callable[[Path, str], Path]], ObjectStore] | None = None
    needs_services: bool = False  # the real S3 of scripts/services.sh (fixture s3_services)


def _local_store(folder: Path) -> LocalObjectStore:
    store = LocalObjectStore(folder / "objects")
    store.create()
    return store


def _local_overwrite(store: ObjectStore, sha256: str, data: bytes) -> None:
    assert isinstance(store, LocalObjectStore)
    path = store.path(sha256)
    path.parent.mkdir(exist_ok=True)
    if path.exists():
        os.chmod(path, 0o600)
    path.write_bytes(data)


def _local_remove(store: ObjectStore, sha256: str) -> None:
    assert isinstance(store, LocalObjectStore)
    store.path(sha256).unlink()


def _local_leave_temp(store: ObjectStore) -> None:
    assert isinstance(store, LocalObjectStore)
    (store.root / "tmp" / "put-killed").write_bytes(b"half an obj")


def _local_small_disk(folder: Path, mount: Callable[[Path, str], Path]) -> ObjectStore:
    mount(folder / "objects", "3m")
    return _local_store(folder)


def _s3_store(folder: Path) -> S3ObjectStore:
    """A bucket of its own, with Object Lock. Its objects are written without retention (0 days)
    so that the harness can damage them, as a version whose retention lapsed could be."""
    return S3ObjectStore(S3Location(new_bucket(), "archive-1", os.environ["CUSTODY_S3_ENDPOINT"]),
                         retention_days=0, spool=folder)


def _s3_versions(store: S3ObjectStore, sha256: str) -> list[dict[str, str]]:
    listed = store.client.list_object_versions(Bucket=store.location.bucket, Prefix=store.key(sha256))
    return [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]


def _s3_remove(store: ObjectStore, sha256: str) -> None:
    assert isinstance(store, S3ObjectStore)
    for version in _s3_versions(store, sha256):
        store.client.delete_object(Bucket=store.location.bucket, Key=version["Key"],
                                   VersionId=version["VersionId"])


def _s3_overwrite(store: ObjectStore, sha256: str, data: bytes) -> None:
    assert isinstance(store, S3ObjectStore)
    _s3_remove(store, sha256)
    store.client.put_object(Bucket=store.location.bucket, Key=store.key(sha256), Body=data)


def _s3_leave_temp(store: ObjectStore) -> None:
    assert isinstance(store, S3ObjectStore)
    store.client.create_multipart_upload(Bucket=store.location.bucket, Key=store.key("ab" * 32))


OBJECT_STORES = [
    ObjectHarness("local-folder", _local_store, _local_overwrite, _local_remove,
                  _local_leave_temp, _local_small_disk),
    ObjectHarness("s3-radosgw", _s3_store, _s3_overwrite, _s3_remove, _s3_leave_temp,
                  needs_services=True),
]


@dataclass(frozen=True)
class LedgerHarness:
    name: str
    create: Callable[[Path], Ledger]  # a new, empty ledger whose data lives under the folder
    attach: Callable[[Path], Ledger]  # another connection to the same ledger (another process)
    destroy: Callable[[Path, str], None]  # "missing" or "junk"
    on_small_disk: Callable[[Path, Callable[[Path, str], Path]], Ledger] | None = None
    needs_services: bool = False  # the real PostgreSQL of scripts/services.sh (pg_services)
    dispose: Callable[[Path], None] = lambda folder: None  # what the test leaves on a server


def _sqlite_create(folder: Path) -> Ledger:
    ledger = SqliteLedger(folder / "ledger.db")
    ledger.create()
    return ledger


def _sqlite_attach(folder: Path) -> Ledger:
    return SqliteLedger(folder / "ledger.db")


def _sqlite_destroy(folder: Path, how: str) -> None:
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (folder / name).unlink(missing_ok=True)
    if how == "junk":
        (folder / "ledger.db").write_bytes(os.urandom(8192))


def _sqlite_small_disk(folder: Path, mount: Callable[[Path, str], Path]) -> Ledger:
    mount(folder, "3m")
    return _sqlite_create(folder)


def _pg_url(folder: Path) -> str:
    return (folder / "pg.url").read_text()


def _pg_create(folder: Path) -> Ledger:
    """A database of its own (random name), its URL kept in the folder for `attach`."""
    url = new_database()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pg.url").write_text(url)
    ledger = PostgresLedger(url)
    ledger.create()
    return ledger


def _pg_attach(folder: Path) -> Ledger:
    return PostgresLedger(_pg_url(folder))


def _pg_destroy(folder: Path, how: str) -> None:
    import psycopg

    if how == "missing":
        drop_database(_pg_url(folder))
        return
    with psycopg.connect(_pg_url(folder), autocommit=True) as conn:  # something else's tables
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        conn.execute("CREATE TABLE entries (x integer)")


def _pg_dispose(folder: Path) -> None:
    if (folder / "pg.url").exists():
        drop_database(_pg_url(folder))


LEDGERS = [LedgerHarness("sqlite", _sqlite_create, _sqlite_attach, _sqlite_destroy,
                         _sqlite_small_disk),
           LedgerHarness("postgresql", _pg_create, _pg_attach, _pg_destroy,
                         needs_services=True, dispose=_pg_dispose)]


@pytest.fixture(params=OBJECT_STORES, ids=lambda h: h.name)
def harness(request: pytest.FixtureRequest) -> ObjectHarness:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def objects(harness: ObjectHarness, tmp_path: Path, request: pytest.FixtureRequest) -> ObjectStore:
    if harness.needs_services:
        request.getfixturevalue("s3_services")
    return harness.make(tmp_path)


@pytest.fixture(params=LEDGERS, ids=lambda h: h.name)
def lharness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerHarness]:
    made: LedgerHarness = request.param
    if made.needs_services:
        request.getfixturevalue("pg_services")
    yield made
    made.dispose(tmp_path)


@pytest.fixture
def ledger(lharness: LedgerHarness, tmp_path: Path) -> Iterator[Ledger]:
    made = lharness.create(tmp_path)
    yield made
    made.close()




def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_all(objects: ObjectStore, sha256: str) -> bytes:
    with objects.open(sha256) as reader:
        return reader.read() + reader.read()  # the second read reaches the end: checked there


# Object store ---------------------------------------------------------------------------------


def test_put_has_open_check_iterate(objects: ObjectStore) -> None:
    data = os.urandom(2 * (1 << 20) + 5)  # several chunks and a ragged end
    put = objects.put(io.BytesIO(data))
    d = put.digests
    assert put.created and put.replaced is None
    assert (d.sha256, d.sha512, d.sha1, d.md5, d.size) == (
        _sha(data), hashlib.sha512(data).hexdigest(), hashlib.sha1(data).hexdigest(),
        hashlib.md5(data).hexdigest(), len(data))
    empty = objects.put(io.BytesIO(b"")).digests
    assert objects.has(d.sha256) and objects.has(empty.sha256) and not objects.has(_sha(b"x"))
    assert _read_all(objects, d.sha256) == data
    assert objects.check(d.sha256) == len(data) and objects.check(empty.sha256) == 0
    assert list(objects) == sorted([d.sha256, empty.sha256])
    assert objects.unfinished_writes() == [] and objects.quarantined() == []
    with objects.local_file(d.sha256) as path:
        assert path.read_bytes() == data


def test_a_sound_object_is_never_replaced(harness: ObjectHarness, objects: ObjectStore) -> None:
    first = objects.put(io.BytesIO(b"evidence"))
    again = objects.put(io.BytesIO(b"evidence"))
    assert not again.created and again.replaced is None and again.digests == first.digests
    assert objects.quarantined() == [] and list(objects) == [first.digests.sha256]


def test_a_damaged_object_at_the_name_is_set_aside_and_replaced(
    harness: ObjectHarness, objects: ObjectStore
) -> None:
    data = b"the real evidence"
    harness.overwrite(objects, _sha(data), b"junk")
    put = objects.put(io.BytesIO(data))
    assert put.created and put.replaced is not None
    assert (put.replaced.sha256, put.replaced.size) == (_sha(b"junk"), 4)
    assert objects.quarantined() == [put.replaced.path]  # named, and kept
    assert _read_all(objects, _sha(data)) == data


def test_verified_read_and_check_detect_corruption(
    harness: ObjectHarness, objects: ObjectStore
) -> None:
    sha = objects.put(io.BytesIO(b"original bytes")).digests.sha256
    harness.overwrite(objects, sha, b"original bytez")
    with pytest.raises(ObjectCorrupt, match=sha):
        objects.check(sha)
    with pytest.raises(ObjectCorrupt, match=sha):
        _read_all(objects, sha)


def test_a_missing_object_is_object_missing_everywhere(
    harness: ObjectHarness, objects: ObjectStore
) -> None:
    sha = objects.put(io.BytesIO(b"here, then gone")).digests.sha256
    harness.remove(objects, sha)
    assert not objects.has(sha) and list(objects) == []
    for read in (objects.check, objects.open, lambda s: objects.local_file(s).__enter__()):
        with pytest.raises(ObjectMissing, match=sha):
            read(sha)


def test_an_interrupted_write_is_never_an_object(
    harness: ObjectHarness, objects: ObjectStore
) -> None:
    """Crash-safe write order: what a killed write leaves is listed as unfinished, never as an
    object; and a source failing mid-stream leaves nothing at all."""
    harness.leave_temp(objects)
    assert list(objects) == [] and len(objects.unfinished_writes()) == 1

    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            self.calls += 1
            if self.calls > 2:
                raise OSError("device unplugged")
            b[:4] = b"abcd"
            return 4

    with pytest.raises(OSError, match="unplugged"):
        objects.put(Failing())  # type: ignore[arg-type]
    assert list(objects) == [] and len(objects.unfinished_writes()) == 1


def test_an_object_visible_under_its_name_is_always_complete(objects: ObjectStore) -> None:
    """Readers racing a large put see the object whole or not at all, never a prefix."""
    data = os.urandom(8 << 20)
    sha = _sha(data)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if objects.has(sha):
                seen.append(objects.check(sha))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        objects.put(io.BytesIO(data))
    finally:
        done.set()
        watcher.join()
    assert all(size == len(data) for size in seen)
    assert objects.check(sha) == len(data)


def test_a_full_store_leaves_no_partial_object(
    harness: ObjectHarness, tmp_path: Path, mount_tmpfs: Callable[[Path, str], Path]
) -> None:
    if harness.on_small_disk is None:
        pytest.skip(f"{harness.name}: no way to fill its storage in a test")
    objects = harness.on_small_disk(tmp_path, mount_tmpfs)
    stored = []
    with pytest.raises(StoreFull) as caught:
        for _ in range(8):
            stored.append(objects.put(io.BytesIO(os.urandom(700_000))).digests.sha256)
    assert isinstance(caught.value, ObjectWriteError)
    assert 1 <= len(stored) < 8 and list(objects) == sorted(stored)
    for sha in stored:
        objects.check(sha)  # every object there is whole
    assert objects.unfinished_writes() == []


# Ledger ---------------------------------------------------------------------------------------


def _entry(seq: int, action: str = "ingest", item: str | None = None) -> EntryRow:
    body = f'{{"seq":{seq},"action":"{action}"}}'.encode()
    return EntryRow(seq=seq, body=body, signature=bytes([seq % 256]) * 64,
                    leaf_hash=merkle.leaf_hash(body), time=f"2026-01-01T00:00:{seq % 60:02d}Z",
                    actor="ab" * 16, action=action, item=item)


def _append(ledger: Ledger, rows: list[EntryRow]) -> None:
    """As Archive.append does it: the tree's nodes grow in the transaction that adds the leaf."""
    with ledger.writing() as tx:
        for row in rows:
            assert row.seq == tx.next_seq
            tx.put_nodes(merkle.nodes_after_append(row.seq, row.leaf_hash, tx.get_node))
            tx.append(row)


def test_append_read_and_range(ledger: Ledger) -> None:
    items = ["aa" * 32, "bb" * 32]
    rows = [_entry(0, "init"), _entry(1, "ingest", items[0]), _entry(2, "note", items[0]),
            _entry(3, "received", items[1]), _entry(4, "ingest", items[0])]
    assert ledger.size() == 0 and list(ledger.rows()) == [] and ledger.row(0) is None
    _append(ledger, rows[:2])
    _append(ledger, rows[2:])
    assert ledger.size() == 5
    assert list(ledger.rows()) == rows and list(ledger.rows(3)) == rows[3:]
    assert ledger.row(2) == rows[2] and ledger.row(5) is None
    assert ledger.rows_for_item(items[0]) == [rows[1], rows[2], rows[4]]
    assert ledger.rows_with_action("received", "note") == [rows[2], rows[3]]
    assert ledger.items() == items
    assert ledger.items_with_prefix("aaaa") == [items[0]] and ledger.items_with_prefix("cc") == []
    assert ledger.recorded(items[1]) and not ledger.recorded("cc" * 32)
    assert ledger.has_action(items[0], "note") and not ledger.has_action(items[1], "note")


def test_a_transaction_sees_the_tip_and_refuses_a_wrong_seq(ledger: Ledger) -> None:
    with ledger.writing() as tx:
        assert (tx.next_seq, tx.tip_hash) == (0, None)
    _append(ledger, [_entry(0, "init")])
    with pytest.raises(LedgerStoreError), ledger.writing() as tx:
        assert (tx.next_seq, tx.tip_hash) == (1, _entry(0, "init").leaf_hash)
        tx.append(_entry(1))
        tx.append(_entry(3))  # a gap: refused, and the whole transaction with it
    assert ledger.size() == 1


def test_a_failed_transaction_writes_nothing(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError), ledger.writing() as tx:
        tx.put_metadata("ab" * 32, b"{}")
        tx.append(_entry(0))
        raise RuntimeError("crash mid-batch")
    assert ledger.size() == 0 and ledger.metadata("ab" * 32) is None


def test_tree_nodes_give_the_roots_and_proofs_of_the_in_memory_builder(ledger: Ledger) -> None:
    rows = [_entry(i) for i in range(37)]
    for start in range(0, 37, 5):
        _append(ledger, rows[start:start + 5])
    builder = merkle.TreeBuilder()
    roots = {}
    for row in rows:
        builder.append(row.leaf_hash)
        roots[builder.size] = builder.root()
    get = ledger.get_node
    for size in (1, 2, 3, 8, 13, 32, 37):
        assert merkle.root_hash(size, get) == roots[size]
        for index in {0, size // 2, size - 1}:
            proof = merkle.inclusion_proof(index, size, get)
            merkle.verify_inclusion(rows[index].leaf_hash, index, size, proof, roots[size])
        for old in (1, size // 2 or 1, size):
            proof = merkle.consistency_proof(old, size, get)
            merkle.verify_consistency(old, size, proof, roots[old], roots[size])
    assert ledger.nodes_between(0, 3, 5) == [(i, rows[i].leaf_hash) for i in (3, 4, 5)]
    assert ledger.nodes_beyond(37, 10) == []
    with pytest.raises(NodeMissing):
        get(0, 37)
    # one request for a proof's nodes: the stored ones, exactly; a node not stored is left out
    named = merkle.inclusion_proof_nodes(20, 37) + [(0, 37), (9, 0)]
    found = ledger.get_nodes(named)
    assert found == {k: get(*k) for k in named[:-2]}
    assert merkle.inclusion_proof(20, 37, merkle.prefetched(found, get)) \
        == merkle.inclusion_proof(20, 37, get)


def test_metadata_rows(ledger: Ledger) -> None:
    a, b = "aa" * 32, "bb" * 32
    with ledger.writing() as tx:
        tx.put_metadata(b, b'{"planted":true}')  # nothing records b yet: unsigned
    with ledger.writing() as tx:
        tx.put_metadata(a, b'{"a":1}')
        tx.put_metadata(b, b'{"read":true}')  # replaces the unsigned row, which is kept aside
        assert tx.metadata(b) == b'{"read":true}'
        for row in (_entry(0, "ingest", a), _entry(1, "ingest", b)):
            tx.append(row)
    assert ledger.metadata(a) == b'{"a":1}' and ledger.metadata("cc" * 32) is None
    assert list(ledger.metadata_items()) == [a, b]
    assert list(ledger.all_metadata()) == [(a, b'{"a":1}'), (b, b'{"read":true}')]
    with pytest.raises(LedgerStoreError), ledger.writing() as tx:
        tx.put_metadata(a, b'{"a":2}')  # recorded: write-once
    assert ledger.metadata(a) == b'{"a":1}'


def test_checkpoints_and_their_extras(ledger: Ledger) -> None:
    _append(ledger, [_entry(0, "init"), _entry(1)])
    with ledger.writing() as tx:
        assert tx.latest_checkpoint() is None
        first = tx.put_checkpoint(1, "note one\n", "2026-01-01T00:00:00Z")
        second = tx.put_checkpoint(2, "note two\n", "2026-01-02T00:00:00Z")
        tx.put_checkpoint_extra(first.id, "cosignature", "sig", "2026-01-03T00:00:00Z")
        assert tx.latest_checkpoint() == second
    assert ledger.checkpoints() == [first, second] and first.id != second.id
    assert ledger.checkpoint(second.id) == second and ledger.checkpoint(999) is None
    extras = ledger.checkpoint_extras()
    assert [(e.checkpoint_id, e.kind, e.data) for e in extras] == [(first.id, "cosignature", "sig")]
    assert ledger.checkpoint_extras(second.id) == []


def _append_many(harness_name: str, folder: str, count: int) -> None:
    """One writer of its own (another process): appends `count` entries one transaction each."""
    ledger = next(h for h in LEDGERS if h.name == harness_name).attach(Path(folder))
    for _ in range(count):
        with ledger.writing() as tx:
            row = _entry(tx.next_seq)
            tx.put_nodes(merkle.nodes_after_append(row.seq, row.leaf_hash, tx.get_node))
            tx.append(row)
    ledger.close()


def test_two_concurrent_writers_lose_and_duplicate_nothing(
    lharness: LedgerHarness, ledger: Ledger, tmp_path: Path
) -> None:
    _append(ledger, [_entry(0, "init")])
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append_many, args=(lharness.name, str(tmp_path), 40))
               for _ in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    threads = [threading.Thread(target=_append_many, args=(lharness.name, str(tmp_path), 10))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = list(ledger.rows())
    assert [r.seq for r in rows] == list(range(101))
    builder = merkle.TreeBuilder()
    builder.extend(r.leaf_hash for r in rows)
    assert merkle.root_hash(101, ledger.get_node) == builder.root()


@pytest.mark.parametrize("how", ["missing", "junk"])
def test_a_destroyed_ledger_is_ledger_damaged(
    lharness: LedgerHarness, tmp_path: Path, how: str
) -> None:
    made = lharness.create(tmp_path)
    _append(made, [_entry(0, "init")])
    made.close()
    lharness.destroy(tmp_path, how)
    for read in (lambda lg: lg.open(), lambda lg: lg.size(), lambda lg: list(lg.rows()),
                 lambda lg: lg.items()):
        with pytest.raises(LedgerDamaged):
            read(lharness.attach(tmp_path))


def test_a_ledger_it_may_not_read_is_ledger_unreadable(
    lharness: LedgerHarness, ledger: Ledger, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    ledger.close()
    for path in tmp_path.iterdir():
        path.chmod(0)
    try:
        with pytest.raises(LedgerUnreadable):
            lharness.attach(tmp_path).size()
    finally:
        for path in tmp_path.iterdir():
            path.chmod(0o600)


def test_a_full_ledger_disk_is_ledger_full_and_writes_nothing(
    lharness: LedgerHarness, tmp_path: Path, mount_tmpfs: Callable[[Path, str], Path]
) -> None:
    if lharness.on_small_disk is None:
        pytest.skip(f"{lharness.name}: no way to fill its storage in a test")
    ledger = lharness.on_small_disk(tmp_path / "small", mount_tmpfs)
    _append(ledger, [_entry(0, "init")])
    filler = tmp_path / "small" / "filler"
    with open(filler, "wb") as out, pytest.raises(OSError):
        while True:
            out.write(os.urandom(1 << 16))
            out.flush()
    with pytest.raises(LedgerFull):
        _append(ledger, [_entry(i) for i in range(1, 200)])
    filler.unlink()
    assert ledger.size() == 1
    _append(ledger, [_entry(1)])
    assert ledger.size() == 2
    ledger.close()


def test_a_ledger_on_read_only_storage_reads_and_refuses_writes(
    lharness: LedgerHarness, tmp_path: Path, mount_tmpfs: Callable[[Path, str], Path]
) -> None:
    if lharness.on_small_disk is None:
        pytest.skip(f"{lharness.name}: no way to make its storage read-only in a test")
    folder = tmp_path / "ro"
    ledger = lharness.on_small_disk(folder, mount_tmpfs)
    _append(ledger, [_entry(0, "init"), _entry(1)])
    ledger.close()
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    again = lharness.attach(folder)
    assert again.size() == 2 and again.row(1) == _entry(1)
    with pytest.raises(LedgerReadOnly), again.writing():
        pass
    again.close()


def test_a_large_object_goes_up_in_parts_each_checked(
    s3_services: dict[str, str], tmp_path: Path
) -> None:
    """S3 only: from `multipart_from` bytes a put is a multipart upload (here 5 MiB parts, the
    least S3 allows), each part with its MD5 and SHA-256, several at once; the object reads back whole."""
    store = S3ObjectStore(S3Location(new_bucket(), "big", os.environ["CUSTODY_S3_ENDPOINT"]),
                          retention_days=1, spool=tmp_path, multipart_from=5 << 20,
                          part_size=5 << 20)
    data = os.urandom((26 << 20) + 3)  # six parts: more than the upload lanes, sent 4 at once
    put = store.put(io.BytesIO(data))
    head = store.client.head_object(Bucket=store.location.bucket, Key=store.key(_sha(data)))
    assert put.created and head["ETag"].strip('"').endswith("-6")  # six parts, in order
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert store.check(_sha(data)) == len(data) and _read_all(store, _sha(data)) == data
    assert store.unfinished_writes() == []


def test_the_read_after_an_s3_put_uses_the_spooled_copy_and_leaves_nothing(
    s3_services: dict[str, str], tmp_path: Path
) -> None:
    """S3 only: the metadata read that follows an ingest gets the copy spooled (and hashed) by the
    put instead of a download; at most FRESH_KEPT such copies stay, each removed once read, and a
    put that fails keeps none."""
    from store.s3_objects import FRESH_KEPT

    spool = tmp_path / "spool"
    spool.mkdir()
    store = S3ObjectStore(S3Location(new_bucket(), "fresh", os.environ["CUSTODY_S3_ENDPOINT"]),
                          retention_days=1, spool=spool)
    blobs = [os.urandom(1000 + i) for i in range(FRESH_KEPT + 2)]
    for blob in blobs:
        store.put(io.BytesIO(blob))
    kept = sorted(p.name for p in spool.iterdir())
    assert len(kept) == FRESH_KEPT and all(name.startswith("put-") for name in kept)
    newest = blobs[-1]
    with store.local_file(_sha(newest)) as path:
        assert path.parent == spool and path.read_bytes() == newest  # no download
    assert len(list(spool.iterdir())) == FRESH_KEPT - 1  # removed once read
    with store.local_file(_sha(blobs[0])) as path:  # evicted: downloaded, checked, removed
        assert path.parent != spool and path.read_bytes() == blobs[0]
    with pytest.raises(OSError):
        store.put(_FailingSource(b"x" * 5000))
    assert len(list(spool.iterdir())) == FRESH_KEPT - 1  # the failed put kept nothing
    store._forget_fresh()  # what runs at exit
    assert list(spool.iterdir()) == []


class _FailingSource(io.RawIOBase):
    """A source that fails after its first bytes (a drive pulled mid-read)."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.first:
            n = len(self.first)
            buffer[:n] = self.first
            self.first = b""
            return n
        raise OSError(5, "Input/output error")


# PostgreSQL: the database itself refuses a change ---------------------------------------------


@pytest.fixture
def pg_url(pg_services: dict[str, str]) -> Iterator[str]:
    url = new_database()
    yield url
    drop_database(url)


def _as_superuser(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


CHANGES = [f"UPDATE {SCHEMA}.entries SET actor = 'x'", f"DELETE FROM {SCHEMA}.entries",
           f"TRUNCATE {SCHEMA}.entries", f"UPDATE {SCHEMA}.metadata SET doc = 'x'",
           f"DELETE FROM {SCHEMA}.merkle_nodes", f"TRUNCATE {SCHEMA}.checkpoints CASCADE",
           f"UPDATE {SCHEMA}.checkpoint_extras SET data = 'x'",
           f"INSERT INTO {SCHEMA}.entries (seq, body, signature, leaf_hash, time, actor, action) "
           "VALUES (7, '', '', '', '', '', 'init')"]


@pytest.mark.parametrize("statement", CHANGES, ids=lambda s: " ".join(s.split()[:2]))
def test_postgres_triggers_refuse_update_delete_truncate_even_to_a_superuser(
    pg_url: str, statement: str
) -> None:
    import psycopg

    ledger = PostgresLedger(pg_url)
    ledger.create()
    _append(ledger, [_entry(0, "init"), _entry(1, "ingest", "aa" * 32)])
    with ledger.writing() as tx:
        tx.put_metadata("bb" * 32, b"{}")
        cp = tx.put_checkpoint(2, "note\n", "2026-01-01T00:00:00Z")
        tx.put_checkpoint_extra(cp.id, "cosignature", "sig", "2026-01-01T00:00:00Z")
    with pytest.raises(psycopg.errors.RaiseException, match="refused"):
        _as_superuser(pg_url, statement)  # the tests' role is a superuser: no privilege stops it
    assert [r.seq for r in ledger.rows()] == [0, 1] and len(ledger.checkpoints()) == 1
    ledger.close()


def test_postgres_writer_role_may_append_but_not_update_delete_or_truncate(pg_url: str) -> None:
    import psycopg

    writer = new_role()
    try:
        PostgresLedger(pg_url).create(writer=writer)  # as the owner (here the superuser)
        ledger = PostgresLedger(url_as(pg_url, writer))
        _append(ledger, [_entry(0, "init"), _entry(1, "ingest", "aa" * 32)])
        with ledger.writing() as tx:
            tx.put_metadata("bb" * 32, b'{"planted":true}')
            tx.put_metadata("bb" * 32, b'{"read":true}')  # a new version: no UPDATE needed
            tx.put_checkpoint(2, "note\n", "2026-01-01T00:00:00Z")
        assert ledger.metadata("bb" * 32) == b'{"read":true}'
        assert list(ledger.set_aside_metadata())[0][:2] == ("bb" * 32, b'{"planted":true}')
        ledger.close()
        with psycopg.connect(url_as(pg_url, writer), autocommit=True) as conn:
            for statement in CHANGES[:-1]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)  # refused before any trigger runs
        assert [r.seq for r in PostgresLedger(pg_url).rows()] == [0, 1]
    finally:
        drop_database(pg_url)
        drop_role(writer)


def test_a_postgres_role_without_privileges_is_refused_as_unreadable(pg_url: str) -> None:
    """SQLite's unreadable file (skipped as root) is, on a server, a role that may connect but
    was granted nothing on the ledger: LedgerAccessDenied, a LedgerUnreadable, on every read."""
    PostgresLedger(pg_url).create()
    stranger = new_role()
    try:
        ledger = PostgresLedger(url_as(pg_url, stranger))
        for read in (lambda lg: lg.size(), lambda lg: lg.row(0), lambda lg: lg.items()):
            with pytest.raises(LedgerUnreadable, match="may not be read"):
                read(ledger)
        ledger.close()
    finally:
        drop_database(pg_url)
        drop_role(stranger)
