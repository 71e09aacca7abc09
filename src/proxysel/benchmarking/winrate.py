"""Pairwise win rate against the full-data model: the LP paper's comparison, with any judge.

For every trained cell (selector, budget, seed), the first ``winrate.n`` held-out prompts are
answered greedily by that cell's target and by the full-data target of the same seed (see
``runner.run_cell``). A judge is shown the question and the two answers and asked which is
better. Every pair is judged in both orders, because judges favour one position:

- order 1: the cell's answer is Assistant A and the full model's is B;
- order 2: the full model's answer is A and the cell's is B.

Each verdict scores the cell 1 (its answer preferred), 0.5 (tie, or a reply that names no
verdict) or 0 (the full model's preferred). An example's score is the mean of its two orders,
and

    win_rate = mean over examples of that score      (0.5: as good as the full pool)

The counts follow Li et al. 2023 (IFD, "From Quantity to Quality"), who judge both orders too:
an example is a *win* when the cell wins one order and does not lose the other, a *loss* the
other way round, else a *tie*; their winning score is ``(wins - losses) / n + 1`` (0 to 2,
1 = even). The official LP code (dheeraj7596/Small2Large) ships no evaluation script, so the
paper's exact aggregation cannot be checked; both figures are written.

Judges:
- local (``winrate.judge``, default the bundled SmolLM2-135M-Instruct): the prompt below, then
  ``[[`` so that the next token is the verdict. The verdict is the most probable of the tokens
  ``A``, ``B`` and ``C`` (full-vocabulary softmax, as Ask-LLM scores "yes"). Deterministic.
  A 135M judge is weak: use it to try the pipeline, not to settle a question;
- endpoint (``winrate.endpoint`` + ``winrate.model``): ``POST {endpoint}/chat/completions`` of an
  OpenAI-compatible server, temperature 0. The reply is read for ``[[A]]``, ``[[B]]`` or
  ``[[C]]`` (or a bare letter). The API key comes from the environment variable named by
  ``winrate.api_key_env`` when the requests are made; it is never written, logged or shown in an
  error (a server's error text is shown with the key masked).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Sequence

from proxysel.benchmarking.target import greedy_answers
from proxysel.data.example import Example
from proxysel.data.text import turns_text
from proxysel.engine import batched_with_backoff
from proxysel.errors import UsageError
from proxysel.models.loader import load_causal_lm, resolve_model_path
from proxysel.progress import Progress
from proxysel.signals.ask_llm import cut_to_tokens, judge_prompt_ids, next_token_probs
from proxysel.store.atomic import atomic_write_json
from proxysel.store.run import content_hash

log = logging.getLogger(__name__)

PROMPT = """Act as an impartial judge. Compare the two AI assistants' answers to the user's question \
below and decide which answer is more helpful, relevant, accurate and complete. The order of the \
answers and their length must not influence you.

[Question]
{question}

