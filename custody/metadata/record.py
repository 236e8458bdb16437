"""The metadata record: merge what each reader reported into the one JSON-safe dict read() returns.

Pure functions: which reader's normalised fields win, per field and per kind of file, and why.
"""

from __future__ import annotations

from typing import Any

from .clocks import compared_rank
from .gps import fix_problems

READERS = ("python-magic", "exifread", "structure", "exiftool", "c2pa", "perceptual")
FALLBACK_MIME = "application/octet-stream"

# Field groups taken whole from one reader (captured_at, its basis and the clocks belong together).
GROUPS: dict[str, tuple[str, ...]] = {
    "captured_at": ("captured_at", "captured_at_basis", "captured_at_source", "clocks"),
    "gps": ("gps",),
    "device": ("device",),
    "orientation": ("orientation",),
    "dimensions": ("dimensions",),
    "duration_s": ("duration_s",),
    "codecs": ("codecs",),
}
# Which reader to ask first for each group. exifread reads images only; ExifTool reads the actual
# image header for pixel dimensions, so it goes first there even for images.
PREFERENCE: dict[str, dict[str, tuple[str, ...]]] = {
    "image": {
        "captured_at": ("exifread", "exiftool"),
        "gps": ("exifread", "exiftool"),
        "device": ("exifread", "exiftool"),
        "orientation": ("exifread", "exiftool"),
        "dimensions": ("exiftool", "structure", "exifread"),
        "duration_s": ("exiftool",),
        "codecs": ("exiftool",),
    },
}
OTHER_PREFERENCE = {group: ("exiftool",) for group in GROUPS}

NO_STREAMS = "metadata: no duration, dimensions or codecs found (damaged or unsupported container)"


def empty_fields() -> dict[str, Any]:
    return {
        "captured_at": None,
        "captured_at_basis": None,
        "captured_at_source": None,
        "clocks": [],
        "gps": None,
        "device": None,
        "orientation": None,
        "dimensions": None,
        "duration_s": None,
        "codecs": [],
    }


def safe_text(value: object) -> str:
    """str(value) that survives strict JSON and UTF-8 (lone surrogates become '?')."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def one_line(error: BaseException) -> str:
    """An exception as one line: its type, and its message if it has one."""
    message = " ".join(safe_text(error).split())
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def kind_of(mime: str) -> str:
    major = mime.split("/", 1)[0]
    return major if major in ("image", "video") else "other"


def _present(group: str, fields: dict[str, Any]) -> bool:
    if group == "captured_at":
        return fields.get("captured_at") is not None
    return bool(fields.get(group))


def _capture_rank(fields: dict[str, Any]) -> tuple[int, int]:
    """So that ExifTool's XMP DateTimeOriginal with a zone beats exifread's CreateDate without."""
    return compared_rank(fields.get("captured_at_basis"), fields.get("captured_at_source"))


def compose(parts: dict[str, dict[str, Any]], supervisor_errors: list[str]) -> dict[str, Any]:
    """The record from each reader's report: {"version", "errors", and "mime" or "raw"/"fields"}.

    `supervisor_errors` are the worker's own (time-outs, crashes), already prefixed.
    """
    mime = (parts.get("python-magic") or {}).get("mime") or FALLBACK_MIME
    kind = kind_of(mime)
    chosen, sources = choose(kind, parts)
    record: dict[str, Any] = {"mime": mime, "kind": kind, **chosen}
    record["sources"] = sources
    record["readers"] = {
        name: parts[name]["version"] for name in READERS if (parts.get(name) or {}).get("version")
    }
    record["raw"] = {
        name: parts[name]["raw"]
        for name in READERS
        if (parts.get(name) or {}).get("raw") is not None
    }
    record["gps_problems"] = fix_problems(record)  # the fix kept in gps, not shown as a place
    errors = [f"{name}: {e}" for name in READERS for e in (parts.get(name) or {}).get("errors", [])]
    errors.extend(supervisor_errors)
    if kind == "video" and "exiftool" in record["readers"]:
        if not (record["duration_s"] or record["dimensions"] or record["codecs"]):
            errors.append(NO_STREAMS)
    record["errors"] = errors
    c2pa = (parts.get("c2pa") or {}).get("provenance")
    if c2pa:  # only a file that carries a C2PA manifest has provenance
        record["provenance"] = {"c2pa": c2pa}
    record["perceptual"] = perceptual_hashes(parts.get("perceptual"))
    deferred = (parts.get("deferred") or {}).get("readers")
    if deferred:  # the fast path: read later, each in its own signed entry (enrichment)
        record["deferred"] = list(deferred)
    return record


def choose(kind: str, parts: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The normalised fields, each group from the reader preferred for it, and `sources`."""
    preference = PREFERENCE.get(kind, OTHER_PREFERENCE)
    out = empty_fields()
    sources: dict[str, str] = {}
    for group, members in GROUPS.items():
        readers = [r for r in preference[group] if (parts.get(r) or {}).get("fields")]
        if group == "captured_at":  # the best-ranked capture time of any reader, then preference
            readers.sort(key=lambda r: _capture_rank(parts[r]["fields"]))
        chosen = next((r for r in readers if _present(group, parts[r]["fields"])), None)
        if chosen is None and group == "captured_at":  # no instant anywhere: keep the clocks seen
            chosen = next((r for r in readers if parts[r]["fields"].get("clocks")), None)
        if chosen is not None:
            for member in members:
                out[member] = parts[chosen]["fields"].get(member)
            sources[group] = chosen
    return out, sources


