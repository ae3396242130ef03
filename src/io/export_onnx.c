/*
 * export_onnx.c - a model as an ONNX file, for ONNX Runtime, Netron, TensorRT, OpenVINO.
 *
 * What is written (ONNX IR version 7, default-domain opset 13, which Debian's python3-onnx
 * 1.12 checks): input "pixels", float (N, C, H, W), raw 0..255; Mul and Add apply the model's
 * normalisation (pixel/255 - mean)/std; then each layer's export op (export.c) becomes
 * Conv, BatchNormalization (or is folded into the Conv or Gemm before it), Relu, LeakyRelu,
 * MaxPool, AveragePool, Flatten or Gemm (after a Flatten when its input is not flat); dropout
 * becomes nothing. Outputs "logits" and "probs" (Softmax), float (N, classes). N is the
 * symbolic dimension "N". The graph's doc_string holds the spec; metadata_props hold the spec,
 * the normalisation and every metadata key of the model (training recipe, class names).
 *
 * The protobuf encoding is written here, not with protobuf-c: an ONNX model needs five message
 * types written forwards (varints, length-delimited fields, fixed 32-bit floats), about a
 * hundred lines, against a generated onnx.pb-c.c of several thousand and a runtime library
 * for every program that links libcnn. Field numbers are those of onnx.proto (ONNX 1.12);
 * float tensors go in raw_data, little-endian whatever the host. A message is built in its
 * own buffer (struct cnn_buf, fileio.c) and appended to its parent with its length.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ONNX_IR_VERSION 7
#define ONNX_OPSET 13
#define ONNX_FLOAT 1 /* TensorProto.DataType FLOAT */

/* ---- protobuf, written forwards ------------------------------------------------------------ */

static void pb_varint(struct cnn_buf *b, uint64_t v) {
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    cnn_buf_put(b, t, n);
}

enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static void pb_key(struct cnn_buf *b, int field, int wire) { pb_varint(b, (uint64_t)field << 3 | wire); }

static void pb_int(struct cnn_buf *b, int field, int64_t v) {
    pb_key(b, field, WIRE_VARINT);
    pb_varint(b, (uint64_t)v);
}

static void pb_bytes(struct cnn_buf *b, int field, const void *d, size_t n) {
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, n);
    cnn_buf_put(b, d, n);
}

static void pb_str(struct cnn_buf *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

static void pb_float(struct cnn_buf *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    pb_key(b, field, WIRE_FIXED32);
    cnn_buf_u32(b, u); /* little-endian */
}

/* Append child as field `field` of b, and free it. */
static void pb_msg(struct cnn_buf *b, int field, struct cnn_buf *child) {
    if (child->oom) b->oom = 1;
    pb_bytes(b, field, child->p, child->len);
    free(child->p);
    memset(child, 0, sizeof *child);
}

/* ---- ONNX messages ------------------------------------------------------------------------- */

/* TensorProto: a float initializer named name, dims[0..nd), data little-endian in raw_data. */
static void onnx_tensor(struct cnn_buf *graph, const char *name, const int64_t *dims, int nd,
                        const float *data) {
    struct cnn_buf t = {0};
    size_t count = 1;
    for (int i = 0; i < nd; i++) {
        pb_int(&t, 1, dims[i]);
        count *= (size_t)dims[i];
    }
    pb_int(&t, 2, ONNX_FLOAT);
    pb_str(&t, 8, name);
    struct cnn_buf raw = {0};
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        cnn_buf_u32(&raw, u); /* little-endian, whatever the host */
    }
    if (raw.oom) t.oom = 1;
    pb_bytes(&t, 9, raw.p, raw.len);
    free(raw.p);
    pb_msg(graph, 5, &t); /* GraphProto.initializer */
}

/* ValueInfoProto: a float tensor with dims "N" then dims[0..nd) (field 11 input, 12 output). */
static void onnx_value_info(struct cnn_buf *graph, int field, const char *name, const int *dims,
                            int nd) {
    struct cnn_buf shape = {0}, tensor = {0}, type = {0}, vi = {0}, dim = {0};
    pb_str(&dim, 2, "N"); /* Dimension.dim_param */
    pb_msg(&shape, 1, &dim);
    for (int i = 0; i < nd; i++) {
        pb_int(&dim, 1, dims[i]); /* Dimension.dim_value */
        pb_msg(&shape, 1, &dim);
    }
    pb_int(&tensor, 1, ONNX_FLOAT); /* TypeProto.Tensor.elem_type */
    pb_msg(&tensor, 2, &shape);
    pb_msg(&type, 1, &tensor); /* TypeProto.tensor_type */
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &type);
    pb_msg(graph, field, &vi);
}

