"""Derivations, pure: the operations a `derived` entry may name and the checks every verifier
applies to that entry's record (docs/FORMAT.md §5.4.1, rules derived-original and derived-record).

Also the parsing of what a user types (`--redact X,Y,W,H`, `--trim START-END`, `--still AT`) into
those operation objects, so that the command and the verifier agree on one form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

OPERATIONS = ("still", "trim", "transcode", "redact", "strip-metadata")
"""Every operation, in the order custody applies them (a `still` first, then the video work,
then the picture work, metadata last)."""
PRESETS = ("mp4-h264-720p", "mp4-h264-480p", "mp4-h264-source")
"""The transcode presets (their ffmpeg arguments: custody/metadata/derive_worker.py)."""
OUTPUT_FORMATS = ("png", "mp4", "mov")
DEFAULT_FILL = "#000000"

_HEX = re.compile(r"\A[0-9a-f]{64}\Z")
_SECONDS = re.compile(r"\A[0-9]+\.[0-9]{3}\Z")  # "1.500": what ffmpeg is given, exactly
_FILL = re.compile(r"\A#[0-9a-f]{6}\Z")
_CLOCK = re.compile(r"\A(?:([0-9]+):)?([0-9]+):([0-9]+(?:\.[0-9]+)?)\Z")  # [HH:]MM:SS[.fff]
_PARAMETERS: dict[str, frozenset[str]] = {
    "still": frozenset({"at"}),
    "trim": frozenset({"start", "end"}),
    "transcode": frozenset({"preset"}),
    "redact": frozenset({"boxes", "fill"}),
    "strip-metadata": frozenset(),
}
RECORD_MEMBERS = ("digests", "size", "mime", "metadata_sha256", "original", "access", "purpose",
                  "operations", "tools", "commands", "output")


class DerivationError(ValueError):
    """A typed operation that is not well-formed; the message says which and why."""


# ---- what a user types ----------------------------------------------------------------------


def seconds(text: str) -> str:
    """A time as the record keeps it: seconds with three decimals. Accepts `12`, `1.5`, `01:02`,
    `01:02:03.25`; refuses negatives and anything else."""
    value = text.strip()
    clock = _CLOCK.match(value)
    try:
        if clock is not None:
            hours, minutes, secs = clock.groups()
            total = Decimal(hours or 0) * 3600 + Decimal(minutes) * 60 + Decimal(secs)
        elif re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", value):
            total = Decimal(value)
        else:
            raise DerivationError(f"time {text!r} is not seconds (1.5) or [HH:]MM:SS[.fff]")
    except InvalidOperation:
        raise DerivationError(f"time {text!r} is not a number of seconds") from None
    return f"{total.quantize(Decimal('0.001')):f}"


def box(text: str) -> list[int]:
    """`X,Y,W,H` in pixels."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(re.fullmatch(r"[0-9]+", p) for p in parts):
        raise DerivationError(f"box {text!r} is not X,Y,W,H (four whole numbers of pixels)")
    x, y, w, h = (int(p) for p in parts)
    if w < 1 or h < 1:
        raise DerivationError(f"box {text!r} has no area (width and height must be at least 1)")
    return [x, y, w, h]


def trim(text: str) -> dict[str, Any]:
    start, sep, end = text.partition("-")
    if not sep:
        raise DerivationError(f"trim {text!r} is not START-END")
    first, last = seconds(start), seconds(end)
    if Decimal(first) >= Decimal(last):
        raise DerivationError(f"trim {text!r} ends before it starts")
    return {"op": "trim", "start": first, "end": last}


def operations(
    *, redact: list[str] | None = None, strip_metadata: bool = False, trim_range: str | None = None,
    preset: str | None = None, still: str | None = None,
) -> list[dict[str, Any]]:
    """The operation objects for what was asked, in the order they are applied."""
    ops: list[dict[str, Any]] = []
    if still is not None:
        ops.append({"op": "still", "at": seconds(still)})
    if trim_range is not None:
        ops.append(trim(trim_range))
    if preset is not None:
        if preset not in PRESETS:
            raise DerivationError(f"unknown preset {preset!r}; the presets are "
                                  f"{', '.join(PRESETS)}")
        ops.append({"op": "transcode", "preset": preset})
    if redact:
        ops.append({"op": "redact", "boxes": [box(b) for b in redact], "fill": DEFAULT_FILL})
    if strip_metadata:
        ops.append({"op": "strip-metadata"})
    if not ops:
        raise DerivationError("name at least one operation (--redact, --strip-metadata, --trim, "
                              "--transcode, --still)")
    problem = order_problem(ops)
    if problem is not None:
        raise DerivationError(problem)
    return ops


