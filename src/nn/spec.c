/*
 * spec.c - one item of a network spec ("conv 32 3 pad=1"): split into a name, positional
 * numbers and key=value options, and read back by the layers' parse functions with range
 * checks. Every error names the item ("layer 2 'conv 0 3': filters 0 must be ...").
 * The spec as a whole (items, shapes, layout) is model.c's.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int cnn_spec_item_error(const struct cnn_spec_item *it, const char *what) {
    return cnn_fail(CNN_ERR_SPEC, "layer %d '%s': %s", it->index, it->text, what);
}

int cnn_spec_int(struct cnn_spec_item *it, int i, const char *what, int lo, int hi, int *out) {
    char msg[128];
    if (it->pos_used < i + 1) it->pos_used = i + 1;
    if (i >= it->n_pos) {
        snprintf(msg, sizeof msg, "missing %s", what);
        return cnn_spec_item_error(it, msg);
    }
    const double v = it->pos[i];
    if (v != floor(v) || v < lo || v > hi) {
        snprintf(msg, sizeof msg, "%s %g must be a whole number in [%d, %d]", what, v, lo, hi);
        return cnn_spec_item_error(it, msg);
    }
    *out = (int)v;
    return CNN_OK;
}

int cnn_spec_float_opt(struct cnn_spec_item *it, int i, const char *what, double lo, double hi,
                       float *out) {
    if (it->pos_used < i + 1) it->pos_used = i + 1;
    if (i >= it->n_pos) return CNN_OK;
    const double v = it->pos[i];
    if (!(v >= lo && v <= hi)) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s %g must be in [%g, %g]", what, v, lo, hi);
        return cnn_spec_item_error(it, msg);
    }
    *out = (float)v;
    return CNN_OK;
}

int cnn_spec_opt_int(struct cnn_spec_item *it, const char *key, int lo, int hi, int *out) {
    for (int j = 0; j < it->n_opt; j++) {
        if (strcmp(it->opt_key[j], key) != 0) continue;
        it->opt_used[j] = 1;
        const double v = it->opt_val[j];
        if (v != floor(v) || v < lo || v > hi) {
            char msg[128];
            snprintf(msg, sizeof msg, "%s=%g must be a whole number in [%d, %d]", key, v, lo, hi);
            return cnn_spec_item_error(it, msg);
        }
        *out = (int)v;
    }
    return CNN_OK;
}

/* "3", "-2", "0.25", "1e-3": the whole token must be a finite number. */
static int parse_number(const char *tok, double *v) {
    char *end;
    *v = strtod(tok, &end);
    return end != tok && *end == '\0' && isfinite(*v);
}

int cnn_spec_item_parse(const char *s, size_t len, int index, struct cnn_spec_item *it) {
    memset(it, 0, sizeof *it);
    it->index = index;
    while (len && isspace((unsigned char)*s)) s++, len--;
    while (len && isspace((unsigned char)s[len - 1])) len--;
    snprintf(it->text, sizeof it->text, "%.*s", (int)(len < 60 ? len : 60), s);
    if (len == 0) return cnn_fail(CNN_ERR_SPEC, "layer %d is empty (stray comma?)", index);
    char buf[256];
    if (len >= sizeof buf) return cnn_spec_item_error(it, "item too long");
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *save = NULL;
    char *tok = strtok_r(buf, " \t\r\n", &save);
    if (strlen(tok) >= sizeof it->name) return cnn_spec_item_error(it, "unknown layer");
    for (char *c = tok; *c; c++) *c = (char)tolower((unsigned char)*c);
    strcpy(it->name, tok);
    char msg[160];
    while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
        char *eq = strchr(tok, '=');
        double v;
        if (!eq) {
            if (!parse_number(tok, &v)) {
                snprintf(msg, sizeof msg, "'%.40s' is not a number", tok);
                return cnn_spec_item_error(it, msg);
            }
            if (it->n_pos == CNN_SPEC_MAX_POS)
                return cnn_spec_item_error(it, "too many numbers");
            it->pos[it->n_pos++] = v;
            continue;
        }
        *eq = '\0';
        if (!parse_number(eq + 1, &v)) {
            snprintf(msg, sizeof msg, "option %.15s: '%.30s' is not a number", tok, eq + 1);
            return cnn_spec_item_error(it, msg);
        }
        if (it->n_opt == CNN_SPEC_MAX_OPT || strlen(tok) >= sizeof it->opt_key[0])
            return cnn_spec_item_error(it, "too many or too long options");
        for (int j = 0; j < it->n_opt; j++)
            if (strcmp(it->opt_key[j], tok) == 0) {
                snprintf(msg, sizeof msg, "option %.15s= given twice", tok);
                return cnn_spec_item_error(it, msg);
            }
        strcpy(it->opt_key[it->n_opt], tok);
        it->opt_val[it->n_opt++] = v;
    }
    return CNN_OK;
}

