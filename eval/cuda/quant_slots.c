/* Quantized device slots, host side (see quant_slots.h): blobs of W8A8,
 * LLM.int8() and qgroup tensors taken apart along their documented layouts
 * (core/w8a8.h, core/int8.h, core/qgroup.h) after the encoding's own
 * decoder has validated them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/half.h"
#include "../../core/int8.h"
#include "../../core/qgroup.h"
#include "../../core/w8a8.h"
#include "../weights.h"
#include "quant_slots.h"

static int kind_of(lmc_enc_id e, int packed)
{
    switch (e) {
    case LMC_ENC_W8A8: return LMC_CU_Q_W8A8;
    case LMC_ENC_INT8_OUTLIER: return LMC_CU_Q_INT8;
    case LMC_ENC_QGROUP: return packed ? LMC_CU_Q_PACKED : 0;
    default: return 0;
    }
}

int lmc_cuda_quant_kind(const lmc_tensor *const *ts, int n, int packed, lmc_error *err)
{
    int k0 = kind_of(ts[0]->enc.id, packed);
    for (int i = 1; i < n; i++) {
        int k = kind_of(ts[i]->enc.id, packed);
        if (k == k0)
            continue;
        int a = k0 == LMC_CU_Q_W8A8 || k0 == LMC_CU_Q_INT8 ? 0 : i;
        if (k0 == LMC_CU_Q_W8A8 || k0 == LMC_CU_Q_INT8 || k == LMC_CU_Q_W8A8 ||
            k == LMC_CU_Q_INT8)
            return lmc_fail(err,
                            "tensor %s: encoding %s shares one CUDA product with %s (%s); the "
                            "CUDA evaluator takes int8 encodings only for every linear of a "
                            "slot (use --device cpu)",
                            ts[a]->name, lmc_enc_get(ts[a]->enc.id)->name, ts[a ? 0 : i]->name,
                            lmc_enc_get(ts[a ? 0 : i]->enc.id)->name);
        return 0; /* packed with another encoding: the slot is decoded */
    }
    return k0;
}

/* One tensor's blob into part p; host arrays it needs are malloc'ed into
 * *keep (freed by the caller). */
typedef struct hold {
    void *a, *b, *c, *d;
} hold;

static void hold_free(hold *h) { free(h->a), free(h->b), free(h->c), free(h->d); }

static double part_from(const lmc_tensor *t, int kind, lmc_cu_qpart *p, hold *h, size_t es,
                        lmc_error *err)
{
    int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    const lmc_encoding *e = &t->enc;
    const uint8_t *d = t->data;
    memset(p, 0, sizeof *p);
    p->rows = (int)rows;
    size_t kp = ((size_t)cols + 15) & ~(size_t)15;
    if (kind == LMC_CU_Q_PACKED) {
        lmc_qgroup_layout l;
        lmc_qgroup_layout_of(e, rows, cols, &l);
        p->blob = d;
        p->nbytes = l.nbytes;
        p->bits = e->bits, p->group = e->group, p->sym = e->sym, p->has_gidx = e->has_gidx;
        p->ngroups = (int)l.ngroups;
        p->code_row_bytes = l.code_row_bytes, p->zero_row_bytes = l.zero_row_bytes;
        p->off_scales = l.off_scales, p->off_zeros = l.off_zeros, p->off_gidx = l.off_gidx;
        return (double)l.nbytes;
    }
    float *sw = malloc((size_t)rows * 4);
    h->a = sw;
    if (!sw)
        return lmc_fail(err, "out of memory");
    p->codes = (const int8_t *)d;
    p->sw = sw;
    if (kind == LMC_CU_Q_W8A8) {
        lmc_w8a8_layout l;
        lmc_w8a8_layout_of(e->has_smooth, rows, cols, &l);
        memcpy(sw, d + l.off_scales, (size_t)rows * 4);
        if (e->has_smooth) {
            float *sm = malloc((size_t)cols * 4);
            h->b = sm;
            if (!sm)
                return lmc_fail(err, "out of memory");
            memcpy(sm, d + l.off_smooth, (size_t)cols * 4);
            p->smooth = sm;
        }
        return (double)(rows * kp + rows * 4 + (e->has_smooth ? cols * 4 : 0));
    }
    lmc_int8_layout l;
    int no = e->n_outlier;
    lmc_int8_layout_of(rows, cols, no, &l);
    p->codes = (const int8_t *)(d + l.off_q);
    for (int64_t r = 0; r < rows; r++) {
        uint16_t s;
        memcpy(&s, d + l.off_scales + 2 * (size_t)r, 2);
        sw[r] = lmc_f16_to_f32(s);
    }
    int32_t *oi = malloc((size_t)(no ? no : 1) * 4);
    float *ow = malloc((size_t)rows * (size_t)(no ? no : 1) * 4);
    h->c = oi, h->d = ow;
    if (!oi || !ow)
        return lmc_fail(err, "out of memory");
    memcpy(oi, d + l.off_oidx, (size_t)no * 4);
    for (size_t i = 0; i < (size_t)rows * no; i++) {
        uint16_t s;
        memcpy(&s, d + l.off_ow + 2 * i, 2);
        ow[i] = lmc_f16_to_f32(s);
    }
    p->oidx = oi, p->nout = no, p->ow = ow;
    return (double)(rows * kp + rows * 4 + cols + no * 4 + (double)rows * no * es);
}