/* AttributeProto of type INT (2), FLOAT (1) or INTS (7). */
static void attr_int(struct cnn_buf *node, const char *name, int64_t v) {
    struct cnn_buf a = {0};
    pb_str(&a, 1, name);
    pb_int(&a, 3, v);
    pb_int(&a, 20, 2);
    pb_msg(node, 5, &a);
}

static void attr_float(struct cnn_buf *node, const char *name, float v) {
    struct cnn_buf a = {0};
    pb_str(&a, 1, name);
    pb_float(&a, 2, v);
    pb_int(&a, 20, 1);
    pb_msg(node, 5, &a);
}

static void attr_ints(struct cnn_buf *node, const char *name, const int64_t *v, int n) {
    struct cnn_buf a = {0};
    pb_str(&a, 1, name);
    for (int i = 0; i < n; i++) pb_int(&a, 8, v[i]);
    pb_int(&a, 20, 7);
    pb_msg(node, 5, &a);
}

/* ---- the graph ----------------------------------------------------------------------------- */

/* The graph being built: its message, and the name of the value the next node reads. */
struct graph {
    struct cnn_buf pb;
    char cur[32];
    int n_nodes;
};

/* NodeProto op reading g->cur and extra inputs (initializer names), writing a fresh value that
 * becomes g->cur (or `output` when given). Returns the node, to add attributes; the caller
 * ends it with node_end. */
static void node_begin(struct graph *g, struct cnn_buf *node, const char *op, const char *const *extra,
                       int n_extra, const char *output) {
    memset(node, 0, sizeof *node);
    pb_str(node, 1, g->cur);
    for (int i = 0; i < n_extra; i++) pb_str(node, 1, extra[i]);
    if (output)
        snprintf(g->cur, sizeof g->cur, "%s", output);
    else
        snprintf(g->cur, sizeof g->cur, "t%d", g->n_nodes);
    pb_str(node, 2, g->cur);
    char name[48];
    snprintf(name, sizeof name, "%s_%d", op, g->n_nodes++);
    pb_str(node, 3, name);
    pb_str(node, 4, op);
}

static void node_end(struct graph *g, struct cnn_buf *node) { pb_msg(&g->pb, 1, node); }

static void node_plain(struct graph *g, const char *op, const char *const *extra, int n_extra,
                       const char *output) {
    struct cnn_buf node;
    node_begin(g, &node, op, extra, n_extra, output);
    node_end(g, &node);
}

/* Weights w (rows, per_row) and bias b (rows), scaled per row by a and shifted by shift when a
 * is given (a batch norm folded in): w' = a w, b' = a b + shift. Written as initializers
 * "<prefix>_w" with dims wdims, "<prefix>_b". */
static int weights(struct graph *g, const char *prefix, const float *w, const float *b, int rows,
                   size_t per_row, const float *a, const float *shift, const int64_t *wdims,
                   int nd) {
    float *fw = malloc((size_t)rows * per_row * sizeof *fw), *fb = malloc((size_t)rows * sizeof *fb);
    if (!fw || !fb) {
        free(fw);
        free(fb);
        return cnn_fail(CNN_ERR_NOMEM, "export: out of memory");
    }
    for (int r = 0; r < rows; r++) {
        for (size_t i = 0; i < per_row; i++)
            fw[(size_t)r * per_row + i] = a ? w[(size_t)r * per_row + i] * a[r] : w[(size_t)r * per_row + i];
        fb[r] = a ? b[r] * a[r] + shift[r] : b[r];
    }
    char name[40];
    snprintf(name, sizeof name, "%s_w", prefix);
    onnx_tensor(&g->pb, name, wdims, nd, fw);
    snprintf(name, sizeof name, "%s_b", prefix);
    const int64_t bdims[1] = {rows};
    onnx_tensor(&g->pb, name, bdims, 1, fb);
    free(fw);
    free(fb);
    return CNN_OK;
}

/* Batch norm, unfolded: BatchNormalization with its four per-channel initializers. */
static void emit_batchnorm(struct graph *g, const struct cnn_export_op *op) {
    const int64_t dims[1] = {op->in.c};
    const char *what[4] = {"scale", "bias", "mean", "var"};
    const float *data[4] = {op->w, op->b, op->mean, op->var};
    char names[4][40];
    const char *extra[4];
    for (int i = 0; i < 4; i++) {
        snprintf(names[i], sizeof names[i], "bn%d_%s", op->index, what[i]);
        onnx_tensor(&g->pb, names[i], dims, 1, data[i]);
        extra[i] = names[i];
    }
    struct cnn_buf node;
    node_begin(g, &node, "BatchNormalization", extra, 4, NULL);
    attr_float(&node, "epsilon", op->eps);
    node_end(g, &node);
}

