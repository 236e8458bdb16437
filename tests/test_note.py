"""Signed notes, checkpoints and cosignatures (custody.core.note) against published vectors.

Where each vector comes from is written next to it and in tests/vectors/README.md.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.core import note
from custody.core.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MAX_SIGNATURES,
    AmbiguousKey,
    BadVerifierKey,
    Checkpoint,
    InvalidSignature,
    MalformedCheckpoint,
    MalformedNote,
    NoteError,
    SignatureLine,
    UnverifiedNote,
    VerifierKey,
    cosign,
    cosignature_line,
    cosignature_timestamp,
    cosigner_key,
    format_checkpoint,
    key_id,
    make_verifier,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
    verifier_key,
)
from custody.core.signing import SigningKey, verify_signature
from custody.errors import EXIT_ERROR, EXIT_PROBLEM, CustodyError

# ---------------------------------------------------------------------------------------------
# (a) c2sp.org/signed-note, "Verifier keys" example: key name example.com/foo.
# https://github.com/C2SP/C2SP/blob/d4c16da5e7687a016619074e78dad84b2c7238cc/signed-note.md
# (bytes as published; the Ed25519 signature below verifies under the key, which is the check
# that they were copied exactly.)

SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_TEXT = "This is an example message.\n"
SPEC_NOTE = (
    SPEC_TEXT + "\n"
    "— example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_c2sp_example_verifies() -> None:
    key = parse_verifier_key(SPEC_VKEY)
    assert key.name == "example.com/foo"
    assert key.key_id == bytes.fromhex("530d903a")
    assert key.algorithm == ALG_ED25519
    assert str(key) == SPEC_VKEY
    assert verifier_key(key.name, key.public_key) == SPEC_VKEY
    opened = open_note(SPEC_NOTE, [key])
    assert opened.text == SPEC_TEXT
    assert opened.verified_names == ["example.com/foo"]
    assert opened.unverified == ()
    assert open_note(SPEC_NOTE.encode(), [SPEC_VKEY]).text == SPEC_TEXT  # bytes, key strings


def test_c2sp_example_altered_fails() -> None:
    with pytest.raises(InvalidSignature, match=r"example.com/foo\+530d903a"):
        open_note(SPEC_NOTE.replace("example message", "example massage"), [SPEC_VKEY])


# ---------------------------------------------------------------------------------------------
# (b) golang.org/x/mod sumdb/note note_test.go (TestSign, TestOpen, TestNewVerifier).
# https://github.com/golang/mod/blob/02c991387e35f9e4c0a9b7ce137717055f8d716d/sumdb/note/note_test.go

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_KEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb"
    "6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WW"
    "d1RvMc+QQ=\n"
)


def go_signer_key(skey: str) -> SigningKey:
    """Decode Go's `PRIVATE+KEY+name+hexid+base64(0x01 || seed)` test key."""
    private, key, name, id_hex, material = skey.split("+", 4)
    assert (private, key) == ("PRIVATE", "KEY")
    raw = base64.b64decode(material, validate=True)
    assert raw[0] == ALG_ED25519 and len(raw) == 33
    signer = SigningKey.from_seed(raw[1:], name)
    assert key_id(name, signer.public.raw).hex() == id_hex  # the id names this very key
    return signer


def test_go_sign_byte_for_byte() -> None:
    signer = go_signer_key(GO_SKEY)
    assert verifier_key("PeterNeumann", signer.public.raw) == PETER_KEY
    assert sign_note(GO_TEXT, "PeterNeumann", signer) == GO_TEXT + "\n" + PETER_SIG


def test_go_sign_rejects_bad_input() -> None:
    signer = go_signer_key(GO_SKEY)
    with pytest.raises(MalformedNote, match="newline"):
        sign_note("abc", "PeterNeumann", signer)
    with pytest.raises(BadVerifierKey, match="key name"):
        sign_note(GO_TEXT, "bad name", signer)
    with pytest.raises(BadVerifierKey, match="key name"):
        sign_note(GO_TEXT, "a+b", signer)
    with pytest.raises(MalformedNote, match="control character"):
        sign_note("tab\there\n", "PeterNeumann", signer)


