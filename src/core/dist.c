/* dist.c: the one file of drlmem that calls MPI (see dist.h for the
 * contract).
 *
 * Each collective is started non-blocking (MPI_Iallreduce, MPI_Ibcast,
 * MPI_Ibarrier) on a private duplicate of MPI_COMM_WORLD whose error
 * handler returns codes, and completed by polling MPI_Test against a
 * deadline: a blocking MPI call offers no way out when a peer never
 * arrives. The poll spins for the first millisecond (a small allreduce
 * between two ranks on shared memory took 0.12 ms on the 2-core test
 * machine) and then sleeps 50 us between tests, so that a rank waiting for
 * a slow peer does not take a core from it when ranks share a machine.
 *
 * Tensor lists travel through one staging buffer ("bucket") per call: the
 * elements are packed in list order, reduced or broadcast one bucket at a
 * time, and unpacked, as Horovod's tensor fusion and DDP's gradient buckets
 * do, so that a model with twenty small gradients costs a few collectives
 * rather than twenty. */
/* dladdr and RTLD_NODELETE are GNU extensions. */
#define _GNU_SOURCE
#include "core/dist.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ST_NONE = 0, ST_SINGLE, ST_MPI, ST_FINALIZED };

static struct {
    int state;
    int rank, size;
    double timeout_s;
    int owns_mpi;      /* this file called MPI_Init, so it calls MPI_Finalize */
    int broken;        /* a collective timed out or failed: group unusable */
    char broken_msg[DM_ERRMSG_MAX];
    MPI_Comm comm;
} g = {ST_NONE, 0, 1, DM_DIST_DEFAULT_TIMEOUT, 0, 0, "", MPI_COMM_NULL};

const char *dm_dist_op_name(dm_dist_op op)
{
    static const char *const names[] = {"sum", "mean", "max", "min"};
    return (unsigned)op < 4 ? names[op] : "?";
}

int dm_dist_launched(void)
{
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    if (s && *s) return 1;
    s = getenv("PMIX_RANK");
    return s && *s;
}

int dm_dist_initialized(void) { return g.state == ST_SINGLE || g.state == ST_MPI; }
int dm_dist_uses_mpi(void) { return g.state == ST_MPI; }
int dm_dist_rank(void) { return g.rank; }
int dm_dist_size(void) { return g.size; }
double dm_dist_timeout(void) { return g.timeout_s; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int mpi_fail(dm_error *err, const char *what, int code)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", code);
    g.broken = 1;
    snprintf(g.broken_msg, sizeof g.broken_msg, "%s failed on rank %d of %d: %s", what, g.rank,
             g.size, s);
    return dm_fail(err, "dist: %s", g.broken_msg);
}

/* Waits for req until the deadline; on a timeout the group is marked
 * broken (the request stays pending: its buffer must never be freed). */
