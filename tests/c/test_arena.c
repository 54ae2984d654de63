/* test_arena.c: the arena lays out named buffers, aligns them, rejects bad
 * shapes and duplicate names, and copies layouts for gradient arenas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/arena.h"

static void test_layout_and_alignment(void **state)
{
    dm_arena a;
    dm_error err;
    dm_arena_init(&a);
    int64_t s1[2] = {3, 5}, s2[1] = {7};
    assert_int_equal(dm_arena_add(&a, "w", 2, s1, &err), 0);
    assert_int_equal(dm_arena_add(&a, "b", 1, s2, &err), 1);
    assert_int_equal(dm_arena_add(&a, "w", 1, s2, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate"));
    assert_int_equal(dm_arena_alloc(&a, &err), 0);
    assert_int_equal(((uintptr_t)dm_arena_ptr(&a, 1)) % 64, 0);
    assert_int_equal(a.entries[0].numel, 15);
    assert_int_equal(dm_arena_find(&a, "b"), 1);
    assert_int_equal(dm_arena_find(&a, "nope"), -1);
    dm_arena g;
    assert_int_equal(dm_arena_init_like(&g, &a, &err), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.entries[1].offset, a.entries[1].offset);
    dm_arena_free(&g);
    dm_arena_free(&a);
}

static void test_bad_shapes(void **state)
{
    dm_arena a;
    dm_error err;
    dm_arena_init(&a);
    int64_t neg[1] = {-1}, huge[2] = {INT64_MAX, 4};
    assert_int_equal(dm_arena_add(&a, "n", 1, neg, &err), -1);
    assert_int_equal(dm_arena_add(&a, "h", 2, huge, &err), -1);
    assert_non_null(strstr(err.msg, "'h'"));
    dm_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_alignment),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
