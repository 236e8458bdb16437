"""The real S3 (a single-node Ceph radosgw) and PostgreSQL of scripts/services.sh for the tests
that need them (one start serves both).

`services_env()` returns the services' environment: from the process environment when .ci/run (or
the developer) started them and they answer, else it starts them once for the whole run (a file
lock keeps pytest-xdist's workers from starting two). None, with the reason, when they cannot
start."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import urllib.parse
import uuid
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("CUSTODY_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
PG_NEEDED = ("CUSTODY_TEST_PG",)  # a superuser URL of the services' PostgreSQL
STATE = Path(os.environ.get("CUSTODY_SERVICES_DIR", "/tmp/custody-services"))
LOCK = Path(f"{STATE}.lock")


def _parse(exports: str) -> dict[str, str]:
    env = {}
    for line in exports.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            env[name] = value
    return env


def _answers(url: str) -> bool:
    """Whether something accepts TCP connections at the host and port of `url`."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5):
            return True
    except OSError:
        return False


def _silent(env: dict[str, str]) -> list[str]:
    """The services of `env` that no longer answer (empty when all do)."""
    urls = {"PostgreSQL": env.get("CUSTODY_TEST_PG"), "radosgw": env.get("CUSTODY_S3_ENDPOINT")}
    return [name for name, url in urls.items() if url and not _answers(url)]


def _last_log_lines() -> str:
    """How the services' own logs ended, a few lines each: why they are gone, for the report."""
    logs = [STATE / "pg" / "server.log", *sorted((STATE / "ceph" / "log").glob("*.log"))]
    parts = []
    for log in logs:
        try:
            tail = log.read_text(errors="replace").splitlines()[-2:]
        except OSError:
            continue
        parts.append(f"{log.name}: " + " | ".join(line.strip()[:160] for line in tail))
    return "; ".join(parts) or "no logs left"


def _services_sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), *args],
                          capture_output=True, text=True, timeout=600)


def services_env(needed: tuple[str, ...] = NEEDED) -> tuple[dict[str, str] | None, str]:
    """(the environment, '') or (None, why the services cannot be had).

    Services that were started (by .ci/run, the developer, or another worker) but no longer
    answer are started again, once, under the lock, with a warning naming which and how their logs
    ended: a CI run once found both gone before its first test, and a run of silent refusals says
    nothing about why."""
    if all(os.environ.get(name) for name in needed):
        silent = _silent(dict(os.environ))
        if not silent:
            return {name: os.environ[name] for name in needed}, ""
        warnings.warn(f"the services of this run's environment do not answer ({', '.join(silent)}); "
                      f"their logs ended: {_last_log_lines()}; starting them again", stacklevel=2)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter; the others then read its env file
        running = _services_sh("env")
        if running.returncode == 0 and not _silent(_parse(running.stdout)):
            done = running  # up (started by another worker while this one waited)
        else:
            if running.returncode == 0:
                _services_sh("stop")  # started once, now silent: start afresh
            done = _services_sh("start")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"the services (scripts/services.sh) could not start: {last}"
    env = _parse(done.stdout)
    if missing := [name for name in needed if not env.get(name)]:
        return None, f"scripts/services.sh started without {missing[0]}"
    os.environ.update(env)  # the CLI subprocesses the tests run inherit it
    return {name: env[name] for name in needed}, ""


def _admin() -> Any:
    import psycopg

    return psycopg.connect(os.environ["CUSTODY_TEST_PG"], autocommit=True)


def new_role(password: str | None = None) -> str:
    """A login role of its own (dropped by drop_role); with a password, a member of
    custody_scram, which scripts/services.sh's pg_hba.conf makes give it (scram-sha-256)."""
    from psycopg import sql

    name = f"custody_role_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        if password is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        else:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE custody_scram").format(
                sql.Identifier(name), sql.Literal(password)))
    return name


def drop_role(name: str) -> None:
    """Drop a role of new_role's (drop the databases granting it anything first)."""
    from psycopg import sql

    assert name.startswith("custody_role_")
    with _admin() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def passwords_enforced() -> bool:
    """Whether this cluster makes custody_scram's members give a password (a cluster started
    by an older scripts/services.sh does not: `bash scripts/services.sh pg-passwords`)."""
    with _admin() as conn:
        rows = conn.execute("SELECT 1 FROM pg_hba_file_rules WHERE '+custody_scram' = ANY(user_name) "
                            "AND auth_method = 'scram-sha-256'").fetchall()
    return bool(rows)


def url_as(url: str, role: str) -> str:
    """The same database, as another role (no password in the URL)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{role}@{rest.partition('@')[2]}"


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


def new_database(server_url: str | None = None, icu_locale: str | None = None) -> str:
    """A PostgreSQL database of its own for one test (or module), random name; its postgresql://
    URL, as the superuser (`server_url`, else $CUSTODY_TEST_PG). With `icu_locale` (e.g.
    "en-US"), text sorts by that language's rules by default, as on many production servers, not
    byte-wise."""
    import psycopg

    server = server_url or os.environ["CUSTODY_TEST_PG"]
    name = f"custody_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as conn:
        locale = (f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
                  if icu_locale else "")
        conn.execute(f"CREATE DATABASE {name}{locale}")
    return server.rsplit("/", 1)[0] + "/" + name


def drop_database(first: str, url: str | None = None) -> None:
    """Drop a database new_database made: drop_database(url) or drop_database(server_url, url)."""
    import psycopg

    server, target = (os.environ["CUSTODY_TEST_PG"], first) if url is None else (first, url)
    name = target.rsplit("/", 1)[1].split("?", 1)[0]
    assert name.startswith("custody_test_")  # never another's
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
