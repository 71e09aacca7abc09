"""``RUN/report.html``: one static page, no scripts, no network, every chart an inline SVG.

The page reads top to bottom the way one checks a run: what went in and how long it took; how
every signal is distributed and where the selection cut it; the method-specific views (LP(1)
against P_0, S2L trajectories, clusters, the embedding map); keep rates per source, format and
length; and the examples at both ends of the ranking with the reason for each. A section whose
data the run lacks says so in one line.

All text from the run (ids, reasons, paths, example text) is untrusted and goes through
``html.escape``. Large runs are subsampled for the scatter plots with a fixed seed, so the same run
gives the same page.
"""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proxysel.errors import ProxyselError
from proxysel.reporting import charts
from proxysel.reporting.charts import DROPPED, KEPT, Line, fmt
from proxysel.reporting.load import RunView, SelectionView, preview

#: Most points drawn in one scatter plot; larger runs are subsampled (seeded).
MAX_POINTS = 4000
#: Rows used to fit the PCA of the embedding map.
PCA_FIT_ROWS = 20000
#: Rows in the tables of most and least kept examples.
TABLE_ROWS = 15
#: Most clusters drawn in the cluster chart and the trajectory chart.
MAX_CLUSTERS = 150
#: Groups shown per keep-rate chart; the rest are pooled as "other".
MAX_GROUPS = 16
LENGTH_EDGES = (0, 64, 128, 256, 512, 1024, 2048, 4096)
SEED = 0

SECTIONS = (
    ("summary", "Run summary"),
    ("selection", "Selection"),
    ("stages", "Stage timings"),
    ("skipped", "Skipped records"),
    ("signals", "Signal distributions"),
    ("lp", "LP(1) against P_0"),
    ("trajectories", "S2L trajectories by cluster"),
    ("clusters", "Clusters"),
    ("embeddings", "Embedding map"),
    ("breakdown", "Keep rate by source, format and length"),
    ("most-kept", "Most kept examples"),
    ("least-kept", "Least kept examples"),
)
TITLES = dict(SECTIONS)

CSS = """
:root{--kept:%(kept)s;--dropped:%(dropped)s;--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f4f6f9}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}
.wrap{max-width:1180px;margin:0 auto;padding:0 28px}
header{background:#0f172a;color:#f8fafc;padding:26px 0 20px}
header h1{margin:0;font-size:24px;font-weight:650;letter-spacing:-.01em}
header .sub{color:#cbd5e1;margin-top:4px;font-size:13.5px}
header .sub code{color:#e2e8f0}
.key{display:inline-flex;gap:16px;margin-top:12px;font-size:12.5px;color:#cbd5e1}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line)}
nav .wrap{display:flex;flex-wrap:wrap;gap:2px 14px;padding-top:8px;padding-bottom:8px}
nav a{color:#334155;text-decoration:none;font-size:12.5px;white-space:nowrap}
nav a:hover{color:var(--kept)}
main{padding:6px 0 40px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px 20px;margin:16px 0}
h2{font-size:17px;margin:0 0 2px;font-weight:650}
h3{font-size:13px;margin:16px 0 6px;color:#334155;font-weight:600}
.lead{color:var(--muted);margin:0 0 14px;font-size:13px}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-bottom:14px}
.stat{border:1px solid var(--line);border-radius:8px;padding:9px 13px;background:#fbfcfd}
.stat span{display:block;color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.04em}
.stat b{display:block;font-size:20px;font-weight:650;font-variant-numeric:tabular-nums}
.stat.kept b{color:var(--kept)}
dl.kv{display:grid;grid-template-columns:170px 1fr;gap:4px 14px;margin:0;font-size:13px}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;overflow-wrap:anywhere}
.grid2{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px 22px}
.grid3{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:14px 18px}
figure{margin:0}
figure svg{width:100%%;height:auto;display:block}
figcaption{font-size:12px;color:var(--muted);margin-top:2px;min-height:1em}
table{border-collapse:collapse;width:100%%;font-size:12.5px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.04em;background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:600;border-top:2px solid var(--line)}
tr.current td{background:#eff6ff}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.pill{display:inline-block;padding:0 8px;border-radius:99px;font-size:11.5px;font-weight:600;white-space:nowrap}
.pill.kept{background:#dbeafe;color:#1e40af}
.pill.dropped{background:#eef0f3;color:#475569}
.pill.excluded{background:#fef3c7;color:#92400e}
.empty{color:var(--muted);background:#f9fafb;border:1px dashed #d1d5db;padding:9px 13px;border-radius:8px;margin:6px 0;font-size:13px}
.notes{background:#fffbeb;border:1px solid #fde68a;border-radius:8px;padding:8px 14px 8px 30px;margin:0 0 14px;font-size:13px}
.text{max-width:520px;color:#374151;display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden;overflow-wrap:anywhere}
.reason{min-width:200px;max-width:300px}
.scroll{overflow-x:auto}
footer{color:var(--muted);font-size:12px;padding:4px 0 30px}
""" % {"kept": KEPT, "dropped": DROPPED}  # noqa: E501  (CSS, one rule a line)


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _empty(message: str) -> str:
    return f'<p class="empty">{e(message)}</p>'


