"""Decisions under the write lock: what a concurrent commit changes between a caller's early check
and its append can never produce an entry verify rejects; no child process runs for the lock.

Real archives, real keys, real SQLite locks between two connections (threads each holding their
own Archive), the real metadata worker with a real (slowed) ExifTool.
"""

from __future__ import annotations

import io
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from custody.core.signing import SigningKey
from custody.errors import NotPermitted
from custody.metadata import MetadataReader
from custody.ops import access, annotate, custodians, transfer
from custody.ops.archive import Archive, Draft
from custody.ops.ingest import Claims, Ingest, ingest_stream
from custody.ops.verification import record_verification
from custody.ops.verify import audit
from store.ports import LedgerTransaction

from .conftest import DATA

JPEG = DATA / "media" / "aleppo-gps.jpg"


@pytest.fixture
def bob(tmp_path: Path, made_key) -> SigningKey:
    return made_key(tmp_path / "keys" / "bob.key", "Bob Investigator")


@pytest.fixture
def stocked(archive: Archive, alice: SigningKey, bob: SigningKey) -> tuple[Archive, str]:
    """Bob enrolled as investigator, and one JPEG ingested by him (he holds it)."""
    custodians.enroll(archive, alice, bob.public, "investigator")
    with MetadataReader() as reader, JPEG.open("rb") as stream:
        done = ingest_stream(archive, bob, reader, stream, Claims(name=JPEG.name))
    assert done.status == "new" and done.sha256
    return archive, done.sha256


