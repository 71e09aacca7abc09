"""`proxysel report RUN`: one self-contained, escaped page with every section, on synthetic runs."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from report_run import EVIL_ID, SCRIPT, build_run

import proxysel
from proxysel.cli.main import main
from proxysel.errors import UsageError
from proxysel.reporting.charts import fmt, histogram, nice_ticks, scatter
from proxysel.reporting.html import MAX_POINTS, SECTIONS, find_cut
from proxysel.reporting.load import load_run

EXTERNAL = [
    re.compile(r"""(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*"""
               r"(?:[a-z][a-z0-9+.-]*:|//)", re.I),
    re.compile(r"url\(", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"<(?:script|link|iframe|object|embed|img|base|form)\b", re.I),
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("report") / "r", n=300)


@pytest.fixture(scope="module")
def page(synthetic):
    path = proxysel.report(synthetic.run)
    assert path == synthetic.run / "report.html"
    return path.read_text(encoding="utf-8")


def assert_self_contained(text: str) -> None:
    for pattern in EXTERNAL:
        found = pattern.search(text)
        assert found is None, \
            f"external reference or active content: {text[found.start() - 80:found.end() + 80]!r}"
    assert "http://" not in text and "https://" not in text


def test_page_is_self_contained_and_has_every_section(page):
    assert page.startswith("<!DOCTYPE html>")
    assert_self_contained(page)
    for key, title in SECTIONS:
        assert f'<section id="{key}"><h2>{html.escape(title)}</h2>' in page, title
    assert page.count("<svg") >= 12 + 5  # 12 signal histograms + LP, trajectories, clusters, map, keep rates


def test_untrusted_text_is_escaped(page):
    assert SCRIPT not in page and "<script" not in page.lower()
    assert html.escape(SCRIPT) in page  # the planted text is shown, escaped (previews, skipped records)
    assert EVIL_ID not in page and html.escape(EVIL_ID) in page  # the kept row with an untrusted id
    assert "<b>bold</b>" not in page


def test_default_is_newest_selection_and_option_picks_another(synthetic, page):
    assert "selection <code>lp-30</code>" in page
    path = proxysel.report(synthetic.run, selection="ppl-low")
    other = path.read_text(encoding="utf-8")
    assert "selection <code>ppl-low</code>" in other
    # ppl-low is a global cut on ppl: its histogram marks the threshold; lp-30 is per cluster.
    signals = other.split('id="signals"')[1].split('id="lp"')[0]
    assert "cut " in signals
    view = load_run(synthetic.run, selection="ppl-low", read_data=False)
    cut = find_cut(view.signals["ppl"], view.selection)
    ppl, state = view.signals["ppl"], view.selection.state
    assert np.nanmax(ppl[state == 1]) < cut < np.nanmin(ppl[(state == 0) & (view.selection.rank >= 0)])
    lp_view = load_run(synthetic.run, read_data=False)
    assert lp_view.selection.name == "lp-30" and find_cut(lp_view.signals["lp"], lp_view.selection) is None


def test_same_run_same_bytes(synthetic, page):
    assert proxysel.report(synthetic.run).read_text(encoding="utf-8") == page


def test_cli_report_and_bad_selection(synthetic, capsys):
    assert main(["report", str(synthetic.run), "--no-data"]) == 0
    assert "report.html" in capsys.readouterr().out
    text = (synthetic.run / "report.html").read_text(encoding="utf-8")
    assert "input records not read" in text and "text not available" in text
    assert main(["report", str(synthetic.run), "--selection", "nope"]) == 2
    assert "no selection 'nope'" in capsys.readouterr().err
    assert main(["report", str(synthetic.run), "--selection", "../x"]) == 2
    assert main(["report", str(synthetic.run.parent / "missing")]) == 2


def test_sections_without_data_say_so(tmp_path):
    """Only scores (no embeddings, no selection, data moved): every section is there, with a line."""
    r = build_run(tmp_path / "bare", n=60, selections=False, embeddings=False)
    r.data.unlink()
    text = proxysel.report(r.run).read_text(encoding="utf-8")
    assert_self_contained(text)
    for key, title in SECTIONS:
        assert f'<section id="{key}">' in text, title
    assert "No selection in this run yet" in text
    assert "No embeddings.parquet in this run" in text
    assert "no longer at" in text  # the moved data is reported, not fatal


def test_selection_without_meta_degrades(tmp_path):
    r = build_run(tmp_path / "nometa", n=80, meta=False)
    text = proxysel.report(r.run).read_text(encoding="utf-8")
    assert "has no meta.json" in text
    assert '<section id="most-kept">' in text and "rank 1 of" in text


def test_not_a_run_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a proxysel run folder"):
        proxysel.report(tmp_path / "empty")
    assert not (tmp_path / "empty" / "manifest.json").exists()  # nothing was created


def test_large_run_is_subsampled(tmp_path):
    """12k rows: scatters draw at most MAX_POINTS points (seeded) and the page stays small."""
    from report_run import _write_selection, scores_table

    from proxysel.selectors import get_selector
    from proxysel.selectors.base import ScoreTable
    from proxysel.store import Run

    n = 12_000
    ids = [f"id{i}" for i in range(n)]
    table = scores_table(ids, clusters=40)
    with Run.open(tmp_path / "big") as run:
        run.merge_scores(table)
        run.write_embeddings(ids, np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32), "minilm")
        sel = get_selector("lp")(clusters=None).select(ScoreTable.from_arrow(table), 0.1, seed=0)
        _write_selection(run, "lp", sel, {"method": "lp", "budget": 0.1, "seed": 0, "signal": "lp"}, 1e9)
    text = proxysel.report(tmp_path / "big").read_text(encoding="utf-8")
    assert len(text) < 600_000
    for key in ("lp", "embeddings"):
        part = text.split(f'<section id="{key}">')[1].split("</section>")[0]
        assert len(re.findall(r"M[0-9.]+ [0-9.]+h0", part)) <= MAX_POINTS
        assert f"{MAX_POINTS:,} of" in part


def test_chart_helpers():
    assert nice_ticks(0, 1, 5) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(-3, 17, 4) == pytest.approx([0, 5, 10, 15])
    assert nice_ticks(3, 3) == [3]
    assert fmt(float("nan")) == "–" and fmt(12345.0) == "12,345" and fmt(0.5) == "0.5"
    svg, caption = histogram(np.full(10, np.nan), None, title="<t>", xlabel="x")
    assert "<t>" not in svg and "missing" in caption
    svg, _ = histogram(np.ones(50), np.ones(50, dtype=np.int8), title="const", xlabel="x")
    assert "<rect" in svg
    svg, _ = scatter(np.arange(5.0), np.arange(5.0), None, title="s", xlabel="<x>", ylabel="y")
    assert "&lt;x&gt;" in svg and svg.count("h0") == 5


def test_source_column_in_scores_needs_no_data(tmp_path):
    """A ``source`` string column of scores.parquet gives the per-source keep rates without the records."""
    import pyarrow as pa

    from proxysel.store import Run

    r = build_run(tmp_path / "src", n=90)
    with Run.open(r.run, create=False) as run:
        run.merge_scores(pa.table({"id": r.ids, "source": [f"src-{i % 3}" for i in range(len(r.ids))]}))
    text = proxysel.report(r.run, read_data=False).read_text(encoding="utf-8")
    part = text.split('<section id="breakdown">')[1].split("</section>")[0]
    assert "Keep rate by source" in part and "src-2" in part
    assert "Keep rate by format: the input records were not read" in part


def _section_html(text: str, key: str) -> str:
    return text.split(f'<section id="{key}">')[1].split("</section>")[0]


def test_one_epoch_draws_lp_app_and_says_why(tmp_path, page):
    """With one epoch LP(1) = (P_0 - P_1) / (P_0 - P_1) = 1 for every example: no histogram of it and
    LP_app(1) against P_0 instead, each with the reason; with three epochs LP(1) is drawn as before."""
    r = build_run(tmp_path / "one", n=120, epochs=1)
    lp = np.delete(load_run(r.run, read_data=False).signals["lp"], 1)  # row 1: planted lowest (report_run)
    assert np.allclose(lp[np.isfinite(lp)], 1.0)  # the premise
    text = proxysel.report(r.run, read_data=False).read_text(encoding="utf-8")
    signals, lp_part = _section_html(text, "signals"), _section_html(text, "lp")
    assert 'aria-label="lp"' not in signals and 'aria-label="lp (selection signal)"' not in signals
    assert 'aria-label="lp_app"' in signals
    assert "LP(1) is not drawn" in signals and "LP(1) is not drawn" in lp_part
    assert "<h2>LP_app(1) against P_0</h2>" in lp_part and 'aria-label="LP_app(1) against P_0"' in lp_part

    assert "LP(1) is not drawn" not in page
    assert 'aria-label="lp (selection signal)"' in _section_html(page, "signals")
    assert "<h2>LP(1) against P_0</h2>" in page and 'aria-label="LP(1) against P_0"' in page


def test_train_proxy_time_is_recorded_and_shown(tmp_path, tiny_model_dir):
    """The train-proxy stage records its seconds and tokens/s as the other stages do (training and
    scoring passes, and each apart), and the page shows them: no "–", and they count in the total."""
    pytest.importorskip("torch")
    import json

    import pyarrow.parquet as pq

    from conftest import write_qa_pool

    pool = write_qa_pool(tmp_path / "pool.jsonl", 16, seed=2)
    out = tmp_path / "run"
    proxysel.train_proxy(pool, out=out, model=str(tiny_model_dir), epochs=1, checkpoints=2, batch_size=2,
                         grad_accum=2, lr=1e-2, max_length=48, shard_size=8)
    st = json.loads((out / "manifest.json").read_text())["stages"]["train-proxy"]
    n_tokens = int(pq.read_table(out / "scores.parquet").column("n_tokens").to_numpy().sum())
    assert st["tokens_scored"] == len(st["plan"]["pass_steps"]) * n_tokens  # every pass scores the pool
    assert st["tokens_trained"] > 0 and st["tokens_computed"] == st["tokens_trained"] + st["tokens_scored"]
    assert 0 < st["seconds_train"] + st["seconds_scoring"] <= st["seconds"] < 60
    assert st["tokens_per_s"] == pytest.approx(st["tokens_computed"] / st["seconds"], rel=1e-2)

    text = proxysel.report(out, read_data=False).read_text(encoding="utf-8")
    row = next(r for r in _section_html(text, "stages").split("<tr") if "train-proxy</span>" in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[2] == f"{st['seconds']:.1f} s" and cells[4] == fmt(st["tokens_per_s"], 4)
    assert "training " in cells[0] and "scoring passes " in cells[0]
    assert f"<span>stage time</span><b>{st['seconds']:.1f} s</b>" in text  # the only stage
    assert "LP(1) is not drawn" in text  # one epoch
