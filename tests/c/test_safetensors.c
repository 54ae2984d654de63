/* test_safetensors.c: the safetensors writer and reader round-trip bytes
 * exactly (save -> load -> save is byte-identical), read the checkpoint
 * PyTorch's reference wrote, reject every kind of malformed header with a
 * message naming the file and the entry, survive 2000 random mutations of
 * a valid file without reading out of bounds (run under ASan in the
 * sanitizer build), and the atomic writer reports missing folders, full
 * disks and failed renames while leaving the previous file intact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/safetensors.h"

#define FIXTURE "tests/fixtures/export/tiny.safetensors"

static char tmpdir[64];

static int setup_dir(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dm-st-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static int contains(const unsigned char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    void *buf;
    dm_error err;
    if (dm_file_read_all(path, (size_t)1 << 30, &buf, n, &err) != 0) {
        print_error("%s\n", err.msg);
        return NULL;
    }
    return buf;
}

/* A little set of tensors covering both dtypes, a scalar and an empty one. */
static float w_data[6] = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
static int32_t ids_data[4] = {0, -7, 2147483647, 42};
static float s_data[1] = {3.25f};
static int64_t w_shape[2] = {2, 3}, ids_shape[1] = {4}, e_shape[2] = {0, 3};
static const dm_st_entry entries[4] = {
    {"w", DM_F32, 2, w_shape, w_data},
    {"ids", DM_I32, 1, ids_shape, ids_data},
    {"scalar", DM_F32, 0, NULL, s_data},
    {"empty", DM_F32, 2, e_shape, NULL},
};
static const char *mkeys[2] = {"format", "config"};
static const char *mvals[2] = {"drlmem-1", "{\"a\": [1, 2], \"\\u00e9\": \"\xc3\xa9\"}"};

