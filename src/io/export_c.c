/*
 * export_c.c - a model as C99 source to build into another program: firmware for a
 * microcontroller, a tool that should not link libcnn. cnn_model_export_c writes BASE.h and
 * BASE.c; NAME, the last part of BASE, names everything in them.
 *
 * Why: libcnn needs malloc, OpenBLAS and OpenMP; a board with a few hundred KB of flash and no
 * operating system has none of them. The generated code needs a C99 compiler and expf (link
 * with -lm), nothing else: no allocation, no other library, no state but two scratch buffers.
 *
 * What is generated:
 *   BASE.h  guard NAME_H, then NAME_CLASSES and NAME_PIXELS (C*H*W), macros in upper case; the
 *           flash and RAM the code needs, as computed here; the prototype
 *           int NAME_predict(const unsigned char pixels[NAME_PIXELS], float probs[NAME_CLASSES]).
 *   BASE.c  #include "NAME.h"; the input normalisation as two constants, x = pixel * scale -
 *           shift, computed as libcnn computes it (ctx.c); the weights as static const float
 *           arrays in hex float literals, exact to the bit (0x1.8p-3f is 0.1875f), named after
 *           the layer (conv1_w, conv1_b, dense12_w, bn5_scale); batch norm right after a conv
 *           or dense layer is folded into its weights (w' = a w, b' = a b + shift, with a and
 *           shift from cnn_export_bn_affine), any other stays a per-channel affine step; two
 *           static scratch buffers, each as large as the largest activation; one plain-loop
 *           function per kind of step the model uses (conv2d, dense, maxpool, avgpool, relu,
 *           leaky_relu, affine; normalise and softmax always); and NAME_predict, which calls
 *           them in order with literal shapes, each reading one scratch buffer and writing the
 *           other (elementwise steps work in place), and returns the argmax of the softmax.
 * Dropout and flatten generate nothing: activations are flat (C,H,W) arrays already.
 *
 * Each kernel computes what libcnn computes at inference: the same windows, zero padding,
 * first maximum, leaky relu as x * (x > 0 ? 1 : slope), bias added after the sum. Only the
 * order of the sums differs (libcnn uses im2col + sgemm or Winograd), and softmax uses expf in
 * float where libcnn uses exp in double: probabilities agree to within a few 1e-6
 * (tests/test_export_c.sh checks 1e-5 and every argmax).
 *
 * Refused with CNN_ERR_ARG, naming the layer, before anything is written: a layer whose kind
 * has no export op, an op this generator does not know, a weight that is NaN or infinite (no
 * literal holds it). Files are written atomically; if BASE.c cannot be written, the BASE.h just
 * written is removed.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define NAME_MAX_LEN 64
#define PATH_MAX_LEN 4096
/* What NAME_predict keeps on the stack: no arrays, only the scalars and spilled registers of
 * three frames at most (NAME_predict, a kernel, and conv2d's first_inside or end_inside).
 * -fstack-usage on x86-64: gcc -O0 88 + 136 + 16 bytes, gcc -O2 112 + 56 (those two inlined),
 * clang -O2 56 + 504 (conv2d vectorised, registers spilled); 32-bit targets without vector
 * units need less. The bound leaves room for other compilers and options;
 * tests/test_export_c.sh checks it under gcc and clang. */
#define STACK_BOUND_BYTES 1024
#define FLOATS_PER_LINE 5

/* One step of the generated NAME_predict: an export op, with for a conv or dense layer the
 * batch norm folded into it. w and b are the arrays the .c declares for it (owned; NULL when
 * it has none): weights and bias, or an affine step's scale and shift. */
struct step {
    const struct cnn_export_op *op;
    int bn_index; /* the spec index of the batch norm folded in, or 0 */
    float *w, *b;
    size_t n_w, n_b;
};

/* What the header states, from the steps. */
struct footprint {
    size_t weight_floats; /* every const float: arrays and the two normalisation constants */
    size_t act_floats;    /* the largest activation, the input included: one scratch buffer */
    size_t max_index;     /* the largest flat index the kernels compute (int must hold it) */
};

/* ---- text ------------------------------------------------------------------------------------ */

static void put_text(struct cnn_buf *b, const char *s) {
    cnn_buf_put(b, s, strlen(s));
}

