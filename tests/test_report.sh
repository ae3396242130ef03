#!/usr/bin/env bash
# test_report.sh: `mnist report`, the self-contained HTML page on a model, and its JSON.
#
# Cases (each line of output is one counted check):
#   page      exit 0; well-formed XML (`xmllint --noout`, which is stricter than HTML about
#             escaping) and clean HTML (`xmllint --html --noout`: nothing but the SVG element
#             names its HTML 4 parser does not know); every section; nothing loaded from
#             elsewhere (no script, link, http(s) URL or CSS url()); every image a PNG data URI
#   json      parses; its accuracy and confusion matrix equal `mnist eval --json`'s
#   points    a known log gives known points: every polyline and circle of the curves maps back
#             through the axis ticks to the log's values, on linear and log axes
#   logs      an empty log and a one-epoch log render; a corrupt line (bad JSON, a missing
#             field, a string for a number, a zero epoch) is one error line naming FILE:LINE
#   names     a model, log and output named with <, &, quotes, UTF-8, a control character and
#             a byte that is not UTF-8: escaped on the page (XML stays well-formed), no raw tag
#   val       --split val: the validation images the training held out (the page says so); a
#             model trained with --val 0 still renders and says why there is no evaluation; a
#             data set whose labels differ is refused naming the fingerprints
#   train     train --report writes the --split val page at the end (also on --resume); a
#             report path that is a device is refused before training
#   usage     missing --model, bad --split, output into a missing directory: exit 2; a missing
#             model file: exit 1, one line
# The data is a small IDX copy of MNIST (3,000 training and 1,000 test images) made here.
# Run by scripts/run-tests with BUILD=build-dir. About 10 s on 2 cores.
set -u
source "$(dirname "$0")/lib_report.bash"
suite report "$(command -v xmllint)" "$(command -v python3)"

small_mnist small 3000 1000 && small_mnist small-bad 3000 1000 1
check "a small copy of MNIST" $?

"$mnist" train --arch "conv 4 5, relu, maxpool 2, dense 10" --data small --val 500 --epochs 2 \
    --threads 2 --out m.model --log m.jsonl --quiet > train.out 2> err
check "train a tiny model with a log" $?

# page_ok NAME FILE: the HTML checks every page must pass.
page_ok() {
    local what=$1 page=$2 out
    out=$(xmllint --noout "$page" 2>&1)
    check "$what: well-formed XML (xmllint --noout)" "$([ -z "$out" ]; echo $?)" "$(echo "$out" | head -n 2)"
    out=$(xmllint --html --noout "$page" 2>&1 | grep -a 'error :' |
        grep -aEv 'Tag (svg|line|polyline|circle|rect|text|title) invalid')
    check "$what: clean HTML (xmllint --html: only the SVG tags)" "$([ -z "$out" ]; echo $?)" "$(echo "$out" | head -n 2)"
    out=$(grep -Eio '<script|<link|<iframe|<object|(src|href)="(https?:)?//|url\(' "$page" | head -n 3)
    check "$what: loads nothing from elsewhere" "$([ -z "$out" ]; echo $?)" "$out"
    out=$(grep -o 'src="[^"]\{0,22\}' "$page" | grep -v 'src="data:image/png;base64,' | head -n 2)
    check "$what: every image a PNG data URI" "$([ -z "$out" ]; echo $?)" "$out"
}

echo "page  [at ${SECONDS}s]"
"$mnist" report --model m.model --log m.jsonl --data small --out r.html --json r.json > out 2> err
check "report exits 0" $?
page_ok "report" r.html
missing=
for id in summary model curves confusion per-class mistakes examples filters; do
    grep -q "<h2 id=\"$id\">" r.html || missing="$missing $id"
done
check "every section is there" "$([ -z "$missing" ]; echo $?)" "missing:$missing"
grep -q 'the test set in small: 1000 images' r.html
check "the page says it evaluated on the test set" $?
n=$(grep -c 'class="tile bad"' r.html)
check "a grid of 24 most confident mistakes ($n)" "$([ "$n" -eq 24 ]; echo $?)"

echo "json  [at ${SECONDS}s]"
"$mnist" eval --model m.model --data small --json > eval.json 2> err
python3 - r.json eval.json <<'PY'
import json, sys
r, e = (json.load(open(p)) for p in sys.argv[1:3])
ev = r["evaluation"]
assert ev["split"] == "test" and ev["n"] == e["n"] == 1000, (ev["split"], ev["n"])
assert abs(ev["accuracy"] - e["accuracy"]) < 1e-9, (ev["accuracy"], e["accuracy"])
assert ev["confusion"] == e["confusion"], "confusion matrices differ"
assert [m["index"] for m in ev["mistakes"][:10]] == [m["index"] for m in e["mistakes"]]
assert len(r["log"]["epochs"]) == 2 and r["network"]["params"] > 0
assert r["first_layer"]["layer"] == "conv" and len(r["first_layer"]["images"]) == 4
PY
check "--json agrees with eval --json (accuracy, confusion, mistakes)" $?