static void test_round_trip(void **state)
{
    char p1[128], p2[128];
    tmp_path(p1, sizeof p1, "a.safetensors");
    tmp_path(p2, sizeof p2, "b.safetensors");
    dm_error err;
    assert_int_equal(dm_safetensors_write(p1, entries, 4, mkeys, mvals, 2, &err), 0);

    dm_st_file f;
    if (dm_safetensors_read(&f, p1, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(f.n, 4);
    assert_string_equal(f.tensors[0].name, "w");
    assert_string_equal(f.tensors[1].name, "ids");
    assert_string_equal(f.tensors[2].name, "scalar");
    assert_string_equal(f.tensors[3].name, "empty");
    assert_int_equal(f.tensors[0].dtype, DM_F32);
    assert_int_equal(f.tensors[1].dtype, DM_I32);
    assert_int_equal(f.tensors[0].ndim, 2);
    assert_int_equal(f.tensors[0].shape[1], 3);
    assert_int_equal(f.tensors[2].ndim, 0);
    assert_int_equal(f.tensors[2].numel, 1);
    assert_int_equal(f.tensors[3].numel, 0);
    assert_memory_equal(f.tensors[0].data, w_data, sizeof w_data);
    assert_memory_equal(f.tensors[1].data, ids_data, sizeof ids_data);
    assert_memory_equal(f.tensors[2].data, s_data, sizeof s_data);
    assert_int_equal(((uintptr_t)f.tensors[1].data) % 4, 0);
    assert_int_equal(f.nmeta, 2);
    assert_string_equal(f.meta_keys[0], "format");
    assert_string_equal(dm_safetensors_meta(&f, "config"), mvals[1]);
    assert_null(dm_safetensors_meta(&f, "nope"));
    assert_int_equal(dm_safetensors_find(&f, "ids"), 1);
    assert_int_equal(dm_safetensors_find(&f, "nope"), -1);

    /* save -> load -> save gives the same bytes. */
    dm_st_entry back[4];
    for (size_t i = 0; i < f.n; i++)
        back[i] = (dm_st_entry){f.tensors[i].name, f.tensors[i].dtype, f.tensors[i].ndim,
                                f.tensors[i].shape, f.tensors[i].data};
    assert_int_equal(dm_safetensors_write(p2, back, f.n, (const char *const *)f.meta_keys,
                                          (const char *const *)f.meta_values, f.nmeta, &err), 0);
    size_t n1, n2;
    unsigned char *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);

    /* The layout: 8-aligned header of compact JSON, metadata first. */
    uint64_t hn = 0;
    for (int b = 0; b < 8; b++) hn |= (uint64_t)b1[b] << (8 * b);
    assert_int_equal(hn % 8, 0);
    assert_int_equal(n1, 8 + hn + sizeof w_data + sizeof ids_data + sizeof s_data);
    assert_memory_equal(b1 + 8, "{\"__metadata__\":{\"format\":\"drlmem-1\"", 36);
    assert_true(contains(b1 + 8, hn, "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"));
    assert_memory_equal(b1 + 8 + hn, w_data, sizeof w_data);

    /* encode gives the same image as write. */
    void *img;
    size_t ni;
    assert_int_equal(dm_safetensors_encode(&img, &ni, entries, 4, mkeys, mvals, 2, &err), 0);
    assert_int_equal(ni, n1);
    assert_memory_equal(img, b1, n1);
    dm_free(img);

    /* No metadata: the key is left out; no tensors at all is still a file. */
    assert_int_equal(dm_safetensors_encode(&img, &ni, NULL, 0, NULL, NULL, 0, &err), 0);
    assert_int_equal(ni, 16);
    assert_memory_equal((char *)img + 8, "{}      ", 8);
    dm_st_file g;
    assert_int_equal(dm_safetensors_parse(&g, img, ni, "empty", &err), 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(g.nmeta, 0);
    dm_safetensors_free(&g);
    dm_free(img);

    dm_free(b1);
    dm_free(b2);
    dm_safetensors_free(&f);
    dm_safetensors_free(&f); /* freeing twice is harmless */
}

static unsigned char *read_bin(const char *path, size_t expect_bytes)
{
    size_t n;
    unsigned char *b = slurp(path, &n);
    assert_non_null(b);
    assert_int_equal(n, expect_bytes);
    return b;
}

static void test_pytorch_fixture(void **state)
{
    dm_st_file f;
    dm_error err;
    if (dm_safetensors_read(&f, FIXTURE, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(f.n, 22);
    assert_string_equal(f.tensors[0].name, "memory.keys"); /* file order */
    assert_int_equal(f.tensors[0].ndim, 2);
    assert_int_equal(f.tensors[0].shape[0], 6);
    assert_int_equal(f.tensors[0].shape[1], 8);
    int64_t i = dm_safetensors_find(&f, "embedding.weight");
    assert_true(i >= 0);
    assert_int_equal(f.tensors[i].shape[0], 20);
    assert_int_equal(f.tensors[i].shape[1], 8);
    assert_int_equal(f.tensors[i].dtype, DM_F32);
    i = dm_safetensors_find(&f, "rnn.weight_hh_l1");
    assert_true(i >= 0);
    assert_int_equal(f.tensors[i].shape[0], 36);
    assert_int_equal(f.tensors[i].shape[1], 12);
    i = dm_safetensors_find(&f, "memory.usage_counts");
    assert_true(i >= 0);
    assert_int_equal(f.tensors[i].ndim, 1);

    assert_string_equal(dm_safetensors_meta(&f, "format"), "drlmem-1");
    const char *vocab = dm_safetensors_meta(&f, "vocab");
    assert_non_null(vocab);
    assert_memory_equal(vocab, "[\"<pad>\", \"<unk>\", \"<sos>\", \"<eos>\"", 32);
    const char *config = dm_safetensors_meta(&f, "config");
    assert_non_null(config);
    assert_non_null(strstr(config, "\"embedding_dim\": 8"));

    /* The bytes are the initial parameters golden.py dumped for seed 1234. */
    i = dm_safetensors_find(&f, "embedding.weight");
    unsigned char *emb = read_bin("tests/fixtures/golden_1234/params/embedding.weight.bin", 640);
    assert_memory_equal(f.tensors[i].data, emb, 640);
    dm_free(emb);
    i = dm_safetensors_find(&f, "fc_output.bias");
    unsigned char *bias = read_bin("tests/fixtures/golden_1234/params/fc_output.bias.bin", 80);
    assert_memory_equal(f.tensors[i].data, bias, 80);
    dm_free(bias);

    /* Re-encoded through our writer and parsed again, every tensor and
     * metadata value survives. */
    dm_st_entry *e = calloc(f.n, sizeof *e);
    for (size_t k = 0; k < f.n; k++)
        e[k] = (dm_st_entry){f.tensors[k].name, f.tensors[k].dtype, f.tensors[k].ndim,
                             f.tensors[k].shape, f.tensors[k].data};
    void *img;
    size_t ni;
    assert_int_equal(dm_safetensors_encode(&img, &ni, e, f.n, (const char *const *)f.meta_keys,
                                           (const char *const *)f.meta_values, f.nmeta, &err), 0);
    dm_st_file g;
    assert_int_equal(dm_safetensors_parse(&g, img, ni, "re-encoded", &err), 0);
    assert_int_equal(g.n, f.n);
    assert_int_equal(g.nbytes, f.nbytes);
    for (size_t k = 0; k < f.n; k++) {
        assert_string_equal(g.tensors[k].name, f.tensors[k].name);
        assert_memory_equal(g.tensors[k].data, f.tensors[k].data, f.tensors[k].nbytes);
    }
    assert_string_equal(dm_safetensors_meta(&g, "vocab"), vocab);
    dm_safetensors_free(&g);
    dm_free(img);
    free(e);
    dm_safetensors_free(&f);
}

/* A file image from a header text and `data_n` bytes of data. */
static unsigned char *image(const char *header, size_t data_n, size_t *n)
{
    size_t hl = strlen(header);
    *n = 8 + hl + data_n;
    unsigned char *b = calloc(1, *n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    return b;
}

static void expect_error(const char *header, size_t data_n, const char *what, const char *what2)
{
    size_t n;
    unsigned char *b = image(header, data_n, &n);
    dm_st_file f;
    dm_error err = {{0}};
    int rc = dm_safetensors_parse(&f, b, n, "bad.safetensors", &err);
    free(b);
    if (rc == 0) {
        dm_safetensors_free(&f);
        fail_msg("accepted %s", header);
    }
    assert_int_equal(f.n, 0);
    assert_null(f.buf);
    if (!strstr(err.msg, "bad.safetensors") || !strstr(err.msg, what) ||
        (what2 && !strstr(err.msg, what2)))
        fail_msg("header %s: message '%s' lacks '%s' / '%s'", header, err.msg, what,
                 what2 ? what2 : "");
}

#define T8 "\"dtype\":\"F32\",\"shape\":[2]"

static void test_malformed_headers(void **state)
{
    dm_st_file f;
    dm_error err;
    /* Too short, absurd or oversized header lengths. */
    assert_int_equal(dm_safetensors_parse(&f, "\x01\x02\x03", 3, "short.st", &err), -1);
    assert_non_null(strstr(err.msg, "shorter than the 8-byte"));
    assert_non_null(strstr(err.msg, "short.st"));
    unsigned char huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x7f, '{', '}'};
    assert_int_equal(dm_safetensors_parse(&f, huge, 16, "huge.st", &err), -1);
    assert_non_null(strstr(err.msg, "absurd"));
    unsigned char over[12] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    assert_int_equal(dm_safetensors_parse(&f, over, 12, "over.st", &err), -1);
    assert_non_null(strstr(err.msg, "exceeds the file size"));

    expect_error("{\"a\": ", 0, "not valid JSON", "line 1");
    expect_error("[1, 2]", 0, "header is an array", NULL);
    expect_error("{\"a\": 5}", 0, "tensor 'a'", "an integer, expected an object");
    expect_error("{\"a\": {\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'a'", "missing \"dtype\"");
    expect_error("{\"a\": {\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "'a'", "missing \"shape\"");
    expect_error("{\"a\": {" T8 "}}", 8, "'a'", "missing \"data_offsets\"");
    expect_error("{\"a\": {\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is an integer", NULL);
    expect_error("{\"a\": {\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8, "'a'",
                 "dtype 'F16' is not supported (expected F32 or I32)");
    expect_error("{\"a\": {\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}", 12, "shape is an integer", NULL);
    expect_error("{\"a\": {\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0] is -2", NULL);
    expect_error("{\"a\": {\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "shape[0] is a real number", NULL);
    expect_error("{\"a\": {\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                 "9 dimensions", NULL);
    expect_error("{\"a\": {\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8,
                 "'a'", "overflows");
    expect_error("{\"a\": {\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8,
                 "'a'", "overflows");
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[0]}}", 8, "[begin, end]", NULL);
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[0,\"8\"]}}", 8, "[begin, end]", NULL);
    expect_error("{\"a\": {" T8 ",\"data_offsets\":{}}}", 8, "[begin, end]", NULL);
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[8,0]}}", 8, "begin <= end", NULL);
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[-8,0]}}", 8, "begin <= end", NULL);
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[0,8]}}", 4, "beyond the data section (4 bytes)", NULL);
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[0,12]}}", 12, "span 12 bytes", "need 8");
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[0,8]}, \"b\": {" T8 ",\"data_offsets\":[4,12]}}", 12,
                 "overlaps", "'a'");
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[0,8]}, \"b\": {" T8 ",\"data_offsets\":[12,20]}}", 20,
                 "4 unused bytes before tensor 'b'", NULL);
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[0,8]}}", 12, "4 bytes after the last tensor", NULL);
    expect_error("{\"a\": {" T8 ",\"data_offsets\":[0,8]}, \"a\": {" T8 ",\"data_offsets\":[8,16]}}", 16,
                 "duplicate", NULL);
    expect_error("{\"__metadata__\": {\"k\": 1}}", 0, "metadata 'k'", "an integer, expected a string");
    expect_error("{\"__metadata__\": [\"k\"]}", 0, "__metadata__ is an array", NULL);
    expect_error("{\"__metadata__\": {\"k\": \"v\", \"k\": \"w\"}}", 0, "duplicate", NULL);
    expect_error("{\"a\xff\": 1}", 0, "not valid JSON", NULL);

    /* A header padded with spaces and tiled out of order is fine. */
    size_t n;
    unsigned char *b = image("{\"b\": {" T8 ",\"data_offsets\":[8,16]}, \"a\": {" T8
                             ",\"data_offsets\":[0,8]}}     ", 16, &n);
    memcpy(b + n - 16, "\0\0\x80?\0\0\0@\0\0@@\0\0\x80@", 16);
    assert_int_equal(dm_safetensors_parse(&f, b, n, "ok", &err), 0);
    assert_string_equal(f.tensors[0].name, "b");
    assert_true(((const float *)f.tensors[0].data)[0] == 3.0f);
    assert_true(((const float *)f.tensors[1].data)[1] == 2.0f);
    assert_int_equal(((uintptr_t)f.tensors[0].data) % 64, 8);
    dm_safetensors_free(&f);
    free(b);
}

