"""The metadata worker: one persistent child process that runs every reader, and its supervisor.

The child owns python-magic, exifread and one stay-open ExifTool and limits its own address space;
the parent gives each file a deadline and kills the child's whole process group when it passes.
The child is a fresh interpreter (exec'd, not forked: none of the parent's memory, such as loaded
keys) with an allow-listed environment (custody/isolation.py: no passphrase) and no inherited file
descriptors but its end of the pipe.
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata as dist
from multiprocessing.connection import Connection
from typing import Any

import exifread
import exiftool
import magic
from exifread.core.exceptions import ExifNotFound

from custody.metadata.isolation import reader_environment

from . import images, jpeg, video
from .provenance import c2pa_version, read_c2pa
from .record import exiftool_can_wait, kind_of, one_line

START_TIMEOUT = 60.0  # spawning Python and ExifTool; not counted against a file's time limit
EXIFTOOL_ARGS = ["-G1", "-a", "-n", "-api", "LargeFileSupport=1"]
Message = dict[str, Any]
Extract = Callable[..., Iterator[Message]]  # (path, tools[, mode=])


# ---- in the child ------------------------------------------------------------------------------


class ExifToolFailed(Exception):
    """ExifTool answered with no metadata; the message is what it said."""


class Tools:
    """The readers as the child holds them: versions, and the one stay-open ExifTool process."""

    def __init__(self, exiftool_path: str, c2pa_trust: dict[str, Any] | None = None) -> None:
        self.exiftool_path = exiftool_path
        self.c2pa_trust = c2pa_trust  # {"pem", "sha256"}: the C2PA trust anchors, or None
        self.c2pa_version = c2pa_version()  # loads c2pa's native library under the memory limit
        self.helper: exiftool.ExifToolHelper | None = None
        self.exiftool_version: str | None = None
        self.exiftool_error: str | None = None
        self.magic_version = f"{dist.version('python-magic')} (libmagic {_libmagic_version()})"
        self.exifread_version = getattr(exifread, "__version__", None) or dist.version("ExifRead")
        self._start_exiftool()
        # The look-alike hashes' numpy, scipy and Pillow are loaded for the first image or video
        # only (PyAV for the first video), so a worker that meets none stays small and starts
        # fast; always after the memory limit is set, so their reservations count within it.
        self._perceptual: Any = None
        self.perceptual_error = ""

    @property
    def perceptual_pending(self) -> bool:
        """True until the first attempt to import the perceptual module."""
        return self._perceptual is None and not self.perceptual_error

    @property
    def perceptual(self) -> Any:
        """custody.metadata.perceptual, imported on first use; None if it cannot load."""
        if self._perceptual is None and not self.perceptual_error:
            try:
                self._perceptual = importlib.import_module("custody.metadata.perceptual")
            except Exception as error:  # recorded on every image and video as perceptual's error
                self.perceptual_error = f"could not load: {one_line(error)}"
        return self._perceptual

    def _start_exiftool(self) -> None:
        try:
            helper = exiftool.ExifToolHelper(
                executable=self.exiftool_path,
                common_args=EXIFTOOL_ARGS,
                check_execute=False,
                encoding="utf-8",
                config_file="",  # no ~/.ExifTool_config: the same tags whoever runs it
            )
            helper.run()
        except FileNotFoundError:
            self.exiftool_error = (
                f"not found ({self.exiftool_path}); install ExifTool (libimage-exiftool-perl)"
            )
            return
        except Exception as error:  # ExifTool would not start: recorded on every file
            self.exiftool_error = f"did not start: {one_line(error)}"
            return
        self.helper, self.exiftool_version, self.exiftool_error = helper, helper.version, None

    def exiftool_metadata(self, path: str) -> dict[str, Any]:
        if self.helper is None or not self.helper.running:
            self._start_exiftool()
        if self.helper is None:
            raise ExifToolFailed(self.exiftool_error or "not running")
        try:
            result = self.helper.get_metadata(path)
        except exiftool.exceptions.ExifToolOutputEmptyError:
            stderr = " ".join(str(self.helper.last_stderr or "").split())
            raise ExifToolFailed(stderr or "no output") from None
        except Exception:
            self.close()  # a broken pipe or a dead process: start afresh for the next file
            raise
        if not result or not isinstance(result[0], dict):
            raise ExifToolFailed("no output")
        return result[0]

    def close(self) -> None:
        if self.helper is not None:
            try:
                self.helper.terminate()
            except Exception:  # already dead; nothing left to stop
                pass
            self.helper = None


def _libmagic_version() -> str:
    number = int(getattr(magic, "version", lambda: 0)())
    return f"{number // 100}.{number % 100:02d}" if number else "unknown"


class _ExifreadLog(logging.Handler):
    """exifread reports damage through its logger, not by raising: collect it as errors."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, ExifNotFound):  # no EXIF at all: not an error
            return
        if record.levelno >= logging.WARNING:
            text = " ".join(record.getMessage().split())
            if text not in self.messages and len(self.messages) < 20:
                self.messages.append(text)


