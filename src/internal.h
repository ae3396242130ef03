/*
 * internal.h - private structures shared by src/: the layer interface, the net, file helpers.
 *
 * Not installed, not part of the API. Tests include it to reach kernels and layers directly.
 *
 * Layout: core/ (errors, random numbers), nn/ (layers, the model, contexts, gemm, loss,
 * optimizers), data/ (IDX, images, augmentation), io/ (model files, atomic writes), train/
 * (the trainer, checkpoints, metrics). Arrows point down: train -> nn, io -> nn; data stands
 * alone; nothing here knows about the CLI.
 *
 * Adding a layer kind: write src/nn/<kind>.c defining `const struct cnn_layer_ops
 * cnn_<kind>_ops`, add one row to src/nn/layers.def, and one row to the table in
 * tests/test_grad.c; a kind with settings adds its struct to union cnn_layer_cfg below.
 * Nothing else (ctx.c, model.c, model_io.c, the CLI) branches on the kind.
 */
#ifndef CNN_INTERNAL_H
#define CNN_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "cnn.h"

#if defined(__GNUC__)
#define CNN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CNN_PRINTF(a, b)
#endif

/* Loops with less work than this (elements touched) run on one thread: starting a parallel
 * region costs a few microseconds, which dominates single-image inference. No loop's result
 * depends on how it is split, so this never changes a number. */
#define CNN_OMP_MIN_WORK 32768

/* ---- random numbers (rng.c) ---------------------------------------------------------------- */
/* splitmix64's finaliser, and the stateless hash behind cnn_rng_hash_uniform: 64 random bits
 * for element i of the stream `seed`. Inline so that per-element loops (dropout) can use it. */
static inline uint64_t cnn_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline uint64_t cnn_hash64(uint64_t seed, uint64_t i) {
    return cnn_mix64(seed ^ cnn_mix64(i + 0x9e3779b97f4a7c15ULL));
}

/* ---- sums ---------------------------------------------------------------------------------
 * Sum of x[0..n) in eight running sums (one AVX register; GCC vectorises the fixed inner loop)
 * rather than one long dependency chain: 4-8x faster on planes of hundreds of floats, and
 * the order is fixed, so the result is too. */
static inline float cnn_sum8(const float *restrict x, size_t n) {
    float acc[8] = {0};
    size_t q = 0;
    for (; q + 8 <= n; q += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[q + j];
    for (; q < n; q++) acc[q & 7] += x[q];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* ---- errors (error.c) --------------------------------------------------------------------- */
/* Set the thread-local detail message and return `status`. */
int cnn_fail(int status, const char *fmt, ...) CNN_PRINTF(2, 3);

/* ---- memory (memory.c) ------------------------------------------------------------------- */
/* malloc for a buffer that may be large: from 4 MB up it is aligned to and rounded up to 2 MB
 * and asks for transparent huge pages (far fewer page faults). Freed with free(). */
void *cnn_alloc_large(size_t bytes);

/* ---- files (fileio.c) --------------------------------------------------------------------- */
/* Read a whole regular file. Its size is checked against max_bytes before any allocation.
 * *buf is owned by the caller (free()). Errors name the path. */
int cnn_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len);
/* Write PATH.tmp.PID, fsync, rename to PATH. On any failure the temporary is removed and the
 * previous file at PATH is untouched. */
int cnn_write_file_atomic(const char *path, const void *buf, size_t len);

/* ---- image decoders (data/decode.c) -------------------------------------------------------
 * PNG (libpng) and JPEG (libjpeg-turbo) from memory, as cnn_image_decode's contract says: on
 * success out->gray is (h, w) u8 luminance owned by the caller; on error *out is zeroed and the
 * status is CNN_ERR_FORMAT (corrupt, truncated, unsupported), CNN_ERR_LIMIT (over
 * CNN_IMAGE_MAX_PIXELS, refused from the header before decoding; a JPEG with too many scans)
 * or CNN_ERR_NOMEM, with a message naming `name`. Thread-safe: no global state. */
/* cnn_image_to_mnist_found (image.c). modelled = 1 always models the background (lighting,
 * shadows) instead of taking a flat one as it is: the reference the flat shortcut is tested
 * against. */
int cnn_image_prepare(const struct cnn_image *img, uint8_t out[28 * 28],
                      struct cnn_image_found *found, int modelled);
int cnn_decode_png(const uint8_t *buf, size_t len, const char *name, struct cnn_image *out);
int cnn_decode_jpeg(const uint8_t *buf, size_t len, const char *name, struct cnn_image *out);
/* n pixels of `channels` 8-bit samples (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to gray (n):
 * Y = (299 R + 587 G + 114 B + 500) / 1000 (Rec. 601 in fixed point, rounded), then alpha
 * composited over white, (Y a + 255 (255 - a) + 127) / 255. The one conversion every decoder
 * uses. gray and px must not overlap. */
void cnn_decode_gray(uint8_t *restrict gray, const uint8_t *restrict px, size_t n, int channels);

/* Little-endian growable byte buffer for writers (model_io.c, checkpoint.c). */
struct cnn_buf {
    uint8_t *p;
    size_t len, cap;
    int oom; /* set once an append failed; later appends do nothing */
};
void cnn_buf_put(struct cnn_buf *b, const void *src, size_t n);
void cnn_buf_u32(struct cnn_buf *b, uint32_t v);
void cnn_buf_u64(struct cnn_buf *b, uint64_t v);
void cnn_buf_f32(struct cnn_buf *b, float v);
void cnn_buf_f32s(struct cnn_buf *b, const float *v, size_t n);
/* Reader over a bounded byte range: every get checks the remaining length. */
struct cnn_rd {
    const uint8_t *p;
    size_t len, pos;
};
int cnn_rd_u32(struct cnn_rd *r, uint32_t *v);
int cnn_rd_u64(struct cnn_rd *r, uint64_t *v);
int cnn_rd_f32s(struct cnn_rd *r, float *v, size_t n);
int cnn_rd_bytes(struct cnn_rd *r, const uint8_t **p, size_t n);

/* ---- matrix products (gemm.c) --------------------------------------------------------------
 * Row-major C (m,n) = alpha * op(A) (m,k) * op(B) (k,n) + beta * C, as BLAS sgemm.
 * ta/tb: 0 = as stored, 1 = transposed. cnn_gemm calls OpenBLAS; _naive is the reference.
 * Outside a parallel region cnn_gemm splits a large product over the calling thread's OpenMP
 * thread count (the context sets it for the length of each call, see ctx.c). */
void cnn_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);
void cnn_gemm_naive(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc);

