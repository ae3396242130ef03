#!/usr/bin/env bash
# test_fuzz_cli.sh: the option-space fuzzer (scripts/fuzz-cli) and every command line it found.
#
#   self-check   a fake `mnist` that passes everything through to the real one except for one
#                subcommand, where it prints an AddressSanitizer report, dies of SIGSEGV, exits
#                3, hangs, or writes an ONNX file that does not load: the fuzzer must report
#                each (exit 1, a FINDING line with the command and the reproducer)
#   regressions  each finding as a fixed command line, run every time
#   fuzz         random command lines on tiny data: FUZZ_CLI_SECONDS (default 150) under an
#                ASan build ($BUILD/mnist linked with libasan), a 20 s smoke run otherwise;
#                FUZZ_CLI_SEED picks the seed (default: a new one each run, printed)
# Run by scripts/run-tests with BUILD=build-dir; exit 0 when every check passes.
# About 3 min under ASan on 2 cores, 50 s on the normal build.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
mnist=$build/mnist
fuzz=$root/scripts/fuzz-cli
tmp=$(mktemp -d)
bg_pid=
cleanup() {
    if [ -n "$bg_pid" ]; then kill -9 "$bg_pid" 2>/dev/null; fi
    rm -rf -- "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

if [ ! -x "$mnist" ]; then
    echo "fuzz-cli: $mnist not built"
    exit 1
fi
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

asan=0
if nm -D "$mnist" 2>/dev/null | grep -q __asan_init || ldd "$mnist" 2>/dev/null | grep -q libasan; then
    asan=1
fi

# ---- self-check: the fuzzer must flag each kind of failure -----------------------------------
mkdir -p fake
cat > fake/mnist <<EOF
#!/usr/bin/env bash
real='$mnist'
case "\$1" in
eval) echo "==1==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000010" >&2
      echo "SUMMARY: AddressSanitizer: heap-buffer-overflow" >&2; exit 1 ;;
predict) kill -SEGV \$\$ ;;
bench) sleep 30 ;;
export) prev=; for a in "\$@"; do [ "\$prev" = --out ] && out=\$a; prev=\$a; done
        case " \$* " in *" --format onnx "*) echo garbage > "\$out"; exit 0 ;; esac ;;
info) for a in "\$@"; do [ "\$a" = --arch ] && exit 3; done ;;
esac
exec "\$real" "\$@"
EOF
chmod +x fake/mnist
selfcheck() { # KIND EXPECTED-TEXT: the fuzzer run on KIND cases of the fake must report it
    local kind=$1 want=$2 out rc
    out=$(TMPDIR=$tmp "$fuzz" --build "$tmp/fake" --kinds "$kind" --count 3 --seed 7 --time-limit 8 2>&1)
    rc=$?
    if [ "$rc" -eq 1 ] && grep -q "^FINDING seed=7 case=.*$want" <<<"$out" &&
        grep -q "reproduce: scripts/fuzz-cli .*--seed 7 --one " <<<"$out" &&
        grep -q "command: .*mnist $kind" <<<"$out"; then
        ok "self-check: $kind: '$want' reported with its command line and reproducer"
    else
        bad "self-check: $kind: the fuzzer did not report '$want' (exit $rc)"
        tail -15 <<<"$out"
    fi
}
selfcheck eval "sanitizer report"
selfcheck predict "killed by signal SIGSEGV"
selfcheck info "exit status 3"
selfcheck bench "over its time limit"
selfcheck export "does not load"

