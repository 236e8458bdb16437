"""The pure core: canonical JSON (RFC 8785), Ed25519 (RFC 8032), entries, key ids, the registry."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custody.core import canonical
from custody.core import entry as entries
from custody.core.custodians import Registry
from custody.core.signing import SigningKey, key_id, verify_signature
from custody.errors import WrongPassphrase
from custody.ops.keyfiles import load_key, read_public_key, write_new_key

from .conftest import PASSPHRASE

# RFC 8785 §3.2.2 and Appendix B: number serialisation and key ordering.
RFC8785_NUMBERS = [
    (0.0, b"0"), (-0.0, b"0"), (1e21, b"1e+21"), (1e-7, b"1e-7"), (333333333.3333333, b"333333333.3333333"),
    (5e-324, b"5e-324"), (9007199254740991, b"9007199254740991"), (1e23, b"1e+23"), (295147905179352830000.0, b"295147905179352830000"),
]


@pytest.mark.parametrize(("value", "expected"), RFC8785_NUMBERS)
def test_rfc8785_numbers(value, expected):
    assert canonical.encode(value) == expected


def test_rfc8785_example_object():
    # RFC 8785 §3.2.3 sorts keys by UTF-16 code units: "\u20ac" < "\ud83d\ude00" (as surrogates)
    value = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "1": "One", "\U0001f600": "Emoji",
             "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis", "\ufb33": "Hebrew"}
    out = canonical.encode(value).decode()
    keys = [k for k in value]
    order = sorted(keys, key=lambda k: k.encode("utf-16-be"))
    assert out.index('"\\r"') < out.index('"1"')
    positions = [out.index(f'"{k}"') if k != "\r" else out.index('"\\r"') for k in order]
    assert positions == sorted(positions)


def test_canonical_decode_rejects_non_canonical_bytes():
    assert canonical.decode(b'{"a":1,"b":[true,null]}') == {"a": 1, "b": [True, None]}
    for bad in [b'{"b":1,"a":2}', b'{"a": 1}', b'{"a":1.0}', b'{"a":1,"a":1}', b"\xff"]:
        with pytest.raises(canonical.NotCanonical):
            canonical.decode(bad)


def test_canonical_decode_refuses_deep_nesting_by_name_not_recursion_error():
    """200,000 nested brackets made Python's parser raise RecursionError; 129 levels parse but
    would recurse in the encoders. Both are refused with a named NotCanonical (a ValueError)."""
    assert canonical.decode(b"[" * 128 + b"]" * 128) is not None
    for depth in (129, 200_000):
        with pytest.raises(canonical.NotCanonical, match="nested more than 128 levels deep"):
            canonical.decode(b"[" * depth + b"]" * depth)
        with pytest.raises(ValueError, match="nested more than 128 levels deep"):
            canonical.load_json('{"a":' * depth + "1" + "}" * depth)


def test_rfc8032_test_vector_1():
    # RFC 8032 §7.1 TEST 1: empty message
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    key = SigningKey.from_seed(seed, "rfc8032")
    assert key.public.raw == public
    assert key.sign(b"") == signature
    assert verify_signature(public, b"", signature)
    assert not verify_signature(public, b"x", signature)


def test_key_id_is_stable_and_domain_separated():
    public = bytes(range(32))
    expected = hashlib.sha256(b"custody:key-id:v1\x00" + public).hexdigest()[:32]
    assert key_id(public) == expected
    assert key_id(public) != hashlib.sha256(public).hexdigest()[:32]


def _entry(key: SigningKey, seq: int = 1, prev: str | None = "00" * 32) -> entries.Entry:
    return entries.Entry(log="custody.archive/test", seq=seq, time="2026-01-02T03:04:05.000000Z",
                         actor=key.key_id, action="ingest", item="ab" * 32,
                         details={"note": "مستشفى M10", "size": 3}, prev=prev)


def test_entry_sign_parse_and_leaf_hash():
    key = SigningKey.generate("k")
    e = _entry(key)
    signed = entries.sign(e, key)
    assert signed.entry() == e
    assert signed.leaf_hash == hashlib.sha256(b"\x00" + signed.body).digest()
    assert entries.signature_valid(signed, key.public.raw)
    assert not entries.signature_valid(signed, SigningKey.generate("other").public.raw)
    # the signature covers the domain tag: a bare signature of the body does not verify
    assert not verify_signature(key.public.raw, signed.body, signed.signature)


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_any_bit_flip_in_a_signed_entry_fails(position, bit):
    key = SigningKey.from_seed(b"\x01" * 32, "k")
    signed = entries.sign(_entry(key), key)
    body = bytearray(signed.body)
    body[position % len(body)] ^= 1 << bit
    assert not entries.signature_valid(entries.SignedEntry(bytes(body), signed.signature),
                                       key.public.raw)


def test_parse_rejects_malformed_entries():
    key = SigningKey.generate("k")
    good = _entry(key).to_json()
    for mutate in [lambda d: d.pop("prev"), lambda d: d.update(extra=1), lambda d: d.update(v=2),
                   lambda d: d.update(seq=-1), lambda d: d.update(seq=True),
                   lambda d: d.update(details=[])]:
        bad = dict(good)
        mutate(bad)
        with pytest.raises(entries.MalformedEntry):
            entries.parse(canonical.encode(bad))


def test_key_file_is_0600_encrypted_and_wrong_passphrase_is_refused(tmp_path):
    path = tmp_path / "k.key"
    key = write_new_key(path, "Ruba", PASSPHRASE)
    assert path.stat().st_mode & 0o777 == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert load_key(path, PASSPHRASE).key_id == key.key_id
    with pytest.raises(WrongPassphrase):
        load_key(path, "wrong")
    pub = read_public_key(str(path) + ".pub")
    assert pub.raw == key.public.raw and pub.name == "Ruba"
    assert "PRIVATE" not in repr(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_key_file_is_standard_pkcs8_openssl_reads(tmp_path):
    path = tmp_path / "k.key"
    key = write_new_key(path, "Ruba", PASSPHRASE)
    out = subprocess.run(["openssl", "pkey", "-in", str(path), "-passin", f"pass:{PASSPHRASE}",
                          "-pubout", "-outform", "DER"], capture_output=True, check=True).stdout
    assert out[-32:] == key.public.raw  # SubjectPublicKeyInfo ends with the raw key


def test_registry_from_entries():
    archive = SigningKey.generate("archive")
    admin = SigningKey.generate("admin")
    field = SigningKey.generate("field")

    def spec(k):
        return {"key_id": k.key_id, "public_key": base64.b64encode(k.public.raw).decode(),
                "name": k.public.name}

    reg = Registry()
    reg.apply(entries.Entry("l", 0, "t", archive.key_id, "init", None,
                            {"archive": spec(archive), "admin": spec(admin)}, None))
    reg.apply(entries.Entry("l", 1, "t", admin.key_id, "enroll", None,
                            {"custodian": spec(field), "role": "field"}, "x"))
    assert reg.signer(field.key_id, 1) is None  # not before its enrolment
    assert reg.signer(field.key_id, 2).role == "field"
    reg.apply(entries.Entry("l", 5, "t", admin.key_id, "revoke", None,
                            {"key_id": field.key_id}, "x"))
    assert reg.signer(field.key_id, 4) is not None  # past entries stay valid
    assert reg.signer(field.key_id, 6) is None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)


@given(_json_values)
def test_fast_canonical_path_equals_the_rfc8785_reference(value):
    try:
        expected = canonical.reference_encode(value)
    except Exception:  # noqa: BLE001 - e.g. lone surrogates: both paths must refuse
        with pytest.raises((ValueError, UnicodeEncodeError)):
            canonical.encode(value)
        return
    assert canonical.encode(value) == expected
    assert canonical.encode(canonical.decode(expected)) == expected


def test_fast_path_key_order_above_the_surrogates():
    # U+1F600 (UTF-16 D83D DE00) sorts before U+E000 in UTF-16 order (RFC 8785), after it by
    # code point: the fast path must not be taken
    value = {"\ue000": 1, "\U0001f600": 2}
    assert canonical.encode(value) == canonical.reference_encode(value)
    assert canonical.encode(value).index("\U0001f600".encode()) < canonical.encode(value).index(
        "\ue000".encode())
