# shellcheck shell=bash
# One instance of a service (stt, tts, tts2, llm, orchestrator, ...): start it with its own
# GPUs and port, tell whether it is alive and ready, stop it. As an Apptainer instance, or as
# a plain process from $UNMUTE_DIR/.venv (RUNTIME=host). Sourced after common.sh, with
# JOB_DIR, JOB_ENV, SIF_DIR and HF_HOME set.

declare -A INST_SERVICE=() INST_DEVICES=() INST_PORT=() INST_MEMORY=()
declare -A PIDS=()    # RUNTIME=host: instance -> pid
STARTED=()            # instances this process started, in order
TLS_DIR=${TLS_DIR:-}   # the orchestrator's certificate and key, when it serves HTTPS
TLS_MOUNT=/run/unmute-tls

sif() { printf '%s/%s.sif' "$SIF_DIR" "$([[ $1 == llm ]] && echo vllm || echo "$1")"; }

instance_name() { printf 'unmute-%s-%s' "$1" "$JOB_ID"; }

port_variable() { printf '%s_PORT' "${INST_SERVICE[$1]^^}"; }

add_instance() {  # NAME SERVICE DEVICES MEMORY: one row of the placement plan
  INST_SERVICE[$1]=$2
  INST_DEVICES[$1]=${3/#-/}
  INST_MEMORY[$1]=$4
}

instance_env() {  # NAME: the settings that make this instance differ from the job's
  local name=$1
  printf '%s\n' "$(port_variable "$name")=${INST_PORT[$name]}" "CUDA_VISIBLE_DEVICES=${INST_DEVICES[$name]:-}"
  if [[ ${INST_SERVICE[$name]} == llm ]]; then
    printf '%s\n' "LLM_TENSOR_PARALLEL_SIZE=$(device_count "$name")" "LLM_GPU_MEMORY_UTILIZATION=${INST_MEMORY[$name]}"
  fi
  if [[ ${INST_SERVICE[$name]} == orchestrator && -n $TLS_DIR ]]; then
    local dir=$TLS_DIR
    [[ $RUNTIME == apptainer ]] && dir=$TLS_MOUNT
    printf '%s\n' "ORCHESTRATOR_TLS_CERT_FILE=$dir/cert.pem" "ORCHESTRATOR_TLS_KEY_FILE=$dir/key.pem"
  fi
}

device_count() {  # NAME: how many GPUs it spans
  local ids=${INST_DEVICES[$1]:-}
  if [[ -z $ids ]]; then echo 0; else awk -F, '{ print NF }' <<<"$ids"; fi
}

service_log() {
  if [[ $RUNTIME == host ]]; then printf '%s' "$JOB_DIR/logs/$1.log"
  else
    find "$APPTAINER_CONFIGDIR" -path "*/$(hostname)/*" -name "$(instance_name "$1").err" 2>/dev/null | head -n 1
  fi
}

start_instance() {  # NAME: start it in the background with the job's environment and its own
  local name=$1 service=${INST_SERVICE[$1]} module extra=()
  case $service in
    stt) module=services.stt ;; tts) module=services.tts ;; orchestrator) module=orchestrator ;; llm) module=vllm ;;
  esac
  mapfile -t extra < <(instance_env "$name")
  log "starting $name${INST_DEVICES[$name]:+ on GPU ${INST_DEVICES[$name]}} (port ${INST_PORT[$name]})"
  event starting "$name" "port ${INST_PORT[$name]}"
  if [[ $RUNTIME == host ]]; then
    [[ $service == llm ]] && die "RUNTIME=host does not start vLLM: set LLM_URL to a running endpoint (or echo)"
    # The job's env file wins over anything inherited from the submitting shell.
    local settings=()
    mapfile -t settings <"$JOB_ENV"
    (cd "$JOB_DIR" && exec env "${settings[@]}" "${extra[@]}" "$(python_bin)" -m "$module" >"logs/$name.log" 2>&1) &
    PIDS[$name]=$!
  else
    local options=() setting
    for setting in "${extra[@]}"; do options+=(--env "$setting"); done
    [[ $service == orchestrator && -n $TLS_DIR ]] && options+=(--bind "$TLS_DIR:$TLS_MOUNT:ro")
    # No DBUS session: keeps Apptainer from moving instances out of the job's cgroup.
    env -u DBUS_SESSION_BUS_ADDRESS apptainer instance start --nv --env-file "$JOB_ENV" "${options[@]}" \
      --bind "$HF_HOME:/data/hf:ro" --env HF_HOME=/data/hf \
      "$(sif "$service")" "$(instance_name "$name")" \
      >"$JOB_DIR/logs/$name.start" 2>&1 || { cat "$JOB_DIR/logs/$name.start" >&2; fail "$name" "$name did not start"; }
  fi
  STARTED+=("$name")
}

