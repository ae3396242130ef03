/*
 * dist_none.c - `mnist train --distributed` in a build without MPI (make MPI=1 builds
 * dist_mpi.c instead): every call says so.
 */
#include "cli.h"
#include "dist.h"

int cli_dist_init(int *argc, char ***argv, int *rank, int *size) {
    (void)argc, (void)argv;
    *rank = 0, *size = 1;
    cli_err("train --distributed: this mnist was built without MPI; rebuild with make MPI=1");
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
