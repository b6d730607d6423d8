/* The GPTQ / SparseGPT error-feedback solver on the GPU: the twin of
 * compress/solver.h (same options, same result, same order of decisions),
 * reading the Hessian where the CUDA backend accumulated it. Differences
 * from the CPU twin, all rounding: the lazy batch updates are cuBLAS fp32
 * GEMMs (another summation order than OpenBLAS), the Cholesky factor and
 * its inverse come from cuSOLVER (double, as on the CPU). CUDA builds only.
 *
 * The per-column loop runs one warp per weight row with the block's
 * U[i1:i2, i1:i2] in shared memory; blocks of at most 128 columns. */
#ifndef LMC_SOLVER_CUDA_H
#define LMC_SOLVER_CUDA_H

#include "../../eval/backend.h"
#include "../solver.h"

typedef struct lmc_cuda_hinv lmc_cuda_hinv;

/* lmc_hinv_prepare from H = 2/N Sum x x^T of site s of the last observed
 * block forward of backend b (a CUDA calibration backend). */
int lmc_cuda_hinv_prepare(lmc_backend *b, lmc_site s, int64_t cols, const lmc_solver_opts *o,
                          lmc_cuda_hinv **out, lmc_error *err);
void lmc_cuda_hinv_free(lmc_cuda_hinv *h);
/* The hinv's damping as used, raises and dead columns (for reports). */
void lmc_cuda_hinv_info(const lmc_cuda_hinv *h, double *percdamp_used, int *damp_raised,
                        int *n_dead);

/* lmc_solver_run on the GPU. The weight is either W (host fp32
 * [rows][cols], overwritten with the final weights) or, when W is NULL, the
 * tensor t (a dense f32/f16/bf16 view, uploaded as stored: no host decode);
 * W_out (may be NULL) then receives the final weights. res as the CPU
 * solver fills it. */
int lmc_cuda_solver_run(lmc_cuda_hinv *h, float *W, const lmc_tensor *t, int64_t rows,
                        const lmc_solver_opts *o, float *W_out, lmc_solver_result *res,
                        lmc_error *err);

#endif
