"""custody.metadata: the values extracted from real and generated media, damaged files, the worker.

tests/data/media/ is ours (tests/data/make_fixtures.py), tests/data/exiftool/ is ExifTool's samples.
No test runs ffmpeg; every test needs ExifTool, which CI installs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import exifread
import pytest

from custody.metadata import MetadataReader, clocks, gps, images, record, video
from custody.metadata.worker import extract

DATA = Path(__file__).parent / "data"
MEDIA = DATA / "media"
SAMPLES = DATA / "exiftool"
READER_NAMES = {"python-magic", "exifread", "exiftool", "c2pa", "perceptual"}


@pytest.fixture(scope="module")
def reader():
    with MetadataReader(timeout=30.0) as shared:
        yield shared


def approx_gps(lat, lon, alt, tolerance=1e-6):
    """A position to within `tolerance` degrees; 3GPP loci is 16.16 fixed point, good to 2e-5."""
    return {
        "lat": pytest.approx(lat, abs=tolerance),
        "lon": pytest.approx(lon, abs=tolerance),
        "alt": alt,
    }


LOCI = 5e-5


def clock(source, value, utc, offset=None):
    return {"source": source, "value": value, "utc": utc, "offset": offset}


def header_clocks(value, utc, tracks=2):
    """The mvhd, tkhd and mdhd times ffmpeg writes, all UTC by the QuickTime spec."""
    names = ["QuickTime:CreateDate", "QuickTime:ModifyDate"]
    for track in range(1, tracks + 1):
        names += [
            f"Track{track}:{tag}"
            for tag in ("TrackCreateDate", "TrackModifyDate", "MediaCreateDate", "MediaModifyDate")
        ]
    return [clock(name + (" (modification time)" if "Modify" in name else ""), value, utc)
            for name in names]


def check_shape(md):
    """The record is JSON (round-trips exactly) and has every documented key."""
    assert json.loads(json.dumps(md, allow_nan=False)) == md
    keys = {"mime", "kind", "captured_at", "captured_at_basis", "clocks", "gps", "device"}
    keys |= {"orientation", "dimensions", "duration_s", "codecs", "readers", "raw", "errors"}
    assert keys <= set(md)
    assert set(md["readers"]) <= READER_NAMES
    assert md["mime"]


# ---- our own media: every normalised value ------------------------------------------------------


def test_jpeg_gps_clock_a_day_behind_camera_clock(reader):
    md = reader.read(MEDIA / "aleppo-gps.jpg")
    check_shape(md)
    assert (md["mime"], md["kind"]) == ("image/jpeg", "image")
    assert md["captured_at"] == "2016-10-03T11:22:05Z"
    assert md["captured_at_basis"] == "gps"
    assert md["clocks"] == [
        clock("GPS GPSDate+GPSTimeStamp", "2016:10:03 11:22:05", "2016-10-03T11:22:05Z"),
        clock("EXIF DateTimeOriginal+OffsetTimeOriginal", "2016:10:04 14:22:05",
              "2016-10-04T11:22:05Z", "+03:00"),
        clock("EXIF DateTimeDigitized+OffsetTimeDigitized", "2016:10:04 14:22:05",
              "2016-10-04T11:22:05Z", "+03:00"),
        clock("Image DateTime+EXIF OffsetTime (modification time)", "2016:10:04 14:22:05",
              "2016-10-04T11:22:05Z", "+03:00"),
    ]  # fmt: skip
    assert md["gps"] == approx_gps(36.2021, 37.1343, 379.0)
    assert md["device"] == {"make": "samsung", "model": "SM-G935F"}
    assert md["orientation"] == 6
    assert md["dimensions"] == {"width": 64, "height": 48}
    assert (md["duration_s"], md["codecs"]) == (None, [])
    assert md["sources"] == {
        "captured_at": "exifread", "gps": "exifread", "device": "exifread",
        "orientation": "exifread", "dimensions": "exiftool",
    }  # fmt: skip
    assert set(md["readers"]) == READER_NAMES
    assert md["readers"]["exifread"] == exifread.__version__
    assert re.fullmatch(r"\d+\.\d+", md["readers"]["exiftool"])  # Debian 12 ships 12.57
    assert re.fullmatch(r"\S+ \(libmagic \d+\.\d+\)", md["readers"]["python-magic"])
    assert md["raw"]["exifread"]["GPS GPSLatitude"] == "[36, 12, 189/25]"
    assert md["raw"]["exiftool"]["GPS:GPSLatitudeRef"] == "N"
    assert md["raw"]["exiftool"]["ExifIFD:OffsetTimeOriginal"] == "+03:00"
    assert not any(key.startswith(("System:", "Composite:")) for key in md["raw"]["exiftool"])
    assert md["errors"] == []


def test_jpeg_south_west_below_sea_level_camera_clock_with_offset(reader):
    md = reader.read(MEDIA / "carbon-south-west.jpg")
    check_shape(md)
    assert md["captured_at"] == "2017-01-15T12:30:00.25Z"
    assert md["captured_at_basis"] == "camera-clock+offset"
    assert md["clocks"] == [
        clock("EXIF DateTimeOriginal+SubSecTimeOriginal+OffsetTimeOriginal",
              "2017:01:15 09:30:00", "2017-01-15T12:30:00.25Z", "-03:00"),
    ]  # fmt: skip
    assert md["gps"] == approx_gps(-49.5783, -68.3508, -105.0)
    assert md["device"] == {"make": "Canon", "model": "Canon EOS 5D Mark IV"}
    assert md["orientation"] == 1
    assert md["dimensions"] == {"width": 64, "height": 48}
    assert md["errors"] == []


def test_jpeg_camera_clock_without_offset(reader):
    md = reader.read(MEDIA / "clock-no-offset.jpg")
    check_shape(md)
    assert md["captured_at"] == "2016-11-20T08:05:59"  # the wall clock, no zone: offset unknown
    assert md["captured_at_basis"] == "camera-clock-offset-unknown"
    assert md["clocks"] == [
        clock("EXIF DateTimeOriginal", "2016:11:20 08:05:59", None),
        clock("EXIF DateTimeDigitized", "2016:11:20 08:05:59", None),
    ]
    assert md["gps"] is None
    assert md["device"] == {"make": "NIKON CORPORATION", "model": "COOLPIX P900"}
    assert md["orientation"] is None
    assert md["errors"] == []


def test_heic_exifread_fails_exiftool_gives_the_fields(reader):
    md = reader.read(MEDIA / "idlib-exif.heic")
    check_shape(md)
    assert (md["mime"], md["kind"]) == ("image/heic", "image")
    assert md["errors"] == ["exifread: AssertionError"]
    assert md["raw"]["exifread"] == {}
    assert md["sources"] == {
        "captured_at": "exiftool", "gps": "exiftool", "device": "exiftool",
        "dimensions": "exiftool",
    }  # fmt: skip
    assert md["captured_at"] == "2016-12-12T07:41:29.5Z"
    assert md["captured_at_basis"] == "gps"
    assert md["clocks"] == [
        clock("GPS:GPSDateStamp+GPS:GPSTimeStamp", "2016:12:12 07:41:29.5",
              "2016-12-12T07:41:29.5Z"),
        clock("ExifIFD:DateTimeOriginal+ExifIFD:SubSecTimeOriginal+ExifIFD:OffsetTimeOriginal",
              "2016:12:12 09:41:30", "2016-12-12T07:41:30.12Z", "+02:00"),
    ]  # fmt: skip
    assert md["gps"] == approx_gps(35.9306, 36.6339, 445.5)
    assert md["device"] == {"make": "Apple", "model": "iPhone 7"}
    assert md["dimensions"] == {"width": 64, "height": 48}
    assert set(md["readers"]) == READER_NAMES


def test_mp4_loci(reader):
    md = reader.read(MEDIA / "homs-loci.mp4")
    check_shape(md)
    assert (md["mime"], md["kind"]) == ("video/mp4", "video")
    assert md["captured_at"] == "2016-10-05T07:15:30Z"
    assert md["captured_at_basis"] == "container-utc"
    assert md["clocks"] == header_clocks("2016:10:05 07:15:30", "2016-10-05T07:15:30Z")
    assert md["raw"]["exiftool"]["UserData:LocationInformation"] == (
        "(none) Role=shooting Lat=34.73239 Lon=36.71370 Alt=501.00 Body=earth Notes="
    )
    assert md["gps"] == approx_gps(34.7324, 36.7137, 501.0, LOCI)  # loci is 16.16 fixed point
    assert md["device"] == {"make": "samsung", "model": "SM-G930F"}
    assert md["dimensions"] == {"width": 64, "height": 48}
    assert md["duration_s"] == pytest.approx(1.0)
    assert md["codecs"] == ["avc1", "mp4a"]
    assert md["orientation"] is None
    assert set(md["readers"]) == {"python-magic", "exiftool", "c2pa", "perceptual"}
    assert "exifread" not in md["raw"]
    assert md["errors"] == []


def test_mov_quicktime_xyz(reader):
    md = reader.read(MEDIA / "douma-xyz.mov")
    check_shape(md)
    assert (md["mime"], md["kind"]) == ("video/quicktime", "video")
    assert md["raw"]["exiftool"]["UserData:GPSCoordinates"] == "33.5711 36.4014 700"
    assert md["gps"] == approx_gps(33.5711, 36.4014, 700.0)
    assert md["device"] == {"make": "Canon", "model": "Canon PowerShot G7 X"}
    assert md["captured_at"] == "2016-11-02T16:45:00Z"
    assert md["captured_at_basis"] == "container-utc"
    assert md["clocks"] == header_clocks("2016:11:02 16:45:00", "2016-11-02T16:45:00Z")
    assert (md["dimensions"], md["codecs"]) == ({"width": 64, "height": 48}, ["avc1", "mp4a"])
    assert md["duration_s"] == pytest.approx(1.0)
    assert md["errors"] == []


def test_mov_apple_keys(reader):
    md = reader.read(MEDIA / "damascus-apple-keys.mov")
    check_shape(md)
    raw = md["raw"]["exiftool"]
    assert raw["Keys:GPSCoordinates"] == "33.5138 36.2765 680"
    assert raw["Keys:CreationDate"] == "2016:12:20 18:05:09+02:00"
    assert md["gps"] == approx_gps(33.5138, 36.2765, 680.0)
    assert md["device"] == {"make": "Apple", "model": "iPhone 7"}
    assert md["captured_at"] == "2016-12-20T16:05:09Z"
    assert md["captured_at_basis"] == "container+offset"
    assert md["clocks"] == [
        clock("Keys:CreationDate", "2016:12:20 18:05:09+02:00", "2016-12-20T16:05:09Z", "+02:00"),
        *header_clocks("2016:12:20 16:05:09", "2016-12-20T16:05:09Z"),
        clock("Keys:CreationTime", "2016-12-20T16:05:09Z", "2016-12-20T16:05:09Z", "+00:00"),
    ]
    assert (md["dimensions"], md["codecs"]) == ({"width": 64, "height": 48}, ["avc1", "mp4a"])
    assert md["errors"] == []


def test_mp4_android_layout_south_west(reader):
    md = reader.read(MEDIA / "santiago-android.mp4")
    check_shape(md)
    raw = md["raw"]["exiftool"]
    assert raw["UserData:GPSCoordinates"] == "-33.4489 -70.6693 570"
    assert (raw["Keys:AndroidManufacturer"], raw["Keys:AndroidVersion"]) == ("Google", "7.1.1")
    assert md["gps"] == approx_gps(-33.4489, -70.6693, 570.0)
    assert md["device"] == {"make": "Google", "model": "Pixel"}
    assert md["captured_at"] == "2017-03-01T22:10:00Z"
    assert md["captured_at_basis"] == "container-utc"
    assert md["duration_s"] == pytest.approx(1.0)
    assert md["errors"] == []


def test_3gp_loci_without_altitude(reader):
    md = reader.read(MEDIA / "deir-ez-zor-loci.3gp")
    check_shape(md)
    assert (md["mime"], md["kind"]) == ("video/3gpp", "video")
    assert md["gps"] == approx_gps(35.3359, 40.1408, 0.0, LOCI)  # loci always stores an altitude
    assert md["device"] is None
    assert md["captured_at"] == "2016-09-17T12:00:00Z"
    assert md["captured_at_basis"] == "container-utc"
    assert md["dimensions"] == {"width": 128, "height": 96}
    assert md["codecs"] == ["s263", "mp4a"]
    assert md["duration_s"] == pytest.approx(1.0)
    assert md["errors"] == []


# ---- damaged media: exactly what happens ---------------------------------------------------------


def test_jpeg_truncated_keeps_its_exif_and_says_so(reader):
    md = reader.read(MEDIA / "aleppo-gps.truncated-half.jpg")
    check_shape(md)
    assert md["mime"] == "image/jpeg"
    assert md["errors"] == ["exiftool: JPEG format error",
                            "perceptual: OSError: Truncated File Read"]
    assert md["captured_at"] == "2016-10-03T11:22:05Z"  # EXIF sits before the cut
    assert md["gps"] == approx_gps(36.2021, 37.1343, 379.0)


def test_jpeg_garbage_exif(reader):
    md = reader.read(MEDIA / "aleppo-gps.exif-garbage.jpg")
    check_shape(md)
    assert md["mime"] == "image/jpeg"
    assert md["errors"] == ["exiftool: Bad IFD0 directory"]
    # exifread misreads the shifted entries without complaint; nothing usable survives.
    assert (md["captured_at"], md["gps"], md["device"]) == (None, None, None)
    assert md["dimensions"] == {"width": 64, "height": 48}


def test_jpeg_bad_exif_pointer_count_exifread_raises_exiftool_reads_the_rest(reader):
    md = reader.read(MEDIA / "aleppo-gps.exif-pointer-count.jpg")
    check_shape(md)
    assert md["errors"] == [
        "exifread: IndexError: list index out of range",
        "exiftool: Invalid size (8589934588) for IFD0 tag 0x8769 ExifOffset",
    ]
    assert md["sources"] == dict.fromkeys(
        ["captured_at", "gps", "device", "orientation", "dimensions"], "exiftool"
    )
    # The GPS IFD is intact, the Exif IFD (DateTimeOriginal, the offsets) is lost.
    assert (md["captured_at"], md["captured_at_basis"]) == ("2016-10-03T11:22:05Z", "gps")
    assert md["clocks"] == [
        clock("GPS:GPSDateStamp+GPS:GPSTimeStamp", "2016:10:03 11:22:05", "2016-10-03T11:22:05Z"),
        clock("IFD0:ModifyDate (modification time)", "2016:10:04 14:22:05", None),
    ]
    assert md["gps"] == approx_gps(36.2021, 37.1343, 379.0)
    assert md["device"] == {"make": "samsung", "model": "SM-G935F"}


def test_jpeg_bad_gps_pointer_count_exifread_warns(reader):
    md = reader.read(MEDIA / "aleppo-gps.gps-pointer-count.jpg")
    check_shape(md)
    assert md["errors"] == [
        "exifread: No values found for GPS SubIFD",
        "exiftool: Invalid size (8589934588) for IFD0 tag 0x8825 GPSInfo",
    ]
    assert md["gps"] is None  # neither reader recovers it
    assert (md["captured_at"], md["captured_at_basis"]) == (
        "2016-10-04T11:22:05Z",
        "camera-clock+offset",
    )
    assert [c["source"] for c in md["clocks"]] == [
        "EXIF DateTimeOriginal+OffsetTimeOriginal",
        "EXIF DateTimeDigitized+OffsetTimeDigitized",
        "Image DateTime+EXIF OffsetTime (modification time)",
    ]


def test_mp4_truncated_keeps_its_moov(reader):
    md = reader.read(MEDIA / "homs-loci.truncated.mp4")
    check_shape(md)
    assert md["mime"] == "video/mp4"
    assert md["errors"][0] == "exiftool: Truncated 'mdat' data"
    assert md["errors"][1].startswith("perceptual: InvalidDataError:") and len(md["errors"]) == 2
    assert md["gps"] == approx_gps(34.7324, 36.7137, 501.0, LOCI)
    assert md["captured_at"] == "2016-10-05T07:15:30Z"


def test_mov_zeroed_moov(reader):
    md = reader.read(MEDIA / "douma-xyz.zeroed-moov.mov")
    check_shape(md)
    assert (md["mime"], md["kind"]) == ("video/quicktime", "video")
    # ExifTool itself says nothing
    assert md["errors"] == ["perceptual: ValueError: no video stream", record.NO_STREAMS]
    assert (md["captured_at"], md["gps"], md["device"], md["clocks"]) == (None, None, None, [])
    assert (md["duration_s"], md["dimensions"], md["codecs"]) == (None, None, [])


def test_heic_truncated(reader):
    md = reader.read(MEDIA / "idlib-exif.truncated.heic")
    check_shape(md)
    assert md["mime"] == "image/heic"
    assert md["errors"][:2] == ["exifread: AssertionError", "exiftool: Truncated 'mdat' data"]
    assert md["errors"][2].startswith("perceptual: UnidentifiedImageError: cannot identify")
    assert (md["captured_at"], md["gps"], md["device"]) == (None, None, None)
    assert md["dimensions"] == {"width": 64, "height": 48}


def test_empty_file(reader):
    md = reader.read(MEDIA / "empty.bin")
    check_shape(md)
    assert (md["mime"], md["kind"]) == ("inode/x-empty", "other")
    assert md["errors"] == ["exiftool: File is empty"]
    assert md["raw"] == {"exiftool": {"ExifTool:Error": "File is empty"}}


def test_random_bytes(reader):
    md = reader.read(MEDIA / "random-4k.bin")
    check_shape(md)
    assert (md["mime"], md["kind"]) == ("application/octet-stream", "other")
    assert md["errors"] == ["exiftool: Unknown file type"]
    assert md["captured_at"] is None


def test_not_a_regular_file_or_missing(reader, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # every reader would block opening it
    for path, error in [
        (fifo, "file: not a regular file"),
        (tmp_path, "file: not a regular file"),
        (tmp_path / "gone.jpg", "file: FileNotFoundError: [Errno 2] No such file or directory: "),
    ]:
        md = reader.read(path)
        check_shape(md)
        assert md["mime"] == "application/octet-stream"
        assert md["readers"] == {} and md["raw"] == {}
        assert len(md["errors"]) == 1 and md["errors"][0].startswith(error)


# ---- ExifTool's own samples ----------------------------------------------------------------------


SAMPLES_EXPECTED = {
    "GPS.jpg": dict(
        mime="image/jpeg", captured_at="2002-07-13T15:58:28",
        captured_at_basis="camera-clock-offset-unknown",
        gps=approx_gps(54.98966667, -1.91416667, None),
        device={"make": "FUJIFILM", "model": "FinePixS1Pro"},
        dimensions={"width": 120, "height": 80},
    ),
    "Apple.jpg": dict(
        mime="image/jpeg", captured_at="2016-09-28T17:17:58.65Z", captured_at_basis="gps",
        gps=approx_gps(53.38284722, -1.45667778, pytest.approx(72.366, abs=1e-3)),
        device={"make": "Apple", "model": "iPhone 7"},
    ),
    "Google.jpg": dict(
        mime="image/jpeg", captured_at="2023-10-06T20:52:10Z", captured_at_basis="gps",
        gps=approx_gps(40.40006944, -3.71464722, 634.0),
        device={"make": "Google", "model": "Pixel 8 Pro"},
    ),
    "Canon.jpg": dict(
        mime="image/jpeg", captured_at="2003-12-04T06:46:52",
        captured_at_basis="camera-clock-offset-unknown",
        device={"make": "Canon", "model": "Canon EOS DIGITAL REBEL"}, gps=None, orientation=1,
    ),
    "Nikon.jpg": dict(
        mime="image/jpeg", captured_at="2001-08-01T12:57:23",
        device={"make": "NIKON", "model": "E775"},
    ),
    "ExifTool.tif": dict(
        # Its only clock is IFD0 ModifyDate: an edit time, never a capture time.
        mime="image/tiff", captured_at=None, captured_at_basis=None,
        device={"make": "Canon", "model": "Canon EOS DIGITAL REBEL"},
        dimensions={"width": 160, "height": 120},
    ),
    "PNG.png": dict(
        mime="image/png", captured_at=None, gps=None, device=None,
        dimensions={"width": 16, "height": 16},
    ),
    "QuickTime.heic": dict(
        mime="image/heif", kind="image", captured_at=None,
        dimensions={"width": 1596, "height": 1064},
    ),
    "QuickTime.mov": dict(
        mime="video/quicktime", kind="video", captured_at="2005-08-11T14:03:54Z",
        captured_at_basis="container-utc", codecs=["jpeg", "raw"],
        dimensions={"width": 320, "height": 240}, duration_s=pytest.approx(4.96666666666667),
        device={"make": "PENTAX DIGITAL CAMERA", "model": None},
    ),
    "Matroska.mkv": dict(
        mime="video/x-matroska", captured_at="2010-02-03T21:17:48Z",
        captured_at_basis="container-utc", codecs=["V_MPEG4/ISO/AVC", "A_MPEG/L3"],
        dimensions={"width": 704, "height": 576}, duration_s=pytest.approx(148.608),
    ),
    "RIFF.avi": dict(
        mime="video/x-msvideo", captured_at="2003-03-10T15:04:43",
        captured_at_basis="camera-clock-offset-unknown", codecs=["mjpg"],
        dimensions={"width": 320, "height": 240}, duration_s=pytest.approx(15.533178),
    ),
    "M2TS.mts": dict(
        mime="video/MP2T", kind="video", captured_at="2008-12-31T22:16:24Z",
        captured_at_basis="container+offset", dimensions={"width": 1920, "height": 1080},
        duration_s=None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SAMPLES_EXPECTED))
def test_exiftool_samples(reader, name):
    md = reader.read(SAMPLES / name)
    check_shape(md)
    for key, value in SAMPLES_EXPECTED[name].items():
        assert md[key] == value, key
    # Their pixels are stripped (metadata test cases): nothing to hash, which is said.
    assert [e for e in md["errors"] if not e.startswith("perceptual: ")] == []


def test_sample_clocks_are_all_kept(reader):
    md = reader.read(SAMPLES / "Apple.jpg")
    assert md["clocks"] == [
        clock("GPS GPSDate+GPSTimeStamp", "2016:09:28 17:17:58.65", "2016-09-28T17:17:58.65Z"),
        clock("EXIF DateTimeOriginal+SubSecTimeOriginal", "2016:09:28 18:18:05", None),
        clock("EXIF DateTimeDigitized+SubSecTimeDigitized", "2016:09:28 18:18:05", None),
        clock("Image DateTime (modification time)", "2016:09:28 18:18:05", None),
    ]
    md = reader.read(SAMPLES / "GPS.jpg")  # a GPS time without a GPS date gives no instant
    assert md["clocks"][0] == clock("GPS GPSTimeStamp", "14:58:24", None)


def test_sample_blobs_are_noted_not_kept(reader):
    raw = reader.read(SAMPLES / "Google.jpg")["raw"]["exiftool"]
    assert raw["IFD1:ThumbnailImage"] == "(Binary data 23 bytes, use -b option to extract)"
    assert raw["XMP-GCamera:HdrPlusMakernote"] == "(skipped: 38356 characters)"
    assert all(len(str(value)) <= 2000 for value in raw.values())


# ---- the worker: time, memory, crashes, a missing ExifTool ---------------------------------------


def _hook(path, tools):
    """A test-only extraction: the real one, except that files named for it misbehave as soon as
    ExifTool's turn comes (hang, run out of memory, crash); what came before is already sent."""
    name = os.path.basename(path)
    for message in extract(path, tools):
        yield message
        if message == {"type": "begin", "stage": "exiftool"}:
            if name.startswith("hang"):
                time.sleep(600)
            elif name.startswith("allocate"):
                bytearray(2 << 30)  # past the 1 GiB limit the tests set
            elif name.startswith("crash"):
                os.kill(os.getpid(), signal.SIGSEGV)


