"""Sidecars at ingest: link a proof file found beside a file to it, and say what was checked.

The pairing by name is custody/core/sidecars.py; here the checks run on the STORED bytes (what is
checked is what is kept): OpenPGP signatures with GnuPG's `gpgv` and a throw-away keyring made from
the `pubkey.asc` beside them (never the user's keyring), OpenTimestamps proofs with the
`opentimestamps` library, ProofMode proof files by the digest they record. Nothing here changes the
record of the file a sidecar is about (docs/METADATA.md, "Sidecars").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path, PurePath
from typing import Any, Protocol

from custody.core import sidecars as names
from custody.core.sidecars import FAILED, NOT_CHECKED, PASSED, Pairing, check

GPG_SECONDS = 30  # a signature check that takes longer is reported as not checked
MAX_PROOF_BYTES = 4 * 1024 * 1024  # proof files are a few KB; a bigger one is not read at all
MAX_ATTESTATIONS = 100  # listed in the entry; a real proof has a handful


class LocalFiles(Protocol):
    """The object store's one method used here (store/ports.py ObjectStore.local_file)."""

    def local_file(self, sha256: str) -> Any: ...


class Linker:
    """One ingest run's sidecars: built from the paths the walk found (absolute) or a dump's
    member paths (package/dumps.py), told the digests of each file once stored, asked for the
    `sidecar` details of each sidecar."""

    def __init__(self, paths: Sequence[PurePath]) -> None:
        folders: dict[PurePath, list[str]] = {}
        for p in paths:
            folders.setdefault(p.parent, []).append(p.name)
        self.pairings: dict[PurePath, Pairing] = {}
        # Only these files' digests are kept (a run of 100,000 photos has few sidecars): the
        # files sidecars name, the sidecars, and every file of a folder with ProofMode names.
        self._wanted: set[PurePath] = set()
        for folder, files in folders.items():
            found = names.pair(files)
            for name, pairing in found.items():
                self.pairings[folder / name] = pairing
                self._wanted.add(folder / name)
                if pairing.of_name is not None:
                    self._wanted.add(folder / pairing.of_name)
            if any(p.of_sha256 is not None for p in found.values()):
                self._wanted.update(folder / name for name in files)
        self._stored: dict[PurePath, dict[str, dict[str, str]]] = {}  # folder -> name -> digests

    def depth(self, path: PurePath) -> int:
        """0 for a file that is no sidecar or a public key, else its depth (walk in that order)."""
        p = self.pairings.get(path)
        return p.depth if p is not None else 0

    def stored(self, path: PurePath, digests: dict[str, str]) -> None:
        """Hear that the file at `path` is stored, with its digests (sha256, sha1, ...)."""
        if path in self._wanted:
            self._stored.setdefault(path.parent, {})[path.name] = digests

    def link(self, path: PurePath, objects: LocalFiles) -> dict[str, Any] | None:
        """The `sidecar` details of the file stored from `path`, or None if it is no sidecar.
        A check that cannot run (a tool that fails to start) is said so; the file stays stored."""
        try:
            return self._link(path, objects)
        except OSError as exc:
            pairing = self.pairings[path]
            return {"kind": pairing.kind, "of": None, "checks": [check(
                "sidecar", NOT_CHECKED, f"could not be checked: {exc.strerror or exc}")]}

    def _link(self, path: PurePath, objects: LocalFiles) -> dict[str, Any] | None:
        pairing = self.pairings.get(path)
        own = self._stored.get(path.parent, {}).get(path.name)
        if pairing is None or own is None:
            return None
        if pairing.kind == names.OPENPGP_PUBLIC_KEY:
            with objects.local_file(own["sha256"]) as key_file:
                checks = [public_key_check(Path(key_file))]
            return {"kind": pairing.kind, "of": None, "checks": checks,
                    "note": "the OpenPGP public key the signatures beside it are checked with"}
        target = self._target(path, pairing)
        if target is None:
            return {"kind": pairing.kind, "of": None, "checks": [],
                    "note": f"{_about(pairing)} was not ingested with it from its folder: "
                            "stored, not linked"}
        out: dict[str, Any] = {"kind": pairing.kind, "of": target["sha256"]}
        with ExitStack() as stack:
            mine = Path(stack.enter_context(objects.local_file(own["sha256"])))
            theirs = Path(stack.enter_context(objects.local_file(target["sha256"])))
            if pairing.kind == names.OPENPGP_SIGNATURE:
                key = self._public_key(path.parent)
                key_file = (Path(stack.enter_context(objects.local_file(key["sha256"])))
                            if key is not None else None)
                if key is not None:
                    out["key"] = key["sha256"]
                out["checks"] = [signature_check(mine, theirs, key_file)]
            elif pairing.kind == names.OPENTIMESTAMPS:
                out["checks"], out["attestations"] = timestamp_checks(mine, target)
            elif pairing.kind in (names.PROOFMODE_JSON, names.PROOFMODE_CSV):
                out["checks"], claims = proof_checks(mine, pairing.kind, target["sha256"])
                if claims:
                    out["claims"] = claims
            else:
                out["checks"] = [check("device-integrity-token", NOT_CHECKED,
                                       "kept as found: verifying it needs its issuer's service")]
        return out

    def _target(self, path: PurePath, pairing: Pairing) -> dict[str, str] | None:
        beside = self._stored.get(path.parent, {})
        if pairing.of_name is not None:
            return beside.get(pairing.of_name)
        if pairing.of_sha256 is not None:  # ProofMode: the file beside it with that SHA-256
            return next((d for d in beside.values() if d["sha256"] == pairing.of_sha256), None)
        return None

    def _public_key(self, folder: PurePath) -> dict[str, str] | None:
        keys = [d for name, d in self._stored.get(folder, {}).items()
                if (p := self.pairings.get(folder / name)) and p.kind == names.OPENPGP_PUBLIC_KEY]
        return keys[0] if keys else None


