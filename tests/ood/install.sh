#!/usr/bin/env bash
# What the Open OnDemand app's tests need from Debian: ruby (erb renders the app's templates)
# and nginx (the portal's rnode proxy). Idempotent; needs root. Keeps nginx's own service
# from starting on port 80 while it is installed: the tests run their own instances.
set -euo pipefail

missing=()
command -v erb >/dev/null || missing+=(ruby)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
((${#missing[@]})) || exit 0
[[ $(id -u) == 0 ]] || { echo "tests/ood/install.sh: installing ${missing[*]} needs root" >&2; exit 1; }
policy=/usr/sbin/policy-rc.d
if [[ -e $policy ]]; then
  policy=   # the machine's own policy stays as it is
else
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
fi
trap '[[ -z $policy ]] || rm -f "$policy"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
