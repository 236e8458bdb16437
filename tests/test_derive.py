"""custody derive: derivatives with lineage (issue 18, part 1; docs/DERIVATIVES.md).

One archive is shared by the tests that only read it (three real derivations: a redacted JPEG, a
trimmed, transcoded and stripped MP4, a redacted still of that MP4); tests that change an archive
make their own.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import exifread
import pytest
from PIL import Image

from custody.ops.archive import Draft
from custody.ops.keyfiles import write_new_key
from tests.conftest import DATA, PASSPHRASE, Cli, one_line_error

JPEG = DATA / "media" / "aleppo-gps.jpg"  # 64x48, EXIF orientation 6 (48x64 as displayed), GPS
MP4 = DATA / "media" / "homs-loci.mp4"  # 1 s, 64x48, GPS in `loci`, make and model
BOX = (4, 10, 20, 12)  # X, Y, W, H in the picture as displayed


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("derive")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    write_new_key(cli.key, "Alice Admin", PASSPHRASE)
    cli("init", "--name", "Derivatives Centre", check=True)
    ingested = cli("ingest", JPEG, MP4, "--json", check=True).json()["files"]
    jpeg, mp4 = (f["sha256"] for f in ingested)
    x, y, w, h = BOX
    picture = cli("derive", jpeg[:12], "--purpose", "publication: a face redacted",
                  "--redact", f"{x},{y},{w},{h}", "--strip-metadata", "--json", check=True).json()
    clip = cli("derive", mp4, "--purpose", "publication: the first half", "--trim", "0-0.5",
               "--transcode", "mp4-h264-480p", "--strip-metadata", "--json", check=True).json()
    still = cli("derive", mp4, "--purpose", "a frame for the press", "--still", "0.5",
                "--redact", "0,0,8,8", "--json", check=True).json()
    return {"cli": cli, "jpeg": jpeg, "mp4": mp4, "picture": picture, "clip": clip,
            "still": still}


def _object(cli: Cli, sha: str) -> Path:
    return cli.archive / "objects" / "sha256" / sha[:2] / sha


def _exiftool(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-n", "-a", "-G1", str(path)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]


def _log(cli: Cli) -> list[dict]:
    return [json.loads(line) for line in cli("log", "--json", check=True).stdout.splitlines()]


def test_redaction_fills_the_box_and_leaves_the_original_unchanged(shared):
    cli, picture = shared["cli"], shared["picture"]
    assert picture["status"] == "new" and picture["mime"] == "image/png"
    with Image.open(_object(cli, picture["sha256"])) as derived:
        assert derived.size == (48, 64)  # upright: the boxes are in the picture as displayed
        pixels = derived.convert("RGB").load()
        x, y, w, h = BOX
        assert {pixels[i, j] for i in range(x, x + w) for j in range(y, y + h)} == {(0, 0, 0)}
        assert pixels[x + w + 2, y + h + 2] != (0, 0, 0)  # outside the box: the picture
    original = _object(cli, shared["jpeg"]).read_bytes()
    assert original == JPEG.read_bytes()
    assert hashlib.sha256(original).hexdigest() == shared["jpeg"]


def test_strip_metadata_removes_gps_serials_and_names(shared):
    cli = shared["cli"]
    # the originals carry GPS, make and model (so the test would see them)
    assert any("GPS" in k for k in _exiftool(_object(cli, shared["mp4"])))
    with open(_object(cli, shared["jpeg"]), "rb") as f:
        assert any(k.startswith("GPS") for k in exifread.process_file(f, details=False))
    picture = _object(cli, shared["picture"]["sha256"])
    with open(picture, "rb") as f:
        assert exifread.process_file(f, details=False) == {}
    for path in (picture, _object(cli, shared["clip"]["sha256"])):
        tags = _exiftool(path)
        found = [k for k in tags if any(word in k for word in (
            "GPS", "Location", "Make", "Model", "Serial", "Author", "Artist", "Encoder"))]
        assert found == [], (path, found)


def test_each_derivative_records_its_original_operations_and_tools(shared):
    cli = shared["cli"]
    derived = {e["item"]: e for e in _log(cli) if e["action"] == "derived"}
    picture = derived[shared["picture"]["sha256"]]["details"]
    assert picture["original"] == shared["jpeg"]
    assert picture["operations"] == [
        {"op": "redact", "boxes": [list(BOX)], "fill": "#000000"}, {"op": "strip-metadata"}]
    assert set(picture["tools"]) == {"custody", "Pillow"} and picture["commands"] == []
    assert picture["source"] == {"name": "aleppo-gps.derived.png"}
    clip = derived[shared["clip"]["sha256"]]["details"]
    assert [o["op"] for o in clip["operations"]] == ["trim", "transcode", "strip-metadata"]
    assert clip["operations"][0] == {"op": "trim", "start": "0.000", "end": "0.500"}
    assert clip["tools"]["ffmpeg"].startswith("ffmpeg version ")
    assert clip["commands"][0][:1] == ["ffmpeg"] and "{input}" in clip["commands"][0]
    assert clip["mime"] == "video/mp4" and clip["output"] == {"format": "mp4"}
    still = derived[shared["still"]["sha256"]]["details"]
    assert [o["op"] for o in still["operations"]] == ["still", "redact"]
    assert still["mime"] == "image/png"
    # each was read through a logged access with the same purpose, before the derived entry
    access = {e["seq"]: e for e in _log(cli) if e["action"] == "access"}
    for d in (picture, clip, still):
        assert access[d["access"]]["details"]["kind"] == "derive"
        assert access[d["access"]]["details"]["purpose"] == d["purpose"]


def test_show_gives_the_lineage_both_ways(shared):
    cli = shared["cli"]
    clip = cli("show", shared["clip"]["sha256"], "--json", check=True).json()
    assert clip["derived_from"]["sha256"] == shared["mp4"]
    assert clip["derivatives"] == [] and clip["history"][0]["action"] == "derived"
    original = cli("show", shared["mp4"], "--json", check=True).json()
    assert original["derived_from"] is None
    assert [d["sha256"] for d in original["derivatives"]] == [
        shared["clip"]["sha256"], shared["still"]["sha256"]]
    text = cli("show", shared["picture"]["sha256"], check=True).stdout
    assert f"derived from:    {shared['jpeg']}" in text
    assert cli("verify", check=True).code == 0


def test_bad_input_is_one_line_and_stores_nothing(shared, tmp_path):
    cli = shared["cli"]
    before = (len(_log(cli)), sorted(p.name for p in (cli.archive / "objects").rglob("*")))
    cases = [
        (["0" * 64, "--strip-metadata"], 3, "no item"),
        ([shared["jpeg"], "--redact", "40,60,20,20"], 2, "outside the 48x64 picture"),
        ([shared["mp4"], "--trim", "5-9"], 2, "not inside the video"),
        ([shared["mp4"], "--transcode", "mp4-av1-8k"], 2, "unknown preset"),
        ([shared["mp4"], "--redact", "0,0,4,4"], 2, "--redact works on images"),
        ([shared["jpeg"], "--still", "1"], 2, "works on video"),
        ([shared["jpeg"]], 2, "at least one operation"),
    ]
    for args, code, said in cases:
        done = cli("derive", *args, "--purpose", "test")
        assert done.code == code and said in one_line_error(done), (args, done.stderr)
    after = (len(_log(cli)), sorted(p.name for p in (cli.archive / "objects").rglob("*")))
    assert after == before


def test_ffmpeg_failing_is_one_line_and_records_no_item_and_ffmpeg_holds_no_secret(shared,
                                                                                  tmp_path):
    cli = shared["cli"]
    real = shutil.which("ffmpeg")
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    environ = tmp_path / "ffmpeg.environ"
    fake.write_text(f'#!/bin/sh\n[ "$1" = -version ] && exec {real} -version\n'
                    f'env > {environ}\n'
                    'echo "deliberate failure: no such codec" >&2\nexit 1\n')
    fake.chmod(0o755)
    items = len(cli("list", "--json", check=True).json())
    done = cli("derive", shared["mp4"], "--purpose", "test", "--trim", "0-0.5",
               env={"PATH": f"{fake.parent}:{cli.env['PATH']}"})
    assert done.code == 3
    assert "ffmpeg failed: deliberate failure" in one_line_error(done)
    assert len(cli("list", "--json", check=True).json()) == items
    assert _log(cli)[-1]["action"] == "access"  # the original was read: that stays recorded
    # ffmpeg ran in the supervised worker: the allow-listed environment, no passphrase, no home
    seen = environ.read_text()
    assert "CUSTODY" not in seen and PASSPHRASE not in seen and "HOME=/nonexistent" in seen


def test_export_carries_a_derivative_without_its_original_and_its_lineage_proof(shared):
    cli = shared["cli"]
    package = cli.tmp / "publication"
    cli("export", shared["picture"]["sha256"], "--purpose", "publication", "-o", package,
        check=True)
    assert [p.name for p in (package / "data").iterdir()] == ["aleppo-gps.derived.png"]
    statement = json.loads((package / "custody" / "package.json").read_text())
    first = next(e for e in _log(cli) if e["item"] == shared["jpeg"])
    assert statement["lineage"] == [first["seq"]]
    checked = cli("verify-package", package, "--json", check=True).json()
    assert checked["ok"] and checked["lineage"] == [{
        "derivative": shared["picture"]["sha256"], "original": shared["jpeg"],
        "original_first_record": first["seq"], "original_held": False}]
    text = cli("verify-package", package, check=True).stdout
    assert f"derived from {shared['jpeg']}" in text


def test_a_report_of_a_derivative_alone_rechecks_with_its_lineage(shared):
    cli = shared["cli"]
    report = cli.tmp / "still.html"
    cli("report", shared["still"]["sha256"], "-o", report, check=True)
    html = report.read_text()
    assert "Derived from" in html and shared["mp4"] in html
    assert cli("verify-report", report).code == 0


def test_verify_names_a_derivative_whose_record_is_incomplete(cli, archive, alice):
    made = archive.objects.put(io.BytesIO(b"not really derived from anything")).digests
    other = archive.objects.put(io.BytesIO(b"a second one")).digests

    def details(digests, **changed):
        return {"digests": {"md5": digests.md5, "sha1": digests.sha1,
                            "sha256": digests.sha256, "sha512": digests.sha512},
                "size": digests.size, "mime": "text/plain", "metadata_sha256": "0" * 64,
                "original": "ab" * 32, "access": 1, "purpose": "forged",
                "operations": [{"op": "strip-metadata"}], "tools": {"custody": "0.1.0"},
                "commands": [], "output": {"format": "png"}, "case": None} | changed

    archive.append(alice, [
        Draft("derived", made.sha256, details(made)),
        Draft("derived", other.sha256, details(
            other, original=made.sha256, operations=[{"op": "blur", "radius": 3}])),
    ])
    done = cli("verify")
    assert done.code == 1
    assert "which has no first record before it (rule derived-original)" in done.stdout
    assert "unknown operation" in done.stdout and "(rule derived-record)" in done.stdout


def test_a_field_custodian_may_not_derive(shared, made_key, tmp_path):
    cli = shared["cli"]
    field = tmp_path / "keys" / "fatima.key"
    made_key(field, "Fatima Field")
    cli("enroll", str(field) + ".pub", "--role", "field", check=True)
    done = cli("derive", shared["jpeg"], "--purpose", "test", "--strip-metadata",
               env={"CUSTODY_KEY": str(field)})
    assert done.code == 3 and "may not" in one_line_error(done)
    assert _log(cli)[-1]["action"] == "refused"


def test_the_same_derivation_again_gives_the_same_bytes(shared):
    """Reproducible: the same operations with the same tools give the same item, recorded once
    (the second reading of the original is still logged)."""
    cli = shared["cli"]
    x, y, w, h = BOX
    done = cli("derive", shared["jpeg"], "--purpose", "same again", "--redact", f"{x},{y},{w},{h}",
               "--strip-metadata", "--json", check=True).json()
    assert done["sha256"] == shared["picture"]["sha256"] and done["status"] == "present"
    assert _log(cli)[-1]["action"] == "access"