static int wait_request(MPI_Request *req, const char *what, dm_error *err)
{
    double t0 = now_s();
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(err, what, rc);
        if (done) return 0;
        double dt = now_s() - t0;
        if (g.timeout_s > 0 && dt > g.timeout_s) {
            g.broken = 1;
            snprintf(g.broken_msg, sizeof g.broken_msg,
                     "%s did not complete within %g s on rank %d of %d: another rank has "
                     "stopped, died or is not calling the same collective "
                     "(dist.init{timeout = s} or DRLMEM_DIST_TIMEOUT sets the limit)",
                     what, g.timeout_s, g.rank, g.size);
            return dm_fail(err, "dist: %s", g.broken_msg);
        }
        if (dt > 1e-3) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

/* The guard every collective passes first: initialises lazily, and refuses
 * to run on a finalised or broken group. */
static int ready(const char *what, dm_error *err)
{
    if (g.state == ST_FINALIZED)
        return dm_fail(err, "dist.%s: MPI has been finalized (dist.finalize); no collective "
                            "can run after it", what);
    if (g.state == ST_NONE && dm_dist_init(-1, err) != 0) return -1;
    if (g.broken)
        return dm_fail(err, "dist.%s: the process group is unusable since an earlier "
                            "collective failed (%s)", what, g.broken_msg);
    return 0;
}

/* on_exit handler: a clean exit (status 0) finalises, so the launcher sees
 * a normal end; any other status, or a broken group (MPI_Finalize would
 * wait for ranks that will never come), leaves MPI as it is, and the
 * launcher stops the other ranks. */
static void finalize_at_exit(int status, void *arg)
{
    (void)arg;
    if (status == 0 && g.state == ST_MPI && !g.broken) dm_dist_finalize(NULL);
}

/* When drlmem.so is loaded by stock lua5.4, lua_close dlcloses it before
 * exit, and the exit handler registered by dm_dist_init would then jump
 * into unmapped code (rank after rank crashed with SIGSEGV at exit, found
 * by tests/host/dist.sh). Pin the object that holds this code so it stays
 * mapped until the process ends; for the drlmem executable this is a
 * no-op. */
static void pin_this_object(void)
{
    Dl_info info;
    if (dladdr((void *)&dm_dist_init, &info) && info.dli_fname)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

static int parse_timeout(double *out, dm_error *err)
{
    const char *s = getenv("DRLMEM_DIST_TIMEOUT");
    if (!s || !*s) {
        *out = DM_DIST_DEFAULT_TIMEOUT;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= 0) || isinf(v))
        return dm_fail(err, "dist.init: DRLMEM_DIST_TIMEOUT must be a number of seconds >= 0 "
                            "(0: no limit), got '%s'", s);
    *out = v;
    return 0;
}

int dm_dist_init(double timeout_s, dm_error *err)
{
    if (g.state == ST_FINALIZED)
        return dm_fail(err, "dist.init: MPI has been finalized and cannot be initialized again");
    if (timeout_s < 0) {
        if (parse_timeout(&timeout_s, err) != 0) return -1;
    } else if (isnan(timeout_s) || isinf(timeout_s)) {
        return dm_fail(err, "dist.init: timeout must be a finite number of seconds, got %g",
                       timeout_s);
    }
    if (g.state != ST_NONE) {
        g.timeout_s = timeout_s;
        return 0;
    }
    if (!dm_dist_launched()) {
        g.state = ST_SINGLE;
        g.rank = 0;
        g.size = 1;
        g.timeout_s = timeout_s;
        return 0;
    }
    pin_this_object();
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
        int rc = MPI_Init(NULL, NULL);
        if (rc != MPI_SUCCESS) return dm_fail(err, "dist.init: MPI_Init failed (error %d)", rc);
        g.owns_mpi = 1;
    }
    /* From here on errors come back as codes on our communicator. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &g.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(err, "dist.init: MPI_Comm_dup", rc);
    MPI_Comm_set_errhandler(g.comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(g.comm, &g.rank);
    MPI_Comm_size(g.comm, &g.size);
    g.timeout_s = timeout_s;
    g.state = ST_MPI;
    on_exit(finalize_at_exit, NULL);
    return 0;
}

int dm_dist_finalize(dm_error *err)
{
    if (g.state == ST_MPI) {
        g.state = ST_FINALIZED;
        if (!g.broken) MPI_Comm_free(&g.comm);
        if (!g.owns_mpi) return 0; /* whoever initialised MPI finalises it */
        int rc = MPI_Finalize();
        if (rc != MPI_SUCCESS) return dm_fail(err, "dist.finalize: MPI_Finalize failed (error %d)", rc);
        return 0;
    }
    if (g.state == ST_SINGLE || g.state == ST_NONE) g.state = ST_FINALIZED;
    return 0;
}

static MPI_Op mpi_op(dm_dist_op op)
{
    switch (op) {
    case DM_DIST_MAX: return MPI_MAX;
    case DM_DIST_MIN: return MPI_MIN;
    default: return MPI_SUM;
    }
}

static int check_op(dm_dist_op op, const char *what, dm_error *err)
{
    if ((unsigned)op > DM_DIST_MIN)
        return dm_fail(err, "dist.%s: unknown op %d (expected sum, mean, max or min)", what, (int)op);
    return 0;
}

/* One in-place allreduce of n elements at buf, waited for. */
static int allreduce_raw(void *buf, size_t n, MPI_Datatype type, MPI_Op op, const char *what,
                         dm_error *err)
{
    MPI_Request req;
    while (n > 0) {
        /* MPI counts are int: reduce very long vectors in pieces. */
        int cnt = n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, cnt, type, op, g.comm, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(err, what, rc);
        if (wait_request(&req, what, err) != 0) return -1;
        int tsize = 0;
        MPI_Type_size(type, &tsize);
        buf = (char *)buf + (size_t)cnt * (size_t)tsize;
        n -= (size_t)cnt;
    }
    return 0;
}

