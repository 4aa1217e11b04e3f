# shellcheck shell=bash
# What the batch script and its per-node steps share: messages, settings, secrets and ports.
# Sourced (never run) with JOB_ID, NODE, RUNTIME and UNMUTE_DIR set.

log() { printf '%s unmute[%s]: %s\n' "$(date +%H:%M:%S)" "$JOB_ID" "$*"; }
die() { event error - "$*"; log "ERROR: $*" >&2; exit 1; }

# The job's progress for the `unmute` command (docs/cli.md): each writer (the batch script,
# each node's step, the orchestrator's step) appends to a file of its own under
# $JOB_DIR/events, so that no two hosts ever append to one file on a shared file system.
EVENTS_FILE=   # set by the writer once $JOB_DIR exists

event() {  # EVENT SUBJECT TEXT: one line "time node event subject text", tab-separated; never fails
  [[ -n $EVENTS_FILE ]] || return 0
  local text=${3:-}
  printf '%s\t%s\t%s\t%s\t%s\n' "$(date +%s)" "$NODE" "$1" "$2" "${text//[$'\t\n']/ }" >>"$EVENTS_FILE" 2>/dev/null || true
}

start_events() {  # WRITER: this process's events file under $JOB_DIR/events
  mkdir -p "$JOB_DIR/events" && EVENTS_FILE=$JOB_DIR/events/$1
}

keep_stopping() {  # in a stop path: a second TERM or INT (scancel again, the time limit, srun
  # passing on a TERM the step also got from SLURM) must not kill the clean-up halfway and
  # leave instances running; SLURM's KILL after KillWait remains the hard stop
  trap - EXIT
  trap 'log "another stop signal: still stopping"' TERM INT
}

python_bin() {
  if [[ $RUNTIME == host ]]; then printf '%s' "$UNMUTE_DIR/.venv/bin/python"; else command -v python3; fi
}

env_get() {  # KEY: the value in the environment, else in ENV_FILE (plain KEY=value lines)
  local key=$1
  if [[ -n ${!key:-} ]]; then printf '%s' "${!key}"; return; fi
  grep -E "^${key}=" "$ENV_FILE" 2>/dev/null | tail -n 1 | cut -d= -f2- || true
}

secret() { "$(python_bin)" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

node_address() {  # this node's address as the other nodes reach it
  "$(python_bin)" -c 'import socket; print(socket.gethostbyname(socket.gethostname()))'
}

# ---- ports: chosen and claimed under one node-wide lock ----------------------------------
# Two jobs that start at the same moment from the same .env must not both take a port that
# is free now and bound minutes later (vLLM loads for minutes). Every job on the node picks
# its ports while holding PORT_CLAIMS/.lock and leaves a claim (a directory naming its
# owner's pid) for each; a port with a live claim is not free, a claim whose owner is gone
# (a job that was SIGKILLed) is taken over. The claims go when the job ends.

PORT_CLAIMS=${PORT_CLAIMS_DIR:-/tmp/unmute-port-claims}
PORT_LOCK_FD=

lock_ports() {
  if [[ ! -d $PORT_CLAIMS ]]; then
    mkdir -p "$PORT_CLAIMS" 2>/dev/null || die "cannot create the port claims directory $PORT_CLAIMS (PORT_CLAIMS_DIR)"
    chmod 1777 "$PORT_CLAIMS" 2>/dev/null || true   # shared by every user's jobs, like /tmp
  fi
  (umask 000 && : >>"$PORT_CLAIMS/.lock") 2>/dev/null || true
  exec {PORT_LOCK_FD}<>"$PORT_CLAIMS/.lock" || die "cannot open $PORT_CLAIMS/.lock"
  flock --timeout 60 "$PORT_LOCK_FD" || die "another job has held the port lock $PORT_CLAIMS/.lock for 60 s"
}

unlock_ports() { [[ -z $PORT_LOCK_FD ]] || exec {PORT_LOCK_FD}>&-; PORT_LOCK_FD=; }

port_bindable() {  # PORT: nothing listens on it on this node
  "$(python_bin)" - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

claim_port() {  # PORT: claim it for this process if nobody else has (call under lock_ports)
  local port=$1 claim=$PORT_CLAIMS/$1 owner
  if [[ -d $claim ]]; then
    owner=$(cut -d' ' -f1 "$claim/owner" 2>/dev/null || true)
    [[ -n $owner && -d /proc/$owner ]] && return 1
    rm -rf "$claim" 2>/dev/null || return 1   # another user's stale claim: leave the port alone
  fi
  port_bindable "$port" || return 1
  mkdir "$claim" 2>/dev/null || return 1
  echo "$$ $JOB_ID $(id -un)" >"$claim/owner"
}

pick_port() {  # NAME DEFAULT: the default port if free, else a free one (said so); claimed
  local name=$1 port=${2:-}
  if [[ -n $port ]] && claim_port "$port"; then printf '%s' "$port"; return; fi
  local candidate
  for candidate in $(seq 20000 29999 | shuf -n 200); do
    if claim_port "$candidate"; then
      [[ -z $port ]] || log "port $port for $name is taken on $NODE; using $candidate" >&2
      printf '%s' "$candidate"; return
    fi
  done
  die "no free port for $name on $NODE"
}

release_ports() {  # every claim this process made
  local owner
  for owner in "$PORT_CLAIMS"/*/owner; do
    [[ -f $owner && $(cut -d' ' -f1 "$owner") == "$$" ]] && rm -rf "$(dirname "$owner")"
  done
  return 0
}
