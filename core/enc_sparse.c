/* LMC_ENC_SPARSE: bitmask + kept values (layout in sparse.h). */
#include "sparse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

size_t lmc_sparse_inner_size(int inner)
{
    switch (inner) {
    case LMC_ENC_F16: return 2;
    case LMC_ENC_F32: return 4;
    default: return 0;
    }
}

int lmc_sparse_check_inner(int inner, const char *what, lmc_error *err)
{
    if (lmc_sparse_inner_size(inner))
        return 0;
    /* named without the table: the inner module may not be linked in */
    const char *name = inner == LMC_ENC_BF16 ? "bf16" : inner == LMC_ENC_QGROUP ? "qgroup" : NULL;
    if (name)
        return lmc_fail(err, "%s: inner encoding %s not supported yet (f16 or f32)", what, name);
    return lmc_fail(err, "%s: inner encoding id %d not supported yet (f16 or f32)", what, inner);
}

int lmc_sparse_put_value(int inner, uint8_t *vals, int64_t i, float v, int64_t r, int64_t c,
                         lmc_error *err)
{
    if (inner == LMC_ENC_F32) {
        memcpy(vals + (size_t)i * 4, &v, 4);
        return 0;
    }
    uint16_t h = lmc_f32_to_f16(v);
    if ((h & 0x7c00) == 0x7c00 && isfinite(v))
        return lmc_fail(err, "weight [%lld, %lld] = %g overflows f16 (use inner f32)",
                        (long long)r, (long long)c, (double)v);
    memcpy(vals + (size_t)i * 2, &h, 2);
    return 0;
}

float lmc_sparse_get_value(int inner, const uint8_t *vals, int64_t i)
{
    if (inner == LMC_ENC_F32) {
        float f;
        memcpy(&f, vals + (size_t)i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, vals + (size_t)i * 2, 2);
    return lmc_f16_to_f32(h);
}

size_t lmc_sparse_mask_bytes(int64_t rows, int64_t cols)
{
    return ((size_t)rows * (size_t)cols + 7) / 8;
}

static int sparse_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "sparse: empty tensor shape [%lld, %lld]", (long long)rows,
                        (long long)cols);
    if (lmc_sparse_check_inner(e->inner, "sparse", err))
        return -1;
    if (e->nnz < 0 || e->nnz > rows * cols)
        return lmc_fail(err, "sparse: nnz %lld outside [0, %lld] for shape [%lld, %lld]",
                        (long long)e->nnz, (long long)(rows * cols), (long long)rows,
                        (long long)cols);
    return 0;
}

static size_t sparse_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    return lmc_align4(lmc_sparse_mask_bytes(rows, cols)) +
           (size_t)e->nnz * lmc_sparse_inner_size(e->inner);
}

/* Every check that to_f32 and the mask extraction share: the set bits must
 * match nnz (otherwise the values section would be over- or under-read) and
 * the padding must be zero. */
static int sparse_check_blob(const lmc_encoding *e, const uint8_t *data, int64_t rows,
                             int64_t cols, lmc_error *err)
{
    if (sparse_validate(e, rows, cols, err))
        return -1;
    size_t total = (size_t)rows * (size_t)cols, mb = lmc_sparse_mask_bytes(rows, cols);
    int64_t set = 0;
    for (size_t i = 0; i < mb; i++)
        set += __builtin_popcount(data[i]);
    if (total % 8 && (data[mb - 1] >> (total % 8)))
        return lmc_fail(err, "sparse: nonzero padding bits after the last mask bit");
    if (set != e->nnz)
        return lmc_fail(err, "sparse: mask has %lld bits set but nnz is %lld", (long long)set,
                        (long long)e->nnz);
    for (size_t i = mb; i < lmc_align4(mb); i++)
        if (data[i])
            return lmc_fail(err, "sparse: nonzero padding byte after the mask");
    return 0;
}

static int sparse_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                         float *out, lmc_error *err)
{
    if (sparse_check_blob(e, data, rows, cols, err))
        return -1;
    size_t total = (size_t)rows * (size_t)cols;
    const uint8_t *vals = data + lmc_align4(lmc_sparse_mask_bytes(rows, cols));
    int64_t j = 0;
    for (size_t i = 0; i < total; i++)
        out[i] = (data[i >> 3] >> (i & 7)) & 1 ? lmc_sparse_get_value(e->inner, vals, j++) : 0.0f;
    return 0;
}

static int64_t sparse_macs(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols)
{
    (void)data, (void)rows, (void)cols;
    return e->nnz;
}

const lmc_enc_traits lmc_enc_sparse_traits = {LMC_ENC_SPARSE, "sparse", sparse_validate,
                                              sparse_nbytes, sparse_to_f32, sparse_macs};

int lmc_sparse_encode(const float *w, const uint8_t *keep, int64_t rows, int64_t cols,
                      lmc_enc_id inner, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                      lmc_error *err)
{
    lmc_encoding enc = {0};
    enc.id = LMC_ENC_SPARSE;
    enc.inner = inner;
    size_t total = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < total; i++)
        enc.nnz += keep[i] != 0;
    if (sparse_validate(&enc, rows, cols, err))
        return -1;
    size_t nb = sparse_nbytes(&enc, rows, cols);
    uint8_t *b = calloc(nb ? nb : 1, 1);
    if (!b)
        return lmc_fail(err, "sparse: out of memory for %zu bytes", nb);
    uint8_t *vals = b + lmc_align4(lmc_sparse_mask_bytes(rows, cols));
    int64_t j = 0;
    for (size_t i = 0; i < total; i++) {
        if (!keep[i])
            continue;
        b[i >> 3] |= (uint8_t)(1u << (i & 7));
        if (lmc_sparse_put_value(inner, vals, j++, w[i], (int64_t)(i / (size_t)cols),
                                 (int64_t)(i % (size_t)cols), err)) {
            free(b);
            return lmc_fail_prefix(err, "sparse");
        }
    }
    *e = enc;
    *blob = b;
    *nbytes = nb;
    return 0;
}

int lmc_sparse_mask(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                    uint8_t *keep, lmc_error *err)
{
    if (e->id == LMC_ENC_NM)
        return lmc_nm_mask(e, data, rows, cols, keep, err);
    if (e->id != LMC_ENC_SPARSE) {
        const lmc_enc_traits *t = lmc_enc_get(e->id);
        return lmc_fail(err, "encoding %s has no sparsity mask", t ? t->name : "unknown");
    }
    if (sparse_check_blob(e, data, rows, cols, err))
        return -1;
    size_t total = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < total; i++)
        keep[i] = (data[i >> 3] >> (i & 7)) & 1;
    return 0;
}