# ---- regressions: every finding of the fuzzer, as a fixed command line -----------------------
"$fuzz" --make-data data >/dev/null || { bad "fuzz-cli --make-data"; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:exitcode=86"
san_clean() { ! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:|free\(\): " "$1"; }

# A batch size that leaves exactly one training image over (the last batch B+1 images) once
# overflowed the trainer's batch buffers ("free(): invalid size", an ASan heap-buffer-overflow):
# 195 = 2 x 97 + 1 images (--limit 245 --val 50) and 250 = 83 x 3 + 1, at every thread count.
one_over() { # TRAIN-FLAGS...: must train and write a model that loads, with no report
    "$mnist" train --data data --val 50 --epochs 1 --quiet "$@" --out rem.model >/dev/null 2>err.txt
    local rc=$?
    if [ "$rc" -eq 0 ] && san_clean err.txt && "$mnist" info rem.model >/dev/null 2>&1; then
        ok "train $*: one image over"
    else
        bad "train $*: exit $rc"; grep -m3 "ERROR\|SUMMARY\|mnist:" err.txt
    fi
}
for t in 1 2 3 4; do
    one_over --limit 245 --batch 97 --threads "$t" --arch "conv 8 3, bn, relu, maxpool 2, dense 10"
    one_over --batch 3 --threads "$t" --arch "dense 10"
done

"$mnist" train --data data --val 50 --epochs 1 --batch 32 --threads 1 --quiet \
    --arch "conv 4 3 pad=1, bn, relu, maxpool 2, dense 10" --out r.model >/dev/null 2>&1 ||
    bad "train r.model for the regressions below"

# predict --json --show: stdout must stay one JSON object per line (or the combination be
# refused as a usage error); the text picture once came between the objects.
"$mnist" predict --model r.model --json --show data/images/mnist-0.pgm data/images/inv-1.png \
    >out.txt 2>err.txt
rc=$?
if [ "$rc" -eq 2 ] || { [ "$rc" -eq 0 ] && python3 -c '
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert len(lines) == 2, len(lines)
for l in lines: json.loads(l)' out.txt 2>/dev/null; }; then
    ok "predict --json --show: stdout is JSON lines"
else
    bad "predict --json --show: exit $rc, stdout is not one JSON object per line"; head -3 out.txt
fi

# The resume command an interrupted run prints, run as printed, must resume it to the weights
# of an uninterrupted run: with data elsewhere than data/mnist and a thread count other than
# the default (all cores) it once lacked --data and --threads (exit 1; or other weights).
threads=$(( $(nproc) + 1 ))
targs=(train --data data --val 50 --epochs 30 --batch 8 --threads "$threads"
    --arch "conv 8 5, relu, maxpool 2, dense 10")
"$mnist" "${targs[@]}" --out ref.model >/dev/null 2>&1
"$mnist" "${targs[@]}" --out run.model >train.out 2>train.err &
bg_pid=$!
for _ in $(seq 1 600); do grep -q "^epoch 1/" train.out && break; sleep 0.05; done
kill -INT "$bg_pid"
wait "$bg_pid"
rc=$?
bg_pid=
hint=$(sed -n 's/^mnist: resume with: mnist //p' train.err)
if [ "$rc" -ne 130 ] || [ -z "$hint" ]; then
    bad "resume hint: the run stopped by SIGINT exited $rc and printed '${hint}'"
else
    # shellcheck disable=SC2086 # the printed command, split as a shell would
    eval "\"\$mnist\" $hint" >/dev/null 2>err.txt
    rc=$?
    a=$("$mnist" info --json ref.model 2>/dev/null | grep -o '"weights_crc32":"[0-9a-f]*"')
    b=$("$mnist" info --json run.model 2>/dev/null | grep -o '"weights_crc32":"[0-9a-f]*"')
    if [ "$rc" -eq 0 ] && [ -n "$a" ] && [ "$a" = "$b" ]; then
        ok "resume hint 'mnist $hint' resumes to the uninterrupted run's weights"
    else
        bad "resume hint 'mnist $hint': exit $rc, weights ${b:-none} instead of $a"; tail -2 err.txt
    fi
fi

# report and compare with --out and --json -: stdout must be the JSON document alone (a status
# line once followed it). Checked when the build has them.
# A spec file that compare trains: the JSON once, at the end, not after every run as well.
printf 'a | dense 10 | epochs=1\nb | dense 16, relu, dense 10 | epochs=1\n' > two.txt
for cmd in report compare compare-train; do
    "$mnist" "${cmd%-train}" --help >/dev/null 2>&1 || continue
    case $cmd in
        report) model=(--model r.model) ;;
        compare) model=(r.model) ;;
        compare-train) model=(two.txt --val 50 --quiet) ;;
    esac
    "$mnist" "${cmd%-train}" "${model[@]}" --data data --out "$cmd.html" --json - >out.txt 2>err.txt
    rc=$?
    if [ "$rc" -eq 0 ] && san_clean err.txt &&
        python3 -c 'import json, sys; json.load(open(sys.argv[1]))' out.txt 2>/dev/null; then
        ok "$cmd --out FILE --json -: stdout is one JSON document"
    else
        bad "$cmd --out FILE --json -: exit $rc, stdout is not JSON alone"; tail -2 out.txt | cut -c1-200
    fi
done

# serve: SIGINT and SIGTERM must stop the server cleanly whichever thread the kernel hands them
# to. Threads started before the server blocked them (OpenBLAS starts its pool before main)
# must block or catch them, else a SIGTERM delivered there kills the process (now and then).
"$mnist" serve --model r.model --port 0 >serve.out 2>serve.err &
bg_pid=$!
for _ in $(seq 1 300); do grep -q "serving http" serve.out && break; sleep 0.1; done
if grep -q "serving http" serve.out; then
    caught=$((16#$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$bg_pid/status")))
    unsafe=
    for task in /proc/"$bg_pid"/task/*; do
        [ "${task##*/}" = "$bg_pid" ] && continue
        blk=$((16#$(sed -n 's/^SigBlk:[[:space:]]*//p' "$task/status" 2>/dev/null || echo 4002)))
        [ $(((blk | caught) & 16#4002)) -eq $((16#4002)) ] || unsafe="$unsafe ${task##*/}"
    done
    kill -TERM "$bg_pid"
    wait "$bg_pid"
    rc=$?
    bg_pid=
    if [ -z "$unsafe" ] && [ "$rc" -eq 0 ] && san_clean serve.err; then
        ok "serve: every thread blocks or catches SIGINT/SIGTERM; SIGTERM exits 0"
    else
        bad "serve: threads that would die of SIGINT/SIGTERM:${unsafe:- none}; exit $rc after SIGTERM"
    fi
else
    bad "serve did not start"; cat serve.err
    kill -9 "$bg_pid" 2>/dev/null
    bg_pid=
fi

# ---- the fuzzer itself ------------------------------------------------------------------------
seed=${FUZZ_CLI_SEED:-$(( $(date +%s) % 100000 ))}
if [ "$asan" -eq 1 ]; then
    secs=${FUZZ_CLI_SECONDS:-150}
else
    secs=${FUZZ_CLI_SECONDS:-20}
fi
echo "fuzz-cli: $secs s of random command lines, seed $seed, $( [ $asan -eq 1 ] && echo ASan build || echo build without ASan)"
TMPDIR=$tmp "$fuzz" --build "$build" --seed "$seed" --seconds "$secs" --jobs 2 >fuzz.txt 2>&1
rc=$?
cat fuzz.txt
if [ "$rc" -eq 0 ]; then
    ok "fuzz-cli: $(sed -n 's/^fuzz-cli: seed [0-9]*: \([0-9]* command lines in [0-9]* cases\).*/\1/p' fuzz.txt), no finding"
else
    bad "fuzz-cli: findings (reproduce each with the command printed above)"
fi

echo "fuzz-cli tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
