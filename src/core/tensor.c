/* tensor.c: storage, creation, views and copies of dm_tensor.
 *
 * This file owns the lifetime rules of tensors: a storage is shared by
 * every view made from it and counted, owned bytes are freed with the last
 * reference, borrowed bytes never are. Everything that only rearranges the
 * (shape, stride, offset) triple lives here too (reshape, transpose, narrow,
 * select), as do element access, copies between layouts and the random and
 * range fills; arithmetic lives in tensor_ops.c. Output tensors are passed
 * in empty (storage NULL) and are only filled on success, so a caller that
 * created an empty Lua userdata first never leaks on an error. */
#include "core/tensor.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t dtype_size(dm_dtype d) { return d == DM_I32 ? sizeof(int32_t) : sizeof(float); }

const char *dm_dtype_name(dm_dtype d) { return d == DM_I32 ? "int32" : "float32"; }

static void set_contiguous_strides(dm_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i] > 0 ? t->shape[i] : 1;
    }
}

/* Shape as "2x3" for messages about a raw shape array. */
static const char *raw_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    if (ndim == 0) {
        snprintf(buf, n, "scalar");
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < n; i++) {
        int w = snprintf(buf + used, n - used, i ? "x%" PRId64 : "%" PRId64, shape[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

const char *dm_tensor_shape_str(const dm_tensor *t, char *buf, size_t n)
{
    return raw_shape_str(t->ndim, t->shape, buf, n);
}

static int check_shape(int ndim, const int64_t *shape, size_t *numel, const char *who, dm_error *err)
{
    char sb[160];
    if (ndim < 0 || ndim > DM_MAX_DIMS)
        return dm_fail(err, "%s: %d dimensions given, expected 0 to %d", who, ndim, DM_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return dm_fail(err, "%s: size of dimension %d is %" PRId64 ", expected a size >= 0",
                           who, i + 1, shape[i]);
    if (dm_size_mul(numel, shape, ndim) != 0)
        return dm_fail(err, "%s: shape %s is too large (element count overflows)", who,
                       raw_shape_str(ndim, shape, sb, sizeof sb));
    return 0;
}

int dm_tensor_init(dm_tensor *t, dm_dtype dtype, int ndim, const int64_t *shape,
                   const char *who, dm_error *err)
{
    char sb[160];
    size_t numel;
    memset(t, 0, sizeof *t);
    if (!who) who = "tensor";
    if (check_shape(ndim, shape, &numel, who, err) != 0) return -1;
    size_t es = dtype_size(dtype);
    if (numel > SIZE_MAX / es)
        return dm_fail(err, "%s: shape %s is too large (byte count overflows)", who,
                       raw_shape_str(ndim, shape, sb, sizeof sb));
    size_t nbytes = numel * es;
    dm_storage *s = malloc(sizeof *s);
    void *data = s ? dm_alloc(nbytes) : NULL;
    if (!data) {
        free(s);
        return dm_fail(err, "%s: cannot allocate %.3g bytes for shape %s (out of memory)", who,
                       (double)nbytes, raw_shape_str(ndim, shape, sb, sizeof sb));
    }
    s->data = data;
    s->nbytes = nbytes;
    s->refcount = 1;
    s->owned = 1;
    t->storage = s;
    t->offset = 0;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    set_contiguous_strides(t);
    return 0;
}

int dm_tensor_init_borrowed(dm_tensor *t, void *data, dm_dtype dtype, int ndim,
                            const int64_t *shape, dm_error *err)
{
    size_t numel;
    memset(t, 0, sizeof *t);
    if (check_shape(ndim, shape, &numel, "view", err) != 0) return -1;
    if (!data && numel > 0) return dm_fail(err, "view: data pointer is NULL");
    dm_storage *s = malloc(sizeof *s);
    if (!s) return dm_fail(err, "view: out of memory");
    s->data = data;
    s->nbytes = numel * dtype_size(dtype);
    s->refcount = 1;
    s->owned = 0;
    t->storage = s;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    set_contiguous_strides(t);
    return 0;
}

void dm_tensor_init_view(dm_tensor *dst, const dm_tensor *src)
{
    *dst = *src;
    if (dst->storage) dst->storage->refcount++;
}

void dm_tensor_release(dm_tensor *t)
{
    dm_storage *s = t->storage;
    t->storage = NULL;
    if (!s) return;
    if (--s->refcount > 0) return;
    if (s->owned) dm_free(s->data);
    free(s);
}

size_t dm_tensor_numel(const dm_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

int dm_tensor_is_contiguous(const dm_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        /* A dimension of size 1 can have any stride without changing the
         * memory order; an empty tensor is trivially contiguous. */
        if (t->shape[i] == 0) return 1;
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

void *dm_tensor_data(const dm_tensor *t)
{
    if (!t->storage) return NULL;
    return (char *)t->storage->data + t->offset * dtype_size(t->dtype);
}

/* ---- element access ------------------------------------------------------ */

void dm_iter_init(dm_iter *it, const dm_tensor *t)
{
    memset(it, 0, sizeof *it);
    it->t = t;
    it->n = dm_tensor_numel(t);
    it->pos = 0;
    it->off = (int64_t)t->offset;
}

void dm_iter_next(dm_iter *it)
{
    const dm_tensor *t = it->t;
    it->pos++;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (++it->idx[d] < t->shape[d]) {
            it->off += t->stride[d];
            return;
        }
        it->off -= t->stride[d] * (t->shape[d] - 1);
        it->idx[d] = 0;
    }
}

double dm_tensor_get_at(const dm_tensor *t, int64_t off)
{
    if (t->dtype == DM_I32) return ((const int32_t *)t->storage->data)[off];
    return ((const float *)t->storage->data)[off];
}

void dm_tensor_set_at(dm_tensor *t, int64_t off, double v)
{
    if (t->dtype == DM_I32)
        ((int32_t *)t->storage->data)[off] = (int32_t)v;
    else
        ((float *)t->storage->data)[off] = (float)v;
}

int dm_tensor_offset(const dm_tensor *t, int n, const int64_t *idx, int64_t *off,
                     const char *who, dm_error *err)
{
    char sb[160];
    if (n != t->ndim)
        return dm_fail(err, "%s: %d indices given for a tensor of shape %s, expected %d", who, n,
                       dm_tensor_shape_str(t, sb, sizeof sb), t->ndim);
    int64_t o = (int64_t)t->offset;
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= t->shape[i])
            return dm_fail(err, "%s: index %" PRId64 " out of range for dimension %d of size %" PRId64,
                           who, idx[i] + 1, i + 1, t->shape[i]);
        o += idx[i] * t->stride[i];
    }
    *off = o;
    return 0;
}

int dm_tensor_check_int32_value(double v, const char *who, dm_error *err)
{
    if (!(v >= -2147483648.0 && v <= 2147483647.0) || v != floor(v))
        return dm_fail(err, "%s: value %g does not fit an int32 tensor (expected an integer)", who, v);
    return 0;
}

void dm_tensor_fill(dm_tensor *t, double v)
{
    if (!t->storage) return;
    if (dm_tensor_is_contiguous(t)) {
        size_t n = dm_tensor_numel(t);
        if (t->dtype == DM_I32) {
            int32_t *p = dm_tensor_i32(t), x = (int32_t)v;
            for (size_t i = 0; i < n; i++) p[i] = x;
        } else {
            float *p = dm_tensor_f32(t), x = (float)v;
            for (size_t i = 0; i < n; i++) p[i] = x;
        }
        return;
    }
    dm_iter it;
    for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it)) dm_tensor_set_at(t, it.off, v);
}

/* ---- views ----------------------------------------------------------------- */

int dm_tensor_reshape(dm_tensor *dst, const dm_tensor *src, int ndim, const int64_t *shape,
                      const char *who, dm_error *err)
{
    char sa[160], sb[160];
    int64_t sh[DM_MAX_DIMS];
    if (!who) who = "reshape";
    if (ndim < 0 || ndim > DM_MAX_DIMS)
        return dm_fail(err, "%s: %d dimensions given, expected 0 to %d", who, ndim, DM_MAX_DIMS);
    int infer = -1;
    size_t known = 1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return dm_fail(err, "%s: only one dimension can be -1 (dimensions %d and %d are)",
                               who, infer + 1, i + 1);
            infer = i;
        } else if (shape[i] < 0) {
            return dm_fail(err, "%s: size of dimension %d is %" PRId64 ", expected >= 0 or -1", who,
                           i + 1, shape[i]);
        } else {
            size_t d = (size_t)shape[i];
            if (d != 0 && known > SIZE_MAX / d)
                return dm_fail(err, "%s: shape %s is too large", who, raw_shape_str(ndim, shape, sb, sizeof sb));
            known *= d;
        }
    }
    size_t numel = dm_tensor_numel(src);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return dm_fail(err, "%s: cannot view a tensor of shape %s (%zu elements) as %s", who,
                           dm_tensor_shape_str(src, sa, sizeof sa), numel,
                           raw_shape_str(ndim, shape, sb, sizeof sb));
        sh[infer] = (int64_t)(numel / known);
        known = numel;
    }
    if (known != numel)
        return dm_fail(err, "%s: cannot view a tensor of shape %s (%zu elements) as %s (%zu elements)",
                       who, dm_tensor_shape_str(src, sa, sizeof sa), numel,
                       raw_shape_str(ndim, sh, sb, sizeof sb), known);
    if (!dm_tensor_is_contiguous(src))
        return dm_fail(err, "%s: tensor of shape %s is not contiguous (call contiguous() first)", who,
                       dm_tensor_shape_str(src, sa, sizeof sa));
    dm_tensor_init_view(dst, src);
    dst->ndim = ndim;
    for (int i = 0; i < ndim; i++) dst->shape[i] = sh[i];
    set_contiguous_strides(dst);
    return 0;
}

