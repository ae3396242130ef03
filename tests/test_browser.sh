#!/usr/bin/env bash
# test_browser.sh: the page of `mnist serve` (web/index.html) in a real browser.
#  1. Trains a small model (fast preset, 30,000 images, 2 epochs, affine augmentation, about
#     10 s on 2 cores); it reads the test's drawn 0, 1, 4 and 7 with room to spare.
#  2. Starts `mnist serve --port 0` on it and waits for its "serving http://..." line.
#  3. tests/browser/page_test.mjs drives Debian's Chromium through playwright-core: digits drawn
#     with mouse, touch and pen, Clear, Undo, a photo upload, the layout on a 360x740 phone,
#     no console errors, no request to another host. It saves BUILD/serve-page.png, the page
#     with a recognised 7 on it.
#  4. SIGTERM stops the server, which must exit 0.
# Needs node, npm (once, for `npm ci` of the pinned playwright-core; no browser is downloaded)
# and /usr/bin/chromium (scripts/deps installs them). The browser test runs once: a sanitizer
# build (BUILD containing "asan") skips it. 22-36 s on 2 busy cores.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
case $build in
*asan*)
    echo "browser: runs once, with the normal build (BUILD=$build is a sanitizer build): skipped"
    exit 0
    ;;
esac
mnist=$build/mnist
browser_dir=$root/tests/browser
tmp=$(mktemp -d)
server_pid=
# Stops the server with SIGTERM (then SIGKILL after 10 s); sets server_status to its exit status.
server_status=
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "  server still running 10 s after SIGTERM: killed"
        kill -KILL "$server_pid" 2>/dev/null
    fi
    wait "$server_pid"
    server_status=$?
    server_pid=
}
trap 'stop_server; rm -rf -- "$tmp"' EXIT
cd "$tmp" || exit 1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # a busy 2-core machine: see test_cli.sh

pass=0; fail=0
check() { # check DESCRIPTION STATUS
    if [ "$2" -eq 0 ]; then echo "  ok    $1"; pass=$((pass + 1)); else echo "  FAIL  $1"; fail=$((fail + 1)); fi
}
finish() {
    echo "browser: $pass passed, $fail failed  [${SECONDS}s]"
    [ "$fail" -eq 0 ]
    exit
}

for need in "$mnist" /usr/bin/chromium "$(command -v node)" "$(command -v npm)"; do
    if [ ! -x "$need" ]; then
        echo "browser: ${need:-node or npm} missing (build first; scripts/deps installs the rest)"
        exit 1
    fi
done

# playwright-core, at the version package-lock.json pins. npm leaves its own copy of the lock in
# node_modules; an older one means the pin moved since the last install.
if [ ! -f "$browser_dir/node_modules/.package-lock.json" ] ||
    [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]; then
    (cd "$browser_dir" && npm ci --no-audit --no-fund) > npm.log 2>&1
    status=$?
    [ "$status" -eq 0 ] || sed 's/^/    /' npm.log | tail -n 8
    check "npm ci in tests/browser" "$status"
    [ "$status" -eq 0 ] || finish
fi

"$mnist" train --preset fast --limit 30000 --val 2000 --epochs 2 --augment affine --threads 2 \
    --data "$root/data/mnist" --out m.model --quiet > train.log 2>&1
status=$?
[ "$status" -eq 0 ] || sed 's/^/    /' train.log | tail -n 4
check "train a small model [${SECONDS}s]" "$status"
[ "$status" -eq 0 ] || finish

# The photo to upload: MNIST test digit 1 (a 2), as dark ink on grey paper, four times the size
# and off centre, so the server has to invert, crop and centre it.
photo_label=$(python3 - "$root/data/mnist" photo.png <<'PY'
import struct, sys, zlib
data, out = sys.argv[1], sys.argv[2]
index = 1
pixels = open(f"{data}/t10k-images-idx3-ubyte", "rb").read()[16 + 784 * index:][:784]
label = open(f"{data}/t10k-labels-idx1-ubyte", "rb").read()[8 + index]
size, scale, left, top = 160, 4, 24, 12
rows = []
for y in range(size):
    row = bytearray()
    for x in range(size):
        u, v = (x - left) // scale, (y - top) // scale
        ink = pixels[v * 28 + u] if 0 <= u < 28 and 0 <= v < 28 else 0
        row.append(230 - ink * 200 // 255)
    rows.append(b"\0" + bytes(row))
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
with open(out, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
print(label)
PY
)
check "write a PNG of a digit to upload (a $photo_label)" $?

"$mnist" serve --model m.model --port 0 --workers 2 > serve.out 2> serve.err &
server_pid=$!
url=
for _ in $(seq 200); do # 20 s
    url=$(grep -o 'http://[^ ]*' serve.out 2>/dev/null | head -n 1)
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$url" ] || sed 's/^/    /' serve.err | tail -n 4
check "mnist serve --port 0 prints its URL (${url:-none})" "$([ -n "$url" ]; echo $?)"
[ -n "$url" ] || finish

screenshot=$build/serve-page.png
rm -f "$screenshot"
timeout 150 node "$browser_dir/page_test.mjs" "$url" "$screenshot" photo.png "$photo_label" 2>&1 |
    sed 's/^/    /'
check "the page in Chromium (tests/browser/page_test.mjs) [${SECONDS}s]" "${PIPESTATUS[0]}"
[ -s "$screenshot" ]
check "screenshot $screenshot" $?

stop_server
[ "$server_status" -eq 0 ] || sed 's/^/    /' serve.err | tail -n 4
check "SIGTERM stops the server, exit status $server_status" "$server_status"
finish
