#!/bin/sh
# Builds every tests/attack/atk_*.c against build/liblastword.a (make build first), or
# against build-asan/liblastword.a with ASAN=1.
set -e
cd "$(dirname "$0")/../.."
B=build; EXTRA=""
if [ "${ASAN:-0}" = 1 ]; then B=build-asan; EXTRA="-fsanitize=address,undefined -g"; fi
mkdir -p $B/attack
for f in tests/attack/atk_*.c; do
  n=$(basename $f .c)
  cc -std=c11 -D_GNU_SOURCE -O1 -g $EXTRA -Iinclude -o $B/attack/$n $f $B/liblastword.a -luring -lpthread
done
echo built into $B/attack