def _group_members(pgid, wait_until_empty=0.0):
    """Pids of live (not zombie) processes in a process group, from /proc."""
    deadline = time.monotonic() + wait_until_empty
    while True:
        members = _group_members_now(pgid)
        if not members or time.monotonic() >= deadline:
            return members
        time.sleep(0.05)


def _group_members_now(pgid):
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return sorted(members)


def test_hang_is_killed_with_its_exiftool_and_the_next_read_works(tmp_path):
    hang = tmp_path / "hang.jpg"
    hang.write_bytes((MEDIA / "aleppo-gps.jpg").read_bytes())
    with MetadataReader(timeout=1.0, memory_limit=1 << 30, _extract=_hook) as slow:
        md = slow.read(MEDIA / "aleppo-gps.jpg")  # starts the worker
        assert md["captured_at"] == "2016-10-03T11:22:05Z"
        worker = slow._worker.pid
        group = _group_members(worker)
        assert worker in group and len(group) == 2  # the worker and its ExifTool
        exiftool_pid = next(pid for pid in group if pid != worker)
        assert "max address space" in Path(f"/proc/{exiftool_pid}/limits").read_text().lower()
        limits = Path(f"/proc/{exiftool_pid}/limits").read_text().splitlines()
        line = next(x for x in limits if x.startswith("Max address space"))
        assert line.split()[3] == str(1 << 30)  # ExifTool inherits the memory bound

        started = time.monotonic()
        md = slow.read(hang)
        assert time.monotonic() - started < 5
        check_shape(md)
        assert md["errors"] == ["exiftool: timed out after 1 s"]
        # What magic and exifread reported before the hang is kept.
        assert (md["mime"], md["captured_at"]) == ("image/jpeg", "2016-10-03T11:22:05Z")
        assert set(md["readers"]) == {"python-magic", "exifread"}
        assert md["dimensions"] is None  # that would have come from ExifTool
        assert _group_members(worker, wait_until_empty=3.0) == []  # worker and ExifTool gone

        md = slow.read(MEDIA / "homs-loci.mp4")  # a new worker, started lazily
        assert md["errors"] == [] and md["codecs"] == ["avc1", "mp4a"]
        assert slow._worker.pid != worker


