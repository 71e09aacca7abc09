"""`proxysel score DATA --signals loss --model M --out RUN`."""

from __future__ import annotations

import argparse

from proxysel.cli.common import add_data_options, add_model_options, add_run_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score every example with a proxy model into RUN/scores.parquet")
    add_data_options(p)
    add_model_options(p)
    add_run_options(p)
    p.add_argument("--signals", default="loss",
                   help="comma-separated: loss, ifd, ask_llm, embedding, density (default: loss)")
    p.add_argument("--judge", default="smollm2-135m", help="Ask-LLM judge, any causal LM (default smollm2-135m)")
    p.add_argument("--embedder", default="minilm",
                   help="sentence-transformers model for embedding (default minilm = all-MiniLM-L6-v2)")
    p.add_argument("--density-tables", type=int, default=None, help="density: LSH tables R")
    p.add_argument("--density-buckets", type=int, default=None, help="density: buckets per table B")
    p.add_argument("--density-width", type=float, default=None, help="density: bucket width r")
    p.add_argument("--seed", type=int, default=0, help="seed of the density sketch (default 0)")
    p.add_argument("--batch-tokens", type=int, default=8192,
                   help="padded tokens per batch (batch size x longest example; default 8192)")
    p.add_argument("--shard-size", type=int, default=256, help="examples per resumable shard (default 256)")
    g = p.add_argument_group("scale-out (docs/scale.md)")
    g.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local (default): this process; ray: a Ray Data pipeline, one model per actor "
                        "(pip install 'proxysel[ray]'). Same results either way")
    g.add_argument("--ray-address", default=None,
                   help="the Ray cluster to join: auto, ray://HEAD:10001 or HOST:PORT "
                        "(default: $RAY_ADDRESS, else a new local cluster)")
    g.add_argument("--ray-actors", type=int, default=None,
                   help="scoring actors (default: one per GPU of the cluster, else one per --ray-cpus-per-actor CPUs)")
    g.add_argument("--ray-cpus-per-actor", type=int, default=None,
                   help="CPUs per actor, and torch threads of a CPU actor (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from proxysel import api

    density = {k: v for k, v in {"R": args.density_tables, "B": args.density_buckets, "r": args.density_width,
                                 "seed": args.seed}.items() if v is not None}
    out = api.score(args.data, out=args.out, signals=args.signals, model=args.model, judge=args.judge,
                    embedder=args.embedder, density=density, max_length=args.max_length,
                    batch_tokens=args.batch_tokens, dtype=args.dtype, template=args.template, limit=args.limit,
                    on_bad_record=args.on_bad_record, format=args.format, columns=args.columns,
                    max_record_bytes=args.max_record_bytes,
                    dedupe=args.dedupe, shard_size=args.shard_size, overwrite=args.overwrite,
                    trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle, device=args.device,
                    backend=args.backend, ray_address=args.ray_address, ray_actors=args.ray_actors,
                    ray_cpus_per_actor=args.ray_cpus_per_actor)
    print(f"scores: {out / 'scores.parquet'}")
    return 0