/* ---- Winograd convolution (winograd.c) -------------------------------------------------------
 * Stride-1 cross-correlation with k x k kernels, k = 3 or 5 (cnn_wino_supports), by F(m x m,
 * k x k): a*a products instead of im2col's one, a = m + k - 1. Batches take m = cnn_wino_m(k),
 * F(4x4, 3x3) or F(2x2, 5x5); one image split between threads (cnn_wino_conv_part) takes
 * m = cnn_wino_part_m(k), F(2x2, 3x3) or F(4x4, 5x5), and the weight gradient m = 2. */
int cnn_wino_supports(int k);
int cnn_wino_m(int k);
int cnn_wino_part_m(int k);
/* Floats of the transformed kernels (a*a, oc, c) for m x m tiles, and of the weight gradient's
 * sums in its transformed domain (a*a, oc, c), a = k + 1. */
size_t cnn_wino_u_floats(int oc, int c, int k, int m);
size_t cnn_wino_du_floats(int oc, int c, int k);
/* w (oc, c, k, k) -> u (a*a, oc, c), the transformed kernels for m x m tiles; with flip, those
 * of the input gradient: u (a*a, c, oc) from each w[o][ci] turned 180 degrees. */
void cnn_wino_weights(const float *w, float *u, int oc, int c, int k, int m, int flip);
/* Scratch floats cnn_wino_conv and cnn_wino_conv_part need for images of (c, h, w) with oc
 * kernels, padding p. */
size_t cnn_wino_ws_size(int c, int h, int w, int oc, int k, int p);
/* y (n, oc, oh, ow) = x (n, c, h, w) correlated with the kernels u (cnn_wino_weights with
 * m = cnn_wino_m(k)), zero padding p, no bias: oh = h + 2p - k + 1, ow likewise. The tiles of
 * a few images go into each product. ws: cnn_wino_ws_size floats. */
void cnn_wino_conv(const float *x, int n, const float *u, float *y, float *ws, int c, int h, int w,
                   int oc, int k, int p);
/* One image, output channels [o0, o1) only (y is still the whole (oc, oh, ow)), with the kernels
 * u for m = cnn_wino_part_m(k). */
void cnn_wino_conv_part(const float *x, const float *u, float *y, float *ws, int c, int h, int w,
                        int oc, int k, int p, int o0, int o1);
/* The transforms' instruction set: 1 for AVX2, which the first call takes where the processor
 * has it, 0 for the generic x86-64 loops; both give the same bits. Tests run both. Sets it (1
 * only where the processor has AVX2) and returns the previous setting. */