def exiftool_can_wait(parts: dict[str, dict[str, Any]]) -> bool:
    """Whether a JPEG's record is complete without ExifTool: exifread and the marker walk read it
    without a problem, and nothing ExifTool alone reads could change a normalised field (it could
    only give what exifread lacks, or a better-ranked capture time from XMP or IPTC)."""
    exif, walked = parts.get("exifread") or {}, parts.get("structure") or {}
    if exif.get("errors") or walked.get("errors") or not exif.get("fields"):
        return False
    if not (walked.get("fields") or {}).get("dimensions"):
        return False
    found = exif["fields"]
    if not found.get("device") or found.get("captured_at") is None:
        return False
    tier, tag = _capture_rank(found)
    if walked.get("xmp") or walked.get("iptc"):  # dates, places, devices ExifTool may find there
        return found.get("gps") is not None and found.get("orientation") is not None and (
            tier == 0 or (tier == 1 and tag == 0))
    return tier == 0 or tag == 0  # a DateTimeOriginal (or the GPS clock) ranks first or ties


def enriched(doc: dict[str, Any], exiftool: dict[str, Any]) -> dict[str, Any]:
    """A fast-path record completed with ExifTool's report read later (its `enriched` entry):
    what `compose` gives when ExifTool ran with the other readers, its errors listed last."""
    parts: dict[str, dict[str, Any]] = {}
    for group, reader in (doc.get("sources") or {}).items():
        fields = parts.setdefault(reader, {"fields": empty_fields()})["fields"]
        for member in GROUPS.get(group, ()):
            fields[member] = doc.get(member)
    parts["exiftool"] = {"fields": exiftool.get("fields")}
    chosen, sources = choose(kind_of(doc.get("mime") or ""), parts)
    out = {key: value for key, value in doc.items() if key != "deferred"}
    out.update(chosen, sources=sources)
    if exiftool.get("version"):
        out["readers"] = {**(doc.get("readers") or {}), "exiftool": exiftool["version"]}
    if exiftool.get("raw") is not None:
        out["raw"] = {**(doc.get("raw") or {}), "exiftool": exiftool["raw"]}
    out["errors"] = [*(doc.get("errors") or []),
                     *(f"exiftool: {e}" for e in exiftool.get("errors") or [])]
    out["gps_problems"] = fix_problems(out)
    return out


def perceptual_hashes(part: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record's `perceptual` key: the hashes without the reader's version and errors (those
    are in `readers` and `errors`); null when the file was not hashed (docs/SIMILAR.md)."""
    if not part:
        return None
    return {key: part.get(key) for key in ("algorithm", "bits", "image", "frames")}
