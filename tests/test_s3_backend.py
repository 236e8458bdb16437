"""An archive whose objects are in S3 with Object Lock (issue 15), on the real radosgw of
scripts/services.sh: init's refusals, every command unchanged above the store, and Object Lock
shown refusing the archive's own credentials."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import DATA, Cli, one_line_error
from .s3_services import new_bucket, s3_client

PHOTO = DATA / "media" / "aleppo-gps.jpg"
PHOTO2 = DATA / "media" / "carbon-south-west.jpg"
VIDEO = DATA / "media" / "homs-loci.mp4"
PHOTO3 = DATA / "media" / "clock-no-offset.jpg"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def key_of(archive: Path, sha256: str) -> tuple[str, str]:
    """(bucket, key) of an object, from custody.json (docs/FORMAT.md Appendix A.3)."""
    objects = json.loads((archive / "custody.json").read_text())["objects"]
    return objects["bucket"], f"{objects['prefix']}/sha256/{sha256[:2]}/{sha256}"


def s3_archive(tmp: Path, name: str = "archive") -> Cli:
    cli = Cli(tmp, tmp / name, tmp / "keys" / "alice.key")
    if not cli.key.exists():
        cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Documentation Centre", "--objects", f"s3://{new_bucket()}/evidence",
        "--retention-days", "1", check=True)
    return cli


@pytest.fixture(scope="module")
def story(s3_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """Alice ingests two photos and a video into an S3 archive; Bob is enrolled."""
    tmp = tmp_path_factory.mktemp("s3")
    cli = s3_archive(tmp)
    bob = tmp / "keys" / "bob.key"
    cli("key", "new", "--name", "Bob Investigator", "-o", bob, check=True)
    cli("enroll", f"{bob}.pub", "--role", "investigator", check=True)
    cli("ingest", PHOTO, PHOTO2, VIDEO, "--case", "C1", check=True)
    cli.bob = {"CUSTODY_KEY": str(bob)}  # type: ignore[attr-defined]
    return cli


def test_init_refuses_an_unusable_s3_store_and_creates_nothing(
    s3_services: dict[str, str], cli: Cli, made_key: Any
) -> None:
    made_key(cli.key, "Alice Admin")
    locked = new_bucket()
    cases = [
        ([f"s3://{new_bucket(lock=False)}/x"], {}, "has no Object Lock"),
        (["s3://custody-no-such-bucket/x"], {}, "there is no bucket custody-no-such-bucket"),
        ([f"s3://{locked}/x"], {"AWS_SECRET_ACCESS_KEY": "wrong"}, "refuses these S3 credentials"),
        ([f"s3://{locked}/x", "--s3-endpoint", "http://127.0.0.1:9"], {}, "cannot be reached"),
    ]
    for args, env, said in cases:
        result = cli("init", "--name", "X", "--objects", *args, env=env)
        assert result.code in (2, 3) and said in one_line_error(result), result.stderr
        assert not cli.archive.exists()
    assert s3_client().list_objects_v2(Bucket=locked).get("KeyCount") == 0


def test_ingest_verify_show_search_on_s3_with_each_objects_retention(story: Cli) -> None:
    config = json.loads((story.archive / "custody.json").read_text())["objects"]
    assert config == {"backend": "s3", "bucket": config["bucket"], "prefix": "evidence",
                      "endpoint": os.environ["CUSTODY_S3_ENDPOINT"],
                      "retention_mode": "COMPLIANCE", "retention_days": 1}
    assert not (story.archive / "objects").exists()  # nothing kept beside the ledger
    report = story("verify", "--json", check=True).json()
    assert report["ok"] and report["objects_checked"] == 3
    soon = datetime.now(UTC) + timedelta(days=1)
    for path in (PHOTO, PHOTO2, VIDEO):
        held = report["retention"][sha(path)]
        until = datetime.strptime(held["retain_until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert held["mode"] == "COMPLIANCE" and abs((until - soon).total_seconds()) < 600
    text = story("verify", check=True).stdout
    assert f"retained: object {sha(PHOTO)} COMPLIANCE until" in text
    found = story("search", "--case", "C1", "--json", check=True).json()
    assert found["count"] == 3


def test_get_export_import_transfer_and_report_on_s3(story: Cli, tmp_path: Path) -> None:
    photo = sha(PHOTO)
    story("get", photo[:12], "--purpose", "review", "-o", tmp_path / "copy.jpg", check=True)
    assert (tmp_path / "copy.jpg").read_bytes() == PHOTO.read_bytes()
    story("export", photo[:12], "--purpose", "court", "-o", tmp_path / "pkg.zip", check=True)
    receiver = s3_archive(tmp_path, "receiver")
    receiver("import", tmp_path / "pkg.zip", check=True)
    assert receiver("verify", "--json", check=True).json()["objects_checked"] >= 1
    offer = story("transfer", photo[:12], "--to", "Bob Investigator", "--purpose", "handover",
                  "--json", check=True).json()[0]["offer"]
    story("accept", str(offer), env=story.bob, check=True)  # type: ignore[attr-defined]
    story("report", photo[:12], "-o", tmp_path / "report.html", check=True)
    assert photo in (tmp_path / "report.html").read_text()


def test_object_lock_refuses_the_archives_own_credentials_to_delete_or_overwrite(
    story: Cli,
) -> None:
    """With the very credentials the archive writes with, the stored version of an object can
    neither be deleted nor changed: a PUT only adds a newer version, which custody never reads
    (it does not hash to the name) and verify names; the evidence still verifies."""
    s3 = s3_client()
    photo = sha(PHOTO)
    bucket, key = key_of(story.archive, photo)
    [stored] = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=stored["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    s3.put_object(Bucket=bucket, Key=key, Body=b"forged")  # a newer version, not an overwrite
    kept = s3.get_object(Bucket=bucket, Key=key, VersionId=stored["VersionId"])["Body"].read()
    assert kept == PHOTO.read_bytes()
    s3.delete_object(Bucket=bucket, Key=key)  # only a delete marker: the version stays
    report = story("verify", "--json", check=True).json()
    assert report["ok"] and report["retention"][photo]["mode"] == "COMPLIANCE"
    assert any(f"{key}?versionId=" in n for n in report["notices"])  # the forged version, named
    out = story.tmp / "after.jpg"
    story("get", photo[:12], "--purpose", "check", "-o", out, check=True)
    assert out.read_bytes() == PHOTO.read_bytes()


def test_verify_names_an_object_whose_retention_is_missing_or_lapsed(
    s3_services: dict[str, str], tmp_path: Path, made_key: Any
) -> None:
    """Versions of the same bytes put straight through boto3 without retention, or with one that
    lapses, become what is read: verify names each (exit 1)."""
    made_key(tmp_path / "keys" / "alice.key", "Alice Admin")
    cli = s3_archive(tmp_path)
    cli("ingest", PHOTO, PHOTO2, check=True)
    s3 = s3_client()
    bucket, key = key_of(cli.archive, sha(PHOTO))
    s3.put_object(Bucket=bucket, Key=key, Body=PHOTO.read_bytes())
    bucket, key2 = key_of(cli.archive, sha(PHOTO2))
    s3.put_object(Bucket=bucket, Key=key2, Body=PHOTO2.read_bytes(), ObjectLockMode="COMPLIANCE",
                  ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(seconds=2),
                  ContentMD5=_md5(PHOTO2))
    time.sleep(3)
    result = cli("verify", "--json")
    assert result.code == 1
    problems = result.json()["problems"]
    assert f"object {sha(PHOTO)} has no Object Lock retention: it could be deleted" in problems
    assert any(p.startswith(f"object {sha(PHOTO2)}: its Object Lock retention lapsed on")
               for p in problems)


def _md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_ingest_locks_an_object_it_finds_stored_without_retention(story: Cli) -> None:
    """The same bytes put at an item's name straight through boto3, with no retention, then
    ingested: ingest holds that version under retention as it would a new one."""
    s3 = s3_client()
    bucket, key = key_of(story.archive, sha(PHOTO3))
    s3.put_object(Bucket=bucket, Key=key, Body=PHOTO3.read_bytes())
    story("ingest", PHOTO3, check=True)
    assert s3.head_object(Bucket=bucket, Key=key)["ObjectLockMode"] == "COMPLIANCE"
    assert story("verify", sha(PHOTO3)[:12], "--json", check=True).json()["ok"]
