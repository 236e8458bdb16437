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


# ---- a clock of unknown offset is never shown as UTC ---------------------------------------------


class _SignedBeforeIssue12:
    """The real reader, its record given the form signed before issue 12: an offset-unknown
    capture time written with a 'Z' (such records are in archives and cannot change)."""

    def __init__(self, reader: MetadataReader) -> None:
        self.reader = reader

    def read(self, path: Path) -> dict:
        md = self.reader.read(path)
        if md["captured_at_basis"] == "camera-clock-offset-unknown":
            md["captured_at"] += "Z"
        return md


def _ingest_as_signed_before(cli, reader, path: Path) -> str:
    from custody.ops.archive import Archive
    from custody.ops.ingest import Ingest, find_files
    from custody.ops.keyfiles import load_key

    from .conftest import PASSPHRASE

    archive = Archive.open(cli.archive)
    ingest = Ingest(archive, load_key(cli.key, PASSPHRASE), _SignedBeforeIssue12(reader))
    report = ingest.run(find_files([path], []))
    return report.to_json()["files"][0]["sha256"]


def placed_no_offset_photo(folder: Path) -> Path:
    """clock-no-offset.jpg (camera clock 2016:11:20 08:05:59, no offset) with a GPS fix added."""
    photo = folder / "no-offset-placed.jpg"
    shutil.copy(NO_OFFSET, photo)
    return exiftool(photo, "-GPSLatitude=36.2", "-GPSLatitudeRef=N", "-GPSLongitude=37.14",
                    "-GPSLongitudeRef=E")


def test_offset_unknown_clock_is_local_time_in_every_output(cli_archive, reader, tmp_path):
    cli = cli_archive
    new = cli("ingest", placed_no_offset_photo(tmp_path), "--json", check=True).json()
    new_sha = new["files"][0]["sha256"]
    old_photo = tmp_path / "canon-old-record.jpg"
    shutil.copy(CANON, old_photo)  # EXIF DateTimeOriginal 2003:12:04 06:46:52, no offset
    old_sha = _ingest_as_signed_before(cli, reader, old_photo)

    # show --json: the local reading, no zone, for the new record and the old one alike
    shown_new = cli("show", new_sha, "--json", check=True).json()
    shown_old = cli("show", old_sha, "--json", check=True).json()
    assert shown_new["captured_at"] == "2016-11-20T08:05:59"
    assert shown_old["captured_at"] == "2003-12-04T06:46:52"
    assert shown_old["metadata"]["captured_at"] == "2003-12-04T06:46:52Z"  # signed: unchanged
    assert shown_old["captured_at_basis"] == "camera-clock-offset-unknown"
    text = cli("show", old_sha, check=True).stdout
    assert "2003-12-04 06:46:52 local" in text and "06:46:52Z" not in text

    # list, text and JSON
    listed = cli("list", check=True).stdout
    assert "2016-11-20 08:05:59 local" in listed and "2003-12-04 06:46:52 local" in listed
    assert "UTC" not in listed.splitlines()[0] and "08:05:59Z" not in listed
    assert "06:46:52Z" not in listed
    rows = {r["sha256"]: r for r in cli("list", "--json", check=True).json()}
    assert rows[old_sha]["captured_at"] == "2003-12-04T06:46:52"

    # search by time: any instant within 14 h of the wall-clock reading matches, and says so
    late = cli("search", "--since", "2016-11-20T21:00:00Z", "--until", "2016-11-20T22:00:00Z",
               "--json", check=True).json()
    assert [(i["sha256"], i["captured_at"], i["flags"]) for i in late["items"]] == [
        (new_sha, "2016-11-20T08:05:59", ["offset-unknown"])]
    outside = cli("search", "--since", "2016-11-20T22:10:00Z", "--until", "2016-11-21T00:00:00Z",
                  "--json", check=True).json()
    assert outside["items"] == []
    old = cli("search", "--since", "2003-12-03T17:00:00Z", "--until", "2003-12-03T17:30:00Z",
              "--json", check=True).json()  # 06:46:52 read at UTC+13:30
    assert [(i["sha256"], i["captured_at"]) for i in old["items"]] == [
        (old_sha, "2003-12-04T06:46:52")]
    searched = cli("search", "--since", "2003-12-03T17:00:00Z", "--until",
                   "2003-12-03T17:30:00Z", check=True).stdout
    assert "2003-12-04 06:46:52 local" in searched and "14 h" in searched

    # crossref: a track passing over the photo's place at 20:00Z matches it, flagged, with the
    # offset it implies; not as an exact UTC instant
    track = tmp_path / "track.csv"
    track.write_text("time,lat,lon,alt,id\n2016-11-20T20:00:00Z,36.19,37.14,3000,T\n"
                     "2016-11-20T20:02:00Z,36.21,37.14,3000,T\n")
    x = cli("crossref", track, "--km", "5", "--minutes", "10", "--json", check=True).json()
    assert [(m["sha256"], m["captured_at"], m["flags"]) for m in x["matches"]] == [
        (new_sha, "2016-11-20T08:05:59", ["offset-unknown"])]
    assert x["matches"][0]["implied_utc_offset"] == "-11:55"
    crossed = cli("crossref", track, "--km", "5", "--minutes", "10", check=True).stdout
    assert "2016-11-20 08:05:59 local" in crossed and "08:05:59Z" not in crossed

    # a report: summary and capture-time section in local time, never "UTC"
    page = tmp_path / "report.html"
    cli("report", old_sha[:12], new_sha[:12], "-o", page, check=True)
    html = page.read_text()
    assert "2003-12-04 06:46:52 local time, UTC offset unknown" in html
    assert "06:46:52 UTC" not in html and "08:05:59 UTC" not in html
    assert "Captured (UTC)" not in html
    model = cli("report", old_sha[:12], "--json", check=True).json()
    assert model["items"][0]["captured_at"] == "2003-12-04T06:46:52"  # the signed document
    assert model["items"][0]["metadata_document"]["captured_at"] == "2003-12-04T06:46:52Z"
    assert cli("verify-report", page).code == 0  # re-checked against the signed metadata


