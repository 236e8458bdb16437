"""Sidecars (issue 12, item 2): ProofMode exports and `.asc` / `.ots` / proof files found beside a
file are stored as items, linked to the file they are about, with what was checked.

Real files only: a real JPEG, OpenPGP signatures made by GnuPG in a throw-away home, OpenTimestamps
proofs serialised by the `opentimestamps` library, the real `custody` command."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentimestamps.core.notary import BitcoinBlockHeaderAttestation, PendingAttestation
from opentimestamps.core.op import OpSHA256
from opentimestamps.core.serialize import BytesSerializationContext
from opentimestamps.core.timestamp import DetachedTimestampFile, Timestamp

from custody.core import sidecars

DATA = Path(__file__).parent / "data"
PHOTO = DATA / "media" / "aleppo-gps.jpg"
CALENDAR = "https://alice.btc.calendar.opentimestamps.org"


class Signer:
    """A GnuPG key in a throw-away home (a short path: gpg-agent's socket must fit)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._gpg("--quick-gen-key", "Field Phone <phone@example.org>", "ed25519", "sign", "never")
        listed = self._gpg("--with-colons", "--list-keys").stdout.splitlines()
        self.fingerprint = next(line.split(":")[9] for line in listed if line.startswith("fpr"))

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", *args],
            check=True, capture_output=True, text=True)

    def sign(self, data: Path, out: Path) -> Path:
        self._gpg("--armor", "--detach-sign", "-o", str(out), str(data))
        return out

    def export(self, out: Path) -> Path:
        out.write_text(self._gpg("--armor", "--export").stdout)
        return out


@pytest.fixture(scope="module")
def signer() -> Iterator[Signer]:
    home = Path(tempfile.mkdtemp(prefix="cg-", dir="/tmp"))
    try:
        yield Signer(home)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ots_proof(digest: str, out: Path, *, block: int | None = None) -> Path:
    """An OpenTimestamps proof of `digest` (SHA-256) with a pending calendar attestation (and a
    Bitcoin one at `block`), written by the library as `ots stamp` would."""
    stamp = Timestamp(bytes.fromhex(digest))
    stamp.attestations.add(PendingAttestation(CALENDAR))
    if block is not None:
        stamp.attestations.add(BitcoinBlockHeaderAttestation(block))
    ctx = BytesSerializationContext()
    DetachedTimestampFile(OpSHA256(), stamp).serialize(ctx)
    out.write_bytes(ctx.getbytes())
    return out


def proof_fields(digest: str) -> dict[str, str]:
    return {"File Hash SHA256": digest, "File Path": "/storage/emulated/0/DCIM/photo.jpg",
            "Proof Generated": "2016-12-01T10:00:00.000Z", "Location.Latitude": "36.2",
            "Location.Longitude": "37.15", "Manufacturer": "Google", "IPv4": "10.0.0.2"}


def write_csv(fields: dict[str, str], out: Path) -> Path:
    out.write_text(",".join(fields) + "\n" + ",".join(fields.values()) + "\n")
    return out


def by_name(report: dict) -> dict[str, dict]:
    return {Path(f["path"]).name: f for f in report["files"]}


def checks(sidecar: dict) -> dict[str, str]:
    return {c["check"]: c["result"] for c in sidecar["checks"]}


@pytest.fixture
def proofmode_export(tmp_path: Path, signer: Signer) -> Path:
    """A folder laid out as ProofMode shares a photo: everything named by its SHA-256."""
    folder = tmp_path / "export"
    folder.mkdir()
    photo = folder / "PXL_20161201_100000.jpg"
    shutil.copyfile(PHOTO, photo)
    h = sha256(photo)
    signer.sign(photo, folder / f"{h}.asc")
    proof = folder / f"{h}.proof.json"
    proof.write_text(json.dumps(proof_fields(h)))
    signer.sign(proof, folder / f"{h}.proof.json.asc")
    write_csv(proof_fields(h), folder / f"{h}.proof.csv")
    ots_proof(h, folder / f"{h}.ots", block=358391)
    (folder / f"{h}.gst").write_text("eyJhbGciOiJSUzI1NiJ9.eyJub25jZSI6IngifQ.c2ln")  # a JWT's shape
    signer.export(folder / "pubkey.asc")
    return folder