def _section(key: str, body: str, lead: str = "", title: str | None = None) -> str:
    lead_html = f'<p class="lead">{e(lead)}</p>' if lead else ""
    return f'<section id="{key}"><h2>{e(title or TITLES[key])}</h2>{lead_html}{body}</section>'


def _figure(svg: str, caption: str = "") -> str:
    return f"<figure>{svg}<figcaption>{e(caption)}</figcaption></figure>"


def _stat(label: str, value: str, cls: str = "") -> str:
    return f'<div class="stat {cls}"><span>{e(label)}</span><b>{e(value)}</b></div>'


def _kv(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="kv">{rows}</dl>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], num: Sequence[int] = (),
           row_class: Sequence[str] | None = None) -> str:
    """``rows`` hold HTML already escaped; ``num``: indices of right-aligned columns."""
    head = "".join(f'<th class="num">{e(h)}</th>' if i in num else f"<th>{e(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        cells = "".join(f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "–"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def _number(st: dict[str, Any], *keys: str) -> float | None:
    """The first of ``keys`` in ``st`` that holds a finite number (newer names first, then the names
    older manifests used)."""
    for key in keys:
        v = st.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def _stage_seconds(st: dict[str, Any]) -> float | None:
    # train-proxy recorded only seconds_total before it recorded seconds as the other stages do
    return _number(st, "seconds", "seconds_total")


def _stage_detail(st: dict[str, Any]) -> str:
    """For train-proxy: its training and its scoring passes apart, e.g. "training 5m 50s at 181 tok/s"."""
    parts = []
    for label, secs, tps in (("training", "seconds_train", "train_tokens_per_s"),
                             ("scoring passes", "seconds_scoring", "scoring_tokens_per_s")):
        seconds, rate = _number(st, secs), _number(st, tps)
        if seconds is not None:
            at = f" at {fmt(rate, 4)} tok/s" if rate is not None else ""
            parts.append(f"{label} {_duration(seconds)}{at}")
    return "; ".join(parts)


def not_applicable(st: dict[str, Any]) -> tuple[int, str] | None:
    """(count, details) of the examples a stage's signal does not fit (its manifest entry's
    ``not_applicable``: count, reasons {reason: count}, first_ids), or None when it fits them all.

    >>> not_applicable({"not_applicable": {"count": 2, "reasons": {"text record has no prompt": 2},
    ...                                     "first_ids": ["a", "b"]}})
    (2, 'text record has no prompt: 2; first: a, b')
    """
    na = st.get("not_applicable")
    if not isinstance(na, dict):
        return None
    count = na.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        return None
    reasons = na.get("reasons") if isinstance(na.get("reasons"), dict) else {}
    parts = [f"{why}: {_count(n)}" for why, n in sorted(reasons.items(), key=lambda r: str(r[0]))]
    first = na.get("first_ids") if isinstance(na.get("first_ids"), list) else []
    if first:
        parts.append("first: " + ", ".join(str(i) for i in first[:5]))
    return count, "; ".join(parts)


def one_epoch(view: RunView) -> bool:
    """Whether the proxy was trained for one epoch only (ppl_epoch holds P_0 and P_1): LP(1) is then
    (P_0 - P_1) / (P_0 - P_1) = 1 for every example that moved, and carries no ranking."""
    ppl = view.lists.get("ppl_epoch")
    return ppl is not None and ppl.shape[1] == 2


ONE_EPOCH_NOTE = ("LP(1) is not drawn: with one epoch of proxy training LP(1) = (P_0 - P_1) / (P_0 - P_1) "
                  "= 1 for every example, so it ranks nothing; LP_app(1) = (P_0 - P_1) / P_0 needs only the "
                  "one epoch and is drawn instead.")


def _count(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else ("–" if v is None else str(v))


def _sample(rows: np.ndarray, k: int = MAX_POINTS, seed: int = SEED) -> np.ndarray:
    """At most ``k`` of ``rows``, drawn without replacement with a fixed seed, in row order."""
    if len(rows) <= k:
        return rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, size=k, replace=False))


def _sampled(drawn: int, total: int, caption: str) -> str:
    """Prefix ``caption`` with how many of the rows a scatter draws, when it is a sample."""
    return f"{drawn:,} of {total:,} examples drawn (seeded sample); {caption}" if drawn < total else caption


def _kept_state(view: RunView) -> np.ndarray | None:
    return None if view.selection is None else view.selection.state


def _budget_text(meta: dict[str, Any]) -> str:
    b = meta.get("budget")
    if isinstance(b, float) and 0 < b < 1:
        return f"{b:.0%}" if (b * 100).is_integer() else f"{b:.2%}"
    return _count(b) if b is not None else "–"


# ------------------------------------------------------------------------------------ sections


