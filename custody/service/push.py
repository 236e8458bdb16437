"""`custody push`: the field client. Hash and read metadata here, sign the ingest statement here,
send the bytes over tus, and resume after any interruption from a small resume file.

A small tus client on httpx rather than tuspy: every request must carry its own RFC 9421
signature (a fresh nonce, a Content-Digest of that chunk), and tuspy sends fixed headers with
module-level `requests` calls that no auth hook reaches (docs/SERVICE.md, "custody push").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.errors import UsageError
from custody.ops import dryrun
from custody.ops.ingest import Claims, Found, find_files, shown
from custody.ops.statements import statement_file
from custody.service.landing import ingest_details, metadata_document
from custody.service.uploads import MAX_CHUNK

TUS = {"Tus-Resumable": "1.0.0"}
DEFAULT_CHUNK = 4 << 20  # 4 MiB a PATCH: each is signed and fsynced as one piece
RETRIES = 6  # tries of one request through network errors, 0.5 s doubling (about 30 s)


@dataclass(slots=True)
class PushResult:
    """One file's outcome, as `--json` prints it."""

    path: str
    sha256: str | None = None
    status: str = "failed"  # new, present or failed
    bytes_sent: int = 0
    bytes_skipped: int = 0
    seq: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "status": self.status,
                               "bytes_sent": self.bytes_sent,
                               "bytes_skipped": self.bytes_skipped, "seq": self.seq}
        if self.error is not None:
            out["error"] = self.error
        return out


class PushError(Exception):
    """This file could not be pushed: one line."""


