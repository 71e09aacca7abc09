"""Bad records and bad inputs: each kind has its own message naming file, line and field;
on_bad_record="skip" lists it and goes on; nothing is dropped without a word."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BAD_RECORDS as SHARED_BAD_RECORDS
from proxysel.data import read_pool
from proxysel.data.readers import iter_json_array
from proxysel.errors import BadInputError, UsageError

GOOD = b'{"id": "g1", "text": "fine"}'
GOOD2 = b'{"id": "g2", "text": "also fine"}'

# (case, record line, field named, words the message must hold): the shared table, and a column rename
BAD_RECORDS = [*SHARED_BAD_RECORDS,
               ("missing field renamed", b'{"question": "Q"}', "output", "missing field 'output'")]


def write_lines(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def check_message(exc: BadInputError, path: Path, line: int | None, field: str | None, words: str) -> None:
    text = str(exc)
    assert str(path) in text
    if line is not None:
        assert f"{path}:{line}" in text
    if field is not None:
        assert f"field '{field}'" in text
    assert words in text
    assert exc.exit_code == 2


@pytest.mark.parametrize("case,record,field,words", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_bad_record_error_and_skip(tmp_path, case, record, field, words):
    path = write_lines(tmp_path / "pool.jsonl", GOOD, record, GOOD2)
    columns = {"instruction": "question"} if case == "missing field renamed" else None
    with pytest.raises(BadInputError) as info:
        read_pool(path, columns=columns)
    check_message(info.value, path, 2, field, words)
    assert (info.value.line, info.value.field) == (2, field)
    pool = read_pool(path, on_bad_record="skip", columns=columns)
    assert [e.id for e in pool.examples] == ["g1", "g2"]
    assert len(pool.skipped) == 1
    skip = pool.skipped[0]
    assert (skip.file, skip.line, skip.field, skip.offset) == (str(path), 2, field, len(GOOD) + 1)
    assert words in skip.reason


def test_renamed_field_is_named_by_its_own_key(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", b'{"question": "Q", "answer": ""}')
    with pytest.raises(BadInputError) as info:
        read_pool(path, columns={"instruction": "question", "output": "answer"})
    assert info.value.field == "answer" and "answer is empty" in str(info.value)


def test_every_bad_record_kind_has_its_own_message():
    assert len({words for _, _, _, words in BAD_RECORDS}) >= 30


def test_invalid_utf8_reports_byte_offset(tmp_path):
    bad = b'{"id": "b", "text": "caf\xe9"}'
    path = write_lines(tmp_path / "latin1.jsonl", GOOD, bad)
    with pytest.raises(BadInputError) as info:
        read_pool(path)
    where = len(GOOD) + 1 + bad.index(b"\xe9")
    assert info.value.offset == where
    check_message(info.value, path, 2, None, f"invalid UTF-8 (byte 0xe9) at byte {where}")
    pool = read_pool(path, on_bad_record="skip")
    assert [s.offset for s in pool.skipped] == [where]


@pytest.mark.parametrize("bad,at,words,kept", [
    # a bad byte inside a string does not end the file
    (b'{"id": "b", "text": "x\xff\xfey"}', b"\xff", ["invalid UTF-8 (byte 0xff)"], ["g1", "g2"]),
    # records after it cannot be located: listed, not read
    (b'{"id": "b", "text": "x",, "y": 1}', b'{"id": "b"', ["malformed JSON", "rest of the file is left out"],
     ["g1"]),
], ids=["invalid utf8", "malformed in the middle"])
def test_bad_element_in_json_array(tmp_path, bad, at, words, kept):
    path = tmp_path / "a.json"
    data = b"[\n" + GOOD + b",\n" + bad + b",\n" + GOOD2 + b"\n]\n"
    path.write_bytes(data)
    with pytest.raises(BadInputError) as info:
        read_pool(path)
    assert info.value.offset == data.index(at) and info.value.line == 3
    for w in words:
        assert w in str(info.value)
    pool = read_pool(path, on_bad_record="skip")
    assert [e.id for e in pool.examples] == kept
    assert [s.offset for s in pool.skipped] == [data.index(at)]


def test_bad_record_in_json_array_names_its_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[\n' + GOOD + b',\n{\n "id": "b",\n "output": "x"\n},\n' + GOOD2 + b'\n]')
    with pytest.raises(BadInputError) as info:
        read_pool(path)
    check_message(info.value, path, 3, None, "cannot tell the layout")
    assert info.value.offset == 2 + len(GOOD) + 2


def cut_json(tmp_path: Path) -> tuple[Path, int, int]:
    """Three complete records, then a fourth cut off inside a string (like the ShareGPT file)."""
    elements = [json.dumps({"id": f"r{i}", "conversations": [{"from": "human", "value": "q"},
                                                             {"from": "gpt", "value": "answer"}]},
                           indent=2).encode() for i in range(4)]
    whole = b"[\n" + b",\n".join(elements) + b"\n]\n"
    start = whole.index(elements[3])
    cut = whole.rindex(b'"answer') + 4  # inside the last value string
    path = tmp_path / "cut.json"
    path.write_bytes(whole[:cut])
    return path, start, whole.rindex(b'"answer')


def test_cut_json_array_error(tmp_path):
    path, start, string_at = cut_json(tmp_path)
    with pytest.raises(BadInputError) as info:
        read_pool(path)
    exc = info.value
    assert exc.offset == start
    assert exc.line == path.read_bytes()[:start].count(b"\n") + 1
    text = str(exc)
    assert f"(byte {start})" in text and "cut off" in text
    assert f"inside a string that starts at byte {string_at}" in text
    last_line = path.read_bytes()[:path.read_bytes().index(b'{\n  "id": "r2"')].count(b"\n") + 1
    assert f"last complete record is id 'r2' at line {last_line}" in text
    assert "on_bad_record='skip'" in text


def test_cut_json_array_skip(tmp_path):
    path, start, _ = cut_json(tmp_path)
    pool = read_pool(path, on_bad_record="skip")
    assert [e.id for e in pool.examples] == ["r0", "r1", "r2"]
    assert len(pool.skipped) == 1
    assert pool.skipped[0].offset == start and "cut off" in pool.skipped[0].reason


def test_json_array_cut_between_records(tmp_path):
    path = tmp_path / "open.json"
    path.write_bytes(b"[\n" + GOOD + b",\n" + GOOD2 + b"\n")
    with pytest.raises(BadInputError, match=r"not closed.*missing '\]'.*id 'g2'"):
        read_pool(path)
    pool = read_pool(path, on_bad_record="skip")
    assert [e.id for e in pool.examples] == ["g1", "g2"] and len(pool.skipped) == 1


@pytest.mark.parametrize("content,words", [
    (b'{"id": "a", "text": "x"}\n', "must hold one JSON array"),
    (b'[' + GOOD + b'] [1]', "unexpected data after the end of the JSON array"),
    (b'[' + GOOD + b' ' + GOOD2 + b']', "expected ',' or ']'"),
    (b'[' + GOOD + b',]', "malformed JSON"),
])
def test_json_array_structure(tmp_path, content, words):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    with pytest.raises(BadInputError) as info:
        read_pool(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_json_object_per_line_hint(tmp_path):
    path = tmp_path / "lines.json"
    path.write_bytes(GOOD + b"\n")
    with pytest.raises(BadInputError, match=r"name the file \.jsonl"):
        read_pool(path)


def test_record_over_max_bytes(tmp_path):
    big = b'{"id": "big", "text": "' + b"x" * 200 + b'"}'
    path = write_lines(tmp_path / "p.jsonl", GOOD, big, GOOD2)
    with pytest.raises(BadInputError) as info:
        read_pool(path, max_record_bytes=100)
    check_message(info.value, path, 2, None, "over max_record_bytes (100)")
    pool = read_pool(path, max_record_bytes=100, on_bad_record="skip")
    assert [e.id for e in pool.examples] == ["g1", "g2"] and pool.skipped[0].line == 2
    jpath = tmp_path / "p.json"
    jpath.write_bytes(b"[" + GOOD + b"," + big + b"," + GOOD2 + b"]")
    pool = read_pool(jpath, max_record_bytes=100, on_bad_record="skip")
    assert [e.id for e in pool.examples] == ["g1", "g2"] and "over max_record_bytes" in pool.skipped[0].reason
    ppath = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "a", "text": "x"}, {"id": "big", "text": "x" * 200}]), ppath)
    with pytest.raises(BadInputError) as info:
        read_pool(ppath, max_record_bytes=100)
    check_message(info.value, ppath, 2, None, "row is over max_record_bytes")


def test_json_element_too_big_to_buffer_ends_the_file(tmp_path):
    """An element that does not close within max_record_bytes cannot be located past: fatal."""
    path = tmp_path / "big.json"
    big = b'{"id": "big", "text": "' + b"x" * 5000 + b'"}'
    path.write_bytes(b"[" + GOOD + b",\n" + big + b",\n" + GOOD2 + b"]")
    items = list(iter_json_array(path, max_record_bytes=1000, chunk_bytes=64))
    assert [it.value["id"] for it in items[:1]] == ["g1"] and len(items) == 2
    assert items[1].fatal and items[1].offset == len(GOOD) + 3 and items[1].line == 2
    assert "larger than max_record_bytes (1000)" in items[1].problem.message


def test_huge_line_is_not_held_in_memory(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", b'{"text": "' + b"x" * 50_000 + b'"}', GOOD)
    pool = read_pool(path, max_record_bytes=1000, on_bad_record="skip")
    assert [e.id for e in pool.examples] == ["g1"]
    assert pool.skipped[0].line == 1 and "the line has 50012 bytes" in pool.skipped[0].reason


def test_duplicate_ids_name_both_locations(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", b'{"id": "a", "text": "1"}', b'{"id": "b", "text": "2"}',
                       b'{"id": "a", "text": "3"}', b'{"id": "b", "text": "4"}')
    for mode in ("error", "skip"):
        with pytest.raises(BadInputError) as info:
            read_pool(path, on_bad_record=mode)
        text = str(info.value)
        assert f"'a' at {path}:1 and {path}:3" in text and f"'b' at {path}:2 and {path}:4" in text
        assert "2 duplicate id(s)" in text and "dedupe=True" in text


def test_identical_records_without_ids_are_duplicates(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", b'{"text": "same"}', b'{"text": "same"}')
    with pytest.raises(BadInputError, match="duplicate id"):
        read_pool(path)
    assert len(read_pool(path, dedupe=True).examples) == 1


@pytest.mark.parametrize("suffix,content", [
    (".jsonl", b""), (".jsonl", b"\n\n  \n"), (".jsonl", b"\xef\xbb\xbf"),
    (".json", b""), (".json", b" \n"), (".json", b"\xef\xbb\xbf"), (".json", b"[]"), (".json", b" [ ] \n"),
])
def test_empty_file(tmp_path, content, suffix):
    path = tmp_path / f"e{suffix}"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="file is empty") as info:
        read_pool(path)
    assert str(path) in str(info.value)
    with pytest.raises(BadInputError, match="no usable records"):
        read_pool(path, on_bad_record="skip")


def test_empty_file_in_a_directory_is_listed_with_skip(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b"")
    write_lines(tmp_path / "b.jsonl", GOOD)
    with pytest.raises(BadInputError, match="a.jsonl: file is empty"):
        read_pool(tmp_path)
    pool = read_pool(tmp_path, on_bad_record="skip")
    assert [e.id for e in pool.examples] == ["g1"]
    assert ([(Path(s.file).name, s.reason) for s in pool.skipped]
            == [("a.jsonl", "file is empty (no records)")])


def test_all_records_bad_with_skip(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", b'{"text": ""}', b"[]")
    with pytest.raises(BadInputError, match=r"no usable records \(2 skipped; the first: .*p.jsonl:1"):
        read_pool(path, on_bad_record="skip")


def test_directories_and_paths(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        read_pool(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(BadInputError, match="no data files") as info:
        read_pool(empty)
    assert str(empty) in str(info.value)
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(BadInputError, match="unsupported file type"):
        read_pool(tmp_path / "data.csv")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_lines(mixed / "a.jsonl", GOOD)
    (mixed / "b.csv").write_text("a,b\n")
    with pytest.raises(BadInputError, match="unsupported data file") as info:
        read_pool(mixed)
    assert "b.csv" in str(info.value)


def test_dataset_dict_asks_for_a_split(tmp_path):
    (tmp_path / "dataset_dict.json").write_text('{"splits": ["test", "train"]}')
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "state.json").write_text('{"_data_files": []}')
        (tmp_path / split / "dataset_info.json").write_text("{}")
    with pytest.raises(BadInputError, match="DatasetDict with splits test, train"):
        read_pool(tmp_path)


def test_truncated_gz(tmp_path):
    data = gzip.compress(b"".join(b'{"id": "r%d", "text": "%s"}\n' % (i, b"y" * 50) for i in range(200)))
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    for mode in ("error", "skip"):
        with pytest.raises(BadInputError, match="truncated or corrupt") as info:
            read_pool(path, on_bad_record=mode)
        assert str(path) in str(info.value)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(BadInputError, match="truncated or corrupt"):
        read_pool(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(BadInputError, match="cannot read this parquet file") as info:
        read_pool(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kwargs,words", [
    ({"format": "chatml"}, "format must be one of"),
    ({"on_bad_record": "drop"}, "on_bad_record must be one of"),
    ({"limit": 0}, "limit must be a count >= 1"),
    ({"columns": {"answer": "output"}}, "unknown logical field 'answer'"),
    ({"max_record_bytes": 0}, "max_record_bytes must be a positive integer"),
])
def test_usage_errors(tmp_path, kwargs, words):
    path = write_lines(tmp_path / "p.jsonl", GOOD)
    with pytest.raises(UsageError, match=words):
        read_pool(path, **kwargs)
