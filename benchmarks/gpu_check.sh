#!/usr/bin/env bash
# Everything that needs a GPU, in one call (a lent GPU machine is paid by the minute): the CUDA smoke tests, then
# the training benchmark (B0 and B4 vs timm, eager and compiled; the input pipeline's CPU and GPU paths).
# From the repo root:   OUT=artifacts/gpu bash benchmarks/gpu_check.sh
# Writes OUT/env.txt, OUT/pytest_cuda.txt, OUT/bench.log, OUT/bench.json, OUT/profile_b0_eager.txt.
# TOTAL (seconds, default 450) bounds the whole run: the benchmark skips the stages that would not fit.
set -u
OUT=${OUT:-artifacts/gpu}
PY=${PYTHON:-python3}
TOTAL=${TOTAL:-450}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ date -u; nvidia-smi 2>&1 | head -15; nproc; free -g | head -2
  $PY -c "import torch, torchvision, timm, PIL; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'pillow', PIL.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
per_test=$($PY -c "import pytest_timeout" 2>/dev/null && echo "--timeout=150")  # one slow test must not eat the run
timeout 270 $PY -m pytest -q -rs --durations=12 -o addopts="" -p no:cacheprovider $per_test \
    tests/test_gpu_data.py tests/test_cuda.py 2>&1 | tee "$OUT/pytest_cuda.txt"
budget=$(( TOTAL - SECONDS - 30 ))
echo "== benchmark, budget ${budget} s (${SECONDS} s used) =="
timeout $(( budget + 120 )) $PY benchmarks/bench_train.py --device cuda --out "$OUT" --budget "$budget" ${BENCH_ARGS:-} \
    2>&1 | tee "$OUT/bench.log"
echo "== done in ${SECONDS} s =="
