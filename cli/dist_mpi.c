/*
 * dist_mpi.c - `--distributed` over MPI (Open MPI; built with make MPI=1).
 *
 * What it is: the transport under the trainer's data parallelism (cnn_trainer_set_ranks),
 * and the messages of a sweep (`mnist compare --distributed`).
 *   - Gradients (floats, one per parameter) are summed with MPI_Allreduce.
 *   - The small sums in doubles (batch-norm statistics, the step's loss and accuracy,
 *     validation) are gathered with MPI_Allgather and added on every rank in rank order,
 *     as a team of threads adds them in thread order (ctx.c): every rank gets the same bits,
 *     and those of one process with as many threads.
 *   - Each of those gathers carries one more double, this rank's stop flag (the signal it
 *     received, or 0), so all ranks learn of a Ctrl-C or SIGTERM at the same sum and stop
 *     after the same step; none is left waiting in a collective.
 *   - Errors come back from MPI (MPI_ERRORS_RETURN) and are said with the rank; a rank that
 *     fails leaves without MPI_Finalize, and mpirun then ends the others. A watchdog
 *     thread ends this process with a message when a collective waits longer than the
 *     timeout (a rank hangs); mpirun then ends the others. A rank that dies is mpirun's to
 *     report: it ends the job and names the rank.
 * What it is not: a second training loop; everything but the sums is the trainer's.
 * Only the thread that called cli_dist_init calls MPI (MPI_THREAD_FUNNELED): the OpenMP
 * threads of a step never do, and the watchdog only prints and exits.
 */
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "dist.h"

static struct {
    int rank, size;
    double timeout_s;
    volatile sig_atomic_t *local, *agreed;
    double *gather;      /* (size, n + 1) doubles of the last gather */
    size_t gather_n;     /* its n + 1 capacity per rank */
    atomic_long wait_ms; /* when the collective now running began (0: none) */
    atomic_int quit;
    _Atomic(const char *) what; /* the collective now running, for the watchdog's message */
    pthread_t watchdog;
    int watching;
    int saved_err; /* the real stderr while messages are kept aside (-1: none) */
    FILE *kept;
} dist = {.saved_err = -1};

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1; /* never 0 */
}

static void *watch(void *arg) {
    (void)arg;
    const struct timespec tick = {0, 200 * 1000 * 1000};
    while (!atomic_load(&dist.quit)) {
        nanosleep(&tick, NULL);
        const long since = atomic_load(&dist.wait_ms);
        if (since && (double)(now_ms() - since) > dist.timeout_s * 1000.0) {
            fprintf(stderr,
                    "mnist: rank %d: no answer from the other ranks for %.0f s in %s: a rank "
                    "died or hangs (--dist-timeout); ending the job\n",
                    dist.rank, dist.timeout_s, atomic_load(&dist.what));
            _exit(1);
        }
    }
    return NULL;
}

/* Around every collective: the watchdog's clock, and MPI's status said with the rank. */
static void wait_begin(const char *what) {
    atomic_store(&dist.what, what);
    atomic_store(&dist.wait_ms, now_ms());
}

static int wait_end(int rc) {
    atomic_store(&dist.wait_ms, 0);
    if (rc == MPI_SUCCESS) return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "mnist: rank %d: %s failed: %.*s\n", dist.rank, atomic_load(&dist.what), len,
            msg);
    return 1;
}

int cli_dist_init(int *argc, char ***argv, int *rank, int *size) {
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        cli_err("--distributed: MPI_Init_thread failed");
        return -1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &dist.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dist.size);
    *rank = dist.rank, *size = dist.size;
    return 0;
}

/* The sums in doubles, with the stop flags: gathered, then added in rank order. */
static int sum_f64(double *buf, size_t n) {
    const size_t per = n + 1;
    if (per > dist.gather_n) {
        double *g = realloc(dist.gather, sizeof(double) * per * (size_t)(dist.size + 1));
        if (!g) {
            fprintf(stderr, "mnist: rank %d: out of memory for %zu sums\n", dist.rank, n);
            return 1;
        }
        dist.gather = g, dist.gather_n = per;
    }
    double *mine = dist.gather + per * (size_t)dist.size; /* after every rank's row */
    memcpy(mine, buf, sizeof(double) * n);
    mine[n] = (double)*dist.local;
    wait_begin("MPI_Allgather");
    const int rc = MPI_Allgather(mine, (int)per, MPI_DOUBLE, dist.gather, (int)per, MPI_DOUBLE,
                                 MPI_COMM_WORLD);
    if (wait_end(rc)) return 1;
    for (size_t j = 0; j < per; j++) {
        double s = 0.0, top = 0.0;
        for (int r = 0; r < dist.size; r++) {
            const double v = dist.gather[(size_t)r * per + j];
            s += v;
            top = v > top ? v : top;
        }
        if (j < n)
            buf[j] = s;
        else if (top > 0)
            *dist.agreed = (sig_atomic_t)top;
    }
    return 0;
}

