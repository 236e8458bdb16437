"""A local RFC 3161 time-stamping authority for tests: `openssl ts -reply` behind http.server.

Certificates are made with `cryptography.x509` in a temporary folder; the server listens on
127.0.0.1 only, on a random port, and stops when the `LocalTSA` context exits.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Fixed validity window (UTCTime range) so the certificates do not depend on the clock.
NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2049, 12, 31, tzinfo=datetime.UTC)
POLICY = "1.3.6.1.4.1.55555.3161.1"
SHA256_OID_DER = bytes.fromhex("0609608648016503040201")  # OID 2.16.840.1.101.3.4.2.1

# How the TSA answers a POST; tests set `LocalTSA.mode`.
MODES = (
    "ok",  # a proper reply
    "http500",  # HTTP 500, no body
    "garbage",  # HTTP 200 with bytes that are not a TimeStampResp
    "other-data",  # a granted reply for SHA-256(b"not the data"), same nonce
    "other-nonce",  # a granted reply for the same digest with a different nonce
    "refuse",  # a TimeStampResp with status rejection (digest algorithm not accepted)
    "no-certs",  # a granted reply without the TSA certificate embedded (as if certReq were off)
)

CONFIG = """\
[ tsa ]
default_tsa = tsa_section

[ tsa_section ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = {digests}
accuracy = secs:1
clock_precision_digits = 0
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def openssl() -> str | None:
    """The path of the `openssl` command, or None when it is not installed."""
    return shutil.which("openssl")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "custody tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_pki(folder: Path, name: str = "Local Test") -> None:
    """Write ca.pem, tsa.pem, tsa.key and bundle.pem (CA + TSA) into `folder`.

    Names and serials depend only on `name`, so two calls with the same name give two TSAs that
    look alike but hold different keys: an impostor, as far as names go.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{name} Root CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} TSA"))
        .issuer_name(ca_name)
        .public_key(tsa_key.public_key())
        .serial_number(2)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # RFC 3161 §2.3: the TSA certificate MUST carry exactly this, marked critical.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    tsa_pem = tsa.public_bytes(serialization.Encoding.PEM)
    (folder / "ca.pem").write_bytes(ca_pem)
    (folder / "tsa.pem").write_bytes(tsa_pem)
    (folder / "bundle.pem").write_bytes(ca_pem + tsa_pem)
    key = folder / "tsa.key"
    key.write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)


def _imprint(query: bytes) -> int:
    """Offset of the SHA-256 digest inside a DER TimeStampReq (after the OID, NULL, OCTET hdr)."""
    at = query.find(SHA256_OID_DER)
    if at < 0:
        raise ValueError("not a SHA-256 TimeStampReq")
    at += len(SHA256_OID_DER)
    if query[at : at + 2] == b"\x05\x00":  # optional NULL parameters
        at += 2
    if query[at : at + 2] != b"\x04\x20":
        raise ValueError("no 32-byte message imprint")
    return at + 2


class LocalTSA:
    """`with LocalTSA() as tsa:` serves RFC 3161 over HTTP at `tsa.url` until the block ends.

    `tsa.certificates_pem` is the CA + TSA bundle to verify its tokens with; `tsa.folder` holds
    ca.pem, tsa.pem, bundle.pem and the openssl config. Set `tsa.mode` (see MODES) to misbehave.
    `tsa.requests` counts the POSTs answered.
    """

    def __init__(self, name: str = "Local Test") -> None:
        self.name = name
        self.mode = "ok"
        self.requests = 0
        self.url = ""
        self.certificates_pem = b""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- setup -------------------------------------------------------------------------------

    def __enter__(self) -> LocalTSA:
        if openssl() is None:
            raise RuntimeError("openssl is not on PATH")
        self._tmp = tempfile.TemporaryDirectory(prefix="custody-tsa-")
        self.folder = Path(self._tmp.name)
        make_pki(self.folder, self.name)
        (self.folder / "serial").write_text("01\n")
        for conf, digests in (("tsa.cnf", "sha256"), ("refuse.cnf", "sha512")):
            text = CONFIG.format(dir=self.folder, policy=POLICY, digests=digests)
            (self.folder / conf).write_text(text)
        self.certificates_pem = (self.folder / "bundle.pem").read_bytes()

        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                query = self.rfile.read(min(length, 64 * 1024))
                status, body = tsa._answer(query, self.headers.get("Content-Type", ""))
                self.send_response(status)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep test output quiet

        # Loopback only, port chosen by the kernel. One thread: requests are answered in turn,
        # so openssl's serial file is never written by two replies at once.
        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self._server.timeout = 1
        self.url = f"http://127.0.0.1:{self._server.server_port}/tsr"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- answering ---------------------------------------------------------------------------

    def _answer(self, query: bytes, content_type: str) -> tuple[int, bytes]:
        self.requests += 1
        if self.mode == "http500":
            return 500, b""
        if self.mode == "garbage":
            return 200, b"<html>not a timestamp</html>"
        if content_type != "application/timestamp-query":
            return 415, b""
        try:
            if self.mode == "other-data":
                at = _imprint(query)
                query = query[:at] + hashlib.sha256(b"not the data").digest() + query[at + 32 :]
            elif self.mode == "other-nonce":
                at = _imprint(query)
                query = self.query(digest_hex=query[at : at + 32].hex())
            elif self.mode == "no-certs" and query.endswith(b"\x01\x01\xff"):
                query = query[:-1] + b"\x00"  # certReq FALSE: openssl then embeds no certificate
            conf = "refuse.cnf" if self.mode == "refuse" else "tsa.cnf"
            return 200, self.reply(query, conf)
        except (ValueError, subprocess.CalledProcessError):
            return 400, b""

    def query(self, *, digest_hex: str, cert: bool = True) -> bytes:
        """A TimeStampReq made by `openssl ts -query` (random nonce) for a SHA-256 digest."""
        out = self.folder / "made.tsq"
        command = ["openssl", "ts", "-query", "-sha256", "-digest", digest_hex, "-out", str(out)]
        if cert:
            command.insert(3, "-cert")
        subprocess.run(command, check=True, capture_output=True, timeout=30)
        return out.read_bytes()

    def reply(self, query: bytes, conf: str = "tsa.cnf") -> bytes:
        """Run `openssl ts -reply` on a DER TimeStampReq and return the DER TimeStampResp."""
        tsq = self.folder / "request.tsq"
        tsr = self.folder / "reply.tsr"
        tsq.write_bytes(query)
        subprocess.run(
            [
                "openssl", "ts", "-reply",
                "-config", str(self.folder / conf),
                "-queryfile", str(tsq),
                "-out", str(tsr),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        return tsr.read_bytes()
