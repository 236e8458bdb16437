"""The `custody` command: parse, call the operations, print; no logic of its own.

Reports go to stdout (one JSON document with --json), progress and messages to stderr; every
line for people goes through custody.display, which escapes what could forge or reorder a line.
Every CustodyError becomes a one-line message and its exit code in `main`, the one handler (and,
with --json, the error document of docs/CLI.md on stdout).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from custody import display
from custody.core import canonical
from custody.core.custodians import ROLES
from custody.core.signing import PublicKey, SigningKey
from custody.errors import (
    EXIT_ERROR,
    EXIT_PROBLEM,
    EXIT_USAGE,
    CustodyError,
    NotFound,
    UsageError,
    VerificationFailed,
)
from custody.metadata.isolation import harden_process
from custody.ops.archive import Archive, default_archive_path
from custody.ops.backends import custody_error
from custody.ops.keyfiles import (
    change_passphrase,
    check_archive_passphrase,
    default_key_path,
    load_key,
    load_key_aside,
    read_public_key,
    weak_protection,
    write_new_key,
)
from store.index_port import IndexStoreError
from store.ports import StoreError

app = typer.Typer(
    name="custody",
    help="Chain-of-custody evidence archive: store, sign, log and verify evidence files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[default …]" literally; no markup in them
)
key_app = typer.Typer(help="Custodian keys.", no_args_is_help=True)
app.add_typer(key_app, name="key")


class State:
    archive_path: Path = default_archive_path()
    key_path: Path | None = None
    debug: bool = False


state = State()


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("custody")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        say(f"custody {version()}")
        raise typer.Exit(0)


@app.callback()
def _global(
    archive: Path = typer.Option(None, "--archive", metavar="DIR", help="Archive folder [$CUSTODY_ARCHIVE or ./archive]"),
    key: Path = typer.Option(None, "--key", metavar="FILE", help="Acting custodian's key [$CUSTODY_KEY or the config folder's key]"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
    _version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version, help="Print custody's version and exit."),
) -> None:
    state.archive_path = archive or default_archive_path()
    state.key_path = key
    state.debug = debug


# Helpers ---------------------------------------------------------------------------------------

err = display.note  # a message line on stderr, escaped
say = display.line  # a report line on stdout, escaped
out_json = display.out_json
out_json_streamed = display.out_json_streamed


def passphrase(confirm: bool = False, env: str = "CUSTODY_PASSPHRASE", what: str = "key") -> str:
    if (value := os.environ.get(env)) is not None:
        return value
    if not sys.stdin.isatty():
        raise UsageError(f"no passphrase for the {what}: set {env} or run on a terminal")
    first = getpass.getpass(f"Passphrase for the {what}: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise UsageError("the two passphrases differ")
    return first


ARCHIVE_PASSPHRASE = "CUSTODY_ARCHIVE_PASSPHRASE"
NEW_PASSPHRASE = "CUSTODY_NEW_PASSPHRASE"


def warn_if_weakly_protected(path: Path, upgrade: str) -> None:
    if why := weak_protection(path):
        err(f"custody: warning: {why}; re-encrypt it with '{upgrade}'")


def acting_key() -> SigningKey:
    path = state.key_path or default_key_path()
    key = load_key(path, passphrase())
    warn_if_weakly_protected(path, "custody key passwd")
    return key


def acting_key_aside() -> contextlib.AbstractContextManager[Callable[[], SigningKey]]:
    """`acting_key()` as a function to call later: its scrypt (a few hundred ms, holding the GIL)
    runs meanwhile in a child process on the other core, beside the command's own start (imports,
    a worker's start-up). Errors are acting_key()'s, raised when it is called."""
    path = state.key_path or default_key_path()
    return _opened_aside(path, passphrase(), "custody key passwd")


@contextlib.contextmanager
def _opened_aside(path: Path, secret: str, upgrade: str,
                  check: Callable[[SigningKey], SigningKey] = lambda key: key,
                  ) -> Iterator[Callable[[], SigningKey]]:
    """The key file at `path`, opened in a child process (keyfiles.load_key_aside) and given,
    checked and warned about as the direct way does, when the function yielded is called; the
    child is reaped when the block ends, whether the key was asked for or not."""
    pending = load_key_aside(path, secret)

    def opened() -> SigningKey:
        key = check(pending())
        warn_if_weakly_protected(path, upgrade)
        return key

    try:
        yield opened
    finally:
        pending.close()


def open_archive() -> Archive:
    return Archive.open(state.archive_path)


def open_archive_to_read() -> Archive:
    """The archive, a sealed one opened with the acting custodian's key when one is named
    (--key or $CUSTODY_KEY); without one its sealed fields show as sealed (FORMAT.md §12.3)."""
    archive = open_archive()
    if archive.sealer is not None and (state.key_path or os.environ.get("CUSTODY_KEY")):
        archive.unlock(acting_key())
    return archive


# Keys and archives -----------------------------------------------------------------------------

@key_app.command("new")
def key_new(
    name: str = typer.Option(..., "--name", help="The custodian's name, as reports show it."),
    output: Path = typer.Option(None, "-o", "--output", help="Key file [the config folder's key]"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Make a custodian key (Ed25519, passphrase-encrypted, mode 0600); print its key id.

    The passphrase ($CUSTODY_PASSPHRASE, else asked twice) needs at least 12 characters.
    """
    path = output or state.key_path or default_key_path()
    key = write_new_key(path, name, passphrase(confirm=True))
    info = {"key_id": key.key_id, "name": key.public.name, "path": str(path),
            "public_key_path": str(path) + ".pub", "public_key": key.public.openssh_line()}
    if as_json:
        out_json(info)
    else:
        say(key.key_id)
        err(f"wrote {path} (private, 0600) and {path}.pub")


