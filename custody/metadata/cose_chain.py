"""The certificate chain that signed a C2PA manifest: the `x5chain` of its COSE_Sign1 signature.

c2pa-python reports the signer's names but not its certificates; they are in the manifest store's
JUMBF boxes (ISO/IEC 19566-5): the `c2pa.signature` box's CBOR (COSE, RFC 9052; x5chain, RFC 9360).
"""

from __future__ import annotations

import io
import ssl
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import cbor2
from cryptography import x509

X5CHAIN = 33  # COSE header label (RFC 9360)
_LABEL_PRESENT = 0x02  # JUMBF description box toggle: a label follows the type UUID
Box = tuple[bytes, int, int]  # box type, start and end of its payload


def _boxes(data: bytes, start: int, end: int) -> Iterator[Box]:
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        head = 8
        if size == 1:
            if at + 16 > end:
                return
            size, head = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:
            size = end - at
        if size < head or at + size > end:
            return  # damaged: stop rather than guess
        yield kind, at + head, at + size
        at += size


def _label(data: bytes, start: int, end: int) -> str | None:
    for kind, a, b in _boxes(data, start, end):  # the description box comes first
        if kind != b"jumd" or b - a < 17 or not data[a + 16] & _LABEL_PRESENT:
            return None
        stop = data.find(b"\0", a + 17, b)
        return data[a + 17 : stop].decode("utf-8", "replace") if stop != -1 else None
    return None


def _superbox(data: bytes, path: list[str]) -> tuple[int, int] | None:
    start, end = 0, len(data)
    for name in path:
        found = next(((a, b) for kind, a, b in _boxes(data, start, end)
                      if kind == b"jumb" and _label(data, a, b) == name), None)  # fmt: skip
        if found is None:
            return None
        start, end = found
    return start, end


def signing_chain(reader: Any, label: str) -> list[str]:
    """The active manifest's signing chain as PEM, signer first; [] when it cannot be found."""
    store = io.BytesIO()
    # c2pa hands out the whole manifest store for the signature's URI: the boxes are walked here
    reader.resource_to_stream(f"self#jumbf=/c2pa/{label}/c2pa.signature", store)
    data = store.getvalue()
    place = _superbox(data, ["c2pa", label, "c2pa.signature"])
    if place is None:
        return []
    cbor = next((data[a:b] for kind, a, b in _boxes(data, *place) if kind == b"cbor"), None)
    if cbor is None:
        return []
    cose = cbor2.loads(cbor)
    cose = cose.value if isinstance(cose, cbor2.CBORTag) else cose
    protected = cbor2.loads(cose[0]) if cose[0] else {}
    protected = protected if isinstance(protected, Mapping) else {}
    unprotected = cose[1] if isinstance(cose[1], Mapping) else {}  # cbor2 gives a frozendict
    # early C2PA signers put it unprotected, some under the text label "x5chain"
    chain = (protected.get(X5CHAIN) or unprotected.get(X5CHAIN) or protected.get("x5chain")
             or unprotected.get("x5chain") or [])
    chain = [chain] if isinstance(chain, bytes) else chain
    return [ssl.DER_cert_to_PEM_cert(der) for der in chain if isinstance(der, bytes)]


def describe(pem: str) -> dict[str, Any]:
    """What a reviewer reads of one certificate, beside its PEM."""
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "pem": pem,
    }
