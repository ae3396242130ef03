/*
 * winograd.c - Winograd minimal filtering for stride-1 convolutions: F(4x4, 3x3), F(4x4, 5x5),
 * F(2x2, 3x3) and F(2x2, 5x5) (Lavin & Gray 2015), the fast path of conv2d.c.
 *
 * Each m x m block of outputs comes from an a x a patch d of the zero-padded input,
 * a = m + k - 1:
 *   Y = A^T [ sum over input channels of U . V ] A,   U = G g G^T (a x a),   V = B^T d B,
 * g being the k x k kernel. The sums over input channels of the a*a elementwise products are
 * a*a matrix products (oc, c) @ (c, tiles): a*a multiply-adds per channel pair and m x m block,
 * against im2col's m*m*k*k. The forward (and the input gradient, a forward with the kernels
 * turned) of a batch takes F(4x4, 3x3), 4x fewer (a = 6), and F(2x2, 5x5), 2.78x fewer
 * (a = 6). One image split between the threads takes F(2x2, 3x3), 2.25x fewer, and
 * F(4x4, 5x5), 6.25x fewer (a = 8; cnn_wino_part_m). The weight gradient takes F(2x2, 3x3) and
 * F(2x2, 5x5).
 *
 * The matrices (Toom-Cook: interpolation at 0, 1, -1 and infinity for a = 4; at 0, 1, -1, 2,
 * -2 and infinity for a = 6; at 0, 1, -1, 2, -2, 1/2, -1/2 and infinity for a = 8), as
 * cross-correlation, PyTorch's convention:
 *   F(2,3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *           G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *           A^T = [1 1 1 0; 0 1 -1 -1]
 *   a = 6:  B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *                  0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   F(2,5): G   = [1/4 0 0 0 0; -1/6 (1 1 1 1 1); -1/6 (1 -1 1 -1 1);
 *                  1/24 (1 2 4 8 16); 1/24 (1 -2 4 -8 16); 0 0 0 0 1]
 *           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1]
 *   F(4,3): G   = [1/4 0 0; -1/6 (1 1 1); -1/6 (1 -1 1); 1/24 (1 2 4); 1/24 (1 -2 4); 0 0 1]
 *           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *   a = 8:  B^T = [1 0 -21/4 0 21/4 0 -1 0; 0 1 1 -17/4 -17/4 1 1 0;
 *                  0 -1 1 17/4 -17/4 -1 1 0; 0 1/2 1/4 -5/2 -5/4 2 1 0;
 *                  0 -1/2 1/4 5/2 -5/4 -2 1 0; 0 2 4 -5/2 -5 1/2 1 0;
 *                  0 -2 4 5/2 -5 -1/2 1 0; 0 -1 0 21/4 0 -21/4 0 1]
 *   F(4,5): G   = [1 0 0 0 0; -2/9 (1 1 1 1 1); -2/9 (1 -1 1 -1 1); 1/90 (1 2 4 8 16);
 *                  1/90 (1 -2 4 -8 16); 32/45 (1 1/2 1/4 1/8 1/16);
 *                  32/45 (1 -1/2 1/4 -1/8 1/16); 0 0 0 0 1]
 *           A^T = [1 1 1 1 1 1 1 0; 0 1 -1 2 -2 1/2 -1/2 0; 0 1 1 4 4 1/4 1/4 0;
 *                  0 1 -1 8 -8 1/8 -1/8 1]
 *   In float32, F(4x4, 5x5) is within 9e-7 of the direct sums' magnitude on 64 channels of
 *   random normal data, as F(4x4, 3x3) is (1.0e-6); F(2x2, 5x5) 4.3e-7.
 * Each 2-D transform is its 1-D one along the rows and down the columns (in either order: they
 * commute; the input transform goes along the rows first). The weight gradient runs the same
 * products the other way (section at the end). The references are cnn_conv2d_forward_naive and
 * cnn_conv2d_backward_naive; test_kernels compares every layer shape that takes this path.
 */
#ifdef _OPENMP
#include <omp.h>
#endif

#include <stdatomic.h>
#include <string.h>

#include "internal.h"

/* ---- one-dimensional transforms: in[i * is] -> out[j * os] ------------------------------- */

/* kernel g (k) -> u (a) */
static inline void g3(const float *g, size_t gs, float *u, size_t us) {
    const float g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
    u[0] = g0;
    u[us] = 0.5f * (g0 + g1 + g2);
    u[2 * us] = 0.5f * (g0 - g1 + g2);
    u[3 * us] = g2;
}

static inline void g5(const float *g, size_t gs, float *u, size_t us) {
    const float g0 = g[0], g1 = g[gs], g2 = g[2 * gs], g3 = g[3 * gs], g4 = g[4 * gs];
    const float even = g0 + g2 + g4, odd = g1 + g3;
    const float even2 = g0 + 4.0f * g2 + 16.0f * g4, odd2 = 2.0f * g1 + 8.0f * g3;
    u[0] = 0.25f * g0;
    u[us] = (even + odd) * (-1.0f / 6.0f);
    u[2 * us] = (even - odd) * (-1.0f / 6.0f);
    u[3 * us] = (even2 + odd2) * (1.0f / 24.0f);
    u[4 * us] = (even2 - odd2) * (1.0f / 24.0f);
    u[5 * us] = g4;
}

static inline void g36(const float *g, size_t gs, float *u, size_t us) {
    const float g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
    const float even = g0 + g2, even2 = g0 + 4.0f * g2, odd2 = 2.0f * g1;
    u[0] = 0.25f * g0;
    u[us] = (even + g1) * (-1.0f / 6.0f);
    u[2 * us] = (even - g1) * (-1.0f / 6.0f);
    u[3 * us] = (even2 + odd2) * (1.0f / 24.0f);
    u[4 * us] = (even2 - odd2) * (1.0f / 24.0f);
    u[5 * us] = g2;
}

