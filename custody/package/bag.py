"""BagIt (RFC 8493, and the 0.93-0.97 drafts) read strictly from a checked listing: bagit.txt,
bag-info, manifests, fetch.txt, completeness and fixity, every problem named with its file.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from custody.package.bagsafe import Listing, fold, open_file, read_file

VERSIONS = {(0, 93), (0, 94), (0, 95), (0, 96), (0, 97), (1, 0)}
HEX_LENGTH = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}
HASH_CHUNK = 4 << 20
BOM = b"\xef\xbb\xbf"
_MANIFEST = re.compile(r"^(tag)?manifest-([A-Za-z0-9]+)\.txt$")
_LINE_END = re.compile(r"\r\n|\r|\n")
_VERSION = re.compile(r"^(\d+)\.(\d+)$")
_PERCENT = re.compile(r"%(0[ADad]|25)")


@dataclass(slots=True)
class Bag:
    """What a bag says about itself, and what was found wrong with it (`problems`)."""

    listing: Listing
    version: tuple[int, int] | None = None
    encoding: str = "utf-8"
    info: list[tuple[str, str]] = field(default_factory=list)
    manifests: dict[str, dict[str, str]] = field(default_factory=dict)  # alg -> path -> hex
    tagmanifests: dict[str, dict[str, str]] = field(default_factory=dict)
    fetch: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    computed: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> alg -> hex

    @property
    def payload(self) -> dict[str, int]:
        return {p: s for p, s in self.listing.files.items() if p.startswith("data/")}

    @property
    def tag_files(self) -> dict[str, int]:
        return {p: s for p, s in self.listing.files.items() if not p.startswith("data/")}

    def info_value(self, label: str) -> str | None:
        return next((v for k, v in self.info if k == label), None)


def split_lines(text: str, name: str, problems: list[str]) -> list[str]:
    """Lines ended by LF, CR or CRLF (RFC 8493 §2); one file must not mix them."""
    if "\x00" in text:
        problems.append(f"{name} contains a NUL character")
    ends = set(_LINE_END.findall(text))
    if len(ends) > 1:
        shown = ", ".join(sorted(repr(e) for e in ends))
        problems.append(f"{name} mixes line endings ({shown})")
    lines = _LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_tags(
    lines: list[str], name: str, strict: bool, problems: list[str]
) -> list[tuple[str, str]]:
    """`Label: value` lines with folded continuation lines (RFC 8493 §2.2.2)."""
    tags: list[tuple[str, str]] = []
    for line in lines:
        if not line.strip():
            continue
        if line[0] in " \t" and tags:
            label, value = tags[-1]
            tags[-1] = (label, value + " " + line.strip())
            continue
        if ":" not in line:
            problems.append(f"{name}: line {line[:60]!r} is not 'Label: value'")
            continue
        label, value = line.split(":", 1)
        if strict and (label != label.strip() or not label):
            problems.append(f"{name}: label {label!r} has whitespace around it (RFC 8493 §2.2.2)")
        tags.append((label.strip(), value.strip()))
    return tags


def decode_path(raw: str, version: tuple[int, int] | None) -> str:
    """A manifest path with RFC 8493's percent-encoding of CR, LF (and '%' from 1.0) undone."""
    modern = version is not None and version >= (1, 0)

    def one(m: re.Match[str]) -> str:
        code = m.group(1).upper()
        if code == "25":
            return "%" if modern else m.group(0)
        return "\r" if code == "0D" else "\n"

    return _PERCENT.sub(one, raw)


def path_problem(path: str) -> str | None:
    """Why a path named in a bag may not be used, or None: it must stay inside the bag."""
    if not path:
        return "an empty path"
    if "\x00" in path:
        return "a NUL character"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "an absolute path"
    if path.startswith("~"):
        return "a home-folder shortcut ('~')"
    if "\\" in path:
        return "a backslash (a folder on Windows)"
    parts = path.split("/")
    if ".." in parts:
        return "path traversal ('..')"
    if any(p in ("", ".") for p in parts):
        return "an empty or '.' path component"
    return None


