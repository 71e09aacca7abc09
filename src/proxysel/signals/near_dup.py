"""The ``near_dup`` signal: groups of near-duplicate records, by MinHash LSH on word n-grams.

Every real pool repeats itself: the same conversation posted twice, the same task reworded. The
standard first step of a data pipeline is near-duplicate removal by the Jaccard similarity of
word n-gram sets (Broder 1997), found at scale with MinHash and locality-sensitive hashing (Lee et
al. 2022, "Deduplicating Training Data Makes Language Models Better"; FineWeb's and SlimPajama's
pipelines). Here:

1. a record's text is every message's content, case-folded and split into words and punctuation
   marks; its shingles are the set of its ``ngram``-word windows (a record shorter than ``ngram``
   words is one shingle);
2. each shingle is hashed (CRC-32), and ``perms`` seeded hash functions ``(a*x + b) mod p`` give the
   record's MinHash signature: for each function, the least value over its shingles;
3. the signature is cut into ``b`` bands of ``r`` rows; records that agree on a whole band are
   candidate pairs. ``r`` is the largest band width whose chance of making a pair at Jaccard
   ``threshold`` a candidate, ``1 - (1 - threshold**r)**b`` with ``b = perms // r``, is at least
   0.95 (at 0.5 and 128 hash functions: 42 bands of 3);
4. every candidate pair is checked with its exact Jaccard similarity (of the CRC-32 shingle sets),
   and pairs at or above ``threshold`` join one group (connected components: A~B and B~C make one).

So no group holds a pair that did not pass the exact check; what MinHash may miss are pairs near
the threshold (about 5% of those at exactly ``threshold``).

Columns: ``dup_rank``, the record's place in its group in pool order (0: the first, the one a
deduplication keeps; 1, 2, ...: the repeats), and ``dup_count``, its group's size (1: no
duplicate). ``top`` on ``dup_rank``, order ``low``, keeps one record of every group first::

    {name: dedup, method: top, signal: dup_rank, order: low, budget: 0.87}

A budget above the number of groups then takes second members, and one below it drops the last
groups in pool order; the stage's manifest entry gives the number of groups to choose it by.

Defaults: 3-word shingles and Jaccard 0.5, for short instruction records, where a reworded
instruction over the same answer changes a third of a record's words. Web-document pipelines use
5-grams at 0.7-0.8 (Lee et al. 2022; FineWeb). Model-free: no forward pass, 0 FLOPs in the ledger.
(The read option ``--dedupe`` is another thing: it drops records that repeat an *id*.)
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from proxysel.data.example import Pool
from proxysel.data.text import contents_text
from proxysel.options import check_fields, config_to_dict, option
from proxysel.signals.base import Signal, register_signal

__all__ = ["NearDupConfig", "band_width", "duplicate_groups", "jaccard", "minhash_signatures", "shingles"]

#: a prime below 2**32: with coefficients under it and 32-bit hash values, a*x + b < 2**64
PRIME = np.uint64(4294967291)
#: the chance a pair at the threshold Jaccard becomes a candidate, which the band width must reach
RECALL_AT_THRESHOLD = 0.95
_WORDS = re.compile(r"\w+|[^\w\s]")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NearDupConfig:
    """Near-duplicate groups of the ``near_dup`` signal (MinHash LSH, then the exact Jaccard check)."""

    ngram: int = option(3, "words per shingle", minimum=1, flag="--near-dup-ngram")
    threshold: float = option(0.5, "Jaccard similarity of two records' shingle sets at or above which they "
                                   "are near-duplicates", minimum=0, maximum=1, exclusive_min=True,
                              flag="--near-dup-threshold")
    perms: int = option(128, "MinHash hash functions", minimum=1, flag="--near-dup-perms")
    seed: int = option(0, "seed of the hash functions", flag="--near-dup-seed")

    def __post_init__(self) -> None:
        check_fields(self)


def shingles(text: str, ngram: int) -> np.ndarray:
    """uint32 (m,), sorted and unique: the CRC-32 of each ``ngram``-word window of ``text``
    (case-folded words and punctuation marks). A text under ``ngram`` words is one shingle; an
    empty text is the shingle of the empty string.

    >>> shingles("a b c", 2).size, shingles("A  b", 5).tolist() == shingles("a b", 5).tolist()
    (2, True)
    """
    words = _WORDS.findall(text.casefold())
    grams = [" ".join(words[i:i + ngram]) for i in range(max(1, len(words) - ngram + 1))]
    return np.unique(np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint32,
                                 count=len(grams)))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two sorted, unique arrays."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def _coefficients(perms: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0x6D68])  # "mh": a stream of its own
    a = rng.integers(1, int(PRIME), perms, dtype=np.uint64)
    b = rng.integers(0, int(PRIME), perms, dtype=np.uint64)
    return a, b


def minhash_signatures(sets: list[np.ndarray], perms: int, seed: int, *,
                       chunk: int = 1 << 15) -> np.ndarray:
    """uint32 (n, perms): row i is the MinHash signature of ``sets[i]`` (non-empty uint32 arrays),
    under ``perms`` hash functions ``(a*x + b) mod PRIME`` drawn from ``seed``. Shingles are
    processed ``chunk`` at a time: a few ``perms * chunk * 8``-byte arrays (about 130 MB at the
    defaults), whatever the pool size."""
    a, b = _coefficients(perms, seed)
    sizes = np.fromiter((s.size for s in sets), dtype=np.int64, count=len(sets))
    if (sizes == 0).any():
        raise ValueError("every record needs at least one shingle")
    flat = np.concatenate(sets).astype(np.uint64) if sets else np.zeros(0, np.uint64)
    owner = np.repeat(np.arange(len(sets)), sizes)
    out = np.full((len(sets), perms), np.iinfo(np.uint32).max, dtype=np.uint64)
    for start in range(0, flat.size, chunk):
        x, who = flat[start:start + chunk], owner[start:start + chunk]
        h = (a[:, None] * x[None, :] + b[:, None]) % PRIME  # (perms, m); no overflow, see PRIME
        # the chunk's records, each the least over its own shingles (a record may span two chunks)
        first = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
        least = np.minimum.reduceat(h, first, axis=1).T
        out[who[first]] = np.minimum(out[who[first]], least)
    return out.astype(np.uint32)


def band_width(threshold: float, perms: int) -> int:
    """The most rows per band (r) such that a pair at Jaccard ``threshold`` becomes a candidate with
    probability ``1 - (1 - threshold**r)**(perms // r)`` of at least RECALL_AT_THRESHOLD; 1 if none.

    >>> band_width(0.5, 128), band_width(0.8, 128)
    (3, 7)
    """
    best = 1
    for r in range(1, perms + 1):
        if 1 - (1 - threshold ** r) ** (perms // r) >= RECALL_AT_THRESHOLD:
            best = r
    return best


class _Groups:
    """Union-find over row indices; a group's root is its first row in pool order."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def duplicate_groups(texts: list[str], *, ngram: int = 3, threshold: float = 0.5, perms: int = 128,
                     seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """int64 (n,): each text's group, the index of the group's first text in ``texts`` (its own
    index when it has no near-duplicate), and facts for the manifest (groups, candidate pairs
    checked, pairs that passed, the band layout). Deterministic for the same inputs and ``seed``.

    >>> g, _ = duplicate_groups(["Copy: a b c d e", "copy:  A b c d e", "Reverse: x y z"])
    >>> g.tolist()
    [0, 0, 2]
    """
    sets = [shingles(t, ngram) for t in texts]
    n = len(sets)
    r = band_width(threshold, perms)
    bands = perms // r
    groups = _Groups(n)
    checked = passed = 0
    if n > 1:
        sig = minhash_signatures(sets, perms, seed)
        seen: set[tuple[int, int]] = set()
        for band in range(bands):
            rows = np.ascontiguousarray(sig[:, band * r:(band + 1) * r])
            keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * r))).ravel()
            order = np.argsort(keys, kind="stable")
            ranked = keys[order]
            starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1], True])
            shared = np.flatnonzero(np.diff(starts) > 1)  # buckets of two or more: the only work
            for s, e in zip(starts[shared].tolist(), starts[shared + 1].tolist()):
                # leaders: each member is checked against the bucket's leaders, in pool order, until
                # one passes; a member that passes none leads the next ones (exact duplicates: one check)
                leaders: list[int] = []
                for i in np.sort(order[s:e]).tolist():
                    for lead in leaders:
                        pair = (lead, i)
                        if groups.find(lead) == groups.find(i):
                            break
                        if pair in seen:
                            continue
                        seen.add(pair)
                        checked += 1
                        if jaccard(sets[lead], sets[i]) >= threshold:
                            passed += 1
                            groups.union(lead, i)
                            break
                    else:
                        leaders.append(i)
    root = np.fromiter((groups.find(i) for i in range(n)), dtype=np.int64, count=n)
    facts = {"groups": int(np.unique(root).size), "pairs_checked": checked, "pairs_passed": passed,
             "bands": bands, "rows_per_band": r}
    return root, facts