static void test_writer_rejects(void **state)
{
    dm_error err;
    void *img;
    size_t n;
    int64_t neg[1] = {-1}, two[1] = {2};
    float d[2] = {1, 2};
    dm_st_entry dup[2] = {{"x", DM_F32, 1, two, d}, {"x", DM_F32, 1, two, d}};
    assert_int_equal(dm_safetensors_encode(&img, &n, dup, 2, NULL, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "'x' appears twice"));
    dm_st_entry meta_name[1] = {{"__metadata__", DM_F32, 1, two, d}};
    assert_int_equal(dm_safetensors_encode(&img, &n, meta_name, 1, NULL, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "__metadata__"));
    dm_st_entry bad[1] = {{"n", DM_F32, 1, neg, d}};
    assert_int_equal(dm_safetensors_encode(&img, &n, bad, 1, NULL, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "'n': bad shape"));
    dm_st_entry nodata[1] = {{"z", DM_F32, 1, two, NULL}};
    assert_int_equal(dm_safetensors_encode(&img, &n, nodata, 1, NULL, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "'z': data is NULL"));
    dm_st_entry badtype[1] = {{"t", (dm_dtype)9, 1, two, d}};
    assert_int_equal(dm_safetensors_encode(&img, &n, badtype, 1, NULL, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "'t': unknown dtype"));
    const char *k[2] = {"a", "a"}, *v[2] = {"1", "2"}, *bv[1] = {"\xff"};
    assert_int_equal(dm_safetensors_encode(&img, &n, NULL, 0, k, v, 2, &err), -1);
    assert_non_null(strstr(err.msg, "'a' appears twice"));
    assert_int_equal(dm_safetensors_encode(&img, &n, NULL, 0, k, bv, 1, &err), -1);
    assert_non_null(strstr(err.msg, "metadata 'a': value is not valid UTF-8"));
    char p[128];
    tmp_path(p, sizeof p, "never.safetensors");
    assert_int_equal(dm_safetensors_write(p, dup, 2, NULL, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, p));
    assert_int_equal(access(p, F_OK), -1);
}

