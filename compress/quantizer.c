#include "quantizer.h"

#include <stdlib.h>
#include <string.h>

#include "../core/half.h"

void lmc_quant_fit(int bits, int sym, const float *x, int64_t n, float *scale, uint8_t *zero)
{
    const int maxq = lmc_quant_maxq(bits);
    float xmin = 0.0f, xmax = 0.0f; /* the grid always contains 0 */
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < xmin)
            xmin = x[i];
        if (x[i] > xmax)
            xmax = x[i];
    }
    if (sym) {
        if (-xmin > xmax)
            xmax = -xmin;
        if (xmin < 0)
            xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    /* Quantize with the scale the container will store (see quantizer.h). */
    float s = lmc_f16_to_f32(lmc_f32_to_f16((xmax - xmin) / (float)maxq));
    if (!(s > 0.0f))
        s = lmc_f16_to_f32(0x0001); /* smallest positive fp16: never divide by 0 */
    else if (isinf(s))
        s = lmc_f16_to_f32(0x7bff);
    *scale = s;
    if (sym) {
        *zero = (uint8_t)((maxq + 1) / 2);
    } else {
        float z = rintf(-xmin / s);
        /* can leave [0, maxq] only by the fp16 rounding of s, by < 1 step */
        if (!(z >= 0.0f))
            z = 0.0f;
        if (z > (float)maxq)
            z = (float)maxq;
        *zero = (uint8_t)z;
    }
}

int lmc_qresult_alloc(lmc_qresult *q, int64_t rows, int64_t cols, int bits, int group, int sym,
                      lmc_error *err)
{
    memset(q, 0, sizeof *q);
    q->rows = rows;
    q->cols = cols;
    q->bits = bits;
    q->group = group;
    q->sym = sym;
    q->ngroups = group > 0 ? (cols + group - 1) / group : 1;
    size_t ng = (size_t)rows * (size_t)q->ngroups;
    q->codes = malloc((size_t)rows * (size_t)cols);
    q->scales = malloc(ng * sizeof *q->scales);
    q->zeros = malloc(ng);
    q->g_idx = malloc((size_t)cols * sizeof *q->g_idx);
    if (!q->codes || !q->scales || !q->zeros || !q->g_idx) {
        lmc_qresult_free(q);
        return lmc_fail(err, "out of memory for a %lldx%lld quantized matrix", (long long)rows,
                        (long long)cols);
    }
    for (int64_t c = 0; c < cols; c++)
        q->g_idx[c] = group > 0 ? (int32_t)(c / group) : 0;
    return 0;
}

void lmc_qresult_free(lmc_qresult *q)
{
    free(q->codes);
    free(q->scales);
    free(q->zeros);
    free(q->g_idx);
    q->codes = NULL;
    q->scales = NULL;
    q->zeros = NULL;
    q->g_idx = NULL;
}

void lmc_qresult_update_has_gidx(lmc_qresult *q)
{
    q->has_gidx = 0;
    for (int64_t c = 0; c < q->cols; c++)
        if (q->g_idx[c] != (q->group > 0 ? (int32_t)(c / q->group) : 0)) {
            q->has_gidx = 1;
            break;
        }
}

int lmc_qresult_encode(const lmc_qresult *q, lmc_encoding *enc, uint8_t **blob, size_t *nbytes,
                       lmc_error *err)
{
    lmc_encoding e = lmc_enc_dense(LMC_ENC_QGROUP);
    e.bits = q->bits;
    e.group = q->group;
    e.sym = q->sym;
    e.has_gidx = q->has_gidx;
    const lmc_enc_traits *t = lmc_enc_get(LMC_ENC_QGROUP);
    if (!t)
        return lmc_fail(err, "qgroup encoding not registered");
    if (t->validate(&e, q->rows, q->cols, err))
        return -1;
    size_t n = t->nbytes(&e, q->rows, q->cols);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return lmc_fail(err, "out of memory (%zu bytes) for a qgroup blob", n);
    lmc_qgroup_pack(&e, q->rows, q->cols, q->codes, q->scales, q->zeros, q->g_idx, b);
    *enc = e;
    *blob = b;
    *nbytes = n;
    return 0;
}

void lmc_qresult_dequant(const lmc_qresult *q, float *out)
{
    for (int64_t r = 0; r < q->rows; r++) {
        const float *s = q->scales + r * q->ngroups;
        const uint8_t *z = q->zeros + r * q->ngroups;
        const uint8_t *c = q->codes + r * q->cols;
        for (int64_t j = 0; j < q->cols; j++) {
            int32_t g = q->g_idx[j];
            out[r * q->cols + j] = lmc_qgroup_dequant(s[g], c[j], z[g]);
        }
    }
}

int lmc_quant_opts_check(int bits, int group, lmc_error *err)
{
    if (bits < 2 || bits > 8)
        return lmc_fail(err, "--bits %d: must be between 2 and 8", bits);
    if (group == 0 || group < -1)
        return lmc_fail(err, "--group %d: must be -1 (one group per row) or a positive size",
                        group);
    return 0;
}
