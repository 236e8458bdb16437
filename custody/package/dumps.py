"""Phone dumps and card copies: a zip or tar given to `ingest --unpack` is kept whole as an item,
and each member is streamed into the same ingest as an item of its own, linked to the dump.

Members are read from the stored dump (what is unpacked is exactly what is kept) under the rules
packages follow (bagsafe.py): names checked, no links or special files, size, count and ratio
caps. A hostile member is refused with one line and nothing of it is stored; the dump stays.
"""

from __future__ import annotations

import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO, cast

from custody.ops.ingest import Claims, FileResult, Found, Ingest, shown
from custody.ops.selection import Selection
from custody.ops.sidecars import Linker
from custody.package.bagsafe import (
    RATIO_FLOOR,
    Limits,
    PackageRefused,
    _open_tar,  # the bounded tar reader packages use: the same caps under tarfile
    container_kind,
    fold,
    member_parts,
)

# Chosen by name (a .docx or .apk is a zip too, and is evidence as it is), confirmed by content.
DUMP_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz",
                 ".txz")
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, NotImplementedError,
                RuntimeError, zlib.error, lzma.LZMAError, EOFError, UnicodeError, ValueError,
                OSError)


def is_dump_name(name: str) -> bool:
    return name.casefold().endswith(DUMP_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Member:
    """One member as its header declares it, and why it is refused (None: it will be read)."""

    name: str
    size: int
    mtime: str | None
    mtime_local: str | None
    ref: zipfile.ZipInfo | tarfile.TarInfo
    refused: str | None = None


@dataclass(slots=True)
class _Tally:
    """Bytes unpacked from one dump so far, held to the size and ratio caps."""

    packed: int
    limits: Limits
    written: int = 0

    def over(self) -> bool:
        return self.written > min(self.limits.max_bytes,
                                  self.limits.unpacked_allowance(self.packed))

    def add(self, n: int) -> None:
        self.written += n
        if self.written > self.limits.max_bytes:
            raise PackageRefused(f"the dump unpacks to more than {self.limits.max_bytes} bytes "
                                 "(set CUSTODY_PACKAGE_MAX_BYTES to raise it)")
        if self.written > self.limits.unpacked_allowance(self.packed):
            raise PackageRefused(
                f"the dump unpacks to more than {self.limits.max_ratio} times its size: refused "
                "as a decompression bomb (set CUSTODY_PACKAGE_MAX_RATIO to raise it)")


class _MemberStream:
    """A member's bytes as ingest reads them, refused the moment they exceed what the header
    declared or the dump's caps, or end short of it: the object store then keeps nothing."""

    def __init__(self, raw: IO[bytes], declared: int, tally: _Tally) -> None:
        self._raw = raw
        self._declared = declared
        self._tally = tally
        self._read = 0

    def readinto(self, buf: Any) -> int:
        try:
            n = self._raw.readinto(buf)  # type: ignore[attr-defined]  # zip and tar readers have it
        except _READ_ERRORS as exc:  # a bad CRC, a truncated stream: this member's fault
            raise PackageRefused(str(exc) or type(exc).__name__) from None
        if not n:
            if self._read != self._declared:
                raise PackageRefused(f"it is shorter ({self._read} bytes) than its header "
                                     f"declares ({self._declared})")
            return 0
        self._read += n
        if self._read > self._declared:
            raise PackageRefused(f"it unpacks to more than the {self._declared} bytes its "
                                 "header declares")
        self._tally.add(n)
        return int(n)


def _utc(ts: float) -> str | None:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def _zip_utc(extra: bytes) -> float | None:
    """A zip member's UTC time from its extra fields: extended timestamp (0x5455) or NTFS
    (0x000a); None when it has neither (only the DOS time, local and of unknown offset)."""
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4 : i + 4 + size]
        if tag == 0x5455 and len(body) >= 5 and body[0] & 1:
            return float(struct.unpack_from("<i", body, 1)[0])
        if tag == 0x000A and len(body) >= 32 and struct.unpack_from("<HH", body, 4) == (1, 24):
            filetime: int = struct.unpack_from("<Q", body, 8)[0]  # 100 ns since 1601
            return filetime / 1e7 - 11644473600
        i += 4 + size
    return None