def test_go_open_one_known_one_unknown() -> None:
    opened = open_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER_KEY])
    assert opened.text == GO_TEXT
    assert opened.verified_names == ["PeterNeumann"]
    assert opened.verified[0].key_id == bytes.fromhex("c74f20a3")
    assert [(s.name, s.key_id.hex()) for s in opened.unverified] == [("EnochRoot", "af0cfe78")]
    assert str(opened.unverified[0]) == ENOCH_SIG


def test_go_open_both_known() -> None:
    opened = open_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER_KEY, ENOCH_KEY])
    assert opened.verified_names == ["PeterNeumann", "EnochRoot"]
    assert opened.unverified == ()


def test_go_open_none_known() -> None:
    with pytest.raises(UnverifiedNote, match="no signature by a known key") as caught:
        open_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    assert [s.name for s in caught.value.unverified] == ["PeterNeumann", "EnochRoot"]
    assert "EnochRoot+af0cfe78" in caught.value.hint


def test_go_open_too_many_signatures() -> None:
    for known in ([PETER_KEY], []):
        with pytest.raises(MalformedNote) as caught:
            open_note(GO_TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), known)
        assert caught.value.reason == "too-many-signatures"
    assert open_note(GO_TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [PETER_KEY]).verified_names == [
        "PeterNeumann"
    ]


def test_go_open_invalid_signature() -> None:
    # Go splices "ABCD" in at byte 60 of the signature line (the em dash is 3 bytes).
    line = PETER_SIG.encode()
    altered = GO_TEXT.encode() + b"\n" + line[:60] + b"ABCD" + line[60:]
    with pytest.raises(InvalidSignature) as caught:
        open_note(altered, [PETER_KEY])
    assert caught.value.message == "invalid signature for key PeterNeumann+c74f20a3"
    assert caught.value.exit_code == EXIT_PROBLEM


def test_go_open_duplicates() -> None:
    enoch = ENOCH_SIG.encode()
    enoch_abcd = (enoch[:60] + b"ABCD" + enoch[60:]).decode()
    text = GO_TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = open_note(text, [PETER_KEY])
    assert opened.verified_names == ["PeterNeumann"]
    assert [str(s) for s in opened.unverified] == [ENOCH_SIG, enoch_abcd]