static inline void g58(const float *g, size_t gs, float *u, size_t us) {
    const float g0 = g[0], g1 = g[gs], g2 = g[2 * gs], g3 = g[3 * gs], g4 = g[4 * gs];
    const float even = g0 + g2 + g4, odd = g1 + g3;
    const float even2 = (1.0f / 90.0f) * g0 + (2.0f / 45.0f) * g2 + (8.0f / 45.0f) * g4;
    const float odd2 = (1.0f / 45.0f) * g1 + (4.0f / 45.0f) * g3;
    const float even3 = (32.0f / 45.0f) * g0 + (8.0f / 45.0f) * g2 + (2.0f / 45.0f) * g4;
    const float odd3 = (16.0f / 45.0f) * g1 + (4.0f / 45.0f) * g3;
    u[0] = g0;
    u[us] = (even + odd) * (-2.0f / 9.0f);
    u[2 * us] = (even - odd) * (-2.0f / 9.0f);
    u[3 * us] = even2 + odd2;
    u[4 * us] = even2 - odd2;
    u[5 * us] = even3 + odd3;
    u[6 * us] = even3 - odd3;
    u[7 * us] = g4;
}

/* input patch d (a) -> v (a) */
static inline void bt4(const float *d, size_t ds, float *v, size_t vs) {
    const float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds];
    v[0] = d0 - d2;
    v[vs] = d1 + d2;
    v[2 * vs] = d2 - d1;
    v[3 * vs] = d1 - d3;
}

static inline void bt6(const float *d, size_t ds, float *v, size_t vs) {
    const float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds];
    const float d5 = d[5 * ds];
    const float p = d4 - 4.0f * d2, q = d3 - 4.0f * d1, r = d4 - d2, s = 2.0f * (d3 - d1);
    v[0] = 4.0f * d0 - 5.0f * d2 + d4;
    v[vs] = p + q;
    v[2 * vs] = p - q;
    v[3 * vs] = r + s;
    v[4 * vs] = r - s;
    v[5 * vs] = 4.0f * d1 - 5.0f * d3 + d5;
}

static inline void bt8(const float *d, size_t ds, float *v, size_t vs) {
    const float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds];
    const float d5 = d[5 * ds], d6 = d[6 * ds], d7 = d[7 * ds];
    const float s1 = d2 + d6 - 4.25f * d4, t1 = d1 + d5 - 4.25f * d3;
    const float s2 = 0.25f * d2 - 1.25f * d4 + d6, t2 = 0.5f * d1 - 2.5f * d3 + 2.0f * d5;
    const float s3 = 4.0f * d2 - 5.0f * d4 + d6, t3 = 2.0f * d1 - 2.5f * d3 + 0.5f * d5;
    v[0] = d0 - d6 + 5.25f * (d4 - d2);
    v[vs] = s1 + t1;
    v[2 * vs] = s1 - t1;
    v[3 * vs] = s2 + t2;
    v[4 * vs] = s2 - t2;
    v[5 * vs] = s3 + t3;
    v[6 * vs] = s3 - t3;
    v[7 * vs] = d7 - d1 + 5.25f * (d3 - d5);
}

/* product m (a) -> outputs y (m) */
static inline void at4(const float *m, size_t ms, float *y, size_t ys) {
    const float m0 = m[0], m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms];
    y[0] = m0 + m1 + m2;
    y[ys] = m1 - m2 - m3;
}

static inline void at6(const float *m, size_t ms, float *y, size_t ys) {
    const float m0 = m[0], m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms];
    const float m5 = m[5 * ms];
    y[0] = m0 + m1 + m2 + m3 + m4;
    y[ys] = m1 - m2 + 2.0f * (m3 - m4) + m5;
}

static inline void at64(const float *m, size_t ms, float *y, size_t ys) {
    const float m0 = m[0], m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms];
    const float m5 = m[5 * ms];
    const float s1 = m1 + m2, d1 = m1 - m2, s2 = m3 + m4, d2 = m3 - m4;
    y[0] = m0 + s1 + s2;
    y[ys] = d1 + 2.0f * d2;
    y[2 * ys] = s1 + 4.0f * s2;
    y[3 * ys] = d1 + 8.0f * d2 + m5;
}

static inline void at84(const float *m, size_t ms, float *y, size_t ys) {
    const float m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms], m5 = m[5 * ms];
    const float m6 = m[6 * ms];
    const float s1 = m1 + m2, d1 = m1 - m2, s2 = m3 + m4, d2 = m3 - m4, s3 = m5 + m6, d3 = m5 - m6;
    y[0] = m[0] + s1 + s2 + s3;
    y[ys] = d1 + 2.0f * d2 + 0.5f * d3;
    y[2 * ys] = s1 + 4.0f * s2 + 0.25f * s3;
    y[3 * ys] = d1 + 8.0f * d2 + 0.125f * d3 + m[7 * ms];
}

/* The transposes, for the weight gradient: an output-gradient pair (y0, y1) -> m (a) by A, and
 * a transformed-kernel gradient du (a) -> dg (k) by G^T. */
static inline void a4(float y0, float y1, float *m, size_t ms) {
    m[0] = y0;
    m[ms] = y0 + y1;
    m[2 * ms] = y0 - y1;
    m[3 * ms] = -y1;
}

static inline void a6(float y0, float y1, float *m, size_t ms) {
    m[0] = y0;
    m[ms] = y0 + y1;
    m[2 * ms] = y0 - y1;
    m[3 * ms] = y0 + 2.0f * y1;
    m[4 * ms] = y0 - 2.0f * y1;
    m[5 * ms] = y1;
}

