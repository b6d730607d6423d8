#include "smoothquant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/w8a8.h"
#include "../eval/weights.h"
#include "scale_fold.h"

void lmc_smoothquant_opts_default(lmc_smoothquant_opts *o)
{
    memset(o, 0, sizeof *o);
    o->alpha = 0.5;
    o->smooth = 1;
    o->quantize = 1;
}

void lmc_smoothquant_scales(const double *act_max, const float *const *W, const int64_t *rows,
                            int nw, int64_t dim, double alpha, float *s)
{
    for (int64_t j = 0; j < dim; j++) {
        double wm = 0.0;
        for (int k = 0; k < nw; k++)
            for (int64_t r = 0; r < rows[k]; r++) {
                double a = fabs((double)W[k][r * dim + j]);
                wm = a > wm ? a : wm;
            }
        if (wm < 1e-5)
            wm = 1e-5;
        /* the activation max is not clamped in the reference: a dead
         * channel gets 0 / w -> the 1e-5 floor below */
        double v = pow(act_max[j], alpha) / pow(wm, 1.0 - alpha);
        s[j] = (float)(v < 1e-5 ? 1e-5 : v);
    }
}

static int smooth_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    const lmc_smoothquant_opts *o = p->opts;
    if (!o->smooth)
        return 0;
    lmc_fold_group g[4];
    int ng = lmc_fold_groups(&ctx->model->cfg, 1, g);
    int rc = 0;
    for (int i = 0; i < ng && !rc; i++) {
        const lmc_site_stats *st = &ctx->stats->site[g[i].site];
        int64_t dim = st->dim;
        float *W[3] = {NULL, NULL, NULL}, *s = malloc((size_t)dim * sizeof *s);
        int64_t rows[3] = {0}, cols;
        if (!s || !st->abs_max || st->ntok == 0) {
            free(s);
            return lmc_fail(err, "%s: no activation statistics", lmc_site_name(g[i].site));
        }
        for (int k = 0; k < g[i].ncons && !rc; k++) {
            rc = lmc_pass_load_linear(ctx, g[i].cons[k], &W[k], &rows[k], &cols, err);
            if (!rc && cols != dim)
                rc = lmc_fail(err, "blk.%d.%s.weight: %lld input columns, statistics have %lld",
                              ctx->layer, g[i].cons[k], (long long)cols, (long long)dim);
        }
        if (!rc) {
            lmc_smoothquant_scales(st->abs_max, (const float *const *)W, rows, g[i].ncons, dim,
                                   o->alpha, s);
            /* linears stay fp32 until the W8A8 step at the end */
            rc = lmc_fold_scales(ctx->model, ctx->layer, &g[i], s, dim, LMC_ENC_F32, err);
        }
        if (!rc) {
            double smin = INFINITY, smax = 0, amax = 0;
            for (int64_t j = 0; j < dim; j++) {
                smin = s[j] < smin ? s[j] : smin;
                smax = s[j] > smax ? s[j] : smax;
                amax = st->abs_max[j] > amax ? st->abs_max[j] : amax;
            }
            cJSON *r = cJSON_CreateObject();
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, g[i].prev);
            cJSON_AddStringToObject(r, "tensor", name);
            cJSON_AddStringToObject(r, "site", lmc_site_name(g[i].site));
            cJSON_AddNumberToObject(r, "act_absmax", amax);
            cJSON_AddNumberToObject(r, "scale_min", smin);
            cJSON_AddNumberToObject(r, "scale_max", smax);
            cJSON_AddItemToArray(ctx->report, r);
        }
        for (int k = 0; k < 3; k++)
            free(W[k]);
        free(s);
    }
    return rc;
}

int lmc_w8a8_quantize_model(lmc_model *m, cJSON *report, lmc_error *err)
{
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(&m->cfg, lin);
    for (int layer = 0; layer < m->cfg.n_layers; layer++)
        for (int i = 0; i < nl; i++) {
            lmc_tensor *t = lmc_model_block_tensor(m, layer, lin[i].role, "weight");
            if (!t)
                return lmc_fail(err, "blk.%d.%s.weight: missing", layer, lin[i].role);
            if (t->ndim != 2)
                return lmc_fail(err, "%s: not a matrix", t->name);
            float *w = NULL;
            if (lmc_tensor_to_f32(t, &w, err))
                return -1;
            int64_t rows = t->shape[0], cols = t->shape[1];
            lmc_tensor nt;
            memset(&nt, 0, sizeof nt);
            memcpy(nt.name, t->name, sizeof nt.name);
            nt.ndim = 2;
            nt.shape[0] = rows;
            nt.shape[1] = cols;
            uint8_t *blob = NULL;
            size_t nb = 0;
            if (lmc_w8a8_encode(w, rows, cols, NULL, &nt.enc, &blob, &nb, err)) {
                free(w);
                return lmc_fail_prefix(err, nt.name);
            }
            if (report) {
                /* relative Frobenius error of the weight quantization */
                float *d = malloc((size_t)rows * (size_t)cols * sizeof *d);
                if (d && !lmc_enc_w8a8_traits.to_f32(&nt.enc, blob, rows, cols, d, err)) {
                    double num = 0, den = 0;
                    for (size_t k = 0; k < (size_t)rows * (size_t)cols; k++) {
                        double e = (double)d[k] - w[k];
                        num += e * e;
                        den += (double)w[k] * w[k];
                    }
                    cJSON *r = cJSON_CreateObject();
                    cJSON_AddStringToObject(r, "tensor", nt.name);
                    cJSON_AddNumberToObject(r, "weight_rel_err", den > 0 ? sqrt(num / den) : 0);
                    cJSON_AddItemToArray(report, r);
                }
                free(d);
            }
            free(w);
            nt.data = blob;
            nt.nbytes = nb;
            nt.owned = blob;
            if (lmc_model_set_tensor(m, &nt, err)) {
                free(blob);
                return -1;
            }
        }
    return 0;
}

static int sq_end(const lmc_pass *p, lmc_model *m, cJSON *summary, lmc_error *err)
{
    const lmc_smoothquant_opts *o = p->opts;
    if (!o->quantize)
        return 0;
    cJSON *rep = summary ? cJSON_AddArrayToObject(summary, "w8a8") : NULL;
    return lmc_w8a8_quantize_model(m, rep, err);
}

void lmc_smoothquant_pass(lmc_pass *p, const lmc_smoothquant_opts *o)
{
    memset(p, 0, sizeof *p);
    p->name = "smoothquant";
    p->stats = o->smooth ? LMC_STAT_ABS_MAX : 0;
    p->opts = o;
    p->compress_block = smooth_block;
    p->end = sq_end;
}