def _summary(view: RunView) -> str:
    m = view.manifest
    data = m.get("data") if isinstance(m.get("data"), dict) else {}
    sel = view.selection
    stats = [_stat("examples", f"{view.n:,}")]
    if sel is not None:
        stats.append(_stat("kept", f"{sel.n_kept:,}", "kept"))
        stats.append(_stat("keep rate", f"{sel.n_kept / view.n:.1%}" if view.n else "–"))
    if view.truncated is not None:
        stats.append(_stat("truncated", f"{int(view.truncated.sum()):,}"))
    stats.append(_stat("skipped records", f"{len(m.get('skipped_records') or []):,}"))
    total_s = sum(_stage_seconds(s) or 0.0 for s in (m.get("stages") or {}).values() if isinstance(s, dict))
    stats.append(_stat("stage time", _duration(total_s)))

    models = []
    for name, st in sorted((m.get("stages") or {}).items()):
        fp = st.get("fingerprint") if isinstance(st, dict) else None
        if isinstance(fp, dict):
            for key in ("model", "judge", "embedder"):
                if isinstance(fp.get(key), str):
                    rev = fp.get("revision")
                    rev_txt = (f' <span class="mono">@{e(str(rev)[:12])}</span>'
                               if isinstance(rev, str) and rev else "")
                    models.append(f"{e(fp[key])}{rev_txt} <small>({e(name)})</small>")
    if view.embedding_model and not any(view.embedding_model in x for x in models):
        models.append(f"{e(view.embedding_model)} <small>(embeddings)</small>")
    files = data.get("files") if isinstance(data.get("files"), list) else []
    files_txt = ", ".join(f'<span class="mono">{e(f)}</span>' for f in files[:5])
    if len(files) > 5:
        files_txt += f" and {len(files) - 5:,} more"
    signals = sorted(view.signals) + sorted(view.lists)
    pkgs = m.get("packages") if isinstance(m.get("packages"), dict) else {}
    pairs = [
        ("run folder", f'<span class="mono">{e(view.path)}</span>'),
        ("data", f'<span class="mono">{e(data.get("path", "–"))}</span>'),
        ("data fingerprint", f'<span class="mono">{e(str(data.get("fingerprint", "–"))[:16])}</span>'),
        ("examples in data", e(_count(data.get("n_examples")))),
    ]
    if files_txt:
        pairs.append(("files", files_txt))
    pairs += [
        ("models", "<br>".join(models) if models else "–"),
        ("signals", e(", ".join(signals)) if signals else "none"),
        ("embeddings", e(f"{view.embeddings[0].shape[1]}-d, {int(view.embeddings[1].sum()):,} rows")
         if view.embeddings is not None else "none"),
        ("created", e(m.get("created", "–"))),
        ("packages", e(", ".join(f"{k} {v}" for k, v in sorted(pkgs.items()))) or "–"),
    ]
    notes = view.notes + (view.selection.notes if view.selection is not None else [])
    notes_html = ("<ul class=\"notes\">" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>"
                  if notes else "")
    return _section("summary", f'{notes_html}<div class="stats">{"".join(stats)}</div>{_kv(pairs)}')


#: How ``stages.select`` starts the reason of a row that an earlier step of a chain dropped.
CHAIN_DROP = "dropped at step"


def _count_true(mask: pa.Array) -> int:
    return int(pc.sum(mask.cast("int64")).as_py() or 0)


def _outcomes(sel: SelectionView) -> list[tuple[str, int, str]]:
    """(outcome, rows, css class): kept, dropped by each earlier step of a chain, dropped by the
    ranking, and each exclusion reason."""
    reason = sel.table.column("reason").combine_chunks().fill_null("")
    selected = sel.table.column("selected").combine_chunks().fill_null(False)
    excluded = pc.and_(pc.starts_with(reason, "excluded"), pc.invert(selected))
    earlier = pc.and_(pc.starts_with(reason, CHAIN_DROP), pc.invert(selected))
    out = [("kept", _count_true(selected), "kept")]
    n_excl, n_earlier = _count_true(excluded), _count_true(earlier)
    steps = sorted(pc.value_counts(reason.filter(earlier)).to_pylist(), key=lambda c: c["values"])
    out += [(c["values"], int(c["counts"]), "dropped") for c in steps]
    out.append(("dropped by the selection rule", sel.n_rows - out[0][1] - n_excl - n_earlier, "dropped"))
    if n_excl:
        counts = pc.value_counts(reason.filter(excluded)).to_pylist()
        counts.sort(key=lambda c: (-c["counts"], c["values"]))
        for c in counts[:8]:
            out.append((c["values"], int(c["counts"]), "excluded"))
        rest = sum(c["counts"] for c in counts[8:])
        if rest:
            out.append(("excluded: other reasons", int(rest), "excluded"))
    return out


