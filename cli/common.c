/*
 * common.c - option parsing, error printing, JSON strings, the network summary table and the
 * model fingerprint, shared by the subcommands.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <getopt.h>
#include <stdarg.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "cli.h"

void cli_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mnist: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_bad_option(int argc, char **argv, int ch) {
    const char *opt = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
    if (ch == ':')
        cli_err("%s: option '%s' needs a value", argv[0], opt);
    else if (strncmp(opt, "--", 2) == 0 && strchr(opt, '=') && optopt)
        /* "--quiet=1": a known long option that takes no value (optopt is its code, which
         * may be no character at all) */
        cli_err("%s: option '%.*s' takes no value", argv[0], (int)(strchr(opt, '=') - opt), opt);
    else if (optopt > ' ' && optopt < 127)
        cli_err("%s: unknown option '-%c'", argv[0], optopt);
    else
        cli_err("%s: unknown option '%s'", argv[0], opt);
}

int cli_check_output(const char *flag, const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cli_err("%s: %s: directory %s does not exist", flag, path, dir);
        return -1;
    }
    if (access(dir, W_OK) != 0) {
        cli_err("%s: %s: directory %s is not writable", flag, path, dir);
        return -1;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_err("%s: %s is a directory", flag, path);
        return -1;
    }
    return 0;
}

int cli_check_replaced_output(const char *flag, const char *path) {
    if (cli_check_output(flag, path)) return -1;
    /* A device, FIFO or socket would be replaced by the rename of an atomic write (as root,
     * --out /dev/null would turn the device into a file): only regular files are replaced. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        cli_err("%s: %s is not a regular file (a device, FIFO or socket)", flag, path);
        return -1;
    }
    return 0;
}

int cli_int(const char *flag, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_err("%s: '%s' is not a whole number in [%ld, %ld]", flag, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_u64(const char *flag, const char *s, unsigned long long *out) {
    char *end;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        cli_err("%s: '%s' is not a non-negative whole number", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *flag, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    const double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        cli_err("%s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when p does not start one (a stray
 * continuation byte, an overlong form, a surrogate, past U+10FFFF, or cut short). */
static int utf8_len(const unsigned char *p) {
    const unsigned char c = p[0];
    int n;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* not overlong */
        hi = c == 0xED ? 0x9F : 0xBF; /* not a surrogate */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80; /* not overlong */
        hi = c == 0xF4 ? 0x8F : 0xBF; /* not past U+10FFFF */
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else if (*p < 0x80) {
            fputc(*p, f);
        } else {
            /* JSON text is UTF-8: a byte that is not part of a valid sequence (a file name in
             * Latin-1, say) becomes U+FFFD, so the output always parses */
            const int n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", f);
                continue;
            }
            fwrite(p, 1, (size_t)n, f);
            p += n - 1;
        }
    }
    fputc('"', f);
}

void cli_print_summary(FILE *f, const struct cnn_model *net) {
    int c, h, w;
    cnn_model_input_shape(net, &c, &h, &w);
    fprintf(f, "%-4s %-28s %-16s %12s %10s\n", "#", "layer", "output shape", "params", "MFLOPs");
    char shape[32];
    snprintf(shape, sizeof shape, "%dx%dx%d", c, h, w);
    fprintf(f, "%-4s %-28s %-16s %12s %10s\n", "0", "input", shape, "0", "-");
    double flops = 0;
    for (int i = 0; i < cnn_model_n_layers(net); i++) {
        struct cnn_layer_info li;
        cnn_model_layer_info(net, i, &li);
        snprintf(shape, sizeof shape, "%dx%dx%d", li.c, li.h, li.w);
        fprintf(f, "%-4d %-28s %-16s %12zu %10.3f\n", i + 1, li.text, shape, li.n_params,
                li.mflops);
        flops += li.mflops;
    }
    fprintf(f, "total: %zu parameters (%.1f KB as float32), %zu batch-norm statistics, "
               "%.2f MFLOPs forward per image\n",
            cnn_model_n_params(net), cnn_model_n_params(net) * 4.0 / 1024.0, cnn_model_n_state(net),
            flops);
}

