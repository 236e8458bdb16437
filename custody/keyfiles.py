"""Custodian key files on disk: the encrypted private key (PKCS#8 PEM, mode 0600) and its .pub.

The .pub is one OpenSSH line whose comment is the custodian's name; `openssl pkey` and `ssh-keygen`
read both files, so no custody code is needed to inspect a key.
"""

from __future__ import annotations

import os
from pathlib import Path

from custody.errors import BadKeyFile, CustodyError, NotFound
from custody.signing import PublicKey, SigningKey, parse_openssh_public

KEY_FILE_MODE = 0o600


def default_key_path() -> Path:
    """$CUSTODY_KEY, else `<config folder>/custody/key` ($XDG_CONFIG_HOME or ~/.config)."""
    if env := os.environ.get("CUSTODY_KEY"):
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "custody" / "key"


def public_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def write_new_key(path: Path, name: str, passphrase: str, *, overwrite: bool = False) -> SigningKey:
    """Make a key and write it (0600, created exclusively so no other mode is ever visible)."""
    if not name.strip() or "\n" in name:
        raise CustodyError("a key name must be one non-empty line")
    if path.exists() and not overwrite:
        raise CustodyError(f"{path} already exists; refusing to overwrite a key")
    key = SigningKey.generate(name.strip())
    pem = key.to_encrypted_pem(passphrase)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if overwrite:
        path.unlink(missing_ok=True)
    fd = os.open(path, flags, KEY_FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(path, KEY_FILE_MODE)  # in case a umask or an ACL widened it
    public_path(path).write_text(key.public.openssh_line() + "\n")
    return key


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
