/*
 * idx.c - strict reader for IDX files (the MNIST distribution format) and MNIST-style datasets.
 *
 * An IDX file is: two zero bytes, a data-type byte, a dimension-count byte, that many big-endian
 * u32 dimensions, then the data, row-major. We accept only what MNIST-like sets use: type 0x08
 * (unsigned byte) with 1 dimension (labels: N) or 3 dimensions (images: N, H, W).
 *
 * What it is: the opposite of ggml's `seekg(16)`. Every header field is checked, each dimension
 * is bounded before it is used, size products are overflow-checked, and the file must hold
 * exactly the bytes its header implies, no more and no fewer.
 * Gzip is detected by content (magic 1f 8b), never by file name, and inflated with zlib into a
 * buffer sized from the decompressed header, so a small hostile .gz can never make us allocate
 * or write more than its header-implied size (plus a 1-byte probe, kept on the stack).
 * What it is not: a general IDX reader (no signed, 16/32-bit or float types, no other ranks).
 *
 * Nothing here prints or exits; every error goes through cnn_fail with one line naming the file,
 * what was found and what was expected.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "internal.h"

/* Safety limits. MNIST is 60000 x 28 x 28 (47 MB); these leave room for bigger sets while
 * keeping a forged header from asking for absurd sizes. */
#define IDX_MAX_BYTES ((size_t)1 << 30) /* file on disk, and header + payload after gunzip */
#define IDX_MAX_ITEMS 100000000u        /* dims[0]: number of images or labels */
#define IDX_MAX_SIDE 4096u              /* image height and width */
#define IDX_TYPE_U8 0x08
#define IDX_MAX_HEADER (4 + 4 * CNN_IDX_MAX_DIMS)

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static size_t header_bytes(int ndim) {
    return 4 + 4 * (size_t)ndim;
}

/* "60000 x 28 x 28" into buf, for messages. */
static const char *dims_str(const struct cnn_idx *h, char *buf, size_t len) {
    int off = snprintf(buf, len, "dims %d", h->dims[0]);
    for (int i = 1; i < h->ndim && off > 0 && (size_t)off < len; i++)
        off += snprintf(buf + off, len - (size_t)off, " x %d", h->dims[i]);
    return buf;
}

/* Check the 4-byte magic at p (len bytes available). Sets *ndim (1 or 3).
 * `src` qualifies the name in messages: "" for raw files, " (gunzipped)" for gzip content. */
static int parse_magic(const uint8_t *p, size_t len, const char *name, const char *src, int *ndim) {
    if (len == 0)
        return cnn_fail(CNN_ERR_FORMAT, "%s%s: empty, expected an IDX header (at least 8 bytes)",
                        name, src);
    if (len < 4)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s%s: only %zu bytes, shorter than the 4-byte IDX magic (truncated)", name,
                        src, len);
    const uint32_t magic = be32(p);
    if (p[0] != 0 || p[1] != 0)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s%s: magic 0x%08x, expected 0x00000801 or 0x00000803 "
                        "(IDX u8, 1 or 3 dims): not an IDX file",
                        name, src, (unsigned)magic);
    if (p[2] != IDX_TYPE_U8)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s%s: magic 0x%08x has data type 0x%02x, expected 0x08 "
                        "(unsigned byte; the only IDX type supported)",
                        name, src, (unsigned)magic, (unsigned)p[2]);
    if (p[3] != 1 && p[3] != 3)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s%s: magic 0x%08x has %u dimensions, expected 1 (labels) or 3 "
                        "(images)",
                        name, src, (unsigned)magic, (unsigned)p[3]);
    *ndim = p[3];
    return CNN_OK;
}

/* Read and bound the dimensions after a valid magic (len bytes available at p). Fills
 * h->ndim, h->dims and h->size (the payload bytes); h->data is untouched.
 * Errors: FORMAT for a short header or a zero / out-of-range dimension, LIMIT when the implied
 * header + payload exceeds IDX_MAX_BYTES. Nothing is allocated, whatever the header says. */
