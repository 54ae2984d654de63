/* tensor_ops.c: the arithmetic of dm_tensor: element-wise operations with
 * broadcasting, reductions, softmax, top-k, allclose and the matrix product.
 *
 * Every operation here works on float32 only (int32 tensors carry token
 * ids, not numbers to compute with) and on any strided layout: a
 * contiguous fast path handles the common case and a generic row-major
 * walk (dm_iter) handles views. Outputs follow tensor.h's convention: an
 * empty output is allocated, a non-empty one (the input itself for the
 * in-place forms) is written after its shape is checked. Sums accumulate in
 * double so that means and norms of large tensors do not drift. */
#include "core/tensor.h"

#include "core/gemm.h"
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int need_f32(const dm_tensor *t, const char *who, const char *arg, dm_error *err)
{
    if (!t->storage) return dm_fail(err, "%s: argument %s: tensor is empty (freed)", who, arg);
    if (t->dtype != DM_F32)
        return dm_fail(err, "%s: argument %s: expected a float32 tensor, got %s", who, arg,
                       dm_dtype_name(t->dtype));
    return 0;
}

static int same_shape(const dm_tensor *a, const dm_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static int shape_is(const dm_tensor *t, int ndim, const int64_t *shape)
{
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

/* Allocates an empty out with the given shape, or checks that a non-empty
 * out already has it. */
static int prepare_out(dm_tensor *out, int ndim, const int64_t *shape, const char *who, dm_error *err)
{
    char sa[160], sb[160];
    if (!out->storage) return dm_tensor_init(out, DM_F32, ndim, shape, who, err);
    if (out->dtype != DM_F32)
        return dm_fail(err, "%s: output must be float32, got %s", who, dm_dtype_name(out->dtype));
    if (!shape_is(out, ndim, shape)) {
        dm_tensor tmp = {0};
        tmp.ndim = ndim;
        for (int i = 0; i < ndim; i++) tmp.shape[i] = shape[i];
        return dm_fail(err, "%s: result of shape %s does not fit the output of shape %s", who,
                       dm_tensor_shape_str(&tmp, sa, sizeof sa), dm_tensor_shape_str(out, sb, sizeof sb));
    }
    return 0;
}

/* ---- element-wise ------------------------------------------------------------ */

static inline float binop(dm_binop op, float x, float y)
{
    switch (op) {
    case DM_ADD: return x + y;
    case DM_SUB: return x - y;
    case DM_MUL: return x * y;
    default: return x / y;
    }
}

int dm_tensor_binary(dm_tensor *out, const dm_tensor *a, const dm_tensor *b, dm_binop op,
                     const char *who, dm_error *err)
{
    char sa[160], sb[160];
    if (need_f32(a, who, "1", err) || need_f32(b, who, "2", err)) return -1;
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[DM_MAX_DIMS], sta[DM_MAX_DIMS], stb[DM_MAX_DIMS];
    /* Right-aligned NumPy broadcasting; a broadcast dimension gets stride 0
     * so the generic walk re-reads the same element. */
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return dm_fail(err, "%s: shapes %s and %s cannot be broadcast (%" PRId64 " != %" PRId64
                                " in dimension %d of the result)", who,
                           dm_tensor_shape_str(a, sa, sizeof sa), dm_tensor_shape_str(b, sb, sizeof sb),
                           da, db, i + 1);
        shape[i] = da == 1 ? db : da;
        sta[i] = (ia >= 0 && da != 1) ? a->stride[ia] : 0;
        stb[i] = (ib >= 0 && db != 1) ? b->stride[ib] : 0;
    }
    if (out->storage && !shape_is(out, nd, shape)) {
        dm_tensor tmp = {0};
        tmp.ndim = nd;
        memcpy(tmp.shape, shape, sizeof(int64_t) * (size_t)nd);
        char sc[160];
        return dm_fail(err, "%s: result of shape %s (broadcast with %s) does not fit the tensor of shape %s updated in place",
                       who, dm_tensor_shape_str(&tmp, sa, sizeof sa), dm_tensor_shape_str(b, sb, sizeof sb),
                       dm_tensor_shape_str(out, sc, sizeof sc));
    }
    if (prepare_out(out, nd, shape, who, err)) return -1;
    size_t n = dm_tensor_numel(out);
    if (n == 0) return 0;
    const float *pa = (const float *)a->storage->data, *pb = (const float *)b->storage->data;
    float *po = (float *)out->storage->data;
    if (dm_tensor_is_contiguous(out) && dm_tensor_is_contiguous(a) && dm_tensor_is_contiguous(b)) {
        float *o = dm_tensor_f32(out);
        const float *x = dm_tensor_f32(a), *y = dm_tensor_f32(b);
        size_t na = dm_tensor_numel(a), nb = dm_tensor_numel(b);
        if (na == n && nb == n) {
            for (size_t i = 0; i < n; i++) o[i] = binop(op, x[i], y[i]);
            return 0;
        }
        /* Bias-like case: b's shape is a's trailing dimensions. */
        int trailing = a->ndim >= b->ndim && na == n && nb > 0;
        for (int i = 0; trailing && i < b->ndim; i++)
            trailing = b->shape[i] == a->shape[a->ndim - b->ndim + i];
        if (trailing) {
            for (size_t i = 0; i < n; i += nb)
                for (size_t j = 0; j < nb; j++) o[i + j] = binop(op, x[i + j], y[j]);
            return 0;
        }
    }
    int64_t idx[DM_MAX_DIMS] = {0};
    int64_t oa = (int64_t)a->offset, ob = (int64_t)b->offset;
    dm_iter it;
    for (dm_iter_init(&it, out); it.pos < it.n; dm_iter_next(&it)) {
        po[it.off] = binop(op, pa[oa], pb[ob]);
        for (int d = nd - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) {
                oa += sta[d];
                ob += stb[d];
                break;
            }
            oa -= sta[d] * (shape[d] - 1);
            ob -= stb[d] * (shape[d] - 1);
            idx[d] = 0;
        }
    }
    return 0;
}

