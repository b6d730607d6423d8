#define _POSIX_C_SOURCE 200809L
#include "driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/log.h"

void lmc_driver_opts_default(lmc_driver_opts *o)
{
    memset(o, 0, sizeof *o);
    lmc_backend_opts_default(&o->backend);
    o->backend.use = LMC_USE_CALIB;
}

int lmc_pass_capture_windows(int64_t tokens, int nwin, int seqlen)
{
    if (nwin < 1 || seqlen < 1 || tokens < 1)
        return 0;
    int64_t want = tokens / seqlen;
    return want < 1 ? 1 : want > nwin ? nwin : (int)want;
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

/* The host copies a pass asked for (LMC_PASS_*), for the block about to be
 * compressed. */
typedef struct host_side {
    lmc_weights shell;
    float *embed, *pos;
    lmc_block_w bw;
    lmc_scratch *scratch;
} host_side;

static int host_fill(host_side *h, const lmc_pass *p, lmc_model *m, lmc_acts *acts,
                     lmc_pass_ctx *ctx, lmc_error *err)
{
    int on_device = ctx->backend && lmc_backend_device(ctx->backend) != LMC_DEVICE_CPU;
    unsigned needs = on_device ? p->needs & ~p->device_skips : p->needs;
    if (needs & LMC_PASS_BLOCK_W) {
        if (lmc_weights_prepare_block(m, ctx->layer, &h->bw, err))
            return -1;
        ctx->bw = &h->bw;
    }
    if ((needs & LMC_PASS_INPUTS) && acts) {
        h->shell.model = m;
        h->shell.cfg = &m->cfg;
        if (!h->scratch && !(h->scratch = lmc_scratch_new(&m->cfg, ctx->seqlen)))
            return lmc_fail(err, "out of memory for windows of %d tokens", ctx->seqlen);
        if (lmc_acts_host(acts, &ctx->x_in, err))
            return -1;
        ctx->w = &h->shell;
        ctx->scratch = h->scratch;
    }
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
    lmc_driver_opts def;
    if (!o) {
        lmc_driver_opts_default(&def);
        o = &def;
    }
    lmc_backend *be = NULL;
    lmc_acts *acts = NULL;
    lmc_block_stats stats;
    memset(&stats, 0, sizeof stats);
    host_side hs;
    memset(&hs, 0, sizeof hs);
    cJSON *report = cJSON_CreateArray();
    double t_fwd = 0, t_stats = 0, t_pass = 0, t_start = lmc_now();
    if (!report) {
        lmc_fail(err, "out of memory");
        goto out;
    }
    if (calibrated) {
        lmc_backend_opts bo = o->backend;
        bo.use = LMC_USE_CALIB;
        bo.seqlen_hint = win->seqlen;
        double t0 = lmc_now();
        if (lmc_backend_open(m, &bo, &be, err) ||
            lmc_backend_acts_new(be, win->ids, win->n, win->seqlen, &acts, err))
            goto out;
        t_fwd += lmc_now() - t0;
        unsigned dev_only = o->backend.device == LMC_DEVICE_CPU ? 0 : p->device_stats;
        if (lmc_block_stats_init(&stats, cfg, p->stats, dev_only, err))
            goto out;
        if (o->backend.device != LMC_DEVICE_CPU)
            stats.capture_windows =
                lmc_pass_capture_windows(p->device_capture_tokens, win->n, win->seqlen);
    }
    if (p->begin && p->begin(p, m, err))
        goto out;
    if (o->start_layer < 0 || o->start_layer > cfg->n_layers ||
        (o->start_layer > 0 && !p->streams)) {
        lmc_fail(err, "%s: cannot resume at block %d", p->name, o->start_layer);
        goto out;
    }
    if (o->earlier_reports) {
        const cJSON *r;
        cJSON_ArrayForEach(r, o->earlier_reports) cJSON_AddItemToArray(report, cJSON_Duplicate(r, 1));
    }
    /* resume: the finished blocks only produce the next inputs */
    for (int layer = 0; calibrated && layer < o->start_layer; layer++) {
        double t0 = lmc_now();
        if (lmc_backend_load_block(be, layer, err) ||
            lmc_backend_block_forward(be, acts, NULL, err))
            goto out;
        t_fwd += lmc_now() - t0;
        lmc_log(LMC_LOG_PROGRESS, "[%s] block %d/%d  done before, run forward %.2fs", p->name,
                layer + 1, cfg->n_layers, lmc_now() - t0);
    }
    double t_loop = lmc_now();

    for (int layer = o->start_layer; layer < cfg->n_layers; layer++) {
        double t0 = lmc_now(), st0 = stats.seconds;
        int rep0 = cJSON_GetArraySize(report);
        if (calibrated && (lmc_backend_load_block(be, layer, err) ||
                           lmc_backend_block_forward(be, acts, &stats, err)))
            goto out;
        double t2 = lmc_now();
        lmc_pass_ctx ctx = {
            .model = m, .layer = layer, .stats = calibrated ? &stats : NULL,
            .nwin = calibrated ? win->n : 0, .seqlen = calibrated ? win->seqlen : 0,
            .backend = be, .device = o->backend.device, .report = report,
        };
        if (host_fill(&hs, p, m, acts, &ctx, err) || p->compress_block(p, &ctx, err)) {
            char pre[64];
            snprintf(pre, sizeof pre, "%s, block %d", p->name, layer);
            lmc_fail_prefix(err, pre);
            goto out;
        }
        lmc_block_w_release(&hs.bw);
        double t3 = lmc_now();
        if (calibrated) {
            /* the next block's inputs come from the compressed block */
            if (lmc_backend_load_block(be, layer, err) ||
                lmc_backend_block_forward(be, acts, NULL, err))
                goto out;
        }
        double t4 = lmc_now();
        /* forward: loading the block twice and both runs, less the time
         * the backend spent on statistics */
        double st_s = stats.seconds - st0;
        t_stats += st_s;
        t_fwd += (t4 - t0) - (t3 - t2) - st_s;
        t_pass += t3 - t2;
        if (o->block_done) {
            cJSON *mine = cJSON_CreateArray();
            for (int k = rep0; mine && k < cJSON_GetArraySize(report); k++)
                cJSON_AddItemToArray(mine, cJSON_Duplicate(cJSON_GetArrayItem(report, k), 1));
            int rc2 = o->block_done(o->block_done_ctx, m, layer, mine, err);
            cJSON_Delete(mine);
            if (rc2)
                goto out;
        }
        double done = layer + 1 - o->start_layer, now = lmc_now();
        double eta = (now - t_loop) / done * (cfg->n_layers - layer - 1);
        lmc_log(LMC_LOG_PROGRESS,
                "[%s] block %d/%d  forward %.2fs  %s %.2fs  elapsed %.1fs  eta %.0fs", p->name,
                layer + 1, cfg->n_layers, (t4 - t0) - (t3 - t2), p->name, t3 - t2,
                now - t_start, eta);
    }
    if (p->end && p->end(p, m, summary, err))
        goto out;
    rc = 0;
out:
    if (summary) {
        cJSON *sec = cJSON_CreateObject();
        cJSON_AddNumberToObject(sec, "forward", t_fwd);
        cJSON_AddNumberToObject(sec, "statistics", t_stats);
        cJSON_AddNumberToObject(sec, "solve", t_pass);
        cJSON_AddNumberToObject(sec, "total", lmc_now() - t_start);
        /* every window goes through every block twice (statistics, then the
         * compressed block): tokens/s of one full-model forward equivalent */
        if (calibrated && t_fwd > 0)
            cJSON_AddNumberToObject(sec, "calib_tokens_per_second",
                                    2.0 * win->n * win->seqlen / t_fwd);
        cJSON_AddItemToObject(summary, "seconds", sec);
        cJSON_AddStringToObject(summary, "device", lmc_device_name(o->backend.device));
        if (be) {
            cJSON_AddStringToObject(summary, "precision",
                                    lmc_precision_name(lmc_backend_precision(be)));
            cJSON_AddNumberToObject(summary, "device_peak_bytes",
                                    (double)lmc_backend_peak_bytes(be));
        }
        cJSON_AddItemToObject(summary, "layers", report);
    } else {
        cJSON_Delete(report);
    }
    lmc_block_w_release(&hs.bw);
    lmc_scratch_free(hs.scratch);
    if (p->release)
        p->release(p);
    lmc_acts_free(acts);
    lmc_backend_close(be);
    lmc_block_stats_free(&stats);
    return rc;
}
