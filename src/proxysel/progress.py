"""Progress bars that show examples/s and tokens/s on a terminal and stay quiet elsewhere.

Without a bar (no terminal, or ``--quiet``) a long stage still reports: every
``PROXYSEL_PROGRESS_LOG_S`` seconds (default 60) it logs one INFO line (done/total, rate, tokens/s,
time left), which lands in ``RUN/logs/`` (and on the terminal unless ``--quiet``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def _log_interval() -> float:
    try:
        return float(os.environ.get("PROXYSEL_PROGRESS_LOG_S", "60"))
    except ValueError:
        return 60.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_enabled() -> bool:
    if os.environ.get("PROXYSEL_QUIET") == "1":
        return False
    return sys.stderr.isatty() or os.environ.get("PROXYSEL_PROGRESS") == "1"


class Progress:
    """A tqdm bar over examples that also reports tokens/s.

    >>> with Progress(total=len(examples), desc="score") as bar:
    ...     bar.update(n_examples, n_tokens)
    """

    def __init__(self, total: int, desc: str, unit: str = "ex") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.tokens = 0
        self.done = 0
        self.start = time.perf_counter()
        self._interval = _log_interval()
        self._last_log = self.start
        self._bar: Any = None
        if progress_enabled():
            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int, tokens: int = 0, **postfix: Any) -> None:
        self.tokens += tokens
        self.done += n
        now = time.perf_counter()
        if self._bar is not None:
            dt = max(now - self.start, 1e-9)
            self._bar.set_postfix(tok_s=f"{self.tokens / dt:.0f}", **postfix, refresh=False)
            self._bar.update(n)
        elif self._interval > 0 and now - self._last_log >= self._interval:
            self._last_log = now
            self._log(now)

    def _log(self, now: float) -> None:
        dt = max(now - self.start, 1e-9)
        rate = self.done / dt
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.2f} {self.unit}/s" if rate >= 1 or rate == 0
                     else f"{1 / rate:.1f} s/{self.unit}")
        if self.tokens:
            parts.append(f"{self.tokens / dt:.0f} tok/s")
        if rate > 0 and self.total and self.done < self.total:
            parts.append(f"about {_duration((self.total - self.done) / rate)} left")
        log.info(", ".join(parts))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
