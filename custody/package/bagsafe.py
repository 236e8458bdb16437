"""Open an untrusted package safely: a folder, a .zip or a .tar, every name and file type checked
before a byte is read or written, containers unpacked into a private folder under size caps.
"""

from __future__ import annotations

import bz2
import fcntl
import gzip
import io
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from custody.errors import CustodyError, NotFound

MAX_BYTES = 1 << 40  # 1 TiB unpacked; and never more than the free space where it unpacks
MAX_FILES = 100_000  # files and folders in one package
MAX_RATIO = 100  # unpacked : packed, for any member, and the whole, larger than RATIO_FLOOR
RATIO_FLOOR = 1 << 20
FREE_MARGIN = 64 << 20  # leave this much free when unpacking
COPY_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PackageRefused(CustodyError):
    """A package that cannot be opened safely: unsafe names, links, special files, bombs."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_files: int = MAX_FILES
    max_ratio: int = MAX_RATIO

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults, lowered (or raised) by $CUSTODY_PACKAGE_MAX_BYTES / _MAX_FILES."""

        def number(name: str, default: int) -> int:
            value = os.environ.get(name)
            if value is None:
                return default
            if not value.isdigit() or int(value) <= 0:
                raise CustodyError(f"${name} must be a positive whole number, not {value!r}")
            return int(value)

        return cls(
            max_bytes=number("CUSTODY_PACKAGE_MAX_BYTES", MAX_BYTES),
            max_files=number("CUSTODY_PACKAGE_MAX_FILES", MAX_FILES),
            max_ratio=number("CUSTODY_PACKAGE_MAX_RATIO", MAX_RATIO),
        )

    def unpacked_allowance(self, packed: int) -> int:
        """The most a container of `packed` bytes may unpack to (or decompress to) in all."""
        return max(RATIO_FLOOR, self.max_ratio * packed)


@dataclass(frozen=True, slots=True)
class Listing:
    """A bag folder whose every entry was checked: `files` maps bag-relative POSIX paths of its
    regular files to their sizes. Nothing else (links, devices, pipes) is in it."""

    root: Path
    files: dict[str, int]


def fold(name: str) -> str:
    """The form two names share when a case-insensitive or normalising filesystem would merge
    them (NFC, then case-folded)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def check_name(name: str, where: str) -> None:
    """One path component: valid UTF-8, no control characters, no backslash."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise PackageRefused(f"{where}: a file name is not valid UTF-8") from None
    if _CONTROL.search(name):
        raise PackageRefused(f"{where}: a file name contains a control character")
    if "\\" in name:
        raise PackageRefused(f"{where}: a file name contains a backslash (a folder on Windows)")


def walk(root: Path, limits: Limits) -> Listing:
    """Every file of the bag folder `root`, refusing links, special files and names that would
    collide on a case-insensitive or normalising filesystem."""
    files: dict[str, int] = {}
    seen: dict[str, str] = {}
    count = 0
    stack: list[tuple[str, str]] = [("", str(root))]
    while stack:
        prefix, folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise PackageRefused(f"cannot read {prefix or './'}: {exc.strerror}") from None
        for e in entries:
            rel = prefix + e.name
            check_name(e.name, rel.encode("utf-8", "replace").decode())
            key = fold(rel)
            if key in seen:
                raise PackageRefused(
                    f"{seen[key]!r} and {rel!r} differ only by case or Unicode normalisation"
                )
            seen[key] = rel
            count += 1
            if count > limits.max_files:
                raise PackageRefused(f"the package holds more than {limits.max_files} files")
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise PackageRefused(f"{rel} is a symbolic link; packages may hold only files")
            if stat.S_ISDIR(st.st_mode):
                stack.append((rel + "/", e.path))
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    raise PackageRefused(
                        f"{rel} is a hard link ({st.st_nlink} names); copy the package first"
                    )
                files[rel] = st.st_size
            else:
                raise PackageRefused(f"{rel} is not a regular file (a device, pipe or socket)")
    return Listing(root, files)


def open_file(listing: Listing, rel: str) -> BinaryIO:
    """A listed file, opened without following a link that may have replaced it since."""
    fd = os.open(listing.root / rel, os.O_RDONLY | os.O_NOFOLLOW)
    f = os.fdopen(fd, "rb", buffering=0)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise PackageRefused(f"{rel} changed into something other than a file")
    return f


