/* safetensors.c: reader and writer of the safetensors checkpoint format
 * (see safetensors.h for the layout, the order rules and what the reader
 * validates). The JSON header goes through jansson, never a hand parser:
 * jansson checks UTF-8, rejects duplicate keys and keeps keys in insertion
 * order, which is what makes read -> write byte-identical. The reader checks
 * every entry against the real size of the data section before it hands out
 * a single pointer, then moves the data section to the start of a 64-byte
 * aligned buffer so that float and int32 loads are aligned whatever the
 * header length was. */
#include "core/safetensors.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (tensor bytes are copied as they are)"
#endif

#define META_KEY "__metadata__"

const char *dm_safetensors_dtype_name(dm_dtype dtype)
{
    switch (dtype) {
    case DM_F32: return "F32";
    case DM_I32: return "I32";
    }
    return NULL;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

/* --- writer ---------------------------------------------------------------- */

/* Builds the 8-byte length and the padded JSON header into *hdr (malloc'd,
 * *hlen bytes in all) and the data section size into *data_n. */
static int encode_header(unsigned char **hdr, size_t *hlen, size_t *data_n,
                         const dm_st_entry *entries, size_t nentries,
                         const char *const *meta_keys, const char *const *meta_values,
                         size_t nmeta, dm_error *err)
{
    *hdr = NULL;
    json_t *root = json_object();
    if (!root) return dm_fail(err, "safetensors encode: out of memory");
    int rc = -1;

    if (nmeta > 0) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, META_KEY, meta) != 0) {
            dm_fail(err, "safetensors encode: out of memory");
            goto done;
        }
        for (size_t i = 0; i < nmeta; i++) {
            const char *k = meta_keys[i], *v = meta_values[i];
            if (!k) { dm_fail(err, "safetensors encode: metadata key %zu is NULL", i); goto done; }
            if (!v) {
                dm_fail(err, "safetensors encode: metadata '%s': value is NULL", k);
                goto done;
            }
            if (json_object_get(meta, k)) {
                dm_fail(err, "safetensors encode: metadata key '%s' appears twice", k);
                goto done;
            }
            json_t *s = json_string(v);
            if (!s) {
                dm_fail(err, "safetensors encode: metadata '%s': value is not valid UTF-8", k);
                goto done;
            }
            if (json_object_set_new(meta, k, s) != 0) {
                dm_fail(err, "safetensors encode: metadata key %zu is not valid UTF-8", i);
                goto done;
            }
        }
    }

    size_t offset = 0;
    for (size_t i = 0; i < nentries; i++) {
        const dm_st_entry *e = &entries[i];
        const char *nm = e->name;
        if (!nm) { dm_fail(err, "safetensors encode: tensor %zu has no name", i); goto done; }
        if (strcmp(nm, META_KEY) == 0) {
            dm_fail(err, "safetensors encode: a tensor cannot be called '%s'", META_KEY);
            goto done;
        }
        if (json_object_get(root, nm)) {
            dm_fail(err, "safetensors encode: tensor name '%s' appears twice", nm);
            goto done;
        }
        const char *dt = dm_safetensors_dtype_name(e->dtype);
        if (!dt) {
            dm_fail(err, "safetensors encode: tensor '%s': unknown dtype %d", nm, (int)e->dtype);
            goto done;
        }
        if (e->ndim < 0 || e->ndim > DM_MAX_DIMS) {
            dm_fail(err, "safetensors encode: tensor '%s': ndim %d out of range 0..%d", nm,
                    e->ndim, DM_MAX_DIMS);
            goto done;
        }
        size_t numel;
        if ((e->ndim > 0 && !e->shape) || dm_size_mul(&numel, e->shape, e->ndim) != 0 ||
            numel > SIZE_MAX / 4) {
            dm_fail(err, "safetensors encode: tensor '%s': bad shape (negative or too large)", nm);
            goto done;
        }
        size_t nb = numel * 4;
        if (nb > 0 && !e->data) {
            dm_fail(err, "safetensors encode: tensor '%s': data is NULL", nm);
            goto done;
        }
        if (offset > (size_t)LLONG_MAX - nb) {
            dm_fail(err, "safetensors encode: tensor '%s': file would be too large", nm);
            goto done;
        }
        /* set_new steals the reference even when it fails, and the parent
         * owns each child from then on. */
        json_t *ent = json_object(), *shape = NULL, *offs = NULL;
        if (!ent || json_object_set_new(root, nm, ent) != 0) {
            dm_fail(err, "safetensors encode: tensor %zu: name is not valid UTF-8", i);
            goto done;
        }
        if (json_object_set_new(ent, "dtype", json_string(dt)) != 0 ||
            json_object_set_new(ent, "shape", shape = json_array()) != 0 ||
            json_object_set_new(ent, "data_offsets", offs = json_array()) != 0) {
            dm_fail(err, "safetensors encode: out of memory");
            goto done;
        }
        for (int d = 0; d < e->ndim; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)e->shape[d])) != 0) {
                dm_fail(err, "safetensors encode: out of memory");
                goto done;
            }
        if (json_array_append_new(offs, json_integer((json_int_t)offset)) != 0 ||
            json_array_append_new(offs, json_integer((json_int_t)(offset + nb))) != 0) {
            dm_fail(err, "safetensors encode: out of memory");
            goto done;
        }
        offset += nb;
    }

    char *text = json_dumps(root, JSON_COMPACT);
    if (!text) { dm_fail(err, "safetensors encode: cannot serialise the header"); goto done; }
    size_t tlen = strlen(text);
    size_t padded = (tlen + 7) & ~(size_t)7;
    unsigned char *h = malloc(8 + padded);
    if (!h) { free(text); dm_fail(err, "safetensors encode: out of memory"); goto done; }
    uint64_t n64 = padded;
    for (int b = 0; b < 8; b++) h[b] = (unsigned char)(n64 >> (8 * b));
    memcpy(h + 8, text, tlen);
    memset(h + 8 + tlen, ' ', padded - tlen);
    free(text);
    *hdr = h;
    *hlen = 8 + padded;
    *data_n = offset;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int dm_safetensors_encode(void **out, size_t *n, const dm_st_entry *entries, size_t nentries,
                          const char *const *meta_keys, const char *const *meta_values,
                          size_t nmeta, dm_error *err)
{
    *out = NULL;
    *n = 0;
    unsigned char *hdr;
    size_t hlen, data_n;
    if (encode_header(&hdr, &hlen, &data_n, entries, nentries, meta_keys, meta_values, nmeta,
                      err) != 0)
        return -1;
    if (data_n > SIZE_MAX - hlen) {
        free(hdr);
        return dm_fail(err, "safetensors encode: file would be too large");
    }
    unsigned char *buf = dm_alloc(hlen + data_n);
    if (!buf) {
        free(hdr);
        return dm_fail(err, "safetensors encode: out of memory for %zu bytes", hlen + data_n);
    }
    memcpy(buf, hdr, hlen);
    free(hdr);
    size_t pos = hlen;
    for (size_t i = 0; i < nentries; i++) {
        size_t numel;
        dm_size_mul(&numel, entries[i].shape, entries[i].ndim); /* checked by encode_header */
        if (numel) memcpy(buf + pos, entries[i].data, numel * 4);
        pos += numel * 4;
    }
    *out = buf;
    *n = pos;
    return 0;
}