def _waiting_for_lock(thread: threading.Thread) -> bool:
    """True once `thread` is inside the ledger's write transaction opening (BEGIN IMMEDIATE)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "writing" and frame.f_code.co_filename.endswith("ledger.py"):
            return True
        frame = frame.f_back
    return False


def _race(
    root: Path, holder: Callable[[Archive, Callable[[], None]], Any],
    caller: Callable[[Archive], Any],
) -> BaseException | Any:
    """Run `holder` (which commits a change while holding the write lock, calling its second
    argument while it holds it) and `caller` (an operation whose early check passes before the
    change and whose append has to wait for the lock) in two threads, each with its own Archive
    and so its own SQLite connection. Returns what `caller` returned or raised."""
    caller_ready = threading.Event()
    outcome: dict[str, Any] = {}

    def hold(_: Any = None) -> None:
        caller_ready.wait(60)  # the caller is now blocked on BEGIN IMMEDIATE, its check done

    def run_holder() -> None:
        holder(Archive.open(root), hold)

    def run_caller() -> None:
        try:
            outcome["value"] = caller(Archive.open(root))
        except BaseException as exc:  # noqa: BLE001 (handed to the test to assert on)
            outcome["value"] = exc

    holding = threading.Thread(target=run_holder)
    holding.start()
    deadline = time.monotonic() + 30
    while not _holds_lock(root) and time.monotonic() < deadline:
        time.sleep(0.01)
    calling = threading.Thread(target=run_caller)
    calling.start()
    while not _waiting_for_lock(calling) and calling.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    caller_ready.set()
    holding.join(60)
    calling.join(60)
    return outcome["value"]


def _holds_lock(root: Path) -> bool:
    """True while another connection holds the ledger's write lock."""
    conn = sqlite3.connect(root / "ledger.db", timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def _revoke_while_holding(alice: SigningKey, bob: SigningKey):
    def holder(archive: Archive, hold: Callable[[], None]) -> None:
        def wait_then_revoke(writer: LedgerTransaction, draft: Draft) -> Draft:
            hold()
            return draft

        target = archive.resolve_custodian(bob.key_id)
        draft = Draft("revoke", None, {"key_id": target.key_id, "name": target.name,
                                       "reason": "laptop seized"})
        archive.append(alice, [draft], decide=wait_then_revoke)

    return holder


def test_revocation_committed_while_a_note_waits_for_the_lock_refuses_the_note(
    stocked: tuple[Archive, str], alice: SigningKey, bob: SigningKey
) -> None:
    archive, item = stocked
    size = archive.ledger.size()
    outcome = _race(
        archive.root, _revoke_while_holding(alice, bob),
        lambda mine: annotate.note(mine, bob, item, "seen at the hospital gate"),
    )
    assert isinstance(outcome, NotPermitted), outcome
    assert "revoked" in outcome.message
    fresh = Archive.open(archive.root)
    assert fresh.ledger.size() == size + 1  # the revocation, and nothing signed by Bob after it
    assert [r.action for r in fresh.ledger.rows(size)] == ["revoke"]
    assert audit(fresh).problems == []


def test_revocation_committed_while_an_offer_waits_for_the_lock_refuses_the_offer(
    stocked: tuple[Archive, str], alice: SigningKey, bob: SigningKey
) -> None:
    archive, item = stocked
    outcome = _race(
        archive.root, _revoke_while_holding(alice, bob),
        lambda mine: transfer.offer(mine, bob, [item], alice.key_id, "to the prosecutor"),
    )
    assert isinstance(outcome, NotPermitted), outcome
    fresh = Archive.open(archive.root)
    assert fresh.ledger.rows(fresh.ledger.size() - 1).__next__().action == "revoke"
    assert audit(fresh).problems == []


def test_role_changed_while_waiting_for_the_lock_is_refused_and_the_refusal_recorded(
    stocked: tuple[Archive, str], alice: SigningKey, bob: SigningKey
) -> None:
    """Bob's early check passes as investigator; an admin makes him a reviewer (who may not file
    items under a case) while his append waits: he is refused under the lock, and the refusal is
    a signed entry of his, which verify accepts."""
    archive, item = stocked

    def make_reviewer(mine: Archive, hold: Callable[[], None]) -> None:
        def wait(writer: LedgerTransaction, draft: Draft) -> Draft:
            hold()
            return draft

        custodian = {"key_id": bob.key_id, "public_key": bob.public.b64(), "name": "Bob"}
        mine.append(alice, [Draft("enroll", None, {"custodian": custodian, "role": "reviewer"})],
                    decide=wait)

    outcome = _race(archive.root, make_reviewer,
                    lambda mine: annotate.case_add(mine, bob, [item], "ALEPPO-2016"))
    assert isinstance(outcome, NotPermitted), outcome
    assert "role 'reviewer'" in outcome.message
    fresh = Archive.open(archive.root)
    last = list(fresh.ledger.rows(fresh.ledger.size() - 2))
    assert [r.action for r in last] == ["enroll", "refused"]
    assert last[1].actor == bob.key_id
    assert not [r for r in fresh.ledger.rows_for_item(item) if r.action == "case-add"]
    assert audit(fresh).problems == []


def _after_revocation() -> list[tuple[str, Callable[[Archive, SigningKey, str, Path], Any]]]:
    return [
        ("note", lambda a, k, i, _t: annotate.note(a, k, i, "text")),
        ("case-add", lambda a, k, i, _t: annotate.case_add(a, k, [i], "C1")),
        ("get", lambda a, k, i, t: access.get(a, k, i, "review", t / "copy.jpg")),
        ("transfer", lambda a, k, i, _t: transfer.offer(a, k, [i], "Alice Admin", "handover")),
        ("verification", lambda a, k, i, _t: record_verification(
            a, k, None, ok=True, problems=0, entries=1, objects=1)),
        ("ingest", lambda a, k, i, _t: ingest_stream(
            a, k, None, io.BytesIO(b"new evidence"), Claims(name="upload.bin"))),
        ("raw append", lambda a, k, i, _t: a.append(k, [Draft("note", i, {"text": "x"})])),
        ("refusal", lambda a, k, i, _t: a.record_refusal(k, "note", "because")),
    ]


@pytest.mark.parametrize(("what", "act"), _after_revocation(), ids=[w for w, _ in
                                                                     _after_revocation()])
def test_every_append_by_a_revoked_signer_is_refused_without_an_entry(
    stocked: tuple[Archive, str], alice: SigningKey, bob: SigningKey, tmp_path: Path,
    what: str, act: Callable[[Archive, SigningKey, str, Path], Any],
) -> None:
    archive, item = stocked
    custodians.revoke(archive, alice, bob.key_id, "left the organisation")
    size = archive.ledger.size()
    with pytest.raises(NotPermitted, match="revoked"):
        act(archive, bob, item, tmp_path)
    assert archive.ledger.size() == size, f"{what} appended an entry after the revocation"
    assert not (tmp_path / "copy.jpg").exists()


def test_revoking_twice_at_once_records_one_revocation(
    stocked: tuple[Archive, str], alice: SigningKey, bob: SigningKey
) -> None:
    archive, _ = stocked
    outcome = _race(
        archive.root, _revoke_while_holding(alice, bob),
        lambda mine: custodians.revoke(mine, alice, bob.key_id, "twice"),
    )
    assert "already revoked" in str(outcome)
    fresh = Archive.open(archive.root)
    assert len(fresh.ledger.rows_with_action("revoke")) == 1


# No child process while the lock is held ----------------------------------------------------------

PROBE = """#!/bin/sh
# A slow ExifTool: before starting the real one, it tries to take the archive's write lock (waiting
# up to 10 s, far longer than any honest transaction), and writes down whether it could.
"{python}" - "{ledger}" >> "{log}" <<'EOF'
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=10)
try:
    conn.execute("BEGIN IMMEDIATE")
    conn.rollback()
    print("free")
except sqlite3.OperationalError as exc:
    print(f"held: {{exc}}")
EOF
sleep 1
exec "{exiftool}" "$@"
"""


def test_no_child_process_runs_for_a_transaction_holding_the_write_lock(
    stocked: tuple[Archive, str], bob: SigningKey, tmp_path: Path
) -> None:
    """Two ingests of the same files at once, each with a fresh metadata worker whose ExifTool
    is a slow stand-in that probes the write lock as it starts: every probe finds the lock free
    within its wait, so no transaction ever waits for a child process."""
    archive, _ = stocked
    log = tmp_path / "probes.log"
    stand_in = tmp_path / "bin" / "exiftool"
    stand_in.parent.mkdir()
    stand_in.write_text(PROBE.format(python=sys.executable, ledger=archive.root / "ledger.db",
                                     log=log, exiftool="/usr/bin/exiftool"))
    stand_in.chmod(0o700)
    folder = tmp_path / "upload"
    folder.mkdir()
    for name in ("douma-xyz.mov", "homs-loci.mp4", "clock-no-offset.jpg"):
        (folder / name).write_bytes((DATA / "media" / name).read_bytes())
        (folder / f"copy-{name}").write_bytes((DATA / "media" / name).read_bytes())
    from custody.ops.ingest import find_files

    files = find_files([folder], [])
    reports: list[Any] = []

    def one_run() -> None:
        mine = Archive.open(archive.root)
        with MetadataReader(exiftool=str(stand_in)) as reader:
            reports.append(Ingest(mine, bob, reader).run(files))

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for r in runs:
        r.start()
    for r in runs:
        r.join(120)
    assert len(reports) == 2
    probes = log.read_text().split()
    assert probes and set(probes) == {"free"}, probes
    fresh = Archive.open(archive.root)
    ingested = [r.item for r in fresh.ledger.rows_with_action("ingest")]
    assert len(ingested) == len(set(ingested)) == 4  # the stocked JPEG and three new items
    assert audit(fresh).problems == []


def test_ingest_stream_records_the_claims_of_an_upload(
    stocked: tuple[Archive, str], bob: SigningKey
) -> None:
    archive, _ = stocked
    claims = Claims(name="IMG_0042.JPG", captured_at="2016-10-03T09:12:00Z")
    sample = DATA / "media" / "carbon-south-west.jpg"
    with MetadataReader() as reader, sample.open("rb") as stream:
        done = ingest_stream(archive, bob, reader, stream, claims, case="ALEPPO-2016",
                             note="uploaded from the field")
    assert done.status == "new" and done.mime == "image/jpeg" and done.path == "IMG_0042.JPG"
    row = archive.ledger.rows_for_item(done.sha256 or "")[0]
    from custody.core import entry as entries

    e = entries.parse(row.body)
    assert e.action == "ingest" and e.actor == bob.key_id
    assert e.details["source"] == {"name": "IMG_0042.JPG", "captured_at": "2016-10-03T09:12:00Z"}
    assert e.details["case"] == "ALEPPO-2016" and e.details["note"] == "uploaded from the field"
    assert os.path.getsize(sample) == e.details["size"]
    again = ingest_stream(archive, bob, None, io.BytesIO(sample.read_bytes()),
                          Claims(name="again.jpg"))
    assert again.status == "present" and again.sha256 == done.sha256
    assert audit(archive).problems == []


@pytest.mark.parametrize("claimed", ["yesterday", "2016-13-03T09:12:00Z", "2016-10-03 09:12"])
def test_ingest_stream_refuses_a_claimed_time_that_is_not_rfc3339(
    archive: Archive, alice: SigningKey, claimed: str
) -> None:
    from custody.errors import UsageError

    upload = io.BytesIO(b"\xff\xd8\xff\xe0")
    with pytest.raises(UsageError, match="not an RFC 3339 time"):
        ingest_stream(archive, alice, None, upload, Claims("IMG_0042.JPG", captured_at=claimed))
    with pytest.raises(UsageError, match="needs the name"):
        ingest_stream(archive, alice, None, upload, Claims(name=""))
    assert archive.ledger.size() == 1 and upload.tell() == 0  # nothing read, nothing recorded


class _Dropped(io.RawIOBase):
    """An upload whose connection drops after a few bytes."""

    def __init__(self) -> None:
        self.sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.sent:
            raise ConnectionResetError(104, "Connection reset by peer")
        self.sent = True
        buf[:5] = b"\xff\xd8\xff\xe0\x00"
        return 5


def test_ingest_stream_that_drops_records_nothing(
    stocked: tuple[Archive, str], bob: SigningKey
) -> None:
    from custody.errors import CustodyError

    archive, _ = stocked
    size = archive.ledger.size()
    with pytest.raises(CustodyError, match="IMG_0042.JPG could not be read: Connection reset"):
        ingest_stream(archive, bob, None, _Dropped(), Claims(name="IMG_0042.JPG"))
    assert archive.ledger.size() == size
    assert not list((archive.root / "objects" / "tmp").iterdir())