def _selection(view: RunView) -> str:
    sel = view.selection
    if sel is None:
        return _section("selection", _empty("No selection in this run yet: run `proxysel select RUN ...` "
                                            "to get kept/dropped colouring, cuts and keep rates."))
    meta = sel.meta
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    pairs = [
        ("name", f"<b>{e(sel.name)}</b>"),
        ("method", e(meta.get("method", "unknown"))),
        ("signal", e(sel.signal or "–")),
        ("budget", e(_budget_text(meta))),
        ("seed", e(meta.get("seed", "–"))),
        ("kept", f"{sel.n_kept:,} of {sel.n_rows:,}"),
    ]
    if sel.chain:
        pairs.append(("chain", e(sel.chain)))
    if meta.get("stratify"):
        pairs.append(("stratified by", e(meta["stratify"])))
    if params:
        pairs.append(("parameters", ", ".join(f'<span class="mono">{e(k)}={e(v)}</span>'
                                              for k, v in sorted(params.items()))))
    if sel.file is not None:
        pairs.append(("subset file", f'<span class="mono">{e(sel.file.name)}</span>'))
    notes = meta.get("notes") if isinstance(meta.get("notes"), list) else []
    if notes:
        pairs.append(("selector notes", "<br>".join(e(n) for n in notes)))
    outcome_rows = []
    for text, n, cls in _outcomes(sel):
        label = e(text.removeprefix("excluded: ")) if cls == "excluded" else e(text)
        outcome_rows.append([f'<span class="pill {cls}">{cls}</span> {label}', f"{n:,}",
                             f"{n / max(1, sel.n_rows):.1%}"])
    left = _kv(pairs)
    right = "<h3>Outcome of every row</h3>" + _table(["outcome", "rows", "share"], outcome_rows, num=(1, 2))
    body = f'<div class="grid2"><div>{left}</div><div>{right}</div></div>'
    if len(view.selections) > 1:
        rows, classes = [], []
        for name, _ in reversed(view.selections):
            meta_i, _note = view.run.read_selection_meta(name)
            try:
                t = view.run.read_selection(name, columns=["selected"]).table
                n_kept = _count_true(t.column("selected").combine_chunks().fill_null(False))
                kept = f"{n_kept:,} of {t.num_rows:,}"
            except (OSError, ProxyselError, pa.ArrowException):  # a damaged one must not stop the report
                kept = "unreadable"
            parent = meta_i.get("parent")
            rows.append([f'<span class="mono">{e(name)}</span>', e(meta_i.get("method", "–")),
                         e(_budget_text(meta_i)), e(meta_i.get("seed", "–")),
                         f'<span class="mono">{e(parent)}</span>' if parent else "–", e(kept)])
            classes.append("current" if name == sel.name else "")
        body += ("<h3>All selections in this run (newest first; this page shows the highlighted one, "
                 "<span class=\"mono\">--selection NAME</span> picks another)</h3>"
                 + _table(["name", "method", "budget", "seed", "from", "kept"], rows, row_class=classes))
    return _section("selection", body, "The selection this page colours by: kept in blue, dropped in grey.")


def _stage_label(name: str, st: dict[str, Any]) -> tuple[str, str | None]:
    """The stage cell (its name over a line of details) and, when its signal does not fit some
    examples, a note that says which and why."""
    detail = _stage_detail(st)
    note = None
    na = not_applicable(st)
    if na is not None:
        n = st.get("examples")
        of = f" of {n:,}" if isinstance(n, int) and not isinstance(n, bool) else ""
        detail = "; ".join(x for x in (detail, f"not applicable to {na[0]:,}{of} examples") if x)
        note = (f"{name} does not apply to {na[0]:,}{of} examples ({na[1]}): they hold NaN for it, and "
                f"selections by it leave them out.")
    label = f'<span class="mono">{e(name)}</span>' + (f"<br><small>{e(detail)}</small>" if detail else "")
    return label, note


def _stages(view: RunView) -> str:
    stages = view.manifest.get("stages") or {}
    if not stages:
        return _section("stages", _empty("The manifest records no stages."))
    rows, notes = [], []
    total = 0.0
    for name, st in stages.items():
        if not isinstance(st, dict):
            continue
        fp = st.get("fingerprint") if isinstance(st.get("fingerprint"), dict) else {}
        model = fp.get("model") or fp.get("judge") or fp.get("embedder") or "–"
        secs = _stage_seconds(st)
        total += secs or 0.0
        tps = _number(st, "tokens_per_s", "train_tokens_per_s")
        label, note = _stage_label(name, st)
        if note:
            notes.append(note)
        rows.append([label, e(st.get("status", "–")), e(_duration(secs)), e(_count(st.get("examples"))),
                     e(fmt(tps, 4) if tps is not None else "–"), e(model), e(st.get("completed", "–"))])
    rows.append(["total", "", e(_duration(total)), "", "", "", ""])
    table = _table(["stage", "status", "time", "examples", "tokens/s", "model", "finished"], rows,
                   num=(2, 3, 4), row_class=[""] * (len(rows) - 1) + ["total"])
    if notes:
        table += '<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>"
    return _section("stages", table, "Wall-clock time of the last computation of every stage "
                                     "(a resumed stage counts only the part it computed).")


def _skipped(view: RunView) -> str:
    skipped = view.manifest.get("skipped_records") or []
    if not skipped:
        return _section("skipped", _empty("No records were skipped: every input record was used."))
    rows = []
    for s in skipped[:50]:
        s = s if isinstance(s, dict) else {"reason": s}
        rows.append([f'<span class="mono">{e(s.get("file", "–"))}</span>', e(_count(s.get("line"))),
                     e(_count(s.get("offset"))), e(s.get("field") or "–"), e(s.get("reason", "–"))])
    more = f'<p class="lead">… and {len(skipped) - 50:,} more (all listed in manifest.json).</p>' \
        if len(skipped) > 50 else ""
    return _section("skipped", _table(["file", "line", "byte", "field", "reason"], rows, num=(1, 2)) + more,
                    f"{len(skipped):,} bad records were skipped (--on-bad-record skip).")


