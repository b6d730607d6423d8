#include "encoding.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "half.h"

static const lmc_enc_traits *table[LMC_ENC_MAX];

const lmc_enc_traits *lmc_enc_get(lmc_enc_id id)
{
    lmc_encodings_init();
    if ((int)id < 0 || id >= LMC_ENC_MAX)
        return NULL;
    return table[id];
}

const lmc_enc_traits *lmc_enc_by_name(const char *name)
{
    lmc_encodings_init();
    for (int i = 0; i < LMC_ENC_MAX; i++)
        if (table[i] && strcmp(table[i]->name, name) == 0)
            return table[i];
    return NULL;
}

void lmc_enc_register(const lmc_enc_traits *t)
{
    if (t && (int)t->id >= 0 && t->id < LMC_ENC_MAX)
        table[t->id] = t;
}

/* ---- dense encodings ---- */

static int dense_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    (void)e;
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "empty tensor shape [%lld, %lld]", (long long)rows, (long long)cols);
    return 0;
}

static size_t elem_size(lmc_enc_id id) { return id == LMC_ENC_F32 ? 4 : 2; }

static size_t dense_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    return (size_t)rows * (size_t)cols * elem_size(e->id);
}

static int dense_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                        float *out, lmc_error *err)
{
    (void)err;
    size_t n = (size_t)rows * (size_t)cols;
    switch (e->id) {
    case LMC_ENC_F32: memcpy(out, data, n * 4); break;
    case LMC_ENC_F16: lmc_f16_to_f32_n((const uint16_t *)data, out, n); break;
    case LMC_ENC_BF16: lmc_bf16_to_f32_n((const uint16_t *)data, out, n); break;
    default: return lmc_fail(err, "not a dense encoding");
    }
    return 0;
}

static int dense_view(const lmc_encoding *e, const uint8_t *data, size_t nbytes, int64_t rows,
                      int64_t cols, lmc_enc_view *v, lmc_error *err)
{
    size_t need = dense_nbytes(e, rows, cols);
    if (nbytes != need || !data)
        return lmc_fail(err, "%zu bytes of data, encoding %s needs %zu", nbytes,
                        e->id == LMC_ENC_F32 ? "f32" : e->id == LMC_ENC_F16 ? "f16" : "bf16",
                        need);
    *v = (lmc_enc_view){.kind = LMC_VIEW_DENSE, .elem = e->id, .a = data};
    return 0;
}

static const lmc_enc_traits f32_traits = {
    .id = LMC_ENC_F32, .name = "f32", .validate = dense_validate, .nbytes = dense_nbytes,
    .to_f32 = dense_to_f32, .view = dense_view,
};
static const lmc_enc_traits f16_traits = {
    .id = LMC_ENC_F16, .name = "f16", .validate = dense_validate, .nbytes = dense_nbytes,
    .to_f32 = dense_to_f32, .view = dense_view,
};
static const lmc_enc_traits bf16_traits = {
    .id = LMC_ENC_BF16, .name = "bf16", .validate = dense_validate, .nbytes = dense_nbytes,
    .to_f32 = dense_to_f32, .view = dense_view,
};

/* Encodings implemented in their own modules (core/enc_*.c). Strong
 * references, so that linking the static library pulls them in. */
extern const lmc_enc_traits lmc_enc_qgroup_traits;
extern const lmc_enc_traits lmc_enc_sparse_traits;
extern const lmc_enc_traits lmc_enc_nm_traits;
extern const lmc_enc_traits lmc_enc_lowrank_traits;
extern const lmc_enc_traits lmc_enc_int8_outlier_traits;
extern const lmc_enc_traits lmc_enc_w8a8_traits;

void lmc_encodings_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    lmc_enc_register(&f32_traits);
    lmc_enc_register(&f16_traits);
    lmc_enc_register(&bf16_traits);
    lmc_enc_register(&lmc_enc_qgroup_traits);
    lmc_enc_register(&lmc_enc_sparse_traits);
    lmc_enc_register(&lmc_enc_nm_traits);
    lmc_enc_register(&lmc_enc_lowrank_traits);
    lmc_enc_register(&lmc_enc_int8_outlier_traits);
    lmc_enc_register(&lmc_enc_w8a8_traits);
}

/* Value encoding inside a sparse / N:M / low-rank tensor. */
static const char *inner_name(const lmc_encoding *e)
{
    const lmc_enc_traits *t = lmc_enc_get((lmc_enc_id)e->inner);
    return t ? t->name : "?";
}

void lmc_enc_describe(const lmc_encoding *e, char *buf, size_t n)
{
    const lmc_enc_traits *t = lmc_enc_get(e->id);
    const char *name = t ? t->name : "unknown";
    switch (e->id) {
    case LMC_ENC_QGROUP:
        if (e->group > 0)
            snprintf(buf, n, "%s w%d g%d %s%s", name, e->bits, e->group, e->sym ? "sym" : "asym",
                     e->has_gidx ? " act-order" : "");
        else
            snprintf(buf, n, "%s w%d per-row %s%s", name, e->bits, e->sym ? "sym" : "asym",
                     e->has_gidx ? " act-order" : "");
        break;
    case LMC_ENC_NM: snprintf(buf, n, "%s %d:%d %s", name, e->n, e->m, inner_name(e)); break;
    case LMC_ENC_SPARSE:
        snprintf(buf, n, "%s %s nnz %lld", name, inner_name(e), (long long)e->nnz);
        break;
    case LMC_ENC_LOWRANK: snprintf(buf, n, "%s r%d %s", name, e->rank, inner_name(e)); break;
    case LMC_ENC_INT8_OUTLIER:
        snprintf(buf, n, "%s + %d fp16 outlier columns", name, e->n_outlier);
        break;
    default: snprintf(buf, n, "%s", name); break;
    }
}