def test_tiny_timeout_then_a_normal_one():
    with MetadataReader(timeout=30.0) as own:
        own.read(MEDIA / "empty.bin")  # started
        own.timeout = 0.0005
        md = own.read(MEDIA / "aleppo-gps.jpg")
        check_shape(md)
        assert len(md["errors"]) == 1 and md["errors"][0].endswith("timed out after 0.0005 s")
        own.timeout = 30.0
        md = own.read(MEDIA / "aleppo-gps.jpg")
        assert md["errors"] == [] and md["captured_at"] == "2016-10-03T11:22:05Z"


def test_memory_error_is_recorded_and_the_worker_lives_on(tmp_path):
    allocate = tmp_path / "allocate.mp4"
    allocate.write_bytes((MEDIA / "homs-loci.mp4").read_bytes())
    with MetadataReader(memory_limit=1 << 30, _extract=_hook) as bounded:
        md = bounded.read(allocate)
        check_shape(md)
        assert md["errors"] == ["exiftool: MemoryError"]
        assert md["mime"] == "video/mp4" and md["gps"] is None
        worker = bounded._worker.pid
        md = bounded.read(MEDIA / "clock-no-offset.jpg")
        assert md["errors"] == [] and md["captured_at"] == "2016-11-20T08:05:59"
        assert bounded._worker.pid == worker


