"""The unit of data: one pool record, normalised to chat messages, with its raw bytes kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Layouts a record can have (DESIGN.md section 2).
FORMATS = ("alpaca", "sharegpt", "messages", "prompt-completion", "text")
#: Roles after normalisation. "text" is the single pseudo-turn of the pre-training layout.
ROLES = ("system", "user", "assistant", "text")


@dataclass(frozen=True)
class Message:
    role: str  # one of ROLES
    content: str


@dataclass(frozen=True)
class Example:
    """One record of the pool.

    id:       the record's own ``id`` (as a string) or the first 16 hex digits of sha256 over its
              canonical JSON (sorted keys, no spaces, UTF-8).
    messages: normalised turns. Loss is taken on every ``assistant`` turn; for ``text`` on all tokens.
    format:   one of FORMATS.
    file:     the path of the file the record came from.
    line:     1-based line of the record's first byte in that file (jsonl/json), or the 1-based row
              for parquet / HF datasets.
    index:    0-based position of the record within its file (row for parquet / datasets).
    raw:      the record's exact bytes for jsonl/json (without the trailing newline or comma);
              ``None`` for parquet / datasets, which are written back by row index.
    record:   the decoded record as in the file (for fields such as ``source`` and for writers).
    alpaca:   (instruction, input, output) for the alpaca layout, after any ``columns`` renaming
              (the Alpaca template and the LP embedding string keep instruction and input apart);
              ``None`` for other layouts.
    """

    id: str
    messages: tuple[Message, ...]
    format: str
    file: str
    line: int
    index: int
    raw: bytes | None
    record: dict[str, Any] = field(repr=False, compare=False, hash=False)
    alpaca: tuple[str, str, str] | None = field(default=None, repr=False, compare=False, hash=False)

    @property
    def is_text(self) -> bool:
        return self.format == "text"

    @property
    def parts(self) -> frozenset[str]:
        """What the record holds, for the signals that need a part (``Signal.needs``): ``prompt`` (a
        user or system turn before an assistant turn) and ``response`` (an assistant turn; a ``text``
        record's text, which every token of is scored)."""
        if self.is_text:
            return frozenset({"response"})
        out = set()
        for m in self.messages:
            if m.role == "assistant":
                out.add("response")
                break
            if m.role in ("user", "system") and m.content:
                out.add("prompt")
        if any(m.role == "assistant" for m in self.messages):
            out.add("response")
        return frozenset(out)

    def missing(self, needs: tuple[str, ...]) -> str | None:
        """Why the record does not fit a signal that needs ``needs`` (e.g. ``text record has no
        prompt``), or None when it does."""
        lacking = [p for p in needs if p not in self.parts]
        return f"{self.format} record has no {' and no '.join(lacking)}" if lacking else None


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out under ``--on-bad-record skip``; listed in the manifest."""

    file: str
    line: int | None
    offset: int | None
    field: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "offset": self.offset, "field": self.field,
                "reason": self.reason}


@dataclass
class Pool:
    """Every readable record of the input, in input order, plus what was skipped.

    fingerprint: sha256 hex over the ids and raw content of all examples in order; it identifies
                 the data in stage fingerprints.
    """

    examples: list[Example]
    skipped: list[SkippedRecord]
    paths: list[str]
    fingerprint: str