static int parse_dims(const uint8_t *p, size_t len, const char *name, const char *src, int ndim,
                      struct cnn_idx *h) {
    static const char *const what[2][CNN_IDX_MAX_DIMS] = {{"item count", "", ""},
                                                          {"item count", "height", "width"}};
    const size_t hdr = header_bytes(ndim);
    if (len < hdr)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s%s: only %zu bytes, shorter than the %zu-byte header of a %d-D IDX "
                        "file (truncated)",
                        name, src, len, hdr, ndim);
    uint64_t size = 1; /* payload bytes; the limits below keep it far from overflow */
    for (int i = 0; i < ndim; i++) {
        const uint32_t d = be32(p + 4 + 4 * (size_t)i);
        const char *const dn = what[ndim == 3][i];
        const uint32_t max = i == 0 ? IDX_MAX_ITEMS : IDX_MAX_SIDE;
        if (d == 0)
            return cnn_fail(CNN_ERR_FORMAT, "%s%s: %s (dimension %d) is 0, expected at least 1",
                            name, src, dn, i);
        if (d > max)
            return cnn_fail(CNN_ERR_FORMAT, "%s%s: %s (dimension %d) is %u, expected at most %u",
                            name, src, dn, i, (unsigned)d, (unsigned)max);
        if (size > UINT64_MAX / d)
            return cnn_fail(CNN_ERR_LIMIT, "%s%s: dimensions overflow a 64-bit size", name, src);
        size *= d;
        h->dims[i] = (int)d;
    }
    if (size > (uint64_t)(IDX_MAX_BYTES - hdr))
        return cnn_fail(CNN_ERR_LIMIT,
                        "%s%s: header implies %llu data bytes, over the limit of %zu "
                        "(1 GiB)",
                        name, src, (unsigned long long)size, IDX_MAX_BYTES);
    for (int i = ndim; i < CNN_IDX_MAX_DIMS; i++) h->dims[i] = 0;
    h->ndim = ndim;
    h->size = (size_t)size;
    return CNN_OK;
}

/* ---- gzip ---------------------------------------------------------------------------------
 * A bounded pull decoder: gz_read inflates at most n bytes into dst, feeding input in
 * uInt-sized chunks, so the caller alone decides how much is ever produced. */
struct gz {
    z_stream zs;
    const uint8_t *in; /* input not yet handed to zs */
    size_t in_left;
    int ended; /* Z_STREAM_END seen: the gzip trailer (CRC-32, length) has been verified */
};

/* Inflate up to n bytes into dst; *got = bytes produced. Returns Z_OK when n bytes were
 * produced, Z_STREAM_END when the stream ended (possibly with *got < n), Z_BUF_ERROR when the
 * input ran out before the end marker, or another zlib error (Z_DATA_ERROR, Z_MEM_ERROR...). */
static int gz_read(struct gz *g, uint8_t *dst, size_t n, size_t *got) {
    *got = 0;
    if (g->ended) return Z_STREAM_END;
    while (*got < n) {
        if (g->zs.avail_in == 0 && g->in_left > 0) {
            const size_t chunk = g->in_left < UINT_MAX ? g->in_left : UINT_MAX;
            g->zs.next_in = (Bytef *)(uintptr_t)g->in; /* zlib's API lacks const */
            g->zs.avail_in = (uInt)chunk;
            g->in += chunk;
            g->in_left -= chunk;
        }
        const size_t want = n - *got < UINT_MAX ? n - *got : UINT_MAX;
        g->zs.next_out = dst + *got;
        g->zs.avail_out = (uInt)want;
        const int r = inflate(&g->zs, Z_NO_FLUSH);
        *got += want - g->zs.avail_out;
        if (r == Z_STREAM_END) {
            g->ended = 1;
            return Z_STREAM_END;
        }
        if (r != Z_OK) return r; /* Z_BUF_ERROR here means no progress: input exhausted */
    }
    return Z_OK;
}