def read_exifread(path: str, version: str) -> dict[str, Any]:
    log = _ExifreadLog()
    logger = logging.getLogger("exifread")
    logger.addHandler(log)
    try:
        with open(path, "rb") as handle:
            tags = exifread.process_file(handle, details=False, extract_thumbnail=False)
        raw, fields = images.raw_tags(tags), images.fields(tags)
    except Exception as error:  # exifread raises on some HEICs and damaged files: ExifTool steps in
        errors = [one_line(error), *log.messages]
        return {"version": version, "raw": {}, "fields": None, "errors": errors}
    finally:
        logger.removeHandler(log)
    return {"version": version, "raw": raw, "fields": fields, "errors": log.messages}


def read_exiftool(path: str, tools: Tools) -> dict[str, Any]:
    if "\n" in path or "\r" in path:  # pyexiftool passes arguments one per line
        return {"version": None, "raw": None, "fields": None, "errors": ["path has a line break"]}
    try:
        meta = tools.exiftool_metadata(path)
    except ExifToolFailed as error:
        return {"version": tools.exiftool_version, "raw": None, "fields": None,
                "errors": [" ".join(str(error).split())]}  # fmt: skip
    except Exception as error:  # recorded; the file is still preserved by the caller
        return {"version": tools.exiftool_version, "raw": None, "fields": None,
                "errors": [one_line(error)]}  # fmt: skip
    try:
        raw, fields = video.raw_tags(meta), video.fields(meta)
    except Exception as error:  # a value shaped as we never saw: keep what ExifTool said
        return {"version": tools.exiftool_version, "raw": video.raw_tags(meta), "fields": None,
                "errors": [f"normalising: {one_line(error)}", *video.problems(meta)]}  # fmt: skip
    return {"version": tools.exiftool_version, "raw": raw, "fields": fields,
            "errors": video.problems(meta)}  # fmt: skip


FULL, FAST, EXIFTOOL_ONLY = "full", "fast", "exiftool"  # a request's `mode`


