#!/usr/bin/env bash
# Installs the Debian packages the tests need (real BGP daemons), only when missing.
# Daemons must not start as services: the lab starts its own instances per test.
set -euo pipefail
need=()
command -v bird >/dev/null 2>&1 || need+=(bird2)
command -v gobgpd >/dev/null 2>&1 || need+=(gobgpd)
[ -x /usr/lib/frr/bgpd ] || need+=(frr)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)  # traffic between namespaces
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-debs: missing ${need[*]} and not root; install them with apt-get" >&2
  exit 1
fi
echo "install-debs: installing ${need[*]}"
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  # Keep the packages' own service units from starting a daemon on port 179.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