instance_init_pid() {  # NAME: the pid of its instance's init process, empty if no such instance
  apptainer instance list --json "$(instance_name "$1")" 2>/dev/null | "$(python_bin)" -c '
import json, sys
name = sys.argv[1]
print(next((i["pid"] for i in json.load(sys.stdin)["instances"] if i["instance"] == name), ""))
' "$(instance_name "$1")"
}

alive() {  # NAME
  if [[ $RUNTIME == host ]]; then kill -0 "${PIDS[$1]}" 2>/dev/null
  else
    # The server is the instance init's child. An instance outlives its server (its init
    # stays), so a listed instance is not enough: its server process must be there too.
    local init
    init=$(instance_init_pid "$1") || return 1
    [[ -n $init ]] && pgrep --parent "$init" >/dev/null
  fi
}

present() {  # NAME: anything of it is left (its process; for Apptainer, its instance)
  if [[ $RUNTIME == host ]]; then alive "$1"
  else
    local init
    init=$(instance_init_pid "$1") || return 0  # cannot tell: say so rather than claim it gone
    [[ -n $init ]]
  fi
}

ready() {  # NAME
  local name=$1 extra=()
  mapfile -t extra < <(instance_env "$name")
  if [[ $RUNTIME == host ]]; then
    env "${extra[@]}" "$(python_bin)" -m services.common.healthcheck --service "${INST_SERVICE[$name]}" --timeout 4 >/dev/null
  else
    local options=() setting
    for setting in "${extra[@]}"; do options+=(--env "$setting"); done
    apptainer test --env-file "$JOB_ENV" "${options[@]}" "$(sif "${INST_SERVICE[$name]}")" >/dev/null 2>&1
  fi
}

wait_ready() {  # NAME
  local name=$1 started=$SECONDS
  until ready "$name"; do
    if ! alive "$name"; then
      log "$name exited while starting; the end of its log:" >&2
      tail -n 40 "$(service_log "$name")" >&2 || true
      fail "$name" "$name failed to start"
    fi
    if ((SECONDS - started > READY_TIMEOUT_S)); then
      tail -n 40 "$(service_log "$name")" >&2 || true
      fail "$name" "$name not ready after ${READY_TIMEOUT_S}s"
    fi
    if (((SECONDS - started) % 30 == 0)); then log "waiting for $name ($((SECONDS - started))s)"; fi
    sleep 2
  done
  log "$name ready after $((SECONDS - started))s"
  event ready "$name" "after $((SECONDS - started))s"
}

fail() {  # NAME MESSAGE: end this process because instance NAME failed (its log is above)
  event failed "$1" "$2"
  die "$2"
}

llm_memory_fraction() {  # NAME: vLLM's share once STT and TTS are up: free memory minus headroom
  local value=${INST_MEMORY[$1]}
  if [[ $value != auto ]]; then printf '%s' "$value"; return; fi
  nvidia-smi --query-gpu=memory.free,memory.total --format=csv,noheader,nounits -i "${INST_DEVICES[$1]%%,*}" \
    | awk -F', *' '{ f = ($1 - 4096) / $2; if (f < 0.05) f = 0.05; printf "%.2f", f }'
}

stop_instance() {  # NAME: TERM, then KILL after STOP_TIMEOUT_S
  local name=$1
  if [[ $RUNTIME == host ]]; then
    local pid=${PIDS[$name]:-}
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT_S * 10)); do sleep 0.1; waited=$((waited + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
  else
    apptainer instance stop -s TERM -t "$STOP_TIMEOUT_S" "$(instance_name "$name")" >/dev/null 2>&1 || true
  fi
}

stop_started() {  # every instance this process started, last first; false if any is left
  local i name left=()
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_instance "${STARTED[i]}"; done
  for name in "${STARTED[@]}"; do present "$name" && left+=("$name"); done
  if ((${#left[@]})); then log "still running after stop: ${left[*]}" >&2; return 1; fi
  return 0
}
