"""Shared fixtures: real keys, real archives on disk, and the real `custody` command."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from custody.core.signing import SigningKey
from custody.ops.archive import Archive
from custody.ops.keyfiles import write_new_key

DATA = Path(__file__).parent / "data"
PASSPHRASE = "correct horse battery staple"
ARCHIVE_PASSPHRASE = "archive key: tulip ember quarry lantern"  # its own, never a custodian's


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


class Cli:
    """Runs `python -m custody` as a user would, with an archive and an acting key."""

    def __init__(self, tmp: Path, archive: Path, key: Path) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "CUSTODY_ARCHIVE": str(archive),
            "CUSTODY_KEY": str(key),
            "CUSTODY_PASSPHRASE": PASSPHRASE,
            "CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE,
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "home" / ".config"),
            # its own spool (docs/FORMAT.md §12.3): `custody lock` in one test empties no other's
            "XDG_RUNTIME_DIR": str(tmp / "run"),
        }
        (tmp / "run").mkdir(mode=0o700, exist_ok=True)
        self.archive = archive
        self.key = key

    def __call__(self, *args: str, env: dict[str, str] | None = None, check: bool = False,
                 timeout: float = 120) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "custody", *map(str, args)],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"custody {' '.join(map(str, args))} exited {proc.returncode}:\n"
                                 f"{proc.stderr}")
        return result


_MADE_KEYS: dict[str, tuple[Path, SigningKey]] = {}


@pytest.fixture(scope="session")
def _key_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("made-keys")


def _key_maker(folder: Path) -> Callable[[Path, str], SigningKey]:
    """make(path, name): the key of that name, made once in `folder` and copied to path."""

    def make(path: Path, name: str) -> SigningKey:
        if name not in _MADE_KEYS:
            made = folder / f"key-{len(_MADE_KEYS)}"
            _MADE_KEYS[name] = (made, write_new_key(made, name, PASSPHRASE))
        made, key = _MADE_KEYS[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(made, path)
        shutil.copy2(str(made) + ".pub", str(path) + ".pub")
        return key

    return make


@pytest.fixture
def made_key(_key_folder: Path):
    """made_key(path, name): a custodian key (PASSPHRASE) at path, made once per session and
    copied: key files cost a quarter second each (scrypt at its real cost, never lowered)."""

    return _key_maker(_key_folder)


@pytest.fixture(scope="session", autouse=True)
def _shared_bytecode(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The `python -m custody` processes the tests start (about 2,000) share compiled bytecode,
    kept in this run's own temporary folder (pytest makes it 0700), even where the environment
    sets PYTHONDONTWRITEBYTECODE: each would otherwise compile custody's modules again, about a
    fifth of its start (docs/PERFORMANCE.md). Nothing is written in the source tree."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one for all workers
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(shared / "bytecode")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "archive", tmp_path / "keys" / "alice.key")


@pytest.fixture
def cli_archive(cli: Cli, made_key) -> Cli:
    """A CLI with Alice's key made and an archive initialised by her (admin)."""
    made_key(cli.key, "Alice Admin")
    cli("init", "--name", "Test Documentation Centre", check=True)
    return cli


@pytest.fixture
def alice(tmp_path: Path, made_key) -> SigningKey:
    return made_key(tmp_path / "keys" / "alice.key", "Alice Admin")


@pytest.fixture
def archive(tmp_path: Path, alice: SigningKey) -> Archive:
    return Archive.create(tmp_path / "archive", "Test Documentation Centre", alice,
                          ARCHIVE_PASSPHRASE)