echo "points  [at ${SECONDS}s]"
# Known values: loss 2.0, 1.0, 0.5, 0.25; accuracy 40, 70, 85, 92.5 %; one-cycle-like lr.
cat > known.jsonl <<'EOF'
{"epoch":1,"epochs":4,"train_loss":2.0,"train_acc":0.40,"val_loss":1.5,"val_acc":0.50,"lr":0.0003,"seconds":1.0,"images_per_s":100.0,"best":true}
{"epoch":2,"epochs":4,"train_loss":1.0,"train_acc":0.70,"val_loss":0.9,"val_acc":0.75,"lr":0.003,"seconds":1.0,"images_per_s":100.0,"best":true}

{"epoch":3,"epochs":4,"train_loss":0.5,"train_acc":0.85,"val_loss":0.6,"val_acc":0.80,"lr":0.001,"seconds":1.0,"images_per_s":100.0,"best":true}
{"epoch":4,"epochs":4,"train_loss":0.25,"train_acc":0.925,"val_loss":0.55,"val_acc":0.78,"lr":0.00001,"seconds":1.0,"images_per_s":100.0,"best":false}
EOF
"$mnist" report --model m.model --log known.jsonl --data small --out known.html > out 2> err
python3 - known.html known.jsonl <<'PY'
import json, math, sys
import xml.etree.ElementTree as ET
S = "{http://www.w3.org/2000/svg}"
log = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
field = {"train_loss": 1, "val_loss": 1, "train_acc": 100, "val_acc": 100, "lr": 1}
charts = [s for s in ET.parse(sys.argv[1]).iter(S + "svg") if "heatmap" not in s.get("class")
          and "bars" not in s.get("class")]
assert len(charts) == 3, f"{len(charts)} curve charts, want 3"
def axis(svg, cls, coord, log_scale):
    # the affine map from data (log10 of it on a log axis) to viewBox units, from two ticks
    t = [(float(e.get("data-v")), float(e.get(coord))) for e in svg.iter(S + "text")
         if e.get("class") == cls]
    assert len(t) >= 2, f"fewer than two {cls}"
    f = (lambda v: math.log10(v)) if log_scale else (lambda v: v)
    (v0, p0), (v1, p1) = t[0], t[-1]
    return lambda v: p0 + (f(v) - f(v0)) * (p1 - p0) / (f(v1) - f(v0))
checked = 0
for svg in charts:
    log_y = "(log scale)" in "".join(svg.itertext())
    fx, fy = axis(svg, "xtick", "x", False), axis(svg, "ytick", "y", log_y)
    for line in svg.iter(S + "polyline"):
        key = line.get("data-series")
        pts = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
        want = [(fx(e["epoch"]), fy(e[key] * field[key])) for e in log]
        assert len(pts) == len(want), f"{key}: {len(pts)} points, want {len(want)}"
        for (x, y), (wx, wy) in zip(pts, want):
            assert abs(x - wx) < 0.02 and abs(y - wy) < 0.02, f"{key}: ({x},{y}), want ({wx:.2f},{wy:.2f})"
        dots = [(float(c.get("cx")), float(c.get("cy"))) for c in svg.iter(S + "circle")
                if c.get("data-series") == key]
        assert dots == pts, f"{key}: the dots are not on the line"
        checked += len(pts)
assert checked == 5 * 4, f"{checked} points checked, want 20"
PY
check "a known log gives known points (loss, accuracy, learning rate)" $?

echo "logs  [at ${SECONDS}s]"
: > empty.jsonl
"$mnist" report --model m.model --log empty.jsonl --data small --out empty.html > out 2> err &&
    grep -q 'The log holds no epochs' empty.html
check "an empty log renders and says so" $?
page_ok "empty log" empty.html
head -n 1 known.jsonl > one.jsonl
"$mnist" report --model m.model --log one.jsonl --data small --out one.html > out 2> err &&
    [ "$(grep -c '<circle data-series="val_acc"' one.html)" -eq 1 ]
check "a one-epoch log renders with one point a series" $?
page_ok "one-epoch log" one.html

# corrupt LINE_TEXT WHAT: line 3 of a log replaced by LINE_TEXT must be refused naming line 3.
corrupt() {
    { head -n 2 known.jsonl; printf '%s\n' "$1"; tail -n 2 known.jsonl; } > bad.jsonl
    rm -f bad.html
    "$mnist" report --model m.model --log bad.jsonl --data small --out bad.html > out 2> err
    local rc=$? lines
    lines=$(wc -l < err)
    check "corrupt log ($2): exit 1, one line naming bad.jsonl:3" \
        "$([ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -q '^mnist: --log: bad.jsonl:3: ' err && [ ! -e bad.html ]; echo $?)" \
        "exit $rc, $lines lines: $(head -c 160 err)"
}
corrupt '{"epoch":3,"train_loss":0.5' "cut short"
corrupt '{"epoch":3,"train_loss":0.5,"train_acc":0.8,"val_loss":0.6,"val_acc":0.8}' "no lr"
corrupt '{"epoch":3,"train_loss":"0.5","train_acc":0.8,"val_loss":0.6,"val_acc":0.8,"lr":1}' "a string"
corrupt '{"epoch":0,"train_loss":0.5,"train_acc":0.8,"val_loss":0.6,"val_acc":0.8,"lr":1}' "epoch 0"
corrupt '[1,2,3]' "not an object"

