"""custody in a real terminal (tmux): progress bars, Ctrl-C during ingest, the passphrase prompt.

Each test runs the real command in a tmux pane of its own server, types with send-keys and reads
the screen with capture-pane, as a person at the terminal would see it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import PASSPHRASE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (scripts/setup.sh)"),
]


class Terminal:
    """One tmux server and pane, 160x50, running commands in bash with the test's environment."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.runs = 0
        self.sockets: list[str] = []

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sockets[-1], *args], check=True,
                              capture_output=True, text=True).stdout

    def start(self, command: str) -> Path:
        """Run `command` in a new pane; return the file its exit code will be written to."""
        self.runs += 1
        done = self.tmp / f"exit-{self.runs}"
        script = self.tmp / f"run-{self.runs}.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.env.items())
        script.write_text(f"{exports}{command}\necho $? > {done}\nsleep 600\n")
        if self.sockets:
            self.close()
        # a server of its own per command: a server just killed may still hold its socket
        self.sockets.append(f"custody-test-{os.getpid()}-{self.tmp.name}-{self.runs}")
        self.tmux("new-session", "-d", "-x", "160", "-y", "50", f"bash --norc {script}")
        return done

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J")

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def close(self) -> None:
        for socket in self.sockets:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(cli_archive, tmp_path):
    env = {k: v for k, v in cli_archive.env.items()
           if k.startswith(("CUSTODY_", "PYTHON", "HOME", "XDG_", "PATH", "LANG", "LC_"))}
    env["TERM"] = "xterm-256color"
    t = Terminal(tmp_path, env)
    yield t
    t.close()


def exit_code(done: Path, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while not done.exists() or not done.read_text().strip():
        assert time.monotonic() < deadline, "the command did not finish"
        time.sleep(0.1)
    return int(done.read_text())


def custody(*args: object) -> str:
    return shlex.join([sys.executable, "-m", "custody", *map(str, args)])


def big_file(path: Path, mib: int) -> Path:
    """Incompressible content, made quickly (a repeated random block with a counter)."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        for i in range(mib):
            out.write(i.to_bytes(8, "big") + block[8:])
    return path


def test_progress_bars_show_on_a_long_ingest_and_export(terminal, cli_archive, tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    big = big_file(folder / "VID_0001.MP4", 768)
    done = terminal.start(custody("ingest", folder, "--case", "BIG"))
    bar = terminal.wait_for("MB")  # rich's bar: ingest ━━━━ 123.4/805.3 MB 50.1 MB/s 0:00:12
    assert "ingest" in bar and "/805.3 MB" in bar, bar
    assert exit_code(done) == 0
    final = terminal.screen()
    assert "new" in final and str(big) in final and "Traceback" not in final

    out = tmp_path / "package.zip"
    done = terminal.start(custody("export", "--case", "BIG", "--purpose", "court", "-o", out))
    bar = terminal.wait_for("MB")
    assert "export" in bar and "/805.3 MB" in bar, bar
    assert exit_code(done) == 0
    assert "wrote " in terminal.screen() and out.exists()

    # Ctrl-C in the middle of an export: nothing half-written is left, and it says so.
    second = tmp_path / "second.zip"
    done = terminal.start(custody("export", "--case", "BIG", "--purpose", "again", "-o", second))
    terminal.wait_for("MB")
    terminal.keys("C-c")
    assert exit_code(done) == 130
    screen = terminal.screen()
    assert "Traceback" not in screen and "no package was written" in screen, screen
    assert sorted(p.name for p in tmp_path.iterdir() if "second" in p.name) == []
    assert cli_archive("verify", "--ledger-only").code == 0


def test_ctrl_c_during_ingest_says_what_was_stored_and_leaves_nothing_half_written(
        terminal, cli_archive, tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    for i in range(400):
        (folder / f"IMG_{i:04d}.bin").write_bytes(i.to_bytes(4, "big") + os.urandom(256 << 10))
    done = terminal.start(custody("ingest", folder))
    terminal.wait_for("new ")  # some files are stored (a line is printed only once committed)
    terminal.keys("C-c")
    assert exit_code(done) == 130
    screen = terminal.screen()
    assert "Traceback" not in screen, screen
    said = next(line for line in screen.splitlines() if "interrupted" in line)
    assert "file(s) stored and recorded" in said and "run the same ingest again" in said, said
    stored = int(said.split("interrupted: ")[1].split(" of ")[0])
    assert 0 < stored < 400
    # Exactly what it said is recorded; the archive verifies (an object of the batch in flight
    # may stay behind unreferenced: a notice, never an entry without its object).
    listed = cli_archive("list", "--json", check=True).json()
    assert len(listed) == stored
    assert cli_archive("verify", "--json").json()["ok"] is True
    seq_before_rerun = len(cli_archive("log", "--json", check=True).stdout.splitlines())
    # The re-run finishes the job: what was recorded is `unchanged` (nothing appended), the rest new.
    again = cli_archive("ingest", folder, check=True)
    assert again.stdout.count("unchanged ") == stored and again.stdout.count("new ") == 400 - stored
    assert len(cli_archive("log", "--json", check=True).stdout.splitlines()) == seq_before_rerun + 400 - stored


def test_the_passphrase_prompt_works_on_a_terminal(terminal, cli_archive, tmp_path):
    del terminal.env["CUSTODY_PASSPHRASE"]
    key = tmp_path / "keys" / "carol.key"
    done = terminal.start(custody("key", "new", "--name", "Carol Field", "-o", key))
    terminal.wait_for("Passphrase for the key:")
    terminal.keys("-l", PASSPHRASE)
    terminal.keys("Enter")
    terminal.wait_for("Again:")
    terminal.keys("-l", PASSPHRASE)
    terminal.keys("Enter")
    assert exit_code(done) == 0
    assert PASSPHRASE not in terminal.screen()  # not echoed
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600

    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"prompted ingest")
    done = terminal.start(custody("ingest", photo, "--json"))
    terminal.wait_for("Passphrase for the key:")
    terminal.keys("-l", "not the passphrase")
    terminal.keys("Enter")
    assert exit_code(done) == 3
    assert "wrong passphrase" in terminal.screen()
    done = terminal.start(custody("ingest", photo))
    terminal.wait_for("Passphrase for the key:")
    terminal.keys("-l", PASSPHRASE)
    terminal.keys("Enter")
    assert exit_code(done) == 0
    assert json.loads(cli_archive("list", "--json", check=True).stdout)[0]["size"] == 15
