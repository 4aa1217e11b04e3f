# shellcheck shell=bash
# Sourced by bench/gpu_run.sh and bench/gpu_e2e.sh: wheels for a GPU machine that has
# python3 with a CUDA torch but no network. Callers define log() and die().

# DEST PYTHON_VERSION SPEC...: download exactly SPECs (no dependencies) as binary wheels for
# CPython PYTHON_VERSION on x86_64 Linux into DEST, replacing what was there.
download_wheels() {
  local dest=$1 python=$2
  shift 2
  local platforms=(--platform manylinux2014_x86_64) n
  # pip matches manylinux tags exactly: offer every glibc version the target can run.
  for n in $(seq 17 39); do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
  rm -rf "$dest" && mkdir -p "$dest"
  log "downloading $# wheels for CPython $python into $dest"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dest" \
    --python-version "$python" --implementation cp "${platforms[@]}" "$@" || die "pip download failed"
  du -sh "$dest" >&2
}
