"""The win rate against full data (benchmarking.winrate): aggregation by hand, the verdict parser,
the local judge against a plain forward pass, and the endpoint judge against a local fake server."""

from __future__ import annotations

import logging
import socket

import pytest

from conftest import fake_judge_server
from proxysel.benchmarking.winrate import PROMPT, EndpointJudge, parse_verdict, question_of, summarize
from proxysel.data.example import Example, Message
from proxysel.errors import UsageError


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, n, tokens=0, **_):
        self.n += n


def _example(*turns):
    msgs = tuple(Message(role, text) for role, text in turns)
    return Example(id="x", messages=msgs, format="messages", file="f", line=1, index=0, raw=None, record={})


def test_summary_by_hand():
    # order 1: the cell's answer is A; order 2: the full model's answer is A
    cell_first = ["A", "B", "C", "A", ""]
    full_first = ["B", "A", "C", "A", "B"]
    s = summarize(cell_first, full_first)
    # per example: (1+1)/2, (0+0)/2, (.5+.5)/2, (1+0)/2 (the judge always said A), (.5+1)/2
    assert s["win_rate"] == pytest.approx((1 + 0 + 0.5 + 0.5 + 0.75) / 5)
    assert (s["wins"], s["ties"], s["losses"]) == (2, 2, 1)
    assert s["winning_score"] == pytest.approx((2 - 1) / 5 + 1)
    assert s["invalid"] == 1 and s["picked_a"] == pytest.approx(4 / 10)


def test_a_judge_that_always_says_a_gives_exactly_even():
    """Both orders cancel a pure position bias: the reason every pair is judged twice."""
    s = summarize(["A"] * 7, ["A"] * 7)
    assert s["win_rate"] == 0.5 and s["ties"] == 7 and s["picked_a"] == 1.0


def test_summary_needs_matching_orders():
    with pytest.raises(ValueError):
        summarize(["A"], [])


@pytest.mark.parametrize("reply, verdict", [
    ("[[A]]", "A"), ("After comparing, my verdict is [[B]].", "B"), ("[[ C ]]", "C"), ("B", "B"),
    (" a. ", "A"), ("**C**", "C"), ("Both are fine.", ""), ("", ""), ("[[D]]", ""), ("AB", ""),
])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_question_is_the_turns_before_the_last_answer():
    assert question_of(_example(("user", "What is 2+2?"), ("assistant", "4"))) == "What is 2+2?"
    q = question_of(_example(("user", "Hi"), ("assistant", "Hello"), ("user", "Add 2 and 2"),
                             ("assistant", "4")))
    assert q == "User: Hi\nAssistant: Hello\nUser: Add 2 and 2"


# ------------------------------------------------------------------------------------ local judge


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_base_model_dir"])
def test_local_judge_equals_a_plain_forward_pass(fixture, request):
    torch = pytest.importorskip("torch")
    from proxysel.benchmarking.winrate import LocalJudge

    path = request.getfixturevalue(fixture)
    judge = LocalJudge(str(path), max_length=4096, batch_tokens=2048)
    tok, model = judge.lm.tokenizer, judge.lm.model
    triples = [("What is two plus two?", "four", "Two plus two is four."),
               ("Sort 3 1 2.", "1 2 3", "3 2 1"),
               ("Name a colour.", "Blue is a colour, and so is red.", "red")]
    bar = _Bar()
    out = judge.judge(triples, bar)
    assert bar.n == len(triples)
    for (q, a, b), o in zip(triples, out):
        prompt = PROMPT.format(question=q, answer_a=a, answer_b=b)
        if fixture == "tiny_model_dir":  # chat template, then "[[" so the next token is the letter
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True) + "[["
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(prompt + "\n\nVerdict: [[", add_special_tokens=True)["input_ids"]
        assert judge.prompt_ids(q, a, b) == ids
        with torch.no_grad():
            p = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
        ref = {v: float(p[tok.encode(v, add_special_tokens=False)[0]]) for v in "ABC"}
        norm = sum(ref.values())
        assert o["p"] == pytest.approx({v: ref[v] / norm for v in "ABC"}, abs=1e-5)
        assert o["verdict"] == max("ABC", key=ref.get)


def test_local_judge_cuts_long_parts_to_fit(tiny_model_dir):
    pytest.importorskip("torch")
    from proxysel.benchmarking.winrate import LocalJudge

    judge = LocalJudge(str(tiny_model_dir), max_length=1200, batch_tokens=4096)
    long = "The quick brown fox jumps over the lazy dog. " * 200
    ids = judge.prompt_ids("Name a colour.", long, "Blue.")
    assert len(ids) <= 1200 + 3  # a cut part may re-tokenize a token or so longer
    text = judge.lm.tokenizer.decode(ids)
    assert "Name a colour." in text and "Blue." in text and text.count("lazy dog") < 200


