#!/usr/bin/env bash
# The tests' SLURM: Debian's slurm-wlm and munge, proctrack/linuxproc, fake GPUs (GRES backed
# by character devices that are /dev/null). Idempotent; needs root. By default a single node
# that is its own controller; a changed configuration restarts the daemons.
#   tests/slurm/start_slurm.sh          install (if needed), configure, start, wait for idle
#   tests/slurm/start_slurm.sh stop     shut this host's daemons down
# The Apptainer compute node (tests/slurm/node.sh) runs this same script inside its
# container, on the host's network: SLURMCTLD_PORT and SLURMD_PORT keep the two clusters apart.
# A multi-host cluster (tests/slurm/cluster.py) runs it on every host with the same
# SLURMCTLD_HOST, CLUSTER_NODES (comma-separated) and MUNGE_KEY (a key file to install), and
# CLUSTER_ROLE=ctld on the controller, CLUSTER_ROLE=node on each compute node. (Not SLURM_*
# names: a container's environment reaches every command run in it, and srun and sbatch
# read SLURM_* variables as options.)
set -euo pipefail

STATE=${SLURM_STATE_DIR:-/var/tmp/unmute-slurm}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
HOST=$(hostname -s)
SLURMCTLD_HOST=${SLURMCTLD_HOST:-$HOST}
CLUSTER_NODES=${CLUSTER_NODES:-$HOST}
CLUSTER_ROLE=${CLUSTER_ROLE:-both}
# Per node: two jobs with --gres=gpu:2 share a node, as on a 4-GPU machine.
GPUS=4
MUNGE_KEY=${MUNGE_KEY:-}

die() { echo "start_slurm: $*" >&2; exit 1; }

# NAME: a daemon of this cluster runs. Only this PID namespace counts: from the host, the
# Apptainer node container's slurmctld and munged are visible too, and are not ours.
running() { pgrep --ns $$ --nslist pid -x "$1" >/dev/null; }

# NAME...: TERM these daemons of this PID namespace and wait until they are gone.
stop_daemons() {
  local name i
  for name in "$@"; do
    pkill --ns $$ --nslist pid -x "$name" 2>/dev/null || continue
    for i in $(seq 1 30); do running "$name" || continue 2; sleep 0.5; done
    die "$name did not stop within 15 s"
  done
}

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  [[ $(id -u) == 0 ]] || die "installing slurm-wlm needs root"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

slurm_conf() {
  cat <<CONF
ClusterName=unmute-ci
SlurmctldHost=$SLURMCTLD_HOST
SlurmUser=root
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldLogFile=$STATE/log/ctld.log
SlurmdLogFile=$STATE/log/d.log
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
KillWait=30
NodeName=$CLUSTER_NODES CPUs=$(nproc) RealMemory=8000 Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$CLUSTER_NODES Default=YES MaxTime=INFINITE State=UP
CONF
}

# A GRES needs one device file per GPU; the Nth file is GPU N, which SLURM hands a job as
# CUDA_VISIBLE_DEVICES. Copies of /dev/null: nothing constrains devices, nothing opens them.
gres_conf() {
  local i
  for ((i = 0; i < GPUS; i++)); do echo "Name=gpu File=$STATE/dev/nvidia$i"; done
}

# FILE CONTENT: write FILE if it differs; the status says whether it did.
update() {
  [[ -f $1 ]] && [[ $(<"$1") == "$2" ]] && return 1
  printf '%s\n' "$2" >"$1"
}

configure() {
  mkdir -p "$STATE"/{state,spool,log,dev} /etc/slurm
  local i changed=0
  for ((i = 0; i < GPUS; i++)); do
    [[ -c $STATE/dev/nvidia$i ]] || mknod "$STATE/dev/nvidia$i" c 1 3
  done
  update /etc/slurm/slurm.conf "$(slurm_conf)" && changed=1
  update /etc/slurm/gres.conf "$(gres_conf)" && changed=1
  # `scontrol reconfigure` does not take a node's new GRES: restart what runs.
  ((changed)) && stop_daemons slurmctld slurmd
  if [[ -n $MUNGE_KEY ]] && ! cmp -s "$MUNGE_KEY" /etc/munge/munge.key; then
    install -o munge -g munge -m 0400 "$MUNGE_KEY" /etc/munge/munge.key
    stop_daemons munged
  fi
}

# Until this host's part is up: the controller answers, and this host's node is idle.
wait_ready() {
  local i
  for i in $(seq 1 60); do
    if [[ $CLUSTER_ROLE == ctld ]]; then
      scontrol ping 2>/dev/null | grep -q 'is UP' && { echo "slurm: controller up"; return; }
    elif sinfo -h -n "$HOST" -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "slurm: node $HOST idle"
      return
    elif ((i % 10 == 0)); then
      scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    fi
    sleep 1
  done
  tail -n 20 "$STATE"/log/*.log >&2 || true
  die "$HOST did not become ready (role $CLUSTER_ROLE)"
}

start() {
  mkdir -p /run/munge && chown munge:munge /run/munge
  running munged || runuser -u munge -- /usr/sbin/munged
  if [[ $CLUSTER_ROLE != node ]] && ! running slurmctld; then slurmctld; fi
  if [[ $CLUSTER_ROLE != ctld ]] && ! running slurmd; then slurmd; fi
  wait_ready
}

stop() {
  stop_daemons slurmd slurmctld munged
}

[[ $CLUSTER_ROLE =~ ^(both|ctld|node)$ ]] || die "CLUSTER_ROLE is both, ctld or node, not '$CLUSTER_ROLE'"
case ${1:-start} in
  start) install_packages; configure; start ;;
  stop) stop ;;
  *) die "usage: $0 [start|stop]" ;;
esac