int cnn_wino_set_avx2(int on);
/* The weight gradient, for n images x (n, c, h, w) and output gradients dy (n, oc, oh, ow):
 * du (a*a, oc, c), a = k + 1, += their products in the transformed domain (zero it before the
 * first call); then dw (oc, c, k, k) += the kernels' gradient from du. ws: cnn_wino_dw_ws_size
 * floats. */
size_t cnn_wino_dw_ws_size(int c, int h, int w, int oc, int k, int p);
void cnn_wino_dw(const float *x, const float *dy, float *du, float *ws, int n, int c, int h, int w,
                 int oc, int k, int p);
void cnn_wino_dw_finish(const float *du, float *dw, int oc, int c, int k);
/* x (c, h, w) -> pad (c, hp, wp) with x at (p, p) and zeros around it; returns x itself when
 * no padding is asked for (p = 0, hp = h, wp = w). (conv2d.c) */
const float *cnn_pad_planes(const float *restrict x, float *restrict pad, int c, int h, int w,
                            int p, int hp, int wp);

/* ---- network spec items (spec.c) ------------------------------------------------------------
 * One comma-separated item of a spec: "conv 32 3 pad=1" -> name "conv", pos {32, 3},
 * opts {pad: 1}. Layers read them with spec_* helpers, which report errors naming the item. */
#define CNN_SPEC_MAX_POS 4
#define CNN_SPEC_MAX_OPT 4
#define CNN_SPEC_MAX_LEN 4096
#define CNN_SPEC_MAX_LAYERS 128
struct cnn_spec_item {
    int index;                 /* 1-based position in the spec, for messages */
    char text[64];             /* the item as written (trimmed) */
    char name[16];
    int n_pos;
    double pos[CNN_SPEC_MAX_POS];
    int pos_used;              /* positions the kind reads (1 + the highest asked for) */
    int n_opt;
    char opt_key[CNN_SPEC_MAX_OPT][16];
    double opt_val[CNN_SPEC_MAX_OPT];
    int opt_used[CNN_SPEC_MAX_OPT];
};
/* Split the item s[0..len) into *it; errors name it by index. */
int cnn_spec_item_parse(const char *s, size_t len, int index, struct cnn_spec_item *it);
/* "layer N 'text': what" as a CNN_ERR_SPEC. */
int cnn_spec_item_error(const struct cnn_spec_item *it, const char *what);
/* Positional number i as an integer in [lo, hi]; `what` names it in errors ("filters"). */
int cnn_spec_int(struct cnn_spec_item *it, int i, const char *what, int lo, int hi, int *out);
/* Optional positional number i; *out keeps its default when absent. */
int cnn_spec_float_opt(struct cnn_spec_item *it, int i, const char *what, double lo, double hi,
                       float *out);
/* Option key=value as an integer in [lo, hi]; *out keeps its default when absent. */
int cnn_spec_opt_int(struct cnn_spec_item *it, const char *key, int lo, int hi, int *out);

/* ---- layers ----------------------------------------------------------------------------- */
struct cnn_shape {
    int c, h, w;
};

/* Each kind's settings, read from the spec by its parse function, by name. */
union cnn_layer_cfg {
    struct { int filters, k, stride, pad; } conv; /* conv2d.c */
    struct { int k, stride; } pool;                /* pool.c: maxpool, avgpool */
    struct { int units; } dense;                   /* dense.c */
    struct { float slope; } act;                   /* activation.c: relu (0), leakyrelu */
    struct { float p; } dropout;                   /* dropout.c */
};

struct cnn_layer {
    const struct cnn_layer_ops *ops;
    int kind;
    union cnn_layer_cfg cfg;
    struct cnn_shape in, out;
    size_t p_off, n_params; /* slice of the model's params (and a context's grads) */
    size_t n_decay;         /* the first n_decay params of the slice get weight decay */
    size_t s_off, n_state;  /* slice of the model's state (batch-norm running stats) */
    size_t q_off, n_prep;   /* slice of the model's prep: what inference derives from the
                             * params once (Winograd kernels), set by ops->prepare */
    size_t cache_item, cache_fixed; /* floats of cache: per image (training only), or per
                                     * batch (written by thread 0 only); never both */
    size_t team_red;        /* doubles the layer sums over a team at most (cnn_batch_sum) */
    double flops;           /* forward, per image */
    /* Fusion (model.c): a relu or leakyrelu right after a layer whose ops->fuses_act is set is
     * done by that layer, on its own output (act = 1, slope act_slope); the activation layer
     * is then marked fused, shares its neighbours' buffers and is skipped. */
    int act;
    float act_slope;
    int fused;
    /* Folding (model.c): a batch norm right after a layer whose ops->absorbs_affine is set is
     * folded into that layer's prepared params for inference (folds = 1 on the producer, whose
     * n_prep then starts with its n_params folded params; folded = 1 on the batch norm), unless
     * typicality reads the producer's own output. In an inference context the batch norm
     * shares the producer's buffer: skipped on a prepared model, where the producer applies
     * the batch norm's fused activation (fold_act, fold_slope), else run in place. */
    int folds, folded;
    int fold_act;
    float fold_slope;
};

