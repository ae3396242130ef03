#!/usr/bin/env bash
# test_cli.sh: the `mnist` command line end to end, against the real MNIST in data/mnist/.
#
# Cases (each line of output is one counted check):
#   usage     exit 2 and a one-line "mnist: " error naming the flag for every absurd value;
#             --help exits 0; unknown commands, unknown flags and a missing --model exit 2
#   info      label counts and image shape of the real files; the --arch table and its JSON
#   bad files truncated / huge-header / short / non-IDX / empty / truncated-gzip IDX files,
#             corrupt / truncated / wrong-version models, models with a forged spec and a
#             valid checksum, missing paths and directories, each through `info FILE` and
#             `eval --model FILE`; forged --data directories for eval and train: exit 1,
#             exactly one stderr line naming the file and the problem, no crash, quick
#   train     a small run: model written atomically (no *.tmp* left), JSON log, one stdout line
#             per epoch, `info --json` metadata, `eval --json` figures consistent with the
#             confusion matrix, and an ensemble of one model twice equal to the model
#   val, tta  `eval --split val` finds the held-out images (accuracy = the recorded val_acc,
#             mistakes numbered as in the training file) and refuses a model without them,
#             models with different splits and other data; `--tta` changes the probabilities
#   resume    SIGKILL after the first checkpoint + --resume, SIGINT (exit 130) and SIGTERM
#             (exit 143) + --resume,
#             both end with the same weights_crc32 as an uninterrupted run
#   safety    --out or --log into a missing directory; a failing run leaves the previous
#             --out and its checkpoint intact
#   nan       a diverging run exits 1 naming the epoch, batch and learning rate
#   sizes     MNIST shrunk to 14x14 trains a 1x14x14 network, with --report; compare trains
#             on it; report on images 28 high and 20 wide (mean images against Python's, the
#             pictures' size); predict, and a model on data of another size, refused in one
#             line; a network too deep for 14x14 or 4x4 images names its layer
# Run by scripts/run-tests with BUILD=build-dir; exit 0 when every check passes.
# CLI_VERBOSE=1 also prints the error line behind each passing error check.
# About 15 s on 2 idle cores, 35 s on 2 busy ones.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
mnist=$build/mnist
data=$root/data/mnist
tmp=$(mktemp -d)
bg_pid=
cleanup() {
    if [ -n "$bg_pid" ]; then kill -9 "$bg_pid" 2>/dev/null; fi
    rm -rf -- "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1 # so that a stray default (mnist.model) can never land in the repository
# libgomp's threads spin while they wait by default: on a loaded 2-core machine that makes the
# trainings here several times slower (measured 109 s instead of 25 s for the resume cases).
# Waiting passively changes no result (those depend on the seed and --threads only).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

if [ ! -x "$mnist" ]; then
    echo "cli: $mnist not built"
    exit 1
fi
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
    t10k-labels-idx1-ubyte; do
    if [ ! -f "$data/$f" ]; then
        echo "cli: $data/$f missing (run scripts/fetch-data)"
        exit 1
    fi
done

# Small, fast settings for every training in this file.
tiny=(--limit 2000 --val 500 --arch "conv 4 5, relu, maxpool 2, dense 10" --threads 2 --data "$data")
# Long enough (about 1 s an epoch on 2 cores) to kill between checkpoints.
long=(--limit 30000 --val 1000 --epochs 3 --seed 7 --threads 2 --data "$data"
    --arch "conv 8 5, relu, maxpool 2, dense 10")

passed=0
failed=0
section() { echo "$1  [at ${SECONDS}s]"; }
verbose=${CLI_VERBOSE:-0} # 1: show the error line each passing error check saw
ok() {
    passed=$((passed + 1))
    echo "  ok    $1"
    if [ "$verbose" = 1 ] && [ -n "$errline" ]; then echo "          $errline"; fi
}
bad() {
    failed=$((failed + 1))
    echo "  FAIL  $1: $2"
    if [ -s "$tmp/err" ]; then sed -n '1,4s/^/          stderr: /p' "$tmp/err"; fi
}
# check NAME: records the outcome of the preceding command list by `why` being empty.
why=
check() {
    if [ -z "$why" ]; then ok "$1"; else bad "$1" "$why"; fi
    why=
    errline=
}

# run CMD...: stdout -> $tmp/out, stderr -> $tmp/err, exit status in $rc, wall time in $ms.
rc=0
ms=0
run() {
    local t0 t1
    t0=$(date +%s%N)
    rc=0
    timeout 120 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null || rc=$?
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
}

# expect_exit CODE [--usage|--banner] -- CMD...: runs CMD; sets why unless it exits CODE
# and, when CODE is not 0, stderr is exactly one line starting "mnist: " (put in $errline).
#   --usage   the error line may be followed by help text (usage, list of presets)
#   --banner  training's "mnist: SPEC, N threads, ..." start line may precede the error
errline=
expect_exit() {
    local want=$1 mode=strict lines
    shift
    while [ "$1" != -- ]; do
        case $1 in --usage) mode=usage ;; --banner) mode=banner ;; esac
        shift
    done
    shift
    run "$@"
    why=
    errline=
    if [ "$rc" -ne "$want" ]; then
        why="exit $rc, want $want"
        [ "$rc" -lt 128 ] || why="$why (killed by signal $((rc - 128)))"
        return 1
    fi
    [ "$want" -ne 0 ] || return 0
    case $mode in
    usage) lines=$(head -n 1 "$tmp/err") ;;
    banner) lines=$(grep -Ev '^mnist: .*, [0-9]+ threads, [0-9]+ epochs, batch ' "$tmp/err") ;;
    *) lines=$(cat "$tmp/err") ;;
    esac
    if [ -z "$lines" ]; then
        why="nothing on stderr"
    elif [ "$(printf '%s\n' "$lines" | wc -l)" -ne 1 ]; then
        why="$(printf '%s\n' "$lines" | wc -l) error lines on stderr, want 1"
    elif [ "${lines#mnist: }" = "$lines" ]; then
        why="stderr line does not start with 'mnist: '"
    fi
    errline=$lines
    [ -z "$why" ]
}

# has TEXT ERE: sets why unless TEXT matches ERE (grep -E, case-insensitive).
# Match problems against "${errline//$path/}" so that a file's own name cannot satisfy them.
has() {
    if ! printf '%s\n' "$1" | grep -Eqi -- "$2"; then why="'$1' does not match /$2/"; fi
    [ -z "$why" ]
}
hasf() { # hasf TEXT STRING: fixed-string variant
    if ! printf '%s\n' "$1" | grep -Fq -- "$2"; then why="'$1' does not mention '$2'"; fi
    [ -z "$why" ]
}

# py CODE ARGS...: python3 -c CODE; on failure its stderr's last line goes into why.
py() {
    local msg
    if ! msg=$(python3 -c "$1" "${@:2}" 2>&1); then
        why="python check failed: $(printf '%s\n' "$msg" | tail -n 1)"
        return 1
    fi
    [ -z "$msg" ] || printf '%s\n' "$msg"
}

