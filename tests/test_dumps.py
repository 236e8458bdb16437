"""Phone dumps and card copies (issue 12 item 3): junk and --include/--exclude, resumed re-runs,
--dry-run, and zip/tar dumps unpacked member by member under the packages' hostile-input rules.
Real JPEGs from tests/data; every zip and tar is made here with zipfile/tarfile."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from custody.package.dumps import _zip_utc
from tests.conftest import DATA

JPEGS = [DATA / "media" / n for n in ("aleppo-gps.jpg", "carbon-south-west.jpg",
                                      "clock-no-offset.jpg")]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def card(tmp_path: Path) -> Path:
    """A camera card as a Mac leaves it: photos, and the junk of two operating systems."""
    root = tmp_path / "card"
    (root / "DCIM" / "100APPLE").mkdir(parents=True)
    for i, jpeg in enumerate(JPEGS[:2], 1):
        shutil.copy(jpeg, root / "DCIM" / "100APPLE" / f"IMG_000{i}.JPG")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1 finder junk")
    (root / "DCIM" / "100APPLE" / "._IMG_0001.JPG").write_bytes(b"\x00\x05\x16\x07 appledouble")
    (root / ".Trashes" / "501").mkdir(parents=True)
    (root / ".Trashes" / "501" / "deleted.jpg").write_bytes(b"trash")
    (root / ".Spotlight-V100").mkdir()
    (root / ".Spotlight-V100" / "store.db").write_bytes(b"spotlight")
    (root / "Thumbs.db").write_bytes(b"windows thumbnails")
    (root / "DESKTOP.INI").write_bytes(b"[.ShellClassInfo]")
    return root


def ledger_size(cli) -> int:
    return len(cli("log", "--json", check=True).stdout.splitlines())


def entries(cli) -> list[dict]:
    return [json.loads(line) for line in cli("log", "--json", check=True).stdout.splitlines()]


def archive_state(folder: Path) -> dict[str, str]:
    """Every file of the archive folder and its bytes' digest: byte-for-byte comparable."""
    return {str(p.relative_to(folder)): sha(p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


# Junk, --include and --exclude ------------------------------------------------------------------


def test_os_junk_is_skipped_by_default_and_counted(cli_archive, tmp_path):
    src = card(tmp_path)
    r = cli_archive("ingest", src)
    assert r.code == 0, r.stderr
    stored = [line.split()[-1] for line in r.stdout.splitlines()]
    assert [Path(p).name for p in stored] == ["IMG_0001.JPG", "IMG_0002.JPG"]
    assert "6 skipped (6 operating-system junk)" in r.stderr
    assert "skipped" not in r.stderr.replace("6 skipped", "")  # counted, not listed one a line

    again = cli_archive("ingest", src, "--keep-junk", "--json", check=True).json()
    kept = {Path(f["path"]).name for f in again["files"] if f["status"] == "new"}
    assert kept == {".DS_Store", "._IMG_0001.JPG", "deleted.jpg", "store.db", "Thumbs.db",
                    "DESKTOP.INI"}
    assert again["summary"]["junk"] == 0


def test_junk_count_is_in_json_with_each_path_and_why(cli_archive, tmp_path):
    r = cli_archive("ingest", card(tmp_path), "--json", check=True).json()
    assert r["summary"]["junk"] == 6 and r["summary"]["skipped"] == 6
    junk = {Path(s["path"]).name: s for s in r["skipped"]}
    assert set(junk) == {".DS_Store", "._IMG_0001.JPG", "deleted.jpg", "store.db", "Thumbs.db",
                         "DESKTOP.INI"}
    assert all(s["selected"] == "junk" and "junk" in s["reason"] for s in junk.values())


def test_exclude_wins_over_include_and_include_never_brings_junk_back(cli_archive, tmp_path):
    src = card(tmp_path)
    shutil.copy(JPEGS[2], src / "DCIM" / "100APPLE" / "img_0003.jpg")
    (src / "DCIM" / "100APPLE" / "clip.MOV").write_bytes(b"not a photo")
    r = cli_archive("ingest", src, "--include", "*.jpg", "--exclude", "IMG_0002*", "--json",
                    check=True).json()
    names = sorted(Path(f["path"]).name for f in r["files"])
    # case-insensitive: *.jpg takes IMG_0001.JPG; ._IMG_0001.JPG matches it too but is junk
    assert names == ["IMG_0001.JPG", "img_0003.jpg"]
    why = {Path(s["path"]).name: s["reason"] for s in r["skipped"]}
    assert why["IMG_0002.JPG"] == "excluded by --exclude 'IMG_0002*'"
    assert why["clip.MOV"] == "matched no --include pattern"
    assert "junk" in why["._IMG_0001.JPG"]
    assert r["summary"]["excluded"] == 2 and r["summary"]["junk"] == 6


def test_an_excluded_folder_is_left_out_whole_and_a_named_path_always_taken(cli_archive, tmp_path):
    src = card(tmp_path)
    r = cli_archive("ingest", src, "--exclude", "DCIM/100APPLE", "--json", check=True).json()
    assert r["files"] == [] and r["summary"]["excluded"] == 3  # its ._ file too: exclude first
    assert r["summary"]["junk"] == 5
    # a file named on the command line is what the user asked for, junk or not
    named = cli_archive("ingest", src / "Thumbs.db", "--json", check=True).json()
    assert [f["status"] for f in named["files"]] == ["new"]


# Resuming --------------------------------------------------------------------------------------


def test_reingesting_the_same_folder_appends_nothing(cli_archive, tmp_path):
    src = card(tmp_path)
    cli_archive("ingest", src, check=True)
    before = ledger_size(cli_archive)
    r = cli_archive("ingest", src)
    assert r.code == 0, r.stderr
    assert ledger_size(cli_archive) == before  # a full re-run used to double the ledger
    assert "2 already present (2 already recorded from the same source" in r.stderr
    assert all(line.startswith("unchanged ") for line in r.stdout.splitlines())
    again = cli_archive("ingest", src, "--json", check=True).json()
    assert again["summary"]["unchanged"] == 2 and again["summary"]["new"] == 0
    assert {f["seq"] for f in again["files"]} <= {e["seq"] for e in entries(cli_archive)}


def test_a_changed_file_or_the_same_content_elsewhere_is_still_recorded(cli_archive, tmp_path):
    src = card(tmp_path)
    cli_archive("ingest", src, check=True)
    before = ledger_size(cli_archive)
    photo = src / "DCIM" / "100APPLE" / "IMG_0001.JPG"
    photo.write_bytes(JPEGS[2].read_bytes())  # changed content at the same path: a new item
    (src / "copy").mkdir()
    shutil.copy(src / "DCIM" / "100APPLE" / "IMG_0002.JPG", src / "copy" / "IMG_0002.JPG")
    r = cli_archive("ingest", src, "--json", check=True).json()
    status = {f["path"].split("card/")[-1]: f["status"] for f in r["files"]}
    assert status == {"DCIM/100APPLE/IMG_0001.JPG": "new", "DCIM/100APPLE/IMG_0002.JPG": "unchanged",
                      "copy/IMG_0002.JPG": "present"}
    assert [e["action"] for e in entries(cli_archive)[before:]] == ["ingest", "sighting"]


def test_a_rerun_under_a_new_case_is_recorded(cli_archive, tmp_path):
    src = card(tmp_path)
    cli_archive("ingest", src, check=True)
    r = cli_archive("ingest", src, "--case", "DOUMA-2018", "--json", check=True).json()
    assert r["summary"]["present"] == 2 and r["summary"]["unchanged"] == 0
    items = cli_archive("list", "--json", check=True).json()
    assert all(i["cases"] == ["DOUMA-2018"] for i in items)
    assert cli_archive("ingest", src, "--case", "DOUMA-2018", "--json",
                       check=True).json()["summary"]["unchanged"] == 2


# Dry run ---------------------------------------------------------------------------------------


def test_dry_run_lists_everything_and_stores_nothing(cli_archive, tmp_path):
    src = card(tmp_path)
    (tmp_path / "earlier").mkdir()
    cli_archive("ingest", shutil.copy(JPEGS[0], tmp_path / "earlier"), check=True)
    shutil.copy(JPEGS[0], src / "dup.jpg")  # content held already, from other paths
    before = archive_state(cli_archive.archive)
    r = cli_archive("ingest", src, "--dry-run")
    assert r.code == 0, r.stderr
    assert archive_state(cli_archive.archive) == before  # no object, entry, metadata row
    words = {line.split()[-1].split("card/")[-1]: line.split()[0] for line in r.stdout.splitlines()}
    assert words == {"DCIM/100APPLE/IMG_0001.JPG": "to-sight", "DCIM/100APPLE/IMG_0002.JPG":
                     "to-store", "dup.jpg": "to-sight"}
    assert r.stderr.startswith("dry run, nothing was stored: 1 new, 2 already present")
    doc = cli_archive("ingest", src, "--dry-run", "--json", check=True).json()
    assert doc["dry_run"] is True and doc["summary"]["junk"] == 6
    assert all(f["seq"] is None for f in doc["files"])
    assert archive_state(cli_archive.archive) == before


def test_dry_run_says_what_is_already_recorded(cli_archive, tmp_path):
    src = card(tmp_path)
    cli_archive("ingest", src, check=True)
    before = archive_state(cli_archive.archive)
    doc = cli_archive("ingest", src, "--dry-run", "--json", check=True).json()
    assert [f["status"] for f in doc["files"]] == ["unchanged", "unchanged"]
    assert archive_state(cli_archive.archive) == before


# Dumps -----------------------------------------------------------------------------------------

MEMBERS = {"DCIM/100APPLE/IMG_0001.JPG": JPEGS[0], "DCIM/100APPLE/IMG_0002.JPG": JPEGS[1],
           "WhatsApp/Media/IMG-20180407-WA0003.jpg": JPEGS[2]}


def make_dump(path: Path, members: dict[str, bytes], mtime: int = 1523098800) -> Path:
    """A zip or tar (by the name's suffix) of `members`, each dated `mtime` (UTC)."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                info = zipfile.ZipInfo(name, date_time=(2018, 4, 7, 14, 0, 0))
                info.extra = struct.pack("<HHBi", 0x5455, 5, 1, mtime)  # UT: UTC mtime
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
        return path
    mode = {"gz": "w:gz", "tgz": "w:gz", "bz2": "w:bz2", "xz": "w:xz"}.get(
        path.name.rsplit(".", 1)[-1], "w")
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["phone.zip", "phone.tar", "phone.tar.gz", "phone.tgz",
                                  "phone.tar.bz2", "phone.tar.xz"])
def test_a_dump_is_kept_and_each_member_is_an_item_linked_to_it(cli_archive, tmp_path, name):
    members = {k: v.read_bytes() for k, v in MEMBERS.items()}
    dump = make_dump(tmp_path / name, {**members, "__MACOSX/DCIM/._IMG_0001.JPG": b"junk"})
    r = cli_archive("ingest", "--unpack", dump, "--json", check=True).json()
    dump_sha = sha(dump.read_bytes())
    assert r["files"][0]["sha256"] == dump_sha and r["files"][0]["member"] is None
    got = {f["member"]["member"]: f for f in r["files"][1:]}
    assert set(got) == set(members) and all(f["status"] == "new" for f in got.values())
    assert r["summary"]["junk"] == 1 and r["refused"] == []
    for rel, data in members.items():
        assert got[rel]["sha256"] == sha(data)  # the member's own bytes, whole
        assert got[rel]["path"] == f"{dump}!{rel}"
    ingest = {e["item"]: e for e in entries(cli_archive) if e["action"] == "ingest"}
    src = ingest[sha(members["DCIM/100APPLE/IMG_0001.JPG"])]["details"]["source"]
    assert src == {"container": dump_sha, "member": "DCIM/100APPLE/IMG_0001.JPG",
                   "name": "IMG_0001.JPG", "mtime": "2018-04-07T11:00:00Z"}
    assert ingest[dump_sha]["details"]["source"]["path"] == str(dump)

    photo = cli_archive("show", sha(members["DCIM/100APPLE/IMG_0001.JPG"]), "--json",
                        check=True).json()
    assert photo["mime"] == "image/jpeg" and photo["gps"] is not None  # its metadata was read
    assert [(u["container"], u["member"], u["container_names"]) for u in photo["unpacked_from"]] \
        == [(dump_sha, "DCIM/100APPLE/IMG_0001.JPG", [name])]
    text = cli_archive("show", dump_sha, check=True).stdout
    assert "3 item(s) unpacked from this dump" in text
    shown = cli_archive("show", dump_sha, "--json", check=True).json()
    assert sorted(m["member"] for m in shown["members"]) == sorted(members)
    member_text = cli_archive("show", sha(members["DCIM/100APPLE/IMG_0002.JPG"]), check=True).stdout
    assert f"unpacked from:   {dump_sha} ({name}) at DCIM/100APPLE/IMG_0002.JPG" in member_text
    assert cli_archive("verify").code == 0


def test_the_report_of_a_member_names_its_dump_and_path(cli_archive, tmp_path):
    members = {k: v.read_bytes() for k, v in MEMBERS.items()}
    dump = make_dump(tmp_path / "phone.zip", members)
    cli_archive("ingest", "--unpack", dump, check=True)
    out = tmp_path / "member.html"
    cli_archive("report", sha(members["DCIM/100APPLE/IMG_0002.JPG"]), "-o", out, check=True)
    html = out.read_text()
    assert "in dump" in html and sha(dump.read_bytes()) in html
    assert "DCIM/100APPLE/IMG_0002.JPG" in html


def test_a_zip_without_a_utc_time_records_the_dos_time_as_local(cli_archive, tmp_path):
    dump = tmp_path / "card.zip"
    with zipfile.ZipFile(dump, "w") as zf:
        zf.writestr(zipfile.ZipInfo("IMG_0001.JPG", date_time=(2018, 4, 7, 14, 0, 0)),
                    JPEGS[0].read_bytes())
    cli_archive("ingest", "--unpack", dump, check=True)
    member = [e for e in entries(cli_archive) if e["action"] == "ingest"][-1]
    assert member["details"]["source"]["mtime_local"] == "2018-04-07T14:00:00"
    assert "mtime" not in member["details"]["source"]  # never presented as UTC


def test_zip_extra_field_times_are_utc():
    assert _zip_utc(struct.pack("<HHBi", 0x5455, 5, 1, 1523098800)) == 1523098800
    filetime = (1523098800 + 11644473600) * 10_000_000
    ntfs = struct.pack("<HHIHHQQQ", 0x000A, 32, 0, 1, 24, filetime, filetime, filetime)
    assert _zip_utc(ntfs) == 1523098800
    assert _zip_utc(b"") is None


def test_without_unpack_a_dump_is_one_item_and_the_hint_says_so(cli_archive, tmp_path):
    dump = make_dump(tmp_path / "phone.zip", {k: v.read_bytes() for k, v in MEMBERS.items()})
    r = cli_archive("ingest", dump, check=True)
    assert len(r.stdout.splitlines()) == 1
    assert "add --unpack to ingest the members" in r.stderr


def test_resuming_a_dump_appends_nothing(cli_archive, tmp_path):
    dump = make_dump(tmp_path / "phone.tar.gz", {k: v.read_bytes() for k, v in MEMBERS.items()})
    cli_archive("ingest", "--unpack", dump, check=True)
    before = ledger_size(cli_archive)
    r = cli_archive("ingest", "--unpack", dump, "--json", check=True).json()
    assert r["summary"]["unchanged"] == 4 and ledger_size(cli_archive) == before


def test_dry_run_of_a_dump_stores_nothing(cli_archive, tmp_path):
    dump = make_dump(tmp_path / "phone.zip", {**{k: v.read_bytes() for k, v in MEMBERS.items()},
                                              "../escape.jpg": b"x"})
    before = archive_state(cli_archive.archive)
    r = cli_archive("ingest", "--unpack", "--dry-run", dump, "--json", check=True).json()
    assert [f["status"] for f in r["files"]] == ["new"] * 4
    assert [x["member"] for x in r["refused"]] == ["../escape.jpg"]
    assert archive_state(cli_archive.archive) == before


# Hostile dumps ---------------------------------------------------------------------------------


def _tar_special(tf: tarfile.TarFile, name: str, kind: bytes, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    tf.addfile(info)


def test_hostile_tar_members_are_refused_and_nothing_of_them_is_stored(cli_archive, tmp_path):
    good = JPEGS[0].read_bytes()
    dump = tmp_path / "hostile.tar"
    with tarfile.open(dump, "w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in (("DCIM/good.jpg", good), ("../../etc/cron.d/evil", b"traversal"),
                           ("/etc/passwd", b"absolute"), ("DCIM/dup.jpg", b"first"),
                           ("dcim/DUP.JPG", b"second")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        _tar_special(tf, "DCIM/link.jpg", tarfile.SYMTYPE, "/etc/shadow")
        _tar_special(tf, "DCIM/hard.jpg", tarfile.LNKTYPE, "DCIM/good.jpg")
        _tar_special(tf, "dev/sda", tarfile.BLKTYPE)
        _tar_special(tf, "fifo", tarfile.FIFOTYPE)
    r = cli_archive("ingest", "--unpack", dump, "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert [f["path"] for f in doc["files"]] == [str(dump), f"{dump}!DCIM/good.jpg"]
    why = {x["member"]: x["reason"] for x in doc["refused"]}
    assert "path traversal" in why["../../etc/cron.d/evil"]
    assert "absolute path" in why["/etc/passwd"]
    assert "same file" in why["DCIM/dup.jpg"] and "same file" in why["dcim/DUP.JPG"]
    assert why["DCIM/link.jpg"] == "a symbolic link" and why["DCIM/hard.jpg"] == "a hard link"
    assert "special file" in why["dev/sda"] and "special file" in why["fifo"]
    assert doc["summary"]["refused"] == 8
    lines = [line for line in r.stderr.splitlines() if line.startswith("refused ")]
    assert len(lines) == 8 and f"refused {dump}!DCIM/link.jpg: a symbolic link" in lines
    held = {i["sha256"] for i in cli_archive("list", "--json", check=True).json()}
    assert held == {sha(dump.read_bytes()), sha(good)}  # the dump is always kept
    objects = [p for p in (cli_archive.archive / "objects" / "sha256").rglob("*") if p.is_file()]
    assert len(objects) == 2


def _flag_encrypted(data: bytes) -> bytes:
    """Set the 'encrypted' bit of every zip header (local and central), as a tool would."""
    out = bytearray(data)
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = out.find(sig)
        while i != -1:
            out[i + at] |= 0x01
            i = out.find(sig, i + 4)
    return bytes(out)


def test_hostile_zip_members_are_refused_and_the_rest_is_stored(cli_archive, tmp_path):
    good = JPEGS[1].read_bytes()
    noise = os.urandom(64 << 10)  # incompressible: the dump as a whole is not a bomb
    dump = tmp_path / "hostile.zip"
    with zipfile.ZipFile(dump, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("DCIM/good.jpg", good)
        zf.writestr("noise.bin", noise)
        zf.writestr("bomb.bin", b"\0" * (2 << 20))  # 2 MiB from about 2 KiB
        zf.writestr("C:/Windows/evil.exe", b"drive")
        zf.writestr("DCIM\\back.jpg", b"backslash")
        link = zipfile.ZipInfo("DCIM/link.jpg")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    r = cli_archive("ingest", "--unpack", dump, "--json", check=True).json()
    why = {x["member"]: x["reason"] for x in r["refused"]}
    assert "decompression bomb" in why["bomb.bin"]
    assert "absolute path" in why["C:/Windows/evil.exe"]
    assert "backslash" in why["DCIM\\back.jpg"]
    assert why["DCIM/link.jpg"] == "a symbolic link"
    assert sorted(f["path"].rsplit("!", 1)[-1] for f in r["files"][1:]) == ["DCIM/good.jpg",
                                                                              "noise.bin"]
    held = {i["sha256"] for i in cli_archive("list", "--json", check=True).json()}
    assert held == {sha(dump.read_bytes()), sha(good), sha(noise)}


def test_an_encrypted_zip_member_is_refused(cli_archive, tmp_path):
    plain = tmp_path / "plain.zip"
    make_dump(plain, {"IMG_0001.JPG": JPEGS[0].read_bytes()})
    dump = tmp_path / "locked.zip"
    dump.write_bytes(_flag_encrypted(plain.read_bytes()))
    r = cli_archive("ingest", "--unpack", dump, "--json", check=True).json()
    assert [(x["member"], x["reason"]) for x in r["refused"]] == [("IMG_0001.JPG", "encrypted")]
    assert len(r["files"]) == 1 and r["files"][0]["status"] == "new"  # the dump itself


def test_a_corrupt_member_is_refused_and_no_partial_object_is_stored(cli_archive, tmp_path):
    data = JPEGS[0].read_bytes()
    dump = tmp_path / "damaged.zip"
    with zipfile.ZipFile(dump, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("IMG_0001.JPG", data)
    raw = bytearray(dump.read_bytes())
    at = raw.find(data[1000:1016])
    raw[at] ^= 0xFF  # one flipped byte: the CRC no longer matches
    dump.write_bytes(bytes(raw))
    r = cli_archive("ingest", "--unpack", dump, "--json", check=True).json()
    assert [x["member"] for x in r["refused"]] == ["IMG_0001.JPG"]
    assert "CRC" in r["refused"][0]["reason"]
    objects = [p for p in (cli_archive.archive / "objects" / "sha256").rglob("*") if p.is_file()]
    assert len(objects) == 1  # the dump; no partial member, no temp file left
    assert not list((cli_archive.archive / "objects" / "tmp").glob("*"))


def test_a_dump_over_the_limits_is_kept_and_not_unpacked(cli_archive, tmp_path):
    dump = make_dump(tmp_path / "big.tar.gz", {k: v.read_bytes() for k, v in MEMBERS.items()})
    r = cli_archive("ingest", "--unpack", dump, "--json",
                    env={"CUSTODY_PACKAGE_MAX_FILES": "2"}, check=True).json()
    assert [f["path"] for f in r["files"]] == [str(dump)]
    assert len(r["refused"]) == 1 and "more than 2 members" in r["refused"][0]["reason"]
    assert "the dump itself is kept" in r["refused"][0]["reason"]


def test_a_file_named_like_a_dump_that_is_not_one_is_kept(cli_archive, tmp_path):
    fake = tmp_path / "photos.zip"
    fake.write_bytes(JPEGS[0].read_bytes())
    r = cli_archive("ingest", "--unpack", fake, "--json", check=True).json()
    assert [f["status"] for f in r["files"]] == ["new"]
    assert "not a readable zip or tar" in r["refused"][0]["reason"]


@pytest.mark.parametrize("name", ["bomb.zip", "bomb.tar.gz"])
def test_a_decompression_bomb_dump_is_kept_and_not_unpacked(cli_archive, tmp_path, name):
    dump = make_dump(tmp_path / name, {"DCIM/zeros.jpg": b"\0" * (50 << 20)})  # 50 MiB in ~50 KiB
    r = cli_archive("ingest", "--unpack", dump, "--json", check=True).json()
    assert [f["path"] for f in r["files"]] == [str(dump)]
    assert len(r["refused"]) == 1 and "decompression bomb" in r["refused"][0]["reason"]
    assert len(cli_archive("list", "--json", check=True).json()) == 1


def test_duplicate_zip_members_are_both_refused(cli_archive, tmp_path):
    dump = tmp_path / "twice.zip"
    with pytest.warns(UserWarning), zipfile.ZipFile(dump, "w") as zf:
        zf.writestr("DCIM/IMG_0001.JPG", JPEGS[0].read_bytes())
        zf.writestr("DCIM/IMG_0001.JPG", JPEGS[1].read_bytes())  # a second file of the same name
    r = cli_archive("ingest", "--unpack", dump, "--json", check=True).json()
    assert [x["member"] for x in r["refused"]] == ["DCIM/IMG_0001.JPG"] * 2
    assert all("same file" in x["reason"] for x in r["refused"])
    assert len(r["files"]) == 1
