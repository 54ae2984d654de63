/* dist.h: data-parallel collectives of drlmem over MPI (OpenMPI).
 *
 * Every MPI call of drlmem lives in dist.c, behind this plain C interface,
 * so that the rest of the core and the Lua bindings never include mpi.h.
 * The model is the one of Horovod and PyTorch DDP: N processes ("ranks",
 * numbered 0..N-1 as MPI does) run the same program, each on its own shard
 * of a global batch, and meet in collectives (allreduce, broadcast,
 * barrier) that every rank calls in the same order.
 *
 * A process is in one of three states. Before dm_dist_init nothing of MPI
 * has run. dm_dist_init in a process started by an MPI launcher (mpirun
 * sets OMPI_COMM_WORLD_SIZE, a PMIx launcher such as srun PMIX_RANK) calls
 * MPI_Init and joins the world; in any other process it calls no MPI at
 * all (OpenMPI's "singleton" init would spawn a runtime daemon and take
 * seconds for nothing) and the process is a world of one: rank 0, size 1,
 * and every collective returns at once with the data unchanged (times the
 * prescale of dm_dist_allreduce_tensors). dm_dist_finalize ends MPI; no
 * collective works after it (MPI cannot be initialised twice).
 *
 * Failures come back as -1 and a message, never as an abort: the
 * communicator's error handler is MPI_ERRORS_RETURN, and every collective
 * is started non-blocking and waited for with a deadline (the timeout of
 * dm_dist_init), so a rank that is stuck or gone makes the others fail with
 * "allreduce did not complete within 60 s on rank 0 of 2 ..." instead of
 * hanging. After such a timeout the process group is unusable (the pending
 * operation can still write into its buffer, which is therefore never
 * freed) and every later collective fails at once; the process must exit
 * with a non-zero status, on which the launcher ends the other ranks.
 *
 * Only the thread that called dm_dist_init may call these functions. */
#ifndef DM_DIST_H
#define DM_DIST_H

#include "core/common.h"
#include "core/tensor.h"

typedef enum dm_dist_op { DM_DIST_SUM = 0, DM_DIST_MEAN, DM_DIST_MAX, DM_DIST_MIN } dm_dist_op;

/* Default deadline of a collective, in seconds, when neither dm_dist_init's
 * argument nor the environment (DRLMEM_DIST_TIMEOUT) gives one. Long
 * enough for rank 0 to read a large corpus while the others wait. */
#define DM_DIST_DEFAULT_TIMEOUT 600.0

/* Default bucket of dm_dist_allreduce_tensors: 4 MiB, the size at which
 * one allreduce on shared memory or a LAN costs about its bandwidth. */
#define DM_DIST_DEFAULT_BUCKET_BYTES ((size_t)4 << 20)

/* 1 when an MPI launcher started this process (so dm_dist_init will join
 * a world of its size), else 0. Calls no MPI. */
int dm_dist_launched(void);

/* Joins the world (see the top of this file); idempotent while not
 * finalised. timeout_s > 0: deadline of every later collective; 0: no
 * deadline (wait forever); < 0: DRLMEM_DIST_TIMEOUT from the environment,
 * else DM_DIST_DEFAULT_TIMEOUT. Fails after dm_dist_finalize, on a bad
 * DRLMEM_DIST_TIMEOUT, or when MPI_Init fails. */
int dm_dist_init(double timeout_s, dm_error *err);
/* 1 after a successful dm_dist_init and before dm_dist_finalize. */
int dm_dist_initialized(void);
/* 1 when the process runs in an MPI world (init joined one), even of size 1. */
int dm_dist_uses_mpi(void);
/* This process's rank and the world size; 0 and 1 before init. */
int dm_dist_rank(void);
int dm_dist_size(void);
/* The deadline of collectives in seconds (0: none). */
double dm_dist_timeout(void);

/* In-place allreduce of n tensors, all float32 or int32 (mixed lists are
 * allowed; each dtype is reduced as itself), as if they were one long
 * vector: elements are packed in list order into a staging buffer of
 * bucket_bytes (0: DM_DIST_DEFAULT_BUCKET_BYTES; at least one element), and
 * each full buffer is one MPI allreduce, so a list of many small gradients
 * costs few collectives and a tensor larger than the bucket is reduced in
 * pieces. Tensors may be non-contiguous views. op MEAN divides by the size
 * after the sum and is refused for int32; prescale multiplies every
 * float32 element before the reduction (a rank's weight in a weighted
 * mean; 1 for none; must be 1 for int32, MAX and MIN). Every rank must pass
 * the same dtypes and numbers of elements in the same order: the first
 * bucket carries a check of the layout, so a mismatch fails with a message
 * instead of mixing unrelated numbers. */
int dm_dist_allreduce_tensors(dm_tensor *const *ts, size_t n, dm_dist_op op, double prescale,
                              size_t bucket_bytes, dm_error *err);
/* In-place allreduce of n doubles (losses, counts, metrics). */
int dm_dist_allreduce_f64(double *v, size_t n, dm_dist_op op, dm_error *err);

/* A dm_reduce_fn (common.h) over this world: dm_dist_allreduce_f64 with
 * op SUM; ctx is unused. What a controller trained across processes is
 * given (dm_controller_set_reduce). */
int dm_dist_reduce_sum(double *v, size_t n, void *ctx, dm_error *err);

/* Every rank receives root's n tensors (in place; the same dtypes and
 * numbers of elements on every rank, checked as for allreduce), through
 * buckets of bucket_bytes as above. */
int dm_dist_broadcast_tensors(dm_tensor *const *ts, size_t n, int root, size_t bucket_bytes,
                              dm_error *err);
/* Every rank receives root's nbytes bytes at buf (in place); every rank
 * must pass the same nbytes (broadcast a size first when only root knows
 * it). */
int dm_dist_broadcast_bytes(void *buf, size_t nbytes, int root, dm_error *err);
/* Returns when every rank has called it. */
int dm_dist_barrier(dm_error *err);

/* Ends MPI (every rank must call it; it waits for the others). Idempotent.
 * A process that exits with status 0 without calling it is finalised on
 * exit; one that exits with another status is not, so the launcher sees an
 * abnormal end and stops the other ranks. */
int dm_dist_finalize(dm_error *err);

/* "sum", "mean", "max", "min". */
const char *dm_dist_op_name(dm_dist_op op);

#endif