def test_proofmode_export_links_every_sidecar_and_says_what_was_checked(
        cli_archive, proofmode_export, signer):
    photo = proofmode_export / "PXL_20161201_100000.jpg"
    h = sha256(photo)
    r = cli_archive("ingest", proofmode_export, "--json", check=True)
    files = by_name(r.json())
    assert len(files) == 8 and all(f["status"] == "new" for f in files.values())
    # the photo comes first although its sidecars' names sort before it
    order = [Path(f["path"]).name for f in r.json()["files"]]
    assert order[:2] == [photo.name, "pubkey.asc"] and order[-1] == f"{h}.proof.json.asc"
    assert files[photo.name]["sidecar"] is None

    signature = files[f"{h}.asc"]["sidecar"]
    assert signature["kind"] == "openpgp-signature" and signature["of"] == h
    assert signature["checks"][0]["result"] == "passed"
    assert signer.fingerprint in signature["checks"][0]["detail"]
    assert signature["key"] == files["pubkey.asc"]["sha256"]

    proof_sig = files[f"{h}.proof.json.asc"]["sidecar"]  # a proof of a proof
    assert proof_sig["of"] == files[f"{h}.proof.json"]["sha256"]
    assert checks(proof_sig) == {"openpgp-signature": "passed"}

    for name, kind in ((f"{h}.proof.json", "proofmode-json"), (f"{h}.proof.csv", "proofmode-csv")):
        proof = files[name]["sidecar"]
        assert (proof["kind"], proof["of"]) == (kind, h)
        assert checks(proof) == {"proofmode-file-hash": "passed"}
        assert proof["claims"]["Location.Latitude"] == "36.2"
        assert "IPv4" not in proof["claims"]  # only the listed claims are signed into the entry

    ots = files[f"{h}.ots"]["sidecar"]
    assert (ots["kind"], ots["of"]) == ("opentimestamps", h)
    assert checks(ots) == {"opentimestamps-digest": "passed",
                           "opentimestamps-attestations": "not-checked"}
    assert "not verified against Bitcoin (offline)" in ots["checks"][1]["detail"]
    assert {"type": "pending", "calendar": CALENDAR} in ots["attestations"]
    assert {"type": "bitcoin", "block_height": 358391} in ots["attestations"]

    key = files["pubkey.asc"]["sidecar"]
    assert key["kind"] == "openpgp-public-key" and key["of"] is None
    assert checks(key) == {"openpgp-public-key": "passed"}
    token = files[f"{h}.gst"]["sidecar"]
    assert (token["kind"], token["of"]) == ("device-integrity-token", h)
    assert checks(token) == {"device-integrity-token": "not-checked"}
    assert "6 sidecar(s) linked, 1 not linked" in r.stderr  # pubkey.asc is about no one file
    assert "FAILED" not in r.stderr
    cli_archive("verify", check=True)  # the links are signed with the ingest and verify


def test_show_lists_the_sidecars_of_an_item_and_names_the_item_of_a_sidecar(
        cli_archive, proofmode_export):
    h = sha256(proofmode_export / "PXL_20161201_100000.jpg")
    cli_archive("ingest", proofmode_export, check=True)
    shown = cli_archive("show", h, "--json", check=True).json()
    kinds = sorted(s["kind"] for s in shown["sidecars"])
    assert kinds == ["device-integrity-token", "openpgp-signature", "opentimestamps",
                     "proofmode-csv", "proofmode-json"]
    assert all(s["checks"][0]["result"] == "passed" for s in shown["sidecars"]
               if s["kind"] != "device-integrity-token")
    assert shown["sidecar_of"] == []
    text = cli_archive("show", h, check=True).stdout
    assert f"{h}.asc (openpgp-signature" in text and "openpgp-signature passed" in text

    ots = cli_archive("show", sha256(proofmode_export / f"{h}.ots"), "--json", check=True).json()
    assert [s["of"] for s in ots["sidecar_of"]] == [h] and ots["sidecars"] == []
    text = cli_archive("show", sha256(proofmode_export / f"{h}.ots"), check=True).stdout
    assert re.search(rf"sidecar of:\s+{h} \(opentimestamps, entry #\d+\): "
                     "opentimestamps-digest passed", text)


def test_a_sidecar_never_changes_the_record_of_the_file_it_is_about(
        cli_archive, proofmode_export, tmp_path):
    h = sha256(proofmode_export / "PXL_20161201_100000.jpg")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(PHOTO, alone / "PXL_20161201_100000.jpg")
    cli_archive("ingest", alone, check=True)
    before = cli_archive("show", h, "--json", check=True).json()
    cli_archive("ingest", proofmode_export, check=True)
    after = cli_archive("show", h, "--json", check=True).json()
    for key in ("metadata", "captured_at", "gps", "device", "mime", "size", "digests"):
        assert after[key] == before[key], key
    assert "Location.Latitude" not in json.dumps(after["metadata"])