def test_worker_crash_is_recorded_and_replaced(tmp_path):
    crash = tmp_path / "crash.heic"
    crash.write_bytes((MEDIA / "idlib-exif.heic").read_bytes())
    with MetadataReader(_extract=_hook) as fragile:
        md = fragile.read(crash)
        check_shape(md)
        assert md["errors"] == [
            "exifread: AssertionError",
            "exiftool: worker died (killed by SIGSEGV)",
        ]
        assert md["mime"] == "image/heic" and md["captured_at"] is None
        md = fragile.read(MEDIA / "clock-no-offset.jpg")
        assert md["errors"] == [] and md["device"]["model"] == "COOLPIX P900"


def test_missing_exiftool_is_an_error_string():
    with MetadataReader(exiftool="/nonexistent/exiftool") as without:
        md = without.read(MEDIA / "aleppo-gps.jpg")
        check_shape(md)
        assert md["errors"] == [
            "exiftool: not found (/nonexistent/exiftool); install ExifTool (libimage-exiftool-perl)"
        ]
        assert set(md["readers"]) == {"python-magic", "exifread", "c2pa", "perceptual"}
        assert md["captured_at"] == "2016-10-03T11:22:05Z"  # exifread alone still gives it
        assert md["dimensions"] is None  # that one comes from ExifTool
        md = without.read(MEDIA / "homs-loci.mp4")
        assert md["mime"] == "video/mp4" and md["gps"] is None


