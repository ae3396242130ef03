/*
 * winograd.c - Winograd minimal filtering for stride-1 convolutions: F(2x2, 3x3) and
 * F(2x2, 5x5) (Lavin & Gray 2015), the fast path of conv2d.c.
 *
 * Each 2x2 block of outputs comes from an a x a patch d of the zero-padded input, a = k + 1:
 *   Y = A^T [ sum over input channels of U . V ] A,   U = G g G^T (a x a),   V = B^T d B,
 * g being the k x k kernel. The sums over input channels of the a*a elementwise products are
 * a*a matrix products (oc, c) @ (c, tiles): a*a multiply-adds per channel pair and 2x2 block,
 * against im2col's 4*k*k, so 2.25x fewer for 3x3 and 2.78x fewer for 5x5.
 *
 * The matrices (Toom-Cook: interpolation at 0, 1, -1 and infinity for a = 4; at 0, 1, -1, 2,
 * -2 and infinity for a = 6), as cross-correlation, PyTorch's convention:
 *   F(2,3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *           G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *           A^T = [1 1 1 0; 0 1 -1 -1]
 *   F(2,5): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *                  0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *           G   = [1/4 0 0 0 0; -1/6 (1 1 1 1 1); -1/6 (1 -1 1 -1 1);
 *                  1/24 (1 2 4 8 16); 1/24 (1 -2 4 -8 16); 0 0 0 0 1]
 *           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1]
 * Each 2-D transform is its 1-D one along the rows and down the columns (in either order: they
 * commute; the input transform goes along the rows first). The weight gradient runs the same
 * products the other way (section at the end). The references are cnn_conv2d_forward_naive and
 * cnn_conv2d_backward_naive; test_kernels compares every layer shape that takes this path.
 */
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* product m (a) -> outputs y (2) */
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

/* The transforms for kernel size k (3 or 5); k is a constant wherever speed matters, and the
 * choice folds away. */
#define BY_K(k, f3, f5, ...) ((k) == 3 ? f3(__VA_ARGS__) : f5(__VA_ARGS__))
#define kernel_1d(k, ...) BY_K(k, g3, g5, __VA_ARGS__)
#define input_1d(k, ...) BY_K(k, bt4, bt6, __VA_ARGS__)
#define output_1d(k, ...) BY_K(k, at4, at6, __VA_ARGS__)
#define pair_1d(k, ...) BY_K(k, a4, a6, __VA_ARGS__)
#define kernel_grad_1d(k, ...) BY_K(k, gt3, gt5, __VA_ARGS__)
/* f(..., k) with k = 3 or 5 a constant, for the band functions inlined below */
#define WITH_K(k, f, ...) ((k) == 3 ? f(__VA_ARGS__, 3) : f(__VA_ARGS__, 5))

int cnn_wino_supports(int k) {
    return k == 3 || k == 5;
}

/* ---- two-dimensional transforms, over whole layers ---------------------------------------- */

/* w (oc, c, k, k) -> u (a*a, oc, c); or with flip, the kernels of the input gradient:
 * u (a*a, c, oc) from w[o][ci] turned 180 degrees. */
void cnn_wino_weights(const float *w, float *u, int oc, int c, int k, int flip) {
    const int a = k + 1, kk = k * k;
    const long plane = (long)oc * c;
#pragma omp parallel for schedule(static) if (plane * a * a * 4 >= CNN_OMP_MIN_WORK)
    for (long oi = 0; oi < plane; oi++) {
        float g[25], t[6 * 5]; /* the kernel, then G g (a, k) */
        if (flip) {            /* oi = ci * oc + o */
            const float *src = w + ((oi % oc) * c + oi / oc) * kk;
            for (int q = 0; q < kk; q++) g[q] = src[kk - 1 - q];
        } else {
            for (int q = 0; q < kk; q++) g[q] = w[oi * kk + q];
        }
        for (int j = 0; j < k; j++) kernel_1d(k, g + j, (size_t)k, t + j, (size_t)k);
        for (int i = 0; i < a; i++)
            kernel_1d(k, t + i * k, 1, u + (size_t)i * a * plane + oi, (size_t)plane);
    }
}

#define OC_RUN 16

/* The input transform takes a band of tile rows at a time, CW tile columns wide, in two
 * passes through a small buffer:
 *   along the rows: each of the band's 2nb + a - 2 image rows, d B for each tile, into h, the
 *     even image rows in one half and the odd ones in the other, cw floats per row;
 *   down the columns: B^T (d B) for each tile, where tile row r of the band reads h rows
 *     r, r + 1, r + 2 (even, odd, even, ...): cw floats apart, so when the band spans the
 *     whole width (cw = tw) the band's tiles are one run, as they are in v, and this pass,
 *     which makes the a*a outputs, is one vectorised loop over all of them.
 * Inlined with k a constant, so that the 1-D transforms unroll. The a outputs of a 1-D
 * transform go to a rows of one buffer, a runtime distance apart, which GCC cannot tell do not
 * overlap; `ivdep` says so, and without it the loops ran scalar. */