echo "names  [at ${SECONDS}s]"
odd=$(printf 'm <b>&amp; "q" \x27s\x27 caf\xc3\xa9 \xe5\xad\x97 \x01 \xff')
cp m.model "$odd.model" && cp m.jsonl "$odd.jsonl"
"$mnist" report --model "$odd.model" --log "$odd.jsonl" --data small --out "$odd.html" > out 2> err
check "odd names: report exits 0" $?
page_ok "odd names" "$odd.html"
grep -q '<h1>Report: m &lt;b&gt;&amp;amp; &quot;q&quot; &#39;s&#39; caf&#xE9; &#x5B57; &#xFFFD; &#xFFFD;.model</h1>' "$odd.html" &&
    ! grep -q 'm <b>' "$odd.html" && ! LC_ALL=C grep -q -P '[^\x09\x0a\x20-\x7e]' "$odd.html"
check "odd names: escaped byte by byte (entities, UTF-8 as references, U+FFFD; ASCII page)" $?

echo "val  [at ${SECONDS}s]"
"$mnist" report --model m.model --data small --split val --out val.html --json val.json > out 2> err &&
    grep -q '500 validation images of 28&#xD7;28, held out of the training set in small' val.html &&
    python3 -c 'import json,sys; e=json.load(open("val.json"))["evaluation"]; sys.exit(not (e["n"] == 500 and e["split"] == "validation" and abs(e["accuracy"] - float(json.load(open("val.json"))["meta"]["val_acc"])) < 1e-6))'
check "--split val: the 500 held-out images, accuracy as recorded in training" $?
"$mnist" report --model m.model --data small-bad --split val --out valbad.html > out 2> err
rc=$?
check "--split val on other labels: exit 1 naming the fingerprints" \
    "$([ "$rc" -eq 1 ] && [ "$(wc -l < err)" -eq 1 ] && grep -q 'fingerprints' err; echo $?)" "exit $rc"
"$mnist" train --arch "dense 10" --data small --val 0 --epochs 1 --threads 2 --out noval.model \
    --quiet > out 2> err &&
    "$mnist" report --model noval.model --data small --split val --out noval.html > out 2> err &&
    grep -q 'trained without validation images' noval.html
check "--split val of a model trained with --val 0: renders, says why" $?
page_ok "no evaluation" noval.html
grep -q 'units of the first dense layer' noval.html && [ "$(grep -o 'title="unit ' noval.html | wc -l)" -eq 10 ]
check "a dense first layer: its 10 units' weights as 28x28 images" $?

echo "train  [at ${SECONDS}s]"
# train --report: the same page as report --split val, written when the run ends
"$mnist" train --arch "conv 4 5, relu, maxpool 2, dense 10" --data small --val 500 --epochs 2 \
    --threads 2 --out t.model --log t.jsonl --report t.html --quiet > out 2> err &&
    grep -q 'report written to t.html' out && grep -q '500 validation images of 28&#xD7;28, held out of the training set in small' t.html &&
    grep -q '<h2 id="curves">' t.html && [ "$(grep -c '<circle' t.html)" -ge 4 ]
check "train --report: the page on the held-out images, with the run's curves" $?
page_ok "train --report" t.html
cp t.model.ckpt again.ckpt
"$mnist" train --resume again.ckpt --out t.model --data small --threads 2 --report again.html \
    --quiet > out 2> err && [ -s again.html ]
check "train --resume --report: allowed (not a recipe flag), the page written" $?
ln -s /dev/null devnull.html
"$mnist" train --arch "dense 10" --data small --val 500 --epochs 1 --threads 2 --out d.model \
    --report devnull.html --quiet > out 2> err
rc=$?
check "train --report onto a device: exit 1 before training, one line naming it" \
    "$([ "$rc" -eq 1 ] && [ "$(wc -l < err)" -eq 1 ] && grep -q 'devnull.html' err && [ ! -e d.model ]; echo $?)" "exit $rc"

echo "usage  [at ${SECONDS}s]"
expect() { # expect CODE DESCRIPTION -- CMD...
    local want=$1 what=$2
    shift 3
    "$@" > out 2> err
    local rc=$?
    check "$what: exit $want" "$([ "$rc" -eq "$want" ] && grep -q '^mnist: ' err; echo $?)" "exit $rc"
}
expect 2 "no --model" -- "$mnist" report --out x.html
expect 2 "no --out or --json" -- "$mnist" report --model m.model
expect 2 "--split train" -- "$mnist" report --model m.model --split train --out x.html
expect 2 "--out into a missing directory" -- "$mnist" report --model m.model --out nodir/x.html
expect 1 "a missing model" -- "$mnist" report --model nothere.model --data small --out x.html
expect 1 "a missing log" -- "$mnist" report --model m.model --log nothere.jsonl --data small --out x.html
"$mnist" report --help > out 2>&1 && grep -q -- '--split' out
check "--help lists the options" $?
finish
