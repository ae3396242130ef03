/*
 * testutil.h - small helpers shared by the cmocka test programs: a per-run temporary
 * directory (tmpdir, made by the test's group setup), paths inside it, recursive removal,
 * counting the temporaries an atomic write might leave behind, and checking an error's status
 * and message. Include it after <cmocka.h> and "cnn.h".
 */
#ifndef CNN_TESTUTIL_H
#define CNN_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

static char tmpdir[64];

/* Seconds on the monotonic clock, for the timings tests print. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A path inside tmpdir. Returns one of 8 rotating static buffers. */
static const char *tpath(const char *name) {
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

static void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            const struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
                char sub[512];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                rm_tree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Files under dir (recursively) whose name contains ".tmp.": leftovers of an atomic write. */
static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) n += count_tmp_files(sub);
        if (strstr(e->d_name, ".tmp.")) n++;
    }
    closedir(d);
    return n;
}

/* Does hay contain needle, ignoring ASCII case? */
static int contains_ci(const char *hay, const char *needle) {
    const size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && (hay[i] | 0x20) == (needle[i] | 0x20)) i++;
        if (i == n) return 1;
    }
    return n == 0;
}

/* The call returned `want` and cnn_errmsg() contains every word (NULL-terminated list). */
static void check_error_words(int rc, int want, const char *const *words) {
    const char *msg = cnn_errmsg();
    if (rc != want)
        fail_msg("status %d (%s), expected %d (%s); message: \"%s\"", rc, cnn_status_str(rc), want,
                 cnn_status_str(want), msg);
    for (; *words; words++)
        if (!contains_ci(msg, *words)) fail_msg("message \"%s\" lacks \"%s\"", msg, *words);
}
#define check_error(rc, want, ...)                                                                 \
    check_error_words((rc), (want), (const char *const[]){__VA_ARGS__, NULL})

#pragma GCC diagnostic pop
#endif
