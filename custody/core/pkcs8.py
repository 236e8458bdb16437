"""The DER of an encrypted PKCS#8 key file: PBES2 (RFC 8018) with scrypt (RFC 7914 §7), AES-256-CBC.

Pure encoding and decoding of the container only (no cryptography here: signing.py derives the key
and encrypts). `cryptography` reads these files but cannot write them with a chosen KDF, so the
few DER structures are written here; `openssl pkcs8`/`openssl pkey` read them (docs/FORMAT.md §3).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

PBES2 = "1.2.840.113549.1.5.13"  # RFC 8018 A.4
PBKDF2 = "1.2.840.113549.1.5.12"  # RFC 8018 A.2
SCRYPT = "1.3.6.1.4.1.11591.4.11"  # RFC 7914 §7
AES256_CBC = "2.16.840.1.101.3.4.1.42"  # NIST aes256-CBC-PAD
PEM_LABEL = "ENCRYPTED PRIVATE KEY"

_SEQUENCE, _INTEGER, _OCTETS, _OID = 0x30, 0x02, 0x04, 0x06


class MalformedDer(ValueError):
    """The bytes are not the DER structure expected here."""


@dataclass(frozen=True, slots=True)
class Protection:
    """How a key file is encrypted: the KDF and its cost (iterations for PBKDF2; n, r, p for
    scrypt), as read from the file itself."""

    kdf: str  # "scrypt", "pbkdf2" or the OID of another KDF
    iterations: int = 0
    n: int = 0
    r: int = 0
    p: int = 0

    def describe(self) -> str:
        if self.kdf == "scrypt":
            return f"scrypt (N={self.n}, r={self.r}, p={self.p})"
        if self.kdf == "pbkdf2":
            return f"PBKDF2 with {self.iterations:,} iterations"
        return f"an unknown key derivation ({self.kdf})"


# Writing ---------------------------------------------------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("only non-negative integers are written")
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return _tlv(_OID, bytes(out))


def scrypt_pbes2_der(
    *, salt: bytes, n: int, r: int, p: int, key_length: int, iv: bytes, ciphertext: bytes
) -> bytes:
    """EncryptedPrivateKeyInfo, PBES2-params {scrypt(salt, N, r, p, keyLength), aes256-CBC(iv)}."""
    scrypt_params = _tlv(
        _SEQUENCE,
        _tlv(_OCTETS, salt) + _integer(n) + _integer(r) + _integer(p) + _integer(key_length),
    )
    kdf = _tlv(_SEQUENCE, _oid(SCRYPT) + scrypt_params)
    cipher = _tlv(_SEQUENCE, _oid(AES256_CBC) + _tlv(_OCTETS, iv))
    algorithm = _tlv(_SEQUENCE, _oid(PBES2) + _tlv(_SEQUENCE, kdf + cipher))
    return _tlv(_SEQUENCE, algorithm + _tlv(_OCTETS, ciphertext))


def pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {PEM_LABEL}-----".encode(), *lines, f"-----END {PEM_LABEL}-----".encode()]
    ) + b"\n"


# Reading (only to say how a file is protected; decryption is cryptography's) ------------------


def _read(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, content, offset after) of the DER element at `at`."""
    if at + 2 > len(data):
        raise MalformedDer("truncated")
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or at + count > len(data):
            raise MalformedDer("bad length")
        size = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + size > len(data):
        raise MalformedDer("truncated")
    return tag, data[at : at + size], at + size


def _children(content: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(content):
        tag, inner, at = _read(content, at)
        out.append((tag, inner))
    return out


def _decode_oid(content: bytes) -> str:
    if not content:
        raise MalformedDer("empty OID")
    arcs = [content[0] // 40, content[0] % 40]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(map(str, arcs))


def _expect(item: tuple[int, bytes], tag: int) -> bytes:
    if item[0] != tag:
        raise MalformedDer(f"expected tag {tag:#x}, found {item[0]:#x}")
    return item[1]


def protection(pem_bytes: bytes) -> Protection:
    """The KDF and its cost named in an `ENCRYPTED PRIVATE KEY` PEM; MalformedDer if unreadable."""
    text = pem_bytes.decode("ascii", "replace")
    begin, end = f"-----BEGIN {PEM_LABEL}-----", f"-----END {PEM_LABEL}-----"
    if begin not in text or end not in text:
        raise MalformedDer("not an encrypted PKCS#8 PEM")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except ValueError:
        raise MalformedDer("bad base64") from None
    try:
        outer = _children(_expect(_read(der, 0)[:2], _SEQUENCE))
        algorithm = _children(_expect(outer[0], _SEQUENCE))
        if _decode_oid(_expect(algorithm[0], _OID)) != PBES2:
            return Protection(kdf="pbes1")
        kdf, _cipher = _children(_expect(algorithm[1], _SEQUENCE))
        kdf_id, kdf_params = _children(_expect(kdf, _SEQUENCE))
        name = _decode_oid(_expect(kdf_id, _OID))
        params = _children(_expect(kdf_params, _SEQUENCE))
        numbers = [int.from_bytes(v, "big") for tag, v in params[1:] if tag == _INTEGER]
    except (IndexError, ValueError) as error:
        raise MalformedDer(str(error)) from None
    if name == SCRYPT and len(numbers) >= 3:
        return Protection(kdf="scrypt", n=numbers[0], r=numbers[1], p=numbers[2])
    if name == PBKDF2 and numbers:
        return Protection(kdf="pbkdf2", iterations=numbers[0])
    return Protection(kdf=name)
