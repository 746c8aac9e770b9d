#!/usr/bin/env bash
# What needs a GPU, in one call (a lent GPU machine is paid by the minute). From the repo root:
#   OUT=artifacts/gpu bash benchmarks/gpu_check.sh               # = --input-only: the input pipeline, ~3-4 min
#   OUT=artifacts/gpu bash benchmarks/gpu_check.sh --full        # then the CUDA smoke tests and bench_train.py
#   OUT=/tmp/gpucheck PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --cpu   # every step, toy sizes, on CPU
# --input-only (default): generate ~500x375 JPEGs on local disk (all cores), then benchmarks/bench_input.py: our B0
# train step on synthetic data, the CPU path (PIL in all cores' workers) and the GPU path (nvJPEG + batched
# augmentation) alone and end to end, the GPU path's stages, and a torch.profiler table of the GPU path.
# Each step runs under its own `timeout` and the whole run within TOTAL seconds (default 500): a hang costs one
# step, not the call. Writes OUT/env.txt, OUT/<step>.log, OUT/input.json, OUT/profile_gpu_path.txt and, with
# --full, OUT/pytest_cuda.txt, OUT/bench.json, OUT/profile_b0_eager.txt. Ends with a summary.
set -u
mode=input device=cuda smoke=""
for arg in "$@"; do
    case $arg in
        --input-only) mode=input ;;
        --full) mode=full ;;
        --cpu) device=cpu smoke=--smoke ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--input-only | --full] [--cpu]" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-artifacts/gpu}
PY=${PYTHON:-python3}
TOTAL=${TOTAL:-500}
JPEGS=${JPEGS:-${TMPDIR:-/tmp}/effnet_edu_jpegs}  # local disk: the benchmark measures decoding, not a network share
IMAGES=${IMAGES:-$( [[ -n $smoke ]] && echo 48 || echo 8192 )}  # 8192 x ~80 KB = 650 MB
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
declare -A result

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit clipped to what is left of TOTAL; log to OUT/NAME.log
    local name=$1 limit=$2 left=$(( TOTAL - SECONDS ))
    shift 2
    (( limit > left )) && limit=$left
    if (( limit < 15 )); then
        echo "== $name: skipped (${SECONDS} s of ${TOTAL} used)"; result[$name]=skipped; return
    fi
    echo "== $name (limit ${limit} s; ${SECONDS} s used) =="
    local start=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    case $rc in 0) result[$name]="ok" ;; 124|137) result[$name]="TIMED OUT" ;; *) result[$name]="failed (exit $rc)" ;; esac
    result[$name]="${result[$name]}, $(( SECONDS - start )) s"
}

{ date -u; nvidia-smi 2>&1 | head -15; echo "cores: $(nproc)"; free -g | head -2; df -h "$(dirname "$JPEGS")" | tail -1
  $PY -c "import torch, torchvision, PIL; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'pillow', PIL.__version__, 'cuda', torch.cuda.is_available())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

rm -rf "$JPEGS"
step make 90 $PY benchmarks/bench_input.py make "$JPEGS" --images "$IMAGES" $smoke
step rates 270 $PY benchmarks/bench_input.py rates "$JPEGS" --device "$device" --out "$OUT" $smoke
step profile 120 $PY benchmarks/bench_input.py profile "$JPEGS" --device "$device" --out "$OUT" $smoke

if [[ $mode == full ]]; then  # the earlier run's checks: CUDA smoke tests, then B0/B4 vs timm (bench_train.py)
    per_test=$($PY -c "import pytest_timeout" 2>/dev/null && echo "--timeout=150")
    step pytest_cuda 270 $PY -m pytest -q -rs --durations=12 -o addopts="" -p no:cacheprovider $per_test \
        tests/test_gpu_data.py tests/test_cuda.py
    budget=$(( TOTAL - SECONDS - 30 ))
    step bench 600 $PY benchmarks/bench_train.py --device "$device" --out "$OUT" --budget "$budget" --no-pipeline \
        ${BENCH_ARGS:-} $( [[ $device == cpu ]] && echo --smoke )
    [[ -f $OUT/pytest_cuda.log ]] && cp "$OUT/pytest_cuda.log" "$OUT/pytest_cuda.txt"
fi
rm -rf "$JPEGS"

echo "== summary (${SECONDS} s) =="
for name in make rates profile pytest_cuda bench; do
    [[ -n ${result[$name]+x} ]] && echo "  step $name: ${result[$name]}"
done
timeout 30 $PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
try:
    s = json.loads((out / "input.json").read_text())
except (OSError, ValueError) as exc:
    sys.exit(f"  no input.json ({exc})")
syn = s.get("synthetic_img_per_s")
print(f"  {s['device']}, {s['cpu_cores']} cores, torch {s['torch']}; {s['images']} JPEGs, batch {s['batch']}, "
      f"crop {s['resolution']} + flip + AutoAugment")
print(f"  synthetic data (our B0 train step): {syn:,.0f} img/s" if syn else "  synthetic rate: not measured")
for path in ("cpu", "gpu"):
    p = s.get(path)
    if p:  # 3 decimals: 0.845 is not 0.85
        goal = "meets" if p["end_to_end_fraction"] >= 0.85 else "MISSES"
        print(f"  {path.upper()} path, {p['workers']:>2} workers: end to end {p['end_to_end_img_per_s']:8,.0f} img/s = "
              f"{p['end_to_end_fraction']:.3f} x synthetic ({goal} the 0.85 goal); loader alone "
              f"{p['loader_img_per_s']:8,.0f} img/s = {p['loader_fraction']:.3f} x")
    else:
        print(f"  {path.upper()} path: not measured")
for name, st in (s.get("gpu_stages") or {}).items():
    if isinstance(st, dict):
        print(f"    GPU-path stage {name:<26} {st['ms_per_batch']:7.1f} ms/batch ({st['img_per_s']:7,.0f} img/s), "
              f"host (launch) {st['host_ms_per_batch']:6.1f} ms")
if s.get("gpu_stages"):
    print(f"    libjpeg-turbo decode on one core: {s['gpu_stages']['libjpeg_decode_img_per_s_one_core']:,.0f} img/s")
profile = out / "profile_gpu_path.txt"
if profile.exists():
    print(f"  profiler tables: {profile}; {profile.read_text().splitlines()[0]}")
EOF
