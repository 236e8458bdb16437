"""Screenshots of the web interface for docs/screenshots/: the real `custody serve` on a demo
archive, signed in through `custody login`'s link, pages saved by headless Chromium.

    PYTHONPATH=$PWD python scripts/screenshots.py [--out docs/screenshots]

Needs Debian's chromium (/usr/bin/chromium) and playwright. Add a page to PAGES to shoot it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from custody.ops.keyfiles import write_new_key

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "tests" / "data" / "media"
PASSPHRASE = "screenshots only: not a real key"
# name of the PNG -> (path, full page?)
PAGES: dict[str, tuple[str, bool]] = {
    "signin": ("/signin", False),
    "dashboard": ("/", True),
    "log": ("/log", False),
    "consistency": ("/log/consistency?old=1&new=2", True),
    "search": ("/search?near=36.2021,37.1343&within_km=50&since=2016-01-01&until=2026-12-31", True),
    "crossref": ("/crossref", True),
    "item": ("/items/{item}", True),  # the first item ingested
}
ON_PHONE = {"dashboard", "item", "search"}
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


class Demo:
    """A demo archive in a temporary folder, made with the real CLI."""

    def __init__(self, tmp: Path) -> None:
        self.items: list[str] = []
        self.tmp = tmp
        self.env = {**os.environ, "CUSTODY_ARCHIVE": str(tmp / "archive"),
                    "CUSTODY_PASSPHRASE": PASSPHRASE,
                    "CUSTODY_ARCHIVE_PASSPHRASE": "archive key: screenshots only",
                    "HOME": str(tmp), "XDG_RUNTIME_DIR": str(tmp / "run")}
        (tmp / "run").mkdir(mode=0o700)
        self.keys = {who: write_new_key(tmp / f"{who}.key", name, PASSPHRASE) for who, name in [
            ("admin", "Alice Admin"), ("investigator", "إيناس المحققة"),
            ("reviewer", "Rami Reviewer")]}

    def run(self, *args: object, who: str = "admin") -> str:
        done = subprocess.run([sys.executable, "-m", "custody", *map(str, args)],
                              env={**self.env, "CUSTODY_KEY": str(self.tmp / f"{who}.key")},
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"custody {' '.join(map(str, args))}: {done.stderr.strip()}")
        return done.stdout

    def make(self) -> None:
        self.run("init", "--name", "Demo Documentation Centre")
        self.run("enroll", self.tmp / "investigator.key.pub", "--role", "investigator")
        self.run("enroll", self.tmp / "reviewer.key.pub", "--role", "reviewer")
        for name in ["aleppo-gps.jpg", "carbon-south-west.jpg", "clock-no-offset.jpg"]:
            self.run("ingest", MEDIA / name, "--case", "ALP-1", "--note", "تسليم من المراسل")
        items = [row["sha256"] for row in json.loads(self.run("list", "--json"))]
        self.items = items
        self.run("incident", "new", "INC-7", "--date", "2016-10-03", "--description",
                 "قصف سوق الحي — market shelling", "--case", "ALP-1",
                 "--place", "36.2021,37.1343,Aleppo")
        self.run("checkpoint")
        self.run("note", items[0], "الصورة تطابق شهادة الشاهد")
        self.run("transfer", items[1], "--to", self.keys["investigator"].key_id, "--purpose",
                 "analysis for the case file")
        self.run("verify", "--record")
        self.run("checkpoint")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        demo = Demo(Path(folder))
        demo.make()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "custody", "serve", "--listen", f"127.0.0.1:{port}",
             "--checkpoint-every", "0"], env=demo.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    httpx.get(base + "/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            shoot(demo, base, args.out)
        finally:
            server.terminate()
            server.wait(10)


def shoot(demo: Demo, base: str, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox"])
        for lang in ("en", "ar"):
            for device, viewport in [("desktop", DESKTOP), ("phone", PHONE)]:
                context = browser.new_context(viewport=viewport, locale=lang,
                                              extra_http_headers={"Accept-Language": lang})
                page = context.new_page()
                url = demo.run("login", "--server", base, who="reviewer").strip()
                page.goto(url)
                page.screenshot(path=str(out / f"web-signin-confirm-{lang}-{device}.png"))
                page.locator("form[action='/signin'] button").click()
                page.wait_for_url("**/")
                for name, (path, full) in PAGES.items():
                    if device == "phone" and name not in ON_PHONE:
                        continue
                    page.goto(base + path.format(item=demo.items[0]))
                    page.screenshot(path=str(out / f"web-{name}-{lang}-{device}.png"),
                                    full_page=full)
                context.close()
        browser.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
