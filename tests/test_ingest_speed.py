"""Ingest's fast paths keep every check: the pipelined large-object write (read, hash and write
overlapping), the lazily loaded perceptual hashing, and workers that leave no process behind."""

from __future__ import annotations

import hashlib
import io
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from custody.metadata import MetadataReader, close_all
from store import local_objects
from store.local_objects import CHUNK, EARLY_FLUSH, PIPELINE_DEPTH, LocalObjectStore
from store.ports import StoreFull

MEDIA = Path(__file__).parent / "data" / "media"


def _data(size: int) -> bytes:
    """Bytes that differ in every chunk (a chunk written twice or out of order changes them)."""
    block = hashlib.sha512(b"custody").digest() * (CHUNK // 64)
    return b"".join(i.to_bytes(8, "big") + block[8:] for i in range(size // CHUNK + 1))[:size]


@pytest.mark.parametrize("size", [CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 12345,
                                  PIPELINE_DEPTH * CHUNK - 1, PIPELINE_DEPTH * CHUNK,
                                  PIPELINE_DEPTH * CHUNK + 1, EARLY_FLUSH + CHUNK + 7])
def test_a_pipelined_object_has_exactly_its_bytes_and_digests(tmp_path, size):
    store = LocalObjectStore(tmp_path / "objects")
    store.create()
    data = _data(size)
    put = store.put(io.BytesIO(data))
    d = put.digests
    assert (d.sha256, d.sha512, d.sha1, d.md5, d.size) == (
        hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(),
        hashlib.sha1(data).hexdigest(), hashlib.md5(data).hexdigest(), size)
    assert store.path(d.sha256).read_bytes() == data
    assert store.unfinished_writes() == []


def _peak_of_put(store: LocalObjectStore, source: Path) -> int:
    tracemalloc.start()
    try:
        with open(source, "rb") as stream:
            store.put(stream)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_pipelined_object_holds_at_most_its_chunks_in_flight(tmp_path):
    """Memory stays flat whatever the size: PIPELINE_DEPTH buffers of one chunk, not the file;
    and a two-chunk object does not make (and zero) the buffers a large one needs."""
    store = LocalObjectStore(tmp_path / "objects")
    store.create()
    large, small = tmp_path / "large.bin", tmp_path / "small.bin"
    large.write_bytes(_data(3 * PIPELINE_DEPTH * CHUNK))
    small.write_bytes(_data(2 * CHUNK))
    peak = _peak_of_put(store, large)
    assert PIPELINE_DEPTH * CHUNK <= peak < (PIPELINE_DEPTH + 2) * CHUNK, peak / CHUNK
    peak = _peak_of_put(store, small)
    assert peak < 4 * CHUNK, peak / CHUNK


class _FailsAfter(io.RawIOBase):
    """A source that breaks after `good` bytes (a dropped upload, a failing disk)."""

    def __init__(self, data: bytes, good: int) -> None:
        self._data, self._at, self._good = data, 0, good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer):  # type: ignore[override]
        if self._at >= self._good:
            raise OSError(5, "Input/output error")
        n = min(len(buffer), len(self._data) - self._at)
        buffer[:n] = self._data[self._at:self._at + n]
        self._at += n
        return n


def test_a_source_failing_mid_pipeline_leaves_no_object_and_no_temp_file(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    store.create()
    with pytest.raises(OSError, match="Input/output error"):
        store.put(_FailsAfter(_data((PIPELINE_DEPTH + 3) * CHUNK), (PIPELINE_DEPTH + 2) * CHUNK))
    assert list(store) == [] and store.unfinished_writes() == []


def test_an_interrupt_while_the_last_chunk_is_written_still_waits_for_every_lane(
        tmp_path, monkeypatch):
    """A Ctrl-C (a second one, after the first stopped the reads) that lands while the pipeline
    waits for its last chunk must not let put() close the descriptor under a lane still writing:
    that write would fail, or land in whatever file next opens under the same number."""
    finished: list[float] = []
    real_write, real_wait = local_objects._write_lane, local_objects.wait

    def slow_write(fd: int, chunk: memoryview, flush: bool) -> None:
        time.sleep(0.1)
        real_write(fd, chunk, flush)
        finished.append(time.monotonic())

    waits = iter([False, False, True])  # the third chunk's wait is interrupted

    def interrupted_wait(jobs):
        if next(waits, False):
            raise KeyboardInterrupt
        return real_wait(jobs)

    monkeypatch.setattr(local_objects, "_write_lane", slow_write)
    monkeypatch.setattr(local_objects, "wait", interrupted_wait)
    store = LocalObjectStore(tmp_path / "objects")
    store.create()
    with pytest.raises(KeyboardInterrupt):
        store.put(io.BytesIO(_data(3 * CHUNK)))
    returned = time.monotonic()
    assert len(finished) == 3 and max(finished) <= returned
    assert list(store) == [] and store.unfinished_writes() == []


def test_a_disk_filling_mid_pipeline_leaves_no_partial_object(tmp_path, mount_tmpfs):
    # objects of more chunks than are in flight at once: the oldest-chunk wait runs before the
    # disk fills, and a lane's error is met inside the loop as well as at its end
    size = (PIPELINE_DEPTH * 3 // 2) * CHUNK
    root = mount_tmpfs(tmp_path / "small", f"{size * 5 // 2 // CHUNK}m")
    store = LocalObjectStore(root / "objects")
    store.create()
    stored = []
    with pytest.raises(StoreFull):
        for i in range(4):  # the third cannot fit, halfway through its chunks
            stored.append(store.put(io.BytesIO(bytes([i]) + _data(size))))
    assert 1 <= len(stored) < 4 and store.unfinished_writes() == []
    for put in stored:
        assert store.check(put.digests.sha256) == put.digests.size


def _children(states: str) -> list[str]:
    """This process's child processes in one of `states` (from /proc), as "pid state name"."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] in states:
            found.append(f"{entry} {fields[0]} {name}")
    return found


def test_closing_the_workers_leaves_no_zombie_and_no_process_behind():
    readers = [MetadataReader() for _ in range(2)]
    before = set(_children("RSDZTt"))
    try:
        photo = readers[0].read(MEDIA / "aleppo-gps.jpg")
        video = readers[1].read(MEDIA / "homs-loci.mp4")
    finally:
        close_all(readers)
    assert photo["captured_at"] == "2016-10-03T11:22:05Z"
    assert video["mime"] == "video/mp4" and not any("perceptual" in e for e in video["errors"])
    assert [c for c in _children("RSDZTt") if c not in before] == []


def test_a_closed_reader_starts_no_worker_so_an_early_start_cannot_outlive_a_failed_ingest():
    """`custody ingest` starts its first worker in a thread while the key opens; when the key
    fails, the readers are closed, perhaps before that thread's start runs: it must start
    nothing then (a worker and its ExifTool nobody would reap)."""
    reader = MetadataReader()
    before = set(_children("RSDZTt"))
    reader.close()
    reader.start()
    assert reader._worker.pid is None
    assert [c for c in _children("RSDZTt") if c not in before] == []


def test_a_worker_that_meets_no_image_never_loads_the_perceptual_libraries(tmp_path):
    text = tmp_path / "note.txt"
    text.write_text("witness statement\n")
    with MetadataReader() as reader:
        reader.read(text)
        pid = reader._worker.pid
        maps = Path(f"/proc/{pid}/maps").read_text()
    assert "scipy" not in maps and "/av/" not in maps and "numpy" not in maps


def test_a_batched_object_is_invisible_under_its_name_until_flushed(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    store.create()
    store.begin_batch()
    try:
        put = store.put(io.BytesIO(b"photo bytes"))
        again = store.put(io.BytesIO(b"photo bytes"))  # the same content twice in one batch
        sha = put.digests.sha256
        assert put.created and not again.created
        assert not store.path(sha).exists() and len(store.unfinished_writes()) == 1
        with store.local_file(sha) as path, store.open(sha) as reader:  # the metadata reader's view
            assert path.read_bytes() == b"photo bytes" and reader.read() == b"photo bytes"
        assert store.has(sha)
        store.flush()
        assert store.path(sha).read_bytes() == b"photo bytes"
        assert store.unfinished_writes() == [] and store.check(sha) == 11
        left = store.put(io.BytesIO(b"never flushed"))  # a run stopped before its batch landed
    finally:
        store.end_batch()
    assert not store.has(left.digests.sha256) and len(store.unfinished_writes()) == 1