static int bcast_raw(void *buf, size_t nbytes, int root, const char *what, dm_error *err)
{
    MPI_Request req;
    while (nbytes > 0) {
        int cnt = nbytes > (size_t)INT32_MAX ? INT32_MAX : (int)nbytes;
        int rc = MPI_Ibcast(buf, cnt, MPI_BYTE, root, g.comm, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(err, what, rc);
        if (wait_request(&req, what, err) != 0) return -1;
        buf = (char *)buf + cnt;
        nbytes -= (size_t)cnt;
    }
    return 0;
}

/* FNV-1a over 64-bit words: a fingerprint of a call's layout. */
static uint64_t fnv_mix(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 1099511628211ULL;
    }
    return h;
}

/* The kinds of call check_layout tells apart. */
enum { CALL_ALLREDUCE = 1, CALL_BCAST_TENSORS, CALL_BCAST_BYTES };

/* Every rank must be making the same call: compares a fingerprint of
 * (kind, op or root, dtypes and shapes) across ranks with one allreduce of
 * {f, -f} under MAX, which yields max and -min (equal iff all agree). A
 * mismatch fails on every rank alike, before any data is mixed, and leaves
 * the group usable. */
static int check_layout(const char *what, uint64_t kind, uint64_t arg, dm_tensor *const *ts,
                        size_t n, dm_error *err)
{
    uint64_t h = 1469598103934665603ULL;
    h = fnv_mix(h, kind);
    h = fnv_mix(h, arg);
    h = fnv_mix(h, n);
    for (size_t i = 0; i < n; i++) {
        h = fnv_mix(h, (uint64_t)ts[i]->dtype);
        h = fnv_mix(h, (uint64_t)ts[i]->ndim);
        for (int d = 0; d < ts[i]->ndim; d++) h = fnv_mix(h, (uint64_t)ts[i]->shape[d]);
    }
    /* 62 bits, so that the negation cannot overflow. Static: after a
     * timeout MPI may still write into it, so it must outlive this frame. */
    int64_t f = (int64_t)(h >> 2);
    static int64_t v[2];
    v[0] = f;
    v[1] = -f;
    if (allreduce_raw(v, 2, MPI_INT64_T, MPI_MAX, what, err) != 0) return -1;
    if (v[0] == -v[1]) return 0;
    if (kind == CALL_ALLREDUCE)
        return dm_fail(err, "dist.allreduce: the ranks passed different tensors (their number, "
                            "dtypes or shapes differ) or a different op; rank %d of %d passed "
                            "%zu tensor(s)", g.rank, g.size, n);
    return dm_fail(err, "dist.broadcast: the ranks passed different values (the number, dtypes "
                        "or shapes of the tensors, or tensors on some ranks and a value on "
                        "others) or a different root; rank %d of %d passed %zu tensor(s)",
                   g.rank, g.size, n);
}

/* Walks the elements of a list of tensors of one element size (4 bytes),
 * copying between them and a flat buffer. */
typedef struct cursor {
    dm_tensor *const *ts;
    size_t n, i;  /* tensor index */
    size_t pos;   /* element within ts[i] */
} cursor;

/* Copies up to cap elements of tensors of dtype `dtype` starting at the
 * cursor into (to_buf) or out of the flat buffer; stops at the first
 * tensor of another dtype. Returns the number of elements moved. */
static size_t cursor_move(cursor *c, uint32_t *buf, size_t cap, dm_dtype dtype, int to_buf)
{
    size_t k = 0;
    while (k < cap && c->i < c->n && c->ts[c->i]->dtype == dtype) {
        const dm_tensor *t = c->ts[c->i];
        size_t numel = dm_tensor_numel(t);
        size_t take = numel - c->pos;
        if (take > cap - k) take = cap - k;
        if (dm_tensor_is_contiguous(t)) {
            uint32_t *p = (uint32_t *)dm_tensor_data(t) + c->pos;
            if (to_buf) memcpy(buf + k, p, take * 4);
            else memcpy(p, buf + k, take * 4);
        } else {
            /* A strided view: walk its elements in row-major order, from
             * the start (rare: gradients and parameters are contiguous). */
            uint32_t *base = (uint32_t *)t->storage->data;
            dm_iter it;
            size_t j = 0;
            for (dm_iter_init(&it, t); it.pos < it.n && j < c->pos + take; dm_iter_next(&it), j++) {
                if (j < c->pos) continue;
                if (to_buf) buf[k + j - c->pos] = base[it.off];
                else base[it.off] = buf[k + j - c->pos];
            }
        }
        k += take;
        c->pos += take;
        if (c->pos == numel) {
            c->i++;
            c->pos = 0;
        }
    }
    return k;
}

