/* SparseGPT pass (see sparsegpt.h): the shared solver in pruning mode, one
 * Hessian factor per input site, sparse encodings out. */
#include "sparsegpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "qstore.h"
#include "site_hinv.h"

void lmc_sparsegpt_opts_default(lmc_sparsegpt_opts *o)
{
    memset(o, 0, sizeof *o);
    lmc_prune_opts_default(&o->prune);
    lmc_solver_opts_default(&o->solver);
}

/* The solver's own limit on M (solver.c keeps the scores of a group on the
 * stack). */
#define SOLVER_MAX_M 64

int lmc_sparsegpt_opts_check(const lmc_sparsegpt_opts *o, lmc_error *err)
{
    const lmc_solver_opts *s = &o->solver;
    if (lmc_prune_opts_check(&o->prune, err))
        return -1;
    if (s->blocksize <= 0)
        return lmc_fail(err, "--block %d: must be positive", s->blocksize);
    if (!(s->percdamp > 0))
        return lmc_fail(err, "--damp %g: must be positive", s->percdamp);
    if (s->act_order)
        return lmc_fail(err, "sparsegpt: act-order is not supported");
    if (o->prune.m > 0) {
        if (o->prune.m > SOLVER_MAX_M)
            return lmc_fail(err, "--nm %d:%d: SparseGPT supports M up to %d", o->prune.n,
                            o->prune.m, SOLVER_MAX_M);
        if (s->blocksize % o->prune.m)
            return lmc_fail(err, "--nm %d:%d: the block size %d must be a multiple of M (--block)",
                            o->prune.n, o->prune.m, s->blocksize);
    }
    if (s->bits) {
        if (s->bits < 2 || s->bits > 8)
            return lmc_fail(err, "--bits %d: must be between 2 and 8", s->bits);
        if (s->group == 0 || s->group < -1)
            return lmc_fail(err, "--group %d: must be -1 (one group per row) or a positive size",
                            s->group);
    }
    return 0;
}

static int sgpt_begin(const lmc_pass *p, lmc_model *m, lmc_error *err)
{
    const lmc_sparsegpt_opts *o = p->opts;
    if (lmc_sparsegpt_opts_check(o, err))
        return -1;
    /* the width checks (M divides every input width) are prune.c's */
    lmc_pass pp = *p;
    pp.opts = &o->prune;
    return lmc_prune_begin(&pp, m, err);
}

static void report(lmc_pass_ctx *ctx, const lmc_tensor *t, int64_t kept,
                   const lmc_solver_result *r, const char *joint, double secs)
{
    if (!ctx->report)
        return;
    int64_t rows = t->shape[0], cols = t->shape[1], total = rows * cols;
    char desc[64];
    lmc_enc_describe(&t->enc, desc, sizeof desc);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tensor", t->name);
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)rows));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)cols));
    cJSON_AddStringToObject(o, "encoding", desc);
    if (t->enc.inner == LMC_ENC_QGROUP)
        cJSON_AddNumberToObject(o, "bits", t->enc.bits);
    cJSON_AddNumberToObject(o, "kept", (double)kept);
    cJSON_AddNumberToObject(o, "sparsity", 1.0 - (double)kept / (double)total);
    cJSON_AddNumberToObject(o, "nbytes", (double)t->nbytes);
    cJSON_AddNumberToObject(o, "bits_per_weight", 8.0 * (double)t->nbytes / (double)total);
    if (joint) /* loss and time are those of the whole stacked matrix */
        cJSON_AddStringToObject(o, "pruned_with", joint);
    cJSON_AddNumberToObject(o, "loss", r->loss);
    cJSON_AddNumberToObject(o, "seconds", secs);
    cJSON_AddNumberToObject(o, "percdamp", r->percdamp_used);
    cJSON_AddNumberToObject(o, "dead_columns", r->n_dead);
    cJSON_AddItemToArray(ctx->report, o);
}

/* How many linears from lin[i] are pruned as one matrix: the ones the
 * source checkpoint stores fused, since the reference prunes modules. GPT-2's
 * c_attn holds q, k and v: its unstructured threshold of a block spans the
 * three (one per block of the fused matrix, not one per projection). */
