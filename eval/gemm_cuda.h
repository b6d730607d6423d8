/* The CUDA evaluator's matrix products: Y[M][N] (=|+=) X[M][K] . W[N][K]^T,
 * row-major, fp32 accumulation, on one stream. C++ (CUDA side) only.
 *
 * Each shape is planned once: below ~10 GFLOP per product, or in fp32
 * precision (pedantic: no TF32, the exact-agreement path), cublasGemmEx with
 * cuBLAS's own heuristic; above it the candidates are cublasGemmEx and
 * cuBLASLt's top heuristic algorithms, each timed on scratch buffers, and
 * the fastest is kept. LMC_CUDA_GEMM_TUNE=0 turns the timing off. */
#ifndef LMC_GEMM_CUDA_H
#define LMC_GEMM_CUDA_H

#include <cuda_runtime.h>
#include <library_types.h>

extern "C" { /* error.h is C */
#include "../core/error.h"
}

struct lmc_gemm;

/* pedantic: fp32 precision (CUBLAS_COMPUTE_32F_PEDANTIC, no tuning). */
int lmc_gemm_new(lmc_gemm **out, cudaStream_t st, int pedantic, lmc_error *err);
void lmc_gemm_free(lmc_gemm *g);
/* Enqueues the product on the engine's stream. The first call of a shape
 * may time candidates (synchronizing the stream and writing a scratch
 * buffer, never Y): make it outside any graph capture. */
int lmc_gemm_run(lmc_gemm *g, const void *X, const void *W, void *Y, int M, int N, int K,
                 cudaDataType tin, cudaDataType tout, float beta, lmc_error *err);
/* A short description of the plan for a shape ("GemmEx", "Lt #3"), or NULL
 * when the shape has not been run. */
const char *lmc_gemm_plan_name(const lmc_gemm *g, int M, int N, int K, cudaDataType tin,
                               cudaDataType tout, float beta);

#endif
