#!/usr/bin/env bash
# A SLURM compute node with Apptainer, as a container image for the tests: a Debian trixie
# root bootstrapped from this machine's apt mirror (nothing pulled from a registry) holding
# trixie's slurm-wlm and munge and sid's apptainer (pinned to that one package: Apptainer
# needs glibc >= 2.38, which bookworm lacks). The tests run it privileged on the host's
# network with the repository bind-mounted at its own path; inside, an unprivileged user
# builds SIFs with --fakeroot and submits slurm/instances.sbatch, as on a cluster. (Root
# cannot run Apptainer here: this VM withholds CAP_SYS_RESOURCE.) tests/slurm/cluster.py
# runs three of them on a Docker network instead: a controller and two compute nodes.
#
#   tests/slurm/node.sh image     build localhost/unmute-node:trixie (root; skipped if it exists)
#   tests/slurm/node.sh init      the container's command: the user, SLURM, then wait
#
# init reads NODE_USER and NODE_UID (the user to create); start_slurm.sh reads its own
# settings (SLURMCTLD_PORT and SLURMD_PORT; CLUSTER_ROLE and the rest in a multi-host cluster).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/containers/debian.sh
source "$ROOT/tests/containers/debian.sh"

NODE_IMAGE=${NODE_IMAGE:-localhost/unmute-node:trixie}
NODE_ROOTFS=${NODE_ROOTFS:-/var/tmp/unmute-node-rootfs}
DOCKER_SH=$ROOT/tests/containers/docker.sh
# Apptainer's runtime needs (squashfuse mounts SIFs without root, uidmap for --fakeroot);
# python3 for the job's port check and secrets, python3-pydantic for the `unmute` command on
# the submit host (tests/slurm/test_apptainer_job.py); procps for the tests' process checks.
PACKAGES=ca-certificates,squashfs-tools,squashfuse,fuse2fs,uidmap,libseccomp2,libsqlite3-0,containernetworking-plugins,slurmctld,slurmd,slurm-client,munge,python3,python3-pydantic,procps

log() { printf '[node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

docker_cmd() { "$DOCKER_SH" docker "$@"; }

build_image() {
  if docker_cmd image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
    log "$NODE_IMAGE exists"
    return
  fi
  [[ $(id -u) == 0 ]] || die "building the node image needs root (debootstrap)"
  local mirror started=$SECONDS
  mirror=$(debian_mirror)
  log "bootstrapping Debian trixie with SLURM into $NODE_ROOTFS"
  rm -rf "$NODE_ROOTFS"
  debootstrap --variant=minbase --include="$PACKAGES" trixie "$NODE_ROOTFS" "$mirror" \
    >"$NODE_ROOTFS.log" 2>&1 || die "debootstrap failed; the end of $NODE_ROOTFS.log: $(tail -5 "$NODE_ROOTFS.log")"
  pin_debian_suite "$NODE_ROOTFS" sid apptainer
  copy_apt_date_checks "$NODE_ROOTFS"
  log "installing apptainer from sid"
  {
    chroot "$NODE_ROOTFS" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive chroot "$NODE_ROOTFS" apt-get install -y -qq --no-install-recommends apptainer
  } >>"$NODE_ROOTFS.log" 2>&1 || die "installing apptainer failed; the end of $NODE_ROOTFS.log: $(tail -5 "$NODE_ROOTFS.log")"
  log "$(chroot "$NODE_ROOTFS" dpkg-query -W apptainer)"
  rm -rf "$NODE_ROOTFS"/var/cache/apt/archives/*.deb "$NODE_ROOTFS"/var/lib/apt/lists/*
  tar -C "$NODE_ROOTFS" --exclude=./proc --exclude=./sys --exclude=./dev -c . |
    docker_cmd import - "$NODE_IMAGE" >/dev/null
  rm -rf "$NODE_ROOTFS" "$NODE_ROOTFS.log"
  log "imported $NODE_IMAGE in $((SECONDS - started)) s"
}

# Inside the container: the cluster user, with subordinate ids for --fakeroot builds.
add_user() {
  local user=${NODE_USER:?NODE_USER is not set} uid=${NODE_UID:?NODE_UID is not set}
  id "$user" >/dev/null 2>&1 && return
  useradd --uid "$uid" --create-home --shell /bin/bash "$user"
  echo "$user:200000:65536" >>/etc/subuid
  echo "$user:200000:65536" >>/etc/subgid
}

init() {
  add_user
  "$HERE/start_slurm.sh"
  log "node ready: user $NODE_USER, role ${CLUSTER_ROLE:-both}, slurmctld on port ${SLURMCTLD_PORT:-6817}"
  # PID 1 only waits; the daemons run detached as on a real node.
  exec sleep infinity
}

case ${1:-} in
  image) build_image ;;
  init) init ;;
  *) die "usage: $0 image|init" ;;
esac