def read(listing: Listing) -> Bag:
    """Parse a bag's tag files and check its structure and completeness (no payload hashing)."""
    bag = Bag(listing)
    if "bagit.txt" not in listing.files:
        bag.problems.append("bagit.txt is missing: this is not a BagIt bag")
        return bag
    _read_declaration(bag)
    if bag.version is None:
        return bag
    for info_name in ("bag-info.txt", "package-info.txt"):
        if info_name in listing.files:
            lines = _tag_lines(bag, info_name)
            bag.info = parse_tags(lines, info_name, bag.version >= (1, 0), bag.problems)
            break
    for name in sorted(bag.tag_files):
        m = _MANIFEST.match(name)
        if m is None:
            continue
        alg = m.group(2).lower()
        if alg not in HEX_LENGTH:
            bag.notices.append(f"{name}: algorithm {alg!r} is not supported; not checked")
            continue
        target = bag.tagmanifests if m.group(1) else bag.manifests
        target[alg] = _read_manifest(bag, name, alg, tag=bool(m.group(1)))
    if "fetch.txt" in listing.files:
        _read_fetch(bag)
    _check_complete(bag)
    return bag


def _read_declaration(bag: Bag) -> None:
    raw = read_file(bag.listing, "bagit.txt", 1 << 16)
    if raw.startswith(BOM):
        bag.problems.append("bagit.txt starts with a byte-order mark (RFC 8493 §2.1.1)")
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        bag.problems.append("bagit.txt is not valid UTF-8")
        return
    problems: list[str] = []
    lines = split_lines(text, "bagit.txt", problems)
    tags = dict(parse_tags(lines, "bagit.txt", True, problems))
    declared = tags.get("BagIt-Version")
    if declared is None:
        bag.problems.append("bagit.txt: missing required tag BagIt-Version")
        return
    m = _VERSION.match(declared)
    if m is None:
        bag.problems.append(f"bagit.txt: BagIt-Version {declared!r} is not of the form M.N")
        return
    version = (int(m.group(1)), int(m.group(2)))
    if version not in VERSIONS:
        bag.problems.append(f"bagit.txt: BagIt-Version {declared} is not supported")
        return
    if version >= (1, 0):
        bag.problems.extend(problems)  # strict labels and line endings apply from 1.0 on
        if len(lines) != 2 or len(tags) != 2:
            bag.problems.append("bagit.txt must have exactly two lines (RFC 8493 §2.1.1)")
    encoding = tags.get("Tag-File-Character-Encoding")
    if encoding is None:
        bag.problems.append("bagit.txt: missing required tag Tag-File-Character-Encoding")
        return
    try:
        bag.encoding = codecs.lookup(encoding).name
    except LookupError:
        bag.problems.append(f"bagit.txt: unknown Tag-File-Character-Encoding {encoding!r}")
        return
    bag.version = version


def _tag_lines(bag: Bag, name: str) -> list[str]:
    raw = read_file(bag.listing, name)
    codec = "utf-8-sig" if bag.encoding == "utf-8" else bag.encoding
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        bag.problems.append(f"{name} is not valid {bag.encoding.upper()}")
        text = raw.decode(codec, errors="replace")
    return split_lines(text, name, bag.problems)


def _read_manifest(bag: Bag, name: str, alg: str, tag: bool) -> dict[str, str]:
    entries: dict[str, str] = {}
    folded: dict[str, str] = {}
    for line in _tag_lines(bag, name):
        if not line.strip():
            continue
        m = re.match(r"^([0-9A-Fa-f]+)[ \t]+(.+)$", line)
        if m is None or len(m.group(1)) != HEX_LENGTH[alg]:
            bag.problems.append(f"{name}: malformed line {line[:80]!r}")
            continue
        path = decode_path(m.group(2), bag.version)
        if path.startswith("./"):
            path = path[2:]
        why = path_problem(path)
        if why is not None:
            bag.problems.append(f"{name}: path {path[:80]!r} is refused: {why}")
            continue
        if tag == path.startswith("data/"):
            where = "a payload file" if tag else "outside data/"
            bag.problems.append(f"{name}: {path!r} is {where}")
            continue
        if path in entries:
            bag.problems.append(f"{name}: {path!r} is listed twice")
            continue
        key = fold(path)
        if key in folded:
            bag.problems.append(
                f"{name}: {folded[key]!r} and {path!r} differ only by case or Unicode normalisation"
            )
            continue
        folded[key] = path
        entries[path] = m.group(1).lower()
    return entries


def _read_fetch(bag: Bag) -> None:
    for line in _tag_lines(bag, "fetch.txt"):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
            bag.problems.append(f"fetch.txt: malformed line {line[:80]!r}")
            continue
        path = decode_path(parts[2], bag.version)
        why = path_problem(path)
        if why is None and not path.startswith("data/"):
            why = "not under data/"
        if why is not None:
            bag.problems.append(f"fetch.txt: path {path[:80]!r} is refused: {why}")
            continue
        bag.fetch.add(path)


def nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _resolve(name: str, present: dict[str, int], by_nfc: dict[str, str]) -> str | None:
    """The file on disk a manifest path names: exactly, else by NFC (a bag made on macOS)."""
    return name if name in present else by_nfc.get(nfc(name))