def test_a_signature_over_other_bytes_fails_and_ingest_names_it(cli_archive, tmp_path, signer):
    folder = tmp_path / "plain"
    folder.mkdir()
    shutil.copyfile(PHOTO, folder / "photo.jpg")
    other = tmp_path / "other.bin"
    other.write_bytes(b"not the photo")
    signer.sign(other, folder / "photo.jpg.asc")
    signer.export(folder / "pubkey.asc")
    r = cli_archive("ingest", folder, "--json")
    assert r.code == 0  # everything was stored: a failed check is information, not an error
    sidecar = by_name(r.json())["photo.jpg.asc"]["sidecar"]
    assert sidecar["of"] == sha256(folder / "photo.jpg")
    assert sidecar["checks"][0]["result"] == "failed"
    assert "bad signature" in sidecar["checks"][0]["detail"]
    assert "photo.jpg.asc: openpgp-signature FAILED: bad signature" in r.stderr


def test_a_signature_without_a_public_key_beside_it_is_not_checked(cli_archive, tmp_path, signer):
    folder = tmp_path / "nokey"
    folder.mkdir()
    shutil.copyfile(PHOTO, folder / "photo.jpg")
    signer.sign(folder / "photo.jpg", folder / "photo.jpg.asc")
    sidecar = by_name(cli_archive("ingest", folder, "--json", check=True).json())[
        "photo.jpg.asc"]["sidecar"]
    assert sidecar["checks"] == [{"check": "openpgp-signature", "result": "not-checked",
                                  "detail": "no public key beside it (pubkey.asc)"}]


def test_an_ots_proof_of_another_digest_fails(cli_archive, tmp_path):
    folder = tmp_path / "ots"
    folder.mkdir()
    shutil.copyfile(PHOTO, folder / "photo.jpg")
    wrong = hashlib.sha256(b"some other file").hexdigest()
    ots_proof(wrong, folder / "photo.jpg.ots")
    r = cli_archive("ingest", folder, "--json", check=True)
    sidecar = by_name(r.json())["photo.jpg.ots"]["sidecar"]
    assert sidecar["of"] == sha256(folder / "photo.jpg")
    assert sidecar["checks"][0]["result"] == "failed" and wrong in sidecar["checks"][0]["detail"]
    assert sidecar["attestations"] == [{"type": "pending", "calendar": CALENDAR}]
    assert "photo.jpg.ots: opentimestamps-digest FAILED" in r.stderr


def test_a_damaged_ots_proof_fails_without_stopping_the_ingest(cli_archive, tmp_path):
    folder = tmp_path / "ots"
    folder.mkdir()
    shutil.copyfile(PHOTO, folder / "photo.jpg")
    good = ots_proof(sha256(folder / "photo.jpg"), tmp_path / "good.ots").read_bytes()
    (folder / "photo.jpg.ots").write_bytes(good[:-7])
    r = cli_archive("ingest", folder, "--json", check=True)
    sidecar = by_name(r.json())["photo.jpg.ots"]["sidecar"]
    assert sidecar["checks"][0]["result"] == "failed"
    assert sidecar["checks"][0]["detail"].startswith("not an OpenTimestamps proof")


def test_proof_files_recording_a_wrong_hash_fail(cli_archive, tmp_path):
    folder = tmp_path / "proofs"
    folder.mkdir()
    shutil.copyfile(PHOTO, folder / "photo.jpg")
    wrong = hashlib.sha256(b"another photo").hexdigest()
    (folder / "photo.jpg.proof.json").write_text(json.dumps(proof_fields(wrong)))
    write_csv(proof_fields(wrong), folder / "photo.jpg.proof.csv")
    files = by_name(cli_archive("ingest", folder, "--json", check=True).json())
    for name in ("photo.jpg.proof.json", "photo.jpg.proof.csv"):
        check = files[name]["sidecar"]["checks"][0]
        assert (check["check"], check["result"]) == ("proofmode-file-hash", "failed")
        assert wrong in check["detail"]


def test_a_sidecar_whose_file_is_absent_is_stored_with_a_note_and_no_link(
        cli_archive, tmp_path, signer):
    folder = tmp_path / "orphans"
    folder.mkdir()
    signer.sign(PHOTO, folder / "missing.jpg.asc")
    ghost = hashlib.sha256(b"a photo that was not shared").hexdigest()
    ots_proof(ghost, folder / f"{ghost}.ots")
    r = cli_archive("ingest", folder, "--json", check=True)
    files = by_name(r.json())
    assert all(f["status"] == "new" for f in files.values())  # stored all the same
    plain = files["missing.jpg.asc"]["sidecar"]
    assert plain["of"] is None and plain["checks"] == []
    assert "'missing.jpg'" in plain["note"] and "not linked" in plain["note"]
    named = files[f"{ghost}.ots"]["sidecar"]
    assert named["of"] is None and ghost in named["note"]
    assert "0 sidecar(s) linked, 2 not linked" in r.stderr
    shown = cli_archive("show", files["missing.jpg.asc"]["sha256"], "--json", check=True).json()
    assert shown["sidecar_of"][0]["of"] is None