def read_file(listing: Listing, rel: str, limit: int = 1 << 30) -> bytes:
    if listing.files.get(rel, 0) > limit:
        raise PackageRefused(f"{rel} is larger than {limit} bytes")
    with open_file(listing, rel) as f:
        return f.read(limit + 1)[:limit]


# Containers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Member:
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    packed: int | None  # compressed size (zip), None when unknown (tar)
    ref: zipfile.ZipInfo | tarfile.TarInfo


def member_parts(name: str, container: str) -> tuple[str, ...]:
    """A member name as path parts, refusing absolute paths, traversal and odd names."""
    where = f"{container} member {name[:80]!r}"
    if "\\" in name:
        raise PackageRefused(f"{where}: a name contains a backslash (a folder on Windows)")
    if name.startswith("/") or _DRIVE.match(name):
        raise PackageRefused(f"{where}: absolute path")
    parts = name.rstrip("/").split("/")
    while parts and parts[0] == ".":
        parts = parts[1:]
    if not parts:
        return ()
    for p in parts:
        if p == "..":
            raise PackageRefused(f"{where}: path traversal ('..')")
        if p in ("", "."):
            raise PackageRefused(f"{where}: empty or '.' path component")
        check_name(p, where)
    return tuple(parts)


def _bomb(container: str, unpacked: int, packed: int, limits: Limits) -> PackageRefused:
    return PackageRefused(
        f"the {container} unpacks to more than {unpacked} bytes from {packed}, over "
        f"{limits.max_ratio} times its size: refused as a decompression bomb "
        "(set CUSTODY_PACKAGE_MAX_RATIO to raise it)"
    )


def _over_limit(container: str, total: int, limits: Limits) -> PackageRefused:
    return PackageRefused(
        f"the {container} unpacks to {total} bytes, over the limit of {limits.max_bytes} "
        "(set CUSTODY_PACKAGE_MAX_BYTES to raise it)"
    )


def _check_total(container: str, total: int, packed: int, limits: Limits) -> None:
    """The declared (or so far written) total against the size cap and the ratio cap."""
    if total > limits.max_bytes:
        raise _over_limit(container, total, limits)
    if total > limits.unpacked_allowance(packed):
        raise _bomb(container, limits.unpacked_allowance(packed), packed, limits)


def _plan(
    members: list[_Member], container: str, limits: Limits, free: int, packed: int
) -> str:
    """Check the whole member list before anything is written; the bag folder's name."""
    if len(members) > limits.max_files:
        raise PackageRefused(f"the {container} holds more than {limits.max_files} members")
    seen: dict[str, str] = {}
    total = 0
    tops = set()
    for m in members:
        if not m.parts:
            continue
        rel = "/".join(m.parts)
        key = fold(rel)
        if key in seen:
            raise PackageRefused(
                f"{container} members {seen[key]!r} and {rel!r} name the same file (or differ "
                "only by case or Unicode normalisation)"
            )
        seen[key] = rel
        tops.add(m.parts[0])
        if not m.is_dir:
            if len(m.parts) == 1:
                raise PackageRefused(
                    f"a packed bag must unpack into one folder (RFC 8493 §4); {rel!r} is not in one"
                )
            total += m.size
            if (
                m.packed is not None
                and m.size > RATIO_FLOOR
                and m.size > limits.max_ratio * max(m.packed, 1)
            ):
                raise PackageRefused(
                    f"{container} member {rel!r} unpacks {m.size} bytes from {m.packed}: "
                    "refused as a decompression bomb"
                )
    if len(tops) != 1:
        raise PackageRefused(
            f"a packed bag must unpack into exactly one folder (RFC 8493 §4); found {len(tops)}"
        )
    _check_total(container, total, packed, limits)
    if total > free - FREE_MARGIN:
        raise PackageRefused(f"the {container} unpacks to {total} bytes; only {free} are free")
    return tops.pop()


@dataclass(slots=True)
class _Tally:
    """Bytes unpacked so far, counted as they are written, held to the caps the plan checked."""

    container: str
    packed: int
    limits: Limits
    written: int = 0

    def add(self, n: int) -> None:
        self.written += n
        _check_total(self.container, self.written, self.packed, self.limits)


