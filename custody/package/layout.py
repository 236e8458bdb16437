"""The custody package layout (docs/PACKAGES.md): tag file names, the signed package statement,
payload file naming, and writers that put a bag into a folder, a .zip or a .tar.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import os
import queue
import re
import shutil
import tarfile
import threading
import time
import unicodedata
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from custody.core.json_exact import orjson_writes_as_json
from custody.errors import CustodyError

FORMAT = "custody-package"
VERSION = 1
BAGIT_VERSION = "1.0"  # set deliberately: bagit-python still writes 0.97 by default
PAYLOAD_ALGORITHMS = ("sha256", "sha512")
EXPORT_ROLES = ("admin", "investigator")  # reviewers may read content, not send it away

PACKAGE = "custody/package.json"
SIGNATURE = "custody/package.sig"
CHECKPOINT = "custody/checkpoint.txt"
KEYS = "custody/keys.json"
ITEMS = "custody/items.json"
LEDGER = "custody/ledger.jsonl"
PROOFS = "custody/proofs.json"
METADATA = "custody/metadata/"

# Signature input = tag || package.json bytes: a package signature is no entry or note signature.
SIGNATURE_TAG = b"custody:package:v1\x00"
# DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): prefix || 32-byte key.
_SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|%]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
             *(f"LPT{i}" for i in range(10))}
MAX_NAME_BYTES = 180


def metadata_path(sha256: str) -> str:
    return f"{METADATA}{sha256}.json"


OPENED = "custody/opened/"  # a sealed archive's export: what the exporter's key opened (§12.3)


def opened_path(sha256: str) -> str:
    return f"{OPENED}{sha256}.json"


def statement_message(package_json: bytes) -> bytes:
    return SIGNATURE_TAG + package_json


def public_key_pem(raw: bytes) -> str:
    """A raw Ed25519 public key as the PEM that `openssl pkeyutl -pubin` reads."""
    b64 = base64.b64encode(_SPKI_ED25519 + raw).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"


def safe_name(name: str | None, fallback: str) -> str:
    """One path component a person recognises and every filesystem and BagIt tool accepts: NFC,
    no separators, control or reserved characters ('%' too: BagIt 1.0 would percent-encode it),
    no leading dots, no Windows device names, at most MAX_NAME_BYTES of UTF-8."""
    name = unicodedata.normalize("NFC", name or "")
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name:
        return fallback
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.upper() in _RESERVED:
        name = "_" + name
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
        name = f"{stem}.{ext}" if ext else stem
        if not stem:
            return fallback
    return name


def payload_paths(items: list[tuple[str, str | None, str | None]]) -> dict[str, str]:
    """`data/<case>/<name>` for each (sha256, case, original name); a name that would collide
    (also by case or normalisation) gets 12 hex digits of its SHA-256 before the extension."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for sha, case, name in sorted(items, key=lambda t: (t[1] or "", t[2] or "", t[0])):
        folder = f"data/{safe_name(case, 'case')}/" if case else "data/"
        base = safe_name(name, sha)
        path = folder + base
        if _key(path) in taken:
            stem, dot, ext = base.rpartition(".")
            base = f"{stem}.{sha[:12]}.{ext}" if dot and stem else f"{base}.{sha[:12]}"
            path = folder + base
        taken.add(_key(path))
        out[sha] = path
    return out


def _key(path: str) -> str:
    return unicodedata.normalize("NFC", path).casefold()


def manifest(digests: dict[str, str]) -> bytes:
    """A BagIt manifest: `<hex>  <path>` lines (two spaces, as sha256sum -c reads them)."""
    return "".join(f"{d}  {p}\n" for p, d in sorted(digests.items())).encode("utf-8")


def bag_info(fields: list[tuple[str, str]]) -> bytes:
    lines = [f"{k}: {' '.join(str(v).split())}\n" for k, v in fields]
    return "".join(lines).encode("utf-8")


def bagit_txt() -> bytes:
    return f"BagIt-Version: {BAGIT_VERSION}\nTag-File-Character-Encoding: UTF-8\n".encode()