def test_pairing_by_name_in_one_folder():
    h = "ab" * 32
    found = sidecars.pair(["IMG_1.jpg", "IMG_1.jpg.asc", "IMG_1.jpg.OTS", f"{h}.proof.json",
                           f"{h}.proof.json.asc", "pubkey.asc", "notes.txt", "lonely.asc"])
    assert found["IMG_1.jpg.asc"] == sidecars.Pairing(
        "openpgp-signature", of_name="IMG_1.jpg", depth=1, named="IMG_1.jpg")
    assert found["IMG_1.jpg.OTS"].kind == "opentimestamps"
    assert found[f"{h}.proof.json"].of_sha256 == h
    assert found[f"{h}.proof.json.asc"] == sidecars.Pairing(
        "openpgp-signature", of_name=f"{h}.proof.json", depth=2, named=f"{h}.proof.json")
    assert found["pubkey.asc"].depth == 0
    assert found["lonely.asc"].absent and found["lonely.asc"].named == "lonely"
    assert "IMG_1.jpg" not in found and "notes.txt" not in found


def test_proof_fields_are_read_from_json_and_csv():
    fields = proof_fields("AB" * 32)
    from_json = sidecars.proof_from_json(json.dumps(fields).encode())
    from_csv = sidecars.proof_from_csv((",".join(fields) + "\n" + ",".join(fields.values()))
                                       .encode())
    assert from_json == from_csv
    assert from_json.file_sha256 == "ab" * 32
    with pytest.raises(ValueError):
        sidecars.proof_from_json(b"[1, 2]")
    with pytest.raises(ValueError):
        sidecars.proof_from_csv(b"only a header\n")


def test_the_report_lists_each_sidecar_and_what_was_checked(cli_archive, tmp_path, signer):
    folder = tmp_path / "report"
    folder.mkdir()
    shutil.copyfile(PHOTO, folder / "photo.jpg")
    other = tmp_path / "other.bin"
    other.write_bytes(b"not the photo")
    signer.sign(other, folder / "photo.jpg.asc")
    signer.export(folder / "pubkey.asc")
    ots_proof(sha256(folder / "photo.jpg"), folder / "photo.jpg.ots")
    cli_archive("ingest", folder, check=True)
    cli_archive("checkpoint", check=True)
    out = tmp_path / "photo.html"
    r = cli_archive("report", sha256(folder / "photo.jpg"), "-o", out)
    assert r.code == 0, r.stderr  # a failed sidecar check is a finding shown, not a failed report
    page = out.read_text(encoding="utf-8")
    assert page.count("<th>Sidecar</th>") == 2
    assert "openpgp-signature <strong>failed</strong> (bad signature" in page
    assert "opentimestamps-digest <strong>passed</strong>" in page
    sidecar_page = tmp_path / "ots.html"
    cli_archive("report", sha256(folder / "photo.jpg.ots"), "-o", sidecar_page, check=True)
    assert f'<th>Sidecar of</th><td><code class="hash">{sha256(folder / "photo.jpg")}' in (
        sidecar_page.read_text(encoding="utf-8"))


def test_a_claim_too_long_to_sign_is_cut_and_says_so():
    fields = proof_fields("ab" * 32) | {"Notes": "x" * 5000, "Location.Latitude": 36.2}
    claims = sidecars.proof_from_json(json.dumps(fields).encode()).claims
    assert claims["Notes"] == "x" * 1000 + " [cut at 1000 of 5000 characters]"
    assert claims["Location.Latitude"] == "36.2"  # a JSON number kept as its JSON text


def test_an_asc_file_holding_no_signature_fails(cli_archive, tmp_path, signer):
    folder = tmp_path / "garbage"
    folder.mkdir()
    shutil.copyfile(PHOTO, folder / "photo.jpg")
    (folder / "photo.jpg.asc").write_bytes(b"-----BEGIN PGP SIGNATURE-----\n\nnot base64 at all\n")
    signer.export(folder / "pubkey.asc")
    sidecar = by_name(cli_archive("ingest", folder, "--json", check=True).json())[
        "photo.jpg.asc"]["sidecar"]
    assert sidecar["checks"][0]["result"] == "failed", sidecar