static size_t bucket_elems(size_t bucket_bytes)
{
    if (bucket_bytes == 0) bucket_bytes = DM_DIST_DEFAULT_BUCKET_BYTES;
    return bucket_bytes < 4 ? 1 : bucket_bytes / 4;
}

static int check_tensors(const char *what, dm_tensor *const *ts, size_t n, dm_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!ts[i] || !ts[i]->storage)
            return dm_fail(err, "dist.%s: tensor %zu is empty", what, i + 1);
        if (ts[i]->dtype != DM_F32 && ts[i]->dtype != DM_I32)
            return dm_fail(err, "dist.%s: tensor %zu has an unsupported dtype", what, i + 1);
    }
    return 0;
}

int dm_dist_allreduce_tensors(dm_tensor *const *ts, size_t n, dm_dist_op op, double prescale,
                              size_t bucket_bytes, dm_error *err)
{
    const char *what = "allreduce";
    if (check_op(op, what, err) != 0 || check_tensors(what, ts, n, err) != 0) return -1;
    if (!isfinite(prescale))
        return dm_fail(err, "dist.allreduce: scale must be a finite number, got %g", prescale);
    for (size_t i = 0; i < n; i++) {
        if (ts[i]->dtype == DM_I32 && op == DM_DIST_MEAN)
            return dm_fail(err, "dist.allreduce: op mean of int32 tensor %zu (its mean is not "
                                "an integer): use sum and divide, or a float32 tensor", i + 1);
        if (prescale != 1.0 && (ts[i]->dtype == DM_I32 || op == DM_DIST_MAX || op == DM_DIST_MIN))
            return dm_fail(err, "dist.allreduce: scale applies to float32 sum and mean only "
                                "(tensor %zu is %s, op %s)", i + 1, dm_dtype_name(ts[i]->dtype),
                           dm_dist_op_name(op));
    }
    if (ready(what, err) != 0) return -1;
    if (g.state == ST_SINGLE || g.size == 1) {
        /* A world of one: the sum over ranks is this rank's data. */
        if (prescale != 1.0)
            for (size_t i = 0; i < n; i++) {
                dm_iter it;
                float *base = (float *)ts[i]->storage->data;
                for (dm_iter_init(&it, ts[i]); it.pos < it.n; dm_iter_next(&it))
                    base[it.off] = (float)(base[it.off] * prescale);
            }
        return 0;
    }
    if (check_layout(what, CALL_ALLREDUCE, (uint64_t)op, ts, n, err) != 0) return -1;
    size_t cap = bucket_elems(bucket_bytes);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += dm_tensor_numel(ts[i]);
    if (cap > total) cap = total;
    if (cap == 0) return 0;
    uint32_t *bucket = dm_alloc(cap * 4); /* (cap) float32 or int32 */
    if (!bucket) return dm_fail(err, "dist.allreduce: out of memory for a %zu-byte bucket", cap * 4);
    cursor in = {ts, n, 0, 0}, out = {ts, n, 0, 0};
    float inv = (float)(1.0 / g.size);
    while (in.i < n) {
        dm_dtype dt = ts[in.i]->dtype;
        size_t k = cursor_move(&in, bucket, cap, dt, 1);
        if (k == 0) continue; /* an empty tensor */
        int f32 = dt == DM_F32;
        if (f32 && prescale != 1.0) {
            float *b = (float *)bucket;
            float s = (float)prescale;
            for (size_t j = 0; j < k; j++) b[j] *= s;
        }
        if (allreduce_raw(bucket, k, f32 ? MPI_FLOAT : MPI_INT32_T, mpi_op(op), what, err) != 0)
            return -1; /* bucket deliberately not freed: MPI may still write it */
        if (op == DM_DIST_MEAN) {
            float *b = (float *)bucket;
            for (size_t j = 0; j < k; j++) b[j] *= inv;
        }
        cursor_move(&out, bucket, k, dt, 0);
    }
    dm_free(bucket);
    return 0;
}

