#!/usr/bin/env bash
# The CI's one container engine: Docker Engine (Debian's docker.io) with Docker Compose v2
# (Debian sid's docker-compose, pinned to that one package), on a machine that reaches no
# container registry. The daemon is the project's own (its own data root and socket), so it
# never touches a Docker the machine already runs. A minimal Debian base is bootstrapped
# from the apt mirror this machine already uses and passed to the project's Dockerfiles as
# BASE_IMAGE; production builds keep the Dockerfiles' default base.
#
#   tests/containers/docker.sh             install, start the daemon, bootstrap the base, build all
#   tests/containers/docker.sh install     docker.io and docker-compose (root)
#   tests/containers/docker.sh start|stop  the project's daemon (socket: $UNMUTE_DOCKER_HOST)
#   tests/containers/docker.sh base        only the base image
#   tests/containers/docker.sh build       only the three images (base must exist)
#   tests/containers/docker.sh sizes       a Markdown table of the image sizes
#   tests/containers/docker.sh docker ...  the docker CLI against the project's daemon
#
# A site behind a TLS-inspecting proxy: CA_BUNDLE (default: the system bundle) is passed
# to pip as the `ca_bundle` build secret and never stored in a layer.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/containers/debian.sh
source "$HERE/debian.sh"

SUITE=${DEBIAN_SUITE:-bookworm}
BASE_IMAGE=localhost/debian-base:$SUITE
# The names compose.yaml gives the images, so that compose runs what was built here.
image_name() { echo "localhost/unmute-slurm/$1:dev"; }
STATE=${UNMUTE_DOCKER_STATE:-/var/lib/unmute-docker}
RUN_DIR=${UNMUTE_DOCKER_RUN:-/run/unmute-docker}
export DOCKER_HOST=unix://$RUN_DIR/docker.sock
# This kind of machine ships another docker CLI in /usr/local/bin; use Debian's.
DOCKER=${DOCKER:-/usr/bin/docker}
COMPOSE_PLUGIN=/usr/libexec/docker/cli-plugins/docker-compose
ROOTFS=${ROOTFS_DIR:-/var/tmp/unmute-rootfs-$SUITE}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
SERVICES=(stt tts orchestrator)

log() { printf '[docker %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_tools() {
  local missing=()
  [[ -x $DOCKER ]] && command -v dockerd >/dev/null || missing+=(docker.io)
  [[ -x $COMPOSE_PLUGIN ]] || missing+=(docker-compose)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run '$0 install' as root"
  # Compose v2 is not in bookworm; sid's build needs only glibc >= 2.34.
  pin_debian_suite / sid docker-compose
  log "installing ${missing[*]} (docker-compose from sid, pinned to that package)"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
  [[ -x $COMPOSE_PLUGIN ]] || die "docker-compose installed no CLI plugin at $COMPOSE_PLUGIN"
}

docker_cmd() { "$DOCKER" "$@"; }

daemon_running() { [[ -S $RUN_DIR/docker.sock ]] && docker_cmd info >/dev/null 2>&1; }

start_daemon() {
  if daemon_running; then
    log "dockerd already serves $DOCKER_HOST"
    return
  fi
  [[ $(id -u) == 0 ]] || die "starting dockerd needs root"
  mkdir -p "$STATE" "$RUN_DIR"
  # overlay2 shares layers between images and containers (vfs copies the whole tree per
  # container: 7 GB each for the model images). No iptables changes beyond Docker's own
  # bridge; nothing listens on TCP.
  log "starting dockerd (data root $STATE, socket $RUN_DIR/docker.sock)"
  nohup dockerd --data-root "$STATE/root" --exec-root "$RUN_DIR/exec" --pidfile "$RUN_DIR/dockerd.pid" \
    -H "$DOCKER_HOST" --storage-driver overlay2 >"$STATE/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    daemon_running && { log "dockerd up ($(docker_cmd info --format '{{.Driver}} on {{.DriverStatus}}'))"; return; }
    kill -0 "$!" 2>/dev/null || break
    sleep 1
  done
  tail -n 20 "$STATE/dockerd.log" >&2 || true
  die "dockerd did not start (log: $STATE/dockerd.log)"
}

stop_daemon() {
  local pid
  pid=$(cat "$RUN_DIR/dockerd.pid" 2>/dev/null) || { log "no dockerd pid file"; return; }
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || { log "dockerd stopped"; return; }; sleep 1; done
  die "dockerd ($pid) did not stop within 30 s"
}

build_base() {
  if docker_cmd image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE exists"
    return
  fi
  [[ $(id -u) == 0 ]] || die "debootstrap needs root"
  local mirror
  mirror=$(debian_mirror)
  log "bootstrapping Debian $SUITE from $mirror into $ROOTFS"
  rm -rf "$ROOTFS"
  # python3 + venv is all the Dockerfiles and .def files need from a base; minbase keeps it small.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$mirror" >"$ROOTFS.log" 2>&1 ||
    die "debootstrap failed; the end of $ROOTFS.log: $(tail -5 "$ROOTFS.log")"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" -c . | docker_cmd import - "$BASE_IMAGE" >/dev/null
  rm -rf "$ROOTFS" "$ROOTFS.log"
  log "imported $BASE_IMAGE"
}

build_images() {
  docker_cmd image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "no $BASE_IMAGE: run '$0 base' first"
  local secret=()
  [[ -s $CA_BUNDLE ]] && secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
  local service started
  for service in "${SERVICES[@]}"; do
    started=$SECONDS
    log "building $(image_name "$service")"
    # BuildKit: the Dockerfiles' secret mounts need it. --network host: the build's pip
    # reaches PyPI the way this machine does.
    DOCKER_BUILDKIT=1 docker_cmd build --progress plain --network host "${secret[@]}" \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$ROOT/containers/$service.Dockerfile" \
      -t "$(image_name "$service")" "$ROOT" ||
      die "building $service failed (see the build output above)"
    log "built $service in $((SECONDS - started)) s"
  done
  # Layers an earlier build left untagged: on a 7 GB image they are what fills a disk.
  docker_cmd image prune --force >/dev/null
}

sizes() {
  local service
  echo "| image | size |"
  echo "|---|---|"
  for service in "${SERVICES[@]}"; do
    echo "| $(image_name "$service") | $(docker_cmd image inspect --format '{{.Size}}' \
      "$(image_name "$service")" | numfmt --to=si --suffix=B) |"
  done
}

main() {
  case ${1:-all} in
    all) install_tools && start_daemon && build_base && build_images ;;
    install) install_tools ;;
    start) start_daemon ;;
    stop) stop_daemon ;;
    base) build_base ;;
    build) build_images ;;
    sizes) sizes ;;
    docker) shift && docker_cmd "$@" ;;
    *) die "unknown command '$1' (all, install, start, stop, base, build, sizes, docker ...)" ;;
  esac
}

main "$@"
