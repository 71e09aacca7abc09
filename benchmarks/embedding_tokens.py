"""What counting the embedder's tokens (for the compute ledger) adds to the embedding signal.

``signals.embedding.EmbeddingSignal.compute`` embeds a shard's texts and then tokenizes them once
more (``embedded_tokens``) to report the tokens its forward passes ran. This times both on the
same texts in one process, and prints the ratio.

    python benchmarks/embedding_tokens.py --n 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=256, help="ShareGPT pairs (one default shard)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from proxysel.data import read_pool
    from proxysel.data.sharegpt_demo import sharegpt_pairs
    from proxysel.data.text import embedding_text
    from proxysel.signals.embedding import embed, embedded_tokens, load_embedder

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pool.jsonl"
        path.write_text("".join(json.dumps(p) + "\n" for p in sharegpt_pairs(args.n)), encoding="utf-8")
        texts = [embedding_text(e) for e in read_pool(path).examples]
    model = load_embedder("minilm")
    embed(model, texts[:8])  # warm-up
    t_embed, t_count = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        embed(model, texts)
        t1 = time.perf_counter()
        tokens = embedded_tokens(model, texts)
        t_count.append(time.perf_counter() - t1)
        t_embed.append(t1 - t0)
    e, c = min(t_embed), min(t_count)
    print(f"{len(texts)} texts, {tokens:,} tokens: embed {e:.3f} s, count {c:.4f} s, "
          f"count / embed = {100 * c / e:.2f}% (best of {args.repeats})")


if __name__ == "__main__":
    main()
