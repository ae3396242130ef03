#!/usr/bin/env bash
# test_compare.sh: `mnist compare`, architecture experiments side by side.
#
# Cases (each line of output is one counted check):
#   run       a spec file of three tiny entries (a recipe line, per-entry options, a preset, a
#             comment) with two seeds: exit 0, six models, the page well-formed XML and clean
#             HTML with nothing from elsewhere, a leaderboard row per entry
#   ranking   the leaderboard is ordered by mean validation accuracy; mean and std follow the
#             runs; the Pareto front is what validation accuracy and training FLOPs say (test
#             accuracy plays no part); the plot's points map back through its log axes to the
#             leaderboard's cost and validation error
#   resume    SIGKILL after the first finished run, then the same command: the finished runs are
#             skipped (their models untouched), and the leaderboard equals that of a run never
#             stopped (accuracies, sizes, costs, ranks, front); SIGTERM mid-run: exit 143, one
#             line saying how to go on, then the run goes on from its checkpoint to the same
#             leaderboard again; no checkpoint is left at the end
#   changes   an entry whose options change is trained again, the others are skipped
#   models    `compare MODEL...`: trained models as entries, validation accuracy from their
#             metadata, odd file names escaped
#   errors    a bad spec, an unknown option, a duplicate name, a line without '|', a recipe
#             line after the entries: exit 1, one line naming FILE:LINE; usage errors exit 2
# The data is a small IDX copy of MNIST (2,500 training and 1,000 test images) made here.
# Run by scripts/run-tests with BUILD=build-dir. About 20 s on 2 cores.
set -u
source "$(dirname "$0")/lib_report.bash"
suite compare "$(command -v xmllint)" "$(command -v python3)"
bg=
trap '[ -n "$bg" ] && kill -9 "$bg" 2>/dev/null; rm -rf -- "$tmp"' EXIT

small_mnist small 2500 1000
check "a small copy of MNIST" $?

cat > specs.txt <<'EOF'
# three tiny entries
recipe: epochs=2 lr=0.003 batch=64

linear | dense 10 | optimizer=sgd lr=0.05 momentum=0.9 ema=0.9   # its own options
conv   | conv 4 5, relu, maxpool 2, dense 10
wide   | conv 8 5, relu, maxpool 2, dense 10 | epochs=3
EOF
common=(--data small --val 500 --seeds 2 --threads 2)