def extract(path: str, tools: Tools, mode: str = FULL) -> Iterator[Message]:
    """Run the readers on one file, announcing each before it starts (so a time-out names it).

    `mode` FAST: a JPEG that exifread and the marker walk read completely is not given to
    ExifTool (the record says `deferred`; ExifTool reads it later, docs/METADATA.md "The fast
    path"); EXIFTOOL_ONLY: ExifTool's report alone (that later reading)."""
    yield {"type": "begin", "stage": "file"}
    try:
        st_mode = os.stat(path).st_mode
    except OSError as error:
        yield {"type": "error", "text": one_line(error)}
        return
    if not stat.S_ISREG(st_mode):  # ExifTool would scan a folder; a FIFO would block every reader
        yield {"type": "error", "text": "not a regular file"}
        return
    if mode == EXIFTOOL_ONLY:
        yield from _exiftool_stage(path, tools)
        return
    yield {"type": "begin", "stage": "python-magic"}
    mime, errors = None, []
    try:
        mime = magic.from_file(path, mime=True)
    except Exception as error:  # libmagic failed: mime falls back to application/octet-stream
        errors.append(one_line(error))
    payload = {"version": tools.magic_version, "mime": mime, "errors": errors}
    yield {"type": "part", "stage": "python-magic", "payload": payload}
    exif: dict[str, Any] = {}
    if kind_of(mime or "") == "image":
        yield {"type": "begin", "stage": "exifread"}
        exif = read_exifread(path, tools.exifread_version)
        yield {"type": "part", "stage": "exifread", "payload": exif}
    if mode == FAST and mime == "image/jpeg":
        yield {"type": "begin", "stage": "structure"}
        walked = jpeg.payload(path)
        yield {"type": "part", "stage": "structure", "payload": walked}
        if exiftool_can_wait({"exifread": exif, "structure": walked}):
            yield {"type": "part", "stage": "deferred", "payload": {"readers": ["exiftool"]}}
        else:
            yield from _exiftool_stage(path, tools)
    else:
        yield from _exiftool_stage(path, tools)
    yield {"type": "begin", "stage": "c2pa"}
    payload = read_c2pa(path, tools.c2pa_trust, tools.c2pa_version)
    yield {"type": "part", "stage": "c2pa", "payload": payload}
    if kind_of(mime or "") in ("image", "video"):  # look-alike hashes (docs/SIMILAR.md)
        yield {"type": "begin", "stage": "perceptual"}
        if tools.perceptual_pending:  # its first import is start-up time, not this file's
            yield {"type": "loading"}
            tools.perceptual  # noqa: B018 - the property imports it
            yield {"type": "loaded"}
        if tools.perceptual is None:
            payload = {"version": None, "errors": [tools.perceptual_error]}
        else:
            payload = tools.perceptual.payload(path, kind_of(mime or ""))
        yield {"type": "part", "stage": "perceptual", "payload": payload}


def _exiftool_stage(path: str, tools: Tools) -> Iterator[Message]:
    yield {"type": "begin", "stage": "exiftool"}
    if tools.exiftool_error and tools.helper is None:
        payload = {"version": None, "raw": None, "fields": None, "errors": [tools.exiftool_error]}
    else:
        payload = read_exiftool(path, tools)
    yield {"type": "part", "stage": "exiftool", "payload": payload}


def _send(conn: Connection, message: Message) -> None:
    conn.send_bytes(json.dumps(message, allow_nan=False).encode("utf-8"))