def test_reader_without_context_manager_and_reuse_after_close():
    plain = MetadataReader()
    try:
        assert plain.read(MEDIA / "empty.bin")["mime"] == "inode/x-empty"
    finally:
        plain.close()
    assert plain.read(MEDIA / "empty.bin")["mime"] == "inode/x-empty"  # restarts lazily
    plain.close()
    plain.close()  # idempotent


# ---- pure functions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("+33.9856+035.4987+012.000/", (33.9856, 35.4987, 12.0)),
        ("+36.2021+037.1343/", (36.2021, 37.1343, None)),
        ("-33.4489-070.6693+570.000/", (-33.4489, -70.6693, 570.0)),
        ("+40.6894-074.0447-012.5/", (40.6894, -74.0447, -12.5)),
        ("+4016-07418/", (40 + 16 / 60, -(74 + 18 / 60), None)),  # degrees and minutes
        ("+401630.5-0741800/", (40 + 16 / 60 + 30.5 / 3600, -(74 + 18 / 60), None)),
        ("+35.50+139.80+10CRSWGS_84/", (35.5, 139.8, 10.0)),
        ("+27.5916+086.5640+8850CRSWGS_84/", (27.5916, 86.564, 8850.0)),
    ],
)
def test_iso6709(text, expected):
    lat, lon, alt = expected
    assert gps.parse_iso6709(text) == approx_gps(lat, lon, alt)