/* Data-parallel execution (ctx.c). With T threads and a batch of n >= T images, each thread
 * runs every layer on its own slice of images [i0, i0 + n_slice), single-threaded (the
 * layers' own OpenMP loops and OpenBLAS see they are inside a parallel region and use one
 * thread). Layers see only their slice; the two that need the rest of the batch use this:
 * batch norm sums its statistics over the team (cnn_batch_sum), dropout numbers its mask by
 * the image's place in the whole batch. NULL in cnn_fwd / cnn_bwd means one thread owns the
 * whole batch (the layers may then parallelise inside themselves). */
struct cnn_team {
    int tid, nthreads;
    int i0;       /* first image of this thread's slice, in the whole batch */
    int n_total;  /* images in the whole batch */
    double *red;  /* shared scratch: (nthreads + 1) * stride doubles */
    size_t stride; /* the largest team_red of any layer */
};

/* The caller's reducer during one training forward/backward, and the first failure it gave.
 * Data-parallel training (cnn_trainer_set_ranks): this process holds images [i0, i0 + n) of
 * a batch of n_total spread over several; n_total 0 means the batch is all here. Batch norm
 * then counts n_total images, dropout numbers its mask from i0, and the loss's gradient is
 * the mean over n_total. */
struct cnn_reduce {
    struct cnn_reducer r;
    int rc;
    int i0, n_total;
};

/* The sum of v[0..len) over the team (added in thread order, so it is the same on every thread
 * and from run to run) and then over the caller's reducer, if any (called once, by thread 0;
 * a failure is kept in red->rc and the sums are then those of this process). Every thread of
 * the team must call it with the same len (at most the layer's team_red). Returns the totals:
 * v itself without a team, else shared memory valid until the next call. */
const double *cnn_batch_sum(const struct cnn_team *t, struct cnn_reduce *red, double *v,
                            int len);

/* Everything a forward call needs. Pointers are already offset to this layer's slices. */
struct cnn_fwd {
    int n;             /* images in the batch */
    int train;         /* 1: batch statistics, dropout on; 0: inference */
    const float *x;    /* (n, in) */
    float *y;          /* (n, out) written */
    const float *p;    /* parameters */
    const float *s;    /* running state, read in inference */
    float *s_update;   /* the same state, updated in training (must be set then); NULL in
                        * inference */
    float *cache;      /* kept for backward */
    const float *prep; /* the layer's prepared slice (n_prep floats) in inference on a
                        * prepared model, else NULL: then work from p alone */
    float *ws;         /* scratch, ws_size(l, n) floats */
    uint64_t seed;     /* per-batch random seed (dropout) */
    const struct cnn_team *team; /* NULL: this call owns the whole batch */
    struct cnn_reduce *red;      /* NULL: no reducer */
};
struct cnn_bwd {
    int n;
    const float *x, *y;
    float *dy;         /* (n, out); the layer may overwrite it (a fused activation masks it) */
    float *dx;         /* (n, in) written (assigned), or NULL when not needed (first layer) */
    const float *p;
    float *dp;         /* parameter gradients, accumulated (+=) */
    const float *cache;
    float *ws;
    const struct cnn_team *team; /* as in cnn_fwd; dp is then this thread's own buffer */
    struct cnn_reduce *red;
};

/* A layer at inference, in the terms an interchange format or a code generator knows (export.c,
 * export_onnx.c, export_c.c). Each kind fills one in through its ops table's export_op;
 * pointers are into the model's params and state. */
enum cnn_export_kind {
    CNN_EXPORT_IDENTITY, /* nothing at inference (dropout) */
    CNN_EXPORT_CONV,     /* w (oc, c, k, k), b (oc); stride, pad */
    CNN_EXPORT_MAXPOOL,  /* k, stride; no padding, the floor of (h - k) / stride + 1 */
    CNN_EXPORT_AVGPOOL,
    CNN_EXPORT_RELU,
    CNN_EXPORT_LEAKYRELU, /* slope */
    CNN_EXPORT_BATCHNORM, /* w = gamma, b = beta, mean, var (c); eps */
    CNN_EXPORT_FLATTEN,
    CNN_EXPORT_DENSE      /* w (out, in), b (out); any input shape is flattened first */
};
struct cnn_export_op {
    int kind; /* enum cnn_export_kind */
    int k, stride, pad;
    float slope, eps;
    const float *w, *b, *mean, *var;
    struct cnn_shape in, out; /* set by cnn_export_walk */
    int index;                /* the layer's 1-based place in the spec, for messages */
};
/* m's layers as export ops, in order, into ops (m->n_layers of them; dropout comes out as
 * CNN_EXPORT_IDENTITY). Returns CNN_OK, or CNN_ERR_ARG naming the first layer whose kind has
 * no export_op. (export.c) */
