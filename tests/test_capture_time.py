"""Capture times a court can rely on (issue 12, item 1): XMP original dates, the edit time never a
capture time, zoned clocks first, offset-unknown clocks never shown as UTC, impossible GPS fixes
flagged, a video's start/end spread not a disagreement.

Real media only: copies of ExifTool's camera samples and of our own fixtures with tags written by
ExifTool, and MP4s encoded here by PyAV.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from custody.metadata import MetadataReader

DATA = Path(__file__).parent / "data"
CANON = DATA / "exiftool" / "Canon.jpg"  # a real Canon EOS photo: EXIF DateTimeOriginal, no offset
NO_OFFSET = DATA / "media" / "clock-no-offset.jpg"


@pytest.fixture(scope="module")
def reader():
    with MetadataReader(timeout=30.0) as shared:
        yield shared


def exiftool(path: Path, *assignments: str) -> Path:
    """Write tags into `path` in place, as a photo editor or a phone would have."""
    done = subprocess.run(["exiftool", "-q", "-overwrite_original", *assignments, str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return path


def xmp_only_photo(folder: Path) -> Path:
    """A real photo whose only original date is in XMP, edited two days later (IFD0 ModifyDate
    and XMP ModifyDate), as the four photos of issue 12 were."""
    photo = folder / "xmp-original.jpg"
    shutil.copy(CANON, photo)
    return exiftool(photo, "-EXIF:DateTimeOriginal=", "-EXIF:CreateDate=",
                    "-IFD0:ModifyDate=2013:07:07 09:12:44",
                    "-XMP-exif:DateTimeOriginal=2013:07:05 03:18:27Z",
                    "-XMP-xmp:ModifyDate=2013:07:07 09:12:44+02:00")


def mp4(path: Path, seconds: int = 2) -> Path:
    """A real H.264 (or MPEG-4 part 2) MP4 of `seconds` seconds, 64x48, encoded by PyAV."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(10 * seconds):
            pixels = np.full((48, 64, 3), (n * 12) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---- XMP dates, and the edit time is never a capture time -----------------------------------------


def test_xmp_original_date_is_the_capture_time_not_the_edit_time(reader, tmp_path):
    md = reader.read(xmp_only_photo(tmp_path))
    assert md["raw"]["exiftool"]["XMP-exif:DateTimeOriginal"] == "2013:07:05 03:18:27Z"
    assert (md["captured_at"], md["captured_at_basis"]) == ("2013-07-05T03:18:27Z",
                                                            "camera-clock+offset")
    assert md["captured_at_source"] == "XMP-exif:DateTimeOriginal"
    assert md["sources"]["captured_at"] == "exiftool"  # beats exifread, which has no original
    sources = [c["source"] for c in md["clocks"]]
    assert "IFD0:ModifyDate (modification time)" in sources
    assert "XMP-xmp:ModifyDate (modification time)" in sources


def test_edit_time_alone_is_no_capture_time(reader, tmp_path):
    photo = tmp_path / "edited.jpg"
    shutil.copy(CANON, photo)
    exiftool(photo, "-EXIF:DateTimeOriginal=", "-EXIF:CreateDate=",
             "-IFD0:ModifyDate=2013:07:07 09:12:44")
    md = reader.read(photo)
    assert (md["captured_at"], md["captured_at_basis"]) == (None, None)
    assert [c["source"] for c in md["clocks"]] == ["Image DateTime (modification time)"]


def test_xmp_date_with_zone_beats_an_exif_date_without_one(reader, tmp_path):
    photo = tmp_path / "zoned-xmp.jpg"
    shutil.copy(NO_OFFSET, photo)  # EXIF DateTimeOriginal 2016:11:20 08:05:59, no offset
    exiftool(photo, "-XMP-exif:DateTimeOriginal=2016:11:20 08:05:59+03:00")
    md = reader.read(photo)
    assert (md["captured_at"], md["captured_at_basis"]) == ("2016-11-20T05:05:59Z",
                                                            "camera-clock+offset")
    assert md["sources"]["captured_at"] == "exiftool"


def test_photoshop_and_xmp_create_dates_rank_after_the_original(reader, tmp_path):
    photo = tmp_path / "xmp-dates.jpg"
    shutil.copy(CANON, photo)
    exiftool(photo, "-EXIF:DateTimeOriginal=", "-EXIF:CreateDate=",
             "-XMP-xmp:CreateDate=2013:07:06 10:00:00+02:00",
             "-XMP-photoshop:DateCreated=2013:07:05 05:18:27+02:00")
    md = reader.read(photo)
    assert md["captured_at"] == "2013-07-05T03:18:27Z"
    assert md["captured_at_source"] == "XMP-photoshop:DateCreated"


# ---- video: zoned clocks first --------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["DateTimeOriginal", "Keys:CreationDate"])
def test_video_zoned_original_beats_the_movie_header(reader, tmp_path, tag):
    video = exiftool(mp4(tmp_path / "clip.mp4"), "-QuickTime:CreateDate=2016:10:05 14:04:36",
                     f"-{tag}=2016:10:05 15:04:02+01:00")
    md = reader.read(video)
    assert md["captured_at"] == "2016-10-05T14:04:02Z"  # not the header's 14:04:36 (UTC)
    assert md["captured_at_basis"] in ("container+offset", "camera-clock+offset")
