"""A JPEG's structure, walked marker by marker to its EOI (ITU T.81 Annex B): the check that
stands in for ExifTool's "JPEG format error" when the fast path skips ExifTool.

`walk` is pure over the bytes (a bytes-like object or an mmap); `read` maps the file. It reports
the frame's pixel size (the SOFn header, which ExifTool reports as File:ImageWidth/ImageHeight),
whether XMP or IPTC segments are present (data only ExifTool reads), and every structural problem:
a segment running past the end of the file, entropy-coded data without an EOI (a truncated file),
no frame or scan at all, bytes that are not a marker where one must be.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from typing import Any

from .record import empty_fields, one_line

VERSION = "custody jpeg markers 1"  # the reader's name and version in a record's `readers`
SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn carry no length
XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
IPTC_ID = b"Photoshop 3.0\x00"


@dataclass(slots=True)
class Structure:
    """What the walk found."""

    width: int | None = None
    height: int | None = None
    xmp: bool = False
    iptc: bool = False
    scans: int = 0
    problems: list[str] = field(default_factory=list)


def walk(data: Any) -> Structure:
    """Walk SOI, the marker segments and each scan's entropy-coded data up to EOI."""
    found = Structure()
    size = len(data)
    if data[:2] != b"\xff\xd8":
        found.problems.append("not a JPEG: no SOI marker at its start")
        return found
    at = 2
    while True:
        if at >= size:
            found.problems.append(f"no EOI marker: the file ends at byte {size} (truncated)")
            return found
        if data[at] != 0xFF:
            found.problems.append(f"byte {at}: 0x{data[at]:02X} where a marker must be")
            return found
        while at < size and data[at] == 0xFF:  # fill bytes before a marker are allowed
            at += 1
        if at >= size:
            continue  # reported as truncated above
        marker = data[at]
        at += 1
        if marker == 0xD9:  # EOI: whatever follows (a maker's trailer, MPF images) is not ours
            if not found.scans:
                found.problems.append("no image data: EOI before any scan")
            return found
        if marker in STANDALONE:
            continue
        if at + 2 > size:
            found.problems.append(f"marker 0x{marker:02X} at byte {at - 2} has no length "
                                  "(truncated)")
            return found
        length = struct.unpack_from(">H", data, at)[0]
        end = at + length
        if length < 2 or end > size:
            found.problems.append(f"segment 0x{marker:02X} at byte {at - 2} runs past the end "
                                  f"of the file ({end} > {size}: truncated)")
            return found
        _segment(found, marker, data[at + 2:min(end, at + 2 + len(XMP_ID))], data, at)
        at = end
        if marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker
            if found.width is None:
                found.problems.append("a scan before any frame header (SOFn)")
            found.scans += 1
            at = _scan_end(data, at, size)
            if at < 0:
                found.problems.append(f"no EOI marker: the scan data runs to the end of the "
                                      f"file at byte {size} (truncated)")
                return found


def _segment(found: Structure, marker: int, head: Any, data: Any, at: int) -> None:
    if marker in SOF and found.width is None and at + 7 <= len(data):
        found.height, found.width = struct.unpack_from(">HH", data, at + 3)
    elif marker == 0xE1 and bytes(head) == XMP_ID:
        found.xmp = True
    elif marker == 0xED and bytes(head[:len(IPTC_ID)]) == IPTC_ID:
        found.iptc = True


def _scan_end(data: Any, at: int, size: int) -> int:
    """The offset of the marker that ends the entropy-coded data starting at `at`, or -1."""
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= size:
            return -1
        following = data[at + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:  # a stuffed 0xFF, a restart marker
            at += 2
        elif following == 0xFF:
            at += 1  # fill bytes: the marker comes after them
        else:
            return at


def read(path: str) -> Structure:
    """The structure of the file at `path` (mapped, not read into memory)."""
    with open(path, "rb") as handle:
        if not handle.seek(0, 2):
            return walk(b"")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return walk(data)


def payload(path: str) -> dict[str, Any]:
    """The worker's report (a reader's part): `fields` with the frame's dimensions, `errors` the
    structural problems, and `xmp`/`iptc`: whether ExifTool-only data is present."""
    try:
        found = read(path)
    except (OSError, ValueError) as error:
        return {"version": VERSION, "fields": None, "errors": [one_line(error)],
                "xmp": False, "iptc": False}  # fmt: skip
    fields = empty_fields()
    if found.width and found.height:
        fields["dimensions"] = {"width": found.width, "height": found.height}
    return {"version": VERSION, "fields": fields, "errors": found.problems,
            "xmp": found.xmp, "iptc": found.iptc}  # fmt: skip
