"""C2PA provenance read and validated at ingest (issue 12, item 2): real signed samples from
c2pa-python's fixtures (tests/data/c2pa), and files signed here with c2pa-python's Builder and its
test certificates, one of them tampered after signing so that its data hash fails."""

from __future__ import annotations

import hashlib
import json
import re
import ssl
from pathlib import Path

import c2pa
import pytest
from PIL import Image

from custody.metadata import MetadataReader

from .conftest import DATA, Cli, one_line_error

SAMPLES = DATA / "c2pa"
CERTS = SAMPLES / "es256_certs.pem"
KEY = SAMPLES / "es256_private.key"
REVIEW = "check the C2PA claims before filing"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sign_jpeg(out: Path, colour: tuple[int, int, int], title: str) -> Path:
    """A real JPEG signed with C2PA's ES256 test chain by c2pa-python's Builder."""
    plain = out.with_suffix(".plain.jpg")
    Image.new("RGB", (96, 64), colour).save(plain, quality=90)
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=CERTS.read_bytes(),
                               private_key=KEY.read_bytes(), ta_url=None)
    manifest = {
        "claim_generator_info": [{"name": "custody-tests", "version": "1"}],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
            "action": "c2pa.created",
            "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
        }]}}],
    }
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest, context=context) as builder:
        with plain.open("rb") as source, out.open("w+b") as dest:
            builder.sign(signer, "image/jpeg", source, dest)
    plain.unlink()
    return out


def tamper_pixels(signed: Path, out: Path) -> Path:
    """Change bytes of the compressed image data (after the manifest, before the end marker): the
    manifest is untouched, so only the data hash can notice."""
    data = bytearray(signed.read_bytes())
    assert data[-2:] == b"\xff\xd9"
    for i in range(len(data) - 40, len(data) - 8):
        if data[i] not in (0xFF, 0x00) and data[i] ^ 0x55 not in (0xFF, 0x00):
            data[i] ^= 0x55
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def signed_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("signed")
    good = sign_jpeg(folder / "field-photo.jpg", (180, 40, 40), "field-photo.jpg")
    other = sign_jpeg(folder / "second-photo.jpg", (40, 40, 180), "second-photo.jpg")
    bad = tamper_pixels(sign_jpeg(folder / "to-tamper.jpg", (40, 160, 40), "edited.jpg"),
                        folder / "edited.jpg")
    (folder / "to-tamper.jpg").unlink()
    return {"good": good, "other": other, "bad": bad}


def show(cli: Cli, path: Path) -> dict:
    return cli("show", sha(path), "--json", check=True).json()


def c2pa_of(cli: Cli, path: Path) -> dict | None:
    return show(cli, path)["provenance"]["c2pa"]


def codes(found: dict) -> set[str]:
    return {c["code"] for c in found["validation_status"]}


def test_a_valid_manifest_is_kept_with_every_code_signer_and_store(cli_archive):
    photo = SAMPLES / "C.jpg"
    cli_archive("ingest", photo, check=True)
    data = show(cli_archive, photo)
    found = data["provenance"]["c2pa"]
    assert found["validation_state"] == "Valid"  # as c2pa says it: the signer is not trusted
    assert {"signingCredential.untrusted", "assertion.dataHash.match",
            "claimSignature.validated"} <= codes(found)
    assert all({"code", "url", "explanation", "result"} <= set(c)
               for c in found["validation_status"])
    assert found["failures"] == []  # "untrusted" is information, not failure
    assert found["active_manifest"] == "contentauth:urn:uuid:c85a2b90-f1a0-4aa4-b17f-f938b475804e"
    assert found["claim_generator"] == "make_test_images/0.26.0 c2pa-rs/0.26.0"
    assert found["signer"]["common_name"] == "C2PA Signer"
    assert found["signer"]["issuer"] == "C2PA Test Signing Cert"
    assert found["signer"]["time"] == "2023-09-29T17:40:14+00:00"
    signer_cert = next(c for c in found["certificates"] if c["role"] == "signer")
    assert signer_cert["issuer"]["CN"] == "Intermediate CA"
    assert signer_cert["serial"] and signer_cert["not_after"].startswith("2030-")
    assert [a["action"] for a in found["actions"]] == ["c2pa.created"]
    assert found["trust_anchors"] == []
    chain = found["signer_chain"]  # from the COSE signature's x5chain, signer first
    assert [c["subject"].split(",")[0] for c in chain] == ["CN=C2PA Signer", "CN=Intermediate CA",
                                                         "CN=Root CA"]
    assert chain[0]["serial"] == signer_cert["serial"]
    assert all(c["pem"].startswith("-----BEGIN CERTIFICATE-----") for c in chain)
    store = json.loads(found["manifest_store_json"])
    assert store["active_manifest"] == found["active_manifest"]
    assert store["validation_state"] == "Valid"
    assert data["metadata"]["readers"]["c2pa"].startswith("0.")  # c2pa-python's version
    assert data["metadata_errors"] == []
    # the record is the metadata document whose SHA-256 the ingest entry signed
    ingest = next(h for h in data["history"] if h["action"] == "ingest")
    assert ingest["details"]["metadata_sha256"] == _metadata_digest(cli_archive, photo)
    text = cli_archive("show", sha(photo), check=True).stdout
    assert "Valid; signed by C2PA Signer / C2PA Test Signing Cert (signer not on a trust list)" \
        in text