/* Formatted text appended to b; a failed allocation sets b->oom, as for every cnn_buf append. */
static void put(struct cnn_buf *b, const char *fmt, ...) CNN_PRINTF(2, 3);
static void put(struct cnn_buf *b, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof line) {
        cnn_buf_put(b, line, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    cnn_buf_put(b, big, (size_t)n);
    free(big);
}

/* v (finite) as an exact C hex float literal, built from its bits so that no locale and no
 * printf variant of %a can change it: 0x1.8p-3f; subnormals as 0x0.xxxxxxp-126f; zero 0.0f. */
static void put_float(struct cnn_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    const char *sign = u >> 31 ? "-" : "";
    const int biased = (int)(u >> 23 & 0xff);
    unsigned frac = (unsigned)(u & 0x7fffff) << 1; /* 24 bits: six hex digits */
    if (biased == 0 && frac == 0) {
        put(b, "%s0.0f", sign);
        return;
    }
    int digits = 6;
    while (digits > 0 && (frac & 0xf) == 0) {
        frac >>= 4;
        digits--;
    }
    put(b, "%s0x%d%s%.*xp%+df", sign, biased ? 1 : 0, digits ? "." : "", digits, frac,
        biased ? biased - 127 : -126);
}

/* The layer's spec text ("conv 32 5 pad=2"), for comments and messages. */
static void layer_text(const struct cnn_model *m, int index, char *buf, size_t len) {
    const struct cnn_layer *l = &m->layers[index - 1];
    l->ops->describe(l, buf, len);
}

/* ---- the steps ------------------------------------------------------------------------------- */

static int check_finite(const struct cnn_model *m, const struct step *st, const float *v,
                        size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            char text[96], folded[48] = "";
            layer_text(m, st->op->index, text, sizeof text);
            if (st->bn_index)
                snprintf(folded, sizeof folded, " (layer %d, bn, folded in)", st->bn_index);
            return cnn_fail(CNN_ERR_ARG,
                            "layer %d '%s'%s: parameter %zu is %g, which no C "
                            "literal holds",
                            st->op->index, text, folded, i, (double)v[i]);
        }
    return CNN_OK;
}

/* A conv or dense step's weights and bias, with bn (may be NULL) folded in: per output row r,
 * w' = a[r] w, b' = a[r] b + shift[r], in double and then rounded once. */
static int weights_step(const struct cnn_model *m, struct step *st,
                        const struct cnn_export_op *bn) {
    const struct cnn_export_op *op = st->op;
    const int rows = op->out.c;
    const size_t per_row =
        op->kind == CNN_EXPORT_CONV ? (size_t)op->in.c * op->k * op->k : cnn_shape_size(op->in);
    st->n_w = (size_t)rows * per_row;
    st->n_b = (size_t)rows;
    st->w = malloc(st->n_w * sizeof *st->w);
    st->b = malloc(st->n_b * sizeof *st->b);
    float *a = bn ? malloc(st->n_b * sizeof *a) : NULL;
    float *shift = bn ? malloc(st->n_b * sizeof *shift) : NULL;
    if (!st->w || !st->b || (bn && (!a || !shift))) {
        free(a);
        free(shift);
        return cnn_fail(CNN_ERR_NOMEM, "export c: out of memory for layer %d", op->index);
    }
    if (bn) {
        cnn_export_bn_affine(bn, rows, a, shift);
        st->bn_index = bn->index;
    }
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * per_row;
        for (size_t i = 0; i < per_row; i++)
            st->w[o + i] = bn ? (float)((double)op->w[o + i] * a[r]) : op->w[o + i];
        st->b[r] = bn ? (float)((double)op->b[r] * a[r] + shift[r]) : op->b[r];
    }
    free(a);
    free(shift);
    const int rc = check_finite(m, st, st->w, st->n_w);
    return rc ? rc : check_finite(m, st, st->b, st->n_b);
}

/* A batch norm that follows no conv or dense layer: x * scale[c] + shift[c]. */
static int affine_step(const struct cnn_model *m, struct step *st) {
    st->n_w = st->n_b = (size_t)st->op->in.c;
    st->w = malloc(st->n_w * sizeof *st->w);
    st->b = malloc(st->n_b * sizeof *st->b);
    if (!st->w || !st->b)
        return cnn_fail(CNN_ERR_NOMEM, "export c: out of memory for layer %d", st->op->index);
    cnn_export_bn_affine(st->op, st->op->in.c, st->w, st->b);
    const int rc = check_finite(m, st, st->w, st->n_w);
    return rc ? rc : check_finite(m, st, st->b, st->n_b);
}