int dm_safetensors_write(const char *path, const dm_st_entry *entries, size_t nentries,
                         const char *const *meta_keys, const char *const *meta_values,
                         size_t nmeta, dm_error *err)
{
    unsigned char *hdr;
    size_t hlen, data_n;
    if (encode_header(&hdr, &hlen, &data_n, entries, nentries, meta_keys, meta_values, nmeta,
                      err) != 0) {
        /* Say which file the save was for. */
        dm_error inner = *err;
        return dm_fail(err, "%s (writing %s)", inner.msg, path);
    }
    dm_file_part *parts = malloc((nentries + 1) * sizeof *parts);
    if (!parts) {
        free(hdr);
        return dm_fail(err, "safetensors write %s: out of memory", path);
    }
    parts[0].data = hdr;
    parts[0].n = hlen;
    for (size_t i = 0; i < nentries; i++) {
        size_t numel;
        dm_size_mul(&numel, entries[i].shape, entries[i].ndim);
        parts[i + 1].data = entries[i].data;
        parts[i + 1].n = numel * 4;
    }
    int rc = dm_file_write_atomic_parts(path, parts, nentries + 1, err);
    free(parts);
    free(hdr);
    return rc;
}

/* --- reader ---------------------------------------------------------------- */

void dm_safetensors_free(dm_st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->tensors[i].name);
    for (size_t i = 0; i < f->nmeta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    dm_free(f->buf);
    memset(f, 0, sizeof *f);
}

