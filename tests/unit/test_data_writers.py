"""write_selected: the selection comes back in the input's own layout, records byte-for-byte."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proxysel.data import read_pool, write_selected

# Lines as a person or another tool may have written them: odd spacing, escapes, raw UTF-8,
# key order, numbers that json.dumps would print differently. None of it may change.
LINES = [
    b'{"id": "a", "instruction": "Say hi", "input": "", "output": "hi"}',
    b'{"output":"caf\xc3\xa9 \\u00e9 \\ud83e\\uddc0","instruction":"Translate","id":"b"}',
    b'  {"id": "c",   "text": "tabs\\tand\\nnewlines", "n": 1.0e2, "big": 12345678901234567890}  ',
    b'{"id": 4, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}',
    b'{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "\xe2\x9c\x93"}]}',
]
PICK = [0, 2, 3, 4]


def selected(pool, picks=PICK):
    return [pool.examples[i] for i in picks]


def test_jsonl_round_trip_is_byte_for_byte(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(line + b"\n" for line in LINES))
    pool = read_pool(src)
    out = write_selected(selected(pool), tmp_path / "out")
    assert out == tmp_path / "out" / "selected.jsonl"
    assert out.read_bytes().split(b"\n")[:-1] == [LINES[i] for i in PICK]
    assert out.read_bytes() == b"".join(LINES[i] + b"\n" for i in PICK)
    again = read_pool(out)
    assert [e.id for e in again.examples] == [e.id for e in selected(pool)]
    everything = write_selected(pool.examples, tmp_path / "all")
    assert everything.read_bytes() == src.read_bytes()
    assert read_pool(everything).fingerprint == pool.fingerprint


def test_crlf_and_bom_input_gives_lf_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"".join(line + b"\r\n" for line in LINES))
    out = write_selected(read_pool(src).examples, tmp_path / "out")
    assert out.read_bytes() == b"".join(line + b"\n" for line in LINES)


def test_jsonl_gz_is_deterministic(tmp_path):
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(b"".join(line + b"\n" for line in LINES), mtime=1234567))
    pool = read_pool(src)
    first = write_selected(selected(pool), tmp_path / "one").read_bytes()
    out = write_selected(selected(pool), tmp_path / "two")
    assert out.name == "selected.jsonl.gz"
    assert out.read_bytes() == first
    assert first[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime
    assert gzip.decompress(first) == b"".join(LINES[i] + b"\n" for i in PICK)


def test_json_array_round_trip(tmp_path):
    elements = [json.dumps({"id": f"r{i}", "text": f"t{i} é", "nested": {"k": [i, None]}}, indent=4,
                           ensure_ascii=False).encode() for i in range(4)]
    src = tmp_path / "in.json"
    src.write_bytes(b"[" + b" ,\n\n".join(elements) + b"]")
    pool = read_pool(src)
    out = write_selected(selected(pool, [1, 3]), tmp_path / "out")
    assert out.name == "selected.json"
    assert out.read_bytes() == b"[\n" + elements[1] + b",\n" + elements[3] + b"\n]\n"
    assert json.loads(out.read_bytes()) == [json.loads(elements[1]), json.loads(elements[3])]
    assert [e.raw for e in read_pool(out).examples] == [elements[1], elements[3]]


def test_parquet_rows_taken_with_same_schema(tmp_path):
    table = pa.table({"id": pa.array(["a", "b", "c", "d"]), "text": ["w", "x", "y", "z"],
                      "score": pa.array([1, 2, 3, 4], type=pa.int16())})
    table = table.replace_schema_metadata({b"origin": b"test"})
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    pool = read_pool(src)
    out = write_selected(selected(pool, [0, 2, 3]), tmp_path / "out")
    assert out.name == "selected.parquet"
    got = pq.read_table(out)
    assert got.schema.equals(table.schema, check_metadata=True)
    assert got.to_pylist() == table.take([0, 2, 3]).to_pylist()


def test_datasets_folder_gives_parquet(tmp_path):
    src = tmp_path / "hf"
    src.mkdir()
    names = []
    for i, rows in enumerate(([{"id": "a", "text": "1"}, {"id": "b", "text": "2"}],
                              [{"id": "c", "text": "3"}])):
        table = pa.Table.from_pylist(rows)
        name = f"data-{i:05d}-of-00002.arrow"
        with pa.OSFile(str(src / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        names.append(name)
    (src / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names]}))
    (src / "dataset_info.json").write_text("{}")
    pool = read_pool(src)
    out = write_selected(selected(pool, [1, 2]), tmp_path / "out")
    assert out.name == "selected.parquet"
    assert pq.read_table(out).to_pylist() == [{"id": "b", "text": "2"}, {"id": "c", "text": "3"}]


def test_parquet_files_with_different_schemas(tmp_path):
    src = tmp_path / "dir"
    src.mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": "a", "text": "1"}]), src / "a.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": "b", "text": "2", "lang": "en"}]), src / "b.parquet")
    out = write_selected(read_pool(src).examples, tmp_path / "out")
    assert pq.read_table(out).to_pylist() == [{"id": "a", "text": "1", "lang": None},
                                              {"id": "b", "text": "2", "lang": "en"}]


def test_mixed_inputs_give_jsonl(tmp_path):
    src = tmp_path / "dir"
    src.mkdir()
    (src / "a.jsonl").write_bytes(LINES[0] + b"\n")
    pretty = json.dumps({"id": "j", "text": "multi\nline"}, indent=2).encode()
    (src / "b.json").write_bytes(b"[\n" + pretty + b"\n]")
    pq.write_table(pa.Table.from_pylist([{"id": "p", "text": "é"}]), src / "c.parquet")
    pool = read_pool(src)
    out = write_selected(pool.examples, tmp_path / "out")
    lines = out.read_bytes().split(b"\n")
    assert out.name == "selected.jsonl" and lines[-1] == b"" and len(lines) == 4
    assert lines[0] == LINES[0]
    assert lines[1] == pretty.replace(b"\n", b"")  # line breaks between tokens only
    assert json.loads(lines[1]) == {"id": "j", "text": "multi\nline"}
    assert lines[2] == '{"id":"p","text":"é"}'.encode()
    assert [e.id for e in read_pool(out).examples] == ["a", "j", "p"]


def test_atomic_and_overwrites(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(line + b"\n" for line in LINES))
    pool = read_pool(src)
    out_dir = tmp_path / "out"
    write_selected(pool.examples, out_dir)
    out = write_selected(selected(pool, [1]), out_dir, stem="top")
    again = write_selected(selected(pool, [2]), out_dir, stem="top")
    assert out == again == out_dir / "top.jsonl"
    assert again.read_bytes() == LINES[2] + b"\n"
    assert sorted(p.name for p in out_dir.iterdir()) == ["selected.jsonl", "top.jsonl"]  # no temp files


def test_empty_selection(tmp_path):
    out = write_selected([], tmp_path / "out")
    assert out.name == "selected.jsonl" and out.read_bytes() == b""


def test_example_not_from_a_data_file(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(LINES[0] + b"\n")
    ex = read_pool(src).examples[0]
    from dataclasses import replace
    with pytest.raises(ValueError, match="not a data file"):
        write_selected([replace(ex, file=str(Path(ex.file).with_suffix(".txt")))], tmp_path / "out")