/* The steps of NAME_predict from the export ops, into steps (at most n_layers), *n_steps set
 * even on failure (their arrays are the caller's to free). Dropout and flatten give none. A
 * batch norm right after a conv or dense layer (dropout between them changes nothing at
 * inference) is folded into it. */
static int plan_steps(const struct cnn_model *m, const struct cnn_export_op *ops,
                      struct step *steps, int *n_steps) {
    int rc = CNN_OK;
    *n_steps = 0;
    for (int i = 0; i < m->n_layers && rc == CNN_OK; i++) {
        const struct cnn_export_op *op = &ops[i];
        if (op->kind == CNN_EXPORT_IDENTITY || op->kind == CNN_EXPORT_FLATTEN) continue;
        struct step *st = &steps[(*n_steps)++];
        memset(st, 0, sizeof *st);
        st->op = op;
        switch (op->kind) {
        case CNN_EXPORT_CONV:
        case CNN_EXPORT_DENSE: {
            int j = i + 1;
            while (j < m->n_layers && ops[j].kind == CNN_EXPORT_IDENTITY) j++;
            const int fold = j < m->n_layers && ops[j].kind == CNN_EXPORT_BATCHNORM;
            rc = weights_step(m, st, fold ? &ops[j] : NULL);
            if (fold) i = j;
            break;
        }
        case CNN_EXPORT_BATCHNORM:
            rc = affine_step(m, st);
            break;
        case CNN_EXPORT_MAXPOOL:
        case CNN_EXPORT_AVGPOOL:
        case CNN_EXPORT_RELU:
        case CNN_EXPORT_LEAKYRELU:
            break;
        default: {
            char text[96];
            layer_text(m, op->index, text, sizeof text);
            rc = cnn_fail(CNN_ERR_ARG, "layer %d '%s': export op %d has no C code generator",
                          op->index, text, op->kind);
        }
        }
    }
    return rc;
}

static size_t max_size(size_t a, size_t b) {
    return a > b ? a : b;
}

static struct footprint measure(const struct cnn_model *m, const struct step *steps, int n) {
    struct footprint f = {2, cnn_shape_size(m->in), 0};
    for (int i = 0; i < n; i++) {
        f.weight_floats += steps[i].n_w + steps[i].n_b;
        f.act_floats = max_size(f.act_floats, cnn_shape_size(steps[i].op->out));
        f.max_index = max_size(f.max_index, steps[i].n_w);
    }
    f.max_index = max_size(f.max_index, f.act_floats);
    return f;
}

/* ---- BASE.c: weights ------------------------------------------------------------------------- */

static const char *array_prefix(int kind) {
    return kind == CNN_EXPORT_CONV ? "conv" : kind == CNN_EXPORT_DENSE ? "dense" : "bn";
}

static void put_array(struct cnn_buf *b, const char *name, const float *v, size_t n) {
    put(b, "static const float %s[%zu] = {", name, n);
    for (size_t i = 0; i < n; i++) {
        put_text(b, i % FLOATS_PER_LINE ? " " : "\n    ");
        put_float(b, v[i]);
        if (i + 1 < n) put_text(b, ",");
    }
    put_text(b, "\n};\n");
}

/* The two arrays of a step that has weights, with a comment saying what they are. */
static void put_step_arrays(struct cnn_buf *b, const struct cnn_model *m, const struct step *st) {
    const struct cnn_export_op *op = st->op;
    const char *prefix = array_prefix(op->kind);
    char text[96], name[48];
    layer_text(m, op->index, text, sizeof text);
    put(b, "\n/* layer %d, %s", op->index, text);
    if (st->bn_index) put(b, ", with layer %d (bn) folded in", st->bn_index);
    if (op->kind == CNN_EXPORT_CONV)
        put(b, ": w (%d,%d,%d,%d), b (%d) */\n", op->out.c, op->in.c, op->k, op->k, op->out.c);
    else if (op->kind == CNN_EXPORT_DENSE)
        put(b, ": w (%d,%zu), b (%d) */\n", op->out.c, cnn_shape_size(op->in), op->out.c);
    else
        put(b, " at inference: x * scale[c] + shift[c], c < %d */\n", op->in.c);
    const int affine = op->kind == CNN_EXPORT_BATCHNORM;
    snprintf(name, sizeof name, "%s%d_%s", prefix, op->index, affine ? "scale" : "w");
    put_array(b, name, st->w, st->n_w);
    snprintf(name, sizeof name, "%s%d_%s", prefix, op->index, affine ? "shift" : "b");
    put_array(b, name, st->b, st->n_b);
}

