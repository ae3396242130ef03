#!/usr/bin/env bash
# test_mpi.sh: data-parallel training, `mpirun -np P mnist train --distributed` (Open MPI),
# against one process, on the real MNIST in data/mnist/. Runs BUILD/mnist-mpi (make test
# builds it; built here when missing) and BUILD/mnist (the build without MPI).
#
# Cases (each line of output is one counted check):
#   agree   -np 2 --threads 1 against one process on --threads 2, the same global batch: the
#           same weights, bit for bit, after one step and after an epoch. Prints and bounds
#           the largest relative weight difference after one step (1e-5) and the test
#           accuracy after an epoch (0.2 points).
#   uneven  -np 3 with batches that 3 does not divide (shares 101/100/100, 34/33/33) against
#           one process on --threads 3, the same two figures and bounds (the gradients may
#           be added in another order); a last batch of 2 images is merged, not left to a rank
#           with none.
#   stop    SIGTERM to mpirun mid-epoch: the ranks stop after the same step, rank 0 saves the
#           checkpoint and says how to resume; the resume ends with the weights of the
#           uninterrupted run.
#   kill    SIGKILL of one rank mid-epoch: the job ends at once and mpirun names the rank; the
#           resume from the last checkpoint ends equal; the same checkpoint resumes on 3 ranks.
#   hang    SIGSTOP of one rank: the other ends the job after --dist-timeout, saying why.
#   usage   --distributed without MPI, a batch smaller than the ranks, ranks given different
#           data, a bad --dist-timeout.
#   sweep   `mnist compare SPECFILE --distributed`: 4 small entries on 2 ranks give the
#           leaderboard of one process (rows, accuracies, order), both ranks training; a
#           rank with nothing left waits for a last run longer than --dist-timeout; a
#           worker rank killed mid-sweep ends the job with mpirun's message naming it, and the
#           same command again skips the finished runs and ends with the same leaderboard;
#           SIGTERM to the worker alone: every rank stops, rank 0 says how to go on, and so it
#           does, to the same leaderboard; a stopped worker ends the job after --dist-timeout; ranks given
#           different spec files; --distributed without MPI.
# Under ASan (make asan) LeakSanitizer reads tests/lsan.supp and tests/lsan-mpi.supp, which
# cover a race of the sanitizer runtime and Open MPI's own allocations only. About 70 s on 2
# idle cores, half of it the sweep.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
if [ ! -x "$root/$build/mnist-mpi" ] && [ ! -x "$build/mnist-mpi" ]; then
    make -C "$root" BUILD="$build" "$build/mnist-mpi" >/dev/null || exit 1