def tag_manifests(tags: dict[str, bytes]) -> dict[str, bytes]:
    out = {}
    for alg in PAYLOAD_ALGORITHMS:
        digests = {p: hashlib.new(alg, b).hexdigest() for p, b in tags.items()}
        out[f"tagmanifest-{alg}.txt"] = "".join(
            f"{d} {p}\n" for p, d in sorted(digests.items())
        ).encode("utf-8")
    return out


def json_bytes(value: Any) -> bytes:
    """Readable JSON (these files are pinned by digest; only package.json is canonical).

    The bytes are json.dumps(indent=2, ensure_ascii=False, sort_keys=True)'s and a newline;
    orjson writes them (a package carries a proof for every entry: json's indenting encoder is
    pure Python) where it writes what json writes (core/json_exact.py: not a float outside
    [1e-4, 1e16), NaN or an infinity, not another type), or json does."""
    if orjson_writes_as_json(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                                | orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:  # a big integer, a key that is not a string, a surrogate
            pass
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


# Writers ---------------------------------------------------------------------------------------

COPY_CHUNK = 256 << 10


class Reader(Protocol):
    def read(self, size: int = -1) -> bytes: ...


class BagWriter(Protocol):
    def add_stream(self, rel: str, size: int, reader: Reader) -> None: ...
    def add_bytes(self, rel: str, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


def writer_for(output: Path, mtime: float | None = None) -> BagWriter:
    """A writer for `output`, after clearing a partial package an interrupted export left."""
    clear_stale_partial(output)
    suffix = output.suffix.lower()
    if suffix == ".zip":
        return ZipWriter(output)
    if suffix == ".tar":
        return TarWriter(output, mtime or time.time())
    return FolderWriter(output)


def _partial(output: Path) -> Path:
    return output.with_name(f".{output.name}.custody-partial")


def _hold(path: Path) -> int:
    """Lock the partial package at `path` (file or folder) for as long as the returned file
    descriptor stays open: the lock is what tells a live export's partial from a dead one's."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CustodyError(
            f"another export is writing {path.name}", hint="wait for it to finish"
        ) from None
    return fd


def clear_stale_partial(output: Path) -> bool:
    """Remove `.NAME.custody-partial` if the export that wrote it is gone (its lock is free), so
    an interrupted export never blocks the next one; refuse if an export is still writing it."""
    partial = _partial(output)
    if not os.path.lexists(partial):
        return False
    if partial.is_symlink():
        raise CustodyError(f"{partial} is a symbolic link, not a partial package; remove it")
    fd = _hold(partial)
    try:
        if partial.is_dir():
            shutil.rmtree(partial)
        else:
            partial.unlink()
    finally:
        os.close(fd)
    return True


def _release(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _place(partial: Path, output: Path) -> None:
    """Move the finished bag into place, never over something that appeared meanwhile."""
    if os.path.lexists(output):
        raise CustodyError(f"{output} appeared while exporting; left it alone")
    os.rename(partial, output)


class FolderWriter:
    """Writes into a hidden folder beside `output`, renamed into place when complete."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.root = _partial(output)
        self.root.mkdir(mode=0o700)
        self.lock: int | None = _hold(self.root)

    def _open(self, rel: str) -> BinaryIO:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return open(target, "xb")  # noqa: SIM115 (closed by the caller)

    def add_stream(self, rel: str, size: int, reader: Reader) -> None:
        with self._open(rel) as out:
            while chunk := reader.read(COPY_CHUNK):
                out.write(chunk)

    def add_bytes(self, rel: str, data: bytes) -> None:
        with self._open(rel) as out:
            out.write(data)

    def commit(self) -> None:
        _place(self.root, self.output)
        _release(self.lock)

    def abort(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        _release(self.lock)


class ZipWriter:
    """A zip (stored, not compressed: media does not compress) whose members sit in one folder
    named after the file (RFC 8493 §4)."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.partial = _partial(output)
        self.base = output.stem
        self.zf = zipfile.ZipFile(self.partial, "x", zipfile.ZIP_STORED, allowZip64=True)
        self.lock: int | None = _hold(self.partial)

    def _info(self, rel: str, size: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(f"{self.base}/{rel}", time.gmtime()[:6])
        info.external_attr = 0o100644 << 16
        info.file_size = size
        return info

    def add_stream(self, rel: str, size: int, reader: Reader) -> None:
        with self.zf.open(self._info(rel, size), "w", force_zip64=size >= 1 << 31) as out:
            while chunk := reader.read(COPY_CHUNK):
                out.write(chunk)

    def add_bytes(self, rel: str, data: bytes) -> None:
        self.zf.writestr(self._info(rel, len(data)), data)

    def commit(self) -> None:
        self.zf.close()
        _place(self.partial, self.output)
        _release(self.lock)

    def abort(self) -> None:
        # Closing writes the central directory, which fails on a full disk: drop the file anyway.
        try:
            self.zf.close()
        except (OSError, ValueError):
            if self.zf.fp is not None:
                with contextlib.suppress(OSError):
                    self.zf.fp.close()
        self.partial.unlink(missing_ok=True)
        _release(self.lock)


class TarWriter:
    """A POSIX (pax) tar whose members sit in one folder named after the file."""

    def __init__(self, output: Path, mtime: float) -> None:
        self.output = output
        self.partial = _partial(output)
        self.base = output.stem
        self.mtime = int(mtime)
        self.tf = tarfile.open(self.partial, "x", format=tarfile.PAX_FORMAT)
        self.lock: int | None = _hold(self.partial)

    def _info(self, rel: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(f"{self.base}/{rel}")
        info.size, info.mode, info.mtime = size, 0o644, self.mtime
        return info

    def add_stream(self, rel: str, size: int, reader: Reader) -> None:
        self.tf.addfile(self._info(rel, size), _Exactly(reader, size))

    def add_bytes(self, rel: str, data: bytes) -> None:
        self.tf.addfile(self._info(rel, len(data)), io.BytesIO(data))

    def commit(self) -> None:
        self.tf.close()
        _place(self.partial, self.output)
        _release(self.lock)

    def abort(self) -> None:
        # Closing writes the end-of-archive blocks, which fails on a full disk: drop it anyway.
        try:
            self.tf.close()
        except OSError:
            with contextlib.suppress(OSError):
                self.tf.fileobj.close()
        self.partial.unlink(missing_ok=True)
        _release(self.lock)


class Prefetch:
    """Reads ahead from `reader` on a second thread (where a verifying reader hashes what it reads,
    hashlib releasing the GIL) while the caller writes: hashing and writing overlap."""

    def __init__(self, reader: Reader, depth: int = 3) -> None:
        self._reader = reader
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._chunk = b""
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._run, name="export-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._reader.read(COPY_CHUNK)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._put(exc)

    def _put(self, value: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        """Exactly `size` bytes (all that is left with -1), fewer only at the end."""
        pieces: list[bytes] = []
        want = size
        while want != 0:
            if self._pos >= len(self._chunk):
                if self._done:
                    break
                got = self._queue.get()
                if isinstance(got, BaseException):
                    self._done = True
                    raise got
                self._chunk, self._pos = got, 0
                if not got:
                    self._done = True
                    break
            end = len(self._chunk) if want < 0 else min(len(self._chunk), self._pos + want)
            piece = self._chunk if (self._pos, end) == (0, len(self._chunk)) else (
                self._chunk[self._pos:end])
            pieces.append(piece)
            self._pos = end
            if want > 0:
                want -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Exactly:
    """Hands tarfile exactly `size` bytes, then reads on to the end so a verifying reader checks
    its digest (tarfile itself never reads past the size it was told)."""

    def __init__(self, reader: Reader, size: int) -> None:
        self._reader = reader
        self._left = size

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(min(n, self._left) if n >= 0 else self._left)
        self._left -= len(data)
        if self._left == 0 and self._reader.read(1):
            raise CustodyError("an object is longer than its recorded size")
        return data