/* Turn a zlib failure from gz_read into a status and message. `at` is the count of
 * decompressed bytes so far, `expect` the total the header implies (0 while unknown). */
static int gz_fail(const struct gz *g, int r, const char *name, size_t at, size_t expect) {
    char exp[48] = "";
    if (expect) snprintf(exp, sizeof exp, " of the %zu expected", expect);
    if (r == Z_MEM_ERROR)
        return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory while decompressing gzip", name);
    if (r == Z_BUF_ERROR && g->zs.avail_in == 0 && g->in_left == 0)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: gzip stream truncated after %zu decompressed bytes%s "
                        "(input ended before the gzip end marker)",
                        name, at, exp);
    const char *msg = g->zs.msg ? g->zs.msg : "unknown error";
    if (strcmp(msg, "incorrect data check") == 0)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: gzip CRC-32 mismatch (incorrect data check), the data is corrupt",
                        name);
    return cnn_fail(CNN_ERR_FORMAT, "%s: corrupt gzip data after %zu decompressed bytes: %s (%d)",
                    name, at, msg, r);
}

/* The decompressed header into *h: the magic first (it says how many dimension words
 * follow), then the dimensions, each checked. */
static int gz_read_header(struct gz *g, const char *name, const char *src, struct cnn_idx *h,
                     int *ndim) {
    uint8_t hdr[IDX_MAX_HEADER];
    size_t got, got2;
    int rc, r = gz_read(g, hdr, 4, &got);
    if (r != Z_OK && r != Z_STREAM_END) return gz_fail(g, r, name, got, 0);
    if ((rc = parse_magic(hdr, got, name, src, ndim)) != CNN_OK) return rc;
    r = gz_read(g, hdr + 4, 4 * (size_t)*ndim, &got2);
    if (r != Z_OK && r != Z_STREAM_END) return gz_fail(g, r, name, 4 + got2, 0);
    return parse_dims(hdr, 4 + got2, name, src, *ndim, h);
}

/* After the payload: a 1-byte probe must find the end of the stream, and nothing may follow
 * the gzip member. hb is the header's size, for the messages. */
static int gz_check_end(struct gz *g, const char *name, const char *src, const struct cnn_idx *h,
                     size_t hb) {
    char ds[64];
    uint8_t probe;
    size_t got;
    const int r = gz_read(g, &probe, 1, &got);
    if (got > 0)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s%s: more than the %zu bytes its header (%s) implies: trailing data",
                        name, src, hb + h->size, dims_str(h, ds, sizeof ds));
    if (r != Z_STREAM_END) return gz_fail(g, r, name, hb + h->size, hb + h->size);
    const size_t rest = g->zs.avail_in + g->in_left;
    if (rest > 0)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: %zu bytes of trailing garbage after the gzip stream, expected none "
                        "(one gzip member per file)",
                        name, rest);
    return CNN_OK;
}

/* Decompress a whole gzip member holding one IDX file. Allocates exactly h->size bytes, and
 * only after the decompressed header has passed every check. */
