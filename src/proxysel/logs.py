"""Logging: stderr by verbosity, and one log file per command invocation in every run folder it opens.

The command line wraps each command in ``session(command)``. While a session is active, every
``Run.open`` (``proxysel.store.run``) calls ``attach_run`` and the run folder gets
``RUN/logs/<YYYYmmdd-HHMMSS>-<command>.log``: the session's records so far (replayed), then every
record until the command ends. Library callers get the same with ``with proxysel.logs.session("my-job"):``;
outside a session nothing is written to run folders.

What reaches the files: ``proxysel.*`` records at INFO (DEBUG with ``--verbose``) and warnings
of any library, whatever ``--quiet`` says (``--quiet`` only quiets the terminal). Secrets never
reach a handler: ``redact`` masks tokens (``hf_...``, ``sk-...``, ``Bearer ...``) and the values
of ``token=``, ``password=``, ``api_key=``-like pairs in every message.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from proxysel import __version__
from proxysel.progress import progress_enabled

__all__ = ["attach_run", "configure", "redact", "session"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: records that go to log files but not to the terminal (the CLI prints its own error line)
FILE_ONLY = "proxysel_file_only"
#: libraries whose INFO chatter (and warnings about their own internals) is kept off the terminal
NOISY = ("transformers", "sentence_transformers", "huggingface_hub", "urllib3", "filelock", "httpx")
_REPLAY = 2000  # records kept in memory for run folders opened later in the command

_SECRET_PATTERNS = (
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), "hf_***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-***"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._\-~+/=]{8,}"), r"\1 ***"),
    # key=value pairs whose key ends in token/password/secret/api key ("max_tokens=8192" is not one)
    (re.compile(r"(?i)\b([A-Za-z_\-]*(?:token|password|passwd|secret|api[_\-]?key|access[_\-]?key))"
                r"(\"?'?\s*[:=]\s*\"?'?)([^\s\"',;}]+)"), r"\1\2***"),
    (re.compile(r"\b([a-z][a-z0-9+.\-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1***:***@"),  # credentials in URLs
)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def redact(text: str) -> str:
    """``text`` with anything that looks like a secret replaced by ``***``, and control characters
    (terminal escapes from file names or ids) shown as ``\\x1b``.

    >>> redact("token=abc123 and hf_ABCDEFGHIJKL")
    'token=*** and hf_***'
    """
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as logging does
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class _NotFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, FILE_ONLY, False)


class _Session:
    def __init__(self, command: str, argv: Sequence[str] | None, file_level: int) -> None:
        self.command = re.sub(r"[^A-Za-z0-9_.-]", "_", command) or "command"
        self.argv = list(argv) if argv is not None else None
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.file_level = file_level
        self.files: dict[Path, logging.FileHandler] = {}
        self.buffer: list[logging.LogRecord] = []
        self.collector = _Collector(self)


class _Collector(logging.Handler):
    """Keeps the session's records so a run folder opened later still gets the whole story."""

    def __init__(self, session: _Session) -> None:
        super().__init__(level=logging.DEBUG)
        self.session = session
        self.addFilter(_RedactFilter())

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.session.buffer) < _REPLAY:
            self.session.buffer.append(record)


_session: _Session | None = None


def configure(*, quiet: bool = False, verbose: bool = False) -> None:
    """Terminal logging: WARNING with ``quiet``, DEBUG with ``verbose``, else INFO; progress bars off
    with ``quiet``. Replaces an earlier ``configure`` (tests call ``main`` many times)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_proxysel", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._proxysel = True  # type: ignore[attr-defined]
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_NotFileOnly())
    handler.addFilter(_RedactFilter())
    root.addHandler(handler)
    # Other libraries: INFO at most (their DEBUG output drowns ours); the chattiest only from WARNING
    # (with --verbose) or ERROR.
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)
    # proxysel's own INFO records always reach the log files; the terminal handler filters them.
    logging.getLogger("proxysel").setLevel(logging.DEBUG if verbose else logging.INFO)
    if quiet:
        os.environ["PROXYSEL_QUIET"] = "1"
    else:
        os.environ.pop("PROXYSEL_QUIET", None)

    # Hugging Face libraries draw their own bars (weight loading, downloads): same rule as ours.
    bars = progress_enabled()
    if not bars:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:  # imported already: the variable is read at import time
        from transformers.utils import logging as hf_logging

        hf_logging.enable_progress_bar() if bars else hf_logging.disable_progress_bar()


@contextmanager
def session(command: str, argv: Sequence[str] | None = None, *, verbose: bool = False) -> Iterator[None]:
    """Log ``command`` into ``RUN/logs/`` of every run folder opened until the block ends."""
    global _session
    if _session is not None:  # nested (e.g. demo calling run): the outer session keeps the files
        yield
        return
    s = _Session(command, argv, logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    root.addHandler(s.collector)
    _session = s

    # The command line goes to the log files only: the terminal already shows it.
    logging.getLogger("proxysel").info("proxysel %s: %s", __version__,
                                       " ".join(["proxysel", *s.argv]) if s.argv is not None else command,
                                       extra={FILE_ONLY: True})
    try:
        yield
    finally:
        _session = None
        root.removeHandler(s.collector)
        for h in s.files.values():
            root.removeHandler(h)
            h.close()


def attach_run(run_path: str | os.PathLike[str]) -> Path | None:
    """Start ``RUN/logs/<stamp>-<command>.log`` for the active session (once per run folder);
    returns its path, or None outside a session."""
    s = _session
    if s is None:
        return None
    key = Path(run_path).resolve()
    if key in s.files:
        return Path(s.files[key].baseFilename)
    folder = key / "logs"
    folder.mkdir(exist_ok=True)
    path = folder / f"{s.stamp}-{s.command}.log"
    k = 2
    while path.exists():
        path = folder / f"{s.stamp}-{s.command}-{k}.log"
        k += 1
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(s.file_level)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_RedactFilter())
    for record in s.buffer:
        if record.levelno >= s.file_level:
            handler.handle(record)
    logging.getLogger().addHandler(handler)
    s.files[key] = handler
    logging.getLogger("proxysel.logs").debug("log file %s", path)
    return path


def log_error(logger: logging.Logger, message: str, exc_info: bool = False) -> None:
    """An error for the log files only (the command line prints its own line to stderr)."""
    logger.error(message, exc_info=exc_info, extra={FILE_ONLY: True})
