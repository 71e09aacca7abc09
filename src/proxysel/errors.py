"""Errors that map to exit codes: bad input or usage is 2, anything else is 1."""

from __future__ import annotations


class ProxyselError(Exception):
    """Base class for errors proxysel reports without a traceback (exit code 1)."""

    exit_code = 1


class UsageError(ProxyselError):
    """A bad option, config field or argument (exit code 2)."""

    exit_code = 2


class BadInputError(ProxyselError):
    """A bad input record or file (exit code 2).

    The message always names the file, and where known the line (1-based) and field.
    """

    exit_code = 2

    def __init__(self, file: str, message: str, line: int | None = None, field: str | None = None,
                 offset: int | None = None) -> None:
        self.file, self.line, self.field, self.offset, self.reason = file, line, field, offset, message
        where = str(file)
        if line is not None:
            where += f":{line}"
        if offset is not None:
            where += f" (byte {offset})"
        if field is not None:
            where += f" field '{field}'"
        super().__init__(f"{where}: {message}")


class RunConflictError(UsageError):
    """A stage in the run directory was computed with a different fingerprint (exit code 2)."""


class RunLockedError(ProxyselError):
    """Another live process holds the run directory's lock."""
