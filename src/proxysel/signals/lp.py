"""Learning percentage (LP) and its one-epoch approximation LP_app (Mekala et al. 2024).

Both read ``ppl_epoch``: float64 (n_examples, n_epochs + 1); column j is the response
perplexity ``P_j`` after epoch j of proxy training (``P_0`` before any training); row r
belongs to ``ids[r]``.

    LP(i)     = (P_{i-1} - P_i) / (P_0 - P_n)      0 where P_0 == P_n
    LP_app(i) = (P_{i-1} - P_i) / P_0

A low value means the proxy learned little of the example in epoch i relative to what it
learned overall: a *hard* example. The LP selectors keep the lowest values first.

Missing values propagate: a row whose needed perplexities (P_{i-1}, P_i, P_0 and, for LP,
P_n) hold a NaN gives NaN, which the selectors exclude. A row whose perplexity did not move
at all (P_0 == P_n, e.g. the P = 1.0 rows the official code writes for fully truncated
responses) gives LP = 0, as the formula says.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from proxysel.signals import cartography
from proxysel.signals.base import Signal, register_signal
from proxysel.store.run import list_matrix

__all__ = ["DERIVED_COLUMN", "EPOCH_COLUMN", "derived_column", "epoch_column", "lp", "lp_app"]

#: the per-epoch columns derived from ``ppl_epoch`` (``epoch_column``) that a selector may read
#: like any score column: ``ppl_<e>`` = P_e, ``lp_<i>`` = LP(i), ``lp_app_<i>`` = LP_app(i)
EPOCH_COLUMN = re.compile(r"(ppl|lp|lp_app)_(\d+)")
#: every column derived from ``ppl_epoch`` (``derived_column``): the per-epoch ones and Dataset
#: Cartography's ``confidence`` and ``variability`` over the run (``signals.cartography``)
DERIVED_COLUMN = re.compile("|".join((EPOCH_COLUMN.pattern, *cartography.COLUMNS)))


def _check(ppl_epoch: np.ndarray, i: int, name: str) -> np.ndarray:
    p = np.asarray(ppl_epoch, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(
            f"{name}: ppl_epoch must be a 2-D array (n_examples, n_epochs + 1) with at least "
            f"2 columns (P_0, P_1), got shape {p.shape}")
    n_epochs = p.shape[1] - 1
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 1 <= i <= n_epochs:
        raise ValueError(f"{name}: i must be an integer epoch in [1, {n_epochs}], got {i!r}")
    return p


def lp(ppl_epoch: np.ndarray, i: int = 1) -> np.ndarray:
    """Learning percentage of epoch ``i``: the share of the total perplexity drop made in it.

    ppl_epoch: float (n_examples, n_epochs + 1), columns P_0..P_n.
    Returns float64 (n_examples,).

    >>> lp(np.array([[10.0, 4.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]]))
    array([0.75, 0.  ])
    """
    p = _check(ppl_epoch, i, "lp")
    drop_i = p[:, i - 1] - p[:, i]
    total = p[:, 0] - p[:, -1]
    out = np.zeros(p.shape[0], dtype=np.float64)
    moved = total != 0  # False for NaN totals too; those are restored below
    np.divide(drop_i, total, out=out, where=moved)
    out[np.isnan(drop_i) | np.isnan(total)] = np.nan
    return out


def lp_app(ppl_epoch: np.ndarray, i: int = 1) -> np.ndarray:
    """Approximate learning percentage: the perplexity drop of epoch ``i`` relative to P_0.

    Needs only epochs up to i (for i=1 a single epoch of proxy training is enough); later
    columns may be NaN.

    ppl_epoch: float (n_examples, n_epochs + 1), columns P_0..P_n.
    Returns float64 (n_examples,).

    >>> lp_app(np.array([[10.0, 4.0], [4.0, 3.0]]))
    array([0.6 , 0.25])
    """
    p = _check(ppl_epoch, i, "lp_app")
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p[:, i - 1] - p[:, i]) / p[:, 0]


def epoch_column(ppl_epoch: np.ndarray, name: str) -> np.ndarray:
    """The per-epoch column ``name`` (``EPOCH_COLUMN``) of ``ppl_epoch``, float64 (n_examples,).

    ppl_epoch: float (n_examples, n_epochs + 1), columns P_0..P_n. ``ppl_<e>`` is P_e (e in 0..n),
    ``lp_<i>`` and ``lp_app_<i>`` are ``lp``/``lp_app`` of epoch i (1..n). A name that is not one
    of these, or an epoch the run did not train, is a ValueError naming the epochs it holds.
    """
    match = EPOCH_COLUMN.fullmatch(name)
    if match is None:
        raise ValueError(f"'{name}' is not a per-epoch column (ppl_<e>, lp_<i>, lp_app_<i>)")
    kind, epoch = match.group(1), int(match.group(2))
    p = np.asarray(ppl_epoch, dtype=np.float64)
    if kind == "ppl":
        if p.ndim != 2 or not 0 <= epoch < p.shape[1]:
            raise ValueError(f"'{name}': ppl_epoch holds P_0..P_{p.shape[-1] - 1}, not P_{epoch}")
        return p[:, epoch].copy()
    return (lp if kind == "lp" else lp_app)(p, epoch)


def derived_column(ppl_epoch: np.ndarray, name: str) -> np.ndarray:
    """Any column ``DERIVED_COLUMN`` names, from ``ppl_epoch``: float64 (n_examples,)."""
    if name in cartography.COLUMNS:
        return cartography.cartography_column(ppl_epoch, name)
    return epoch_column(ppl_epoch, name)


# The columns train-proxy writes, in the registry, so that `--signals`, preflight and a selector's
# "missing column" message know where they come from (they are not computed by `score`).


class _TrainProxySignal(Signal):
    command = "train-proxy"
    needs = ("response",)
    #: the train-proxy option that decides whether it is computed, and what to set it to
    needs_field: str = "epochs"
    needs_hint: str = ""


@register_signal("ppl_epoch")
class PplEpochSignal(_TrainProxySignal):
    """P_0..P_n: the response perplexity before training and after every epoch."""

    columns = ("ppl_epoch", "n_tokens", "n_response_tokens", "truncated")
    derives = DERIVED_COLUMN  # ppl_<e>, lp_<i>, lp_app_<i>, confidence, variability
    hint = "proxysel train-proxy {data} --epochs 1 --checkpoints 0 --out {run}"

    @classmethod
    def derive(cls, column: str, scores: Any) -> Any:
        return derived_column(list_matrix(scores.column("ppl_epoch"), "ppl_epoch"), column)


@register_signal("lp_app")
class LPAppSignal(_TrainProxySignal):
    """LP_app(i) from ``ppl_epoch``: one epoch of proxy training is enough."""

    columns = ("lp_app",)
    hint = "proxysel train-proxy {data} --epochs 1 --checkpoints 0 --out {run}"


@register_signal("lp")
class LPSignal(_TrainProxySignal):
    """LP(i) from ``ppl_epoch``: needs n >= 2 epochs to differ from 1."""

    columns = ("lp",)
    hint = "proxysel train-proxy {data} --epochs 3 --out {run}"
    needs_hint = ("lp needs P_n after n >= 2 epochs (with one epoch LP(1) is 1 for every example; "
                  "lp_app needs 1)")

    @classmethod
    def provided_by(cls, config: Any) -> bool:
        return config.epochs >= 2


@register_signal("trajectory")
class TrajectorySignal(_TrainProxySignal):
    """The S2L loss trajectory: the loss at evenly spaced optimizer steps."""

    columns = ("trajectory",)
    hint = "proxysel train-proxy {data} --epochs 3 --checkpoints 8 --out {run}"

    needs_field = "checkpoints"
    needs_hint = "s2l needs a loss trajectory: set checkpoints >= 2"

    @classmethod
    def provided_by(cls, config: Any) -> bool:
        return config.n_checkpoints > 0
