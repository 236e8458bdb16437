"""A real upload server in a subprocess on a free loopback port, and signed upload statements."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.ops import dryrun
from custody.ops.ingest import Claims
from custody.ops.statements import statement_file
from custody.service.landing import ingest_details, metadata_document
from custody.service.push import nameless

from .conftest import ARCHIVE_PASSPHRASE

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real server on 127.0.0.1 that can be SIGKILLed and started again on the same port:
    `custody serve` (RFC 9421 request signatures), or with `stand_in=True` the upload routes
    alone behind tests/upload_server.py's stand-in authentication (for tuspy, which cannot sign
    each request)."""

    def __init__(self, archive: Path, upload_dir: Path, expire_seconds: int = 3600, *,
                 stand_in: bool = False) -> None:
        self.archive, self.upload_dir, self.expire = archive, upload_dir, expire_seconds
        self.stand_in = stand_in
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE}
        if self.stand_in:
            args = ["-m", "tests.upload_server", str(self.archive), str(self.upload_dir),
                    str(self.port), str(self.expire)]
        else:
            args = ["-m", "custody", "--archive", str(self.archive), "serve", "--listen",
                    f"127.0.0.1:{self.port}", "--rate", "1000", "--burst", "1000",
                    "--upload-dir", str(self.upload_dir), "--upload-expire", str(self.expire),
                    "--access-log", str(self.upload_dir.parent / "access.log")]
        self.proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited {self.proc.returncode}")
            try:
                httpx.options(f"{self.url}/uploads/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the upload server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    stop = kill


def origin(archive: Path) -> str:
    return str(json.loads((archive / "custody.json").read_text())["origin"])


def upload_statement(archive: Path, key: SigningKey, path: Path, reader, *,
                     action: str = "ingest", data: bytes | None = None) -> tuple[str, str]:
    """(statement file text, statement id) of an ingest of `path` (or of bytes `data` as if they
    were its content), signed by `key` as `custody push` signs it."""
    content = data if data is not None else path.read_bytes()
    digests = dryrun.hashed(io.BytesIO(content)).digests
    with nameless(path, path.parent / ".reading", hashlib.sha256(path.read_bytes())
                  .hexdigest()) as same:
        document = metadata_document(reader, same)
    details = ingest_details(digests, Claims(name=path.name), document,
                             batch=str(uuid.uuid4()))
    if action == "sighting":
        details = {k: v for k, v in details.items() if k not in ("mime", "metadata_sha256")}
    statement = entries.Statement(
        log=origin(archive), actor=key.key_id, action=action, item=digests.sha256,
        details=details, time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        nonce=secrets.token_hex(16))
    signed = entries.sign_statement(statement, key)
    return json.dumps(statement_file(signed)), signed.statement_id


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