def _zip_member(info: zipfile.ZipInfo, limits: Limits) -> Member:
    utc = _zip_utc(info.extra)
    y, mo, d, h, mi, s = info.date_time
    local = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" if utc is None else None
    mode = info.external_attr >> 16
    refused = None
    if stat.S_ISLNK(mode):
        refused = "a symbolic link"
    elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        refused = "not a regular file (a device, pipe or socket)"
    elif info.flag_bits & 0x1:
        refused = "encrypted"
    elif info.compress_type not in _ZIP_METHODS:
        refused = f"compressed with a method custody does not read ({info.compress_type})"
    elif info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(
            info.compress_size, 1):
        refused = (f"unpacks {info.file_size} bytes from {info.compress_size}: refused as a "
                   "decompression bomb")
    return Member(info.filename, info.file_size, _utc(utc) if utc is not None else None, local,
                  info, refused)


def _tar_member(info: tarfile.TarInfo) -> Member:
    refused = (
        "a symbolic link" if info.issym()
        else "a hard link" if info.islnk()
        else None if info.isfile() or info.isdir()
        else "a device, pipe or other special file"
    )
    if refused is None:
        try:  # the standard library's own "data" filter must agree
            tarfile.data_filter(info, "/nonexistent-dump-root")
        except tarfile.FilterError as exc:
            refused = str(exc)
    return Member(info.name, info.size, _utc(info.mtime), None, info, refused)


@dataclass(slots=True)
class Plan:
    """Every member of a dump, checked before a byte of any is read."""

    kind: str
    members: list[tuple[str, Member]]  # (checked path or the raw name, the member)
    refused: str | None = None  # the whole dump is not unpacked, and why


def _plan(members: list[Member], kind: str, limits: Limits, packed: int) -> Plan:
    if len(members) > limits.max_files:
        return Plan(kind, [], f"it holds more than {limits.max_files} members "
                              "(set CUSTODY_PACKAGE_MAX_FILES to raise it)")
    total = sum(m.size for m in members)
    if total > limits.max_bytes:
        return Plan(kind, [], f"its members declare {total} bytes, over the limit of "
                              f"{limits.max_bytes} (set CUSTODY_PACKAGE_MAX_BYTES to raise it)")
    if total > limits.unpacked_allowance(packed):
        return Plan(kind, [], f"its members declare {total} bytes from {packed}: refused as a "
                              "decompression bomb (set CUSTODY_PACKAGE_MAX_RATIO to raise it)")
    checked: list[tuple[str, Member]] = []
    for m in members:
        try:
            parts = member_parts(m.name, kind)
        except PackageRefused as exc:
            # the name's own fault is said first (before a type or filter finding)
            checked.append((m.name, _refuse(m, str(exc).split(": ", 1)[-1], first=True)))
            continue
        if not parts or _is_folder(m):
            continue  # a folder: nothing to store
        checked.append(("/".join(parts), m))
    names: dict[str, list[str]] = {}
    for rel, _m in checked:
        names.setdefault(fold(rel), []).append(rel)
    out = []
    for rel, m in checked:
        same = names[fold(rel)]
        if len(same) > 1 and m.refused is None:
            m = _refuse(m, f"{len(same)} members name the same file (or differ only by case or "
                           "Unicode normalisation): which one a tool shows is ambiguous")
        out.append((rel, m))
    return Plan(kind, out)


def _is_folder(m: Member) -> bool:
    return m.ref.is_dir() if isinstance(m.ref, zipfile.ZipInfo) else m.ref.isdir()


def _refuse(m: Member, why: str, first: bool = False) -> Member:
    return Member(m.name, m.size, m.mtime, m.mtime_local, m.ref,
                  why if first else m.refused or why)


@contextmanager
def opened(path: Path, limits: Limits) -> Iterator[tuple[Plan, Callable[[Member], IO[bytes]]]]:
    """The dump's plan and a way to open each planned member's stream."""
    packed = path.stat().st_size
    try:
        kind = container_kind(path, limits)
    except PackageRefused:
        yield Plan("file", [], "it is not a readable zip or tar file"), _no_open
        return
    with ExitStack() as stack:
        try:
            if kind == "zip":
                zf = stack.enter_context(zipfile.ZipFile(path))
                members = [_zip_member(i, limits) for i in zf.infolist()]

                def opener(m: Member) -> IO[bytes]:
                    return zf.open(cast(zipfile.ZipInfo, m.ref))
            else:
                tf = stack.enter_context(_open_tar(path, limits))
                members = []
                while (info := tf.next()) is not None:
                    if len(members) >= limits.max_files:
                        members.append(_tar_member(info))  # over the count: _plan refuses it
                        break
                    members.append(_tar_member(info))

                def opener(m: Member) -> IO[bytes]:  # noqa: F811  # one of the two is defined
                    got = tf.extractfile(cast(tarfile.TarInfo, m.ref))
                    if got is None:
                        raise PackageRefused("it cannot be read")
                    return got
        except PackageRefused as exc:
            yield Plan(kind, [], str(exc)), _no_open
            return
        except _READ_ERRORS as exc:
            yield Plan(kind, [], f"it is not a readable {kind} file ({exc})"), _no_open
            return
        yield _plan(members, kind, limits, packed), opener


