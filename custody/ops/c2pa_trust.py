"""The C2PA trust anchors an ingest validates signers against: none by default.

From `custody ingest --c2pa-trust-anchors FILE.pem` and custody.json's `c2pa.trust_anchors` (a PEM
file, or a list of them, relative to the archive folder). Each certificate is recorded by SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509

from custody.errors import UsageError

CONFIG_KEY = "c2pa"
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def configured_files(archive_root: Path) -> list[Path]:
    """The anchor files custody.json names (`{"c2pa": {"trust_anchors": "FILE" or [...]}}`)."""
    config_path = archive_root / "custody.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return []  # opening the archive has already said what is wrong with it
    named = ((config.get(CONFIG_KEY) or {}) if isinstance(config, dict) else {}).get(
        "trust_anchors"
    )
    if named is None:
        return []
    if isinstance(named, str):
        named = [named]
    if not isinstance(named, list) or not all(isinstance(n, str) for n in named):
        raise UsageError(f"{config_path}: c2pa.trust_anchors must be a file name or a list of them")
    return [archive_root / n for n in named]


def load_trust(files: list[Path]) -> dict[str, Any] | None:
    """{"pem": every certificate as PEM, "sha256": their DER SHA-256 in hex}, or None for none."""
    pems: list[str] = []
    fingerprints: list[str] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"C2PA trust anchors {path}: {exc.strerror or exc}") from None
        blocks = [b.decode("ascii", "replace") for b in _PEM_CERT.findall(data)]
        if not blocks:
            raise UsageError(f"C2PA trust anchors {path}: no PEM certificate in it")
        for block in blocks:
            try:
                der = ssl.PEM_cert_to_DER_cert(block)
                x509.load_der_x509_certificate(der)  # a certificate, not just base64
            except ValueError:
                bad = f"C2PA trust anchors {path}: a certificate cannot be read"
                raise UsageError(bad) from None
            digest = hashlib.sha256(der).hexdigest()
            if digest not in fingerprints:
                fingerprints.append(digest)
                pems.append(block + "\n")
    if not pems:
        return None
    return {"pem": "".join(pems), "sha256": fingerprints}