/* ---- BASE.c: kernels (C99 text; each literal under C's 4095-character minimum) --------------- */

static const char KERNEL_NORMALISE[] =
    "\n/* x (n) = pixels (n) as the model's input: pixel * norm_scale - norm_shift, which is\n"
    " * (pixel / 255 - mean) / std. */\n"
    "static void normalise(const unsigned char *pixels, float *x, int n) {\n"
    "    for (int i = 0; i < n; i++) x[i] = (float)pixels[i] * norm_scale - norm_shift;\n"
    "}\n";

static const char KERNEL_CONV2D[] =
    "\n/* The first output row (or column) whose input row o*s - p + kk lies inside the image,\n"
    " * and one past the last: the others read only padding, which adds zero. */\n"
    "static int first_inside(int kk, int s, int p) {\n"
    "    return kk >= p ? 0 : (p - kk + s - 1) / s;\n"
    "}\n"
    "static int end_inside(int kk, int n, int s, int p, int on) {\n"
    "    const int last = n - 1 + p - kk; /* o * s <= last */\n"
    "    if (last < 0) return 0;\n"
    "    return last / s + 1 < on ? last / s + 1 : on;\n"
    "}\n"
    "\n/* Convolution as PyTorch Conv2d (cross-correlation, no kernel flip), stride s, zero\n"
    " * padding p: x (c,h,wd); w (oc,c,k,k); b (oc); y (oc,oh,ow),\n"
    " *   y[o,oy,ox] = b[o] + sum over ci,ky,kx of w[o,ci,ky,kx] * x[ci, oy*s-p+ky, ox*s-p+kx].\n"
    " * Each weight is applied to the whole output plane in turn, over the rows and columns\n"
    " * whose input is inside x, so the innermost loop has no tests. */\n"
    "static void conv2d(const float *x, const float *w, const float *b, float *y, int c, int h,\n"
    "                   int wd, int oc, int oh, int ow, int k, int s, int p) {\n"
    "    for (int o = 0; o < oc; o++) {\n"
    "        float *yo = y + o * oh * ow;\n"
    "        for (int q = 0; q < oh * ow; q++) yo[q] = 0.0f;\n"
    "        for (int ci = 0; ci < c; ci++)\n"
    "            for (int ky = 0; ky < k; ky++) {\n"
    "                const int oy0 = first_inside(ky, s, p), oy1 = end_inside(ky, h, s, p, oh);\n"
    "                for (int kx = 0; kx < k; kx++) {\n"
    "                    const float wv = w[((o * c + ci) * k + ky) * k + kx];\n"
    "                    const int ox0 = first_inside(kx, s, p);\n"
    "                    const int ox1 = end_inside(kx, wd, s, p, ow);\n"
    "                    for (int oy = oy0; oy < oy1; oy++) {\n"
    "                        const float *xr = x + (ci * h + oy * s - p + ky) * wd;\n"
    "                        float *yr = yo + oy * ow;\n"
    "                        if (s == 1) /* unit stride: the loop vectorises */\n"
    "                            for (int ox = ox0; ox < ox1; ox++)\n"
    "                                yr[ox] += wv * xr[ox - p + kx];\n"
    "                        else\n"
    "                            for (int ox = ox0; ox < ox1; ox++)\n"
    "                                yr[ox] += wv * xr[ox * s - p + kx];\n"
    "                    }\n"
    "                }\n"
    "            }\n"
    "        for (int q = 0; q < oh * ow; q++) yo[q] += b[o];\n"
    "    }\n"
    "}\n";

static const char KERNEL_DENSE[] =
    "\n/* Fully connected, as PyTorch Linear: x (in), any activation read flat in (C,H,W) order;\n"
    " * w (out,in); b (out); y (out), y[o] = sum over i of w[o,i] * x[i], then + b[o]. */\n"
    "static void dense(const float *x, const float *w, const float *b, float *y, int in,\n"
    "                  int out) {\n"
    "    for (int o = 0; o < out; o++) {\n"
    "        const float *wo = w + o * in;\n"
    "        float sum = 0.0f;\n"
    "        for (int i = 0; i < in; i++) sum += wo[i] * x[i];\n"
    "        y[o] = sum + b[o];\n"
    "    }\n"
    "}\n";