def cpu_seconds(cli: Cli, *args: object, env: dict[str, str] | None = None,
                runs: int = 2) -> float:
    """The least CPU time (user + system, the command and every process it waited for) of
    `runs` runs of one command. A ratio of CPU times holds on a loaded machine where wall
    times do not: CI failed a 3x wall-time ratio once when another worker took the cores."""
    best = float("inf")
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli(*map(str, args), check=True, timeout=600, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return best


def one_line_error(result: Result) -> str:
    """The stderr of a failed command: exactly one line, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) >= 1, "expected an error message on stderr"
    return lines[-1]


# The quick suite (`scripts/test.sh --quick`, i.e. `pytest -m "not slow"`: under 2 minutes) is the
# pure core and the command line's basics. Every other module, and every test marked slow, runs in
# the full suite only (CI runs the full suite). A new module is slow until it is listed here; one
# test of a slow module joins the quick suite with @pytest.mark.quick (one per area the quick suite
# would otherwise not touch: search, report, package, the service).
QUICK_MODULES = {"test_core", "test_merkle", "test_note", "test_store", "test_cli", "test_output"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("quick") is not None:
            continue
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] not in QUICK_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def mount_tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """mount_tmpfs(DIR, "3m"): a tmpfs of that size on DIR (a disk that fills up for real),
    unmounted after the test; skips, saying why, where mounting is impossible (not root)."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a full disk is a small tmpfs, and mounting one needs root")
        if shutil.which("mount") is None:
            pytest.skip("a full disk is a small tmpfs: there is no mount command")
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="session")
def s3_services() -> dict[str, str]:
    """The real S3 service (radosgw) of scripts/services.sh, started once per run if not running;
    tests that need it skip, saying why, only when it cannot start (tests/s3_services.py)."""
    from tests.s3_services import services_env

    env, why = services_env()
    if env is None and os.environ.get("CUSTODY_REQUIRE_SERVICES"):
        pytest.fail(why)  # CI (.ci/run): these tests must run
    if env is None:
        pytest.skip(why)
    return env


@pytest.fixture(scope="session")
def pg_services() -> dict[str, str]:
    """The real PostgreSQL of scripts/services.sh (same start as `s3_services`): CUSTODY_TEST_PG
    is a superuser URL; each test makes its own database (tests/s3_services.py new_database).
    Skips saying why only when it cannot start; fails under CUSTODY_REQUIRE_SERVICES."""
    from tests.s3_services import PG_NEEDED, services_env

    env, why = services_env(PG_NEEDED)
    if env is None and os.environ.get("CUSTODY_REQUIRE_SERVICES"):
        pytest.fail(why)
    if env is None:
        pytest.skip(why)
    return env


@pytest.fixture(scope="session")
def pg_server(pg_services: dict[str, str]) -> str:
    """A superuser URL of the services' PostgreSQL."""
    return pg_services["CUSTODY_TEST_PG"]


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A database of this test's own (random name), dropped afterwards."""
    from tests.s3_services import drop_database, new_database

    url = new_database(pg_server)
    yield url
    drop_database(pg_server, url)


@pytest.fixture(scope="session")
def session_made_key(_key_folder: Path):
    """made_key for module- or session-scope fixtures (an archive prepared once per module and
    copied per test): the same keys, made once per session and copied."""

    return _key_maker(_key_folder)


def sealed_team(tmp: Path, made_key: Callable[[Path, str], object]) -> Cli:
    """A sealed archive (`init --encrypt`) by Alice Admin with Bob Field (field) and Carol
    Investigator (investigator) enrolled, their keys in tmp/keys: the team the sealed-archive
    tests share (each ingests its own media)."""
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    made_key(cli.key, "Alice Admin")
    made_key(tmp / "keys" / "bob.key", "Bob Field")
    made_key(tmp / "keys" / "carol.key", "Carol Investigator")
    cli("init", "--name", "Field Team North", "--encrypt", check=True)
    cli("enroll", tmp / "keys" / "bob.key.pub", "--role", "field", check=True)
    cli("enroll", tmp / "keys" / "carol.key.pub", "--role", "investigator", check=True)
    return cli


def copy_archive(prepared: Cli, tmp: Path) -> Cli:
    """A Cli on a copy, under tmp, of an archive prepared once (module scope) and its keys folder:
    a test that writes gets its own archive without paying for `init` and the setup again."""
    shutil.copytree(prepared.archive, tmp / "archive")
    keys = prepared.key.parent
    if keys.is_relative_to(prepared.tmp):
        shutil.copytree(keys, tmp / keys.relative_to(prepared.tmp), dirs_exist_ok=True)
        key = tmp / prepared.key.relative_to(prepared.tmp)
    else:
        key = prepared.key
    return Cli(tmp, tmp / "archive", key)