# json_field FILE EXPR: print a field of the JSON object in FILE, e.g. json_field f "d['x']".
json_field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# flip_byte FILE OFFSET: xor one byte with 0xff in place.
flip_byte() {
    local byte
    byte=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
    printf '%b' "\\0$(printf '%03o' $((byte ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

crc_of() { # crc_of MODEL: its weights_crc32 from `mnist info --json` ("" on failure)
    "$mnist" info "$1" --json 2>/dev/null | python3 -c \
        'import json,sys; print(json.load(sys.stdin)["weights_crc32"])' 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
section "usage"

run "$mnist" # just the usage, no error line
[ "$rc" -eq 2 ] || why="exit $rc, want 2"
[ -n "$why" ] || grep -q '^usage: mnist' "$tmp/err" || why="no usage text on stderr"
[ -n "$why" ] || [ ! -s "$tmp/out" ] || why="usage on stdout"
check "mnist alone: exit 2 with usage on stderr"

expect_exit 2 --usage -- "$mnist" nope && hasf "$errline" "nope"
check "mnist nope: exit 2, names the command"

expect_exit 0 -- "$mnist" train --help
[ -n "$why" ] || grep -q '^usage: mnist train' "$tmp/out" || why="no usage on stdout"
[ -n "$why" ] || [ ! -s "$tmp/err" ] || why="stderr not empty"
check "train --help: exit 0, usage on stdout"

for sub in train eval predict info bench serve export; do
    expect_exit 0 -- "$mnist" $sub -h
    [ -n "$why" ] || grep -q "^usage: mnist $sub" "$tmp/out" || why="no usage on stdout"
    check "$sub -h: exit 0, usage on stdout, like --help"
done
for sub in train eval predict info bench serve export; do
    run "$mnist" $sub --frobnicate
    why=
    [ "$rc" -eq 2 ] || why="exit $rc, want 2"
    [ -n "$why" ] || [ "$(wc -l < "$tmp/err")" -eq 2 ] || why="$(wc -l < "$tmp/err") lines on stderr, want 2"
    [ -n "$why" ] || [ "$(sed -n 2p "$tmp/err")" = "mnist: see \`mnist $sub --help\` for its options" ] ||
        why="second line: $(sed -n 2p "$tmp/err")"
    check "$sub --frobnicate: the error and a pointer to --help, two lines, not the whole usage"
done
for sub in train eval info; do
    expect_exit 2 --usage -- "$mnist" $sub --frobnicate && hasf "$errline" "--frobnicate"
    check "$sub --frobnicate: exit 2, 'mnist: ' error naming the flag"
done
expect_exit 2 --usage -- "$mnist" train --epochs && hasf "$errline" "--epochs"
check "train --epochs (value missing): exit 2, 'mnist: ' error naming the flag"
expect_exit 2 -- "$mnist" train "${tiny[@]}" --out "$tmp/never.model" --schedule cosine \
    --min-lr 10 --lr 1e-3 && hasf "$errline" "--min-lr 10 is above --lr 0.001"
[ -n "$why" ] || [ ! -e "$tmp/never.model" ] || why="trained anyway"
check "train --schedule cosine --min-lr 10 --lr 1e-3: exit 2, the floor above the peak refused"
expect_exit 2 -- "$mnist" predict --model a.model --model b.model x.png && hasf "$errline" "one --model"
check "predict with two --model: exit 2, one line (no silent last-one-wins)"
mkfifo "$tmp/out.fifo"
for out in /dev/null "$tmp/out.fifo"; do
    expect_exit 1 -- "$mnist" train "${tiny[@]}" --out "$out" && hasf "$errline" "$out" &&
        has "$errline" 'not a regular file'
    [ -n "$why" ] || [ ! -e "$out.ckpt" ] || why="wrote $out.ckpt"
    [ -n "$why" ] || [ ! -f "$out" ] || why="$out became a regular file"
    check "train --out $out: exit 1 before training, the node left as it is"
done
expect_exit 2 -- "$mnist" train --val 60000 --arch "dense 10" --data "$data" \
    --out "$tmp/never.model" && hasf "$errline" "--val 60000"
[ -n "$why" ] || [ ! -e "$tmp/never.model" ] || why="trained anyway"
check "train --val 60000 without --limit: exit 2, one line naming --val"
expect_exit 1 --banner -- "$mnist" train "${tiny[@]}" --epochs 2 --out "$tmp/full.model" --log /dev/full &&
    hasf "$errline" "/dev/full" && has "$errline" "write failed"
[ -n "$why" ] || [ -s "$tmp/full.model" ] || why="no model: the log's failure stopped training"
check "train --log /dev/full: said once, the model still written, exit 1"
mkdir -p "$tmp/owndata"
cp "$data"/train-* "$data"/t10k-* "$tmp/owndata/"
cp "$tmp/owndata/train-labels-idx1-ubyte" "$tmp/labels.orig"
expect_exit 2 -- "$mnist" train --limit 2000 --val 500 --arch "dense 10" --data "$tmp/owndata" \
    --out "$tmp/owndata/train-labels-idx1-ubyte" && hasf "$errline" "train-labels-idx1-ubyte" &&
    has "$errline" 'data files'
[ -n "$why" ] || cmp -s "$tmp/owndata/train-labels-idx1-ubyte" "$tmp/labels.orig" ||
    why="the labels file changed"
check "train --out onto its own training labels: exit 2, the file untouched"
rm -rf "$tmp/owndata"
# a resume takes its recipe from the checkpoint: flags that would change it are refused
for flag in "--epochs 5" "--lr 0.1" "--batch 32" "--arch dense_10" "--seed 3" "--limit 100" \
    "--preset fast" "--augment affine" "--nesterov"; do
    set -- $flag
    expect_exit 2 -- "$mnist" train --resume "$tmp/any.ckpt" "$1" ${2:+"${2//_/ }"} &&
        hasf "$errline" "$1 cannot change on resume"
    check "train --resume CKPT $flag: exit 2, one line naming $1"
done
# a value given to a flag that takes none: the flag by name, never its raw option code
for sub_flag in "train --quiet=1" "eval --json=1" "predict --show=yes" "serve --help=1" \
    "export --no-fold-bn=1" "info --json=0"; do
    set -- $sub_flag
    expect_exit 2 --usage -- "$mnist" "$1" "$2" && hasf "$errline" "'${2%%=*}' takes no value" &&
        ! printf '%s' "$errline" | LC_ALL=C grep -q '[[:cntrl:]]'
    check "$sub_flag: exit 2, names ${2%%=*} as taking no value, no control bytes"
done

# flag_case FLAG VALUE [--usage]: `train FLAG VALUE` exits 2 with one line naming FLAG.
flag_case() {
    local mode=
    [ $# -lt 3 ] || mode=$3
    expect_exit 2 ${mode:+"$mode"} -- "$mnist" train "${tiny[@]}" --out "$tmp/never.model" "$1" "$2" &&
        hasf "$errline" "$1"
    [ -n "$why" ] || [ ! -e "$tmp/never.model" ] || why="wrote $tmp/never.model"
    check "train $1 '$2': exit 2, one line naming $1"
}
flag_case --epochs 0
flag_case --epochs -3
flag_case --epochs abc
flag_case --batch 0
flag_case --batch 99999999
flag_case --lr -1
flag_case --lr nan
flag_case --lr 1e9
flag_case --optimizer foo
flag_case --schedule foo
flag_case --augment foo
flag_case --threads -1
flag_case --label-smoothing 1.5
flag_case --ema 1
flag_case --ema -0.5
flag_case --val 2000 # as many as --limit 2000: none left to train on
flag_case --preset nope --usage # the error line is followed by the list of presets

# arch_case SPEC ERE: `train --arch SPEC` exits 2 with one line matching ERE.
arch_case() {
    expect_exit 2 -- "$mnist" train "${tiny[@]}" --out "$tmp/never.model" --arch "$1" &&
        hasf "$errline" "--arch" && has "$errline" "$2"
    check "train --arch '$1': exit 2, one line /$2/"
}
arch_case "conv 32 99" "layer 1 'conv 32 99'.*(kernel|larger)"
arch_case "convv 3 3" "convv.*unknown|unknown.*convv"
arch_case "conv 32" "conv 32.*missing|missing.*conv 32"
arch_case "conv -3 3" "-3"
arch_case "" "empty"
arch_case "conv 4 5, relu, maxpool 2, dense 10, conv 3 3" "layer 5"

expect_exit 2 --usage -- "$mnist" eval --data "$data" && hasf "$errline" "--model"
check "eval without --model: exit 2, names --model"
expect_exit 2 --usage -- "$mnist" eval --model "$tmp/x.model" --split nope && hasf "$errline" "--split"
check "eval --split nope: exit 2, names --split"

# bench --latency-only: the latency alone, as bench/compare's alternating rounds run it
expect_exit 0 -- "$mnist" bench --arch "conv 4 3, relu, maxpool 2, dense 10" --threads 2 \
    --latency-only --latency-iters 30 --json --data "$data"
[ -n "$why" ] || py 'import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"spec", "threads", "latency_iters", "latency_us_median", "latency_us_p90"}, d
assert d["latency_iters"] == 30 and d["threads"] == 2, d
assert 0 < d["latency_us_median"] <= d["latency_us_p90"], d' "$tmp/out"
check "bench --latency-only --json: the latency alone, 0 < median <= p90"
expect_exit 2 -- "$mnist" bench --latency-only --latency-iters 0 && hasf "$errline" "--latency-iters"
check "bench --latency-only --latency-iters 0: exit 2, one line naming the flag"

# ---------------------------------------------------------------------------------------------
section "info"

expect_exit 0 -- "$mnist" info "$data/train-labels-idx1-ubyte" --json
[ -n "$why" ] || py 'import json,sys
d = json.load(open(sys.argv[1]))
assert d["counts"] == [5923,6742,5958,6131,5842,5421,5918,6265,5851,5949], d["counts"]
assert d["shape"] == [60000], d["shape"]' "$tmp/out"
check "info train labels --json: per-class counts"

expect_exit 0 -- "$mnist" info "$data/train-images-idx3-ubyte" --json
[ -n "$why" ] || py 'import json,sys
d = json.load(open(sys.argv[1]))
assert d["shape"] == [60000,28,28], d["shape"]' "$tmp/out"
check "info train images --json: shape [60000,28,28]"

spec="conv 32 3 pad=1, bn, relu, maxpool 2, dense 10"
expect_exit 0 -- "$mnist" info --arch "$spec"
[ -n "$why" ] || py 'import re,sys
t = open(sys.argv[1]).read().splitlines()
head = [l for l in t if "params" in l and "MFLOPs" in l]
assert head, "no header with params and MFLOPs"
rows = [l.split() for l in t if re.match(r"^[1-9]\d* ", l)]
assert len(rows) == 5, "%d layer rows, want 5" % len(rows)
want = {"conv": 320, "bn": 64, "relu": 0, "maxpool": 0, "dense": 62730}
for r in rows:
    assert int(r[-2]) == want[r[1]], "%s: %s params, want %d" % (r[1], r[-2], want[r[1]])
    float(r[-1])
tot = [l for l in t if l.startswith("total")]
assert len(tot) == 1 and re.search(r"\b63114 parameters", tot[0]) and "MFLOPs" in tot[0], tot' \
    "$tmp/out"
check "info --arch: table with params, MFLOPs and a total line"

expect_exit 0 -- "$mnist" info --arch "$spec" --json
[ -n "$why" ] || py 'import json,sys
d = json.load(open(sys.argv[1]))
assert d["params"] == 63114 and d["state"] == 64, (d["params"], d["state"])
assert [l["params"] for l in d["layers"]] == [320, 64, 0, 0, 62730]
assert abs(sum(l["mflops"] for l in d["layers"]) - d["mflops"]) < 1e-3
assert d["layers"][-1]["output"] == [10, 1, 1]' "$tmp/out"
check "info --arch --json: parses, params add up"

# ---------------------------------------------------------------------------------------------
section "train and eval (--limit 2000 --val 500 --epochs 2)"

mkdir -p "$tmp/run"
M=$tmp/run/m.model
L=$tmp/run/log.jsonl
expect_exit 0 -- "$mnist" train "${tiny[@]}" --epochs 2 --out "$M" --log "$L"
cp "$tmp/out" "$tmp/train.out"
cp "$tmp/err" "$tmp/train.err"
[ -n "$why" ] || [ -s "$M" ] || why="$M missing or empty"
[ -n "$why" ] || [ -s "$M.ckpt" ] || why="$M.ckpt missing or empty"
check "train: exit 0, model and checkpoint written"

leftover=$(find "$tmp/run" -name '*.tmp*')
[ -z "$leftover" ] || why="left behind: $leftover"
[ -n "$why" ] || [ -s "$M" ] || why="no model to look beside"
check "train: no *.tmp* files left"

[ "$(grep -c '^epoch ' "$tmp/train.out")" -eq 2 ] ||
    why="$(grep -c '^epoch ' "$tmp/train.out") 'epoch' lines on stdout, want 2"
[ -n "$why" ] || ! grep -q "$(printf '[\r\033]')" "$tmp/train.out" "$tmp/train.err" ||
    why="carriage return or escape sequence in the output of a run without a tty"
check "train: one stdout line per epoch, no progress bar without a tty"

[ -n "$why" ] || py 'import json,sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2, "%d log lines, want 2" % len(lines)
for i, l in enumerate(lines):
    d = json.loads(l)
    for k in ("epoch", "train_loss", "val_acc", "lr", "seconds", "images_per_s"):
        assert k in d, "line %d lacks %s" % (i + 1, k)
    assert d["epoch"] == i + 1, d["epoch"]
    assert 0 <= d["val_acc"] <= 1 and d["train_loss"] > 0 and d["lr"] > 0' "$L"
check "train --log: 2 JSON lines with epoch, train_loss, val_acc, lr, seconds, images_per_s"

expect_exit 0 -- "$mnist" info "$M" --json
[ -n "$why" ] || py 'import json,sys
d = json.load(open(sys.argv[1]))
m = d["meta"]
assert m["epochs"] == "2" and m["dataset"] == "mnist" and m["train_images"] == "1500", m
assert m["recipe.optimizer"] == "adam" and m["recipe.epochs"] == "2" and m["recipe.val"] == "500", m
assert len(m["data_fingerprint"]) == 16 and len(m["val_fingerprint"]) == 16, m
assert d["classes"] == [str(i) for i in range(10)], d["classes"]
assert d["network"]["spec"] == "conv 4 5, relu, maxpool 2, dense 10", d["network"]["spec"]
assert len(d["weights_crc32"]) == 8' "$tmp/out"
check "info MODEL --json: parses, meta epochs 2, the recipe, fingerprints, class names"

expect_exit 0 -- "$mnist" eval --model "$M" --data "$data" --json
cp "$tmp/out" "$tmp/eval1.json"
[ -n "$why" ] || py 'import json,sys
d = json.load(open(sys.argv[1]))
C = d["confusion"]
k = len(C)
assert k == 10 and all(len(r) == k for r in C)
n = sum(map(sum, C))
tr = sum(C[i][i] for i in range(k))
assert n == d["n"] == 10000, (n, d["n"])
assert tr == d["correct"], (tr, d["correct"])
assert abs(d["accuracy"] - tr / n) < 1e-6, (d["accuracy"], tr / n)
assert d["accuracy"] > 0.3, "suspiciously low accuracy %g" % d["accuracy"]
for c, pc in enumerate(d["per_class"]):
    row = sum(C[c])
    col = sum(C[t][c] for t in range(k))
    p = C[c][c] / col if col else 0.0
    r = C[c][c] / row if row else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    assert pc["label"] == c
    assert pc["support"] == row, (c, pc["support"], row)
    assert abs(pc["precision"] - p) < 1e-6, (c, "precision", pc["precision"], p)
    assert abs(pc["recall"] - r) < 1e-6, (c, "recall", pc["recall"], r)
    assert abs(pc["f1"] - f) < 1e-6, (c, "f1", pc["f1"], f)' "$tmp/eval1.json"
check "eval --json: accuracy = trace/sum, per-class precision/recall/f1/support match confusion"

expect_exit 0 -- "$mnist" eval --model "$M" --model "$M" --data "$data" --json
[ -n "$why" ] || py 'import json,sys
a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
assert b["models"] == [sys.argv[3]] * 2, b["models"]
assert a["accuracy"] == b["accuracy"], (a["accuracy"], b["accuracy"])
assert a["confusion"] == b["confusion"]' "$tmp/eval1.json" "$tmp/out" "$M"
check "eval --model M --model M: same accuracy and confusion as one model"

# ---------------------------------------------------------------------------------------------
section "batch sizes and remainders"

# The last batch of an epoch that would hold one image joins the one before it (B + 1 images):
# 5051 - 5000 = 51 images at batch 50, and 97 with batch norm.
mkdir -p "$tmp/rem"
expect_exit 0 -- "$mnist" train --arch "conv 8 3, relu, maxpool 2, dense 10" --batch 50 --val 5000 \
    --limit 5051 --epochs 1 --data "$data" --out "$tmp/rem/a.model"
check "train --batch 50 --val 5000 --limit 5051 (one batch of 51)"
for b in 1 3 97 129; do
    expect_exit 0 -- "$mnist" train --arch "conv 8 3, bn, relu, maxpool 2, dense 10" --batch $b \
        --limit $((4 * b + 1 + 7)) --val 7 --epochs 1 --data "$data" --out "$tmp/rem/b$b.model"
    check "train --batch $b over $((4 * b + 1)) images, with batch norm"
done

section "eval --split val and --tta"

# --split val finds the images the run held out; their accuracy is the val_acc it recorded
expect_exit 0 -- "$mnist" info "$M" --json
cp "$tmp/out" "$tmp/info.json"
expect_exit 0 -- "$mnist" eval --model "$M" --data "$data" --split val --json --mistakes 1000
[ -n "$why" ] || py 'import json, sys
d, meta = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["meta"]
assert d["split"] == "val" and d["tta"] is False and d["n"] == 500, (d["split"], d["n"])
assert abs(d["accuracy"] - float(meta["val_acc"])) < 1e-6, (d["accuracy"], meta["val_acc"])
labels = open(sys.argv[3] + "/train-labels-idx1-ubyte", "rb").read()[8:]
assert d["mistakes"], "no mistakes to check"
for m in d["mistakes"]:  # numbered as in the training file, where the label is the same
    assert 0 <= m["index"] < 2000 and labels[m["index"]] == m["label"], m' \
    "$tmp/out" "$tmp/info.json" "$data"
check "eval --split val: the 500 held-out images, accuracy = the model's val_acc, indices in the file"

expect_exit 0 -- "$mnist" eval --model "$M" --data "$data" --split val --probs "$tmp/p1.txt"
expect_exit 0 -- "$mnist" eval --model "$M" --data "$data" --split val --tta --json \
    --probs "$tmp/p5.txt"
[ -n "$why" ] || has "$(head -c 200 "$tmp/out")" '"tta":true' && py 'import sys
rows = [[list(map(float, l.split())) for l in open(f)] for f in sys.argv[1:3]]
assert len(rows[0]) == len(rows[1]) == 500
assert all(abs(sum(r) - 1) < 1e-4 for r in rows[1])
moved = max(abs(a - b) for r0, r1 in zip(*rows) for a, b in zip(r0, r1))
assert moved > 1e-3, "--tta changed no probability (%g)" % moved' "$tmp/p1.txt" "$tmp/p5.txt"
check "eval --tta: probabilities still sum to 1, and differ from one view"

expect_exit 0 -- "$mnist" train "${tiny[@]}" --val 0 --epochs 1 --out "$tmp/noval.model"
expect_exit 1 -- "$mnist" eval --model "$tmp/noval.model" --data "$data" --split val &&
    hasf "$errline" "$tmp/noval.model" && has "${errline//$tmp/}" 'held out no images'
check "eval --split val, model trained with --val 0: exit 1, names the model"

expect_exit 1 -- "$mnist" eval --model "$M" --model "$tmp/rem/a.model" --data "$data" --split val &&
    hasf "$errline" "$tmp/rem/a.model" && has "${errline//$tmp/}" 'held out other images'
check "eval --split val, models with different splits: exit 1, names the odd one"

mkdir -p "$tmp/t10k-as-train"
ln -sf "$data/t10k-images-idx3-ubyte" "$tmp/t10k-as-train/train-images-idx3-ubyte"
ln -sf "$data/t10k-labels-idx1-ubyte" "$tmp/t10k-as-train/train-labels-idx1-ubyte"
expect_exit 1 -- "$mnist" eval --model "$M" --data "$tmp/t10k-as-train" --split val &&
    hasf "$errline" "$M" && has "${errline//$tmp/}" 'not the images its training held out'
check "eval --split val on other data: exit 1, the fingerprints differ"

section "resume paths and class names"

# A resumed run writes its checkpoint back to the file resumed and its model to --out, else to
# that file less .ckpt; a path stored in a checkpoint is never used.
mkdir -p "$tmp/rp/elsewhere"
expect_exit 0 -- "$mnist" train "${tiny[@]}" --epochs 1 --out "$tmp/rp/r.model"
[ -n "$why" ] || cp "$tmp/rp/r.model.ckpt" "$tmp/rp/elsewhere/moved.ckpt"
cat > "$tmp/bump.py" <<'EOF'
import struct,sys,zlib
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
t = b.find(b"TRNS"); n = struct.unpack_from("<Q", b, t + 4)[0]
o = t + 12 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 4  # epochs is the 9th field
struct.pack_into("<I", b, o, 2)               # one more epoch to run
struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xffffffff)
open(p, "wb").write(b)
EOF
[ -n "$why" ] || py "$(cat "$tmp/bump.py")" "$tmp/rp/elsewhere/moved.ckpt"
check "resume paths: a checkpoint moved to another directory, set to run one more epoch"
expect_exit 0 -- "$mnist" train --resume "$tmp/rp/elsewhere/moved.ckpt" --threads 2 --data "$data"
[ -n "$why" ] || [ -s "$tmp/rp/elsewhere/moved" ] || why="no model at elsewhere/moved"
[ -n "$why" ] || grep -q "model to $tmp/rp/elsewhere/moved" "$tmp/err" || why="stderr does not say where the model goes"
[ -n "$why" ] || [ "$(find "$tmp/rp" -newer "$tmp/rp/elsewhere/moved.ckpt" -name 'r.model*' | wc -l)" -eq 0 ] ||
    why="the original paths were written to"
check "resume: model beside the moved checkpoint, never at the paths it was trained with"
# a checkpoint whose name does not end in .ckpt: the model goes beside it, NAME.model
[ -n "$why" ] || cp "$tmp/rp/r.model.ckpt" "$tmp/rp/elsewhere/state"
[ -n "$why" ] || py "$(cat "$tmp/bump.py")" "$tmp/rp/elsewhere/state"
expect_exit 0 -- "$mnist" train --resume "$tmp/rp/elsewhere/state" --threads 2 --data "$data"
[ -n "$why" ] || [ -s "$tmp/rp/elsewhere/state.model" ] || why="no model at elsewhere/state.model"
check "resume of a checkpoint named without .ckpt: the model goes to NAME.model beside it"
expect_exit 0 -- "$mnist" train --resume "$tmp/rp/r.model.ckpt" --out "$tmp/rp/elsewhere/given.model" \
    --threads 2 --data "$data"
[ -n "$why" ] || grep -q "nothing to train: .*r.model.ckpt had finished all its epochs (1); no model written to" "$tmp/out" ||
    why="no 'nothing to train' line: $(head -c 200 "$tmp/out")"
check "resume of a finished run: exit 0, says nothing was trained, claims no model"

# The dataset a model records comes from the data's content, never from the directory's name:
# MNIST in a directory named like Fashion-MNIST is "mnist", one changed label makes it
# "custom", and Fashion-MNIST (where scripts/fetch-data has put it) names its classes.
dataset_of() { # dataset_of MODEL DATASET FIRST-CLASS LAST-CLASS
    expect_exit 0 -- "$mnist" info "$1" --json
    [ -n "$why" ] || py 'import json,sys
d = json.load(open(sys.argv[1]))
assert d["meta"]["dataset"] == sys.argv[2], d["meta"]
assert d["classes"][0] == sys.argv[3] and d["classes"][9] == sys.argv[4], d["classes"]' \
        "$tmp/out" "$2" "$3" "$4"
}
mkdir -p "$tmp/fashion-like" "$tmp/custom"
for f in "$data"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$tmp/fashion-like/"; done
expect_exit 0 -- "$mnist" train "${tiny[@]}" --epochs 1 --data "$tmp/fashion-like" --out "$tmp/rp/f.model"
dataset_of "$tmp/rp/f.model" mnist 0 9
check "MNIST in a directory named fashion-like: the model says mnist, with digit classes"
cp "$data/train-images-idx3-ubyte" "$tmp/custom/"
py 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[8 + 59999] = (b[8 + 59999] + 1) % 10
open(sys.argv[2], "wb").write(b)' "$data/train-labels-idx1-ubyte" "$tmp/custom/train-labels-idx1-ubyte"
expect_exit 0 -- "$mnist" train "${tiny[@]}" --epochs 1 --data "$tmp/custom" --out "$tmp/rp/c.model"
dataset_of "$tmp/rp/c.model" custom 0 9
check "MNIST with one label changed: the model says custom"
if [ -f "$root/data/fashion/train-images-idx3-ubyte" ] || [ -f "$root/data/fashion/train-images-idx3-ubyte.gz" ]; then
    expect_exit 0 -- "$mnist" train "${tiny[@]}" --epochs 1 --data "$root/data/fashion" --out "$tmp/rp/fa.model"
    dataset_of "$tmp/rp/fa.model" fashion-mnist T-shirt/top "Ankle boot"
    check "a model trained on Fashion-MNIST says so and names its classes"
    # a preset's recipe for Fashion-MNIST, unless --augment or --epochs say otherwise
    recipe_is() { # recipe_is MODEL AUGMENT EPOCHS
        expect_exit 0 -- "$mnist" info "$1" --json
        [ -n "$why" ] || py 'import json,sys; m = json.load(open(sys.argv[1]))["meta"]
got = (m["recipe.augment"], m["recipe.epochs"])
assert got == (sys.argv[2], sys.argv[3]), got' "$tmp/out" "$2" "$3"
    }
    expect_exit 0 -- "$mnist" train --preset default "${tiny[@]}" --data "$root/data/fashion" \
        --out "$tmp/rp/fd.model"
    grep -q "fashion-mnist: the default preset's recipe for it: augmentation none (instead of affine), 16 epochs (instead of 8)" "$tmp/err" ||
        why="no line saying so: $(head -c 300 "$tmp/err")"
    [ -n "$why" ] || recipe_is "$tmp/rp/fd.model" none 16
    [ -n "$why" ] || expect_exit 0 -- "$mnist" train --preset default "${tiny[@]}" --epochs 1 \
        --data "$root/data/fashion" --augment affine --out "$tmp/rp/fe.model"
    [ -z "$why" ] && grep -q "fashion-mnist" "$tmp/err" && why="said it changed a recipe given in full"
    [ -n "$why" ] || recipe_is "$tmp/rp/fe.model" affine 1
    [ -n "$why" ] || expect_exit 0 -- "$mnist" train --preset best "${tiny[@]}" --epochs 1 \
        --data "$root/data/fashion" --out "$tmp/rp/fb.model"
    [ -n "$why" ] || recipe_is "$tmp/rp/fb.model" flip 1
    check "Fashion-MNIST: the default preset trains 16 epochs without augmentation, best flips; --augment and --epochs override"
else
    echo "  skip  Fashion-MNIST is not in data/fashion (scripts/fetch-data --dataset fashion)"
fi

section "bad files"

mkdir -p "$tmp/bad"
B=$tmp/bad
head -c 1000 "$data/train-labels-idx1-ubyte" >"$B/truncated-labels"
head -c 1000 "$data/train-images-idx3-ubyte" >"$B/truncated-images"
{
    printf '\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff'
    head -c 4096 /dev/zero
} >"$B/huge-dims"
{
    printf '\x00\x00\x08\x03\x00\x0f\x42\x40\x00\x00\x00\x1c\x00\x00\x00\x1c' # 1e6 x 28 x 28
    head -c 4096 /dev/zero
} >"$B/huge-count"
{
    printf '\x00\x00\x08\x01\x00\x00\x03\xe8' # 1000 labels, 500 present
    head -c 500 /dev/zero
} >"$B/count-over-data"
printf 'this is a text file, not IDX\nsecond line\n' >"$B/text.txt"
: >"$B/empty"
gzip -c "$data/train-labels-idx1-ubyte" | head -c 5000 >"$B/truncated.gz"
mkdir -p "$B/a-directory"
mkfifo "$B/a-fifo"
cp "$M" "$B/corrupt.model"
flip_byte "$B/corrupt.model" $(($(stat -c %s "$M") / 2))
head -c $(($(stat -c %s "$M") - 100)) "$M" >"$B/truncated.model"
# version 99 with a correct checksum, so that only the version is wrong
python3 -c 'import struct,sys,zlib
b = bytearray(open(sys.argv[1], "rb").read())
b[8:12] = struct.pack("<I", 99)
b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
open(sys.argv[2], "wb").write(b)' "$M" "$B/version99.model"
# Forged SPEC sections with a correct checksum: the stored spec must be checked against
# limits and against the parameters the file really holds, before anything is allocated.
forge_spec() { # forge_spec OUT C H W SPEC
    python3 -c 'import struct,sys,zlib
src, dst, c, h, w, spec = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6]
b = open(src, "rb").read()
out, pos = bytearray(b[:16]), 16
while True:
    tag, n = b[pos:pos + 4], struct.unpack("<Q", b[pos + 4:pos + 12])[0]
    body = b[pos + 12:pos + 12 + n]
    pos += 12 + n
    if tag == b"SPEC":
        body = struct.pack("<III", c, h, w) + spec.encode()
    out += tag + struct.pack("<Q", len(body)) + body
    if tag == b"END ":
        break
out += struct.pack("<I", zlib.crc32(bytes(out)))
open(dst, "wb").write(out)' "$M" "$B/$1" "$2" "$3" "$4" "$5"
}
forge_spec spec-huge-dense.model 1 28 28 "dense 1000000000"
forge_spec spec-huge-layers.model 1 28 28 "conv 65536 1, dense 65536"
forge_spec spec-huge-input.model 1 100000 100000 "conv 4 5, relu, maxpool 2, dense 10"
forge_spec spec-more-params.model 1 28 28 "conv 4 5, relu, maxpool 2, dense 64, dense 10"
forge_spec spec-fewer-params.model 1 28 28 "conv 4 5, relu, maxpool 2, dense 5"

# bad_file NAME INFO_ERE EVAL_ERE: both commands exit 1 quickly, one line naming the file.
bad_file() {
    local f=$B/$1
    expect_exit 1 -- "$mnist" info "$f" && hasf "$errline" "$f" && has "${errline//$f/}" "$2"
    [ -n "$why" ] || [ "$ms" -lt 5000 ] || why="took $ms ms"
    check "info $1: exit 1, one line naming it /$2/"
    expect_exit 1 -- "$mnist" eval --data "$data" --model "$f" && hasf "$errline" "$f" &&
        has "${errline//$f/}" "$3"
    [ -n "$why" ] || [ "$ms" -lt 10000 ] || why="took $ms ms"
    check "eval --model $1: exit 1, one line naming it /$3/"
}
notmodel='not a model|too short|magic'
bad_file truncated-labels 'truncat' "$notmodel"
bad_file truncated-images 'truncat' "$notmodel"
bad_file huge-dims 'at most|limit|overflow|too (large|big)' "$notmodel"
bad_file huge-count 'truncat|implies|at most|limit' "$notmodel"
bad_file count-over-data 'truncat|implies' "$notmodel"
bad_file text.txt 'magic|not an IDX' "$notmodel"
bad_file empty 'empty' "$notmodel"
bad_file truncated.gz 'gzip|truncat' "$notmodel"
bad_file corrupt.model 'checksum|corrupt' 'checksum|corrupt'
bad_file truncated.model 'checksum|truncat|corrupt' 'checksum|truncat|corrupt'
bad_file version99.model 'version 99' 'version 99'
bad_file no-such-file 'no such file|cannot open' 'no such file|cannot open'
bad_file a-directory 'not a regular file|directory' 'not a regular file|directory'
bad_file a-fifo 'not a regular file' 'not a regular file'
bad_file spec-huge-dense.model 'dense 1000000000' 'dense 1000000000'
bad_file spec-huge-layers.model 'dense 65536|conv 65536 1.*too large' 'dense 65536|conv 65536 1.*too large'
bad_file spec-huge-input.model '100000' '100000'
bad_file spec-more-params.model 'param|PARM' 'param|PARM'
bad_file spec-fewer-params.model 'param|PARM' 'param|PARM'

# Forged --data directories: each holds t10k-* and train-* files built from the real ones.
# forge DIR: start DIR as a copy (symlinks) of the real data.
forge() {
    mkdir -p "$1"
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
        t10k-labels-idx1-ubyte; do
        ln -sf "$data/$f" "$1/$f"
    done
}
D=$tmp/data
mkdir -p "$D/empty"
forge "$D/trunc-images"
rm "$D/trunc-images/t10k-images-idx3-ubyte" "$D/trunc-images/train-images-idx3-ubyte"
head -c 100000 "$data/t10k-images-idx3-ubyte" >"$D/trunc-images/t10k-images-idx3-ubyte"
head -c 100000 "$data/train-images-idx3-ubyte" >"$D/trunc-images/train-images-idx3-ubyte"
forge "$D/count-mismatch" # 10000 images with 60000 labels
ln -sf "$data/train-labels-idx1-ubyte" "$D/count-mismatch/t10k-labels-idx1-ubyte"
ln -sf "$data/t10k-labels-idx1-ubyte" "$D/count-mismatch/train-labels-idx1-ubyte"
forge "$D/bad-label" # label 200 in the middle
for s in t10k train; do
    rm "$D/bad-label/$s-labels-idx1-ubyte"
    cp "$data/$s-labels-idx1-ubyte" "$D/bad-label/$s-labels-idx1-ubyte"
    printf '\xc8' | dd of="$D/bad-label/$s-labels-idx1-ubyte" bs=1 seek=1000 conv=notrunc status=none
done
forge "$D/swapped" # labels where the images should be
for s in t10k train; do
    ln -sf "$data/$s-labels-idx1-ubyte" "$D/swapped/$s-images-idx3-ubyte"
done
forge "$D/huge-labels" # a labels header claiming 2^31-1 items over a 10000-byte body
for s in t10k train; do
    rm "$D/huge-labels/$s-labels-idx1-ubyte"
    {
        printf '\x00\x00\x08\x01\x7f\xff\xff\xff'
        head -c 10000 /dev/zero
    } >"$D/huge-labels/$s-labels-idx1-ubyte"
done

# bad_data NAME FILE_ERE PROBLEM_ERE
bad_data() {
    expect_exit 1 -- "$mnist" eval --data "$D/$1" --model "$M" &&
        has "$errline" "$D/$1/$2" && has "${errline//$D\/$1/}" "$3"
    [ -n "$why" ] || [ "$ms" -lt 10000 ] || why="took $ms ms"
    check "eval --data $1: exit 1, one line naming the file /$3/"
    expect_exit 1 -- "$mnist" train "${tiny[@]}" --epochs 1 --out "$tmp/never.model" \
        --data "$D/$1" && has "$errline" "$D/$1/$2" && has "${errline//$D\/$1/}" "$3"
    [ -n "$why" ] || [ ! -e "$tmp/never.model" ] || why="wrote $tmp/never.model"
    check "train --data $1: exit 1, one line naming the file /$3/"
}
bad_data empty '(t10k|train)-images' 'no such file'
bad_data trunc-images '(t10k|train)-images' 'truncat'
bad_data count-mismatch '(t10k|train)-(images|labels)' 'count|labels|images'
bad_data bad-label '(t10k|train)-labels' 'label .* is 200'
bad_data swapped '(t10k|train)-images' '1-D|3-D|dimension|magic|expected'
bad_data huge-labels '(t10k|train)-labels' 'truncat|implies|at most|limit'

# ---------------------------------------------------------------------------------------------
section "kill and resume (--limit 30000 --epochs 3 --seed 7 --threads 2)"

mkdir -p "$tmp/kr"
A=$tmp/kr/A.model
expect_exit 0 -- "$mnist" train "${long[@]}" --out "$A"
crc_a=
[ -n "$why" ] || crc_a=$(crc_of "$A")
[ -n "$why" ] || [ -n "$crc_a" ] || why="no weights_crc32 for $A"
check "uninterrupted run A: exit 0 (weights_crc32 $crc_a)"

# start_bg OUT: start the long training in the background, stderr to $tmp/bg.err.
start_bg() { # start_bg OUT [FLAGS...]
    local out=$1
    shift
    "$mnist" train "${long[@]}" --out "$out" "$@" >"$tmp/bg.out" 2>"$tmp/bg.err" </dev/null &
    bg_pid=$!
}
# wait_ckpt FILE: poll up to 60 s for FILE; sets why on timeout or early exit.
wait_ckpt() {
    local i
    for ((i = 0; i < 1200; i++)); do
        [ -e "$1" ] && return 0
        kill -0 "$bg_pid" 2>/dev/null || {
            why="training exited before writing $1"
            return 1
        }
        sleep 0.05
    done
    why="no $1 after 60 s"
    return 1
}
# ckpt_epochs FILE: meta.epochs of a checkpoint
ckpt_epochs() {
    "$mnist" info "$1" --json 2>/dev/null | python3 -c \
        'import json,sys; print(json.load(sys.stdin)["meta"]["epochs"])' 2>/dev/null
}

Bm=$tmp/kr/B.model
e=0 # epochs in the checkpoint that is resumed
start_bg "$Bm"
if wait_ckpt "$Bm.ckpt"; then
    sleep 0.3
    if kill -9 "$bg_pid" 2>/dev/null; then
        wait "$bg_pid" 2>/dev/null
        bg_pid=
        e=$(ckpt_epochs "$Bm.ckpt")
        case $e in 1 | 2) ;; *)
            why="checkpoint after SIGKILL says epochs '$e', want 1 or 2"
            e=0
            ;;
        esac
    else
        why="run B finished before the kill; make the run longer"
    fi