def find_cut(values: np.ndarray, sel: SelectionView) -> float | None:
    """The threshold between kept and dropped candidates on ``values``, if one separates them.

    Candidates are the rows the selection ranked (rank >= 0) or kept. Returns the midpoint of the
    gap when every kept value lies on one side of every dropped one, else None (e.g. a selection
    made cluster by cluster, or at random).
    """
    ok = np.isfinite(values)
    kept = values[ok & (sel.state == 1)]
    dropped = values[ok & (sel.state == 0) & (sel.rank >= 0)]
    if kept.size == 0 or dropped.size == 0:
        return None
    if kept.max() <= dropped.min():
        return float((kept.max() + dropped.min()) / 2)
    if kept.min() >= dropped.max():
        return float((kept.min() + dropped.max()) / 2)
    return None


def _signals(view: RunView) -> str:
    if not view.signals:
        return _section("signals", _empty("No numeric signals in scores.parquet yet (run `proxysel score` "
                                          "or `proxysel train-proxy`)."))
    sel = view.selection
    skip_lp = one_epoch(view) and "lp" in view.signals
    names = sorted(n for n in view.signals if not (skip_lp and n == "lp"))
    if sel is not None and sel.signal in names:
        names.remove(sel.signal)
        names.insert(0, sel.signal)
    figs = []
    for name in names:
        v = view.signals[name]
        cut = find_cut(v, sel) if sel is not None else None
        title = name + (" (selection signal)" if sel is not None and name == sel.signal else "")
        svg, caption = charts.histogram(v, _kept_state(view), title=title, xlabel=name, cut=cut)
        if sel is not None:
            k = int(((sel.state == 1) & np.isfinite(v)).sum())
            extra = f"{k:,} kept, {int(np.isfinite(v).sum()) - k:,} dropped"
            if cut is None and name == sel.signal:
                extra += "; kept and dropped overlap (the cut is made per cluster or at random)"
            caption = "; ".join(x for x in (extra, caption) if x)
        figs.append(_figure(svg, caption))
    lead = "Every numeric column of scores.parquet. "
    lead += ("Kept examples are stacked under dropped ones; a dashed red line marks the cut where one "
             "value separates kept from dropped." if sel is not None
             else "No selection yet: one series per signal.")
    if skip_lp:
        lead += " " + ONE_EPOCH_NOTE
    return _section("signals", f'<div class="grid2">{"".join(figs)}</div>', lead)


def _lp(view: RunView) -> str:
    ppl = view.lists.get("ppl_epoch")
    single = one_epoch(view)
    lp_name = "lp" if "lp" in view.signals and not single else "lp_app" if "lp_app" in view.signals else None
    if ppl is None or lp_name is None or ppl.shape[1] < 1:
        return _section("lp", _empty("Needs the ppl_epoch and lp columns of `proxysel train-proxy`; "
                                     "this run has "
                                     + ("no ppl_epoch." if ppl is None else "no lp or lp_app.")))
    p0, lp = ppl[:, 0], view.signals[lp_name]
    ok = np.flatnonzero(np.isfinite(p0) & np.isfinite(lp))
    rows = _sample(ok)
    state = _kept_state(view)
    pos = p0[rows][p0[rows] > 0]
    logx = pos.size > 0 and bool(np.quantile(pos, 0.99) / max(np.quantile(pos, 0.01), 1e-12) > 30)
    label = "LP(1)" if lp_name == "lp" else "LP_app(1)"
    svg, caption = charts.scatter(p0[rows], lp[rows], None if state is None else state[rows],
                                  title=f"{label} against P_0",
                                  xlabel="P_0: perplexity before training" + (" (log scale)" if logx else ""),
                                  ylabel=label, logx=logx, width=720, height=400)
    caption = _sampled(len(rows), len(ok), caption)
    if lp_name == "lp":
        lead = "LP(1) = how much of the proxy's total perplexity drop happened in the first epoch. "
    else:
        lead = "LP_app(1) = the perplexity drop of the first epoch relative to P_0. "
    lead += "The LP selectors keep the lowest (the hardest to learn) within each cluster."
    if single:
        lead = f"{ONE_EPOCH_NOTE} {lead}"
    return _section("lp", f'<div style="max-width:760px">{_figure(svg, caption)}</div>', lead,
                    title=f"{label} against P_0")


def _cluster_labels(view: RunView) -> tuple[np.ndarray | None, str]:
    sel = view.selection
    if sel is not None and (sel.cluster >= 0).any():
        return sel.cluster, f"clusters of selection '{sel.name}'"
    if view.cluster is not None and (view.cluster >= 0).any():
        return view.cluster, "the cluster column of scores.parquet"
    return None, ""


