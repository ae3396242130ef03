/*
 * error.c - status names and the thread-local detail message behind cnn_errmsg().
 *
 * Every fallible library function reports through cnn_fail(): it formats one line that says
 * what went wrong, where, and what was expected, and returns the status so callers can write
 * `return cnn_fail(CNN_ERR_FORMAT, "%s: ...", name);`. Nothing here prints or exits.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char errbuf[512];

const char *cnn_errmsg(void) {
    return errbuf;
}

int cnn_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return status;
}

const char *cnn_status_str(int status) {
    switch (status) {
    case CNN_OK: return "ok";
    case CNN_ERR_NOMEM: return "out of memory";
    case CNN_ERR_IO: return "i/o error";
    case CNN_ERR_FORMAT: return "format error";
    case CNN_ERR_SPEC: return "bad network spec";
    case CNN_ERR_ARG: return "bad argument";
    case CNN_ERR_NAN: return "non-finite loss";
    case CNN_ERR_INTERRUPTED: return "interrupted";
    case CNN_ERR_NODIGIT: return "no digit found";
    case CNN_ERR_LIMIT: return "over a size limit";
    case CNN_ERR_REDUCE: return "reducer failed";
    default: return "unknown error";
    }
}

const char *cnn_version(void) {
    return CNN_VERSION_STRING;
}
