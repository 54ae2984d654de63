/* safetensors.h: the checkpoint format of drlmem.
 *
 * A safetensors file is an 8-byte little-endian u64 N, N bytes of UTF-8
 * JSON header, then the raw little-endian tensor bytes back to back:
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32"|"I32", "shape": [..], "data_offsets": [b, e]}, ...}
 * Offsets count from the first byte after the header. Loading it runs no
 * code, and PyTorch (safetensors.torch.load_file) and numpy read it.
 *
 * Order: the writer keeps the order it is given, for the header keys and the
 * data alike ("__metadata__" first, as the Python library does, and left out
 * when there is no metadata); the reader returns tensors and metadata in
 * header order. Hence read -> write of a file this writer made gives the
 * same bytes. (The Lua binding sorts names of a map so saves are
 * deterministic; the Python library sorts too, by dtype then name.)
 * The header is compact JSON padded with spaces to a multiple of 8 bytes, so
 * the data section starts 8-byte aligned in the file.
 *
 * The reader validates everything before exposing any data and never reads
 * out of bounds: sizes, JSON, every entry's fields and types, dtype (F32 and
 * I32 only), shapes (non-negative integers, at most DM_MAX_DIMS, product
 * without overflow), offsets (integers, begin <= end, byte count equal to
 * numel * 4), and that the tensors tile the data section exactly: no
 * overlap, no hole, no trailing bytes (the Python library rejects those
 * too). Metadata values must be strings; names must be unique. Each error
 * names the file and the entry. Only little-endian hosts are supported. */
#ifndef DM_SAFETENSORS_H
#define DM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/tensor.h"

/* Header lengths above this are refused as corrupt (the Python library's
 * limit as well). */
#define DM_SAFETENSORS_MAX_HEADER ((uint64_t)100000000)

/* One tensor to write. data holds numel * 4 contiguous little-endian bytes
 * (C order); it may be NULL when numel is 0. */
typedef struct dm_st_entry {
    const char *name;
    dm_dtype dtype;
    int ndim;              /* 0 (a scalar) .. DM_MAX_DIMS */
    const int64_t *shape;  /* (ndim) */
    const void *data;      /* (numel) */
} dm_st_entry;

/* One tensor read back; data points into the file's buffer (64-byte
 * aligned data section, so float/int32 access is aligned). */
typedef struct dm_st_tensor {
    char *name;
    dm_dtype dtype;
    int ndim;
    int64_t shape[DM_MAX_DIMS];
    size_t numel;
    size_t nbytes;         /* numel * 4 */
    size_t offset;         /* begin, in bytes from the start of the data section */
    const void *data;      /* (numel) */
} dm_st_tensor;

/* A parsed file: tensors and metadata in header order. */
typedef struct dm_st_file {
    void *buf;             /* the data section; owned */
    size_t nbytes;         /* size of the data section */
    dm_st_tensor *tensors; /* (n) */
    size_t n;
    char **meta_keys;      /* (nmeta) */
    char **meta_values;    /* (nmeta) */
    size_t nmeta;
} dm_st_file;

/* Builds the whole file image in memory: *out (free with dm_free) of *n
 * bytes. meta_keys/meta_values hold nmeta UTF-8 strings (NULL when nmeta is
 * 0). Fails, naming the entry, on a bad dtype, shape or name, duplicate
 * names or metadata keys, the name "__metadata__", or invalid UTF-8. */
int dm_safetensors_encode(void **out, size_t *n, const dm_st_entry *entries, size_t nentries,
                          const char *const *meta_keys, const char *const *meta_values,
                          size_t nmeta, dm_error *err);

/* Encodes as above and writes the result atomically to path
 * (dm_file_write_atomic). */
int dm_safetensors_write(const char *path, const dm_st_entry *entries, size_t nentries,
                         const char *const *meta_keys, const char *const *meta_values,
                         size_t nmeta, dm_error *err);

/* Reads and validates the file at path into f. On failure f is left empty
 * (safe to free) and err names path and the offending entry. */
int dm_safetensors_read(dm_st_file *f, const char *path, dm_error *err);

/* Validates an in-memory file image of n bytes (copied; bytes may be freed
 * afterwards). `name` stands for the file in messages. */
int dm_safetensors_parse(dm_st_file *f, const void *bytes, size_t n, const char *name,
                         dm_error *err);

/* Index of the tensor called name in f, or -1. */
int64_t dm_safetensors_find(const dm_st_file *f, const char *name);
/* The metadata value for key, or NULL. */
const char *dm_safetensors_meta(const dm_st_file *f, const char *key);

/* Frees everything f owns and empties it; safe on an empty or zeroed f. */
void dm_safetensors_free(dm_st_file *f);

/* "F32" / "I32" (NULL for anything else). */
const char *dm_safetensors_dtype_name(dm_dtype dtype);

#endif
