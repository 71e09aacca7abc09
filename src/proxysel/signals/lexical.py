"""The ``lexical`` signal: how well a word-translation table, fitted on the pool, explains each answer.

Parallel-corpus filtering for machine translation faces the same problem as an instruction pool
with wrong answers: a pair whose two sides do not correspond. Its standard model-free feature is a
lexical translation score (the WMT 2018 shared task on parallel corpus filtering, Koehn et al.
2018; Bicleaner, Sánchez-Cartagena et al. 2018, ``feature_dict_qmax``): fit IBM Model 1 (Brown et
al. 1993) on the corpus itself, then score a pair by how probable each target word is under its
best-matching source word. Here the prompt is the source and the response the target:

1. words: every user/system turn's content (the prompt) and every assistant turn's (the
   response), split into words and punctuation marks, case kept (``C`` answering ``c`` is the
   upper-casing task, not a copy); at most ``max_words`` of each side;
2. groups: k-means on the stored ``embedding`` vectors, ``k = max(1, n // cluster_size)``, seeded.
   One table per group: a word means different things in different tasks (``c`` answers ``c`` in
   a copy task and ``r`` in a substitution code), and a table fitted on the whole pool lets the
   majority task explain, or fail to explain, every other task's answers;
3. IBM Model 1 by EM, ``iterations`` rounds from the uniform table, over each group's pairs, with
   the empty word NULL on the source side:
   ``t(f | e) = sum over pairs and positions of t(f|e) / sum_e' t(f|e')``, normalised over f;
4. per record, over its response words w (at least one):

       qmax(x)     = mean over w of ln max_{e in prompt + NULL} t(w | e)      (nats, <= 0)
       qmax_min(x) = min  over w of the same

   Bicleaner's ``qmax`` is the same maximum, summed over the (at most 20 longest) target words and
   divided by their number; proxysel scores every response word up to ``max_words``.

Higher is better explained: ``top qmax high`` keeps first the answers whose every word the
group's table predicts from a word of its prompt. A wrong item in an answer (a letter, digit or
word changed) is a word no prompt word of its group translates to. ``qmax_min`` looks at that one
word alone; ``qmax`` is the field's length-normalised feature.

A record without a prompt or a response (a ``text`` record) gets NaN, which the selectors
exclude. No model pass: seconds of arithmetic on the texts and stored vectors, 0 FLOPs in the
bench's ledger (besides the ``embedding`` stage it reads).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from proxysel.cluster import kmeans
from proxysel.data.example import Example, Pool
from proxysel.data.text import response_text
from proxysel.options import check_fields, option
from proxysel.signals.base import EmbeddingSignal, register_signal

__all__ = ["LexicalConfig", "fit_ibm1", "lexical_scores", "qmax_scores", "words"]

_WORDS = re.compile(r"\w+|[^\w\s]")
NULL = "\x00NULL"  # the empty source word; no text splits into it
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LexicalConfig:
    """The word-translation tables of the ``lexical`` signal (IBM Model 1 per embedding cluster)."""

    cluster_size: int = option(50, "records per group on average: k-means on the embeddings with "
                                    "k = max(1, n // cluster_size), one translation table per group",
                               minimum=1, flag="--lexical-cluster-size")
    iterations: int = option(5, "EM rounds of IBM Model 1 (GIZA++'s default for Model 1)", minimum=1,
                             flag="--lexical-iterations")
    max_words: int = option(64, "words of each side (prompt, response) read per record", minimum=1,
                            flag="--lexical-max-words")
    seed: int = option(0, "seed of the k-means groups", flag="--lexical-seed")

    def __post_init__(self) -> None:
        check_fields(self)


def words(text: str, limit: int) -> list[str]:
    """The first ``limit`` words and punctuation marks of ``text``, case kept.

    >>> words("Encode: c a, f", 4)
    ['Encode', ':', 'c', 'a']
    """
    return _WORDS.findall(text)[:limit]


def _sides(example: Example, limit: int) -> tuple[list[str], list[str]] | None:
    """(prompt words, response words) of a record, or None when it lacks either side."""
    if example.missing(("prompt", "response")):
        return None
    prompt = "\n".join(m.content for m in example.messages if m.role in ("user", "system"))
    source, target = words(prompt, limit), words(response_text(example), limit)
    return (source, target) if target else None


@dataclass(frozen=True)
class _Pairs:
    """Every (source position, target position) link of a set of records, by unique word pair.

    pair:   int64 (m,) the unique (source word, target word) pair of each link;
    slot:   int64 (m,) the target position (over all records) each link belongs to;
    source: int64 (p,) the source word of each unique pair;
    owner:  int64 (s,) the record of each target position.
    """

    pair: np.ndarray
    slot: np.ndarray
    source: np.ndarray
    owner: np.ndarray
    keys: np.ndarray  # int64 (p,): source * n_target_words + target of each unique pair
    n_target: int


def _links(sources: Sequence[list[str]], targets: Sequence[list[str]]) -> _Pairs:
    """Index the links of every record (its source words, NULL first, times its target words)."""
    s_vocab: dict[str, int] = {NULL: 0}
    t_vocab: dict[str, int] = {}
    pair_parts, slot_parts, owner = [], [], []
    slots = 0
    for r, (src, tgt) in enumerate(zip(sources, targets)):
        s = np.array([0] + [s_vocab.setdefault(w, len(s_vocab)) for w in src], dtype=np.int64)
        t = np.array([t_vocab.setdefault(w, len(t_vocab)) for w in tgt], dtype=np.int64)
        pair_parts.append((np.repeat(s, t.size), np.tile(t, s.size)))
        slot_parts.append(np.tile(np.arange(slots, slots + t.size), s.size))
        owner.append(np.full(t.size, r, dtype=np.int64))
        slots += t.size
    n_target = max(1, len(t_vocab))
    keys = np.concatenate([a * n_target + b for a, b in pair_parts])
    unique, pair = np.unique(keys, return_inverse=True)
    return _Pairs(pair=pair, slot=np.concatenate(slot_parts), source=unique // n_target,
                  owner=np.concatenate(owner), keys=unique, n_target=n_target)


def _em(links: _Pairs, iterations: int) -> np.ndarray:
    """float64 (p,): t(f | e) of every unique pair after ``iterations`` EM rounds of IBM Model 1."""
    t = np.ones(links.keys.size)  # uniform: the first E-step splits each target word evenly
    for _ in range(iterations):
        p = t[links.pair]
        posterior = p / np.bincount(links.slot, weights=p)[links.slot]
        counts = np.bincount(links.pair, weights=posterior, minlength=t.size)
        t = counts / np.bincount(links.source, weights=counts)[links.source]
    return t


def fit_ibm1(sources: Sequence[list[str]], targets: Sequence[list[str]], iterations: int = 5
             ) -> dict[tuple[str, str], float]:
    """IBM Model 1's table ``t(f | e)`` fitted on the pairs (source words, target words) by EM, with
    NULL (``proxysel.signals.lexical.NULL``) as a source word of every pair; only co-occurring pairs
    have an entry (every other t is 0). For tests and inspection: ``qmax_scores`` works on arrays.

    >>> t = fit_ibm1([["a", "b"], ["a"]], [["x", "y"], ["x"]], iterations=20)
    >>> round(t[("a", "x")], 2), round(t[("b", "y")], 2)
    (0.98, 1.0)
    """
    links = _links(sources, targets)
    t = _em(links, iterations)
    s_words = [NULL, *dict.fromkeys(w for src in sources for w in src)]
    t_words = list(dict.fromkeys(w for tgt in targets for w in tgt))
    return {(s_words[k // links.n_target], t_words[k % links.n_target]): float(v)
            for k, v in zip(links.keys.tolist(), t)}


def qmax_scores(sources: Sequence[list[str]], targets: Sequence[list[str]], iterations: int = 5
                ) -> tuple[np.ndarray, np.ndarray]:
    """(qmax, qmax_min), float64 (n,) each: over every record's target words, the mean and the least
    of ``ln max_e t(w | e)`` (e over its source words and NULL) under IBM Model 1 fitted on these
    pairs. Every target list must be non-empty.

    >>> q, low = qmax_scores([["a"], ["a"], ["a"]], [["x"], ["x"], ["y"]], iterations=5)
    >>> bool(q[2] < q[0]), bool(low[0] == q[0])
    (True, True)
    """
    if any(not t for t in targets):
        raise ValueError("qmax_scores: every record needs at least one target word")
    links = _links(sources, targets)
    t = _em(links, iterations)
    best = np.zeros(links.owner.size)
    np.maximum.at(best, links.slot, t[links.pair])
    logs = np.log(best)
    n = len(targets)
    sizes = np.bincount(links.owner, minlength=n)
    mean = np.bincount(links.owner, weights=logs, minlength=n) / sizes
    least = np.full(n, np.inf)
    np.minimum.at(least, links.owner, logs)
    return mean, least


def lexical_scores(examples: Sequence[Example], groups: np.ndarray, config: LexicalConfig
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(qmax, qmax_min), float64 (n,): each record scored by the table of its group (``groups``, int
    (n,)); NaN for a record without a prompt or a response word."""
    qmax = np.full(len(examples), np.nan)
    least = np.full(len(examples), np.nan)
    sides = [_sides(e, config.max_words) for e in examples]
    for g in np.unique(groups):
        rows = [i for i in np.flatnonzero(groups == g).tolist() if sides[i] is not None]
        if rows:
            q, low = qmax_scores([sides[i][0] for i in rows], [sides[i][1] for i in rows],
                                 config.iterations)
            qmax[rows], least[rows] = q, low
    return qmax, least


@register_signal("lexical")
class LexicalSignal(EmbeddingSignal):
    """IBM Model 1 translation scores of each answer given its prompt (``score.lexical``); model-free,
    grouped by k-means on the ``embedding`` vectors."""

    columns = ("qmax", "qmax_min")
    needs = ("prompt", "response")
    section = "lexical"

    def compute_all(self, pool: Pool, inputs: dict[str, tuple[list[str], Any]]) -> Any:
        x = self.pool_vectors(pool, inputs)
        c = self.config.lexical
        k = max(1, len(pool.examples) // c.cluster_size)
        groups = kmeans(x, k, seed=c.seed)
        qmax, least = lexical_scores(pool.examples, groups, c)
        log.info("lexical: IBM Model 1 tables for %d groups of %d records (%d scored)", k,
                 len(pool.examples), int(np.isfinite(qmax).sum()))
        return pa.table({"id": pa.array([e.id for e in pool.examples], pa.string()),
                         "qmax": pa.array(qmax, pa.float64()),
                         "qmax_min": pa.array(least, pa.float64())})