static int unit_size(const lmc_config *cfg, const lmc_linear_desc *lin, int i, int nl)
{
    if (cfg->fused_qkv && i + 2 < nl && !strcmp(lin[i].role, "q") &&
        !strcmp(lin[i + 1].role, "k") && !strcmp(lin[i + 2].role, "v") &&
        lin[i].site == lin[i + 1].site && lin[i].site == lin[i + 2].site)
        return 3;
    return 1;
}

/* Rows [r0, r0 + rows) of a quantization result, without copying. */
static lmc_qresult q_rows(const lmc_qresult *q, int64_t r0, int64_t rows)
{
    lmc_qresult v = *q;
    v.rows = rows;
    v.codes = q->codes + r0 * q->cols;
    v.scales = q->scales + r0 * q->ngroups;
    v.zeros = q->zeros + r0 * q->ngroups;
    return v;
}

/* Prune (and quantize) the cnt linears lin[0..cnt) as one matrix with their
 * rows stacked (they read the same input: one hv), then store each. */
static int prune_unit(const lmc_sparsegpt_opts *so, lmc_pass_ctx *ctx,
                      const lmc_linear_desc *lin, int cnt, lmc_block_hinv *bh, float *W,
                      const int64_t *rows, int64_t cols, lmc_error *err)
{
    double t0 = lmc_now();
    int64_t R = 0;
    for (int j = 0; j < cnt; j++)
        R += rows[j];
    lmc_solver_opts o = so->solver;
    lmc_solver_warn_ctx wc = {ctx, lin[0].role};
    o.warn = lmc_solver_warn_pass;
    o.warn_ctx = &wc;
    o.mask_in = NULL;
    o.act_order = 0;
    if (so->prune.m > 0) {
        /* the solver counts the PRUNED ones of every M */
        o.sparsity = 0;
        o.prune_n = so->prune.m - so->prune.n;
        o.prune_m = so->prune.m;
    } else {
        o.sparsity = so->prune.sparsity;
        o.prune_n = o.prune_m = 0;
    }
    lmc_solver_result r;
    memset(&r, 0, sizeof r);
    size_t total = (size_t)R * (size_t)cols;
    uint8_t *keep = malloc(total);
    if (!keep)
        return lmc_fail(err, "blk.%d.%s.weight: out of memory for the mask", ctx->layer,
                        lin[0].role);
    char joint[32] = "";
    for (int j = 0; cnt > 1 && j < cnt; j++)
        snprintf(joint + strlen(joint), sizeof joint - strlen(joint), "%s%s", j ? "," : "",
                 lin[j].role);
    int rc = lmc_site_solve(bh, ctx, lin[0].role, lin[0].site, cols, W, NULL, R, &o, NULL, &r,
                            err);
    if (rc) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, lin[0].role);
        lmc_fail_prefix(err, name);
    } else if (!r.mask) {
        rc = lmc_fail(err, "blk.%d.%s.weight: the solver returned no prune mask", ctx->layer,
                      lin[0].role);
    } else {
        for (size_t i = 0; i < total; i++)
            keep[i] = !r.mask[i];
    }
    double secs = lmc_now() - t0;
    int64_t r0 = 0;
    for (int j = 0; j < cnt && !rc; r0 += rows[j], j++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, lin[j].role);
        const uint8_t *kj = keep + r0 * cols;
        lmc_tensor t;
        /* W now holds the updated weights with exact zeros where pruned */
        if (o.bits) {
            lmc_qresult qj = q_rows(&r.q, r0, rows[j]);
            rc = lmc_sparse_qtensor(name, &qj, kj, so->prune.n, so->prune.m, &t, err);
        } else {
            rc = lmc_prune_encode(name, W + r0 * cols, rows[j], cols, kj, &so->prune, &t, err);
        }
        if (rc)
            break;
        int64_t kept = 0;
        for (int64_t i = 0; i < rows[j] * cols; i++)
            kept += kj[i] != 0;
        report(ctx, &t, kept, &r, cnt > 1 ? joint : NULL, secs);
        rc = lmc_model_set_tensor(ctx->model, &t, err);
        if (rc)
            free(t.owned);
    }
    lmc_solver_result_free(&r);
    free(keep);
    return rc;
}