static int cmp_by_offset(const void *a, const void *b)
{
    const dm_st_tensor *x = *(dm_st_tensor *const *)a, *y = *(dm_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : (x->nbytes > y->nbytes);
}

/* Validates one tensor entry `name: ent` into t (all but t->data, which the
 * caller sets after the tiling check). */
static int parse_entry(dm_st_tensor *t, const char *name, json_t *ent, size_t data_n,
                       const char *file, dm_error *err)
{
    if (!json_is_object(ent))
        return dm_fail(err, "safetensors %s: tensor '%s': entry is %s, expected an object", file,
                       name, json_type_name(ent));
    json_t *dt = json_object_get(ent, "dtype");
    json_t *shape = json_object_get(ent, "shape");
    json_t *offs = json_object_get(ent, "data_offsets");
    if (!dt) return dm_fail(err, "safetensors %s: tensor '%s': missing \"dtype\"", file, name);
    if (!shape) return dm_fail(err, "safetensors %s: tensor '%s': missing \"shape\"", file, name);
    if (!offs)
        return dm_fail(err, "safetensors %s: tensor '%s': missing \"data_offsets\"", file, name);
    if (!json_is_string(dt))
        return dm_fail(err, "safetensors %s: tensor '%s': dtype is %s, expected a string", file,
                       name, json_type_name(dt));
    const char *ds = json_string_value(dt);
    if (strcmp(ds, "F32") == 0) t->dtype = DM_F32;
    else if (strcmp(ds, "I32") == 0) t->dtype = DM_I32;
    else
        return dm_fail(err,
                       "safetensors %s: tensor '%s': dtype '%.32s' is not supported "
                       "(expected F32 or I32)", file, name, ds);

    if (!json_is_array(shape))
        return dm_fail(err, "safetensors %s: tensor '%s': shape is %s, expected an array", file,
                       name, json_type_name(shape));
    size_t nd = json_array_size(shape);
    if (nd > DM_MAX_DIMS)
        return dm_fail(err, "safetensors %s: tensor '%s': shape has %zu dimensions, at most %d",
                       file, name, nd, DM_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t d = 0; d < nd; d++) {
        json_t *v = json_array_get(shape, d);
        if (!json_is_integer(v))
            return dm_fail(err,
                           "safetensors %s: tensor '%s': shape[%zu] is %s, expected an integer",
                           file, name, d, json_type_name(v));
        json_int_t x = json_integer_value(v);
        if (x < 0)
            return dm_fail(err, "safetensors %s: tensor '%s': shape[%zu] is %lld, expected >= 0",
                           file, name, d, (long long)x);
        t->shape[d] = (int64_t)x;
    }
    if (dm_size_mul(&t->numel, t->shape, t->ndim) != 0 || t->numel > SIZE_MAX / 4)
        return dm_fail(err, "safetensors %s: tensor '%s': shape product overflows", file, name);
    t->nbytes = t->numel * 4;

    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1)))
        return dm_fail(err, "safetensors %s: tensor '%s': data_offsets must be [begin, end] "
                       "integers", file, name);
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b)
        return dm_fail(err, "safetensors %s: tensor '%s': data_offsets [%lld, %lld] are not "
                       "0 <= begin <= end", file, name, (long long)b, (long long)e);
    if ((uint64_t)e > (uint64_t)data_n)
        return dm_fail(err, "safetensors %s: tensor '%s': data_offsets end %lld is beyond the "
                       "data section (%zu bytes)", file, name, (long long)e, data_n);
    if ((uint64_t)(e - b) != (uint64_t)t->nbytes)
        return dm_fail(err, "safetensors %s: tensor '%s': data_offsets span %lld bytes, but "
                       "shape and dtype need %zu", file, name, (long long)(e - b), t->nbytes);
    t->offset = (size_t)b;
    return 0;
}