static inline void gt3(const float *u, size_t us, float *g, size_t gs) {
    const float u0 = u[0], u1 = u[us], u2 = u[2 * us], u3 = u[3 * us];
    g[0] = u0 + 0.5f * (u1 + u2);
    g[gs] = 0.5f * (u1 - u2);
    g[2 * gs] = 0.5f * (u1 + u2) + u3;
}

static inline void gt5(const float *u, size_t us, float *g, size_t gs) {
    const float u0 = u[0], u5 = u[5 * us];
    const float s = (u[us] + u[2 * us]) * (-1.0f / 6.0f), d = (u[us] - u[2 * us]) * (-1.0f / 6.0f);
    const float s2 = (u[3 * us] + u[4 * us]) * (1.0f / 24.0f);
    const float d2 = (u[3 * us] - u[4 * us]) * (1.0f / 24.0f);
    g[0] = 0.25f * u0 + s + s2;
    g[gs] = d + 2.0f * d2;
    g[2 * gs] = s + 4.0f * s2;
    g[3 * gs] = d + 8.0f * d2;
    g[4 * gs] = s + 16.0f * s2 + u5;
}

/* The transforms for the tile: m outputs (2 or 4) of a k-wide kernel (3 or 5) from
 * a = m + k - 1 inputs (4, 6 or 8). m and k are constants wherever speed matters, and the
 * choice folds away. The weight gradient's (pair_1d, kernel_grad_1d) are for m = 2. */
#define A_MAX 8
#define BY_K(k, f3, f5, ...) ((k) == 3 ? f3(__VA_ARGS__) : f5(__VA_ARGS__))
#define kernel_1d(m, k, ...)                                                                       \
    ((m) == 4 ? BY_K(k, g36, g58, __VA_ARGS__) : BY_K(k, g3, g5, __VA_ARGS__))
#define input_1d(a, ...)                                                                           \
    ((a) == 8 ? bt8(__VA_ARGS__) : (a) == 6 ? bt6(__VA_ARGS__) : bt4(__VA_ARGS__))
#define output_1d(m, k, ...)                                                                       \
    ((m) == 4 ? BY_K(k, at64, at84, __VA_ARGS__) : BY_K(k, at4, at6, __VA_ARGS__))
#define pair_1d(k, ...) BY_K(k, a4, a6, __VA_ARGS__)
#define kernel_grad_1d(k, ...) BY_K(k, gt3, gt5, __VA_ARGS__)
/* f(..., k) with k = 3 or 5 a constant, and f(..., m, k) for the four tiles, for the band
 * functions inlined below */
#define WITH_K(k, f, ...) ((k) == 3 ? f(__VA_ARGS__, 3) : f(__VA_ARGS__, 5))
#define WITH_MK(m, k, f, ...)                                                                      \
    ((m) == 4 ? WITH_K(k, f, __VA_ARGS__, 4) : WITH_K(k, f, __VA_ARGS__, 2))

int cnn_wino_supports(int k) {
    return k == 3 || k == 5;
}

/* Tiles for a batch: 4x4 for 3x3 kernels, 2x2 for 5x5. F(4x4, 5x5) (a = 8) was slower there:
 * on the default network's 14x14 layer its 4x4 tiles cover 16x16, and the larger transforms
 * cost more than the products save (2 threads, 2,619-3,014 against 3,179-3,366 images/s in
 * training, batch inference unchanged; 2026-12-02). */
int cnn_wino_m(int k) {
    return k == 3 ? 4 : 2;
}

/* Tiles for one image split between threads (cnn_wino_conv_part): 4x4 for 5x5 kernels, which
 * make each thread's products 1.7x shorter on a 14x14 layer (the default network's image on 2
 * threads: 72 against 79.5-80.7 us in two rounds of three, the third even); 2x2 for 3x3, where
 * 4x4 gave 245-328 against 221-274 us on the best preset's network (2026-12-02). */
int cnn_wino_part_m(int k) {
    return k == 5 ? 4 : 2;
}

size_t cnn_wino_u_floats(int oc, int c, int k, int m) {
    const size_t a = (size_t)m + k - 1;
    return a * a * oc * c;
}

size_t cnn_wino_du_floats(int oc, int c, int k) {
    const size_t a = (size_t)k + 1;
    return a * a * oc * c;
}

/* ---- two-dimensional transforms, over whole layers ---------------------------------------- */

/* w (oc, c, k, k) -> u (a*a, oc, c) for m x m tiles; or with flip, the kernels of the input
 * gradient: u (a*a, c, oc) from w[o][ci] turned 180 degrees. KERNEL_RUN kernels at a time,
 * one to a lane: the transforms run along the lanes, and each of the a*a planes of u gets a
 * run of KERNEL_RUN floats. One kernel at a time wrote a float to each plane, oc * c floats
 * apart (8 KB on a 32-to-64-channel layer: a few L1 sets for all 36 planes). On one thread,
 * such a layer's kernels for F(4x4, 3x3) took 626 us and take 31; for F(2x2, 5x5) 629 and 51;
 * for F(4x4, 5x5) 1,163 and 82 (2026-12-02). Training makes them on every step. */
#define KERNEL_RUN 16

