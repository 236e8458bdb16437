"""Hostile packages: every one refused with a one-line error naming the problem, and nothing
written to the receiving archive (its ledger, object store and temp folder unchanged, no unpacked
files left behind). Also the Library of Congress BagIt conformance suite, read by import."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import unicodedata
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.errors import CustodyError
from custody.ops.archive import Archive
from custody.ops.keyfiles import load_key
from custody.package.bagsafe import Limits
from custody.package.importing import import_package

from .conftest import DATA, PASSPHRASE, Cli, one_line_error
from .test_package import rebag, state

SUITE = DATA / "bagit-conformance"
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zips made on purpose


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A valid two-item package exported from archive A, and an empty archive B to import into."""
    tmp = tmp_path_factory.mktemp("hostile")
    a = Cli(tmp, tmp / "A", tmp / "alice.key")
    a("key", "new", "--name", "Alice Admin", check=True)
    a("init", "--name", "Org A", check=True)
    a("ingest", DATA / "media" / "aleppo-gps.jpg", DATA / "media" / "random-4k.bin",
      "--case", "C1", check=True)
    a("export", "--case", "C1", "--purpose", "test", "-o", tmp / "pkg", check=True)
    b = Cli(tmp, tmp / "B", tmp / "bob.key")
    b("key", "new", "--name", "Bob Admin", check=True)
    b("init", "--name", "Org B", check=True)
    b.package = tmp / "pkg"
    b.work = tmp / "work"
    b.work.mkdir()
    return b


def bag_copy(world, name="bag") -> Path:
    target = world.work / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(world.package, target)
    return target


def refused(world, path: Path, expect: str, code: int, limits: Limits | None = None) -> str:
    """Import `path` into B in-process: it must fail with `code`, a one-line message whose
    problem names `expect`, and leave B exactly as it was."""
    archive = Archive.open(world.archive)
    key = load_key(world.key, PASSPHRASE)
    before = state(world.archive)
    with pytest.raises(CustodyError) as info:
        import_package(archive, key, path, limits=limits)
    exc = info.value
    problems = getattr(exc, "problems", [exc.message])
    assert exc.exit_code == code, (exc.exit_code, problems)
    assert "\n" not in exc.message
    assert expect in problems[0], problems
    assert state(world.archive) == before
    assert not list(path.parent.glob(".custody-unpack-*"))
    return exc.message


def test_the_untouched_package_is_accepted_as_a_baseline(world):
    from custody.package.verify import verify_package

    assert verify_package(world.package).ok


# Folders ---------------------------------------------------------------------------------------


def _payload(bag: Path) -> Path:
    return next(p for p in sorted((bag / "data").rglob("*")) if p.is_file())


def _symlink_file(bag):
    f = _payload(bag)
    f.unlink()
    f.symlink_to("/etc/passwd")


def _symlink_folder(bag):
    (bag / "data" / "etc").symlink_to("/etc")


def _hard_link(bag):
    outside = bag.parent / "outside.txt"
    outside.write_text("secret")
    os.link(outside, bag / "data" / "inside.txt")


def _case_twin(bag):
    f = _payload(bag)
    shutil.copy(f, f.with_name(f.name.swapcase()))


def _normalisation_twin(bag):
    (bag / "data" / unicodedata.normalize("NFC", "Núñez.txt")).write_text("a")
    (bag / "data" / unicodedata.normalize("NFD", "Núñez.txt")).write_text("b")


def _fifo(bag):
    os.mkfifo(bag / "data" / "pipe")


def _bad_utf8_name(bag):
    with open(os.path.join(os.fsencode(bag / "data"), b"\xff\xfe.bin"), "wb") as f:
        f.write(b"x")


def _missing_file(bag):
    _payload(bag).unlink()


def _extra_file(bag):
    (bag / "data" / "C1" / "extra.bin").write_bytes(b"not in any manifest")


def _manifest_line(line):
    def harm(bag):
        with open(bag / "manifest-sha256.txt", "a") as f:
            f.write(line)
    return harm


def _tagmanifest_traversal(bag):
    with open(bag / "tagmanifest-sha256.txt", "a") as f:
        f.write("0" * 64 + " ../outside.txt\n")


def _bad_utf8_baginfo(bag):
    with open(bag / "bag-info.txt", "ab") as f:
        f.write(b"Contact-Name: \xc3\x28 broken\n")


def _crlf_ledger(bag):
    f = bag / "custody" / "ledger.jsonl"
    f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n"))
    rebag(bag)


def _mixed_line_endings(bag):
    f = bag / "manifest-sha256.txt"
    lines = f.read_bytes().split(b"\n")
    f.write_bytes(lines[0] + b"\r\n" + b"\n".join(lines[1:]))