/* Conv or Gemm, with the batch norm `bn` after it folded in when bn is not NULL. */
static int emit_weighted(struct graph *g, const struct cnn_export_op *op,
                         const struct cnn_export_op *bn, int *flat) {
    const int conv = op->kind == CNN_EXPORT_CONV;
    const int rows = conv ? op->out.c : op->out.c * op->out.h * op->out.w;
    const size_t per_row = conv ? (size_t)op->in.c * (size_t)op->k * (size_t)op->k
                                : (size_t)op->in.c * (size_t)op->in.h * (size_t)op->in.w;
    float *a = NULL, *shift = NULL;
    if (bn) {
        a = malloc((size_t)rows * sizeof *a);
        shift = malloc((size_t)rows * sizeof *shift);
        if (!a || !shift) {
            free(a);
            free(shift);
            return cnn_fail(CNN_ERR_NOMEM, "export: out of memory");
        }
        cnn_export_bn_affine(bn, rows, a, shift);
    }
    char prefix[24];
    snprintf(prefix, sizeof prefix, "%s%d", conv ? "conv" : "dense", op->index);
    const int64_t wconv[4] = {rows, op->in.c, op->k, op->k}, wdense[2] = {rows, (int64_t)per_row};
    const int rc = weights(g, prefix, op->w, op->b, rows, per_row, a, shift, conv ? wconv : wdense,
                           conv ? 4 : 2);
    free(a);
    free(shift);
    if (rc != CNN_OK) return rc;
    if (!conv && !*flat) node_plain(g, "Flatten", NULL, 0, NULL); /* axis 1, the default */
    char wname[40], bname[40];
    snprintf(wname, sizeof wname, "%s_w", prefix);
    snprintf(bname, sizeof bname, "%s_b", prefix);
    const char *extra[2] = {wname, bname};
    struct cnn_buf node;
    node_begin(g, &node, conv ? "Conv" : "Gemm", extra, 2, NULL);
    if (conv) {
        const int64_t k[2] = {op->k, op->k}, s[2] = {op->stride, op->stride};
        const int64_t p[4] = {op->pad, op->pad, op->pad, op->pad};
        attr_ints(&node, "kernel_shape", k, 2);
        attr_ints(&node, "strides", s, 2);
        attr_ints(&node, "pads", p, 4);
    } else {
        attr_int(&node, "transB", 1);
    }
    node_end(g, &node);
    *flat = !conv;
    return CNN_OK;
}

static void emit_pool(struct graph *g, const struct cnn_export_op *op) {
    struct cnn_buf node;
    node_begin(g, &node, op->kind == CNN_EXPORT_MAXPOOL ? "MaxPool" : "AveragePool", NULL, 0,
               NULL);
    const int64_t k[2] = {op->k, op->k}, s[2] = {op->stride, op->stride};
    attr_ints(&node, "kernel_shape", k, 2);
    attr_ints(&node, "strides", s, 2);
    node_end(g, &node);
}

/* Every op after the normalisation, then logits and probs. */
static int emit_layers(struct graph *g, const struct cnn_export_op *ops, int n, int fold) {
    int flat = 0;
    for (int i = 0; i < n; i++) {
        const struct cnn_export_op *op = &ops[i];
        const int folds = fold && i + 1 < n && ops[i + 1].kind == CNN_EXPORT_BATCHNORM &&
                          (op->kind == CNN_EXPORT_CONV || op->kind == CNN_EXPORT_DENSE);
        int rc = CNN_OK;
        switch (op->kind) {
        case CNN_EXPORT_IDENTITY: break;
        case CNN_EXPORT_CONV:
        case CNN_EXPORT_DENSE: rc = emit_weighted(g, op, folds ? &ops[i + 1] : NULL, &flat); break;
        case CNN_EXPORT_BATCHNORM: emit_batchnorm(g, op); break;
        case CNN_EXPORT_RELU: node_plain(g, "Relu", NULL, 0, NULL); break;
        case CNN_EXPORT_LEAKYRELU: {
            struct cnn_buf node;
            node_begin(g, &node, "LeakyRelu", NULL, 0, NULL);
            attr_float(&node, "alpha", op->slope);
            node_end(g, &node);
            break;
        }
        case CNN_EXPORT_MAXPOOL:
        case CNN_EXPORT_AVGPOOL: emit_pool(g, op); break;
        case CNN_EXPORT_FLATTEN:
            node_plain(g, "Flatten", NULL, 0, NULL);
            flat = 1;
            break;
        default:
            return cnn_fail(CNN_ERR_ARG, "layer %d: export kind %d has no ONNX form", op->index,
                            op->kind);
        }
        if (rc != CNN_OK) return rc;
        if (folds) i++; /* the batch norm is in the weights */
    }
    if (!flat) node_plain(g, "Flatten", NULL, 0, NULL);
    node_plain(g, "Identity", NULL, 0, "logits");
    struct cnn_buf node;
    node_begin(g, &node, "Softmax", NULL, 0, "probs");
    attr_int(&node, "axis", 1);
    node_end(g, &node);
    return CNN_OK;
}