static inline __attribute__((always_inline)) void kernel_run(const float *w, float *u, int oc,
                                                             int c, long o0, int n, int flip,
                                                             const int m, const int k) {
    const int a = m + k - 1, kk = k * k;
    const size_t plane = (size_t)oc * c;
    float g[25 * KERNEL_RUN], t[A_MAX * 5 * KERNEL_RUN], v[A_MAX * A_MAX * KERNEL_RUN];
    for (int j = 0; j < KERNEL_RUN; j++) {    /* g[q][lane]: tap q of kernel o0 + lane */
        const long oi = o0 + (j < n ? j : 0); /* spare lanes repeat the first kernel */
        const float *src = flip ? w + ((oi % oc) * c + oi / oc) * kk : w + oi * kk;
        for (int q = 0; q < kk; q++) g[q * KERNEL_RUN + j] = src[flip ? kk - 1 - q : q];
    }
    for (int col = 0; col < k; col++) /* t (a, k) = G g, column by column */
#pragma GCC ivdep
        for (int j = 0; j < KERNEL_RUN; j++)
            kernel_1d(m, k, g + col * KERNEL_RUN + j, (size_t)k * KERNEL_RUN,
                      t + col * KERNEL_RUN + j, (size_t)k * KERNEL_RUN);
    for (int i = 0; i < a; i++) /* v (a, a) = t G^T, row by row */
#pragma GCC ivdep
        for (int j = 0; j < KERNEL_RUN; j++)
            kernel_1d(m, k, t + i * k * KERNEL_RUN + j, KERNEL_RUN, v + i * a * KERNEL_RUN + j,
                      KERNEL_RUN);
    for (int e = 0; e < a * a; e++)
        memcpy(u + e * plane + o0, v + e * KERNEL_RUN, (size_t)n * sizeof(float));
}

void cnn_wino_weights(const float *w, float *u, int oc, int c, int k, int m, int flip) {
    const long plane = (long)oc * c, runs = (plane + KERNEL_RUN - 1) / KERNEL_RUN;
#pragma omp parallel for schedule(static) if (plane * (m + k - 1) * (m + k - 1) * 4 >=             \
                                              CNN_OMP_MIN_WORK)
    for (long r = 0; r < runs; r++) {
        const long o0 = r * KERNEL_RUN;
        const int n = plane - o0 < KERNEL_RUN ? (int)(plane - o0) : KERNEL_RUN;
        WITH_MK(m, k, kernel_run, w, u, oc, c, o0, n, flip);
    }
}

#define OC_RUN 16

/* ---- instruction sets -----------------------------------------------------------------------
 * The transforms' loops over a channel's tiles (input_plane, output_plane, dy_plane) are built
 * twice: for any x86-64 (SSE2, the rest of the library's target) and for AVX2, taken at run
 * time where the processor has it. Their arithmetic is the same, in the same order (ISO C
 * builds contract no multiply-adds), so both give the same bits; only the vector width
 * differs. The default network's split layer (F(4x4, 5x5), half its output channels, one
 * thread) took 36 against 43 us with AVX2, a batch of 64 through it 5.8 against 6.1 ms, and a
 * 3x3 layer's batch 3.0 against 3.3 ms (2026-12-02). 512-bit vectors were slower than either
 * (44-46 us). */
#if defined(__x86_64__) && defined(__GNUC__)
#define AVX2_TARGET __attribute__((target("avx2")))
static _Atomic int avx2_transforms = -1; /* -1: not yet asked; any thread may ask first */

static int transforms_wide(void) {
    int on = atomic_load_explicit(&avx2_transforms, memory_order_relaxed);
    if (on < 0) {
        on = __builtin_cpu_supports("avx2") ? 1 : 0;
        atomic_store_explicit(&avx2_transforms, on, memory_order_relaxed);
    }
    return on;
}

int cnn_wino_set_avx2(int on) {
    const int was = transforms_wide();
    atomic_store_explicit(&avx2_transforms, on && __builtin_cpu_supports("avx2"),
                          memory_order_relaxed);
    return was;
}
#else
#define AVX2_TARGET
static int transforms_wide(void) {
    return 0;
}

int cnn_wino_set_avx2(int on) {
    (void)on;
    return 0;
}
#endif

/* name_generic and name_avx2, both the always-inline name(args); PICK(name) the one to use */
#define TWO_TARGETS(name, params, args)                                                            \
    static void name##_generic params {                                                            \
        name args;                                                                                 \
    }                                                                                              \
    AVX2_TARGET static void name##_avx2 params {                                                   \
        name args;                                                                                 \
    }
#define PICK(name) (transforms_wide() ? name##_avx2 : name##_generic)

/* The input transform takes a band of tile rows at a time, CW tile columns wide, in two
 * passes through a small buffer:
 *   along the rows: each of the band's m*nb + k - 1 image rows, d B for each tile, into h, the
 *     image rows by their remainder mod m in m parts, cw floats per row;
 *   down the columns: B^T (d B) for each tile, where tile row r of the band reads image rows
 *     m*r + i (i < a), which are h rows r + i/m of part i mod m: cw floats apart, so when the
 *     band spans the whole width (cw = tw) the band's tiles are one run, as they are in v, and
 *     this pass, which makes the a*a outputs, is one vectorised loop over all of them.
 * Inlined with m and k constants, so that the 1-D transforms unroll. The a outputs of a 1-D
 * transform go to a rows of one buffer, a runtime distance apart, which GCC cannot tell do not
 * overlap; `ivdep` says so, and without it the loops ran scalar. */
#define CW 32
#define BAND_FLOATS (6 * 10 * CW) /* per part: a rows of (nb + (a - 1) / m) * cw, any a */