def _about(pairing: Pairing) -> str:
    if pairing.of_sha256 is not None:
        return f"the file with SHA-256 {pairing.of_sha256} it is named after"
    return f"the file {pairing.named!r} it is named after"


# OpenPGP (GnuPG's gpgv, a throw-away home and keyring) ----------------------------------------

def _gnupg(args: list[str], home: str) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "GNUPGHOME": home}
    return subprocess.run(args, capture_output=True, timeout=GPG_SECONDS, env=env, check=False,
                          stdin=subprocess.DEVNULL)


def _keyring(public_key: Path, home: str) -> str | None:
    """The public key as a binary keyring gpgv reads (it reads no armour), or None."""
    keyring = os.path.join(home, "keyring.gpg")
    with open(public_key, "rb") as f:
        armoured = f.read(5) == b"-----"
    if not armoured:
        shutil.copyfile(public_key, keyring)
        return keyring
    gpg = shutil.which("gpg")
    if gpg is None:
        return None
    done = _gnupg([gpg, "--batch", "--no-options", "--homedir", home, "--dearmor",
                   "-o", keyring, str(public_key)], home)
    return keyring if done.returncode == 0 else None


def signature_check(signature: Path, data: Path, public_key: Path | None) -> dict[str, str]:
    """A detached OpenPGP signature over `data`, checked by gpgv with only `public_key`."""
    what = "openpgp-signature"
    if public_key is None:
        return check(what, NOT_CHECKED, "no public key beside it (pubkey.asc)")
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        return check(what, NOT_CHECKED, "gpgv (GnuPG) is not installed")
    with tempfile.TemporaryDirectory(prefix="custody-gpg-") as home:  # mode 0700
        try:
            keyring = _keyring(public_key, home)
            if keyring is None:
                return check(what, NOT_CHECKED, "the public key beside it could not be read")
            done = _gnupg([gpgv, "--homedir", home, "--keyring", keyring, "--status-fd", "1",
                           str(signature), str(data)], home)
        except subprocess.TimeoutExpired:
            return check(what, NOT_CHECKED, f"gpgv took more than {GPG_SECONDS} s")
    status = _status(done.stdout)
    if done.returncode == 0 and "VALIDSIG" in status and "GOODSIG" in status:
        fields = status["VALIDSIG"]
        primary = fields[-1] if len(fields) >= 10 else fields[0]
        extra = [w for w in ("EXPSIG", "EXPKEYSIG", "REVKEYSIG") if w in status]
        note = f" ({', '.join(extra)})" if extra else ""
        return check(what, PASSED, f"good signature by key {primary}{note}, from the public key "
                                   "beside it (who holds that key is not established here)")
    if "BADSIG" in status:
        return check(what, FAILED, f"bad signature: key {status['BADSIG'][0]} did not sign "
                                   "these bytes")
    if "NO_PUBKEY" in status:
        return check(what, NOT_CHECKED, f"signed by key {status['NO_PUBKEY'][0]}, which is not "
                                        "in the public key beside it")
    if "NODATA" in status:
        return check(what, FAILED, "no OpenPGP signature in it")
    last = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return check(what, FAILED, f"gpgv: {last[-1] if last else 'exit ' + str(done.returncode)}")