int cnn_export_walk(const struct cnn_model *m, struct cnn_export_op *ops);
/* gamma / sqrt(var + eps) and beta - mean * that, per channel: batch norm as y = a x + c. */
void cnn_export_bn_affine(const struct cnn_export_op *bn, int c, float *a, float *shift);
/* One channel of a batch norm at inference as y = x * scale + shift. The one formula for it
 * (batchnorm.c's forward and folding, the exporters), so every path rounds alike. */
static inline void cnn_bn_affine(float gamma, float beta, float mean, float var, float eps,
                                 float *scale, float *shift) {
    *scale = gamma * (1.0f / sqrtf(var + eps));
    *shift = beta - mean * *scale;
}

struct cnn_layer_ops {
    const char *name; /* the spec keyword */
    /* Read the spec item into l->cfg. Errors name the item. */
    int (*parse)(struct cnn_layer *l, struct cnn_spec_item *it);
    /* l->in is set: check it, set l->out, n_params, n_decay, n_state, cache sizes, flops. */
    int (*init)(struct cnn_layer *l);
    /* Initial parameters and state (may be NULL: all zero). */
    void (*init_params)(const struct cnn_layer *l, float *p, float *s, struct cnn_rng *rng);
    void (*forward)(const struct cnn_layer *l, const struct cnn_fwd *f);
    void (*backward)(const struct cnn_layer *l, const struct cnn_bwd *b);
    /* What inference can derive once from the layer's params p, into prep (l->n_prep floats,
     * set by init). NULL when n_prep is 0. */
    void (*prepare)(const struct cnn_layer *l, const float *p, float *prep);
    /* Scratch floats for a batch of n (may be NULL: none). */
    size_t (*ws_size)(const struct cnn_layer *l, int n);
    /* The layer as spec text, e.g. "conv 32 3 pad=1". */
    void (*describe)(const struct cnn_layer *l, char *buf, size_t len);
    /* The layer at inference, for export; p and s are its slices of params and state. A fused
     * activation is not part of it: the activation layer exports itself. NULL: this kind
     * cannot be exported (the exporters say so, naming the layer). */
    void (*export_op)(const struct cnn_layer *l, const float *p, const float *s,
                      struct cnn_export_op *op);
    /* One image at inference, split between threads (ctx.c, split_forward): output channels
     * [lo, hi) (a dense layer's units, a flattened shape's elements), on one thread, with f->n
     * 1 and f->ws this thread's scratch; x and y are the whole image's input and output. NULL:
     * the layer cannot split an image (the context then runs a single image as before). */
    void (*forward_part)(const struct cnn_layer *l, const struct cnn_fwd *f, int lo, int hi);
    /* The input channels that output channels [lo, hi) read. NULL: all of them (the threads
     * then meet before the layer runs). */
    void (*part_needs)(const struct cnn_layer *l, int lo, int hi, int *in_lo, int *in_hi);
    /* Inference as a per-channel affine folded into the layer before (model.c): w (rows, row_len)
     * and b (rows), that layer's params with one row per channel, become those of that layer
     * followed by this one. NULL: this kind never folds. */
    void (*fold_into)(const struct cnn_layer *l, const float *p, const float *s, float *w,
                      size_t row_len, float *b);
    int absorbs_affine; /* params are w (out.c rows) then b (out.c), and forward takes them
                         * folded from the prepared slice when l->folds (see cnn_layer) */
    int fuses_act; /* forward/backward honour l->act (see struct cnn_layer) */
    int is_act;    /* an elementwise activation with slope cfg.act.slope that a producer fuses */
};

/* part_needs of a layer whose output channel reads the same input channel alone. */
void cnn_part_same(const struct cnn_layer *l, int lo, int hi, int *in_lo, int *in_hi);

/* ---- fused activations (activation.c) ------------------------------------------------------
 * For layers with fuses_act. y (rows, len), rows ld floats apart: y[r,:] = act(y[r,:] + bias[r])
 * (bias may be NULL; act is the identity when act is 0, else x * (x > 0 ? 1 : slope)).
 * dy, y (rows, len): dy[r,:] *= act'(y[r,:]) in place (l->act; y is the activated output;
 * leaky slopes are > 0 so its sign is the input's), then sum[r] += sum of dy[r,:] (sum may be
 * NULL). */
