/*
 * report_log.c - reads the JSON log that `mnist train --log` writes: one object per epoch,
 *   {"epoch":1,"epochs":3,"train_loss":..,"train_acc":..,"val_loss":..,"val_acc":..,"lr":..,
 *    "seconds":..,"images_per_s":..,"best":true}
 * A line that is not such an object is an error that names the file and the line: a report
 * drawn from half a log would mislead. Blank lines are skipped. A resumed run appends to its
 * log, so an epoch may come again; the later line wins.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "report.h"

#define MAX_EPOCHS 100000

/* The number under key in o into *v; 0, or -1 when it is missing (and required) or not a
 * finite number. */
static int number(const json_t *o, const char *key, int required, double *v) {
    const json_t *j = json_object_get(o, key);
    if (!j && !required) return 0;
    if (!json_is_number(j) || !isfinite(json_number_value(j))) return -1;
    *v = json_number_value(j);
    return 0;
}

/* One line's object into *e. NULL, or what is wrong with it. */
static const char *parse_epoch(const json_t *o, struct report_epoch *e) {
    static const char *const keys[] = {"train_loss", "train_acc", "val_loss", "val_acc", "lr"};
    double *const dst[] = {&e->train_loss, &e->train_acc, &e->val_loss, &e->val_acc, &e->lr};
    static char why[96];
    if (!json_is_object(o)) return "not a JSON object";
    const json_t *ep = json_object_get(o, "epoch");
    if (!json_is_integer(ep) || json_integer_value(ep) < 1 || json_integer_value(ep) > MAX_EPOCHS)
        return "\"epoch\" is missing or not a whole number in [1, 100000]";
    e->epoch = (int)json_integer_value(ep);
    for (int i = 0; i < 5; i++)
        if (number(o, keys[i], 1, dst[i])) {
            snprintf(why, sizeof why, "\"%s\" is missing or not a finite number", keys[i]);
            return why;
        }
    e->seconds = e->images_per_s = -1;
    if (number(o, "seconds", 0, &e->seconds) || number(o, "images_per_s", 0, &e->images_per_s))
        return "\"seconds\" or \"images_per_s\" is not a finite number";
    e->best = json_is_true(json_object_get(o, "best"));
    return NULL;
}

/* Put e in its place in the log, ordered by epoch; a repeated epoch replaces the old line. */
static int place(struct report_log *log, int *cap, const struct report_epoch *e) {
    int i = log->n;
    while (i > 0 && log->e[i - 1].epoch > e->epoch) i--;
    if (i > 0 && log->e[i - 1].epoch == e->epoch) {
        log->e[i - 1] = *e;
        return 0;
    }
    if (log->n == *cap) {
        const int ncap = *cap ? 2 * *cap : 64;
        struct report_epoch *p = realloc(log->e, sizeof *p * (size_t)ncap);
        if (!p) return -1;
        log->e = p, *cap = ncap;
    }
    memmove(log->e + i + 1, log->e + i, sizeof *log->e * (size_t)(log->n - i));
    log->e[i] = *e;
    log->n++;
    return 0;
}

int report_log_load(const char *path, struct report_log *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_err("--log: %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int line_no = 0, ecap = 0, rc = 0;
    ssize_t len;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_error_t jerr;
        json_t *o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
        struct report_epoch e;
        const char *why = o ? parse_epoch(o, &e) : jerr.text;
        if (why) {
            cli_err("--log: %s:%d: %s (expected one JSON object per epoch, as train --log "
                    "writes)",
                    path, line_no, why);
            rc = -1;
        } else if (place(out, &ecap, &e)) {
            cli_err("--log: %s: out of memory", path);
            rc = -1;
        }
        json_decref(o);
    }
    if (rc == 0 && ferror(f)) {
        cli_err("--log: %s: read failed: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    if (rc) report_log_free(out);
    return rc;
}

void report_log_free(struct report_log *log) {
    free(log->e);
    log->e = NULL;
    log->n = 0;
}
