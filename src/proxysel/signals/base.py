"""Signals: one registered class per signal, each saying what it writes and what it needs.

A signal is a per-example score a model gives the pool (``loss``, ``ifd``, ``ask_llm``,
``embedding``, ``density``, ... and the columns ``train-proxy`` records: ``lp``, ``lp_app``,
``ppl_epoch``, ``trajectory``). Its class declares, and everyone else asks the registry:

- ``columns``:      what it writes: ``scores.parquet`` columns, or with ``vectors`` the vector set
                    of its own name (``embedding`` -> ``embeddings.parquet``);
- ``command``:      the command that computes it (``score`` or ``train-proxy``), for ``--signals``
                    and for the hint a selector gives when one of its columns is missing;
- ``model_option``: the ``score`` option that names its model (``model``, ``judge``, ``embedder``);
- ``requires``:     signals whose output it reads (``density`` reads ``embedding``);
- ``needs``:        the parts of a record it needs (``prompt``, ``response``: IFD needs both; a ``text``
                    record has no prompt), the record layouts it applies to;
- ``needs_reference``: it scores the pool against a reference set (CoLoR, RDS+);
- ``reference_vectors``: given a reference set, it embeds it too (vector set ``<name>_reference``):
                    RDS+ always (it needs one), ``embedding`` when one is given (for
                    ``cluster_by: reference``);
- ``prepare_stages``: the run stages its ``prepare`` runs (CoLoR's ``color-conditional``), so that
  the bench's compute ledger charges them to the signal.
- ``derives``:      a pattern of columns it does not store but a selector may read, computed by its
                    ``derive`` from its first column when read (``ppl_epoch``: ``ppl_5``, ``lp_2``,
                    ``lp_app_3``).

A ``score`` signal computes shard by shard (``setup(device)`` once per worker, then
``compute(state, examples, bar)`` per shard; ``proxysel.stages.sharded`` runs them resumably on
either backend), or, with ``sharded = False``, all at once from the outputs of ``requires``
(``compute_all``). Its ``fingerprint`` keys the stage: the same fingerprint resumes it. A model-free
signal over the stored embeddings (``density``, ``lexical``) subclasses ``EmbeddingSignal``, which
gives it that fingerprint and the vectors in pool order.

    @register_signal("my_signal")
    class MySignal(Signal):
        columns = ("my_signal",)
        def setup(self, device): ...
        def compute(self, state, examples, bar): ...   # -> pa.Table(id, my_signal)
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Collection

import numpy as np

from proxysel.data.example import Example, Pool
from proxysel.errors import UsageError
from proxysel.models.loader import load_causal_lm, resolve_model_path
from proxysel.models.render import Renderer
from proxysel.options import RuntimeConfig, config_to_dict
from proxysel.registry import Registry

__all__ = ["EmbeddingSignal", "Signal", "available_signals", "derivable", "get_signal", "producer_of",
           "register_signal", "score_signals", "unregister_signal"]

def _declares_columns(name: str, cls: type) -> None:
    if not getattr(cls, "columns", None):
        raise ValueError(f"signal '{name}' declares no columns")


_REGISTRY: Registry = Registry("signal", _declares_columns)
register_signal = _REGISTRY.register
unregister_signal = _REGISTRY.unregister
get_signal = _REGISTRY.get


def available_signals(command: str | None = None) -> list[str]:
    """Registered signal names in registration order, optionally only those ``command`` computes."""
    return [c.name for c in _REGISTRY.classes() if command is None or c.command == command]


def score_signals() -> list[str]:
    """The signals ``proxysel score --signals`` takes."""
    return available_signals("score")


def producer_of(column: str) -> type["Signal"] | None:
    """The signal that writes ``column`` (a scores.parquet column or a vector set) or derives it
    (``Signal.derives``), or None."""
    for cls in _REGISTRY.classes():
        if column in cls.columns or (cls.derives is not None and cls.derives.fullmatch(column)):
            return cls
    return None


def derivable(column: str, have: Collection[str]) -> bool:
    """Whether ``column`` is not stored but can be derived from columns in ``have`` (the first column
    of the signal that ``derives`` it)."""
    cls = producer_of(column)
    return cls is not None and column not in cls.columns and cls.columns[0] in have


class Signal:
    """Base class; see the module docstring. Instances hold the score config and the runtime.

    config:    the ``score`` section (``proxysel.signals.config.ScoreConfig``): model names,
               max_length, dtype, template, batch_tokens and the signals' own sub-sections.
    runtime:   where the work runs (device, shard_size, backend).
    reference: the reference set (a Pool) for ``needs_reference`` signals, else None.
    """

    name: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    vectors: ClassVar[bool] = False
    command: ClassVar[str] = "score"
    model_option: ClassVar[str | None] = "model"
    requires: ClassVar[tuple[str, ...]] = ()
    needs_reference: ClassVar[bool] = False
    #: the parts of a record it needs (``Example.parts``): ``prompt``, ``response``; a record without
    #: them gets NaN and a "not applicable" reason, and a pool with no record that fits is refused
    needs: ClassVar[tuple[str, ...]] = ()
    #: with a reference set, the same vectors of the reference too (vector set ``<name>_reference``)
    reference_vectors: ClassVar[bool] = False
    prepare_stages: ClassVar[tuple[str, ...]] = ()
    #: columns derived from its first column when a selector reads them (see the module docstring)
    derives: ClassVar[re.Pattern[str] | None] = None
    sharded: ClassVar[bool] = True
    #: how the command line makes it, for error messages (``{data}`` and ``{run}`` are filled in)
    hint: ClassVar[str] = ""

    def __init__(self, config: Any, runtime: RuntimeConfig | None = None,
                 reference: Pool | None = None) -> None:
        self.config = config
        self.runtime = runtime or RuntimeConfig()
        self.reference = reference

    # -- what it is ------------------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The model this signal loads (the value of its ``model_option``), or None."""
        return getattr(self.config, self.model_option) if self.model_option else None

    @classmethod
    def provided_by(cls, config: Any) -> bool:
        """Whether the command's config (a ScoreConfig, or a TrainProxyConfig for train-proxy signals)
        computes this signal. Score signals: when listed; train-proxy ones: always, unless they say."""
        if cls.command == "score":
            return cls.name in config.signals
        return True

    @classmethod
    def how_to_make(cls, data: str = "DATA", run: str = "RUN") -> str:
        """The command that computes this signal, e.g. ``proxysel score DATA --signals ifd --out RUN``."""
        if cls.hint:
            return cls.hint.format(data=data, run=run)
        signals = ",".join((*cls.requires, cls.name))
        ref = " --reference REF" if cls.needs_reference else ""
        return f"proxysel score {data} --signals {signals}{ref} --out {run}"

    @classmethod
    def derive(cls, column: str, scores: Any) -> Any:
        """float64 (n,): ``column``, one the signal ``derives``, from ``scores`` (a pa.Table holding the
        signal's first column), row for row. ValueError for one it cannot give (e.g. an epoch the
        run did not train)."""
        raise NotImplementedError(f"signal '{cls.name}' derives no columns")

    def fingerprint(self, pool: Pool, upstream: dict[str, Any]) -> dict[str, Any]:
        """What the results depend on; the stage resumes only under the same fingerprint.

        upstream: the fingerprints of the stages named in ``requires`` (and what ``prepare`` returned).
        """
        revision = resolve_model_path(self.model)[1] if self.model else None
        c = self.config
        fp = {"data": pool.fingerprint, "model": self.model, "revision": revision, "max_length": c.max_length,
              "template": c.template, "dtype": c.dtype, "shard_size": self.runtime.shard_size}
        if self.reference is not None:
            fp["reference"] = self.reference.fingerprint
        return fp

    def prepare(self, run: Any) -> dict[str, Any]:
        """Work the shards need first, once per run (CoLoR-Filter's conditional model); ``run`` is the
        open ``store.Run``. Returns what the signal's fingerprint then depends on ({} for none)."""
        return {}

    def stage_info(self) -> dict[str, Any]:
        """Extra facts for the stage's manifest entry (the parameters a reader wants to see)."""
        return {}

    # -- how it is computed ----------------------------------------------------------------------

    def setup(self, device: str | None) -> Any:
        """Load the models (once per worker); ``device`` None means the runtime's default."""
        raise NotImplementedError(f"signal '{self.name}' is computed by {self.command}, not by score")

    def compute(self, state: Any, examples: list[Example], bar: Any) -> Any:
        """pa.Table with an ``id`` column (one row per example, in order) and the signal's columns."""
        raise NotImplementedError(f"signal '{self.name}' is computed by {self.command}, not by score")

    def compute_all(self, pool: Pool, inputs: dict[str, tuple[list[str], Any]]) -> Any:
        """``sharded = False`` signals: the whole table at once. ``inputs``: the vector sets of
        ``requires``, as (ids, float32 array)."""
        raise NotImplementedError

    def load_lm(self, device: str | None = None, model: str | None = None, dtype: str | None = None) -> Any:
        """The signal's causal LM (or ``model``) on ``device`` (default: the runtime's, else the CPU)."""
        return load_causal_lm(model or self.model, dtype=dtype or self.config.dtype,
                              device=device or self.runtime.device or "cpu",
                              trust_remote_code=self.runtime.trust_remote_code,
                              allow_pickle=self.runtime.allow_pickle)

    def load_lm_and_renderer(self, device: str | None, **renderer_options: Any) -> tuple[Any, Any]:
        """The usual ``setup`` of a model signal: its LM and a Renderer with the score options."""
        lm = self.load_lm(device)
        return lm, self.renderer(lm.tokenizer, **renderer_options)

    def renderer(self, tokenizer: Any, **kwargs: Any) -> Any:
        return Renderer(tokenizer, max_length=self.config.max_length, template=self.config.template, **kwargs)


