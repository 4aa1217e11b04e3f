# shellcheck shell=bash
# Sourced by the CI tool scripts (tests/containers/docker.sh, tests/slurm/node.sh): where
# Debian packages come from, and how a single package is taken from a newer suite without
# upgrading anything else. Callers define log() and die().

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

# ROOT SUITE PACKAGE...: add SUITE to the apt sources of the system at ROOT (/ or a
# debootstrapped tree), with preferences that let apt take only PACKAGEs from it. Every
# other package of SUITE gets priority -1 (never installed, never an upgrade), so the
# PACKAGEs' dependencies still resolve from the system's own suite.
pin_debian_suite() {
  local root=$1 suite=$2
  shift 2
  local mirror
  mirror=$(debian_mirror)
  mkdir -p "$root/etc/apt/sources.list.d" "$root/etc/apt/preferences.d"
  cat >"$root/etc/apt/sources.list.d/unmute-$suite.sources" <<EOF
# Added by Unmute on SLURM's CI for: $*
Types: deb
URIs: $mirror
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  {
    echo "# Only these packages come from $suite (Unmute on SLURM's CI)."
    echo "Package: *"
    echo "Pin: release n=$suite"
    echo "Pin-Priority: -1"
    local package
    for package in "$@"; do
      echo
      echo "Package: $package"
      echo "Pin: release n=$suite"
      echo "Pin-Priority: 990"
    done
  } >"$root/etc/apt/preferences.d/unmute-$suite"
}

# ROOT: give the system at ROOT this machine's apt settings on release-file dates. Where
# the mirror is a dated snapshot, the host says not to check them, and a bootstrapped root
# must agree or its `apt-get update` refuses the snapshot as expired.
copy_apt_date_checks() {
  local root=$1 settings
  settings=$(apt-config dump | grep -E '^Acquire::Check-(Valid-Until|Date) ' || true)
  [[ -n $settings ]] || return 0
  mkdir -p "$root/etc/apt/apt.conf.d"
  printf '%s\n' "$settings" >"$root/etc/apt/apt.conf.d/99unmute-mirror-dates"
}
