/* Magnitude pruning: |W| scores, no calibration. Unstructured prunes one
 * threshold per matrix (exactly int(rows*cols*p) weights); N:M per row.
 * GPT-2 stores q, k and v as one matrix (c_attn) and the reference prunes it
 * with one threshold, so for GPT-2 the three share one ranking. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune_passes.h"

/* Unstructured mask of q, k or v of a GPT-2 block, ranked jointly over the
 * original q, k, v weights (in c_attn's order: q, k, v). */
static int fused_qkv_mask(const lmc_pass_ctx *ctx, const char *role, int64_t rows, int64_t cols,
                          double p, uint8_t *keep, lmc_error *err)
{
    const lmc_linear *part[3] = {&ctx->bw->q, &ctx->bw->k, &ctx->bw->v};
    int64_t total = 0, off = 0;
    for (int i = 0; i < 3; i++) {
        if (!part[i]->w || part[i]->in != cols)
            return lmc_fail(err, "blk.%d.%s: fused q/k/v ranking needs dense weights",
                            ctx->layer, role);
        static const char *names[3] = {"q", "k", "v"};
        if (!strcmp(role, names[i]))
            off = total;
        total += part[i]->out * cols;
    }
    float *score = malloc((size_t)total * sizeof *score);
    uint8_t *k = malloc((size_t)total);
    if (!score || !k) {
        free(score);
        free(k);
        return lmc_fail(err, "out of memory");
    }
    int64_t at = 0;
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)(part[i]->out * cols);
        for (size_t j = 0; j < n; j++)
            score[at + j] = fabsf(part[i]->w[j]);
        at += (int64_t)n;
    }
    lmc_prune_lowest(score, total, (int64_t)((double)total * p), k);
    memcpy(keep, k + off, (size_t)(rows * cols));
    free(score);
    free(k);
    return 0;
}

static int magnitude_mask(const lmc_pass_ctx *ctx, const lmc_linear_desc *d, const char *tensor,
                          const float *w, int64_t rows, int64_t cols, const lmc_prune_opts *o,
                          uint8_t *keep, lmc_error *err)
{
    if (ctx->model->cfg.fused_qkv && o->n == 0 && d->site == LMC_SITE_ATTN_IN &&
        ctx->bw) {
        if (fused_qkv_mask(ctx, d->role, rows, cols, o->sparsity, keep, err))
            return lmc_fail_prefix(err, tensor);
        return 0;
    }
    if (lmc_magnitude_mask(w, rows, cols, o, keep, err))
        return lmc_fail_prefix(err, tensor);
    return 0;
}

static int magnitude_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    return lmc_prune_compress_block(p, ctx, magnitude_mask, err);
}

int lmc_magnitude_pass(lmc_pass *p, const lmc_prune_opts *o, lmc_error *err)
{
    if (lmc_prune_opts_check(o, err))
        return -1;
    *p = (lmc_pass){.name = "magnitude", .stats = 0, .needs = LMC_PASS_BLOCK_W, .streams = 1, .opts = o,
                    .compress_block = magnitude_block, .begin = lmc_prune_begin};
    return 0;
}
