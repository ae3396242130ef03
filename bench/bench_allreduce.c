/*
 * bench_allreduce.c - what one training step of `mnist train --distributed` spends talking:
 * MPI_Allreduce of the float gradients (one per parameter), and the small MPI_Allgather of
 * doubles that batch norm and the step's statistics use (cli/dist_mpi.c). Run by
 * bench/allreduce under mpirun; prints, on rank 0, the median time of each over the ranks'
 * slowest, in microseconds.
 *
 * Usage: mpirun -np P bench_allreduce REPS N_FLOATS... [--gather N_DOUBLES...]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over reps of the slowest rank's time for one collective on n elements. */
static double time_op(int gather, long n, int reps, void *buf, void *all, double *t) {
    for (int r = -5; r < reps; r++) { /* 5 warm-up rounds */
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        if (gather)
            MPI_Allgather(buf, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, MPI_COMM_WORLD);
        else
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (r >= 0) t[r] = dt;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    return t[reps / 2] * 1e6;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const int reps = argc > 1 ? atoi(argv[1]) : 0;
    if (reps < 1) {
        if (rank == 0) fprintf(stderr, "usage: bench_allreduce REPS N_FLOATS... [--gather N...]\n");
        MPI_Finalize();
        return 2;
    }
    double *t = malloc(sizeof(double) * (size_t)reps);
    int gather = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--gather")) {
            gather = 1;
            continue;
        }
        const long n = atol(argv[i]);
        const size_t bytes = (size_t)n * (gather ? sizeof(double) : sizeof(float));
        void *buf = calloc((size_t)n, gather ? sizeof(double) : sizeof(float));
        void *all = gather ? calloc((size_t)n * (size_t)size, sizeof(double)) : NULL;
        const double us = time_op(gather, n, reps, buf, all, t);
        if (rank == 0)
            printf("%s %ld %s (%.1f KB) on %d ranks: %.1f us\n", gather ? "allgather" : "allreduce",
                   n, gather ? "doubles" : "floats", bytes / 1024.0, size, us);
        free(buf);
        free(all);
    }
    free(t);
    MPI_Finalize();
    return 0;
}
