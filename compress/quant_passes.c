#include "quant_passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qstore.h"
#include "rtn.h"
#include "site_hinv.h"
#include "../core/clock.h"


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
    p->streams = 1;
    p->opts = o;
    p->compress_block = rtn_block;
}

/* ---- GPTQ ---- */

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
        lmc_solver_warn_ctx wc = {ctx, lin[i].role};
        o.warn = lmc_solver_warn_pass;
        o.warn_ctx = &wc;
        lmc_tensor *t = lmc_model_block_tensor(ctx->model, ctx->layer, lin[i].role, "weight");
        if (!t) {
            rc = lmc_fail(err, "blk.%d.%s.weight: missing", ctx->layer, lin[i].role);
            break;
        }
        int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
        float *w = NULL;
        uint8_t *mask = NULL;
        lmc_enc_view v;
        /* a device solve takes a dense tensor as stored; anything else (an
         * earlier pass's sparse weights, whose zeros must stay) is decoded */
        int as_stored = lmc_site_solve_on_device(ctx) &&
                        lmc_tensor_view(t, &v, err) == 1 && v.kind == LMC_VIEW_DENSE;
        if (!as_stored) {
            if (lmc_pass_load_linear(ctx, lin[i].role, &w, &rows, &cols, err) ||
                lmc_existing_prune_mask(t, w, &mask, err)) {
                free(w);
                rc = -1;
                break;
            }
        }
        o.mask_in = mask;
        lmc_solver_result r;
        memset(&r, 0, sizeof r);
        rc = lmc_site_solve(&bh, ctx, lin[i].role, lin[i].site, cols, w, as_stored ? t : NULL,
                            rows, &o, NULL, &r, err);
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
    p->device_stats = LMC_STAT_HESSIAN; /* solved where the backend computed it */
    p->streams = 1;
    p->opts = o;
    p->compress_block = gptq_block;
}