def _trajectories(view: RunView) -> str:
    traj = view.lists.get("trajectory")
    if traj is None or traj.shape[1] < 2:
        return _section("trajectories", _empty("Needs the trajectory column (`proxysel train-proxy` with "
                                               "--checkpoints >= 2); this run has none."))
    t = traj.shape[1]
    plan = (view.manifest.get("stages", {}).get("train-proxy") or {}).get("plan") or {}
    steps = plan.get("checkpoints") if isinstance(plan, dict) else None
    x_labels = ([str(s) for s in steps] if isinstance(steps, list) and len(steps) == t
                else [str(i) for i in range(t)])
    xlabel = "optimizer step" if isinstance(steps, list) and len(steps) == t else "checkpoint"
    labels, where = _cluster_labels(view)
    state = _kept_state(view)
    finite_rows = np.isfinite(traj).all(axis=1)
    series: list[Line] = []
    caption = ""
    if labels is not None:
        ok = finite_rows & (labels >= 0)
        uniq, inv = np.unique(labels[ok], return_inverse=True)
        sizes = np.bincount(inv, minlength=len(uniq))
        means = np.stack([np.bincount(inv, weights=traj[ok, j], minlength=len(uniq)) for j in range(t)],
                         axis=1)
        means /= np.maximum(sizes, 1)[:, None]
        kept = (np.bincount(inv, weights=(state[ok] == 1) if state is not None else None, minlength=len(uniq))
                if state is not None else np.zeros(len(uniq)))
        top = np.argsort(-sizes, kind="stable")[:MAX_CLUSTERS]
        for c in top[::-1]:
            rate = kept[c] / sizes[c] if state is not None else 0.5
            colour = charts.mix(charts.DROPPED_DARK, KEPT, rate) if state is not None else charts.NEUTRAL
            series.append(Line(means[c], colour, width=1.1, opacity=0.45,
                               label=f"cluster {uniq[c]}: {sizes[c]:,} examples"
                                     + (f", {rate:.0%} kept" if state is not None else "")))
        caption = f"{len(uniq):,} clusters ({where}); thin lines: cluster means" + (
            ", coloured from grey (none kept) to blue (all kept)" if state is not None else "")
        if len(uniq) > MAX_CLUSTERS:
            caption += f"; the {MAX_CLUSTERS} largest drawn"
    legend: list[tuple[str, ...]] = []
    if state is not None:
        for mask, colour, name in ((state == 1, KEPT, "mean of kept"), (state == 0, charts.DROPPED_DARK,
                                                                          "mean of dropped")):
            rows = finite_rows & mask
            if rows.any():
                dash = "" if name == "mean of kept" else "6 4"
                series.append(Line(traj[rows].mean(axis=0), colour, width=3.2, opacity=1.0, label=name,
                                   dash=dash))
                legend.append((colour, name, dash))
    else:
        series.append(Line(traj[finite_rows].mean(axis=0), charts.INK, width=3, opacity=1, label="mean"))
        legend.append((charts.INK, "mean"))
    svg = charts.lines(series, title="Mean loss trajectory per cluster", xlabel=xlabel, ylabel="loss (nats)",
                       x_labels=x_labels, legend=legend, width=760, height=380)
    if labels is None:
        caption = "no cluster labels in this run: only the overall means are drawn"
    lead = ("S2L clusters examples by their loss trajectory over the proxy's checkpoints and samples every "
            "cluster evenly, so slow and fast learners are both represented.")
    return _section("trajectories", f'<div style="max-width:800px">{_figure(svg, caption)}</div>', lead)


def _clusters(view: RunView) -> str:
    labels, where = _cluster_labels(view)
    if labels is None:
        return _section("clusters", _empty("No cluster labels: the selection is not clustered and "
                                           "scores.parquet has no cluster column."))
    ok = labels >= 0
    uniq, inv = np.unique(labels[ok], return_inverse=True)
    sizes = np.bincount(inv, minlength=len(uniq))
    state = _kept_state(view)
    order = np.argsort(-sizes, kind="stable")[:MAX_CLUSTERS]
    stats = [_stat("clusters", f"{len(uniq):,}"), _stat("median size", fmt(float(np.median(sizes)))),
             _stat("smallest / largest", f"{int(sizes.min()):,} / {int(sizes.max()):,}")]
    if state is not None:
        kept = np.bincount(inv, weights=(state[ok] == 1).astype(float), minlength=len(uniq))
        rate = np.divide(kept, sizes, out=np.zeros(len(sizes)), where=sizes > 0)
        stats += [_stat("keep rate: min", f"{rate.min():.0%}"), _stat("keep rate: max", f"{rate.max():.0%}"),
                  _stat("clusters with none kept", f"{int((kept == 0).sum()):,}")]
        title = f"Cluster sizes and keep rate ({len(uniq):,} clusters)"
        svg = charts.cluster_bars(sizes[order], kept[order], [str(u) for u in uniq[order]], title=title)
    else:
        svg = charts.cluster_bars(sizes[order], None, [str(u) for u in uniq[order]],
                                  title=f"Cluster sizes ({len(uniq):,} clusters)")
    caption = f"labels from {where}; unlabelled rows: {int((~ok).sum()):,}"
    if len(uniq) > MAX_CLUSTERS:
        caption += f"; the {MAX_CLUSTERS} largest drawn"
    lead = ("Bars: examples per cluster (kept in blue). "
            "Black marks: the share of the cluster kept (right axis)."
            if state is not None else "Examples per cluster.")
    return _section("clusters", f'<div class="stats">{"".join(stats)}</div>{_figure(svg, caption)}', lead)


