/*
 * dist_none.c - `--distributed` (train, compare) in a build without MPI (make MPI=1 builds
 * dist_mpi.c instead): joining a job says so; the rest is never reached, as this process is
 * rank 0 of 1.
 */
#include <string.h>

#include "cli.h"
#include "dist.h"

int cli_dist_init(int *argc, char ***argv, int *rank, int *size) {
    (void)argc, (void)argv;
    *rank = 0, *size = 1;
    cli_err("--distributed: this mnist was built without MPI; rebuild with make MPI=1");
    return -1;
}

int cli_dist_attach(struct cnn_trainer *t, double timeout_s, volatile sig_atomic_t *local,
                    volatile sig_atomic_t *agreed) {
    (void)t, (void)timeout_s, (void)local, (void)agreed;
    return CNN_ERR_ARG;
}

int cli_dist_agree(int status, int *rank0) {
    *rank0 = status;
    return status;
}

int cli_dist_same(unsigned long v) {
    (void)v;
    return -1;
}

int cli_dist_end(int status) {
    return status;
}

int cli_dist_join(int argc, char **argv, int *rank, int *size) {
    return cli_has_flag(argc, argv, "--distributed") ? cli_dist_init(&argc, &argv, rank, size) : 0;
}

void cli_dist_hold_messages(void) {}

int cli_dist_start(int status) {
    return status;
}

void cli_dist_watch(double timeout_s) {
    (void)timeout_s;
}

int cli_dist_send(int to, int tag, const void *buf, size_t n) {
    (void)to, (void)tag, (void)buf, (void)n;
    return 1;
}

int cli_dist_recv(int *from, int *tag, void *buf, size_t *n, double wait_s) {
    (void)from, (void)tag, (void)buf, (void)n, (void)wait_s;
    return -1;
}