def _metadata_digest(cli: Cli, path: Path) -> str:
    from custody.ops.archive import Archive

    archive = Archive.open(cli.archive)
    try:
        raw = archive.ledger.metadata(sha(path))
        assert raw is not None
        assert b"provenance" in raw and b"manifest_store_json" in raw
        return hashlib.sha256(raw).hexdigest()
    finally:
        archive.ledger.close()


def test_cawg_identity_assertions_and_ingredients_are_listed(cli_archive):
    cawg, composed = SAMPLES / "C_with_CAWG_data.jpg", SAMPLES / "CACAE-uri-CA.jpg"
    cli_archive("ingest", cawg, composed, check=True)
    found = c2pa_of(cli_archive, cawg)
    assert found["validation_state"] == "Valid"
    assert "cawg.identity.well-formed" in codes(found)
    assert "cawg.x509.credential.untrusted" in codes(found)
    [identity] = found["identities"]
    assert identity["signer_payload"]["sig_type"] == "cawg.x509.cose"
    assert identity["signature_info"]["common_name"] == "C2PA Signer"
    found = c2pa_of(cli_archive, composed)
    [ingredient] = found["ingredients"]
    assert ingredient == {**ingredient, "title": "CAE-uri-CA.jpg", "format": "image/jpeg",
                          "relationship": "componentOf"}
    assert [a["action"] for a in found["actions"]] == ["c2pa.created", "c2pa.placed",
                                                       "c2pa.resized"]
    assert found["manifests"] == 3


def test_a_tampered_file_is_kept_and_shown_invalid_in_show_report_and_search(
        cli_archive, signed_files, tmp_path):
    good, bad = signed_files["good"], signed_files["bad"]
    cli_archive("ingest", good, bad, SAMPLES / "A.jpg", check=True)
    found = c2pa_of(cli_archive, bad)
    assert found["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in codes(found)
    assert found["failures"] == ["assertion.dataHash.mismatch"]
    # the chain recorded is the very one it was signed with (tests/data/c2pa/es256_certs.pem)
    pems = [c["pem"] for c in found["signer_chain"]]
    assert [ssl.PEM_cert_to_DER_cert(p) for p in pems] == [
        ssl.PEM_cert_to_DER_cert(b) for b in re.findall(
            r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", CERTS.read_text(), re.S)]
    assert c2pa_of(cli_archive, good)["validation_state"] == "Valid"
    # the file is kept byte for byte all the same
    out = tmp_path / "back.jpg"
    cli_archive("get", sha(bad), "--purpose", REVIEW, "-o", out, check=True)
    assert out.read_bytes() == bad.read_bytes()
    # show, for people
    text = cli_archive("show", sha(bad), check=True).stdout
    assert "INVALID (Invalid): assertion.dataHash.mismatch" in text
    assert "INVALID" not in cli_archive("show", sha(good), check=True).stdout
    # the report's item section and its summary
    report = tmp_path / "r.html"
    cli_archive("report", sha(bad), sha(good), "-o", report, check=True)
    page = report.read_text()
    assert "INVALID manifest" in page and "assertion.dataHash.mismatch" in page
    assert "C2PA INVALID" in page
    # search: a column, a flag in JSON and a filter
    result = cli_archive("search", "--json", check=True).json()
    verdicts = {i["sha256"]: i["c2pa"] for i in result["items"] + result["undetermined"]}
    assert verdicts[sha(bad)] == "invalid" and verdicts[sha(good)] == "valid"
    assert verdicts[sha(SAMPLES / "A.jpg")] == "none"
    lines = cli_archive("search", check=True).stdout.splitlines()
    assert "C2PA" in lines[0]
    assert any(sha(bad)[:16] in line and "INVALID" in line for line in lines)
    only = cli_archive("search", "--c2pa", "invalid", "--json", check=True).json()
    assert [i["sha256"] for i in only["items"] + only["undetermined"]] == [sha(bad)]
    none = cli_archive("search", "--c2pa", "none", "--json", check=True).json()
    assert [i["sha256"] for i in none["items"] + none["undetermined"]] == [sha(SAMPLES / "A.jpg")]
    wrong = cli_archive("search", "--c2pa", "bogus")
    assert wrong.code == 2 and "--c2pa bogus" in one_line_error(wrong)


def test_a_file_without_a_manifest_has_no_c2pa_provenance(cli_archive):
    photo = SAMPLES / "A.jpg"
    cli_archive("ingest", photo, check=True)
    data = show(cli_archive, photo)
    assert data["provenance"]["c2pa"] is None
    assert "provenance" not in data["metadata"]
    assert "c2pa" in data["metadata"]["readers"]  # it was looked for
    assert data["metadata_errors"] == []
    assert "c2pa" in cli_archive("show", sha(photo), check=True).stdout  # "no manifest"


def test_a_remote_manifest_is_recorded_as_unreadable_offline_and_the_file_kept(cli_archive):
    photo = SAMPLES / "cloud.jpg"
    cli_archive("ingest", photo, check=True)
    data = show(cli_archive, photo)
    found = data["provenance"]["c2pa"]
    assert found["validation_state"] is None
    assert "remote" in found["error"].lower()
    assert any(e.startswith("c2pa: ") for e in data["metadata_errors"])
    result = cli_archive("search", "--c2pa", "unreadable", "--json", check=True).json()
    assert [i["sha256"] for i in result["items"] + result["undetermined"]] == [sha(photo)]


def test_trust_anchors_make_the_signer_trusted_and_are_recorded(cli_archive, signed_files):
    good, other = signed_files["good"], signed_files["other"]
    cli_archive("ingest", good, "--c2pa-trust-anchors", CERTS, check=True)
    found = c2pa_of(cli_archive, good)
    assert found["validation_state"] == "Trusted"
    assert "signingCredential.untrusted" not in codes(found)
    assert len(found["trust_anchors"]) == 2  # the two certificates of the PEM, by SHA-256
    assert all(len(h) == 64 for h in found["trust_anchors"])
    # the same from the archive's custody.json, relative to the archive folder
    config = cli_archive.archive / "custody.json"
    (cli_archive.archive / "c2pa-anchors.pem").write_bytes(CERTS.read_bytes())
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "c2pa": {"trust_anchors": "c2pa-anchors.pem"}}))
    cli_archive("ingest", other, check=True)
    found = c2pa_of(cli_archive, other)
    assert found["validation_state"] == "Trusted"
    assert found["trust_anchors"] == c2pa_of(cli_archive, good)["trust_anchors"]
    trusted = cli_archive("search", "--c2pa", "trusted", "--json", check=True).json()
    assert {i["sha256"] for i in trusted["items"] + trusted["undetermined"]} == {sha(good),
                                                                                 sha(other)}


