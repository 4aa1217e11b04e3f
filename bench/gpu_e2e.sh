#!/usr/bin/env bash
# The whole voice stack under load on one GPU as one prepared command (bench/e2e_stack.py):
# STT and TTS services on full-size random-weight models, the orchestrator, an LLM stand-in,
# and bench/loadtest.py's simulated users; for a machine with python3 and a CUDA torch but
# no network (a lent benchmark node, an air-gapped cluster).
#
#   bench/gpu_e2e.sh fetch             here, with PyPI: the wheels it lacks -> build/e2e-wheels/
#   bench/gpu_e2e.sh run [OUT] [ARGS]  there: install them over its torch, run
#                                      bench/e2e_stack.py ARGS, write the results to OUT
#   bench/gpu_e2e.sh run OUT --tiny    anywhere, in the current Python environment (no
#                                      wheels): tiny models on CPU, as CI runs it
#
# PYTHON picks the interpreter (default python3). The versions are the images' locks
# (containers/requirements/stt.txt, orchestrator.txt); everything goes in with --no-deps, so
# the machine's own torch and numpy are used as they are. EXCLUDE="onnxruntime flatbuffers
# protobuf" leaves out what the target already has (the H200 of bench/results had
# onnxruntime; without it the wheels are 41 MB instead of 69 MB).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/wheels.sh
source "$ROOT/bench/wheels.sh"
WHEELS=${WHEELS:-$ROOT/build/e2e-wheels}
LOCKS=("$ROOT/containers/requirements/stt.txt" "$ROOT/containers/requirements/orchestrator.txt")
# What the services, the orchestrator and the load test import that a bare PyTorch image lacks.
PACKAGES=(
  # moshi and the STT/TTS engines (Silero VAD runs on onnxruntime)
  moshi sphn einops sentencepiece safetensors huggingface-hub filelock fsspec packaging pyyaml
  requests urllib3 certifi charset-normalizer idna tqdm typing-extensions soundfile cffi pycparser
  soxr silero-vad onnxruntime flatbuffers protobuf
  # settings, and the HTTP/WebSocket servers every service runs
  pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-inspection
  fastapi starlette annotated-doc opentelemetry-api anyio uvicorn h11 click websockets msgpack
  prometheus-client python-multipart
  # the orchestrator's LLM client
  openai httpx httpcore httpx2 httpcore2 jiter sniffio truststore
)
IMPORTS='import moshi, sphn, sentencepiece, safetensors, huggingface_hub, einops, soundfile, soxr
import silero_vad, onnxruntime, pydantic_settings, fastapi, uvicorn, websockets, msgpack
import prometheus_client, multipart, openai, httpx'
TARGET_PYTHON=${TARGET_PYTHON:-3.12}
PYTHON=${PYTHON:-python3}
child=

log() { printf '[gpu_e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

pinned() {
  local name=$1 line
  line=$(grep -hE "^$name==" "${LOCKS[@]}" | head -n 1) || true
  [[ -n $line ]] || die "$name is not pinned in ${LOCKS[*]}"
  echo "${line%% *}"
}

fetch() {
  local specs=() name
  for name in "${PACKAGES[@]}"; do
    [[ " ${EXCLUDE:-} " == *" $name "* ]] || specs+=("$(pinned "$name")")
  done
  download_wheels "$WHEELS" "$TARGET_PYTHON" "${specs[@]}"
}

# The benchmark stops every process it started when it ends or gets SIGTERM; this makes
# sure it gets that SIGTERM when this script is interrupted or killed.
stop_child() {
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    log "stopping bench/e2e_stack.py (pid $child)"
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
}

run() {
  local out=${1:-$ROOT/bench/results/gpu_e2e} site=/tmp/unmute-e2e-site
  shift || true
  mkdir -p "$out"
  if [[ " $* " != *" --tiny "* ]]; then
    [[ -d $WHEELS ]] || die "no $WHEELS: run '$0 fetch' where PyPI is reachable, and bring it along"
    "$PYTHON" -c 'import torch; assert torch.cuda.is_available()' || die "$PYTHON has no CUDA torch here"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu_e2e-nvidia-smi.txt"
    rm -rf "$site"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl ||
      die "installing the wheels failed"
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    # A missing module fails here in seconds, not in a service's log minutes later.
    "$PYTHON" -c "$IMPORTS" || die "a module the stack needs does not import (see above)"
  fi
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NO_TORCH_COMPILE=${NO_TORCH_COMPILE:-1}
  trap stop_child EXIT INT TERM
  log "running bench/e2e_stack.py --out $out $*"
  "$PYTHON" "$ROOT/bench/e2e_stack.py" --out "$out" "$@" &
  child=$!
  wait "$child"
}

case ${1:-} in
  fetch) fetch ;;
  run) shift && run "$@" ;;
  *) die "usage: $0 fetch | run [OUT_DIR] [bench/e2e_stack.py arguments]" ;;
esac
