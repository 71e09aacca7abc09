"""Progress bars that show examples/s and tokens/s on a terminal and stay quiet elsewhere."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


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
        self.start = time.perf_counter()
        self._bar: Any = None
        if progress_enabled():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int, tokens: int = 0, **postfix: Any) -> None:
        self.tokens += tokens
        if self._bar is not None:
            dt = max(time.perf_counter() - self.start, 1e-9)
            self._bar.set_postfix(tok_s=f"{self.tokens / dt:.0f}", **postfix, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
