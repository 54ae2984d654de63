/* fixture.h: reads the PyTorch parity fixtures (tests/fixtures/golden_*) in
 * C tests. Each .bin is raw little-endian float32 in C order with no header,
 * so the only check a reader can make is the byte count: it must be exactly
 * the numel the test expects, which catches a wrong path or a config that
 * no longer matches the dump. Header-only; for tests, not for the core. */
#ifndef DM_TEST_FIXTURE_H
#define DM_TEST_FIXTURE_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Reads <dir>/<name>.bin (numel float32) into a malloc'd array, or returns
 * NULL with the reason in why (path, and expected vs actual bytes). */
static inline float *fixture_read(const char *dir, const char *name, size_t numel, char *why,
                                  size_t why_n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_n, "fixture %s: cannot open (run tests from the repository root)", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 0 || (size_t)size != numel * sizeof(float)) {
        snprintf(why, why_n, "fixture %s: %ld bytes, expected %zu (%zu floats)", path, size,
                 numel * sizeof(float), numel);
        fclose(f);
        return NULL;
    }
    float *x = malloc(numel ? numel * sizeof(float) : 1);
    if (x && fread(x, sizeof(float), numel, f) != numel) {
        snprintf(why, why_n, "fixture %s: short read", path);
        free(x);
        x = NULL;
    }
    fclose(f);
    return x;
}

/* Token ids are stored as float32 (exact small integers). */
static inline int32_t *fixture_ids(const float *x, size_t n)
{
    int32_t *ids = malloc(n ? n * sizeof *ids : 1);
    for (size_t i = 0; ids && i < n; i++) ids[i] = (int32_t)x[i];
    return ids;
}

/* Parses a JSON fixture (a manifest or a fixture of values), or returns NULL
 * after printing the path and jansson's reason with its line to stderr. */
static inline json_t *fixture_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
    return j;
}

#endif
