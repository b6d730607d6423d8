/* Magnitude pruning: |W| scores, no calibration. Unstructured prunes one
 * threshold per matrix (exactly int(rows*cols*p) weights); N:M per row. */
#include "prune.h"

static int magnitude_mask(const lmc_pass_ctx *ctx, const lmc_linear_desc *d, const char *tensor,
                          const float *w, int64_t rows, int64_t cols, const lmc_prune_opts *o,
                          uint8_t *keep, lmc_error *err)
{
    (void)ctx, (void)d;
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
    *p = (lmc_pass){.name = "magnitude", .stats = 0, .opts = o,
                    .compress_block = magnitude_block, .begin = lmc_prune_begin};
    return 0;
}
