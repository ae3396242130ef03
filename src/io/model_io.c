/*
 * model_io.c - model files: save, check, load. Little-endian, sectioned, CRC-32 protected.
 *
 *   "CNNMODEL" u32 version u32 flags
 *   { u32 tag, u64 length, bytes }*     SPEC NORM PARM STAT META [TYPI] [OPTM [EMAW] TRNS] "END "
 *   u32 crc32(everything above)
 *
 * TYPI (typicality.c, optional): u32 dim, u32 k, u32 n_cal, f32 w (dim, dim), f32 wmu (k, dim),
 * f32 cal (n_cal) ascending.
 *
 * META is key=value lines (model.c checks every key and value); version 1 files, which differ
 * only in which keys their writer set, load as they are.
 *
 * Loading never trusts a number from the file: the whole file is read with a size limit,
 * the CRC is checked before anything else is interpreted, every section length is checked
 * against the bytes that remain, and the net is rebuilt from the stored spec text with its
 * parameter count bounded by what the file actually holds, so a forged file cannot make us
 * allocate more than its own size. Unknown sections are skipped, so newer writers can add
 * them. Writes are atomic (cnn_write_file_atomic).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "internal.h"

static const char MAGIC[8] = {'C', 'N', 'N', 'M', 'O', 'D', 'E', 'L'};
#define HEADER_BYTES 16u

static uint32_t tag_u32(const char t[4]) {
    return (uint32_t)(uint8_t)t[0] | (uint32_t)(uint8_t)t[1] << 8 |
           (uint32_t)(uint8_t)t[2] << 16 | (uint32_t)(uint8_t)t[3] << 24;
}

void cnn_model_section(struct cnn_buf *b, const char tag[4], struct cnn_buf *s) {
    cnn_buf_u32(b, tag_u32(tag));
    cnn_buf_u64(b, s->len);
    cnn_buf_put(b, s->p, s->len);
    b->oom |= s->oom;
    free(s->p);
    memset(s, 0, sizeof *s);
}

void cnn_model_encode(const struct cnn_model *m, struct cnn_buf *b) {
    cnn_buf_put(b, MAGIC, sizeof MAGIC);
    cnn_buf_u32(b, CNN_MODEL_VERSION);
    cnn_buf_u32(b, 0);
    const size_t sl = strlen(m->spec);
    cnn_buf_u32(b, tag_u32("SPEC"));
    cnn_buf_u64(b, 12 + sl);
    cnn_buf_u32(b, (uint32_t)m->in.c);
    cnn_buf_u32(b, (uint32_t)m->in.h);
    cnn_buf_u32(b, (uint32_t)m->in.w);
    cnn_buf_put(b, m->spec, sl);
    cnn_buf_u32(b, tag_u32("NORM"));
    cnn_buf_u64(b, 8);
    cnn_buf_f32(b, m->norm_mean);
    cnn_buf_f32(b, m->norm_std);
    cnn_buf_u32(b, tag_u32("PARM"));
    cnn_buf_u64(b, 8 + 4 * m->n_params);
    cnn_buf_u64(b, m->n_params);
    cnn_buf_f32s(b, m->params, m->n_params);
    cnn_buf_u32(b, tag_u32("STAT"));
    cnn_buf_u64(b, 8 + 4 * m->n_state);
    cnn_buf_u64(b, m->n_state);
    cnn_buf_f32s(b, m->state, m->n_state);
    struct cnn_buf t = {0};
    for (int i = 0; i < m->n_meta; i++) {
        cnn_buf_put(&t, m->meta[i].key, strlen(m->meta[i].key));
        cnn_buf_put(&t, "=", 1);
        cnn_buf_put(&t, m->meta[i].value, strlen(m->meta[i].value));
        cnn_buf_put(&t, "\n", 1);
    }
    cnn_model_section(b, "META", &t);
    const struct cnn_typicality *ty = m->typicality;
    if (ty) {
        const size_t d = (size_t)ty->dim, k = (size_t)ty->k, nc = (size_t)ty->n_cal;
        cnn_buf_u32(b, tag_u32("TYPI"));
        cnn_buf_u64(b, 12 + 4 * (d * d + k * d + nc));
        cnn_buf_u32(b, (uint32_t)d);
        cnn_buf_u32(b, (uint32_t)k);
        cnn_buf_u32(b, (uint32_t)nc);
        cnn_buf_f32s(b, ty->w, d * d);
        cnn_buf_f32s(b, ty->wmu, k * d);
        cnn_buf_f32s(b, ty->cal, nc);
    }
}

int cnn_model_write(struct cnn_buf *b, const char *path) {
    cnn_buf_u32(b, tag_u32("END "));
    cnn_buf_u64(b, 0);
    int rc;
    if (b->oom) {
        rc = cnn_fail(CNN_ERR_NOMEM, "%s: out of memory encoding the model", path);
    } else {
        const uint32_t crc = (uint32_t)crc32(0L, b->p, (uInt)b->len);
        cnn_buf_u32(b, crc);
        rc = b->oom ? cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", path)
                    : cnn_write_file_atomic(path, b->p, b->len);
    }
    free(b->p);
    memset(b, 0, sizeof *b);
    return rc;
}

int cnn_model_save(const struct cnn_model *m, const char *path) {
    struct cnn_buf b = {0};
    cnn_model_encode(m, &b);
    return cnn_model_write(&b, path);
}

int cnn_model_check(const uint8_t *buf, size_t len, const char *name, uint32_t *version_out) {
    if (len < HEADER_BYTES + 12 + 4)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %zu bytes, too short to be a model file", name, len);
    if (memcmp(buf, MAGIC, sizeof MAGIC) != 0)
        return cnn_fail(CNN_ERR_FORMAT, "%s: not a model file (no CNNMODEL magic)", name);
    struct cnn_rd r = {buf, len - 4, 8};
    uint32_t version, flags, crc;
    cnn_rd_u32(&r, &version);
    cnn_rd_u32(&r, &flags);
    if (version < 1 || version > CNN_MODEL_VERSION)
        return cnn_fail(CNN_ERR_FORMAT, "%s: format version %u, this build reads versions 1 to %u",
                        name, version, CNN_MODEL_VERSION);
    if (version_out) *version_out = version;
    struct cnn_rd tail = {buf, len, len - 4};
    cnn_rd_u32(&tail, &crc);
    if ((uint32_t)crc32(0L, buf, (uInt)(len - 4)) != crc)
        return cnn_fail(CNN_ERR_FORMAT, "%s: checksum mismatch: the file is corrupt or truncated",
                        name);
    for (;;) {
        uint32_t tag;
        uint64_t n;
        const uint8_t *p;
        if (cnn_rd_u32(&r, &tag) || cnn_rd_u64(&r, &n))
            return cnn_fail(CNN_ERR_FORMAT, "%s: section header cut short at byte %zu", name,
                            r.pos);
        if (n > r.len - r.pos)
            return cnn_fail(CNN_ERR_FORMAT,
                            "%s: a section claims %llu bytes but only %zu remain", name,
                            (unsigned long long)n, r.len - r.pos);
        cnn_rd_bytes(&r, &p, (size_t)n);
        if (tag == tag_u32("END ")) break;
    }
    if (r.pos != r.len)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %zu stray bytes after the last section", name,
                        r.len - r.pos);
    return CNN_OK;
}

/* Assumes cnn_model_check passed. */
const uint8_t *cnn_model_find(const uint8_t *buf, size_t len, const char tag[4], size_t *n) {
    struct cnn_rd r = {buf, len - 4, HEADER_BYTES};
    const uint32_t want = tag_u32(tag);
    for (;;) {
        uint32_t t;
        uint64_t sz;
        const uint8_t *p;
        if (cnn_rd_u32(&r, &t) || cnn_rd_u64(&r, &sz) || cnn_rd_bytes(&r, &p, (size_t)sz))
            return NULL;
        if (t == want) {
            *n = (size_t)sz;
            return p;
        }
        if (t == tag_u32("END ")) return NULL;
    }
}