def _no_open(m: Member) -> IO[bytes]:
    raise PackageRefused("it cannot be read")


class Unpacker:
    """Ingest's `expand` step: after a dump is added, add each of its members (a dump inside a
    dump is kept as an item, not unpacked)."""

    def __init__(
        self,
        selection: Selection,
        limits: Limits | None = None,
        on_refused: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self.selection = selection
        self.limits = limits or Limits.from_env()
        self.on_refused = on_refused or (lambda _r: None)

    def __call__(self, ingest: Ingest, dump: FileResult, found: Found) -> None:
        if dump.sha256 is None or not is_dump_name(found.path.name):
            return
        source: AbstractContextManager[Path] = (
            nullcontext(found.path) if ingest.dry_run  # nothing stored: read the file given
            else ingest.archive.objects.local_file(dump.sha256)  # else exactly what is kept
        )
        with source as path:
            self.unpack(ingest, Path(path), dump.sha256, dump.path)

    def unpack(self, ingest: Ingest, path: Path, container: str, dump_shown: str) -> None:
        with opened(path, self.limits) as (plan, open_member):
            if plan.refused is not None:
                self._refuse(ingest, dump_shown, container, None,
                             f"{plan.refused}; its members were not unpacked (the dump itself "
                             "is kept)")
                return
            tally = _Tally(path.stat().st_size, self.limits)
            stop: str | None = None
            # Sidecars as on disk: a member's folder is its folder inside the dump, and the
            # members are read in pairing depth order (media before their proofs; a stable
            # sort: a tar is rewound at most once per depth).
            linker = Linker([PurePosixPath(rel) for rel, m in plan.members
                             if m.refused is None and self.selection.skip_reason(rel) is None])
            members = sorted(plan.members, key=lambda rm: linker.depth(PurePosixPath(rm[0])))
            for rel, m in members:
                if stop is not None or m.refused is not None:
                    self._refuse(ingest, dump_shown, container, rel, stop or m.refused or "")
                    continue
                skip = self.selection.skip(rel, f"{dump_shown}!{rel}")
                if skip is not None:
                    ingest.report.skipped.append(skip)
                    ingest.on_skip(skip)
                    continue
                claims = Claims(name=rel.rsplit("/", 1)[-1], mtime=m.mtime,
                                container=container, member=rel,
                                mtime_local=m.mtime_local, container_shown=dump_shown)
                try:
                    raw = open_member(m)
                except (*_READ_ERRORS, PackageRefused) as exc:
                    self._refuse(ingest, dump_shown, container, rel, str(exc) or repr(exc))
                    continue
                try:  # only the member's own stream raises PackageRefused in here
                    with raw:
                        stream = cast(BinaryIO, _MemberStream(raw, m.size, tally))
                        result = ingest.add(stream, claims, shown_as=claims.shown(),
                                            linked_as=(linker, PurePosixPath(rel)))
                    result.member = {"container": container, "member": rel}
                except PackageRefused as exc:
                    why = str(exc)
                    self._refuse(ingest, dump_shown, container, rel, why)
                    if tally.over():  # the dump's caps are spent: no member after is read
                        stop = f"not read: {why}"
                    continue
                ingest.commit_if_due()

    def _refuse(
        self, ingest: Ingest, dump_shown: str, container: str, rel: str | None, why: str
    ) -> None:
        refusal = {"path": dump_shown if rel is None else f"{dump_shown}!{shown(rel)}",
                   "container": container, "reason": why}
        if rel is not None:
            refusal["member"] = rel
        ingest.report.refused.append(refusal)
        self.on_refused(refusal)


def dump_paths(files: list[Found]) -> list[str]:
    """The files among `files` that --unpack would open (for a hint when it was not given)."""
    return [shown(f.path) for f in files if is_dump_name(os.fsdecode(f.path.name))]