static int parse_gzip(const uint8_t *buf, size_t len, const char *name, struct cnn_idx *out) {
    static const char src[] = " (gunzipped)";
    struct gz g;
    memset(&g, 0, sizeof g);
    g.in = buf;
    g.in_left = len;
    if (inflateInit2(&g.zs, 16 + MAX_WBITS) != Z_OK) /* 16+: gzip wrapper only, no zlib/raw */
        return cnn_fail(CNN_ERR_NOMEM, "%s: cannot initialise zlib", name);
    uint8_t *data = NULL;
    struct cnn_idx h;
    memset(&h, 0, sizeof h);
    char ds[64];
    int rc, r, ndim = 0;
    size_t got, hb;
    if ((rc = gz_read_header(&g, name, src, &h, &ndim)) != CNN_OK) goto fail;
    /* The payload: exactly h.size bytes. deflate expands at most 1032:1, so a header claiming
     * more than that from this many compressed bytes is a lie: refuse it before allocating (a
     * 33-byte file must not make us allocate a gigabyte). */
    hb = header_bytes(ndim);
    if (h.size / 1032 > len) {
        rc = cnn_fail(CNN_ERR_FORMAT,
                      "%s%s: header (%s) implies %zu bytes, more than %zu compressed bytes can "
                      "hold: data truncated or header forged",
                      name, src, dims_str(&h, ds, sizeof ds), hb + h.size, len);
        goto fail;
    }
    data = malloc(h.size);
    if (!data) {
        rc = cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %zu bytes for %s", name, h.size,
                      dims_str(&h, ds, sizeof ds));
        goto fail;
    }
    r = gz_read(&g, data, h.size, &got);
    if (r != Z_OK && r != Z_STREAM_END) {
        rc = gz_fail(&g, r, name, hb + got, hb + h.size);
        goto fail;
    }
    if (got < h.size) {
        rc = cnn_fail(CNN_ERR_FORMAT,
                      "%s%s: %zu bytes, but its header (%s) implies %zu bytes: data truncated",
                      name, src, hb + got, dims_str(&h, ds, sizeof ds), hb + h.size);
        goto fail;
    }
    if ((rc = gz_check_end(&g, name, src, &h, hb)) != CNN_OK) goto fail;
    inflateEnd(&g.zs);
    h.data = data;
    *out = h;
    return CNN_OK;
fail:
    inflateEnd(&g.zs);
    free(data);
    return rc;
}

/* A raw IDX file in memory: the header must match the length exactly. Sets *out's header
 * fields and *hb (header bytes); the payload is buf + *hb, not yet copied. */
static int check_raw(const uint8_t *buf, size_t len, const char *name, struct cnn_idx *out,
                     size_t *hb) {
    memset(out, 0, sizeof *out);
    int ndim = 0, rc;
    if ((rc = parse_magic(buf, len, name, "", &ndim)) != CNN_OK) return rc;
    if ((rc = parse_dims(buf, len, name, "", ndim, out)) != CNN_OK) return rc;
    *hb = header_bytes(ndim);
    char ds[64];
    if (len - *hb != out->size)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: file is %zu bytes, but its header (%s) implies %zu bytes: %s", name,
                        len, dims_str(out, ds, sizeof ds), *hb + out->size,
                        len - *hb < out->size ? "data truncated" : "trailing data");
    return CNN_OK;
}

/* A raw IDX file in memory, borrowed: copies the payload. */
static int parse_raw(const uint8_t *buf, size_t len, const char *name, struct cnn_idx *out) {
    struct cnn_idx h;
    size_t hb;
    const int rc = check_raw(buf, len, name, &h, &hb);
    if (rc) return rc;
    h.data = malloc(h.size);
    if (!h.data) {
        char ds[64];
        return cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %zu bytes for %s", name, h.size,
                        dims_str(&h, ds, sizeof ds));
    }
    memcpy(h.data, buf + hb, h.size);
    *out = h;
    return CNN_OK;
}

/* A raw IDX file in memory that the caller gives away (malloc'ed): the payload moves to its
 * start and the buffer becomes out->data, so the file's bytes are never copied to new memory
 * (a fresh 47 MB buffer costs 0.2 s of page faults on a virtual machine). *buf is NULL after
 * success. */
static int parse_raw_owned(uint8_t **buf, size_t len, const char *name, struct cnn_idx *out) {
    struct cnn_idx h;
    size_t hb;
    const int rc = check_raw(*buf, len, name, &h, &hb);
    if (rc) return rc;
    memmove(*buf, *buf + hb, h.size);
    uint8_t *shrunk = realloc(*buf, h.size ? h.size : 1);
    h.data = shrunk ? shrunk : *buf; /* a failed shrink keeps the larger buffer */
    *buf = NULL;
    *out = h;
    return CNN_OK;
}

