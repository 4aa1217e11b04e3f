# shellcheck shell=bash
# The model services of one node: plan them over the node's GPUs, give each a port, start
# them in order, and say where they listen. Used by the batch script on a one-node job and
# by slurm/node-services (one srun step per node) on a multi-node job. Sourced after
# common.sh and instances.sh.
# shellcheck disable=SC2004  # INST_* are associative arrays (instances.sh): the $ is needed

MODEL_INSTANCES=()   # this node's stt*, tts*, llm instances, in start order

external_llm() { [[ -n $(env_get LLM_URL) ]]; }  # else each node runs its own vLLM

node_gpus() {  # the GPU ids SLURM gave this job on this node
  printf '%s' "${CUDA_VISIBLE_DEVICES:-${SLURM_JOB_GPUS:-}}"
}

plan_node() {  # fill the instance table from slurm/placement.py, or end with its reason
  local rows name service devices memory args=(--gpus "$(node_gpus)" --format rows)
  external_llm && args+=(--external-llm)
  rows=$(env STT_GPUS="$(env_get STT_GPUS)" TTS_GPUS="$(env_get TTS_GPUS)" LLM_GPUS="$(env_get LLM_GPUS)" \
    LLM_TENSOR_PARALLEL_SIZE="$(env_get LLM_TENSOR_PARALLEL_SIZE)" \
    LLM_GPU_MEMORY_UTILIZATION="$(env_get LLM_GPU_MEMORY_UTILIZATION)" \
    STT_MODEL="$(env_get STT_MODEL)" STT_BATCH_SIZE="$(env_get STT_BATCH_SIZE)" \
    TTS_MODEL="$(env_get TTS_MODEL)" TTS_BATCH_SIZE="$(env_get TTS_BATCH_SIZE)" \
    "$(python_bin)" "$UNMUTE_DIR/slurm/placement.py" "${args[@]}" 2>&1) ||
    die "no GPU placement for $NODE (GPUs: $(node_gpus || true)${SLURM_GPUS_ON_NODE:+, $SLURM_GPUS_ON_NODE from SLURM}): ${rows#placement: }"
  MODEL_INSTANCES=()
  while IFS=$'\t' read -r name service devices memory; do
    add_instance "$name" "$service" "$devices" "$memory"
    MODEL_INSTANCES+=("$name")
  done <<<"$rows"
}

assign_ports() {  # NAME...: the first of each service gets the .env port, replicas a free one
  local name service
  lock_ports
  for name in "$@"; do
    service=${INST_SERVICE[$name]}
    if [[ $name == "$service" ]]; then INST_PORT[$name]=$(pick_port "$name" "$(env_get "${service^^}_PORT")")
    else INST_PORT[$name]=$(pick_port "$name" ""); fi
  done
  unlock_ports
}

llm_setting() { local value; value=$(env_get "$1"); printf '%s' "${value:-$2}"; }  # KEY DEFAULT (vllm.def's)

vllm_command() {  # NAME: what apptainer/vllm.def's %startscript runs (its key stays in the environment)
  local name=$1
  local -a tools
  # The tool-call flags as the image's services/llm/tool-flags.sh makes them from the job's settings.
  mapfile -t tools < <(env LLM_MODEL="$(env_get LLM_MODEL)" LLM_TOOL_CALL_PARSER="$(env_get LLM_TOOL_CALL_PARSER)" \
    LLM_CHAT_TEMPLATE="$(env_get LLM_CHAT_TEMPLATE)" bash "$UNMUTE_DIR/services/llm/tool-flags.sh")
  printf 'CUDA_VISIBLE_DEVICES=%s vllm serve %s --host %s --port %s --tensor-parallel-size %s --gpu-memory-utilization %s --max-model-len %s --limit-mm-per-prompt %s%s' \
    "${INST_DEVICES[$name]}" "$(llm_setting LLM_MODEL google/gemma-3-12b-it)" "$MODEL_HOST" "${INST_PORT[$name]}" \
    "$(device_count "$name")" "${INST_MEMORY[$name]}" "$(llm_setting LLM_MAX_MODEL_LEN 8192)" "'{\"image\": 0}'" \
    "${tools[*]:+ ${tools[*]}}"
}

print_plan() {  # the placement plan as the user reads it
  local name
  log "placement on $NODE (GPUs from SLURM: $(node_gpus || true)):"
  for name in "${MODEL_INSTANCES[@]}"; do
    printf '  %-6s CUDA_VISIBLE_DEVICES=%-10s port %-6s %s\n' "$name" "${INST_DEVICES[$name]:-(none)}" \
      "${INST_PORT[$name]}" "$([[ ${INST_SERVICE[$name]} == llm ]] && echo "memory ${INST_MEMORY[$name]}, tensor parallel $(device_count "$name")" || echo "memory ${INST_MEMORY[$name]}")"
  done
  for name in "${MODEL_INSTANCES[@]}"; do
    [[ ${INST_SERVICE[$name]} == llm ]] && printf '  vllm command: %s\n' "$(vllm_command "$name")"
  done
  return 0
}

start_models() {  # every model instance of this node, each ready before the next starts
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

endpoint_lines() {  # ADDRESS: "service url" for each model instance, for the orchestrator's lists
  local name address=$1
  for name in "${MODEL_INSTANCES[@]}"; do
    case ${INST_SERVICE[$name]} in
      llm) printf 'llm http://%s:%s/v1\n' "$address" "${INST_PORT[$name]}" ;;
      *) printf '%s ws://%s:%s\n' "${INST_SERVICE[$name]}" "$address" "${INST_PORT[$name]}" ;;
    esac
  done
}