def serve(conn: Connection, memory_limit: int | None, exiftool_path: str, run: Extract,
          c2pa_trust: dict[str, Any] | None = None) -> None:
    """The child's main loop: one request at a time until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the worker stops
    if memory_limit:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # ExifTool inherits it too
    # Its warnings become record errors, and nothing of it reaches the terminal. (Its debug-level
    # InvalidExif is not collected: it also fires on files without EXIF, such as some HEICs.)
    logging.getLogger("exifread").propagate = False
    tools = Tools(exiftool_path, c2pa_trust)
    _send(conn, {"type": "ready"})
    try:
        while True:
            try:
                request = json.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            try:
                asked = request.get("mode", FULL)  # a custom `run` need not know modes
                for message in run(request["path"], tools, **({} if asked == FULL else
                                                                {"mode": asked})):
                    _send(conn, message)
            except Exception as error:  # MemoryError included: reported, and the worker lives on
                _send(conn, {"type": "error", "text": one_line(error)})
            _send(conn, {"type": "done"})
    finally:
        tools.close()


def child_main(spec: str) -> None:
    """Entry of the exec'd child (see Worker._start): the pipe's descriptor, limits, the reader."""
    args = json.loads(spec)
    module, _, name = args["run"].partition(":")
    run: Any = importlib.import_module(module)
    for part in name.split("."):
        run = getattr(run, part)
    serve(Connection(args["fd"]), args["memory_limit"], args["exiftool"], run,
          args.get("c2pa_trust"))


# The child's command: the parent's sys.path (so it runs this same code), then child_main. `-I`
# ignores PYTHON* variables and the user's site folder; the path is passed explicitly instead.
_CHILD_CODE = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from custody.metadata.worker import child_main; child_main(sys.argv[2])"
)


# ---- in the parent -----------------------------------------------------------------------------


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _wait(process: subprocess.Popen[bytes], seconds: float) -> None:
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


class Worker:
    """Supervises the child: starts it lazily, times each file, kills and forgets it when stuck."""

    def __init__(self, timeout: float, memory_limit: int | None, exiftool_path: str, run: Extract,
                 c2pa_trust: dict[str, Any] | None = None):
        self.timeout = timeout
        self.c2pa_trust = c2pa_trust
        self.memory_limit = memory_limit
        self.exiftool_path = exiftool_path
        self.run = run
        self._process: Any = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self) -> str | None:
        """Start the child and wait until it is ready; an error string if it could not."""
        ours, theirs = multiprocessing.Pipe()  # a socket pair on POSIX
        spec = {"fd": theirs.fileno(), "memory_limit": self.memory_limit,
                "exiftool": self.exiftool_path,
                "run": f"{self.run.__module__}:{self.run.__qualname__}",
                "c2pa_trust": self.c2pa_trust}  # fmt: skip
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", _CHILD_CODE, json.dumps(sys.path), json.dumps(spec)],
                env=reader_environment(),
                pass_fds=(theirs.fileno(),),  # and nothing else: close_fds is on
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, killed with its ExifTool
            )
        except OSError as error:
            return f"worker: could not start: {one_line(error)}"
        finally:
            theirs.close()
        self._process, self._conn = process, ours
        try:
            if not ours.poll(START_TIMEOUT):
                self.kill()
                return f"worker: did not start within {START_TIMEOUT:g} s"
            json.loads(ours.recv_bytes())
        except (EOFError, OSError, ValueError):
            code = self.kill(grace=2.0)
            return f"worker: exited while starting ({_describe_exit(code)})"
        return None

    def kill(self, grace: float = 0.0) -> int | None:
        """Kill the child and its process group (ExifTool with it); its exit code.

        With a grace period, a child that is already dying is first given time to exit, so its own
        exit status (a signal, say) is what gets reported.
        """
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if grace:
            _wait(process, grace)
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # group id = its pid (a new session)
            except (ProcessLookupError, PermissionError):
                pass  # already gone
            process.kill()
        _wait(process, 5)
        code: int | None = process.returncode
        return code

    def ask_to_stop(self) -> None:
        """Close our end of the pipe: the child stops ExifTool and exits (close() reaps it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Let the child stop ExifTool and exit; kill it if it does not."""
        process, conn = self._process, self._conn
        if process is None:
            return
        if conn is not None:
            conn.close()
            self._conn = None
        _wait(process, 5)
        self.kill()

    def start(self) -> str | None:
        """Have a live child: start one unless running; an error string if it could not."""
        if self._process is None or self._process.poll() is not None:
            if self._process is not None:
                self.kill()
            return self._start()
        return None

    def read(self, path: str, mode: str = FULL) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Each reader's report for one file, and the supervisor's own errors."""
        problem = self.start()
        if problem is not None:
            return {}, [problem]
        assert self._conn is not None
        conn = self._conn
        parts: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        stage = "worker"
        deadline = time.monotonic() + self.timeout
        paused = self.timeout
        try:
            _send(conn, {"path": path} if mode == FULL else {"path": path, "mode": mode})
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not conn.poll(remaining):
                    self.kill()
                    errors.append(f"{stage}: timed out after {self.timeout:g} s")
                    return parts, errors
                message = json.loads(conn.recv_bytes())
                if message["type"] == "loading":  # a lazy import: timed as start-up is
                    paused = deadline - time.monotonic()
                    deadline = time.monotonic() + START_TIMEOUT
                elif message["type"] == "loaded":
                    deadline = time.monotonic() + paused
                elif message["type"] == "begin":
                    stage = message["stage"]
                elif message["type"] == "part":
                    parts[message["stage"]] = message["payload"]
                elif message["type"] == "error":
                    errors.append(f"{stage}: {message['text']}")
                elif message["type"] == "done":
                    return parts, errors
        except (EOFError, OSError):
            code = self.kill(grace=2.0)
            errors.append(f"{stage}: worker died ({_describe_exit(code)})")
            return parts, errors
        except (ValueError, KeyError, TypeError):
            self.kill()
            errors.append(f"{stage}: worker sent a malformed message")
            return parts, errors