void cnn_bias_act(int act, float slope, float *y, size_t ld, const float *bias, int rows, int len);
void cnn_act_grad_sum(const struct cnn_layer *l, float *dy, const float *y, float *sum, int rows,
                      int len);

/* The enum and the ops table are generated from layers.def. */
enum cnn_layer_kind {
#define CNN_LAYER(id, ops) CNN_LAYER_##id,
#include "nn/layers.def"
#undef CNN_LAYER
    CNN_LAYER_COUNT
};
#define CNN_LAYER(id, ops) extern const struct cnn_layer_ops ops;
#include "nn/layers.def"
#undef CNN_LAYER
extern const struct cnn_layer_ops *const cnn_layer_table[CNN_LAYER_COUNT];

static inline size_t cnn_shape_size(struct cnn_shape s) {
    return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* ---- the model (model.c) ------------------------------------------------------------------
 * What was trained; read-only once shared. params and state are flat, each layer owns a
 * slice. Metadata is a small ordered list of key/value strings. */
#define CNN_META_KEY 48
#define CNN_META_VALUE 256
struct cnn_meta_kv {
    char key[CNN_META_KEY];
    char value[CNN_META_VALUE];
};
struct cnn_model {
    char *spec;                 /* normalised spec text */
    int n_layers;
    struct cnn_layer *layers;
    struct cnn_shape in;
    int n_classes;
    size_t n_params, n_state;
    float *params, *state;
    /* (n_prep) each layer's ops->prepare of its params, for inference; valid while prepared is
     * 1. cnn_model_prepare sets it after init_params and load; whatever writes params clears
     * it (the trainer, before each update), and inference then works from params alone. */
    float *prep;
    size_t n_prep;
    int prepared;
    float *decay_mask;          /* (n_params) 1 where weight decay applies, else 0 */
    float norm_mean, norm_std;
    int n_meta;
    struct cnn_meta_kv meta[CNN_META_MAX];
    char class_digit[CNN_MAX_CLASSES][4]; /* "0".."9": default class names */
    struct cnn_typicality *typicality;    /* NULL until fitted or loaded (typicality.c) */
};
/* cnn_model_new that refuses, before allocating, a spec needing more than max_params. */
int cnn_model_new_bounded(const char *spec, int c, int h, int w, size_t max_params,
                          struct cnn_model **out);
/* Fuse each activation into the layer before it where that layer can (on, the default of
 * cnn_model_new), or run every layer on its own (off: tests compare the two). Only while no
 * context exists for the model: a context's buffers alias by it. */
void cnn_model_set_fusion(struct cnn_model *m, int on);
/* Derive m->prep from the params and mark it valid. */
void cnn_model_prepare(struct cnn_model *m);

/* ---- contexts (ctx.c) ---------------------------------------------------------------------
 * Everything one computation needs, sized in one place (ctx_layout) from the model's layers,
 * max_batch and the thread count: the activation arena, per-layer caches, scratch per thread,
 * the batch buffers (xbuf, labels, probs), and for training the gradients of activations and
 * parameters. No buffer of a context is sized anywhere else. */
struct cnn_ctx {
    char *spec;                 /* the layout it was sized for: spec text and input shape */
    struct cnn_shape in;
    int n_layers, n_classes;
    size_t n_params;
    int threads;                /* OpenMP threads for each call (>= 1) */
    int max_batch;
    int train;                  /* training buffers present */
    float *arena;
    float **act;                /* act[i] (max_batch, out of layer i-1); act[0] unused */
    size_t pp_stride;           /* inference-only: floats per image in act[1..L-1], else 0 */
    float **dact;               /* gradients of act[i] (training only, else NULL entries) */
    float **cache;              /* per layer */
    float *ws;                  /* scratch, the largest any layer needs; per thread in teams */
    size_t ws_thread;           /* floats of ws per thread in team mode */
    double *team_red;           /* (threads + 1) * team_stride doubles */
    size_t team_stride;
    float *grads;               /* (n_params) training: the step's parameter gradients */
    float **tgrads;             /* threads-1 more gradient buffers for a team, or NULL */
    float *xbuf;                /* (max_batch, in) normalised input */
    uint8_t *labels;            /* (max_batch) */
    float *probs;               /* (max_batch, n_classes) */
    int *tap_off;               /* (n_layers) where layer i's channel means go in a feature
                                   vector, -1 for none (cnn_typicality_layout) */
    int tap_dim;                /* floats of one feature vector */
    float *taps;                /* (max_batch, tap_dim) features of the last call that asked */
    /* A single image split between the threads (ctx.c, split_forward), or NULL: */
    int *split_cut;            /* (n_layers, threads + 1): layer i's part for thread t is
                                  output channels [cut[t], cut[t + 1]) */
    unsigned char *split_sync; /* (n_layers): the threads meet before layer i */
    float **split_act;         /* (n_layers + 1): the image's output of each layer, each in a
                                  buffer of its own (fused layers share their producer's) */
};
/* A context with training buffers (gradients, caches) as well. */
int cnn_ctx_new_train(const struct cnn_model *m, int max_batch, int threads,
                      struct cnn_ctx **out);
/* CNN_OK when ctx was sized for m's layout, else CNN_ERR_ARG naming both. */
int cnn_ctx_check(const struct cnn_ctx *ctx, const struct cnn_model *m);
/* Run the layers on x (n, in), n <= max_batch. Returns the logits (n, n_classes), borrowed
 * from the arena. state is the model's own state to update in training (the trainer's
 * writable view), NULL in inference; red is the reducer (NULL: none). */
const float *cnn_ctx_forward(struct cnn_ctx *ctx, const struct cnn_model *m, const float *x,
                             int n, float *state, uint64_t seed, struct cnn_reduce *red);
/* Backward from dlogits (n, n_classes) (in dact of the last layer) down to layer 0, into
 * ctx->grads (accumulated: cnn_ctx_zero_grad first). x is the input given to forward. */
void cnn_ctx_backward(struct cnn_ctx *ctx, const struct cnn_model *m, const float *x, int n,
                      struct cnn_reduce *red);
void cnn_ctx_zero_grad(struct cnn_ctx *ctx);
/* One training forward + backward on a batch: the model's batch-norm state is updated, the
 * gradients are left in ctx->grads (zeroed first) and the probabilities in ctx->probs. x (n, in)
 * normalised, labels (n) < n_classes, n <= ctx->max_batch, inside cnn_threads_enter. *loss
 * (mean) and *correct may be NULL. CNN_ERR_REDUCE when red's reducer failed (no message set). */
int cnn_ctx_train_batch(struct cnn_ctx *ctx, struct cnn_model *m, const float *x,
                        const uint8_t *labels, int n, float label_smoothing, uint64_t seed,
                        struct cnn_reduce *red, float *loss, int *correct);
/* The OpenMP thread count of the calling thread, set to ctx->threads for the length of one
 * library call and then put back, so nothing outlives the call. */
int cnn_threads_enter(int threads);
void cnn_threads_leave(int saved);
/* The threads a parallel loop started now would get (1 without OpenMP). */
int cnn_threads_now(void);

/* Probabilities (n, n_classes) and, when features is not NULL, the typicality features
 * (n, cnn_typicality_layout's dim): from x (n, in) normalised or pixels (n, in). [ctx] */
int cnn_predict_features(const struct cnn_model *m, struct cnn_ctx *ctx, const float *x,
                         const uint8_t *pixels, int n, float *probs, float *features);

/* ---- typicality (typicality.c) ------------------------------------------------------------
 * A Gaussian per class with one shared covariance over the features cnn_typicality_layout
 * names; see typicality.c. w (dim, dim) lower triangular = L^-1 with L L^T = S, wmu (k, dim),
 * cal (n_cal) the calibration images' scores, ascending. */
#define CNN_TYPICALITY_DIM_MAX 2048
#define CNN_TYPICALITY_CAL_MAX 8192
struct cnn_typicality {
    int dim, k, n_cal;
    float *w, *wmu, *cal;
};
/* Whether the features read the channel means of l's output (after the activations that
 * follow it): l shrinks the picture and its output is still spatial. */
int cnn_typicality_taps(const struct cnn_layer *l);
/* Feature layout: tap_off (n_layers) gets each tapped layer's offset or -1; returns dim. */
int cnn_typicality_layout(const struct cnn_model *m, int *tap_off);
struct cnn_typicality *cnn_typicality_alloc(int dim, int k, int n_cal);
void cnn_typicality_free(struct cnn_typicality *ty);
/* min over classes of the squared Mahalanobis distance of f (dim); wf (dim) scratch. */
float cnn_typicality_score(const struct cnn_typicality *ty, const float *f, float *wf);
double cnn_typicality_score_naive(const struct cnn_typicality *ty, const float *f);
/* The fraction of calibration scores >= score, in [0, 1]. */
float cnn_typicality_of_score(const struct cnn_typicality *ty, float score);
/* Fit on data's images fit_idx (at most 20,000 of them, evenly spread) and calibrate on cal_idx
 * (at most CNN_TYPICALITY_CAL_MAX); replaces m's typicality only on success. */
int cnn_typicality_fit(struct cnn_model *m, const struct cnn_dataset *d, const int *fit_idx,
                       int n_fit, const int *cal_idx, int n_cal, int threads);

/* ---- loss (loss.c) ------------------------------------------------------------------------
 * Fused softmax + cross-entropy. logits (n,k) in; probs (n,k) out; dlogits (n,k) out =
 * (probs - target) / n where target = (1-eps) onehot + eps/k (PyTorch label_smoothing).
 * Returns the mean loss. dlogits may be NULL. */
float cnn_softmax_xent(const float *logits, const uint8_t *labels, int n, int k, float eps,
                       float *probs, float *dlogits);
void cnn_softmax(const float *logits, int n, int k, float *probs);

/* ---- kernels with _naive references, exposed for tests and benches ------------------------- */
/* conv2d.c: x (n,c,h,w); w (oc,c,kh,kw); b (oc); y (n,oc,oh,ow). Cross-correlation, no flip,
 * as PyTorch Conv2d. */
void cnn_conv2d_forward_naive(const float *x, const float *w, const float *b, float *y, int n,
                              int c, int h, int wd, int oc, int k, int stride, int pad);
/* dy like y; dx like x (assigned, may be NULL); dw, db accumulated. */
void cnn_conv2d_backward_naive(const float *x, const float *w, const float *dy, float *dx,
                               float *dw, float *db, int n, int c, int h, int wd, int oc, int k,
                               int stride, int pad);
/* pool.c: x (n,c,h,w) -> y (n,c,oh,ow), the max over each k x k window at stride s (the first
 * maximum, as y = x[i] > y ? x[i] : y from the window's first element). */
void cnn_maxpool_forward_naive(const float *x, float *y, int n, int c, int h, int w, int k, int s);

/* ---- model files (model_io.c) -------------------------------------------------------------
 * Layout: "CNNMODEL", u32 version, u32 flags, then sections {u32 tag, u64 length, bytes},
 * an "END " section of length 0, and a u32 CRC-32 (zlib) of everything before it.
 * Standard sections: SPEC (u32 c,h,w + text), NORM (f32 mean, std), PARM (u64 n + n f32),
 * STAT (u64 n + n f32), META (key=value lines). Checkpoints add OPTM and TRNS (checkpoint.c).
 * Readers skip tags they do not know. Version 2 differs from 1 in its metadata keys and in
 * TRNS (no paths); both load. */
#define CNN_MODEL_VERSION 2u
#define CNN_MODEL_MAX_BYTES ((size_t)1 << 30)
/* Header and the standard sections of m into b (no END, no CRC yet). */
void cnn_model_encode(const struct cnn_model *m, struct cnn_buf *b);
/* Append s's bytes to b as a section tagged `tag`; b takes s's out-of-memory flag, and s is
 * freed and left empty for the next section. */
void cnn_model_section(struct cnn_buf *b, const char tag[4], struct cnn_buf *s);
/* Append END and the CRC, write atomically to path, free b's memory. */
int cnn_model_write(struct cnn_buf *b, const char *path);
/* Validate magic, version, CRC and section bounds; *version out (may be NULL). */
int cnn_model_check(const uint8_t *buf, size_t len, const char *name, uint32_t *version);
/* Find a section in a checked buffer (NULL if absent). */
const uint8_t *cnn_model_find(const uint8_t *buf, size_t len, const char tag[4], size_t *n);
/* Build the model from a checked buffer (SPEC, NORM, PARM, STAT, META). */
int cnn_model_decode(const uint8_t *buf, size_t len, const char *name, struct cnn_model **out);

/* ---- optimizers (optim.c) ---------------------------------------------------------------- */
struct cnn_optim {
    struct cnn_optim_cfg cfg;
    size_t n;      /* parameters */
    long t;        /* steps taken */
    float *m, *v;  /* (n) each: momentum / first moment, second moment (Adam) */
};
int cnn_optim_check(const struct cnn_optim_cfg *cfg);
int cnn_optim_new(const struct cnn_model *m, const struct cnn_optim_cfg *cfg,
                  struct cnn_optim **out);
void cnn_optim_free(struct cnn_optim *opt);
/* params (n) -= update(grads (n)) with learning rate lr; mask (n) selects weight decay.
 * CNN_ERR_ARG when n is not the optimizer's size. */
int cnn_optim_step(struct cnn_optim *opt, float *params, const float *grads, const float *mask,
                   size_t n, float lr);

/* ---- time (core/clock.c) ----------------------------------------------------------------- */
/* Seconds on the monotonic clock. */
double cnn_now(void);

#endif /* CNN_INTERNAL_H */
