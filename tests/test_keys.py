"""Key backup and recovery (SLIP-39 shares) and key rotation, through the real command.

docs/KEYS.md: what is split, what each entry records, and how verify follows a custodian's (and
the archive's) chain of keys.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from custody.core import note
from custody.core.signing import SigningKey
from custody.ops.archive import Archive, Draft
from custody.ops.keyfiles import load_key, load_key_aside, write_new_key

from .conftest import ARCHIVE_PASSPHRASE, PASSPHRASE, one_line_error

NEW = "new passphrase: river stone owl"  # $CUSTODY_NEW_PASSPHRASE of restored and rotated keys


def _entries(cli) -> list[dict]:
    return [json.loads(line) for line in cli("log", "--json", check=True).stdout.splitlines()]


def _photo(cli) -> Path:
    """A small file to ingest (what it is does not matter here)."""
    dst = cli.tmp / "statement.txt"
    dst.write_text("witness statement, page 1\n")
    return dst


def test_any_threshold_of_shares_restores_the_key_and_fewer_or_mistyped_fail(cli_archive):
    cli = cli_archive
    backup = cli("key", "backup", "--shares", "5", "--threshold", "3", "-o", cli.tmp / "shares",
                 "--json", check=True).json()
    words = backup["mnemonics"]
    assert len(words) == 5 and backup["threshold"] == 3
    for i in range(1, 6):
        for ext in ("txt", "png", "svg"):
            card = cli.tmp / "shares" / f"share-{i}.{ext}"
            assert card.stat().st_mode & 0o777 == 0o600
    card = (cli.tmp / "shares" / "share-2.txt").read_text()
    assert "share 2 of 5" in card and "Alice Admin" in card and words[1] in card
    assert (cli.tmp / "shares" / "share-1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    env = {"CUSTODY_NEW_PASSPHRASE": NEW}
    alice = load_key(cli.key, PASSPHRASE)
    # any three: from the cards' files, and from the words given as arguments
    cards = [f"--from={cli.tmp / 'shares' / f'share-{i}.txt'}" for i in (1, 3, 5)]
    done = cli("key", "restore", *cards, "-o", cli.tmp / "r1.key", "--json", env=env, check=True)
    assert done.json()["key_id"] == alice.key_id
    cli("key", "restore", words[1], words[3], words[4], "-o", cli.tmp / "r2.key", env=env,
        check=True)
    assert load_key(cli.tmp / "r2.key", NEW).key_id == alice.key_id

    before = len(_entries(cli))
    too_few = cli("key", "restore", words[0], words[2], "-o", cli.tmp / "r3.key", env=env)
    assert too_few.code == 3 and "Expected 3 mnemonics" in one_line_error(too_few)
    typo = words[0].split()
    typo[7] = "academic" if typo[7] != "academic" else "acid"
    mistyped = cli("key", "restore", " ".join(typo), words[2], words[4], "-o",
                   cli.tmp / "r3.key", env=env)
    assert mistyped.code == 3 and "checksum" in one_line_error(mistyped)
    assert not (cli.tmp / "r3.key").exists() and len(_entries(cli)) == before

    # the restored key signed its key-restore entry, which verifies; the ledger records N and
    # T, never a share
    assert cli("verify").code == 0
    log = cli("log", "--json", check=True).stdout
    kinds = [e["action"] for e in _entries(cli)]
    assert kinds.count("key-backup") == 1 and kinds.count("key-restore") == 2
    recorded = next(e for e in _entries(cli) if e["action"] == "key-backup")["details"]
    assert (recorded["shares"], recorded["threshold"], recorded["key_id"]) == (5, 3, alice.key_id)
    assert all(" ".join(w.split()[:4]) not in log for w in words)


def test_wrong_share_passphrase_or_mixed_sets_are_told_by_the_fingerprint(cli_archive):
    cli = cli_archive
    secret = {"CUSTODY_SHARE_PASSPHRASE": "shares: amber kettle"}
    a = cli("key", "backup", "-n", "3", "-t", "2", "-o", cli.tmp / "a", "--share-passphrase",
            "--json", env=secret, check=True).json()["mnemonics"]
    env = {"CUSTODY_NEW_PASSPHRASE": NEW}
    wrong = cli("key", "restore", a[0], a[1], "-o", cli.tmp / "k.key", env=env)
    assert wrong.code == 3
    assert "not any custodian of this archive" in one_line_error(wrong)
    assert "SLIP-39 passphrase" in one_line_error(wrong)
    b = cli("key", "backup", "-n", "3", "-t", "2", "-o", cli.tmp / "b", "--json",
            check=True).json()["mnemonics"]
    mixed = cli("key", "restore", a[0], b[1], "-o", cli.tmp / "k.key", env=env)
    assert mixed.code == 3 and "do not rebuild a key" in one_line_error(mixed)
    assert not (cli.tmp / "k.key").exists()
    cli("key", "restore", a[2], a[0], "-o", cli.tmp / "k.key", env={**env, **secret}, check=True)

    # the archive key: backed up by an admin, restored where it was lost, signs checkpoints
    arch = cli("key", "backup", "--archive-key", "-n", "2", "-t", "2", "-o", cli.tmp / "ak",
               "--json", check=True).json()
    archive_key = cli.archive / "keys" / "archive.key"
    archive_key.unlink()
    Path(str(archive_key) + ".pub").unlink()
    back = cli("key", "restore", "--archive-key", *arch["mnemonics"],
               env={"CUSTODY_NEW_PASSPHRASE": ARCHIVE_PASSPHRASE + " again"}, check=True)
    assert back.stdout.strip() == arch["key_id"]
    cli("checkpoint", env={"CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE + " again"},
        check=True)
    assert cli("verify").code == 0


def _enrol_bob(cli, made_key, role: str = "investigator") -> Path:
    bob = cli.tmp / "keys" / "bob.key"
    made_key(bob, "Bob Field")
    cli("enroll", f"{bob}.pub", "--role", role, check=True)
    return bob


def test_self_rotation_retires_the_old_key_and_the_new_one_holds_its_items(cli_archive, made_key):
    cli = cli_archive
    bob = _enrol_bob(cli, made_key)
    as_bob = {"CUSTODY_KEY": str(bob)}
    sha = cli("ingest", _photo(cli), "--json", env=as_bob, check=True).json()["files"][0]["sha256"]
    old = shutil.copy(bob, cli.tmp / "bob-old.key")
    shutil.copy(f"{bob}.pub", f"{old}.pub")
    old_id = load_key(bob, PASSPHRASE).key_id

    rotated = cli("key", "rotate", "--reason", "yearly rotation", "--json",
                  env={**as_bob, "CUSTODY_NEW_PASSPHRASE": NEW}, check=True).json()
    assert rotated["old_key_id"] == old_id and rotated["by"] == "self"
    assert load_key(bob, NEW).key_id == rotated["new_key_id"]
    assert Path(f"{bob}.retired-{old_id}").exists()

    before = len(_entries(cli))
    refused = cli("note", sha, "--text", "signed by the old key", env={"CUSTODY_KEY": str(old)})
    assert refused.code != 0 and f"retired in entry {rotated['seq']}" in one_line_error(refused)
    assert len(_entries(cli)) == before

    new_bob = {"CUSTODY_KEY": str(bob), "CUSTODY_PASSPHRASE": NEW}
    # the new key holds what the old one held: it may hand the item over
    carol = cli.tmp / "keys" / "carol.key"
    made_key(carol, "Carol Investigator")
    cli("enroll", f"{carol}.pub", "--role", "investigator", check=True)
    cli("transfer", sha, "--to", "Carol Investigator", "--purpose", "analysis", env=new_bob,
        check=True)
    assert cli("verify").code == 0


def test_an_entry_signed_by_a_retired_key_is_flagged_by_verify(tmp_path, archive, made_key):
    bob = made_key(tmp_path / "keys" / "bob.key", "Bob Field")
    admin = load_key(tmp_path / "keys" / "alice.key", PASSPHRASE)
    from custody.ops import custodians, keyrotation

    custodians.enroll(archive, admin, bob.public, "field")
    new = SigningKey.generate("Bob Field")
    done = keyrotation.rotate_by_admin(archive, admin, "Bob Field", new.public, "phone lost")
    # an entry the append path would refuse, written past it: verify must still catch it
    archive.append(bob, [Draft("verification", None, {"ok": True, "problems": 0,
                                                      "entries": 1, "objects": 0,
                                                      "scope": "all"})],
                   check_signer=False)
    from custody.ops.verify import audit

    problems = audit(Archive.open(archive.root)).problems
    assert any(f"retired in entry {done.seq}" in p and "signer-active" in p for p in problems)


def test_admin_rotation_and_bad_input_touch_nothing(cli_archive, made_key):
    cli = cli_archive
    bob = _enrol_bob(cli, made_key, "field")
    new = cli.tmp / "keys" / "bob-new.key"
    made_key(new, "Bob Field (new laptop)")
    before = _entries(cli)

    no_reason = cli("key", "rotate", "--custodian", "Bob Field", "--new-key", f"{new}.pub")
    assert no_reason.code == 2 and "--reason" in one_line_error(no_reason)
    unknown = cli("key", "rotate", "--custodian", "Nobody", "--new-key", f"{new}.pub",
                  "--reason", "x")
    assert unknown.code == 3 and "no enrolled custodian 'Nobody'" in one_line_error(unknown)
    not_admin = cli("key", "rotate", "--custodian", "Alice Admin", "--new-key", f"{new}.pub",
                    "--reason", "coup", "--by-admin", bob)
    assert not_admin.code == 3 and "neither" in one_line_error(not_admin)
    wrong_pass = cli("key", "rotate", env={"CUSTODY_KEY": str(bob),
                                           "CUSTODY_PASSPHRASE": "not bob's passphrase",
                                           "CUSTODY_NEW_PASSPHRASE": NEW})
    assert wrong_pass.code == 3 and "wrong passphrase" in one_line_error(wrong_pass)
    assert not Path(f"{bob}.new").exists()
    archive_backup = cli("key", "backup", "--archive-key", "-n", "2", "-t", "2", "-o",
                         cli.tmp / "s0", env={"CUSTODY_KEY": str(bob)})
    assert archive_backup.code == 3 and "only an admin" in one_line_error(archive_backup)
    assert not (cli.tmp / "s0").exists()
    assert _entries(cli) == before

    done = cli("key", "rotate", "--custodian", "Bob Field", "--new-key", f"{new}.pub",
               "--reason", "phone seized at a checkpoint", "--json", check=True).json()
    entry = _entries(cli)[-1]
    assert entry["action"] == "key-rotate" and entry["actor_name"] == "Alice Admin"
    assert entry["details"]["reason"] == "phone seized at a checkpoint"
    assert done["by"] == "admin"
    # the new key signs (a backup of itself is an entry it signs); the old one no longer does
    cli("key", "backup", "-n", "2", "-t", "2", "-o", cli.tmp / "s1", env={"CUSTODY_KEY": str(new)},
        check=True)
    old = cli("key", "backup", "-n", "2", "-t", "2", "-o", cli.tmp / "s2",
              env={"CUSTODY_KEY": str(bob)})
    assert old.code == 3 and "retired in entry" in one_line_error(old)
    assert not (cli.tmp / "s2").exists()
    assert cli("verify").code == 0


def test_archive_key_rotation_keeps_old_checkpoints_and_packages_verifying(cli_archive,
                                                                           made_key):
    cli = cli_archive
    cli("ingest", _photo(cli), check=True)
    old_vkey = cli("checkpoint", "-o", cli.tmp / "old.txt", "--json",
                   check=True).json()["verifier_key"]
    witness = cli.tmp / "keys" / "witness.key"
    made_key(witness, "Witness")
    cosigned = cli("witness", "cosign", cli.tmp / "old.txt", "--state", cli.tmp / "w.json",
                   "--archive-key", old_vkey, "-o", cli.tmp / "cosigned.txt", "--json",
                   env={"CUSTODY_KEY": str(witness)}, check=True).json()
    cli("witness", "add", cli.tmp / "cosigned.txt", "--witness-key", cosigned["witness_key"],
        check=True)
    archive = Archive.open(cli.archive)
    old_key = archive.load_archive_key(ARCHIVE_PASSPHRASE)

    refused = cli("key", "rotate", "--archive-key")
    assert refused.code == 2 and "--reason" in one_line_error(refused)
    new_pass = {"CUSTODY_NEW_PASSPHRASE": NEW, "CUSTODY_ARCHIVE_PASSPHRASE": NEW}
    rotated = cli("key", "rotate", "--archive-key", "--reason", "yearly", "--json",
                  env=new_pass, check=True).json()
    assert rotated["old_key_id"] == old_key.key_id
    cli("checkpoint", "-o", cli.tmp / "new.txt", env=new_pass, check=True)
    ok = cli("verify", "--checkpoint", cli.tmp / "old.txt", "--checkpoint", cli.tmp / "new.txt")
    assert ok.code == 0, ok.stdout + ok.stderr
    assert "custody.archive" in (cli.tmp / "new.txt").read_text()

    sha = _entries(cli)[1]["item"]
    cli("export", sha, "--purpose", "handover", "-o", cli.tmp / "pkg.zip", env=new_pass,
        check=True)
    pinned = json.loads(cli("checkpoint", "--json", env=new_pass, check=True).stdout)
    package = cli("verify-package", cli.tmp / "pkg.zip")
    assert package.code == 0, package.stdout + package.stderr
    # the outsider pins the archive's identity (entry 0's key); the chain is in the entries
    genesis = cli("verify-package", cli.tmp / "pkg.zip", "--archive-key",
                  str(note.make_verifier(archive.config.origin, old_key.public.raw)))
    assert genesis.code == 0, genesis.stdout + genesis.stderr
    assert pinned["verifier_key"] != str(note.make_verifier(archive.config.origin,
                                                            old_key.public.raw))
    # a chain-of-custody report made after the rotation re-checks against the same pin
    cli("report", sha, "-o", cli.tmp / "report.html", env=new_pass, check=True)
    report = cli("verify-report", cli.tmp / "report.html", "--archive-key",
                 str(note.make_verifier(archive.config.origin, old_key.public.raw)))
    assert report.code == 0, report.stdout + report.stderr

    # the retired archive key can no longer sign a checkpoint verify accepts
    from custody.core import merkle

    archive = Archive.open(cli.archive)
    with archive.writing() as w:
        size = w.next_seq
        body = note.format_checkpoint(archive.config.origin, size,
                                      merkle.root_hash(size, w.get_node))
        w.put_checkpoint(size, note.sign_note(body, archive.config.origin, old_key), "now")
    flagged = cli("verify")
    assert flagged.code == 1 and f"not signed by archive key {rotated['new_key_id']}" in \
        flagged.stdout


# The replay's new rules, on hand-made entries (pure: no archive, no command) ---------------------

def _log(*drafts: tuple[str, str, dict]) -> list[str]:
    """Replay `(actor, action, details)` drafts after an init naming archive key A and admin M;
    every rule broken, one line each."""
    from custody.core.entry import Entry
    from custody.core.replay import Replay

    keys = {n: SigningKey.from_seed(bytes([i + 1]) * 32, n) for i, n in enumerate("AMBCNX")}

    def obj(n: str) -> dict:
        import base64

        return {"key_id": keys[n].key_id, "name": n,
                "public_key": base64.b64encode(keys[n].public.raw).decode()}

    init = ("A", "init", {"name": "t", "format": 1, "archive": obj("A"), "admin": obj("M")})
    replay, found = Replay(), []
    for seq, (actor, action, details) in enumerate([init, *drafts]):
        named = {k: v for k, v in details.items() if isinstance(v, str) and v in keys}
        details = details | {k: obj(v) if k in ("custodian", "archive") else keys[v].key_id
                             for k, v in named.items() if k != "name"}
        found += replay.apply(Entry(log="custody.archive/x", seq=seq,
                                    time=f"2026-11-29T10:00:{seq:02d}.000000Z",
                                    actor=keys[actor].key_id, action=action, item=None,
                                    details=details, prev=None))
    return found


def test_rotation_rules_of_the_replay() -> None:
    enrol_b = ("M", "enroll", {"custodian": "B", "role": "field"})
    assert _log(enrol_b, ("B", "key-rotate", {"old_key_id": "B", "custodian": "C",
                                              "reason": None})) == []
    # a field custodian rotating someone else's key; an admin without a reason
    by_field = _log(enrol_b, ("B", "key-rotate", {"old_key_id": "M", "custodian": "C",
                                                  "reason": "x"}))
    assert any("(rule rotate-by)" in p for p in by_field)
    no_reason = _log(enrol_b, ("M", "key-rotate", {"old_key_id": "B", "custodian": "C",
                                                   "reason": " "}))
    assert any("needs a reason (rule rotate-by)" in p for p in no_reason)
    # the retired key signs afterwards; a retired key enrolled again
    after = _log(enrol_b, ("B", "key-rotate", {"old_key_id": "B", "custodian": "C",
                                               "reason": None}),
                 ("B", "verification", {}), ("M", "enroll", {"custodian": "B", "role": "field"}))
    assert any("entry 3:" in p and "retired in entry 2" in p for p in after)
    assert any("entry 4:" in p and "(rule re-enrol)" in p for p in after)
    # the archive key: rotated by an admin naming the key in force; then the new key signs nothing
    ok = _log(("M", "archive-key-rotate", {"archive": "N", "previous": "A", "reason": "y"}))
    assert ok == []
    wrong = _log(("M", "archive-key-rotate", {"archive": "N", "previous": "B", "reason": "y"}))
    assert any("(rule archive-key-rotate)" in p for p in wrong)
    signs = _log(("M", "archive-key-rotate", {"archive": "N", "previous": "A", "reason": "y"}),
                 ("N", "verification", {}))
    assert any("entry 2:" in p and "(rule archive-key)" in p for p in signs)
    # a backup names the signer's own key, or (an admin's) the archive key in force
    assert _log(("M", "key-backup", {"key_id": "A"}), ("M", "key-backup", {"key_id": "M"})) == []
    other = _log(enrol_b, ("B", "key-backup", {"key_id": "M"}))
    assert any("(rule key-own)" in p for p in other)


def test_ctrl_c_while_a_key_opens_aside_is_an_interrupt_not_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while export waited for the archive key opened in a child process: the pipe was
    closed twice on the way out, and the OSError replaced the interrupt (exit 3, not 130)."""
    path = tmp_path / "archive.key"
    write_new_key(path, "Archive", PASSPHRASE)
    opened = SigningKey.opened_seed

    def slow(pem: bytes, passphrase: str) -> bytes | None:
        # The interrupt must come while the parent waits, however loaded the machine: a real
        # scrypt (a few hundred ms) raced a 20 ms timer.
        time.sleep(60)
        return opened(pem, passphrase)

    monkeypatch.setattr(SigningKey, "opened_seed", staticmethod(slow))  # the child's copy too
    pending = load_key_aside(path, PASSPHRASE)
    # to the main thread itself: a process-wide signal may go to the timer's thread, leaving the
    # main thread's read of the pipe uninterrupted until the child ends
    timer = threading.Timer(0.02, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGINT))
    # Ctrl-C as an interactive Python has it, whatever this process inherited: a job started in
    # the background by a shell without job control ignores SIGINT, and so do its children
    # (pytest's workers, in a CI started so: the test failed twice, round 30)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            pending()
        timer.join()
    finally:
        signal.signal(signal.SIGINT, inherited)
    pending.close()  # raised OSError (bad file descriptor) before the fix
    assert pending._pid is None  # the child was stopped and reaped
