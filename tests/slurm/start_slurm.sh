#!/usr/bin/env bash
# A single-node SLURM for the tests: Debian's slurm-wlm and munge, one node with a fake
# GPU (GRES backed by /dev/null), proctrack/linuxproc. Idempotent; needs root.
#   tests/slurm/start_slurm.sh          install (if needed), configure, start, wait for idle
#   tests/slurm/start_slurm.sh stop     shut the daemons down
# The Apptainer compute node (tests/slurm/node.sh) runs this same script inside its
# container, on the host's network: SLURMCTLD_PORT and SLURMD_PORT keep the two clusters apart.
set -euo pipefail

STATE=${SLURM_STATE_DIR:-/var/tmp/unmute-slurm}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}

die() { echo "start_slurm: $*" >&2; exit 1; }

# NAME: a daemon of this cluster runs. Only this PID namespace counts: from the host, the
# Apptainer node container's slurmctld and munged are visible too, and are not ours.
running() { pgrep --ns $$ --nslist pid -x "$1" >/dev/null; }

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  [[ $(id -u) == 0 ]] || die "installing slurm-wlm needs root"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

configure() {
  local host
  host=$(hostname -s)
  mkdir -p "$STATE"/{state,spool,log} /etc/slurm
  cat >/etc/slurm/slurm.conf <<CONF
ClusterName=unmute-ci
SlurmctldHost=$host
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
NodeName=$host CPUs=$(nproc) RealMemory=8000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  echo "NodeName=$host Name=gpu File=/dev/null" >/etc/slurm/gres.conf  # a GRES needs a device file
}

start() {
  mkdir -p /run/munge && chown munge:munge /run/munge
  running munged || runuser -u munge -- /usr/sbin/munged
  if running slurmctld; then scontrol reconfigure >/dev/null; else slurmctld; fi
  running slurmd || slurmd
  local i
  for i in $(seq 1 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then echo "slurm: node idle"; return; fi
    if ((i % 10 == 0)); then scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true; fi
    sleep 1
  done
  tail -n 20 "$STATE"/log/*.log >&2 || true
  die "the node did not become idle"
}

stop() {
  scontrol shutdown >/dev/null 2>&1 || true
  pkill --ns $$ --nslist pid -x munged 2>/dev/null || true
}

case ${1:-start} in
  start) install; configure; start ;;
  stop) stop ;;
  *) die "usage: $0 [start|stop]" ;;
esac
