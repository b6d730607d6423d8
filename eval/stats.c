#include "stats.h"
#include "../core/clock.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t lmc_site_dim(const lmc_config *cfg, lmc_site s)
{
    switch (s) {
    case LMC_SITE_ATTN_IN: return cfg->hidden;
    case LMC_SITE_ATTN_OUT: return (int64_t)cfg->n_heads * cfg->head_dim;
    case LMC_SITE_FFN_IN: return cfg->hidden;
    case LMC_SITE_FFN_MID: return cfg->ffn;
    default: return 0;
    }
}

int lmc_block_stats_init(lmc_block_stats *s, const lmc_config *cfg, unsigned flags,
                         unsigned device_only, lmc_error *err)
{
    memset(s, 0, sizeof *s);
    s->flags = flags;
    s->device_only = device_only & flags;
    flags &= ~device_only;
    for (int k = 0; k < LMC_SITE_COUNT; k++) {
        lmc_site_stats *st = &s->site[k];
        int64_t d = lmc_site_dim(cfg, (lmc_site)k);
        st->dim = d;
        size_t dd = (size_t)d * (size_t)d;
        if (flags & LMC_STAT_HESSIAN) {
            if (!(st->xtx = calloc(dd, sizeof(double))))
                goto oom;
            if (dd > s->tmp_elems)
                s->tmp_elems = dd; /* allocated by reset */
        }
        if (flags & LMC_STAT_ABS_MEAN && !(st->abs_sum = calloc((size_t)d, sizeof(double))))
            goto oom;
        if (flags & LMC_STAT_ABS_MAX && !(st->abs_max = calloc((size_t)d, sizeof(double))))
            goto oom;
        if (flags & LMC_STAT_SQ_SUM && !(st->sq_sum = calloc((size_t)d, sizeof(double))))
            goto oom;
    }
    return 0;
oom:
    lmc_block_stats_free(s);
    return lmc_fail(err, "out of memory for calibration statistics");
}

int lmc_block_stats_alloc(lmc_block_stats *s, lmc_error *err)
{
    if (!(s->flags & ~s->device_only & LMC_STAT_HESSIAN))
        return 0;
    for (int k = 0; k < LMC_SITE_COUNT; k++) {
        lmc_site_stats *st = &s->site[k];
        size_t dd = (size_t)st->dim * (size_t)st->dim;
        if (!st->xtx && !(st->xtx = calloc(dd, sizeof(double))))
            return lmc_fail(err, "out of memory for calibration statistics");
    }
    return 0;
}

double *lmc_block_stats_take_hessian(lmc_block_stats *s, lmc_site site)
{
    double *h = s->site[site].xtx;
    s->site[site].xtx = NULL;
    return h;
}

int lmc_block_stats_reset(lmc_block_stats *s, lmc_error *err)
{
    if (lmc_block_stats_alloc(s, err) < 0)
        return -1;
    if (s->tmp_elems && !s->tmp && !(s->tmp = malloc(s->tmp_elems * sizeof(float))))
        return lmc_fail(err, "out of memory for calibration statistics");
    for (int k = 0; k < LMC_SITE_COUNT; k++) {
        lmc_site_stats *st = &s->site[k];
        size_t d = (size_t)st->dim;
        st->ntok = 0;
        if (st->xtx)
            memset(st->xtx, 0, d * d * sizeof(double));
        if (st->abs_sum)
            memset(st->abs_sum, 0, d * sizeof(double));
        if (st->abs_max)
            memset(st->abs_max, 0, d * sizeof(double));
        if (st->sq_sum)
            memset(st->sq_sum, 0, d * sizeof(double));
    }
    return 0;
}

void lmc_block_stats_free(lmc_block_stats *s)
{
    for (int k = 0; k < LMC_SITE_COUNT; k++) {
        lmc_site_stats *st = &s->site[k];
        free(st->xtx);
        free(st->abs_sum);
        free(st->abs_max);
        free(st->sq_sum);
    }
    free(s->tmp);
    memset(s, 0, sizeof *s);
}

void lmc_block_stats_observe(void *ctx, int layer, lmc_site site, const float *x, int64_t ntok,
                             int64_t dim)
{
    (void)layer;
    lmc_block_stats *s = ctx;
    lmc_site_stats *st = &s->site[site];
    if (dim != st->dim || ntok <= 0)
        return; /* programmer error upstream; the dimension check in init guards it */
    double t0 = lmc_now();
    st->ntok += ntok;
    if (st->xtx && s->tmp) {
        /* One window at a time in fp32 (≤ a few thousand terms per entry),
         * summed across windows in double. */
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)dim, (int)ntok, 1.0f, x,
                    (int)dim, 0.0f, s->tmp, (int)dim);
        for (int64_t i = 0; i < dim; i++) {
            double *h = st->xtx + i * dim;
            const float *t = s->tmp + i * dim;
            for (int64_t j = i; j < dim; j++)
                h[j] += t[j];
        }
    }
    if (st->abs_sum || st->abs_max || st->sq_sum) {
        for (int64_t t = 0; t < ntok; t++) {
            const float *r = x + t * dim;
            for (int64_t j = 0; j < dim; j++) {
                double a = fabs((double)r[j]);
                if (st->abs_sum)
                    st->abs_sum[j] += a;
                if (st->abs_max && a > st->abs_max[j])
                    st->abs_max[j] = a;
                if (st->sq_sum)
                    st->sq_sum[j] += a * a;
            }
        }
    }
    s->seconds += lmc_now() - t0;
}

void lmc_block_stats_finish(lmc_block_stats *s)
{
    free(s->tmp);
    s->tmp = NULL;
    for (int k = 0; k < LMC_SITE_COUNT; k++) {
        lmc_site_stats *st = &s->site[k];
        if (!st->xtx)
            continue;
        int64_t d = st->dim;
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < i; j++)
                st->xtx[i * d + j] = st->xtx[j * d + i];
    }
}

