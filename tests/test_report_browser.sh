#!/usr/bin/env bash
# test_report_browser.sh: the pages of `mnist report` and `mnist compare` in a real browser.
#  1. Makes a small copy of MNIST, trains a tiny model with a log, writes its report, and
#     compares two tiny specs (about 5 s on 2 cores).
#  2. tests/browser/report_test.mjs opens both files in Debian's Chromium (playwright-core, as
#     tests/test_browser.sh installs it): no console errors, nothing fetched, every image
#     decoded, every chart drawn, each section there. It saves BUILD/report-page.png,
#     BUILD/report-top.png and BUILD/compare-page.png.
# Needs node and /usr/bin/chromium (scripts/deps). A sanitizer build (BUILD containing "asan")
# skips it: the browser test runs once, with the normal build.
set -u
case ${BUILD:-build} in *asan*) echo "report browser: skipped for the sanitizer build"; exit 0 ;; esac
source "$(dirname "$0")/lib_report.bash"
suite "report browser" /usr/bin/chromium "$(command -v node)" "$(command -v python3)"
browser_dir=$root/tests/browser
if [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
    (cd "$browser_dir" && npm ci --no-audit --no-fund) > npm.log 2>&1
    check "npm ci in tests/browser" $?
fi

small_mnist small 3000 1000
printf 'recipe: epochs=2 lr=0.003\nlinear | dense 10\nconv | conv 4 5, relu, maxpool 2, dense 10\n' > specs.txt
"$mnist" train --arch "conv 8 5, relu, maxpool 2, dense 10" --data small --val 500 --epochs 3 \
    --threads 2 --out m.model --log m.jsonl --quiet > log 2>&1 &&
    "$mnist" report --model m.model --log m.jsonl --data small --out report.html >> log 2>&1 &&
    "$mnist" compare specs.txt --data small --val 500 --threads 2 --quiet --out compare.html >> log 2>&1
status=$?
[ "$status" -eq 0 ] || sed 's/^/    /' log | tail -n 4
check "a report and a comparison of tiny models [${SECONDS}s]" "$status"
[ "$status" -eq 0 ] || finish

rm -f "$build/report-page.png" "$build/report-top.png" "$build/compare-page.png"
timeout 90 node "$browser_dir/report_test.mjs" "$tmp/report.html" "$tmp/compare.html" "$build" 2>&1 |
    sed 's/^/    /'
check "both pages in Chromium (tests/browser/report_test.mjs) [${SECONDS}s]" "${PIPESTATUS[0]}"
[ -s "$build/report-page.png" ] && [ -s "$build/compare-page.png" ]
check "screenshots $build/report-page.png, compare-page.png" $?
finish
