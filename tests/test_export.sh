#!/usr/bin/env bash
# `mnist export` proven equal: every preset's network and LeNet-5, each trained briefly (so
# batch norm's running statistics are not the 0 and 1 that would hide a wrong fold), exported
# as ONNX, with batch norm folded and as nodes:
#   - Debian's python3-onnx: onnx.checker.check_model(full_check=True), and the promised
#     inputs, outputs, opset and metadata (tests/onnx_check.py);
#   - ONNX Runtime (npm onnxruntime-node, pinned in tests/onnx/package-lock.json; its install
#     script, which would download more, is not run) on the first 1,000 test images: every
#     argmax equals libcnn's (`mnist eval --probs`), the largest probability difference <= 1e-5;
#   - a model with a layer that cannot be exported is refused with one line (test_model_io).
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD:-build}
mnist="$build/mnist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { # check DESCRIPTION STATUS
    if [ "$2" -eq 0 ]; then echo "  ok    $1"; pass=$((pass + 1)); else echo "  FAIL  $1"; fail=$((fail + 1)); fi
}
finish() { echo "export: $pass passed, $fail failed  [${SECONDS}s]"; [ "$fail" -eq 0 ]; exit; }

case $build in
*asan* | *tsan*) echo "export: runs once, with the normal build: skipped for $build"; exit 0 ;;
esac
if [ ! -f tests/onnx/node_modules/.package-lock.json ] ||
    [ tests/onnx/package-lock.json -nt tests/onnx/node_modules/.package-lock.json ]; then
    (cd tests/onnx && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --ignore-scripts) \
        > "$tmp/npm.log" 2>&1
    status=$?
    [ "$status" -eq 0 ] || tail -n 8 "$tmp/npm.log"
    check "npm ci in tests/onnx (onnxruntime-node, pinned)" "$status"
    [ "$status" -eq 0 ] || finish
fi

images=data/mnist/t10k-images-idx3-ubyte
lenet="conv 6 5 pad=2, relu, maxpool 2, conv 16 5, relu, maxpool 2, dense 120, relu, dense 84, relu, dense 10"
train() { # train NAME LIMIT ARGS...: a briefly trained model in $tmp/NAME.model
    local name=$1 limit=$2
    shift 2
    "$mnist" train "$@" --limit "$limit" --val 500 --epochs 1 --threads 2 --quiet \
        --out "$tmp/$name.model" > "$tmp/$name.train" 2>&1
    check "train $name briefly ($limit images)" $?
}
train fast 5000 --preset fast
train default 3000 --preset default
train best 2000 --preset best
train lenet5 3000 --arch "$lenet"

for name in fast default best lenet5; do
    m="$tmp/$name.model"
    [ -f "$m" ] || continue
    "$mnist" eval --model "$m" --limit 1000 --probs "$tmp/$name.libcnn" > /dev/null
    check "$name: mnist eval --probs on 1,000 test images" $?
    n_bn=$("$mnist" info --json "$m" | python3 -c 'import json,sys; s=json.load(sys.stdin)["network"]["spec"]; print(sum(t.strip() == "bn" for t in s.split(",")))')
    for fold in fold no-fold; do
        o="$tmp/$name-$fold.onnx" want_bn=0 flag=
        [ "$fold" = fold ] || { want_bn=$n_bn; flag=--no-fold-bn; }
        "$mnist" export --model "$m" --format onnx --out "$o" $flag > /dev/null
        check "$name ($fold): mnist export --format onnx" $?
        out=$(/usr/bin/python3 tests/onnx_check.py check "$o" "$want_bn")
        check "$name ($fold): onnx checker (full), inputs, outputs, opset, metadata, $want_bn BatchNormalization" $?
        echo "        $out" | cut -c1-160
        node tests/onnx/run_onnx.mjs "$o" "$images" 1000 "$tmp/$name-$fold.ort"
        check "$name ($fold): ONNX Runtime ran it on 1,000 images (batches of 1 and 100)" $?
        out=$(/usr/bin/python3 tests/onnx_check.py compare "$tmp/$name.libcnn" "$tmp/$name-$fold.ort" 1e-5)
        check "$name ($fold): ONNX Runtime against libcnn: $out" $?
    done
done

# usage errors, and a file that is not a model
"$mnist" export --model "$tmp/fast.model" --format tflite --out "$tmp/x" 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "tflite" "$tmp/err"
check "export --format tflite: exit 2, one line naming it" $?
"$mnist" export --model "$tmp/fast.model" --format onnx --out "$tmp/no/such/dir/x.onnx" 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "does not exist" "$tmp/err"
check "export into a missing directory: exit 2 before anything is written" $?
"$mnist" export --model "$images" --format onnx --out "$tmp/x.onnx" 2> "$tmp/err"
[ $? -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && [ ! -e "$tmp/x.onnx" ]
check "export of a file that is not a model: exit 1, one line, no file written" $?
finish
