#define _POSIX_C_SOURCE 200809L
#include "driver.h"
#include "../core/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Observer wrapper that also measures the time spent in statistics. */
typedef struct timed_obs {
    lmc_block_stats *stats;
    double seconds;
} timed_obs;

static void observe_timed(void *ctx, int layer, lmc_site site, const float *x, int64_t ntok,
                          int64_t dim)
{
    timed_obs *t = ctx;
    double t0 = lmc_now();
    lmc_block_stats_observe(t->stats, layer, site, x, ntok, dim);
    t->seconds += lmc_now() - t0;
}

int lmc_pass_load_linear(const lmc_pass_ctx *ctx, const char *role, float **w, int64_t *rows,
                         int64_t *cols, lmc_error *err)
{
    lmc_tensor *t = lmc_model_block_tensor(ctx->model, ctx->layer, role, "weight");
    if (!t)
        return lmc_fail(err, "blk.%d.%s.weight: missing", ctx->layer, role);
    if (lmc_tensor_to_f32(t, w, err))
        return -1;
    *rows = t->shape[0];
    *cols = t->ndim == 2 ? t->shape[1] : 1;
    return 0;
}

int lmc_driver_run(lmc_model *m, const lmc_pass *p, const lmc_windows *win,
                   const lmc_driver_opts *o, cJSON *summary, lmc_error *err)
{
    const lmc_config *cfg = &m->cfg;
    int calibrated = p->stats != 0;
    int rc = -1;
    if (calibrated && (!win || win->n <= 0))
        return lmc_fail(err, "%s needs calibration windows", p->name);

    lmc_weights w;
    memset(&w, 0, sizeof w);
    w.model = m;
    w.cfg = cfg;
    lmc_block_w *blocks = calloc((size_t)cfg->n_layers, sizeof *blocks);
    float *embed = NULL, *pos = NULL, *x = NULL, *tmp = NULL;
    lmc_scratch *scratch = NULL;
    lmc_block_stats stats;
    memset(&stats, 0, sizeof stats);
    cJSON *report = cJSON_CreateArray();
    double t_fwd = 0, t_pass = 0, t_start = lmc_now();
    timed_obs tobs = {&stats, 0};
    if (!blocks || !report) {
        lmc_fail(err, "out of memory");
        goto out;
    }
    w.blocks = blocks;

    size_t hid = (size_t)cfg->hidden;
    if (calibrated) {
        lmc_tensor *te = lmc_model_find(m, "embed.weight");
        if (!te) {
            lmc_fail(err, "embed.weight: missing");
            goto out;
        }
        if (lmc_tensor_to_f32(te, &embed, err))
            goto out;
        w.embed = embed;
        lmc_tensor *tp = lmc_model_find(m, "pos_embed.weight");
        if (tp) {
            if (lmc_tensor_to_f32(tp, &pos, err))
                goto out;
            w.pos_embed = pos;
        }
        size_t per = (size_t)win->seqlen * hid;
        x = malloc((size_t)win->n * per * sizeof(float));
        tmp = malloc(per * sizeof(float));
        scratch = lmc_scratch_new(cfg, win->seqlen);
        if (!x || !tmp || !scratch) {
            lmc_fail(err, "out of memory for %d calibration windows of %d tokens", win->n,
                     win->seqlen);
            goto out;
        }
        for (int k = 0; k < win->n; k++)
            if (lmc_forward_embed(&w, win->ids + (size_t)k * win->seqlen, win->seqlen,
                                  x + (size_t)k * per, err))
                goto out;
        if (lmc_block_stats_init(&stats, cfg, p->stats, err))
            goto out;
    }
    if (p->begin && p->begin(p, m, err))
        goto out;

    for (int layer = 0; layer < cfg->n_layers; layer++) {
        lmc_block_w *bw = &blocks[layer];
        if (lmc_weights_prepare_block(m, layer, bw, err))
            goto out;
        size_t per = calibrated ? (size_t)win->seqlen * hid : 0;
        double t0 = lmc_now();
        if (calibrated) {
            lmc_block_stats_reset(&stats);
            for (int k = 0; k < win->n; k++) {
                memcpy(tmp, x + (size_t)k * per, per * sizeof(float));
                if (lmc_forward_block(&w, layer, bw, tmp, win->seqlen, scratch, observe_timed,
                                      &tobs, err))
                    goto out;
            }
            lmc_block_stats_finish(&stats);
        }
        double t1 = lmc_now();
        lmc_pass_ctx ctx = {
            .model = m, .w = &w, .layer = layer, .bw = bw,
            .stats = calibrated ? &stats : NULL,
            .x_in = x, .nwin = calibrated ? win->n : 0, .seqlen = calibrated ? win->seqlen : 0,
            .scratch = scratch, .report = report, .warnings = 0,
        };
        if (p->compress_block(p, &ctx, err)) {
            char pre[64];
            snprintf(pre, sizeof pre, "%s, block %d", p->name, layer);
            lmc_fail_prefix(err, pre);
            goto out;
        }
        double t2 = lmc_now();
        if (calibrated) {
            /* Next block's inputs come from the compressed block. */
            if (lmc_weights_prepare_block(m, layer, bw, err))
                goto out;
            for (int k = 0; k < win->n; k++)
                if (lmc_forward_block(&w, layer, bw, x + (size_t)k * per, win->seqlen, scratch,
                                      NULL, NULL, err))
                    goto out;
        }
        double t3 = lmc_now();
        t_fwd += (t1 - t0) + (t3 - t2);
        t_pass += t2 - t1;
        lmc_block_w_release(bw);
        if (!o || !o->quiet)
            fprintf(stderr, "[%s] block %d/%d  forward %.2fs  %s %.2fs\n", p->name, layer + 1,
                    cfg->n_layers, (t1 - t0) + (t3 - t2), p->name, t2 - t1);
    }
    if (p->end && p->end(p, m, summary, err))
        goto out;
    rc = 0;
out:
    if (summary) {
        cJSON *sec = cJSON_CreateObject();
        /* forward includes the statistics time, reported separately too */
        cJSON_AddNumberToObject(sec, "forward", t_fwd - tobs.seconds);
        cJSON_AddNumberToObject(sec, "statistics", tobs.seconds);
        cJSON_AddNumberToObject(sec, "solve", t_pass);
        cJSON_AddNumberToObject(sec, "total", lmc_now() - t_start);
        /* every window goes through every block twice (statistics, then the
         * compressed block): tokens/s of one full-model forward equivalent */
        if (calibrated && t_fwd - tobs.seconds > 0)
            cJSON_AddNumberToObject(sec, "calib_tokens_per_second",
                                    2.0 * win->n * win->seqlen / (t_fwd - tobs.seconds));
        cJSON_AddItemToObject(summary, "seconds", sec);
        cJSON_AddItemToObject(summary, "layers", report);
    } else {
        cJSON_Delete(report);
    }
    if (blocks)
        for (int l = 0; l < cfg->n_layers; l++)
            lmc_block_w_release(&blocks[l]);
    free(blocks);
    free(embed);
    free(pos);
    free(x);
    free(tmp);
    lmc_scratch_free(scratch);
    lmc_block_stats_free(&stats);
    return rc;
}
