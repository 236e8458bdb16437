"""RFC 3161 timestamps against a local `openssl ts` TSA (tests/tsa.py): request, verify, tamper."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from custody.errors import EXIT_ERROR, EXIT_PROBLEM
from custody.ops.timestamp import (
    Timestamp,
    TimestampError,
    TimestampInvalid,
    build_request,
    from_json,
    request_timestamp,
    to_json,
    verify_timestamp,
)
from tests.tsa import LocalTSA, openssl

pytestmark = pytest.mark.skipif(openssl() is None, reason="openssl is not on PATH")

CHECKPOINT = b"custody.example/archive\n42\nq8JZ0z1vQ0h0k2Yk3Kd3rS0m9YQm5w8pJc8mJxk2dS8=\n"


@pytest.fixture(scope="module")
def tsa_a():
    with LocalTSA("Archive Test") as tsa:
        yield tsa


@pytest.fixture
def tsa(tsa_a):
    tsa_a.mode = "ok"
    yield tsa_a
    tsa_a.mode = "ok"


@pytest.fixture(scope="module")
def other_tsa():
    """An independent TSA with its own names and keys."""
    with LocalTSA("Other Test") as tsa:
        yield tsa


@pytest.fixture(scope="module")
def impostor_tsa():
    """A TSA whose CA and TSA certificates carry the same names and serials as tsa_a's."""
    with LocalTSA("Archive Test") as tsa:
        yield tsa


