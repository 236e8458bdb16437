"""The S3 object store adapter (boto3): objects in a bucket with Object Lock, each version written
under COMPLIANCE retention, every read verified by SHA-256 here.

Layout (docs/FORMAT.md Appendix A.3): `<prefix>/sha256/ab/<64 hex>`, one key per object, in a
versioned bucket. A PUT is atomic in S3 (a key shows the whole object or none), so no temp key is
needed; the bytes are spooled to a local temporary file while the four digests are computed (the
key is their SHA-256), then uploaded with Content-MD5 (checked by every S3, radosgw included) and
the SHA-256 as the S3 checksum (checked by AWS and newer Ceph). Files of MULTIPART bytes or more go
up in parts, each part with its own MD5 and SHA-256. Interrupted multipart uploads are the
`unfinished_writes`.

Versions: the object is the newest version at its key that hashes to the key; a version that
does not (put over it, or planted before custody wrote it) and delete markers never hide it, and
are named by `quarantined` (kept: the bucket's history holds them).
Satisfies store.ports.ObjectStore.
"""

from __future__ import annotations

import atexit
import base64
import errno
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from store.local_objects import MultiHasher, VerifyingReader, is_sha256_hex
from store.ports import (
    CHUNK,
    BucketMissing,
    BucketWithoutLock,
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
    StoreAccessDenied,
    StoreFull,
    StoreUnavailable,
    StoreUnreachable,
)