def _embeddings(view: RunView) -> str:
    if view.embeddings is None:
        return _section("embeddings", _empty("No embeddings.parquet in this run "
                                             "(`proxysel score DATA --signals embedding --out RUN`)."))
    emb, have = view.embeddings
    rows = np.flatnonzero(have)
    if len(rows) < 3 or emb.shape[1] < 2:
        return _section("embeddings", _empty("Too few embeddings (or dimensions) for a 2-D map."))
    fit = _sample(rows, PCA_FIT_ROWS, SEED + 1)
    x = emb[fit].astype(np.float64)
    mu = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mu, full_matrices=False)
    var = s ** 2 / max(float((s ** 2).sum()), 1e-300)
    plot = _sample(rows)
    xy = (emb[plot].astype(np.float64) - mu) @ vt[:2].T
    state = _kept_state(view)
    svg, caption = charts.scatter(xy[:, 0], xy[:, 1], None if state is None else state[plot],
                                  title="Embeddings, first two principal components",
                                  xlabel=f"PC1 ({var[0]:.0%} of variance)",
                                  ylabel=f"PC2 ({var[1]:.0%} of variance)",
                                  width=720, height=440)
    model = f" of {view.embedding_model}" if view.embedding_model else ""
    caption = _sampled(len(plot), len(rows), f"PCA{model} embeddings ({emb.shape[1]}-d) fitted on "
                                             f"{len(fit):,} rows; {caption}")
    return _section("embeddings", f'<div style="max-width:760px">{_figure(svg, caption)}</div>',
                    "Where the kept examples sit in embedding space: a selection that covers the pool "
                    "spreads its blue points over every region.")


