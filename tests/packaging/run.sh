#!/bin/sh
# The packaging test: lastword as its users get it.
#   1. configure with one install prefix, build, install into ANOTHER chosen only at
#      install time (cmake --install B --prefix P), then move P: the installed copy must
#      not depend on either path;
#   2. consumer.c built against the installed copy through pkg-config (shared, then
#      --static) and through find_package(lastword CONFIG) (lastword::lastword, _static,
#      _shared), each run;
#   3. consumer.c built with lastword as a subproject: add_subdirectory and FetchContent
#      (from this source tree: no network), each run; tests/tools/examples/-Werror off;
#   4. the library configured and built with libpcap, cmocka and liburing hidden
#      (LW_FORCE_NO_PCAP, LW_FORCE_NO_CMOCKA, LW_WITH_URING=OFF): the library alone
#      builds, and the configure says in one line each what is off.
# Usage: run.sh SOURCE_DIR WORK_DIR [CC]. Exit 0 pass, 1 fail, 77 skip (reason printed).
# Prints every command it runs, with its output.
set -eu
SRC=$(cd "$1" && pwd)
W=$2
CC=${3:-cc}
HERE="$SRC/tests/packaging"
start=$(date +%s)
command -v pkg-config >/dev/null 2>&1 || { echo "packaging: SKIP: no pkg-config"; exit 77; }
rm -rf "$W"
mkdir -p "$W"
fail() { echo "packaging: FAIL: $*"; exit 1; }
run() { echo "\$ $*"; "$@" || fail "exit status $?: $*"; }
# Same, the output filtered of CMake's progress lines (dash has no pipefail).
runq() {
  echo "\$ $*"
  if "$@" >"$W/cmd.log" 2>&1; then q <"$W/cmd.log"; else
    rc=$?; cat "$W/cmd.log"; fail "exit status $rc: $*"
  fi
}
# The library only, in every build here (-j2: the machine is shared).
LIBONLY="-DLW_BUILD_TESTS=OFF -DLW_BUILD_TOOLS=OFF -DLW_BUILD_EXAMPLES=OFF"
q() { grep -v "^-- \(Check\|Detect\|Looking\|Perform\|The C compiler\|Configuring done\|Generating done\|Build files\)\|^\[ *[0-9]*%\] \(Building\|Linking\)\|^-- \(Up-to-date\|Installing\):" || true; }

echo "== 1. build, install with --prefix chosen at install time, move the prefix"
runq cmake -S "$SRC" -B "$W/lib" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$W/configured-prefix" $LIBONLY
runq cmake --build "$W/lib" -j2
runq cmake --install "$W/lib" --prefix "$W/stage"
[ ! -e "$W/configured-prefix" ] || fail "something was installed into the configure-time prefix"
run mv "$W/stage" "$W/prefix"
P="$W/prefix"
(cd "$P" && find . -type f -o -type l | sort)
PC=$(find "$P" -name lastword.pc)
[ -n "$PC" ] || fail "no lastword.pc installed"
run cat "$PC"
SO=$(find "$P" -name 'liblastword.so.*.*.*')
echo "\$ readelf -d $SO | grep NEEDED"
readelf -d "$SO" | grep NEEDED
if grep -q "^Requires.private: liburing" "$PC" || grep -q "^Libs.private:.*-luring" "$PC"; then
  readelf -d "$SO" | grep -q "liburing.so" || fail "io_uring build without NEEDED liburing"
fi

echo "== 2a. pkg-config, shared"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$PC")
run pkg-config --modversion lastword
cf=$(pkg-config --cflags lastword)
libs=$(pkg-config --libs lastword)
libdir=$(pkg-config --variable=libdir lastword)
echo "pkg-config --cflags --libs lastword: $cf $libs"
case "$cf" in *"$P/"*) ;; *) fail "cflags do not point into the moved prefix: $cf" ;; esac
[ "$(cd "$libdir" && pwd)" = "$(cd "$(dirname "$SO")" && pwd)" ] || fail "libdir $libdir"
run $CC -std=c11 -Wall -Wextra -Werror -o "$W/consumer_pc" "$HERE/consumer.c" $cf $libs \
  "-Wl,-rpath,$libdir"
