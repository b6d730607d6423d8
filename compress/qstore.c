/* Quantization and pruning results as tensors of the model (see qstore.h). */
#include "qstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sparse.h"

int lmc_existing_prune_mask(const lmc_tensor *t, const float *w, uint8_t **mask,
                            lmc_error *err)
{
    *mask = NULL;
    if (t->enc.id != LMC_ENC_SPARSE && t->enc.id != LMC_ENC_NM)
        return 0;
    size_t n = (size_t)t->shape[0] * (size_t)t->shape[1];
    uint8_t *mk = malloc(n);
    if (!mk)
        return lmc_fail(err, "%s: out of memory", t->name);
    /* Decoded zeros are exactly the pruned weights (plus kept values that
     * happen to be 0.0, which stay 0 either way). */
    for (size_t i = 0; i < n; i++)
        mk[i] = w[i] == 0.0f;
    *mask = mk;
    return 0;
}

int lmc_store_quantized(lmc_model *m, int layer, const char *role, const lmc_qresult *q,
                        const uint8_t *mask, lmc_error *err)
{
    lmc_tensor t;
    memset(&t, 0, sizeof t);
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", layer, role);
    if (mask) {
        /* Only the survivors are stored, so the zeros cost nothing and stay
         * exactly zero; an N:M input keeps its N:M layout. */
        size_t total = (size_t)q->rows * (size_t)q->cols;
        uint8_t *keep = malloc(total ? total : 1);
        if (!keep)
            return lmc_fail(err, "%s: out of memory", name);
        for (size_t i = 0; i < total; i++)
            keep[i] = !mask[i];
        const lmc_tensor *cur = lmc_model_find(m, name);
        int n = 0, mm = 0;
        if (cur && cur->enc.id == LMC_ENC_NM)
            n = cur->enc.n, mm = cur->enc.m;
        int rc = lmc_sparse_qtensor(name, q, keep, n, mm, &t, err);
        free(keep);
        if (rc)
            return -1;
    } else {
        snprintf(t.name, sizeof t.name, "%s", name);
        t.ndim = 2;
        t.shape[0] = q->rows;
        t.shape[1] = q->cols;
        uint8_t *blob = NULL;
        size_t nb = 0;
        if (lmc_qresult_encode(q, &t.enc, &blob, &nb, err))
            return lmc_fail_prefix(err, t.name);
        t.data = blob;
        t.nbytes = nb;
        t.owned = blob;
    }
    if (lmc_model_set_tensor(m, &t, err)) {
        free(t.owned);
        return -1;
    }
    return 0;
}

int lmc_sparse_qtensor(const char *name, const lmc_qresult *q, const uint8_t *keep, int n, int m,
                       lmc_tensor *t, lmc_error *err)
{
    memset(t, 0, sizeof *t);
    if (strlen(name) >= sizeof t->name)
        return lmc_fail(err, "%s: tensor name too long", name);
    lmc_sparse_qvals v = {q->bits, q->group, q->sym, q->has_gidx,
                          q->codes, q->scales, q->zeros, q->g_idx};
    uint8_t *blob = NULL;
    size_t nb = 0;
    lmc_encoding e;
    /* act-order groups (g_idx) or a group size that is not a multiple of M
     * cannot be compacted per N:M group: the bitmask holds the same pattern
     * at the same cost (1 bit per weight, like 2-bit indices at 2:4) */
    int rc = m > 0 && lmc_nm_qgroup_ok(q->group, q->has_gidx, m)
                 ? lmc_nm_encode_q(&v, keep, q->rows, q->cols, n, m, &e, &blob, &nb, err)
                 : lmc_sparse_encode_q(&v, keep, q->rows, q->cols, &e, &blob, &nb, err);
    if (rc)
        return lmc_fail_prefix(err, name);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = 2;
    t->shape[0] = q->rows;
    t->shape[1] = q->cols;
    t->enc = e;
    t->data = blob;
    t->nbytes = nb;
    t->owned = blob;
    return 0;
}

