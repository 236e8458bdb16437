"""Entry format 2: a custodian signs a statement away from the archive's write lock; the archive
chains it (docs/FORMAT.md §5.8). Local appends stay format 1 (signed whole, `seq` and `prev`
included); a log mixes both formats; archives and packages of format 1 still verify."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from custody.core import canonical
from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.ops.keyfiles import load_key
from custody.ops.statements import statement_file

from .conftest import DATA, PASSPHRASE, Cli, one_line_error

V1 = DATA / "format-v1"
CARBON = "150ae0f1e55904befebbcf7f97cf7b606a0a79b71b6e8166ee33a7bdf849ecff"


def v1_cli(tmp_path) -> Cli:
    """A copy of the format 1 archive (tests/data/format-v1, written before format 2), acting as
    its admin."""
    shutil.copytree(V1 / "archive", tmp_path / "archive")
    (tmp_path / "archive" / "objects" / "tmp").mkdir(exist_ok=True)
    for name in ("alice.key", "alice.key.pub"):
        shutil.copy(V1 / name, tmp_path / name)
    (tmp_path / "alice.key").chmod(0o600)
    return Cli(tmp_path, tmp_path / "archive", tmp_path / "alice.key")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _note_statement(cli: Cli, text: str) -> entries.SignedStatement:
    """A note statement signed on 'the device': the custodian's key, no archive, no lock."""
    origin = json.loads((cli.archive / "custody.json").read_text())["origin"]
    key = load_key(cli.key, PASSPHRASE)
    statement = entries.Statement(log=origin, actor=key.key_id, action="note", item=CARBON,
                                  details={"text": text}, time=_now(),
                                  nonce=secrets.token_hex(16))
    return entries.sign_statement(statement, key)


def _entry_count(cli: Cli) -> int:
    return len(cli("log", "--json", check=True).stdout.splitlines())


def test_format_1_archive_and_package_still_verify(tmp_path):
    cli = v1_cli(tmp_path)
    assert "OK: 7 entries" in cli("verify", check=True).stdout
    log = [json.loads(x) for x in cli("log", "--json", check=True).stdout.splitlines()]
    assert {e["entry_format"] for e in log} == {1} and log[2]["signed_at"] is None
    r = cli("verify-package", V1 / "package")
    assert r.code == 0, r.stderr


def _submit(cli: Cli, signed: entries.SignedStatement, name: str) -> int:
    path = cli.tmp / f"{name}.json"
    path.write_text(json.dumps(statement_file(signed)))
    seqs: list[int] = cli("submit", path, "--json", check=True).json()["entries"]
    return seqs[0]


def mixed_cli(tmp_path) -> Cli:
    """The format 1 archive grown with both formats interleaved: entries 7 and 9 are statements
    signed 'on a device' and submitted (format 2), 8 and 10 a note and a tag signed here
    (format 1)."""
    cli = v1_cli(tmp_path)
    assert _submit(cli, _note_statement(cli, "seen from the roof, before the others"), "s7") == 7
    cli("note", CARBON[:12], "a note signed at the archive", check=True)
    assert _submit(cli, _note_statement(cli, "a second statement from the field"), "s9") == 9
    cli("tag", CARBON[:12], "strike", check=True)
    return cli


def test_local_appends_stay_format_1_and_only_submitted_statements_are_format_2(tmp_path):
    cli = v1_cli(tmp_path)
    cli("tag", CARBON[:12], "strike", check=True)
    last = json.loads(cli("log", "--json", check=True).stdout.splitlines()[-1])
    assert last["entry_format"] == 1 and last["signed_at"] is None
    assert last["statement_id"] is None
    _submit(cli, _note_statement(cli, "from the field"), "s")
    last = json.loads(cli("log", "--json", check=True).stdout.splitlines()[-1])
    assert last["entry_format"] == 2 and last["statement_id"] and last["signed_at"]


def test_an_archive_mixing_both_formats_verifies_exports_and_its_package_verifies_offline(
        tmp_path):
    import re
    import subprocess
    import sys

    cli = mixed_cli(tmp_path)
    assert "OK: 11 entries" in cli("verify", check=True).stdout
    log = [json.loads(x) for x in cli("log", "--json", check=True).stdout.splitlines()]
    assert [e["entry_format"] for e in log] == [1] * 7 + [2, 1, 2, 1]
    pkg = tmp_path / "pkg"
    cli("export", CARBON[:12], "--purpose", "hand over", "-o", pkg, check=True)
    nowhere = {"CUSTODY_ARCHIVE": str(tmp_path / "no-such-archive")}
    r = cli("verify-package", pkg, "--json", env=nowhere)
    assert r.code == 0 and r.json()["ok"], r.stdout + r.stderr
    carried = {json.loads(line)["seq"]
               for line in (pkg / "custody" / "ledger.jsonl").read_text().splitlines()}
    assert {7, 8, 9, 10} <= carried
    # docs/VERIFYING.md's script and openssl steps, on a format 2 and a format 1 entry
    doc = (DATA.parent.parent / "docs" / "VERIFYING.md").read_text()
    (tmp_path / "check.py").write_text(re.search(r"```python\n(.*?)```", doc, re.S).group(1))
    proc = subprocess.run([sys.executable, str(tmp_path / "check.py"), str(pkg)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "all entries are in the checkpoint" in proc.stdout, (
        proc.stdout + proc.stderr)
    if shutil.which("openssl") is not None:
        shell = re.search(r"```sh\n# openssl: one entry's signature\n(.*?)```", doc, re.S).group(1)
        for seq in (7, 8):
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c",
                                   shell.replace("N=1 ", f"N={seq} ", 1)], cwd=pkg,
                                  capture_output=True, text=True)
            assert proc.returncode == 0 and proc.stdout.count(
                "Signature Verified Successfully") == 3, proc.stdout + proc.stderr