@pytest.mark.parametrize(
    "message",
    [
        GO_TEXT.encode(),
        (GO_TEXT + "\n").encode(),
        (GO_TEXT + "\n" + PETER_SIG[:-1]).encode(),
        ("\x01" + GO_TEXT + "\n" + PETER_SIG).encode(),
        b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode(),
        (GO_TEXT + "\n" + "— Bad Name " + PETER_SIG.split(" ")[-1][:-1]).encode(),
        (GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(),
    ],
    ids=["no-blank-line", "no-signatures", "no-final-newline", "control", "not-utf8",
         "bad-name", "unexpected-line"],
)  # fmt: skip
def test_go_open_malformed(message: bytes) -> None:
    with pytest.raises(MalformedNote):
        open_note(message, [PETER_KEY])


def test_go_new_verifier_manglings() -> None:
    """TestNewVerifier: the key parses; every proper substring and every byte+1 is rejected."""
    assert str(parse_verifier_key(PETER_KEY)) == PETER_KEY
    data = PETER_KEY.encode()
    for i in range(len(data) + 1):
        for j in range(i + 1, len(data) + 1):
            if (i, j) != (0, len(data)):
                with pytest.raises(BadVerifierKey):
                    parse_verifier_key(data[i:j].decode())
    for i in range(len(data)):
        mangled = bytearray(data)
        mangled[i] += 1
        with pytest.raises(BadVerifierKey):
            parse_verifier_key(mangled.decode())
    # Wrong key length and unknown algorithm, each with its key id adjusted to match. (Go's
    # lenient base64 reads the first; ours already refuses its stray padding bits.)
    with pytest.raises(BadVerifierKey, match="canonical base64|want 32"):
        parse_verifier_key(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(BadVerifierKey, match="unsupported key type 0x65"):
        parse_verifier_key("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_ambiguous_known_keys() -> None:
    peter = parse_verifier_key(PETER_KEY)
    impostor = VerifierKey(peter.name, peter.key_id, bytes(32), ALG_ED25519)
    note_text = GO_TEXT + "\n" + PETER_SIG
    with pytest.raises(AmbiguousKey, match=r"PeterNeumann\+c74f20a3"):
        open_note(note_text, [peter, impostor])
    assert open_note(note_text, [peter, peter]).verified_names == ["PeterNeumann"]  # same key
    assert open_note(GO_TEXT + "\n" + ENOCH_SIG, [ENOCH_KEY, peter, impostor]).verified_names == [
        "EnochRoot"
    ]  # the ambiguity matters only when a signature names it


# ---------------------------------------------------------------------------------------------
# Other published keys and signatures.
# transparency-dev/formats note/note_cosigv1_test.go (TestCoSigV1NewVerifier, TestCoSigV1Timestamp)
# https://github.com/transparency-dev/formats/blob/091ce41666c09683aa9350785e572be27f0c026d/note/note_cosigv1_test.go
# c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature examples
# https://github.com/C2SP/C2SP/blob/2793893976c835db049c194d8f2c4f946dcb70ba/tlog-checkpoint.md
# https://github.com/C2SP/C2SP/blob/01194db11950a0ae2b2b2401afa0a4063a822458/tlog-cosignature.md

SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_LOG_SIG = (
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q"
    "1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
SPEC_WITNESS_SIG = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)


def test_formats_verifier_keys() -> None:
    plus = parse_verifier_key("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
    assert (plus.name, plus.algorithm) == ("TEST", ALG_ED25519)  # base64 with a '+' in it
    cosigner = parse_verifier_key(
        "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    )
    assert cosigner.algorithm == ALG_COSIGNATURE_V1
    assert cosigner_key(cosigner.name, cosigner.public_key) == str(cosigner)
    for bad in ("bananas.sigstore.dev+12344556", "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
                "rekor.sigstore.dev+12345678+AwEB"):  # fmt: skip
        with pytest.raises(BadVerifierKey):
            parse_verifier_key(bad)


def test_formats_cosignature_timestamp() -> None:
    payload = base64.b64decode(
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJ"
        "XORmnFBOBA=="
    )
    assert cosignature_timestamp(SignatureLine("w", payload[:4], payload[4:])) == 1727964367
    wrong_type = base64.b64decode(
        "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
    )
    with pytest.raises(MalformedNote):
        cosignature_timestamp(SignatureLine("w", wrong_type[:4], wrong_type[4:]))


def test_spec_checkpoint_and_cosignature_examples() -> None:
    checkpoint = parse_checkpoint(SPEC_CHECKPOINT)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert len(checkpoint.root_hash) == 32 and checkpoint.extensions == ()
    assert checkpoint.body() == SPEC_CHECKPOINT
    with pytest.raises(UnverifiedNote) as caught:  # no key for either: both reported, ignored
        open_note(SPEC_CHECKPOINT + "\n" + SPEC_LOG_SIG + SPEC_WITNESS_SIG, [PETER_KEY])
    log, witness = caught.value.unverified
    assert (log.name, len(log.signature)) == ("example.com/behind-the-sofa", 64)
    assert (witness.name, len(witness.signature)) == ("witness.example.com/w1", 72)
    # The witness line carries the time of the spec's signed-message example, "time 1679315147".
    assert cosignature_timestamp(witness) == 1679315147


# ---------------------------------------------------------------------------------------------
# (c) Round trips, and every alteration of a signed checkpoint fails

LOG = SigningKey.from_seed(bytes(range(32)), "archive.example/log")
WITNESS = SigningKey.from_seed(bytes(range(32, 64)), "witness.example/w1")
LOG_NAME = "archive.example/log"
WITNESS_NAME = "witness.example/w1"
LOG_KEY = make_verifier(LOG_NAME, LOG.public.raw)
WITNESS_KEY = parse_verifier_key(cosigner_key(WITNESS_NAME, WITNESS.public.raw))
ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
BODY = format_checkpoint(LOG_NAME, 8, ROOT)
SIGNED = sign_note(BODY, LOG_NAME, LOG)


def test_signed_checkpoint_round_trip() -> None:
    checkpoint, opened = open_checkpoint(SIGNED, [LOG_KEY])
    assert checkpoint == Checkpoint(LOG_NAME, 8, ROOT)
    assert opened.verified_names == [LOG_NAME]
    assert SIGNED == BODY + "\n" + SIGNED.split("\n\n")[1]
    assert SIGNED.split("\n\n")[1].startswith("— archive.example/log ")


def test_every_single_byte_substitution_fails() -> None:
    """Exhaustive: each byte of a signed checkpoint replaced by each of the other 255 values."""
    data = SIGNED.encode()
    for position in range(len(data)):
        for value in range(256):
            if value == data[position]:
                continue
            altered = data[:position] + bytes([value]) + data[position + 1 :]
            with pytest.raises(NoteError):
                open_checkpoint(altered, [LOG_KEY])


origins = st.text(
    st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)), min_size=1, max_size=40
)
extension_lines = st.lists(origins, max_size=3)
note_texts = st.text(
    st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)) | st.just("\n"), max_size=200
).map(lambda t: t + "\n")


@settings(max_examples=150, deadline=None)
@given(
    origin=origins,
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=extension_lines,
)
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    body = format_checkpoint(origin, size, root, extensions)
    assert parse_checkpoint(body) == Checkpoint(origin, size, root, tuple(extensions))
    checkpoint, opened = open_checkpoint(sign_note(body, LOG_NAME, LOG), [LOG_KEY])
    assert checkpoint.body() == body == opened.text


@settings(max_examples=150, deadline=None)
@given(text=note_texts)
def test_note_round_trip(text: str) -> None:
    assert open_note(sign_note(text, LOG_NAME, LOG), [LOG_KEY]).text == text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    origin=origins,
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=extension_lines,
    timestamp=st.integers(min_value=0, max_value=2**63 - 1),
    data=st.data(),
)
def test_any_single_byte_change_fails(
    origin: str,
    size: int,
    root: bytes,
    extensions: list[str],
    timestamp: int,
    data: st.DataObject,
) -> None:
    """A log-signed and witness-cosigned checkpoint: any one byte substituted, deleted or inserted
    either fails to open or loses a verified signature (callers require both)."""
    body = format_checkpoint(origin, size, root, extensions)
    signed = cosign(sign_note(body, LOG_NAME, LOG), WITNESS_NAME, WITNESS, timestamp).encode()
    keys = [LOG_KEY, WITNESS_KEY]
    assert open_note(signed, keys).verified_names == [LOG_NAME, WITNESS_NAME]
    position = data.draw(st.integers(min_value=0, max_value=len(signed) - 1), label="position")
    value = data.draw(st.integers(min_value=0, max_value=255), label="value")
    kind = data.draw(st.sampled_from(["substitute", "delete", "insert"]), label="kind")
    if kind == "substitute":
        if value == signed[position]:
            value ^= 0x01
        altered = signed[:position] + bytes([value]) + signed[position + 1 :]
    elif kind == "delete":
        altered = signed[:position] + signed[position + 1 :]
    else:
        altered = signed[:position] + bytes([value]) + signed[position:]
    try:
        opened = open_note(altered, keys)
    except NoteError:
        return
    assert len(opened.verified) < 2, altered


