#!/usr/bin/env bash
# Writing a model or checkpoint where it cannot be written: a clear one-line error, exit 1,
# the previous file at that name intact, no temporary files left.
#  1. a file-size limit (ulimit -f, SIGXFSZ ignored so write() fails with EFBIG);
#  2. a full filesystem (a 256 KB tmpfs), when this machine lets us mount one (root);
#  3. a read-only filesystem (a read-only tmpfs), likewise.
set -u
cd "$(dirname "$0")/.."
mnist="$(pwd)/${BUILD:-build}/mnist"
tmp=$(mktemp -d)
mounts=()
cleanup() { for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0; fail=0
check() { if [ "$2" -eq 0 ]; then echo "  ok    $1"; pass=$((pass + 1)); else echo "  FAIL  $1"; fail=$((fail + 1)); fi; }
# 84k parameters: the model file is ~330 KB and its checkpoint ~1 MB
args=(--arch "conv 32 5 pad=2, bn, relu, maxpool 2, conv 64 5 pad=2, bn, relu, maxpool 2, dense 10"
      --limit 600 --val 100 --epochs 1 --batch 50 --threads 2 --quiet)

# a previous, good model and checkpoint to protect
"$mnist" train "${args[@]}" --out "$tmp/prev.model" > /dev/null 2>&1
check "a first model to protect" $?

expect_safe() { # DESCRIPTION DIR: training into DIR must fail cleanly, leaving DIR's files as they were
    local desc=$1 dir=$2 status errs
    status=$(cat "$tmp/status")
    errs=$(grep -c '^mnist: ' "$tmp/err" || true)
    cmp -s "$tmp/prev.model" "$dir/m.model" && cmp -s "$tmp/prev.model.ckpt" "$dir/m.model.ckpt"
    local intact=$?
    local leftovers
    leftovers=$(find "$dir" -name '*.tmp.*' | wc -l)
    sed 's/^/    /' "$tmp/err" | grep -v 'threads,' | head -3
    [ "$status" -eq 1 ] && [ "$errs" -ge 1 ] && grep -q "m.model" "$tmp/err" && [ "$intact" -eq 0 ] &&
        [ "$leftovers" -eq 0 ]
    check "$desc: exit 1, error names the file, previous model and checkpoint intact, no temporaries" $?
}

# 1. ulimit -f: 200 KB, smaller than the model file
mkdir -p "$tmp/lim"
cp "$tmp/prev.model" "$tmp/lim/m.model"; cp "$tmp/prev.model.ckpt" "$tmp/lim/m.model.ckpt"
( trap '' XFSZ; ulimit -f 200; "$mnist" train "${args[@]}" --seed 2 --out "$tmp/lim/m.model" \
    > /dev/null 2> "$tmp/err"; echo $? > "$tmp/status" )
expect_safe "file-size limit" "$tmp/lim"
grep -qi "file too large" "$tmp/err"
check "file-size limit: the message says why (File too large)" $?

# 2. a full filesystem
mkdir -p "$tmp/full"
if mount -t tmpfs -o size=1400k tmpfs "$tmp/full" 2>/dev/null; then
    mounts+=("$tmp/full")
    cp "$tmp/prev.model" "$tmp/full/m.model"; cp "$tmp/prev.model.ckpt" "$tmp/full/m.model.ckpt"
    "$mnist" train "${args[@]}" --seed 3 --out "$tmp/full/m.model" > /dev/null 2> "$tmp/err"
    echo $? > "$tmp/status"
    expect_safe "full filesystem" "$tmp/full"
    grep -qi "no space left" "$tmp/err"
    check "full filesystem: the message says why (No space left on device)" $?
else
    echo "  skip  full filesystem: cannot mount a tmpfs here (not root?)"
fi

# 3. a read-only filesystem
mkdir -p "$tmp/ro"
if mount -t tmpfs -o size=4m tmpfs "$tmp/ro" 2>/dev/null; then
    mounts+=("$tmp/ro")
    cp "$tmp/prev.model" "$tmp/ro/m.model"; cp "$tmp/prev.model.ckpt" "$tmp/ro/m.model.ckpt"
    mount -o remount,ro "$tmp/ro"
    "$mnist" train "${args[@]}" --seed 4 --out "$tmp/ro/m.model" > /dev/null 2> "$tmp/err"
    echo $? > "$tmp/status"
    expect_safe "read-only filesystem" "$tmp/ro"
else
    echo "  skip  read-only filesystem: cannot mount a tmpfs here (not root?)"
fi

echo "disk: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