/* A PARM or STAT section: u64 count then count floats, exactly filling the section. */
static int read_floats(const uint8_t *buf, size_t len, const char *tag, const char *name,
                       size_t want, float *dst) {
    size_t n;
    const uint8_t *p = cnn_model_find(buf, len, tag, &n);
    if (!p) return cnn_fail(CNN_ERR_FORMAT, "%s: missing %.4s section", name, tag);
    struct cnn_rd r = {p, n, 0};
    uint64_t count;
    if (cnn_rd_u64(&r, &count) || count != want || n - 8 != 4 * want)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %.4s section holds %zu bytes, the spec needs %zu values",
                        name, tag, n, want);
    cnn_rd_f32s(&r, dst, want);
    return CNN_OK;
}

/* TYPI: sizes that fit m's layout and the section, finite values, calibration ascending. */
static int parse_typicality(const uint8_t *p, size_t n, const char *name, struct cnn_model *m) {
    struct cnn_rd r = {p, n, 0};
    uint32_t dim, k, nc;
    int *tap = malloc((size_t)m->n_layers * sizeof(int));
    if (!tap) return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", name);
    const uint32_t want = (uint32_t)cnn_typicality_layout(m, tap);
    free(tap);
    if (cnn_rd_u32(&r, &dim) || cnn_rd_u32(&r, &k) || cnn_rd_u32(&r, &nc) || dim != want ||
        k != (uint32_t)m->n_classes || nc < 1 || nc > CNN_TYPICALITY_CAL_MAX ||
        n != 12 + 4 * ((uint64_t)dim * dim + (uint64_t)k * dim + nc))
        return cnn_fail(CNN_ERR_FORMAT, "%s: TYPI section does not fit the network", name);
    struct cnn_typicality *ty = cnn_typicality_alloc((int)dim, (int)k, (int)nc);
    if (!ty) return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory", name);
    cnn_rd_f32s(&r, ty->w, (size_t)dim * dim);
    cnn_rd_f32s(&r, ty->wmu, (size_t)k * dim);
    cnn_rd_f32s(&r, ty->cal, nc);
    int ok = 1;
    for (size_t i = 0; i < (size_t)dim * dim; i++) ok &= isfinite(ty->w[i]);
    for (size_t i = 0; i < (size_t)k * dim; i++) ok &= isfinite(ty->wmu[i]);
    for (uint32_t i = 0; i < nc; i++)
        ok &= isfinite(ty->cal[i]) && (!i || ty->cal[i - 1] <= ty->cal[i]);
    if (!ok) {
        cnn_typicality_free(ty);
        return cnn_fail(CNN_ERR_FORMAT, "%s: TYPI section holds non-finite or unsorted values",
                        name);
    }
    m->typicality = ty;
    return CNN_OK;
}

