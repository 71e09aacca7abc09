# Sourced by benchmarks/device_bench.sh and benchmarks/gpu_suite.sh on a lent GPU machine: unpack
# the payload of benchmarks/device_payload.sh (parts an earlier call copied to /tmp/parts, checked
# against the sha256 given as $1) once, install its wheels with --target, and set the environment
# that puts this checkout's src/ and the carried packages on the path, offline.
want="$1"
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