static int int8_check(const lmc_tensor *t, lmc_error *err)
{
    float *tmp;
    if (lmc_tensor_to_f32(t, &tmp, err) < 0)
        return -1;
    free(tmp);
    return 0;
}

/* What qgroup's decoder checks beyond the blob: g_idx in range, finite
 * scales (the messages of core/enc_qgroup.c). */
static int packed_check(const lmc_tensor *t, lmc_error *err)
{
    if (lmc_tensor_check_blob(t, err) < 0)
        return -1;
    int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    lmc_qgroup_layout l;
    lmc_qgroup_layout_of(&t->enc, rows, cols, &l);
    if (t->enc.has_gidx)
        for (int64_t c = 0; c < cols; c++) {
            int32_t g;
            memcpy(&g, t->data + l.off_gidx + 4 * (size_t)c, 4);
            if (g < 0 || g >= l.ngroups)
                return lmc_fail(err, "tensor %s: qgroup: g_idx[%lld] = %d out of range [0, %lld)",
                                t->name, (long long)c, (int)g, (long long)l.ngroups);
        }
    for (size_t i = 0; i < (size_t)rows * (size_t)l.ngroups; i++) {
        uint16_t h;
        memcpy(&h, t->data + l.off_scales + 2 * i, 2);
        if ((h & 0x7c00) == 0x7c00)
            return lmc_fail(err, "tensor %s: qgroup: scale of row %lld group %lld is not finite",
                            t->name, (long long)(i / (size_t)l.ngroups),
                            (long long)(i % (size_t)l.ngroups));
    }
    return 0;
}

int lmc_cuda_put_quant(lmc_cu *cu, const lmc_tensor *const *ts, int n, int which, int layer,
                       int kind, const char *prec_name, double *dev_bytes, lmc_error *err)
{
    lmc_cu_qpart parts[3];
    memset(parts, 0, sizeof parts);
    hold h[3];
    memset(h, 0, sizeof h);
    size_t es = strcmp(prec_name, "fp32") ? 2 : 4;
    int rc = -1;
    *dev_bytes = 0;
    for (int i = 0; i < n; i++) {
        /* int8 kinds: the encoding's decoder validates the blob (size,
         * parameters, finiteness) with its own messages; packed: the blob's
         * size and parameters, its g_idx and scales here, the values on the
         * device (lmc_cu_set_quant), without decoding it on the host */
        if (kind == LMC_CU_Q_PACKED ? packed_check(ts[i], err) < 0 : int8_check(ts[i], err) < 0)
            goto out;
        double b = part_from(ts[i], kind, &parts[i], &h[i], es, err);
        if (b < 0)
            goto out;
        *dev_bytes += b;
    }
    int bad_part;
    int64_t bad;
    if (lmc_cu_set_quant(cu, which, layer, kind, n, parts, &bad_part, &bad, err) < 0)
        goto out;
    if (bad_part >= 0) {
        const lmc_tensor *t = ts[bad_part];
        int64_t w = kind == LMC_CU_Q_INT8 ? (t->enc.n_outlier ? t->enc.n_outlier : 1)
                                          : (t->ndim == 2 ? t->shape[1] : 1);
        lmc_fail(err, "tensor %s: %s at [%lld, %lld] overflows %s (use --precision fp32)",
                 t->name, kind == LMC_CU_Q_INT8 ? "outlier weight" : "dequantized weight",
                 (long long)(bad / w), (long long)(bad % w), prec_name);
        goto out;
    }
    rc = 0;
out:
    for (int i = 0; i < n; i++)
        hold_free(&h[i]);
    return rc;
}