def order_problem(ops: list[dict[str, Any]]) -> str | None:
    """Which operations cannot go together, or None."""
    names = [o.get("op") for o in ops]
    if "still" in names and ({"trim", "transcode"} & set(names)):
        return "--still takes a frame of the original: it cannot be combined with --trim or " \
               "--transcode"
    known = [n for n in names if n in OPERATIONS]
    if known != sorted(known, key=OPERATIONS.index) or len(set(known)) != len(known):
        return "operations are out of order or repeated"
    return None


def kind_problem(ops: list[dict[str, Any]], kind: str) -> str | None:
    """Why these operations cannot apply to an original of this kind (`image`, `video`, other)."""
    names = {o["op"] for o in ops}
    if kind == "image":
        video_only = sorted(names & {"still", "trim", "transcode"})
        return (f"--{video_only[0]} works on video; this item is an image" if video_only else None)
    if kind == "video":
        if "redact" in names and "still" not in names:
            return "--redact works on images (take a frame with --still to redact it)"
        return None
    return f"derive works on images and video; this item is {kind or 'neither'}"


# ---- what a verifier checks -----------------------------------------------------------------


def record_problems(details: Mapping[str, Any], item: str | None) -> list[tuple[str, str]]:
    """The rules a `derived` entry's details break, as (rule id, text) pairs. The original's
    first record is checked by the replay (it knows the log)."""
    found: list[tuple[str, str]] = []
    original = details.get("original")
    if not isinstance(original, str) or not _HEX.match(original):
        found.append(("derived-original", f"names original {str(original)[:70]!r}, which is not "
                                          "a SHA-256"))
    elif original == item:
        found.append(("derived-original", "names itself as its original"))
    missing = [m for m in RECORD_MEMBERS if m not in details]
    if missing:
        found.append(("derived-record", f"derived record lacks {', '.join(missing)}"))
        return found
    why = _record_shape(details)
    if why is not None:
        found.append(("derived-record", f"derived record: {why}"))
    return found


def _record_shape(d: Mapping[str, Any]) -> str | None:
    if not isinstance(d["access"], int) or isinstance(d["access"], bool):
        return "access is not an entry seq"
    if not isinstance(d["purpose"], str) or not d["purpose"].strip():
        return "purpose is empty"
    tools = d["tools"]
    if (not isinstance(tools, dict) or not tools or "custody" not in tools
            or not all(isinstance(v, str) and v for v in tools.values())):
        return "tools must name custody and every program that ran, each with its version"
    commands = d["commands"]
    if not isinstance(commands, list) or not all(
            isinstance(c, list) and c and all(isinstance(a, str) for a in c) for c in commands):
        return "commands must be lists of arguments"
    output = d["output"]
    if not isinstance(output, dict) or output.get("format") not in OUTPUT_FORMATS:
        return "output format is not one of " + ", ".join(OUTPUT_FORMATS)
    ops = d["operations"]
    if not isinstance(ops, list) or not ops:
        return "operations is not a non-empty list"
    for op in ops:
        why = operation_problem(op)
        if why is not None:
            return why
    return order_problem(ops)


def operation_problem(op: object) -> str | None:
    """Why one operation object is not well-formed, or None."""
    if not isinstance(op, dict) or op.get("op") not in _PARAMETERS:
        return f"unknown operation {str(op)[:60]}"
    name = op["op"]
    if set(op) - {"op"} != _PARAMETERS[name]:
        return f"{name} must have exactly {sorted(_PARAMETERS[name]) or 'no parameters'}"
    if name == "still" and not _is_seconds(op["at"]):
        return "still's at is not seconds with three decimals"
    if name == "trim":
        if not (_is_seconds(op["start"]) and _is_seconds(op["end"])):
            return "trim's start and end are not seconds with three decimals"
        if Decimal(op["start"]) >= Decimal(op["end"]):
            return "trim ends before it starts"
    if name == "transcode" and op["preset"] not in PRESETS:
        return f"unknown preset {str(op['preset'])[:40]!r}"
    if name == "redact":
        boxes = op["boxes"]
        if not isinstance(op["fill"], str) or not _FILL.match(op["fill"]):
            return "redact's fill is not #rrggbb"
        if not isinstance(boxes, list) or not boxes or not all(_is_box(b) for b in boxes):
            return "redact's boxes are not [x, y, w, h] with w, h at least 1"
    return None


def _is_seconds(value: object) -> bool:
    return isinstance(value, str) and bool(_SECONDS.match(value))


def _is_box(value: object) -> bool:
    if not isinstance(value, list) or len(value) != 4:
        return False
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return False
    width, height = int(value[2]), int(value[3])
    return width >= 1 and height >= 1


def boxes_outside(ops: list[dict[str, Any]], width: int, height: int) -> str | None:
    """The first redaction box that does not lie inside a picture of this size, said."""
    for op in ops:
        if op["op"] != "redact":
            continue
        for x, y, w, h in op["boxes"]:
            if x + w > width or y + h > height:
                return (f"box {x},{y},{w},{h} is outside the {width}x{height} picture")
    return None
