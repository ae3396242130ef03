# lib_report.bash: what test_report.sh, test_compare.sh and test_report_browser.sh share,
# sourced by them (not a test itself: scripts/run-tests runs tests/*.sh only).
#   suite NAME TOOL...   start: NAME heads the summary line; exit 1 if a TOOL is not there or
#                        data/mnist is missing. Sets root, build, mnist; works in a fresh
#                        temporary directory, removed at exit.
#   check WHAT STATUS [WHY]   one counted line: ok when STATUS is 0
#   finish               the summary line; exit 0 when every check passed
#   small_mnist DIR NTRAIN NTEST [BAD]   the first NTRAIN training and NTEST test images of
#                        data/mnist as IDX files in DIR; BAD=1 changes the last training label
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
mnist=$build/mnist
# libgomp's threads spin while they wait by default, which slows a busy 2-core machine badly;
# waiting passively changes no result.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
suite_name=
pass=0
fail=0

suite() {
    suite_name=$1
    shift
    local need
    for need in "$mnist" "$@"; do
        [ -x "$need" ] || { echo "$suite_name: ${need:-a tool} missing"; exit 1; }
    done
    [ -f "$root/data/mnist/train-images-idx3-ubyte" ] ||
        { echo "$suite_name: data/mnist missing (scripts/fetch-data)"; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf -- "$tmp"' EXIT
    cd "$tmp" || exit 1
}

check() {
    if [ "$2" -eq 0 ]; then
        echo "  ok    $1"
        pass=$((pass + 1))
    else
        echo "  FAIL  $1${3:+: $3}"
        fail=$((fail + 1))
        [ -s err ] && sed -n '1,3s/^/          stderr: /p' err
    fi
}

finish() {
    echo "$suite_name: $pass passed, $fail failed  [${SECONDS}s]"
    [ "$fail" -eq 0 ]
    exit
}

small_mnist() {
    python3 - "$root/data/mnist" "$1" "$2" "$3" "${4:-0}" <<'PY'
import os, sys
src, dst, n_train, n_test, bad = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
os.makedirs(dst, exist_ok=True)
for split, n in (("train", n_train), ("t10k", n_test)):
    img = open(f"{src}/{split}-images-idx3-ubyte", "rb").read()
    lab = bytearray(open(f"{src}/{split}-labels-idx1-ubyte", "rb").read())
    if bad and split == "train":
        lab[8 + n - 1] = (lab[8 + n - 1] + 1) % 10
    open(f"{dst}/{split}-images-idx3-ubyte", "wb").write(
        img[:4] + n.to_bytes(4, "big") + img[8:16] + img[16:16 + 784 * n])
    open(f"{dst}/{split}-labels-idx1-ubyte", "wb").write(
        bytes(lab[:4]) + n.to_bytes(4, "big") + bytes(lab[8:8 + n]))
PY
}
