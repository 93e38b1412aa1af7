#!/usr/bin/env bash
# The GPU campaign in one command, for an H100/H200 machine with this tree and its venv:
#
#   scripts/gpu_check.sh                 # build, cuda tests, benchmarks, goals (~6-8 min)
#   scripts/gpu_check.sh --dry-run       # print the plan, run nothing
#   scripts/gpu_check.sh --skip-build --skip-tests --out DIR
#
# 1. builds editrt._C with its CUDA kernels (EDITRT_BUILD_CUDA=1, arch of the visible GPU);
# 2. runs `pytest -m cuda`;
# 3. runs the GPU benchmarks (benchmarks/run.py, CUDA events): FlexIT paper preset per step
#    (reference loop, eager, channels_last, bf16 autocast, CUDA graphs) and per edit; the fused
#    kernels vs the torch reference; 1024 px direction edits at batch 1 and 32; the paper
#    networks on torch / onnxruntime-CUDA / TensorRT where installed; onnxruntime CPU as control;
# 4. merges everything into one JSON, benchmarks/results/gpu-paper.json, checks the goals
#    (benchmarks/gpu_goals.py) and keeps the log next to it (gpu-paper.log).
# Without a CUDA device it prints why and exits 0 having run nothing (--require-gpu: exit 1).
# Each step has its own time limit; a failed step is logged and the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
OUT=$ROOT/benchmarks/results
DRY=0; BUILD=1; TESTS=1; REQUIRE=0; TAG=gpu-paper
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --skip-build) BUILD=0 ;;
    --skip-tests) TESTS=0 ;;
    --require-gpu) REQUIRE=1 ;;
    --out) OUT=$2; shift ;;
    --tag) TAG=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
export PYTHONPATH=$ROOT/sdk${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1
PARTS=$(mktemp -d "${TMPDIR:-/tmp}/editrt-gpu-check.XXXXXX")
STORE=$PARTS/engines
LOG=$OUT/$TAG.log
BENCH=(benchmarks/run.py --device cuda --engines-dir "$STORE" --no-plots --note "scripts/gpu_check.sh")

# name|time limit (s)|command: the plan, in order
PLAN=(
  "build|300|env EDITRT_BUILD_CUDA=1 $PY setup.py -q build_ext --inplace"
  "kernels|60|$PY -c 'import editrt.ops as o, sys; s = o.kernel_status(); print(s); sys.exit(0 if o.kernel_available(\"cuda\") else 1)'"
  "tests|420|$PY -m pytest -m cuda -q -x -p no:cacheprovider tests"
  "ops|120|$PY ${BENCH[*]} --preset paper --suites ops --out $PARTS --tag ops"
  "flexit|600|$PY ${BENCH[*]} --preset paper --quick --suites flexit --edit-steps 160 --out $PARTS --tag flexit"
  "edits|420|$PY benchmarks/cpu_paper.py edits --device cuda --rounds 5 --edit-runs global:1 global:32 feu:1 deltaedit:1 deltaedit:32 --out $PARTS/edits.json"
  "networks|600|$PY ${BENCH[*]} --preset paper --quick --suites networks --out $PARTS --tag networks"
  "ort-cpu-control|300|$PY benchmarks/run.py --device cpu --engines-dir $STORE --no-plots --preset paper --quick --suites networks --specs clip/ViT-B-32/image stylegan2/ffhq-1024/synthesis --backends torch-eager ort-cpu --batches 1 --out $PARTS --tag ort-cpu"
)

if [ "$DRY" = 1 ]; then
  for step in "${PLAN[@]}"; do
    IFS='|' read -r name limit cmd <<< "$step"
    echo "$name (limit ${limit}s): $cmd"
  done
  echo "merge: $PY benchmarks/cpu_paper.py merge $PARTS/*.json --out $OUT/$TAG.json"
  echo "goals: $PY benchmarks/gpu_goals.py $OUT/$TAG.json"
  rm -rf "$PARTS"
  exit 0
fi

# 0. a Python with torch, and a GPU it can see?
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "gpu_check: $PY cannot import torch: run scripts/setup.sh or set PYTHON to the project's venv python" >&2
  rm -rf "$PARTS"
  exit 2
fi
if ! GPU=$("$PY" -c 'import torch, sys
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no CUDA device")
print(torch.cuda.get_device_name(0), "sm_%d%d" % torch.cuda.get_device_capability(0))' 2>&1); then
  echo "gpu_check: no GPU here, nothing run: ${GPU##*$'\n'}"
  echo "gpu_check: run it on a CUDA machine (H100/H200) with this tree and its venv"
  rm -rf "$PARTS"
  [ "$REQUIRE" = 1 ] && exit 1
  exit 0
fi
ARCH=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH}
mkdir -p "$OUT"
: > "$LOG"
echo "gpu_check: $GPU, arch $TORCH_CUDA_ARCH_LIST, log $LOG" | tee -a "$LOG"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv >> "$LOG" 2>&1 || true

FAILED=()
START=$(date +%s)
for step in "${PLAN[@]}"; do
  IFS='|' read -r name limit cmd <<< "$step"
  if { [ "$name" = build ] && [ "$BUILD" = 0 ]; } || { [ "$name" = tests ] && [ "$TESTS" = 0 ]; }; then
    echo "== $name: skipped (option)" | tee -a "$LOG"; continue
  fi
  echo "== $name (limit ${limit}s, $(( $(date +%s) - START ))s elapsed): $cmd" | tee -a "$LOG"
  t0=$(date +%s)
  timeout "$limit" bash -c "$cmd" >> "$LOG" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
  [ $rc -eq 0 ] || FAILED+=("$name(rc=$rc)")
  if [ "$name" = kernels ] && [ $rc -ne 0 ]; then
    echo "gpu_check: editrt._C has no CUDA kernels; the kernel rows will be skipped (see $LOG)" | tee -a "$LOG"
  fi
done

shopt -s nullglob
parts=("$PARTS"/*.json)
if [ ${#parts[@]} -gt 0 ]; then
  "$PY" benchmarks/cpu_paper.py merge "${parts[@]}" --out "$OUT/$TAG.json" >> "$LOG" 2>&1 || FAILED+=("merge")
  "$PY" benchmarks/gpu_goals.py "$OUT/$TAG.json" 2>&1 | tee -a "$LOG" || FAILED+=("goals")
else
  FAILED+=("no benchmark produced a result")
fi
rm -rf "$PARTS"
echo "gpu_check: done in $(( $(date +%s) - START ))s; results $OUT/$TAG.json, log $LOG" | tee -a "$LOG"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "gpu_check: failed steps: ${FAILED[*]}" | tee -a "$LOG"
  exit 1
fi
