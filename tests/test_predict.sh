#!/usr/bin/env bash
# `mnist predict` end to end on user-like images (for "my own digit is predicted wrong").
#  1. A model trained briefly (fast preset, 30,000 images, 2 epochs, affine augmentation)
#     classifies 500 MNIST test digits rendered as photos, scans and drawings
#     (bench/predict_accuracy) within one point of its accuracy on the same digits as IDX,
#     and 100 of them stored sideways with EXIF orientation 6, as a phone stores a portrait.
#  2. Raw 28x28 MNIST digits written as PGM get the same prediction as `mnist eval`.
#  3. One bad file among good ones: the others are still classified, exit status 1 at the end.
#  4. A blank page is "no digit found", never a digit.
set -u
cd "$(dirname "$0")/.."
build=${BUILD:-build}
mnist="$build/mnist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { # check DESCRIPTION CONDITION-EXIT-STATUS
    if [ "$2" -eq 0 ]; then echo "  ok    $1"; pass=$((pass + 1)); else echo "  FAIL  $1"; fail=$((fail + 1)); fi
}

"$mnist" train --preset fast --limit 30000 --val 2000 --epochs 2 --augment affine --threads 2 \
    --out "$tmp/m.model" --quiet > "$tmp/train.log" 2>&1
check "train a small model" $?

res=$(BUILD="$build" bench/predict_accuracy "$tmp/m.model" 500 0)
echo "  $res"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["difference_points"] <= 1.0 and r["predict_accuracy"] >= 0.95 else 1)' "$res"
check "user-like renderings within 1 point of IDX accuracy (and >= 95%)" $?

# the same kind of photos stored as a phone held upright stores them (EXIF Orientation 6)
res=$(BUILD="$build" bench/predict_accuracy "$tmp/m.model" 100 0 6)
echo "  $res"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["orientation"] == 6 and r["difference_points"] <= 1.0 and r["predict_accuracy"] >= 0.95 else 1)' "$res"
check "portrait phone photos (EXIF orientation 6): within 1 point of IDX accuracy" $?

# raw digits 0..99 as PGM, straight from the IDX file
python3 - "$tmp/raw" <<'PY'
import os, sys
out = sys.argv[1]; os.makedirs(out)
data = open("data/mnist/t10k-images-idx3-ubyte", "rb").read()
for i in range(100):
    px = data[16 + i * 784: 16 + (i + 1) * 784]
    with open(f"{out}/{i:05d}.pgm", "wb") as f:
        f.write(b"P5\n28 28\n255\n" + px)
PY
"$mnist" predict --model "$tmp/m.model" --json "$tmp/raw" > "$tmp/raw.jsonl"
"$mnist" eval --model "$tmp/m.model" --json --mistakes 10000 > "$tmp/eval.json"
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
labels = open("data/mnist/t10k-labels-idx1-ubyte", "rb").read()[8:]
ev = {m["index"]: m["predicted"] for m in json.load(open(f"{tmp}/eval.json"))["mistakes"]}
differ = []
for line in open(f"{tmp}/raw.jsonl"):
    p = json.loads(line)
    i = int(p["file"].rsplit("/", 1)[1][:5])
    want = ev.get(i, labels[i])
    if p["label"] != want:
        differ.append((i, p["label"], want))
print("  raw digits whose prediction differs from eval:", differ)
sys.exit(1 if differ else 0)
PY
check "raw 28x28 digits: predict agrees with eval on all 100" $?

printf 'not an image' > "$tmp/bad.png"
python3 -c 'import sys; open(sys.argv[1],"wb").write(b"P5\n64 48\n255\n" + bytes([255]) * (64 * 48))' "$tmp/blank.pgm"
"$mnist" predict --model "$tmp/m.model" "$tmp/raw/00000.pgm" "$tmp/bad.png" "$tmp/blank.pgm" \
    "$tmp/raw/00001.pgm" > "$tmp/mixed.out" 2> "$tmp/mixed.err"
status=$?
cat "$tmp/mixed.out" "$tmp/mixed.err" | sed 's/^/    /'
[ "$status" -eq 1 ] && [ "$(wc -l < "$tmp/mixed.err")" -eq 1 ] && grep -q "bad.png" "$tmp/mixed.err" &&
    grep -q "00000.pgm: 7" "$tmp/mixed.out" && grep -q "00001.pgm: 2" "$tmp/mixed.out"
check "a bad file among good ones: one error line, the others classified, exit 1" $?
grep -q "blank.pgm: no digit found" "$tmp/mixed.out"
check "a blank page: no digit found" $?

# file names that are not UTF-8 (Latin-1 "café", a lone continuation byte): --json still parses
cp "$tmp/raw/00000.pgm" "$tmp/$(printf 'caf\351')-$(printf '\200').pgm"
"$mnist" predict --model "$tmp/m.model" --json "$tmp"/caf*.pgm > "$tmp/latin1.json"
/usr/bin/python3 -c 'import json, sys; r = json.loads(open(sys.argv[1], "rb").read().decode("utf-8")); sys.exit(0 if "caf\ufffd-\ufffd.pgm" in r["file"] and r["label"] == 7 else 1)' "$tmp/latin1.json"
check "predict --json on a file name that is not UTF-8: valid JSON, U+FFFD for the bad bytes" $?

# two inputs with one base name: --save-preprocessed keeps both
mkdir -p "$tmp/a" "$tmp/b" "$tmp/seen"
cp "$tmp/raw/00000.pgm" "$tmp/a/d.pgm"
cp "$tmp/raw/00001.pgm" "$tmp/b/d.pgm"
"$mnist" predict --model "$tmp/m.model" --save-preprocessed "$tmp/seen" "$tmp/a/d.pgm" "$tmp/b/d.pgm" > /dev/null &&
    [ -f "$tmp/seen/d.pgm.png" ] && [ -f "$tmp/seen/d.pgm-2.png" ] &&
    ! cmp -s "$tmp/seen/d.pgm.png" "$tmp/seen/d.pgm-2.png"
check "--save-preprocessed with two inputs of one name: both kept (NAME.png, NAME-2.png)" $?

echo "predict: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
