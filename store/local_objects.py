"""The local object store adapter: objects in a sharded folder, written in restic's order
(temp file, fsync, link into place, fsync the folder), read-only once placed.

Physical layout (docs/FORMAT.md Appendix A.2): `<root>/sha256/ab/<64 hex>`, temp files in
`<root>/tmp/`, damaged files set aside in `<root>/quarantine/`. Satisfies store.ports.ObjectStore.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
import stat
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from store.durable import fsync_folder
from store.ports import (
    CHUNK,
    DIGEST_NAMES,
    ByteSource,
    Digests,
    ObjectCorrupt,
    ObjectMissing,
    ObjectUnreadable,
    ObjectWriteError,
    PutResult,
    ReadsInto,
    Retention,
    SetAside,
    StoreFull,
)

FOLDER_MODE, OBJECT_MODE = 0o700, 0o400  # owner-only whatever the umask: no reading around the log
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
QUARANTINE = "quarantine"  # damaged files found at an object's name, kept aside
TMP = "tmp"
_FULL = {errno.ENOSPC, errno.EDQUOT}


def _write_error(exc: OSError, doing: str) -> ObjectWriteError:
    kind = StoreFull if exc.errno in _FULL else ObjectWriteError
    return kind(f"{doing}: {exc.strerror or exc}", exc.errno)


class MultiHasher:
    """SHA-256, SHA-512, SHA-1 and MD5 of one stream, updated in order, inline (small files)."""

    def __init__(self) -> None:
        self._h = {name: hashlib.new(name) for name in DIGEST_NAMES}
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        for one in self._h.values():
            one.update(chunk)

    def pair(self, names: tuple[str, str]) -> tuple[hashlib._Hash, hashlib._Hash]:
        return self._h[names[0]], self._h[names[1]]

    def digests(self) -> Digests:
        h = self._h
        return Digests(
            sha256=h["sha256"].hexdigest(),
            sha512=h["sha512"].hexdigest(),
            sha1=h["sha1"].hexdigest(),
            md5=h["md5"].hexdigest(),
            size=self.size,
        )


def _update_pair(a: hashlib._Hash, b: hashlib._Hash, chunk: bytes | memoryview) -> None:
    a.update(chunk)
    b.update(chunk)


# The two hash lanes, balanced by measured speed (SHA-512 + SHA-1 against SHA-256 + MD5).
HASH_LANES = (("sha512", "sha1"), ("sha256", "md5"))
# Chunks in flight at once: memory stays flat (16 MiB) whatever the size. 16, not 4: the write
# lane stops in each 64 MiB fdatasync, and with 4 chunks the hash lanes then ran dry and the
# cores idled (docs/PERFORMANCE.md "Ingest of one large file, round 31").
PIPELINE_DEPTH = 16
EARLY_FLUSH = 64 << 20  # a large object's writeback is started every 64 MiB, not all at the end


class _Lanes:
    """Three single-thread lanes (two hash pairs and the writer) that take each chunk in order.

    hashlib and os.write release the GIL, so while the caller reads chunk n+1, the two hash pairs
    and the write of chunk n run on the other cores: read, hash and write overlap. One thread per
    lane keeps every lane's chunks in order."""

    def __init__(self) -> None:
        self.hash = [ThreadPoolExecutor(1, thread_name_prefix=f"hash{i}") for i in (0, 1)]
        self.write = ThreadPoolExecutor(1, thread_name_prefix="write")


def _settle(jobs: list[Future[None]]) -> None:
    """Wait for every job of a chunk (none left running), then raise the first one's error."""
    wait(jobs)
    for job in jobs:
        job.result()


def _write_lane(fd: int, chunk: memoryview, flush: bool) -> None:
    _write_all(fd, chunk)
    if flush:  # start this part's writeback now, while hashing goes on (fsync still at the end)
        try:
            os.fdatasync(fd)
        except OSError as exc:
            raise _write_error(exc, "cannot flush an object to disk") from None


def is_sha256_hex(value: str) -> bool:
    return bool(_HEX64.match(value))


def _write_all(fd: int, chunk: memoryview) -> None:
    """os.write may write less than asked (a filling disk does): loop until all is written."""
    while chunk:
        try:
            n = os.write(fd, chunk)
        except OSError as exc:
            raise _write_error(exc, "cannot write an object") from None
        if n <= 0:
            raise StoreFull("cannot write an object: the file system took no more", errno.ENOSPC)
        chunk = chunk[n:]