fi
[ -z "$bg_pid" ] || {
    kill -9 "$bg_pid" 2>/dev/null
    wait "$bg_pid" 2>/dev/null
    bg_pid=
}
check "run B: SIGKILL after its first checkpoint leaves a loadable checkpoint"

# resumed_like_a RUN MODEL: after `train --resume MODEL.ckpt` (expect_exit set why), it really
# continued: said so, printed only the epochs after checkpoint $e, and ended with A's weights.
resumed_like_a() {
    [ -n "$why" ] || grep -q "resuming .*$1.model.ckpt after epoch $e of 3" "$tmp/err" ||
        why="no 'resuming ... after epoch $e of 3' on stderr"
    [ -n "$why" ] || [ "$(grep -c '^epoch ' "$tmp/out")" -eq $((3 - e)) ] ||
        why="$(grep -c '^epoch ' "$tmp/out") epoch lines after resuming at epoch $e, want $((3 - e))"
    [ -n "$why" ] || [ "$(crc_of "$2")" = "$crc_a" ] ||
        why="$1 weights_crc32 $(crc_of "$2") != A $crc_a"
}

expect_exit 0 -- "$mnist" train --resume "$Bm.ckpt" --threads 2 --data "$data"
resumed_like_a B "$Bm"
[ -n "$why" ] || [ -z "$crc_a" ] || [ "$(crc_of "$Bm.ckpt")" = "$(crc_of "$A.ckpt")" ] ||
    why="final checkpoints differ: B $(crc_of "$Bm.ckpt"), A $(crc_of "$A.ckpt")"
