#!/usr/bin/env bash
# `mnist export --format c` end to end: the generated C99 source computes what libcnn computes.
# For each network (the three presets, LeNet-5, and one with the layer kinds they leave out),
# trained briefly so that batch norm has real running statistics (not 0 and 1):
#  1. export it as DIR/NAME.h and DIR/NAME.c;
#  2. compile them with a small driver under gcc and clang, -std=c99 -Wall -Wextra -Werror
#     -pedantic;
#  3. run the driver on the first 1000 MNIST test images and compare with
#     `mnist eval --probs`: every argmax equal (NAME_predict's return value too), and every
#     probability within 1e-5 of libcnn's; the largest difference is printed.
# Also: the stack bound stated in NAME.h holds (gcc and clang -fstack-usage, -O0 and -O2), and
# a NAME that is not a C identifier is refused without writing anything.
set -u
cd "$(dirname "$0")/.."
build=${BUILD:-build}
case $build in
*asan* | *tsan*) echo "export-c: runs once, with the normal build: skipped for $build"; exit 0 ;;
esac
mnist="$build/mnist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { # check DESCRIPTION CONDITION-EXIT-STATUS
    if [ "$2" -eq 0 ]; then echo "  ok    $1"; pass=$((pass + 1)); else echo "  FAIL  $1"; fail=$((fail + 1)); fi
}
images=data/mnist/t10k-images-idx3-ubyte
n_images=1000
cflags="-std=c99 -Wall -Wextra -Werror -pedantic -O2"
# LeNet-5 as bench/compare runs it
lenet5="conv 6 5 pad=2, relu, maxpool 2, conv 16 5, relu, maxpool 2, dense 120, relu, dense 84, "
lenet5+="relu, dense 10"
# Every kind the presets leave out: batch norm on the input and after pooling (kept as an affine
# step), batch norm folded through a dropout, stride 2 with padding, leaky relu, average pooling,
# max pooling with stride 1, flatten.
kinds="bn, conv 8 3 stride=2 pad=1, leakyrelu 0.1, avgpool 2, bn, conv 16 3, dropout 0.1, bn, "
kinds+="relu, maxpool 2 stride=1, flatten, dense 32, leakyrelu, dense 10"

# driver NAME: reads the IDX file's first N images (16-byte header, then 28x28 u8 each) and
# prints, per image, NAME_predict's probabilities (%.9g, as `mnist eval --probs`) and its class.
driver() {
    local name=$1 upper
    upper=$(echo "$1" | tr '[:lower:]' '[:upper:]')
    cat > "$tmp/$name/main.c" <<EOF
#include <stdio.h>
#include <stdlib.h>

#include "$name.h"

int main(int argc, char **argv) {
    static unsigned char px[${upper}_PIXELS];
    float probs[${upper}_CLASSES];
    FILE *f = argc == 3 ? fopen(argv[1], "rb") : NULL;
    int n = argc == 3 ? atoi(argv[2]) : 0;
    if (!f || fseek(f, 16, SEEK_SET) != 0) return 1;
    for (int i = 0; i < n; i++) {
        if (fread(px, 1, sizeof px, f) != sizeof px) return 1;
        const int cls = ${name}_predict(px, probs);
        for (int c = 0; c < ${upper}_CLASSES; c++) printf("%.9g ", (double)probs[c]);
        printf("%d\n", cls);
    }
    return fclose(f) != 0;
}
EOF
}

# compare LABEL LIBCNN_PROBS GENERATED_OUTPUT: argmax equal everywhere, max |difference| <= 1e-5.
compare() {
    python3 - "$1" "$2" "$3" "$n_images" <<'PY'
import sys
label = sys.argv[1]
ref = [[float(v) for v in l.split()] for l in open(sys.argv[2])]
gen = [l.split() for l in open(sys.argv[3])]
n = int(sys.argv[4])
if len(ref) != n or len(gen) != n:
    print(f"    {len(ref)} lines from libcnn, {len(gen)} from the generated code, expected {n}")
    sys.exit(1)
worst, differ = 0.0, 0
for r, g in zip(ref, gen):
    p, cls = [float(v) for v in g[:-1]], int(g[-1])
    top = max(range(len(r)), key=lambda c: (r[c], -c))
    differ += cls != top or max(range(len(p)), key=lambda c: (p[c], -c)) != top
    worst = max(worst, max(abs(a - b) for a, b in zip(p, r)))
print(f"    {label}: max |p_c - p_libcnn| = {worst:.3g}, argmax differs on {differ} of {n}")
sys.exit(0 if differ == 0 and worst <= 1e-5 else 1)
PY
}

