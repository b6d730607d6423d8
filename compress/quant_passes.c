#include "quant_passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtn.h"
#include "sparsegpt.h"
#include "../core/clock.h"

int lmc_quant_opts_check(int bits, int group, lmc_error *err)
{
    if (bits < 2 || bits > 8)
        return lmc_fail(err, "--bits %d: must be between 2 and 8", bits);
    if (group == 0 || group < -1)
        return lmc_fail(err, "--group %d: must be -1 (one group per row) or a positive size",
                        group);
    return 0;
}

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

static void report_add(lmc_pass_ctx *ctx, const char *role, double loss, double secs,
                        const lmc_solver_result *r)
{
    cJSON *o = cJSON_CreateObject();
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, role);
    cJSON_AddStringToObject(o, "tensor", name);
    cJSON_AddNumberToObject(o, "loss", loss);
    cJSON_AddNumberToObject(o, "seconds", secs);
    if (r) {
        cJSON_AddNumberToObject(o, "percdamp", r->percdamp_used);
        cJSON_AddNumberToObject(o, "dead_columns", r->n_dead);
    }
    cJSON_AddItemToArray(ctx->report, o);
}

/* ---- RTN ---- */

static int rtn_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    const lmc_rtn_opts *o = p->opts;
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(&ctx->model->cfg, lin);
    for (int i = 0; i < nl; i++) {
        double t0 = lmc_now();
        float *w = NULL;
        uint8_t *mask = NULL;
        int64_t rows, cols;
        lmc_qresult q;
        memset(&q, 0, sizeof q);
        if (lmc_pass_load_linear(ctx, lin[i].role, &w, &rows, &cols, err))
            return -1;
        lmc_tensor *t = lmc_model_block_tensor(ctx->model, ctx->layer, lin[i].role, "weight");
        int rc = lmc_existing_prune_mask(t, w, &mask, err);
        if (!rc)
            rc = lmc_rtn_quantize(w, rows, cols, o->bits, o->group, o->sym, &q, NULL, err);
        if (!rc)
            rc = lmc_store_quantized(ctx->model, ctx->layer, lin[i].role, &q, mask, err);
        free(w);
        free(mask);
        lmc_qresult_free(&q);
        if (rc)
            return -1;
        report_add(ctx, lin[i].role, 0.0, lmc_now() - t0, NULL);
    }
    return 0;
}

void lmc_rtn_pass(lmc_pass *p, const lmc_rtn_opts *o)
{
    memset(p, 0, sizeof *p);
    p->name = "rtn";
    p->stats = 0;
    p->opts = o;
    p->compress_block = rtn_block;
}

/* ---- GPTQ ---- */

typedef struct warn_ctx {
    lmc_pass_ctx *ctx;
    const char *role;
} warn_ctx;

static void on_warn(void *c, const char *msg)
{
    warn_ctx *wc = c;
    fprintf(stderr, "lmc: warning: blk.%d.%s: %s\n", wc->ctx->layer, wc->role, msg);
    wc->ctx->warnings++;
}

int lmc_block_hinv_get(lmc_block_hinv *b, const lmc_pass_ctx *ctx, const char *role, lmc_site s,
                       int64_t cols, const lmc_solver_opts *o, const lmc_hinv **hv,
                       lmc_error *err)
{
    if (!b->have[s]) {
        if (!ctx->stats)
            return lmc_fail(err, "no calibration statistics for %s", lmc_site_name(s));
        if (ctx->stats->site[s].dim != cols)
            return lmc_fail(err, "blk.%d.%s.weight: %lld input columns, statistics have %lld",
                            ctx->layer, role, (long long)cols,
                            (long long)ctx->stats->site[s].dim);
        double *H = lmc_site_hessian(&ctx->stats->site[s]);
        if (!H)
            return lmc_fail(err, "no calibration statistics for %s", lmc_site_name(s));
        int rc = lmc_hinv_prepare(H, cols, o, &b->hv[s], err);
        free(H);
        if (rc)
            return -1;
        b->have[s] = 1;
    }
    *hv = &b->hv[s];
    return 0;
}

void lmc_block_hinv_free(lmc_block_hinv *b)
{
    for (int s = 0; s < LMC_SITE_COUNT; s++)
        if (b->have[s])
            lmc_hinv_free(&b->hv[s]);
    memset(b, 0, sizeof *b);
}

static int gptq_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(&ctx->model->cfg, lin);
    lmc_block_hinv bh;
    memset(&bh, 0, sizeof bh);
    int rc = 0;
    for (int i = 0; i < nl && !rc; i++) {
        double t0 = lmc_now();
        lmc_solver_opts o = *(const lmc_solver_opts *)p->opts;
        warn_ctx wc = {ctx, lin[i].role};
        o.warn = on_warn;
        o.warn_ctx = &wc;
        float *w = NULL;
        uint8_t *mask = NULL;
        int64_t rows, cols;
        const lmc_hinv *hv = NULL;
        if (lmc_pass_load_linear(ctx, lin[i].role, &w, &rows, &cols, err)) {
            rc = -1;
            break;
        }
        if (lmc_block_hinv_get(&bh, ctx, lin[i].role, lin[i].site, cols, &o, &hv, err)) {
            free(w);
            rc = -1;
            break;
        }
        lmc_tensor *t = lmc_model_block_tensor(ctx->model, ctx->layer, lin[i].role, "weight");
        rc = lmc_existing_prune_mask(t, w, &mask, err);
        o.mask_in = mask;
        lmc_solver_result r;
        memset(&r, 0, sizeof r);
        if (!rc)
            rc = lmc_solver_run(hv, w, rows, &o, &r, err);
        if (!rc)
            rc = lmc_store_quantized(ctx->model, ctx->layer, lin[i].role, &r.q, mask, err);
        if (!rc)
            report_add(ctx, lin[i].role, r.loss, lmc_now() - t0, &r);
        lmc_solver_result_free(&r);
        free(w);
        free(mask);
    }
    lmc_block_hinv_free(&bh);
    return rc ? -1 : 0;
}

void lmc_gptq_pass(lmc_pass *p, const lmc_solver_opts *o)
{
    memset(p, 0, sizeof *p);
    p->name = "gptq";
    p->stats = LMC_STAT_HESSIAN;
    p->opts = o;
    p->compress_block = gptq_block;
}
