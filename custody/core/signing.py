"""Custodian and archive keys: Ed25519 (RFC 8032) signing, verification and key files.

The only module that touches private key bytes or `cryptography.hazmat`; everything else holds a
`SigningKey` (which can sign) or raw 32-byte public keys (which can only verify).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
import pyrage
import shamir_mnemonic
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from custody.core import pkcs8
from custody.errors import BadKeyFile, CustodyError, WrongPassphrase


class ShareError(CustodyError):
    """SLIP-39 shares that do not rebuild a key (too few, mixed sets, a mistyped word)."""

# Domain tag for key ids: a key id can never collide with any other hash the archive makes.
KEY_ID_TAG = b"custody:key-id:v1\x00"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# Key files: scrypt at OWASP's 16 MiB setting (N=2^14, r=8, p=5; about 0.25 s here). OpenSSL
# decrypts scrypt keys only up to 32 MiB by default, so a costlier N would lock out `openssl pkey`.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 5
AES_KEY_SIZE = 32


def key_id(public_key: bytes) -> str:
    """The stable key id: hex of the first 16 bytes of SHA-256(tag || raw public key)."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(KEY_ID_TAG + public_key).hexdigest()[:32]


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`.

    Verification goes through libsodium (PyNaCl, also PyCA's): measured here at 59 µs a
    signature against OpenSSL's 108 µs, which is what lets a million-entry ledger verify within a
    minute. libsodium is the stricter of the two (it also rejects small-order points), so every
    signature it accepts, OpenSSL and other RFC 8032 verifiers accept too.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        _verify_key(public_key).verify(message, signature)
    except (
        nacl.exceptions.BadSignatureError,
        nacl.exceptions.ValueError,
        nacl.exceptions.TypeError,
    ):
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _verify_key(public_key: bytes) -> nacl.signing.VerifyKey:
    return nacl.signing.VerifyKey(public_key)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A custodian's public identity: raw key, key id and the name it was made with."""

    raw: bytes
    name: str

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    def b64(self) -> str:
        return base64.b64encode(self.raw).decode()

    def openssh_line(self) -> str:
        """The public key as one OpenSSH line, the custodian's name as its comment."""
        line = (
            Ed25519PublicKey.from_public_bytes(self.raw)
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
        return f"{line} {self.name}" if self.name else line


def parse_openssh_public(text: str) -> PublicKey:
    """Read an `ssh-ed25519 AAAA… NAME` line (the .pub file `key new` writes)."""
    parts = text.strip().split(maxsplit=2)
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise BadKeyFile("not an Ed25519 public key (expected an 'ssh-ed25519 …' line)")
    try:
        loaded = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, TypeError) as exc:
        raise BadKeyFile(f"unreadable public key: {exc}") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise BadKeyFile("not an Ed25519 public key")
    raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw=raw, name=parts[2].strip() if len(parts) == 3 else "")


class SigningKey:
    """An Ed25519 private key held in memory. Its bytes never leave this class unencrypted."""

    __slots__ = ("_private", "public")

    def __init__(self, private: Ed25519PrivateKey, name: str) -> None:
        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public = PublicKey(raw=raw, name=name)

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(key_id={self.key_id!r}, name={self.public.name!r})"

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(Ed25519PrivateKey.generate(), name)

    @classmethod
    def from_seed(cls, seed: bytes, name: str) -> SigningKey:
        """A key from its 32-byte RFC 8032 seed (test vectors, and a key file opened in a child
        process: `opened_seed`)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed), name)

    @classmethod
    def opened_seed(cls, pem: bytes, passphrase: str) -> bytes | None:
        """The 32-byte seed of an encrypted key file, or None when it does not open as an
        Ed25519 key (`from_encrypted_pem` then says why). For the one process that decrypts a
        key beside another (keyfiles.load_key_aside): the seed goes back to its parent over a
        pipe and into `from_seed`, never anywhere else."""
        try:
            key = cls.from_encrypted_pem(pem, passphrase, "")
        except CustodyError:
            return None
        return key._private.private_bytes_raw()

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def with_name(self, name: str) -> SigningKey:
        """The same key under another name (the name lives in the .pub, not in the key)."""
        return SigningKey(self._private, name)

    def to_shares(self, threshold: int, count: int, passphrase: str = "") -> list[str]:
        """SLIP-39 mnemonics splitting this key's 32-byte RFC 8032 seed into `count` shares, any
        `threshold` of which rebuild it (one group; Trezor's `shamir-mnemonic`, docs/KEYS.md)."""
        seed = self._private.private_bytes_raw()
        groups = shamir_mnemonic.generate_mnemonics(
            1, [(threshold, count)], seed, passphrase.encode(), extendable=True
        )
        shares: list[str] = groups[0]
        return shares

    @classmethod
    def from_shares(cls, mnemonics: list[str], passphrase: str, name: str) -> SigningKey:
        """The key rebuilt from SLIP-39 shares. Raises ShareError for too few shares, shares of
        different sets, a mistyped word (RS1024 checksum) or a secret that is no 32-byte seed.
        A wrong passphrase gives ANOTHER key (SLIP-39 has no check): compare its key id."""
        try:
            seed = shamir_mnemonic.combine_mnemonics(mnemonics, passphrase.encode())
        except shamir_mnemonic.MnemonicError as exc:
            raise ShareError(str(exc)) from None
        if len(seed) != 32:
            raise ShareError(f"the shares hold a {len(seed)}-byte secret, not a 32-byte key seed")
        return cls(Ed25519PrivateKey.from_private_bytes(seed), name)

    def age_identity(self) -> pyrage.ssh.Identity:
        """This key as an age `ssh-ed25519` identity (age's published Ed25519-to-X25519 mapping),
        to open a sealed archive's wrapped content key (docs/FORMAT.md §12.1). The OpenSSH form
        handed to pyrage lives only in memory, for this call."""
        return pyrage.ssh.Identity.from_buffer(self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ))

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def to_encrypted_pem(self, passphrase: str) -> bytes:
        """PKCS#8 `ENCRYPTED PRIVATE KEY` PEM: PBES2 with scrypt and AES-256-CBC (RFC 8018,
        RFC 7914 §7), readable by `openssl pkey` and by `cryptography`."""
        if not passphrase:
            raise WrongPassphrase("an empty passphrase cannot protect a key")
        plain = self._private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        salt, iv = os.urandom(16), os.urandom(16)
        kek = Scrypt(salt=salt, length=AES_KEY_SIZE, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(
            passphrase.encode()
        )
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        der = pkcs8.scrypt_pbes2_der(
            salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, key_length=AES_KEY_SIZE, iv=iv,
            ciphertext=ciphertext,
        )
        return pkcs8.pem(der)

    @classmethod
    def from_encrypted_pem(cls, pem: bytes, passphrase: str, name: str) -> SigningKey:
        if b"ENCRYPTED PRIVATE KEY" not in pem:
            raise BadKeyFile("not an encrypted PKCS#8 private key")
        try:
            private = serialization.load_pem_private_key(pem, passphrase.encode())
        except ValueError:
            # cryptography says "Bad decrypt" for a wrong passphrase and for a damaged file alike.
            raise WrongPassphrase(
                "wrong passphrase for the key (or the key file is damaged)"
            ) from None
        except TypeError as exc:
            raise BadKeyFile(f"unreadable key file: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise BadKeyFile("the key file does not hold an Ed25519 key")
        return cls(private, name)


def private_key_form(pem: bytes) -> str:
    """What a private key file holds, told without a passphrase: "encrypted" (a well-formed
    PKCS#8 EncryptedPrivateKeyInfo: its public key is inside the encryption, so which key it is
    cannot be known without the passphrase), "unencrypted", or "not a private key"."""
    try:
        serialization.load_pem_private_key(pem, None)
    except TypeError:
        return "encrypted"  # cryptography: "Password was not given but private key is encrypted"
    except (ValueError, UnsupportedAlgorithm):
        return "not a private key"
    return "unencrypted"
