/* test_tensor.c: the tensor core without Lua: storage sharing and release,
 * allocation failures, views, copies, broadcasting arithmetic, reductions,
 * numerically stable softmax, top-k and the BLAS matrix product (checked
 * against a naive triple loop on odd shapes and transposed views). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "core/tensor.h"

static dm_tensor make(int ndim, const int64_t *shape)
{
    dm_tensor t;
    dm_error err;
    assert_int_equal(dm_tensor_init(&t, DM_F32, ndim, shape, "test", &err), 0);
    return t;
}

static dm_tensor make_randn(int ndim, const int64_t *shape, uint64_t seed)
{
    dm_tensor t = make(ndim, shape);
    dm_rng r;
    dm_error err;
    dm_rng_seed(&r, seed);
    assert_int_equal(dm_tensor_randn_(&t, &r, "test", &err), 0);
    return t;
}

static double at2(const dm_tensor *t, int64_t i, int64_t j)
{
    return dm_tensor_get_at(t, (int64_t)t->offset + i * t->stride[0] + j * t->stride[1]);
}

static double at3(const dm_tensor *t, int64_t b, int64_t i, int64_t j)
{
    return dm_tensor_get_at(t, (int64_t)t->offset + b * t->stride[0] + i * t->stride[1] + j * t->stride[2]);
}

/* C = A B by the definition, in double, for any strides. */
static void naive_check2(const dm_tensor *c, const dm_tensor *a, const dm_tensor *b)
{
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    assert_int_equal(c->shape[0], M);
    assert_int_equal(c->shape[1], N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += at2(a, i, k) * at2(b, k, j);
            assert_true(fabs(at2(c, i, j) - s) < 1e-4 * (1 + fabs(s)));
        }
}

static void test_alloc_failure_and_bad_shapes(void **state)
{
    dm_tensor t;
    dm_error err;
    int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    assert_int_equal(dm_tensor_init(&t, DM_F32, 2, huge, "zeros", &err), -1);
    assert_null(t.storage);
    assert_non_null(strstr(err.msg, "zeros: shape 1099511627776x1099511627776 is too large"));
    /* 2^46 elements fit size_t, but 2^48 bytes cannot be allocated. */
    int64_t big[2] = {(int64_t)1 << 23, (int64_t)1 << 23};
    assert_int_equal(dm_tensor_init(&t, DM_F32, 2, big, "zeros", &err), -1);
    assert_non_null(strstr(err.msg, "cannot allocate"));
    int64_t neg[2] = {2, -3};
    assert_int_equal(dm_tensor_init(&t, DM_F32, 2, neg, "ones", &err), -1);
    assert_non_null(strstr(err.msg, "ones: size of dimension 2 is -3"));
    assert_int_equal(dm_tensor_init(&t, DM_F32, DM_MAX_DIMS + 1, neg, "ones", &err), -1);
    int64_t zero[2] = {0, 5};
    t = make(2, zero);
    assert_int_equal(dm_tensor_numel(&t), 0);
    dm_tensor_release(&t);
}