def _fetch(bag):
    (bag / "fetch.txt").write_text("https://example.org/x 10 data/C1/x.bin\n")
    rebag(bag)


def _nul_in_tag(bag):
    with open(bag / "bag-info.txt", "ab") as f:
        f.write(b"Contact-Name: a\x00b\n")


def _deeply_nested(rel, depth=200_000):
    """A tag file of `depth` nested brackets (RecursionError in Python's JSON parser), rebagged
    so that only the custody layer can object."""
    def harm(bag):
        (bag / rel).write_bytes(b"[" * depth + b"]" * depth + (b"\n" if rel.endswith("l") else b""))
        rebag(bag)
    return harm


FOLDER = {
    "symlink-file": (_symlink_file, "symbolic link", 3),
    "symlink-folder": (_symlink_folder, "symbolic link", 3),
    "hard-link": (_hard_link, "hard link", 3),
    "names-differing-by-case": (_case_twin, "differ only by case", 3),
    "names-differing-by-normalisation": (_normalisation_twin, "Unicode normalisation", 3),
    "fifo": (_fifo, "not a regular file", 3),
    "name-not-utf8": (_bad_utf8_name, "not valid UTF-8", 3),
    "manifest-names-missing-file": (_missing_file, "listed in manifest-sha256.txt but missing", 1),
    "file-missing-from-manifests": (_extra_file, "not in manifest-sha256.txt", 1),
    "manifest-traversal": (_manifest_line("0" * 64 + "  data/../../../etc/passwd\n"),
                           "path traversal", 1),
    "manifest-absolute": (_manifest_line("0" * 64 + "  /etc/passwd\n"), "absolute path", 1),
    "manifest-home-shortcut": (_manifest_line("0" * 64 + "  ~/.ssh/id_rsa\n"), "'~'", 1),
    "manifest-outside-data": (_manifest_line("0" * 64 + "  custody/x\n"), "outside data/", 1),
    "tagmanifest-traversal": (_tagmanifest_traversal, "path traversal", 1),
    "bag-info-not-utf8": (_bad_utf8_baginfo, "bag-info.txt is not valid UTF-8", 1),
    "tag-file-nul": (_nul_in_tag, "NUL", 1),
    "custody-tag-crlf": (_crlf_ledger, "line endings must be LF", 1),
    "manifest-mixed-line-endings": (_mixed_line_endings, "mixes line endings", 1),
    "fetch-txt": (_fetch, "fetch.txt is not allowed", 1),
    "package-json-200000-nested": (_deeply_nested("custody/package.json"),
                                   "nested more than 128 levels deep", 1),
    "ledger-line-nested": (_deeply_nested("custody/ledger.jsonl"), "nested more than 128", 1),
}


@pytest.mark.parametrize("case", sorted(FOLDER))
def test_hostile_folder_is_refused_and_nothing_is_written(world, case):
    harm, expect, code = FOLDER[case]
    bag = bag_copy(world)
    harm(bag)
    refused(world, bag, expect, code)


# Containers --------------------------------------------------------------------------------------


