/*
 * fileio.c - bounded whole-file reads, atomic writes, little-endian buffers.
 *
 * Every reader in the library goes through cnn_read_file, which checks the real file size
 * against a limit before allocating, so a forged header can never make us allocate more than
 * the file itself. Every writer goes through cnn_write_file_atomic: a temporary in the same
 * directory, fsync, rename; on failure the old file stays as it was. A process killed during
 * a write leaves its PATH.tmp.PID behind (never a broken PATH); the next write to PATH removes
 * those whose process is gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

int cnn_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever; it is
     * refused just below as not a regular file. On a regular file the flag changes nothing. */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return cnn_fail(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    uint8_t *p = NULL;
    int rc = CNN_OK;
    if (fstat(fd, &st) != 0) {
        rc = cnn_fail(CNN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = cnn_fail(CNN_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        rc = cnn_fail(CNN_ERR_LIMIT, "%s: file is %lld bytes, over the limit of %zu", path,
                      (long long)st.st_size, max_bytes);
        goto fail;
    }
    const size_t n = (size_t)st.st_size;
    p = cnn_alloc_large(n);
    if (!p) {
        rc = cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
        goto fail;
    }
    size_t got = 0;
    while (got < n) {
        const ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = cnn_fail(CNN_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0) {
            rc = cnn_fail(CNN_ERR_IO, "%s: file shrank while reading", path);
            goto fail;
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = p;
    *len = n;
    return CNN_OK;
fail:
    free(p);
    close(fd);
    return rc;
}

/* Remove PATH.tmp.PID files left by writers that were killed: PID all digits, not ours, and
 * no such process any more (kill(pid, 0) fails with ESRCH). Best effort: errors are ignored. */
static void remove_stale_temps(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[4096];
    const int dn = slash ? snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path)
                         : snprintf(dir, sizeof dir, ".");
    if (dn < 0 || (size_t)dn >= sizeof dir) return;
    if (!dir[0]) strcpy(dir, "/");
    DIR *d = opendir(dir);
    if (!d) return;
    const size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
        const char *digits = n + bl + 5;
        char *end;
        errno = 0;
        const long pid = strtol(digits, &end, 10);
        if (!*digits || *end || errno || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to know */
        char full[8192];
        const int fn = snprintf(full, sizeof full, "%s/%s", dir, n);
        if (fn > 0 && (size_t)fn < sizeof full) unlink(full);
    }
    closedir(d);
}

int cnn_write_file_atomic(const char *path, const void *buf, size_t len) {
    /* The rename below would replace whatever PATH is: only a regular file (or a link, which
     * is replaced itself, not its target) may be; never a device node, FIFO or socket. */
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
        return cnn_fail(CNN_ERR_IO, "%s: not a regular file; not replacing it", path);
    remove_stale_temps(path);
    char tmp[4096];
    const int tn = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (tn < 0 || (size_t)tn >= sizeof tmp) return cnn_fail(CNN_ERR_ARG, "%s: path too long", path);
    /* O_EXCL | O_NOFOLLOW: never write through a link or into a file someone else made. A file
     * of that name can only be a leftover of an earlier process with our PID: remove it (unlink
     * removes a link itself, not its target) and try once more. */
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
    int fd = open(tmp, flags, 0644);
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) fd = open(tmp, flags, 0644);
    if (fd < 0)
        return cnn_fail(CNN_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                        strerror(errno));
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        const ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            const int e = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            return cnn_fail(CNN_ERR_IO, "%s: write failed: %s", path, strerror(e));
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        const int e = errno;
        unlink(tmp);
        return cnn_fail(CNN_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return cnn_fail(CNN_ERR_IO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return CNN_OK;
}

void cnn_buf_put(struct cnn_buf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

void cnn_buf_u32(struct cnn_buf *b, uint32_t v) {
    const uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    cnn_buf_put(b, le, 4);
}

void cnn_buf_u64(struct cnn_buf *b, uint64_t v) {
    cnn_buf_u32(b, (uint32_t)v);
    cnn_buf_u32(b, (uint32_t)(v >> 32));
}

void cnn_buf_f32(struct cnn_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    cnn_buf_u32(b, u);
}

void cnn_buf_f32s(struct cnn_buf *b, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) cnn_buf_f32(b, v[i]);
}

int cnn_rd_bytes(struct cnn_rd *r, const uint8_t **p, size_t n) {
    if (n > r->len - r->pos) return CNN_ERR_FORMAT;
    *p = r->p + r->pos;
    r->pos += n;
    return CNN_OK;
}

int cnn_rd_u32(struct cnn_rd *r, uint32_t *v) {
    const uint8_t *p;
    if (cnn_rd_bytes(r, &p, 4)) return CNN_ERR_FORMAT;
    *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return CNN_OK;
}

int cnn_rd_u64(struct cnn_rd *r, uint64_t *v) {
    uint32_t lo, hi;
    if (cnn_rd_u32(r, &lo) || cnn_rd_u32(r, &hi)) return CNN_ERR_FORMAT;
    *v = (uint64_t)hi << 32 | lo;
    return CNN_OK;
}

int cnn_rd_f32s(struct cnn_rd *r, float *v, size_t n) {
    if (n > (r->len - r->pos) / 4) return CNN_ERR_FORMAT;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = 0;
        cnn_rd_u32(r, &u);
        memcpy(&v[i], &u, 4);
    }
    return CNN_OK;
}
