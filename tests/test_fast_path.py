"""The metadata fast path (docs/METADATA.md "The fast path"): a JPEG that exifread and the marker
walk read completely is ingested without ExifTool, which reads it later into its own signed
`enriched` entry. Same fields as ExifTool's, damaged files still flagged, nothing lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from custody.metadata import MetadataReader, jpeg
from custody.metadata.record import enriched

DATA = Path(__file__).parent / "data"
CLEAN_JPEGS = sorted([*(DATA / "exiftool").glob("*.jpg"),
                      *(DATA / "media").glob("aleppo-gps.jpg"),
                      *(DATA / "media").glob("carbon-south-west.jpg"),
                      *(DATA / "media").glob("clock-no-offset.jpg"),
                      *(DATA / "c2pa").glob("*.jpg")])
C2PA_PHOTO = DATA / "c2pa" / "C.jpg"  # 2048x1365, a real camera-sized scan


@pytest.fixture(scope="module")
def reader():
    with MetadataReader() as one:
        yield one


def _instant(fields):
    return (fields["captured_at"] or "").removesuffix("Z").rstrip("0").rstrip(".")


def test_the_fast_paths_fields_equal_exiftools_for_the_real_jpegs(reader):
    fast_ones = 0
    for path in CLEAN_JPEGS:
        fast = reader.read(path, fast=True)
        full = reader.read(path)
        if "deferred" not in fast:  # XMP/IPTC or a missing field: ExifTool read it at once
            assert "exiftool" in fast["readers"], path.name
            continue
        fast_ones += 1
        assert fast["deferred"] == ["exiftool"] and "exiftool" not in fast["raw"]
        theirs = reader.read_exiftool(path)["fields"]
        assert _instant(fast) == _instant(theirs), path.name
        assert fast["device"] == theirs["device"], path.name
        assert fast["dimensions"] == theirs["dimensions"], path.name
        assert (fast["gps"] is None) == (theirs["gps"] is None), path.name
        if fast["gps"] is not None:
            for axis in ("lat", "lon"):
                assert fast["gps"][axis] == pytest.approx(theirs["gps"][axis], abs=1e-6)
        # completed with ExifTool's reading, the record is what the full path gives
        done = enriched(fast, reader.read_exiftool(path))
        for key in ("captured_at", "captured_at_basis", "captured_at_source", "clocks", "gps",
                    "device", "orientation", "dimensions", "sources", "raw", "gps_problems"):
            assert done[key] == full[key], (path.name, key)
    assert fast_ones >= 6


def _truncated_in_scan(tmp_path: Path) -> Path:
    data = C2PA_PHOTO.read_bytes()
    out = tmp_path / "cut-in-scan.jpg"
    out.write_bytes(data[: int(len(data) * 0.7)])
    return out


def _marker_overwritten(tmp_path: Path) -> Path:
    data = bytearray((DATA / "media" / "aleppo-gps.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof:sof + 2] = b"\x12\x34"  # where a marker must be
    out = tmp_path / "no-marker.jpg"
    out.write_bytes(bytes(data))
    return out


def test_a_truncated_or_corrupt_jpeg_is_still_flagged_on_the_fast_path(reader, tmp_path):
    damaged = [DATA / "media" / "aleppo-gps.truncated-half.jpg", _truncated_in_scan(tmp_path),
               _marker_overwritten(tmp_path)]
    for path in damaged:
        md = reader.read(path, fast=True)
        assert any(e.startswith("structure: ") for e in md["errors"]), (path.name, md["errors"])
        # a damaged file never skips ExifTool: its own findings are recorded as before
        assert "deferred" not in md and "exiftool" in md["readers"], path.name
    assert "truncated" in jpeg.read(str(damaged[1])).problems[0]
    assert jpeg.read(str(C2PA_PHOTO)).problems == []


def test_the_marker_walk_reads_the_frame_size_and_survives_fill_bytes_and_restarts():
    frame = b"\xff\xc0\x00\x0b\x08\x01\x02\x03\x04\x01\x01\x11\x00"  # 258 high x 772 wide
    scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x12\xff\x00\x34\xff\xd0\x56"
    good = b"\xff\xd8" + frame + scan + b"\xff\xff\xd9" + b"trailer"
    walked = jpeg.walk(good)
    assert (walked.width, walked.height, walked.scans, walked.problems) == (772, 258, 1, [])
    assert "truncated" in jpeg.walk(good[:-10]).problems[0]
    assert jpeg.walk(b"\xff\xd8\xff\xd9").problems == ["no image data: EOI before any scan"]


def _archive_item(cli_archive, photo: Path) -> str:
    ingested = cli_archive("ingest", str(photo), "--json", check=True).json()
    assert ingested["enrichment"] == {"deferred": 1, "enriched": 0}
    return ingested["files"][0]["sha256"]


def test_an_enriched_entry_verifies_and_carries_the_full_dump(cli_archive, reader, tmp_path):
    photo = tmp_path / "IMG_0001.jpg"
    shutil.copy(DATA / "exiftool" / "Canon.jpg", photo)
    item = _archive_item(cli_archive, photo)
    before = cli_archive("show", item, "--json", check=True).json()
    assert before["metadata_enrichment"]["state"] == "pending"
    assert "exiftool" not in before["metadata"]["raw"] and before["device"]["make"] == "Canon"
    found = cli_archive("search", "--json", check=True).json()["items"]  # builds the index
    done = cli_archive("enrich", "--json", check=True).json()
    assert done["summary"] == {"enriched": 1, "failed": 0}
    log = cli_archive("log", item, "--json", check=True).stdout.splitlines()
    entry = next(e for e in map(json.loads, log) if e["action"] == "enriched")
    dump = reader.read_exiftool(photo)["raw"]
    assert entry["details"]["exiftool"]["raw"] == dump and len(dump) > 50
    assert entry["details"]["metadata_sha256"] == before["history"][0]["details"][
        "metadata_sha256"]
    after = cli_archive("show", item, "--json", check=True).json()
    # `metadata` stays the document the ingest signed; the completed one is beside it
    assert after["metadata"] == before["metadata"] and before["metadata_enriched"] is None
    assert after["metadata_enriched"]["raw"]["exiftool"] == dump
    [reading] = after["enriched_readings"]
    assert reading["by"] == "Alice Admin" and reading["tool"] == "exiftool"
    assert reading["version"] and reading["disagreements"] == [] and reading["by_permitted"]
    assert after["metadata_enrichment"] == {"deferred": ["exiftool"], "state": "enriched",
                                            "entries": [entry["seq"]]}
    assert after["captured_at"] == before["captured_at"]
    assert "deferred" not in after["metadata_enriched"]
    assert cli_archive("verify").code == 0  # signatures, rules, fixity, the search index
    assert cli_archive("search", "--json", check=True).json()["items"] == found
    assert cli_archive("enrich", "--json", check=True).json()["summary"]["enriched"] == 0


def test_a_failed_enrichment_is_recorded_and_loses_nothing(cli_archive, tmp_path):
    photo = tmp_path / "IMG_0002.jpg"
    shutil.copy(DATA / "exiftool" / "Nikon.jpg", photo)
    item = _archive_item(cli_archive, photo)
    no_exiftool = tmp_path / "bin"
    no_exiftool.mkdir()
    failed = cli_archive("enrich", "--json", env={"PATH": str(no_exiftool)}, check=True).json()
    assert failed["summary"] == {"enriched": 0, "failed": 1}
    assert "not found" in failed["items"][0]["errors"][0]
    shown = cli_archive("show", item, "--json", check=True).json()
    assert shown["metadata_enrichment"]["state"] == "failed"
    assert shown["device"] == {"make": "NIKON", "model": "E775"}  # the signed fields stay
    assert cli_archive("verify").code == 0
    assert cli_archive("enrich", "--json", check=True).json()["summary"]["enriched"] == 0
    again = cli_archive("enrich", "--retry-failed", "--json", check=True).json()
    assert again["summary"] == {"enriched": 1, "failed": 0}
    shown = cli_archive("show", item, "--json", check=True).json()
    assert shown["metadata_enrichment"]["state"] == "enriched"
    assert "exiftool" in shown["metadata_enriched"]["raw"]
    assert [r["failed"] for r in shown["enriched_readings"]] == [True, False]


def test_ingest_with_enrich_and_full_metadata(cli_archive, tmp_path):
    for name in ("Canon.jpg", "Nikon.jpg"):
        shutil.copy(DATA / "exiftool" / name, tmp_path / name)
    one = cli_archive("ingest", str(tmp_path / "Canon.jpg"), "--enrich", "--json",
                      check=True).json()
    assert one["enrichment"] == {"deferred": 1, "enriched": 1}
    two = cli_archive("ingest", str(tmp_path / "Nikon.jpg"), "--full-metadata", "--json",
                      check=True).json()
    assert two["enrichment"] == {"deferred": 0, "enriched": 0}
    shown = cli_archive("show", two["files"][0]["sha256"], "--json", check=True).json()
    assert shown["metadata_enrichment"] is None and "exiftool" in shown["metadata"]["raw"]
