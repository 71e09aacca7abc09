"""Dataset Cartography's confidence and variability (Swayamdipta et al. 2020) from ``ppl_epoch``,
against hand-worked values and an independent per-token computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from proxysel.signals.cartography import cartography_column, confidence, variability

PPL = np.array([
    # P_0   P_1   P_2   P_3
    [10.0, 2.0, 1.0, 1.0],     # 1/P: 0.5, 1, 1    -> mean 5/6, std sqrt(1/18)
    [10.0, 4.0, 4.0, 4.0],     # 1/P: 0.25 each    -> mean 0.25, std 0
    [1.0, 10.0, 5.0, 2.0],     # P_0 is not an epoch of the run: it changes nothing
    [10.0, 2.0, np.nan, 1.0],  # a missing epoch: NaN
])


def test_hand_worked_values():
    np.testing.assert_allclose(confidence(PPL), [5 / 6, 0.25, (0.1 + 0.2 + 0.5) / 3, np.nan],
                               equal_nan=True)
    np.testing.assert_allclose(variability(PPL), [math.sqrt(1 / 18), 0.0, np.std([0.1, 0.2, 0.5]), np.nan],
                               equal_nan=True)
    same_run_other_start = PPL.copy()
    same_run_other_start[:, 0] = 99.0
    np.testing.assert_array_equal(confidence(same_run_other_start)[:3], confidence(PPL)[:3])


def test_confidence_is_the_mean_geometric_token_probability_over_epochs():
    # Independently: per epoch, the per-token probabilities of the response's tokens; their geometric
    # mean is p_e(y*|x), and confidence averages it over the epochs (the paper's mean of p(y*|x)).
    rng = np.random.default_rng(0)
    token_probs = rng.uniform(0.05, 1.0, size=(5, 4, 7))   # (examples, epochs 1..4, response tokens)
    loss = -np.log(token_probs).mean(axis=2)                # mean response-token loss, nats
    ppl = np.concatenate([np.full((5, 1), 50.0), np.exp(loss)], axis=1)  # P_0..P_4
    geo = np.array([[math.prod(p) ** (1 / len(p)) for p in ex] for ex in token_probs])
    np.testing.assert_allclose(confidence(ppl), geo.mean(axis=1))
    np.testing.assert_allclose(variability(ppl), [math.sqrt(sum((g - m) ** 2 for g in row) / len(row))
                                                  for row, m in zip(geo, geo.mean(axis=1))])


def test_by_name_and_bad_shapes():
    np.testing.assert_array_equal(cartography_column(PPL, "confidence"), confidence(PPL))
    np.testing.assert_array_equal(cartography_column(PPL, "variability"), variability(PPL))
    with pytest.raises(ValueError, match="not a cartography column"):
        cartography_column(PPL, "ppl_1")
    with pytest.raises(ValueError, match="at least 2 columns"):
        confidence(np.ones((3, 1)))