int dm_tensor_binary_scalar(dm_tensor *out, const dm_tensor *a, double s, dm_binop op,
                            int reversed, const char *who, dm_error *err)
{
    if (need_f32(a, who, "1", err)) return -1;
    if (prepare_out(out, a->ndim, a->shape, who, err)) return -1;
    float y = (float)s;
    if (dm_tensor_is_contiguous(out) && dm_tensor_is_contiguous(a)) {
        float *o = dm_tensor_f32(out);
        const float *x = dm_tensor_f32(a);
        size_t n = dm_tensor_numel(a);
        if (reversed)
            for (size_t i = 0; i < n; i++) o[i] = binop(op, y, x[i]);
        else
            for (size_t i = 0; i < n; i++) o[i] = binop(op, x[i], y);
        return 0;
    }
    float *po = (float *)out->storage->data;
    const float *pa = (const float *)a->storage->data;
    dm_iter io, ia;
    dm_iter_init(&io, out);
    for (dm_iter_init(&ia, a); ia.pos < ia.n; dm_iter_next(&ia), dm_iter_next(&io))
        po[io.off] = reversed ? binop(op, y, pa[ia.off]) : binop(op, pa[ia.off], y);
    return 0;
}

static inline float unop(dm_unop op, float x, float p1, float p2)
{
    switch (op) {
    case DM_NEG: return -x;
    case DM_EXP: return expf(x);
    case DM_LOG: return logf(x);
    case DM_TANH: return tanhf(x);
    /* Two branches so exp never overflows for large |x|. */
    case DM_SIGMOID: return x >= 0 ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
    case DM_SQRT: return sqrtf(x);
    case DM_ABS: return fabsf(x);
    case DM_POW: return powf(x, p1);
    default: return x < p1 ? p1 : (x > p2 ? p2 : x); /* NaN passes through */
    }
}