static uint64_t rng_state = 0x5eed1234abcdULL;
static uint64_t next_rand(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Every accepted mutation must describe only in-bounds data: each tensor
 * lies inside the data section and the tensors add up to it. Reading every
 * byte lets ASan catch any pointer that escapes the buffer. */
static void check_accepted(const dm_st_file *f)
{
    size_t total = 0;
    unsigned sum = 0;
    const unsigned char *lo = f->buf, *hi = lo + f->nbytes;
    for (size_t i = 0; i < f->n; i++) {
        const dm_st_tensor *t = &f->tensors[i];
        const unsigned char *p = t->data;
        assert_true(p >= lo && p + t->nbytes <= hi);
        assert_int_equal(t->nbytes, t->numel * 4);
        for (size_t b = 0; b < t->nbytes; b++) sum += p[b];
        total += t->nbytes;
    }
    for (size_t i = 0; i < f->nmeta; i++) sum += (unsigned)strlen(f->meta_values[i]);
    assert_int_equal(total, f->nbytes);
    (void)sum;
}

static void test_mutation_fuzz(void **state)
{
    size_t n0;
    unsigned char *orig = slurp(FIXTURE, &n0);
    assert_non_null(orig);
    uint64_t hn = 0;
    for (int b = 0; b < 8; b++) hn |= (uint64_t)orig[b] << (8 * b);
    unsigned char *buf = malloc(n0);
    int accepted = 0, rejected = 0;
    for (int it = 0; it < 2000; it++) {
        memcpy(buf, orig, n0);
        size_t n = n0;
        switch (next_rand() % 5) {
        case 0: { /* flip a few bytes anywhere */
            int k = 1 + (int)(next_rand() % 4);
            for (int j = 0; j < k; j++) buf[next_rand() % n] ^= (unsigned char)(1 + next_rand() % 255);
            break;
        }
        case 1: /* flip one byte in the header */
            buf[8 + next_rand() % hn] ^= (unsigned char)(1 + next_rand() % 255);
            break;
        case 2: /* change one digit of the header: shapes and offsets move */
            for (int tries = 0; tries < 64; tries++) {
                size_t p = 8 + next_rand() % hn;
                if (buf[p] >= '0' && buf[p] <= '9') {
                    buf[p] = (unsigned char)('0' + next_rand() % 10);
                    break;
                }
            }
            break;
        case 3: /* truncate */
            n = next_rand() % n0;
            break;
        case 4: { /* overwrite the header length */
            uint64_t v;
            switch (next_rand() % 3) {
            case 0: v = next_rand(); break;
            case 1: v = hn + (next_rand() % 33) - 16; break;
            default: v = next_rand() % (n0 + 64); break;
            }
            for (int b = 0; b < 8; b++) buf[b] = (unsigned char)(v >> (8 * b));
            break;
        }
        }
        /* Hand the parser an exactly-sized copy so ASan sees any overrun. */
        unsigned char *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        dm_st_file f;
        dm_error err = {{0}};
        if (dm_safetensors_parse(&f, exact, n, "fuzz.safetensors", &err) == 0) {
            check_accepted(&f);
            accepted++;
            dm_safetensors_free(&f);
        } else {
            assert_non_null(strstr(err.msg, "fuzz.safetensors"));
            assert_null(f.tensors);
            rejected++;
        }
        free(exact);
    }
    print_message("# fuzz: %d accepted, %d rejected\n", accepted, rejected);
    /* Both outcomes must actually occur, or the fuzz tests nothing. */
    assert_true(rejected > 500);
    assert_true(accepted > 20);
    free(buf);
    dm_free(orig);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static void assert_file_is(const char *path, const char *text)
{
    size_t n;
    unsigned char *b = slurp(path, &n);
    assert_non_null(b);
    assert_int_equal(n, strlen(text));
    assert_memory_equal(b, text, n);
    dm_free(b);
}

static void test_atomic_write_failures(void **state)
{
    dm_error err;
    char p[128], missing[160], tmp[200];

    /* Replace an existing file, then read it back. */
    tmp_path(p, sizeof p, "state.txt");
    write_text(p, "old contents");
    assert_int_equal(dm_file_write_atomic(p, "new", 3, &err), 0);
    assert_file_is(p, "new");
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    assert_int_equal(access(tmp, F_OK), -1);

    /* Missing folder: ENOENT, naming the path. */
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", tmpdir);
    assert_int_equal(dm_file_write_atomic(missing, "x", 1, &err), -1);
    assert_non_null(strstr(err.msg, missing));
    assert_non_null(strstr(err.msg, strerror(ENOENT)));

    /* The temporary cannot be created (a folder squats on its name): the
     * old file survives. */
    write_text(p, "keep me");
    assert_int_equal(mkdir(tmp, 0755), 0);
    assert_int_equal(dm_file_write_atomic(p, "clobber", 7, &err), -1);
    assert_non_null(strstr(err.msg, p));
    assert_file_is(p, "keep me");
    assert_int_equal(rmdir(tmp), 0);

    /* The rename fails (the target is a non-empty folder): the temporary
     * is removed again and the folder is untouched. */
    char d[128], inner[160];
    tmp_path(d, sizeof d, "isdir");
    assert_int_equal(mkdir(d, 0755), 0);
    snprintf(inner, sizeof inner, "%s/inside", d);
    write_text(inner, "inner");
    assert_int_equal(dm_file_write_atomic(d, "x", 1, &err), -1);
    assert_non_null(strstr(err.msg, "rename"));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", d, (long)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
    assert_file_is(inner, "inner");

    /* A trailing slash names a folder. */
    snprintf(tmp, sizeof tmp, "%s/", d);
    assert_int_equal(dm_file_write_atomic(tmp, "x", 1, &err), -1);

    /* An unwritable folder: EACCES (root ignores permissions, so skip the
     * check there). */
    if (geteuid() != 0) {
        char ro[128], rp[160];
        tmp_path(ro, sizeof ro, "readonly");
        assert_int_equal(mkdir(ro, 0555), 0);
        snprintf(rp, sizeof rp, "%s/f", ro);
        assert_int_equal(dm_file_write_atomic(rp, "x", 1, &err), -1);
        assert_non_null(strstr(err.msg, strerror(EACCES)));
        assert_non_null(strstr(err.msg, rp));
        chmod(ro, 0755);
    }

    /* A full disk: the write step reports ENOSPC naming the file. */
    int fd = open("/dev/full", O_WRONLY);
    if (fd >= 0) {
        char block[4096] = {0};
        assert_int_equal(dm_fd_write_all(fd, block, sizeof block, "ckpt.safetensors", &err), -1);
        assert_non_null(strstr(err.msg, "ckpt.safetensors"));
        assert_non_null(strstr(err.msg, strerror(ENOSPC)));
        close(fd);
    }

    /* A missing file to read. */
    dm_st_file f;
    tmp_path(p, sizeof p, "absent.safetensors");
    assert_int_equal(dm_safetensors_read(&f, p, &err), -1);
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, strerror(ENOENT)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_pytorch_fixture),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_mutation_fuzz),
        cmocka_unit_test(test_atomic_write_failures),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
