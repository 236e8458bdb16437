"""Generate the metadata test media in tests/data/media/: run once by hand, commit the outputs.

Needs pillow, exiftool, heif-enc (libheif-examples), ffmpeg with libx264 and aac. CI never runs it.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parent / "media"


def run(*args: str) -> None:
    subprocess.run(args, check=True)


def exiftool(path: Path, *tags: str) -> None:
    run("exiftool", "-q", "-overwrite_original", *tags, str(path))


def pixels(path: Path, width: int = 64, height: int = 48) -> None:
    """A real-pixel JPEG: a colour gradient, no metadata of its own."""
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            ((x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    image.save(path, quality=85)


def ffmpeg(path: Path, *args: str, size: str = "64x48", vcodec: str = "libx264") -> None:
    """One second of test pattern with a sine tone: tiny, but a real stream of each kind."""
    video = ["-c:v", vcodec] + (
        ["-preset", "veryfast", "-pix_fmt", "yuv420p"] if vcodec == "libx264" else []
    )
    run(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc=size={size}:rate=10:duration=1",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=8000",
        "-shortest", *video, "-c:a", "aac", "-b:a", "16k", "-ac", "1",
        *args, str(path),
    )  # fmt: skip


def images() -> None:
    # Aleppo; camera clock +03:00; the GPS clock one day BEHIND the camera clock.
    jpg = OUT / "aleppo-gps.jpg"
    pixels(jpg)
    exiftool(
        jpg,
        "-Make=samsung", "-Model=SM-G935F", "-Orientation#=6",
        "-DateTimeOriginal=2016:10:04 14:22:05", "-OffsetTimeOriginal=+03:00",
        "-CreateDate=2016:10:04 14:22:05", "-OffsetTimeDigitized=+03:00",
        "-ModifyDate=2016:10:04 14:22:05", "-OffsetTime=+03:00",
        "-GPSLatitude=36.2021", "-GPSLatitudeRef=N", "-GPSLongitude=37.1343", "-GPSLongitudeRef=E",
        "-GPSAltitude=379", "-GPSAltitudeRef#=0",
        "-GPSDateStamp=2016:10:03", "-GPSTimeStamp=11:22:05",
    )  # fmt: skip
    # Laguna del Carbon (Argentina): south, west, 105 m below sea level; a position but no GPS
    # clock, so captured_at comes from the camera clock with its offset and sub-seconds.
    jpg = OUT / "carbon-south-west.jpg"
    pixels(jpg)
    exiftool(
        jpg,
        "-Make=Canon", "-Model=Canon EOS 5D Mark IV", "-Orientation#=1",
        "-DateTimeOriginal=2017:01:15 09:30:00", "-SubSecTimeOriginal=25",
        "-OffsetTimeOriginal=-03:00",
        "-GPSLatitude=49.5783", "-GPSLatitudeRef=S", "-GPSLongitude=68.3508", "-GPSLongitudeRef=W",
        "-GPSAltitude=105", "-GPSAltitudeRef#=1",
    )  # fmt: skip
    # A camera clock with no offset and no GPS: the offset-unknown basis.
    jpg = OUT / "clock-no-offset.jpg"
    pixels(jpg)
    exiftool(
        jpg,
        "-Make=NIKON CORPORATION", "-Model=COOLPIX P900",
        "-DateTimeOriginal=2016:11:20 08:05:59", "-CreateDate=2016:11:20 08:05:59",
    )  # fmt: skip
    # Idlib, as HEIC: heif-enc copies the JPEG's EXIF (exifread 3.5.1 cannot read it: fallback).
    src = OUT / "idlib.src.jpg"
    pixels(src)
    exiftool(
        src,
        "-Make=Apple", "-Model=iPhone 7",
        "-DateTimeOriginal=2016:12:12 09:41:30", "-SubSecTimeOriginal=120",
        "-OffsetTimeOriginal=+02:00",
        "-GPSLatitude=35.9306", "-GPSLatitudeRef=N", "-GPSLongitude=36.6339", "-GPSLongitudeRef=E",
        "-GPSAltitude=445.5", "-GPSAltitudeRef#=0",
        "-GPSDateStamp=2016:12:12", "-GPSTimeStamp=07:41:29.5",
    )  # fmt: skip
    run("heif-enc", "-q", "50", str(src), "-o", str(OUT / "idlib-exif.heic"))
    src.unlink()


def videos() -> None:
    # Homs, Android 3GPP 'loci' in udta (ffmpeg writes it from "location" in .mp4); ©mak/©mod added
    # by exiftool; mvhd creation time in UTC.
    mp4 = OUT / "homs-loci.mp4"
    ffmpeg(mp4, "-metadata", "location=+34.7324+036.7137+501.000/",
           "-metadata", "creation_time=2016-10-05T07:15:30Z")  # fmt: skip
    exiftool(mp4, "-UserData:Make=samsung", "-UserData:Model=SM-G930F")
    # Douma, QuickTime ©xyz, ©mak, ©mod (ffmpeg writes them in .mov).
    ffmpeg(OUT / "douma-xyz.mov",
           "-metadata", "location=+33.5711+036.4014+700.000/",
           "-metadata", "make=Canon", "-metadata", "model=Canon PowerShot G7 X",
           "-metadata", "creation_time=2016-11-02T16:45:00Z")  # fmt: skip
    # Damascus, Apple mdta keys: location.ISO6709, make, model, creationdate with its zone.
    ffmpeg(OUT / "damascus-apple-keys.mov", "-movflags", "use_metadata_tags",
           "-metadata", "com.apple.quicktime.location.ISO6709=+33.5138+036.2765+680.000/",
           "-metadata", "com.apple.quicktime.make=Apple",
           "-metadata", "com.apple.quicktime.model=iPhone 7",
           "-metadata", "com.apple.quicktime.creationdate=2016-12-20T18:05:09+0200",
           "-metadata", "creation_time=2016-12-20T16:05:09Z")  # fmt: skip
    # Santiago, the stock Android MediaRecorder layout: ©xyz in udta, com.android.* mdta keys.
    mp4 = OUT / "santiago-android.mp4"
    ffmpeg(mp4, "-movflags", "use_metadata_tags",
           "-metadata", "com.android.manufacturer=Google",
           "-metadata", "com.android.model=Pixel",
           "-metadata", "com.android.version=7.1.1",
           "-metadata", "creation_time=2017-03-01T22:10:00Z")  # fmt: skip
    exiftool(mp4, "-UserData:GPSCoordinates=-33.4489, -70.6693, 570")
    # Deir ez-Zor, 3GP with loci (no altitude given: loci stores 0), H.263 + AAC.
    ffmpeg(OUT / "deir-ez-zor-loci.3gp", "-metadata", "location=+35.3359+040.1408/",
           "-metadata", "creation_time=2016-09-17T12:00:00Z",
           size="128x96", vcodec="h263")  # fmt: skip


def damaged() -> None:
    """Broken variants, each named after the damage done to it."""
    rng = random.Random(20161203)
    jpg = (OUT / "aleppo-gps.jpg").read_bytes()
    (OUT / "aleppo-gps.truncated-half.jpg").write_bytes(jpg[: len(jpg) // 2])
    # Overwrite the EXIF IFD entries (past "Exif\0\0" and the TIFF header) with random bytes.
    start = jpg.index(b"Exif\x00\x00") + 6 + 8
    garbage = bytes(rng.randrange(256) for _ in range(200))
    (OUT / "aleppo-gps.exif-garbage.jpg").write_bytes(jpg[:start] + garbage + jpg[start + 200 :])
    # One IFD0 entry's count set to 0x7fffffff: the ExifIFD pointer, then the GPS IFD pointer.
    for tag, name in ((0x8769, "exif-pointer-count"), (0x8825, "gps-pointer-count")):
        (OUT / f"aleppo-gps.{name}.jpg").write_bytes(_set_ifd0_count(jpg, tag, 0x7FFFFFFF))
    mp4 = (OUT / "homs-loci.mp4").read_bytes()
    (OUT / "homs-loci.truncated.mp4").write_bytes(mp4[: len(mp4) // 3])
    mov = bytearray((OUT / "douma-xyz.mov").read_bytes())
    at = mov.index(b"moov") - 4
    size = int.from_bytes(mov[at : at + 4], "big")
    mov[at + 8 : at + size] = bytes(size - 8)  # keep the box header, zero its contents
    (OUT / "douma-xyz.zeroed-moov.mov").write_bytes(bytes(mov))
    heic = (OUT / "idlib-exif.heic").read_bytes()
    (OUT / "idlib-exif.truncated.heic").write_bytes(heic[: len(heic) // 2])
    (OUT / "empty.bin").write_bytes(b"")
    (OUT / "random-4k.bin").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))


def _set_ifd0_count(jpg: bytes, tag: int, count: int) -> bytes:
    """The JPEG with the count field of one IFD0 entry (big-endian TIFF) replaced."""
    tiff = jpg.index(b"Exif\x00\x00") + 6
    assert jpg[tiff : tiff + 2] == b"MM"
    ifd0 = tiff + struct.unpack(">I", jpg[tiff + 4 : tiff + 8])[0]
    for number in range(struct.unpack(">H", jpg[ifd0 : ifd0 + 2])[0]):
        entry = ifd0 + 2 + 12 * number
        if struct.unpack(">H", jpg[entry : entry + 2])[0] == tag:
            return jpg[: entry + 4] + struct.pack(">I", count) + jpg[entry + 8 :]
    raise ValueError(f"no IFD0 entry {tag:#06x}")


def main() -> int:
    for tool in ("exiftool", "ffmpeg", "heif-enc"):
        if shutil.which(tool) is None:
            print(f"make_fixtures: {tool} not found", file=sys.stderr)
            return 2
    OUT.mkdir(exist_ok=True)
    images()
    videos()
    damaged()
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:8d}  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