# ---------------------------------------------------------------------------------------------
# (d) Malformed checkpoints, each rejected with a named reason

GOOD_ROOT = base64.b64encode(ROOT).decode()
MALFORMED_CHECKPOINTS = [
    ("no-final-newline", f"log\n8\n{GOOD_ROOT}"),
    ("too-few-lines", "log\n8\n"),
    ("empty-line", f"\n8\n{GOOD_ROOT}\n"),  # empty origin
    ("empty-line", f"log\n8\n{GOOD_ROOT}\n\n"),
    ("empty-line", f"log\n8\n{GOOD_ROOT}\n\next\n"),
    ("size-leading-zero", f"log\n08\n{GOOD_ROOT}\n"),
    ("size-leading-zero", f"log\n00\n{GOOD_ROOT}\n"),
    ("bad-size", f"log\n-1\n{GOOD_ROOT}\n"),
    ("bad-size", f"log\n+8\n{GOOD_ROOT}\n"),
    ("bad-size", f"log\n 8\n{GOOD_ROOT}\n"),
    ("bad-size", f"log\n8 \n{GOOD_ROOT}\n"),
    ("bad-size", f"log\n1_000\n{GOOD_ROOT}\n"),
    ("bad-size", f"log\n\u0668\n{GOOD_ROOT}\n"),  # an Arabic-Indic digit eight
    ("bad-size", f"log\n0x8\n{GOOD_ROOT}\n"),
    ("bad-size", f"log\n{2**64}\n{GOOD_ROOT}\n"),
    ("bad-root-base64", f"log\n8\n{GOOD_ROOT[:-1]}\n"),  # padding missing
    ("bad-root-base64", f"log\n8\n{GOOD_ROOT[:-2]}9=\n"),  # stray bits: non-canonical
    ("bad-root-base64", f"log\n8\n{GOOD_ROOT.replace('/', '_')}\n"),  # URL-safe alphabet
    ("bad-root-base64", f"log\n8\n {GOOD_ROOT}\n"),
    ("bad-root-length", f"log\n8\n{base64.b64encode(bytes(31)).decode()}\n"),
    ("bad-root-length", f"log\n8\n{base64.b64encode(bytes(33)).decode()}\n"),
    ("control-character", f"log\r\n8\n{GOOD_ROOT}\n"),
    ("control-character", f"log\n8\n{GOOD_ROOT}\nex\ttension\n"),
]


