#!/usr/bin/env bash
# The GPU speed suite of issue 17 (benchmarks/gpu_suite.py says what it measures), in one device call.
#
#   benchmarks/gpu_suite.sh --dry-run          here, on the CPU: every step at tiny sizes (tables to $OUT
#                                              or a temporary folder); tests/integration/test_gpu_suite.py
#   benchmarks/gpu_suite.sh SHA256             on the device, from the repository root, once the payload
#                                              parts are in /tmp/parts (below); tables to $OUT
#
# The payload, built here (docs/bench.md, "On a lent GPU machine with no hub"):
#   .venv/bin/python benchmarks/gpu_suite.py --write-data /tmp/suite.jsonl     # 1,200 demo conversations
#   benchmarks/device_payload.sh /tmp/suite.jsonl                              # prints SHA256
# then one device call per part (`cp .xfer/partX /tmp/parts/`, carrying .xfer), and this script with
# timeout_s 600. It stops itself after SUITE_TIMEOUT seconds (default 570); each section's table is in
# $OUT/gpu_suite.md as soon as the section ends.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--dry-run" ]; then
  shift
  exec "${PYTHON:-python3}" benchmarks/gpu_suite.py --dry-run --out "${OUT:-$(mktemp -d)}" "$@"
fi
source benchmarks/device_env.sh "$1"
shift
data=/tmp/payload/data/suite.jsonl
[ -f "$data" ] || { echo "the payload has no data/suite.jsonl: build it with gpu_suite.py --write-data"; exit 3; }
timeout "${SUITE_TIMEOUT:-570}" python3 benchmarks/gpu_suite.py --out "$OUT" --data "$data" \
  --budget "$(( ${SUITE_TIMEOUT:-570} - 20 ))" "$@"
