"""The derivation worker: Pillow and ffmpeg run in a supervised child process, never in the
process that holds keys (docs/DERIVATIVES.md).

The child is exec'd like the metadata worker (a fresh interpreter, the allow-listed environment of
isolation.py, its own process group, an address-space limit) and given a deadline; past it the
whole group (ffmpeg with it) is killed. It reads the original's verified copy, writes the
derivative into a private folder and answers with one JSON line: what it ran, with which versions.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from importlib import metadata as dist
from pathlib import Path
from typing import Any

from custody.metadata.isolation import reader_environment

TIMEOUT = 600.0  # seconds a derivation may take (a transcode of a long video is slow on 2 cores)
MEMORY_LIMIT = 2 << 30  # ffmpeg's decoders and x264 need more than the metadata readers
INPUT, OUTPUT = "{input}", "{output}"  # how the record writes the files in `commands`
_FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-n"]
_BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
# The transcode presets: H.264 + AAC in MP4, one thread (x264's output then depends only on its
# version and these arguments), never upscaled, the aspect ratio kept.
PRESET_ARGS: dict[str, list[str]] = {
    "mp4-h264-720p": ["-vf", "scale=w='min(1280,iw)':h='min(720,ih)':"
                      "force_original_aspect_ratio=decrease:force_divisible_by=2"],
    "mp4-h264-480p": ["-vf", "scale=w='min(854,iw)':h='min(480,ih)':"
                      "force_original_aspect_ratio=decrease:force_divisible_by=2"],
    "mp4-h264-source": ["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"],
}
_ENCODE = ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-b:a", "128k", "-threads", "1", "-movflags", "+faststart"]


class Refused(Exception):
    """The derivation cannot be done; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Derivation:
    """What the child made: the file, its container, the versions and commands that made it."""

    path: Path
    format: str
    tools: dict[str, str]
    commands: list[list[str]]


# ---- in the child ------------------------------------------------------------------------------


def _ffmpeg_version() -> str:
    done = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=False)
    first = done.stdout.splitlines()[0] if done.stdout else ""
    if done.returncode != 0 or not first:
        raise Refused("ffmpeg is not installed (Debian package ffmpeg)")
    return first


def _duration(path: str) -> Decimal | None:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=False)
    try:
        return Decimal(done.stdout.strip())
    except ArithmeticError:
        return None