static void test_views_share_storage_and_release(void **state)
{
    dm_error err;
    int64_t sh[2] = {3, 4};
    dm_tensor a = make(2, sh);
    for (int i = 0; i < 12; i++) dm_tensor_f32(&a)[i] = (float)i;
    dm_tensor tr = {0}, nr = {0}, sel = {0}, rs = {0};
    assert_int_equal(dm_tensor_transpose(&tr, &a, 0, 1, &err), 0);
    assert_int_equal(dm_tensor_narrow(&nr, &a, 1, 1, 2, &err), 0);
    assert_int_equal(dm_tensor_select(&sel, &a, 0, 2, &err), 0);
    int64_t flat[1] = {-1};
    assert_int_equal(dm_tensor_reshape(&rs, &a, 1, flat, NULL, &err), 0);
    assert_int_equal(a.storage->refcount, 5);
    assert_ptr_equal(tr.storage, a.storage);
    assert_false(dm_tensor_is_contiguous(&tr));
    assert_false(dm_tensor_is_contiguous(&nr));
    assert_true(dm_tensor_is_contiguous(&sel));
    assert_int_equal(rs.shape[0], 12);
    assert_true(at2(&tr, 3, 1) == 7); /* a[1][3] */
    assert_true(at2(&nr, 2, 0) == 9); /* a[2][1] */
    assert_int_equal(sel.ndim, 1);
    assert_true(dm_tensor_f32(&sel)[3] == 11);
    /* A write through one view is seen by all. */
    dm_tensor_fill(&nr, -1);
    assert_true(dm_tensor_f32(&a)[5] == -1);
    assert_true(at2(&tr, 2, 1) == -1);
    assert_true(dm_tensor_f32(&rs)[10] == -1);
    /* Reshape of a strided view is refused; the message says why. */
    dm_tensor bad = {0};
    assert_int_equal(dm_tensor_reshape(&bad, &tr, 1, flat, "view", &err), -1);
    assert_non_null(strstr(err.msg, "view: tensor of shape 4x3 is not contiguous"));
    int64_t wrong[2] = {5, -1};
    assert_int_equal(dm_tensor_reshape(&bad, &a, 2, wrong, "view", &err), -1);
    assert_non_null(strstr(err.msg, "cannot view"));
    assert_int_equal(dm_tensor_narrow(&bad, &a, 1, 3, 2, &err), -1);
    assert_non_null(strstr(err.msg, "narrow: length 2 from start 4 exceeds dimension 2 of size 4"));
    assert_int_equal(dm_tensor_select(&bad, &a, 0, 3, &err), -1);
    assert_non_null(strstr(err.msg, "select: index 4 out of range for dimension 1 of size 3"));
    assert_null(bad.storage);
    /* Releasing the original first keeps the views valid (ASan checks). */
    dm_tensor_release(&a);
    assert_int_equal(tr.storage->refcount, 4);
    assert_true(at2(&tr, 0, 2) == 8);
    dm_tensor_release(&tr);
    dm_tensor_release(&nr);
    dm_tensor_release(&rs);
    assert_int_equal(sel.storage->refcount, 1);
    dm_tensor_release(&sel);
    dm_tensor_release(&sel); /* idempotent */
    assert_null(sel.storage);
}

static void test_borrowed_never_freed(void **state)
{
    dm_error err;
    float buf[6] = {1, 2, 3, 4, 5, 6};
    int64_t sh[2] = {2, 3};
    dm_tensor t, v;
    assert_int_equal(dm_tensor_init_borrowed(&t, buf, DM_F32, 2, sh, &err), 0);
    dm_tensor_init_view(&v, &t);
    dm_tensor_release(&t);
    dm_tensor_fill(&v, 7);
    dm_tensor_release(&v); /* would crash under ASan if it freed buf */
    assert_true(buf[5] == 7);
}

static void test_copy_clone_contiguous(void **state)
{
    dm_error err;
    int64_t sh[2] = {3, 5};
    dm_tensor a = make_randn(2, sh, 3);
    dm_tensor tr = {0}, c = {0}, ct = {0};
    assert_int_equal(dm_tensor_transpose(&tr, &a, 0, 1, &err), 0);
    assert_int_equal(dm_tensor_contiguous(&c, &tr, &err), 0);
    assert_ptr_not_equal(c.storage, a.storage);
    assert_true(dm_tensor_is_contiguous(&c));
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++) assert_true(at2(&c, i, j) == at2(&a, j, i));
    assert_int_equal(dm_tensor_contiguous(&ct, &a, &err), 0);
    assert_ptr_equal(ct.storage, a.storage);
    assert_int_equal(dm_tensor_copy(&a, &c, &err), -1);
    assert_non_null(strstr(err.msg, "copy: shapes 3x5 and 5x3 do not match"));
    assert_int_equal(dm_tensor_copy(&c, &tr, &err), 0);
    dm_tensor_release(&a);
    dm_tensor_release(&tr);
    dm_tensor_release(&c);
    dm_tensor_release(&ct);
}

