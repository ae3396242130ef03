#!/usr/bin/env bash
# `mnist serve` over real HTTP on 127.0.0.1: two small models trained here, then the tests of
# tests/serve_http.py (every endpoint and error status, body limits, concurrency, an ensemble,
# slow clients, saturation, shutdown, bad flags). Runs in the sanitizer pass too.
set -u
cd "$(dirname "$0")/.."
build=${BUILD:-build}
mnist="$build/mnist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for seed in 1 2; do
    if ! "$mnist" train --arch "conv 8 3 pad=1, bn, relu, maxpool 2, dense 10" --epochs 1 \
        --limit 6000 --val 1000 --seed "$seed" --threads 2 --out "$tmp/m$seed.model" --quiet \
        > "$tmp/train$seed.log" 2>&1; then
        echo "  FAIL  train a small model (seed $seed)"; cat "$tmp/train$seed.log"; exit 1
    fi
done
/usr/bin/python3 tests/serve_http.py "$mnist" "$tmp/m1.model" "$tmp/m2.model" "$tmp"
