"""A video's poster frame for a report: one frame decoded by Debian's ffmpeg in a child process.

The video is hostile input, so the decoder runs apart: its own process group, an allow-listed
environment (no passphrase), one thread, a memory and a time limit; what it returns is a PNG that
Pillow then decodes under its pixel limit and scales like a photo's preview.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

from custody.metadata.isolation import reader_environment

TIME_LIMIT = 30.0  # seconds for ffmpeg to find and decode one frame
MEMORY_LIMIT = 1 << 30  # bytes of address space for ffmpeg (a 4K frame needs far less)
MAX_PNG = 64 << 20  # bytes of PNG read back
SCALED = 640  # pixels: the longest side ffmpeg hands back (the preview is smaller still)
FRAME_AT = 1.0  # seconds in (the very first frame of a phone video is often black)


def frame_time(duration_s: float | None) -> float:
    """When the poster frame is taken: 1 s in, or half-way through a shorter video."""
    if not duration_s or duration_s <= 0:
        return 0.0
    return round(min(FRAME_AT, duration_s / 2), 3)


def _limits() -> None:  # in the child, before ffmpeg starts
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def frame_png(path: Path, at: float) -> tuple[bytes | None, str]:
    """The frame at `at` seconds of the video at `path`, as PNG bytes; or None and why not."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None, "no frame: ffmpeg is not installed (Debian: apt-get install ffmpeg)"
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1",
            "-ss", f"{at:.3f}", "-i", str(path), "-map", "0:v:0", "-frames:v", "1",
            "-vf", f"scale=w='min({SCALED},iw)':h='min({SCALED},ih)':"
            "force_original_aspect_ratio=decrease",  # smaller, never larger
            "-f", "image2pipe", "-c:v", "png", "pipe:1"]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=reader_environment(),
                               start_new_session=True, preexec_fn=_limits, close_fds=True)
    try:
        out, err = process.communicate(timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, f"no frame: decoding took longer than {TIME_LIMIT:g} s"
    if process.returncode != 0 or not out:
        said = " ".join(err.decode("utf-8", "replace").split())[:200] or "no frame decoded"
        return None, f"no frame: ffmpeg could not decode the video ({said})"
    if len(out) > MAX_PNG:
        return None, "no frame: the decoded frame is too large"
    return out, f"frame at {at:g} s decoded by ffmpeg"