def resume_dir() -> Path:
    """Where resume files live: $XDG_CACHE_HOME/custody/push, else ~/.cache/custody/push."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "custody" / "push"


class ResumeFile:
    """File digest -> the upload URL it is being sent to, for one server and one key: a rerun
    asks that URL for its offset and sends only the rest. Written atomically after each change."""

    def __init__(self, folder: Path, server: str, key_id: str) -> None:
        name = hashlib.sha256(f"{server}\n{key_id}".encode()).hexdigest()[:32]
        self.path = folder / f"{name}.json"
        self.server, self.key_id = server, key_id
        try:
            self.uploads: dict[str, dict[str, str]] = json.loads(
                self.path.read_text())["uploads"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            self.uploads = {}

    def get(self, sha256: str) -> str | None:
        return self.uploads.get(sha256, {}).get("url")

    def set(self, sha256: str, url: str, path: str) -> None:
        self.uploads[sha256] = {"url": url, "path": path}
        self._save()

    def forget(self, sha256: str) -> None:
        if self.uploads.pop(sha256, None) is not None:
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        text = json.dumps({"server": self.server, "key_id": self.key_id,
                           "uploads": self.uploads}, indent=1)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.path)


class Pusher:
    """Push files to one server as one custodian: `push(paths)`; `on_result` hears each file."""

    def __init__(self, server: str, key: SigningKey, auth: httpx.Auth, reader: Any, *,
                 chunk_size: int = DEFAULT_CHUNK, case: str | None = None,
                 note: str | None = None, state_dir: Path | None = None,
                 on_result: Callable[[PushResult], None] | None = None,
                 retry_wait: float = 0.5) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK:
            raise UsageError(f"--chunk-size must be 1 to {MAX_CHUNK} bytes (the server's limit)")
        self.server = server.rstrip("/")
        self.key = key
        self.reader = reader
        self.chunk_size = chunk_size
        self.case, self.note = case, note
        self.batch = str(uuid.uuid4())
        self.on_result = on_result or (lambda _r: None)
        self.retry_wait = retry_wait
        self.http = httpx.Client(auth=auth, timeout=httpx.Timeout(300.0, connect=10.0))
        self.resume = ResumeFile(state_dir or resume_dir(), self.server, key.key_id)
        self._log: str | None = None

    def push(self, paths: list[Path]) -> list[PushResult]:
        skipped: list[dict[str, str]] = []
        files = find_files(paths, skipped)
        results = []
        try:
            for found in files:
                result = PushResult(path=shown(found.path))
                try:
                    self._one(found, result)
                except PushError as exc:
                    result.status, result.error = "failed", str(exc)
                except OSError as exc:
                    result.status, result.error = "failed", f"could not read: {exc.strerror}"
                results.append(result)
                self.on_result(result)
        finally:
            self.http.close()
        return results

    # -- one file ------------------------------------------------------------------------------

    def _one(self, found: Found, result: PushResult) -> None:
        with found.path.open("rb") as stream:
            digests = dryrun.hashed(stream).digests
        result.sha256 = sha256 = digests.sha256
        url = self.resume.get(sha256)
        if url is not None:
            head = self._request("HEAD", url)
            if head.status_code == 200 and self._finished(head, result, digests.size):
                self.resume.forget(sha256)
                return
            if head.status_code == 200:
                offset = int(head.headers["upload-offset"])
                result.bytes_skipped = offset
                self._send(found.path, url, offset, digests.size, result)
                return
            self.resume.forget(sha256)  # expired, refused or removed: start again
        if self._json("GET", f"/uploads/held/{sha256}")["held"]:
            result.status, result.bytes_skipped = "present", digests.size
            return
        url = self._create(found, digests)
        self.resume.set(sha256, url, str(found.path.absolute()))
        self._send(found.path, url, 0, digests.size, result)

    def _create(self, found: Found, digests: Any) -> str:
        with nameless(found.path, self.resume.path.parent / "reading", digests.sha256) as same:
            document = metadata_document(self.reader, same)
        st = found.path.stat()
        claims = Claims(name=found.path.name, path=str(found.path.absolute()),
                        mtime=datetime.fromtimestamp(st.st_mtime, UTC)
                        .strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        details = ingest_details(digests, claims, document, batch=self.batch, case=self.case,
                                 note=self.note)
        statement = entries.Statement(
            log=self._origin(), actor=self.key.key_id, action="ingest", item=digests.sha256,
            details=details, time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            nonce=secrets.token_hex(entries.NONCE_HEX // 2))
        text = json.dumps(statement_file(entries.sign_statement(statement, self.key)))
        meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                        for k, v in (("statement", text), ("filename", found.path.name)))
        response = self._request("POST", f"{self.server}/uploads/", headers={
            **TUS, "Upload-Length": str(digests.size), "Upload-Metadata": meta})
        if response.status_code != 201:
            raise PushError(_said(response))
        return str(httpx.URL(self.server).join(response.headers["location"]))

    def _send(self, path: Path, url: str, offset: int, size: int, result: PushResult) -> None:
        """PATCH from `offset` to the end, a chunk at a time, each with its SHA-256 checksum."""
        sha256 = result.sha256 or ""
        with path.open("rb") as stream:
            while True:
                stream.seek(offset)
                chunk = stream.read(self.chunk_size)
                response = self._request("PATCH", url, content=chunk, headers={
                    **TUS, "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Checksum": "sha256 " + base64.b64encode(
                        hashlib.sha256(chunk).digest()).decode()})
                if response.status_code in (409, 460):  # resync: ask where the upload stands
                    head = self._request("HEAD", url)
                    if head.status_code != 200:
                        self.resume.forget(sha256)
                        raise PushError(_said(head))
                    if self._finished(head, result, size):
                        self.resume.forget(sha256)
                        return
                    offset = int(head.headers["upload-offset"])
                    continue
                if response.status_code != 204:
                    if response.status_code in (404, 410, 422):  # gone or refused: start anew
                        self.resume.forget(sha256)
                    raise PushError(_said(response))
                result.bytes_sent += len(chunk)
                offset = int(response.headers["upload-offset"])
                if self._finished(response, result, size):
                    self.resume.forget(sha256)
                    return
                if offset >= size and not chunk:
                    raise PushError("the server took every byte but said nothing of the item")

    @staticmethod
    def _finished(response: httpx.Response, result: PushResult, size: int) -> bool:
        status = response.headers.get("custody-status")
        if status is None:
            return False
        result.status = status
        seq = response.headers.get("custody-seq")
        result.seq = int(seq) if seq is not None else None
        if result.bytes_sent == 0 and result.bytes_skipped == 0:
            result.bytes_skipped = size  # it all arrived in an earlier run
        return True

    # -- requests ------------------------------------------------------------------------------

    def _origin(self) -> str:
        if self._log is None:
            self._log = str(self._json("GET", "/uploads/")["log"])
        return self._log

    def _json(self, method: str, path: str) -> dict[str, Any]:
        response = self._request(method, f"{self.server}{path}")
        if response.status_code != 200:
            raise PushError(_said(response))
        body: dict[str, Any] = response.json()
        return body

    def _request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                 content: bytes | None = None) -> httpx.Response:
        """One request, retried through network errors and 429/5xx (each try signed anew)."""
        wait = self.retry_wait
        for attempt in range(RETRIES):
            try:
                response = self.http.request(method, url, headers={**TUS, **(headers or {})},
                                             content=content)
            except httpx.TransportError as exc:
                if attempt == RETRIES - 1:
                    raise PushError(f"network: {exc or type(exc).__name__}") from None
            else:
                if response.status_code not in (429, 502, 503, 504) or attempt == RETRIES - 1:
                    return response
            time.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")


@contextmanager
def nameless(path: Path, folder: Path, sha256: str) -> Iterator[Path]:
    """The file's bytes under a name without extension, as the archive reads them (an object
    or a partial upload has none, and ExifTool lets an extension decide what it cannot
    recognise): a hard link where the file system allows one, else a copy; removed after."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    same = folder / sha256
    same.unlink(missing_ok=True)
    try:
        os.link(path, same)
    except OSError:  # another file system (a memory card): copy it
        shutil.copyfile(path, same)
    try:
        yield same
    finally:
        same.unlink(missing_ok=True)


def _said(response: httpx.Response) -> str:
    """The server's one-line error, or its status."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def run(paths: list[Path], server: str, key: SigningKey, auth: httpx.Auth, *,
        chunk_size: int = DEFAULT_CHUNK, case: str | None = None, note: str | None = None,
        c2pa_trust: dict[str, Any] | None = None,
        on_result: Callable[[PushResult], None] | None = None) -> list[PushResult]:
    """Push `paths` (files and folders) with one metadata worker, as `custody push` does."""
    from custody.metadata import MetadataReader

    if not server.startswith(("http://", "https://")):
        raise UsageError(f"--server must be an http:// or https:// URL, not {server[:60]!r}")
    with MetadataReader(c2pa_trust=c2pa_trust) as reader:
        return Pusher(server, key, auth, reader, chunk_size=chunk_size, case=case, note=note,
                      on_result=on_result).push(paths)