@register_signal("near_dup")
class NearDupSignal(Signal):
    """Near-duplicate groups (``score.near_dup``: shingles, threshold, hash functions); model-free."""

    columns = ("dup_rank", "dup_count")
    model_option = None
    sharded = False

    def fingerprint(self, pool: Pool, upstream: dict[str, Any]) -> dict[str, Any]:
        return {"data": pool.fingerprint, **config_to_dict(self.config.near_dup)}

    def stage_info(self) -> dict[str, Any]:
        return {"params": config_to_dict(self.config.near_dup), **getattr(self, "_facts", {})}

    def compute_all(self, pool: Pool, inputs: dict[str, tuple[list[str], Any]]) -> Any:
        d = self.config.near_dup
        root, facts = duplicate_groups([contents_text(e) for e in pool.examples], ngram=d.ngram,
                                       threshold=d.threshold, perms=d.perms, seed=d.seed)
        self._facts = {**facts, "duplicates": int(len(root) - facts["groups"])}
        log.info("near_dup: %d groups of %d records (%d near-duplicates; %d candidate pairs checked)",
                 facts["groups"], len(root), self._facts["duplicates"], facts["pairs_checked"])
        size = np.bincount(root, minlength=len(root))
        rank = np.zeros(len(root), dtype=np.int64)
        seen = np.zeros(len(root), dtype=np.int64)
        for i, g in enumerate(root.tolist()):  # pool order: the first member is rank 0
            rank[i] = seen[g]
            seen[g] += 1
        return pa.table({"id": pa.array([e.id for e in pool.examples], pa.string()),
                         "dup_rank": pa.array(rank.astype(np.float64), pa.float64()),
                         "dup_count": pa.array(size[root].astype(np.float64), pa.float64())})