int dm_dist_allreduce_f64(double *v, size_t n, dm_dist_op op, dm_error *err)
{
    if (check_op(op, "allreduce", err) != 0) return -1;
    if (ready("allreduce", err) != 0) return -1;
    if (g.state == ST_SINGLE || g.size == 1 || n == 0) return 0;
    /* v may be the caller's stack: reduce a heap copy, which a timeout leaks
     * rather than leaving MPI a pointer into a dead frame. */
    double *buf = dm_alloc(n * sizeof *buf); /* (n) */
    if (!buf) return dm_fail(err, "dist.allreduce: out of memory");
    memcpy(buf, v, n * sizeof *buf);
    if (allreduce_raw(buf, n, MPI_DOUBLE, mpi_op(op), "allreduce", err) != 0) return -1;
    for (size_t i = 0; i < n; i++) v[i] = op == DM_DIST_MEAN ? buf[i] / g.size : buf[i];
    dm_free(buf);
    return 0;
}

int dm_dist_reduce_sum(double *v, size_t n, void *ctx, dm_error *err)
{
    (void)ctx;
    return dm_dist_allreduce_f64(v, n, DM_DIST_SUM, err);
}

static int check_root(int root, const char *what, dm_error *err)
{
    if (root < 0 || root >= g.size)
        return dm_fail(err, "dist.%s: root %d is not a rank (0..%d)", what, root, g.size - 1);
    return 0;
}

int dm_dist_broadcast_tensors(dm_tensor *const *ts, size_t n, int root, size_t bucket_bytes,
                              dm_error *err)
{
    const char *what = "broadcast";
    if (check_tensors(what, ts, n, err) != 0 || ready(what, err) != 0) return -1;
    if (check_root(root, what, err) != 0) return -1;
    if (g.state == ST_SINGLE || g.size == 1) return 0;
    if (check_layout(what, CALL_BCAST_TENSORS, (uint64_t)root, ts, n, err) != 0) return -1;
    size_t cap = bucket_elems(bucket_bytes);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += dm_tensor_numel(ts[i]);
    if (cap > total) cap = total;
    if (cap == 0) return 0;
    uint32_t *bucket = dm_alloc(cap * 4); /* (cap) 4-byte elements */
    if (!bucket) return dm_fail(err, "dist.broadcast: out of memory for a %zu-byte bucket", cap * 4);
    cursor in = {ts, n, 0, 0}, out = {ts, n, 0, 0};
    while (in.i < n) {
        dm_dtype dt = ts[in.i]->dtype;
        size_t k = cursor_move(&in, bucket, cap, dt, 1);
        if (k == 0) continue;
        if (bcast_raw(bucket, k * 4, root, what, err) != 0) return -1; /* bucket kept: see above */
        cursor_move(&out, bucket, k, dt, 0);
    }
    dm_free(bucket);
    return 0;
}

int dm_dist_broadcast_bytes(void *buf, size_t nbytes, int root, dm_error *err)
{
    if (ready("broadcast", err) != 0 || check_root(root, "broadcast", err) != 0) return -1;
    if (g.state == ST_SINGLE || g.size == 1) return 0;
    /* The size in place of a tensor list: a rank that broadcasts tensors
     * while another broadcasts bytes fails the check. */
    if (check_layout("broadcast", CALL_BCAST_BYTES, (uint64_t)root ^ ((uint64_t)nbytes << 8), NULL,
                     0, err) != 0)
        return -1;
    if (nbytes == 0) return 0;
    /* Through a heap copy that a timeout leaks, as in allreduce_f64. */
    void *tmp = dm_alloc(nbytes); /* (nbytes) */
    if (!tmp) return dm_fail(err, "dist.broadcast: out of memory for %zu bytes", nbytes);
    if (g.rank == root) memcpy(tmp, buf, nbytes);
    if (bcast_raw(tmp, nbytes, root, "broadcast", err) != 0) return -1;
    memcpy(buf, tmp, nbytes);
    dm_free(tmp);
    return 0;
}

int dm_dist_barrier(dm_error *err)
{
    if (ready("barrier", err) != 0) return -1;
    if (g.state == ST_SINGLE || g.size == 1) return 0;
    MPI_Request req;
    int rc = MPI_Ibarrier(g.comm, &req);
    if (rc != MPI_SUCCESS) return mpi_fail(err, "barrier", rc);
    return wait_request(&req, "barrier", err);
}