/* Input normalisation: pixels * scale + shift, scale = 1 / (255 std), shift = -mean / std. */
static void emit_normalisation(struct graph *g, const struct cnn_model *m) {
    const float scale = 1.0f / (255.0f * m->norm_std), shift = -m->norm_mean / m->norm_std;
    onnx_tensor(&g->pb, "norm_scale", NULL, 0, &scale);
    onnx_tensor(&g->pb, "norm_shift", NULL, 0, &shift);
    snprintf(g->cur, sizeof g->cur, "pixels");
    const char *s1[1] = {"norm_scale"}, *s2[1] = {"norm_shift"};
    node_plain(g, "Mul", s1, 1, NULL);
    node_plain(g, "Add", s2, 1, NULL);
}

static void metadata(struct cnn_buf *model, const char *key, const char *value) {
    struct cnn_buf kv = {0};
    pb_str(&kv, 1, key);
    pb_str(&kv, 2, value);
    pb_msg(model, 14, &kv);
}

/* The ModelProto around the graph: versions, producer, opset, doc and metadata. */
static void onnx_model(struct cnn_buf *model, struct graph *g, const struct cnn_model *m) {
    pb_int(model, 1, ONNX_IR_VERSION);
    pb_str(model, 2, "libcnn");
    pb_str(model, 3, cnn_version());
    char doc[CNN_SPEC_MAX_LEN + 64];
    snprintf(doc, sizeof doc, "libcnn network: %s", m->spec);
    pb_str(model, 6, doc);
    pb_msg(model, 7, &g->pb);
    struct cnn_buf opset = {0};
    pb_int(&opset, 2, ONNX_OPSET);
    pb_msg(model, 8, &opset);
    metadata(model, "spec", m->spec);
    char norm[64];
    snprintf(norm, sizeof norm, "%.9g %.9g", (double)m->norm_mean, (double)m->norm_std);
    metadata(model, "norm_mean_std", norm);
    for (int i = 0; i < m->n_meta; i++) metadata(model, m->meta[i].key, m->meta[i].value);
}

int cnn_model_export_onnx(const struct cnn_model *m, const char *path, int flags) {
    if (!m || !path || (flags & ~CNN_ONNX_FOLD_BN))
        return cnn_fail(CNN_ERR_ARG, "export: no model, no path, or unknown flags %d", flags);
    struct cnn_export_op *ops = calloc((size_t)m->n_layers, sizeof *ops);
    if (!ops) return cnn_fail(CNN_ERR_NOMEM, "export: out of memory");
    struct graph g = {0};
    struct cnn_buf model = {0};
    int rc = cnn_export_walk(m, ops);
    if (rc != CNN_OK) goto done;
    pb_str(&g.pb, 2, "mnist");
    char doc[CNN_SPEC_MAX_LEN];
    snprintf(doc, sizeof doc, "%s", m->spec);
    pb_str(&g.pb, 10, doc);
    const int in_dims[3] = {m->in.c, m->in.h, m->in.w}, out_dims[1] = {m->n_classes};
    onnx_value_info(&g.pb, 11, "pixels", in_dims, 3);
    emit_normalisation(&g, m);
    rc = emit_layers(&g, ops, m->n_layers, flags & CNN_ONNX_FOLD_BN);
    if (rc != CNN_OK) goto done;
    onnx_value_info(&g.pb, 12, "logits", out_dims, 1);
    onnx_value_info(&g.pb, 12, "probs", out_dims, 1);
    onnx_model(&model, &g, m);
    if (model.oom) {
        rc = cnn_fail(CNN_ERR_NOMEM, "%s: out of memory building the ONNX file", path);
        goto done;
    }
    rc = cnn_write_file_atomic(path, model.p, model.len);
done:
    free(ops);
    free(g.pb.p);
    free(model.p);
    return rc;
}
