#!/bin/sh
# examples/systemd: the units pass `systemd-analyze verify` (with ExecStart pointed at
# the built httpd), and the service's command line serves a file through a socket
# passed by systemd-socket-activate, as the .socket would pass it (named "http").
# Usage: systemd_units.sh SOURCE_DIR HTTPD_BINARY. Exit 77 (skip) without systemd.
set -u
SRC=$1 HTTPD=$2
command -v systemd-analyze >/dev/null && command -v systemd-socket-activate >/dev/null &&
  command -v curl >/dev/null || { echo "SKIP: systemd-analyze/systemd-socket-activate/curl missing"; exit 77; }
T=$(mktemp -d) && trap 'kill $pid 2>/dev/null; rm -rf "$T"' EXIT
sed "s#/usr/local/bin/lastword-httpd#$HTTPD#; s#/var/www/html#$T/www#" \
  "$SRC/examples/systemd/lastword-httpd.service" > "$T/lastword-httpd.service"
cp "$SRC/examples/systemd/lastword-httpd.socket" "$T/"
out=$(systemd-analyze verify "$T/lastword-httpd.socket" "$T/lastword-httpd.service" 2>&1)
rc=$?
echo "systemd-analyze verify: rc=$rc ${out:-(no warnings)}"
[ $rc -eq 0 ] && [ -z "$out" ] || { echo "FAIL: verify"; exit 1; }
mkdir "$T/www" && echo "hello from lastword" > "$T/www/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
exec_line=$(sed -n 's/^ExecStart=//p' "$T/lastword-httpd.service")
# shellcheck disable=SC2086
systemd-socket-activate -l 127.0.0.1:$port --fdname=http $exec_line > "$T/out" 2>&1 &
pid=$!
sleep 0.3
body=$(curl -s --max-time 10 http://127.0.0.1:$port/)
body2=$(curl -s --max-time 10 http://127.0.0.1:$port/index.html)
sleep 0.2
kill -TERM $pid
wait $pid
rc=$?
cat "$T/out"
echo "body: $body | exit $rc"
[ "$body" = "hello from lastword" ] && [ "$body2" = "$body" ] || { echo "FAIL: not served"; exit 1; }
grep -q "^listening on 127.0.0.1:$port\$" "$T/out" || { echo "FAIL: no listening line"; exit 1; }
grep -q "^drain conns=" "$T/out" || { echo "FAIL: no drain line"; exit 1; }
[ $rc -eq 0 ] || { echo "FAIL: exit $rc after SIGTERM"; exit 1; }
echo "systemd_units: ok"