static void test_matmul_2d_and_transposed_views(void **state)
{
    dm_error err;
    int64_t sa[2] = {7, 13}, sb[2] = {13, 5}, sat[2] = {13, 7}, sbt[2] = {5, 13};
    dm_tensor a = make_randn(2, sa, 1), b = make_randn(2, sb, 2);
    dm_tensor at = make_randn(2, sat, 3), bt = make_randn(2, sbt, 4);
    dm_tensor c = {0};
    assert_int_equal(dm_tensor_matmul(&c, &a, &b, &err), 0);
    naive_check2(&c, &a, &b);
    dm_tensor_release(&c);
    /* Transposed views go to BLAS as CblasTrans: (13x7)^T (5x13)^T. */
    dm_tensor av = {0}, bv = {0};
    assert_int_equal(dm_tensor_transpose(&av, &at, 0, 1, &err), 0);
    assert_int_equal(dm_tensor_transpose(&bv, &bt, 0, 1, &err), 0);
    assert_int_equal(dm_tensor_matmul(&c, &av, &bv, &err), 0);
    naive_check2(&c, &av, &bv);
    dm_tensor_release(&c);
    assert_int_equal(dm_tensor_matmul(&c, &a, &bv, &err), 0);
    naive_check2(&c, &a, &bv);
    dm_tensor_release(&c);
    /* A narrowed view keeps its row stride (lda = 13 for 4 columns). */
    dm_tensor an = {0}, bn = {0};
    assert_int_equal(dm_tensor_narrow(&an, &a, 1, 2, 4, &err), 0);
    assert_int_equal(dm_tensor_narrow(&bn, &b, 0, 5, 4, &err), 0);
    assert_int_equal(dm_tensor_matmul(&c, &an, &bn, &err), 0);
    naive_check2(&c, &an, &bn);
    dm_tensor_release(&c);
    /* Shape errors name both shapes and the mismatch. */
    assert_int_equal(dm_tensor_matmul(&c, &a, &a, &err), -1);
    assert_string_equal(err.msg, "matmul: shapes 7x13 and 7x13 do not match (13 != 7)");
    assert_null(c.storage);
    int64_t one[1] = {13};
    dm_tensor v = make(1, one);
    assert_int_equal(dm_tensor_matmul(&c, &a, &v, &err), -1);
    assert_non_null(strstr(err.msg, "matmul: expected 2-d x 2-d"));
    dm_tensor iv;
    assert_int_equal(dm_tensor_init(&iv, DM_I32, 2, sb, NULL, &err), 0);
    assert_int_equal(dm_tensor_matmul(&c, &a, &iv, &err), -1);
    assert_non_null(strstr(err.msg, "expected a float32 tensor, got int32"));
    dm_tensor *all[] = {&a, &b, &at, &bt, &av, &bv, &an, &bn, &v, &iv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dm_tensor_release(all[i]);
}

static void test_matmul_batched(void **state)
{
    dm_error err;
    int64_t sa[3] = {3, 7, 13}, sb[3] = {3, 13, 5}, s2[2] = {13, 5}, sbt[3] = {3, 5, 13};
    dm_tensor a = make_randn(3, sa, 5), b = make_randn(3, sb, 6), b2 = make_randn(2, s2, 7);
    dm_tensor bt = make_randn(3, sbt, 8);
    dm_tensor bv = {0};
    assert_int_equal(dm_tensor_transpose(&bv, &bt, 1, 2, &err), 0);
    const dm_tensor *rhs[] = {&b, &b2, &bv};
    for (int r = 0; r < 3; r++) {
        dm_tensor c = {0};
        assert_int_equal(dm_tensor_matmul(&c, &a, rhs[r], &err), 0);
        assert_int_equal(c.ndim, 3);
        for (int64_t bb = 0; bb < 3; bb++)
            for (int64_t i = 0; i < 7; i++)
                for (int64_t j = 0; j < 5; j++) {
                    double s = 0;
                    for (int64_t k = 0; k < 13; k++)
                        s += at3(&a, bb, i, k) *
                             (rhs[r]->ndim == 3 ? at3(rhs[r], bb, k, j) : at2(rhs[r], k, j));
                    assert_true(fabs(at3(&c, bb, i, j) - s) < 1e-4 * (1 + fabs(s)));
                }
        dm_tensor_release(&c);
    }
    /* 3-d x 2-d with a batch-strided lhs (transpose of dims 1,2 of a
     * (7,3,13) tensor) takes the per-batch path. */
    int64_t sp[3] = {7, 3, 13};
    dm_tensor p = make_randn(3, sp, 9), pv = {0}, c = {0};
    assert_int_equal(dm_tensor_transpose(&pv, &p, 0, 1, &err), 0);
    assert_int_equal(dm_tensor_matmul(&c, &pv, &b2, &err), 0);
    for (int64_t bb = 0; bb < 3; bb++)
        for (int64_t i = 0; i < 7; i++)
            for (int64_t j = 0; j < 5; j++) {
                double s = 0;
                for (int64_t k = 0; k < 13; k++) s += at3(&pv, bb, i, k) * at2(&b2, k, j);
                assert_true(fabs(at3(&c, bb, i, j) - s) < 1e-4 * (1 + fabs(s)));
            }
    dm_tensor_release(&c);
    int64_t sw[3] = {2, 13, 5};
    dm_tensor w = make(3, sw);
    assert_int_equal(dm_tensor_matmul(&c, &a, &w, &err), -1);
    assert_string_equal(err.msg, "matmul: batch sizes of shapes 3x7x13 and 2x13x5 do not match (3 != 2)");
    dm_tensor *all[] = {&a, &b, &b2, &bt, &bv, &p, &pv, &w};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dm_tensor_release(all[i]);
}

static void test_binary_broadcast(void **state)
{
    dm_error err;
    int64_t s3[3] = {2, 3, 4}, s1[1] = {4}, sc[2] = {3, 1}, sbad[1] = {3};
    dm_tensor x = make_randn(3, s3, 11), bias = make_randn(1, s1, 12), col = make_randn(2, sc, 13);
    dm_tensor y = {0}, z = {0};
    assert_int_equal(dm_tensor_binary(&y, &x, &bias, DM_ADD, "add", &err), 0);
    assert_int_equal(dm_tensor_binary(&z, &x, &col, DM_MUL, "mul", &err), 0);
    for (int64_t b = 0; b < 2; b++)
        for (int64_t t = 0; t < 3; t++)
            for (int64_t d = 0; d < 4; d++) {
                float xv = dm_tensor_f32(&x)[(b * 3 + t) * 4 + d];
                assert_true(dm_tensor_f32(&y)[(b * 3 + t) * 4 + d] == xv + dm_tensor_f32(&bias)[d]);
                assert_true(dm_tensor_f32(&z)[(b * 3 + t) * 4 + d] == xv * dm_tensor_f32(&col)[t]);
            }
    /* In place: x -= bias; then x equals y - 2*bias. */
    assert_int_equal(dm_tensor_binary(&x, &x, &bias, DM_SUB, "sub_", &err), 0);
    dm_tensor b4 = {0};
    assert_int_equal(dm_tensor_binary(&y, &y, &x, DM_SUB, "sub_", &err), 0);
    assert_int_equal(dm_tensor_binary_scalar(&b4, &bias, 2, DM_MUL, 0, "mul", &err), 0);
    for (int i = 0; i < 24; i++) assert_true(fabsf(dm_tensor_f32(&y)[i] - dm_tensor_f32(&b4)[i % 4]) < 1e-5f);
    /* Bad broadcast and an in-place result of the wrong shape. */
    dm_tensor bad = make(1, sbad), o = {0};
    assert_int_equal(dm_tensor_binary(&o, &x, &bad, DM_ADD, "add", &err), -1);
    assert_string_equal(err.msg, "add: shapes 2x3x4 and 3 cannot be broadcast (4 != 3 in dimension 3 of the result)");
    assert_int_equal(dm_tensor_binary(&bias, &bias, &x, DM_ADD, "add_", &err), -1);
    assert_non_null(strstr(err.msg, "add_: result of shape 2x3x4"));
    /* reversed scalar: 1 / t and 2 - t */
    dm_tensor r = {0};
    assert_int_equal(dm_tensor_binary_scalar(&r, &bias, 2, DM_SUB, 1, "sub", &err), 0);
    for (int i = 0; i < 4; i++) assert_true(dm_tensor_f32(&r)[i] == 2 - dm_tensor_f32(&bias)[i]);
    dm_tensor *all[] = {&x, &bias, &col, &y, &z, &b4, &bad, &r};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dm_tensor_release(all[i]);
}

static void test_unary(void **state)
{
    dm_error err;
    int64_t sh[1] = {5};
    dm_tensor a = make(1, sh), o = {0};
    float v[5] = {-100, -1, 0, 2, 100};
    memcpy(dm_tensor_f32(&a), v, sizeof v);
    assert_int_equal(dm_tensor_unary(&o, &a, DM_SIGMOID, 0, 0, "sigmoid", &err), 0);
    for (int i = 0; i < 5; i++) {
        float s = dm_tensor_f32(&o)[i];
        assert_true(isfinite(s));
        assert_true(fabs(s - 1 / (1 + exp(-(double)v[i]))) < 1e-6);
    }
    dm_tensor_release(&o);
    assert_int_equal(dm_tensor_unary(&a, &a, DM_CLAMP, -1, 1, "clamp_", &err), 0);
    assert_true(dm_tensor_f32(&a)[0] == -1 && dm_tensor_f32(&a)[4] == 1 && dm_tensor_f32(&a)[2] == 0);
    assert_int_equal(dm_tensor_unary(&a, &a, DM_CLAMP, 1, -1, "clamp_", &err), -1);
    assert_string_equal(err.msg, "clamp_: min 1 is greater than max -1");
    assert_int_equal(dm_tensor_unary(&o, &a, DM_POW, 2, 0, "pow", &err), 0);
    assert_true(dm_tensor_f32(&o)[0] == 1 && dm_tensor_f32(&o)[3] == 1);
    dm_tensor_release(&o);
    dm_tensor_release(&a);
}

static void test_reductions(void **state)
{
    dm_error err;
    int64_t sh[3] = {2, 3, 4};
    dm_tensor a = make_randn(3, sh, 21);
    float *p = dm_tensor_f32(&a);
    p[1 * 12 + 2 * 4 + 1] = 50; /* the global max */
    double v;
    int64_t idx;
    assert_int_equal(dm_tensor_reduce_all(&a, DM_MAX, &v, &idx, &err), 0);
    assert_true(v == 50);
    assert_int_equal(idx, 1 * 12 + 2 * 4 + 1);
    double s = 0, ss = 0;
    for (int i = 0; i < 24; i++) s += p[i], ss += (double)p[i] * p[i];
    assert_int_equal(dm_tensor_reduce_all(&a, DM_SUM, &v, NULL, &err), 0);
    assert_true(fabs(v - s) < 1e-9);
    assert_int_equal(dm_tensor_reduce_all(&a, DM_MEAN, &v, NULL, &err), 0);
    assert_true(fabs(v - s / 24) < 1e-9);
    assert_int_equal(dm_tensor_reduce_all(&a, DM_NORM, &v, NULL, &err), 0);
    assert_true(fabs(v - sqrt(ss)) < 1e-9);
    /* Along dimension 2 (0-based 1): values and 1-based indices. */
    dm_tensor mv = {0}, mi = {0}, sv = {0};
    assert_int_equal(dm_tensor_reduce_dim(&mv, &mi, &a, DM_MIN, 1, 0, 1, &err), 0);
    assert_int_equal(dm_tensor_reduce_dim(&sv, NULL, &a, DM_SUM, 1, 1, 0, &err), 0);
    assert_int_equal(mv.ndim, 2);
    assert_int_equal(sv.ndim, 3);
    assert_int_equal(sv.shape[1], 1);
    assert_int_equal(mi.dtype, DM_I32);
    for (int b = 0; b < 2; b++)
        for (int d = 0; d < 4; d++) {
            float best = p[b * 12 + d];
            int bi = 0;
            double acc = 0;
            for (int t = 0; t < 3; t++) {
                float x = p[b * 12 + t * 4 + d];
                acc += x;
                if (x < best) best = x, bi = t;
            }
            assert_true(dm_tensor_f32(&mv)[b * 4 + d] == best);
            assert_int_equal(dm_tensor_i32(&mi)[b * 4 + d], bi + 1);
            assert_true(fabs(dm_tensor_f32(&sv)[b * 4 + d] - acc) < 1e-5);
        }
    dm_tensor_release(&mv);
    dm_tensor_release(&mi);
    dm_tensor_release(&sv);
    /* Along a transposed view: sums over the same elements. */
    dm_tensor tv = {0}, r1 = {0}, r2 = {0};
    assert_int_equal(dm_tensor_transpose(&tv, &a, 0, 2, &err), 0);
    assert_int_equal(dm_tensor_reduce_dim(&r1, NULL, &tv, DM_MEAN, 2, 0, 0, &err), 0);
    assert_int_equal(dm_tensor_reduce_dim(&r2, NULL, &a, DM_MEAN, 0, 0, 0, &err), 0);
    for (int d = 0; d < 4; d++)
        for (int t = 0; t < 3; t++)
            assert_true(fabsf(dm_tensor_f32(&r1)[d * 3 + t] - dm_tensor_f32(&r2)[t * 4 + d]) < 1e-6f);
    assert_int_equal(dm_tensor_reduce_dim(&mv, NULL, &a, DM_SUM, 3, 0, 0, &err), -1);
    assert_string_equal(err.msg, "sum: dimension 4 out of range for a 3-d tensor (expected 1 to 3)");
    int64_t z[1] = {0};
    dm_tensor e = make(1, z);
    assert_int_equal(dm_tensor_reduce_all(&e, DM_MAX, &v, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "max: cannot reduce an empty tensor"));
    dm_tensor_release(&e);
    dm_tensor_release(&tv);
    dm_tensor_release(&r1);
    dm_tensor_release(&r2);
    dm_tensor_release(&a);
}

static void test_softmax_stability(void **state)
{
    dm_error err;
    int64_t sh[2] = {2, 3};
    dm_tensor a = make(2, sh), s = {0}, ls = {0};
    float v[6] = {1000, 0, -1000, -1000, -1000, -999};
    memcpy(dm_tensor_f32(&a), v, sizeof v);
    assert_int_equal(dm_tensor_softmax(&s, &a, 0, &err), 0);
    assert_int_equal(dm_tensor_softmax(&ls, &a, 1, &err), 0);
    float *ps = dm_tensor_f32(&s), *pl = dm_tensor_f32(&ls);
    for (int i = 0; i < 6; i++) assert_true(isfinite(ps[i]) && isfinite(pl[i]));
    assert_true(ps[0] == 1.0f && ps[1] == 0 && ps[2] == 0);
    assert_true(fabsf(pl[0]) < 1e-6f && fabsf(pl[1] + 1000) < 1e-3f && fabsf(pl[2] + 2000) < 1e-3f);
    double e1 = 1 / (2 + exp(1.0));
    assert_true(fabs(ps[3] - e1) < 1e-6 && fabs(ps[5] - exp(1.0) * e1) < 1e-6);
    assert_true(fabs(pl[3] - log(e1)) < 1e-5);
    /* Over a strided view, written in place. */
    dm_tensor t = {0};
    assert_int_equal(dm_tensor_transpose(&t, &a, 0, 1, &err), 0);
    assert_int_equal(dm_tensor_softmax(&t, &t, 0, &err), 0);
    assert_true(fabsf(dm_tensor_f32(&a)[0] + dm_tensor_f32(&a)[3] - 1) < 1e-6f);
    dm_tensor_release(&t);
    dm_tensor_release(&s);
    dm_tensor_release(&ls);
    dm_tensor_release(&a);
}

static void test_topk_and_allclose(void **state)
{
    dm_error err;
    int64_t sh[2] = {2, 5};
    dm_tensor a = make(2, sh), v = {0}, ix = {0};
    float x[10] = {3, 1, 4, 1, 5, 2, 7, 7, -1, 0};
    memcpy(dm_tensor_f32(&a), x, sizeof x);
    assert_int_equal(dm_tensor_topk(&v, &ix, &a, 3, 1, &err), 0);
    float ev[6] = {5, 4, 3, 7, 7, 2};
    int32_t ei[6] = {5, 3, 1, 2, 3, 1};
    for (int i = 0; i < 6; i++) {
        assert_true(dm_tensor_f32(&v)[i] == ev[i]);
        assert_int_equal(dm_tensor_i32(&ix)[i], ei[i]);
    }
    dm_tensor o1 = {0}, o2 = {0};
    assert_int_equal(dm_tensor_topk(&o1, &o2, &a, 6, 1, &err), -1);
    assert_string_equal(err.msg, "topk: k = 6 out of range for a last dimension of size 5 (expected 0 to 5)");
    int r;
    dm_tensor b = {0};
    assert_int_equal(dm_tensor_clone(&b, &a, &err), 0);
    dm_tensor_f32(&b)[4] += 1e-4f; /* |diff| 1e-4 > 1e-8 + 1e-5 * 5 */
    assert_int_equal(dm_tensor_allclose(&a, &b, 1e-5, 1e-8, &r, &err), 0);
    assert_false(r);
    assert_int_equal(dm_tensor_allclose(&a, &b, 1e-5, 1e-4, &r, &err), 0); /* 1e-4 + 5e-5 */
    assert_true(r);
    assert_int_equal(dm_tensor_allclose(&a, &v, 1e-5, 1e-8, &r, &err), -1);
    assert_non_null(strstr(err.msg, "allclose: shapes 2x5 and 2x3 do not match"));
    dm_tensor *all[] = {&a, &v, &ix, &b};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dm_tensor_release(all[i]);
}

static void test_rng_fill_and_arange(void **state)
{
    dm_error err;
    int64_t sh[1] = {1000};
    dm_tensor a = make_randn(1, sh, 42), b = make_randn(1, sh, 42), u = make(1, sh), r = {0};
    assert_memory_equal(dm_tensor_f32(&a), dm_tensor_f32(&b), 4000);
    double m = 0;
    for (int i = 0; i < 1000; i++) m += dm_tensor_f32(&a)[i];
    assert_true(fabs(m / 1000) < 0.15);
    dm_rng g;
    dm_rng_seed(&g, 1);
    assert_int_equal(dm_tensor_rand_(&u, &g, "rand", &err), 0);
    for (int i = 0; i < 1000; i++) assert_true(dm_tensor_f32(&u)[i] >= 0 && dm_tensor_f32(&u)[i] < 1);
    assert_int_equal(dm_tensor_arange(&r, 1, 2, 0.25, DM_F32, &err), 0);
    assert_int_equal(r.shape[0], 4);
    assert_true(dm_tensor_f32(&r)[3] == 1.75f);
    dm_tensor q = {0};
    assert_int_equal(dm_tensor_arange(&q, 0, 1, 0, DM_F32, &err), -1);
    assert_non_null(strstr(err.msg, "arange"));
    dm_tensor_release(&a);
    dm_tensor_release(&b);
    dm_tensor_release(&u);
    dm_tensor_release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_failure_and_bad_shapes),
        cmocka_unit_test(test_views_share_storage_and_release),
        cmocka_unit_test(test_borrowed_never_freed),
        cmocka_unit_test(test_copy_clone_contiguous),
        cmocka_unit_test(test_matmul_2d_and_transposed_views),
        cmocka_unit_test(test_matmul_batched),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_softmax_stability),
        cmocka_unit_test(test_topk_and_allclose),
        cmocka_unit_test(test_rng_fill_and_arange),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
