"""Perceptual hashes: a 64-bit pHash of an image (as displayed: EXIF orientation applied) and of a
bounded number of a video's keyframes, so that look-alikes can be found (docs/SIMILAR.md).

Runs in the metadata worker (custody/metadata/worker.py), which imports this module only for the
first image or video it meets (numpy, scipy and Pillow are ~35 MiB); PyAV (~16 MiB) is imported
only for the first video. A hash is a derived lead, never identity.
"""

from __future__ import annotations

import functools
import warnings
from importlib import metadata as dist
from typing import Any

import imagehash
import numpy
import pillow_heif
import scipy.fftpack  # noqa: F401 - imagehash.phash imports it on first use: at start-up instead
from PIL import Image, ImageOps

from .record import one_line

ALGORITHM = "phash"  # imagehash.phash: DCT of a 32x32 grey image, 8x8 low frequencies vs median
BITS = 64
MAX_FRAMES = 16  # keyframes hashed per video, spread over its duration
MAX_PACKETS = 20_000  # demuxed packets per video when it cannot seek (no duration)
FLAT_STDDEV = 4.0  # a frame this flat (black, a fade) matches every other flat frame: not hashed
DRAFT_SIZE = (256, 256)  # JPEGs are decoded in grey at a reduced scale: pHash sees 32x32 grey

pillow_heif.register_heif_opener()  # phones' HEIC/HEIF photos
Image.MAX_IMAGE_PIXELS = 100_000_000  # twice this Pillow refuses (a decompression bomb)


@functools.cache  # importlib.metadata parses three METADATA files: once per worker, not per file
def version() -> str:
    return (f"imagehash {dist.version('ImageHash')}, Pillow {dist.version('pillow')}, "
            f"PyAV {dist.version('av')}")


def payload(path: str, kind: str) -> dict[str, Any]:
    """The perceptual report of one file: {"version", "algorithm", "bits", "image", "frames",
    "errors"}; `image` is the image's hash (hex) or null, `frames` the video's keyframe hashes."""
    out: dict[str, Any] = {"version": version(), "algorithm": ALGORITHM, "bits": BITS,
                           "image": None, "frames": [], "errors": []}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of bad EXIF on stderr: not our output
            if kind == "image":
                out["image"] = image_hash(path)
            else:
                out["frames"], skipped = video_hashes(path)
                if not out["frames"]:
                    why = "only flat keyframes" if skipped else "no keyframe could be decoded"
                    out["errors"].append(f"no keyframe hashed ({why})")
    except Exception as error:  # MemoryError, a decoder's error: recorded, never raised
        out["errors"].append(one_line(error))
    return out


def image_hash(path: str) -> str:
    with Image.open(path) as image:
        image.draft("L", DRAFT_SIZE)  # JPEG only (DCT scaling, 12 MP in ~60 ms); others: no-op
        shown = ImageOps.exif_transpose(image)  # hash what a person sees, not the stored rows
        return str(imagehash.phash(shown))


def video_hashes(path: str) -> tuple[list[dict[str, Any]], int]:
    """Up to MAX_FRAMES keyframes' hashes, `{"t": seconds, "hash": hex}` in time order, and how
    many keyframes were left out as flat. Only keyframes are decoded (the decoder skips others)."""
    import av  # noqa: PLC0415 - only a worker that meets a video pays for PyAV

    with av.open(path, metadata_errors="ignore") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        stream.thread_type = "NONE"  # one thread: bounded memory in the worker
        frames: dict[float, str] = {}
        skipped = 0
        for frame in _keyframes(container, stream):
            if frame.time is None:
                continue
            t = round(float(frame.time), 3)
            if t in frames:
                continue
            image = _displayed(frame)
            if float(numpy.asarray(image.convert("L")).std()) < FLAT_STDDEV:
                skipped += 1
                continue
            frames[t] = str(imagehash.phash(image))
            if len(frames) >= MAX_FRAMES:
                break
        return [{"t": t, "hash": h} for t, h in sorted(frames.items())], skipped


def _keyframes(container: Any, stream: Any) -> Any:
    """Keyframes spread over the duration (one seek each), or the first ones in order."""
    duration = _duration(container, stream)
    if duration is None or duration <= 0:
        for count, packet in enumerate(container.demux(stream)):
            if count >= MAX_PACKETS:
                return
            if packet.is_keyframe:
                yield from packet.decode()
        return
    for i in range(MAX_FRAMES):
        target = duration * i / MAX_FRAMES
        container.seek(int(target / stream.time_base) + (stream.start_time or 0),
                       stream=stream, backward=True, any_frame=False)
        for count, packet in enumerate(container.demux(stream)):
            if count >= MAX_PACKETS:
                return
            decoded = packet.decode()
            if decoded:
                yield decoded[0]
                break


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        import av  # noqa: PLC0415 - loaded already by video_hashes

        return float(container.duration / av.time_base)
    return None


def _displayed(frame: Any) -> Image.Image:
    """The frame as a player shows it: the container's display rotation applied."""
    image: Image.Image = frame.to_image()
    rotation = int(getattr(frame, "rotation", 0) or 0)
    return image.rotate(rotation, expand=True) if rotation % 360 else image