echo "\$ readelf -d $W/consumer_pc | grep NEEDED"
readelf -d "$W/consumer_pc" | grep NEEDED
readelf -d "$W/consumer_pc" | grep -q "NEEDED.*liblastword.so" || fail "not linked to liblastword.so"
run "$W/consumer_pc"

echo "== 2b. pkg-config --static, a fully static program"
slibs=$(pkg-config --static --libs lastword)
echo "pkg-config --static --libs lastword: $slibs"
run $CC -std=c11 -Wall -Wextra -Werror -static -o "$W/consumer_pc_static" "$HERE/consumer.c" \
  $cf $slibs
readelf -d "$W/consumer_pc_static" 2>/dev/null | grep -q NEEDED && fail "static consumer has NEEDED entries"
echo "consumer_pc_static: no dynamic section (statically linked)"
run "$W/consumer_pc_static"
if grep -q "uring" "$PC"; then
  # The io_uring backend of the static program (liburing.a linked in); the loop says
  # which backend it got (a kernel that refuses io_uring gives epoll).
  echo "\$ LW_BACKEND=uring $W/consumer_pc_static"
  LW_BACKEND=uring "$W/consumer_pc_static" || fail "consumer_pc_static on io_uring"
fi

echo "== 2c. find_package(lastword CONFIG) from the moved prefix (and pkg_check_modules)"
runq cmake -S "$HERE/find_package" -B "$W/fp" -DCMAKE_PREFIX_PATH="$P"
runq cmake --build "$W/fp" -j2
for t in consumer_default consumer_static consumer_shared consumer_pkgconfig; do
  run "$W/fp/$t"
done
readelf -d "$W/fp/consumer_shared" | grep -q "NEEDED.*liblastword.so" || fail "consumer_shared not shared"
readelf -d "$W/fp/consumer_default" | grep -q "NEEDED.*liblastword.so" && fail "lastword::lastword not the static library"

echo "== 3a. add_subdirectory"
runq cmake -S "$HERE/subdir" -B "$W/sub" -DLW_SOURCE_DIR="$SRC"
runq cmake --build "$W/sub" -j2 --target consumer
grep -q -- "-Werror" "$W/sub/lastword/CMakeFiles/lastword_obj.dir/flags.make" && fail "-Werror in a subproject"
run "$W/sub/consumer"

echo "== 3b. FetchContent (SOURCE_DIR: this tree)"
runq cmake -S "$HERE/fetchcontent" -B "$W/fc" -DLW_SOURCE_DIR="$SRC"
runq cmake --build "$W/fc" -j2 --target consumer
run "$W/fc/consumer"

echo "== 4. libpcap, cmocka and liburing hidden: the library (and respond) alone"
runq cmake -S "$SRC" -B "$W/bare" -DCMAKE_BUILD_TYPE=Release -DLW_FORCE_NO_PCAP=ON \
  -DLW_FORCE_NO_CMOCKA=ON -DLW_WITH_URING=OFF
cp "$W/cmd.log" "$W/bare.log"
for off in "LW_FORCE_NO_PCAP=ON: the lastword tool and its lab are off" \
  "LW_FORCE_NO_CMOCKA=ON: the test suite is off" "the io_uring backend is off"; do
  grep -q "^-- lastword: .*$off" "$W/bare.log" || fail "no STATUS line: $off"
done
runq cmake --build "$W/bare" -j2
[ ! -e "$W/bare/tools/lastword" ] && [ ! -e "$W/bare/tests" ] || fail "tool or tests built"
echo "\$ readelf -d $W/bare/liblastword.so | grep NEEDED"
readelf -d "$W/bare/liblastword.so" | grep NEEDED
readelf -d "$W/bare/liblastword.so" | grep NEEDED | grep -v "libc.so" && fail "needs more than libc"
[ -x "$W/bare/examples/respond" ] || fail "respond not built"

echo "packaging: PASS in $(($(date +%s) - start)) s"
