#!/usr/bin/env bash
# The GPU check of issue 13, for a machine with one CUDA GPU, this repository and no network.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine: about 3-6 minutes, at most 8
#   bash benchmarks/gpu_check.sh --cpu-smoke  # every part at tiny sizes on a CPU (tests the script)
#
# Needs Python 3.11+ with torch (CUDA build), transformers, peft (and its accelerate), pandas, numpy;
# not papermill, ipykernel or rouge-score: tvlib's functions are called directly and tvlib computes
# Rouge-L itself. tvlib is imported from this checkout (no install). Output: one line per part (time,
# peak GPU memory, CPU-vs-GPU differences); with $OUT set, also $OUT/gpu_check.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${TVLIB_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
JSON=()
if [[ -n "${OUT:-}" ]]; then JSON=(--json "$OUT/gpu_check.json"); fi
exec timeout 480 "$PY" benchmarks/gpu_check.py "${JSON[@]}" "$@"
