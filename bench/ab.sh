#!/bin/bash
# ab.sh - interleaved A/B of server CPU per connection (respond protocol, churn), for
# comparing two builds of a change side by side: each run starts every server in turn
# (pinned to CPU 0), drives it with bench/loadgen (CPU 1, bounded: --count 20000,
# --duration 1.5 s) and reads the server's CPU time (--server-pid). Prints, per server,
# the median and every run's µs/conn.
#   usage: bench/ab.sh BYTES CONC RUNS SERVER_BINARY...
#   e.g.   bench/ab.sh 64 64 7 /tmp/respond_before build/examples/respond build/bench/uv_server
# respond-style binaries get --close graceful; uv_server / raw_epoll / ev_server get
# --mode respond; a path ending in raw_linger (a link to raw_epoll) gets --mode
# respond-linger. Needs build/bench/loadgen (make bench or bench/run.sh builds it).
set -u
bytes=$1 conc=$2 runs=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
loadgen=${LOADGEN:-$here/build/bench/loadgen}
port=${AB_PORT:-9940}
for r in $(seq "$runs"); do
  for b in "$@"; do
    port=$((port + 1))
    case $b in
    *raw_linger*) args="--mode respond-linger" ;; # a link to raw_epoll: the graceful floor
    *uv_server* | *raw_epoll* | *ev_server*) args="--mode respond" ;;
    *) args="--close graceful" ;;
    esac
    taskset -c 0 "$b" --listen 127.0.0.1:$port --bytes "$bytes" $args >/dev/null 2>&1 &
    sp=$!
    sleep 0.3
    out=$(taskset -c 1 "$loadgen" --port $port --mode respond --conc "$conc" --count 20000 \
      --duration 1.5 --bytes "$bytes" --server-pid $sp)
    kill $sp 2>/dev/null
    wait $sp 2>/dev/null
    us=$(printf '%s\n' "$out" | grep -o 'server_us_per_op=[0-9.]*' | cut -d= -f2)
    echo "$b ${us:-nan}"
  done
done | sort -k1,1 -k2,2n | awk '
  {v[$1] = v[$1] " " $2; a[$1, ++n[$1]] = $2}
  END {for (k in v) printf "%-40s median %6.1f us/conn  runs (sorted):%s\n", k,
       a[k, int((n[k] + 1) / 2)], v[k]}'
