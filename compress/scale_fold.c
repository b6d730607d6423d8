#include "scale_fold.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/half.h"
#include "../eval/weights.h"

int lmc_fold_groups(const lmc_config *c, int norms_only, lmc_fold_group out[4])
{
    int n = 0, gated = c->gated_ffn;
    out[n++] = (lmc_fold_group){"attn_norm", {"q", "k", "v"}, 3, LMC_SITE_ATTN_IN};
    /* with GQA one v row feeds n_heads / n_kv_heads context columns, which
     * would all need the same scale (llm-awq skips it too) */
    if (!norms_only && c->n_kv_heads == c->n_heads)
        out[n++] = (lmc_fold_group){"v", {"o"}, 1, LMC_SITE_ATTN_OUT};
    if (gated)
        out[n++] = (lmc_fold_group){"ffn_norm", {"gate", "up"}, 2, LMC_SITE_FFN_IN};
    else
        out[n++] = (lmc_fold_group){"ffn_norm", {"up"}, 1, LMC_SITE_FFN_IN};
    if (!norms_only && (gated || c->act == LMC_ACT_RELU))
        out[n++] = (lmc_fold_group){"up", {"down"}, 1, LMC_SITE_FFN_MID};
    return n;
}

int lmc_fold_prev_is_norm(const char *prev)
{
    return !strcmp(prev, "attn_norm") || !strcmp(prev, "ffn_norm");
}

void lmc_scale_cols(float *W, int64_t rows, int64_t cols, const float *s)
{
    for (int64_t r = 0; r < rows; r++) {
        float *w = W + r * cols;
        for (int64_t c = 0; c < cols; c++)
            w[c] *= s[c];
    }
}

void lmc_unscale_rows(float *W, float *b, int64_t rows, int64_t cols, const float *s)
{
    for (int64_t r = 0; r < rows; r++) {
        float *w = W + r * cols;
        for (int64_t c = 0; c < cols; c++)
            w[c] /= s[r];
        if (b)
            b[r] /= s[r];
    }
}

void lmc_unscale_vec(float *v, int64_t n, const float *s)
{
    for (int64_t i = 0; i < n; i++)
        v[i] /= s[i];
}

int lmc_store_dense(lmc_model *m, const char *name, int64_t rows, int64_t cols,
                    const float *data, lmc_enc_id enc, lmc_error *err)
{
    if (enc != LMC_ENC_F32 && enc != LMC_ENC_F16 && enc != LMC_ENC_BF16)
        return lmc_fail(err, "%s: encoding id %d is not dense", name, (int)enc);
    lmc_tensor t;
    memset(&t, 0, sizeof t);
    if (snprintf(t.name, sizeof t.name, "%s", name) >= (int)sizeof t.name)
        return lmc_fail(err, "%s: tensor name too long", name);
    t.ndim = cols == 1 ? 1 : 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.enc = lmc_enc_dense(enc);
    size_t n = (size_t)rows * (size_t)cols;
    t.nbytes = n * (enc == LMC_ENC_F32 ? 4 : 2);
    void *buf = malloc(t.nbytes ? t.nbytes : 1);
    if (!buf)
        return lmc_fail(err, "%s: out of memory", name);
    if (enc == LMC_ENC_F32) {
        memcpy(buf, data, t.nbytes);
    } else if (enc == LMC_ENC_F16) {
        lmc_f32_to_f16_n(data, buf, n);
    } else {
        uint16_t *h = buf;
        for (size_t i = 0; i < n; i++)
            h[i] = lmc_f32_to_bf16(data[i]);
    }
    t.data = buf;
    t.owned = buf;
    if (lmc_model_set_tensor(m, &t, err)) {
        free(buf);
        return -1;
    }
    return 0;
}

static int is_dense(const lmc_tensor *t)
{
    return t->enc.id == LMC_ENC_F32 || t->enc.id == LMC_ENC_F16 || t->enc.id == LMC_ENC_BF16;
}