[ -n "$crc_a" ] || why="${why:-no reference crc from run A}"
check "run B: --resume finishes with A's weights_crc32"

# interrupt_resume RUN SIGNAL STATUS: SIGNAL after the first checkpoint exits STATUS and says
# how to resume; the command it printed, run as printed, ends with run A's weights, leaving no
# temporaries.
interrupt_resume() {
    local run=$1 sig=$2 want=$3 rc hint=
    local Xm=$tmp/kr/$run.model
    start_bg "$Xm" --log "$tmp/kr/$run.log"
    if wait_ckpt "$Xm.ckpt"; then
        sleep 0.3
        kill -"$sig" "$bg_pid" 2>/dev/null
        rc=0
        wait "$bg_pid" || rc=$?
        bg_pid=
        if [ "$rc" -ne "$want" ]; then
            why="exit $rc after SIG$sig, want $want"
        elif ! grep -q -- '--resume' "$tmp/bg.err"; then
            why="stderr does not mention --resume: $(tr '\n' '|' <"$tmp/bg.err")"
        elif ! grep -q "SIG$sig" "$tmp/bg.err"; then
            why="stderr does not name SIG$sig"
        else
            hint=$(sed -n 's/^mnist: resume with: mnist //p' "$tmp/bg.err")
            [ "$hint" = "train --resume $Xm.ckpt --data $data --threads 2 --log $tmp/kr/$run.log" ] ||
                why="the resume hint is not --resume, --data, --threads and --log: $hint"
        fi
        errline=$(grep -i 'interrupted' "$tmp/bg.err")
    fi
    [ -z "$bg_pid" ] || {
        kill -9 "$bg_pid" 2>/dev/null
        wait "$bg_pid" 2>/dev/null
        bg_pid=
    }
    check "run $run: SIG$sig after the first checkpoint exits $want and mentions --resume"

    e=$(ckpt_epochs "$Xm.ckpt")
    case $e in [0-9]) ;; *) e=0 ;; esac
    # the command as the run printed it (its paths hold no characters the shell would split)
    # shellcheck disable=SC2086
    expect_exit 0 -- "$mnist" ${hint:-train --resume "$Xm.ckpt" --threads 2 --data "$data" --log "$tmp/kr/$run.log"}
    [ -n "$why" ] || [ "$(grep -c '"epoch"' "$tmp/kr/$run.log")" -eq 3 ] ||
        why="the resumed log has $(grep -c '"epoch"' "$tmp/kr/$run.log") epoch lines, want 3"
    resumed_like_a "$run" "$Xm"
    [ -n "$crc_a" ] || why="${why:-no reference crc from run A}"
    check "run $run: --resume after SIG$sig finishes with A's weights_crc32"

    leftover=$(find "$tmp/kr" -name "$run.model*.tmp*")
    [ -z "$leftover" ] || why="left behind: $leftover"
    [ -n "$why" ] || [ -s "$Xm" ] || why="no model to look beside"
    check "run $run: no *.tmp* files left after SIG$sig and resume"
}
interrupt_resume C INT 130
interrupt_resume D TERM 143