@pytest.mark.parametrize("text", ["", "36.2021 37.1343", "+91.0000+000.0000/", "+12+1234567/", "x"])
def test_iso6709_rejects(text):
    assert gps.parse_iso6709(text) is None


def test_dms_altitude_and_exiftool_forms():
    assert gps.dms_to_decimal([36, 12, 7.56], "N") == pytest.approx(36.2021)
    assert gps.dms_to_decimal([49, 34, 41.88], "S") == pytest.approx(-49.5783)
    assert gps.dms_to_decimal([68, 21, 2.88], "W") == pytest.approx(-68.3508)
    assert gps.dms_to_decimal([1.91416667], "West") == pytest.approx(-1.91416667)
    assert gps.dms_to_decimal([-33.5, 0, 0], None) == -33.5
    assert gps.dms_to_decimal([], "N") is None
    assert gps.altitude(105, 1) == -105.0
    assert gps.altitude(105, "1") == -105.0
    assert gps.altitude(379, 0) == 379.0
    assert gps.altitude(379, None) == 379.0
    assert gps.parse_decimal_triplet("-33.4489 -70.6693 570") == approx_gps(-33.4489, -70.6693, 570)
    assert gps.parse_decimal_triplet("33.5 36.2") == approx_gps(33.5, 36.2, None)
    assert gps.parse_decimal_triplet("1 2 3 4") is None
    assert gps.parse_loci(
        "(none) Role=shooting Lat=-36.20209 Lon=-37.13429 Alt=-10.50 Body=earth Notes="
    ) == approx_gps(-36.20209, -37.13429, -10.5)
    assert gps.parse_loci("Role=shooting") is None
    assert gps.position(100.0, 0.0) is None and gps.position(0.0, float("nan")) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("+03:00", "+03:00"), ("+0300", "+03:00"), ("-04", "-04:00"), ("Z", "+00:00"),
        (" +05:30 ", "+05:30"), ("+14:00", "+14:00"), ("+15:00", None), ("+03:60", None),
        ("03:00", None), ("", None), (None, None),
    ],
)  # fmt: skip
def test_parse_offset(text, expected):
    assert clocks.parse_offset(text) == expected