def proofmode_zip(folder: Path, signer: Signer, *, tampered: bool = False) -> Path:
    """A zip as ProofMode shares a photo: its proofs written BEFORE the photo, in one folder of
    the dump. `tampered`: the signature member signs other bytes than the photo."""
    work = folder / "work"
    work.mkdir()
    photo = work / "PXL_20161201_100000.jpg"
    shutil.copyfile(PHOTO, photo)
    h = sha256(photo)
    signed = photo
    if tampered:
        signed = work / "other.bin"
        signed.write_bytes(b"not the photo")
    signer.sign(signed, work / f"{h}.asc")
    (work / f"{h}.proof.json").write_text(json.dumps(proof_fields(h)))
    signer.export(work / "pubkey.asc")
    dump = folder / "proofmode-share.zip"
    with zipfile.ZipFile(dump, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in (f"{h}.asc", f"{h}.proof.json", "pubkey.asc", photo.name):
            zf.write(work / name, f"PXL_20161201_100000/{name}")
        # a proof in another folder of the dump is not paired with the photo
        zf.writestr(f"elsewhere/{h}.proof.csv", write_csv(proof_fields(h), work / "p.csv")
                    .read_bytes())
    return dump


def test_sidecars_inside_an_unpacked_zip_are_linked_and_checked(cli_archive, tmp_path, signer):
    dump = proofmode_zip(tmp_path, signer)
    h = sha256(PHOTO)
    r = cli_archive("ingest", dump, "--unpack", "--json", check=True)
    members = [Path(f["path"].split("!", 1)[1]).name for f in r.json()["files"][1:]]
    assert members[:2] == ["pubkey.asc", "PXL_20161201_100000.jpg"]  # the photo before its proofs
    assert "2 sidecar(s) linked, 2 not linked" in r.stderr and "FAILED" not in r.stderr
    elsewhere = next(f for f in r.json()["files"] if "elsewhere/" in f["path"])["sidecar"]
    assert elsewhere["of"] is None and "not ingested with it from its folder" in elsewhere["note"]
    shown = cli_archive("show", h, "--json", check=True).json()
    linked = {s["kind"]: s for s in shown["sidecars"]}
    assert set(linked) == {"openpgp-signature", "proofmode-json"}
    assert checks(linked["openpgp-signature"]) == {"openpgp-signature": "passed"}
    assert signer.fingerprint in linked["openpgp-signature"]["checks"][0]["detail"]
    assert linked["openpgp-signature"]["name"] == f"{h}.asc"
    assert checks(linked["proofmode-json"]) == {"proofmode-file-hash": "passed"}
    assert linked["proofmode-json"]["claims"]["Location.Latitude"] == "36.2"
    cli_archive("verify", check=True)


def test_a_tampered_signature_inside_an_unpacked_zip_fails(cli_archive, tmp_path, signer):
    dump = proofmode_zip(tmp_path, signer, tampered=True)
    h = sha256(PHOTO)
    r = cli_archive("ingest", dump, "--unpack", "--json")
    assert r.code == 0  # everything was stored: a failed check is information, not an error
    assert f"{h}.asc: openpgp-signature FAILED: bad signature" in r.stderr
    shown = cli_archive("show", h, "--json", check=True).json()
    linked = {s["kind"]: s for s in shown["sidecars"]}
    assert checks(linked["openpgp-signature"]) == {"openpgp-signature": "failed"}
    assert checks(linked["proofmode-json"]) == {"proofmode-file-hash": "passed"}


def test_sidecars_inside_an_unpacked_tar_gz_are_linked_although_listed_first(
        cli_archive, tmp_path):
    h = sha256(PHOTO)
    work = tmp_path / "work"
    work.mkdir()
    (work / f"{h}.proof.json").write_text(json.dumps(proof_fields(h)))
    shutil.copyfile(PHOTO, work / "photo.jpg")
    dump = tmp_path / "share.tar.gz"
    with tarfile.open(dump, "w:gz") as tf:  # the proof before the photo: read back after it
        for name in (f"{h}.proof.json", "photo.jpg"):
            tf.add(work / name, f"export/{name}")
    r = cli_archive("ingest", dump, "--unpack", "--json", check=True)
    assert "1 sidecar(s) linked" in r.stderr
    shown = cli_archive("show", h, "--json", check=True).json()
    assert [checks(s) for s in shown["sidecars"]] == [{"proofmode-file-hash": "passed"}]