/* META: key=value lines, each checked as cnn_model_set_meta checks what a caller sets. */
static int parse_meta(const uint8_t *p, size_t n, const char *name, struct cnn_model *m) {
    size_t pos = 0;
    for (int line = 1; pos < n; line++) {
        const uint8_t *nl = memchr(p + pos, '\n', n - pos);
        const size_t end = nl ? (size_t)(nl - p) : n, len = end - pos;
        char text[CNN_META_KEY + CNN_META_VALUE + 2];
        if (len >= sizeof text || memchr(p + pos, '\0', len))
            return cnn_fail(CNN_ERR_FORMAT, "%s: metadata line %d is too long or holds a NUL",
                            name, line);
        memcpy(text, p + pos, len);
        text[len] = '\0';
        pos = end + 1;
        char *eq = strchr(text, '=');
        if (!eq) return cnn_fail(CNN_ERR_FORMAT, "%s: metadata line %d has no '='", name, line);
        *eq = '\0';
        if (cnn_model_set_meta(m, text, eq + 1)) {
            char msg[300];
            snprintf(msg, sizeof msg, "%s", cnn_errmsg());
            return cnn_fail(CNN_ERR_FORMAT, "%s: metadata line %d: %s", name, line, msg);
        }
    }
    return CNN_OK;
}

