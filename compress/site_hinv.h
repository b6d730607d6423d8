/* The error-feedback solves of one block: the upper Cholesky factor of H^-1
 * of each input site, prepared on first use and shared by the linears
 * reading that input (q/k/v, gate/up), and each weight's solve. Where the
 * calibration backend kept the Hessian on its GPU (lmc_pass.device_stats),
 * both run there (compress/cuda/solver_cuda.h); otherwise on the CPU
 * (compress/solver.h). Also: the solver's warnings routed to the log. */
#ifndef LMC_SITE_HINV_H
#define LMC_SITE_HINV_H

#include "../calib/pass.h"
#include "solver.h"

struct lmc_cuda_hinv;

/* Zero-initialize, then free with lmc_block_hinv_free. */
typedef struct lmc_block_hinv {
    lmc_hinv hv[LMC_SITE_COUNT];
    struct lmc_cuda_hinv *dev[LMC_SITE_COUNT];
    int have[LMC_SITE_COUNT];
} lmc_block_hinv;

/* Whether ctx's solves run on a device (then a pass may hand the solver a
 * tensor as stored instead of decoding it on the host). */
int lmc_site_solve_on_device(const lmc_pass_ctx *ctx);

/* Solve one weight blk.<ctx->layer>.<role> (cols inputs) reading site s,
 * preparing the site's factor with o's damping and act-order on first use.
 * The weight is W (host fp32 [rows][cols], overwritten with the final
 * weights) or, with W NULL, tensor t (decoded on the host for a CPU solve);
 * W_out (may be NULL) receives the final weights when W is NULL. */
int lmc_site_solve(lmc_block_hinv *b, const lmc_pass_ctx *ctx, const char *role, lmc_site s,
                   int64_t cols, float *W, const lmc_tensor *t, int64_t rows,
                   const lmc_solver_opts *o, float *W_out, lmc_solver_result *res,
                   lmc_error *err);
void lmc_block_hinv_free(lmc_block_hinv *b);

/* lmc_solver_opts.warn for a pass: "blk.L.ROLE: msg" as a warning. */
typedef struct lmc_solver_warn_ctx {
    lmc_pass_ctx *ctx;
    const char *role;
} lmc_solver_warn_ctx;
void lmc_solver_warn_pass(void *wc, const char *msg);

#endif