def test_a_trust_anchor_file_without_certificates_is_a_usage_error_and_stores_nothing(
        cli_archive, signed_files, tmp_path):
    bogus = tmp_path / "anchors.pem"
    bogus.write_text("not a certificate\n")
    result = cli_archive("ingest", signed_files["good"], "--c2pa-trust-anchors", bogus)
    assert result.code == 2
    assert "no PEM certificate" in one_line_error(result)
    assert cli_archive("list", "--json", check=True).json() == []


def test_c2pa_runs_in_the_worker_under_its_memory_limit(signed_files):
    with MetadataReader(memory_limit=1 << 30) as reader:
        record = reader.read(signed_files["bad"])
    assert record["provenance"]["c2pa"]["validation_state"] == "Invalid"
    assert not [e for e in record["errors"] if e.startswith(("c2pa", "worker"))]


def test_the_signed_ingest_entry_covers_the_provenance_record(cli_archive, signed_files):
    bad = signed_files["bad"]
    cli_archive("ingest", bad, check=True)
    log = [json.loads(line) for line in
           cli_archive("log", sha(bad), "--json", check=True).stdout.splitlines()]
    ingest = next(e for e in log if e["action"] == "ingest")
    assert ingest["details"]["metadata_sha256"] == _metadata_digest(cli_archive, bad)
    assert cli_archive("verify", sha(bad)).code == 0  # the item verifies: custody is intact


def test_a_truncated_signed_file_says_its_manifest_could_not_be_validated(signed_files, tmp_path):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(signed_files["good"].read_bytes()[:3000])  # the manifest store is in there
    plain = tmp_path / "plain-cut.jpg"
    plain.write_bytes((SAMPLES / "A.jpg").read_bytes()[:3000])  # no manifest anywhere
    with MetadataReader() as reader:
        damaged, unsigned = reader.read(cut), reader.read(plain)
    found = damaged["provenance"]["c2pa"]
    assert found["validation_state"] is None and "could not be parsed" in found["error"]
    assert any(e.startswith("c2pa: ") for e in damaged["errors"])
    assert "provenance" not in unsigned  # c2pa's parse failure is no news without a manifest
    assert not [e for e in unsigned["errors"] if e.startswith("c2pa")]