# ---------------------------------------------------------------------------------------------
section "output safety"

expect_exit 1 --banner -- "$mnist" train "${tiny[@]}" --epochs 1 --out "$tmp/no/such/dir/m.model" &&
    hasf "$errline" "$tmp/no/such/dir/m.model" && has "${errline//$tmp/}" 'no such file|cannot|does not exist'
[ -n "$why" ] || [ ! -e "$tmp/no" ] || why="created $(find "$tmp/no")"
check "--out into a missing directory: exit 1, one error line naming it, nothing written"

mkdir -p "$tmp/keep"
K=$tmp/keep/m.model
cp "$M" "$K"
cp "$M.ckpt" "$K.ckpt"
cp "$M" "$tmp/keep.orig"
cp "$M.ckpt" "$tmp/keep.ckpt.orig"
expect_exit 1 -- "$mnist" train "${tiny[@]}" --epochs 1 --out "$K" --data "$D/trunc-images"
[ -n "$why" ] || cmp -s "$K" "$tmp/keep.orig" || why="$K changed"
[ -n "$why" ] || cmp -s "$K.ckpt" "$tmp/keep.ckpt.orig" || why="$K.ckpt changed"
[ -n "$why" ] || [ -z "$(find "$tmp/keep" -name '*.tmp*')" ] || why="left *.tmp* files"
check "failed run (bad --data): previous --out and its checkpoint byte-identical, no *.tmp*"