def _status(out: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "[GNUPG:]":
            found.setdefault(parts[1], parts[2:])
    return found


def public_key_check(public_key: Path) -> dict[str, str]:
    """The fingerprints of the OpenPGP public key(s) in a file (gpg --show-keys)."""
    what = "openpgp-public-key"
    gpg = shutil.which("gpg")
    if gpg is None:
        return check(what, NOT_CHECKED, "gpg (GnuPG) is not installed")
    with tempfile.TemporaryDirectory(prefix="custody-gpg-") as home:
        try:
            done = _gnupg([gpg, "--batch", "--no-options", "--homedir", home, "--with-colons",
                           "--show-keys", str(public_key)], home)
        except subprocess.TimeoutExpired:
            return check(what, NOT_CHECKED, f"gpg took more than {GPG_SECONDS} s")
    lines = [ln.split(":") for ln in done.stdout.decode("utf-8", "replace").splitlines()]
    primaries = [lines[i + 1][9] for i, f in enumerate(lines[:-1])
                 if f[0] == "pub" and lines[i + 1][0] == "fpr" and len(lines[i + 1]) > 9]
    if done.returncode != 0 or not primaries:
        return check(what, FAILED, "no OpenPGP public key could be read from it")
    return check(what, PASSED, "public key " + ", ".join(primaries)
                 + " (who holds it is not established here)")


# OpenTimestamps ------------------------------------------------------------------------------

def timestamp_checks(
    proof: Path, target: dict[str, str]
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """The digest an `.ots` proof commits to against the file's, and its attestations (listed,
    not verified: that needs a Bitcoin node, and ingest works offline)."""
    # imported here: the library costs 80 ms, which every other command would pay
    from opentimestamps.core.op import OpSHA1, OpSHA256
    from opentimestamps.core.serialize import BytesDeserializationContext, DeserializationError
    from opentimestamps.core.timestamp import DetachedTimestampFile

    what = "opentimestamps-digest"
    data = _read_capped(proof)
    if data is None:
        return [check(what, NOT_CHECKED, f"larger than {MAX_PROOF_BYTES} bytes: not read")], []
    try:
        detached = DetachedTimestampFile.deserialize(BytesDeserializationContext(data))
    except (DeserializationError, ValueError, RecursionError) as exc:
        return [check(what, FAILED, f"not an OpenTimestamps proof: {exc}")], []
    algorithm = {OpSHA256: "sha256", OpSHA1: "sha1"}.get(type(detached.file_hash_op))
    shown = {"sha256": "SHA-256", "sha1": "SHA-1"}.get(algorithm or "", "")
    committed = detached.file_digest.hex()
    if algorithm is None or algorithm not in target:
        checks = [check(what, NOT_CHECKED, f"commits to a {detached.file_hash_op.TAG_NAME} "
                                           "digest, which custody does not compute")]
    elif committed == target[algorithm]:
        checks = [check(what, PASSED, f"commits to the file's {shown} {committed}")]
    else:
        checks = [check(what, FAILED, f"commits to {shown} {committed}, "
                                      f"not the file's {target[algorithm]}")]
    attestations = [_attestation(a) for _msg, a in sorted(detached.timestamp.all_attestations(),
                                                          key=lambda ma: repr(ma[1]))]
    listed = (f"{len(attestations)} attestation(s) listed" if len(attestations) <= MAX_ATTESTATIONS
              else f"{len(attestations)} attestation(s), the first {MAX_ATTESTATIONS} listed")
    checks.append(check("opentimestamps-attestations", NOT_CHECKED,
                        f"{listed}; not verified against Bitcoin (offline)"))
    attestations = attestations[:MAX_ATTESTATIONS]
    return checks, attestations


def _attestation(a: Any) -> dict[str, Any]:
    from opentimestamps.core.notary import (
        BitcoinBlockHeaderAttestation,
        LitecoinBlockHeaderAttestation,
        PendingAttestation,
    )

    if isinstance(a, PendingAttestation):
        return {"type": "pending", "calendar": str(a.uri)}
    if isinstance(a, BitcoinBlockHeaderAttestation):
        return {"type": "bitcoin", "block_height": int(a.height)}
    if isinstance(a, LitecoinBlockHeaderAttestation):
        return {"type": "litecoin", "block_height": int(a.height)}
    return {"type": "unknown", "tag": bytes(getattr(a, "TAG", b"")).hex()}


# ProofMode proof files ------------------------------------------------------------------------

def proof_checks(
    proof: Path, kind: str, sha256: str
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The file digest a ProofMode proof records against the file's; its other fields as
    claims (not checked)."""
    what = "proofmode-file-hash"
    data = _read_capped(proof)
    if data is None:
        return [check(what, NOT_CHECKED, f"larger than {MAX_PROOF_BYTES} bytes: not read")], {}
    try:
        parsed = (names.proof_from_json(data) if kind == names.PROOFMODE_JSON
                  else names.proof_from_csv(data))
    except ValueError as exc:
        return [check(what, FAILED, f"not a ProofMode proof: {exc}")], {}
    if parsed.file_sha256 is None:
        result = check(what, FAILED, "it records no \"File Hash SHA256\"")
    elif parsed.file_sha256 == sha256:
        result = check(what, PASSED, f"records the file's SHA-256 {sha256}")
    else:
        result = check(what, FAILED, f"records SHA-256 {parsed.file_sha256[:64]}, not the "
                                     f"file's {sha256}")
    return [result], parsed.claims


def _read_capped(path: Path) -> bytes | None:
    with open(path, "rb") as f:
        data = f.read(MAX_PROOF_BYTES + 1)
    return data if len(data) <= MAX_PROOF_BYTES else None


# Views: what ingest says, what `show` lists ---------------------------------------------------

def ingest_lines(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """What an ingest says of the sidecars it found (path, `sidecar` details): how many were
    linked, each that stayed unlinked, and every failed check by name."""
    if not results:
        return []
    linked = sum(1 for _path, s in results if s.get("of"))
    lines = [f"{linked} sidecar(s) linked"
             + (f", {len(results) - linked} not linked" if linked < len(results) else "")]
    for path, s in results:
        if s.get("note") and not s.get("of") and s.get("kind") != names.OPENPGP_PUBLIC_KEY:
            lines.append(f"sidecar {path}: {s['note']}")
        for c in s.get("checks", []):
            if c.get("result") == FAILED:
                lines.append(f"sidecar {path}: {c['check']} FAILED: {c['detail']}")
    return lines


def for_show(ledger: Any, item: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """`sidecars`: the files recorded as sidecars of `item`, with what was checked; `sidecar_of`:
    what `item` itself was recorded as a sidecar of (both from signed ingest entries)."""
    from custody.core import entry as entries

    own = [dict(h["details"]["sidecar"], seq=h["seq"]) for h in history
           if isinstance(h["details"].get("sidecar"), dict)]
    linked: list[dict[str, Any]] = []
    mark = f'"of":"{item}"'.encode()  # canonical JSON: skip parsing entries that cannot match
    for row in ledger.rows_with_action("ingest", "sighting"):
        if mark not in row.body:
            continue
        e = entries.parse(row.body)
        link = e.details.get("sidecar")
        if isinstance(link, dict) and link.get("of") == item:
            linked.append({"sha256": e.item, "name": (e.details.get("source") or {}).get("name"),
                           "seq": e.seq, **link})
    return {"sidecars": linked, "sidecar_of": own}


def show_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """`show`'s lines for the sidecars of an item and for a sidecar (label, text)."""
    out: list[tuple[str, str]] = []
    for s in data.get("sidecars") or []:
        out.append(("sidecar", f"{s.get('name') or '-'} ({s['kind']}, {s['sha256'][:12]}, "
                               f"entry #{s['seq']}): {_checks_text(s)}"))
    for s in data.get("sidecar_of") or []:
        of = f"{s['of']}" if s.get("of") else f"nothing: {s.get('note', '-')}"
        out.append(("sidecar of", f"{of} ({s['kind']}, entry #{s['seq']}): {_checks_text(s)}"))
    return out


def _checks_text(link: dict[str, Any]) -> str:
    checks = link.get("checks") or []
    return "; ".join(
        f"{c['check']} {'FAILED' if c['result'] == FAILED else c['result']} ({c['detail']})"
        for c in checks) or "no checks"
