"""Backend selection and its errors, and the local backend's contract (no Ray needed)."""

from __future__ import annotations

import sys

import pytest

from proxysel.backends import make_backend
from proxysel.backends.local import LocalBackend
from proxysel.errors import UsageError


def test_missing_ray_tells_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.delitem(sys.modules, "ray.data", raising=False)
    with pytest.raises(UsageError, match=r"pip install 'proxysel\[ray\]'"):
        make_backend("ray")


def test_missing_ray_is_exit_code_2_before_any_work(monkeypatch, tmp_path, capsys):
    from proxysel.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["-q", "score", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "r"),
                 "--backend", "ray"]) == 2
    assert "proxysel[ray]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kwargs,message", [
    ({"address": "auto"}, "--ray-address only apply with --backend ray"),
    ({"actors": 2}, "--ray-actors only apply"),
    ({"name": "dask"}, "--backend must be one of"),
    ({"name": "ray", "actors": 0}, "--ray-actors must be an integer >= 1"),
])
def test_bad_backend_options(kwargs, message):
    with pytest.raises(UsageError, match=message):
        make_backend(**{"name": "local", **kwargs})


def test_local_backend_sets_up_once_and_keeps_order():
    calls = []

    def setup(device):
        calls.append(device)
        return "state"

    def compute(state, examples, bar):
        bar.update(len(examples), 10 * sum(examples))  # "tokens": the count comes back per shard
        return (state, list(examples))

    seen = []

    class Bar:
        def update(self, n, tokens=0, **postfix):
            seen.append((n, tokens))

    out = list(LocalBackend().map_shards([(3, [1, 2]), (0, [5])], setup=setup, compute=compute, device=None,
                                         bar=Bar()))
    assert calls == [None]
    assert [(k, t, tokens) for k, t, _, tokens in out] == [(3, ("state", [1, 2]), 30),
                                                            (0, ("state", [5]), 50)]
    assert seen == [(2, 30), (1, 50)]  # and the driver's bar still sees every update
    assert list(LocalBackend().map_shards([], setup=setup, compute=compute, device=None, bar=None)) == []
    assert calls == [None]  # nothing to do: no model is loaded