expect_exit 1 -- "$mnist" train "${tiny[@]}" --epochs 1 --out "$tmp/keep/new.model" \
    --log "$tmp/no/such/dir/log.jsonl" && hasf "$errline" "$tmp/no/such/dir/log.jsonl" &&
    has "${errline//$tmp/}" 'no such file|cannot|does not exist'
[ -n "$why" ] || [ ! -e "$tmp/keep/new.model" ] || why="trained and wrote a model anyway"
check "--log into a missing directory: exit 1 before training, one line naming it"

mkfifo "$tmp/log.fifo"
expect_exit 1 -- "$mnist" train "${tiny[@]}" --epochs 1 --out "$tmp/keep/new.model" \
    --log "$tmp/log.fifo" && hasf "$errline" "$tmp/log.fifo" && has "$errline" 'FIFO with no reader'
[ -n "$why" ] || [ ! -e "$tmp/keep/new.model" ] || why="trained and wrote a model anyway"
check "--log to a FIFO nobody reads: exit 1 at once, one line naming it"

# ---------------------------------------------------------------------------------------------
section "NaN"

# Without batch norm, SGD at lr 10 with momentum 0.99 overflows within the first epoch.
cp "$M" "$K"
expect_exit 1 --banner -- "$mnist" train --limit 2000 --val 500 --epochs 2 --threads 2 \
    --data "$data" --optimizer sgd --momentum 0.99 --lr 10 --label-smoothing 0 \
    --arch "dense 256, relu, dense 256, relu, dense 10" --out "$K" &&
    has "$errline" 'nan|inf' && has "$errline" 'epoch [0-9]' && has "$errline" 'batch [0-9]' &&
    has "$errline" '(lr|learning rate)[^0-9]*10\b'
