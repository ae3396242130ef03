#!/usr/bin/env bash
# test_gemm_targets.sh: the kernel tests (BUILD/tests/test_kernels: products, convolutions,
# Winograd, split images, teams) on each instruction set libxsmm can make the small products
# with, whatever this processor's best is, which the plain run of the suite covers:
#   hsw      AVX2 and FMA
#   wsm      SSE 4.2
#   generic  no libxsmm kernels: OpenBLAS makes every product (src/nn/gemm.c)
# A target above what the processor has is lowered by libxsmm; each run must name the one it
# used and pass. About 4 s a target on 2 cores.
set -u
build=${BUILD:-build}
bin=$build/tests/test_kernels
status=0
for target in hsw wsm generic; do
    out=$(LIBXSMM_TARGET=$target "$bin" 2>&1)
    rc=$?
    used=$(printf '%s\n' "$out" | sed -n 's/.*(libxsmm target \([a-z0-9]*\)).*/\1/p')
    if [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" | grep -E 'ERROR|FAIL|error' | head -20
        echo "FAIL: test_kernels with LIBXSMM_TARGET=$target exited $rc"
        status=1
    elif [ -z "$used" ]; then
        echo "FAIL: test_kernels with LIBXSMM_TARGET=$target did not name its target"
        status=1
    elif [ "$target" = generic ] && [ "$used" != generic ]; then
        echo "FAIL: LIBXSMM_TARGET=generic ran on $used"
        status=1
    else
        echo "ok: test_kernels with LIBXSMM_TARGET=$target (ran on $used)"
    fi
done
exit $status