# ------------------------------------------------------------------------------------ endpoint judge


def test_endpoint_judge_sends_the_key_and_judges_in_order(monkeypatch, caplog):
    monkeypatch.setenv("PROXYSEL_TEST_JUDGE_KEY", "sk-test-secret-123")
    caplog.set_level(logging.DEBUG)
    triples = [(f"question {i}", "x" * (i % 3), "x") for i in range(12)] + [("UNDECIDED?", "a", "bb")]
    with fake_judge_server() as (url, server):
        judge = EndpointJudge(url + "/", "judge-model", api_key_env="PROXYSEL_TEST_JUDGE_KEY", timeout=10,
                              concurrency=4)
        bar = _Bar()
        out = judge.judge(triples, bar)
    assert bar.n == len(triples) == len(server.requests)
    expected = ["A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"
                for _, a, b in triples[:-1]] + [""]
    assert [o["verdict"] for o in out] == expected
    for path, headers, body in server.requests:
        assert path == "/v1/chat/completions"
        assert headers["Authorization"] == "Bearer sk-test-secret-123"
        assert body["model"] == "judge-model" and body["temperature"] == 0
        assert server.parts(body["messages"][0]["content"])[0] in {q for q, _, _ in triples}
    assert "sk-test-secret" not in caplog.text


def test_endpoint_judge_sends_no_key_when_the_variable_is_unset(monkeypatch):
    monkeypatch.delenv("PROXYSEL_TEST_JUDGE_KEY", raising=False)
    with fake_judge_server() as (url, server):
        judge = EndpointJudge(url, "m", api_key_env="PROXYSEL_TEST_JUDGE_KEY", timeout=10, concurrency=1)
        assert judge.ask(PROMPT.format(question="q", answer_a="aa", answer_b="b")) == "[[A]]"
    assert "Authorization" not in server.requests[0][1]


def test_endpoint_judge_retries_rate_limits_and_server_errors(monkeypatch):
    monkeypatch.setenv("PROXYSEL_TEST_JUDGE_KEY", "k")
    with fake_judge_server(fail_first=(429, 503)) as (url, server):
        judge = EndpointJudge(url, "m", api_key_env="PROXYSEL_TEST_JUDGE_KEY", timeout=10, concurrency=1,
                              backoff=0)
        assert judge.ask(PROMPT.format(question="q", answer_a="a", answer_b="bb")) == "[[B]]"
    assert len(server.requests) == 3


def test_endpoint_errors_never_show_the_key(monkeypatch):
    monkeypatch.setenv("PROXYSEL_TEST_JUDGE_KEY", "sk-test-secret-123")
    with fake_judge_server(fail_first=(401,)) as (url, server):
        judge = EndpointJudge(url, "m", api_key_env="PROXYSEL_TEST_JUDGE_KEY", timeout=10, concurrency=1)
        with pytest.raises(UsageError) as e:
            judge.ask("q")
    assert "HTTP 401" in str(e.value) and "Bearer ***" in str(e.value)  # the server echoed it; masked
    assert "sk-test-secret" not in str(e.value)
    assert len(server.requests) == 1  # a 401 is not retried


def test_endpoint_unreachable_is_a_usage_error_after_retries(monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = EndpointJudge(f"http://127.0.0.1:{port}/v1", "m", api_key_env="PROXYSEL_TEST_JUDGE_KEY",
                          timeout=5, concurrency=1, retries=2, backoff=0)
    with pytest.raises(UsageError, match=r"after 3 tries"):
        judge.ask("q")


# ------------------------------------------------------------------------------------ the answers


def test_answers_end_at_the_alpaca_templates_own_headers(tiny_model_dir, tiny_base_model_dir):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from proxysel.benchmarking.target import cut_at
    from proxysel.models.render import Renderer

    alpaca = Renderer(AutoTokenizer.from_pretrained(tiny_base_model_dir)).stop_strings
    # chat: the end-of-turn token
    assert Renderer(AutoTokenizer.from_pretrained(tiny_model_dir)).stop_strings == ()
    ran_on = "Hi, how are you?\n\n### Response:I'm good.\n\n### Instruction:\nMore"
    assert cut_at(ran_on, alpaca) == "Hi, how are you?"
    # a markdown heading stays
    assert cut_at("Plan\n\n### Step 1\nDo it", alpaca) == "Plan\n\n### Step 1\nDo it"
    assert cut_at("a\n\n### Input:\nb\n\n### Response:c", alpaca) == "a"
    assert cut_at("no header", alpaca) == "no header" and cut_at("x", ()) == "x"