def _write_member(src: IO[bytes], target: Path, size: int, rel: str, tally: _Tally) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(COPY_CHUNK):
            written += len(chunk)
            if written > size:
                raise PackageRefused(f"member {rel!r} unpacks to more than it declares")
            tally.add(len(chunk))  # stops the moment the total or the ratio is crossed
            out.write(chunk)
    if written != size:
        raise PackageRefused(f"member {rel!r} is shorter than it declares")


def _write_members(
    members: list[_Member],
    kind: str,
    work: Path,
    limits: Limits,
    open_member: Callable[[_Member], IO[bytes] | None],
    packed: int,
) -> Path:
    """Unpack checked members into `work`, counting every byte against the caps; returns the
    bag's top folder."""
    top = _plan(members, kind, limits, shutil.disk_usage(work).free, packed)
    tally = _Tally(kind, packed, limits)
    for m in members:
        target = work.joinpath(*m.parts)
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            continue
        src = open_member(m)
        if src is None:
            raise PackageRefused(f"{kind} member {'/'.join(m.parts)!r} cannot be read")
        with src:
            _write_member(src, target, m.size, "/".join(m.parts), tally)
    return work / top


def _unpack_zip(path: Path, work: Path, limits: Limits) -> Path:
    with zipfile.ZipFile(path) as zf:
        members = []
        for info in zf.infolist():
            mode = info.external_attr >> 16
            parts = member_parts(info.filename, "zip")
            if stat.S_ISLNK(mode):
                raise PackageRefused(f"zip member {info.filename!r} is a symbolic link")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise PackageRefused(f"zip member {info.filename!r} is not a file or folder")
            if info.flag_bits & 0x1:
                raise PackageRefused(f"zip member {info.filename!r} is encrypted")
            members.append(
                _Member(parts, info.is_dir(), info.file_size, info.compress_size, info)
            )
        # every member listed here came from zf.infolist(): its ref is a ZipInfo
        return _write_members(members, "zip", work, limits,
                              lambda m: zf.open(cast(zipfile.ZipInfo, m.ref)), path.stat().st_size)


class _Bounded:
    """The decompressed stream of a (possibly compressed) tar, refusing to read or seek past
    `allowance` bytes: tarfile reads headers (pax, GNU long names) whole into memory and skips
    member data by decompressing it, so the bound must sit under tarfile itself."""

    def __init__(
        self, raw: io.BufferedIOBase, allowance: int, on_exceed: Callable[[], Exception]
    ) -> None:
        self._raw = raw
        self._allowance = allowance
        self._on_exceed = on_exceed

    def _check(self, end: int) -> None:
        if end > self._allowance:
            raise self._on_exceed()

    def read(self, size: int = -1) -> bytes:
        here = self._raw.tell()
        if size is None or size < 0:  # all that is left, but never more than the allowance
            data = self._raw.read(self._allowance - here + 1)
            self._check(here + len(data))
            return data
        self._check(here + size)  # before a huge header or skip is decompressed
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == os.SEEK_SET else self._raw.tell() + offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR):
            raise OSError("seeking from the end of a package stream is not supported")
        self._check(target)
        return self._raw.seek(target)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _Bounded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tar_stream(path: Path, limits: Limits) -> _Bounded:
    """The tar inside `path` (plain, gzip, bzip2 or xz, by its magic bytes), bounded."""
    with open(path, "rb") as f:
        magic = f.read(6)
    opener: Callable[..., Any]
    if magic.startswith(b"\x1f\x8b"):
        opener = gzip.open
    elif magic.startswith(b"BZh"):
        opener = bz2.open
    elif magic.startswith(b"\xfd7zXZ\x00"):
        opener = lzma.open
    else:
        opener = open
    packed = path.stat().st_size
    allowance = limits.unpacked_allowance(packed)
    return _Bounded(opener(path, "rb"), allowance,
                    lambda: _bomb("tar", allowance, packed, limits))


@contextmanager
def _open_tar(path: Path, limits: Limits) -> Iterator[tarfile.TarFile]:
    with (
        _tar_stream(path, limits) as stream,
        tarfile.open(fileobj=cast(IO[bytes], stream), mode="r:") as tf,
    ):
        yield tf