def _check_complete(bag: Bag) -> None:
    if not bag.manifests:
        bag.problems.append("no payload manifest with a supported algorithm (manifest-ALG.txt)")
    payload = bag.payload
    by_nfc = {nfc(p): p for p in payload}
    for alg, entries in sorted(bag.manifests.items()):
        listed = {_resolve(p, payload, by_nfc) for p in entries}
        for path in sorted(payload):
            if path not in listed:
                bag.problems.append(f"{path} is in the bag but not in manifest-{alg}.txt")
        for path in entries:
            if _resolve(path, payload, by_nfc) is None and path not in bag.fetch:
                bag.problems.append(f"{path} is listed in manifest-{alg}.txt but missing")
    tags = bag.tag_files
    for alg, entries in sorted(bag.tagmanifests.items()):
        for path in entries:
            if path not in tags:
                bag.problems.append(
                    f"tag file {path} is listed in tagmanifest-{alg}.txt but missing"
                )
    oxum = bag.info_value("Payload-Oxum")
    if oxum is not None:
        m = re.match(r"^(\d+)\.(\d+)$", oxum)
        if m is None:
            bag.problems.append(f"bag-info.txt: Payload-Oxum {oxum!r} is not OCTETS.COUNT")
        elif not bag.fetch:
            octets, count = sum(payload.values()), len(payload)
            if (int(m.group(1)), int(m.group(2))) != (octets, count):
                bag.problems.append(
                    f"Payload-Oxum says {m.group(2)} files of {m.group(1)} bytes; the bag holds "
                    f"{count} files of {octets} bytes"
                )


# Fixity ----------------------------------------------------------------------------------------


def _update(hashers: list[Any], chunk: bytes | memoryview) -> None:
    for h in hashers:
        h.update(chunk)


class FileHasher:
    """Every digest of a file in a single read. With two or more algorithms the slowest runs on a
    second thread one chunk behind (hashlib releases the GIL), so two cores share the work; three
    buffers, allocated once, rotate: one being read into, one hashed here, one on the other thread.
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._buffers = [bytearray(HASH_CHUNK) for _ in range(3)]

    def hash(
        self,
        listing: Listing,
        rel: str,
        algorithms: list[str],
        on_bytes: Callable[[int], None] | None = None,
    ) -> dict[str, str]:
        hashers = {a: hashlib.new(a) for a in algorithms}
        slowest = max(algorithms, key=lambda a: HEX_LENGTH[a])
        behind = [hashers[slowest]] if len(algorithms) > 1 else []
        inline = [h for a, h in hashers.items() if not behind or a != slowest]
        pending: Future[None] | None = None
        turn = 0
        with open_file(listing, rel) as f:
            while True:
                buffer = self._buffers[turn % 3]
                turn += 1
                n = f.readinto(buffer)  # type: ignore[attr-defined]
                if not n:
                    break
                chunk = memoryview(buffer)[:n]
                _update(inline, chunk)
                if pending is not None:
                    pending.result()
                pending = self._pool.submit(_update, behind, chunk) if behind else None
                if on_bytes is not None:
                    on_bytes(n)
        if pending is not None:
            pending.result()
        return {a: h.hexdigest() for a, h in hashers.items()}


def check_fixity(bag: Bag, on_bytes: Callable[[int], None] | None = None) -> None:
    """Hash every payload file once with every manifest's algorithm, and every listed tag file."""
    payload = bag.payload
    algorithms = sorted(bag.manifests)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bag-hash") as pool:
        hasher = FileHasher(pool)
        for path in sorted(payload):
            if algorithms:
                bag.computed[path] = hasher.hash(bag.listing, path, algorithms, on_bytes)
            for alg in algorithms:
                want = _lookup(bag.manifests[alg], path)
                got = bag.computed[path][alg]
                if want is not None and want != got:
                    bag.problems.append(
                        f"{path}: {alg} mismatch (manifest {want[:16]}…, file {got[:16]}…)"
                    )
        tags = bag.tag_files
        for alg, entries in sorted(bag.tagmanifests.items()):
            for path, want in entries.items():
                if path not in tags:
                    continue
                got = hashlib.new(alg, read_file(bag.listing, path)).hexdigest()
                if got != want:
                    bag.problems.append(
                        f"tag file {path}: {alg} mismatch (tagmanifest {want[:16]}…, file "
                        f"{got[:16]}…)"
                    )


def _lookup(entries: dict[str, str], path: str) -> str | None:
    if path in entries:
        return entries[path]
    key = nfc(path)
    return next((v for p, v in entries.items() if nfc(p) == key), None)