/* Decode blk.<layer>.<role>.<kind>; *out NULL when absent and !required. */
static int load(const lmc_model *m, int layer, const char *role, const char *kind, int required,
                float **out, int64_t *rows, int64_t *cols, lmc_error *err)
{
    *out = NULL;
    lmc_tensor *t = lmc_model_block_tensor(m, layer, role, kind);
    if (!t) {
        if (required)
            return lmc_fail(err, "blk.%d.%s.%s: missing", layer, role, kind);
        return 0;
    }
    if (!is_dense(t)) {
        char d[64];
        lmc_enc_describe(&t->enc, d, sizeof d);
        return lmc_fail(err, "%s: encoding %s: scale folding needs dense (f32/f16/bf16) weights",
                        t->name, d);
    }
    *rows = t->shape[0];
    *cols = t->ndim == 2 ? t->shape[1] : 1;
    return lmc_tensor_to_f32(t, out, err);
}

int lmc_fold_scales(lmc_model *m, int layer, const lmc_fold_group *g, const float *s,
                    int64_t dim, lmc_enc_id lin_enc, lmc_error *err)
{
    for (int64_t i = 0; i < dim; i++)
        if (!isfinite(s[i]) || !(s[i] > 0.0f))
            return lmc_fail(err, "blk.%d: scale %g of channel %lld for %s (must be finite and > 0)",
                            layer, (double)s[i], (long long)i, g->prev);
    int norm = lmc_fold_prev_is_norm(g->prev);
    float *pw = NULL, *pb = NULL, *cw[3] = {NULL, NULL, NULL};
    int64_t pr = 0, pc = 0, br = 0, bc = 0, cr[3] = {0}, cc[3] = {0};
    char name[64];
    int rc = -1;
    /* read and check everything first: no tensor changes unless all can */
    if (load(m, layer, g->prev, "weight", 1, &pw, &pr, &pc, err) ||
        load(m, layer, g->prev, "bias", 0, &pb, &br, &bc, err))
        goto out;
    if (norm ? (pr != dim || pc != 1) : pr != dim) {
        lmc_fail(err, "blk.%d.%s.weight: %lld output channels, the scales have %lld", layer,
                 g->prev, (long long)pr, (long long)dim);
        goto out;
    }
    if (pb && br != dim) {
        lmc_fail(err, "blk.%d.%s.bias: %lld values, the scales have %lld", layer, g->prev,
                 (long long)br, (long long)dim);
        goto out;
    }
    for (int k = 0; k < g->ncons; k++) {
        if (load(m, layer, g->cons[k], "weight", 1, &cw[k], &cr[k], &cc[k], err))
            goto out;
        if (cc[k] != dim) {
            lmc_fail(err, "blk.%d.%s.weight: %lld input columns, the scales have %lld", layer,
                     g->cons[k], (long long)cc[k], (long long)dim);
            goto out;
        }
    }
    if (norm)
        lmc_unscale_vec(pw, dim, s);
    else
        lmc_unscale_rows(pw, NULL, pr, pc, s);
    if (pb)
        lmc_unscale_vec(pb, dim, s);
    for (int k = 0; k < g->ncons; k++)
        lmc_scale_cols(cw[k], cr[k], cc[k], s);

    snprintf(name, sizeof name, "blk.%d.%s.weight", layer, g->prev);
    if (lmc_store_dense(m, name, pr, pc, pw, norm ? LMC_ENC_F32 : lin_enc, err))
        goto out;
    if (pb) {
        snprintf(name, sizeof name, "blk.%d.%s.bias", layer, g->prev);
        if (lmc_store_dense(m, name, br, 1, pb, LMC_ENC_F32, err))
            goto out;
    }
    for (int k = 0; k < g->ncons; k++) {
        snprintf(name, sizeof name, "blk.%d.%s.weight", layer, g->cons[k]);
        if (lmc_store_dense(m, name, cr[k], cc[k], cw[k], lin_enc, err))
            goto out;
    }
    rc = 0;
out:
    free(pw);
    free(pb);
    for (int k = 0; k < 3; k++)
        free(cw[k]);
    return rc;
}
