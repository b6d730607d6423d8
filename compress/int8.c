/* LLM.int8() pass (see int8.h). */
#define _POSIX_C_SOURCE 200809L
#include "int8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/int8.h"

void lmc_int8_opts_default(lmc_int8_opts *o) { o->threshold = 6.0; }

int lmc_int8_opts_check(const lmc_int8_opts *o, lmc_error *err)
{
    if (!(o->threshold > 0) || !isfinite(o->threshold) || o->threshold > 3.0e38)
        return lmc_fail(err, "--threshold %g: must be a positive number", o->threshold);
    return 0;
}

int lmc_int8_outlier_columns(const double *abs_max, int64_t cols, double threshold,
                             int32_t *idx)
{
    int n = 0;
    for (int64_t j = 0; j < cols; j++)
        if (abs_max[j] >= threshold) {
            if (idx)
                idx[n] = (int32_t)j;
            n++;
        }
    return n;
}

static int int8_one(lmc_int8_run *run, lmc_pass_ctx *ctx, const lmc_linear_desc *d,
                    lmc_error *err)
{
    double t0 = lmc_now();
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, d->role);
    float *w = NULL, *back = NULL;
    int32_t *idx = NULL;
    uint8_t *blob = NULL;
    int64_t rows, cols;
    int rc = -1;
    if (lmc_pass_load_linear(ctx, d->role, &w, &rows, &cols, err))
        return -1;
    const lmc_site_stats *st = ctx->stats ? &ctx->stats->site[d->site] : NULL;
    if (!st || !st->abs_max || st->dim != cols) {
        lmc_fail(err, "%s: no max |x| statistics of width %lld for site %s", name,
                 (long long)cols, lmc_site_name(d->site));
        goto out;
    }
    idx = malloc((size_t)cols * sizeof *idx);
    back = malloc((size_t)rows * (size_t)cols * sizeof *back);
    if (!idx || !back) {
        lmc_fail(err, "%s: out of memory", name);
        goto out;
    }
    int nout = lmc_int8_outlier_columns(st->abs_max, cols, run->o.threshold, idx);
    double amax = 0, amax_in = 0;
    for (int64_t j = 0, k = 0; j < cols; j++) {
        double a = st->abs_max[j];
        if (a > amax)
            amax = a;
        if (k < nout && idx[k] == j)
            k++;
        else if (a > amax_in)
            amax_in = a;
    }
    lmc_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    size_t nb = 0;
    if (lmc_int8_encode(w, rows, cols, idx, nout, (float)run->o.threshold, &t.enc, &blob, &nb,
                        err) ||
        lmc_enc_int8_outlier_traits.to_f32(&t.enc, blob, rows, cols, back, err)) {
        lmc_fail_prefix(err, name);
        goto out;
    }
    t.data = blob;
    t.nbytes = nb;
    t.owned = blob;
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) {
        double e = (double)w[i] - (double)back[i];
        num += e * e;
        den += (double)w[i] * (double)w[i];
    }
    if (lmc_model_set_tensor(ctx->model, &t, err))
        goto out;
    blob = NULL; /* the model's now */
    run->cols_total += cols;
    run->outliers_total += nout;
    run->bytes_before += rows * cols * 2;
    run->bytes_after += (int64_t)nb;

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tensor", name);
    cJSON_AddNumberToObject(o, "n_outlier", nout);
    cJSON *cl = cJSON_AddArrayToObject(o, "outlier_columns");
    for (int k = 0; k < nout; k++)
        cJSON_AddItemToArray(cl, cJSON_CreateNumber(idx[k]));
    cJSON_AddNumberToObject(o, "act_absmax", amax);
    cJSON_AddNumberToObject(o, "act_absmax_int8", amax_in);
    cJSON_AddNumberToObject(o, "rel_error", den > 0 ? sqrt(num / den) : 0);
    cJSON_AddNumberToObject(o, "seconds", lmc_now() - t0);
    cJSON_AddItemToArray(ctx->report, o);
    if (run->record) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "tensor", name);
        cJSON_AddNumberToObject(r, "n_outlier", nout);
        cJSON_AddNumberToObject(r, "act_absmax", amax);
        cJSON_AddItemToArray(run->record, r);
    }
    rc = 0;
out:
    free(w), free(back), free(idx), free(blob);
    return rc;
}

static int int8_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    lmc_int8_run *run = (lmc_int8_run *)p->opts; /* the pass's own run record */
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(&ctx->model->cfg, lin);
    for (int i = 0; i < nl; i++)
        if (int8_one(run, ctx, &lin[i], err))
            return -1;
    return 0;
}

static int int8_begin(const lmc_pass *p, lmc_model *m, lmc_error *err)
{
    (void)m, (void)err;
    lmc_int8_run *run = (lmc_int8_run *)p->opts;
    run->cols_total = run->outliers_total = run->bytes_before = run->bytes_after = 0;
    return 0;
}

static int int8_end(const lmc_pass *p, lmc_model *m, cJSON *summary, lmc_error *err)
{
    (void)m, (void)err;
    const lmc_int8_run *run = p->opts;
    if (summary) {
        cJSON *o = cJSON_AddObjectToObject(summary, "int8");
        cJSON_AddNumberToObject(o, "threshold", run->o.threshold);
        cJSON_AddNumberToObject(o, "input_columns", (double)run->cols_total);
        cJSON_AddNumberToObject(o, "outlier_columns", (double)run->outliers_total);
        cJSON_AddNumberToObject(o, "bytes_fp16", (double)run->bytes_before);
        cJSON_AddNumberToObject(o, "bytes", (double)run->bytes_after);
    }
    return 0;
}

int lmc_int8_pass(lmc_pass *p, lmc_int8_run *run, lmc_error *err)
{
    if (lmc_int8_opts_check(&run->o, err))
        return -1;
    *p = (lmc_pass){.name = "int8", .stats = LMC_STAT_ABS_MAX, .opts = run,
                    .compress_block = int8_block, .begin = int8_begin, .end = int8_end};
    return 0;
}
