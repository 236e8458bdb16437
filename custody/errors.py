"""Every error custody raises on purpose: one base class carrying a one-line message and exit code.

The CLI maps these to exit codes in one place; anything else reaching it is a bug (shown as one
line, traceback only with --debug).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEM = 1  # verification found tampering, corruption or a bad signature
EXIT_USAGE = 2
EXIT_ERROR = 3  # any other failure: bad input, missing path, wrong passphrase, …


class CustodyError(Exception):
    """Base class: `message` is one line a user can act on; `hint` says what to do next."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CustodyError):
    exit_code = EXIT_USAGE


class NotFound(CustodyError):
    """A path, item, key or archive that does not exist."""


class AmbiguousItem(UsageError):
    """An item prefix that matches more than one item."""


class BadKeyFile(CustodyError):
    """A key file that cannot be read as the key it should hold."""


class WrongPassphrase(CustodyError):
    """The passphrase does not decrypt the key."""


class WeakPassphrase(UsageError):
    """A new passphrase too short or too repetitive to protect a key."""


class ArchiveError(CustodyError):
    """The archive is missing, of an unknown format, or cannot be written."""


class DiskFull(ArchiveError):
    """The disk holding the archive (its objects or its ledger) has no space left."""


class NotPermitted(CustodyError):
    """The acting custodian is not enrolled, or their role does not allow the action."""


class VerificationFailed(CustodyError):
    """Verification found one or more problems; `problems` lists every one of them."""

    exit_code = EXIT_PROBLEM

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        first = self.problems[0] if self.problems else "unknown problem"
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"verification failed: {first}{more}")


class StatementRefused(CustodyError):
    """A statement signed elsewhere that the archive will not append (docs/FORMAT.md §5.8):
    malformed, altered, by a key not enrolled, beyond its role, or already in the log."""

    exit_code = EXIT_PROBLEM