/* Validates buf (dm_alloc'd, n bytes, owned by f from here on) into f. */
static int parse_owned(dm_st_file *f, unsigned char *buf, size_t n, const char *file,
                       dm_error *err)
{
    memset(f, 0, sizeof *f);
    f->buf = buf;
    json_t *root = NULL;
    dm_st_tensor **order = NULL;
    if (n < 8) {
        dm_fail(err, "safetensors %s: file is %zu bytes, shorter than the 8-byte header length",
                file, n);
        goto fail;
    }
    uint64_t hn = 0;
    for (int b = 0; b < 8; b++) hn |= (uint64_t)buf[b] << (8 * b);
    if (hn > DM_SAFETENSORS_MAX_HEADER) {
        dm_fail(err, "safetensors %s: header length %llu is absurd (limit %llu): not a "
                "safetensors file or corrupt", file, (unsigned long long)hn,
                (unsigned long long)DM_SAFETENSORS_MAX_HEADER);
        goto fail;
    }
    if (hn > n - 8) {
        dm_fail(err, "safetensors %s: header length %llu exceeds the file size (%zu bytes): "
                "truncated?", file, (unsigned long long)hn, n);
        goto fail;
    }
    size_t data_n = n - 8 - (size_t)hn;
    json_error_t jerr;
    root = json_loadb((const char *)buf + 8, (size_t)hn, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        dm_fail(err, "safetensors %s: header is not valid JSON (line %d, column %d): %s", file,
                jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        dm_fail(err, "safetensors %s: header is %s, expected an object", file,
                json_type_name(root));
        goto fail;
    }

    size_t count = json_object_size(root);
    json_t *meta = json_object_get(root, META_KEY);
    if (meta) count--;
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    order = calloc(count ? count : 1, sizeof *order);
    if (!f->tensors || !order) {
        dm_fail(err, "safetensors %s: out of memory for %zu tensors", file, count);
        goto fail;
    }
    if (meta) {
        if (!json_is_object(meta)) {
            dm_fail(err, "safetensors %s: %s is %s, expected an object of strings", file,
                    META_KEY, json_type_name(meta));
            goto fail;
        }
        size_t nm = json_object_size(meta);
        f->meta_keys = calloc(nm ? nm : 1, sizeof *f->meta_keys);
        f->meta_values = calloc(nm ? nm : 1, sizeof *f->meta_values);
        if (!f->meta_keys || !f->meta_values) {
            dm_fail(err, "safetensors %s: out of memory", file);
            goto fail;
        }
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v)) {
                dm_fail(err, "safetensors %s: metadata '%s': value is %s, expected a string",
                        file, k, json_type_name(v));
                goto fail;
            }
            f->meta_keys[f->nmeta] = strdup(k);
            f->meta_values[f->nmeta] = strdup(json_string_value(v));
            f->nmeta++;
            if (!f->meta_keys[f->nmeta - 1] || !f->meta_values[f->nmeta - 1]) {
                dm_fail(err, "safetensors %s: out of memory", file);
                goto fail;
            }
        }
    }

    const char *k;
    json_t *ent;
    json_object_foreach(root, k, ent) {
        if (strcmp(k, META_KEY) == 0) continue;
        dm_st_tensor *t = &f->tensors[f->n];
        if (parse_entry(t, k, ent, data_n, file, err) != 0) goto fail;
        t->name = strdup(k);
        if (!t->name) {
            dm_fail(err, "safetensors %s: out of memory", file);
            goto fail;
        }
        order[f->n] = t;
        f->n++;
    }

    /* The tensors must tile the data section: sorted by begin, each starts
     * where the previous ended, and the last ends at the end of the file. */
    qsort(order, f->n, sizeof *order, cmp_by_offset);
    size_t cursor = 0;
    for (size_t i = 0; i < f->n; i++) {
        size_t b = order[i]->offset;
        if (b < cursor) {
            dm_fail(err, "safetensors %s: tensor '%s' (bytes %zu..%zu) overlaps tensor '%s'",
                    file, order[i]->name, b, b + order[i]->nbytes, order[i - 1]->name);
            goto fail;
        }
        if (b > cursor) {
            dm_fail(err, "safetensors %s: %zu unused bytes before tensor '%s' (at %zu)", file,
                    b - cursor, order[i]->name, cursor);
            goto fail;
        }
        cursor = b + order[i]->nbytes;
    }
    if (cursor != data_n) {
        dm_fail(err, "safetensors %s: %zu bytes after the last tensor: the data section is %zu "
                "bytes, the tensors cover %zu", file, data_n - cursor, data_n, cursor);
        goto fail;
    }

    /* Everything checked: slide the data section to the aligned start of
     * the buffer (the header text is no longer needed) and hand out
     * pointers. */
    memmove(buf, buf + 8 + hn, data_n);
    f->nbytes = data_n;
    for (size_t i = 0; i < f->n; i++)
        f->tensors[i].data = buf + f->tensors[i].offset;
    free(order);
    json_decref(root);
    return 0;

fail:
    free(order);
    json_decref(root);
    dm_safetensors_free(f);
    return -1;
}

int dm_safetensors_parse(dm_st_file *f, const void *bytes, size_t n, const char *name,
                         dm_error *err)
{
    memset(f, 0, sizeof *f);
    unsigned char *buf = dm_alloc(n);
    if (!buf) return dm_fail(err, "safetensors %s: out of memory for %zu bytes", name, n);
    if (n) memcpy(buf, bytes, n);
    return parse_owned(f, buf, n, name, err);
}

int dm_safetensors_read(dm_st_file *f, const char *path, dm_error *err)
{
    memset(f, 0, sizeof *f);
    void *buf;
    size_t n;
    if (dm_file_read_all(path, (size_t)1 << 42, &buf, &n, err) != 0) {
        dm_error inner = *err;
        return dm_fail(err, "safetensors: cannot %s", inner.msg);
    }
    return parse_owned(f, buf, n, path, err);
}

int64_t dm_safetensors_find(const dm_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return (int64_t)i;
    return -1;
}

const char *dm_safetensors_meta(const dm_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}
