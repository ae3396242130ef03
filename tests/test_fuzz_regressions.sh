#!/usr/bin/env bash
# Replays every input the fuzzers ever found (fuzz/regressions/) and the seed corpora through
# the fuzz harnesses, linked with the normal library (make fuzz-replay). A harness aborts on a
# broken contract, and under the ASan build (BUILD=build/asan) any single allocation over
# 256 MB aborts too, so an input that once made the library allocate gigabytes fails here.
set -u
cd "$(dirname "$0")/.."
build=${BUILD:-build}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}max_allocation_size_mb=256"
pass=0; fail=0
for name in idx model image spec request; do
    bin="$build/fuzz/replay_$name"
    if [ ! -x "$bin" ]; then
        echo "FAIL $name: $bin not built (make fuzz-replay)"; fail=$((fail + 1)); continue
    fi
    shopt -s nullglob
    files=(fuzz/regressions/"$name"-* fuzz/corpus/"$name"/*)
    shopt -u nullglob
    if [ ${#files[@]} -eq 0 ]; then
        echo "FAIL $name: no inputs"; fail=$((fail + 1)); continue
    fi
    if timeout 300 "$bin" "${files[@]}" >/dev/null 2>"/tmp/replay_$name.$$.log"; then
        echo "ok   $name: ${#files[@]} inputs"; pass=$((pass + 1))
    else
        echo "FAIL $name: see below"; tail -20 "/tmp/replay_$name.$$.log"; fail=$((fail + 1))
    fi
    rm -f "/tmp/replay_$name.$$.log"
done
echo "fuzz regressions: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