int dm_tensor_unary(dm_tensor *out, const dm_tensor *a, dm_unop op, double p1, double p2,
                    const char *who, dm_error *err)
{
    if (need_f32(a, who, "1", err)) return -1;
    if (op == DM_CLAMP && p1 > p2)
        return dm_fail(err, "%s: min %g is greater than max %g", who, p1, p2);
    if (prepare_out(out, a->ndim, a->shape, who, err)) return -1;
    float f1 = (float)p1, f2 = (float)p2;
    if (dm_tensor_is_contiguous(out) && dm_tensor_is_contiguous(a)) {
        float *o = dm_tensor_f32(out);
        const float *x = dm_tensor_f32(a);
        size_t n = dm_tensor_numel(a);
        for (size_t i = 0; i < n; i++) o[i] = unop(op, x[i], f1, f2);
        return 0;
    }
    float *po = (float *)out->storage->data;
    const float *pa = (const float *)a->storage->data;
    dm_iter io, ia;
    dm_iter_init(&io, out);
    for (dm_iter_init(&ia, a); ia.pos < ia.n; dm_iter_next(&ia), dm_iter_next(&io))
        po[io.off] = unop(op, pa[ia.off], f1, f2);
    return 0;
}

/* ---- reductions -------------------------------------------------------------- */

static const char *redop_name(dm_redop op)
{
    static const char *names[] = {"sum", "mean", "max", "min", "norm"};
    return names[op];
}

/* Folds n values at p (stride s) into *value (and *index for max/min). The
 * first NaN wins max/min, as in PyTorch. */
static void fold(dm_redop op, const float *p, int64_t n, int64_t s, double *value, int64_t *index)
{
    if (op == DM_MAX || op == DM_MIN) {
        float best = p[0];
        int64_t bi = 0;
        for (int64_t k = 1; k < n && !isnan(best); k++) {
            float v = p[k * s];
            if (isnan(v) || (op == DM_MAX ? v > best : v < best)) {
                best = v;
                bi = k;
            }
        }
        *value = best;
        *index = bi;
        return;
    }
    double acc = 0;
    if (op == DM_NORM)
        for (int64_t k = 0; k < n; k++) acc += (double)p[k * s] * p[k * s];
    else
        for (int64_t k = 0; k < n; k++) acc += p[k * s];
    if (op == DM_MEAN) acc = n > 0 ? acc / (double)n : NAN;
    if (op == DM_NORM) acc = sqrt(acc);
    *value = acc;
}

int dm_tensor_reduce_all(const dm_tensor *a, dm_redop op, double *value, int64_t *index,
                         dm_error *err)
{
    const char *who = redop_name(op);
    if (need_f32(a, who, "1", err)) return -1;
    size_t n = dm_tensor_numel(a);
    if (n == 0 && (op == DM_MAX || op == DM_MIN))
        return dm_fail(err, "%s: cannot reduce an empty tensor (0 elements)", who);
    int64_t bi = 0;
    if (dm_tensor_is_contiguous(a)) {
        fold(op, dm_tensor_f32(a), (int64_t)n, 1, value, &bi);
    } else {
        /* Strided: fold one innermost row at a time, combining rows. */
        const float *p = (const float *)a->storage->data;
        double acc = 0, best = 0;
        dm_iter it;
        for (dm_iter_init(&it, a); it.pos < it.n; dm_iter_next(&it)) {
            double v = p[it.off];
            if (op == DM_MAX || op == DM_MIN) {
                if (it.pos == 0 || (!isnan(best) && (isnan(v) || (op == DM_MAX ? v > best : v < best)))) {
                    best = v;
                    bi = (int64_t)it.pos;
                }
            } else {
                acc += op == DM_NORM ? v * v : v;
            }
        }
        if (op == DM_MAX || op == DM_MIN) *value = best;
        else if (op == DM_MEAN) *value = n ? acc / (double)n : NAN;
        else if (op == DM_NORM) *value = sqrt(acc);
        else *value = acc;
    }
    if (index) *index = bi;
    return 0;
}

/* The tensor a without dimension dim (not a counted view: only for walking
 * the positions of the other dimensions). */
static dm_tensor drop_dim(const dm_tensor *a, int dim)
{
    dm_tensor r = *a;
    for (int d = dim; d < a->ndim - 1; d++) {
        r.shape[d] = a->shape[d + 1];
        r.stride[d] = a->stride[d + 1];
    }
    r.ndim = a->ndim - 1;
    return r;
}

