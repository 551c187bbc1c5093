#!/bin/sh
# bench/run.sh - builds the bench programs and runs the benchmarks side by side.
#   sh bench/run.sh [--build DIR] [--quick] [other options of bench/bench.py]
# Expects `make build` (the library and examples/respond in DIR) and the bench packages
# (scripts/deps.sh bench). Programs go to DIR/bench/, results to bench/results/.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=build
PASS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    *) PASS="$PASS $1"; shift ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
LIB="$BUILD/liblastword.a"
[ -f "$LIB" ] && [ -x "$BUILD/examples/respond" ] && [ -x "$BUILD/examples/httpd" ] || {
  echo "bench: $LIB or $BUILD/examples/{respond,httpd} missing: run 'make build' first" >&2; exit 1; }
OUT="$BUILD/bench"
mkdir -p "$OUT"
CC=${CC:-cc}
CFLAGS="-std=c11 -O2 -g -Wall -Wextra -Werror"
# The library may be built with its io_uring backend: then it needs liburing to link.
LWLIBS=""
if nm "$LIB" 2>/dev/null | grep -q ' U io_uring_'; then LWLIBS=$(pkg-config --libs liburing); fi
S="$ROOT/bench"
$CC $CFLAGS "$S/loadgen.c" -o "$OUT/loadgen"
$CC $CFLAGS "$S/restartload.c" -o "$OUT/restartload"
$CC $CFLAGS "$S/raw_epoll.c" -o "$OUT/raw_epoll"
$CC $CFLAGS "$S/uv_server.c" -o "$OUT/uv_server" $(pkg-config --cflags --libs libuv)
$CC $CFLAGS "$S/ev_server.c" -o "$OUT/ev_server" $(pkg-config --cflags --libs libevent)
$CC $CFLAGS -I"$ROOT/include" "$S/lw_echo.c" "$LIB" $LWLIBS -o "$OUT/lw_echo"
exec python3 "$S/bench.py" --bin "$OUT" --respond "$BUILD/examples/respond" \
  --httpd "$BUILD/examples/httpd" \
  --results "$S/results" $PASS