def _run_ffmpeg(args: list[str], source: str, target: str) -> None:
    real = [source if a == INPUT else target if a == OUTPUT else a for a in args]
    done = subprocess.run(real, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = " ".join(done.stderr.split())[:300] or f"exit status {done.returncode}"
        raise Refused(f"ffmpeg failed: {said}")
    if not os.path.exists(target) or os.path.getsize(target) == 0:
        raise Refused("ffmpeg wrote nothing")


def _picture(source: str, target: str, ops: list[dict[str, Any]]) -> None:
    """Redact and re-encode a picture as a PNG that holds only pixels (no metadata at all)."""
    import pillow_heif
    from PIL import Image, ImageDraw, ImageOps

    pillow_heif.register_heif_opener()  # phones' HEIC/HEIF photos
    with Image.open(source) as opened:
        opened.load()
        upright = ImageOps.exif_transpose(opened)  # boxes are in the picture as displayed
    mode = upright.mode if upright.mode in ("RGB", "RGBA", "L", "LA") else (
        "RGBA" if "transparency" in upright.info or upright.mode.endswith("A") else "RGB")
    picture = upright.convert(mode)
    for op in ops:
        if op["op"] != "redact":
            continue
        draw = ImageDraw.Draw(picture)
        for x, y, w, h in op["boxes"]:
            if x + w > picture.width or y + h > picture.height:
                raise Refused(f"box {x},{y},{w},{h} is outside the "
                              f"{picture.width}x{picture.height} picture")
            draw.rectangle((x, y, x + w - 1, y + h - 1), fill=op["fill"])
    # A new image from the raw pixels: nothing of the original's info (EXIF, XMP, ICC, text
    # chunks, thumbnails) can ride along into the derivative.
    clean = Image.frombytes(picture.mode, picture.size, picture.tobytes())
    clean.save(target, format="PNG")


def _video(source: str, folder: Path, ops: list[dict[str, Any]], ext: str,
           tools: dict[str, str]) -> tuple[Path, str, list[list[str]]]:
    tools["ffmpeg"] = _ffmpeg_version()
    names = {o["op"]: o for o in ops}
    duration = _duration(source)
    if "still" in names:
        at = names["still"]["at"]
        if duration is not None and Decimal(at) >= duration:
            raise Refused(f"--still {at} s is not inside the video ({duration} s long)")
        args = [*_FFMPEG, "-ss", at, "-i", INPUT, "-map", "0:v:0", "-frames:v", "1",
                "-map_metadata", "-1", *_BITEXACT, "-c:v", "png", "-f", "image2", OUTPUT]
        frame = folder / "frame.png"
        _run_ffmpeg(args, source, str(frame))
        from PIL import __version__ as pillow

        tools["Pillow"] = pillow
        target = folder / "derivative.png"
        _picture(str(frame), str(target), ops)
        return target, "png", [args]
    args = list(_FFMPEG)
    if "trim" in names:
        start, end = names["trim"]["start"], names["trim"]["end"]
        if duration is not None and (Decimal(start) >= duration or Decimal(end) > duration):
            raise Refused(f"--trim {start}-{end} is not inside the video ({duration} s long)")
        args += ["-ss", start, "-to", end]
    args += ["-i", INPUT, "-map", "0:v?", "-map", "0:a?"]
    if "strip-metadata" in names:
        args += ["-map_metadata", "-1", "-map_chapters", "-1", *_BITEXACT]
    if "transcode" in names:
        args += [*PRESET_ARGS[names["transcode"]["preset"]], *_ENCODE]
        ext = "mp4"
    else:
        args += ["-c", "copy"]
    args += ["-f", ext, OUTPUT]
    target = folder / f"derivative.{ext}"
    _run_ffmpeg(args, source, str(target))
    return target, ext, [args]


def derive_in_child(spec: dict[str, Any]) -> dict[str, Any]:
    """The child's work: the derivative written, and what made it."""
    folder = Path(spec["folder"])
    ops: list[dict[str, Any]] = spec["operations"]
    tools = {"custody": dist.version("custody")}
    if spec["kind"] == "image":
        from PIL import __version__ as pillow

        tools["Pillow"] = pillow
        target = folder / "derivative.png"
        _picture(spec["input"], str(target), ops)
        return {"path": str(target), "format": "png", "tools": tools, "commands": []}
    target, fmt, commands = _video(spec["input"], folder, ops, spec["container"], tools)
    return {"path": str(target), "format": fmt, "tools": tools, "commands": commands}


def child_main(raw: str) -> None:
    spec = json.loads(raw)
    limit = spec.get("memory_limit")
    if limit:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # ffmpeg inherits it
    try:
        answer = derive_in_child(spec)
    except Refused as refused:
        answer = {"error": str(refused)}
    except Exception as error:  # a hostile or damaged file: said in one line, the parent decides
        answer = {"error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"}
    sys.stdout.write(json.dumps(answer) + "\n")


_CHILD_CODE = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from custody.metadata.derive_worker import child_main; child_main(sys.argv[2])"
)


# ---- in the parent -----------------------------------------------------------------------------


def derive(source: Path, folder: Path, operations: list[dict[str, Any]], kind: str,
           container: str, timeout: float = TIMEOUT,
           memory_limit: int | None = MEMORY_LIMIT) -> Derivation:
    """Run the operations on `source` in a supervised child; the derivative is in `folder`.
    Raises Refused with one line when the child refuses, fails, dies or runs out of time."""
    spec = {"input": str(source), "folder": str(folder), "operations": operations, "kind": kind,
            "container": container, "memory_limit": memory_limit}
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", _CHILD_CODE, json.dumps(sys.path), json.dumps(spec)],
        env=reader_environment(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True)  # its own group, killed with ffmpeg
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise Refused(f"the derivation did not finish within {timeout:g} s") from None
    finally:
        _kill_group(process)  # nothing of it outlives the call
    try:
        answer = json.loads(out.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Refused(f"the derivation worker died (exit status {process.returncode})") from None
    if "error" in answer:
        raise Refused(str(answer["error"]))
    path = Path(answer["path"])
    if path.parent != folder or not path.is_file():
        raise Refused("the derivation worker named no derivative")
    return Derivation(path, str(answer["format"]), dict(answer["tools"]),
                      [list(c) for c in answer["commands"]])


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:  # the child's group outlives it while an ffmpeg it started still runs
        os.killpg(process.pid, signal.SIGKILL)  # group id = its pid (a new session)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.kill()
        process.wait(5)
