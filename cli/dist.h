/*
 * dist.h - `--distributed`: processes started by mpirun or srun working as one job. With
 * make MPI=1 this is MPI (dist_mpi.c); otherwise dist_none.c, which says how to get it.
 *   - `mnist train --distributed`: data-parallel training. The trainer does the splitting and
 *     summing (cnn_trainer_set_ranks); this is the transport: start-up, the reducer, the
 *     agreement to stop, and ending the job.
 *   - `mnist compare --distributed`: a sweep, one run to each rank that asks. Its messages
 *     (cli_dist_send, cli_dist_recv) are small, from one rank to another.
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

/* ---- start-up ----------------------------------------------------------------------------- */
/* Join the job if argv (before any "--") holds --distributed, as cli_dist_init, a rank other
 * than 0 then keeping its messages aside (cli_dist_hold_messages). 1 when joined, 0 when not
 * asked, -1 after a message (a build without MPI, or MPI_Init failed). */
int cli_dist_join(int argc, char **argv, int *rank, int *size);
/* On a rank other than 0: keep this process's messages (stderr) aside from now on, since rank
 * 0 will say the same, until cli_dist_start. On rank 0 (and without MPI): nothing. */
void cli_dist_hold_messages(void);
/* Whether every rank could start, as cli_dist_agree. A rank other than 0 then shows the
 * messages it kept only if rank 0 was ready (else rank 0 has said the same). */
int cli_dist_start(int status);

/* ---- messages between two ranks ----------------------------------------------------------- */
/* From now on, a send that waits more than timeout_s seconds (its receiver died or hangs) ends
 * the job with a message. */
void cli_dist_watch(double timeout_s);
/* Send n bytes (a few KB at most) to rank `to` under tag (1 to 99). 0, or 1 after a message. */
int cli_dist_send(int to, int tag, const void *buf, size_t n);
/* The next message from rank *from (-1: any) under *tag (-1: any), waiting up to wait_s
 * seconds, asleep rather than spinning: 1 when one came (its rank and tag in *from and *tag,
 * its bytes in buf, their number in *n, which held buf's size), 0 when none came in time, -1
 * after a message. */
int cli_dist_recv(int *from, int *tag, void *buf, size_t *n, double wait_s);

#endif