static int sgpt_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    const lmc_sparsegpt_opts *so = p->opts;
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(&ctx->model->cfg, lin);
    lmc_block_hinv bh;
    memset(&bh, 0, sizeof bh);
    int rc = 0;
    for (int i = 0; i < nl && !rc;) {
        int cnt = unit_size(&ctx->model->cfg, lin, i, nl);
        float *w[3] = {NULL, NULL, NULL}, *W = NULL;
        int64_t rows[3] = {0, 0, 0}, cols = 0, R = 0;
        for (int j = 0; j < cnt && !rc; j++) {
            char name[64];
            int64_t c;
            snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, lin[i + j].role);
            if (lmc_pass_load_linear(ctx, lin[i + j].role, &w[j], &rows[j], &c, err) ||
                lmc_prune_check_width(&so->prune, name, c, err))
                rc = -1;
            else if (j > 0 && c != cols)
                rc = lmc_fail(err, "%s: %lld inputs, blk.%d.%s.weight has %lld", name,
                              (long long)c, ctx->layer, lin[i].role, (long long)cols);
            cols = c;
            R += rows[j];
        }
        if (!rc && cnt == 1) {
            W = w[0];
            w[0] = NULL;
        } else if (!rc) {
            W = malloc((size_t)R * (size_t)cols * sizeof *W);
            if (!W)
                rc = lmc_fail(err, "blk.%d: out of memory stacking %s", ctx->layer,
                              lin[i].role);
            int64_t r0 = 0;
            for (int j = 0; !rc && j < cnt; r0 += rows[j], j++)
                memcpy(W + (size_t)r0 * (size_t)cols, w[j],
                       (size_t)rows[j] * (size_t)cols * sizeof *W);
        }
        for (int j = 0; j < cnt; j++)
            free(w[j]);
        if (!rc)
            rc = prune_unit(so, ctx, lin + i, cnt, &bh, W, rows, cols, err);
        free(W);
        i += cnt;
    }
    lmc_block_hinv_free(&bh);
    return rc ? -1 : 0;
}

int lmc_linear_sparsity(const lmc_model *m, double *sparsity, double *bits_per_weight,
                        lmc_error *err)
{
    lmc_linear_desc d[8];
    int nl = lmc_block_linears(&m->cfg, d);
    double zeros = 0, elems = 0, bytes = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < nl; i++) {
            const lmc_tensor *t = lmc_model_block_tensor(m, l, d[i].role, "weight");
            const lmc_enc_traits *tr = t ? lmc_enc_get(t->enc.id) : NULL;
            if (!t || !tr)
                return lmc_fail(err, "blk.%d.%s.weight: %s", l, d[i].role,
                                t ? "unknown encoding" : "missing");
            int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
            size_t n = (size_t)rows * (size_t)cols;
            float *w = malloc(n * sizeof *w);
            if (!w)
                return lmc_fail(err, "%s: out of memory", t->name);
            if (tr->validate(&t->enc, rows, cols, err) ||
                tr->to_f32(&t->enc, t->data, rows, cols, w, err)) {
                free(w);
                return lmc_fail_prefix(err, t->name);
            }
            for (size_t k = 0; k < n; k++)
                zeros += w[k] == 0.0f;
            free(w);
            elems += (double)n;
            bytes += (double)t->nbytes;
        }
    *sparsity = elems > 0 ? zeros / elems : 0;
    *bits_per_weight = elems > 0 ? 8 * bytes / elems : 0;
    return 0;
}

static int sgpt_end(const lmc_pass *p, lmc_model *m, cJSON *summary, lmc_error *err)
{
    (void)p;
    double z, bpw;
    if (lmc_linear_sparsity(m, &z, &bpw, err))
        return -1;
    cJSON_AddNumberToObject(summary, "zero_fraction", z);
    cJSON_AddNumberToObject(summary, "linear_bits_per_weight", bpw);
    return 0;
}

int lmc_sparsegpt_pass(lmc_pass *p, const lmc_sparsegpt_opts *o, lmc_error *err)
{
    if (lmc_sparsegpt_opts_check(o, err))
        return -1;
    *p = (lmc_pass){.name = "sparsegpt", .stats = LMC_STAT_HESSIAN,
                    .device_stats = LMC_STAT_HESSIAN, .opts = o,
                    .compress_block = sgpt_block, .begin = sgpt_begin, .end = sgpt_end};
    return 0;
}