int dm_tensor_transpose(dm_tensor *dst, const dm_tensor *src, int d0, int d1, dm_error *err)
{
    if (d0 < 0 || d0 >= src->ndim || d1 < 0 || d1 >= src->ndim)
        return dm_fail(err, "transpose: dimensions %d and %d out of range for a %d-d tensor (expected 1 to %d)",
                       d0 + 1, d1 + 1, src->ndim, src->ndim);
    dm_tensor_init_view(dst, src);
    int64_t t = dst->shape[d0];
    dst->shape[d0] = dst->shape[d1];
    dst->shape[d1] = t;
    t = dst->stride[d0];
    dst->stride[d0] = dst->stride[d1];
    dst->stride[d1] = t;
    return 0;
}

int dm_tensor_narrow(dm_tensor *dst, const dm_tensor *src, int dim, int64_t start, int64_t len,
                     dm_error *err)
{
    if (dim < 0 || dim >= src->ndim)
        return dm_fail(err, "narrow: dimension %d out of range for a %d-d tensor (expected 1 to %d)",
                       dim + 1, src->ndim, src->ndim);
    int64_t n = src->shape[dim];
    if (start < 0 || start > n)
        return dm_fail(err, "narrow: start %" PRId64 " out of range for dimension %d of size %" PRId64
                            " (expected 1 to %" PRId64 ")", start + 1, dim + 1, n, n + 1);
    if (len < 0 || len > n - start)
        return dm_fail(err, "narrow: length %" PRId64 " from start %" PRId64 " exceeds dimension %d of size %" PRId64,
                       len, start + 1, dim + 1, n);
    dm_tensor_init_view(dst, src);
    if (len > 0) dst->offset += (size_t)(start * src->stride[dim]);
    dst->shape[dim] = len;
    return 0;
}