static inline __attribute__((always_inline)) void input_band(const float *d, size_t wp, float *v,
                                                             size_t plane, int tw, int nb, int cw,
                                                             const int m, const int k) {
    const int a = m + k - 1, hr = nb + (a - 1) / m; /* h rows per part */
    float h[4][BAND_FLOATS];                        /* [part][q][h row][tile] */
    for (int y = 0; y < m * nb + k - 1; y++) {
        const float *restrict row = d + (size_t)y * wp;
        float *restrict dst = h[y % m] + (size_t)(y / m) * cw;
#pragma GCC ivdep
        for (int j = 0; j < cw; j++) {
            const float *restrict in = row + m * j;
            const float x[A_MAX] = {in[0],
                                    in[1],
                                    in[2],
                                    in[3],
                                    a > 4 ? in[4] : 0,
                                    a > 5 ? in[5] : 0,
                                    a > 6 ? in[6] : 0,
                                    a > 7 ? in[7] : 0};
            input_1d(a, x, 1, dst + j, (size_t)hr * cw);
        }
    }
    const int rows = cw == tw ? 1 : nb, len = cw == tw ? nb * tw : cw;
    for (int q = 0; q < a; q++)
        for (int r = 0; r < rows; r++) {
/* image row m*r + i, or row 0 where i is past the tile */
#define H_ROW(i) (h[(a > (i) ? (i) : 0) % m] + ((size_t)q * hr + r + (a > (i) ? (i) : 0) / m) * cw)
            const float *restrict h0 = H_ROW(0), *restrict h1 = H_ROW(1), *restrict h2 = H_ROW(2);
            const float *restrict h3 = H_ROW(3), *restrict h4 = H_ROW(4), *restrict h5 = H_ROW(5);
            const float *restrict h6 = H_ROW(6), *restrict h7 = H_ROW(7);
#undef H_ROW
            float *restrict out = v + (size_t)q * plane + (size_t)r * tw;
#pragma GCC ivdep
            for (int t = 0; t < len; t++) {
                const float x[A_MAX] = {h0[t],
                                        h1[t],
                                        h2[t],
                                        h3[t],
                                        a > 4 ? h4[t] : 0,
                                        a > 5 ? h5[t] : 0,
                                        a > 6 ? h6[t] : 0,
                                        a > 7 ? h7[t] : 0};
                input_1d(a, x, 1, out + t, (size_t)a * plane);
            }
        }
}

/* The a*a planes of v (a*a, c, ld) and m (a*a, oc, ld) are a cache line more than c * ld (oc
 * * ld) floats apart. The transforms write (read) all a*a planes of a channel at once, and
 * planes a power of two apart, as on the default network's split image (32 channels of 16
 * tiles: 2 KB), share a few sets of the L1 cache and evict each other. With the skew, half of
 * that layer (F(4x4, 5x5), 32 of 64 output channels) takes 41-44 against 46-47 us on one
 * thread, and a batch of 64 images through it 5.8-6.3 against 6.0-7.2 ms (five rounds,
 * alternating; 2026-12-02). */
#define PLANE_SKEW 16

static size_t plane_floats(int rows, size_t ld) {
    return (size_t)rows * ld + PLANE_SKEW;
}

/* One channel: its padded plane d (m*th + k - 1, wp) -> its tiles at v, in each of the a*a
 * planes. */
static inline __attribute__((always_inline)) void
input_plane(const float *d, int wp, float *v, size_t plane, int m, int k, int th, int tw) {
    const int a = m + k - 1, cw = tw < CW ? tw : CW, band = BAND_FLOATS / (a * cw) - (a - 1) / m;
    for (int ty = 0; ty < th; ty += band)
        for (int t0 = 0; t0 < tw; t0 += cw) {
            const int nb = th - ty < band ? th - ty : band, n = tw - t0 < cw ? tw - t0 : cw;
            const float *at = d + ((size_t)m * ty) * wp + m * t0;
            WITH_MK(m, k, input_band, at, (size_t)wp, v + (size_t)ty * tw + t0, plane, tw, nb, n);
        }
}
TWO_TARGETS(input_plane,
            (const float *d, int wp, float *v, size_t plane, int m, int k, int th, int tw),
            (d, wp, v, plane, m, k, th, tw))

/* xp (c, m*th + k - 1, m*tw + k - 1), the padded image -> v (a*a, c, ld), its th*tw tiles at
 * the start of each row of ld floats (ld > th*tw leaves room for other images' tiles), the
 * planes plane_floats(c, ld) apart. */
static void wino_input(const float *xp, float *v, size_t ld, int c, int m, int k, int th, int tw) {
    const int hp = m * th + k - 1, wp = m * tw + k - 1;
    const size_t plane = plane_floats(c, ld);
    void (*const one)(const float *, int, float *, size_t, int, int, int, int) = PICK(input_plane);
#pragma omp parallel for schedule(static) if ((size_t)c * th * tw * (m + k - 1) * (m + k - 1) >=   \
                                              CNN_OMP_MIN_WORK)
    for (int ci = 0; ci < c; ci++)
        one(xp + (size_t)ci * hp * wp, wp, v + (size_t)ci * ld, plane, m, k, th, tw);
}

/* The output transform, band by band like the input's: down the columns, A^T m for each tile
 * into g (its m x a values; the band's tiles one run when it spans the whole width, as they
 * are in m), then along the rows, (A^T m) A, into the output rows, clipped to the rows_left and
 * cols_left the image still has. Inlined with m and k constants. A band holds 2 * BAND_TILES / m
 * tiles (bt), so that g is the same size for either m. */
#define BAND_TILES 512

