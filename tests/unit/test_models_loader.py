"""A cached model is not hashed again on every start: ``loader.stamped_sha256``."""

from __future__ import annotations

import hashlib
import os

import pytest

import proxysel.models.loader as loader


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROXYSEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loader, "_SHA_MEMO", {})
    return tmp_path / "cache"


def _count_hashing(monkeypatch) -> list:
    calls = []
    real = loader.file_sha256

    def counting(path, *a, **k):
        calls.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(loader, "file_sha256", counting)
    return calls


def test_the_hash_is_kept_and_reused_across_processes(tmp_path, cache, monkeypatch):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"weights" * 1000)
    calls = _count_hashing(monkeypatch)
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    assert loader.stamped_sha256(f) == want
    assert loader.stamped_sha256(f) == want  # this process: from memory
    monkeypatch.setattr(loader, "_SHA_MEMO", {})  # a new process: from the stamp on disk
    assert loader.stamped_sha256(f) == want
    assert len(calls) == 1
    assert len(list((cache / "hashes").glob("model-*.json"))) == 1


def test_a_changed_file_is_hashed_again(tmp_path, cache, monkeypatch):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"a" * 100)
    calls = _count_hashing(monkeypatch)
    loader.stamped_sha256(f)
    monkeypatch.setattr(loader, "_SHA_MEMO", {})
    f.write_bytes(b"b" * 101)  # another size
    assert loader.stamped_sha256(f) == hashlib.sha256(b"b" * 101).hexdigest()
    monkeypatch.setattr(loader, "_SHA_MEMO", {})
    f.write_bytes(b"c" * 101)  # same size, another mtime
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert loader.stamped_sha256(f) == hashlib.sha256(b"c" * 101).hexdigest()
    assert len(calls) == 3


def test_a_cached_gguf_resolves_to_the_same_revision_without_hashing(tmp_path, cache, monkeypatch):
    """The revision recorded in stage fingerprints stays the sha256 prefix of the file."""
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"gguf" * 500)
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    done = cache / "models" / f"tiny-{sha[:16]}"
    done.mkdir(parents=True)
    (done / "COMPLETE").write_text("{}\n")
    calls = _count_hashing(monkeypatch)
    assert loader.resolve_model_path(str(f)) == (done, sha[:16])
    monkeypatch.setattr(loader, "_SHA_MEMO", {})
    assert loader.resolve_model_path(str(f)) == (done, sha[:16])
    assert len(calls) == 1


def test_an_unwritable_cache_still_gives_the_hash(tmp_path, cache, monkeypatch):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"x" * 10)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the cache folder should be")
    assert loader.stamped_sha256(f) == hashlib.sha256(b"x" * 10).hexdigest()
