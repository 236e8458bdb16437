"""A sealed object store: an ObjectStore wrapper that keeps every object as an age file.

Callers see plaintext names and plaintext bytes (the port is unchanged); the inner store holds the
age ciphertext under ITS SHA-256, which the item's signed first record names, so fixity is checked
without a key (docs/FORMAT.md §12). Plaintext exists only in the spool (memory where the system
has it), for the metadata reader during an ingest and for a reader while it reads.
"""

from __future__ import annotations

import errno
import os
import secrets
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, cast

import pyrage

from store.local_objects import MultiHasher, VerifyingReader
from store.ports import (
    CHUNK,
    ByteSource,
    ObjectCorrupt,
    ObjectMissing,
    ObjectReader,
    ObjectStore,
    ObjectUnreadable,
    ObjectWriteError,
    PutResult,
    ReadsInto,
    Retention,
    StoreFull,
)

Locate = Callable[[str], tuple[str, int, int] | None]
"""(SHA-256 and size of the ciphertext, size of the plaintext) a plaintext SHA-256 is kept under,
as its signed record names them."""


class SealedObjectsLocked(ObjectUnreadable):
    """Reading content of a sealed store without the content key (no custodian key given)."""


def _spool_error(exc: OSError) -> ObjectWriteError:
    kind = StoreFull if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ObjectWriteError
    return kind(f"cannot spool an object to seal it: {exc.strerror or exc}", exc.errno)


def _remove(paths: dict[str, Path]) -> None:
    for path in paths.values():
        path.unlink(missing_ok=True)
    paths.clear()