[ -n "$why" ] || cmp -s "$K" "$tmp/keep.orig" || why="$K changed by a run that diverged"
check "diverging run: exit 1, names epoch, batch and learning rate; --out untouched"

# ---------------------------------------------------------------------------------------------
section "scripts/ensemble (2 members of fast, --limit 2000)"

ens=(--members 2 --preset fast --seed 5 --dir "$tmp/ens" --data "$data" -- --limit 2000 --val 500
    --threads 2)
run env BUILD="$build" "$root/scripts/ensemble" "${ens[@]}"
[ "$rc" = 0 ] || why="exit $rc"
[ -n "$why" ] || [ -f "$tmp/ens/member-5.model" ] && [ -f "$tmp/ens/member-6.model" ] ||
    why="${why:-member models missing}"
[ -n "$why" ] || [ ! -e "$tmp/ens/member-5.model.ckpt" ] || why="checkpoint left behind"
[ -n "$why" ] || has "$(cat "$tmp/out")" 'ensemble' &&
    has "$(cat "$tmp/out")" 'member .*member-5\.model: [0-9.]+%' &&
    has "$(cat "$tmp/out")" 'member .*member-6\.model: [0-9.]+%'
cp "$tmp/out" "$tmp/ens.out"
# --tta is taken when the validation split says so, and the ensemble's test accuracy is the one
# `mnist eval` gives both models together with those views
pair=(--model "$tmp/ens/member-5.model" --model "$tmp/ens/member-6.model" --data "$data" --json)
run "$mnist" eval "${pair[@]}" --split val
cp "$tmp/out" "$tmp/ens.val1.json"
run "$mnist" eval "${pair[@]}" --split val --tta
cp "$tmp/out" "$tmp/ens.val5.json"
views=()
if grep -q '^validation: .*: --tta$' "$tmp/ens.out"; then views=(--tta); fi
run "$mnist" eval "${pair[@]}" "${views[@]}"
[ -n "$why" ] || py 'import json, re, sys
acc = [100 * json.load(open(f))["accuracy"] for f in sys.argv[1:4]]
out = open(sys.argv[4]).read()
v = re.search(r"^validation: ([0-9.]+)% one view, ([0-9.]+)% with --tta: (.*)$", out, re.M)
assert v, "no validation line"
assert abs(float(v[1]) - acc[0]) < 0.006 and abs(float(v[2]) - acc[1]) < 0.006, (v[0], acc)
assert (v[3] == "--tta") == (round(acc[1], 2) > round(acc[0], 2)), v[0]
t = re.search(r"^accuracy ([0-9.]+)% .* - ensemble( - test-time augmentation)?$", out, re.M)
assert abs(acc[2] - float(t[1])) < 0.006, (acc[2], t[0])
assert (t[2] is not None) == (v[3] == "--tta"), (t[0], v[0])' \
    "$tmp/ens.val1.json" "$tmp/ens.val5.json" "$tmp/out" "$tmp/ens.out"
check "ensemble: trains two members in turn, chooses --tta on validation, evaluates on test"

cp "$tmp/ens/member-5.model" "$tmp/ens5.orig"
run env BUILD="$build" "$root/scripts/ensemble" "${ens[@]}"
[ "$rc" = 0 ] || why="exit $rc"
[ -n "$why" ] || [ "$(grep -c '(kept)' "$tmp/out")" = 2 ] || why="members not kept"
[ -n "$why" ] || cmp -s "$tmp/ens/member-5.model" "$tmp/ens5.orig" || why="member retrained"
check "ensemble again: both members kept, not trained again"

for bad_args in "--members 0" "--members 1e3" "--seed -1" "--dir $tmp/ens5.orig" "--data $tmp/none" \
    "--frobnicate"; do
    # shellcheck disable=SC2086 # word splitting wanted
    run env BUILD="$build" "$root/scripts/ensemble" $bad_args
    [ "$rc" = 2 ] || why="exit $rc"
    [ -n "$why" ] || has "$(head -1 "$tmp/err")" "^ensemble: .*${bad_args%% *}"
    [ -n "$why" ] || grep -q '^Usage: scripts/ensemble' "$tmp/err" || why="no usage after it"
    check "ensemble $bad_args: exit 2, a line naming it, then the usage"
done

