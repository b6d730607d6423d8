/* safetensors: reader (memory-mapped, fully validated) and atomic writer.
 *
 * Layout: u64 LE header length N, N bytes of JSON
 *   { "NAME": {"dtype": "F16", "shape": [r, c], "data_offsets": [begin, end]}, ...,
 *     "__metadata__": {"key": "value", ...} }
 * then the data area; offsets are relative to the data area and must tile it
 * exactly (sorted by begin, no gap, no overlap, nothing after the last one).
 *
 * The reader never copies tensor data: lmc_st_tensor.data points into the
 * map, which lives as long as the lmc_safetensors handle (or whoever takes
 * the map over with lmc_safetensors_take_map). */
#ifndef LMC_SAFETENSORS_H
#define LMC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/encoding.h"
#include "../core/error.h"
#include "../core/fileio.h"

#define LMC_ST_MAX_DIMS 8
#define LMC_ST_MAX_HEADER (100u * 1000u * 1000u) /* same limit as the reference library */

typedef struct lmc_st_tensor {
    char *name;
    char dtype[16];                 /* as in the file: "F16", "BF16", "F32", "I64", ... */
    int ndim;                       /* 0 (scalar) .. LMC_ST_MAX_DIMS */
    int64_t shape[LMC_ST_MAX_DIMS];
    const uint8_t *data;            /* into the map (NULL when nbytes is 0) */
    size_t nbytes;
} lmc_st_tensor;

typedef struct lmc_safetensors {
    char *path;
    lmc_mmap map;
    lmc_st_tensor *tensors;         /* in header order as cJSON returns it */
    int n_tensors;
    char **meta;                    /* __metadata__: key0, value0, key1, value1, ... */
    int n_meta;                     /* number of pairs */
} lmc_safetensors;

/* Map and validate PATH. On failure st is left closed and err names PATH. */
int lmc_safetensors_open(const char *path, lmc_safetensors *st, lmc_error *err);
void lmc_safetensors_close(lmc_safetensors *st);
/* Validate an in-memory file image of SIZE bytes (what open maps); path
 * names it in messages. The tensors' data points into buf, which must
 * outlive st; st->map stays empty. */
int lmc_safetensors_parse(const void *buf, size_t size, const char *path, lmc_safetensors *st,
                          lmc_error *err);

const lmc_st_tensor *lmc_safetensors_find(const lmc_safetensors *st, const char *name);
/* __metadata__ value, NULL when absent. */
const char *lmc_safetensors_meta(const lmc_safetensors *st, const char *key);

/* Move the map out of st (the tensors' data stays valid as long as the
 * returned map is not closed); st's later close leaves it alone. */
lmc_mmap lmc_safetensors_take_map(lmc_safetensors *st);

/* Bytes per element of a safetensors dtype, 0 when unknown. */
size_t lmc_st_dtype_size(const char *dtype);
/* Dense lmc encoding of a model-weight dtype (F16, BF16, F32); -1 with a
 * message naming the file and tensor for anything else. */
int lmc_st_weight_encoding(const char *file, const lmc_st_tensor *t, lmc_enc_id *id,
                           lmc_error *err);
/* "F16" <-> "float16" (the names config.json uses); NULL when unknown. */
const char *lmc_st_dtype_from_torch(const char *torch_name);
const char *lmc_st_dtype_to_torch(const char *dtype);

/* One tensor to write. data holds shape-product elements of src_dtype (NULL
 * means the same as dtype); when src_dtype differs, both must be float
 * dtypes (F16, BF16, F32) and values are converted while writing (round to
 * nearest even; a finite value that overflows F16 is an error). */
typedef struct lmc_st_write_tensor {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[LMC_ST_MAX_DIMS];
    const void *data;
    const char *src_dtype;
    /* Instead of data: fill(ctx, dst, nbytes, &data, err) produces the
     * tensor's bytes (dtype, no conversion) when its turn comes, so that a
     * writer can produce tensors one at a time: into dst (a buffer shared
     * by all filled tensors), or by pointing *data (dst on entry) at bytes
     * valid until it returns. Returns 0 or -1 with err set. */
    int (*fill)(void *ctx, void *dst, size_t nbytes, const void **data, lmc_error *err);
    void *fill_ctx;
} lmc_st_write_tensor;

/* Write a safetensors file atomically. Tensors are laid out in the order
 * given; the header is padded with spaces to a multiple of 8 bytes, as the
 * reference library does. metadata is NULL or a NULL-terminated list of
 * key, value strings ({"format", "pt", NULL}). */
int lmc_safetensors_write(const char *path, const lmc_st_write_tensor *tensors, int n,
                          const char *const *metadata, lmc_error *err);

#endif
