"""Open an untrusted package safely: a folder, a .zip or a .tar, every name and file type checked
before a byte is read or written, containers unpacked into a private folder under size caps.
"""

from __future__ import annotations

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
from typing import IO, BinaryIO

from custody.errors import CustodyError, NotFound

MAX_BYTES = 1 << 40  # 1 TiB unpacked; and never more than the free space where it unpacks
MAX_FILES = 100_000  # files and folders in one package
MAX_RATIO = 100  # unpacked : packed, for any member larger than RATIO_FLOOR
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
        )


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


def _plan(members: list[_Member], container: str, limits: Limits, free: int) -> str:
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
    if total > limits.max_bytes:
        raise PackageRefused(
            f"the {container} unpacks to {total} bytes, over the limit of {limits.max_bytes} "
            "(set CUSTODY_PACKAGE_MAX_BYTES to raise it)"
        )
    if total > free - FREE_MARGIN:
        raise PackageRefused(f"the {container} unpacks to {total} bytes; only {free} are free")
    return tops.pop()


def _write_member(src: IO[bytes], target: Path, size: int, rel: str, budget: list[int]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(COPY_CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > size or budget[0] < 0:
                raise PackageRefused(f"member {rel!r} unpacks to more than it declares")
            out.write(chunk)
    if written != size:
        raise PackageRefused(f"member {rel!r} is shorter than it declares")


def _write_members(
    members: list[_Member],
    kind: str,
    work: Path,
    limits: Limits,
    open_member: Callable[[_Member], IO[bytes] | None],
) -> Path:
    """Unpack checked members into `work` under one byte budget; returns the bag's top folder."""
    top = _plan(members, kind, limits, shutil.disk_usage(work).free)
    budget = [limits.max_bytes]
    for m in members:
        target = work.joinpath(*m.parts)
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            continue
        src = open_member(m)
        if src is None:
            raise PackageRefused(f"{kind} member {'/'.join(m.parts)!r} cannot be read")
        with src:
            _write_member(src, target, m.size, "/".join(m.parts), budget)
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
        return _write_members(members, "zip", work, limits, lambda m: zf.open(m.ref))


def _unpack_tar(path: Path, work: Path, limits: Limits) -> Path:
    with tarfile.open(path, "r:*") as tf:
        members: list[_Member] = []
        while (info := tf.next()) is not None:
            if len(members) >= limits.max_files:
                raise PackageRefused(f"the tar holds more than {limits.max_files} members")
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
        return _write_members(members, "tar", work, limits, lambda m: tf.extractfile(m.ref))


def _workdir(path: Path) -> Path:
    """A private folder beside the package (same filesystem), else in the system temp folder."""
    try:
        return Path(tempfile.mkdtemp(prefix=".custody-unpack-", dir=path.parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="custody-unpack-"))


def container_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise PackageRefused(f"{path} is not a folder, .zip or .tar file")
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, tarfile.TarError, EOFError, zlib.error):
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
    kind = container_kind(path)
    if kind == "folder":
        yield walk(path.resolve(), limits)
        return
    work = _workdir(path)
    try:
        try:
            root = (_unpack_zip if kind == "zip" else _unpack_tar)(path, work, limits)
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            tarfile.TarError,
            NotImplementedError,
            zlib.error,
            EOFError,
            UnicodeError,
            ValueError,
        ) as exc:
            raise PackageRefused(f"{path.name} is not a readable {kind} file: {exc}") from None
        except OSError as exc:
            raise PackageRefused(f"{path.name} cannot be unpacked: {exc}") from None
        yield walk(root, limits)
    finally:
        shutil.rmtree(work, ignore_errors=True)