class SealedObjects:
    """Plaintext in, age files kept in `inner`; `locate` names the ciphertext of a recorded item,
    `listing` all of them at once. `unlock(identity)` allows reads (get, export, metadata)."""

    def __init__(self, inner: ObjectStore, recipient: pyrage.x25519.Recipient, spool: Path,
                 locate: Locate, listing: Callable[[], dict[str, tuple[str, int, int]]],
                 current: Callable[[], str] | None = None) -> None:
        self.inner = inner
        self._recipient = recipient
        self.recipient = str(recipient)  # the content key in force when this store was opened
        # the content key in force now (re-read before each object is sealed: a revocation by
        # another process re-keys; docs/FORMAT.md §12.5)
        self._current = current
        self.spool = spool
        self._locate = locate
        self._listing = listing
        self._identities: list[pyrage.x25519.Identity] = []
        self._sealed: dict[str, tuple[str, int]] = {}  # stored by this process, not yet recorded
        self._sealed_to: dict[str, str] = {}  # the recipient each of those was sealed to
        self._spooled: dict[str, Path] = {}  # plaintext kept for the metadata reader
        self._catalogue: dict[str, tuple[str, int, int]] | None = None  # preload()
        self._cleanup = weakref.finalize(self, _remove, self._spooled)

    def preload(self) -> None:
        """Read where every recorded object is kept, at once (verify, before it forks workers
        that must not use the ledger's connection)."""
        self._catalogue = self._listing()

    def _found(self, sha256: str) -> tuple[str, int, int] | None:
        if self._catalogue is not None:
            return self._catalogue.get(sha256)
        return self._locate(sha256)

    def unlock(self, *identities: pyrage.x25519.Identity) -> None:
        """Allow reads with these content keys (one per epoch the reader holds)."""
        self._identities = list(identities)

    def close(self) -> None:
        """Remove every plaintext this process spooled (also done at exit)."""
        _remove(self._spooled)

    def sealed_to(self, sha256: str) -> str | None:
        """The recipient `put` sealed this plaintext to in this process (None: not sealed here)."""
        return self._sealed_to.get(sha256)

    def sealed_as(self, sha256: str) -> tuple[str, int] | None:
        """(SHA-256, size) of the ciphertext `put` stored for this plaintext in this process."""
        return self._sealed.get(sha256)

    def cipher_name(self, sha256: str) -> str | None:
        known = self._sealed.get(sha256)
        if known is not None:
            return known[0]
        found = self._found(sha256)
        return found[0] if found is not None else None

    def _cipher(self, sha256: str) -> str:
        name = self.cipher_name(sha256)
        if name is None:
            raise ObjectMissing(f"object {sha256} is missing (no sealed copy is recorded)")
        return name

    def _spool_path(self, prefix: str) -> Path:
        self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.spool, 0o700)
        return self.spool / f"{prefix}-{secrets.token_hex(8)}"

    # Writing -----------------------------------------------------------------------------------

    def put(self, stream: ByteSource) -> PutResult:
        """Spool the plaintext (hashing it), seal it to the archive's recipient, store the age
        file in the inner store. Content already kept sealed is not sealed again."""
        plain = self._spool_path("plain")
        hasher = MultiHasher()
        try:
            fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                buf = memoryview(bytearray(CHUNK))
                while n := cast(ReadsInto, stream).readinto(buf) or 0:  # every binary file has it
                    hasher.update(buf[:n])
                    out.write(buf[:n])
        except OSError as exc:
            plain.unlink(missing_ok=True)
            raise _spool_error(exc) from None
        except BaseException:  # a source that failed: no plaintext left behind
            plain.unlink(missing_ok=True)
            raise
        digests = hasher.digests()
        if digests.sha256 in self._spooled:
            plain.unlink()
        else:
            self._spooled[digests.sha256] = plain
        if self.cipher_name(digests.sha256) is not None:
            return PutResult(digests=digests, created=False)
        sealed = self._spool_path("sealed")
        if self._current is not None and (now := self._current()) != self.recipient:
            self.recipient, self._recipient = now, pyrage.x25519.Recipient.from_str(now)
        try:
            with open(self._spooled[digests.sha256], "rb") as src, open(sealed, "xb") as dst:
                pyrage.encrypt_io(src, dst, [self._recipient])
            with open(sealed, "rb") as kept:
                stored = self.inner.put(kept)
        except OSError as exc:
            raise _spool_error(exc) from None
        finally:
            sealed.unlink(missing_ok=True)
        self._sealed[digests.sha256] = (stored.digests.sha256, stored.digests.size)
        self._sealed_to[digests.sha256] = self.recipient
        return PutResult(digests=digests, created=True, replaced=stored.replaced)

    def release(self, sha256: str) -> None:
        """Remove the sealed copy from this device (travel: held elsewhere)."""
        release = getattr(self.inner, "release", None)
        if release is None:
            raise ObjectWriteError("this object store cannot release objects")
        release(self._cipher(sha256))

    # Reading -----------------------------------------------------------------------------------

    def has(self, sha256: str) -> bool:
        name = self.cipher_name(sha256)
        return name is not None and self.inner.has(name)

    def check(self, sha256: str) -> int:
        """Fixity without a key: the age file against the ciphertext digest and size its record
        signed; then the plaintext size that record signed (age's AEAD binds the two)."""
        found = self._found(sha256)
        if found is None:
            raise ObjectMissing(f"object {sha256} is missing (no sealed copy is recorded)")
        cipher, cipher_size, plain_size = found
        size = self.inner.check(cipher)
        if size != cipher_size:
            raise ObjectCorrupt(f"object {sha256}: its sealed copy is {size} bytes; its record "
                                f"says {cipher_size}")
        return plain_size

    def _decrypted(self, sha256: str) -> Path:
        if not self._identities:
            raise SealedObjectsLocked(
                f"object {sha256} is sealed: reading it needs a custodian's key")
        target = self._spool_path("open")
        try:
            with self.inner.local_file(self._cipher(sha256)) as sealed:
                pyrage.decrypt_file(str(sealed), str(target), self._identities)
        except pyrage.DecryptError as exc:
            target.unlink(missing_ok=True)
            raise ObjectCorrupt(f"object {sha256}: its sealed copy does not decrypt ({exc})") \
                from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    def open(self, sha256: str) -> ObjectReader:
        """A verified plaintext reader; the decrypted spool file is unlinked at once (the open
        descriptor keeps it readable until closed, nothing stays behind)."""
        path = self._spooled.get(sha256)
        if path is not None:
            raw: BinaryIO = open(path, "rb")  # noqa: SIM115 (the reader closes it)
        else:
            target = self._decrypted(sha256)
            try:
                raw = open(target, "rb")  # noqa: SIM115 (the reader closes it)
            finally:
                target.unlink()
        return VerifyingReader(raw, sha256)

    def local_file(self, sha256: str) -> AbstractContextManager[Path]:
        return self._local_file(sha256)

    @contextmanager
    def _local_file(self, sha256: str) -> Iterator[Path]:
        path = self._spooled.get(sha256)
        if path is not None:
            yield path
            return
        target = self._decrypted(sha256)
        try:
            yield target
        finally:
            target.unlink(missing_ok=True)

    def __iter__(self) -> Iterator[str]:
        """Plaintext names of the recorded sealed objects; a ciphertext nothing records (an
        interrupted ingest) under its own name."""
        plain_of = {found[0]: plain for plain, found in self._listing().items()}
        plain_of.update({c: p for p, (c, _) in self._sealed.items()})
        for name in self.inner:
            yield plain_of.get(name, name)

    def quarantined(self) -> list[str]:
        return self.inner.quarantined()

    def unfinished_writes(self) -> list[str]:
        return self.inner.unfinished_writes()

    def retention(self, sha256: str) -> Retention | None:
        return self.inner.retention(self._cipher(sha256))

    @property
    def keeps_retention(self) -> bool:
        return self.inner.keeps_retention
