"""Dataset Cartography's training-dynamics measures (Swayamdipta et al., EMNLP 2020), from ``ppl_epoch``.

The paper maps each example by the model's probability of its gold label across the epochs of
one training run:

    confidence  = mean over epochs e = 1..n of p_e(y* | x)
    variability = std  over epochs e = 1..n of p_e(y* | x)    (population std, as in the paper)

A mislabelled example sits in the *hard-to-learn* region: low confidence, low variability. For a
response of many tokens proxysel takes ``p_e(y* | x) = 1 / P_e``, the per-token geometric mean
probability of the response (``exp(-loss)``, length-normalised like every proxysel loss), with
``P_e`` the response perplexity after epoch e. ``P_0`` (before training) is not an epoch of the run
and is left out, as the paper averages over the training epochs.

Why beside the last epoch's perplexity: a proxy trained until it has memorised the pool ranks the
records by how *late* it memorised them, and the last epoch alone keeps the wording and answers it
memorised first (benchmarks/RESULTS.md, the skewed bench). The mean over the run weighs every epoch.

Missing values propagate: a row with a NaN perplexity at any epoch 1..n gives NaN, which the
selectors exclude.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COLUMNS", "cartography_column", "confidence", "variability"]

#: the columns derived from ``ppl_epoch`` (a selector reads them as if stored)
COLUMNS = ("confidence", "variability")


def _probabilities(ppl_epoch: np.ndarray, name: str) -> np.ndarray:
    """float64 (n_examples, n_epochs): 1 / P_e for e = 1..n."""
    p = np.asarray(ppl_epoch, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name}: ppl_epoch must be a 2-D array (n_examples, n_epochs + 1) with at least "
                         f"2 columns (P_0, P_1), got shape {p.shape}")
    return 1.0 / p[:, 1:]


def confidence(ppl_epoch: np.ndarray) -> np.ndarray:
    """Mean over epochs 1..n of 1 / P_e; float64 (n_examples,), in (0, 1]. Higher = learned early and well.

    ppl_epoch: float (n_examples, n_epochs + 1), columns P_0..P_n.

    >>> confidence(np.array([[10.0, 2.0, 1.0], [10.0, 10.0, 5.0]]))
    array([0.75, 0.15])
    """
    return _probabilities(ppl_epoch, "confidence").mean(axis=1)


def variability(ppl_epoch: np.ndarray) -> np.ndarray:
    """Population standard deviation over epochs 1..n of 1 / P_e; float64 (n_examples,).

    ppl_epoch: float (n_examples, n_epochs + 1), columns P_0..P_n.

    >>> variability(np.array([[10.0, 2.0, 1.0], [10.0, 4.0, 4.0]]))
    array([0.25, 0.  ])
    """
    return _probabilities(ppl_epoch, "variability").std(axis=1)


def cartography_column(ppl_epoch: np.ndarray, name: str) -> np.ndarray:
    """``confidence`` or ``variability`` of ``ppl_epoch`` by name; ValueError for another name."""
    if name == "confidence":
        return confidence(ppl_epoch)
    if name == "variability":
        return variability(ppl_epoch)
    raise ValueError(f"'{name}' is not a cartography column ({', '.join(COLUMNS)})")