def _group_rates(groups: np.ndarray, state: np.ndarray,
                 order: str = "size") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(labels, kept, total) per group label; the smallest beyond MAX_GROUPS pooled as "other"."""
    ok = (np.array([g is not None for g in groups.tolist()]) if groups.dtype == object
          else np.ones(len(groups), bool))
    ok &= state >= 0
    g = groups[ok].astype(str)
    uniq, inv = np.unique(g, return_inverse=True)
    total = np.bincount(inv, minlength=len(uniq))
    kept = np.bincount(inv, weights=(state[ok] == 1).astype(float), minlength=len(uniq)).astype(np.int64)
    idx = np.argsort(-total, kind="stable") if order == "size" else np.arange(len(uniq))
    labels = [str(uniq[i]) for i in idx]
    total, kept = total[idx], kept[idx]
    if len(labels) > MAX_GROUPS:
        rest = slice(MAX_GROUPS - 1, None)
        n_rest = len(labels) - (MAX_GROUPS - 1)
        labels = labels[:MAX_GROUPS - 1] + [f"other ({n_rest:,} groups)"]
        total = np.append(total[:MAX_GROUPS - 1], total[rest].sum())
        kept = np.append(kept[:MAX_GROUPS - 1], kept[rest].sum())
    return labels, kept, total


def _length_buckets(n_tokens: np.ndarray) -> np.ndarray:
    """Bucket label per row ("<64", "64–127", ..., "≥4096"), None where n_tokens is missing.
    Labels are prefixed with a sort key so that np.unique orders them by length."""
    edges = list(LENGTH_EDGES)
    out = np.empty(len(n_tokens), dtype=object)
    ok = np.isfinite(n_tokens)
    b = np.searchsorted(edges, n_tokens[ok], side="right") - 1
    names = []
    for i, lo in enumerate(edges):
        if i == 0:
            names.append(f"< {edges[1]}")
        elif i + 1 < len(edges):
            names.append(f"{lo}–{edges[i + 1] - 1}")
        else:
            names.append(f"≥ {lo}")
    out[ok] = [f"{k:02d}|{names[k]} tokens" for k in b.tolist()]
    return out


def _breakdown(view: RunView) -> str:
    sel = view.selection
    if sel is None:
        return _section("breakdown", _empty("No selection yet: keep rates need one."))
    overall = sel.n_kept / max(1, int((sel.state >= 0).sum()))
    figs = []
    pool = view.pool
    if view.source is not None:
        labels, kept, total = _group_rates(view.source, sel.state)
        figs.append(_figure(charts.rate_bars(labels, kept, total, title="Keep rate by source",
                                             overall=overall)))
    else:
        why = ("the input records have no `source` field" if pool is not None
               else "no source column in scores.parquet and the input records were not read")
        figs.append(_empty(f"Keep rate by source: {why}."))
    if pool is not None:
        labels, kept, total = _group_rates(pool.format, sel.state)
        figs.append(_figure(charts.rate_bars(labels, kept, total, title="Keep rate by record format",
                                             overall=overall)))
    else:
        figs.append(_empty("Keep rate by format: the input records were not read."))
    if "n_tokens" in view.signals:
        labels, kept, total = _group_rates(_length_buckets(view.signals["n_tokens"]), sel.state, order="name")
        labels = [lab.split("|", 1)[1] for lab in labels]
        figs.append(_figure(charts.rate_bars(labels, kept, total, title="Keep rate by length (n_tokens)",
                                             overall=overall)))
    else:
        figs.append(_empty("Keep rate by length: scores.parquet has no n_tokens column."))
    return _section("breakdown", f'<div class="grid2">{"".join(figs)}</div>',
                    "Share of each group that was kept; the dashed line is the keep rate of the whole pool. "
                    "A selector with a bias towards a source or a length shows it here.")


def _ordered_rows(sel: SelectionView, kept: bool) -> np.ndarray:
    """Row indices from most to least preferred (kept=True) or least to most (kept=False).

    Ranks are per group (cluster, or the whole pool): rows are compared by their relative rank
    (rank / ranked rows in their group), then by rank, then pool order. Unranked rows come last.
    """
    mask = (sel.state == 1) if kept else (sel.state == 0)
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return rows
    ranked = sel.rank >= 0
    groups, inv = np.unique(sel.cluster[ranked], return_inverse=True)
    size = np.bincount(inv, minlength=len(groups))
    rel = np.full(len(sel.rank), np.inf)
    rel[ranked] = sel.rank[ranked] / size[inv]
    r, rk = rel[rows], sel.rank[rows].astype(float)
    has = np.isfinite(r)
    if kept:
        order = np.lexsort((rows, np.where(has, rk, np.inf), r))
    else:
        order = np.lexsort((rows, -np.where(has, rk, -np.inf), ~has, -np.where(has, r, 0)))
    return rows[order]


def _examples(view: RunView, key: str, kept: bool) -> str:
    sel = view.selection
    if sel is None:
        return _section(key, _empty("No selection yet."))
    rows = _ordered_rows(sel, kept)
    if rows.size == 0:
        return _section(key, _empty("No kept examples." if kept else "No dropped examples."))
    rows = rows[:TABLE_ROWS]
    ranked = sel.rank >= 0
    groups, inv = np.unique(sel.cluster[ranked], return_inverse=True)
    size_of = dict(zip(groups.tolist(), np.bincount(inv, minlength=len(groups)).tolist()))
    sig = sel.signal if sel.signal in view.signals else None
    header = ["id", "cluster", "rank"] + ([sig] if sig else []) + ["reason", "text"]
    body = []
    for i in rows.tolist():
        ex_id = view.ids[i].as_py()
        rank = int(sel.rank[i])
        cl = int(sel.cluster[i])
        rank_txt = f"{rank:,} of {size_of.get(cl, 0):,}" if rank >= 0 else "–"
        text = preview(view.pool.examples.get(ex_id)) if view.pool is not None else ""
        reason = sel.reason(i)
        pill = "kept" if sel.state[i] == 1 else ("excluded" if reason.startswith("excluded") else "dropped")
        cells = [f'<span class="mono">{e(ex_id)}</span>', e(cl if cl >= 0 else "–"), e(rank_txt)]
        if sig:
            cells.append(e(fmt(float(view.signals[sig][i]))))
        cells += [f'<div class="reason"><span class="pill {pill}">{pill}</span> {e(reason)}</div>',
                  f'<div class="text">{e(text) if text else "<i>text not available</i>"}</div>']
        body.append(cells)
    num = (2, 3) if sig else (2,)
    n = int(((sel.state == 1) if kept else (sel.state == 0)).sum())
    lead = (f"The first {len(rows)} of {n:,} kept examples, most preferred first "
            "(by rank within their group)."
            if kept else f"The first {len(rows)} of {n:,} dropped examples, furthest from the cut first; "
                         f"rows excluded before ranking (NaN signal, truncated) come after the ranked ones.")
    return _section(key, _table(header, body, num=num), lead)


# ----------------------------------------------------------------------------------------- page


def render(view: RunView) -> str:
    """The whole report page for ``view`` as one HTML string (no scripts, no external resources)."""
    sel = view.selection
    sub = f'run <code>{e(view.path.name or view.path)}</code> · {view.n:,} examples'
    if sel is not None:
        sub += (f' · selection <code>{e(sel.name)}</code> ({e(sel.meta.get("method", "method unknown"))}, '
                f'{sel.n_kept:,} kept)')
    key = (f'<div class="key"><span><i class="sw" style="background:{KEPT}"></i>kept</span>'
           f'<span><i class="sw" style="background:{DROPPED}"></i>dropped</span></div>'
           if sel is not None else "")
    nav = "".join(f'<a href="#{k}">{e(t)}</a>' for k, t in SECTIONS)
    sections = [_summary(view), _selection(view), _stages(view), _skipped(view), _signals(view), _lp(view),
                _trajectories(view), _clusters(view), _embeddings(view), _breakdown(view),
                _examples(view, "most-kept", True), _examples(view, "least-kept", False)]
    version = ((view.manifest.get("packages") or {}).get("proxysel")
               or view.manifest.get("proxysel_version") or "")
    title = f"proxysel report: {view.path.name}" + (f" / {sel.name}" if sel is not None else "")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" "
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f'<header><div class="wrap"><h1>proxysel report</h1><div class="sub">{sub}</div>{key}</div></header>'
        f'<nav><div class="wrap">{nav}</div></nav>'
        f'<main><div class="wrap">{"".join(sections)}</div></main>'
        f'<footer><div class="wrap">Written by proxysel {e(version)} from {e(view.path)}. '
        "A static page: no scripts, nothing loaded from the network.</div></footer>"
        "</body></html>\n"
    )
