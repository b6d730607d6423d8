/* Low-rank factorization of the block linears: W [out, in] ~= A [out, r] .
 * B [r, in], stored as LMC_ENC_LOWRANK (core/lowrank.h).
 *
 * Methods (all in double precision, LAPACKE dgesdd):
 *   plain   SVD of W: A = U_r sqrt(S_r), B = sqrt(S_r) V_r^T. Minimizes
 *           ||W - AB||_F. No calibration.
 *   asvd    ASVD (Yuan et al. 2023): input channels scaled by
 *           s_j = (mean |x_j|)^alpha (alpha 0.5; tiny means clamped to 1e-6
 *           of the largest), SVD of W diag(s), B <- B diag(s)^-1.
 *   whiten  SVD-LLM (Wang et al. 2024): H = sum x x^T = L L^T (Cholesky;
 *           damped by eps * mean(diag H) while not positive definite), SVD
 *           of W L, B <- B L^-1 (triangular solve). Truncating the SVD of
 *           W L minimizes the output error ||(W - AB) X^T||_F over the
 *           calibration inputs X.
 * For asvd and whiten the rank-one terms are rebalanced so that column k of
 * A and row k of B have equal norms (the product is unchanged; it keeps the
 * fp16 factors far from their range limits).
 *
 * Rank: --rank R, or --keep F: r = floor(F * out * in / (out + in)) (at
 * least 1), so that the factors hold at most F of the parameters. A linear
 * where r * (out + in) >= out * in (the factors would not be smaller) is
 * left as it is, and the report says so.
 *
 * With --device cuda the factorization and the output error run on the GPU
 * (compress/cuda/svd_cuda.h, cuSOLVER in double), whitening on the Hessian
 * where the calibration backend accumulated it. */
#ifndef LMC_SVD_H
#define LMC_SVD_H

#include <stdint.h>

#include "../calib/pass.h"
#include "../core/error.h"

typedef enum { LMC_SVD_PLAIN = 0, LMC_SVD_ASVD = 1, LMC_SVD_WHITEN = 2 } lmc_svd_method;

typedef struct lmc_svd_opts {
    double keep;           /* kept parameter fraction, 0 < keep < 1; 0 when rank is used */
    int rank;              /* fixed rank >= 1; 0 when keep is used */
    lmc_svd_method method; /* default plain */
    double alpha;          /* asvd exponent, default 0.5 */
    int dtype;             /* factor encoding: LMC_ENC_F16 (default) or LMC_ENC_F32 */
} lmc_svd_opts;

void lmc_svd_opts_default(lmc_svd_opts *o);
/* Exactly one of keep / rank; 0 < keep < 1; alpha in [0, 4]; f16 or f32. */
int lmc_svd_opts_check(const lmc_svd_opts *o, lmc_error *err);
int lmc_svd_parse_method(const char *s, lmc_svd_method *m, lmc_error *err);
const char *lmc_svd_method_name(lmc_svd_method m);

/* The rank for a [rows, cols] linear under o, or 0 when it stays dense. */
int lmc_svd_rank(const lmc_svd_opts *o, int64_t rows, int64_t cols);

typedef struct lmc_svd_info {
    double energy;  /* fraction of the (scaled/whitened) spectrum's energy kept */
    double damp;    /* whiten: damping added, as a fraction of mean diag(H) */
    const char *routine; /* the SVD that computed it: dgesdd, or dgesvd where it failed */
} lmc_svd_info;

/* The fraction of the spectrum's energy sum sv_i^2 (k singular values) that
 * the first rank keep; 1 for a zero spectrum (the CPU and GPU factors). */
double lmc_svd_energy(const double *sv, int64_t k, int rank);

/* Factor w [rows][cols] into A [rows][rank], B [rank][cols] (fp32, caller's
 * buffers). asvd needs s[cols] > 0 (input channel scales); whiten needs
 * xtx[cols][cols] = sum x x^T (symmetric). Fails on a LAPACK failure or a
 * statistic that is not usable (naming the problem). */
int lmc_svd_factor(const float *w, int64_t rows, int64_t cols, int rank, lmc_svd_method m,
                   const double *s, const double *xtx, float *A, float *B, lmc_svd_info *info,
                   lmc_error *err);

/* ASVD channel scales from the calibration sum of |x|: s_j = m_j^alpha with
 * m_j = abs_sum_j / ntok clamped below to 1e-6 * max m (all 1 when every
 * mean is 0). */
void lmc_asvd_scales(const double *abs_sum, int64_t ntok, int64_t cols, double alpha,
                     double *s);

/* The pass: run holds the options (checked here) and receives totals. */
typedef struct lmc_svd_run {
    lmc_svd_opts o;
    int64_t params_before, params_after; /* over the block linears */
    int n_factored, n_dense;
    void *dev;                /* the GPU's context, from the first block to release() */
} lmc_svd_run;

int lmc_svd_pass(lmc_pass *p, lmc_svd_run *run, lmc_error *err);

#endif
