#!/usr/bin/env bash
# The GPU run of bench/gpu_capacity.py as one prepared command, for a GPU machine that has
# python3 with a CUDA torch but no network (a lent benchmark node, an air-gapped cluster).
#
#   bench/gpu_run.sh fetch          here, with PyPI: the wheels that machine lacks -> .whl/
#   bench/gpu_run.sh run [OUT_DIR] [ARGS...]  there: install them over its torch, run
#                                   bench/gpu_capacity.py ARGS, write results to OUT_DIR
#
# The versions are the stt image's lock (containers/requirements/stt.txt); moshi goes in
# with --no-deps, so the machine's own torch, numpy and onnxruntime are used as they are.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/wheels.sh
source "$ROOT/bench/wheels.sh"
WHEELS=${WHEELS:-$ROOT/.whl}
LOCK=$ROOT/containers/requirements/stt.txt
# What bench/gpu_capacity.py imports that a bare PyTorch image lacks (soundfile needs cffi).
PACKAGES=(moshi sphn pydantic pydantic-core pydantic-settings python-dotenv annotated-types
  typing-inspection soundfile cffi soxr silero-vad)
TARGET_PYTHON=${TARGET_PYTHON:-3.12}

log() { printf '[gpu_run %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

pinned() {
  local name=$1 line
  line=$(grep -E "^$name==" "$LOCK") || die "$name is not pinned in $LOCK"
  echo "${line%% *}"
}

fetch() {
  local specs=() name
  for name in "${PACKAGES[@]}"; do specs+=("$(pinned "$name")"); done
  download_wheels "$WHEELS" "$TARGET_PYTHON" "${specs[@]}"
}

run() {
  local out=${1:-$ROOT/bench/results} site=/tmp/unmute-gpu-site
  shift || true
  [[ -d $WHEELS ]] || die "no $WHEELS: run '$0 fetch' where PyPI is reachable, and bring .whl/ along"
  mkdir -p "$out"
  if [[ " $* " != *" --tiny "* ]]; then
    python3 -c 'import torch; assert torch.cuda.is_available()' || die "python3 has no CUDA torch here"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu_capacity-nvidia-smi.txt"
  fi
  python3 -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl ||
    die "installing the wheels failed"
  export PYTHONPATH=$site:$ROOT PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
  # torch.compile off, as in the images; set NO_TORCH_COMPILE= (empty) to measure it on.
  export NO_TORCH_COMPILE=${NO_TORCH_COMPILE-1}
  log "running bench/gpu_capacity.py $*"
  python3 "$ROOT/bench/gpu_capacity.py" --out "$out/gpu_capacity.json" "$@" 2>&1 | tee "$out/gpu_capacity.log"
}

case ${1:-} in
  fetch) fetch ;;
  run) shift && run "$@" ;;
  *) die "usage: $0 fetch | run [OUT_DIR] [bench/gpu_capacity.py arguments]" ;;
esac