def _fingerprint(path: Path) -> tuple[str | None, int | None]:
    """SHA-256 and size of the regular file at `path`; (None, None) if it is none or unreadable."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None, None
        h = hashlib.sha256()
        size = 0
        view = memoryview(bytearray(CHUNK))
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                h.update(view[:n])
                size += n
        return h.hexdigest(), size
    except OSError:
        return None, None  # unreadable: not to be trusted; set aside, not lost


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjectStore:
    """Objects at `root/sha256/ab/<64 hex>`, read-only, with temp files in `root/tmp`.

    `label` is how locations are named to an operator (SetAside.path, `quarantined`,
    `unfinished_writes`): the folder's name, which is the archive-relative path "objects"."""

    def __init__(self, root: Path, label: str | None = None) -> None:
        self.root = Path(root)
        self.label = self.root.name if label is None else label
        self._objects = self.root / "sha256"
        self._tmp = self.root / TMP
        self._lanes: _Lanes | None = None  # started on the first object larger than a chunk
        # Batched durability (begin_batch/flush): objects written but not yet fsynced and linked,
        # by SHA-256: their temp file and final name. None: every put is durable on return.
        self._unflushed: dict[str, tuple[Path, Path]] | None = None
        self._batch_thread: int | None = None  # only the batch's own thread defers its puts

    def begin_batch(self) -> None:
        """From now on `put` leaves each new object in its temp file, neither fsynced nor linked
        (invisible under its name), until `flush`: one pass of fsyncs for a whole batch instead
        of two per object. Reads (`local_file`, `open`, `has`) see those objects meanwhile."""
        if self._unflushed is None:
            self._unflushed = {}
            self._batch_thread = threading.get_ident()

    def end_batch(self) -> None:
        """Every later put durable on return again. Objects not flushed (the run stopped before
        its batch was recorded) stay in their temp files: unfinished writes, never referenced."""
        self._unflushed, self._batch_thread = None, None

    def flush(self) -> None:
        """Make every object of the batch durable, then visible: fsync each temp file (at once,
        so the file system commits them together), link each into place, fsync each touched
        folder. After it returns, every object put before is whole under its name; on an
        error nothing unflushed is linked (the temp files stay: unfinished writes)."""
        if not self._unflushed:
            return
        batch = list(self._unflushed.items())
        with ThreadPoolExecutor(max_workers=min(8, len(batch))) as pool:
            try:
                list(pool.map(_fsync_path, [tmp for _, (tmp, _) in batch]))
            except OSError as exc:
                raise _write_error(exc, "cannot flush an object to disk") from None
            shards: set[Path] = set()
            try:
                for sha256, (tmp, final) in batch:
                    self._link(tmp, final, sha256)
                    del self._unflushed[sha256]
                    shards.add(final.parent)
                # At once, like the files: one journal commit then covers most of them.
                list(pool.map(fsync_folder, sorted(shards)))
            except OSError as exc:
                raise _write_error(exc, "cannot place an object") from None

    def _link(self, tmp: Path, final: Path, sha256: str) -> None:
        """Link a flushed temp file into place; a sound object put there meanwhile (another
        writer) is kept and the temp file dropped; a damaged one is set aside and replaced."""
        try:
            os.link(tmp, final)
        except FileExistsError:
            if _fingerprint(final)[0] != sha256:
                self._set_aside(final)
                os.replace(tmp, final)
                return
        tmp.unlink()

    def create(self) -> None:
        for folder in (self.root, self._objects, self._tmp):
            folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
            os.chmod(folder, FOLDER_MODE)

    def path(self, sha256: str) -> Path:
        """Where the object's file is (this adapter's own business: callers use the port)."""
        if not is_sha256_hex(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self._objects / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self._pending(sha256) is not None or self.path(sha256).is_file()

    def _deferring(self) -> bool:
        """True in a batch, on its thread: this put is fsynced and linked by `flush`."""
        return self._unflushed is not None and self._batch_thread == threading.get_ident()

    def _pending(self, sha256: str) -> Path | None:
        """The temp file of an object of the current batch not flushed yet, else None."""
        found = self._unflushed.get(sha256) if self._unflushed else None
        return found[0] if found is not None else None

    def put(self, stream: ByteSource) -> PutResult:
        """Stream into a temp file while hashing, then link it into place (never over an object).

        A file already at the object's name is trusted only if it holds exactly these bytes;
        otherwise it is set aside in `quarantine/` and replaced. Errors of the source's reads pass
        through as they are; every failure to write raises ObjectWriteError (StoreFull when the
        disk is full) and leaves no temp file and no partial object behind.
        """
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        except OSError as exc:
            raise _write_error(exc, "cannot create a temporary file in the object store") from None
        tmp = Path(tmp_name)
        try:
            try:
                digests = self._fill(fd, stream, sync=not self._deferring())
            finally:
                os.close(fd)
            return self._place(tmp, digests)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _fill(self, fd: int, stream: ByteSource, sync: bool = True) -> Digests:
        hasher = MultiHasher()
        source = cast(ReadsInto, stream)  # every binary file object has readinto
        first = memoryview(bytearray(CHUNK))
        n = source.readinto(first) or 0
        if n and n == CHUNK:
            self._pipeline(fd, source, hasher, first)
        else:  # one chunk or less: inline, no thread hand-offs for a small file
            while n:
                hasher.update(first[:n])
                _write_all(fd, first[:n])
                n = source.readinto(first) or 0
        try:
            if sync:  # else flush() fsyncs it, before it is linked
                os.fsync(fd)  # an fsync error means the bytes may not be on disk: never link them
        except OSError as exc:
            raise _write_error(exc, "cannot flush an object to disk") from None
        return hasher.digests()

    def _pipeline(self, fd: int, source: ReadsInto, hasher: MultiHasher,
                  first: memoryview) -> None:
        """Read chunk n+1 while chunk n is hashed on two lanes and written on a third."""
        lanes = self._lanes = self._lanes or _Lanes()
        pairs = [hasher.pair(names) for names in HASH_LANES]
        # Buffers are made as the flight grows, so a 2 MiB object does not zero 16 MiB first;
        # from PIPELINE_DEPTH in flight on, each is read into again once its lanes are done.
        free: list[memoryview] = []
        flight: deque[tuple[memoryview, list[Future[None]]]] = deque()
        error: BaseException | None = None
        buf, n = first, CHUNK
        try:
            while n:
                chunk = buf[:n]
                hasher.size += n
                flush = hasher.size % EARLY_FLUSH < n
                jobs = [lane.submit(_update_pair, a, b, chunk)
                        for lane, (a, b) in zip(lanes.hash, pairs, strict=True)]
                jobs.append(lanes.write.submit(_write_lane, fd, chunk, flush))
                flight.append((buf, jobs))
                if len(flight) >= PIPELINE_DEPTH:  # wait for the oldest chunk; its buffer next
                    done, jobs = flight[0]
                    _settle(jobs)
                    flight.popleft()
                    free.append(done)
                buf = free.pop() if free else memoryview(bytearray(CHUNK))
                n = source.readinto(buf) or 0
        except BaseException as exc:
            error = exc
        # Every lane finishes before the caller closes the descriptor or reuses a buffer, even
        # when a Ctrl-C interrupts this wait: a lane still writing after the close would fail, or
        # write into whatever file next opens under the same descriptor number.
        for _, jobs in flight:
            while True:
                try:
                    _settle(jobs)
                    break
                except BaseException as exc:
                    error = error or exc
                    if all(job.done() for job in jobs):
                        break
        if error is not None:
            raise error

    def _place(self, tmp: Path, digests: Digests) -> PutResult:
        try:
            os.chmod(tmp, OBJECT_MODE)
            final = self.path(digests.sha256)
            if self._pending(digests.sha256) is not None:  # the same content earlier in the batch
                tmp.unlink()
                return PutResult(digests=digests, created=False)
            shard = final.parent
            if not shard.is_dir():
                shard.mkdir(exist_ok=True, mode=FOLDER_MODE)
                os.chmod(shard, FOLDER_MODE)
                # at once, even in a batch: another writer may link an object into this shard
                # and commit its entry before this batch's flush (once per shard, ever)
                fsync_folder(self._objects)
            if self._unflushed is not None and self._deferring() and not os.path.lexists(final):
                self._unflushed[digests.sha256] = (tmp, final)  # linked by flush(), once synced
                return PutResult(digests=digests, created=True)
            try:
                os.link(tmp, final)  # atomic, and fails rather than replace an existing object
            except FileExistsError:
                if _fingerprint(final) == (digests.sha256, digests.size):
                    tmp.unlink()
                    return PutResult(digests=digests, created=False)
                if self._deferring():
                    _fsync_path(tmp)  # a repair never puts bytes not yet on disk at the name
                aside = self._set_aside(final)
                os.replace(tmp, final)  # atomic: the name never points at nothing
                fsync_folder(shard)
                return PutResult(digests=digests, created=True, replaced=aside)
            tmp.unlink()
            fsync_folder(shard)
            return PutResult(digests=digests, created=True)
        except OSError as exc:
            raise _write_error(exc, "cannot place an object") from None

    def _set_aside(self, final: Path) -> SetAside:
        """Keep the file at `final` under quarantine/ (a second link, so the name never empties)."""
        found_sha256, found_size = _fingerprint(final)
        quarantine = self.root / QUARANTINE
        quarantine.mkdir(exist_ok=True, mode=FOLDER_MODE)
        os.chmod(quarantine, FOLDER_MODE)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        for n in itertools.count():
            name = f"{final.name}.{stamp}" + (f".{n}" if n else "")
            target = quarantine / name
            try:
                os.link(final, target, follow_symlinks=False)
            except FileExistsError:
                continue
            except (PermissionError, IsADirectoryError):  # a folder cannot be linked: move it
                os.rename(final, target)
            break
        fsync_folder(quarantine)
        return SetAside(
            path=f"{self.label}/{QUARANTINE}/{name}", sha256=found_sha256, size=found_size
        )

    def quarantined(self) -> list[str]:
        """Damaged files set aside by `put` (named in the ingest or sighting that replaced them)."""
        kept = self._listing(self.root / QUARANTINE)
        return [f"{self.label}/{QUARANTINE}/{name}" for name in kept]

    def unfinished_writes(self) -> list[str]:
        """Temp files left by an interrupted put: harmless, never referenced."""
        return [f"{self.label}/{TMP}/{name}" for name in self._listing(self._tmp)]

    @staticmethod
    def _listing(folder: Path) -> list[str]:
        try:
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        except OSError as exc:
            raise ObjectUnreadable(f"cannot list {folder}: {exc.strerror or exc}") from None

    def open(self, sha256: str) -> VerifyingReader:
        """A reader that raises ObjectCorrupt at EOF if the bytes do not hash to their name."""
        return VerifyingReader(self._open_raw(sha256), sha256)

    def _open_raw(self, sha256: str) -> BinaryIO:
        try:
            return open(self._pending(sha256) or self.path(sha256), "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            raise ObjectMissing(f"object {sha256} is missing") from None
        except IsADirectoryError:
            raise ObjectCorrupt(f"object {sha256} is not a regular file") from None
        except OSError as exc:
            raise ObjectUnreadable(f"cannot read object {sha256}: {exc.strerror or exc}") from None

    @contextmanager
    def local_file(self, sha256: str) -> Iterator[Path]:
        """The object's own file (read-only by mode): no copy, and no re-hash, is made (an object
        of the current batch not flushed yet: its temp file)."""
        path = self._pending(sha256) or self.path(sha256)
        if not path.is_file():
            raise ObjectMissing(f"object {sha256} is missing")
        yield path

    def release(self, sha256: str) -> None:
        """Remove an object from this device (travel: its content is held elsewhere, and a signed
        entry says so before this is called). ObjectMissing if there is none."""
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            raise ObjectMissing(f"object {sha256} is missing") from None
        except OSError as exc:
            raise ObjectWriteError(f"cannot remove object {sha256}: {exc.strerror or exc}",
                                   exc.errno) from None
        fsync_folder(path.parent)

    keeps_retention = False  # its objects are protected by file modes only

    def retention(self, sha256: str) -> Retention | None:
        """A folder keeps no retention: its objects are protected by file modes only."""
        if not self.has(sha256):
            raise ObjectMissing(f"object {sha256} is missing")
        return None

    def __iter__(self) -> Iterator[str]:
        for shard in self._listing(self._objects):
            if len(shard) == 2 and (self._objects / shard).is_dir():
                for name in self._listing(self._objects / shard):
                    if is_sha256_hex(name) and name[:2] == shard:
                        yield name

    def check(self, sha256: str) -> int:
        """Fixity: re-hash the object; its size, or ObjectMissing or ObjectCorrupt."""
        path = self.path(sha256)
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            raise ObjectMissing(f"object {sha256} is missing") from None
        except OSError as exc:
            raise ObjectUnreadable(f"cannot read object {sha256}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise ObjectCorrupt(f"object {sha256} is not a regular file")
        size = 0
        with self.open(sha256) as reader:
            while chunk := reader.read(CHUNK):
                size += len(chunk)
        return size


class VerifyingReader:
    """Reads an object while hashing it; at end of file the digest must equal the object's name."""

    def __init__(self, raw: BinaryIO, sha256: str) -> None:
        self._raw = raw
        self._expected = sha256
        self._hash = hashlib.sha256()
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        try:
            data = self._raw.read(size)
        except OSError as exc:
            raise ObjectUnreadable(
                f"cannot read object {self._expected}: {exc.strerror or exc}"
            ) from None
        if data:
            self._hash.update(data)
        elif not self._done:
            self._done = True
            if self._hash.hexdigest() != self._expected:
                raise ObjectCorrupt(
                    f"object {self._expected} is corrupt: its content hashes to "
                    f"{self._hash.hexdigest()}"
                )
        return data

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