@key_app.command("passwd")
def key_passwd(
    of_archive: bool = typer.Option(False, "--archive-key", help="Re-encrypt the archive's own key (ARCHIVE/keys/archive.key) instead of yours."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-encrypt a key under a new passphrase, with today's key derivation (scrypt).

    The key, and so its key id, stays the same. The current passphrase comes from
    $CUSTODY_PASSPHRASE (with --archive-key: $CUSTODY_ARCHIVE_PASSPHRASE), the new one from
    $CUSTODY_NEW_PASSPHRASE, else each is asked on the terminal.
    """
    if of_archive:
        archive = open_archive()
        path = archive.root / "keys" / "archive.key"
        old = passphrase(env=ARCHIVE_PASSPHRASE, what="archive key")
        archive.load_archive_key(old)  # the key custody.json names, and the right passphrase
        new = passphrase(confirm=True, env=NEW_PASSPHRASE, what="archive key (new)")
        check_archive_passphrase(new, os.environ.get("CUSTODY_PASSPHRASE"))
    else:
        path = state.key_path or default_key_path()
        old = passphrase()
        new = passphrase(confirm=True, env=NEW_PASSPHRASE, what="key (new)")
    key = change_passphrase(path, old, new, what="archive key" if of_archive else "key")
    if as_json:
        out_json({"key_id": key.key_id, "path": str(path)})
    else:
        err(f"re-encrypted {path} (key {key.key_id}) under the new passphrase")


SHARE_PASSPHRASE = "CUSTODY_SHARE_PASSPHRASE"


@key_app.command("backup")
def key_backup(
    shares: int = typer.Option(..., "--shares", "-n", help="How many shares to make (N, at most 16)."),
    threshold: int = typer.Option(..., "--threshold", "-t", help="How many shares rebuild the key (T)."),
    output: Path = typer.Option(..., "-o", "--output", help="A new folder for the share cards (.txt, .png, .svg)."),
    of_archive: bool = typer.Option(False, "--archive-key", help="Back up the archive's key (an admin's --key signs the record)."),
    with_passphrase: bool = typer.Option(False, "--share-passphrase", help="Protect the shares with a SLIP-39 passphrase ($CUSTODY_SHARE_PASSPHRASE, else asked)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Split your key (or the archive key) into SLIP-39 shares, any T of N rebuilding it.

    Prints each share's words (on stdout; with --json in "mnemonics") and writes share-I.txt,
    .png and .svg cards in the new folder; records a key-backup entry (N, T, never the shares).
    """
    from custody.ops import keybackup
    from custody.ops.archive import utc_now

    archive = open_archive()
    signer = acting_key()
    key = archive_key(archive) if of_archive else signer
    secret = passphrase(confirm=True, env=SHARE_PASSPHRASE, what="shares (SLIP-39)") \
        if with_passphrase else ""
    done = keybackup.backup(archive, signer, key, count=shares, threshold=threshold,
                            share_passphrase=secret, folder=output, now=utc_now())
    if as_json:
        out_json(done.to_json())
        return
    for i, words in enumerate(done.shares, 1):
        say(f"share {i} of {done.count}: {words}")
    err(f"{done.count} shares of key {done.key_id} ({done.name}), any {done.threshold} rebuild "
        f"it: cards in {done.folder}; recorded in entry {done.seq}")


@key_app.command("restore")
def key_restore(
    shares: list[str] = typer.Argument(None, metavar="[SHARE]...", help="Share words, one quoted argument per share."),
    from_files: list[Path] = typer.Option(None, "--from", metavar="FILE", help="A file of shares (share-I.txt cards, or one share per line); repeatable."),
    output: Path = typer.Option(None, "-o", "--output", help="The new key file [with --archive-key: ARCHIVE/keys/archive.key]."),
    of_archive: bool = typer.Option(False, "--archive-key", help="Restore the archive key (recorded by an admin's --key)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Rebuild a key from any T of its shares, check it against the archive, write it anew.

    Text only: QR cards are read with any phone or `zbarimg` and the words given here. The new
    key file's passphrase comes from $CUSTODY_NEW_PASSPHRASE (else asked twice); the shares'
    SLIP-39 passphrase, if they have one, from $CUSTODY_SHARE_PASSPHRASE.
    """
    from custody.ops import keybackup

    texts = list(shares or [])
    for path in from_files or []:
        texts.append(read_text_arg(path, "share file"))
    words = keybackup.read_shares(texts)
    archive = open_archive()
    if output is None and not of_archive:
        raise UsageError("say where to write the restored key: -o FILE")
    output = output or archive.root / "keys" / "archive.key"
    admin = acting_key() if of_archive else None
    secret = os.environ.get(SHARE_PASSPHRASE, "")
    new = passphrase(confirm=True, env=NEW_PASSPHRASE, what="restored key (new)")
    if of_archive:
        check_archive_passphrase(new, os.environ.get("CUSTODY_PASSPHRASE"))
    done = keybackup.restore(archive, words, secret, output=output, new_passphrase=new,
                             archive_key=of_archive, admin=admin)
    if as_json:
        out_json(done.to_json())
    else:
        say(done.key_id)
        err(f"restored key {done.key_id} ({done.name}) from {done.shares_used} shares into "
            f"{done.path}; recorded in entry {done.seq}")


@key_app.command("rotate")
def key_rotate(
    custodian: str = typer.Option(None, "--custodian", help="Another custodian's key to replace (name or key id): an admin's rotation after a loss."),
    new_key: str = typer.Option(None, "--new-key", metavar="FILE.pub", help="With --custodian: the custodian's new public key (made with 'custody key new')."),
    by_admin: Path = typer.Option(None, "--by-admin", metavar="ADMIN_KEY", help="With --custodian: the admin's key file [--key]."),
    of_archive: bool = typer.Option(False, "--archive-key", help="Rotate the archive's own key (by an admin)."),
    reason: str = typer.Option(None, "--reason", help="Why (recorded; needed for an admin's or the archive's rotation)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Replace a key: yours (signed by the old one), another custodian's after a loss (by an
    admin, with --reason), or the archive key (--archive-key, by an admin, with --reason).

    Your own: the new key takes the key file's place (the old one is kept beside it as
    FILE.retired-KEYID), its passphrase from $CUSTODY_NEW_PASSPHRASE (else asked twice). The
    archive key: the new one's passphrase likewise; the old one need not be at hand.
    """
    from custody.ops import keyrotation

    if sum([custodian is not None, of_archive]) > 1:
        raise UsageError("give either --custodian or --archive-key, not both")
    if (new_key is not None or by_admin is not None) and custodian is None:
        raise UsageError("--new-key and --by-admin go with --custodian")
    if (custodian is not None or of_archive) and not (reason or "").strip():
        what = "the archive key" if of_archive else "another custodian's key"
        raise UsageError(f"a rotation of {what} needs a --reason (it is recorded)")
    archive = open_archive()
    if custodian is not None:
        if new_key is None:
            raise UsageError("an admin's rotation needs the custodian's --new-key FILE.pub")
        public = read_public_key(new_key)
        admin = load_key(by_admin, passphrase()) if by_admin is not None else acting_key()
        done = keyrotation.rotate_by_admin(archive, admin, custodian, public, reason or "")
    elif of_archive:
        admin = acting_key()
        new = passphrase(confirm=True, env=NEW_PASSPHRASE, what="archive key (new)")
        check_archive_passphrase(new, os.environ.get("CUSTODY_PASSPHRASE"))
        done = keyrotation.rotate_archive_key(archive, admin, new, reason or "")
    else:
        path = state.key_path or default_key_path()
        old = load_key(path, passphrase())
        new = passphrase(confirm=True, env=NEW_PASSPHRASE, what="key (new)")
        done = keyrotation.rotate_own(archive, old, path, new, reason)
    if as_json:
        out_json(done.to_json())
    else:
        say(done.new_key_id)
        err(f"rotated {done.name}'s key {done.old_key_id} to {done.new_key_id} in entry "
            f"{done.seq}" + (f"; the new key is in {done.key_path}" if done.key_path else ""))


def objects_option(objects: str | None, s3_endpoint: str | None,
                   retention_days: int | None) -> dict[str, Any] | None:
    """The S3 object store named by --objects (None: a folder in the archive), for init and
    migrate alike; a usage error names the option."""
    from custody.ops.backends import s3_objects_config

    if objects is None:
        if retention_days is not None:
            raise UsageError("--retention-days applies to --objects s3://... only")
        return None
    try:
        return s3_objects_config(objects, s3_endpoint, retention_days)
    except ValueError as exc:
        raise UsageError(f"--objects: {exc}") from None


@app.command()
def init(
    directory: Path = typer.Argument(None, help="Archive folder [--archive, $CUSTODY_ARCHIVE or ./archive]"),
    name: str = typer.Option(..., "--name", help="The organisation's name."),
    objects: str = typer.Option(None, "--objects", help="Keep the objects in S3: s3://BUCKET/PREFIX (the bucket must have Object Lock) [a folder in the archive]"),
    s3_endpoint: str = typer.Option(None, "--s3-endpoint", envvar="CUSTODY_S3_ENDPOINT", help="The S3 endpoint URL, for a store other than AWS (Ceph, MinIO) [$CUSTODY_S3_ENDPOINT]"),
    retention_days: int = typer.Option(None, "--retention-days", help="Object Lock (COMPLIANCE) retention of each object, in days [3650]"),
    ledger: str = typer.Option(None, "--ledger", help="Keep the ledger in PostgreSQL: postgresql://ROLE@HOST:PORT/DATABASE, no password in it (PGPASSWORD or ~/.pgpass) [SQLite in the archive]"),
    encrypt: bool = typer.Option(False, "--encrypt", help="Seal content, metadata and sensitive fields with age for the archive's custodians (docs/FORMAT.md §12)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Make an archive and its archive key; the acting custodian becomes its first admin.

    The archive key gets its own passphrase: $CUSTODY_ARCHIVE_PASSPHRASE, else asked twice. It
    needs at least 12 characters and must differ from the admin's own passphrase.
    With --objects s3://BUCKET/PREFIX the objects go to S3 under Object Lock (docs/BACKENDS.md);
    credentials come from the standard AWS environment or profile, never from the archive.
    With --ledger postgresql://... the ledger goes to that (empty) database (docs/BACKENDS.md).
    """
    from custody.ops.backends import pg_ledger_config

    ledger_at = None
    if ledger is not None:
        try:
            ledger_at = pg_ledger_config(ledger)
        except ValueError as exc:
            raise UsageError(f"--ledger: {exc}") from None

    store = objects_option(objects, s3_endpoint, retention_days)
    root = directory or state.archive_path
    path = state.key_path or default_key_path()
    admin_pass = passphrase()
    admin = load_key(path, admin_pass)
    warn_if_weakly_protected(path, "custody key passwd")
    archive_pass = passphrase(confirm=True, env=ARCHIVE_PASSPHRASE, what="archive key")
    check_archive_passphrase(archive_pass, admin_pass)
    archive = Archive.create(root, name, admin, archive_pass, objects=store, ledger=ledger_at,
                             encrypt=encrypt)
    info = {"archive": str(root), "name": name, "origin": archive.config.origin,
            "archive_key_id": archive.config.archive_key.key_id, "admin": admin.key_id}
    if archive.sealer is not None:
        info["sealed"] = archive.sealer.recipient
    if ledger_at is not None:
        from custody.ops.backends import ledger_label

        info["ledger"] = ledger_label(ledger_at)
    if store is not None:
        info["objects"] = f"s3://{store['bucket']}/{store['prefix']}".rstrip("/")
    if as_json:
        out_json(info)
    else:
        say(f"archive {root}: {name}, admin {admin.public.name} ({admin.key_id})")


@app.command()
def migrate(
    to: Path = typer.Option(..., "--to", metavar="DIR", help="The new archive folder: absent or empty (or this archive's unfinished migration, to resume it)."),
    ledger: str = typer.Option("sqlite", "--ledger", help="sqlite (DIR/ledger.db) or postgresql://… [sqlite]"),
    objects: str = typer.Option("folder", "--objects", help="folder (DIR/objects) or s3://BUCKET/PREFIX (the bucket must have Object Lock) [folder]"),
    s3_endpoint: str = typer.Option(None, "--s3-endpoint", envvar="CUSTODY_S3_ENDPOINT", help="The S3 endpoint URL, for a store other than AWS (Ceph, MinIO) [$CUSTODY_S3_ENDPOINT]"),
    retention_days: int = typer.Option(None, "--retention-days", help="Object Lock (COMPLIANCE) retention of each object, in days [3650]"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Copy the archive (--archive) to other backends, checking every object and entry; the
    source is only read. An admin signs the copy's last entry (`migrated`). Rerun the same
    command to continue after an interruption (docs/BACKENDS.md, "Moving an archive")."""
    from custody.cli.progress import StageProgress
    from custody.ops.backends import ledger_config
    from custody.ops.migrate import Target
    from custody.ops.migrate import migrate as copy_archive

    store = objects_option(None if objects == "folder" else objects, s3_endpoint, retention_days)
    ledger_config(ledger)  # a usage error before anything is opened
    source = open_archive()
    key = acting_key()
    with StageProgress("migrate") as progress:
        done = copy_archive(source, key, Target(to, ledger, store), progress)
    if as_json:
        out_json(done.to_json())
    else:
        say(f"migrated {done.entries} entries and {done.objects} objects to {to}; sealed by "
            f"entry {done.seq}; root {done.root}")
    for path in done.quarantined_in_source:
        err(f"custody: note: {path} (set aside in the source, not an object) was not copied")


@app.command()
def enroll(
    pubkey: str = typer.Argument(..., help="The custodian's .pub file (or its ssh-ed25519 line)."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    name: str = typer.Option(None, "--name", help="Name to record [the .pub file's comment]"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """An admin enrols another custodian's public key with a role."""
    from custody.ops import custodians

    if role not in ROLES:
        raise UsageError(f"unknown role '{role}': choose one of {', '.join(ROLES)}")
    archive = open_archive()
    public = read_public_key(pubkey)
    if name:
        public = PublicKey(raw=public.raw, name=name)
    if not public.name:
        raise UsageError("the public key has no name: pass --name")
    done = custodians.enroll(archive, acting_key(), public, role)
    if as_json:
        out_json(done.to_json())
    else:
        say(f"enrolled {done.name} ({done.key_id}) as {done.role} in entry {done.seq}")


# Ingest and views ------------------------------------------------------------------------------

@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., metavar="PATH", help="Files and folders (folders recursively)."),
    case: str = typer.Option(None, "--case", help="Case identifier to file the items under."),
    note: str = typer.Option(None, "--note", help="A note recorded with each ingest entry."),
    include: list[str] = typer.Option(None, "--include", metavar="PATTERN", help="Only files in the folders given (or dumps) that match (repeatable; see docs/CLI.md)."),
    exclude: list[str] = typer.Option(None, "--exclude", metavar="PATTERN", help="Leave out files and folders that match (repeatable; wins over --include)."),
    keep_junk: bool = typer.Option(False, "--keep-junk", help="Keep operating-system junk (.DS_Store, Thumbs.db, ._*, .Trashes, ...)."),
    unpack: bool = typer.Option(False, "--unpack", help="Also ingest each member of a .zip/.tar(.gz|.bz2|.xz) dump, linked to the dump (kept whole)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be stored, skipped and already present; store nothing."),
    as_json: bool = typer.Option(False, "--json"),
    c2pa_trust_anchors: list[Path] = typer.Option(None, "--c2pa-trust-anchors", metavar="FILE.pem", help="Validate C2PA signers against these PEM certificates too (besides custody.json's c2pa.trust_anchors); none by default."),
    enrich_now: bool = typer.Option(False, "--enrich", help="Also record ExifTool's full reading of the JPEGs the fast path left it for, before exiting (else: custody enrich)."),
    full_metadata: bool = typer.Option(False, "--full-metadata", help="No fast path: every file is read by ExifTool before its ingest entry is signed."),
) -> None:
    """Ingest files and folders: store each file once, sign an entry for every file seen."""
    from custody.ops.c2pa_trust import configured_files, load_trust

    archive = open_archive()
    c2pa_trust = load_trust(configured_files(archive.root) + list(c2pa_trust_anchors or []))
    with contextlib.ExitStack() as workers:
        # The key's scrypt runs in a child process while this one imports what an ingest needs
        # and the first metadata worker starts (Python, its readers, ExifTool): a fixed start
        # paid once, not three times in a row.
        opened_key = workers.enter_context(acting_key_aside())
        from custody.metadata import MetadataReader, close_all

        # one metadata worker per core: the second is started only when first needed
        readers = [MetadataReader(c2pa_trust=c2pa_trust) for _ in range(min(2, os.cpu_count() or 1))]
        # Stopped together, each reaped (no zombie); a closed reader starts nothing, so the
        # start below cannot leave a worker behind when the key fails.
        workers.callback(close_all, readers)
        if not dry_run:  # a dry run reads no metadata
            threading.Thread(target=_start_quietly, args=(readers[0],), name="worker-start",
                             daemon=True).start()
        _ingest(archive, opened_key(), readers, paths, case, note, include, exclude, keep_junk,
                unpack, dry_run, as_json, enrich_now, full_metadata)


def _start_quietly(reader: Any) -> None:
    """Start a metadata worker early. Whatever goes wrong here is met again, and said, when the
    ingest asks the worker for its first file."""
    with contextlib.suppress(Exception):
        reader.start()


def _ingest(archive: Archive, key: SigningKey, readers: list[Any], paths: list[Path],
            case: str | None, note: str | None, include: list[str] | None,
            exclude: list[str] | None, keep_junk: bool, unpack: bool, dry_run: bool,
            as_json: bool, enrich_now: bool, full_metadata: bool) -> None:
    from custody.cli.progress import IngestProgress
    from custody.ops.ingest import Ingest
    from custody.ops.selection import Selection, select_files
    from custody.ops.sidecars import ingest_lines as sidecar_lines
    from custody.package.dumps import Unpacker, dump_paths
    from custody.search.similar import looks_like_line

    skipped: list[dict[str, str]] = []
    selection = Selection(tuple(include or ()), tuple(exclude or ()), keep_junk)
    files = select_files(paths, skipped, selection)
    for s in skipped:
        if "selected" not in s:  # junk and excluded files are counted in the summary
            err(f"skipped {s['path']}: {s['reason']}")

    def file_done(result: Any) -> None:
        progress.file_done(result)
        if result.replaced:
            err(f"repaired {result.sha256}: the damaged file at its name is kept as "
                f"{result.replaced}")
        if result.looks_like:
            err(looks_like_line(result.path, result.sha256, result.looks_like))

    progress = IngestProgress(files, quiet=as_json, dry_run=dry_run)
    run = None
    try:
        with progress:
            expand = Unpacker(selection, on_refused=lambda r: err(
                f"refused {r['path']}: {r['reason']}")) if unpack else None
            run = Ingest(archive, key, readers, case=case, note=note,
                         on_file=file_done, on_bytes=progress.advance,
                         on_skip=lambda s: None if "selected" in s else err(
                             f"skipped {s['path']}: {s['reason']}"),
                         expand=expand, dry_run=dry_run, fast=not full_metadata)
            try:
                report = run.run(files)
            except CustodyError:  # e.g. a full disk: --json still says what was stored and recorded
                if as_json:
                    run.report.skipped[:0] = skipped
                    out_json(run.report.to_json())
                raise
            report.skipped[:0] = skipped  # the walk's skips first, then those found when opening
            if enrich_now and report.deferred:
                from custody.ops import enrich as enrichment
                ours = set(report.deferred)  # this run's first ingests: this key's to enrich
                waiting = {d.item: d for d in enrichment.mine(archive, key, [
                    d for d in enrichment.pending(archive) if d.item in ours])}
                todo = [waiting[i] for i in report.deferred if i in waiting]
                report.enriched = len(enrichment.enrich(archive, key, readers, todo).recorded)
    except KeyboardInterrupt:
        _interrupted_ingest(archive, run.report.batch if run else None, progress, len(files))
        raise typer.Exit(130) from None
    if as_json:
        out_json(report.to_json())
    summary = report.to_json()["summary"]
    err(_ingest_summary(summary, dry_run))
    if not unpack and (dumps := dump_paths(files)):
        err(f"{dumps[0]}" + (f" and {len(dumps) - 1} more" if len(dumps) > 1 else "")
            + " stored as is: add --unpack to ingest the members of a zip or tar dump too")
    if run is not None and run.look_alikes.problem:
        err(run.look_alikes.problem)
    if (left := len(report.deferred) - report.enriched) > 0:
        err(f"{left} JPEG(s) wait for ExifTool's full reading (their fields are recorded): "
            "run custody enrich, or ingest with --enrich")
    for line in sidecar_lines([(f.path, f.sidecar) for f in report.files if f.sidecar]):
        err(line)
    unreadable = [s for s in skipped if s.get("unreadable")]
    if summary["failed"] or unreadable:
        what = [f"{summary['failed']} file(s)"] if summary["failed"] else []
        what += [f"{len(unreadable)} path(s) given or found in a folder"] if unreadable else []
        raise CustodyError(f"{' and '.join(what)} could not be read and were not stored "
                           "(everything else was)")


def _ingest_summary(summary: dict[str, Any], dry_run: bool) -> str:
    """One line: what was stored, already there, left out, refused; a dry run says it stored nothing."""
    present = summary["present"] + summary["unchanged"]
    text = (f"{summary['new']} new, {present} already present"
            + (f" ({summary['unchanged']} already recorded from the same source: not recorded "
               "again)" if summary["unchanged"] else "")
            + f", {summary['failed']} failed, {summary['skipped']} skipped")
    left_out = [f"{summary[k]} {w}" for k, w in (("junk", "operating-system junk"),
                                                  ("excluded", "excluded")) if summary[k]]
    text += f" ({', '.join(left_out)})" if left_out else ""
    text += f", {summary['refused']} refused in dumps" if summary["refused"] else ""
    text += f"; {summary['bytes']} bytes"
    return "dry run, nothing was stored: " + text if dry_run else text


def _interrupted_ingest(archive: Archive, batch: str | None, progress: Any, total: int) -> None:
    """Say exactly what an interrupted ingest stored. The ledger is the truth: a batch may have
    committed just before Ctrl-C, with its lines not yet printed; print those lines too."""
    from custody.core import entry as entries
    from custody.ops.ingest import FileResult

    recorded = []
    if batch is not None:
        for row in archive.ledger.rows_with_action("ingest", "sighting"):
            e = entries.parse(row.body)
            if e.details.get("batch") == batch:
                recorded.append(e)
    for e in recorded:
        if e.seq not in progress.printed:
            progress.file_done(FileResult(
                path=str((e.details.get("source") or {}).get("path")),
                status="new" if e.action == "ingest" else "present", sha256=e.item, seq=e.seq))
    new = sum(e.action == "ingest" for e in recorded)
    err(f"custody: interrupted: {len(recorded)} of {total} file(s) stored and recorded "
        f"({new} new, {len(recorded) - new} already present; ingest batch {batch or '-'}); "
        "the rest were not recorded: run the same ingest again to finish")


@app.command()
def enrich(
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also read again the items whose every earlier enrichment failed."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record ExifTool's full reading of the items ingest's fast path left it for."""
    from custody.metadata import MetadataReader, close_all
    from custody.ops import enrich as enrichment

    archive = open_archive()
    key = acting_key()
    waiting = enrichment.pending(archive, retry_failed=retry_failed)
    todo = enrichment.mine(archive, key, waiting)  # the ingesting custodian's, or an admin's
    if len(todo) < len(waiting):
        err(f"{len(waiting) - len(todo)} item(s) left for the custodian who ingested them or an "
            "admin (only they may sign an item's later reading)")
    with contextlib.ExitStack() as stack:
        readers = [MetadataReader() for _ in range(min(2, os.cpu_count() or 1))]
        stack.callback(close_all, readers)
        report = enrichment.enrich(archive, key, readers, todo, on_item=None if as_json else (
            lambda d: say(f"{'failed  ' if d['failed'] else 'enriched'} {d['sha256']} "
                          f"(entry {d['seq']})" + (f": {'; '.join(d['errors'])}"
                                                   if d["failed"] else ""))))
    if as_json:
        out_json(report.to_json())
    summary = report.to_json()["summary"]
    err(f"{summary['enriched']} enriched, {summary['failed']} failed (recorded; "
        "custody enrich --retry-failed reads them again)" if summary["failed"] else
        f"{summary['enriched']} enriched")


@app.command("list")
def list_items(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every item, in order of first ingest."""
    from custody.ops import items as views

    rows = views.listing(open_archive_to_read())
    if as_json:
        out_json(rows)
        return
    for text in display.table(
        ["SHA-256", "BYTES", "TYPE", "CAPTURED", "CASES", "NAME"],
        [[display.short(r["sha256"]), display.size(r["size"]), r["mime"] or "-",
          display.when(r["captured_at"], r["captured_at_basis"]), ", ".join(r["cases"]) or "-",
          r["names"][0] if r["names"] else "-"] for r in rows],
        right=["BYTES"],
    ):
        say(text)
    _legend(r["captured_at_basis"] for r in rows)
    err(f"{len(rows)} item(s)")


def _legend(bases: Any) -> None:
    """Explain the mark of an offset-unknown time when a table shows one."""
    from custody.metadata.clocks import CAMERA_NO_OFFSET

    if CAMERA_NO_OFFSET in set(bases):
        say(display.UNKNOWN_OFFSET_LEGEND)


@app.command()
def show(
    item: str = typer.Argument(..., help="SHA-256 or a unique prefix of 8+ hex digits."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One item: hashes, metadata, names seen and its full history."""
    from custody.ops import items as views

    archive = open_archive_to_read()
    data = views.show(archive, archive.resolve_item(item))
    if as_json:
        out_json(data)
        return
    for text in show_lines(data):
        say(text)


def _place(gps: dict[str, Any] | None, problems: list[str] | None = None) -> str:
    if problems:  # a flagged fix is no place (its values stay in the metadata)
        return "not a place: " + "; ".join(problems)
    if not gps:
        return "-"
    alt = f", {gps['alt']} m" if gps.get("alt") is not None else ""
    return f"{gps['lat']:.6f}, {gps['lon']:.6f}{alt}"


def c2pa_pairs(data: dict[str, Any]) -> list[tuple[str, object]]:
    """`show`'s C2PA lines: the verdict first (INVALID in capitals), then what it rests on."""
    from custody.metadata import provenance as c2pa_record

    found = c2pa_record.c2pa_of(data["metadata"])
    if found is None:
        return [("c2pa", "no manifest")]
    pairs: list[tuple[str, object]] = [("c2pa", c2pa_record.describe(found))]
    if found.get("claim_generator"):
        pairs.append(("c2pa generator", found["claim_generator"]))
    codes = [f"{c['code']} ({c['result']})" for c in found.get("validation_status") or []
             if c.get("result") != "success"]
    if codes:
        pairs.append(("c2pa status", codes))
    return pairs


def lineage_lines(data: dict[str, Any]) -> list[tuple[str, object]]:
    """`show`'s lineage: the original of a derivative, and each derivative of an item."""
    from custody.ops.lineage import operations_text

    pairs: list[tuple[str, object]] = []
    origin = data.get("derived_from")
    if origin:
        pairs.append(("derived from", f"{origin['sha256']} (entry {origin['seq']}, "
                                      f"{origin['by']}): {operations_text(origin['operations'])}"))
        tools = origin.get("tools") or {}
        pairs.append(("derived with", [f"{k} {v}" for k, v in tools.items()]))
    for d in data.get("derivatives") or []:
        pairs.append(("derivative", f"{d['sha256']} (entry {d['seq']}, {d['by']}): "
                                    f"{operations_text(d['operations'])}"))
    return pairs


def later_reading_pairs(data: dict[str, Any]) -> list[tuple[str, object]]:
    """Each later reading (an `enriched` entry) beside the ingest's, attributed, with every
    field where the two disagree (docs/METADATA.md "Two readings")."""
    pairs: list[tuple[str, object]] = []
    for r in data.get("enriched_readings") or []:
        said = "FAILED: " + "; ".join(r["errors"]) if r["failed"] else "read"
        flags = "" if r["by_permitted"] else (
            " [NOT ALLOWED: signed by neither the custodian who ingested it nor an admin]")
        if not r["completes_record"]:
            flags += " [names another document than the ingest's]"
        pairs.append(("later reading", f"#{r['seq']} {r['tool']} {r['version'] or ''} by "
                                       f"{r['by']} at {display.when(r['time'])}: {said}{flags}"))
        for d in r["disagreements"]:
            pairs.append(("  DISAGREES", f"{d['field']}: ingest {_reading_value(d['ingest'])}, "
                                         f"later {_reading_value(d['later'])}"))
    return pairs


def _reading_value(value: object) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return str(value)


def show_lines(data: dict[str, Any]) -> list[str]:
    """`show` for people: one field a line, lists joined, times in one style, then the history."""
    from custody.metadata.clocks import listed_once
    from custody.ops import sidecars

    device = " ".join(str(v) for v in (data["device"] or {}).values() if v) or "-"
    holder = data["holder"]
    pairs: list[tuple[str, object]] = [
        ("sha256", data["sha256"]), ("size", f"{display.size(data['size'])} bytes"),
        ("type", data["mime"] or "-"), ("names", data["names"]), ("cases", data["cases"]),
        ("incidents", data["incidents"]), ("tags", data["tags"]),
        ("captured", display.when(data["captured_at"], data["captured_at_basis"])),
        ("captured basis", data["captured_at_basis"] or "-"),
        ("place", _place(data["gps"], data.get("gps_problems") or [])),
        ("device", device), ("ingested", display.when(data["ingested_at"])),
        ("ingested by", data["ingested_by"]),
        ("holder", f"{holder['name']} ({holder['holder'][:12]}) since "
                   f"{display.when(holder['since'])}" if holder else "-"),
        ("metadata errors", data["metadata_errors"] or "none"),
        *c2pa_pairs(data),
        *later_reading_pairs(data),
    ]
    for u in data.get("unpacked_from") or []:  # ingest --unpack: the dump it came from
        pairs.append(("unpacked from", f"{u['container']} ({', '.join(u['container_names'])}) "
                                       f"at {u['member']}"))
    if data.get("members"):
        pairs.append(("members", f"{len(data['members'])} item(s) unpacked from this dump "
                                 "(show --json lists them)"))
    pairs += sidecars.show_lines(data)
    pairs += lineage_lines(data)
    for n in data["notes"]:
        old = f" [superseded by #{n['superseded_by']}]" if n["superseded_by"] else ""
        pairs.append(("note", f"#{n['seq']} {n['by']}: {n['text']}{old}"))
    for h in data["history"]:  # the centre's receipts (custody sync), checked by verify
        if h["action"] == "handed_in":
            d = h["details"]
            size = str(d.get("checkpoint", "")).split("\n")[1:2] or ["?"]
            pairs.append(("handed in", f"#{h['seq']} to {d.get('centre')} as its entry "
                                       f"#{d.get('seq')}; receipt: its checkpoint of size "
                                       f"{size[0]}"))
    for algo, value in (data["digests"] or {}).items():
        pairs.append((algo, value))
    # every clock found, so offsets show; clocks that say the same are listed once
    for clock in listed_once(data["metadata"].get("clocks") or []):
        pairs.append(("clock", f"{clock.get('source')}: {clock.get('value')}"
                               f" (UTC {display.when(clock.get('utc')) if clock.get('utc') else 'unknown'})"))
    out = display.fields(pairs)
    if data["captured_at_basis"] and display.when(
            data["captured_at"], data["captured_at_basis"]).endswith(display.UNKNOWN_OFFSET_MARK):
        out.append(display.UNKNOWN_OFFSET_LEGEND)
    out += ["", "history:"]
    out += ["  " + text for text in display.table(
        ["SEQ", "TIME (UTC)", "ACTION", "BY", "HOLDER AFTER", "WHY"],
        [[f"#{h['seq']}", display.when(h["time"]), h["action"],
          f"{h['actor_name']} ({h['actor'][:12]})", h["holder_after_name"] or "-",
          h["details"].get("purpose") or h["details"].get("reason") or ""]
         for h in data["history"]])]
    return out


@app.command()
def log(
    item: str = typer.Argument(None, help="Only this item's entries."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines, one entry per line (as --format jsonl)."),
    fmt: str = typer.Option(None, "--format", help="jsonl or csv: every column of docs/REPORTS.md, for a reviewer's tools."),
) -> None:
    """Ledger entries, all or one item's."""
    if fmt is not None and fmt not in ("jsonl", "csv"):
        raise UsageError(f"unknown --format '{fmt}': choose jsonl or csv")
    archive = open_archive()
    if as_json or fmt is not None:
        from custody.report import logs

        write = logs.write_csv if fmt == "csv" else logs.write_jsonl
        target = archive.resolve_item(item) if item else None
        display.stdout_state.json_written = True  # lines may follow: no error document after them
        write(sys.stdout, archive, target)
        return
    from custody.ops import items as views

    rows = views.log(archive, archive.resolve_item(item) if item else None)
    for text in display.table(
        ["SEQ", "TIME (UTC)", "ACTION", "ITEM", "BY"],
        [[f"#{r['seq']}", display.when(r["time"]), r["action"], display.short(r["item"]),
          r["actor_name"]] for r in rows],
    ):
        say(text)


@app.command()
def verify(
    item: str = typer.Argument(None, help="Only this item's object (the whole ledger is always checked)."),
    held: list[Path] = typer.Option(None, "--checkpoint", help="A checkpoint you hold: the log must extend it."),
    record: bool = typer.Option(False, "--record", help="Append the outcome as a signed verification entry (needs --key)."),
    ledger_only: bool = typer.Option(False, "--ledger-only", help="Check the record only (entries, tree, checkpoints), not the objects' content."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check objects, signatures, hash chain, Merkle tree, checkpoints, key files and the search
    index (a sealed archive's with a custodian's key only); exit 1 on any problem, 3 if nothing
    is wrong but something could not be read."""
    from custody.errors import VerificationFailed
    from custody.ops import checkpoints
    from custody.ops.verify import audit, unlock_to_check_index

    archive = open_archive()
    # a sealed archive's search index is checked only with a custodian's key (FORMAT.md §12.6)
    if archive.sealer is not None and (state.key_path or os.environ.get("CUSTODY_KEY")):
        if (why := unlock_to_check_index(archive, acting_key)) is not None:
            err(f"custody: warning: {why}: the sealed search index is not checked")
    target = archive.resolve_item(item) if item else None
    external = []
    for path in held or []:
        try:
            external.append(checkpoints.open_kept(archive, read_text_arg(path, "checkpoint")))
        except VerificationFailed as exc:
            raise VerificationFailed([f"{path}: {p}" for p in exc.problems]) from None
    report = audit(archive, target, external=external, objects=not ledger_only)
    if record:
        from custody.ops.verification import record_verification

        recorded = record_verification(
            archive, acting_key(), target, ok=report.ok, problems=len(report.problems),
            entries=report.entries, objects=report.objects,
        )
        err(f"recorded as entry {recorded.seq}")
    if as_json:
        out_json(report.to_json())
    else:
        for p in report.problems:
            say(f"PROBLEM: {p}")
        for u in report.unreadable:
            say(f"CANNOT READ: {u}")
        for n in report.notices:
            say(f"notice: {n}")
        for sha256, lock in report.retention.items():
            say(f"retained: object {sha256} {lock['mode'] or 'without retention'}"
                + (f" until {lock['retain_until']}" if lock["retain_until"] else ""))
        if report.ok:
            say(f"OK: {report.entries} entries and {report.objects} objects verified")
    if report.problems:
        more = f", and {len(report.unreadable)} thing(s) could not be read" \
            if report.unreadable else ""
        err(f"custody: verification failed: {len(report.problems)} problem(s){more}")
    elif report.unreadable:
        err(f"custody: verification incomplete: {len(report.unreadable)} thing(s) could not be "
            "read (no problem found in the rest)")
    if report.exit_code:
        raise typer.Exit(report.exit_code)


# Access, transfer, revocation ------------------------------------------------------------------

@app.command()
def get(
    item: str = typer.Argument(..., help="The item (SHA-256 or 8+ hex digits of it)."),
    purpose: str = typer.Option(..., "--purpose", help="Why you read it: recorded in the ledger."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the copy (must not exist)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A logged copy of an item's content, verified against its SHA-256 as it is copied."""
    from custody.ops import access

    archive = open_archive()
    key = acting_key()
    done = access.get(archive, key, archive.resolve_item(item), purpose, output)
    if as_json:
        out_json(done.to_json())
    else:
        say(f"wrote {done.path} ({done.size} bytes, SHA-256 verified); access recorded")


@app.command()
def derive(
    item: str = typer.Argument(..., help="The original (SHA-256 or 8+ hex digits of it)."),
    purpose: str = typer.Option(..., "--purpose", help="Why: recorded in the access and derived entries."),
    redact: list[str] = typer.Option(None, "--redact", metavar="X,Y,W,H", help="Fill this box (pixels of the picture as displayed) with black; repeatable. Images, or a --still."),
    strip_metadata: bool = typer.Option(False, "--strip-metadata", help="Leave out every metadata field (GPS, serial numbers, names)."),
    trim: str = typer.Option(None, "--trim", metavar="START-END", help="Keep this span of a video (seconds, or [HH:]MM:SS[.fff])."),
    transcode: str = typer.Option(None, "--transcode", metavar="PRESET", help="Re-encode a video: mp4-h264-720p, mp4-h264-480p or mp4-h264-source."),
    still: str = typer.Option(None, "--still", metavar="AT", help="One frame of a video, at this time, as a PNG picture."),
    case: str = typer.Option(None, "--case", help="File the derivative under this case."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Make a new item from an item (redacted, stripped, trimmed, transcoded, a still), with its
    lineage signed in a `derived` entry; the original is read through a logged access."""
    from custody.core.derivation import DerivationError, operations
    from custody.metadata import MetadataReader
    from custody.ops import derive as derivations

    try:
        ops = operations(redact=redact, strip_metadata=strip_metadata, trim_range=trim,
                         preset=transcode, still=still)
    except DerivationError as exc:
        raise UsageError(str(exc)) from None
    archive = open_archive()
    key = acting_key()
    with MetadataReader() as reader:
        done = derivations.derive(archive, key, reader, archive.resolve_item(item), purpose, ops,
                                  case=case)
    if as_json:
        out_json(done.to_json())
    elif done.status == "new":
        say(f"derived {done.item} from {done.original} (entry {done.seq}); access recorded")
    else:
        say(f"present  {done.item}: this derivative was already recorded; access recorded")


@app.command()
def revoke(
    key_id: str = typer.Argument(..., help="The custodian's key id (8+ hex digits) or name."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the ledger."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """An admin revokes a custodian: their past entries stay valid, new ones are refused."""
    from custody.ops import custodians

    archive = open_archive()
    done = custodians.revoke(archive, acting_key(), key_id, reason)
    if as_json:
        out_json(done.to_json())
    else:
        say(f"revoked {done.name} ({done.key_id}) in entry {done.seq}")


@app.command()
def transfer(
    items: list[str] = typer.Argument(..., metavar="ITEM", help="Items to hand over."),
    to: str = typer.Option(..., "--to", help="The receiver's key id (8+ hex digits) or name."),
    purpose: str = typer.Option(..., "--purpose", help="Why: recorded in the ledger."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Offer custody of items to another custodian (signed by you, the holder)."""
    from custody.ops import transfer as transfers

    archive = open_archive()
    key = acting_key()
    offers = transfers.offer(archive, key, [archive.resolve_item(i) for i in items], to, purpose)
    if as_json:
        out_json([o.to_json() for o in offers])
        return
    for text in display.table(["OFFER", "ITEM", "TO"],
                              [[o.offer, display.short(o.item), f"{o.to_name} ({o.to[:12]})"]
                               for o in offers], right=["OFFER"]):
        say(text)
    err(f"the receiver accepts with: custody accept {offers[0].offer}")


@app.command()
def accept(
    offer: int = typer.Argument(..., help="The offer number (its entry number)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Accept a custody offer made to you (and the rest of its transfer): you become the holder."""
    from custody.ops import transfer as transfers

    _closed(transfers.accept(open_archive(), acting_key(), offer), "accepted offer {offer}: "
            "you now hold {item} (entry {seq})", as_json)


@app.command()
def withdraw(
    offer: int = typer.Argument(..., help="The offer number."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Withdraw a custody offer you made that is still pending."""
    from custody.ops import transfer as transfers

    _closed(transfers.withdraw(open_archive(), acting_key(), offer),
            "withdrew offer {offer} of {item} (entry {seq})", as_json)


def _closed(done: list[Any], line: str, as_json: bool) -> None:
    if as_json:
        out_json([d.to_json() for d in done])
        return
    for d in done:
        say(line.format(offer=d.offer, item=d.item[:16], seq=d.seq))


@app.command()
def transfers(
    pending: bool = typer.Option(False, "--pending", help="Only offers not yet accepted or withdrawn."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Custody offers: pending, accepted and withdrawn."""
    from custody.ops import transfer as transfer_ops

    archive = open_archive_to_read()
    rows = transfer_ops.listing(archive, pending)
    if as_json:
        out_json(rows)
        return
    sealed = archive.sealer is not None  # a purpose this reader's keys do not open stays sealed
    for text in display.table(
        ["OFFER", "STATE", "ITEM", "FROM", "TO", "PURPOSE"],
        [[r["offer"], r["state"], display.short(r["item"]), r["from_name"], r["to_name"],
          "(sealed)" if sealed and r["purpose"] is None else r["purpose"]] for r in rows],
        right=["OFFER"],
    ):
        say(text)


# Cases, incidents, notes, tags -------------------------------------------------------------------

case_app = typer.Typer(help="File items under cases.", no_args_is_help=True)
app.add_typer(case_app, name="case")
incident_app = typer.Typer(help="Incidents: a date, a place and a description, grouping items.",
                           no_args_is_help=True)
app.add_typer(incident_app, name="incident")


def _seqs_out(seqs: list[int], what: str, as_json: bool) -> None:
    if as_json:
        out_json({"entries": seqs})
    else:
        say(f"{what}: entr{'y' if len(seqs) == 1 else 'ies'} {', '.join(map(str, seqs))}")


@case_app.command("add")
def case_add(
    items: list[str] = typer.Argument(..., metavar="ITEM", help="Items (SHA-256 or 8+ hex digits of each)."),
    case: str = typer.Option(..., "--case"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """File items under a case."""
    from custody.ops import annotate

    archive = open_archive()
    seqs = annotate.case_add(archive, acting_key(), [archive.resolve_item(i) for i in items], case)
    _seqs_out(seqs, f"added to case {case}", as_json)


@case_app.command("remove")
def case_remove(
    items: list[str] = typer.Argument(..., metavar="ITEM", help="Items (SHA-256 or 8+ hex digits of each)."),
    case: str = typer.Option(..., "--case"),
    reason: str = typer.Option(..., "--reason"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Take items out of a case (the earlier filing stays in the history)."""
    from custody.ops import annotate

    archive = open_archive()
    seqs = annotate.case_remove(archive, acting_key(), [archive.resolve_item(i) for i in items],
                                case, reason)
    _seqs_out(seqs, f"removed from case {case}", as_json)


@incident_app.command("new")
def incident_new(
    incident: str = typer.Argument(..., help="An identifier, e.g. M10-2016-10-03."),
    date: str = typer.Option(..., "--date", help="YYYY-MM-DD or an RFC 3339 time."),
    description: str = typer.Option(..., "--description"),
    case: str = typer.Option(None, "--case"),
    place: str = typer.Option(None, "--place", help="LAT,LON[,NAME]"),
    supersedes: int = typer.Option(None, "--supersedes", help="Entry of the incident this corrects."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record an incident (or a correction of one, with --supersedes)."""
    from custody.ops import annotate

    seq = annotate.incident_new(open_archive(), acting_key(), incident, case=case, date=date,
                                place=place, description=description, supersedes=supersedes)
    _seqs_out([seq], f"incident {incident}", as_json)


@incident_app.command("add")
def incident_add(
    incident: str = typer.Argument(...),
    items: list[str] = typer.Argument(..., metavar="ITEM", help="Items (SHA-256 or 8+ hex digits of each)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Group items under an incident."""
    from custody.ops import annotate

    archive = open_archive()
    seqs = annotate.incident_add(archive, acting_key(), incident,
                                 [archive.resolve_item(i) for i in items])
    _seqs_out(seqs, f"added to incident {incident}", as_json)


@incident_app.command("list")
def incident_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every incident as last stated, with its items."""
    from custody.ops import annotate

    rows = annotate.incidents(open_archive_to_read())  # a sealed archive's are opened with a key
    if as_json:
        out_json(rows)
        return
    for text in display.table(
        ["INCIDENT", "DATE", "CASE", "ITEMS", "DESCRIPTION"],
        [[r["incident"], display.when(r["date"]), r["case"] or "-", len(r["items"]),
          r.get("description", "(sealed)")] for r in rows], right=["ITEMS"],
    ):
        say(text)


@app.command()
def note(
    item: str = typer.Argument(..., help="The item (SHA-256 or 8+ hex digits of it)."),
    text_arg: str = typer.Argument(None, metavar="TEXT", help="The note (or give --text)."),
    text: str = typer.Option(None, "--text", help="The note, as an option."),
    supersedes: int = typer.Option(None, "--supersedes", help="The note entry this corrects."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a note to an item (or correct one with --supersedes; both stay in the history)."""
    from custody.ops import annotate

    if (text_arg is None) == (text is None):
        raise UsageError("give the note once: custody note ITEM \"TEXT\" (or --text TEXT)")
    text = text_arg if text is None else text
    archive = open_archive()
    seq = annotate.note(archive, acting_key(), archive.resolve_item(item), text, supersedes)
    _seqs_out([seq], "note", as_json)


@app.command()
def tag(
    item: str = typer.Argument(...),
    name: str = typer.Argument(...),
    remove: bool = typer.Option(False, "--remove"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Tag an item (or --remove a tag)."""
    from custody.ops import annotate

    archive = open_archive()
    seq = annotate.tag(archive, acting_key(), archive.resolve_item(item), name, remove)
    _seqs_out([seq], f"tag {name}" + (" removed" if remove else ""), as_json)


@app.command()
def submit(
    path: Path = typer.Argument(..., help="A statement file (docs/FORMAT.md §5.8) a custodian signed on their own device."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Append a statement a custodian signed elsewhere, without their key: refused whole (exit 1,
    nothing appended) if altered, not theirs, beyond their role or already in the log."""
    from custody.ops import statements

    entry = statements.submit(open_archive(), read_text_arg(path, "statement")).entry()
    _seqs_out([entry.seq], f"{entry.action} statement {entry.statement_id}", as_json)


@app.command("sign-statement")
def sign_statement_command(
    draft: str = typer.Argument(..., help="A statement draft (custody-draft:…, or a package draft custody-package-draft:…) a web page showed you, or - to read it from stdin."),
    as_json: bool = typer.Option(False, "--json", help="Accepted for scripts: the statement file is JSON either way."),
) -> None:
    """Sign a statement draft with your key, on this device: what it says is printed on stderr,
    the statement file on stdout (paste it back into the page; docs/WEB.md, "Actions")."""
    from custody.ops import drafts
    from custody.package import export_drafts as package_drafts

    del as_json  # the output is one JSON document (the statement file) with or without it
    text = sys.stdin.read() if draft == "-" else draft
    if package_drafts.is_draft(text):  # a web export's package statement (docs/WEB.md)
        _, package = package_drafts.read(text)
        err("signing this evidence package:")
        for line in package_drafts.described(package):
            err(f"  {line}")
        out_json(package_drafts.sign(acting_key(), text))
        return
    _, statement = drafts.read(text)  # refuse a malformed draft before the passphrase is asked
    err("signing this statement:")
    for line in drafts.described(statement):
        err(f"  {line}")
    out_json(drafts.sign(acting_key(), text))



@app.command("push")
def push_command(
    paths: list[Path] = typer.Argument(..., help="Files and folders to send (folders recursively)."),
    server: str = typer.Option(..., "--server", metavar="URL", help="The custody service (`custody serve`), e.g. https://archive.example.org"),
    chunk_size: int = typer.Option(4 << 20, "--chunk-size", metavar="BYTES", help="Bytes per tus PATCH (each signed and made durable by the server)."),
    case: str = typer.Option(None, "--case", help="Case id recorded in each ingest statement."),
    note: str = typer.Option(None, "--note", help="Note recorded in each ingest statement."),
    c2pa_trust_anchors: list[Path] = typer.Option(None, "--c2pa-trust-anchors", metavar="FILE.pem", help="The served archive's C2PA trust anchors, if it has any: the metadata read here must be the server's."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file (JSON Lines)."),
) -> None:
    """Send files to a custody service over tus: hashed, read and signed here; a rerun after an
    interruption sends only the missing bytes. Exit 3 if any file failed."""
    from custody.ops.c2pa_trust import load_trust
    from custody.service import push
    from custody.service.signing import RequestSigner

    key = acting_key()

    def done(result: push.PushResult) -> None:
        if as_json:
            display.json_line(result.to_json())
            sys.stdout.flush()
            return
        said = f" ({result.error})" if result.error else ""
        say(f"{result.status:8} {result.sha256 or '-':64}  {result.path}  sent "
            f"{result.bytes_sent}, skipped {result.bytes_skipped}{said}")

    results = push.run(paths, server, key, RequestSigner(key), chunk_size=chunk_size,
                       case=case, note=note,
                       c2pa_trust=load_trust(list(c2pa_trust_anchors or [])),
                       on_result=done)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise CustodyError(f"{len(failed)} of {len(results)} file(s) failed to push; the first: "
                           f"{failed[0].path}: {failed[0].error}")

@app.command("sync")
def sync_command(
    server: str = typer.Option(..., "--server", metavar="URL", help="The centre's custody service (`custody serve`)."),
    centre_key: str = typer.Option(..., "--centre-key", metavar="VKEY", help="The centre archive's verifier key (name+id+key, as `custody checkpoint --json` prints it there), or a file holding it: its checkpoint is the receipt."),
    chunk_size: int = typer.Option(4 << 20, "--chunk-size", metavar="BYTES", help="Bytes per tus PATCH."),
    wait: float = typer.Option(60.0, "--wait", metavar="SECONDS", help="How long to wait for the centre's checkpoint over the handed-in entries."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Hand in this archive's items the centre lacks, with their signed history (a verified
    package and received statements signed here), and record the centre's signed receipt."""
    from custody.service.signing import RequestSigner
    from custody.service.sync_client import sync

    text = centre_key.strip()
    if "+" not in text and Path(text).is_file():
        text = Path(text).read_text().strip()
    archive = open_archive()
    key = acting_key()
    done = sync(archive, key, lambda: archive_key(archive), server, RequestSigner(key), text,
                chunk_size=chunk_size, wait=wait)
    if as_json:
        out_json(done)
        return
    if done["status"] == "present":
        say("present: the centre holds every item of this archive; nothing sent")
        return
    for e in done["items"]:
        say(f"handed in {e['item']}  centre entry {e['seq']}")
    say(f"receipt: the centre's checkpoint of size {done['receipt']['checkpoint_size']} "
        f"(root {done['receipt']['root_hash'][:16]}…), recorded in entries "
        f"{', '.join(map(str, done['receipt']['entries']))}")


# Checkpoints and proofs ------------------------------------------------------------------------

def archive_key(archive: Archive) -> SigningKey:
    key = archive.load_archive_key(passphrase(env=ARCHIVE_PASSPHRASE, what="archive key"))
    warn_if_weakly_protected(archive.root / "keys" / "archive.key",
                             "custody key passwd --archive-key")
    return key


@contextlib.contextmanager
def archive_key_aside(archive: Archive) -> Iterator[Callable[[], SigningKey]]:
    """`archive_key(archive)` as a function to call later: with $CUSTODY_ARCHIVE_PASSPHRASE set
    (no prompt to wait for) the key file is opened meanwhile in a child process (an export's
    two scrypts, the custodian's and the archive's, then run on two cores); the child is reaped
    when the block ends, whether the key was asked for or not."""
    if os.environ.get(ARCHIVE_PASSPHRASE) is None:
        yield lambda: archive_key(archive)
        return
    with _opened_aside(archive.root / "keys" / "archive.key", os.environ[ARCHIVE_PASSPHRASE],
                       "custody key passwd --archive-key", archive.checked_archive_key) as opened:
        yield opened


def read_text_arg(path: Path, what: str) -> str:
    if not path.is_file():
        raise NotFound(f"no {what} file at {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CustodyError(f"{path} is not UTF-8 text, so not a {what}") from None


@app.command()
def checkpoint(
    output: Path = typer.Option(None, "-o", "--output", help="Also save the signed checkpoint here."),
    tsa: str = typer.Option(None, "--tsa", envvar="CUSTODY_TSA_URL", help="RFC 3161 time-stamping authority URL to timestamp the checkpoint."),
    tsa_certs: Path = typer.Option(None, "--tsa-certs", envvar="CUSTODY_TSA_CERTS", help="PEM bundle (CA + TSA certificate) the timestamp must verify against."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Sign (with the archive key) and keep a checkpoint of the whole log; print it.

    Appends no entry. If the latest kept checkpoint already covers the whole log, it is reused.
    With --tsa, the signed checkpoint is also timestamped (RFC 3161) and the token kept.
    """
    from custody.ops import checkpoints

    if tsa and not tsa_certs:
        raise UsageError("--tsa needs --tsa-certs (the TSA's CA and certificate, PEM)")
    certs = read_text_arg(tsa_certs, "TSA certificate").encode() if tsa_certs else b""
    archive = open_archive()
    issued = checkpoints.issue(archive, archive_key(archive))
    stamped = None
    if tsa:
        stamped = checkpoints.add_timestamp(archive, issued.row, tsa, certs)
        err(f"timestamped at {stamped.gen_time} by {stamped.tsa}")
    if output is not None:
        output.write_text(issued.row.note, encoding="utf-8")
        err(f"wrote {output}")
    if as_json:
        info = issued.to_json(checkpoints.verifier(archive))
        if stamped is not None:
            info["timestamp"] = {"gen_time": stamped.gen_time, "tsa": stamped.tsa,
                                 "serial": str(stamped.serial)}
        out_json(info)
    else:
        sys.stdout.write(issued.row.note)
        err(f"checkpoint #{issued.row.id}: {issued.checkpoint.size} entries"
            + ("" if issued.new else " (already issued)"))


@app.command()
def prove(
    item: str = typer.Argument(None, help="Inclusion proofs of every entry of this item."),
    entry: int = typer.Option(None, "--entry", help="Inclusion proof of entry N."),
    against: Path = typer.Option(None, "--checkpoint", help="Prove against this checkpoint file [latest kept]."),
    old: Path = typer.Option(None, "--from", help="Consistency proof from this old checkpoint file."),
    new: Path = typer.Option(None, "--to", help="…to this newer checkpoint file [latest kept]."),
    output: Path = typer.Option(None, "-o", "--output", help="Write the proof here, not stdout."),
    as_json: bool = typer.Option(False, "--json", help="With -o: print what was written as JSON (the proof itself is always JSON)."),
) -> None:
    """Inclusion proofs (--entry N or ITEM) and consistency proofs (--from OLD [--to NEW]), as JSON."""
    from custody.ops import checkpoints

    chosen = sum(x is not None for x in (item, entry, old))
    if chosen != 1:
        raise UsageError("give exactly one of ITEM, --entry N or --from CHECKPOINT")
    archive = open_archive()
    against_note = read_text_arg(against, "checkpoint") if against else None
    result: Any
    if old is not None:
        to_note = read_text_arg(new, "checkpoint") if new else None
        result = checkpoints.consistency(archive, read_text_arg(old, "checkpoint"), to_note)
    elif entry is not None:
        if entry < 0:
            raise UsageError("--entry must be 0 or more")
        result = checkpoints.inclusion(archive, entry, against_note)
    else:
        result = checkpoints.prove_item(archive, archive.resolve_item(item), against_note).to_json()
    if output is None:
        out_json(result)  # the proof bundle is the command's JSON document, --json or not
        return
    output.write_text(display.json_text(result), encoding="utf-8")
    count = len(result["proofs"]) if "proofs" in result else 1
    if as_json:
        out_json({"path": str(output), "proofs": count,
                  "kind": "consistency" if old is not None else "inclusion"})
    else:
        err(f"wrote {output}: {count} proof(s)")


@app.command("verify-proof")
def verify_proof(
    proof: Path = typer.Argument(..., help="A proof written by 'custody prove'."),
    archive_key_arg: str = typer.Option(..., "--archive-key", help="The archive's verifier key (name+id+key), or a file holding it."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Verify a proof offline, with only the proof and the archive's public verifier key."""
    from custody.core import note, proofs

    text = archive_key_arg.strip()
    if "+" not in text and Path(text).is_file():
        text = Path(text).read_text().strip()
    try:
        vkey = note.parse_verifier_key(text)
    except note.NoteError as exc:
        raise UsageError(f"--archive-key: {exc.message}") from None
    try:
        bundle = canonical.load_json(read_text_arg(proof, "proof"))
    except json.JSONDecodeError as exc:
        raise CustodyError(f"{proof} is not JSON: {exc}") from None
    bundles = bundle["proofs"] if isinstance(bundle, dict) and "proofs" in bundle else [bundle]
    verdicts = [proofs.verify_bundle(b, vkey) for b in bundles]
    summary = [{"checkpoint_size": v.checkpoint.size,
                "entry": v.entry.seq if v.entry else None,
                "action": v.entry.action if v.entry else None,
                "old_size": v.old_checkpoint.size if v.old_checkpoint else None}
               for v in verdicts]
    if as_json:
        out_json({"ok": True, "verified": summary})
    else:
        for v in summary:
            if v["entry"] is not None:
                say(f"OK: entry {v['entry']} ({v['action']}) is in the log of "
                      f"{v['checkpoint_size']} entries")
            else:
                say(f"OK: the log of {v['old_size']} entries is a prefix of the log of "
                      f"{v['checkpoint_size']} entries")


# Field kit: panic and travel (docs/FORMAT.md §12) ----------------------------------------------

@app.command()
def lock(as_json: bool = typer.Option(False, "--json")) -> None:
    """Panic: drop every cached plaintext and key material custody could have left, at once.

    custody keeps no key agent and no key in memory between commands; this empties the spools a
    killed command may have left (sealed reads, metadata reading, reports, derivatives).
    """
    from custody.ops import encryption

    done = encryption.lock(state.archive_path)
    if as_json:
        out_json(done.to_json())
    else:
        say(f"locked: removed {len(done.removed)} cached file(s)")
    if os.environ.get("CUSTODY_PASSPHRASE"):
        err("custody: CUSTODY_PASSPHRASE is set in this shell: unset it (custody cannot)")


travel_app = typer.Typer(help="Travel mode: carry the signed record, not the content.",
                         no_args_is_help=True)
app.add_typer(travel_app, name="travel")


@travel_app.command("empty")
def travel_empty(
    held_in: Path = typer.Option(None, "--held-in", help="A package of this archive (custody export) holding every item on this device; it is verified first."),
    handed_in: bool = typer.Option(False, "--handed-in", help="Empty what the centre's signed receipts (custody sync) prove it holds; the rest stays and is named. Needs --centre-key."),
    centre_key: str = typer.Option(None, "--centre-key", metavar="VKEY", help="With --handed-in: the centre's verifier key (name+id+key, or a file holding it); only receipts it signed count."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove this device's objects once a verified package, or the centre's receipts, hold
    them; the signed ledger stays, and verify reports the content as held elsewhere."""
    from custody.package import travel

    if (held_in is None) == (not handed_in):
        raise UsageError("give either --held-in PACKAGE or --handed-in --centre-key VKEY")
    if handed_in and not centre_key:
        raise UsageError("--handed-in needs --centre-key VKEY (the key you pinned for sync)")
    archive = open_archive()
    if handed_in:
        text = centre_key.strip()
        if "+" not in text and Path(text).is_file():
            text = Path(text).read_text().strip()
        done = travel.empty_handed_in(archive, acting_key(), text)
    else:
        done = travel.empty(archive, acting_key(), held_in)
    if as_json:
        out_json(done.to_json())
    elif done.centre is not None:
        say(f"emptied {len(done.items)} object(s); held at the centre {done.centre['origin']}")
        for sha, why in done.kept.items():
            err(f"kept {sha}: {why}")
    else:
        say(f"emptied {len(done.items)} object(s); held in package {(done.package or {}).get('id')}")


# Witnesses ---------------------------------------------------------------------------------------

witness_app = typer.Typer(help="Cosign checkpoints as an independent witness.", no_args_is_help=True)
app.add_typer(witness_app, name="witness")


@witness_app.command("cosign")
def witness_cosign(
    checkpoint_file: str = typer.Argument(..., metavar="CHECKPOINT", help="The archive's signed checkpoint: a file, or a tlog-tiles log's URL (http(s)://…, e.g. a custody server)."),
    state: Path = typer.Option(..., "--state", help="This witness's state file (made on first use)."),
    archive_vkey: str = typer.Option(None, "--archive-key", help="The archive's verifier key (pinned at first use)."),
    proof: Path = typer.Option(None, "--proof", help="Consistency proof from the last checkpoint this witness cosigned."),
    output: Path = typer.Option(None, "-o", "--output", help="Write the cosigned checkpoint here."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """As a witness (--key is the witness's key): check consistency, then cosign (C2SP tlog-cosignature)."""
    import time

    from custody.ops import witness

    if checkpoint_file.startswith(("http://", "https://")):  # a tlog-tiles log: proofs from tiles
        from custody.service.tile_client import HttpTileLog

        if proof is not None:
            raise UsageError("--proof is for a checkpoint file; a log's URL gives its own tiles")
        key = acting_key()
        with HttpTileLog(checkpoint_file) as log:
            done = witness.cosign_from_log(log, archive_vkey, key, state, int(time.time()))
    else:
        text = read_text_arg(Path(checkpoint_file), "checkpoint")
        try:
            bundle = canonical.load_json(read_text_arg(proof, "proof")) if proof else None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{proof} is not JSON: {exc}") from None
        key = acting_key()
        done = witness.cosign(text, archive_vkey, key, state, bundle, int(time.time()))
    if output is not None:
        output.write_text(done.note, encoding="utf-8")
    if as_json:
        out_json({"size": done.size, "witness_key": done.witness_key, "note": done.note})
    elif output is None:
        sys.stdout.write(done.note)
    err(f"cosigned checkpoint of size {done.size} as {done.witness_key}")


@witness_app.command("add")
def witness_add(
    cosigned: Path = typer.Argument(..., help="A checkpoint note carrying the witness's cosignature."),
    witness_key: str = typer.Option(..., "--witness-key", help="The witness's cosigner verifier key."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Keep a witness's cosignature of one of this archive's checkpoints (checked on verify)."""
    from custody.ops import checkpoints

    archive = open_archive()
    kept = checkpoints.add_cosignature(archive, read_text_arg(cosigned, "checkpoint"),
                                       witness_key.strip())
    if as_json:
        out_json(kept.to_json())
    else:
        say(f"kept cosignature of checkpoint #{kept.checkpoint} (made at Unix time "
            f"{kept.cosigned_at})")


# Chain-of-custody reports ------------------------------------------------------------------------

@app.command()
def report(
    items: list[str] = typer.Argument(None, metavar="ITEM", help="Items to report on (SHA-256 or 8+ hex digits), or use --case."),
    case: str = typer.Option(None, "--case", help="Report on every item filed under this case, with a summary page."),
    output: Path = typer.Option(None, "-o", "--output", help="FILE.html or FILE.pdf."),
    purpose: str = typer.Option(None, "--purpose", help="Why you read the content: previews are made, and each item's read is a signed access entry."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's data (what its digest covers) on stdout."),
) -> None:
    """A chain-of-custody report of items or a case, as HTML or PDF; exit 1 if a check failed.

    Without --purpose no content is read and no entry is appended. When the latest checkpoint does
    not cover the log, a new one is signed if $CUSTODY_ARCHIVE_PASSPHRASE is set (never asked);
    otherwise the acting custodian signs a tree head of the log that extends it.
    """
    from custody import report as reports
    from custody.report import model

    if output is None and not as_json:
        raise UsageError("give -o FILE.html or -o FILE.pdf (or --json)")
    if output is not None:
        reports.output_format(output)  # refuse a bad name before anything is read or recorded
    if not items and case is None:
        raise UsageError("name the items to report on, or give --case ID")
    archive = open_archive()
    targets = [archive.resolve_item(i) for i in items or []]
    reader = acting_key() if purpose is not None else None
    # The archive key only when its passphrase is in the environment (a reviewer does not hold
    # it, so never asked); else the acting custodian signs the tree head (docs/REPORTS.md).
    keeper = os.environ.get(ARCHIVE_PASSPHRASE) is not None
    built = model.build(archive, targets, case=case, purpose=purpose, reader=reader,
                        destination=str(output.absolute()) if output else None,
                        unlock_archive_key=(lambda: archive_key(archive)) if keeper else None,
                        unlock_custodian_key=acting_key)
    for remark in built.remarks:
        err(f"custody: note: {remark}")
    for warning in built.model["warnings"]:
        err(f"custody: warning: {warning}")
    if output is not None:
        reports.save(built, output)
        err(f"wrote {output}: {len(built.model['items'])} item(s), {built.model['status']}, "
            f"report digest {built.digest}")
    if as_json:
        out_json(built.model)
    if not built.ok:
        err("custody: the report found problems (listed at its top)")
        raise typer.Exit(EXIT_PROBLEM)


@app.command("verify-report")
def verify_report(
    path: Path = typer.Argument(..., help="A report: the .pdf, the .html, or its data as JSON (report --json)."),
    archive_vkey: str = typer.Option(None, "--archive-key", help="The archive's verifier key, or a file holding it [the key the report names, which proves less]."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-check a report offline: its digest, checkpoint, proofs, signatures and what it shows."""
    from custody.report import recheck

    result = recheck.check_file(path, archive_vkey)
    if as_json:
        out_json(result.to_json())
    else:
        for p in result.problems:
            say(f"PROBLEM: {p}")
        for n in result.notices:
            say(f"notice: {n}")
        if result.ok:
            say(f"OK: report {result.digest} re-checked: {result.entries} entries proven in "
                  f"checkpoint of size {result.checkpoint_size}")
    if not result.ok:
        err(f"custody: the report does not re-check: {len(result.problems)} problem(s)")
        raise typer.Exit(EXIT_PROBLEM)


# Evidence packages -------------------------------------------------------------------------------

@app.command()
def export(
    items: list[str] = typer.Argument(None, metavar="ITEM", help="Items to export (or use --case)."),
    case: str = typer.Option(None, "--case", help="Export every item filed under this case."),
    purpose: str = typer.Option(..., "--purpose", help="Why: recorded in each item's access entry and in the package."),
    output: Path = typer.Option(..., "-o", "--output", help="A folder, or a .zip/.tar file (must not exist); with --format case, FILE.jsonld."),
    fmt: str = typer.Option("bag", "--format", help="bag (an evidence package) or case (a CASE/UCO JSON-LD graph of the items and their custody, docs/CASE.md)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Export items as a BagIt evidence package with their signed history, proofs and keys."""
    if fmt not in ("bag", "case"):
        raise UsageError(f"unknown --format '{fmt}': choose bag or case")
    archive = open_archive()
    if fmt == "case":
        from custody.package.export import case_items

        key = acting_key()
        refs = [archive.resolve_item(i) for i in items or []]
        chosen = refs or (case_items(archive, case) if case else [])
        _export_case(archive, key, refs, case, purpose, output, chosen, as_json)
        return
    # a bag is signed with the archive key too: both keys' scrypts run in child processes while
    # this one imports the exporter (each key still asked for after the export's checks, and
    # before any access is logged)
    try:
        with acting_key_aside() as load_custodian_key, \
                archive_key_aside(archive) as load_archive_key:
            from custody.cli.progress import ExportProgress
            from custody.package.export import case_items
            from custody.package.export import export as export_package

            key = load_custodian_key()
            refs = [archive.resolve_item(i) for i in items or []]
            chosen = refs or (case_items(archive, case) if case else [])
            with ExportProgress(_content_bytes(archive, chosen)) as progress:
                done = export_package(archive, key, load_archive_key, refs, case, purpose,
                                      output, on_bytes=progress.advance)
    except KeyboardInterrupt:
        left = output.exists() or output.with_name(f".{output.name}.custody-partial").exists()
        err(f"custody: interrupted: no package was written at {output}"
            + (" (but something is there: check it)" if left else " (the partial copy was removed)")
            + "; the access entries already recorded stay in the log")
        raise typer.Exit(130) from None
    if as_json:
        out_json(done)
        return
    say(f"wrote {done['path']}: {done['items']} item(s), {done['bytes']} bytes, "
          f"{done['entries']} signed entries proven against checkpoint of size "
          f"{done['checkpoint']['size']}")
    say(f"package SHA-256 (of tagmanifest-sha256.txt): {done['package_sha256']}")
    say(f"archive verifier key: {done['verifier_key']}")


def _export_case(archive: Archive, key: SigningKey, refs: list[str], case: str | None,
                 purpose: str, output: Path, chosen: list[str], as_json: bool) -> None:
    from custody.cli.progress import ExportProgress
    from custody.package.case_export import export_case

    with ExportProgress(_content_bytes(archive, chosen)) as progress:
        done = export_case(archive, key, refs, case, purpose, output, version(),
                           on_bytes=progress.advance)
    if as_json:
        out_json(done)
        return
    say(f"wrote {done['path']}: a CASE/UCO graph of {done['items']} item(s), {done['nodes']} "
        f"nodes; each item's content read and verified (access entries "
        f"{', '.join(map(str, done['entries']))})")
    say(f"graph SHA-256: {done['graph_sha256']}")


def _content_bytes(archive: Archive, items: list[str]) -> int:
    """The bytes of these items' content, as their first entries signed (the bar's total)."""
    from custody.core import entry as entries

    total = 0
    for sha in dict.fromkeys(items):
        rows = archive.ledger.rows_for_item(sha)
        total += int(entries.parse(rows[0].body).details.get("size") or 0) if rows else 0
    return total


def _package_report(report: Any, as_json: bool) -> None:
    from custody.errors import VerificationFailed

    if as_json:
        out_json(report.to_json())
    else:
        for p in report.problems:
            say(f"PROBLEM: {p}")
        for n in report.notices:
            say(f"notice: {n}")
        if report.ok:
            say(f"OK: {len(report.items)} item(s), {report.entries} signed entries, "
                  f"{report.bytes} bytes; from {report.archive.get('name')} "
                  f"({report.archive.get('origin')}), exported by "
                  f"{report.exported_by.get('name')} at {report.time}")
            for d in report.lineage:  # a derivative's original, proven by its signed record
                held = "in the package" if d["original_held"] else "not in the package"
                say(f"lineage: {d['derivative']} derived from {d['original']} ({held}; its "
                    f"first record, entry {d['original_first_record']}, verified)")
            say(report.verdict)
    if not report.ok:
        raise VerificationFailed(report.problems)


@app.command("verify-package")
def verify_package(
    path: Path = typer.Argument(..., help="The package: a bag folder, .zip or .tar."),
    archive_key_arg: str = typer.Option(None, "--archive-key", help="The sender archive's verifier key you trust (or a file holding it)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Verify a package offline (no archive needed): fixity, signatures, proofs, checkpoint."""
    from custody.package.verify import parse_pinned
    from custody.package.verify import verify_package as verify_one

    _package_report(verify_one(path, parse_pinned(archive_key_arg)), as_json)


@app.command("import")
def import_package(
    path: Path = typer.Argument(..., help="The package: a bag folder, .zip or .tar."),
    case: str = typer.Option(None, "--case", help="Also file the received items under this case."),
    archive_key_arg: str = typer.Option(None, "--archive-key", help="Accept the package only from the archive with this verifier key."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Verify a package completely, then store its items with a `received` entry each."""
    from custody.package.importing import import_package as import_one
    from custody.package.verify import parse_pinned

    archive = open_archive()
    key = acting_key()
    done = import_one(archive, key, path, case=case, pinned=parse_pinned(archive_key_arg))
    if as_json:
        out_json(done)
        return
    for i in done["items"]:
        what = "received" if i["action"] == "received" else "present "
        say(f"{what} {i['sha256']} {i['path']}  (entry {i['seq']})")
    err(f"{done['received']} received, {done['present']} already present, from "
        f"{done['archive'].get('name')}; {done['verdict']}")


@app.command()
def provenance(
    item: str = typer.Argument(..., help="A received item (SHA-256 or 8+ hex digits of it)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Where a received item came from: the sender's kept records, re-verified, and its history."""
    from custody.errors import VerificationFailed
    from custody.package.importing import provenance as provenance_of

    archive = open_archive()
    data = provenance_of(archive, archive.resolve_item(item))
    if as_json:
        out_json(data)
    else:
        if not data["receipts"]:
            say("no package receipt recorded for this item (it was ingested here)")
        for r in data["receipts"]:
            state = "verified" if r["verified"] else "DOES NOT VERIFY"
            say(f"#{r['seq']} {r['time']} {r['action']} from {r['from']} ({r['origin']}), "
                  f"package {r['package_sha256']}: kept records {state}")
            for p in r["problems"]:
                say(f"  PROBLEM: {p}")
            for h in r["sender_history"]:
                why = h["details"].get("purpose") or ""
                say(f"  sender #{h['seq']:<6} {h['time']}  {h['action']:<17} "
                      f"{h['actor_name']}" + (f"  [{why}]" if why else ""))
    problems = [p for r in data["receipts"] for p in r["problems"]]
    if problems:
        raise VerificationFailed(problems)


# Search and cross-reference ----------------------------------------------------------------------

@app.command()
def search(
    case: str = typer.Option(None, "--case", help="Items in this case (directly, or through one of its incidents)."),
    incident: str = typer.Option(None, "--incident", help="Items in this incident (the incident is shown too)."),
    tag: str = typer.Option(None, "--tag", help="Items with this tag."),
    since: str = typer.Option(None, "--since", help="Captured at or after: YYYY-MM-DD (UTC) or an RFC 3339 time with offset."),
    until: str = typer.Option(None, "--until", help="Captured at or before: YYYY-MM-DD (the whole UTC day) or an RFC 3339 time."),
    near: str = typer.Option(None, "--near", help="LAT,LON in decimal degrees (with --within-km)."),
    within_km: float = typer.Option(None, "--within-km", help="Great-circle distance from --near, in km."),
    bbox: str = typer.Option(None, "--bbox", help="WEST,SOUTH,EAST,NORTH: min lon, min lat, max lon, max lat (GeoJSON's order)."),
    device: str = typer.Option(None, "--device", help="Camera make or model contains this (any case)."),
    mime: str = typer.Option(None, "--mime", help="MIME type (video/mp4) or a family (video/* or video)."),
    text: str = typer.Option(None, "--text", help="Every word appears in a file name or note (any case)."),
    limit: int = typer.Option(None, "--limit", help="At most N items in each list."),
    list_unplaced: bool = typer.Option(False, "--list-unplaced", help="List the items without a position (with --near/--bbox), not only count them."),
    reindex: bool = typer.Option(False, "--reindex", help="Drop the search index and rebuild it from the ledger first."),
    as_json: bool = typer.Option(False, "--json"),
    as_geojson: bool = typer.Option(False, "--geojson", help="An RFC 7946 FeatureCollection of the items that have a position."),
    c2pa: str = typer.Option(None, "--c2pa", help="Items whose C2PA manifest is: trusted, valid, invalid, unreadable, or none (no manifest)."),
) -> None:
    """Find items by case, incident, tag, capture time, place, device, type and text (filters combine)."""
    from custody.search import query as finder
    from custody.search import render

    if as_json and as_geojson:
        raise UsageError("give --json or --geojson, not both")
    query = finder.Search(case=case, incident=incident, tag=tag, since=since, until=until,
                          near=near, within_km=within_km, bbox=bbox, device=device, mime=mime,
                          text=text, limit=limit, list_unplaced=list_unplaced, c2pa=c2pa)
    if as_json and finder.streams(query):  # the same document, written as the index yields it
        counts = finder.search_streamed(open_archive_to_read(), query, out_json_streamed,
                                        rebuild=reindex)
        err(f"{counts['count']} item(s); {counts['undetermined_count']} without a capture time "
            f"to test, {counts['unplaced_count']} without a position to test")
        return
    result = finder.search(open_archive_to_read(), query, rebuild=reindex)
    if as_json:
        out_json(result)
    elif as_geojson:
        out_json(render.search_geojson(result))
    else:
        for line in render.search_lines(result):
            say(line)
    err(f"{result['count']} item(s); {result['undetermined_count']} without a capture time to "
        f"test, {result.get('unplaced_count', 0)} without a position to test")


@app.command()
def similar(
    item: str = typer.Argument(..., help="The item: its SHA-256 or a unique prefix of 8+ hex digits."),
    max_distance: int = typer.Option(None, "--max-distance", help="Largest Hamming distance (of 64 bits) to list [default: 12]; see docs/SIMILAR.md."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Items that look like ITEM (perceptual hashes near its own), best first: leads, not proof."""
    from custody.search import similar as lookalikes

    if max_distance is None:
        max_distance = lookalikes.DEFAULT_MAX_DISTANCE
    result = lookalikes.similar(open_archive_to_read(), item, max_distance)
    if as_json:
        out_json(result.to_json())
    else:
        for line in lookalikes.similar_lines(result):
            say(line)
    err(f"{len(result.similar)} look-alike(s); {len(result.not_compared)} image(s)/video(s) "
        "not compared (no perceptual hash)")


@app.command()
def crossref(
    track: Path = typer.Argument(..., help="GPX, GeoJSON (or a GeoJSON text sequence) or CSV of timed positions."),
    km: float = typer.Option(..., "--km", help="Within this great-circle distance of the track, in km..."),
    minutes: float = typer.Option(..., "--minutes", help="...and this many minutes of it."),
    clock_tolerance: float = typer.Option(0.0, "--clock-tolerance", help="Widen every time window by this many minutes (clocks set wrong or drifting)."),
    max_gap: float = typer.Option(None, "--max-gap", help="Do not interpolate between track points more than this many minutes apart."),
    incidents: bool = typer.Option(False, "--incidents", help="Cross-reference incidents (their date and place) instead of items."),
    case: str = typer.Option(None, "--case", help="Only items (or incidents) of this case."),
    fmt: str = typer.Option(None, "--format", help="gpx, geojson, geojsonseq or csv (default: told from the content)."),
    assume_utc: bool = typer.Option(False, "--assume-utc", help="Read track times without an offset as UTC (GPX times always are)."),
    limit: int = typer.Option(None, "--limit", help="At most the N best matches."),
    as_json: bool = typer.Option(False, "--json"),
    as_geojson: bool = typer.Option(False, "--geojson", help="An RFC 7946 FeatureCollection: matches, track positions, links, the track."),
) -> None:
    """Items (or incidents) captured within --km and --minutes of a timed track, best first."""
    from custody.search import crossref as finder
    from custody.search import render

    if as_json and as_geojson:
        raise UsageError("give --json or --geojson, not both")
    query = finder.Crossref(track=track, km=km, minutes=minutes, clock_tolerance=clock_tolerance,
                            max_gap=max_gap, incidents=incidents, case=case, fmt=fmt,
                            naive_utc=assume_utc, limit=limit)
    result = finder.crossref(open_archive_to_read(), query, draw_track=as_geojson)
    if as_json:
        out_json(result)
    elif as_geojson:
        out_json(render.crossref_geojson(result))
    else:
        for line in render.crossref_lines(result):
            say(line)
    t = result["track"]
    err(f"{result['count']} match(es); track: {t['points']} points in {t['segments']} "
        f"segment(s), {t['start']} to {t['end']}; not checked: {render.not_checked_text(result)}")


# The service --------------------------------------------------------------------------------------

@app.command()
def serve(
    listen: str = typer.Option("127.0.0.1:8080", "--listen", metavar="HOST:PORT", help="Address to listen on ([::1]:8080 for IPv6)."),
    allow_origin: list[str] = typer.Option(None, "--allow-origin", metavar="ORIGIN", help="Allow browser requests (CORS) from this origin (repeatable); none by default."),
    max_body: int = typer.Option(1024 * 1024, "--max-body", metavar="BYTES", help="Largest request body outside /uploads/ (413 beyond)."),
    rate: float = typer.Option(10.0, "--rate", metavar="N", help="Requests a second each custodian key may make, on average (429 beyond)."),
    burst: int = typer.Option(60, "--burst", metavar="N", help="Requests a key may make at once before --rate applies."),
    access_log: Path = typer.Option(None, "--access-log", metavar="FILE", help="Append the JSON access log here [stderr]."),
    ssl_certfile: Path = typer.Option(None, "--ssl-certfile", help="Serve HTTPS with this certificate (PEM); see docs/SERVICE.md."),
    ssl_keyfile: Path = typer.Option(None, "--ssl-keyfile", help="The certificate's private key (PEM)."),
    upload_dir: Path = typer.Option(None, "--upload-dir", metavar="DIR", help="Where partial tus uploads live, outside the object store [ARCHIVE/uploads]."),
    max_upload: int = typer.Option(64 << 30, "--max-upload", metavar="BYTES", help="Largest file one upload may carry (Tus-Max-Size)."),
    upload_expire: int = typer.Option(7 * 24 * 3600, "--upload-expire", metavar="SECONDS", help="An unfinished upload is removed this long after its last chunk."),
    checkpoint_every: float = typer.Option(10.0, "--checkpoint-every", metavar="SECONDS", help="Sign a checkpoint when the log has grown, this often (the archive key's passphrase from $CUSTODY_ARCHIVE_PASSPHRASE or the terminal); 0: never, and statements of remote custodians stay bound only by the next checkpoint someone makes."),
    public_log: bool = typer.Option(False, "--public-log", help="Also serve the log's entries (/tile/entries/…: notes, purposes, names in clear); the checkpoint and hash tiles are always served."),
    tile_url: str = typer.Option(None, "--tile-url", metavar="URL", help="Map tiles for the web pages' maps: an https URL template with Z, X and Y placeholders as Leaflet takes them, or 'osm' for OpenStreetMap's (which then sees the areas viewed); none by default (docs/WEB.md)."),
    tile_attribution: str = typer.Option(None, "--tile-attribution", metavar="TEXT", help="The attribution the tile server asks to be shown [its host name]."),
    max_track: int = typer.Option(16 << 20, "--max-track", metavar="BYTES", help="Largest track the web crossref page takes."),
) -> None:
    """Serve the archive over HTTP: the JSON API (docs/SERVICE.md), every request signed by a
    custodian's key (RFC 9421), every write a statement they signed."""
    from datetime import timedelta

    from custody.service.app import ServiceSettings
    from custody.service.app import serve as run

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen wants HOST:PORT, not {listen!r}")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise UsageError("give --ssl-certfile and --ssl-keyfile together")
    if max_body < 1 or rate <= 0 or burst < 1:
        raise UsageError("--max-body, --rate and --burst must be positive")
    if max_upload < 1 or upload_expire < 1:
        raise UsageError("--max-upload and --upload-expire must be positive")
    if checkpoint_every < 0:
        raise UsageError("--checkpoint-every must be 0 (never) or a number of seconds")
    from custody.web.maps import tiles_from

    tiles_from(tile_url, tile_attribution)  # a bad --tile-url refused before anything starts
    if max_track < 1:
        raise UsageError("--max-track must be positive")
    key = archive_key(open_archive()) if checkpoint_every > 0 else None
    settings = ServiceSettings(archive=state.archive_path, allow_origins=tuple(allow_origin or ()),
                               max_body_bytes=max_body, rate_per_second=rate, rate_burst=burst,
                               access_log=access_log, upload_dir=upload_dir,
                               max_upload_bytes=max_upload,
                               upload_expire_after=timedelta(seconds=upload_expire),
                               public_log=public_log, archive_key=key,
                               checkpoint_every=checkpoint_every,
                               tile_url=tile_url, tile_attribution=tile_attribution,
                               max_track_bytes=max_track)
    scheme = "https" if ssl_certfile else "http"
    err(f"custody: serving {state.archive_path} on {scheme}://{listen}")
    run(settings, host, int(port), ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)


@app.command()
def login(
    server: str = typer.Option(..., "--server", metavar="URL", help="The custody service to sign in to (`custody serve`), e.g. https://archive.example.org"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print a one-time link that signs a browser in to the web interface as the acting
    custodian: signed by their key, valid for two minutes, usable once (docs/WEB.md)."""
    import secrets
    import time

    from custody.core import login_token

    try:
        origin = login_token.origin(server)
    except login_token.LoginTokenError as exc:
        raise UsageError(f"--server: {exc}") from None
    key = acting_key()
    now = int(time.time())
    token = login_token.make(key, origin, now, secrets.token_urlsafe(24))
    url = f"{origin}/signin?token={token}"
    if as_json:
        out_json({"url": url, "key_id": key.key_id, "server": origin,
                  "expires": now + login_token.LIFETIME_SECONDS})
        return
    say(url)
    err(f"custody: open this link within {login_token.LIFETIME_SECONDS // 60} minutes; it "
        "works once")


# Help text and the one error handler --------------------------------------------------------------

METAVARS = {str: "TEXT", int: "N", float: "NUMBER", Path: "PATH"}


def plain_help(command: Any) -> Any:
    """Readable help for every command: `PATH...` and `ITEM` rather than typer's `{paths}...` and
    `<list[Path]>`; an option's value is named by its metavar (or TEXT, N, NUMBER, PATH)."""
    import typer.core

    for param in getattr(command, "params", []):
        if isinstance(param, typer.core.TyperArgument):
            label = param.metavar or param.name.upper()
            if param.nargs != 1 and not label.endswith("..."):
                label += "..."
            usage = label if param.required else f"[{label}]"
            param.metavar = label
            param.get_usage_pieces = lambda ctx, usage=usage: [usage]  # type: ignore[method-assign,misc]
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        elif isinstance(param, typer.core.TyperOption) and not param.is_flag and not param.metavar:
            kind = param.type_descriptor.annotation
            param.metavar = METAVARS.get(kind, "TEXT")
        if isinstance(param, typer.core.TyperOption) and param.name == "as_json" and not param.help:
            param.help = "Print one JSON document on stdout (docs/CLI.md)."
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command


def command() -> Any:
    built = typer.main.get_command(app)
    try:  # typer's coercion without pydantic where it needs none (custody/cli/coercion.py)
        from custody.cli.coercion import fast_coercion
    except ImportError:  # a typer whose internals moved: its own coercion, slower, the same values
        return plain_help(built)
    return plain_help(fast_coercion(built))


ERROR_KINDS = {"CustodyError": "error"}


def _kind(exc: BaseException) -> str:
    """An error's kind for the JSON error document: its class name in kebab case (not-found)."""
    import re

    name = type(exc).__name__
    return ERROR_KINDS.get(name) or re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _wants_json(argv: list[str]) -> bool:
    args = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in args


def _fail(message: str, code: int, kind: str, as_json: bool, hint: str = "",
          problems: list[str] | None = None) -> None:
    """The one way a command fails: one escaped line on stderr and, with --json (if no document was
    printed yet), the error document on stdout. Then exit with `code`."""
    err(f"custody: {message}" + (f" ({hint})" if hint else ""))  # escaped: always one line
    if as_json and not display.stdout_state.json_written:
        out_json(display.error_document(message, code, kind, hint, problems))
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    harden_process()  # owner-only files; no core dumps or same-user memory reads of loaded keys
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        code = command().main(args=args, prog_name="custody", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)  # typer.Exit(code) comes back as a return value here
    except CustodyError as exc:
        problems = exc.problems if isinstance(exc, VerificationFailed) else None
        _fail(exc.message, exc.exit_code, _kind(exc), as_json, exc.hint, problems)
    except (StoreError, IndexStoreError) as exc:  # a backend's error, said as custody_error says it (one mapping)
        said = custody_error(exc)
        problems = said.problems if isinstance(said, VerificationFailed) else None
        _fail(said.message, said.exit_code, _kind(said), as_json, said.hint, problems)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130, "interrupted", as_json)
    except typer.TyperException as exc:  # typer's (vendored click) usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _fail(message, getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE, "usage-error", as_json)
    except KeyboardInterrupt:
        _fail("interrupted", 130, "interrupted", as_json)
    except Exception as exc:  # noqa: BLE001 - the last resort must name the error, not crash
        if state.debug:
            raise
        _fail(f"unexpected error: {type(exc).__name__}: {exc}", EXIT_ERROR, "unexpected",
              as_json, "rerun with --debug")
    sys.exit(0)


if __name__ == "__main__":
    main()