static const char KERNEL_MAXPOOL[] =
    "\n/* Max pooling, no padding: x (c,h,wd); y (c,oh,ow), the largest value of each k x k\n"
    " * window, windows s apart. */\n"
    "static void maxpool(const float *x, float *y, int c, int h, int wd, int oh, int ow, int k,\n"
    "                    int s) {\n"
    "    for (int ch = 0; ch < c; ch++)\n"
    "        for (int oy = 0; oy < oh; oy++)\n"
    "            for (int ox = 0; ox < ow; ox++) {\n"
    "                const float *win = x + (ch * h + oy * s) * wd + ox * s;\n"
    "                float best = win[0];\n"
    "                for (int ky = 0; ky < k; ky++)\n"
    "                    for (int kx = 0; kx < k; kx++)\n"
    "                        if (win[ky * wd + kx] > best) best = win[ky * wd + kx];\n"
    "                y[(ch * oh + oy) * ow + ox] = best;\n"
    "            }\n"
    "}\n";

static const char KERNEL_AVGPOOL[] =
    "\n/* Average pooling, no padding: x (c,h,wd); y (c,oh,ow), the sum of each k x k window\n"
    " * (windows s apart) times 1 / (k * k). */\n"
    "static void avgpool(const float *x, float *y, int c, int h, int wd, int oh, int ow, int k,\n"
    "                    int s) {\n"
    "    const float inv = 1.0f / (float)(k * k);\n"
    "    for (int ch = 0; ch < c; ch++)\n"
    "        for (int oy = 0; oy < oh; oy++)\n"
    "            for (int ox = 0; ox < ow; ox++) {\n"
    "                const float *win = x + (ch * h + oy * s) * wd + ox * s;\n"
    "                float sum = 0.0f;\n"
    "                for (int ky = 0; ky < k; ky++)\n"
    "                    for (int kx = 0; kx < k; kx++) sum += win[ky * wd + kx];\n"
    "                y[(ch * oh + oy) * ow + ox] = sum * inv;\n"
    "            }\n"
    "}\n";

static const char KERNEL_RELU[] =
    "\n/* x (n) = max(x, 0), in place. */\n"
    "static void relu(float *x, int n) {\n"
    "    for (int i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;\n"
    "}\n";

static const char KERNEL_LEAKY_RELU[] =
    "\n/* x (n) = x * (x > 0 ? 1 : slope), in place. */\n"
    "static void leaky_relu(float *x, int n, float slope) {\n"
    "    for (int i = 0; i < n; i++) x[i] = x[i] * (x[i] > 0.0f ? 1.0f : slope);\n"
    "}\n";

static const char KERNEL_AFFINE[] =
    "\n/* Batch norm at inference, in place: x (c,hw), x[ch,q] = x[ch,q] * scale[ch] + shift[ch].\n"
    " */\n"
    "static void affine(float *x, const float *scale, const float *shift, int c, int hw) {\n"
    "    for (int ch = 0; ch < c; ch++) {\n"
    "        float *xc = x + ch * hw;\n"
    "        for (int q = 0; q < hw; q++) xc[q] = xc[q] * scale[ch] + shift[ch];\n"
    "    }\n"
    "}\n";

static const char KERNEL_SOFTMAX[] =
    "\n/* probs (k) = softmax(z (k)), the largest z subtracted first so that expf cannot\n"
    " * overflow. Returns the index of the largest probability (the first of equals). */\n"
    "static int softmax(const float *z, float *probs, int k) {\n"
    "    float top = z[0], sum = 0.0f;\n"
    "    int best = 0;\n"
    "    for (int j = 1; j < k; j++) top = z[j] > top ? z[j] : top;\n"
    "    for (int j = 0; j < k; j++) {\n"
    "        probs[j] = expf(z[j] - top);\n"
    "        sum += probs[j];\n"
    "    }\n"
    "    for (int j = 0; j < k; j++) probs[j] /= sum;\n"
    "    for (int j = 1; j < k; j++) best = probs[j] > probs[best] ? j : best;\n"
    "    return best;\n"
    "}\n";