def test_parse_datetime():
    from datetime import datetime

    assert clocks.parse_datetime("2016:10:03 14:22:05") == (datetime(2016, 10, 3, 14, 22, 5), None)
    assert clocks.parse_datetime("2016:12:20 18:05:09+02:00") == (
        datetime(2016, 12, 20, 18, 5, 9),
        "+02:00",
    )
    assert clocks.parse_datetime("2016-12-20T18:05:09.5+0200") == (
        datetime(2016, 12, 20, 18, 5, 9, 500000),
        "+02:00",
    )
    assert clocks.parse_datetime("2010:02:03 21:17:48Z") == (
        datetime(2010, 2, 3, 21, 17, 48),
        "+00:00",
    )
    assert clocks.parse_datetime("2002:06:20") == (None, None)  # a date alone
    for bad in ("0000:00:00 00:00:00", "2016:13:01 00:00:00", "2016:02:30 10:00:00", "2010", ""):
        assert clocks.parse_datetime(bad) is None


def test_utc_and_captured_at_rules():
    from datetime import datetime

    local = datetime(2016, 10, 4, 14, 22, 5)
    assert clocks.format_utc(datetime(2016, 1, 2, 3, 4, 5, 120000)) == "2016-01-02T03:04:05.12Z"
    assert clocks.with_subseconds(local, "813").microsecond == 813000
    assert clocks.with_subseconds(local, "  ") == local
    with_offset = clocks.Reading("EXIF DateTimeOriginal", "2016:10:04 14:22:05", local, "+03:00")
    no_offset = clocks.Reading("EXIF DateTimeOriginal", "2016:10:04 14:22:05", local)
    header = clocks.Reading("QuickTime:CreateDate", "2016:10:04 14:22:05", local, None, True)
    zoned = clocks.Reading("Keys:CreationDate", "2016:10:04 14:22:05+03:00", local, "+03:00")
    gps_clock = clocks.gps_reading("GPS", "2016:10:03", (11, 22, 5))
    gps_no_date = clocks.gps_reading("GPS", None, (11, 22, 5))
    assert with_offset.utc == "2016-10-04T11:22:05Z" and no_offset.utc is None
    assert header.utc == "2016-10-04T14:22:05Z"
    assert gps_clock.utc == "2016-10-03T11:22:05Z" and gps_no_date.utc is None
    assert clocks.captured_at([("gps", gps_clock), ("camera", with_offset)]) == (
        "2016-10-03T11:22:05Z",
        "gps",
    )
    assert clocks.captured_at([("gps", gps_no_date), ("camera", with_offset)]) == (
        "2016-10-04T11:22:05Z",
        "camera-clock+offset",
    )
    assert clocks.captured_at([("camera", no_offset)]) == (
        "2016-10-04T14:22:05",
        "camera-clock-offset-unknown",
    )
    assert clocks.captured_at([("container", zoned), ("container", header)]) == (
        "2016-10-04T11:22:05Z",
        "container+offset",
    )
    assert clocks.captured_at([("container", header)]) == ("2016-10-04T14:22:05Z", "container-utc")
    assert clocks.captured_at([]) == (None, None)


