/*
 * dist.h - `mnist train --distributed`: data-parallel training across processes started by
 * mpirun or srun. With make MPI=1 this is MPI (dist_mpi.c); otherwise dist_none.c, which
 * says how to get it. The trainer does the splitting and summing (cnn_trainer_set_ranks);
 * this is the transport: start-up, the reducer, the agreement to stop, and ending the job.
 */
#ifndef MNIST_DIST_H
#define MNIST_DIST_H

#include <signal.h>

#include "cnn.h"

/* Join the job (MPI_Init): 0 and this process's rank and the number of ranks, or -1 after a
 * message. */
int cli_dist_init(int *argc, char ***argv, int *rank, int *size);
/* Make t this rank's share of the job: cnn_trainer_set_ranks and a reducer over every rank.
 * local is the flag the signal handler sets; every sum also tells each rank the largest
 * value any rank's flag had, in *agreed, so all of them see a stop after the same step. A
 * collective that waits more than timeout_s seconds (a rank died or hangs) ends the job with
 * a message. Returns the library's status (its message in cnn_errmsg). */
int cli_dist_attach(struct cnn_trainer *t, double timeout_s, volatile sig_atomic_t *local,
                    volatile sig_atomic_t *agreed);
/* Whether every rank could start: status is this rank's (-1: ready, else its exit status).
 * Returns -1 when all are ready, else the largest status, the same on every rank; *rank0 is
 * rank 0's own status. */
int cli_dist_agree(int status, int *rank0);
/* 1 when every rank passed the same v, 0 when not, -1 when the ranks cannot be reached. */
int cli_dist_same(unsigned long v);
/* Leave the job with this exit status: 0, 130 and 143 (every rank stops together) leave
 * normally (MPI_Finalize) and return status; anything else exits at once, without waiting for
 * ranks that may be waiting for this one, and mpirun ends them all. */
int cli_dist_end(int status);

#endif
