/* fuzz_safetensors.c: libFuzzer harness for the safetensors reader and
 * writer (src/core/safetensors.c). Every input goes to
 * dm_safetensors_parse, which must either refuse it with a message or
 * accept it; an accepted file is written back with dm_safetensors_encode
 * (same names, dtypes, shapes, data and metadata, in file order), parsed
 * again, and must come back identical, and encoding that second parse must
 * give the same bytes (the writer is deterministic and canonical). A
 * difference aborts, so libFuzzer records the input as a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_safetensors: %s\n", what);
    abort();
}

/* The entries and metadata of f, ready for dm_safetensors_encode; the
 * arrays are malloc'ed and point into f. */
static int encode_file(const dm_st_file *f, void **out, size_t *n, dm_error *err)
{
    dm_st_entry *ents = calloc(f->n ? f->n : 1, sizeof *ents);
    if (!ents) fail("out of memory");
    for (size_t i = 0; i < f->n; i++) {
        const dm_st_tensor *t = &f->tensors[i];
        ents[i] = (dm_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    int rc = dm_safetensors_encode(out, n, ents, f->n, (const char *const *)f->meta_keys,
                                   (const char *const *)f->meta_values, f->nmeta, err);
    free(ents);
    return rc;
}

static void same_file(const dm_st_file *a, const dm_st_file *b)
{
    if (a->n != b->n || a->nmeta != b->nmeta) fail("round trip: counts differ");
    for (size_t i = 0; i < a->n; i++) {
        const dm_st_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name) != 0) fail("round trip: names differ");
        if (x->dtype != y->dtype || x->ndim != y->ndim || x->numel != y->numel)
            fail("round trip: dtype, rank or size differs");
        if (memcmp(x->shape, y->shape, sizeof x->shape[0] * (size_t)x->ndim) != 0)
            fail("round trip: shapes differ");
        if (x->nbytes && memcmp(x->data, y->data, x->nbytes) != 0) fail("round trip: data differs");
    }
    for (size_t i = 0; i < a->nmeta; i++)
        if (strcmp(a->meta_keys[i], b->meta_keys[i]) != 0 ||
            strcmp(a->meta_values[i], b->meta_values[i]) != 0)
            fail("round trip: metadata differs");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dm_st_file f, g;
    dm_error err;
    memset(&g, 0, sizeof g);
    if (dm_safetensors_parse(&f, data, size, "fuzz", &err) != 0) {
        if (err.msg[0] == '\0') fail("refused without a message");
        return 0;
    }
    void *bytes = NULL, *bytes2 = NULL;
    size_t n = 0, n2 = 0;
    /* Names and metadata the reader accepts, the writer must accept too. */
    if (encode_file(&f, &bytes, &n, &err) != 0) {
        fprintf(stderr, "fuzz_safetensors: %s\n", err.msg);
        fail("an accepted file cannot be written back");
    }
    if (dm_safetensors_parse(&g, bytes, n, "fuzz (written back)", &err) != 0) {
        fprintf(stderr, "fuzz_safetensors: %s\n", err.msg);
        fail("the written file does not parse");
    }
    same_file(&f, &g);
    if (encode_file(&g, &bytes2, &n2, &err) != 0) fail("the second write failed");
    if (n != n2 || memcmp(bytes, bytes2, n) != 0) fail("writing is not deterministic");
    dm_free(bytes);
    dm_free(bytes2);
    dm_safetensors_free(&f);
    dm_safetensors_free(&g);
    return 0;
}