/* Each kernel the steps use, once; normalise and softmax always. */
static void put_kernels(struct cnn_buf *b, const struct step *steps, int n) {
    int used[CNN_EXPORT_DENSE + 1] = {0};
    for (int i = 0; i < n; i++) used[steps[i].op->kind] = 1;
    put_text(b, KERNEL_NORMALISE);
    if (used[CNN_EXPORT_CONV]) put_text(b, KERNEL_CONV2D);
    if (used[CNN_EXPORT_DENSE]) put_text(b, KERNEL_DENSE);
    if (used[CNN_EXPORT_MAXPOOL]) put_text(b, KERNEL_MAXPOOL);
    if (used[CNN_EXPORT_AVGPOOL]) put_text(b, KERNEL_AVGPOOL);
    if (used[CNN_EXPORT_RELU]) put_text(b, KERNEL_RELU);
    if (used[CNN_EXPORT_LEAKYRELU]) put_text(b, KERNEL_LEAKY_RELU);
    if (used[CNN_EXPORT_BATCHNORM]) put_text(b, KERNEL_AFFINE);
    put_text(b, KERNEL_SOFTMAX);
}

/* ---- BASE.c: NAME_predict -------------------------------------------------------------------- */

/* One step's call: it reads scratch[*cur] and leaves its output in scratch[*cur] (elementwise,
 * in place) or in the other buffer, which *cur then names. */
static void put_call(struct cnn_buf *b, const struct cnn_model *m, const struct step *st,
                     int *cur) {
    const struct cnn_export_op *op = st->op;
    const struct cnn_shape i = op->in, o = op->out;
    const int x = *cur, y = 1 - *cur;
    char text[96];
    layer_text(m, op->index, text, sizeof text);
    put(b, "    /* layer %d, %s", op->index, text);
    if (st->bn_index) put(b, " (+ layer %d, bn, folded)", st->bn_index);
    const int in_place = op->kind == CNN_EXPORT_RELU || op->kind == CNN_EXPORT_LEAKYRELU ||
                         op->kind == CNN_EXPORT_BATCHNORM;
    if (in_place)
        put(b, ": (%d,%d,%d), in place */\n", i.c, i.h, i.w);
    else
        put(b, ": (%d,%d,%d) -> (%d,%d,%d) */\n", i.c, i.h, i.w, o.c, o.h, o.w);
    const char *name = array_prefix(op->kind);
    switch (op->kind) {
    case CNN_EXPORT_CONV:
        put(b,
            "    conv2d(scratch[%d], %s%d_w, %s%d_b, scratch[%d], %d, %d, %d, %d, %d, %d, %d, "
            "%d, %d);\n",
            x, name, op->index, name, op->index, y, i.c, i.h, i.w, o.c, o.h, o.w, op->k, op->stride,
            op->pad);
        *cur = y;
        break;
    case CNN_EXPORT_DENSE:
        put(b, "    dense(scratch[%d], %s%d_w, %s%d_b, scratch[%d], %zu, %d);\n", x, name,
            op->index, name, op->index, y, cnn_shape_size(i), o.c);
        *cur = y;
        break;
    case CNN_EXPORT_MAXPOOL:
    case CNN_EXPORT_AVGPOOL:
        put(b, "    %s(scratch[%d], scratch[%d], %d, %d, %d, %d, %d, %d, %d);\n",
            op->kind == CNN_EXPORT_MAXPOOL ? "maxpool" : "avgpool", x, y, i.c, i.h, i.w, o.h, o.w,
            op->k, op->stride);
        *cur = y;
        break;
    case CNN_EXPORT_RELU:
        put(b, "    relu(scratch[%d], %zu);\n", x, cnn_shape_size(i));
        break;
    case CNN_EXPORT_LEAKYRELU:
        put(b, "    leaky_relu(scratch[%d], %zu, ", x, cnn_shape_size(i));
        put_float(b, op->slope);
        put_text(b, ");\n");
        break;
    case CNN_EXPORT_BATCHNORM:
        put(b, "    affine(scratch[%d], %s%d_scale, %s%d_shift, %d, %d);\n", x, name, op->index,
            name, op->index, i.c, i.h * i.w);
        break;
    }
}