#define CW 32
#define BAND_FLOATS (6 * 10 * CW) /* per parity: a rows of (nb + a/2 - 1) * cw */

static inline __attribute__((always_inline)) void
input_band(const float *d, size_t wp, float *v, size_t plane, int tw, int nb, int cw, const int k) {
    const int a = k + 1, hr = nb + a / 2 - 1; /* h rows per parity */
    float h[2][BAND_FLOATS];                  /* [parity][q][h row][tile] */
    for (int y = 0; y < 2 * hr; y++) {
        const float *restrict row = d + (size_t)y * wp;
        float *restrict dst = h[y & 1] + (size_t)(y >> 1) * cw;
#pragma GCC ivdep
        for (int j = 0; j < cw; j++) {
            const float x[6] = {row[2 * j],
                                row[2 * j + 1],
                                row[2 * j + 2],
                                row[2 * j + 3],
                                a == 6 ? row[2 * j + 4] : 0,
                                a == 6 ? row[2 * j + 5] : 0};
            input_1d(k, x, 1, dst + j, (size_t)hr * cw);
        }
    }
    const int rows = cw == tw ? 1 : nb, len = cw == tw ? nb * tw : cw;
    for (int q = 0; q < a; q++)
        for (int r = 0; r < rows; r++) {
            const float *restrict e = h[0] + ((size_t)q * hr + r) * cw;
            const float *restrict o = h[1] + ((size_t)q * hr + r) * cw;
            float *restrict out = v + (size_t)q * plane + (size_t)r * tw;
#pragma GCC ivdep
            for (int t = 0; t < len; t++) {
                const float x[6] = {e[t],
                                    o[t],
                                    e[t + cw],
                                    o[t + cw],
                                    a == 6 ? e[t + 2 * cw] : 0,
                                    a == 6 ? o[t + 2 * cw] : 0};
                input_1d(k, x, 1, out + t, (size_t)a * plane);
            }
        }
}

/* xp (c, 2th + k - 1, 2tw + k - 1), the padded image -> v (a*a, c, ld), its th*tw tiles at the
 * start of each row of ld floats (ld > th*tw leaves room for other images' tiles). */
static void wino_input(const float *xp, float *v, size_t ld, int c, int k, int th, int tw) {
    const int a = k + 1, hp = 2 * th + k - 1, wp = 2 * tw + k - 1;
    const int cw = tw < CW ? tw : CW, band = BAND_FLOATS / (a * cw) - (a / 2 - 1);
    const size_t plane = (size_t)c * ld;
#pragma omp parallel for schedule(static) if ((size_t)c * th * tw * a * a >= CNN_OMP_MIN_WORK)
    for (int ci = 0; ci < c; ci++)
        for (int ty = 0; ty < th; ty += band)
            for (int t0 = 0; t0 < tw; t0 += cw) {
                const int nb = th - ty < band ? th - ty : band, n = tw - t0 < cw ? tw - t0 : cw;
                const float *d = xp + ((size_t)ci * hp + 2 * ty) * wp + 2 * t0;
                float *at = v + (size_t)ci * ld + (size_t)ty * tw + t0;
                WITH_K(k, input_band, d, (size_t)wp, at, plane, tw, nb, n);
            }
}

/* The output transform, band by band like the input's: down the columns, A^T m for each tile
 * into g (its 2 x a values; the band's tiles one run when it spans the whole width, as they
 * are in m), then along the rows, (A^T m) A, into the output rows, clipped to the rows_left and
 * cols_left the image still has. Inlined with k a constant. */
#define BAND_TILES 512

