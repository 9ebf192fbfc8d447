#!/usr/bin/env bash
# The prepared GPU check (issue 13, item 6): a thin wrapper around benchmarks/gpu_check.py (its docstring has the
# details). Run from anywhere; arguments go to gpu_check.py, e.g.
#
#   benchmarks/gpu_check.sh --out "$OUT/gpu_check.json"            # on the GPU machine, gpu_payload/ carried
#   benchmarks/gpu_check.sh --dry-run --out /tmp/gpu_check.json     # on a CPU, tiny sizes
#
# Needs a Python with torch (CUDA build), lightning, torchmetrics, kornia, numpy, opencv, scikit-image, scipy,
# pillow, pyyaml, tifffile and pytest. It uses .venv/bin/python where that imports torch, else python3 (the GPU
# machine's image). Where kornia does not import and gpu_payload/wheels/ holds wheels (made by
# `python benchmarks/gpu_check.py prepare`), they are installed offline into a temporary folder put on PYTHONPATH.
# GPU_CHECK_TIMEOUT (default 540 s) stops the whole run; the JSON is rewritten after every case, so what was
# measured until then is kept.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled

PY=python3
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  PY=.venv/bin/python
fi
if ! "$PY" -c "import kornia" >/dev/null 2>&1; then
  if compgen -G "gpu_payload/wheels/*.whl" >/dev/null; then
    SITE="${TMPDIR:-/tmp}/gpu_check_site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      gpu_payload/wheels/*.whl || { echo "gpu_check.sh: could not install gpu_payload/wheels/*.whl" >&2; exit 2; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
echo "gpu_check.sh: $("$PY" -c 'import sys, torch; print(sys.executable, "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1)" >&2
exec timeout --signal=TERM --kill-after=20 "${GPU_CHECK_TIMEOUT:-540}" "$PY" benchmarks/gpu_check.py "$@"