static int dist_sum(void *buf, size_t n, int type, void *user) {
    (void)user;
    if (n >= INT32_MAX) {
        fprintf(stderr, "mnist: rank %d: %zu values to sum, more than MPI counts\n", dist.rank, n);
        return 1;
    }
    if (type == CNN_F64) return sum_f64(buf, n);
    wait_begin("MPI_Allreduce");
    return wait_end(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
}

int cli_dist_attach(struct cnn_trainer *t, double timeout_s, volatile sig_atomic_t *local,
                    volatile sig_atomic_t *agreed) {
    const int rc = cnn_trainer_set_ranks(t, dist.rank, dist.size);
    if (rc) return rc;
    const struct cnn_reducer red = {dist_sum, NULL};
    cnn_trainer_set_reducer(t, &red);
    dist.local = local, dist.agreed = agreed;
    cli_dist_watch(timeout_s);
    return CNN_OK;
}

void cli_dist_watch(double timeout_s) {
    dist.timeout_s = timeout_s;
    if (!dist.watching && pthread_create(&dist.watchdog, NULL, watch, NULL) == 0) dist.watching = 1;
}

int cli_dist_agree(int status, int *rank0) {
    int v[2] = {status + 1, dist.rank == 0 ? status + 1 : 0}; /* -1 (ready) as 0 */
    wait_begin("MPI_Allreduce");
    if (wait_end(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD)))
        return *rank0 = 1;
    *rank0 = v[1] - 1;
    return v[0] - 1;
}

int cli_dist_same(unsigned long v) {
    unsigned long lo = v, hi = v;
    wait_begin("MPI_Allreduce");
    int rc = MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UNSIGNED_LONG, MPI_MIN, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UNSIGNED_LONG, MPI_MAX, MPI_COMM_WORLD);
    return wait_end(rc) ? -1 : lo == hi;
}

int cli_dist_end(int status) {
    if (status != 0 && status != 130 && status != 143) {
        /* Not MPI_Finalize, which would wait for ranks that may be waiting for this one: an
         * exit without it, which mpirun answers by ending every rank (more quietly than
         * MPI_Abort, whose report in Open MPI 4.1 comes with errors of its own). */
        fflush(NULL);
        _exit(status);
    }
    wait_begin("MPI_Finalize");
    const int rc = wait_end(MPI_Finalize());
    if (dist.watching) {
        atomic_store(&dist.quit, 1);
        pthread_join(dist.watchdog, NULL);
        dist.watching = 0;
    }
    free(dist.gather);
    dist.gather = NULL, dist.gather_n = 0;
    return rc && !status ? 1 : status;
}

int cli_dist_join(int argc, char **argv, int *rank, int *size) {
    if (!cli_has_flag(argc, argv, "--distributed")) return 0;
    if (cli_dist_init(&argc, &argv, rank, size)) return -1;
    cli_dist_hold_messages();
    return 1;
}

void cli_dist_hold_messages(void) {
    if (dist.rank == 0 || dist.saved_err >= 0 || !(dist.kept = tmpfile())) return;
    fflush(stderr);
    dist.saved_err = dup(STDERR_FILENO);
    dup2(fileno(dist.kept), STDERR_FILENO);
}

int cli_dist_start(int status) {
    int rank0;
    status = cli_dist_agree(status, &rank0);
    if (dist.saved_err < 0) return status;
    fflush(stderr);
    dup2(dist.saved_err, STDERR_FILENO);
    close(dist.saved_err);
    dist.saved_err = -1;
    char buf[4096];
    size_t n;
    rewind(dist.kept);
    while (rank0 < 0 && (n = fread(buf, 1, sizeof buf, dist.kept)) > 0) fwrite(buf, 1, n, stderr);
    fclose(dist.kept);
    dist.kept = NULL;
    return status;
}

int cli_dist_send(int to, int tag, const void *buf, size_t n) {
    wait_begin("MPI_Send");
    return wait_end(MPI_Send(buf, (int)n, MPI_BYTE, to, tag, MPI_COMM_WORLD));
}

/* A message there now? 1 (its envelope in *st), 0, or -1 after a message. */
static int probe(int from, int tag, MPI_Status *st) {
    int there = 0;
    wait_begin("MPI_Iprobe");
    const int rc = MPI_Iprobe(from < 0 ? MPI_ANY_SOURCE : from, tag < 0 ? MPI_ANY_TAG : tag,
                              MPI_COMM_WORLD, &there, st);
    return wait_end(rc) ? -1 : there != 0;
}

int cli_dist_recv(int *from, int *tag, void *buf, size_t *n, double wait_s) {
    const long until = now_ms() + (long)(wait_s * 1000.0);
    long nap_ms = 1; /* asleep between looks, up to 20 ms: a waiting rank leaves its core */
    MPI_Status st;
    int there;
    while ((there = probe(*from, *tag, &st)) == 0 && now_ms() < until) {
        const struct timespec nap = {0, nap_ms * 1000 * 1000};
        nanosleep(&nap, NULL);
        nap_ms = nap_ms < 20 ? 2 * nap_ms : 20;
    }
    if (there <= 0) return there;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if (count < 0 || (size_t)count > *n) {
        fprintf(stderr,
                "mnist: rank %d: a message of %d bytes from rank %d, expected %zu at most\n",
                dist.rank, count, st.MPI_SOURCE, *n);
        return -1;
    }
    *from = st.MPI_SOURCE, *tag = st.MPI_TAG, *n = (size_t)count;
    wait_begin("MPI_Recv");
    const int rc = MPI_Recv(buf, count, MPI_BYTE, *from, *tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return wait_end(rc) ? -1 : 1;
}
