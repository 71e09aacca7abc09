"""``embedding``: sentence embeddings of every example, stored in RUN/embeddings.parquet.

The default embedder is the bundled all-MiniLM-L6-v2 (``minilm``, 384 dimensions, unit norm),
the model the official LP code clusters with. The text embedded is ``embedding_text``: for
alpaca records the official ``Instruction: {instruction input} Response: {output}``; for
conversations the turns as ``Role: content``. ``--embedder`` takes any sentence-transformers
folder or hub id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from proxysel.data.example import Pool
from proxysel.data.text import embedding_text
from proxysel.errors import UsageError
from proxysel.models.bundled import BUNDLED, bundled_path
from proxysel.models.loader import folder_revision
from proxysel.signals.base import Signal, register_signal


def embedder_path(spec: str) -> tuple[str, str]:
    """(path or hub id, revision) of a sentence-transformers model."""
    if spec in BUNDLED:
        p = bundled_path(spec)
        return str(p), folder_revision(p)
    p = Path(spec).expanduser()
    if p.is_dir():
        return str(p), folder_revision(p)
    if spec.startswith((".", "/", "~")):
        raise UsageError(f"--embedder {spec}: folder not found")
    return spec, "hub"


def load_embedder(spec: str, device: str | None = None, trust_remote_code: bool = False) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover
        raise UsageError("the embedding signal needs sentence-transformers: "
                         "pip install 'proxysel[models]'") from e
    path, _ = embedder_path(spec)
    try:
        return SentenceTransformer(path, device=device or "cpu", trust_remote_code=trust_remote_code)
    except OSError as e:  # a hub id that is neither cached nor reachable (offline), or a bad folder
        why = (str(e).splitlines() or [type(e).__name__])[0].rstrip(".")
        embedders = sorted(n for n, b in BUNDLED.items() if b.kind == "embedder")
        raise UsageError(f"cannot load embedder {spec!r}: {why}. Offline, use a local sentence-transformers "
                         f"folder or a bundled name: {embedders}") from None


def embed(model: Any, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """float32 (len(texts), dim). Texts are sorted by length inside so batches pad little."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    vecs = model.encode([texts[i] for i in order], batch_size=batch_size, convert_to_numpy=True,
                        show_progress_bar=False)
    out = np.empty_like(vecs, dtype=np.float32)
    out[order] = vecs
    return out


def embedded_tokens(model: Any, texts: list[str]) -> int:
    """Tokens the embedder's forward passes run over ``texts``: its own tokenizer (special tokens
    included, cut at its ``max_seq_length``, as its ``encode`` cuts them), unpadded. The compute
    ledger counts them. (Its tokenizer directly: sentence-transformers 6 deprecates ``tokenize``.)"""
    if not texts:
        return 0
    ids = model.tokenizer(texts, truncation=True, max_length=model.get_max_seq_length())["input_ids"]
    return sum(len(x) for x in ids)


#: What ``data.text.embedding_text`` builds, in the fingerprint: a change re-embeds (v2: fields stripped).
EMBEDDING_TEXT = "v2-stripped"


@register_signal("embedding")
class EmbeddingSignal(Signal):
    """Sentence embeddings of ``score.embedder`` into RUN/embeddings.parquet (float32, unit norm for
    minilm)."""

    columns = ("embedding",)
    vectors = True
    # given a reference set, its embeddings too (embedding_reference): the ranking selectors'
    # cluster_by: reference assigns every pool row to the nearest reference group
    reference_vectors = True
    model_option = "embedder"

    def fingerprint(self, pool: Pool, upstream: dict[str, Any]) -> dict[str, Any]:
        _, revision = embedder_path(self.model)
        return {"data": pool.fingerprint, "embedder": self.model, "revision": revision,
                "shard_size": self.runtime.shard_size, "text": EMBEDDING_TEXT}

    def setup(self, device: str | None) -> Any:
        return load_embedder(self.model, device or self.runtime.device, self.runtime.trust_remote_code)

    def compute(self, model: Any, examples: list, bar: Any) -> Any:
        texts = [embedding_text(e) for e in examples]
        vecs = embed(model, texts)
        bar.update(len(examples), embedded_tokens(model, texts))
        flat = pa.array(vecs.reshape(-1), pa.float32())
        return pa.table({"id": pa.array([e.id for e in examples], pa.string()),
                         "embedding": pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1])})