static inline __attribute__((always_inline)) void output_band(const float *m, size_t plane, int tw,
                                                              int nb, int cw, float *y, int ow,
                                                              int rows_left, int cols_left,
                                                              const int k) {
    const int a = k + 1, rows = cw == tw ? 1 : nb, len = cw == tw ? nb * tw : cw;
    float g[2][6][BAND_TILES]; /* [i][q][tile of the band] */
    for (int q = 0; q < a; q++)
        for (int r = 0; r < rows; r++) {
            const float *restrict src = m + (size_t)q * plane + (size_t)r * tw;
            float *restrict dst = &g[0][q][r * cw];
#pragma GCC ivdep
            for (int t = 0; t < len; t++)
                output_1d(k, src + t, (size_t)a * plane, dst + t, 6 * BAND_TILES);
        }
    const int w = cols_left < 2 * cw ? cols_left : 2 * cw;
    for (int r = 0; r < nb; r++)
        for (int i = 0; i < 2 && 2 * r + i < rows_left; i++) {
            const float *restrict gi = &g[i][0][r * cw];
            float out[2 * CW];
#pragma GCC ivdep
            for (int j = 0; j < cw; j++) {
                const float x[6] = {gi[j],
                                    gi[BAND_TILES + j],
                                    gi[2 * BAND_TILES + j],
                                    gi[3 * BAND_TILES + j],
                                    a == 6 ? gi[4 * BAND_TILES + j] : 0,
                                    a == 6 ? gi[5 * BAND_TILES + j] : 0};
                output_1d(k, x, 1, out + 2 * j, 1);
            }
            float *restrict row = y + (size_t)(2 * r + i) * ow;
            for (int x = 0; x < w; x++) row[x] = out[x];
        }
}

/* m (a*a, oc, th*tw) -> y (oc, oh, ow), assigned; the last tiles are clipped at odd sizes. */
static void wino_output(const float *m, float *y, int oc, int k, int th, int tw, int oh, int ow) {
    const int nt = th * tw, cw = tw < CW ? tw : CW, band = BAND_TILES / cw;
    const size_t plane = (size_t)oc * nt;
#pragma omp parallel for schedule(static) if (plane * (k + 1) * (k + 1) >= CNN_OMP_MIN_WORK)
    for (int o = 0; o < oc; o++)
        for (int ty = 0; ty < th; ty += band)
            for (int t0 = 0; t0 < tw; t0 += cw) {
                const int nb = th - ty < band ? th - ty : band, n = tw - t0 < cw ? tw - t0 : cw;
                const float *at = m + (size_t)o * nt + (size_t)ty * tw + t0;
                float *out = y + ((size_t)o * oh + 2 * ty) * ow + 2 * t0;
                WITH_K(k, output_band, at, plane, tw, nb, n, out, ow, oh - 2 * ty, ow - 2 * t0);
            }
}

static void tiles(int h, int w, int k, int p, int *th, int *tw) {
    *th = (h + 2 * p - k + 2) / 2; /* ceil(oh / 2), oh = h + 2p - k + 1 */
    *tw = (w + 2 * p - k + 2) / 2;
}

/* Scratch for the tiles of `images` images: v (a*a, c, tiles), m (a*a, oc, tiles), then one
 * padded image (c, 2th + k - 1, 2tw + k - 1). */
static size_t scratch_floats(int c, int h, int w, int oc, int k, int p, size_t images) {
    int th, tw;
    tiles(h, w, k, p, &th, &tw);
    const size_t a2 = (size_t)(k + 1) * (k + 1), nt = (size_t)th * tw * images;
    return a2 * c * nt + a2 * oc * nt + (size_t)c * (2 * th + k - 1) * (2 * tw + k - 1);
}

size_t cnn_wino_ws_size(int c, int h, int w, int oc, int k, int p) {
    return scratch_floats(c, h, w, oc, k, p, 1);
}

void cnn_wino_conv(const float *x, const float *u, float *y, float *ws, int c, int h, int w, int oc,
                   int k, int p) {
    cnn_wino_conv_part(x, u, y, ws, c, h, w, oc, k, p, 0, oc);
}

void cnn_wino_conv_part(const float *x, const float *u, float *y, float *ws, int c, int h, int w,
                        int oc, int k, int p, int o0, int o1) {
    int th, tw;
    tiles(h, w, k, p, &th, &tw);
    const int a2 = (k + 1) * (k + 1), nt = th * tw, part = o1 - o0;
    const int oh = h + 2 * p - k + 1, ow = w + 2 * p - k + 1;
    const int hp = 2 * th + k - 1, wp = 2 * tw + k - 1;
    float *v = ws, *m = v + (size_t)a2 * c * nt, *xp = m + (size_t)a2 * oc * nt;
    /* hp = 2th + k - 1 >= oh + k - 1 = h + 2p, and likewise wp: the padded image fits */
    wino_input(cnn_pad_planes(x, xp, c, h, w, p, hp, wp), v, (size_t)nt, c, k, th, tw);
    /* Runs of OC_RUN output channels, each its a*a products (a*a, no, tiles), transformed back
     * while they are in cache. The runs split between threads when a single image has the
     * cores (shorter runs where there would be fewer runs than threads); each thread reuses the
     * part of m of its first run for all of its runs, which keeps the scratch in L2 (on the
     * default network's second layer, m for all runs at once is 451 KB of a 1 MB L2). */
    const int threads = cnn_threads_now();
    int len = OC_RUN;
    if ((part + len - 1) / len < threads) len = (part + threads - 1) / threads;
    const int runs = (part + len - 1) / len;
#pragma omp parallel if (threads > 1 && (size_t)a2 * part * c * nt >= CNN_OMP_MIN_WORK * 8)
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        const int r0 = runs * tid / nth, r1 = runs * (tid + 1) / nth;
        float *mr = m + (size_t)a2 * r0 * len * nt;
        for (int run = r0; run < r1; run++) {
            const int oa = o0 + run * len, no = o1 - oa < len ? o1 - oa : len;
            for (int e = 0; e < a2; e++)
                cnn_gemm(0, 0, no, nt, c, 1.0f, u + ((size_t)e * oc + oa) * c, c,
                         v + (size_t)e * c * nt, nt, 0.0f, mr + (size_t)e * no * nt, nt);
            wino_output(mr, y + (size_t)oa * oh * ow, no, k, th, tw, oh, ow);
        }
    }
}

