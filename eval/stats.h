/* Per-site calibration statistics of a block's linear inputs. Linears
 * reading the same input (q, k, v; gate, up) share one accumulator. This is
 * the CPU reference (the forward's observer, lmc_block_stats_observe); the
 * CUDA backend accumulates the same sums on the device and copies them into
 * the same structure. */
#ifndef LMC_STATS_H
#define LMC_STATS_H

#include <stdint.h>

#include "../core/error.h"
#include "../core/model.h"

enum {
    LMC_STAT_HESSIAN = 1u << 0, /* Σ x xᵀ */
    LMC_STAT_ABS_MEAN = 1u << 1, /* Σ |x| */
    LMC_STAT_ABS_MAX = 1u << 2,  /* max |x| */
    LMC_STAT_SQ_SUM = 1u << 3,   /* Σ x² */
};

typedef struct lmc_site_stats {
    int64_t dim;
    int64_t ntok;     /* rows accumulated */
    double *xtx;      /* [dim][dim] Σ x xᵀ (full, symmetric after finish) */
    double *abs_sum;  /* [dim] */
    double *abs_max;  /* [dim] */
    double *sq_sum;   /* [dim] */
} lmc_site_stats;

typedef struct lmc_block_stats {
    unsigned flags;       /* what to accumulate */
    unsigned device_only; /* of those, kept where the backend computes them (no host
                             arrays): a device solver reads them there */
    lmc_site_stats site[LMC_SITE_COUNT];
    int capture_windows; /* a device backend keeps every site's inputs of the first
                            windows where it runs (AWQ's search on the GPU) */
    double seconds; /* time spent accumulating, summed over blocks (not reset) */
    float *tmp;     /* private: one window's x x^T, the widest site, between reset and finish */
    size_t tmp_elems;
} lmc_block_stats;

/* Host arrays for flags & ~device_only. */
int lmc_block_stats_init(lmc_block_stats *s, const lmc_config *cfg, unsigned flags,
                         unsigned device_only, lmc_error *err);
/* Dimension of site s's input. */
int64_t lmc_site_dim(const lmc_config *cfg, lmc_site s);
/* Zero the accumulators for a new block (and take the per-window buffer
 * the Hessian needs until lmc_block_stats_finish). */
int lmc_block_stats_reset(lmc_block_stats *s, lmc_error *err);
void lmc_block_stats_free(lmc_block_stats *s);
/* Allocate again the host Hessians taken since the last block (reset does
 * this; a backend that fills them without reset calls it). */
int lmc_block_stats_alloc(lmc_block_stats *s, lmc_error *err);
/* Take ownership of site's host Hessian (NULL if none): a solver that
 * factors it in place, so that the largest matrix of a pass (1.6 GB in
 * double at 8B) exists once. The site has no Hessian until the next block. */
double *lmc_block_stats_take_hessian(lmc_block_stats *s, lmc_site site);
/* Observer callback (eval/forward.h lmc_observer_fn); ctx is lmc_block_stats*. */
void lmc_block_stats_observe(void *ctx, int layer, lmc_site site, const float *x, int64_t ntok,
                             int64_t dim);
/* Mirror the upper triangle after accumulation; the per-window buffer goes
 * back (it is not needed while a pass solves). */
void lmc_block_stats_finish(lmc_block_stats *s);

#endif
