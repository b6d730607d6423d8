/* The solves of one block, on the CPU or where the Hessian is (see
 * site_hinv.h). */
#include "site_hinv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#ifdef LMC_HAVE_CUDA
#include "cuda/solver_cuda.h"
#endif

void lmc_solver_warn_pass(void *c, const char *msg)
{
    lmc_solver_warn_ctx *wc = c;
    lmc_warn("blk.%d.%s: %s", wc->ctx->layer, wc->role, msg);
    wc->ctx->warnings++;
}

int lmc_site_solve_on_device(const lmc_pass_ctx *ctx)
{
    return ctx->backend && lmc_backend_device(ctx->backend) != LMC_DEVICE_CPU && ctx->stats &&
           (ctx->stats->device_only & LMC_STAT_HESSIAN);
}

static int prepare(lmc_block_hinv *b, const lmc_pass_ctx *ctx, const char *role, lmc_site s,
                   int64_t cols, const lmc_solver_opts *o, lmc_error *err)
{
    if (b->have[s])
        return 0;
    if (!ctx->stats)
        return lmc_fail(err, "no calibration statistics for %s", lmc_site_name(s));
    if (ctx->stats->site[s].dim != cols)
        return lmc_fail(err, "blk.%d.%s.weight: %lld input columns, statistics have %lld",
                        ctx->layer, role, (long long)cols, (long long)ctx->stats->site[s].dim);
    if (lmc_site_solve_on_device(ctx)) {
#ifdef LMC_HAVE_CUDA
        if (lmc_cuda_hinv_prepare(ctx->backend, s, cols, o, &b->dev[s], err))
            return -1;
        b->have[s] = 1;
        return 0;
#else
        return lmc_fail(err, "statistics on a device this build cannot solve on");
#endif
    }
    const lmc_site_stats *st = &ctx->stats->site[s];
    if (!st->xtx || st->ntok == 0)
        return lmc_fail(err, "no calibration statistics for %s", lmc_site_name(s));
    /* H = 2/N Sum x x^T, factored in the statistics' own memory: nothing
     * else of the block reads it, and the largest matrix exists once */
    double f = 2.0 / (double)st->ntok;
    if (lmc_hinv_prepare_consume(lmc_block_stats_take_hessian(ctx->stats, s), f, cols, o,
                                 &b->hv[s], err))
        return -1;
    b->have[s] = 1;
    return 0;
}

int lmc_site_solve(lmc_block_hinv *b, const lmc_pass_ctx *ctx, const char *role, lmc_site s,
                   int64_t cols, float *W, const lmc_tensor *t, int64_t rows,
                   const lmc_solver_opts *o, float *W_out, lmc_solver_result *res,
                   lmc_error *err)
{
    memset(res, 0, sizeof *res);
    if (prepare(b, ctx, role, s, cols, o, err))
        return -1;
#ifdef LMC_HAVE_CUDA
    if (b->dev[s])
        return lmc_cuda_solver_run(b->dev[s], W, t, rows, o, W_out, res, err);
#endif
    float *own = NULL;
    if (!W) { /* a CPU solve of a tensor as stored: decode it */
        if (lmc_tensor_to_f32(t, &own, err))
            return -1;
        W = own;
    }
    int rc = lmc_solver_run(&b->hv[s], W, rows, o, res, err);
    if (rc == 0 && own && W_out)
        memcpy(W_out, own, (size_t)rows * (size_t)cols * sizeof *W_out);
    free(own);
    return rc;
}

void lmc_block_hinv_free(lmc_block_hinv *b)
{
    for (int s = 0; s < LMC_SITE_COUNT; s++) {
        if (!b->have[s])
            continue;
#ifdef LMC_HAVE_CUDA
        if (b->dev[s]) {
            lmc_cuda_hinv_free(b->dev[s]);
            continue;
        }
#endif
        lmc_hinv_free(&b->hv[s]);
    }
    memset(b, 0, sizeof *b);
}
