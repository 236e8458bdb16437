"""RFC 3161 trusted timestamps over bytes (a signed checkpoint): request one, verify one offline.

A token is kept as the DER TimeStampResp the TSA sent, so `openssl ts -verify -in` reads it as is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    SignerInfo,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from custody.errors import EXIT_PROBLEM, CustodyError

SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
MAX_REPLY = 1 << 20  # a TimeStampResp is a few KiB; refuse to read more than this from a TSA


class TimestampError(CustodyError):
    """A timestamp could not be had or read: the TSA failed, refused, or answered for other data."""


class TimestampInvalid(TimestampError):
    """A stored token does not prove what it should: malformed, other data, or untrusted signer."""

    exit_code = EXIT_PROBLEM


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A TSA's signed statement that SHA-256(data) existed no later than `gen_time`."""

    token: bytes  # the DER TimeStampResp (status + TimeStampToken), exactly as the TSA sent it
    gen_time: str  # RFC 3339 UTC, as the TSA states it
    serial: int  # the TSA's serial number of this token
    tsa: str  # RFC 4514 subject of the TSA certificate ("" if the token names none)
    hash_algorithm: str = "sha256"


def build_request(data: bytes, nonce: int | None = None) -> bytes:
    """The DER TimeStampReq for SHA-256(data), with certReq true and `nonce` (random if None)."""
    if not data:
        raise TimestampError("nothing to timestamp: the data is empty")
    if nonce is None:
        nonce = secrets.randbits(63)  # 63 bits, as rfc3161-client does: fits any TSA's int64
    if nonce < 0:
        raise ValueError("nonce must not be negative")
    # rfc3161-client draws its own nonce; build without one and insert ours, so the same nonce
    # always gives the same bytes. Note: `.cert_request()` with no argument turns certReq OFF.
    request = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=False)
        .cert_request(cert_request=True)
        .build()
    )
    return _insert_nonce(request.as_bytes(), nonce)


