"""Sidecars: which file of a folder is a proof about another (ProofMode exports, .asc, .ots).

Pure: file names and bytes in, pairings and parsed claims out. custody/ops/sidecars.py checks
them and ingest links them (docs/FORMAT.md, `sidecar`).

Two naming conventions are recognised, in one folder (docs/METADATA.md, "Sidecars"):
- ProofMode's export names every proof by the media's SHA-256 in hex: `<sha256>.asc` (OpenPGP
  signature of the media), `<sha256>.proof.json` and `.proof.csv` (its proof data), each with an
  `.asc` of its own, `<sha256>.ots` (OpenTimestamps proof), `<sha256>.gst` (a device-integrity
  token), and one `pubkey.asc` (the phone's OpenPGP public key).
- Beside a file by its name: `NAME.ext.asc`, `NAME.ext.ots`, `NAME.ext.proof.json`, ...
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

OPENPGP_SIGNATURE = "openpgp-signature"
OPENPGP_PUBLIC_KEY = "openpgp-public-key"
OPENTIMESTAMPS = "opentimestamps"
PROOFMODE_JSON = "proofmode-json"
PROOFMODE_CSV = "proofmode-csv"
DEVICE_INTEGRITY = "device-integrity-token"

# The longest first: `X.proof.json.asc` is a signature of `X.proof.json`, which is proof of `X`.
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".proof.json", PROOFMODE_JSON),
    (".proof.csv", PROOFMODE_CSV),
    (".asc", OPENPGP_SIGNATURE),
    (".ots", OPENTIMESTAMPS),
    (".gst", DEVICE_INTEGRITY),
)
PUBLIC_KEY_NAMES = frozenset({"pubkey.asc"})  # ProofMode's name for the phone's public key

PASSED, FAILED, NOT_CHECKED = "passed", "failed", "not-checked"

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Pairing:
    """What a sidecar's name says it is about: a file beside it by name (`of_name`), or by the
    SHA-256 ProofMode named it after (`of_sha256`); neither for a public key. `depth` orders the
    walk: 1 for a proof of a media file, 2 for a proof of a proof (`X.proof.json.asc`), 0 for a
    public key (it is needed before any signature is checked)."""

    kind: str
    of_name: str | None = None
    of_sha256: str | None = None
    depth: int = 1
    named: str | None = None  # the name it was named after (`X` of `X.asc`), there or not

    @property
    def absent(self) -> bool:
        """True when the name points at nothing: no such file beside it, no ProofMode digest."""
        return self.of_name is None and self.of_sha256 is None and self.kind != OPENPGP_PUBLIC_KEY


def pair(names: Collection[str]) -> dict[str, Pairing]:
    """The sidecars among the file names of ONE folder, each with what it is about. A name
    that looks like a sidecar of a file that is not there is still a sidecar (absent)."""
    present = set(names)
    found: dict[str, Pairing] = {}
    for name in present:
        pairing = _classify(name, present)
        if pairing is not None:
            found[name] = pairing
    return {name: _with_depth(name, found) for name in found}


def _classify(name: str, present: set[str]) -> Pairing | None:
    if name.lower() in PUBLIC_KEY_NAMES:
        return Pairing(OPENPGP_PUBLIC_KEY, depth=0)
    lowered = name.lower()
    for suffix, kind in SUFFIXES:
        if not lowered.endswith(suffix) or len(name) == len(suffix):
            continue
        stem = name[: -len(suffix)]
        if stem in present:
            return Pairing(kind, of_name=stem, named=stem)
        if _SHA256_HEX.fullmatch(stem):
            return Pairing(kind, of_sha256=stem.lower(), named=stem)
        return Pairing(kind, named=stem)  # of a file that is not beside it
    return None


def _with_depth(name: str, found: Mapping[str, Pairing]) -> Pairing:
    p = found[name]
    depth, target = p.depth, p.of_name
    while target is not None and target in found:  # names only get shorter: no cycle
        depth += 1
        target = found[target].of_name
    return Pairing(p.kind, p.of_name, p.of_sha256, depth, p.named)


@dataclass(frozen=True, slots=True)
class ProofData:
    """What a ProofMode proof file says: the SHA-256 it is about, and its other fields kept as
    claims (what the phone said of place, time and itself; not checked)."""

    file_sha256: str | None
    claims: dict[str, str]


# The proof fields kept as claims (ProofMode's names); the rest stays in the stored file.
CLAIM_FIELDS = (
    "File Path", "File Created", "File Modified", "Proof Generated",
    "Location.Latitude", "Location.Longitude", "Location.Altitude", "Location.Accuracy",
    "Location.Time", "Location.Provider", "Manufacturer", "Model", "Hardware", "DeviceID",
    "Notes", "Note",
)


def proof_from_json(data: bytes) -> ProofData:
    """A ProofMode `.proof.json`; ValueError if it is not a JSON object."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return _proof(doc)


def proof_from_csv(data: bytes) -> ProofData:
    """A ProofMode `.proof.csv`: a header row and a row of values (the first one is read);
    ValueError if it has no such rows."""
    try:
        rows = list(csv.reader(data.decode("utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"not CSV: {exc}") from None
    if len(rows) < 2:
        raise ValueError("no header and value rows")
    return _proof(dict(zip(rows[0], rows[1], strict=False)))


MAX_CLAIM_CHARS = 1000  # a claim longer than this is cut, and says so, before it is signed


def _proof(fields: dict[str, Any]) -> ProofData:
    digest = fields.get("File Hash SHA256")
    claims = {k: _claim(fields[k]) for k in CLAIM_FIELDS if fields.get(k) not in (None, "")}
    return ProofData(digest.strip().lower() if isinstance(digest, str) else None, claims)


def _claim(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) <= MAX_CLAIM_CHARS:
        return text
    return f"{text[:MAX_CLAIM_CHARS]} [cut at {MAX_CLAIM_CHARS} of {len(text)} characters]"


def check(name: str, result: str, detail: str) -> dict[str, str]:
    """One line of what was checked, as signed in the entry (docs/FORMAT.md, `sidecar.checks`):
    `result` is PASSED, FAILED or NOT_CHECKED."""
    return {"check": name, "result": result, "detail": detail}