# ---- impossible GPS fixes are kept, named, and never shown as a place ----------------------------

ALEPPO = DATA / "media" / "aleppo-gps.jpg"  # GPS 36.2021 N 37.1343 E


def fix(folder: Path, name: str, *assignments: str) -> Path:
    photo = folder / name
    shutil.copy(ALEPPO, photo)
    return exiftool(photo, *assignments)


@pytest.mark.parametrize("name, assignments, problem", [
    ("null-island.jpg", ("-GPSLatitude=0", "-GPSLongitude=0"), "null-island"),
    ("void.jpg", ("-GPSStatus#=V",), "no-fix"),
    ("poor-dop.jpg", ("-GPSDOP=35",), "dilution-too-high"),
])
def test_impossible_fix_is_named_in_gps_problems(reader, tmp_path, name, assignments, problem):
    md = reader.read(fix(tmp_path, name, *assignments))
    assert md["gps"] is not None  # the values read are kept
    assert [p.split(" ", 1)[0] for p in md["gps_problems"]] == [problem]


def test_good_fix_has_no_gps_problems(reader, tmp_path):
    md = reader.read(fix(tmp_path, "good.jpg", "-GPSStatus#=A", "-GPSDOP=1.2"))
    assert md["gps_problems"] == [] and md["gps"]["lat"] == pytest.approx(36.2021)


def test_null_island_is_no_place_in_show_search_and_report(cli_archive, tmp_path):
    cli = cli_archive
    island = fix(tmp_path, "null-island.jpg", "-GPSLatitude=0", "-GPSLongitude=0")
    poor = fix(tmp_path, "poor-dop.jpg", "-GPSDOP=35")
    shas = [f["sha256"] for f in
            cli("ingest", island, poor, ALEPPO, "--json", check=True).json()["files"]]
    shown = cli("show", shas[0], "--json", check=True).json()
    assert shown["gps"] is None
    assert shown["gps_problems"][0].startswith("null-island")
    assert shown["metadata"]["gps"]["lat"] == 0 and shown["metadata"]["gps"]["lon"] == 0
    assert "not a place: null-island" in cli("show", shas[0], check=True).stdout
    listed = {r["sha256"]: r for r in cli("list", "--json", check=True).json()}
    assert listed[shas[1]]["gps"] is None and listed[shas[2]]["gps"]["lat"] == pytest.approx(36.2021)

    near_zero = cli("search", "--near", "0,0", "--within-km", "50", "--json", check=True).json()
    assert near_zero["items"] == []
    near_aleppo = cli("search", "--near", "36.2,37.13", "--within-km", "5", "--json",
                      check=True).json()
    assert [i["sha256"] for i in near_aleppo["items"]] == [shas[2]]  # not the poor fix
    assert cli("verify").code == 0

    page = tmp_path / "report.html"
    cli("report", shas[0][:12], "-o", page, check=True)
    html = page.read_text()
    assert "Not a place" in html and "null-island" in html and "geo:0.000000" not in html
    assert cli("verify-report", page).code == 0


# ---- a video's start and end clocks are not a disagreement; identical clocks listed once ----------


def _clip(folder: Path, name: str, header_time: str) -> Path:
    """A 2 s phone-style clip: Apple creationdate at the start (+01:00), the movie header written
    when recording stopped (`header_time`, UTC), its modification time the same."""
    return exiftool(mp4(folder / name, seconds=2),
                    "-Keys:CreationDate=2016:10:05 15:04:02+01:00",
                    f"-QuickTime:CreateDate={header_time}", f"-QuickTime:ModifyDate={header_time}")