def _bag_members(world) -> list[tuple[str, bytes]]:
    root = world.package
    return [(f"pkg/{p.relative_to(root)}", p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()]


def make_zip(world, path: Path, extra=(), keep=True, compress_extra=False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        if keep:
            for name, data in _bag_members(world):
                zf.writestr(name, data)
        for item in extra:
            if isinstance(item, zipfile.ZipInfo):
                zf.writestr(item, b"/etc/passwd")
            else:
                name, data = item
                zf.writestr(name, data, zipfile.ZIP_DEFLATED if compress_extra else 0)
    return path


def make_tar(world, path: Path, extra=(), mode="w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in _bag_members(world):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _zip_symlink() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("pkg/data/C1/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _tar_member(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def test_the_packed_baselines_verify(world):
    from custody.package.verify import verify_package

    assert verify_package(make_zip(world, world.work / "ok.zip")).ok
    assert verify_package(make_tar(world, world.work / "ok.tar")).ok
    assert verify_package(make_tar(world, world.work / "ok.tar.gz", mode="w:gz")).ok


ZIPS = {
    "traversal": ([("pkg/../../evil.txt", b"x")], "path traversal"),
    "absolute": ([("/tmp/evil.txt", b"x")], "absolute path"),
    "drive-letter": ([("C:/evil.txt", b"x")], "absolute path"),
    "symlink": ([_zip_symlink()], "symbolic link"),
    "names-differing-by-case": ([("pkg/data/C1/A.bin", b"1"), ("pkg/data/C1/a.bin", b"2")],
                                "name the same file"),
    "duplicate-name": ([("pkg/bagit.txt", b"BagIt-Version: 1.0\n")], "name the same file"),
    "backslash": ([("pkg\\data\\evil.txt", b"x")], "backslash"),
    "two-top-folders": ([("other/x.txt", b"x")], "exactly one folder"),
    "file-at-top": ([("loose.txt", b"x")], "unpack into one folder"),
    "control-character": ([("pkg/data/a\nb.txt", b"x")], "control character"),
}


@pytest.mark.parametrize("case", sorted(ZIPS))
def test_hostile_zip_is_refused_and_nothing_is_written(world, case):
    extra, expect = ZIPS[case]
    path = make_zip(world, world.work / f"{case}.zip", extra)
    refused(world, path, expect, 3)


def test_zip_bomb_is_refused_by_its_ratio_before_anything_is_unpacked(world):
    zeros = b"\0" * (64 << 20)
    path = make_zip(world, world.work / "bomb.zip", [("pkg/data/C1/zeros.bin", zeros)],
                    compress_extra=True)
    assert path.stat().st_size < 1 << 20
    refused(world, path, "decompression bomb", 3)


def test_size_and_count_caps(world):
    path = make_zip(world, world.work / "normal.zip")
    refused(world, path, "over the limit", 3, limits=Limits(max_bytes=1000))
    refused(world, path, "more than 5 members", 3, limits=Limits(max_files=5))
    gz = make_tar(world, world.work / "big.tar.gz",
                  [_tar_member("pkg/data/C1/zeros.bin", data=b"\0" * (8 << 20))], mode="w:gz")
    refused(world, gz, "over the limit", 3, limits=Limits(max_bytes=4 << 20))


class _Zeros(io.RawIOBase):
    """`n` zero bytes, read as a stream (a bomb is built without holding it in memory)."""

    def __init__(self, n: int) -> None:
        self.left = n

    def readinto(self, buf) -> int:
        k = min(len(buf), self.left)
        buf[:k] = bytes(k)
        self.left -= k
        return k


def _bytes_written() -> int:
    """What this process has passed to write() so far (Linux /proc/self/io `wchar`)."""
    text = Path("/proc/self/io").read_text()
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("wchar:")))


def _gz_with_zeros(world, path: Path, members: list[tuple[str, int]]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        for name, data in _bag_members(world):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            tf.addfile(info, _Zeros(size))
    return path


def test_a_small_tar_gz_of_zeros_is_refused_as_a_bomb_before_much_is_written(world):
    """Issue 10 #12: a 1.36 MB .tar.gz unpacked 900 MB before it was refused. The ratio and size
    caps now hold for tar members as for zip members, checked as each header is read and as each
    byte is written."""
    path = _gz_with_zeros(world, world.work / "bomb.tar.gz", [("pkg/data/C1/zeros.bin", 400 << 20)])
    packed = path.stat().st_size
    assert packed < 1 << 20
    before = _bytes_written()
    message = refused(world, path, "decompression bomb", 3)
    assert _bytes_written() - before < 2 << 20, "the refusal came after unpacking"
    assert f"from {packed}" in message and "CUSTODY_PACKAGE_MAX_RATIO" in message


def test_many_small_zero_members_are_refused_by_the_total_ratio(world):
    """No member is over the 1 MiB floor, together they are 300 MiB: the whole counts."""
    path = _gz_with_zeros(world, world.work / "many.tar.gz",
                          [(f"pkg/data/C1/z{i:03}.bin", 1 << 20) for i in range(300)])
    before = _bytes_written()
    refused(world, path, "decompression bomb", 3)
    assert _bytes_written() - before < 2 << 20
    zipped = make_zip(world, world.work / "many.zip",
                      [(f"pkg/data/C1/z{i:03}.bin", bytes(1 << 20)) for i in range(300)],
                      compress_extra=True)
    before = _bytes_written()
    refused(world, zipped, "decompression bomb", 3)
    assert _bytes_written() - before < 2 << 20


def test_a_huge_pax_header_is_refused_before_it_is_read_into_memory(world):
    """tarfile reads an extended header whole: a gzip of a 'pax header' of 1 GiB of zeros would
    be held in memory (and was, first by the container check) before any member was seen."""
    path = world.work / "pax-bomb.tar.gz"
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 1 << 30
    with gzip.open(path, "wb", compresslevel=9) as gz:
        gz.write(header.tobuf(tarfile.USTAR_FORMAT))
        shutil.copyfileobj(_Zeros(1 << 30), gz, 4 << 20)
    assert path.stat().st_size < 2 << 20
    refused(world, path, "decompression bomb", 3)


def test_a_plain_tar_and_a_modest_tar_gz_still_unpack(world):
    from custody.package.verify import verify_package

    assert verify_package(make_tar(world, world.work / "plain.tar")).ok
    assert verify_package(make_tar(world, world.work / "fine.tar.xz", mode="w:xz")).ok
    assert verify_package(make_tar(world, world.work / "fine.tar.bz2", mode="w:bz2")).ok


def test_corrupt_or_unknown_containers(world):
    good = make_zip(world, world.work / "good.zip")
    cut = world.work / "cut.zip"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    refused(world, cut, "not a folder, .zip or .tar", 3)
    junk = world.work / "junk.bin"
    junk.write_bytes(os.urandom(4096))
    refused(world, junk, "not a folder, .zip or .tar", 3)


TARS = {
    "symlink": (_tar_member("pkg/data/C1/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
                "symbolic link"),
    "hard-link": (_tar_member("pkg/data/C1/hard", tarfile.LNKTYPE, linkname="pkg/bagit.txt"),
                  "hard link"),
    "traversal": (_tar_member("pkg/../../evil.txt"), "path traversal"),
    "absolute": (_tar_member("/tmp/evil.txt"), "absolute path"),
    "device": (_tar_member("pkg/data/C1/dev", tarfile.CHRTYPE), "special file"),
    "fifo": (_tar_member("pkg/data/C1/fifo", tarfile.FIFOTYPE), "special file"),
    "names-differing-by-case": (_tar_member("pkg/BAGIT.TXT"), "name the same file"),
}


@pytest.mark.parametrize("case", sorted(TARS))
def test_hostile_tar_is_refused_and_nothing_is_written(world, case):
    member, expect = TARS[case]
    path = make_tar(world, world.work / f"{case}.tar", [member])
    refused(world, path, expect, 3)


def test_hostile_inputs_through_the_command_line(world):
    """The same refusals as a user sees them: exit code, one line on stderr, nothing stored."""
    bag = bag_copy(world, "cli-symlink")
    _symlink_file(bag)
    trav = make_zip(world, world.work / "cli-traversal.zip", [("pkg/../../evil.txt", b"x")])
    bag2 = bag_copy(world, "cli-manifest")
    _manifest_line("0" * 64 + "  data/../../../etc/passwd\n")(bag2)
    for path, code, expect in [(bag, 3, "symbolic link"), (trav, 3, "path traversal"),
                               (bag2, 1, "path traversal")]:
        before = state(world.archive)
        r = world("import", path)
        assert r.code == code and expect in one_line_error(r), r.stderr
        assert state(world.archive) == before
        r = world("verify-package", path)
        assert r.code == code and expect in one_line_error(r), r.stderr


def test_a_package_json_of_200000_nested_brackets_is_a_named_verification_failure(world):
    """Not "unexpected error: RecursionError": verify-package and import both read the package,
    find it does not verify (exit 1, as for any malformed tag file) and say why in one line."""
    bag = bag_copy(world, "cli-nested")
    _deeply_nested("custody/package.json")(bag)
    before = state(world.archive)
    for command in ("verify-package", "import"):
        r = world(command, bag)
        line = one_line_error(r)
        assert r.code == 1, (command, r.stderr)
        assert "package.json" in line and "nested more than 128 levels deep" in line, line
        assert "RecursionError" not in r.stderr + r.stdout
    assert state(world.archive) == before


# The Library of Congress BagIt conformance suite --------------------------------------------------

SUITE_BAGS = sorted(str(p.relative_to(SUITE)) for p in SUITE.glob("v*/*/*") if p.is_dir())
# The problem each invalid bag must be refused for (the first one named).
INVALID = {
    "v0.97/invalid/baginfo-missing-encoding": "missing required tag Tag-File-Character-Encoding",
    "v0.97/invalid/bom-in-bagit.txt": "byte-order mark",
    "v0.97/invalid/corrupt-data-file": "Payload-Oxum says 2 files of 58 bytes",
    "v0.97/invalid/corrupt-tag-file": "tag file bag-info.txt: md5 mismatch",
    "v0.97/invalid/extra-file-in-bag": "data/bar is in the bag but not in manifest-md5.txt",
    "v0.97/invalid/invalid-version-number": "BagIt-Version '.97' is not of the form M.N",
    "v0.97/invalid/missing-baginfo": "bag-info.txt is listed in tagmanifest-md5.txt but missing",
    "v0.97/invalid/missing-bagit.txt": "bagit.txt is missing",
    "v0.97/invalid/out-of-scope-file-paths-using-dot-notation": "path traversal",
    "v0.97/invalid/out-of-scope-file-paths-using-dot-notation-for-fetch":
        "fetch.txt: path '../../../README.md' is refused: path traversal",
    "v0.97/invalid/same-filename-listed-twice-with-different-hashes": "listed twice",
    "v0.97/linux-only/out-of-scope-file-paths-using-absolute-path": "absolute path",
    "v0.97/linux-only/out-of-scope-file-paths-using-absolute-path-for-fetch": "absolute path",
    "v0.97/linux-only/out-of-scope-file-paths-using-shortcut": "home-folder shortcut",
    "v0.97/linux-only/out-of-scope-file-paths-using-shortcut-for-fetch": "home-folder shortcut",
    "v0.97/linux-only/out-of-scope-file-paths-using-shortcut-username": "home-folder shortcut",
    "v0.97/linux-only/out-of-scope-file-paths-using-shortcut-username-for-fetch":
        "home-folder shortcut",
    # bagit-python 1.9.0 accepts this one; RFC 8493 §2.2.2 does not
    "v1.0/invalid/bagit-with-invalid-whitespace": "label 'BagIt-Version ' has whitespace",
    "v1.0/invalid/notAllManifestsListAllFiles":
        "data/missingFromManifest.txt is in the bag but not in manifest-sha512.txt",
    "v1.0/invalid/same-filename-listed-twice-with-different-hashes": "listed twice",
    "v1.0/invalid/same-filename-listed-twice-with-the-same-hash": "listed twice",
}


def test_the_suite_copy_is_complete():
    assert {b for b in SUITE_BAGS if "/valid/" not in b} == set(INVALID)
    assert len([b for b in SUITE_BAGS if "/valid/" in b]) == 27
    crlf = SUITE / "v0.97" / "valid" / "bag-with-encoded-names" / "bagit.txt"
    assert crlf.read_bytes().startswith(b"BagIt-Version: 0.97\r\n")  # as the suite has it


@pytest.mark.parametrize("name", SUITE_BAGS)
def test_conformance_suite_bag_read_by_import(world, name, tmp_path):
    bag = tmp_path / "bag"
    shutil.copytree(SUITE / name, bag, symlinks=True)
    if name in INVALID:
        refused(world, bag, INVALID[name], 1)
    else:
        message = refused(world, bag, "valid BagIt bag but not a custody package", 3)
        assert message.startswith(f"{bag} is a valid BagIt bag")


def test_conformance_suite_through_the_command_line(world):
    for name, code, expect in [
        ("v1.0/valid/basicBag", 3, "not a custody package"),
        ("v1.0/invalid/bagit-with-invalid-whitespace", 1, "whitespace"),
        ("v0.97/invalid/out-of-scope-file-paths-using-dot-notation", 1, "path traversal"),
    ]:
        before = state(world.archive)
        r = world("import", SUITE / name)
        assert r.code == code and expect in one_line_error(r), r.stderr
        assert state(world.archive) == before


def test_hashes_in_the_suite_are_really_checked(world, tmp_path):
    """A valid suite bag with one payload byte changed is no longer valid."""
    bag = tmp_path / "bag"
    shutil.copytree(SUITE / "v1.0" / "valid" / "basicBag", bag)
    f = bag / "data" / "hello.txt"
    f.chmod(0o644)
    f.write_bytes(f.read_bytes().upper())
    refused(world, bag, "sha512 mismatch", 1)
    assert hashlib.sha256(f.read_bytes()).hexdigest()


# Any single change is caught -------------------------------------------------------------------

PINNED = ["bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt",
          "custody/package.json", "custody/package.sig", "custody/checkpoint.txt",
          "custody/keys.json", "custody/items.json", "custody/ledger.jsonl", "custody/proofs.json"]


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(PINNED + ["METADATA"]), where=st.floats(0, 1, exclude_max=True),
       flip=st.integers(1, 255))
def test_any_single_byte_change_to_a_tag_file_fails_even_after_rebagging(world, which, where,
                                                                           flip):
    """A forger who changes one byte of any tag file and recomputes the tag manifests (so BagIt
    validates) is still caught: every tag file is signed, directly or through package.json."""
    from custody.package.verify import verify_package

    bag = bag_copy(world, "prop")
    rel = which if which != "METADATA" else next(
        str(p.relative_to(bag)) for p in sorted((bag / "custody" / "metadata").iterdir()))
    f = bag / rel
    data = bytearray(f.read_bytes())
    data[int(where * len(data))] ^= flip
    f.write_bytes(bytes(data))
    rebag(bag)
    assert not verify_package(bag).ok
