/* The error-feedback solver shared by GPTQ and SparseGPT (IST-DASLab
 * gptq.py fasterquant, sparsegpt.py fasterprune): columns are decided one
 * at a time in blocks; each column's error is pushed onto the columns not
 * yet decided through the upper Cholesky factor of H^-1, within the block at
 * once and to the rest of the matrix after the block (one sgemm).
 *
 * Per column the "decide" step is: pruned (mask) -> 0, else the value; then,
 * when quantizing, the min/max quantizer of the column's group. GPTQ =
 * quantize only; SparseGPT = prune (unstructured per block, or N:M) with
 * optional joint quantization; prune-then-quantize = mask_in + quantize.
 *
 * Two stages so that linears sharing an input (q/k/v, gate/up) share the
 * expensive part: lmc_hinv_prepare (dead columns, act-order permutation,
 * damping, the upper Cholesky factor of H^-1: depends on H only) and
 * lmc_solver_run (per weight). lmc_solve does both.
 *
 * Differences from the reference, all deliberate:
 *  - H, the damping and the factorization are in double (reference: fp32);
 *    the factor is computed as the inverse of the Cholesky factor of H in
 *    reversed order (one potrf + one trtri: the same matrix as the
 *    reference's chol -> cholesky_inverse -> chol, at half the cost); the
 *    column updates are fp32 like the reference.
 *  - act-order sorts diag(H) descending with a STABLE sort (torch.argsort is
 *    not guaranteed stable, so ties are ordered arbitrarily there).
 *  - the quantizer rounds scales to fp16 before use (see quantizer.h).
 *  - if the Cholesky fails, the damping is multiplied by 10 and retried
 *    (reported through warn and the result), instead of raising.
 *  - unstructured SparseGPT prunes exactly floor(rows*count*sparsity) weights
 *    per block (lowest scores, ties by position); the reference's
 *    `tmp <= sort(tmp)[k]` prunes k+1 (more on ties).
 * Kept as in the reference: a group's parameters are fitted when the group
 * starts, on the weights as they stood at the start of the current block
 * (intra-block updates of the group's columns not yet applied; no effect
 * when the group size is a multiple of the block size); group -1 fits
 * per-row parameters once on the input W before dead columns are zeroed;
 * static groups are fitted on W (dead columns zeroed) in the original order. */
#ifndef LMC_SOLVER_H
#define LMC_SOLVER_H

#include <stdint.h>

#include "../core/error.h"
#include "quantizer.h"

typedef void (*lmc_warn_fn)(void *ctx, const char *msg);

typedef struct lmc_solver_opts {
    double percdamp;    /* damping, fraction of mean(diag H); default 0.01 */
    int damp_retries;   /* x10 damping increases allowed when Cholesky fails; default 5 */
    int blocksize;      /* default 128 */
    /* quantization; bits 0 = none (pruning only) */
    int bits;           /* 2..8 */
    int group;          /* > 0, or -1 = one group per row */
    int sym;
    int act_order;      /* process columns by descending diag(H) */
    int static_groups;  /* fit every group up front on the original W (ignored for
                           group -1); with act_order no g_idx is then needed */
    /* pruning (SparseGPT); at most one of sparsity, N:M, mask_in */
    double sparsity;    /* unstructured: fraction pruned in every block, [0, 1) */
    int prune_n, prune_m; /* N:M: n of every m consecutive columns per row (0 = off);
                             needs cols % m == 0, blocksize % m == 0, no act_order */
    const uint8_t *mask_in; /* [rows][cols], nonzero = pruned: stays exactly 0 (prune,
                               then quantize); group parameters are fitted with these
                               positions read as 0 */
    /* Warnings (damping raised); may be NULL: the result says so as well. */
    lmc_warn_fn warn;
    void *warn_ctx;
} lmc_solver_opts;

void lmc_solver_opts_default(lmc_solver_opts *o);

/* H-dependent part. */
typedef struct lmc_hinv {
    int64_t cols;
    int act_order;
    double percdamp;      /* requested */
    double percdamp_used; /* after any increase */
    int damp_raised;      /* number of x10 increases */
    int n_dead;           /* columns with H_ii == 0 */
    uint8_t *dead;        /* [cols] original order */
    int32_t *perm;        /* [cols] position -> original column (identity without act-order) */
    float *U;             /* [cols][cols] row-major upper Cholesky factor of (damped H)^-1,
                             in permuted order; strictly lower part zero */
} lmc_hinv;

/* H [cols][cols] symmetric positive semi-definite (e.g. 2/N sum x x^T), in
 * double, not modified. Uses o->percdamp, o->damp_retries, o->act_order,
 * o->warn. Fails (with a message) on a non-finite H or when even the largest
 * damping cannot make it positive definite. */
int lmc_hinv_prepare(const double *H, int64_t cols, const lmc_solver_opts *o, lmc_hinv *hv,
                     lmc_error *err);
/* The same for H = f S (S e.g. the accumulated Sum x x^T, f = 2/N). */
int lmc_hinv_prepare_scaled(const double *S, double f, int64_t cols, const lmc_solver_opts *o,
                            lmc_hinv *hv, lmc_error *err);
/* The same, taking ownership of S (freed, also on failure): the factor is
 * formed in S's memory, so the largest Hessian needs no second copy. */
int lmc_hinv_prepare_consume(double *S, double f, int64_t cols, const lmc_solver_opts *o,
                             lmc_hinv *hv, lmc_error *err);
void lmc_hinv_free(lmc_hinv *hv);

typedef struct lmc_solver_result {
    int quantized;      /* q is filled (bits > 0) */
    lmc_qresult q;      /* codes/scales/zeros/g_idx in the original column order */
    uint8_t *mask;      /* [rows][cols] 1 = pruned (NULL without pruning) */
    int64_t n_pruned;
    double loss;        /* sum over weights of (w - q)^2 / (2 U_ii^2): the reference's Losses */
    double percdamp_used;
    int damp_raised;
    int n_dead;
} lmc_solver_result;

/* W [rows][cols] fp32 row-major, overwritten with the final (dequantized
 * and/or pruned) weights. hv from lmc_hinv_prepare with the same act_order.
 * res is filled (free with lmc_solver_result_free). */
int lmc_solver_run(const lmc_hinv *hv, float *W, int64_t rows, const lmc_solver_opts *o,
                   lmc_solver_result *res, lmc_error *err);
/* prepare + run. */
int lmc_solve(float *W, int64_t rows, int64_t cols, const double *H, const lmc_solver_opts *o,
              lmc_solver_result *res, lmc_error *err);
void lmc_solver_result_free(lmc_solver_result *res);

#endif
