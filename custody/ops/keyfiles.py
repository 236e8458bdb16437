"""Custodian key files on disk: the encrypted private key (PKCS#8 PEM, mode 0600) and its .pub.

The .pub is one OpenSSH line whose comment is the custodian's name; `openssl pkey` and `ssh-keygen`
read both files, so no custody code is needed to inspect a key. New passphrases must pass
`check_new_passphrase` (docs/CLI.md, "Passphrases").
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path

from custody.core import pkcs8
from custody.core.signing import (
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    PublicKey,
    SigningKey,
    parse_openssh_public,
)
from custody.errors import BadKeyFile, CustodyError, NotFound, UsageError, WeakPassphrase

KEY_FILE_MODE = 0o600
KEY_FOLDER_MODE = 0o700
MIN_PASSPHRASE_CHARS = 12
MIN_DISTINCT_CHARS = 5  # refuses "aaaaaaaaaaaa" and "abababababab"
PASSPHRASE_RULE = (
    f"at least {MIN_PASSPHRASE_CHARS} characters, not one character or pattern repeated "
    "(four or more random words are easy to type and hard to guess)"
)


def default_key_path() -> Path:
    """$CUSTODY_KEY, else `<config folder>/custody/key` ($XDG_CONFIG_HOME or ~/.config)."""
    if env := os.environ.get("CUSTODY_KEY"):
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "custody" / "key"


def public_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def check_new_passphrase(passphrase: str, what: str = "key") -> None:
    """Refuse a passphrase too weak to protect a key (checked when a key is encrypted, never when
    one is read, so old keys keep opening)."""
    text = passphrase.strip()
    if len(text) < MIN_PASSPHRASE_CHARS or len(set(text)) < MIN_DISTINCT_CHARS:
        raise WeakPassphrase(f"the passphrase for the {what} is too weak: use {PASSPHRASE_RULE}")


def check_archive_passphrase(passphrase: str, personal: str | None) -> None:
    """The archive key's passphrase must pass the rule and differ from the custodian's own: the
    archive key signs for the whole organisation and may be shared among admins."""
    if personal is not None and passphrase == personal:
        raise UsageError(
            "the archive key needs its own passphrase, not your personal one: set "
            "$CUSTODY_ARCHIVE_PASSPHRASE to a different one"
        )
    check_new_passphrase(passphrase, "archive key")


def _make_private_folder(folder: Path) -> None:
    """Create missing folders owner-only (0700); folders that already exist are left as they are."""
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for created in reversed(missing):
        created.mkdir(mode=KEY_FOLDER_MODE, exist_ok=True)
        os.chmod(created, KEY_FOLDER_MODE)  # mkdir's mode is narrowed by the umask, never widened


def _write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write `path` mode 0600, created exclusively (or atomically replaced), fsynced."""
    if replace:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    else:
        fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE), str(path)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), KEY_FILE_MODE)  # in case a umask or an ACL widened it
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
    except BaseException:
        if replace:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_new_key(
    path: Path, name: str, passphrase: str, *, overwrite: bool = False, what: str = "key"
) -> SigningKey:
    """Make a key and write it (0600, created exclusively so no other mode is ever visible)."""
    if not name.strip() or "\n" in name:
        raise CustodyError("a key name must be one non-empty line")
    if path.exists() and not overwrite:
        raise CustodyError(f"{path} already exists; refusing to overwrite a key")
    check_new_passphrase(passphrase, what)
    key = SigningKey.generate(name.strip())
    if overwrite:
        path.unlink(missing_ok=True)
    write_key(path, key, passphrase)
    return key


def write_key(path: Path, key: SigningKey, passphrase: str) -> None:
    """Write `key` encrypted under `passphrase` (0600, created exclusively) and its .pub."""
    pem = key.to_encrypted_pem(passphrase)
    _make_private_folder(path.parent)
    _write_private(path, pem)
    pub = public_path(path)
    pub.unlink(missing_ok=True)
    _write_private(pub, (key.public.openssh_line() + "\n").encode())