static int is_gzip(const uint8_t *p, size_t len) {
    return len >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

/* Parse an IDX file held in memory, raw or gzip (told apart by the gzip magic 1f 8b).
 * buf: len bytes, borrowed, not kept. name: used only in error messages (NULL: "<memory>").
 * On success *out holds ndim (1 or 3), dims, size and an owned copy of the payload; free it
 * with cnn_idx_free. On failure *out is zeroed and the status is CNN_ERR_FORMAT (bad content),
 * CNN_ERR_LIMIT (implied size over 1 GiB), CNN_ERR_NOMEM or CNN_ERR_ARG. Safe on any bytes:
 * this is the fuzz entry point. */
int cnn_idx_parse(const void *buf, size_t len, const char *name, struct cnn_idx *out) {
    if (!name) name = "<memory>";
    if (!out) return cnn_fail(CNN_ERR_ARG, "%s: cnn_idx_parse: out is NULL", name);
    memset(out, 0, sizeof *out);
    if (!buf && len > 0) return cnn_fail(CNN_ERR_ARG, "%s: cnn_idx_parse: buf is NULL", name);
    const uint8_t *p = buf;
    if (is_gzip(p, len)) return parse_gzip(p, len, name, out);
    return parse_raw(p, len, name, out);
}

/* Read the file at `path` (at most 1 GiB on disk) and parse it as cnn_idx_parse does; errors
 * name `path`. Extra status: CNN_ERR_IO when the file cannot be opened or read, CNN_ERR_LIMIT
 * when it is over 1 GiB. */
int cnn_idx_load(const char *path, struct cnn_idx *out) {
    if (!out) return cnn_fail(CNN_ERR_ARG, "cnn_idx_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return cnn_fail(CNN_ERR_ARG, "cnn_idx_load: path is NULL");
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = cnn_read_file(path, IDX_MAX_BYTES, &buf, &len);
    if (rc == CNN_OK)
        rc = is_gzip(buf, len) ? parse_gzip(buf, len, path, out)
                               : parse_raw_owned(&buf, len, path, out);
    free(buf);
    return rc;
}

/* Free the payload and zero the struct. NULL and zeroed structs are fine; calling it twice is
 * fine. */
void cnn_idx_free(struct cnn_idx *idx) {
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

/* ---- datasets ------------------------------------------------------------------------------ */

/* Load images (3-D IDX) and labels (1-D IDX), each raw or gzip, and check them together:
 * equal counts and every label < CNN_MAX_CLASSES. On success *out owns both buffers (free with
 * cnn_dataset_free). On failure *out is zeroed, nothing leaks, and the status is that of
 * cnn_idx_load or CNN_ERR_FORMAT for a mismatch between the two files. */
int cnn_dataset_load(const char *images_path, const char *labels_path, struct cnn_dataset *out) {
    if (!out) return cnn_fail(CNN_ERR_ARG, "cnn_dataset_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path)
        return cnn_fail(CNN_ERR_ARG, "cnn_dataset_load: a path is NULL");
    struct cnn_idx im, lb;
    memset(&im, 0, sizeof im);
    memset(&lb, 0, sizeof lb);
    int rc;
    if ((rc = cnn_idx_load(images_path, &im)) != CNN_OK) goto fail;
    if (im.ndim != 3) {
        rc = cnn_fail(CNN_ERR_FORMAT,
                      "%s: %d-D IDX file, expected 3-D images (count, height, width)", images_path,
                      im.ndim);
        goto fail;
    }
    if ((rc = cnn_idx_load(labels_path, &lb)) != CNN_OK) goto fail;
    if (lb.ndim != 1) {
        rc = cnn_fail(CNN_ERR_FORMAT, "%s: %d-D IDX file, expected 1-D labels (count)", labels_path,
                      lb.ndim);
        goto fail;
    }
    if (im.dims[0] != lb.dims[0]) {
        rc =
            cnn_fail(CNN_ERR_FORMAT, "%s has %d images but %s has %d labels, expected equal counts",
                     images_path, im.dims[0], labels_path, lb.dims[0]);
        goto fail;
    }
    for (size_t i = 0; i < lb.size; i++) {
        if (lb.data[i] >= CNN_MAX_CLASSES) {
            rc = cnn_fail(CNN_ERR_FORMAT, "%s: label %zu is %u, expected 0..%d (%d classes)",
                          labels_path, i, (unsigned)lb.data[i], CNN_MAX_CLASSES - 1,
                          CNN_MAX_CLASSES);
            goto fail;
        }
    }
    out->n = im.dims[0];
    out->h = im.dims[1];
    out->w = im.dims[2];
    out->n_classes = CNN_MAX_CLASSES;
    out->images = im.data; /* ownership moves to *out */
    out->labels = lb.data;
    return CNN_OK;
fail:
    cnn_idx_free(&im);
    cnn_idx_free(&lb);
    return rc;
}

/* DIR/BASE if it exists (or cannot be checked: then loading reports why), else DIR/BASE.gz if
 * it exists; else CNN_ERR_IO naming both paths tried. path: a buffer of `len` bytes. */
static int find_file(const char *dir, const char *base, char *path, size_t len) {
    char gz[4096];
    const int n = snprintf(path, len, "%s/%s", dir, base);
    const int m = snprintf(gz, sizeof gz, "%s/%s.gz", dir, base);
    if (n < 0 || (size_t)n >= len || m < 0 || (size_t)m >= sizeof gz)
        return cnn_fail(CNN_ERR_ARG, "%s: path too long", dir);
    struct stat st;
    if (stat(path, &st) == 0 || errno != ENOENT) return CNN_OK;
    if (stat(gz, &st) == 0 || errno != ENOENT) {
        memcpy(path, gz, (size_t)m + 1);
        return CNN_OK;
    }
    return cnn_fail(CNN_ERR_IO, "%s: no such file, and no %s either", path, gz);
}

/* The standard MNIST file names under `dir`: split "train" reads train-images-idx3-ubyte and
 * train-labels-idx1-ubyte, split "test" reads t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte,
 * each as named or with .gz appended (the plain name wins when both exist; the content, not the
 * name, decides whether it is decompressed). Same contract as cnn_dataset_load; CNN_ERR_ARG for
 * another split, CNN_ERR_IO when a file is found under neither name. */
int cnn_dataset_load_dir(const char *dir, const char *split, struct cnn_dataset *out) {
    if (!out) return cnn_fail(CNN_ERR_ARG, "cnn_dataset_load_dir: out is NULL");
    memset(out, 0, sizeof *out);
    if (!dir || !split) return cnn_fail(CNN_ERR_ARG, "cnn_dataset_load_dir: NULL argument");
    const char *prefix;
    if (strcmp(split, "train") == 0)
        prefix = "train";
    else if (strcmp(split, "test") == 0)
        prefix = "t10k";
    else
        return cnn_fail(CNN_ERR_ARG, "%s: split '%s', expected 'train' or 'test'", dir, split);
    char ib[64], lb[64], ipath[4096], lpath[4096];
    snprintf(ib, sizeof ib, "%s-images-idx3-ubyte", prefix);
    snprintf(lb, sizeof lb, "%s-labels-idx1-ubyte", prefix);
    int rc;
    if ((rc = find_file(dir, ib, ipath, sizeof ipath)) != CNN_OK) return rc;
    if ((rc = find_file(dir, lb, lpath, sizeof lpath)) != CNN_OK) return rc;
    return cnn_dataset_load(ipath, lpath, out);
}

/* Free both buffers and zero the struct. NULL and zeroed structs are fine. */
void cnn_dataset_free(struct cnn_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}
