# shellcheck shell=bash
# What the batch script and its per-node steps share: messages, events, stopping, planning.
# Sourced (never run) with JOB_ID, NODE, RUNTIME and UNMUTE_DIR set.

# The job runs python from the checkout (slurm/plan.py, and for RUNTIME=host the services and
# their healthchecks) under umask 077: bytecode it wrote there would be unreadable to whoever
# builds the SIFs from the same checkout next (apptainer's %files copies whole folders).
export PYTHONDONTWRITEBYTECODE=1

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

python_bin() {  # the python that plans (and, for RUNTIME=host, runs the services)
  if [[ $RUNTIME == host ]]; then printf '%s' "$UNMUTE_DIR/.venv/bin/python"; else printf python3; fi
}

plan() {  # SUBCOMMAND ARGS...: slurm/plan.py (decides; its messages go to the job's output),
  # ending this process as die does with the one line it says on failure
  local error
  [[ $RUNTIME != host || -x $(python_bin) ]] || die "RUNTIME=host needs the project's virtual environment at $UNMUTE_DIR/.venv"
  command -v "$(python_bin)" >/dev/null || die "no python3 on $NODE: slurm/plan.py needs it"
  { error=$("$(python_bin)" "$UNMUTE_DIR/slurm/plan.py" "$@" --node "$NODE" 2>&1 >&3); } 3>&1 ||
    die "${error:-slurm/plan.py $1 failed}"
}

release_ports() {  # the port claims of this process (slurm/port_claims.py); never fails
  "$(python_bin)" "$UNMUTE_DIR/slurm/plan.py" release --owner $$ || log "could not release the port claims of $$" >&2
}