static inline __attribute__((always_inline)) void output_band(const float *m, size_t plane, int tw,
                                                              int nb, int cw, float *y, int ow,
                                                              int rows_left, int cols_left,
                                                              const int mo, const int k) {
    const int a = mo + k - 1, bt = 2 * BAND_TILES / mo;
    const int rows = cw == tw ? 1 : nb, len = cw == tw ? nb * tw : cw;
    float g[2 * A_MAX * BAND_TILES]; /* [i < mo][q < A_MAX][tile < bt] */
    for (int q = 0; q < a; q++)
        for (int r = 0; r < rows; r++) {
            const float *restrict src = m + (size_t)q * plane + (size_t)r * tw;
            float *restrict dst = g + (size_t)q * bt + r * cw;
#pragma GCC ivdep
            for (int t = 0; t < len; t++)
                output_1d(mo, k, src + t, (size_t)a * plane, dst + t, (size_t)A_MAX * bt);
        }
    const int w = cols_left < mo * cw ? cols_left : mo * cw;
    for (int r = 0; r < nb; r++)
        for (int i = 0; i < mo && mo * r + i < rows_left; i++) {
            const float *restrict gi = g + (size_t)i * A_MAX * bt + r * cw;
            float out[4 * CW];
#pragma GCC ivdep
            for (int j = 0; j < cw; j++) {
                const float x[A_MAX] = {gi[j],
                                        gi[bt + j],
                                        gi[2 * bt + j],
                                        gi[3 * bt + j],
                                        a > 4 ? gi[4 * bt + j] : 0,
                                        a > 5 ? gi[5 * bt + j] : 0,
                                        a > 6 ? gi[6 * bt + j] : 0,
                                        a > 7 ? gi[7 * bt + j] : 0};
                output_1d(mo, k, x, 1, out + mo * j, 1);
            }
            float *restrict row = y + (size_t)(mo * r + i) * ow;
            for (int x = 0; x < w; x++) row[x] = out[x];
        }
}

/* One output channel: its tiles at m, in each of the a*a planes -> its plane y (oh, ow). */
static inline __attribute__((always_inline)) void output_plane(const float *m, size_t plane,
                                                               float *y, int mo, int k, int th,
                                                               int tw, int oh, int ow) {
    const int cw = tw < CW ? tw : CW, band = 2 * BAND_TILES / mo / cw;
    for (int ty = 0; ty < th; ty += band)
        for (int t0 = 0; t0 < tw; t0 += cw) {
            const int nb = th - ty < band ? th - ty : band, n = tw - t0 < cw ? tw - t0 : cw;
            WITH_MK(mo, k, output_band, m + (size_t)ty * tw + t0, plane, tw, nb, n,
                    y + ((size_t)mo * ty) * ow + mo * t0, ow, oh - mo * ty, ow - mo * t0);
        }
}
TWO_TARGETS(output_plane,
            (const float *m, size_t plane, float *y, int mo, int k, int th, int tw, int oh, int ow),
            (m, plane, y, mo, k, th, tw, oh, ow))

/* m (a*a, oc, ld), th*tw tiles at the start of each row of ld floats, the planes
 * plane_floats(oc, ld) apart -> y (oc, oh, ow), assigned; the last tiles are clipped where m
 * does not divide the size. */
static void wino_output(const float *m, size_t ld, float *y, int oc, int mo, int k, int th, int tw,
                        int oh, int ow) {
    const size_t plane = plane_floats(oc, ld);
    void (*const one)(const float *, size_t, float *, int, int, int, int, int, int) =
        PICK(output_plane);
#pragma omp parallel for schedule(static) if (plane * (mo + k - 1) * (mo + k - 1) >=               \
                                              CNN_OMP_MIN_WORK)
    for (int o = 0; o < oc; o++)
        one(m + (size_t)o * ld, plane, y + (size_t)o * oh * ow, mo, k, th, tw, oh, ow);
}

/* The m x m tiles of a layer: th x tw, th = ceil(oh / m), oh = h + 2p - k + 1. */
static void tiles(int h, int w, int k, int p, int m, int *th, int *tw) {
    *th = (h + 2 * p - k + m) / m;
    *tw = (w + 2 * p - k + m) / m;
}

/* Floats of one of the a*a planes of m (oc, tiles of ld floats) with room for the forward's
 * runs of output channels (conv_tiles): up to oc + OC_RUN - 1 channels in up to oc runs, each
 * run's planes skewed. */
static size_t runs_plane_floats(int oc, size_t ld) {
    return plane_floats(oc + OC_RUN, ld) + (size_t)PLANE_SKEW * oc;
}

/* Scratch for the tiles of `images` images: v (a*a, c, tiles), m (a*a, oc, tiles), then one
 * padded image (c, m*th + k - 1, m*tw + k - 1). */
static size_t scratch_floats(int c, int h, int w, int oc, int k, int p, int m, size_t images) {
    int th, tw;
    tiles(h, w, k, p, m, &th, &tw);
    const size_t a = (size_t)m + k - 1, nt = (size_t)th * tw * images;
    return a * a * plane_floats(c, nt) + a * a * runs_plane_floats(oc, nt) +
           (size_t)c * (m * th + k - 1) * (m * tw + k - 1);
}

/* How many images' m x m tiles fill one product with at least `least` columns. */
static int images_per_product(int h, int w, int k, int p, int m, int least) {
    int th, tw;
    tiles(h, w, k, p, m, &th, &tw);
    return (least + th * tw - 1) / (th * tw);
}

/* x (n, c, h, w) -> v (a*a, c, ld): each image padded into xp (c, m*th + k - 1, m*tw + k - 1),
 * then its th*tw tiles transformed into columns [i*th*tw, (i+1)*th*tw) of each row. */
static void images_input(const float *x, int n, float *xp, float *v, size_t ld, int c, int h, int w,
                         int p, int m, int k, int th, int tw) {
    /* hp = m*th + k - 1 >= oh + k - 1 = h + 2p, and likewise wp: the padded image fits */
    const int hp = m * th + k - 1, wp = m * tw + k - 1;
    const size_t chw = (size_t)c * h * w;
    for (int i = 0; i < n; i++)
        wino_input(cnn_pad_planes(x + i * chw, xp, c, h, w, p, hp, wp), v + (size_t)i * th * tw, ld,
                   c, m, k, th, tw);
}