def test_video_fields_ignore_zero_dates_and_prefer_apple_zone():
    meta = {
        "QuickTime:CreateDate": "0000:00:00 00:00:00",
        "Track1:TrackCreateDate": "0000:00:00 00:00:00",
        "Keys:CreationDate": "2016:12:20 18:05:09+02:00",
        "QuickTime:Duration": 0,
    }
    out = video.fields(meta)
    assert (out["captured_at"], out["captured_at_basis"]) == (
        "2016-12-20T16:05:09Z",
        "container+offset",
    )
    assert [c["source"] for c in out["clocks"]] == ["Keys:CreationDate"]
    assert out["duration_s"] is None
    out = video.fields({"QuickTime:CreateDate": "0000:00:00 00:00:00"})
    assert (out["captured_at"], out["clocks"]) == (None, [])
    out = video.fields({"Keys:Location": "+36.2021+037.1343/", "ItemList:Make": " Sony\x00"})
    assert out["gps"] == approx_gps(36.2021, 37.1343, None)
    assert out["device"] == {"make": "Sony", "model": None}


def test_raw_values_are_text_or_numbers_and_blobs_are_noted():
    raw = video.raw_tags(
        {
            "SourceFile": "/x",
            "System:FileName": "x",
            "Composite:ImageSize": "1 2",
            "ExifTool:ExifToolVersion": 12.57,
            "IFD1:ThumbnailImage": "(Binary data 5120 bytes, use -b option to extract)",
            "XMP-dc:Subject": ["a", "b"],
            "XMP-x:Long": "y" * 5000,
            "IFD0:Orientation": 6,
            "Bad:Text": "\udcff",
        }
    )
    assert raw == {
        "IFD1:ThumbnailImage": "(Binary data 5120 bytes, use -b option to extract)",
        "XMP-dc:Subject": "a, b",
        "XMP-x:Long": "(skipped: 5000 characters)",
        "IFD0:Orientation": 6,
        "Bad:Text": "?",
    }
    assert images.raw_tags({"JPEGThumbnail": b"\xff\xd8" * 10}) == {
        "JPEGThumbnail": "(skipped: binary, 20 bytes)"
    }


def test_compose_falls_back_per_field_and_prefixes_errors():
    exifread_fields = record.empty_fields() | {"device": {"make": "A", "model": None}}
    exiftool_fields = record.empty_fields() | {
        "captured_at": "2016-01-01T00:00:00Z",
        "captured_at_basis": "gps",
        "clocks": [clock("GPS", "x", "2016-01-01T00:00:00Z")],
        "device": {"make": "B", "model": None},
        "dimensions": {"width": 1, "height": 2},
    }
    parts = {
        "python-magic": {"version": "m", "mime": "image/jpeg", "errors": []},
        "exifread": {"version": "r", "raw": {}, "fields": exifread_fields, "errors": ["w"]},
        "exiftool": {"version": "t", "raw": {"a": 1}, "fields": exiftool_fields, "errors": []},
    }
    md = record.compose(parts, ["exiftool: timed out after 1 s"])
    assert md["device"] == {"make": "A", "model": None}
    assert md["captured_at_basis"] == "gps" and md["dimensions"] == {"width": 1, "height": 2}
    assert md["sources"] == {
        "captured_at": "exiftool",
        "device": "exifread",
        "dimensions": "exiftool",
    }
    assert md["errors"] == ["exifread: w", "exiftool: timed out after 1 s"]
    assert md["readers"] == {"python-magic": "m", "exifread": "r", "exiftool": "t"}
    assert record.compose({}, [])["mime"] == "application/octet-stream"