def load_key(path: Path, passphrase: str) -> SigningKey:
    if not path.is_file():
        raise NotFound(
            f"no key file at {path}",
            hint="make one with 'custody key new --name NAME' or pass --key FILE",
        )
    name = ""
    pub = public_path(path)
    if pub.is_file():
        name = read_public_key(pub).name
    key = SigningKey.from_encrypted_pem(path.read_bytes(), passphrase, name)
    if pub.is_file() and read_public_key(pub).raw != key.public.raw:
        raise BadKeyFile(f"{pub} does not belong to the key in {path}")
    return key


class PendingKey:
    """A key file being opened in a child process (`load_key_aside`): calling it waits and gives
    the key exactly as `load_key` would (its checks and errors too); `close` stops and reaps the
    child if the key was never asked for."""

    def __init__(self, path: Path, passphrase: str) -> None:
        self.path, self._passphrase = path, passphrase
        self._pid: int | None = None
        self._read = -1
        try:
            pem = path.read_bytes()
        except OSError:
            return  # load_key says what is wrong with the path
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: none of the parent's cleanup (files, locks, atexit) is run
            status = 1
            try:
                os.close(read)
                os.write(write, SigningKey.opened_seed(pem, passphrase) or b"")
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        self._pid, self._read = pid, read

    def __call__(self) -> SigningKey:
        if self._pid is None:
            return load_key(self.path, self._passphrase)
        read, self._read = self._read, -1  # the pipe is closed below whatever happens (Ctrl-C too)
        with os.fdopen(read, "rb") as pipe:
            seed = pipe.read()
        self._reap()
        if len(seed) != 32:  # it did not open: open it here, which says why
            return load_key(self.path, self._passphrase)
        pub = public_path(self.path)
        key = SigningKey.from_seed(seed, read_public_key(pub).name if pub.is_file() else "")
        if pub.is_file() and read_public_key(pub).raw != key.public.raw:
            raise BadKeyFile(f"{pub} does not belong to the key in {self.path}")
        return key

    def close(self) -> None:
        """Stop the child if the key was never asked for, or if asking was interrupted (Ctrl-C
        while waiting: the pipe is already closed then, and must not be closed twice)."""
        if self._read >= 0:
            os.close(self._read)
            self._read = -1
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            os.waitpid(self._pid, 0)
            self._pid = None


def load_key_aside(path: Path, passphrase: str) -> PendingKey:
    """Start opening the key file at `path` in a forked child process, to be asked for later.

    A key file's scrypt takes a few hundred ms and holds the GIL (cryptography does not release
    it), so a thread cannot run it beside other work; a child process can, on the other core. The
    child sends the 32-byte seed back over a pipe and exits; if the key does not open there, the
    parent opens it again itself, which raises the precise error."""
    return PendingKey(path, passphrase)


def weak_protection(path: Path) -> str | None:
    """Why the key file's encryption is weaker than what `key new` writes today, or None.

    Keys made before scrypt (PBKDF2 with 2,048 iterations) still open; `custody key passwd`
    re-encrypts them.
    """
    try:
        found = pkcs8.protection(path.read_bytes())
    except (OSError, pkcs8.MalformedDer):
        return None  # load_key names real problems with the file
    if found.kdf == "scrypt" and (found.n, found.r, found.p) >= (SCRYPT_N, SCRYPT_R, SCRYPT_P):
        return None
    if found.kdf == "pbkdf2" and found.iterations >= 600_000:  # OWASP's count for SHA-256
        return None
    return f"{path} is protected by {found.describe()} only"


def change_passphrase(path: Path, old: str, new: str, *, what: str = "key") -> SigningKey:
    """Re-encrypt a key file under a new passphrase with today's KDF; the file is replaced
    atomically (the key, and so its key id, stays the same)."""
    key = load_key(path, old)
    check_new_passphrase(new, what)
    _write_private(path, key.to_encrypted_pem(new), replace=True)
    return key


def read_public_key(path_or_line: str | Path) -> PublicKey:
    """A public key from a .pub file, or the OpenSSH line itself."""
    text = str(path_or_line)
    if not text.startswith("ssh-ed25519 "):
        path = Path(text)
        if not path.is_file():
            raise NotFound(f"no public key file at {path}")
        text = path.read_text(errors="replace")
        if text.startswith("-----BEGIN"):
            raise BadKeyFile(f"{path} is a private key; give the .pub file")
    return parse_openssh_public(text)
