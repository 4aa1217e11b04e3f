#!/usr/bin/env bash
# Build the project's stt, tts and orchestrator images with Podman on a machine that can
# reach no container registry (CI): a minimal Debian base is bootstrapped from the apt
# mirror this machine already uses and passed to the project's own Dockerfiles as
# BASE_IMAGE. Production builds keep the Dockerfiles' default base.
#
#   tests/containers/images.sh            install what is missing, bootstrap the base, build all
#   tests/containers/images.sh base       only the base image
#   tests/containers/images.sh build      only the three images (base must exist)
#   tests/containers/images.sh sizes      a Markdown table of the image sizes
#   tests/containers/images.sh podman ... podman with the flags below (e.g. `podman ps -a`)
#
# Podman runs with vfs storage, cgroupfs and runc: the combination that works inside an
# unprivileged CI VM without overlayfs or systemd. Override with PODMAN="podman ...".
# A site behind a TLS-inspecting proxy: CA_BUNDLE (default: the system bundle) is passed
# to pip as a build secret and never stored in a layer.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE=${DEBIAN_SUITE:-bookworm}
BASE_IMAGE=localhost/debian-base:$SUITE
# The names compose.yaml gives the images, so that compose runs what was built here.
image_name() { echo "localhost/unmute-slurm/$1:dev"; }
ROOTFS=${ROOTFS_DIR:-/var/tmp/unmute-rootfs-$SUITE}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# Podman's default nofile ulimit is refused inside this kind of VM; a project file keeps
# that setting out of the machine's own /etc/containers.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/tests/containers/containers.conf}
read -r -a PODMAN <<<"${PODMAN:-podman --storage-driver vfs --cgroup-manager cgroupfs --runtime runc}"
SERVICES=(stt tts orchestrator)

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The first deb822 URIs line, else the first classic `deb` line: the mirror apt already trusts.
debian_mirror() {
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
  fi
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [[ -n $uri ]] || die "no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
  echo "$uri"
}

podman_cmd() { "${PODMAN[@]}" "$@"; }

build_base() {
  if podman_cmd image exists "$BASE_IMAGE"; then
    log "$BASE_IMAGE exists"
    return
  fi
  [[ $(id -u) == 0 ]] || die "debootstrap needs root"
  local mirror
  mirror=$(debian_mirror)
  log "bootstrapping Debian $SUITE from $mirror into $ROOTFS"
  rm -rf "$ROOTFS"
  # python3 + venv is all the Dockerfiles need from a base; minbase keeps it small.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$mirror" >"$ROOTFS.log" 2>&1 ||
    die "debootstrap failed; the end of $ROOTFS.log: $(tail -5 "$ROOTFS.log")"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" -c . | podman_cmd import --quiet - "$BASE_IMAGE" >/dev/null
  rm -rf "$ROOTFS" "$ROOTFS.log"
  log "imported $BASE_IMAGE"
}

build_images() {
  podman_cmd image exists "$BASE_IMAGE" || die "no $BASE_IMAGE: run '$0 base' first"
  local secret=()
  [[ -s $CA_BUNDLE ]] && secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
  local service started
  for service in "${SERVICES[@]}"; do
    started=$SECONDS
    log "building $(image_name "$service")"
    # Nothing of an older build is reused (no layer cache), and under vfs it costs its
    # full size on disk while the new one is built: drop it first.
    podman_cmd rmi --force "$(image_name "$service")" >/dev/null 2>&1 || true
    # --format docker keeps the Dockerfile's HEALTHCHECK (OCI image configs have none);
    # --isolation chroot because an unprivileged VM cannot nest runc's namespaces;
    # --layers=false because vfs stores every intermediate step as a full copy of the
    # multi-GB tree (a cached build filled 54 GB): each image is one layer over the base.
    podman_cmd build --format docker --isolation chroot --network host --layers=false "${secret[@]}" \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$ROOT/containers/$service.Dockerfile" \
      -t "$(image_name "$service")" "$ROOT" ||
      die "building $service failed (see the build output above)"
    log "built $service in $((SECONDS - started)) s"
  done
}

sizes() {
  local service
  echo "| image | size |"
  echo "|---|---|"
  for service in "${SERVICES[@]}"; do
    echo "| $(image_name "$service") | $(podman_cmd image inspect --format '{{.Size}}' \
      "$(image_name "$service")" | numfmt --to=si --suffix=B) |"
  done
}

main() {
  case ${1:-all} in
    all) install_tools && build_base && build_images ;;
    base) build_base ;;
    build) build_images ;;
    sizes) sizes ;;
    podman) shift && podman_cmd "$@" ;;
    *) die "unknown command '$1' (all, base, build, sizes, podman ...)" ;;
  esac
}

main "$@"