void cli_json_summary(FILE *f, const struct cnn_model *net) {
    int c, h, w;
    cnn_model_input_shape(net, &c, &h, &w);
    double flops = 0;
    fprintf(f, "{\"spec\":");
    cli_json_str(f, cnn_model_spec(net));
    fprintf(f, ",\"input\":[%d,%d,%d],\"layers\":[", c, h, w);
    for (int i = 0; i < cnn_model_n_layers(net); i++) {
        struct cnn_layer_info li;
        cnn_model_layer_info(net, i, &li);
        fprintf(f, "%s{\"layer\":", i ? "," : "");
        cli_json_str(f, li.text);
        fprintf(f, ",\"output\":[%d,%d,%d],\"params\":%zu,\"mflops\":%.4f}", li.c, li.h, li.w,
                li.n_params, li.mflops);
        flops += li.mflops;
    }
    fprintf(f, "],\"params\":%zu,\"state\":%zu,\"mflops\":%.4f}", cnn_model_n_params(net),
            cnn_model_n_state(net), flops);
}

void cli_json_meta(FILE *f, const struct cnn_model *m) {
    fputc('{', f);
    for (int i = 0; i < cnn_model_meta_count(m); i++) {
        const char *k, *v;
        cnn_model_meta_at(m, i, &k, &v);
        if (i) fputc(',', f);
        cli_json_str(f, k);
        fputc(':', f);
        cli_json_str(f, v);
    }
    fputc('}', f);
}

unsigned long cli_model_fingerprint(const struct cnn_model *m) {
    const uLong crc = crc32(0L, (const Bytef *)cnn_model_params(m),
                            (uInt)(cnn_model_n_params(m) * sizeof(float)));
    return crc32(crc, (const Bytef *)cnn_model_state(m),
                 (uInt)(cnn_model_n_state(m) * sizeof(float)));
}

FILE *cli_open_log(const char *path, int append) {
    /* O_NONBLOCK: a FIFO nobody reads fails with ENXIO instead of waiting forever; the flag is
     * cleared again, so writes to a pipe with a reader wait as usual. */
    const int fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC |
                                  (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0) return NULL;
    FILE *f = NULL;
    const int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0) f = fdopen(fd, append ? "a" : "w");
    if (!f) {
        const int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

int cli_model_for_size(const char *spec, int h, int w, const char *from, const char *data,
                       struct cnn_model **out) {
    const int rc = cnn_model_new(spec, 1, h, w, out);
    if (rc == CNN_OK) return rc;
    if (h == 28 && w == 28)
        cli_err("%s: %s", from, cnn_errmsg());
    else if (data)
        cli_err("%s: %s (for the %dx%d images of %s)", from, cnn_errmsg(), h, w, data);
    else
        cli_err("%s: %s (for %dx%d images)", from, cnn_errmsg(), h, w);
    return rc;
}

int cli_is_model_file(const char *path) {
    /* O_NONBLOCK: a FIFO is not waited on; reading it gives nothing, so it is not a model */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    char magic[8] = {0};
    const ssize_t n = read(fd, magic, sizeof magic);
    close(fd);
    return n == 8 && memcmp(magic, "CNNMODEL", 8) == 0;
}

int cli_write_atomic(const char *path, const void *buf, size_t len) {
    char tmp[4200];
    const int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    const int ok = fwrite(buf, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    const int e = errno;
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        const int e2 = ok ? errno : e;
        unlink(tmp);
        errno = e2;
        return -1;
    }
    return 0;
}

void cli_usage_hint(const char *cmd) {
    fprintf(stderr, "mnist: see `mnist %s --help` for its options\n", cmd);
}

const char *const cli_augment_names[CNN_AUG_LEVELS] = {"none", "affine", "elastic", "flip"};

void cli_reuse_heap(void) {
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD)
    mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's largest */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

int cli_predict_one(const struct cnn_model *m, struct cnn_ctx *ctx, const uint8_t *px,
                    float *probs, float *typicality) {
    if (!cnn_model_has_typicality(m)) {
        *typicality = -1.0f;
        return cnn_predict_u8(m, ctx, px, 1, probs);
    }
    return cnn_predict_u8_typicality(m, ctx, px, 1, probs, typicality);
}

int cli_unsure(const float *probs, int n, int objects, float typicality, double min_confidence,
               double min_typicality, char *why, size_t len) {
    const int best = cnn_argmax(probs, n);
    if (objects > 1) {
        snprintf(why, len, "more than one digit found (%d)", objects);
        return 1;
    }
    if (typicality >= 0.0f && (double)typicality < min_typicality) {
        snprintf(why, len, "unlike the digits it was trained on (typicality %.4f is below %.4f)",
                 (double)typicality, min_typicality);
        return 1;
    }
    if (n > 0 && (double)probs[best] < min_confidence) {
        snprintf(why, len, "confidence %.1f%% is below %.1f%%", 100.0 * probs[best],
                 100.0 * min_confidence);
        return 1;
    }
    if (len) why[0] = '\0';
    return 0;
}

int cli_has_flag(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], flag)) return 1;
    return 0;
}
