#!/usr/bin/env bash
# The embedded CPU default: STT (Whisper tiny.en), TTS (Piper) and the orchestrator as
# local processes on the .env port map, the LLM being the echo responder unless .env (or
# the environment) names a real OpenAI-compatible endpoint in LLM_URL. Waits until every
# service is ready, prints the URL with a fresh access token, and stops them all on
# Ctrl-C or SIGTERM (exit 0) or when one of them dies (exit 1). Logs go to build/demo-logs/.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOG_DIR=build/demo-logs
READY_TIMEOUT_S=${READY_TIMEOUT_S:-120}
pids=()

die() { echo "demo: $*" >&2; exit 1; }

env_value() {  # KEY -> value from the environment, else .env, else empty
  local key=$1
  if [[ -n ${!key:-} ]]; then printf '%s' "${!key}"; return; fi
  [[ -f .env ]] && grep -E "^${key}=" .env | tail -n 1 | cut -d= -f2- || true
}

cleanup() {
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    echo "demo: stopping services"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}

# A stop that was asked for is no failure. Exiting here matters: after a trap bash goes on
# with the next command, which would report the interrupted `wait -n` as a dead service.
stop() {
  cleanup
  echo "demo: stopped"
  exit 0
}

start() {  # NAME ARGS... : run "$PY ARGS" in the background, logging to LOG_DIR/NAME.log
  local name=$1; shift
  "$PY" "$@" >"$LOG_DIR/$name.log" 2>&1 &
  pids+=("$!")
}

wait_ready() {  # NAME PORT PID
  local name=$1 port=$2 pid=$3 waited=0
  # The probe's stderr too: a Ctrl-C while starting would print its KeyboardInterrupt.
  until "$PY" -m kit.healthcheck "http://127.0.0.1:$port/ready" --timeout 1 >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG_DIR/$name.log" >&2; die "$name exited while starting"; }
    ((waited >= READY_TIMEOUT_S)) && { tail -n 20 "$LOG_DIR/$name.log" >&2; die "$name not ready after ${READY_TIMEOUT_S}s"; }
    ((waited % 5 == 0)) && echo "demo: waiting for $name on port $port (${waited}s)"
    sleep 1; waited=$((waited + 1))
  done
  echo "demo: $name ready on 127.0.0.1:$port"
}

main() {
  [[ -x $PY ]] || die "no virtual environment at $PY: run 'make demo' (it installs one)"
  [[ -f .env ]] || die "no .env: run 'make env'"
  mkdir -p "$LOG_DIR"
  trap cleanup EXIT
  trap stop INT TERM

  local stt_port tts_port orch_port llm_url token
  stt_port=$(env_value STT_PORT); tts_port=$(env_value TTS_PORT); orch_port=$(env_value ORCHESTRATOR_PORT)
  llm_url=$(env_value LLM_URL); llm_url=${llm_url:-echo}
  token=$(env_value ACCESS_TOKEN)
  [[ -n $token ]] || token=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')

  # The CPU engines' own sizes, whatever .env sets for the GPU models (an idle slot costs
  # nothing; docs/performance.md says how many speakers 2 cores keep up with).
  start stt -m services.stt --engine whisper --batch-size 8
  wait_ready stt "$stt_port" "${pids[-1]}"
  start tts -m services.tts --engine piper --batch-size 8
  wait_ready tts "$tts_port" "${pids[-1]}"
  ACCESS_TOKEN=$token LLM_URL=$llm_url start orchestrator -m orchestrator
  wait_ready orchestrator "$orch_port" "${pids[-1]}"

  echo
  echo "  Open http://127.0.0.1:${orch_port}/?token=${token}"
  echo "  (LLM: ${llm_url}; Ctrl-C stops everything; logs in ${LOG_DIR}/)"
  echo
  local status=0
  wait -n "${pids[@]}" || status=$?
  echo "demo: a service stopped (exit ${status}); see ${LOG_DIR}/" >&2
  return 1
}

main "$@"
