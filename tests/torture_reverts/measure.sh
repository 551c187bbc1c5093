#!/bin/sh
# tests/torture_reverts/measure.sh DEFECT BACKEND SEED [SECONDS]
#
# Proof that the torture harness can fail (issue 15): builds tests/torture against a
# scratch copy of this checkout's HEAD with the revert DEFECT.patch applied (the fix of
# that defect of issue 13 or 14 undone, nothing else), runs it once with the seed, and
# prints the harness's "TORTURE DETECTED after N s" line or NOT-DETECTED. The scratch
# copy lives under ${TMPDIR:-/tmp}/lw-revert-DEFECT; this checkout is never modified.
#   e.g. tests/torture_reverts/measure.sh 13.5 uring 1 120
set -eu
defect=$1 backend=$2 seed=$3 secs=${4:-120}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
d=${TMPDIR:-/tmp}/lw-revert-$defect
if [ ! -x "$d/build/tests/torture" ]; then
  rm -rf "$d" && mkdir -p "$d"
  git -C "$top" archive HEAD | tar -x -C "$d"
  (cd "$d" && patch -s -p1 <"$here/$defect.patch")
  cmake -S "$d" -B "$d/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$d/build" -j 2 --target torture >/dev/null
fi
log=$d/run.$backend.$seed.log
set +e
timeout -k 5 $((secs + 90)) nice -n 10 "$d/build/tests/torture" --backend "$backend" \
  --seconds "$secs" --seed "$seed" >"$log" 2>&1
rc=$?
set -e
line=$(grep -m1 '^TORTURE DETECTED' "$log" || true)
echo "$defect $backend seed=$seed rc=$rc ${line:-NOT-DETECTED} (log: $log)"