@pytest.mark.parametrize(("reason", "text"), MALFORMED_CHECKPOINTS)
def test_malformed_checkpoint(reason: str, text: str) -> None:
    with pytest.raises(MalformedCheckpoint) as caught:
        parse_checkpoint(text)
    assert caught.value.reason == reason
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == EXIT_PROBLEM


def test_checkpoint_edges() -> None:
    assert parse_checkpoint(f"log\n0\n{GOOD_ROOT}\n").size == 0
    assert parse_checkpoint(f"log\n{2**64 - 1}\n{GOOD_ROOT}\n").size == 2**64 - 1
    assert parse_checkpoint(f"a b+c\n1\n{GOOD_ROOT}\nx\ny\n").extensions == ("x", "y")
    with pytest.raises(MalformedCheckpoint, match="origin is empty"):
        format_checkpoint("", 1, ROOT)
    with pytest.raises(MalformedCheckpoint) as caught:
        format_checkpoint("log", -1, ROOT)
    assert caught.value.reason == "bad-size"
    with pytest.raises(MalformedCheckpoint) as caught:
        format_checkpoint("log", 1, ROOT[:31])
    assert caught.value.reason == "bad-root-length"
    with pytest.raises(MalformedCheckpoint) as caught:
        format_checkpoint("log", 1, ROOT, ["ok", ""])
    assert caught.value.reason == "empty-line"
    with pytest.raises(MalformedCheckpoint) as caught:
        format_checkpoint("log\n8", 1, ROOT)
    assert caught.value.reason == "control-character"


def test_signed_note_that_is_not_a_checkpoint() -> None:
    signed = sign_note("just a note\n", LOG_NAME, LOG)
    assert open_note(signed, [LOG_KEY]).text == "just a note\n"
    with pytest.raises(MalformedCheckpoint):
        open_checkpoint(signed, [LOG_KEY])


# ---------------------------------------------------------------------------------------------
# (e) Cosignatures (c2sp.org/tlog-cosignature, Ed25519 cosignature/v1, type 0x04)

TIME = 1_700_000_000


def test_cosignature_round_trip() -> None:
    cosigned = cosign(SIGNED, WITNESS_NAME, WITNESS, TIME)
    assert cosigned.startswith(SIGNED)  # the log's signature is kept, the cosignature appended
    checkpoint, opened = open_checkpoint(cosigned, [LOG_KEY, WITNESS_KEY])
    assert checkpoint == Checkpoint(LOG_NAME, 8, ROOT)
    assert opened.verified_names == [LOG_NAME, WITNESS_NAME]
    assert [v.timestamp for v in opened.verified] == [None, TIME]
    assert [v.algorithm for v in opened.verified] == [ALG_ED25519, ALG_COSIGNATURE_V1]
    # A cosignature alone, over the bare body.
    alone = cosign(BODY, WITNESS_NAME, WITNESS, TIME)
    assert alone == BODY + "\n" + cosignature_line(BODY, WITNESS_NAME, WITNESS, TIME)
    assert open_note(alone, [WITNESS_KEY]).verified[0].timestamp == TIME