int dm_tensor_select(dm_tensor *dst, const dm_tensor *src, int dim, int64_t i, dm_error *err)
{
    if (src->ndim == 0) return dm_fail(err, "select: cannot select from a scalar (0-d) tensor");
    if (dim < 0 || dim >= src->ndim)
        return dm_fail(err, "select: dimension %d out of range for a %d-d tensor (expected 1 to %d)",
                       dim + 1, src->ndim, src->ndim);
    if (i < 0 || i >= src->shape[dim])
        return dm_fail(err, "select: index %" PRId64 " out of range for dimension %d of size %" PRId64,
                       i + 1, dim + 1, src->shape[dim]);
    dm_tensor_init_view(dst, src);
    dst->offset += (size_t)(i * src->stride[dim]);
    for (int d = dim; d < src->ndim - 1; d++) {
        dst->shape[d] = src->shape[d + 1];
        dst->stride[d] = src->stride[d + 1];
    }
    dst->ndim = src->ndim - 1;
    return 0;
}

/* ---- copies ---------------------------------------------------------------- */

int dm_tensor_copy(dm_tensor *dst, const dm_tensor *src, dm_error *err)
{
    char sa[160], sb[160];
    if (dst->ndim != src->ndim) goto mismatch;
    for (int i = 0; i < dst->ndim; i++)
        if (dst->shape[i] != src->shape[i]) goto mismatch;
    if (dst->dtype == src->dtype && dm_tensor_is_contiguous(dst) && dm_tensor_is_contiguous(src)) {
        /* memmove: copying a tensor onto an overlapping view of itself. */
        memmove(dm_tensor_data(dst), dm_tensor_data(src), dm_tensor_numel(src) * dtype_size(src->dtype));
        return 0;
    }
    if (dst->dtype == DM_I32 && src->dtype == DM_F32)
        return dm_fail(err, "copy: cannot copy a float32 tensor into an int32 tensor (convert explicitly)");
    dm_iter a, b;
    dm_iter_init(&a, dst);
    dm_iter_init(&b, src);
    for (; a.pos < a.n; dm_iter_next(&a), dm_iter_next(&b))
        dm_tensor_set_at(dst, a.off, dm_tensor_get_at(src, b.off));
    return 0;
mismatch:
    return dm_fail(err, "copy: shapes %s and %s do not match", dm_tensor_shape_str(dst, sa, sizeof sa),
                   dm_tensor_shape_str(src, sb, sizeof sb));
}