MULTIPART = 64 << 20  # files this large or larger go up in parts
PART = 16 << 20
FRESH_KEPT = 4  # spooled copies kept after a put, for the metadata read that follows
UPLOAD_LANES = 4  # parts sent at once (each in memory while it goes)
DEFAULT_RETENTION_DAYS = 3650  # ten years: trials come years after the events (docs/BACKENDS.md)
MODE = "COMPLIANCE"  # no one, not even the account's root user, may shorten or remove it
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
           "ExpiredToken", "AllAccessDisabled"}
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where an archive's objects are: s3://BUCKET/PREFIX at an endpoint (None: AWS itself)."""

    bucket: str
    prefix: str
    endpoint: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint: str | None = None) -> S3Location:
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// address: {url!r}")
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        return cls(bucket, prefix.strip("/"), endpoint or None)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class S3ObjectStore:
    """Objects at `<prefix>/sha256/ab/<64 hex>` in a bucket with Object Lock.

    Credentials come from boto3's standard chain (AWS_* environment, profile, instance role);
    nothing secret is passed here or kept by custody. `spool` is the local folder for the
    temporary copy each put makes (default: the system's temporary folder)."""

    def __init__(self, location: S3Location, *, retention_days: int = DEFAULT_RETENTION_DAYS,
                 spool: Path | None = None, client: Any = None,
                 multipart_from: int = MULTIPART, part_size: int = PART) -> None:
        self.location = location
        self.multipart_from, self.part_size = multipart_from, part_size
        self.retention_days = retention_days
        self.spool = spool
        self.label = location.url
        self._base = f"{location.prefix}/sha256/" if location.prefix else "sha256/"
        self._client = client
        self._sound: dict[str, str] = {}  # the version each object was last read from, here
        # The spooled copies of the last objects put: the bytes hashed to their name as they were
        # written, so the read that follows an ingest (metadata) needs no download.
        self._fresh: OrderedDict[str, Path] = OrderedDict()
        self._fresh_lock = threading.Lock()  # puts may run in several threads of an ingest
        atexit.register(self._forget_fresh)

    @property
    def client(self) -> Any:
        if self._client is None:
            config = Config(
                connect_timeout=5, read_timeout=120,
                retries={"max_attempts": 3, "mode": "standard"},
                # our own checksums (Content-MD5, SHA-256) go on every write; botocore's default
                # CRC32 trailers are not understood by older radosgw
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            )
            self._client = boto3.client("s3", endpoint_url=self.location.endpoint, config=config)
        return self._client

    # Errors -------------------------------------------------------------------------------------

    def _unavailable(self, exc: Exception) -> StoreUnavailable | None:
        where = self.location.endpoint or "AWS S3"
        if isinstance(exc, EndpointConnectionError | BotoConnectionError):
            return StoreUnreachable(f"the S3 endpoint {where} cannot be reached")
        if isinstance(exc, NoCredentialsError):
            return StoreAccessDenied("no S3 credentials (set AWS_ACCESS_KEY_ID and "
                                     "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _DENIED:
                return StoreAccessDenied(f"{where} refuses these S3 credentials for bucket "
                                         f"{self.location.bucket} ({code})")
            if code == "NoSuchBucket":
                return BucketMissing(f"there is no bucket {self.location.bucket} at {where}")
        return None

    def _read_error(self, exc: Exception, what: str) -> ObjectUnreadable:
        return self._unavailable(exc) or ObjectUnreadable(f"cannot read {what}: {exc}")

    def _write_error(self, exc: Exception) -> ObjectWriteError:
        said = self._unavailable(exc)
        return ObjectWriteError(f"cannot store an object in {self.label}: {said or exc}")

    # Setting up ---------------------------------------------------------------------------------

    def probe(self) -> None:
        """Check, before anything is written, that the bucket is there, these credentials may
        use it, and it has Object Lock enabled; else the StoreUnavailable error that says why."""
        try:
            self.client.head_bucket(Bucket=self.location.bucket)
            config = self.client.get_object_lock_configuration(Bucket=self.location.bucket)
        except ClientError as exc:
            if _code(exc) == "ObjectLockConfigurationNotFoundError":
                raise self._no_lock() from None
            if _code(exc) in {"404", "NotFound"}:
                raise BucketMissing(f"there is no bucket {self.location.bucket} at "
                                    f"{self.location.endpoint or 'AWS S3'}") from None
            if _code(exc) == "403":
                raise StoreAccessDenied(f"{self.location.endpoint or 'AWS S3'} refuses these S3 "
                                        f"credentials for bucket {self.location.bucket}") from None
            raise self._read_error(exc, f"bucket {self.location.bucket}") from None
        except (BotoCoreError, OSError) as exc:
            raise self._read_error(exc, f"bucket {self.location.bucket}") from None
        enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise self._no_lock()

    def _no_lock(self) -> BucketWithoutLock:
        return BucketWithoutLock(f"bucket {self.location.bucket} has no Object Lock: its objects "
                                 "could be deleted (make a bucket with Object Lock enabled)")

    # Names --------------------------------------------------------------------------------------

    def key(self, sha256: str) -> str:
        if not is_sha256_hex(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return f"{self._base}{sha256[:2]}/{sha256}"

    def _versions(self, sha256: str) -> list[str]:
        """The version ids at the object's key, newest first (delete markers left out)."""
        key = self.key(sha256)
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.location.bucket, Prefix=key)
            found = [(v["LastModified"], v["VersionId"]) for page in pages
                     for v in page.get("Versions", []) if v["Key"] == key]
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._read_error(exc, f"object {sha256}") from None
        return [vid for _, vid in sorted(found, key=lambda f: f[0], reverse=True)]

    def _sound_version(self, sha256: str) -> tuple[str, int]:
        """(version id, size) of the newest version that hashes to the name."""
        versions = self._versions(sha256)
        if not versions:
            raise ObjectMissing(f"object {sha256} is missing")
        found = None
        for vid in versions:
            found = self._hash_version(sha256, vid)
            if found[0] == sha256:
                self._sound[sha256] = vid
                return vid, found[1]
        raise ObjectCorrupt(f"object {sha256} is corrupt: its content hashes to "
                            f"{found[0] if found else None}")

    def _get(self, sha256: str, version: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.location.bucket, Key=self.key(sha256),
                                          VersionId=version)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise ObjectMissing(f"object {sha256} is missing") from None
            raise self._read_error(exc, f"object {sha256}") from None
        except (BotoCoreError, OSError) as exc:
            raise self._read_error(exc, f"object {sha256}") from None

    def _hash_version(self, sha256: str, version: str) -> tuple[str, int]:
        body = self._get(sha256, version)["Body"]
        h, size = hashlib.sha256(), 0
        try:
            while chunk := body.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        except (BotoCoreError, OSError) as exc:
            raise self._read_error(exc, f"object {sha256}") from None
        finally:
            body.close()
        return h.hexdigest(), size

    # The port -----------------------------------------------------------------------------------

    def has(self, sha256: str) -> bool:
        return bool(self._versions(sha256))

    def put(self, stream: ByteSource) -> PutResult:
        """Spool while hashing, then upload under the SHA-256 with retention, unless a sound
        version is there already. Source read errors pass through; nothing is uploaded then."""
        try:
            handle, name = tempfile.mkstemp(dir=self.spool, prefix="put-")
        except OSError as exc:
            raise ObjectWriteError(f"cannot make a temporary file: {exc.strerror or exc}",
                                   exc.errno) from None
        stored: str | None = None
        try:
            with os.fdopen(handle, "w+b") as spool:
                digests = self._fill(spool, stream)
                try:
                    version, _ = self._sound_version(digests.sha256)
                    self._ensure_retention(self.key(digests.sha256), version)
                    stored = digests.sha256
                    return PutResult(digests=digests, created=False)
                except ObjectMissing:
                    replaced = None
                except ObjectCorrupt:
                    replaced = self._foreign(digests.sha256)
                except ObjectUnreadable as exc:
                    raise ObjectWriteError(f"cannot store an object in {self.label}: "
                                           f"{exc}") from None
                spool.seek(0)
                if digests.size >= self.multipart_from:
                    self._upload_parts(spool, digests)
                else:
                    self._upload_one(spool, digests)
                stored = digests.sha256
            return PutResult(digests=digests, created=True, replaced=replaced)
        finally:
            if stored is None:
                Path(name).unlink(missing_ok=True)
            else:
                self._keep_fresh(stored, Path(name))

    def _keep_fresh(self, sha256: str, path: Path) -> None:
        path.chmod(0o400)
        with self._fresh_lock:
            old = self._fresh.pop(sha256, None)
            self._fresh[sha256] = path
            evicted = [self._fresh.popitem(last=False)[1]
                       for _ in range(len(self._fresh) - FRESH_KEPT)]
        for stale in [*evicted, *([old] if old is not None else [])]:
            stale.unlink(missing_ok=True)

    def _forget_fresh(self) -> None:
        with self._fresh_lock:
            stale, self._fresh = list(self._fresh.values()), OrderedDict()
        for path in stale:
            path.unlink(missing_ok=True)

    def _fill(self, spool: IO[bytes], stream: ByteSource) -> Digests:
        hasher = MultiHasher()
        view = memoryview(bytearray(CHUNK))
        source = cast(ReadsInto, stream)
        while n := source.readinto(view):
            chunk = view[:n]
            hasher.update(chunk)
            try:
                spool.write(chunk)
            except OSError as exc:
                kind = StoreFull if exc.errno in {errno.ENOSPC, errno.EDQUOT} else ObjectWriteError
                raise kind(f"cannot spool an object before upload: {exc.strerror or exc}",
                           exc.errno) from None
        try:
            spool.flush()
        except OSError as exc:
            raise ObjectWriteError(f"cannot spool an object: {exc.strerror or exc}") from None
        return hasher.digests()

    def _lock(self) -> dict[str, Any]:
        if self.retention_days == 0:
            return {}  # only the contract tests' damage harness writes without retention
        until = datetime.now(UTC) + timedelta(days=self.retention_days)
        return {"ObjectLockMode": MODE, "ObjectLockRetainUntilDate": until}

    def _upload_one(self, spool: IO[bytes], d: Digests) -> None:
        try:
            self.client.put_object(
                Bucket=self.location.bucket, Key=self.key(d.sha256), Body=spool,
                ContentLength=d.size, ContentMD5=_b64(bytes.fromhex(d.md5)),
                ChecksumSHA256=_b64(bytes.fromhex(d.sha256)), **self._lock())
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._write_error(exc) from None

    def _upload_parts(self, spool: IO[bytes], d: Digests) -> None:
        bucket, key = self.location.bucket, self.key(d.sha256)
        try:
            upload = self.client.create_multipart_upload(
                Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", **self._lock())
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._write_error(exc) from None
        upload_id = upload["UploadId"]
        try:
            parts = self._send_parts(spool, bucket, key, upload_id)
            done = self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        except (ClientError, BotoCoreError, OSError) as exc:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError, OSError):
                pass  # left as an unfinished write: listed, harmless
            raise self._write_error(exc) from None
        self._ensure_retention(key, done.get("VersionId"))

    def _send_parts(self, spool: IO[bytes], bucket: str, key: str,
                    upload_id: str) -> list[dict[str, Any]]:
        """Upload the parts UPLOAD_LANES at a time (a part's round trip is mostly waiting on the
        store), at most UPLOAD_LANES parts in memory; the first failure is raised."""
        parts: list[dict[str, Any]] = []
        in_flight: deque[Future[dict[str, Any]]] = deque()
        with ThreadPoolExecutor(max_workers=UPLOAD_LANES) as lanes:
            number = 1
            while data := spool.read(self.part_size):
                if len(in_flight) >= UPLOAD_LANES:
                    parts.append(in_flight.popleft().result())
                in_flight.append(lanes.submit(self._send_part, bucket, key, upload_id, number,
                                              data))
                number += 1
            parts.extend(f.result() for f in in_flight)
        return parts

    def _send_part(self, bucket: str, key: str, upload_id: str, number: int,
                   data: bytes) -> dict[str, Any]:
        sha = _b64(hashlib.sha256(data).digest())
        done = self.client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
            ContentMD5=_b64(hashlib.md5(data).digest()), ChecksumSHA256=sha)
        return {"PartNumber": number, "ETag": done["ETag"], "ChecksumSHA256": sha}

    def _ensure_retention(self, key: str, version: str | None) -> None:
        """Set retention on a version that has none, or whose retention lapsed: radosgw 16 ignores
        the retention asked at CreateMultipartUpload (measured), and an object found already
        stored (a write cut off before this, another tool) must be held like a new one."""
        lock = self._lock()
        if not lock or version is None:
            return
        try:
            head = self.client.head_object(Bucket=self.location.bucket, Key=key, VersionId=version)
            until = head.get("ObjectLockRetainUntilDate")
            if head.get("ObjectLockMode") is None or until is None or until <= datetime.now(UTC):
                self.client.put_object_retention(
                    Bucket=self.location.bucket, Key=key, VersionId=version,
                    Retention={"Mode": lock["ObjectLockMode"],
                               "RetainUntilDate": lock["ObjectLockRetainUntilDate"]})
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._write_error(exc) from None

    def _foreign(self, sha256: str) -> SetAside:
        """The newest version at the name, which does not hold the object: kept where it is."""
        newest = self._versions(sha256)[0]
        found, size = self._hash_version(sha256, newest)
        return SetAside(path=self._version_path(sha256, newest), sha256=found, size=size)

    def _version_path(self, sha256: str, version: str) -> str:
        return f"{self.label}/{self.key(sha256)[len(self.location.prefix):].lstrip('/')}" \
               f"?versionId={version}"

    def open(self, sha256: str) -> VerifyingReader:
        version, _ = self._sound_version(sha256)
        body = _Body(self._get(sha256, version)["Body"], sha256, self)
        return VerifyingReader(cast(BinaryIO, body), sha256)

    def check(self, sha256: str) -> int:
        return self._sound_version(sha256)[1]

    keeps_retention = True  # Object Lock, per object version

    def retention(self, sha256: str) -> Retention:
        """Of the version reads use (as `check` just found it, when it did)."""
        version = self._sound.get(sha256) or self._sound_version(sha256)[0]
        try:
            head = self.client.head_object(Bucket=self.location.bucket, Key=self.key(sha256),
                                           VersionId=version)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._read_error(exc, f"object {sha256}") from None
        until = head.get("ObjectLockRetainUntilDate")
        return Retention(mode=head.get("ObjectLockMode"),
                         retain_until=_rfc3339(until) if until else None)

    @contextmanager
    def local_file(self, sha256: str) -> Iterator[Path]:
        """A verified temporary copy, removed on exit: the spooled copy of an object this store
        just put (hashed to its name as it was written), else a download checked as it is read."""
        with self._fresh_lock:
            fresh = self._fresh.pop(sha256, None)  # popped: no eviction can remove it now
        if fresh is not None:
            try:
                if fresh.exists() and self.has(sha256):  # still stored: a listing, no download
                    yield fresh
                    return
            finally:
                fresh.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(dir=self.spool, prefix="object-") as folder:
            path = Path(folder) / sha256
            with self.open(sha256) as reader, open(path, "wb") as out:
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
            path.chmod(0o400)
            yield path

    def __iter__(self) -> Iterator[str]:
        seen = ""
        for key in self._listing("list_object_versions", "Versions", "Key"):
            name = key.rsplit("/", 1)[-1]
            if name != seen and is_sha256_hex(name) and key == self.key(name):
                seen = name
                yield name

    def _listing(self, method: str, field: str, attribute: str) -> Iterator[str]:
        try:
            pages = self.client.get_paginator(method).paginate(
                Bucket=self.location.bucket, Prefix=self._base)
            for page in pages:
                for one in page.get(field, []) or []:
                    yield str(one[attribute])
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._read_error(exc, f"the objects in {self.label}") from None

    def quarantined(self) -> list[str]:
        """Versions at an object's key that do not hold it (kept by the bucket's history)."""
        counts: dict[str, int] = {}
        for key in self._listing("list_object_versions", "Versions", "Key"):
            counts[key] = counts.get(key, 0) + 1
        kept = []
        for key, count in sorted(counts.items()):
            name = key.rsplit("/", 1)[-1]
            if count < 2 or not is_sha256_hex(name):
                continue
            for version in self._versions(name):
                if self._hash_version(name, version)[0] != name:
                    kept.append(self._version_path(name, version))
        return kept

    def unfinished_writes(self) -> list[str]:
        """Multipart uploads begun and never completed (harmless: never an object)."""
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.location.bucket, Prefix=self._base)
            return sorted(f"s3://{self.location.bucket}/{u['Key']}?uploadId={u['UploadId']}"
                          for page in pages for u in page.get("Uploads", []) or [])
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._read_error(exc, f"the uploads in {self.label}") from None


class _Body:
    """One version's streaming body, its errors told as the port's (VerifyingReader hashes it)."""

    def __init__(self, body: Any, sha256: str, store: S3ObjectStore) -> None:
        self._body, self._sha256, self._store = body, sha256, store

    def read(self, size: int = -1, /) -> bytes:
        try:
            data: bytes = self._body.read(None if size < 0 else size)
        except (BotoCoreError, OSError) as exc:
            raise self._store._read_error(exc, f"object {self._sha256}") from None
        return data

    def close(self) -> None:
        self._body.close()