fi
case $build in /*) ;; *) build=$root/$build ;; esac
mnist=$build/mnist mnist_mpi=$build/mnist-mpi data=$root/data/mnist
tmp=$(mktemp -d) bg_pid= # bg_pid: a job in the background (mpirun), ended with the script
trap '[ -z "$bg_pid" ] || kill -9 "$bg_pid" 2>/dev/null; rm -rf -- "$tmp"' EXIT
cd "$tmp" || exit 1

for tool in mpirun python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "mpi: $tool missing (scripts/deps installs openmpi-bin and libopenmpi-dev)"
        exit 1
    fi
done
if [ ! -f "$data/train-images-idx3-ubyte" ]; then
    echo "mpi: $data missing (run scripts/fetch-data)"
    exit 1
fi
# As root mpirun wants these; more ranks than cores need --oversubscribe (below).
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
# Waiting threads and ranks yield the core instead of spinning: on 2 busy cores spinning ranks
# made these runs 4 times slower. Results do not change.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export OMPI_MCA_mpi_yield_when_idle=1
# For ASan builds (harmless otherwise): Open MPI's plugins stay loaded so that their
# allocations can be named, and LeakSanitizer skips those (tests/lsan-mpi.supp says which).
export OMPI_MCA_mca_base_component_disable_dlclose=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
# LeakSanitizer reads one suppressions file (the last named): the suite's and Open MPI's rules.
cat "$root/tests/lsan.supp" "$root/tests/lsan-mpi.supp" >"$tmp/lsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$tmp/lsan.supp"

spec="conv 8 5, bn, relu, maxpool 2, dropout 0.25, dense 10"
common=(--arch "$spec" --data "$data" --augment affine --quiet)
# Long enough to stop in the middle: 19 epochs after the first checkpoint, 4-6 s on 2 idle
# cores (mpirun passes a signal on to the ranks about a second after it gets it; with two
# epochs left, an idle machine finished the run first).
long=(--arch "$spec" --data "$data" --limit 8000 --val 500 --batch 100 --epochs 20 --quiet)

passed=0
failed=0
why=
section() { echo "$1  [at ${SECONDS}s]"; }
check() {
    if [ -z "$why" ]; then
        passed=$((passed + 1))
        echo "  ok    $1"
    else
        failed=$((failed + 1))
        echo "  FAIL  $1: $why"
        if [ -s "$tmp/err" ]; then sed -n '1,6s/^/          stderr: /p' "$tmp/err"; fi
    fi
    why=
}

# run CMD...: stdout -> out, stderr -> err, exit status in $rc.
rc=0
run() {
    rc=0
    timeout 300 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null || rc=$?
}
mpi() { # mpi NP ARGS...: mnist-mpi ARGS on NP ranks
    local np=$1
    shift
    run mpirun --oversubscribe -np "$np" "$mnist_mpi" "$@"
}
crc_of() {
    "$mnist" info "$1" --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["weights_crc32"])' 2>/dev/null
}
same_weights() { # same_weights A B: sets why unless the two models hold the same bits
    local a b
    a=$(crc_of "$1") b=$(crc_of "$2")
    [ -n "$a" ] && [ "$a" = "$b" ] || why="weights differ: $1 $a, $2 $b"
}
# Largest |a - b| / max(|a|, |b|, 1e-3) over the parameters of two models (their PARM
# sections); weights under 1e-3 count as 1e-3, so that one near zero cannot make it huge.
reldiff() {
    python3 - "$1" "$2" <<'EOF'
import struct, sys
def params(path):
    b = open(path, 'rb').read()
    i = b.index(b'PARM')
    n = struct.unpack_from('<Q', b, i + 12)[0]
    return struct.unpack_from('<%df' % n, b, i + 20)
a, b = params(sys.argv[1]), params(sys.argv[2])
print('%.2e' % max(abs(x - y) / max(abs(x), abs(y), 1e-3) for x, y in zip(a, b)))
EOF
}
accuracy() { # accuracy MODEL: percent on the first 2000 test images
    "$mnist" eval --model "$1" --data "$data" --limit 2000 --json 2>/dev/null |
        python3 -c 'import json,sys; print("%.2f" % (100 * json.load(sys.stdin)["accuracy"]))'
}
# agreement NAME NP ONE-STEP-ARGS -- EPOCH-ARGS: the two figures of NP ranks against one
# process on NP threads; sets why past the bounds. Models in NAME-{1,d1,e,de}.model.
agreement() {
    local name=$1 np=$2 a b diff
    shift 2
    local step=() epoch=()
    while [ "$1" != -- ]; do step+=("$1"); shift; done
    shift
    epoch=("$@")
    run "$mnist" train "${common[@]}" "${step[@]}" --threads "$np" --out "$name-1.model"
    [ "$rc" -eq 0 ] || { why="one process, one step: exit $rc"; return; }
    mpi "$np" train --distributed "${common[@]}" "${step[@]}" --threads 1 --out "$name-d1.model"
    [ "$rc" -eq 0 ] || { why="$np ranks, one step: exit $rc"; return; }
    diff=$(reldiff "$name-1.model" "$name-d1.model")
    echo "        -np $np: largest relative weight difference after one step: $diff (bound 1e-5)"
    python3 -c "import sys; sys.exit(float('$diff') > 1e-5)" || why="difference $diff > 1e-5"
    run "$mnist" train "${common[@]}" "${epoch[@]}" --threads "$np" --out "$name-e.model"
    [ "$rc" -eq 0 ] || { why="one process, one epoch: exit $rc"; return; }
    mpi "$np" train --distributed "${common[@]}" "${epoch[@]}" --threads 1 --out "$name-de.model"
    [ "$rc" -eq 0 ] || { why="$np ranks, one epoch: exit $rc"; return; }
    a=$(accuracy "$name-e.model") b=$(accuracy "$name-de.model")
    [ -n "$a" ] && [ -n "$b" ] || { why="mnist eval failed"; return; }
    diff=$(python3 -c "print('%.2f' % abs($a - $b))")
    echo "        -np $np: test accuracy after an epoch: $a% one process, $b% $np ranks," \
        "difference $diff points (bound 0.2)"
    python3 -c "import sys; sys.exit($diff > 0.2)" || why="accuracy differs by $diff points"
}

# ---------------------------------------------------------------------------------------------
section "agree: -np 2 --threads 1 against one process on --threads 2"

agreement a 2 --limit 400 --val 100 --batch 300 --epochs 1 -- \
    --limit 4000 --val 500 --batch 100 --epochs 1
check "the two figures within their bounds"
[ -z "$why" ] && same_weights a-1.model a-d1.model
[ -z "$why" ] && same_weights a-e.model a-de.model
check "the same weights, bit for bit, after one step and after an epoch"
[ -s a-de.model ] && [ "$(grep -c '^epoch 1/1' "$tmp/out")" = 1 ] ||
    why="rank 0 did not print its epoch line once"
check "rank 0 alone prints the epoch and writes the model"

# ---------------------------------------------------------------------------------------------
section "uneven: -np 3, batches 3 does not divide"

# SGD for the one-step figure: Adam's first step is lr * g / (|g| + eps), which turns a last-bit
# difference in a gradient near zero into one of the order of lr.
agreement u 3 --limit 401 --val 100 --batch 301 --epochs 1 --optimizer sgd --lr 0.1 -- \
    --limit 4000 --val 500 --batch 100 --epochs 1
check "the two figures within their bounds"
# 602 training images in batches of 100: the last 2 join the batch before (102 images).
mpi 3 train --distributed "${common[@]}" --limit 702 --val 100 --batch 100 --epochs 1 \
    --threads 1 --out u-m.model
[ "$rc" -eq 0 ] && [ -s u-m.model ] || why="exit $rc"
check "a last batch smaller than the ranks is merged into the one before"

# ---------------------------------------------------------------------------------------------
section "stop: SIGTERM to mpirun mid-epoch, then --resume"

run "$mnist" train "${long[@]}" --threads 2 --out ref.model
[ "$rc" -eq 0 ] || why="the uninterrupted run: exit $rc"
check "the uninterrupted run (one process, 2 threads)"

# start_long NAME [ARGS...]: the long run on 2 ranks in the background, until its first
# checkpoint is written (after epoch 1).
start_long() {
    local name=$1
    shift
    rm -f "$name.model" "$name.model.ckpt"
    mpirun --oversubscribe -np 2 "$mnist_mpi" train --distributed "${long[@]}" --threads 1 \
        --out "$name.model" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null &
    bg_pid=$!
    for _ in $(seq 1 1200); do
        [ -s "$name.model.ckpt" ] && return 0
        kill -0 "$bg_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
# finish_bg: wait for the background job (at most 60 s); its exit status in $rc.
finish_bg() {
    for _ in $(seq 1 600); do
        kill -0 "$bg_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$bg_pid" 2>/dev/null
    rc=0
    wait "$bg_pid" || rc=$?
    bg_pid=
}
resumed_equal() { # resumed_equal NP NAME: resume NAME.model.ckpt on NP ranks; equal to ref?
    mpi "$1" train --distributed --resume "$2.model.ckpt" --data "$data" --threads 1 \
        --out "$2.model"
    [ "$rc" -eq 0 ] || { why="resume: exit $rc"; return; }
    same_weights ref.model "$2.model"
}

if start_long t; then
    kill -TERM "$bg_pid"
    finish_bg
    # mid-epoch, or after one when the signal came during its last step or validation
    where='(at epoch [0-9]+, batch [0-9]+ of [0-9]+|after epoch [0-9]+)'
    grep -Eq "interrupted $where by SIGTERM; checkpoint saved" "$tmp/err" ||
        why="no 'interrupted ... by SIGTERM; checkpoint saved' line (exit $rc)"
    [ -z "$why" ] && { grep -q 'resume with: mpirun -np P mnist train --distributed' "$tmp/err" ||
        why="no resume hint"; }
    [ -z "$why" ] && [ "$(grep -c interrupted "$tmp/err")" != 1 ] &&
        why="$(grep -c interrupted "$tmp/err") ranks said so, want rank 0 alone"
else
    finish_bg
    why="no checkpoint after epoch 1 (exit $rc)"
fi
check "every rank stops after the same step; rank 0 saves and says how to resume"
[ -z "$why" ] && resumed_equal 2 t
check "the resume on 2 ranks ends with the weights of the uninterrupted run"

# ---------------------------------------------------------------------------------------------
section "kill: SIGKILL of one rank mid-epoch, then --resume"

t0=$SECONDS
if start_long k; then
    victim=$(pgrep -P "$bg_pid" | tail -n 1)
    [ -n "$victim" ] && kill -9 "$victim"
    finish_bg
    [ "$rc" -ne 0 ] || why="mpirun exited 0"
    [ -z "$why" ] && { grep -Eq 'rank [0-9].*(signal 9|Killed)' "$tmp/err" ||
        why="no line naming the killed rank"; }
    [ -z "$why" ] && [ $((SECONDS - t0)) -gt 60 ] && why="took $((SECONDS - t0)) s"
else
    finish_bg
    why="no checkpoint after epoch 1 (exit $rc)"
fi
check "the job ends with a message naming the rank, not a hang"
[ -z "$why" ] && cp k.model.ckpt k3.model.ckpt && resumed_equal 2 k
check "the resume from the last checkpoint ends with the weights of the uninterrupted run"
mpi 3 train --distributed --resume k3.model.ckpt --data "$data" --threads 1 --out k3.model
[ "$rc" -eq 0 ] && [ -s k3.model ] || why="exit $rc"
check "the same checkpoint resumes on 3 ranks"

# ---------------------------------------------------------------------------------------------
section "hang: SIGSTOP of one rank"

t0=$SECONDS
if start_long h --dist-timeout 3; then
    victim=$(pgrep -P "$bg_pid" | tail -n 1)
    [ -n "$victim" ] && kill -STOP "$victim"
    finish_bg
    [ "$rc" -ne 0 ] || why="mpirun exited 0"
    [ -z "$why" ] && { grep -q 'no answer from the other ranks for 3 s' "$tmp/err" ||
        why="no 'no answer from the other ranks' line"; }
    [ -z "$why" ] && [ $((SECONDS - t0)) -gt 60 ] && why="took $((SECONDS - t0)) s"
    for _ in $(seq 1 50); do kill -0 "$victim" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$victim" 2>/dev/null && why="${why:-the stopped rank outlived the job}"
else
    finish_bg
    why="no checkpoint after epoch 1 (exit $rc)"
fi
check "the job ends after --dist-timeout with a message"

# ---------------------------------------------------------------------------------------------
section "usage"

run "$mnist" train --distributed "${common[@]}" --limit 400 --val 100
[ "$rc" -eq 2 ] && grep -q 'built without MPI; rebuild with make MPI=1' "$tmp/err" ||
    why="exit $rc"
check "--distributed in a build without MPI: exit 2, says how to get it"
mpi 3 train --distributed "${common[@]}" --limit 400 --val 100 --batch 2
[ "$rc" -ne 0 ] && [ "$(grep -c 'batch size 2 is smaller than the 3 ranks' "$tmp/err")" = 1 ] ||
    why="exit $rc"
check "a batch smaller than the ranks: one message, the job fails"
# rank 1 reads a copy of the data with one label changed
mkdir other
for f in train-images-idx3-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    ln -s "$data/$f" "other/$f"
done
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[8] = (b[8] + 1) % 10
open("other/train-labels-idx1-ubyte", "wb").write(b)' "$data/train-labels-idx1-ubyte"
run mpirun --oversubscribe -np 1 "$mnist_mpi" train --distributed "${common[@]}" --limit 400 \
    --val 100 --out o.model : -np 1 "$mnist_mpi" train --distributed "${common[@]}" \
    --limit 400 --val 100 --data other --out o.model
[ "$rc" -ne 0 ] && grep -q "the ranks' training data differ" "$tmp/err" || why="exit $rc"
check "ranks given different data: the job fails after the first epoch, saying so"
mpi 1 train --distributed "${common[@]}" --dist-timeout 0
[ "$rc" -ne 0 ] && grep -q -- '--dist-timeout' "$tmp/err" || why="exit $rc"
check "--dist-timeout 0 is refused"

# ---------------------------------------------------------------------------------------------
section "sweep: mnist compare SPECFILE --distributed on 2 ranks"

# Rank 0 takes the first run, and rank 1 the second: the slowest, so that rank 1 still trains
# it when rank 0 has recorded the first (start_sweep).
cat >specs.txt <<'EOF'
recipe: epochs=2 batch=64 lr=0.003
linear | dense 10 | optimizer=sgd lr=0.05 momentum=0.9
convbn | conv 8 5, bn, relu, maxpool 2, dense 10
mlp    | dense 32, relu, dense 10
conv   | conv 4 5, relu, maxpool 2, dense 10
EOF
sweep=(compare specs.txt --data "$data" --limit 6000 --val 1000 --threads 1)
board() { # board JSON: its leaderboard less times and speeds, as one line
    python3 -c 'import json, sys
keep = ("rank", "entry", "spec", "runs", "params", "mflops", "train_flops", "val_acc",
        "val_acc_std", "test_acc", "test_acc_std", "pareto")
print([[e[k] for k in keep] for e in json.load(open(sys.argv[1]))["leaderboard"]])' "$1" 2>/dev/null
}
same_board() { # same_board JSON: sets why unless its leaderboard is the one process's
    local b
    b=$(board "$1")
    [ -n "$b" ] && [ "$b" = "$(board s1/cmp.json)" ] || why="$1: another leaderboard: $b"
}
rank_pid() { # rank_pid R: the process of rank R of the background job
    local p
    for p in $(pgrep -P "$bg_pid"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" &&
            echo "$p"
    done
}
# start_sweep DIR [ARGS...]: the sweep on 2 ranks in the background, until the first run is
# recorded in DIR/cmp.state (rank 1 is then training the second).
start_sweep() {
    local dir=$1
    shift
    mpirun --oversubscribe -np 2 "$mnist_mpi" "${sweep[@]}" --distributed --out "$dir/cmp.html" \
        --json "$dir/cmp.json" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null &
    bg_pid=$!
    for _ in $(seq 1 1200); do
        grep -q '"entry"' "$dir/cmp.state" 2>/dev/null && return 0
        kill -0 "$bg_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
finished() { grep -o '"entry"' "$1/cmp.state" 2>/dev/null | wc -l; }
go_on() { # go_on DIR N: the same command again; it skips N runs and ends with the same board
    mpi 2 "${sweep[@]}" --distributed --out "$1/cmp.html" --json "$1/cmp.json"
    [ "$rc" -eq 0 ] || { why="exit $rc"; return; }
    [ "$(grep -c 'finished before, skipped' "$tmp/out")" = "$2" ] || why="did not skip $2 runs"
    [ -z "$why" ] && same_board "$1/cmp.json"
    [ -z "$why" ] && [ -n "$(ls "$1"/cmp.models/*.ckpt 2>/dev/null)" ] && why="a checkpoint left"
}
mkdir s1 s2 sk st sh

run "$mnist" "${sweep[@]}" --out s1/cmp.html --json s1/cmp.json
[ "$rc" -eq 0 ] && [ -n "$(board s1/cmp.json)" ] || why="exit $rc"
check "the sweep in one process"
mpi 2 "${sweep[@]}" --distributed --out s2/cmp.html --json s2/cmp.json
[ "$rc" -eq 0 ] || why="exit $rc"
[ -z "$why" ] && same_board s2/cmp.json
for r in 0 1; do
    [ -z "$why" ] && { grep -q "^==> .* on rank $r\$" "$tmp/out" || why="rank $r trained nothing"; }
done
[ -z "$why" ] && [ "$(grep -c '^compare: 4 runs; page written' "$tmp/out")" != 1 ] &&
    why="rank 0 did not write the page once"
check "2 ranks: the leaderboard of one process (rows, accuracies, order), both ranks training"
# Rank 1 is done with the small run long before rank 0 with the big one, and waits for the end
# longer than --dist-timeout: rank 0 keeps telling it that it is there. (Only between steps:
# the test set is cut to 500 images, so that measuring on it is no pause under ASan either.)
mkdir last-data
ln -s "$data/train-images-idx3-ubyte" "$data/train-labels-idx1-ubyte" last-data/
python3 -c 'import sys
for name, head, size in (("images-idx3", 16, 784), ("labels-idx1", 8, 1)):
    b = open(sys.argv[1] + "/t10k-" + name + "-ubyte", "rb").read()
    open("last-data/t10k-" + name + "-ubyte", "wb").write(
        b[:4] + (500).to_bytes(4, "big") + b[8:head] + b[head:head + 500 * size])' "$data"
printf '%s\n' 'big | conv 16 5, relu, maxpool 2, dense 10' 'small | dense 10' >specs-last.txt
mpi 2 compare specs-last.txt --data last-data --limit 20000 --val 500 --epochs 3 --threads 1 \
    --distributed --dist-timeout 2 --out last.html
[ "$rc" -eq 0 ] || why="exit $rc"
check "a last run longer than --dist-timeout: the rank that is done waits for it"

t0=$SECONDS
if start_sweep sk; then
    victim=$(rank_pid 1)
    [ -n "$victim" ] && kill -9 "$victim"
fi
finish_bg
n=$(finished sk)
[ "$rc" -ne 0 ] || why="mpirun exited 0"
[ -z "$why" ] && [ "$n" -ge 1 ] && [ "$n" -lt 4 ] || why="${why:-killed after $n of 4 runs}"
[ -z "$why" ] && { grep -Eq 'rank 1 .*(signal 9|Killed)' "$tmp/err" ||
    why="no line naming the killed rank"; }
[ -z "$why" ] && [ $((SECONDS - t0)) -gt 60 ] && why="took $((SECONDS - t0)) s"
check "a worker killed after $n of 4 runs: the job ends, mpirun names the rank"
[ -z "$why" ] && go_on sk "$n"
check "the same command again: the finished runs skipped, the same leaderboard"

# (Not to mpirun, which passes a signal on only a second later, when these runs are over.)
if start_sweep st; then
    victim=$(rank_pid 1)
    [ -n "$victim" ] && kill -TERM "$victim"
fi
finish_bg
n=$(finished st)
[ "$n" -ge 1 ] && [ "$n" -lt 4 ] || why="stopped after $n of 4 runs"
[ -z "$why" ] && [ "$(grep -c 'stopped by SIGTERM.*run the same command again' "$tmp/err")" != 1 ] &&
    why="rank 0 did not say once how to go on"
check "SIGTERM to rank 1 alone after $n of 4 runs: every rank stops, rank 0 says how to go on"
[ -z "$why" ] && go_on st "$n"
check "the same command again: the finished runs skipped, the same leaderboard"

t0=$SECONDS
if start_sweep sh --dist-timeout 2; then
    victim=$(rank_pid 1)
    [ -n "$victim" ] && kill -STOP "$victim"
fi
finish_bg
[ "$rc" -ne 0 ] || why="mpirun exited 0"
# (Stopped between sending a result and asking for the next run, rank 1 trains nothing: the
# line then names no run.)
[ -z "$why" ] && { grep -Eq 'no word from rank 1 for 2 s( while it trains [a-z0-9]+ seed [0-9]+)?: it died or hangs' "$tmp/err" ||
    why="no 'no word from rank 1' line; stderr ends: $(tail -n 2 "$tmp/err" | tr '\n' ' ')"; }
[ -z "$why" ] && [ $((SECONDS - t0)) -gt 60 ] && why="took $((SECONDS - t0)) s"
for _ in $(seq 1 50); do kill -0 "$victim" 2>/dev/null || break; sleep 0.1; done
kill -9 "$victim" 2>/dev/null && why="${why:-the stopped rank outlived the job}"
check "a stopped worker: the job ends after --dist-timeout with a message"

sed 's/conv 4 5/conv 5 5/' specs.txt >specs2.txt
run mpirun --oversubscribe -np 1 "$mnist_mpi" "${sweep[@]}" --distributed --out sd.html : \
    -np 1 "$mnist_mpi" compare specs2.txt "${sweep[@]:2}" --distributed --out sd.html
[ "$rc" -ne 0 ] && grep -q "the ranks' spec files, flags or data differ" "$tmp/err" ||
    why="exit $rc"
check "ranks given different spec files: the job fails before training, saying so"
run "$mnist" "${sweep[@]}" --distributed --out s0.html
[ "$rc" -eq 2 ] && grep -q 'built without MPI; rebuild with make MPI=1' "$tmp/err" ||
    why="exit $rc"
check "compare --distributed without MPI: exit 2, says how to get it"

echo "mpi: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