static void put_predict(struct cnn_buf *b, const struct cnn_model *m, const char *name,
                        const char *upper, const struct step *steps, int n,
                        const struct footprint *f) {
    put(b,
        "\n/* Activations: each step reads one buffer and writes the other, or works in place."
        "\n * The largest activation is %zu floats. */\n",
        f->act_floats);
    put(b, "static float scratch[2][%zu];\n", f->act_floats);
    put_kernels(b, steps, n);
    put(b, "\nint %s_predict(const unsigned char pixels[%s_PIXELS], float probs[%s_CLASSES]) {\n",
        name, upper, upper);
    put(b, "    normalise(pixels, scratch[0], %s_PIXELS);\n", upper);
    int cur = 0;
    for (int i = 0; i < n; i++) put_call(b, m, &steps[i], &cur);
    put(b, "    return softmax(scratch[%d], probs, %s_CLASSES);\n}\n", cur, upper);
}

/* The layers as spec text, "conv 32 5 pad=2, bn, ...", for the banners: comment lines that
 * start with " * " and break after a comma before column 100. */
static void put_spec(struct cnn_buf *b, const struct cnn_model *m, size_t col) {
    for (int i = 0; i < m->n_layers; i++) {
        char piece[96];
        layer_text(m, i + 1, piece, sizeof piece - 1);
        if (i + 1 < m->n_layers) strcat(piece, ",");
        if (i > 0 && col + 1 + strlen(piece) > 100) {
            put_text(b, "\n *   ");
            col = 5;
        } else if (i > 0) {
            put_text(b, " ");
            col++;
        }
        put_text(b, piece);
        col += strlen(piece);
    }
}

static void put_source(struct cnn_buf *b, const struct cnn_model *m, const char *name,
                       const char *upper, const struct step *steps, int n,
                       const struct footprint *f) {
    put(b,
        "/*\n * %s.c - generated by libcnn %s (cnn_model_export_c); see %s.h. Do not edit.\n"
        " * Input (%d,%d,%d); layers: ",
        name, CNN_VERSION_STRING, name, m->in.c, m->in.h, m->in.w);
    put_spec(b, m, 32);
    put_text(b, "\n */\n");
    if (f->max_index > 32767) put_text(b, "#include <limits.h>\n");
    put_text(b, "#include <math.h>\n");
    put(b, "\n#include \"%s.h\"\n", name);
    if (f->max_index > 32767)
        put(b,
            "\n#if INT_MAX < %zu\n#error \"this model indexes arrays of %zu floats with int\"\n"
            "#endif\n",
            f->max_index, f->max_index);
    put(b, "\n/* Input normalisation, (pixel / 255 - %.9g) / %.9g. */\n", (double)m->norm_mean,
        (double)m->norm_std);
    const float scale = 1.0f / (255.0f * m->norm_std), shift = m->norm_mean / m->norm_std;
    put_text(b, "static const float norm_scale = ");
    put_float(b, scale);
    put_text(b, ";\nstatic const float norm_shift = ");
    put_float(b, shift);
    put_text(b, ";\n");
    for (int i = 0; i < n; i++)
        if (steps[i].w) put_step_arrays(b, m, &steps[i]);
    put_predict(b, m, name, upper, steps, n, f);
}

/* ---- BASE.h ---------------------------------------------------------------------------------- */

static void put_header(struct cnn_buf *b, const struct cnn_model *m, const char *name,
                       const char *upper, const struct footprint *f) {
    put(b,
        "/*\n * %s.h - a classifier generated by libcnn %s (cnn_model_export_c). Do not edit.\n"
        " * Layers: ",
        name, CNN_VERSION_STRING);
    put_spec(b, m, 11);
    put(b,
        "\n *\n"
        " * %s_predict: pixels (%d,%d,%d) raw 0..255, row by row, laid out as the training\n"
        " * images (MNIST: 0 is the background); probs (%d) out, the class probabilities;\n"
        " * returns the most probable class (the first of equals).\n *\n",
        name, m->in.c, m->in.h, m->in.w, m->n_classes);
    put(b,
        " * Flash: %zu bytes of const weights (%zu floats; the code not counted).\n"
        " * RAM:   %zu bytes of static scratch (two buffers of %zu floats).\n"
        " * Stack: at most %d bytes (no arrays on it).\n"
        " * The scratch is static: one call at a time (not reentrant, not thread-safe).\n *\n",
        f->weight_floats * sizeof(float), f->weight_floats, 2 * f->act_floats * sizeof(float),
        f->act_floats, STACK_BOUND_BYTES);
    put(b,
        " * Build: C99, no allocation, no library but expf: cc -std=c99 -O2 -c %s.c, and link\n"
        " * with -lm.\n */\n",
        name);
    put(b, "#ifndef %s_H\n#define %s_H\n\n", upper, upper);
    put(b, "#define %s_CLASSES %d\n#define %s_PIXELS (%d * %d * %d)\n\n", upper, m->n_classes,
        upper, m->in.c, m->in.h, m->in.w);
    put(b, "int %s_predict(const unsigned char pixels[%s_PIXELS], float probs[%s_CLASSES]);\n\n",
        name, upper, upper);
    put(b, "#endif /* %s_H */\n", upper);
}

