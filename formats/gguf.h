/* GGUF v3 writer (ggml's docs/gguf.md, ggml/include/gguf.h):
 *
 *   "GGUF", u32 version 3, i64 tensor count, i64 key/value count,
 *   key/values: string key, i32 type, value (arrays: i32 element type,
 *   u64 count, elements), tensor infos: string name, u32 ndim, i64 ne[ndim]
 *   (innermost first), i32 ggml type, u64 offset into the data area,
 *   padding to general.alignment (32, the default, not written),
 *   the data area: each tensor at a multiple of 32 bytes.
 * Strings are u64 length + bytes (no NUL); all little-endian.
 *
 * Keys and tensor infos are collected in memory; lmc_gguf_write streams the
 * tensors' bytes through a callback, one tensor at a time, into an atomic
 * output file (core/fileio.h). */
#ifndef LMC_GGUF_H
#define LMC_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"

/* The ggml tensor types the exporter writes (ids of ggml.h's ggml_type). */
typedef enum {
    LMC_GGML_F32 = 0,
    LMC_GGML_F16 = 1,
    LMC_GGML_Q4_0 = 2,
    LMC_GGML_Q4_1 = 3,
    LMC_GGML_Q5_0 = 6,
    LMC_GGML_Q5_1 = 7,
    LMC_GGML_Q8_0 = 8,
    LMC_GGML_BF16 = 30
} lmc_ggml_type;

#define LMC_GGUF_ALIGNMENT 32

const char *lmc_ggml_type_name(lmc_ggml_type t); /* "q4_0", ...; NULL if unknown */
int lmc_ggml_block_elems(lmc_ggml_type t);       /* 1 for float types, 32 for Qn_m */
size_t lmc_ggml_block_bytes(lmc_ggml_type t);    /* bytes of one block */
/* Bytes of a row of n elements (n a multiple of the block size). */
size_t lmc_ggml_row_bytes(lmc_ggml_type t, int64_t n);

typedef struct lmc_gguf lmc_gguf;

lmc_gguf *lmc_gguf_new(void);
void lmc_gguf_free(lmc_gguf *g);

/* Key/values, in the order added. Allocation failures are remembered and
 * reported by lmc_gguf_write; a duplicate key is a programmer error. */
void lmc_gguf_set_u32(lmc_gguf *g, const char *key, uint32_t v);
void lmc_gguf_set_f32(lmc_gguf *g, const char *key, float v);
void lmc_gguf_set_bool(lmc_gguf *g, const char *key, int v);
void lmc_gguf_set_str(lmc_gguf *g, const char *key, const char *v);
/* lens may be NULL (NUL-terminated strings). */
void lmc_gguf_set_arr_str(lmc_gguf *g, const char *key, const char *const *v, const size_t *lens,
                          size_t n);
void lmc_gguf_set_arr_f32(lmc_gguf *g, const char *key, const float *v, size_t n);
void lmc_gguf_set_arr_i32(lmc_gguf *g, const char *key, const int32_t *v, size_t n);

/* A tensor: ne innermost first (a [rows, cols] matrix is ne = {cols, rows}).
 * Returns its index (tensors are written in this order). */
int lmc_gguf_add_tensor(lmc_gguf *g, const char *name, int ndim, const int64_t *ne,
                        lmc_ggml_type type);
size_t lmc_gguf_tensor_bytes(const lmc_gguf *g, int index);
int lmc_gguf_n_tensors(const lmc_gguf *g);

/* Produces tensor index (lmc_gguf_tensor_bytes(index) bytes): into dst, or
 * by pointing *data at bytes that stay valid until the call returns to the
 * writer (a tensor already in its final layout, written without a copy).
 * *data is dst on entry. */
typedef int (*lmc_gguf_fill_fn)(void *ctx, int index, uint8_t *dst, size_t nbytes,
                                const uint8_t **data, lmc_error *err);
/* Write the file atomically; returns 0, or -1 with err (nothing left at
 * path). *written: total bytes of the file (may be NULL). */
int lmc_gguf_write(lmc_gguf *g, const char *path, lmc_gguf_fill_fn fill, void *ctx,
                   uint64_t *written, lmc_error *err);

#endif
