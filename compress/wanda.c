/* Wanda (Sun et al. 2023, locuslab/wanda): score |W_ij| * ||X_j||_2 from the
 * calibration inputs of the linear, prune per output row (or N:M per row),
 * no weight update. The norm is sqrt(sum x_j^2 / ntok): the 1/ntok factor
 * does not change any per-row order, it only keeps the numbers readable. */
#include "prune_passes.h"

static int wanda_mask(const lmc_pass_ctx *ctx, const lmc_linear_desc *d, const char *tensor,
                      const float *w, int64_t rows, int64_t cols, const lmc_prune_opts *o,
                      uint8_t *keep, lmc_error *err)
{
    const lmc_site_stats *st = ctx->stats ? &ctx->stats->site[d->site] : NULL;
    if (!st || !st->sq_sum)
        return lmc_fail(err, "%s: no sum of squares statistics for site %s", tensor,
                        lmc_site_name(d->site));
    if (st->dim != cols)
        return lmc_fail(err, "%s: input width %lld but site %s statistics have %lld channels",
                        tensor, (long long)cols, lmc_site_name(d->site), (long long)st->dim);
    if (lmc_wanda_mask(w, rows, cols, st->sq_sum, st->ntok, o, keep, err))
        return lmc_fail_prefix(err, tensor);
    return 0;
}

static int wanda_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    return lmc_prune_compress_block(p, ctx, wanda_mask, err);
}

int lmc_wanda_pass(lmc_pass *p, const lmc_prune_opts *o, lmc_error *err)
{
    if (lmc_prune_opts_check(o, err))
        return -1;
    *p = (lmc_pass){.name = "wanda", .stats = LMC_STAT_SQ_SUM, .streams = 1, .opts = o,
                    .compress_block = wanda_block, .begin = lmc_prune_begin};
    return 0;
}