section "other image sizes (MNIST shrunk to 14x14 and to 4x4)"
# The digits of the first 4,000 training and 1,000 test images, each 2x2 (or 7x7) block
# averaged, or only some of their columns: IDX files as another dataset would bring them. A
# fresh network takes the data's image size.
derive() { # derive DIR halve SIDE | derive DIR columns X0 X1: DIR/{train,t10k}-* from data/mnist
    mkdir -p "$1"
    python3 -c 'import struct, sys
src, out, how, a = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if how == "halve":  # SIDE x SIDE, each pixel the mean of an f x f block
    h = w = a
    f = 28 // a
    def pixels(img):
        for y in range(h):
            for x in range(w):
                s = sum(img[(f * y + j) * 28 + f * x + k] for j in range(f) for k in range(f))
                yield (s + f * f // 2) // (f * f)
else:  # columns a to b - 1 of every row
    b = int(sys.argv[5])
    h, w = 28, b - a
    def pixels(img):
        return (img[y * 28 + x] for y in range(28) for x in range(a, b))
for split, n in (("train", 4000), ("t10k", 1000)):
    raw = open(f"{src}/{split}-images-idx3-ubyte", "rb").read()[16:16 + n * 784]
    px = bytes(v for i in range(n) for v in pixels(raw[i * 784:(i + 1) * 784]))
    open(f"{out}/{split}-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, n, h, w) + px)
    labels = open(f"{src}/{split}-labels-idx1-ubyte", "rb").read()[8:8 + n]
    open(f"{out}/{split}-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, n) + labels)' \
        "$data" "$@"
}
derive "$tmp/d14" halve 14
derive "$tmp/d4" halve 4
small14=(--data "$tmp/d14" --val 500 --threads 2)
expect_exit 0 -- "$mnist" train --preset fast --epochs 3 "${small14[@]}" --out "$tmp/m14.model" \
    --report "$tmp/r14.html" --quiet
[ -n "$why" ] || py 'import json, sys
net = json.loads(sys.argv[1])["network"]
assert net["input"] == [1, 14, 14], net["input"]' \
    "$("$mnist" info "$tmp/m14.model" --json 2>&1)"
[ -n "$why" ] || grep -q 'class="tile bad"' "$tmp/r14.html" || why="no mistakes shown in --report's page"
check "train --preset fast --report on 14x14 images: exit 0, a 1x14x14 model, the page"
fast_spec=$("$mnist" info "$tmp/m14.model" --json | py 'import json, sys
print(json.loads(sys.argv[1])["network"]["spec"])' "$(cat)")
expect_exit 0 -- "$mnist" info --arch "$fast_spec" --input 14x14 --json
[ -n "$why" ] || py 'import json, sys
a, m = json.loads(sys.argv[1]), json.loads(sys.argv[2])["network"]
assert a == m, (a, m)' "$(cat "$tmp/out")" "$("$mnist" info "$tmp/m14.model" --json)"
check "info --arch SPEC --input 14x14: the layer table of the model trained on 14x14 images"
for bad in 0x5 14 14x20x x20 4097x1 " 14x20" +14x20 14x-1; do
    expect_exit 2 -- "$mnist" info --arch "dense 10" --input "$bad" && hasf "$errline" "--input: '$bad'"
    check "info --input '$bad': exit 2, one line naming it"
done
expect_exit 2 --usage -- "$mnist" info "$tmp/m14.model" --input 14x14 && hasf "$errline" "--input"
check "info FILE --input: exit 2, --input goes with --arch"
expect_exit 0 -- "$mnist" eval --model "$tmp/m14.model" --data "$tmp/d14" --json
[ -n "$why" ] || py 'import json, sys
a = json.load(open(sys.argv[1]))["accuracy"]
assert a >= 0.85, f"accuracy {a}"' "$tmp/out"
check "eval on the 14x14 test images: at least 85%"
expect_exit 1 -- "$mnist" eval --model "$tmp/m14.model" --data "$data" && hasf "$errline" "14x14" &&
    hasf "$errline" "28x28"
check "eval of the 14x14 model on 28x28 data: exit 1, one line with both sizes"
expect_exit 1 -- "$mnist" predict --model "$tmp/m14.model" "$root/data/images/mnist-0.pgm" &&
    hasf "$errline" "m14.model" && hasf "$errline" "1x28x28"
check "predict with the 14x14 model: exit 1, one line naming it and 1x28x28"
expect_exit 1 -- "$mnist" report --model "$tmp/m14.model" --data "$data" --out "$tmp/x14.html"
[ -n "$why" ] || has "$errline" "m14.model: .*1x14x14.*1x28x28"
[ -n "$why" ] || [ ! -e "$tmp/x14.html" ] || why="wrote a page"
check "report of the 14x14 model on 28x28 data: exit 1, one line naming it and both sizes, no page"

# Images taller than wide (columns 4-23 of each digit), so that a width taken for a height
# shows: the report's mean images against Python's, and its pictures' PNG headers.
derive "$tmp/d28x20" columns 4 24
expect_exit 0 -- "$mnist" train --arch "conv 8 3 pad=1, relu, maxpool 2, dense 10" --data "$tmp/d28x20" \
    --val 500 --epochs 1 --out "$tmp/m28x20.model" --quiet
[ -n "$why" ] || expect_exit 0 -- "$mnist" report --model "$tmp/m28x20.model" --data "$tmp/d28x20" \
    --out "$tmp/r28x20.html" --json "$tmp/r28x20.json"
[ -n "$why" ] || py 'import base64, json, re, struct, sys
page, report, d = open(sys.argv[1]).read(), json.load(open(sys.argv[2])), sys.argv[3]
ev = report["evaluation"]
assert (ev["image_h"], ev["image_w"]) == (28, 20), (ev["image_h"], ev["image_w"])
assert "1000 images of 28\u00d720" in ev["source"], ev["source"]
raw = open(f"{d}/t10k-images-idx3-ubyte", "rb").read()[16:]
labels = open(f"{d}/t10k-labels-idx1-ubyte", "rb").read()[8:]
for c in range(10):
    rows = [i for i, y in enumerate(labels) if y == c]
    want = [int(sum(raw[i * 560 + q] for i in rows) / len(rows) + 0.5) for q in range(560)]
    got = ev["per_class"][c]["mean_image"]
    assert len(got) == 560 and max(abs(a - b) for a, b in zip(got, want)) <= 1, f"class {c}"
tiles = re.findall(r"<div class=\"tile bad\"><img src=\"data:image/png;base64,([^\"]+)\" class=\"px\" width=\"(\d+)\" height=\"(\d+)\"", page)
assert tiles, "no mistakes on the page"
for b64, w, h in tiles:
    png = base64.b64decode(b64)
    assert struct.unpack(">II", png[16:24]) == (20, 28), struct.unpack(">II", png[16:24])
    assert (int(w), int(h)) == (40, 56), (w, h)' "$tmp/r28x20.html" "$tmp/r28x20.json" "$tmp/d28x20"
check "report on 28x20 images: each class's mean image as Python computes it, 20x28 pictures, the size said"

printf 'linear | dense 10\nsmall | conv 8 3 pad=1, relu, maxpool 2, dense 10\n' >"$tmp/specs14.txt"
expect_exit 0 -- "$mnist" compare "$tmp/specs14.txt" --data "$tmp/d14" --val 500 --epochs 3 \
    --lr 0.01 --models "$tmp/cmp14" --out "$tmp/cmp14.html" --json "$tmp/cmp14.json" --quiet
[ -n "$why" ] || py 'import json, sys
page = json.load(open(sys.argv[1]))
runs = page["runs"]
assert len(runs) == 2 and all(r["test_acc"] > 0.8 for r in runs), runs
assert "3500 images (14\u00d714)" in page["source"], page["source"]' "$tmp/cmp14.json"
[ -n "$why" ] || py 'import json, sys
assert json.loads(sys.argv[1])["network"]["input"] == [1, 14, 14]' \
    "$("$mnist" info "$tmp/cmp14/small-s1.model" --json 2>&1)"
check "compare on 14x14 images: both networks trained on them and scored on their test set"
printf 'deep | conv 8 3, maxpool 2, conv 8 3, maxpool 2, conv 8 3, dense 10\n' >"$tmp/deep14.txt"
expect_exit 1 -- "$mnist" compare "$tmp/deep14.txt" --data "$tmp/d14" --val 500 \
    --models "$tmp/cmpd" --out "$tmp/cmpd.html"
[ -n "$why" ] || has "$errline" "deep14.txt:1: layer 5 'conv 8 3'.*14x14"
[ -n "$why" ] || [ ! -e "$tmp/cmpd" ] || why="created --models"
check "compare, a network too deep for 14x14 images: exit 1, the line, layer and size named"
mkdir -p "$tmp/dmix"
cp "$tmp/d14/"train-* "$tmp/dmix/" && cp "$data/"t10k-* "$tmp/dmix/"
expect_exit 1 -- "$mnist" compare "$tmp/specs14.txt" --data "$tmp/dmix" --val 500 \
    --models "$tmp/cmpx" --out "$tmp/cmpx.html"
[ -n "$why" ] || has "$errline" "dmix.*14x14.*28x28"
[ -n "$why" ] || [ ! -e "$tmp/cmpx" ] || why="created --models"
check "compare, 14x14 training and 28x28 test images: exit 1, one line with both, nothing created"
expect_exit 2 -- "$mnist" train --preset fast --data "$tmp/d4" --val 500 --out "$tmp/m4.model"
[ -n "$why" ] || has "$errline" "^mnist: --preset fast: layer 12 'maxpool 2'.*4x4"
check "train --preset fast on 4x4 images (three poolings): exit 2, the preset, layer and size named"
expect_exit 2 -- "$mnist" train --arch "conv 8 5, dense 10" --data "$tmp/d4" --val 500 \
    --out "$tmp/m4.model"
[ -n "$why" ] || has "$errline" "^mnist: --arch: layer 1 'conv 8 5'.*4x4"
[ -n "$why" ] || [ ! -e "$tmp/m4.model" ] || why="wrote a model"
check "train --arch with a 5x5 kernel on 4x4 images: exit 2, --arch, layer and size named"

echo "cli: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
