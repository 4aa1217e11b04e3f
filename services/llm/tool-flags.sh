#!/usr/bin/env bash
# The flags that make vLLM serve tool calls, one per line (docs/orchestrator.md, Tool calls), from:
#   LLM_TOOL_CALL_PARSER  vLLM's --tool-call-parser (hermes, llama3_json, mistral, ...), or off;
#                         empty: pythonic for a Gemma 3 LLM_MODEL, off for any other
#   LLM_CHAT_TEMPLATE     a template of this directory by name (gemma3-tools), a path inside
#                         the container, or model (the model's own); empty: gemma3-tools for
#                         a Gemma 3 LLM_MODEL, model for any other
#   LLM_TEMPLATE_DIR      where this directory is in the container (/opt/unmute/llm)
# Run by apptainer/vllm.def's %startscript and compose.yaml's llm service, printed by the
# SLURM job (slurm/plan.py), so all three start vLLM alike.
set -euo pipefail

case ${LLM_MODEL:-google/gemma-3-12b-it} in
  *gemma-3*) parser=${LLM_TOOL_CALL_PARSER:-pythonic} template=${LLM_CHAT_TEMPLATE:-gemma3-tools} ;;
  *) parser=${LLM_TOOL_CALL_PARSER:-off} template=${LLM_CHAT_TEMPLATE:-model} ;;
esac
[[ $parser == off ]] && exit 0
printf '%s\n' --enable-auto-tool-choice --tool-call-parser "$parser"
case $template in
  model) ;;
  */*) printf '%s\n' --chat-template "$template" ;;
  *) printf '%s\n' --chat-template "${LLM_TEMPLATE_DIR:-/opt/unmute/llm}/$template.jinja" ;;
esac
