/* Tensor encodings: one table, in the spirit of ggml's type traits. Every
 * consumer (container, eval, inspect, FLOP counter) goes through the table,
 * so a new encoding is one new entry.
 *
 * An encoding is an id plus a few parameters that, with the tensor's shape,
 * fully determine the byte layout of its data blob. */
#ifndef LMC_ENCODING_H
#define LMC_ENCODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "error.h"

typedef enum {
    LMC_ENC_F32 = 0,
    LMC_ENC_F16 = 1,
    LMC_ENC_BF16 = 2,
    LMC_ENC_QGROUP = 16,    /* grouped asym/sym int2..8, fp16 scales, packed zeros, opt. g_idx */
    LMC_ENC_SPARSE = 32,    /* bitmask + kept values (values in a dense inner encoding) */
    LMC_ENC_NM = 33,        /* N:M semi-structured: per group indices + kept values */
    LMC_ENC_LOWRANK = 48,   /* factor pair A[rows,r] B[r,cols] */
    LMC_ENC_INT8_OUTLIER = 64, /* LLM.int8(): int8 rows + fp16 outlier columns */
    LMC_ENC_W8A8 = 65,      /* SmoothQuant: int8 per-channel weights, activations int8 at run time */
    LMC_ENC_MAX = 128
} lmc_enc_id;

typedef struct lmc_encoding {
    lmc_enc_id id;
    /* QGROUP (also the inner value encoding of SPARSE/NM when inner == QGROUP) */
    int bits;       /* 2..8 */
    int group;      /* group size along cols, or -1 = one group per row */
    int sym;        /* symmetric: zero fixed at 2^(bits-1) */
    int has_gidx;   /* act-order: int32 g_idx[cols] follows */
    /* SPARSE / NM */
    int n, m;       /* N:M */
    int inner;      /* lmc_enc_id of the kept values: F16, F32 or QGROUP */
    int64_t nnz;    /* kept values (SPARSE) */
    /* LOWRANK */
    int rank;
    /* INT8_OUTLIER / W8A8 */
    int n_outlier;  /* number of fp16 outlier columns stored */
    int has_smooth; /* fp32 per-input-channel smoothing scales stored */
} lmc_encoding;

/* A blob seen as arrays a device backend can use as stored, without
 * decoding (the encoding table's optional `view` hook). */
typedef enum { LMC_VIEW_DENSE = 1, LMC_VIEW_FACTORS = 2 } lmc_view_kind;
typedef struct lmc_enc_view {
    lmc_view_kind kind;
    lmc_enc_id elem; /* element type of the arrays: F32, F16 or BF16 */
    const void *a;   /* DENSE: [rows][cols]; FACTORS: A [rows][rank] */
    const void *b;   /* FACTORS: B [rank][cols] */
    int rank;        /* FACTORS */
} lmc_enc_view;

typedef struct lmc_enc_traits {
    lmc_enc_id id;
    const char *name; /* "f32", "f16", "bf16", "qgroup", ... */
    /* Check parameters against the shape; 0 or -1 with a message. */
    int (*validate)(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err);
    /* Exact byte size of the blob. */
    size_t (*nbytes)(const lmc_encoding *e, int64_t rows, int64_t cols);
    /* Decode the whole tensor into out[rows*cols] row-major fp32. */
    int (*to_f32)(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                  float *out, lmc_error *err);
    /* Nonzero weights that a kernel must multiply (for effective FLOPs);
     * NULL means rows*cols. */
    int64_t (*effective_macs)(const lmc_encoding *e, const uint8_t *data, int64_t rows,
                              int64_t cols);
    /* Optional CPU kernel, for encodings whose arithmetic is not "decode to
     * fp32, then sgemm" (activation quantization, low-rank products). NULL
     * kernel_prepare: the evaluator decodes with to_f32 and uses sgemm.
     * kernel_prepare builds a state once at load; kernel_apply computes
     * y[n][rows] (+)= x[n][cols] . W^T (no bias; accumulate adds into y).
     * kernel_apply is called from one thread and may use OpenBLAS. */
    int (*kernel_prepare)(const lmc_encoding *e, const uint8_t *data, int64_t rows,
                          int64_t cols, void **state, lmc_error *err);
    void (*kernel_apply)(const void *state, const float *x, int64_t n, float *y,
                         int accumulate);
    void (*kernel_free)(void *state);
    /* Optional: the blob (nbytes, checked against the parameters) as arrays
     * a device can multiply with directly (lmc_enc_view). NULL: a device
     * decodes with to_f32, which is only right when kernel_prepare is NULL
     * too (else the CPU kernel's arithmetic, e.g. activation quantization,
     * would be skipped). */
    int (*view)(const lmc_encoding *e, const uint8_t *data, size_t nbytes, int64_t rows,
                int64_t cols, lmc_enc_view *v, lmc_error *err);
} lmc_enc_traits;

/* NULL when the id is unknown. */
const lmc_enc_traits *lmc_enc_get(lmc_enc_id id);
/* By name ("f16"); NULL when unknown. */
const lmc_enc_traits *lmc_enc_by_name(const char *name);
/* Register an encoding (called by the modules that implement one, from
 * lmc_encodings_init). */
void lmc_enc_register(const lmc_enc_traits *t);
/* Idempotent: registers every built-in encoding. */
void lmc_encodings_init(void);

/* t's blob through its encoding's view hook: 1 and *v when it has one, 0
 * when the tensor must be decoded, -1 on a blob that does not match its
 * encoding (naming the tensor). */
struct lmc_tensor;
int lmc_tensor_view(const struct lmc_tensor *t, lmc_enc_view *v, lmc_error *err);

/* Human-readable description, e.g. "qgroup w4 g128 asym". */
void lmc_enc_describe(const lmc_encoding *e, char *buf, size_t n);

static inline lmc_encoding lmc_enc_dense(lmc_enc_id id)
{
    lmc_encoding e;
    memset(&e, 0, sizeof e); /* valid C++ too (the CUDA sources include this) */
    e.id = id;
    return e;
}

#endif