int dm_tensor_reduce_dim(dm_tensor *values, dm_tensor *indices, const dm_tensor *a, dm_redop op,
                         int dim, int keepdim, int index_base, dm_error *err)
{
    const char *who = redop_name(op);
    if (need_f32(a, who, "1", err)) return -1;
    if (dim < 0 || dim >= a->ndim)
        return dm_fail(err, "%s: dimension %d out of range for a %d-d tensor (expected 1 to %d)", who,
                       dim + 1, a->ndim, a->ndim);
    int64_t len = a->shape[dim];
    if (len == 0 && (op == DM_MAX || op == DM_MIN))
        return dm_fail(err, "%s: cannot reduce dimension %d of size 0", who, dim + 1);
    int64_t shape[DM_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (d != dim) shape[nd++] = a->shape[d];
        else if (keepdim) shape[nd++] = 1;
    }
    if (dm_tensor_init(values, DM_F32, nd, shape, who, err)) return -1;
    int want_idx = indices && (op == DM_MAX || op == DM_MIN);
    if (want_idx && dm_tensor_init(indices, DM_I32, nd, shape, who, err)) {
        dm_tensor_release(values);
        return -1;
    }
    dm_tensor outer = drop_dim(a, dim);
    const float *p = (const float *)a->storage->data;
    float *pv = dm_tensor_f32(values);
    int32_t *pi = want_idx ? dm_tensor_i32(indices) : NULL;
    dm_iter it;
    for (dm_iter_init(&it, &outer); it.pos < it.n; dm_iter_next(&it)) {
        double v;
        int64_t bi = 0;
        fold(op, p + it.off, len, a->stride[dim], &v, &bi);
        pv[it.pos] = (float)v;
        if (pi) pi[it.pos] = (int32_t)(bi + index_base);
    }
    return 0;
}

int dm_tensor_softmax(dm_tensor *out, const dm_tensor *a, int log_space, dm_error *err)
{
    const char *who = log_space ? "log_softmax" : "softmax";
    if (need_f32(a, who, "1", err)) return -1;
    if (a->ndim == 0) return dm_fail(err, "%s: expected a tensor with at least 1 dimension, got a scalar", who);
    if (prepare_out(out, a->ndim, a->shape, who, err)) return -1;
    int last = a->ndim - 1;
    int64_t len = a->shape[last], sa = a->stride[last], so = out->stride[last];
    dm_tensor oa = drop_dim(a, last), oo = drop_dim(out, last);
    const float *pa = (const float *)a->storage->data;
    float *po = (float *)out->storage->data;
    dm_iter ia, io;
    dm_iter_init(&io, &oo);
    for (dm_iter_init(&ia, &oa); ia.pos < ia.n && len > 0; dm_iter_next(&ia), dm_iter_next(&io)) {
        const float *x = pa + ia.off;
        float *y = po + io.off;
        float m = x[0];
        for (int64_t k = 1; k < len; k++)
            if (x[k * sa] > m) m = x[k * sa];
        double s = 0;
        for (int64_t k = 0; k < len; k++) s += exp((double)x[k * sa] - m);
        if (log_space) {
            double ls = log(s);
            for (int64_t k = 0; k < len; k++) y[k * so] = (float)((double)x[k * sa] - m - ls);
        } else {
            for (int64_t k = 0; k < len; k++) y[k * so] = (float)(exp((double)x[k * sa] - m) / s);
        }
    }
    return 0;
}

typedef struct { float v; int64_t i; } vi_pair;

/* Descending by value, NaN first (largest, as in PyTorch), ties by index. */
static int cmp_desc(const void *pa, const void *pb)
{
    const vi_pair *a = pa, *b = pb;
    int na = isnan(a->v), nb = isnan(b->v);
    if (na != nb) return na ? -1 : 1;
    if (!na && a->v != b->v) return a->v > b->v ? -1 : 1;
    return a->i < b->i ? -1 : (a->i > b->i);
}