/* The forward puts the tiles of several images into one product (FWD_TILES or more), as the
 * weight gradient does: a 24x24 output has 36 tiles of 4x4, and a*a = 36 products that short
 * each cost a call into OpenBLAS, whose buffers are taken under a lock the threads of a team
 * share (2 threads, pytorch/examples, one image per product: 10% fewer images/s than with
 * F(2x2, 3x3)). */
#define FWD_TILES 128

static int forward_group(int h, int w, int k, int p) {
    return images_per_product(h, w, k, p, cnn_wino_m(k), FWD_TILES);
}

size_t cnn_wino_ws_size(int c, int h, int w, int oc, int k, int p) {
    const size_t batch =
        scratch_floats(c, h, w, oc, k, p, cnn_wino_m(k), (size_t)forward_group(h, w, k, p));
    const size_t one = scratch_floats(c, h, w, oc, k, p, cnn_wino_part_m(k), 1);
    return batch > one ? batch : one;
}

/* y (n, oc, oh, ow), channels [o0, o1), from x (n, c, h, w) and kernels u for mo x mo tiles,
 * the n images' tiles in one product. */
static void conv_tiles(const float *x, int n, const float *u, float *y, float *ws, int c, int h,
                       int w, int oc, int k, int p, int mo, int o0, int o1) {
    int th, tw;
    tiles(h, w, k, p, mo, &th, &tw);
    const int a2 = (mo + k - 1) * (mo + k - 1), nt = th * tw, part = o1 - o0;
    const int oh = h + 2 * p - k + 1, ow = w + 2 * p - k + 1;
    const size_t ld = (size_t)n * nt, ohw = (size_t)oh * ow, vplane = plane_floats(c, ld);
    float *v = ws, *m = v + a2 * vplane;
    float *xp = m + a2 * runs_plane_floats(oc, ld);
    images_input(x, n, xp, v, ld, c, h, w, p, mo, k, th, tw);
    /* Runs of OC_RUN output channels, each its a*a products (a*a, no, tiles), transformed back
     * while they are in cache. The runs split between threads when a single image has the
     * cores (shorter runs where there would be fewer runs than threads); each thread reuses the
     * part of m of its first run for all of its runs, which keeps the scratch in L2 (on the
     * default network's second layer, m for all runs at once is 451 KB an image of a 1 MB L2,
     * and a product holds 3 images). */
    const int threads = cnn_threads_now();
    int len = OC_RUN;
    if ((part + len - 1) / len < threads) len = (part + threads - 1) / threads;
    const int runs = (part + len - 1) / len;
#pragma omp parallel if (threads > 1 && (size_t)a2 * part * c * ld >= CNN_OMP_MIN_WORK * 8)
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        const int r0 = runs * tid / nth, r1 = runs * (tid + 1) / nth;
        float *mr = m + (size_t)a2 * r0 * plane_floats(len, ld);
        for (int run = r0; run < r1; run++) {
            const int oa = o0 + run * len, no = o1 - oa < len ? o1 - oa : len;
            for (int e = 0; e < a2; e++)
                cnn_gemm(0, 0, no, (int)ld, c, 1.0f, u + ((size_t)e * oc + oa) * c, c,
                         v + e * vplane, (int)ld, 0.0f, mr + e * plane_floats(no, ld), (int)ld);
            for (int i = 0; i < n; i++)
                wino_output(mr + (size_t)i * nt, ld, y + i * oc * ohw + (size_t)oa * ohw, no, mo, k,
                            th, tw, oh, ow);
        }
    }
}

void cnn_wino_conv(const float *x, int n, const float *u, float *y, float *ws, int c, int h, int w,
                   int oc, int k, int p) {
    const int group = forward_group(h, w, k, p);
    const size_t chw = (size_t)c * h * w;
    const size_t ohw = (size_t)(h + 2 * p - k + 1) * (w + 2 * p - k + 1);
    for (int i0 = 0; i0 < n; i0 += group) {
        const int g = n - i0 < group ? n - i0 : group;
        conv_tiles(x + i0 * chw, g, u, y + i0 * oc * ohw, ws, c, h, w, oc, k, p, cnn_wino_m(k), 0,
                   oc);
    }
}

void cnn_wino_conv_part(const float *x, const float *u, float *y, float *ws, int c, int h, int w,
                        int oc, int k, int p, int o0, int o1) {
    conv_tiles(x, 1, u, y, ws, c, h, w, oc, k, p, cnn_wino_part_m(k), o0, o1);
}

/* ---- the weight gradient ---------------------------------------------------------------------
 * Y = A^T [U . V] A is linear in U and U = G g G^T linear in g, so for each tile
 *   dU += M . V,  M = A dY A^T (dY the tile's 2x2 block of dy, zero past the edges),
 * and at the end dg = G^T dU G. Summed over tiles and images, each of the a*a positions is a
 * matrix product dU (oc, c) += M (oc, tiles) @ V (c, tiles)^T: a*a multiply-adds per channel
 * pair and 2x2 block, against im2col's 4*k*k. The tiles of several images go into one product
 * (WDW_TILES or more), since a 14x14 layer has only 49. */
#define WDW_TILES 256

/* The output transform's transpose, band by band as it goes: along the rows, the pair of each
 * tile in both of its dy rows into g (2 x a values per tile; rows and columns past the edge,
 * at odd sizes, read as zeros), then down the columns into m, the band's tiles one run when it
 * spans the whole width. Inlined with k a constant. */
