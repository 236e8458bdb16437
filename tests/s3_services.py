"""The real S3 (a single-node Ceph radosgw from scripts/services.sh) for the tests that need one.

`services_env()` returns the services' environment: from the process environment when .ci/run (or
the developer) started them, else it starts them once for the whole run (a file lock keeps pytest-
xdist's workers from starting two). None, with the reason, when they cannot start."""

from __future__ import annotations

import fcntl
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("CUSTODY_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
PG_NEEDED = ("CUSTODY_TEST_PG",)  # a superuser URL of the services' PostgreSQL
LOCK = Path(os.environ.get("CUSTODY_SERVICES_DIR", "/tmp/custody-services") + ".lock")


def _parse(exports: str) -> dict[str, str]:
    env = {}
    for line in exports.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            env[name] = value
    return env


def services_env(needed: tuple[str, ...] = NEEDED) -> tuple[dict[str, str] | None, str]:
    """(the environment, '') or (None, why the services cannot be had)."""
    if all(os.environ.get(name) for name in needed):
        return {name: os.environ[name] for name in needed}, ""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter; the others then read its env file
        done = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "start"],
                              capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"the services (scripts/services.sh) could not start: {last}"
    env = _parse(done.stdout)
    if not all(env.get(name) for name in needed):
        return None, f"scripts/services.sh started without {', '.join(needed)}"
    os.environ.update(env)  # the CLI subprocesses the tests run inherit it
    return env, ""


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=os.environ["CUSTODY_S3_ENDPOINT"],
                        config=Config(request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required",
                                      s3={"addressing_style": "path"}))


def new_bucket(lock: bool = True) -> str:
    """A bucket of its own for one test (with Object Lock unless told otherwise)."""
    name = f"custody-test-{uuid.uuid4().hex[:16]}"
    s3_client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    return name


def new_database(server_url: str, icu_locale: str | None = None) -> str:
    """A PostgreSQL database of its own for one test (or module), random name; its URL. With
    `icu_locale` (e.g. "en-US"), text sorts by that language's rules by default, as on many
    production servers, not byte-wise."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"custody_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        locale = (f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
                  if icu_locale else "")
        conn.execute(f"CREATE DATABASE {name}{locale}")
    return make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, url: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