def test_cosignature_payload_layout() -> None:
    line = cosignature_line(BODY, WITNESS_NAME, WITNESS, TIME)
    name, b64 = line.removeprefix("— ").removesuffix("\n").split(" ")
    payload = base64.b64decode(b64)
    assert name == WITNESS_NAME and len(payload) == 4 + 8 + 64
    assert payload[:4] == key_id(WITNESS_NAME, WITNESS.public.raw, ALG_COSIGNATURE_V1)
    assert int.from_bytes(payload[4:12], "big") == TIME
    message = f"cosignature/v1\ntime {TIME}\n".encode() + BODY.encode()
    assert verify_signature(WITNESS.public.raw, message, payload[12:])


def test_altered_timestamp_fails() -> None:
    line = cosignature_line(BODY, WITNESS_NAME, WITNESS, TIME)
    payload = bytearray(base64.b64decode(line.split(" ")[-1]))
    for new_time in (TIME + 1, TIME - 1, 0, 2**63 - 1, 2**64 - 1):
        payload[4:12] = new_time.to_bytes(8, "big")
        altered = f"— {WITNESS_NAME} {base64.b64encode(bytes(payload)).decode()}\n"
        with pytest.raises(InvalidSignature):
            open_note(BODY + "\n" + altered, [WITNESS_KEY])


def test_cosignature_is_not_a_plain_signature() -> None:
    """Type 0x04 and 0x01 keys of the same name and key have different key ids: a plain verifier
    ignores a cosignature (and a cosigner key ignores a plain signature)."""
    plain = make_verifier(WITNESS_NAME, WITNESS.public.raw)
    cosigned = cosign(BODY, WITNESS_NAME, WITNESS, TIME)
    with pytest.raises(UnverifiedNote):
        open_note(cosigned, [plain])
    with pytest.raises(UnverifiedNote):
        open_note(sign_note(BODY, WITNESS_NAME, WITNESS), [WITNESS_KEY])


def test_cosign_checks_its_input() -> None:
    with pytest.raises(MalformedCheckpoint):
        cosign("not a checkpoint\n", WITNESS_NAME, WITNESS, TIME)
    with pytest.raises(ValueError, match="out of range"):
        cosign(BODY, WITNESS_NAME, WITNESS, -1)
    with pytest.raises(ValueError, match="out of range"):
        cosign(BODY, WITNESS_NAME, WITNESS, 2**63)
    with pytest.raises(MalformedNote):
        cosign(BODY + "\nnot a signature line\n", WITNESS_NAME, WITNESS, TIME)


# ---------------------------------------------------------------------------------------------
# Errors and bounds


def test_error_classes() -> None:
    for cls in (MalformedNote, MalformedCheckpoint, InvalidSignature, UnverifiedNote):
        assert issubclass(cls, CustodyError) and issubclass(cls, NoteError)
        assert cls.exit_code == EXIT_PROBLEM
    assert BadVerifierKey.exit_code == AmbiguousKey.exit_code == EXIT_ERROR


def test_size_bound() -> None:
    huge = "x" * (note.MAX_NOTE_BYTES + 1) + "\n\n" + PETER_SIG
    with pytest.raises(MalformedNote) as caught:
        open_note(huge, [PETER_KEY])
    assert caught.value.reason == "too-large"


def test_strings_that_are_not_utf8() -> None:
    with pytest.raises(MalformedNote) as caught:
        open_note(GO_TEXT + "\ud800\n\n" + PETER_SIG, [PETER_KEY])
    assert caught.value.reason == "not-utf8"
    with pytest.raises(TypeError):
        open_note(SPEC_NOTE, SPEC_VKEY)  # one key string, not a collection


def test_non_canonical_signature_base64_rejected() -> None:
    """Go accepts non-zero padding bits; we do not, so one signature has one spelling."""
    name, b64 = PETER_SIG.removeprefix("— ").removesuffix("\n").split(" ")
    assert b64.endswith("M=")
    respelled = f"— {name} {b64[:-2]}N=\n"  # same bytes under a lenient decoder
    assert base64.b64decode(b64[:-2] + "N=") == base64.b64decode(b64)
    with pytest.raises(MalformedNote):
        open_note(GO_TEXT + "\n" + respelled, [PETER_KEY])


def test_module_is_pure() -> None:
    source = Path(note.__file__).read_text()
    banned_words = ("import os", "import time", "datetime", "random", "open(", "cryptography")
    for banned in banned_words:
        assert banned not in source