def _unpack_tar(path: Path, work: Path, limits: Limits) -> Path:
    packed = path.stat().st_size
    with _open_tar(path, limits) as tf:
        members: list[_Member] = []
        declared = 0
        while (info := tf.next()) is not None:
            if len(members) >= limits.max_files:
                raise PackageRefused(f"the tar holds more than {limits.max_files} members")
            declared += info.size
            _check_total("tar", declared, packed, limits)  # before its data is read or skipped
            parts = member_parts(info.name, "tar")
            kind = (
                "a symbolic link" if info.issym()
                else "a hard link" if info.islnk()
                else None if info.isfile() or info.isdir()
                else "a device, pipe or other special file"
            )
            if kind is not None:
                raise PackageRefused(f"tar member {info.name!r} is {kind}")
            try:  # belt and braces: the standard library's own "data" filter must agree
                tarfile.data_filter(info, str(work))
            except tarfile.FilterError as exc:
                raise PackageRefused(f"tar member {info.name!r}: {exc}") from None
            members.append(_Member(parts, info.isdir(), info.size, None, info))
        # every member listed here came from tf: its ref is a TarInfo
        return _write_members(members, "tar", work, limits,
                              lambda m: tf.extractfile(cast(tarfile.TarInfo, m.ref)), packed)


UNPACK_PREFIXES = (".custody-unpack-", "custody-unpack-")


def _locked(folder: Path) -> int:
    """Hold an exclusive lock on `folder` while its fd is open (BlockingIOError if held)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def clear_stale_unpacks(folder: Path) -> list[str]:
    """Remove unpack folders that a killed import or verify-package left in `folder`: ours (same
    owner, our prefix) and no longer locked by the process that made them."""
    removed: list[str] = []
    try:
        candidates = [e for e in os.scandir(folder) if e.name.startswith(UNPACK_PREFIXES)]
    except OSError:
        return removed
    for e in candidates:
        try:
            st = e.stat(follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            fd = _locked(Path(e.path))
        except OSError:  # in use by a running import, or gone meanwhile
            continue
        try:
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(e.name)
        finally:
            os.close(fd)
    return removed


@contextmanager
def _workdir(path: Path) -> Iterator[Path]:
    """A private folder beside the package (same filesystem), else in the system temp folder,
    locked while in use and removed afterwards; stale ones a killed run left are removed first."""
    try:
        clear_stale_unpacks(path.parent)
        work = Path(tempfile.mkdtemp(prefix=UNPACK_PREFIXES[0], dir=path.parent))
    except OSError:
        clear_stale_unpacks(Path(tempfile.gettempdir()))
        work = Path(tempfile.mkdtemp(prefix=UNPACK_PREFIXES[1]))
    fd = _locked(work)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(fd)


def container_kind(path: Path, limits: Limits) -> str:
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise PackageRefused(f"{path} is not a folder, .zip or .tar file")
    if zipfile.is_zipfile(path):
        return "zip"
    try:  # as tarfile.is_tarfile does, but bounded: reading the first member may decompress
        with _open_tar(path, limits):
            return "tar"
    except (OSError, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError):
        pass
    raise PackageRefused(f"{path} is not a folder, .zip or .tar file")


@contextmanager
def opened(path: Path, limits: Limits | None = None) -> Iterator[Listing]:
    """The package at `path` as a checked listing; a container is unpacked first, into a private
    folder removed on exit."""
    limits = limits or Limits.from_env()
    path = Path(path)
    if not os.path.lexists(path):
        raise NotFound(f"no package at {path}")
    kind = container_kind(path, limits)
    if kind == "folder":
        yield walk(path.resolve(), limits)
        return
    with _workdir(path) as work:
        try:
            root = (_unpack_zip if kind == "zip" else _unpack_tar)(path, work, limits)
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            tarfile.TarError,
            NotImplementedError,
            zlib.error,
            lzma.LZMAError,
            EOFError,
            UnicodeError,
            ValueError,
        ) as exc:
            raise PackageRefused(f"{path.name} is not a readable {kind} file: {exc}") from None
        except OSError as exc:
            raise PackageRefused(
                f"{path.name} cannot be unpacked: {exc.strerror or exc}; nothing was left behind"
            ) from None
        yield walk(root, limits)
