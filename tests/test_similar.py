"""Look-alikes (docs/SIMILAR.md): perceptual hashes of real photos and a real video, read in the
metadata worker, kept in the signed metadata document and the search index, listed by
`custody similar` and announced by `ingest`. Copies are made here with Pillow and PyAV.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import sqlite3
from pathlib import Path

import av
from PIL import Image

from custody.metadata import MetadataReader
from custody.ops.archive import Archive
from custody.ops.ingest import Ingest, find_files
from custody.ops.keyfiles import load_key
from custody.search.fingerprints import DEFAULT_MAX_DISTANCE, Fingerprints, Match

from .conftest import DATA, PASSPHRASE, one_line_error

PHOTOS = DATA / "similar"
ORIGINALS = ("ribbons.jpg", "window.jpg", "earth.jpg")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _crop(image: Image.Image, fraction: float) -> Image.Image:
    w, h = image.size
    dx, dy = int(w * fraction), int(h * fraction)
    return image.crop((dx, dy, w - dx, h - dy))


def make_copies(original: Path, folder: Path) -> dict[str, Path]:
    """What happens to a photo on its way through messengers and social media."""
    image = Image.open(original).convert("RGB")
    w, h = image.size
    copies = {
        "reencoded": (image, "JPEG", 25),
        "resized": (image.resize((w // 2, h // 2)), "JPEG", 80),
        "cropped": (_crop(image, 0.05), "JPEG", 85),  # 5% off every side
        "recompressed": (_jpeg(_jpeg(image.resize((w * 2 // 3, h * 2 // 3)), 60), 40), "JPEG", 30),
        "png": (image, "PNG", None),
    }
    out = {}
    for name, (picture, form, quality) in copies.items():
        path = folder / f"{original.stem}-{name}.{form.lower().replace('jpeg', 'jpg')}"
        picture.save(path, form, **({"quality": quality} if quality else {}))
        out[name] = path
    return out


def sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def similar_json(cli, item: str, *extra: str) -> dict:
    result = cli("similar", item, "--json", *extra)
    assert result.code == 0, result.stderr
    return result.json()


# Photos -----------------------------------------------------------------------------------------


def test_reencoded_resized_cropped_recompressed_copies_are_found_and_unrelated_photos_are_not(
        cli_archive, tmp_path):
    copies = tmp_path / "copies"
    copies.mkdir()
    made = {name: make_copies(PHOTOS / name, copies) for name in ORIGINALS}
    cli_archive("ingest", *(PHOTOS / name for name in ORIGINALS), copies, check=True)
    for name in ORIGINALS:
        doc = similar_json(cli_archive, sha(PHOTOS / name))
        assert doc["max_distance"] == DEFAULT_MAX_DISTANCE == 12
        found = {s["item"]: s["distance"] for s in doc["similar"]}
        expected = {sha(path): kind for kind, path in made[name].items()}
        assert set(found) == set(expected), (name, found)  # every copy, nothing unrelated
        assert all(0 <= d <= DEFAULT_MAX_DISTANCE for d in found.values())
        assert [s["distance"] for s in doc["similar"]] == sorted(found.values())  # best first
        assert doc["not_compared_count"] == 0
        # Unrelated real photos are far: not near the threshold at all.
        wide = similar_json(cli_archive, sha(PHOTOS / name), "--max-distance", "64")
        for other in ORIGINALS:
            if other != name:
                distance = next(s["distance"] for s in wide["similar"]
                                if s["item"] == sha(PHOTOS / other))
                assert distance > 2 * DEFAULT_MAX_DISTANCE, (name, other, distance)
    text = cli_archive("similar", sha(PHOTOS / "window.jpg")[:12])
    assert text.code == 0
    lines = text.stdout.splitlines()
    assert lines[1].split()[:2] == ["distance", "item"]
    assert "window-reencoded.jpg" in text.stdout and "ribbons" not in text.stdout
    assert "not proof" in lines[0]


def test_exif_orientation_is_applied_before_hashing(cli_archive, tmp_path):
    """A camera stores the rows sideways and says so in EXIF Orientation: it is hashed as shown."""
    image = Image.open(PHOTOS / "window.jpg")
    sideways = image.transpose(Image.Transpose.ROTATE_90)  # stored rows turned a quarter left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": shown upright again
    tagged = tmp_path / "window-exif-rotated.jpg"
    sideways.save(tagged, "JPEG", quality=90, exif=exif)
    untagged = tmp_path / "window-turned.jpg"  # the same rows without the tag: really turned
    sideways.save(untagged, "JPEG", quality=90)
    cli_archive("ingest", PHOTOS / "window.jpg", tagged, untagged, check=True)
    doc = similar_json(cli_archive, sha(PHOTOS / "window.jpg"))
    assert [s["item"] for s in doc["similar"]] == [sha(tagged)]


def test_ingest_says_when_a_new_file_looks_like_one_already_held(cli_archive, tmp_path):
    cli_archive("ingest", PHOTOS / "earth.jpg", check=True)
    copy = make_copies(PHOTOS / "earth.jpg", tmp_path)["recompressed"]
    result = cli_archive("ingest", copy, PHOTOS / "ribbons.jpg", "--json")
    assert result.code == 0, result.stderr
    files = {Path(f["path"]).name: f for f in result.json()["files"]}
    near = files[copy.name]["looks_like"]
    assert [f["item"] for f in near] == [sha(PHOTOS / "earth.jpg")]
    assert set(near[0]) == {"item", "distance"} and near[0]["distance"] <= DEFAULT_MAX_DISTANCE
    assert files["ribbons.jpg"]["looks_like"] == []  # checked: nothing alike
    line = next(x for x in result.stderr.splitlines() if x.startswith("looks like:"))
    assert copy.name in line and sha(PHOTOS / "earth.jpg")[:16] in line and "not proof" in line
    # A second copy of the same bytes is a sighting, not a look-alike; a text file is not hashed.
    # (Another path: the same path again would be `unchanged`, nothing recorded.)
    twin = tmp_path / "twin.jpg"
    twin.write_bytes(copy.read_bytes())
    (tmp_path / "notes.txt").write_text("not a picture\n")
    again = cli_archive("ingest", twin, tmp_path / "notes.txt", "--json").json()["files"]
    assert [(f["status"], f["looks_like"]) for f in again] == [("present", None), ("new", None)]


def test_broken_image_records_an_error_and_is_still_stored(cli_archive, tmp_path):
    broken = tmp_path / "window-cut.jpg"
    data = (PHOTOS / "window.jpg").read_bytes()
    broken.write_bytes(data[:600])  # the header and tables, then nothing
    result = cli_archive("ingest", broken, "--json")
    assert result.code == 0, result.stderr
    [entry] = result.json()["files"]
    assert entry["status"] == "new" and entry["sha256"] == sha(broken)
    assert any(e.startswith("perceptual: ") for e in entry["metadata_errors"])
    assert entry["looks_like"] is None  # nothing to compare with: not "none found"
    shown = cli_archive("show", sha(broken), "--json").json()
    assert shown["metadata"]["perceptual"]["image"] is None
    refused = cli_archive("similar", sha(broken))
    assert refused.code == 3
    assert "has no perceptual hash to compare: not hashed: " in one_line_error(refused)
    got = cli_archive("get", sha(broken), "--purpose", "check", "-o", tmp_path / "out.jpg")
    assert got.code == 0 and (tmp_path / "out.jpg").read_bytes() == data[:600]


class _OldReader:
    """A reader as it was before perceptual hashing: the same record without the key."""

    def __init__(self, reader: MetadataReader) -> None:
        self.reader = reader

    def read(self, path):
        doc = self.reader.read(path)
        doc.pop("perceptual")
        doc["readers"].pop("perceptual", None)
        return doc


def test_items_ingested_before_perceptual_hashing_are_named_not_compared(cli_archive, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(make_copies(PHOTOS / "window.jpg", tmp_path)["resized"], old / "window-2016.jpg")
    archive = Archive.open(cli_archive.archive)
    with MetadataReader() as reader:
        Ingest(archive, load_key(cli_archive.key, PASSPHRASE), _OldReader(reader)).run(
            find_files([old], []))
    cli_archive("ingest", PHOTOS / "window.jpg", check=True)
    doc = similar_json(cli_archive, sha(PHOTOS / "window.jpg"))
    assert doc["similar"] == []  # the old copy could not be compared...
    assert doc["not_compared"] == [{"item": sha(old / "window-2016.jpg"),  # ...and is named
                                    "reason": "ingested before perceptual hashing"}]
    assert doc["not_compared_count"] == 1
    text = cli_archive("similar", sha(PHOTOS / "window.jpg"))
    assert "not compared: 1 image(s)/video(s)" in text.stdout
    assert sha(old / "window-2016.jpg") in text.stdout
    assert "1 image(s)/video(s) not compared" in text.stderr
    refused = cli_archive("similar", sha(old / "window-2016.jpg"))
    assert refused.code == 3
    assert one_line_error(refused).endswith("ingested before perceptual hashing "
                                            "(docs/SIMILAR.md says which files are hashed)")


def test_max_distance_outside_the_hash_is_a_usage_error(cli_archive):
    cli_archive("ingest", PHOTOS / "ribbons.jpg", check=True)
    for bad in ("65", "-1"):
        result = cli_archive("similar", sha(PHOTOS / "ribbons.jpg"), "--max-distance", bad)
        assert result.code == 2
        assert "--max-distance must be 0 to 64" in one_line_error(result)


# Video ------------------------------------------------------------------------------------------


def reencode(source: Path, target: Path, size: tuple[int, int], bit_rate: int, gop: int) -> None:
    """Decode every frame of `source` and encode it again at another size, rate and GOP."""
    with av.open(source) as src, av.open(target, "w") as dst:
        stream = dst.add_stream("libx264", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt, stream.bit_rate, stream.gop_size = "yuv420p", bit_rate, gop
        for frame in src.decode(video=0):
            picture = av.VideoFrame.from_image(frame.to_image().resize(size))
            for packet in stream.encode(picture):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)


def pan_video(photo: Path, target: Path) -> None:
    """A real photo panned across for 2 s (an unrelated video)."""
    image = Image.open(photo).convert("RGB")
    with av.open(target, "w") as dst:
        stream = dst.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 160, 160, "yuv420p", 15
        for i in range(60):
            box = (i * 2, 0, i * 2 + image.height // 2, image.height // 2)
            picture = av.VideoFrame.from_image(image.crop(box).resize((160, 160)))
            for packet in stream.encode(picture):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)


def test_reencoded_video_is_found_as_similar_to_its_original(cli_archive, tmp_path):
    original = PHOTOS / "waterfall.mp4"
    smaller = tmp_path / "waterfall-small.mp4"
    reencode(original, smaller, (90, 160), 80_000, 30)
    unrelated = tmp_path / "window-pan.mp4"
    pan_video(PHOTOS / "window.jpg", unrelated)
    cli_archive("ingest", original, unrelated, check=True)
    result = cli_archive("ingest", smaller, "--json")
    [entry] = result.json()["files"]
    assert [f["item"] for f in entry["looks_like"]] == [sha(original)]
    doc = similar_json(cli_archive, sha(original))
    assert doc["hashes"] == 4  # a keyframe every 0.5 s in 2 s
    [match] = doc["similar"]
    assert match["item"] == sha(smaller) and match["distance"] <= DEFAULT_MAX_DISTANCE
    assert match["mime"] == "video/mp4" and match["t"] is not None
    assert match["query_t"] is not None
    frames = cli_archive("show", sha(smaller), "--json").json()["metadata"]["perceptual"]
    assert frames["image"] is None and [f["t"] for f in frames["frames"]] == [0.0, 1.0]
    assert "window-pan.mp4" not in cli_archive("similar", sha(original)).stdout


def test_video_keyframes_are_bounded_and_spread(tmp_path):
    long = tmp_path / "long.mp4"
    with av.open(long, "w") as dst:  # 60 s, a keyframe every second: 60 keyframes
        stream = dst.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 64, 64, "yuv420p", 5
        photo = Image.open(PHOTOS / "earth.jpg").convert("RGB")
        for i in range(300):
            picture = av.VideoFrame.from_image(photo.rotate(i, expand=False).resize((64, 64)))
            for packet in stream.encode(picture):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    with MetadataReader() as reader:
        md = reader.read(long)
    times = [f["t"] for f in md["perceptual"]["frames"]]
    assert len(times) == 16 and times == sorted(times)
    assert times[0] == 0.0 and times[-1] >= 50.0  # spread over the whole minute


def test_video_display_rotation_is_applied_before_hashing(tmp_path):
    """A phone stores portrait video sideways with a display rotation: hashed as a player shows
    it, so it matches the upright picture (and a re-encode that turned the pixels upright)."""
    photo = Image.open(PHOTOS / "window.jpg").convert("RGB").resize((160, 120))
    sideways = photo.transpose(Image.Transpose.ROTATE_270)  # rows turned a quarter clockwise
    video = tmp_path / "sideways.mp4"
    with av.open(video, "w") as dst:
        stream = dst.add_stream("libx264", rate=10)
        stream.width, stream.height = sideways.size
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(90)  # counter-clockwise, as ffmpeg's -display_rotation
        for _ in range(10):
            for packet in stream.encode(av.VideoFrame.from_image(sideways)):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    upright = tmp_path / "upright.png"
    photo.save(upright)
    with MetadataReader() as reader:
        frames = reader.read(video)["perceptual"]["frames"]
        image = reader.read(upright)["perceptual"]["image"]
    distance = bin(int(frames[0]["hash"], 16) ^ int(image, 16)).count("1")
    assert distance <= 4, distance


# The worker's limits ----------------------------------------------------------------------------


def test_hashing_works_within_the_workers_default_address_space_limit(tmp_path, monkeypatch):
    """numpy/scipy's OpenBLAS reserves memory per thread (one per core by default): the worker
    runs it with one thread, and hashing fits well inside the default 1 GiB."""
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "64")  # the caller's own setting never reaches it
    with MetadataReader() as reader:  # memory_limit: 1 GiB by default
        photo = reader.read(PHOTOS / "earth.jpg")
        video = reader.read(PHOTOS / "waterfall.mp4")
        pid = reader._worker.pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
        limits = Path(f"/proc/{pid}/limits").read_text()
    assert (photo["errors"], video["errors"]) == ([], [])
    assert photo["perceptual"]["image"] and len(video["perceptual"]["frames"]) == 4
    assert b"OPENBLAS_NUM_THREADS=1" in environ and b"OMP_NUM_THREADS=1" in environ
    line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
    assert line.split()[3] == str(1 << 30)
    peak_kib = int(next(x for x in status.splitlines() if x.startswith("VmPeak")).split()[1])
    assert peak_kib * 1024 < (1 << 30) * 3 // 4, peak_kib  # a quarter of the limit to spare


# The index: derived, rebuilt, checked -----------------------------------------------------------


def test_hashes_are_signed_in_the_metadata_document_and_the_index_is_checked(cli_archive,
                                                                             tmp_path):
    copy = make_copies(PHOTOS / "ribbons.jpg", tmp_path)["resized"]
    cli_archive("ingest", PHOTOS / "ribbons.jpg", copy, check=True)
    shown = cli_archive("show", sha(copy), "--json").json()
    assert shown["metadata"]["perceptual"]["algorithm"] == "phash"
    assert len(shown["metadata"]["perceptual"]["image"]) == 16
    assert similar_json(cli_archive, sha(copy))["count"] == 1  # builds index.db
    assert cli_archive("verify").code == 0
    with sqlite3.connect(cli_archive.archive / "index.db") as db:  # hide the copy from look-alikes
        db.execute("UPDATE item_phash SET hash = '0000000000000000' WHERE sha256 = ?",
                   (sha(copy),))
    result = cli_archive("verify")
    assert result.code == 1
    assert f"item {sha(copy)}: perceptual hash 0 differs" in result.stderr + result.stdout
    cli_archive("search", "--reindex", check=True)
    assert cli_archive("verify").code == 0
    assert similar_json(cli_archive, sha(PHOTOS / "ribbons.jpg"))["count"] == 1


def test_fingerprints_match_a_naive_reference():
    rng = random.Random(12)
    rows = [(f"{i:064x}", None if i % 3 else float(i), f"{rng.getrandbits(64):016x}")
            for i in range(400)]
    query = [(None, f"{rng.getrandbits(64):016x}"), (2.5, rows[7][2])]
    found = Fingerprints(rows).nearest(query, 26, exclude=rows[0][0])
    naive: dict[str, int] = {}
    for item, _, h in rows:
        d = min(bin(int(h, 16) ^ int(q, 16)).count("1") for _, q in query)
        if d <= 26 and item != rows[0][0]:
            naive[item] = min(d, naive.get(item, 64))
    assert {m.item: m.distance for m in found} == naive
    assert found[0].item == rows[7][0] and found[0].distance == 0 and found[0].query_t == 2.5
    assert json.dumps([m.distance for m in found])  # plain ints


def test_fingerprints_added_one_by_one_match_those_loaded_at_once_and_the_naive_reference():
    """Ingest adds each new item to the hashes held; the buffer grows past several doublings and
    must compare exactly as a set loaded whole (and as the bit count of the XOR)."""
    rng = random.Random(27)
    rows = [(f"{i:064x}", None, f"{rng.getrandbits(64):016x}") for i in range(300)]
    grown = Fingerprints(rows[:5])
    for item, t, h in rows[5:]:
        grown.add(item, [(t, h)])
    grown.add(rows[9][0], [(None, "0" * 16)])  # held already: ignored
    whole = Fingerprints(rows)
    for item, _, h in rows[::37]:
        query = [(None, h)]
        naive = {other: bin(int(h, 16) ^ int(oh, 16)).count("1") for other, _, oh in rows
                 if other != item and bin(int(h, 16) ^ int(oh, 16)).count("1") <= 28}
        assert grown.nearest(query, 28, exclude=item) == whole.nearest(query, 28, exclude=item)
        assert {m.item: m.distance for m in grown.nearest(query, 28, exclude=item)} == naive


def _reference_nearest(rows, query, max_distance, exclude):
    """The look-alikes by brute force: each item's best (distance, its first row at that
    distance in held order, the query hash it matched first), then by (distance, item)."""
    best: dict[str, Match] = {}
    for item, t, h in rows:
        if item == exclude:
            continue
        distances = [bin(int(h, 16) ^ int(q, 16)).count("1") for _, q in query]
        d = min(distances)
        if d <= max_distance and (item not in best or d < best[item].distance):
            best[item] = Match(item, d, t, query[distances.index(d)][0])
    return sorted(best.values(), key=lambda m: (m.distance, m.item))


def test_fingerprints_limited_to_the_first_few_are_the_first_few_of_a_brute_force_answer():
    """Ingest asks for the LOOKS_LIKE_MAX best only (a burst of near-copies must not cost a Match
    each): the first `limit` of the whole answer, every Match whole (its best row's time, the
    query hash it matched), ties at the cut ordered by item name."""
    rng = random.Random(29)
    base = rng.getrandbits(64)

    def near(bits: int) -> str:  # a hash `bits` bits away from base
        flipped = base
        for b in rng.sample(range(64), bits):
            flipped ^= 1 << b
        return f"{flipped:016x}"

    rows = []
    for i in range(400):  # distances 0 to 6 from base: ties straddle every cut below
        item = f"{rng.getrandbits(256):064x}"
        if i % 3:
            rows.append((item, None, near(i % 7)))  # an image: one hash
        else:  # a video: a worse frame first, its best frame later in held order
            rows += [(item, 1.0, near(6)), (item, 2.5 + i, near(i % 5)), (item, 9.0, near(i % 5))]
    # Names alike in their first 16 hex digits (the bulk pick's key), told apart only after.
    rows += [("0" * 16 + f"{i:048x}"[::-1], None, f"{base:016x}") for i in range(30)]
    excluded = "0" * 16 + f"{7:048x}"[::-1]  # one of those tied at distance 0
    query = [(0.5, near(3)), (1.5, f"{base:016x}")]  # two hashes: which one matched matters
    whole = Fingerprints(rows).nearest(query, 20, exclude=excluded)
    assert whole == _reference_nearest(rows, query, 20, excluded) and len(whole) > 100
    assert {m.query_t for m in whole} == {0.5, 1.5}
    for limit in (1, 2, 10, 29, 30, 31, 99, len(whole), len(whole) + 5):
        assert Fingerprints(rows).nearest(query, 20, exclude=excluded, limit=limit) == \
            whole[:limit]


def test_fingerprints_limited_stay_exact_when_names_are_not_sha256_hex():
    """The bulk pick orders by the first 64 bits of a SHA-256 name; any other name (never an
    index item, but nothing must go wrong) turns it off rather than misorder."""
    one = "0" * 15 + "1" + "0" * 48
    rows = [("zz-not-hex", None, "0" * 16), (one, None, "0" * 16)]
    query = [(None, "0" * 16)]
    assert [m.item for m in Fingerprints(rows).nearest(query, 5, exclude="", limit=1)] == [one]
    grown = Fingerprints(rows[1:])
    grown.add("!", [(None, "0" * 16)])  # a name added later turns it off too
    grown.add("zz-not-hex", [(None, "0" * 16)])
    assert [m.item for m in grown.nearest(query, 5, exclude="", limit=2)] == ["!", one]