static inline __attribute__((always_inline)) void dy_band(const float *dy, int ow, int rows_left,
                                                          int cols_left, float *m, size_t plane,
                                                          int tw, int nb, int cw, const int k) {
    const int a = k + 1, rows = cw == tw ? 1 : nb, len = cw == tw ? nb * tw : cw;
    const int w = cols_left < 2 * cw ? cols_left : 2 * cw;
    float g[2][6][BAND_TILES]; /* [i][q][tile of the band] */
    for (int r = 0; r < nb; r++)
        for (int i = 0; i < 2; i++) {
            float in[2 * CW];
            const int inside = 2 * r + i < rows_left ? w : 0;
            const float *restrict row = dy + (size_t)(2 * r + i) * ow;
            for (int x = 0; x < inside; x++) in[x] = row[x];
            for (int x = inside; x < 2 * cw; x++) in[x] = 0.0f;
            float *restrict gi = &g[i][0][r * cw];
#pragma GCC ivdep
            for (int j = 0; j < cw; j++) pair_1d(k, in[2 * j], in[2 * j + 1], gi + j, BAND_TILES);
        }
    for (int q = 0; q < a; q++)
        for (int r = 0; r < rows; r++) {
            const float *restrict e = &g[0][q][r * cw], *restrict o = &g[1][q][r * cw];
            float *restrict dst = m + (size_t)q * plane + (size_t)r * tw;
#pragma GCC ivdep
            for (int t = 0; t < len; t++) pair_1d(k, e[t], o[t], dst + t, (size_t)a * plane);
        }
}

/* One output channel's gradient dy (oh, ow) -> M of its tiles at m, in each of the a*a
 * planes. */
static inline __attribute__((always_inline)) void dy_plane(const float *dy, float *m, size_t plane,
                                                           int k, int th, int tw, int oh, int ow) {
    const int cw = tw < CW ? tw : CW, band = BAND_TILES / cw;
    for (int ty = 0; ty < th; ty += band)
        for (int t0 = 0; t0 < tw; t0 += cw) {
            const int nb = th - ty < band ? th - ty : band, n = tw - t0 < cw ? tw - t0 : cw;
            WITH_K(k, dy_band, dy + ((size_t)2 * ty) * ow + 2 * t0, ow, oh - 2 * ty, ow - 2 * t0,
                   m + (size_t)ty * tw + t0, plane, tw, nb, n);
        }
}
TWO_TARGETS(dy_plane,
            (const float *dy, float *m, size_t plane, int k, int th, int tw, int oh, int ow),
            (dy, m, plane, k, th, tw, oh, ow))

/* dy (oc, oh, ow) -> m (a*a, oc, ld), M = A dY A^T of each tile at the start of each row, the
 * planes plane_floats(oc, ld) apart. */
static void wino_dy(const float *dy, float *m, size_t ld, int oc, int k, int th, int tw, int oh,
                    int ow) {
    const size_t plane = plane_floats(oc, ld);
    void (*const one)(const float *, float *, size_t, int, int, int, int, int) = PICK(dy_plane);
    for (int o = 0; o < oc; o++)
        one(dy + (size_t)o * oh * ow, m + (size_t)o * ld, plane, k, th, tw, oh, ow);
}

size_t cnn_wino_dw_ws_size(int c, int h, int w, int oc, int k, int p) {
    return scratch_floats(c, h, w, oc, k, p, 2,
                          (size_t)images_per_product(h, w, k, p, 2, WDW_TILES));
}

void cnn_wino_dw(const float *x, const float *dy, float *du, float *ws, int n, int c, int h, int w,
                 int oc, int k, int p) {
    int th, tw;
    tiles(h, w, k, p, 2, &th, &tw);
    const int a2 = (k + 1) * (k + 1), nt = th * tw;
    const int group = images_per_product(h, w, k, p, 2, WDW_TILES);
    const int oh = h + 2 * p - k + 1, ow = w + 2 * p - k + 1;
    const size_t chw = (size_t)c * h * w, ohw = (size_t)oh * ow;
    for (int i0 = 0; i0 < n; i0 += group) {
        const int g = n - i0 < group ? n - i0 : group;
        const size_t ld = (size_t)g * nt;
        const size_t vplane = plane_floats(c, ld), mplane = plane_floats(oc, ld);
        float *v = ws, *m = v + a2 * vplane, *xp = m + a2 * mplane;
        images_input(x + (size_t)i0 * chw, g, xp, v, ld, c, h, w, p, 2, k, th, tw);
        for (int i = 0; i < g; i++)
            wino_dy(dy + (size_t)(i0 + i) * oc * ohw, m + (size_t)i * nt, ld, oc, k, th, tw, oh,
                    ow);
        for (int e = 0; e < a2; e++)
            cnn_gemm(0, 1, oc, c, (int)ld, 1.0f, m + e * mplane, (int)ld, v + e * vplane, (int)ld,
                     1.0f, du + (size_t)e * oc * c, c);
    }
}

void cnn_wino_dw_finish(const float *du, float *dw, int oc, int c, int k) {
    const int a = k + 1, kk = k * k;
    const long plane = (long)oc * c;
    for (long oi = 0; oi < plane; oi++) {
        float t[6 * 5], g[25]; /* G^T along the rows: t (a, k); then down the columns: g (k, k) */
        for (int i = 0; i < a; i++)
            kernel_grad_1d(k, du + (size_t)i * a * plane + oi, (size_t)plane, t + i * k, 1);
        for (int j = 0; j < k; j++) kernel_grad_1d(k, t + j, (size_t)k, g + j, (size_t)k);
        for (int q = 0; q < kk; q++) dw[oi * kk + q] += g[q];
    }
}
