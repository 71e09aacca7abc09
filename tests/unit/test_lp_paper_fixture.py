"""The published perplexities of the LP paper (Small2Large ``dump-pplxs/``) give the published facts.

The fixture lives in ``$PROXYSEL_FIXTURES/lp_paper_perplexities`` (default ``../shared/fixtures``);
its README holds the table reproduced here. The tests skip when the folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, get_selector
from proxysel.signals.lp import lp, lp_app

# file: (median LP(1), median LP_app(1), LP(1) < 0, LP(1) > 1, rows with P = 1.0 at every epoch)
README_TABLE = {
    "alpaca-opt-350m": (0.9062, 0.5752, 11, 1459, 1),
    "alpaca-llama2-7b": (0.8056, 0.5656, 38, 401, 1),
    "alpaca-llama2-13b": (0.7863, 0.5404, 29, 428, 1),
    "dolly-opt-350m": (0.8642, 0.4277, 4, 428, 544),
    "dolly-llama2-7b": (0.7705, 0.5282, 29, 97, 765),
    "dolly-llama2-13b": (0.7593, 0.5119, 18, 100, 765),
}
N_ROWS = {"alpaca": 52002, "dolly": 15011}


@pytest.fixture(scope="module")
def lp_dir(fixtures_dir: Path) -> Path:
    d = fixtures_dir / "lp_paper_perplexities"
    if not d.is_dir():
        pytest.skip(f"LP paper fixture not found at {d} (set PROXYSEL_FIXTURES)")
    return d


def load(lp_dir: Path, name: str) -> np.ndarray:
    path = lp_dir / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"fixture file missing: {path}")
    with np.load(path, allow_pickle=False) as f:
        return f["ppl_epoch"]


@pytest.mark.parametrize("name", sorted(README_TABLE))
def test_readme_table(lp_dir, name):
    ppl = load(lp_dir, name)
    assert ppl.shape == (N_ROWS[name.split("-")[0]], 4) and ppl.dtype == np.float64
    median_lp, median_lp_app, below_zero, above_one, all_ones = README_TABLE[name]
    lp1, lp_app1 = lp(ppl, i=1), lp_app(ppl, i=1)
    assert round(float(np.median(lp1)), 4) == median_lp
    assert round(float(np.median(lp_app1)), 4) == median_lp_app
    assert int((lp1 < 0).sum()) == below_zero
    assert int((lp1 > 1).sum()) == above_one
    ones = (ppl == 1.0).all(axis=1)
    assert int(ones.sum()) == all_ones
    assert (lp1[ones] == 0).all()  # P_0 == P_n -> 0 by definition, never NaN


@pytest.mark.parametrize("dataset, rho_lp, rho_app, shared", [
    ("alpaca", 0.712, 0.801, 0.33),
    ("dolly", 0.699, 0.655, 0.56),
])
def test_readme_transfer_across_model_sizes(lp_dir, dataset, rho_lp, rho_app, shared):
    from scipy.stats import spearmanr

    small, large = load(lp_dir, f"{dataset}-opt-350m"), load(lp_dir, f"{dataset}-llama2-13b")
    assert round(spearmanr(lp(small), lp(large)).statistic, 3) == rho_lp
    assert round(spearmanr(lp_app(small), lp_app(large)).statistic, 3) == rho_app
    # The 10% lowest LP(1), a global cut: the lp selector without clusters.
    n = len(small)
    ids = [str(i) for i in range(n)]
    cut = get_selector("lp")(within_clusters=False)
    a = cut.select(ScoreTable(ids=ids, columns={"lp": lp(small)}), 0.1)
    b = cut.select(ScoreTable(ids=ids, columns={"lp": lp(large)}), 0.1)
    assert round((a.selected & b.selected).sum() / a.n_selected, 2) == shared


@pytest.mark.parametrize("name", ["alpaca-llama2-7b", "dolly-opt-350m"])
def test_lp_selector_keeps_the_lowest_lp_in_every_cluster(lp_dir, name):
    ppl = load(lp_dir, name)
    n = len(ppl)
    rng = np.random.default_rng(0)
    k = 50
    clusters = rng.integers(0, k, n)
    truncated = (ppl == 1.0).all(axis=1)  # how proxysel marks fully truncated responses
    values = lp(ppl)
    values[truncated] = np.nan
    table = ScoreTable(ids=[f"{name}-{i}" for i in range(n)],
                       columns={"lp": values, "cluster": clusters}, truncated=truncated)

    sel = get_selector("lp")(clusters=None).select(table, 0.1, seed=0)
    assert sel.n_selected == round(0.1 * n)
    assert not sel.selected[truncated].any()
    sizes = np.bincount(clusters[~truncated], minlength=k)
    for c in range(k):
        in_c = (clusters == c) & ~truncated
        kept, dropped = values[in_c & sel.selected], values[in_c & ~sel.selected]
        assert kept.max() <= dropped.min()  # the lowest LP(1) of the cluster, nothing else
        assert abs(len(kept) - 0.1 * n * sizes[c] / sizes.sum()) < 1  # exact, proportional

    # Official rounding: ceil(n_c / 10) per cluster, over the candidates of each cluster.
    official = get_selector("lp")(clusters=None, rounding="official").select(table, 0.1, seed=0)
    assert official.n_selected == int(np.ceil(sizes / 10).sum())
    for c in range(k):
        in_c = (clusters == c) & ~truncated
        assert (values[in_c & official.selected].max()
                <= values[in_c & ~official.selected].min())


@pytest.mark.parametrize("name", ["alpaca-llama2-7b", "dolly-opt-350m"])
def test_official_flag_reproduces_the_official_rounding(lp_dir, name):
    """`--official` puts lp at the official code's settings: its rounding gives the official counts
    (ceil(n_c / 10) per cluster at 10%), scikit-learn k-means, 1,000 clusters unless a cluster column
    (clusters=None) is given."""
    ppl = load(lp_dir, name)
    clusters = np.random.default_rng(0).integers(0, 50, len(ppl))
    truncated = (ppl == 1.0).all(axis=1)
    values = lp(ppl)
    values[truncated] = np.nan
    table = ScoreTable(ids=[f"{name}-{i}" for i in range(len(ppl))],
                       columns={"lp": values, "cluster": clusters}, truncated=truncated)
    sel = get_selector("lp")(clusters=None, official=True)
    assert sel.rounding == "official" and sel.kmeans == "sklearn" and sel.clusters is None
    assert get_selector("lp")(official=True).clusters == 1000
    official = sel.select(table, 0.1, seed=0)
    sizes = np.bincount(clusters[~truncated])
    assert official.n_selected == int(np.ceil(sizes / 10).sum())