int dm_tensor_clone(dm_tensor *dst, const dm_tensor *src, dm_error *err)
{
    if (dm_tensor_init(dst, src->dtype, src->ndim, src->shape, "clone", err) != 0) return -1;
    return dm_tensor_copy(dst, src, err);
}

int dm_tensor_contiguous(dm_tensor *dst, const dm_tensor *src, dm_error *err)
{
    if (dm_tensor_is_contiguous(src)) {
        dm_tensor_init_view(dst, src);
        return 0;
    }
    return dm_tensor_clone(dst, src, err);
}

int dm_tensor_to_dtype(dm_tensor *dst, const dm_tensor *src, dm_dtype dtype, dm_error *err)
{
    if (dm_tensor_init(dst, dtype, src->ndim, src->shape, "to", err) != 0) return -1;
    dm_iter a, b;
    dm_iter_init(&a, dst);
    dm_iter_init(&b, src);
    for (; a.pos < a.n; dm_iter_next(&a), dm_iter_next(&b)) {
        double v = dm_tensor_get_at(src, b.off);
        if (dtype == DM_I32) {
            /* Truncation toward zero, as in C and torch's .int(). */
            v = trunc(v);
            if (!(v >= -2147483648.0 && v <= 2147483647.0)) {
                dm_tensor_release(dst);
                return dm_fail(err, "to: value %g does not fit int32", dm_tensor_get_at(src, b.off));
            }
        }
        dm_tensor_set_at(dst, a.off, v);
    }
    return 0;
}

/* ---- fills ----------------------------------------------------------------- */

int dm_tensor_rand_(dm_tensor *t, dm_rng *r, const char *who, dm_error *err)
{
    if (t->dtype != DM_F32) return dm_fail(err, "%s: expected a float32 tensor, got int32", who);
    dm_iter it;
    for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it))
        dm_tensor_set_at(t, it.off, dm_rng_uniform(r));
    return 0;
}

int dm_tensor_randn_(dm_tensor *t, dm_rng *r, const char *who, dm_error *err)
{
    if (t->dtype != DM_F32) return dm_fail(err, "%s: expected a float32 tensor, got int32", who);
    dm_iter it;
    for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it))
        dm_tensor_set_at(t, it.off, dm_rng_normal(r));
    return 0;
}

int dm_tensor_arange(dm_tensor *dst, double start, double end, double step, dm_dtype dtype,
                     dm_error *err)
{
    if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(end))
        return dm_fail(err, "arange: expected finite start, end and a non-zero step, got %g, %g, %g",
                       start, end, step);
    double count = ceil((end - start) / step);
    if (count < 0) count = 0;
    if (count > 1e15)
        return dm_fail(err, "arange: %g elements is too many", count);
    int64_t n = (int64_t)count;
    if (dm_tensor_init(dst, dtype, 1, &n, "arange", err) != 0) return -1;
    for (int64_t i = 0; i < n; i++) dm_tensor_set_at(dst, i, start + (double)i * step);
    return 0;
}