[Assistant A's answer]
{answer_a}
[End of Assistant A's answer]

[Assistant B's answer]
{answer_b}
[End of Assistant B's answer]

Give your verdict as exactly one of: [[A]] if Assistant A's answer is better, [[B]] if Assistant \
B's answer is better, [[C]] for a tie."""

#: what a local judge reads after the prompt, so that its next token is the verdict letter
VERDICT_PREFIX = "[["
VERDICTS = ("A", "B", "C")
_VERDICT_RE = re.compile(r"\[\[\s*([ABC])\s*\]\]")
RETRY_STATUS = (429, 500, 502, 503, 504)


def question_of(example: Example) -> str:
    """The user's side of a held-out example: every turn before its last answer (``Role: content``
    when there are several, the bare text of a single user turn)."""
    turns = list(example.messages)
    last = max((i for i, m in enumerate(turns) if m.role == "assistant"), default=len(turns))
    before = turns[:last]
    if len(before) == 1:
        return before[0].content
    return turns_text(before)


def parse_verdict(reply: str) -> str:
    """``A``, ``B`` or ``C`` from a judge's reply (``[[X]]`` anywhere, else the bare letter);
    ``""`` when it names none."""
    m = _VERDICT_RE.search(reply)
    if m:
        return m.group(1)
    bare = reply.strip().strip(".*[]() ").upper()
    return bare if bare in VERDICTS else ""


def cell_score(verdict: str, cell_is_a: bool) -> float:
    """The cell's score from one verdict: 1 if its answer was preferred, 0 if the other, else 0.5."""
    if verdict not in ("A", "B"):
        return 0.5
    return 1.0 if (verdict == "A") == cell_is_a else 0.0


def summarize(cell_first: Sequence[str], full_first: Sequence[str]) -> dict[str, Any]:
    """Win rate and counts from the verdicts of order 1 (cell = A) and order 2 (cell = B), one per
    example each. See the module docstring for the definitions."""
    if len(cell_first) != len(full_first) or not cell_first:
        raise ValueError("need one verdict per example in each order")
    wins = ties = losses = 0
    total = 0.0
    for v1, v2 in zip(cell_first, full_first):
        s1, s2 = cell_score(v1, True), cell_score(v2, False)
        total += (s1 + s2) / 2
        net = (s1 - 0.5) + (s2 - 0.5)
        wins += net > 0
        losses += net < 0
        ties += net == 0
    n = len(cell_first)
    both = list(cell_first) + list(full_first)
    return {"n": n, "win_rate": total / n, "wins": wins, "ties": ties, "losses": losses,
            "winning_score": (wins - losses) / n + 1,
            "invalid": sum(v not in VERDICTS for v in both),
            # the judge's position bias: how often it picked A, over both orders
            "picked_a": sum(v == "A" for v in both) / len(both)}


# ------------------------------------------------------------------------------------ the judges


class LocalJudge:
    """A causal LM asked for the verdict letter; see the module docstring."""

    def __init__(self, spec: str, *, max_length: int, batch_tokens: int, device: str | None = None) -> None:
        self.lm = load_causal_lm(spec, dtype="float32", device=device or "cpu")
        self.tok = self.lm.tokenizer
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.letters: dict[str, int] = {}
        for v in VERDICTS:
            ids = self.tok.encode(v, add_special_tokens=False)
            if len(ids) != 1:
                raise UsageError(f"judge {spec}: the verdict {v!r} is not a single token of its vocabulary")
            self.letters[v] = ids[0]
        # the prompt's own tokens, measured with empty parts: what is left is shared by the three parts
        self.part_budget = max((max_length - len(self._ids("", "", ""))) // 3, 1)

    def _ids(self, question: str, answer_a: str, answer_b: str) -> list[int]:
        return judge_prompt_ids(self.tok,
                                PROMPT.format(question=question, answer_a=answer_a, answer_b=answer_b),
                                reply_prefix=VERDICT_PREFIX, plain_suffix="\n\nVerdict: " + VERDICT_PREFIX)

    def prompt_ids(self, question: str, answer_a: str, answer_b: str) -> list[int]:
        """The judge's input ids; each of the three parts is cut to a third of what max_length leaves."""
        return self._ids(*(cut_to_tokens(self.tok, t, self.part_budget)
                           for t in (question, answer_a, answer_b)))

    def judge(self, triples: Sequence[tuple[str, str, str]], bar: Any) -> list[dict[str, Any]]:
        """One ``{"verdict", "p"}`` per (question, answer A, answer B); ``p``: the three letters'
        probabilities, renormalised over the three."""
        import torch


        all_ids = [self.prompt_ids(*t) for t in triples]
        out: list[dict[str, Any]] = [{} for _ in triples]

        def run_batch(idx: list[int]) -> None:
            probs = next_token_probs(self.lm.model, [all_ids[i] for i in idx], self.tok.pad_token_id).cpu()
            for row, i in enumerate(idx):
                p = {v: float(probs[row, t]) for v, t in self.letters.items()}
                norm = sum(p.values()) or 1.0
                out[i] = {"verdict": max(VERDICTS, key=lambda v: p[v]),
                          "p": {v: round(p[v] / norm, 6) for v in VERDICTS}}
            bar.update(len(idx), sum(len(all_ids[i]) for i in idx))

        with torch.inference_mode():
            batched_with_backoff([len(x) for x in all_ids], self.batch_tokens, run_batch, what="a judge")
        return out


class EndpointJudge:
    """An OpenAI-compatible chat completions endpoint; see the module docstring."""

    def __init__(self, endpoint: str, model: str, *, api_key_env: str, timeout: float, concurrency: int,
                 retries: int = 3, backoff: float = 1.0) -> None:
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def _masked(self, text: str, key: str | None) -> str:
        return text.replace(key, "***") if key else text

    def ask(self, prompt: str) -> str:
        """The judge's reply to one prompt (retrying 429, 5xx and network errors with backoff)."""
        key = self._key()
        body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": 32,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    data = json.loads(r.read().decode("utf-8"))
                return str(data["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as e:
                if e.code in RETRY_STATUS and not last:
                    time.sleep(self.backoff * 2 ** attempt)
                    continue
                detail = self._masked(e.read().decode("utf-8", "replace")[:300], key)
                hint = f"; is ${self.api_key_env} set?" if e.code in (401, 403) and not key else ""
                raise UsageError(f"judge endpoint {self.url}: HTTP {e.code} {e.reason}: "
                                 f"{detail}{hint}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if not last:
                    time.sleep(self.backoff * 2 ** attempt)
                    continue
                reason = getattr(e, "reason", e)
                raise UsageError(f"judge endpoint {self.url}: {self._masked(str(reason), key)} "
                                 f"(after {self.retries + 1} tries)") from None
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise UsageError(f"judge endpoint {self.url}: the reply is not an OpenAI chat completion "
                                 f"({type(e).__name__}: {self._masked(str(e), key)[:200]})") from None
        raise AssertionError("unreachable")

    def judge(self, triples: Sequence[tuple[str, str, str]], bar: Any) -> list[dict[str, Any]]:
        """One ``{"verdict", "reply"}`` per (question, answer A, answer B), in order."""
        prompts = [PROMPT.format(question=q, answer_a=a, answer_b=b) for q, a, b in triples]
        out: list[dict[str, Any]] = [{} for _ in prompts]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self.ask, p): i for i, p in enumerate(prompts)}
            for f in as_completed(futures):
                reply = f.result()
                out[futures[f]] = {"verdict": parse_verdict(reply), "reply": reply[:200]}
                bar.update(1)
        return out


def make_judge(wr: Any, device: str | None) -> LocalJudge | EndpointJudge:
    """The judge a ``WinRateConfig`` names."""
    if wr.endpoint:
        return EndpointJudge(wr.endpoint, wr.model, api_key_env=wr.api_key_env, timeout=wr.timeout,
                             concurrency=wr.concurrency)
    return LocalJudge(wr.judge, max_length=wr.max_length, batch_tokens=wr.batch_tokens, device=device)


def judge_identity(wr: Any) -> dict[str, Any]:
    """What a cached judgment depends on besides the texts (no key: it is not part of a verdict)."""
    if wr.endpoint:
        return {"endpoint": wr.endpoint.rstrip("/"), "model": wr.model}

    return {"judge": wr.judge, "revision": resolve_model_path(wr.judge)[1], "max_length": wr.max_length}


# ------------------------------------------------------------------------------------ the bench step


def answer_prompts(trained: Any, held_out: Sequence[Example], wr: Any, *, batch_size: int) -> dict[str, Any]:
    """What a trained target (``target.Trained``) stores in its cell for the win rate: its greedy
    answers to the first ``wr.n`` held-out prompts, with their ids, ``answers_key`` and the last
    training loss of the model that answered."""
    prompts = list(held_out[: wr.n])
    return {"key": answers_key(wr), "ids": [e.id for e in prompts],
            "train_loss_last": trained.train_loss_last,
            "texts": greedy_answers(trained.lm, trained.renderer, prompts, max_new_tokens=wr.max_new_tokens,
                                    batch_size=batch_size)}


def answers_key(wr: Any) -> dict[str, Any]:
    """What a cell's stored answers depend on (besides the cell's own fingerprint). ``cut``: how a
    generation is ended (target.greedy_answers), so answers made before that rule are made again."""
    return {"n": wr.n, "max_new_tokens": wr.max_new_tokens, "cut": "eos+template-headers"}


def run_winrate(cfg: Any, out: Path, rows: Sequence[dict[str, Any]], held_out: Any, *,
                say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Judge every trained cell against the full-data cell of its seed; {cell name: summary}.

    Each judgment is cached in ``OUT/winrate/<cell>.json`` with its fingerprint (judge, prompt,
    questions and both answer lists), so a rerun judges only what changed.
    """
    wr = cfg.winrate
    questions = [question_of(e) for e in held_out.examples[: wr.n]]
    ids = [e.id for e in held_out.examples[: wr.n]]
    full = {r["seed"]: r for r in rows if r["selector"] == "full"}
    identity = judge_identity(wr)
    judge = None
    results: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["budget"] is None:
            continue
        ref = full[r["seed"]]
        mine, theirs = r["answers"]["texts"], ref["answers"]["texts"]
        fingerprint = {"judge": identity, "prompt": content_hash(PROMPT), "ids": content_hash(ids),
                       "questions": content_hash(questions), "answers": content_hash(mine),
                       "reference": content_hash(theirs)}
        path = out / "winrate" / f"{r['cell']}.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("fingerprint") == fingerprint:
                results[r["cell"]] = old["summary"]
                continue
        if judge is None:
            say(f"winrate: loading the judge ({identity})")
            judge = make_judge(wr, cfg.device)
        triples = [(q, a, b) for q, a, b in zip(questions, mine, theirs)] + \
                  [(q, b, a) for q, a, b in zip(questions, mine, theirs)]
        with Progress(len(triples), f"winrate {r['cell']}", unit="pair") as bar:
            verdicts = judge.judge(triples, bar)
        n = len(questions)
        summary = summarize([v["verdict"] for v in verdicts[:n]], [v["verdict"] for v in verdicts[n:]])
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"cell": r["cell"], "against": ref["cell"], "fingerprint": fingerprint,
                                 "summary": summary,
                                 "judgments": [{"id": i, "cell_first": v1, "full_first": v2}
                                               for i, v1, v2 in zip(ids, verdicts[:n], verdicts[n:])]})
        say(f"winrate {r['cell']} vs {ref['cell']}: {summary['win_rate']:.1%} "
            f"({summary['wins']} wins, {summary['ties']} ties, {summary['losses']} losses of {n}; "
            f"judge picked A {summary['picked_a']:.0%} of the time)")
        results[r["cell"]] = summary
    return results