# net NAME TRAIN-ARGS...: train, export, compile with gcc and clang, run, compare.
net() {
    local name=$1; shift
    mkdir -p "$tmp/$name"
    local dir="$tmp/$name" t0=$SECONDS
    "$mnist" train "$@" --val 1000 --epochs 1 --threads 2 --quiet --out "$dir/m.model" \
        > "$dir/train.log" 2>&1
    check "$name: train ($((SECONDS - t0)) s)" $?
    "$mnist" eval --model "$dir/m.model" --limit "$n_images" --threads 2 --probs "$dir/ref.txt" \
        > /dev/null
    check "$name: mnist eval --probs" $?
    "$mnist" export --model "$dir/m.model" --format c --out "$dir/$name" > /dev/null
    [ -s "$dir/$name.h" ] && [ -s "$dir/$name.c" ]
    check "$name: export --format c writes $name.h and $name.c" $?
    sed -n 's/^ \* \(Flash\|RAM\|Stack\):/    \1:/p' "$dir/$name.h"
    driver "$name"
    for cc in gcc clang; do
        $cc $cflags -I"$dir" -o "$dir/run_$cc" "$dir/main.c" "$dir/$name.c" -lm 2> "$dir/$cc.err"
        local status=$?
        sed 's/^/    /' "$dir/$cc.err" | head -20
        check "$name: $cc $cflags compiles it warning-free" $status
        [ "$status" -eq 0 ] || continue
        "$dir/run_$cc" "$images" "$n_images" > "$dir/out_$cc.txt" &&
            compare "$name ($cc)" "$dir/ref.txt" "$dir/out_$cc.txt"
        check "$name ($cc): $n_images images, same argmax, probabilities within 1e-5" $?
    done
}

net fast --preset fast --limit 6000
net default --preset default --limit 6000
net best --preset best --limit 3000
net lenet5 --arch "$lenet5" --limit 6000
net kinds --arch "$kinds" --limit 3000

# The stack bound in the header. The deepest chain is three frames (NAME_predict, conv2d, its
# first_inside): NAME_predict's frame plus the two largest others bound it.
bound=$(sed -n 's/^ \* Stack: at most \([0-9]*\) bytes.*/\1/p' "$tmp/kinds/kinds.h")
ok=1
for cc in gcc clang; do
    for opt in -O0 -O2; do
        (cd "$tmp/kinds" && $cc -std=c99 $opt -fstack-usage -c kinds.c -o kinds.o) || ok=0
        worst=$(awk -F'\t' '$1 ~ /kinds_predict/ {if ($2 > p) p = $2; next}
                            {if ($2 > a) {b = a; a = $2} else if ($2 > b) b = $2}
                            END {print p + a + b}' "$tmp/kinds/kinds.su")
        echo "    $cc $opt: at most $worst bytes of stack (bound ${bound:-?})"
        [ -n "$bound" ] && [ "$worst" -le "$bound" ] || ok=0
    done
done
[ "$ok" -eq 1 ]
check "stack use within the bound NAME.h states" $?

"$mnist" export --model "$tmp/fast/m.model" --format c --out "$tmp/9lives" 2> "$tmp/bad.err"
status=$?
[ "$status" -eq 1 ] && grep -q "not a C identifier" "$tmp/bad.err" &&
    ! ls "$tmp"/9lives* > /dev/null 2>&1
check "a NAME that is not a C identifier is refused, nothing written" $?

# BASE.c cannot be written (a directory is in its way): BASE.h, written first, is removed again.
mkdir -p "$tmp/blocked/net.c"
"$mnist" export --model "$tmp/fast/m.model" --format c --out "$tmp/blocked/net" \
    2> "$tmp/blocked.err"
status=$?
[ "$status" -eq 1 ] && [ ! -e "$tmp/blocked/net.h" ] && [ -z "$(ls "$tmp/blocked/net.c")" ]
check "BASE.c cannot be written: exit 1, and no BASE.h left behind" $?

echo "export-c: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
