#!/usr/bin/env bash
# The GPU check, for the day a GPU is lent: the CUDA tests (pytest -m cuda), the full DARTS epoch timed at batch 96
# and at the largest batch that fits (bf16, channels_last, torch.compile off and on), a 2-GPU DDP step when two GPUs
# are visible, one JSON with everything ($OUT/gpu_check.json when $OUT is set). Under 10 minutes on one H100.
#
#   bash scripts/gpu_check.sh                  # the whole check
#   bash scripts/gpu_check.sh --no-compile     # without the torch.compile configurations
#   bash scripts/gpu_check.sh --cpu            # tiny sizes on the CPU (what the test runs)
#
# Arguments go to benchmarks/gpu_check.py (--help lists them). PYTHON picks the interpreter: .venv/bin/python by
# default, which on a GPU machine needs a CUDA build of torch (see the README's install notes).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
if [[ ! -x $python ]] && ! command -v "$python" >/dev/null; then
    echo "gpu_check.sh: no $python; create the venv (make lint) or set PYTHON" >&2
    exit 2
fi
exec "$python" benchmarks/gpu_check.py "$@"