/* ---- the weight gradient ---------------------------------------------------------------------
 * Y = A^T [U . V] A is linear in U and U = G g G^T linear in g, so for each tile
 *   dU += M . V,  M = A dY A^T (dY the tile's 2x2 block of dy, zero past the edges),
 * and at the end dg = G^T dU G. Summed over tiles and images, each of the a*a positions is a
 * matrix product dU (oc, c) += M (oc, tiles) @ V (c, tiles)^T: a*a multiply-adds per channel
 * pair and 2x2 block, against im2col's 4*k*k. The tiles of several images go into one product
 * (WDW_TILES or more), since a 14x14 layer has only 49. */
#define WDW_TILES 256

/* Images per product for a layer of nt tiles. */
static int dw_group(int nt) {
    return (WDW_TILES + nt - 1) / nt;
}

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

/* dy (oc, oh, ow) -> m (a*a, oc, ld), M = A dY A^T of each tile at the start of each row. */
static void wino_dy(const float *dy, float *m, size_t ld, int oc, int k, int th, int tw, int oh,
                    int ow) {
    const int cw = tw < CW ? tw : CW, band = BAND_TILES / cw;
    const size_t plane = (size_t)oc * ld;
    for (int o = 0; o < oc; o++)
        for (int ty = 0; ty < th; ty += band)
            for (int t0 = 0; t0 < tw; t0 += cw) {
                const int nb = th - ty < band ? th - ty : band, n = tw - t0 < cw ? tw - t0 : cw;
                const float *at = dy + ((size_t)o * oh + 2 * ty) * ow + 2 * t0;
                float *out = m + (size_t)o * ld + (size_t)ty * tw + t0;
                WITH_K(k, dy_band, at, ow, oh - 2 * ty, ow - 2 * t0, out, plane, tw, nb, n);
            }
}

size_t cnn_wino_dw_ws_size(int c, int h, int w, int oc, int k, int p) {
    int th, tw;
    tiles(h, w, k, p, &th, &tw);
    return scratch_floats(c, h, w, oc, k, p, (size_t)dw_group(th * tw));
}

void cnn_wino_dw(const float *x, const float *dy, float *du, float *ws, int n, int c, int h, int w,
                 int oc, int k, int p) {
    int th, tw;
    tiles(h, w, k, p, &th, &tw);
    const int a2 = (k + 1) * (k + 1), nt = th * tw, group = dw_group(nt);
    const int oh = h + 2 * p - k + 1, ow = w + 2 * p - k + 1;
    const int hp = 2 * th + k - 1, wp = 2 * tw + k - 1;
    const size_t chw = (size_t)c * h * w, ohw = (size_t)oh * ow;
    for (int i0 = 0; i0 < n; i0 += group) {
        const int g = n - i0 < group ? n - i0 : group;
        const size_t ld = (size_t)g * nt;
        float *v = ws, *m = v + (size_t)a2 * c * ld, *xp = m + (size_t)a2 * oc * ld;
        for (int i = 0; i < g; i++) {
            const float *xi = x + (size_t)(i0 + i) * chw;
            wino_input(cnn_pad_planes(xi, xp, c, h, w, p, hp, wp), v + (size_t)i * nt, ld, c, k, th,
                       tw);
            wino_dy(dy + (size_t)(i0 + i) * oc * ohw, m + (size_t)i * nt, ld, oc, k, th, tw, oh,
                    ow);
        }
        for (int e = 0; e < a2; e++)
            cnn_gemm(0, 1, oc, c, (int)ld, 1.0f, m + (size_t)e * oc * ld, (int)ld,
                     v + (size_t)e * c * ld, (int)ld, 1.0f, du + (size_t)e * oc * c, c);
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