int cnn_model_decode(const uint8_t *buf, size_t len, const char *name, struct cnn_model **out) {
    *out = NULL;
    size_t n;
    const uint8_t *p = cnn_model_find(buf, len, "SPEC", &n);
    if (!p || n < 13 || n > 12 + 4096)
        return cnn_fail(CNN_ERR_FORMAT, "%s: missing or malformed SPEC section", name);
    struct cnn_rd r = {p, n, 0};
    uint32_t c, h, w;
    cnn_rd_u32(&r, &c);
    cnn_rd_u32(&r, &h);
    cnn_rd_u32(&r, &w);
    char spec[4097];
    memcpy(spec, p + 12, n - 12);
    spec[n - 12] = '\0';
    if (strlen(spec) != n - 12)
        return cnn_fail(CNN_ERR_FORMAT, "%s: spec text contains a NUL byte", name);
    if (c < 1 || c > 64 || h < 1 || h > 4096 || w < 1 || w > 4096)
        return cnn_fail(CNN_ERR_FORMAT, "%s: input shape %ux%ux%u out of range", name, c, h, w);
    /* The parameter count can be no larger than the file: bound the model before building it. */
    struct cnn_model *m = NULL;
    int rc = cnn_model_new_bounded(spec, (int)c, (int)h, (int)w, len / 4, &m);
    if (rc == CNN_ERR_LIMIT)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: the stored spec needs more parameters than the file holds (%zu "
                        "bytes): truncated or forged",
                        name, len);
    if (rc) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", cnn_errmsg());
        return cnn_fail(CNN_ERR_FORMAT, "%s: stored spec is invalid: %s", name, msg);
    }
    if ((rc = read_floats(buf, len, "PARM", name, m->n_params, m->params))) goto fail;
    if ((rc = read_floats(buf, len, "STAT", name, m->n_state, m->state))) goto fail;
    p = cnn_model_find(buf, len, "NORM", &n);
    float ms[2] = {0.0f, 0.0f};
    struct cnn_rd nr = {p, p ? n : 0, 0};
    if (!p || n != 8 || cnn_rd_f32s(&nr, ms, 2) || !isfinite(ms[0]) || !isfinite(ms[1]) ||
        !(ms[1] > 0.0f)) {
        rc = cnn_fail(CNN_ERR_FORMAT, "%s: missing or invalid input normalisation (NORM)", name);
        goto fail;
    }
    cnn_model_set_norm(m, ms[0], ms[1]);
    p = cnn_model_find(buf, len, "META", &n);
    if (p && (rc = parse_meta(p, n, name, m))) goto fail;
    p = cnn_model_find(buf, len, "TYPI", &n);
    if (p && (rc = parse_typicality(p, n, name, m))) goto fail;
    cnn_model_prepare(m);
    *out = m;
    return CNN_OK;
fail:
    cnn_model_free(m);
    return rc;
}

int cnn_model_parse(const void *buf, size_t len, const char *name, struct cnn_model **out) {
    *out = NULL;
    int rc = cnn_model_check(buf, len, name, NULL);
    return rc ? rc : cnn_model_decode(buf, len, name, out);
}

int cnn_model_load(const char *path, struct cnn_model **out) {
    uint8_t *buf;
    size_t len;
    *out = NULL;
    int rc = cnn_read_file(path, CNN_MODEL_MAX_BYTES, &buf, &len);
    if (rc) return rc;
    rc = cnn_model_parse(buf, len, path, out);
    free(buf);
    return rc;
}