/* ---- files ----------------------------------------------------------------------------------- */

/* NAME, the last path component of base, checked to be a C identifier; upper, its macro form. */
static int name_of(const char *base, char *name, char *upper) {
    const char *slash = strrchr(base, '/');
    const char *s = slash ? slash + 1 : base;
    const size_t n = strlen(s);
    int ok = n > 0 && n <= NAME_MAX_LEN && !(s[0] >= '0' && s[0] <= '9');
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
             (s[i] >= '0' && s[i] <= '9') || s[i] == '_';
    if (!ok)
        return cnn_fail(CNN_ERR_ARG,
                        "%s: '%s' is not a C identifier (of at most %d characters; "
                        "give a path without extension)",
                        base, s, NAME_MAX_LEN);
    for (size_t i = 0; i <= n; i++) {
        name[i] = s[i];
        upper[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
    }
    return CNN_OK;
}

/* BASE.h, then BASE.c; if BASE.c fails, the BASE.h just written is removed. */
static int write_files(const char *base, const struct cnn_buf *hdr, const struct cnn_buf *src) {
    char hpath[PATH_MAX_LEN], cpath[PATH_MAX_LEN];
    const int hn = snprintf(hpath, sizeof hpath, "%s.h", base);
    const int cn = snprintf(cpath, sizeof cpath, "%s.c", base);
    if (hn < 0 || cn < 0 || (size_t)hn >= sizeof hpath || (size_t)cn >= sizeof cpath)
        return cnn_fail(CNN_ERR_ARG, "%s: path too long", base);
    int rc = cnn_write_file_atomic(hpath, hdr->p, hdr->len);
    if (rc) return rc;
    rc = cnn_write_file_atomic(cpath, src->p, src->len);
    if (rc) unlink(hpath);
    return rc;
}

int cnn_model_export_c(const struct cnn_model *m, const char *base) {
    if (!m || !base) return cnn_fail(CNN_ERR_ARG, "export c: no model or no path");
    char name[NAME_MAX_LEN + 1], upper[NAME_MAX_LEN + 1];
    int rc = name_of(base, name, upper);
    if (rc) return rc;
    struct cnn_export_op *ops = calloc((size_t)m->n_layers, sizeof *ops);
    struct step *steps = calloc((size_t)m->n_layers, sizeof *steps);
    struct cnn_buf hdr = {0}, src = {0};
    int n_steps = 0;
    if (!ops || !steps) {
        rc = cnn_fail(CNN_ERR_NOMEM, "export c: out of memory");
        goto fail;
    }
    if ((rc = cnn_export_walk(m, ops)) || (rc = plan_steps(m, ops, steps, &n_steps))) goto fail;
    if (!isfinite(1.0f / (255.0f * m->norm_std)) || !isfinite(m->norm_mean / m->norm_std)) {
        rc = cnn_fail(CNN_ERR_ARG,
                      "export c: input normalisation mean %g, std %g has no C "
                      "literal",
                      (double)m->norm_mean, (double)m->norm_std);
        goto fail;
    }
    const struct footprint f = measure(m, steps, n_steps);
    put_source(&src, m, name, upper, steps, n_steps, &f);
    put_header(&hdr, m, name, upper, &f);
    if (src.oom || hdr.oom) {
        rc = cnn_fail(CNN_ERR_NOMEM, "export c: out of memory for the source text");
        goto fail;
    }
    rc = write_files(base, &hdr, &src);
fail:
    for (int i = 0; i < n_steps; i++) {
        free(steps[i].w);
        free(steps[i].b);
    }
    free(steps);
    free(ops);
    free(hdr.p);
    free(src.p);
    return rc;
}