def request_timestamp(url: str, data: bytes, timeout: float = 30) -> Timestamp:
    """POST a TimeStampReq for `data` to the TSA at `url`; check the reply answers it.

    This proves the reply is for this request (status, nonce, imprint); it does not establish
    trust in the TSA: use `verify_timestamp` with the TSA's certificates for that.
    """
    where = _where(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TimestampError(f"TSA URL must be http or https, not {where}")
    try:
        _ = parts.port
    except ValueError as e:
        raise TimestampError(f"TSA URL has a bad port: {where}") from e
    nonce = secrets.randbits(63)
    query = build_request(data, nonce)
    http = urllib.request.Request(
        url,
        data=query,
        method="POST",
        headers={
            "Content-Type": "application/timestamp-query",  # RFC 3161 §3.4
            "Accept": "application/timestamp-reply",
        },
    )
    try:
        with urllib.request.urlopen(http, timeout=timeout) as answer:
            body = answer.read(MAX_REPLY + 1)
    except urllib.error.HTTPError as e:
        raise TimestampError(f"TSA at {where} answered HTTP {e.code}") from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise TimestampError(f"TSA at {where} did not answer within {timeout:g} s") from e
        raise TimestampError(f"cannot reach TSA at {where}: {_reason(e.reason)}") from e
    except TimeoutError as e:
        raise TimestampError(f"TSA at {where} did not answer within {timeout:g} s") from e
    except OSError as e:
        raise TimestampError(f"cannot reach TSA at {where}: {_reason(e)}") from e
    if len(body) > MAX_REPLY:
        raise TimestampError(f"TSA at {where} sent more than {MAX_REPLY} bytes")

    response = _decode(body, TimestampError, f"TSA at {where} sent a reply that is not RFC 3161")
    if response.status != PKIStatus.GRANTED:
        text = "; ".join(response.status_string) or "no reason given"
        raise TimestampError(f"TSA refused the request: {_status(response.status)} ({text})")
    info = response.tst_info
    if info.nonce != nonce:
        raise TimestampError(f"TSA at {where} answered another request (nonce mismatch)")
    _check_imprint(response, data, TimestampError)
    return _timestamp(body, response, _embedded_signer_subject(response))


def verify_timestamp(token: bytes, data: bytes, tsa_certificates_pem: bytes) -> Timestamp:
    """Check `token` is a TSA's signature over SHA-256(data), by a TSA in the PEM bundle.

    The bundle holds the TSA certificate (extendedKeyUsage timeStamping) and its CA chain up to a
    self-signed root. Raises TimestampInvalid naming the problem; TimestampError for a bad bundle.
    """
    certificates = _load_bundle(tsa_certificates_pem)
    response = _decode(token, TimestampInvalid, "timestamp token is malformed")
    if response.status != PKIStatus.GRANTED:
        raise TimestampInvalid(f"timestamp token is not granted ({_status(response.status)})")
    _check_imprint(response, data, TimestampInvalid)

    tsa_certificates = [c for c in certificates if _is_tsa(c)]
    if not tsa_certificates:
        raise TimestampError("the certificate bundle holds no TSA certificate (EKU timeStamping)")
    signer = _signer(response)
    tsa = next(
        (
            c
            for c in tsa_certificates
            if c.issuer == signer.issuer and c.serial_number == signer.serial_number
        ),
        None,
    )
    if tsa is None:
        raise TimestampInvalid(
            "timestamp is not signed by a TSA in the bundle "
            f"(signer: {signer.issuer.rfc4514_string()}, serial {signer.serial_number})"
        )
    others = [c for c in certificates if c not in tsa_certificates]
    roots = [c for c in others if c.subject == c.issuer]
    intermediates = [c for c in others if c.subject != c.issuer]
    if tsa.subject == tsa.issuer:
        roots.append(tsa)  # a self-signed TSA certificate is its own root
    if not roots:
        raise TimestampError("the certificate bundle holds no self-signed root certificate")

    builder = VerifierBuilder().tsa_certificate(tsa)
    for root in roots:
        builder = builder.add_root_certificate(root)
    for intermediate in intermediates:
        builder = builder.add_intermediate_certificate(intermediate)
    try:
        builder.build().verify_message(response, data)
    except VerificationError as e:
        raise TimestampInvalid(f"timestamp is not signed by a trusted TSA: {_brief(e)}") from e
    return _timestamp(token, response, tsa.subject.rfc4514_string())


def to_json(ts: Timestamp) -> dict[str, Any]:
    """The JSON object stored beside a checkpoint; the serial is a decimal string (often > 2^53)."""
    return {
        "token": base64.b64encode(ts.token).decode("ascii"),
        "gen_time": ts.gen_time,
        "serial": str(ts.serial),
        "tsa": ts.tsa,
        "hash_algorithm": ts.hash_algorithm,
    }


def from_json(d: dict[str, Any]) -> Timestamp:
    """Read `to_json` output back; the token must decode and agree with the fields beside it.

    This does not verify the TSA's signature, nor `tsa` (a label): `verify_timestamp` does.
    """
    try:
        token = base64.b64decode(d["token"], validate=True)
        stored = Timestamp(
            token=token,
            gen_time=str(d["gen_time"]),
            serial=int(d["serial"]),
            tsa=str(d["tsa"]),
            hash_algorithm=str(d["hash_algorithm"]),
        )
    except KeyError as e:
        raise TimestampInvalid(f"stored timestamp lacks the field {e}") from e
    except (TypeError, ValueError, binascii.Error) as e:
        raise TimestampInvalid(f"stored timestamp is malformed: {e}") from e
    response = _decode(token, TimestampInvalid, "stored timestamp token is malformed")
    from_token = _timestamp(token, response, stored.tsa)
    if stored != from_token:
        raise TimestampInvalid("stored timestamp fields do not match its token")
    return stored


# -- DER, just enough to put a nonce into a TimeStampReq ----------------------------------------


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_children(der: bytes) -> tuple[int, list[bytes]]:
    """The tag of one DER TLV and its immediate children, each as whole TLV bytes."""

    def read(buf: bytes, at: int) -> tuple[int, int]:  # (start of contents, end of TLV)
        first = buf[at + 1]
        if first < 0x80:
            return at + 2, at + 2 + first
        size = first & 0x7F
        start = at + 2 + size
        return start, start + int.from_bytes(buf[at + 2 : start], "big")

    start, end = read(der, 0)
    children, at = [], start
    while at < end:
        _, child_end = read(der, at)
        children.append(der[at:child_end])
        at = child_end
    return der[0], children


def _insert_nonce(request: bytes, nonce: int) -> bytes:
    # TimeStampReq ::= SEQUENCE { version, messageImprint, reqPolicy OPTIONAL (OID),
    #                             nonce INTEGER OPTIONAL, certReq BOOLEAN, extensions [0] }
    tag, children = _der_children(request)
    at = len(children)
    for i, child in enumerate(children[2:], start=2):
        if child[0] in (0x01, 0xA0):  # certReq or extensions: the nonce goes before them
            at = i
            break
    value = nonce.to_bytes(nonce.bit_length() // 8 + 1, "big")  # minimal, non-negative
    children.insert(at, b"\x02" + _der_length(len(value)) + value)
    body = b"".join(children)
    return bytes([tag]) + _der_length(len(body)) + body


# -- reading responses -------------------------------------------------------------------------


def _decode(der: bytes, error: type[TimestampError], message: str) -> TimeStampResponse:
    """Parse a DER TimeStampResp and touch every field used later, so errors surface here."""
    try:
        response = decode_timestamp_response(der)
        if response.status == PKIStatus.GRANTED:
            info = response.tst_info
            _ = (info.gen_time, info.serial_number, info.nonce, info.message_imprint.message)
            for signer in response.signed_data.signer_infos:
                _ = (signer.issuer.rfc4514_string(), signer.serial_number)
            for certificate in response.signed_data.certificates:
                parsed = x509.load_der_x509_certificate(certificate)
                _ = (parsed.issuer.rfc4514_string(), parsed.subject.rfc4514_string())
    # cryptography parses names lazily and raises KeyError for an unknown string tag
    except (ValueError, KeyError, x509.InvalidVersion) as e:
        raise error(f"{message}: {_first_line(str(e))}") from e
    return response


def _check_imprint(response: TimeStampResponse, data: bytes, error: type[TimestampError]) -> None:
    imprint = response.tst_info.message_imprint
    if imprint.hash_algorithm != SHA256_OID:
        name = _hash_name(imprint.hash_algorithm)
        raise error(f"timestamp uses hash algorithm {name}, not SHA-256")
    if imprint.message != hashlib.sha256(data).digest():
        raise error("timestamp is for different data")


def _signer(response: TimeStampResponse) -> SignerInfo:
    infos = list(response.signed_data.signer_infos)
    if len(infos) != 1:
        raise TimestampInvalid(f"timestamp has {len(infos)} signers, expected exactly one")
    return infos[0]


def _embedded_signer_subject(response: TimeStampResponse) -> str:
    """Subject of the embedded certificate that signed, else the TSTInfo TSA name, else ''."""
    infos = list(response.signed_data.signer_infos)
    if len(infos) != 1:
        return ""
    signer = infos[0]
    for der in response.signed_data.certificates:
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        if (certificate.issuer, certificate.serial_number) == (signer.issuer, signer.serial_number):
            return certificate.subject.rfc4514_string()
    try:
        name = response.tst_info.name
    except ValueError:
        return ""
    return name.value.rfc4514_string() if isinstance(name, x509.DirectoryName) else ""


def _timestamp(token: bytes, response: TimeStampResponse, tsa: str) -> Timestamp:
    info = response.tst_info
    return Timestamp(
        token=token,
        gen_time=_rfc3339(info.gen_time),
        serial=info.serial_number,
        tsa=tsa,
        hash_algorithm=_hash_name(info.message_imprint.hash_algorithm),
    )


def _hash_name(oid: x509.ObjectIdentifier) -> str:
    return "sha256" if oid == SHA256_OID else oid.dotted_string


def _load_bundle(pem: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise TimestampError(
            f"cannot read the TSA certificate bundle: {_first_line(str(e))}"
        ) from e
    unique: list[x509.Certificate] = []
    for certificate in certificates:
        if certificate not in unique:
            unique.append(certificate)
    return unique


def _is_tsa(certificate: x509.Certificate) -> bool:
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in eku


def _rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _status(status: int) -> str:
    try:
        return PKIStatus(status).name.lower().replace("_", " ")
    except ValueError:
        return f"status {status}"


def _where(url: str) -> str:
    """The URL without user info or query, which may carry credentials, for error messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        host += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return _first_line(str(reason))


def _brief(error: Exception) -> str:
    """rfc3161-client's message without OpenSSL's error stack (kept in the exception chain)."""
    text = str(error).split(": ErrorStack", 1)[0]
    return _first_line(text.removeprefix("Error while verifying certificates: "))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