def test_video_start_and_end_clocks_do_not_disagree(cli_archive, tmp_path):
    cli = cli_archive
    normal = _clip(tmp_path, "normal.mp4", "2016:10:05 14:04:04")  # start + 2 s
    wrong = _clip(tmp_path, "wrong.mp4", "2016:10:05 15:04:04")  # an hour off: local in mvhd
    shas = [f["sha256"] for f in
            cli("ingest", normal, wrong, "--json", check=True).json()["files"]]
    shown = cli("show", shas[0], "--json", check=True).json()
    assert shown["captured_at"] == "2016-10-05T14:04:02Z"
    assert shown["metadata"]["duration_s"] == pytest.approx(2.0, abs=0.2)

    text = cli("show", shas[0], check=True).stdout
    clock_lines = [line for line in text.splitlines() if line.startswith("clock:")]
    assert any("QuickTime:CreateDate = QuickTime:ModifyDate (modification time)" in line
               for line in clock_lines)  # the same instant from two tags: one line
    assert sum("2016:10:05 14:04:04" in line for line in clock_lines) == 1

    page = tmp_path / "normal.html"
    cli("report", shas[0][:12], "-o", page, check=True)
    html = page.read_text()
    assert "clocks in this file disagree" not in html
    assert html.count("<code>QuickTime:CreateDate = QuickTime:ModifyDate (modification time)</code>") == 1

    page = tmp_path / "wrong.html"
    cli("report", shas[1][:12], "-o", page, check=True)
    assert "clocks in this file disagree" in page.read_text()


def test_disagreement_ignores_modification_times_of_old_records_too():
    from custody.metadata import clocks

    old = [{"source": "EXIF DateTimeOriginal+OffsetTimeOriginal", "value": "2013:07:05 05:18:27",
            "utc": "2013-07-05T03:18:27Z", "offset": "+02:00"},
           {"source": "Image DateTime+EXIF OffsetTime", "value": "2013:07:07 09:12:44",
            "utc": "2013-07-07T07:12:44Z", "offset": "+02:00"}]  # signed before the mark
    assert clocks.disagreement(old, None) is None
    gps_behind = [*old, {"source": "GPS GPSDate+GPSTimeStamp", "value": "2013:07:04 03:18:27",
                         "utc": "2013-07-04T03:18:27Z", "offset": None}]
    assert clocks.disagreement(gps_behind, None) == ("2013-07-04T03:18:27Z",
                                                     "2013-07-05T03:18:27Z")


def test_fixes_no_traveller_could_join_are_left_out_of_a_place_search(cli_archive, tmp_path):
    """One phone (samsung SM-G935F): Aleppo at 11:22:05Z, Damascus (310 km) ten minutes later,
    Aleppo again two hours on. Aleppo-Damascus in 10 min is 1,860 km/h: both fixes are flagged
    (which one is wrong cannot be told); Damascus-Aleppo in 110 min is possible."""
    cli = cli_archive
    damascus = fix(tmp_path, "damascus.jpg", "-GPSLatitude=33.5138", "-GPSLongitude=36.2765",
                   "-GPSTimeStamp=11:32:05")
    later = fix(tmp_path, "aleppo-later.jpg", "-GPSTimeStamp=13:22:05")
    shas = [f["sha256"] for f in cli("ingest", ALEPPO, damascus, later, "--json",
                                     check=True).json()["files"]]
    near = cli("search", "--near", "36.2,37.13", "--within-km", "5", "--json", check=True).json()
    assert [i["sha256"] for i in near["items"]] == [shas[2]]
    assert [i["sha256"] for i in near["gps_flagged"]] == [shas[0]]
    problem = near["gps_flagged"][0]["gps_problems"][0]
    assert problem.startswith("speed-impossible") and shas[1][:16] in problem
    assert near["gps_flagged"][0]["gps"] is None
    text = cli("search", "--near", "36.2,37.13", "--within-km", "5", check=True).stdout
    assert "left out: 1 item(s)" in text
    everything = {i["sha256"]: i for i in cli("search", "--json", check=True).json()["items"]}
    assert everything[shas[1]]["gps"] is None and everything[shas[2]]["gps"] is not None


def test_xmp_only_photo_is_shown_captured_at_its_xmp_original(cli_archive, tmp_path):
    photo = xmp_only_photo(tmp_path)
    sha = cli_archive("ingest", photo, "--json", check=True).json()["files"][0]["sha256"]
    shown = cli_archive("show", sha, "--json", check=True).json()
    assert (shown["captured_at"], shown["captured_at_basis"]) == ("2013-07-05T03:18:27Z",
                                                                  "camera-clock+offset")
    assert "2013-07-05 03:18:27Z" in cli_archive("list", check=True).stdout
    found = cli_archive("search", "--since", "2013-07-05T03:00:00Z", "--until",
                        "2013-07-05T04:00:00Z", "--json", check=True).json()
    assert [i["sha256"] for i in found["items"]] == [sha]