@pytest.mark.parametrize("seq", [7, 8], ids=["format-2-statement", "format-1-entry"])
def test_a_forged_entry_of_either_format_in_a_mixed_package_is_caught_offline(tmp_path, seq):
    """A careful forger edits one entry's text in the package and recomputes the BagIt
    manifests: the statement's or the entry's signature, and the inclusion proof, tell."""
    from .test_package import rebag

    cli = mixed_cli(tmp_path)
    pkg = tmp_path / "pkg"
    cli("export", CARBON[:12], "--purpose", "hand over", "-o", pkg, check=True)
    ledger = pkg / "custody" / "ledger.jsonl"
    lines = [json.loads(x) for x in ledger.read_text().splitlines()]
    for line in lines:
        if line["seq"] == seq:
            value = json.loads(base64.b64decode(line["entry"]))
            signed = value["statement"] if value["v"] == 2 else value
            signed["details"]["text"] = "nothing was seen"
            line["entry"] = base64.b64encode(canonical.encode(value)).decode()
    ledger.write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines))
    rebag(pkg)
    r = cli("verify-package", pkg, env={"CUSTODY_ARCHIVE": str(tmp_path / "no-such-archive")})
    assert r.code == 1, r.stdout + r.stderr
    assert f"entry {seq}" in r.stdout + r.stderr and "Traceback" not in r.stderr


def test_a_statement_signed_without_the_lock_is_chained_later_and_verifies(tmp_path):
    cli = v1_cli(tmp_path)
    signed = _note_statement(cli, "seen on the ground, before the others")
    # others append while the statement waits on the device
    cli("tag", CARBON[:12], "strike", check=True)
    cli("note", CARBON[:12], "a later note", check=True)
    path = tmp_path / "statement.json"
    path.write_text(json.dumps(statement_file(signed)))
    out = cli("submit", path, "--json", check=True).json()
    cli("verify", check=True)
    entry = json.loads(cli("log", "--json", check=True).stdout.splitlines()[-1])
    assert out["entries"] == [entry["seq"]] and entry["details"]["text"].startswith("seen on")
    assert entry["statement_id"] == signed.statement_id and entry["signed_at"] < entry["time"]


def test_an_altered_or_replayed_statement_is_refused_and_nothing_appended(tmp_path):
    cli = v1_cli(tmp_path)
    signed = _note_statement(cli, "original words")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(statement_file(signed)))
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(statement_file(entries.SignedStatement(
        signed.body.replace(b"original words", b"altered words"), signed.signature))))
    before = _entry_count(cli)
    r = cli("submit", altered)
    assert r.code == 1 and "signature does not verify" in one_line_error(r)
    assert _entry_count(cli) == before
    cli("submit", good, check=True)
    r = cli("submit", good)
    assert r.code == 1 and "already in the log (a replay)" in one_line_error(r)
    assert _entry_count(cli) == before + 1
    cli("verify", check=True)


@pytest.mark.parametrize("field", ["log", "actor", "time"])
def test_a_statement_for_another_log_by_an_unenrolled_key_or_from_the_future_is_refused(
        tmp_path, field):
    cli = v1_cli(tmp_path)
    key = load_key(cli.key, PASSPHRASE)
    other = entries.Statement(
        log="custody.archive/elsewhere" if field == "log" else
        json.loads((cli.archive / "custody.json").read_text())["origin"],
        actor=key.key_id, action="note", item=CARBON, details={"text": "x"}, time=_now(),
        nonce=secrets.token_hex(16))
    signer = SigningKey.generate("Mallory") if field == "actor" else key
    if field == "actor":
        other = entries.Statement(**{**_fields(other), "actor": signer.key_id})
    if field == "time":  # an hour ahead of the archive's clock: more than the 5-minute skew
        later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        other = entries.Statement(**{**_fields(other), "time": later})
    path = tmp_path / "s.json"
    path.write_text(json.dumps(statement_file(entries.sign_statement(other, signer))))
    before = _entry_count(cli)
    r = cli("submit", path)
    said = {"log": "not this archive's", "actor": "not enrolled", "time": "ahead of the archive"}
    assert r.code == 1 and said[field] in one_line_error(r)
    assert _entry_count(cli) == before


def _fields(s: entries.Statement) -> dict[str, object]:
    return {f: getattr(s, f) for f in ("log", "actor", "action", "item", "details", "time",
                                       "nonce")}


def test_an_outsider_checks_a_format_1_package_with_the_documented_tools(tmp_path):
    """docs/VERIFYING.md's Python script and openssl steps, on the package made before format 2
    (tests/test_package.py runs them on a package made now; the mixed-format test above, on
    format 2 entries)."""
    import re
    import subprocess
    import sys

    doc = (DATA.parent.parent / "docs" / "VERIFYING.md").read_text()
    (tmp_path / "check.py").write_text(re.search(r"```python\n(.*?)```", doc, re.S).group(1))
    proc = subprocess.run([sys.executable, str(tmp_path / "check.py"), str(V1 / "package")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "1 items match" in proc.stdout, proc.stdout + proc.stderr
    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    shell = re.search(r"```sh\n# openssl: one entry's signature\n(.*?)```", doc, re.S).group(1)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", shell], cwd=V1 / "package",
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.count("Signature Verified Successfully") == 3, (
        proc.stdout + proc.stderr)
