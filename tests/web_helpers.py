"""The web interface under test: the real `custody serve` on an archive with real JPEGs, signed
in through the link `custody login` prints, driven in Debian's headless Chromium (Playwright).

One server and one browser per test module (CI budget): see docs/WEB.md "Adding a page".
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from custody.core.signing import SigningKey
from custody.ops.keyfiles import write_new_key
from tests.conftest import PASSPHRASE, Cli
from tests.service_server import Subprocess

MEDIA = Path(__file__).parent / "data" / "media"
CHROMIUM = "/usr/bin/chromium"
# who -> (name, role); "admin" made the archive. Arabic names: shown right in either language
PEOPLE = {"admin": ("Alice Admin", "admin"), "field": ("فرح الميدانية", "field"),
          "reviewer": ("Rami Reviewer", "reviewer"),
          "investigator": ("إيناس المحققة", "investigator"),
          "revoked": ("Omar Revoked", "investigator")}


@dataclass
class WebArchive:
    """A served archive: its CLI (as the admin), the server, the custodians' keys."""

    tmp: Path
    cli: Cli
    base: str
    server: Subprocess
    keys: dict[str, SigningKey]
    items: list[str] = field(default_factory=list)

    def as_(self, who: str) -> Cli:
        """The CLI acting as another custodian."""
        other = Cli(self.tmp, self.cli.archive, self.tmp / "keys" / f"{who}.key")
        return other

    def login_url(self, who: str = "reviewer") -> str:
        """What `custody login --server BASE` prints for this custodian."""
        out = self.as_(who)("login", "--server", self.base, check=True).stdout.strip()
        assert out.startswith(self.base + "/signin?token="), out
        return out


def make_web_archive(tmp: Path, files: list[Path] | None = None,
                     serve_args: tuple[str, ...] = ("--checkpoint-every", "0")) -> WebArchive:
    """An archive with every role enrolled (one revoked), the given JPEGs ingested, served
    (`serve_args`: the server's options; by default it holds no archive key)."""
    keys = {who: write_new_key(tmp / "keys" / f"{who}.key", name, PASSPHRASE)
            for who, (name, _) in PEOPLE.items()}
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "admin.key")
    cli("init", "--name", "Web Test Centre", check=True)
    for who, (_, role) in PEOPLE.items():
        if who != "admin":
            cli("enroll", tmp / "keys" / f"{who}.key.pub", "--role", role, check=True)
    cli("revoke", keys["revoked"].key_id, "--reason", "left the team", check=True)
    for f in files if files is not None else [MEDIA / "aleppo-gps.jpg"]:
        cli("ingest", f, "--case", "ALP-1", check=True)
    items = [row["sha256"] for row in cli("list", "--json", check=True).json()]
    server = Subprocess(tmp / "archive", tmp / "serve.log", *serve_args,
                        start_timeout=120)  # a loaded CI machine starts it slowly
    return WebArchive(tmp, cli, server.base, server, keys, items)


@pytest.fixture(scope="module")
def web_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebArchive]:
    served = make_web_archive(tmp_path_factory.mktemp("web"))
    yield served
    served.server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's), shared by a module's tests; each test opens its own
    context (cookies apart) with `browser.new_context()`."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        yield chromium
        chromium.close()


def sign_in(page: object, url: str) -> None:
    """Open a `custody login` link and press its Sign in button; lands on the dashboard."""
    page.goto(url)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/")  # type: ignore[attr-defined]


def copy_media(names: dict[str, str], folder: Path) -> list[Path]:
    """Copies of tests/data/media files under other (hostile) names: {new name: source}."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for new, source in names.items():
        shutil.copy(MEDIA / source, folder / new)
        out.append(folder / new)
    return out


def entries(cli: Cli) -> list[dict]:
    return [json.loads(line) for line in cli("log", "--json", check=True).stdout.splitlines()]


def opened(context):
    """A page that waits long enough on a shared, loaded machine (a report verifies the ledger)."""
    page = context.new_page()
    page.set_default_timeout(120_000)
    return page


def sign_on_device(page, served: WebArchive, who: str) -> str:
    """What the custodian does on their own computer: run the command the page shows, paste the
    statement it prints back into the page. Returns what the command said it signs (stderr)."""
    command = page.locator("#command").inner_text().strip()
    draft = command.removeprefix("custody sign-statement ").strip()
    done = served.as_(who)("sign-statement", draft, check=True)
    assert "signing this " in done.stderr  # a statement, or an evidence package
    page.fill("#statement", done.stdout)
    return done.stderr


def accesses(served: WebArchive, item: str) -> list[dict]:
    rows = [json.loads(x) for x in served.cli("log", item, "--json", check=True).stdout.splitlines()]
    return [r for r in rows if r["action"] == "access"]