@pytest.fixture(scope="module")
def stamped(tsa_a):
    tsa_a.mode = "ok"
    return request_timestamp(tsa_a.url, CHECKPOINT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message and len(message) < 200, message
    return message


# -- happy path --------------------------------------------------------------------------------


def test_happy_path(tsa):
    before = datetime.now(UTC)
    ts = request_timestamp(tsa.url, CHECKPOINT)
    after = datetime.now(UTC)

    assert isinstance(ts, Timestamp)
    assert ts.hash_algorithm == "sha256"
    assert ts.serial > 0
    assert ts.tsa == "CN=Archive Test TSA,O=custody tests"
    assert ts.gen_time.endswith("Z")
    gen_time = datetime.fromisoformat(ts.gen_time)
    assert before - timedelta(seconds=5) <= gen_time <= after + timedelta(seconds=5)

    verified = verify_timestamp(ts.token, CHECKPOINT, tsa.certificates_pem)
    assert verified == ts


def test_serials_grow(tsa):
    first = request_timestamp(tsa.url, CHECKPOINT)
    second = request_timestamp(tsa.url, CHECKPOINT)
    assert second.serial > first.serial
    assert first.token != second.token


def test_token_is_the_timestamp_response_openssl_verifies(stamped, tsa, tmp_path):
    """The exact command docs/TIMESTAMPS.md gives, on the stored token."""
    (tmp_path / "checkpoint.txt").write_bytes(CHECKPOINT)
    (tmp_path / "token.tsr").write_bytes(stamped.token)
    (tmp_path / "bundle.pem").write_bytes(tsa.certificates_pem)
    command = "openssl ts -verify -data checkpoint.txt -in token.tsr -CAfile bundle.pem".split()

    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert "Verification: OK" in ok.stdout

    (tmp_path / "checkpoint.txt").write_bytes(CHECKPOINT + b"x")
    bad = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1
    assert "message imprint mismatch" in bad.stderr


# -- what a token must not prove ---------------------------------------------------------------


def test_other_data_does_not_verify(stamped, tsa):
    with pytest.raises(TimestampInvalid) as e:
        verify_timestamp(stamped.token, CHECKPOINT + b"\n", tsa.certificates_pem)
    assert one_line(e.value) == "timestamp is for different data"
    assert e.value.exit_code == EXIT_PROBLEM


def test_other_tsa_certificates_do_not_verify(stamped, other_tsa):
    with pytest.raises(TimestampInvalid) as e:
        verify_timestamp(stamped.token, CHECKPOINT, other_tsa.certificates_pem)
    assert one_line(e.value).startswith("timestamp is not signed by a TSA in the bundle")


def test_impostor_with_the_same_names_does_not_verify(stamped, impostor_tsa):
    """The pitfall: rfc3161-client < 1.0.6 let one TSA's token pass as another's."""
    with pytest.raises(TimestampInvalid) as e:
        verify_timestamp(stamped.token, CHECKPOINT, impostor_tsa.certificates_pem)
    assert one_line(e.value).startswith("timestamp is not signed by a trusted TSA")


def test_impostor_token_does_not_verify_against_the_real_tsa(tsa, impostor_tsa):
    impostor_tsa.mode = "ok"
    forged = request_timestamp(impostor_tsa.url, CHECKPOINT)
    assert forged.tsa == "CN=Archive Test TSA,O=custody tests"  # looks the same by name
    with pytest.raises(TimestampInvalid, match="not signed by a trusted TSA"):
        verify_timestamp(forged.token, CHECKPOINT, tsa.certificates_pem)


def test_token_without_embedded_certificate_is_pinned_to_the_bundle(tsa, impostor_tsa):
    tsa.mode = "no-certs"
    bare = request_timestamp(tsa.url, CHECKPOINT)
    assert bare.tsa == "CN=Archive Test TSA,O=custody tests"  # from the TSTInfo tsa name
    assert verify_timestamp(bare.token, CHECKPOINT, tsa.certificates_pem).serial == bare.serial
    with pytest.raises(TimestampInvalid, match="not signed by a trusted TSA"):
        verify_timestamp(bare.token, CHECKPOINT, impostor_tsa.certificates_pem)


def test_rejection_response_is_not_a_token(tsa):
    refused = tsa.reply(build_request(CHECKPOINT, nonce=7), "refuse.cnf")
    with pytest.raises(TimestampInvalid) as e:
        verify_timestamp(refused, CHECKPOINT, tsa.certificates_pem)
    assert one_line(e.value) == "timestamp token is not granted (rejection)"


# -- damaged tokens: each named by the damage it carries ---------------------------------------


def _flip(token: bytes, at: int) -> bytes:
    damaged = bytearray(token)
    damaged[at] ^= 0x01
    return bytes(damaged)


def _at(token: bytes, needle: bytes, extra: int = 0, *, last: bool = False) -> int:
    at = token.rfind(needle) if last else token.find(needle)
    assert at >= 0
    return at + extra


DAMAGE = {
    "gen-time-bitflip": lambda t, ts: _flip(t, _at(t, b"\x18\x0f", 2 + 11)),  # a seconds digit
    "imprint-bitflip": lambda t, ts: _flip(t, _at(t, hashlib.sha256(CHECKPOINT).digest(), 5)),
    "signature-bitflip@-1": lambda t, ts: _flip(t, len(t) - 1),
    "signature-bitflip@-40": lambda t, ts: _flip(t, len(t) - 40),
    # the TSA name is in TSTInfo first, then in the embedded certificate's subject
    "embedded-cert-subject-bitflip": lambda t, ts: _flip(
        t, _at(t, b"Archive Test TSA", 3, last=True)
    ),
    "status-bitflip": lambda t, ts: _flip(t, 8),
    "truncated": lambda t, ts: t[: len(t) // 2],
    "trailing-garbage": lambda t, ts: t + b"\x00",
    "empty": lambda t, ts: b"",
    "not-der": lambda t, ts: b"-----BEGIN TIMESTAMP-----",
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_token_fails(stamped, tsa, damage):
    damaged = DAMAGE[damage](stamped.token, stamped)
    assert damaged != stamped.token
    with pytest.raises(TimestampInvalid) as e:
        verify_timestamp(damaged, CHECKPOINT, tsa.certificates_pem)
    one_line(e.value)
    assert e.value.exit_code == EXIT_PROBLEM


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_no_single_bit_change_alters_what_a_token_says(stamped, tsa):
    """Every one-bit change either fails or leaves the signed statement as it was.

    A few CMS fields outside the signature (SignedData and SignerInfo version numbers, the
    SignerInfo signatureAlgorithm OID, which OpenSSL does not consult for an EC key) can change
    and still verify: the token's bytes are malleable, what it says is not. See TIMESTAMPS.md.
    """
    token = stamped.token
    malleable = []
    for at in range(len(token)):
        for bit in (0x01, 0x80):
            damaged = bytearray(token)
            damaged[at] ^= bit
            try:
                again = verify_timestamp(bytes(damaged), CHECKPOINT, tsa.certificates_pem)
            except TimestampInvalid:
                continue
            assert (again.gen_time, again.serial, again.tsa) == (
                stamped.gen_time,
                stamped.serial,
                stamped.tsa,
            )
            malleable.append(at)
    assert len(set(malleable)) <= 12, malleable


# -- the TSA misbehaving or absent -------------------------------------------------------------


def test_http_500(tsa):
    tsa.mode = "http500"
    with pytest.raises(TimestampError) as e:
        request_timestamp(tsa.url, CHECKPOINT)
    assert one_line(e.value) == f"TSA at {tsa.url} answered HTTP 500"
    assert e.value.exit_code == EXIT_ERROR


def test_nothing_listening():
    url = f"http://127.0.0.1:{free_port()}/tsr"
    with pytest.raises(TimestampError) as e:
        request_timestamp(url, CHECKPOINT, timeout=5)
    assert one_line(e.value).startswith(f"cannot reach TSA at {url}: ")


def test_no_answer_within_timeout():
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(TimestampError) as e:
            request_timestamp(url, CHECKPOINT, timeout=0.5)
    assert one_line(e.value) == f"TSA at {url} did not answer within 0.5 s"


def test_tsa_refuses(tsa):
    tsa.mode = "refuse"
    with pytest.raises(TimestampError) as e:
        request_timestamp(tsa.url, CHECKPOINT)
    assert one_line(e.value) == (
        "TSA refused the request: rejection (Message digest algorithm is not supported.)"
    )


def test_reply_for_other_data(tsa):
    tsa.mode = "other-data"
    with pytest.raises(TimestampError) as e:
        request_timestamp(tsa.url, CHECKPOINT)
    assert one_line(e.value) == "timestamp is for different data"


def test_reply_to_another_request(tsa):
    tsa.mode = "other-nonce"
    with pytest.raises(TimestampError) as e:
        request_timestamp(tsa.url, CHECKPOINT)
    assert one_line(e.value) == f"TSA at {tsa.url} answered another request (nonce mismatch)"


def test_reply_that_is_not_rfc3161(tsa):
    tsa.mode = "garbage"
    with pytest.raises(TimestampError) as e:
        request_timestamp(tsa.url, CHECKPOINT)
    assert one_line(e.value).startswith(f"TSA at {tsa.url} sent a reply that is not RFC 3161")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/tsr", "127.0.0.1:80"])
def test_only_http_urls(url):
    with pytest.raises(TimestampError, match="TSA URL must be http or https"):
        request_timestamp(url, CHECKPOINT)


def test_bad_port():
    with pytest.raises(TimestampError) as e:
        request_timestamp("http://127.0.0.1:tsa/", CHECKPOINT)
    assert one_line(e.value) == "TSA URL has a bad port: http://127.0.0.1/"


def test_url_credentials_stay_out_of_messages():
    url = f"http://127.0.0.1:{free_port()}/tsr?apikey=s3cret"
    with pytest.raises(TimestampError) as e:
        request_timestamp(url, CHECKPOINT, timeout=5)
    assert "s3cret" not in str(e.value)


def test_local_tsa_stops_on_exit():
    with LocalTSA() as tsa:
        url = tsa.url
        request_timestamp(url, CHECKPOINT)
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(TimestampError, match="cannot reach TSA"):
        request_timestamp(url, CHECKPOINT, timeout=5)


# -- the request -------------------------------------------------------------------------------


def test_build_request_is_deterministic_for_a_nonce():
    assert build_request(CHECKPOINT, nonce=42) == build_request(CHECKPOINT, nonce=42)
    assert build_request(CHECKPOINT, nonce=42) != build_request(CHECKPOINT, nonce=43)
    assert build_request(CHECKPOINT) != build_request(CHECKPOINT)  # random nonces


@pytest.mark.parametrize("nonce", [0, 1, 127, 128, 255, 2**63 - 1, 2**63, 2**160 + 3])
def test_build_request_as_openssl_reads_it(nonce, tmp_path):
    query = tmp_path / "request.tsq"
    query.write_bytes(build_request(CHECKPOINT, nonce=nonce))
    shown = subprocess.run(
        ["openssl", "ts", "-query", "-in", str(query), "-text"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "Hash Algorithm: sha256" in shown
    assert "Certificate required: yes" in shown
    digest = hashlib.sha256(CHECKPOINT).hexdigest()
    assert digest[:2] in shown.split("Message data:")[1]
    nonce_line = next(line for line in shown.splitlines() if line.startswith("Nonce:"))
    assert int(nonce_line.split()[1], 16) == nonce


def test_build_request_known_bytes():
    """happy-path vector: SHA-256 imprint, nonce 0x0102, certReq TRUE, in that order."""
    expected = (
        "303d"  # SEQUENCE
        "020101"  # version 1
        "3031300d060960864801650304020105000420" + hashlib.sha256(b"hello").hexdigest()
        + "02020102"  # nonce
        "0101ff"  # certReq TRUE
    )  # fmt: skip
    assert build_request(b"hello", nonce=0x0102).hex() == expected


def test_build_request_refuses_empty_data():
    with pytest.raises(TimestampError, match="the data is empty"):
        build_request(b"")


def test_build_request_refuses_negative_nonce():
    with pytest.raises(ValueError):
        build_request(CHECKPOINT, nonce=-1)


# -- the certificate bundle --------------------------------------------------------------------


def test_unreadable_bundle(stamped):
    with pytest.raises(TimestampError) as e:
        verify_timestamp(stamped.token, CHECKPOINT, b"not a certificate")
    assert one_line(e.value).startswith("cannot read the TSA certificate bundle")
    assert not isinstance(e.value, TimestampInvalid)


def test_bundle_without_tsa_certificate(stamped, tsa):
    ca_only = (tsa.folder / "ca.pem").read_bytes()
    with pytest.raises(TimestampError, match="holds no TSA certificate"):
        verify_timestamp(stamped.token, CHECKPOINT, ca_only)


def test_bundle_without_root(stamped, tsa):
    tsa_only = (tsa.folder / "tsa.pem").read_bytes()
    with pytest.raises(TimestampError, match="no self-signed root"):
        verify_timestamp(stamped.token, CHECKPOINT, tsa_only)


def test_bundle_in_any_order_with_duplicates(stamped, tsa):
    ca = (tsa.folder / "ca.pem").read_bytes()
    tsa_pem = (tsa.folder / "tsa.pem").read_bytes()
    assert verify_timestamp(stamped.token, CHECKPOINT, tsa_pem + ca + ca) == stamped


def test_bundle_with_two_tsas_picks_the_signer(stamped, tsa, other_tsa):
    both = other_tsa.certificates_pem + tsa.certificates_pem
    assert verify_timestamp(stamped.token, CHECKPOINT, both) == stamped


# -- storing next to a checkpoint --------------------------------------------------------------


def test_json_round_trip(stamped):
    stored = json.loads(json.dumps(to_json(stamped)))
    assert stored["serial"] == str(stamped.serial)
    assert base64.b64decode(stored["token"]) == stamped.token
    assert set(stored) == {"token", "gen_time", "serial", "tsa", "hash_algorithm"}
    assert from_json(stored) == stamped


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gen_time": "2000-01-01T00:00:00Z"}, "do not match its token"),
        ({"serial": "999999"}, "do not match its token"),
        ({"hash_algorithm": "sha512"}, "do not match its token"),
        ({"token": "!!!"}, "stored timestamp is malformed"),
        ({"token": base64.b64encode(b"junk").decode()}, "stored timestamp token is malformed"),
        ({"serial": "twelve"}, "stored timestamp is malformed"),
    ],
)
def test_json_that_disagrees_with_its_token(stamped, change, message):
    with pytest.raises(TimestampInvalid, match=message):
        from_json({**to_json(stamped), **change})


def test_json_missing_field(stamped):
    stored = to_json(stamped)
    del stored["token"]
    with pytest.raises(TimestampInvalid, match="lacks the field 'token'"):
        from_json(stored)


def test_local_tsa_files(tsa):
    """tests/tsa.py writes what the docs name; the config never sets certs= (the pitfall)."""
    folder = Path(tsa.folder)
    for name in ("ca.pem", "tsa.pem", "bundle.pem", "tsa.cnf"):
        assert (folder / name).exists()
    config = (folder / "tsa.cnf").read_text()
    assert not re.search(r"^\s*certs\s*=", config, re.MULTILINE)
    assert "ess_cert_id_chain = no" in config
