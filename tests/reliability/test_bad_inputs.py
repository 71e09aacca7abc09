"""Bad inputs through the command line: every row of issue 8's table.

Each case ends in one of two ways, never a traceback and never a silent drop:
- exit code 2 with one line ``proxysel: error: FILE:LINE field 'F': what is wrong. what to do``, or
- a correct result (a BOM, CRLF, text parts, ... are valid input), and under ``--on-bad-record skip``
  every skipped record listed in the manifest with its file, line, field and reason.

Where the reader's unit tests already cover a case in depth (tests/unit/test_data_bad_input.py,
test_data_readers.py), this file checks the same case end to end through ``proxysel``.

Coverage of the table (row -> test here; unit test):

==============================  ============================================================
files and encoding              invalid JSON line, non-UTF-8 bytes, lone surrogates:
                                RECORD_CASES + test_skip_lists_every_bad_record;
                                truncated .gz, empty file, folder with no data files, missing
                                path: test_bad_files; BOM and CRLF: test_bom_and_crlf_are_read;
                                Parquet schemas: test_parquet_files_with_differing_schemas
empty content                   missing/null/empty/whitespace response and text: RECORD_CASES;
                                empty after templating: test_response_dropped_by_the_template
conversation shape              no assistant turn, only a system message, unknown role, tool
                                turns: RECORD_CASES; two user turns in a row:
                                test_two_user_turns_in_a_row; content as a list of parts:
                                test_content_parts_and_many_turns (+ image part in RECORD_CASES)
length and size                 prompt over --max-length: test_prompt_longer_than_max_length;
                                strings over 1 MB: test_string_over_one_megabyte (+ the
                                --max-record-bytes guard); more than 100 turns:
                                test_content_parts_and_many_turns
ids                             duplicate: test_bad_files; missing / integer:
                                test_missing_and_integer_ids; non-string, '/', '..':
                                RECORD_CASES and test_ids_never_escape_the_run_folder
model and tokenizer             test_no_pad_token, test_no_chat_template
scores                          test_nan_and_inf_scores_are_flagged_never_selected,
                                test_all_nan_is_a_clear_error, test_nan_from_the_model_is_flagged,
                                test_ties_at_the_budget_cut_are_broken_stably
budgets                         test_budgets
workers and shards              test_more_workers_than_rows, test_empty_shards
==============================  ============================================================
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BAD_RECORDS, write_jsonl, write_qa_pool
from harness import cli, count
from proxysel.cli.main import main

GOOD = b'{"id": "g1", "instruction": "What is two plus two?", "output": "Two plus two is four."}'
GOOD2 = b'{"id": "g2", "instruction": "Name a colour.", "output": "Blue is a colour."}'

# (case, the bad record (line 2 of its file), field named, words of the message): the reader's table
# (tests/conftest.py, read in depth by tests/unit/test_data_bad_input.py), and bytes that are not UTF-8
RECORD_CASES = [("non-UTF-8 bytes", b'{"id": "b", "instruction": "caf\xe9", "output": "x"}', None,
                 "invalid UTF-8 (byte 0xe9)"), *BAD_RECORDS]


def run_main(args: list, capsys) -> tuple[int, str, str]:
    code = main(["-q", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def expect_exit_2(args: list, capsys, *words: str) -> str:
    """``proxysel ARGS`` exits with code 2 and one clear error line holding ``words``; returns stderr."""
    code, _, err = run_main(args, capsys)
    count("bad_input_cases")
    assert code == 2, err
    assert "Traceback" not in err and "proxysel: error: " in err
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"
    return err


def score_args(data: Path, model: Path, out: Path, *extra) -> list:
    return ["score", data, "--model", model, "--out", out, "--max-length", "64", *extra]


@pytest.mark.parametrize("case,record,field,words", RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_bad_record_exit_code_2_names_file_line_field_and_fix(tmp_path, capsys, case, record, field, words):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(GOOD + b"\n" + record + b"\n" + GOOD2 + b"\n")
    err = expect_exit_2(score_args(path, "unused-model", tmp_path / "run"), capsys, f"{path}:2", words,
                        "--on-bad-record skip")
    if field is not None:
        assert f"field '{field}'" in err
    assert not (tmp_path / "run").exists()  # stopped before any work


def test_skip_lists_every_bad_record(tmp_path, tiny_model_dir, capsys):
    """Under --on-bad-record skip, every bad record of the table is listed in the manifest."""
    path = tmp_path / "pool.jsonl"
    path.write_bytes(GOOD + b"\n" + b"\n".join(r for _, r, _, _ in RECORD_CASES) + b"\n" + GOOD2 + b"\n")
    run = tmp_path / "run"
    code, _, err = run_main(score_args(path, tiny_model_dir, run, "--on-bad-record", "skip"), capsys)
    assert code == 0, err
    count("bad_input_cases", len(RECORD_CASES))
    skipped = json.loads((run / "manifest.json").read_text())["skipped_records"]
    assert [s["line"] for s in skipped] == list(range(2, 2 + len(RECORD_CASES)))
    for s, (case, _, field, words) in zip(skipped, RECORD_CASES):
        assert s["file"] == str(path) and s["field"] == field and words in s["reason"], case
    assert pq.read_table(run / "scores.parquet").column("id").to_pylist() == ["g1", "g2"]
    assert not (tmp_path / "escape").exists()


def test_bad_files(tmp_path, capsys):
    run = tmp_path / "run"
    # truncated .gz (in both modes: nothing after the cut can be read)
    gz = tmp_path / "t.jsonl.gz"
    data = gzip.compress(b"".join(b'{"id": "r%d", "text": "%s"}\n' % (i, b"y" * 50) for i in range(200)))
    gz.write_bytes(data[: len(data) // 2])
    for mode in ("error", "skip"):
        expect_exit_2(["score", gz, "--out", run, "--on-bad-record", mode], capsys, str(gz),
                      "truncated or corrupt")
    # an empty file; a folder with no data files; a path that does not exist
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    expect_exit_2(["score", empty, "--out", run], capsys, str(empty), "file is empty")
    expect_exit_2(["score", empty, "--out", run, "--on-bad-record", "skip"], capsys, "no usable records")
    folder = tmp_path / "nodata"
    folder.mkdir()
    (folder / "README.txt").write_text("not data")
    expect_exit_2(["score", folder, "--out", run], capsys, str(folder), "no data files")
    expect_exit_2(["score", tmp_path / "missing.jsonl", "--out", run], capsys, "no such file or directory")
    # duplicate ids, in both modes (both places named; --dedupe is the fix)
    dup = tmp_path / "dup.jsonl"
    dup.write_bytes(GOOD + b"\n" + GOOD2 + b"\n" + GOOD + b"\n")
    for mode in ("error", "skip"):
        expect_exit_2(["score", dup, "--out", run, "--on-bad-record", mode], capsys,
                      f"'g1' at {dup}:1 and {dup}:3", "--dedupe")
    assert not run.exists()


def test_real_binary_prints_one_line_and_no_traceback(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(GOOD + b"\n" + b'{"id": "x", "instruction": "q", "output": null}' + b"\n")
    proc = cli(["score", path, "--out", tmp_path / "run"])
    count("bad_input_cases")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"proxysel: error: {path}:2 (byte {len(GOOD) + 1}) field 'output': output is null. Fix the record, "
        "or pass on_bad_record='skip' (--on-bad-record skip) to skip bad records (listed in the manifest)"]


def test_bom_and_crlf_are_read(tmp_path, tiny_model_dir, capsys):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\r\n" + GOOD2 + b"\r\n")
    run = tmp_path / "run"
    code, _, err = run_main(score_args(path, tiny_model_dir, run), capsys)
    count("bad_input_cases", 2)
    assert code == 0, err
    assert pq.read_table(run / "scores.parquet").column("id").to_pylist() == ["g1", "g2"]
    code, _, err = run_main(["select", run, "--method", "top", "--signal", "loss", "--budget", "2",
                             "--name", "all"], capsys)
    assert code == 0, err
    assert (run / "selections" / "all" / "selected.jsonl").read_bytes() == GOOD + b"\n" + GOOD2 + b"\n"


def test_parquet_files_with_differing_schemas(tmp_path, tiny_model_dir, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": "a1", "instruction": "q one", "output": "answer one"}]),
                   folder / "a.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": "b1", "text": "plain text record", "source": "web", "n": 3}]),
                   folder / "b.parquet")
    run = tmp_path / "run"
    code, _, err = run_main(score_args(folder, tiny_model_dir, run), capsys)
    count("bad_input_cases")
    assert code == 0, err
    assert pq.read_table(run / "scores.parquet").column("id").to_pylist() == ["a1", "b1"]
    # the same column with another type: the row is a bad record naming the file, row and field
    pq.write_table(pa.Table.from_pylist([{"id": "c1", "instruction": "q", "output": 7}]),
                   folder / "c.parquet")
    err = expect_exit_2(score_args(folder, tiny_model_dir, tmp_path / "run2"), capsys,
                        f"{folder / 'c.parquet'}:1 field 'output'", "must be a string, got an integer")


def test_missing_and_integer_ids(tmp_path, tiny_model_dir, capsys):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b'{"instruction": "q", "output": "a"}\n{"id": 7, "instruction": "q2", "output": "b"}\n')
    run = tmp_path / "run"
    code, _, err = run_main(score_args(path, tiny_model_dir, run), capsys)
    count("bad_input_cases", 2)
    assert code == 0, err
    ids = pq.read_table(run / "scores.parquet").column("id").to_pylist()
    assert len(ids[0]) == 16 and int(ids[0], 16) >= 0 and ids[1] == "7"


def test_ids_never_escape_the_run_folder(tmp_path, tiny_model_dir, capsys):
    """Ids with '/' or '..' are refused (or skipped and listed); selection names cannot escape either."""
    work = tmp_path / "work"
    work.mkdir()
    path = work / "pool.jsonl"
    path.write_bytes(GOOD + b"\n" + b'{"id": "../../../escape", "instruction": "q", "output": "a"}\n'
                     + b'{"id": "sub/dir", "instruction": "q", "output": "a"}\n' + GOOD2 + b"\n")
    run = work / "run"
    before = sorted(p for p in tmp_path.rglob("*"))
    expect_exit_2(score_args(path, tiny_model_dir, run), capsys,
                  f"{path}:2 (byte {len(GOOD) + 1}) field 'id'")
    code, _, err = run_main(score_args(path, tiny_model_dir, run, "--on-bad-record", "skip"), capsys)
    assert code == 0, err
    skipped = json.loads((run / "manifest.json").read_text())["skipped_records"]
    assert [(s["line"], s["field"]) for s in skipped] == [(2, "id"), (3, "id")]
    for name in ("../../outside", "..", "a/b", ".hidden"):
        expect_exit_2(["select", run, "--method", "top", "--signal", "loss", "--budget", "1", "--name", name],
                      capsys, "invalid selection name")
    created = sorted(set(tmp_path.rglob("*")) - set(before))
    assert all(p == run or run in p.parents for p in created), [p for p in created if run not in p.parents]


def test_response_dropped_by_the_template(tmp_path, tiny_model_dir, capsys):
    """A chat template that drops the response leaves nothing to score: exit 2 with the fix."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['role'] != 'assistant' %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}")
    path = tmp_path / "pool.jsonl"
    path.write_bytes(GOOD + b"\n")
    expect_exit_2(score_args(path, model, tmp_path / "run"), capsys, f"{path}:1 field 'output'",
                  "does not render assistant turn 1 verbatim", "--template alpaca")
    code, _, err = run_main(score_args(path, model, tmp_path / "run2", "--template", "alpaca"), capsys)
    assert code == 0, err


