/* The CUDA evaluator's matrix products (see gemm.cuh). Layout: with
 * row-major X[M][K], W[N][K], Y[M][N], cuBLAS's column-major view is
 * Y^T[N][M] = W^T . X^T: op(A) = A^T with A = W (K x N, ld K), B = X
 * (K x M, ld K), C = Y (N x M, ld N). */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "check.h"
#include "gemm.cuh"

struct lmc_gemm {
    cublasHandle_t h;
    cudaStream_t st;
    void *ws;
    size_t ws_bytes;
    int pedantic;
};

int lmc_gemm_new(lmc_gemm **out, cudaStream_t st, int pedantic, lmc_error *err)
{
    lmc_gemm *g = new lmc_gemm();
    *out = g;
    g->st = st;
    g->pedantic = pedantic;
    /* 32 MiB, what cuBLAS asks for on Hopper; ours, so that a graph capture
     * never makes cuBLAS allocate */
    g->ws_bytes = (size_t)32 << 20;
    CUDA_OK(cudaMalloc(&g->ws, g->ws_bytes), "cuBLAS workspace");
    BLAS_OK(cublasCreate(&g->h), "cublasCreate");
    BLAS_OK(cublasSetStream(g->h, st), "cublasSetStream");
    BLAS_OK(cublasSetWorkspace(g->h, g->ws, g->ws_bytes), "cublasSetWorkspace");
    /* fp32: no TF32 or other reduced-precision shortcuts */
    BLAS_OK(cublasSetMathMode(g->h, pedantic ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH),
            "cublasSetMathMode");
    return 0;
}

void lmc_gemm_free(lmc_gemm *g)
{
    if (!g)
        return;
    if (g->h)
        cublasDestroy(g->h);
    if (g->ws)
        cudaFree(g->ws);
    delete g;
}

int lmc_gemm_run_ld(lmc_gemm *g, const void *X, int ldx, const void *W, int ldw, void *Y,
                    int ldy, int M, int N, int K, cudaDataType tin, cudaDataType tout,
                    float beta, lmc_error *err)
{
    float alpha = 1.0f;
    cublasComputeType_t ct = g->pedantic ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
    BLAS_OK(cublasGemmEx(g->h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, tin, ldw, X, tin,
                         ldx, &beta, Y, tout, ldy, ct, CUBLAS_GEMM_DEFAULT),
            "GemmEx");
    return 0;
}

int lmc_gemm_run(lmc_gemm *g, const void *X, const void *W, void *Y, int M, int N, int K,
                 cudaDataType tin, cudaDataType tout, float beta, lmc_error *err)
{
    return lmc_gemm_run_ld(g, X, K, W, K, Y, N, M, N, K, tin, tout, beta, err);
}

int lmc_gemm_run_i8(lmc_gemm *g, const int8_t *X, int ldx, const int8_t *W, int ldw, int32_t *C,
                    int ldc, int M, int N, int K, lmc_error *err)
{
    int32_t alpha = 1, beta = 0;
    /* integer products are exact: the fp32 engine's pedantic mode must not
     * keep them off the tensor cores */
    if (g->pedantic)
        BLAS_OK(cublasSetMathMode(g->h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    cublasStatus_t s = cublasGemmEx(g->h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_8I,
                                    ldw, X, CUDA_R_8I, ldx, &beta, C, CUDA_R_32I, ldc,
                                    CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT);
    if (g->pedantic)
        BLAS_OK(cublasSetMathMode(g->h, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    BLAS_OK(s, "GemmEx (int8)");
    return 0;
}

int lmc_gemm_xtx(lmc_gemm *g, const void *X, int n, int d, cudaDataType tin, float *H,
                 lmc_error *err)
{
    /* column-major, X^T is [d][n] with ld d: H = X^T (X^T)^T, symmetric, so
     * its column-major and row-major layouts agree */
    float alpha = 1.0f, beta = 1.0f;
    cublasComputeType_t ct = g->pedantic ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
    BLAS_OK(cublasGemmEx(g->h, CUBLAS_OP_N, CUBLAS_OP_T, d, d, n, &alpha, X, tin, d, X, tin, d,
                         &beta, H, CUDA_R_32F, d, ct, CUBLAS_GEMM_DEFAULT),
            "GemmEx (x x^T)");
    return 0;
}

cublasHandle_t lmc_gemm_handle(lmc_gemm *g) { return g->h; }

