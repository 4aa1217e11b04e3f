# shellcheck shell=bash
# The instances of a plan (stt, tts, tts2, llm, orchestrator, ...; slurm/plan.py wrote it):
# start each with its own GPUs and port, tell whether it is alive and ready, stop it. As an
# Apptainer instance, or as a plain process from $UNMUTE_DIR/.venv (RUNTIME=host). Sourced
# after common.sh, with JOB_DIR, SIF_DIR and HF_HOME set.

JOB_ENV=$JOB_DIR/job.env
declare -A INST_SERVICE=() INST_DEVICES=() INST_PORT=() INST_MEMORY=()
declare -A PIDS=()    # RUNTIME=host: instance -> pid
MODEL_INSTANCES=()    # the plan's stt*, tts*, llm instances, in start order
STARTED=()            # instances this process started, in order
SLEEPER=              # watch_started's current sleep
PLANNED=()            # the plan's other records, "KEY VALUE..." (node, url, env, bind, ...)

read_plan() {  # FILE: the instances and the rest of a plan file (its format: slurm/plan.py)
  local key rest name service port devices memory
  while read -r key rest; do
    if [[ $key == instance ]]; then
      read -r name service port devices memory <<<"$rest"
      INST_SERVICE[$name]=$service INST_PORT[$name]=$port INST_DEVICES[$name]=${devices#-} INST_MEMORY[$name]=$memory
      [[ $service == orchestrator ]] || MODEL_INSTANCES+=("$name")
    else PLANNED+=("$key $rest"); fi
  done <"$1"
}

planned() {  # KEY: the values of the plan's KEY records, one a line
  local record
  for record in "${PLANNED[@]}"; do [[ $record != "$1 "* ]] || printf '%s\n' "${record#"$1" }"; done
}

sif() { printf '%s/%s.sif' "$SIF_DIR" "$([[ $1 == llm ]] && echo vllm || echo "$1")"; }

instance_name() { printf 'unmute-%s-%s' "$1" "$JOB_ID"; }

instance_env() {  # NAME: the settings that make this instance differ from the job's: the
  # plan's, and vLLM's memory share (`auto` is measured when it starts)
  planned "env $1"
  [[ ${INST_SERVICE[$1]} != llm ]] || echo "LLM_GPU_MEMORY_UTILIZATION=${INST_MEMORY[$1]}"
}

service_log() {  # NAME: its log file
  [[ $RUNTIME != host ]] || { printf '%s' "$JOB_DIR/logs/$1.log"; return; }
  find "$APPTAINER_CONFIGDIR" -path "*/$(hostname)/*" -name "$(instance_name "$1").err" 2>/dev/null | head -n 1
}

start_instance() {  # NAME: start it in the background with the job's environment and its own
  local name=$1 service=${INST_SERVICE[$1]} module=services.${INST_SERVICE[$1]} extra=()
  [[ $service != orchestrator ]] || module=orchestrator   # RUNTIME=host's python -m
  mapfile -t extra < <(instance_env "$name")
  log "starting $name${INST_DEVICES[$name]:+ on GPU ${INST_DEVICES[$name]}} (port ${INST_PORT[$name]})"
  event starting "$name" "port ${INST_PORT[$name]}"
  if [[ $RUNTIME == host ]]; then
    # The job's env file wins over the submitting shell's (common.sh exports "no bytecode").
    local settings=()
    mapfile -t settings <"$JOB_ENV"
    (cd "$JOB_DIR" && exec env "${settings[@]}" "${extra[@]}" \
      "$(python_bin)" -m "$module" >"logs/$name.log" 2>&1) &
    PIDS[$name]=$!
  else
    local options=("${extra[@]/#/--env=}") binds=()
    mapfile -t binds < <(planned "bind $name")   # the orchestrator's certificate
    # No DBUS session: keeps Apptainer from moving instances out of the job's cgroup.
    env -u DBUS_SESSION_BUS_ADDRESS apptainer instance start --nv --env-file "$JOB_ENV" "${options[@]}" "${binds[@]/#/--bind=}" \
      --bind "$HF_HOME:/data/hf:ro" --env HF_HOME=/data/hf \
      "$(sif "$service")" "$(instance_name "$name")" \
      >"$JOB_DIR/logs/$name.start" 2>&1 || { cat "$JOB_DIR/logs/$name.start" >&2; fail "$name" "$name did not start"; }
  fi
  STARTED+=("$name")
}

instance_init_pid() {  # NAME: the pid of its instance's init process, empty if no such instance
  # The listing's rows: "name pid [ip] image", under a header.
  apptainer instance list "$(instance_name "$1")" 2>/dev/null | awk -v name="$(instance_name "$1")" '$1 == name { print $2 }'
}

alive() {  # NAME: its server runs
  [[ $RUNTIME != host ]] || { kill -0 "${PIDS[$1]}" 2>/dev/null; return; }
  # The server is the instance init's child. An instance outlives its server (its init
  # stays), so a listed instance is not enough: its server process must be there too.
  local init
  init=$(instance_init_pid "$1") || return 1
  [[ -n $init ]] && pgrep --parent "$init" >/dev/null
}

present() {  # NAME: anything of it is left (its process; for Apptainer, its instance)
  [[ $RUNTIME != host ]] || { alive "$1"; return; }
  local init
  init=$(instance_init_pid "$1") || return 0  # cannot tell: say so rather than claim it gone
  [[ -n $init ]]
}

ready() {  # NAME
  local name=$1 extra=()
  mapfile -t extra < <(instance_env "$name")
  if [[ $RUNTIME == host ]]; then
    env "${extra[@]}" "$(python_bin)" -m kit.healthcheck --service "${INST_SERVICE[$name]}" --timeout 4 >/dev/null
  else
    apptainer test --env-file "$JOB_ENV" "${extra[@]/#/--env=}" "$(sif "${INST_SERVICE[$name]}")" >/dev/null 2>&1
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

start_models() {  # every model instance of the plan, each ready before the next starts
  local name
  for name in "${MODEL_INSTANCES[@]}"; do
    if [[ ${INST_SERVICE[$name]} == llm && ${INST_MEMORY[$name]} == auto ]]; then
      INST_MEMORY[$name]=$(llm_memory_fraction "$name")
      log "vLLM gets ${INST_MEMORY[$name]} of GPU ${INST_DEVICES[$name]%%,*} (what STT and TTS left)"
    fi
    start_instance "$name"
    wait_ready "$name"
  done
}

watch_started() {  # STOPPED [CHECK...]: every 10 s, end this process with the log of an instance
  # it started that died ("NAME$STOPPED"), and run CHECK (a command) too
  local name
  while true; do
    sleep 10 &
    SLEEPER=$!
    wait $SLEEPER    # bash runs traps between commands only: a bare sleep would delay them
    for name in "${STARTED[@]}"; do
      alive "$name" || { tail -n 40 "$(service_log "$name")" >&2 || true; fail "$name" "$name$1"; }
    done
    "${@:2}"
  done
}