def test_two_user_turns_in_a_row(tmp_path, tiny_model_dir, capsys):
    """Accepted as written (a ChatML template renders them); a template that demands alternating
    roles refuses it with exit 2, naming the record and the fix."""
    path = tmp_path / "pool.jsonl"
    write_jsonl(path, [{"id": "uu", "messages": [{"role": "user", "content": "Name a colour."},
                                                  {"role": "user", "content": "Any colour."},
                                                  {"role": "assistant", "content": "Blue."}]}])
    code, _, err = run_main(score_args(path, tiny_model_dir, tmp_path / "run"), capsys)
    assert code == 0, err
    assert pq.read_table(tmp_path / "run" / "scores.parquet").column("n_response_tokens").to_pylist()[0] > 0
    strict = tmp_path / "strict"
    shutil.copytree(tiny_model_dir, strict)
    (strict / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    expect_exit_2(score_args(path, strict, tmp_path / "run2"), capsys, f"{path}:1", "'uu'",
                  "roles must alternate", "--template alpaca")
    count("bad_input_cases")


def test_content_parts_and_many_turns(tmp_path, tiny_model_dir, capsys):
    turns = []
    for i in range(60):  # 120 turns
        turns += [{"role": "user", "content": f"Question {i}?"},
                  {"role": "assistant", "content": f"Answer {i}."}]
    path = tmp_path / "pool.jsonl"
    write_jsonl(path, [
        {"id": "parts", "messages": [{"role": "user", "content": [{"type": "text", "text": "Name a "},
                                                                  {"type": "text", "text": "colour."}]},
                                     {"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}]},
        {"id": "long", "messages": turns}])
    run = tmp_path / "run"
    code, _, err = run_main(score_args(path, tiny_model_dir, run), capsys)
    count("bad_input_cases", 2)
    assert code == 0, err
    t = pq.read_table(run / "scores.parquet").to_pydict()
    assert t["n_tokens"][1] == 64 and t["n_response_tokens"][1] > 0 and not t["truncated"][1]
    assert np.isfinite(t["loss"]).all()


def test_prompt_longer_than_max_length(tmp_path, tiny_model_dir, capsys):
    """No scored token left: flagged ``truncated`` (NaN loss), listed, never selected."""
    path = write_qa_pool(tmp_path / "pool.jsonl", 8, seed=2, long_every=4)
    run = tmp_path / "run"
    code, _, err = run_main(score_args(path, tiny_model_dir, run), capsys)
    count("bad_input_cases")
    assert code == 0, err
    t = pq.read_table(run / "scores.parquet").to_pydict()
    assert t["truncated"] == [False, False, False, True] * 2
    assert all(np.isnan(v) for v, tr in zip(t["loss"], t["truncated"]) if tr)
    assert json.loads((run / "manifest.json").read_text())["stages"]["loss"]["truncated"] == 2
    code, _, err = run_main(["select", run, "--method", "top", "--signal", "loss", "--budget", "6",
                             "--name", "s"], capsys)
    assert code == 0, err
    sel = pq.read_table(run / "selections" / "s" / "selection.parquet").to_pydict()
    assert [r for r, tr in zip(sel["reason"], t["truncated"]) if tr] == ["excluded: truncated"] * 2
    assert not any(s for s, tr in zip(sel["selected"], t["truncated"]) if tr)
    meta = json.loads((run / "selections" / "s" / "meta.json").read_text())
    assert meta["excluded"] == {"excluded: truncated": 2}
    # one more than the candidates left after leaving them out
    expect_exit_2(["select", run, "--method", "top", "--signal", "loss", "--budget", "7"], capsys,
                  "budget 7 is larger than the 6 candidates", "lower the budget")


def test_string_over_one_megabyte(tmp_path, tiny_model_dir, capsys):
    big = "word " * 250_000  # 1.25 MB
    path = tmp_path / "pool.jsonl"
    write_jsonl(path, [{"id": "big", "instruction": "Repeat.", "output": big},
                       {"id": "small", "instruction": "q", "output": "a"}])
    run = tmp_path / "run"
    code, _, err = run_main(score_args(path, tiny_model_dir, run), capsys)
    count("bad_input_cases")
    assert code == 0, err
    t = pq.read_table(run / "scores.parquet").to_pydict()
    assert t["n_tokens"][0] == 64 and np.isfinite(t["loss"][0])  # cut on the right, still scored
    # --max-record-bytes guards against such a record: exit 2, or skipped and listed
    expect_exit_2(score_args(path, tiny_model_dir, tmp_path / "r2", "--max-record-bytes", "1000000"), capsys,
                  f"{path}:1", "over max_record_bytes (1000000)")
    code, _, err = run_main(score_args(path, tiny_model_dir, tmp_path / "r3", "--max-record-bytes", "1000000",
                                       "--on-bad-record", "skip"), capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "r3" / "manifest.json").read_text())
    assert m["data"]["read_options"]["max_record_bytes"] == 1_000_000
    assert ([s["line"] for s in m["skipped_records"]] == [1]
            and "max_record_bytes" in m["skipped_records"][0]["reason"])
    # select reads the pool again with the same options, so it finds the same records
    code, _, err = run_main(["select", tmp_path / "r3", "--method", "random", "--budget", "1"], capsys)
    assert code == 0, err
    expect_exit_2(score_args(path, tiny_model_dir, tmp_path / "r4", "--max-record-bytes", "0"), capsys,
                  "--max-record-bytes must be >= 1")


def test_no_pad_token(tmp_path, tiny_model_dir, capsys):
    """A tokenizer without a pad token pads with eos (padding is masked): the same losses."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(model)).pad_token is None
    path = write_qa_pool(tmp_path / "pool.jsonl", 6, seed=4)
    for name, m in (("with", tiny_model_dir), ("without", model)):
        code, _, err = run_main(score_args(path, m, tmp_path / name), capsys)
        assert code == 0, err
    count("bad_input_cases")
    a = pq.read_table(tmp_path / "with" / "scores.parquet").column("loss").to_pylist()
    b = pq.read_table(tmp_path / "without" / "scores.parquet").column("loss").to_pylist()
    np.testing.assert_allclose(b, a, rtol=1e-6)


def test_no_chat_template(tmp_path, tiny_base_model_dir, capsys):
    path = write_qa_pool(tmp_path / "pool.jsonl", 4, seed=4)
    # the Alpaca template
    code, _, err = run_main(score_args(path, tiny_base_model_dir, tmp_path / "run"), capsys)
    assert code == 0, err
    expect_exit_2(score_args(path, tiny_base_model_dir, tmp_path / "run2", "--template", "chat"), capsys,
                  "has no chat template", "use alpaca")
    count("bad_input_cases")


# ------------------------------------------------------------------------------- scores, budgets


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_model_dir) -> Path:
    d = tmp_path_factory.mktemp("scored")
    path = write_qa_pool(d / "pool.jsonl", 10, seed=9)
    assert main(["-q", *map(str, score_args(path, tiny_model_dir, d / "run"))]) == 0
    return d / "run"


def with_loss(run: Path, dest: Path, values: list[float]) -> Path:
    """A copy of ``run`` whose stored ``loss`` column is ``values`` (merged through the store, which
    records the new file's sha256: written behind its back, the file would read as damaged and be
    rebuilt from the stages)."""
    from proxysel.store import Run

    shutil.copytree(run, dest)
    with Run.open(dest, create=False) as r:
        ids = r.read_scores().column("id")
        r.merge_scores(pa.table({"id": ids, "loss": pa.array(values, pa.float64())}))
    return dest


def top(run: Path, budget, name: str, *extra) -> list:
    return ["select", run, "--method", "top", "--signal", "loss", "--budget", budget, "--name", name, *extra]


def test_nan_and_inf_scores_are_flagged_never_selected(tmp_path, scored, capsys, caplog):
    values = [np.nan, 0.5, np.inf, 0.1, -np.inf, 0.3, 0.2, 0.9, 0.8, 0.7]
    run = with_loss(scored, tmp_path / "run", values)
    for order in ("low", "high"):
        code, _, err = run_main(top(run, 7, order, "--order", order), capsys)
        assert code == 0, err
        sel = pq.read_table(run / "selections" / order / "selection.parquet").to_pydict()
        assert [sel["reason"][i] for i in (0, 2, 4)] == ["excluded: signal is NaN", "excluded: signal is inf",
                                                           "excluded: signal is inf"]
        assert not any(sel["selected"][i] for i in (0, 2, 4)) and sum(sel["selected"]) == 7
        meta = json.loads((run / "selections" / order / "meta.json").read_text())
        assert meta["excluded"] == {"excluded: signal is NaN": 1, "excluded: signal is inf": 2}
    assert "3 of 10 examples could not be selected" not in caplog.text  # counted per reason:
    assert "2 of 10 examples could not be selected (excluded: signal is inf)" in caplog.text
    count("bad_input_cases", 2)
    expect_exit_2(top(run, 8, "x"), capsys, "budget 8 is larger than the 7 candidates")


def test_all_nan_is_a_clear_error(tmp_path, scored, capsys):
    run = with_loss(scored, tmp_path / "run", [np.nan] * 10)
    expect_exit_2(top(run, 3, "x"), capsys,
                  "no candidates: all 10 rows are excluded (NaN/inf signal or truncated)")
    expect_exit_2(["select", run, "--method", "lp_app", "--budget", "3", "--global"], capsys,
                  "lp_app needs train-proxy: proxysel train-proxy ")


def test_nan_from_the_model_is_flagged(tmp_path, tiny_model_dir, capsys, caplog):
    """A model that computes NaN (broken weights): flagged at scoring, a clear error at selection."""
    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = load_file(str(model / "model.safetensors"))
    name = next(k for k in weights if "norm" in k)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    path = write_qa_pool(tmp_path / "pool.jsonl", 5, seed=1)
    run = tmp_path / "run"
    code, _, err = run_main(score_args(path, model, run), capsys)
    assert code == 0, err
    stage = json.loads((run / "manifest.json").read_text())["stages"]["loss"]
    assert stage["non_finite"] == {"loss": 5, "ppl": 5}
    assert "loss: NaN or inf values" in caplog.text
    expect_exit_2(top(run, 2, "x"), capsys, "no candidates")


def test_ties_at_the_budget_cut_are_broken_stably(tmp_path, scored, capsys):
    """Equal scores keep pool order, whatever the order asked for and the seed; reruns agree."""
    run = with_loss(scored, tmp_path / "run", [1.0, 1.0, 0.5, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    ids = pq.read_table(run / "scores.parquet").column("id").to_pylist()
    picks = {}
    for name, extra in (("low", ["--order", "low"]), ("low-s7", ["--order", "low", "--seed", "7"]),
                        ("high", ["--order", "high"])):
        code, _, err = run_main(top(run, 4, name, *extra), capsys)
        assert code == 0, err
        sel = pq.read_table(run / "selections" / name / "selection.parquet").to_pydict()
        picks[name] = [i for i, s in zip(sel["id"], sel["selected"]) if s]
    assert picks["low"] == picks["low-s7"] == [ids[0], ids[1], ids[2], ids[3]]  # 0.5, then the first 1.0s
    assert picks["high"] == [ids[0], ids[1], ids[3], ids[5]]  # 2.0, then the first 1.0s
    count("bad_input_cases")


@pytest.mark.parametrize("budget,words", [
    ("0", "--budget must be a fraction in (0, 1] or a count >= 1, got '0'"),
    ("0.0", "got '0.0'"), ("-3", "got '-3'"), ("1.5", "got '1.5'"), ("abc", "got 'abc'"),
    ("11", "budget 11 is larger than the candidate pool (10 examples)"),
    ("1000", "larger than the candidate pool"),
])
def test_budgets(scored, capsys, budget, words):
    expect_exit_2(top(scored, budget, "b"), capsys, words)


# ------------------------------------------------------------------------------- workers, shards


def test_more_workers_than_rows():
    """More ranks than examples: the extra ranks get no batch, and every loss comes back once."""
    from proxysel.dynamics.distributed import collect_by_id, rank_batches
    from proxysel.models.render import Encoded

    enc = [Encoded([1, 2, 3], [-100, 2, 3], 3, 2, False), Encoded([1, 2], [-100, 2], 2, 1, False),
           Encoded([1], [-100], 1, 0, True)]
    world = 5
    per_rank = [rank_batches(enc, 4, r, world, "cpu") for r in range(world)]
    assert sorted(i for b in per_rank for batch in b for i in batch) == [0, 1]
    assert sum(1 for b in per_rank if not b) >= 3
    ids = ["a", "b", "c"]
    gathered = [([ids[i] for batch in b for i in batch], [float(i) for batch in b for i in batch])
                for b in per_rank]
    out = collect_by_id(ids, [e.truncated for e in enc], gathered)
    assert out[:2] == [0.0, 1.0] and np.isnan(out[2])
    count("bad_input_cases")


def test_empty_shards(tmp_path, tiny_model_dir, capsys):
    """A shard whose examples all lose their response to truncation, a shard size above the pool,
    and a zero-row shard in the store all work; a shard size of 0 is a usage error."""
    path = write_qa_pool(tmp_path / "pool.jsonl", 6, seed=3, long_every=1)  # every prompt too long
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[4]["instruction"], records[5]["instruction"] = "short", "short too"
    write_jsonl(path, records)
    run = tmp_path / "run"
    code, _, err = run_main(score_args(path, tiny_model_dir, run, "--shard-size", "2"), capsys)
    assert code == 0, err
    t = pq.read_table(run / "stages" / "loss" / "shard-00000.parquet").to_pydict()
    assert t["truncated"] == [True, True] and all(np.isnan(t["loss"]))
    code, _, err = run_main(score_args(path, tiny_model_dir, tmp_path / "one", "--shard-size", "1000"),
                            capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "one" / "manifest.json").read_text())["stages"]["loss"]["shards"] == 1
    expect_exit_2(score_args(path, tiny_model_dir, tmp_path / "zero", "--shard-size", "0"), capsys,
                  "--shard-size must be >= 1")

    from proxysel.store import Run

    with Run.open(tmp_path / "store") as r:
        stage = r.stage("empty", {"k": 1})
        stage.write_shard(0, pa.table({"id": pa.array([], pa.string()), "loss": pa.array([], pa.float64())}))
        stage.write_shard(1, pa.table({"id": ["a"], "loss": [1.0]}))
        assert stage.read_shards(2).column("id").to_pylist() == ["a"]
    count("bad_input_cases", 3)
