/* The CUDA evaluator's matrix products: Y[M][N] (=|+=) X[M][K] . W[N][K]^T,
 * row-major, fp32 accumulation, cublasGemmEx on one stream with a workspace
 * of its own (graph-capture safe). C++ (CUDA side) only.
 *
 * Timing cuBLASLt's top heuristic algorithms per shape at load was tried
 * and dropped: on the TinyLlama-shaped benchmark (H200) the picks were no
 * faster than cuBLAS's own first choice, run to run (+-1%). */
#ifndef LMC_GEMM_CUDA_H
#define LMC_GEMM_CUDA_H

#include <cuda_runtime.h>
#include <library_types.h>
#include <stdint.h>

extern "C" { /* error.h is C */
#include "../../core/error.h"
}

struct lmc_gemm;

/* pedantic: fp32 precision (CUBLAS_COMPUTE_32F_PEDANTIC: no TF32). */
int lmc_gemm_new(lmc_gemm **out, cudaStream_t st, int pedantic, lmc_error *err);
void lmc_gemm_free(lmc_gemm *g);
/* Enqueues the product on the engine's stream. */
int lmc_gemm_run(lmc_gemm *g, const void *X, const void *W, void *Y, int M, int N, int K,
                 cudaDataType tin, cudaDataType tout, float beta, lmc_error *err);
/* The same with row strides (elements) for X, W and Y: products on column
 * blocks of a matrix (low-rank factor pairs). */
int lmc_gemm_run_ld(lmc_gemm *g, const void *X, int ldx, const void *W, int ldw, void *Y,
                    int ldy, int M, int N, int K, cudaDataType tin, cudaDataType tout,
                    float beta, lmc_error *err);

/* C[M][N] = X[M][K] . W[N][K]^T in int32 for int8 X and W (row strides
 * ldx, ldw multiples of 4; exact integer arithmetic, so no pedantic mode). */
int lmc_gemm_run_i8(lmc_gemm *g, const int8_t *X, int ldx, const int8_t *W, int ldw, int32_t *C,
                    int ldc, int M, int N, int K, lmc_error *err);

/* H[d][d] += X^T X for X[n][d] row-major (statistics: fp32 accumulation,
 * tensor cores for 16-bit X, pedantic fp32 otherwise). */
int lmc_gemm_xtx(lmc_gemm *g, const void *X, int n, int d, cudaDataType tin, float *H,
                 lmc_error *err);
/* The engine's cuBLAS handle (its stream and workspace set), for solvers. */
#include <cublas_v2.h>
cublasHandle_t lmc_gemm_handle(lmc_gemm *g);

#endif
