"""Starting the real `custody serve` for tests: a subprocess, or uvicorn in a thread."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from tests.conftest import ARCHIVE_PASSPHRASE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(base: str, proc: subprocess.Popen[bytes] | None = None,
                  timeout: float = 90) -> None:  # a loaded CI machine starts slowly
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"custody serve exited {proc.returncode}")
        try:
            httpx.get(base + "/openapi.json", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"no server on {base}")


class Subprocess:
    """`python -m custody serve --listen 127.0.0.1:PORT ...` with its stderr kept in a file."""

    def __init__(self, archive: Path, log: Path, *args: str, env: dict[str, str] | None = None,
                 start_timeout: float = 30):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "custody", "--archive", str(archive), "serve", "--listen",
             f"127.0.0.1:{self.port}", *args],
            env={**os.environ, "CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE, **(env or {})}, stdout=subprocess.DEVNULL, stderr=self._err,
            stdin=subprocess.DEVNULL)
        wait_until_up(self.base, self.proc, start_timeout)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


class Threaded:
    """The app of `custody serve` on uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until_up(self.base)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