class EmbeddingSignal(Signal):
    """A model-free signal computed at once from the pool's stored ``embedding`` vectors (``density``,
    ``lexical``). Its options are the score config's section named ``section``; the stage's fingerprint
    is the pool, the embedding stage's fingerprint and those options."""

    requires = ("embedding",)
    model_option = None
    sharded = False
    section: ClassVar[str] = ""

    @property
    def options(self) -> Any:
        """The signal's own options (``score.<section>``)."""
        return getattr(self.config, self.section)

    def fingerprint(self, pool: Pool, upstream: dict[str, Any]) -> dict[str, Any]:
        return {"data": pool.fingerprint, "embeddings": upstream.get("embedding"),
                "embeddings_model": upstream.get("embedding_model"), **config_to_dict(self.options)}

    def stage_info(self) -> dict[str, Any]:
        return {"params": config_to_dict(self.options)}

    @staticmethod
    def pool_vectors(pool: Pool, inputs: dict[str, tuple[list[str], Any]]) -> Any:
        """float32 (n, dim): the stored embedding of every pool example, in pool order; UsageError
        (exit 2) when some example has none."""
        ids, vecs = inputs["embedding"]
        pos = {i: k for k, i in enumerate(ids)}
        missing = [e.id for e in pool.examples if e.id not in pos]
        if missing:
            raise UsageError(f"{len(missing)} examples have no embedding (first: {missing[:3]}); rerun the "
                             "embedding signal")
        return np.ascontiguousarray(vecs[np.asarray([pos[e.id] for e in pool.examples], dtype=np.int64)],
                                    dtype=np.float32)
