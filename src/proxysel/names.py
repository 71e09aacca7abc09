"""Names a user gives that become folder names inside a run (selections, stages, vector sets)."""

from __future__ import annotations

import unicodedata

from proxysel.errors import UsageError

__all__ = ["check_name"]


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is safe as one folder name inside a run folder; else raise UsageError.

    Refused: empty names, ``/`` and ``\\``, ``..`` anywhere, a leading dot, control characters,
    leading or trailing spaces, and names longer than 200 characters.
    """
    problem = None
    if not isinstance(name, str) or not name:
        problem = "it is empty"
    elif "/" in name or "\\" in name:
        problem = "it contains a path separator"
    elif ".." in name:
        problem = "it contains '..'"
    elif name.startswith("."):
        problem = "it starts with a dot"
    elif any(unicodedata.category(c) == "Cc" for c in name):
        problem = "it contains a control character"
    elif name != name.strip():
        problem = "it starts or ends with a space"
    elif len(name) > 200:
        problem = "it is longer than 200 characters"
    if problem:
        raise UsageError(f"invalid {what} {name!r}: {problem}; use letters, digits, '-', '_' and '.'")
    return name
