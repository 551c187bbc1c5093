#!/bin/sh
# Installs the Debian packages lastword needs, only those missing.
# Usage: scripts/deps.sh [build|lab|bench|all]   (default: build)
# Every package is justified in README.md ("Dependencies").
set -eu
set_pkgs() {
  case "$1" in
    build) echo "cmake pkg-config python3 libcmocka-dev libpcap-dev liburing-dev iproute2 nftables curl nginx systemd wrk" ;;
    lab)   echo "cmake pkg-config python3 libcmocka-dev libpcap-dev liburing-dev iproute2 nftables" ;;
    fuzz)  echo "clang libclang-rt-14-dev" ;;
    uring) echo "liburing-dev" ;;
    bench) echo "cmake pkg-config python3 libuv1-dev libevent-dev nginx gnuplot-nox valgrind strace" ;;
    all)   echo "cmake pkg-config python3 libcmocka-dev libpcap-dev liburing-dev iproute2 nftables clang libclang-rt-14-dev" ;;
    *) echo "deps.sh: unknown set '$1'" >&2; exit 2 ;;
  esac
}
want=$(set_pkgs "${1:-build}")
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages:$missing (run as root, or install them yourself)" >&2
  exit 1
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# apt-get install fails on a machine whose package lists were never fetched: update first
# only when an install attempt fails, so a warm machine pays nothing.
apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends $missing >/dev/null
}
