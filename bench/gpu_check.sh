#!/usr/bin/env bash
# One prepared check for a GPU machine (about 5 minutes; under 8 with the install):
#   install the CUDA build of TensorFlow, detect the GPU, then measure extraction and fine-tune
#   throughput with mixed precision on (configure_devices turns on mixed_float16 wherever it finds a GPU).
#
#   bash bench/gpu_check.sh            # installs into .venv-gpu (needs PyPI), then runs the checks
#   PYTHON=/path/to/python bash bench/gpu_check.sh   # an environment that already has tensorflow[and-cuda]
#
# Figures go to stdout and, when $OUT is set (the device tool's result folder), to $OUT/gpu_check.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
report="${OUT:-/tmp}/gpu_check.txt"
exec > >(tee "$report") 2>&1

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "install"
if [[ -z "${PYTHON:-}" ]]; then
  python3 -m venv .venv-gpu
  PYTHON=.venv-gpu/bin/python
  timeout 300 "$PYTHON" -m pip install -q -e '.[gpu]'
fi

step "detect"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
"$PYTHON" - <<'EOF'
import sys
import tensorflow as tf
from transferlab.devices import configure_devices
from transferlab.distribution import choose_strategy
gpus = tf.config.list_physical_devices("GPU")
info = configure_devices()
print(f"tensorflow {tf.__version__}, built with CUDA {tf.test.is_built_with_cuda()}, GPUs {len(gpus)}: {info.gpu_name}")
print(f"precision policy {info.precision}; strategy {type(choose_strategy()).__name__}")
sys.exit(0 if gpus else 3)
EOF

step "extraction throughput (stage path vs predict, XLA, bfloat16)"
timeout 240 "$PYTHON" bench/extract_throughput.py --n 1024 --batch 128

step "head vs end-to-end, fine-tune epoch"
timeout 180 "$PYTHON" bench/training_speed.py --n 1024 --batch 64 --epochs 3

step "done"