echo "run  [at ${SECONDS}s]"
"$mnist" compare specs.txt "${common[@]}" --out a/cmp.html --json a/cmp.json > out 2> err
check "compare into a missing directory: exit 2" "$([ $? -eq 2 ]; echo $?)"
mkdir a b c
"$mnist" compare specs.txt "${common[@]}" --out a/cmp.html --json a/cmp.json > a/out 2> err
check "compare specs.txt --seeds 2: exit 0" $?
n=$(ls a/cmp.models/*.model 2>/dev/null | wc -l)
check "six models under a/cmp.models ($n)" "$([ "$n" -eq 6 ]; echo $?)"
out=$(xmllint --noout a/cmp.html 2>&1)
check "the page is well-formed XML" "$([ -z "$out" ]; echo $?)" "$out"
out=$(xmllint --html --noout a/cmp.html 2>&1 | grep -a 'error :' |
    grep -aEv 'Tag (svg|line|polyline|circle|rect|text|title) invalid')
check "the page is clean HTML (xmllint --html: only the SVG tags)" "$([ -z "$out" ]; echo $?)" "$out"
out=$(grep -Eio '<script|<link|(src|href)="(https?:)?//|url\(' a/cmp.html | head -n 2)
check "the page loads nothing from elsewhere" "$([ -z "$out" ]; echo $?)" "$out"
[ "$(grep -o '<tr data-entry=' a/cmp.html | wc -l)" -eq 3 ]
check "a leaderboard row per entry" $?

echo "ranking  [at ${SECONDS}s]"
python3 - a/cmp.json a/cmp.html <<'PY'
import json, math, statistics, sys
import xml.etree.ElementTree as ET
j = json.load(open(sys.argv[1]))
board, runs = j["leaderboard"], j["runs"]
assert [b["entry"] for b in board] == [b["entry"] for b in sorted(board, key=lambda b: -b["val_acc"])], "not by validation"
for b in board:
    v = [r["val_acc"] for r in runs if r["entry"] == b["entry"]]
    t = [r["test_acc"] for r in runs if r["entry"] == b["entry"]]
    assert len(v) == 2 and abs(b["val_acc"] - statistics.mean(v)) < 1e-6, b["entry"]
    assert abs(b["val_acc_std"] - statistics.stdev(v)) < 1e-5 and abs(b["test_acc"] - statistics.mean(t)) < 1e-6
    dominated = any(o is not b and o["train_flops"] <= b["train_flops"] and o["val_acc"] >= b["val_acc"]
                    and (o["train_flops"] < b["train_flops"] or o["val_acc"] > b["val_acc"]) for o in board)
    assert b["pareto"] == (not dominated), f"{b['entry']}: pareto {b['pareto']}"
S = "{http://www.w3.org/2000/svg}"
svg = next(s for s in ET.parse(sys.argv[2]).iter(S + "svg"))
def axis(cls, coord):
    t = [(float(e.get("data-v")), float(e.get(coord))) for e in svg.iter(S + "text") if e.get("class") == cls]
    (v0, p0), (v1, p1) = t[0], t[-1]
    return lambda v: p0 + (math.log10(v) - math.log10(v0)) * (p1 - p0) / (math.log10(v1) - math.log10(v0))
fx, fy = axis("xtick", "x"), axis("ytick", "y")
dots = [(float(c.get("cx")), float(c.get("cy"))) for c in svg.iter(S + "circle") if c.get("data-series") == "val"]
want = [(fx(b["train_flops"]), fy(100 * (1 - b["val_acc"]))) for b in board]
assert len(dots) == 3 and all(abs(x - wx) < 0.05 and abs(y - wy) < 0.05 for (x, y), (wx, wy) in zip(dots, want)), (dots, want)
PY
check "ranked by validation, mean and std, Pareto front, plot points on their log axes" $?

echo "resume  [at ${SECONDS}s]"
# same_board A B: the leaderboards agree but for times and speeds.
same_board() {
    python3 - "$1" "$2" <<'PY'
import json, sys
keep = ("rank", "entry", "spec", "runs", "params", "mflops", "train_flops", "val_acc", "val_acc_std",
        "test_acc", "test_acc_std", "pareto")
a, b = ([{k: e[k] for k in keep} for e in json.load(open(p))["leaderboard"]] for p in sys.argv[1:3])
sys.exit(0 if a == b else f"{a}\n!=\n{b}")
PY
}
"$mnist" compare specs.txt "${common[@]}" --out b/cmp.html --json b/cmp.json > b/out1 2> err &
bg=$!
for _ in $(seq 600); do # up to 60 s for the first run to be recorded
    grep -q '"entry"' b/cmp.state 2>/dev/null && break
    kill -0 "$bg" 2>/dev/null || break
    sleep 0.1
done
kill -9 "$bg" 2>/dev/null
wait "$bg" 2>/dev/null
bg=
done_before=$(grep -o '"entry"' b/cmp.state 2>/dev/null | wc -l)
check "killed with SIGKILL after $done_before of 6 runs" "$([ "$done_before" -ge 1 ] && [ "$done_before" -lt 6 ]; echo $?)" \
    "the runs are too quick to be stopped in between"
first=$(ls b/cmp.models/linear-s1.model 2>/dev/null)
before=$(stat -c %Y.%s "$first" 2>/dev/null)
sleep 1
"$mnist" compare specs.txt "${common[@]}" --out b/cmp.html --json b/cmp.json > b/out2 2> err
check "the same command again: exit 0" $?
skipped=$(grep -c 'finished before, skipped' b/out2)
check "it skips the $done_before finished run(s) ($skipped)" "$([ "$skipped" -eq "$done_before" ]; echo $?)"
check "a finished run's model is untouched" "$([ "$(stat -c %Y.%s "$first")" = "$before" ]; echo $?)"
same_board a/cmp.json b/cmp.json
check "the same leaderboard as a run never stopped" $?

"$mnist" compare specs.txt "${common[@]}" --out c/cmp.html --json c/cmp.json > c/out1 2> c/err1 &
bg=$!
for _ in $(seq 600); do
    grep -q 'wide seed 1: epoch 1/' c/out1 2>/dev/null && break
    kill -0 "$bg" 2>/dev/null || break
    sleep 0.05
done
kill -TERM "$bg" 2>/dev/null
wait "$bg"
rc=$?
bg=
check "SIGTERM during a run: exit 143, one line saying how to go on" \
    "$([ "$rc" -eq 143 ] && [ "$(wc -l < c/err1)" -eq 1 ] && grep -q 'run the same command again' c/err1; echo $?)" \
    "exit $rc: $(head -c 200 c/err1)"
"$mnist" compare specs.txt "${common[@]}" --out c/cmp.html --json c/cmp.json > c/out2 2> err
check "the same command again: exit 0, going on from the stopped run's checkpoint" \
    "$([ $? -eq 0 ] && grep -Eq '^wide seed 1: going on from c/cmp.models/wide-s1.ckpt after epoch [12]$' c/out2; echo $?)"
same_board a/cmp.json c/cmp.json
check "resumed after SIGTERM: the same leaderboard (the run resumed to the same weights)" $?
left=$(ls b/cmp.models c/cmp.models | grep -c '\.ckpt$')
check "no checkpoint left once every run is done ($left)" "$([ "$left" -eq 0 ]; echo $?)"

echo "changes  [at ${SECONDS}s]"
sed 's/| epochs=3/| epochs=1/' specs.txt > specs2.txt
"$mnist" compare specs2.txt "${common[@]}" --out a/cmp.html --json a/cmp2.json > a/out2 2> err
check "a changed entry: exit 0" $?
check "only the changed entry is trained again" \
    "$([ "$(grep -c 'finished before, skipped' a/out2)" -eq 4 ] && grep -q '^==> wide seed 1' a/out2 &&
        ! grep -q '^==> linear' a/out2; echo $?)"

echo "models  [at ${SECONDS}s]"
odd=$(printf 'odd <i>&\xc3\xa9\xff')
cp a/cmp.models/conv-s1.model "$odd.model"
"$mnist" compare a/cmp.models/linear-s1.model "$odd.model" --data small --threads 2 \
    --out m.html --json m.json > out 2> err &&
    python3 -c '
import json, sys
j = json.load(open("m.json")); b = {e["entry"]: e for e in j["leaderboard"]}
r = {e["entry"]: e for e in json.load(open("a/cmp.json"))["runs"] if e["model"].endswith("s1.model")}
assert abs(b["linear-s1"]["val_acc"] - r["linear"]["val_acc"]) < 1e-6 and abs(b["linear-s1"]["test_acc"] - r["linear"]["test_acc"]) < 1e-9
assert len(b) == 2 and b["linear-s1"]["seconds"] is None'
check "compare MODEL...: entries from trained models, accuracies as recorded" $?
out=$(xmllint --noout m.html 2>&1)
check "odd model names: well-formed XML, escaped" \
    "$([ -z "$out" ] && grep -q 'odd &lt;i&gt;&amp;&#xE9;&#xFFFD;' m.html && ! grep -q '<i>' m.html; echo $?)" "$out"

echo "errors  [at ${SECONDS}s]"
# spec_error LINE_TEXT WHAT: a spec file whose line 2 is LINE_TEXT fails naming bad.txt:2.
spec_error() {
    printf 'ok | dense 10\n%s\n' "$1" > bad.txt
    "$mnist" compare bad.txt --data small --val 500 --out bad.html > out 2> err
    local rc=$?
    check "$2: exit 1, one line naming bad.txt:2" \
        "$([ "$rc" -eq 1 ] && [ "$(wc -l < err)" -eq 1 ] && grep -q '^mnist: bad.txt:2' err; echo $?)" \
        "exit $rc: $(head -c 160 err)"
}
spec_error 'x | conv 4 99, dense 10' "a spec that does not fit"
spec_error 'x | dense 10 | epochs=0' "an option out of range"
spec_error 'x | dense 10 | speed=11' "an unknown option"
spec_error 'x | dense 10 | ema=1' "a weight average decay of 1"
spec_error 'ok | dense 20, dense 10' "a second entry of the same name"
spec_error 'x dense 10' "a line without '|'"
spec_error 'recipe: epochs=1' "a recipe line after the entries"
spec_error '../x | dense 10' "a name that is a path"
for args in "--seeds 0" "--x watts" "--epochs -1" "--val 3000 --limit 2000"; do
    # shellcheck disable=SC2086
    "$mnist" compare specs.txt --data small --out x.html $args > out 2> err
    check "usage: $args: exit 2" "$([ $? -eq 2 ]; echo $?)"
done
"$mnist" compare --help > out 2>&1 && grep -q -- '--seeds' out
check "--help lists the options" $?
finish