int dm_tensor_topk(dm_tensor *values, dm_tensor *indices, const dm_tensor *a, int64_t k,
                   int index_base, dm_error *err)
{
    if (need_f32(a, "topk", "1", err)) return -1;
    if (a->ndim == 0) return dm_fail(err, "topk: expected a tensor with at least 1 dimension, got a scalar");
    int last = a->ndim - 1;
    int64_t len = a->shape[last];
    if (k < 0 || k > len)
        return dm_fail(err, "topk: k = %" PRId64 " out of range for a last dimension of size %" PRId64
                            " (expected 0 to %" PRId64 ")", k, len, len);
    int64_t shape[DM_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[last] = k;
    vi_pair *buf = malloc(sizeof(vi_pair) * (size_t)(len > 0 ? len : 1));
    if (!buf) return dm_fail(err, "topk: out of memory for a row of %" PRId64 " elements", len);
    if (dm_tensor_init(values, DM_F32, a->ndim, shape, "topk", err)) goto fail;
    if (dm_tensor_init(indices, DM_I32, a->ndim, shape, "topk", err)) {
        dm_tensor_release(values);
        goto fail;
    }
    dm_tensor outer = drop_dim(a, last);
    const float *p = (const float *)a->storage->data;
    float *pv = dm_tensor_f32(values);
    int32_t *pi = dm_tensor_i32(indices);
    dm_iter it;
    for (dm_iter_init(&it, &outer); it.pos < it.n; dm_iter_next(&it)) {
        for (int64_t j = 0; j < len; j++) {
            buf[j].v = p[it.off + j * a->stride[last]];
            buf[j].i = j;
        }
        qsort(buf, (size_t)len, sizeof *buf, cmp_desc);
        for (int64_t j = 0; j < k; j++) {
            pv[(int64_t)it.pos * k + j] = buf[j].v;
            pi[(int64_t)it.pos * k + j] = (int32_t)(buf[j].i + index_base);
        }
    }
    free(buf);
    return 0;
fail:
    free(buf);
    return -1;
}

int dm_tensor_allclose(const dm_tensor *a, const dm_tensor *b, double rtol, double atol,
                       int *result, dm_error *err)
{
    char sa[160], sb[160];
    if (!same_shape(a, b))
        return dm_fail(err, "allclose: shapes %s and %s do not match", dm_tensor_shape_str(a, sa, sizeof sa),
                       dm_tensor_shape_str(b, sb, sizeof sb));
    int ok = 1;
    dm_iter ia, ib;
    dm_iter_init(&ib, b);
    for (dm_iter_init(&ia, a); ok && ia.pos < ia.n; dm_iter_next(&ia), dm_iter_next(&ib)) {
        double x = dm_tensor_get_at(a, ia.off), y = dm_tensor_get_at(b, ib.off);
        if (x == y) continue; /* also equal infinities */
        if (!(fabs(x - y) <= atol + rtol * fabs(y))) ok = 0;
    }
    *result = ok;
    return 0;
}

/* ---- matrix product ------------------------------------------------------------ */

/* How BLAS can read the (r,c) matrix with strides (s0,s1) in row-major
 * terms: as is (NoTrans, element (i,j) at i*ld + j) or as the transpose of
 * a stored (c,r) matrix (Trans, element (i,j) at j*ld + i), which is what a
 * transposed view of a contiguous matrix is. -1: neither (copy first).
 * Strides of size-1 dimensions are meaningless and ignored. */
static int blas_layout(int64_t r, int64_t c, int64_t s0, int64_t s1, char *tr, int64_t *ld)
{
    int64_t c1 = c > 1 ? c : 1, r1 = r > 1 ? r : 1;
    if ((c <= 1 || s1 == 1) && (r <= 1 || s0 >= c1)) {
        *tr = 'N';
        *ld = r <= 1 ? c1 : s0;
        return 0;
    }
    if ((r <= 1 || s0 == 1) && (c <= 1 || s1 >= r1)) {
        *tr = 'T';
        *ld = c <= 1 ? r1 : s1;
        return 0;
    }
    return -1;
}

/* A BLAS-readable version of t (a view when its last two dimensions
 * already are, else a contiguous copy), with the layout of those two. */
static int blas_operand(dm_tensor *dst, const dm_tensor *t, char *tr, int64_t *ld, dm_error *err)
{
    int n = t->ndim;
    if (blas_layout(t->shape[n - 2], t->shape[n - 1], t->stride[n - 2], t->stride[n - 1], tr, ld) == 0) {
        dm_tensor_init_view(dst, t);
        return 0;
    }
    if (dm_tensor_clone(dst, t, err)) return -1;
    return blas_layout(dst->shape[n - 2], dst->shape[n - 1], dst->stride[n - 2], dst->stride[n - 1], tr, ld);
}

int dm_tensor_matmul(dm_tensor *out, const dm_tensor *a, const dm_tensor *b, dm_error *err)
{
    char sa[160], sb[160];
    if (need_f32(a, "matmul", "1", err) || need_f32(b, "matmul", "2", err)) return -1;
    if (!((a->ndim == 2 && b->ndim == 2) || (a->ndim == 3 && (b->ndim == 3 || b->ndim == 2))))
        return dm_fail(err, "matmul: expected 2-d x 2-d, 3-d x 3-d or 3-d x 2-d tensors, got %d-d (%s) and %d-d (%s)",
                       a->ndim, dm_tensor_shape_str(a, sa, sizeof sa), b->ndim,
                       dm_tensor_shape_str(b, sb, sizeof sb));
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t K2 = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
    int64_t B = a->ndim == 3 ? a->shape[0] : 1;
    if (K != K2)
        return dm_fail(err, "matmul: shapes %s and %s do not match (%" PRId64 " != %" PRId64 ")",
                       dm_tensor_shape_str(a, sa, sizeof sa), dm_tensor_shape_str(b, sb, sizeof sb), K, K2);
    if (b->ndim == 3 && b->shape[0] != B)
        return dm_fail(err, "matmul: batch sizes of shapes %s and %s do not match (%" PRId64 " != %" PRId64 ")",
                       dm_tensor_shape_str(a, sa, sizeof sa), dm_tensor_shape_str(b, sb, sizeof sb), B,
                       b->shape[0]);
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || B * M > INT_MAX)
        return dm_fail(err, "matmul: dimensions of shapes %s and %s exceed the BLAS limit of %d",
                       dm_tensor_shape_str(a, sa, sizeof sa), dm_tensor_shape_str(b, sb, sizeof sb), INT_MAX);
    int64_t shape[3] = {B, M, N};
    if (a->ndim == 3) {
        if (dm_tensor_init(out, DM_F32, 3, shape, "matmul", err)) return -1;
    } else if (dm_tensor_init(out, DM_F32, 2, shape + 1, "matmul", err)) {
        return -1;
    }
    if (M == 0 || N == 0 || K == 0 || B == 0) return 0; /* zeros already */
    dm_tensor ta = {0}, tb = {0};
    char tra, trb;
    int64_t lda, ldb;
    if (blas_operand(&ta, a, &tra, &lda, err) || blas_operand(&tb, b, &trb, &ldb, err)) {
        dm_tensor_release(&ta);
        dm_tensor_release(&tb);
        dm_tensor_release(out);
        return -1;
    }
    if (lda > INT_MAX || ldb > INT_MAX) {
        /* Strides beyond int: a row-major copy has ld = K or N, which fit. */
        dm_tensor ca = {0}, cb = {0};
        if (dm_tensor_clone(&ca, &ta, err) || dm_tensor_clone(&cb, &tb, err)) {
            dm_tensor_release(&ca);
            dm_tensor_release(&ta);
            dm_tensor_release(&tb);
            dm_tensor_release(out);
            return -1;
        }
        dm_tensor_release(&ta);
        dm_tensor_release(&tb);
        ta = ca;
        tb = cb;
        tra = trb = 'N';
        lda = K;
        ldb = N;
    }
    const float *pa = dm_tensor_f32(&ta), *pb = dm_tensor_f32(&tb);
    float *po = dm_tensor_f32(out);
    if (a->ndim == 3 && b->ndim == 2 && tra == 'N' && lda == K &&
        (B == 1 || ta.stride[0] == M * K)) {
        /* (B,M,K) stored as one (B*M,K) matrix: a single product. */
        dm_sgemm(tra, trb, (B * M), N, K, 1.0f, pa, lda, pb, ldb, 0.0f, po, N);
    } else {
        int64_t sa0 = a->ndim == 3 ? ta.stride[0] : 0, sb0 = b->ndim == 3 ? tb.stride[0] : 0;
        for (int64_t i = 0; i < B; i++)
            dm_sgemm(tra, trb, M, N, K, 1.0f, pa + i * sa0, lda, pb + i * sb0, ldb, 0.0f,
                     po + i * M * N, N);
    }
    dm_tensor_release(&ta);
    dm_tensor_release(&tb);
    return 0;
}
