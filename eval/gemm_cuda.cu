/* The CUDA evaluator's matrix products (see gemm_cuda.h). Layout: with
 * row-major X[M][K], W[N][K], Y[M][N], cuBLAS's column-major view is
 * Y^T[N][M] = W^T . X^T, i.e. op(A) = A^T with A = W (K x N, ld K),
 * B = X (K x M, ld K), C = Y (N x M, ld N). */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "cuda_check.h"
#include "gemm_cuda.h"

/* products below this many FLOPs take cuBLAS's first choice untimed */
#define TUNE_MIN_FLOP 1e10
#define TUNE_CANDIDATES 8

struct gemm_plan {
    int M, N, K;
    cudaDataType tin, tout;
    float beta;
    int lt; /* 0: cublasGemmEx; else cuBLASLt with algo */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    char name[16];
};

struct lmc_gemm {
    cublasHandle_t h;
    cublasLtHandle_t lt;
    cudaStream_t st;
    void *ws;
    size_t ws_bytes;
    int pedantic, tune;
    std::vector<gemm_plan> plans;
};

static size_t type_bytes(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

int lmc_gemm_new(lmc_gemm **out, cudaStream_t st, int pedantic, lmc_error *err)
{
    lmc_gemm *g = new lmc_gemm();
    *out = g;
    g->st = st;
    g->pedantic = pedantic;
    const char *e = getenv("LMC_CUDA_GEMM_TUNE");
    g->tune = !pedantic && !(e && !strcmp(e, "0"));
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
    BLAS_OK(cublasLtCreate(&g->lt), "cublasLtCreate");
    return 0;
}

static void plan_release(gemm_plan &p)
{
    if (p.op)
        cublasLtMatmulDescDestroy(p.op);
    if (p.a)
        cublasLtMatrixLayoutDestroy(p.a);
    if (p.b)
        cublasLtMatrixLayoutDestroy(p.b);
    if (p.c)
        cublasLtMatrixLayoutDestroy(p.c);
    p.op = NULL, p.a = p.b = p.c = NULL;
}

void lmc_gemm_free(lmc_gemm *g)
{
    if (!g)
        return;
    for (gemm_plan &p : g->plans)
        plan_release(p);
    if (g->lt)
        cublasLtDestroy(g->lt);
    if (g->h)
        cublasDestroy(g->h);
    if (g->ws)
        cudaFree(g->ws);
    delete g;
}

static int run_gemmex(lmc_gemm *g, const gemm_plan &p, const void *X, const void *W, void *Y,
                      lmc_error *err)
{
    float alpha = 1.0f, beta = p.beta;
    cublasComputeType_t ct = g->pedantic ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
    BLAS_OK(cublasGemmEx(g->h, CUBLAS_OP_T, CUBLAS_OP_N, p.N, p.M, p.K, &alpha, W, p.tin, p.K,
                         X, p.tin, p.K, &beta, Y, p.tout, p.N, ct, CUBLAS_GEMM_DEFAULT),
            "GemmEx");
    return 0;
}

static cublasStatus_t run_lt(lmc_gemm *g, const gemm_plan &p, const cublasLtMatmulAlgo_t *algo,
                             const void *X, const void *W, void *Y)
{
    float alpha = 1.0f, beta = p.beta;
    return cublasLtMatmul(g->lt, p.op, &alpha, W, p.a, X, p.b, &beta, Y, p.c, Y, p.c, algo,
                          g->ws, g->ws_bytes, g->st);
}

static int run_plan(lmc_gemm *g, const gemm_plan &p, const void *X, const void *W, void *Y,
                    lmc_error *err)
{
    if (!p.lt)
        return run_gemmex(g, p, X, W, Y, err);
    BLAS_OK(run_lt(g, p, &p.algo, X, W, Y), "cublasLtMatmul");
    return 0;
}

/* Milliseconds per product of candidate `cand` (-1: GemmEx, else heuristic
 * result cand) on the real inputs and a scratch output; < 0 if it fails. */
static double time_candidate(lmc_gemm *g, const gemm_plan &p, const cublasLtMatmulAlgo_t *algo,
                             const void *X, const void *W, void *Ys, cudaEvent_t e0,
                             cudaEvent_t e1)
{
    lmc_error err_;
    lmc_error *err = &err_;
    enum { WARM = 2, REPS = 5 };
    for (int r = 0; r < WARM + REPS; r++) {
        if (r == WARM && cudaEventRecord(e0, g->st) != cudaSuccess)
            return -1;
        int rc = algo ? (run_lt(g, p, algo, X, W, Ys) == CUBLAS_STATUS_SUCCESS ? 0 : -1)
                      : run_gemmex(g, p, X, W, Ys, err);
        if (rc < 0)
            return -1;
    }
    float ms = 0;
    if (cudaEventRecord(e1, g->st) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
        cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
        return -1;
    return ms / REPS;
}

/* Times GemmEx and cuBLASLt's top candidates for p's shape; keeps the
 * fastest in p (GemmEx when nothing else works). */
static int tune_plan(lmc_gemm *g, gemm_plan &p, const void *X, const void *W, lmc_error *err)
{
    cublasComputeType_t ct = CUBLAS_COMPUTE_32F;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    BLAS_OK(cublasLtMatmulDescCreate(&p.op, ct, CUDA_R_32F), "cuBLASLt descriptor");
    BLAS_OK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
            "cuBLASLt descriptor");
    BLAS_OK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
            "cuBLASLt descriptor");
    BLAS_OK(cublasLtMatrixLayoutCreate(&p.a, p.tin, p.K, p.N, p.K), "cuBLASLt layout");
    BLAS_OK(cublasLtMatrixLayoutCreate(&p.b, p.tin, p.K, p.M, p.K), "cuBLASLt layout");
    BLAS_OK(cublasLtMatrixLayoutCreate(&p.c, p.tout, p.N, p.M, p.N), "cuBLASLt layout");
    cublasLtMatmulPreference_t pref;
    BLAS_OK(cublasLtMatmulPreferenceCreate(&pref), "cuBLASLt preference");
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->ws_bytes, sizeof g->ws_bytes);
    cublasLtMatmulHeuristicResult_t res[TUNE_CANDIDATES];
    int nres = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(g->lt, p.op, p.a, p.b, p.c, p.c, pref,
                                           TUNE_CANDIDATES, res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS)
        nres = 0;

    void *Ys = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    size_t ybytes = (size_t)p.M * p.N * type_bytes(p.tout);
    CUDA_OK(cudaStreamSynchronize(g->st), "GEMM tuning");
    CUDA_OK(cudaMalloc(&Ys, ybytes), "GEMM tuning scratch");
    cudaError_t ce = cudaMemsetAsync(Ys, 0, ybytes, g->st);
    if (ce == cudaSuccess)
        ce = cudaEventCreate(&e0);
    if (ce == cudaSuccess)
        ce = cudaEventCreate(&e1);
    double best = -1;
    int best_i = -1;
    if (ce == cudaSuccess) {
        best = time_candidate(g, p, NULL, X, W, Ys, e0, e1);
        for (int i = 0; i < nres; i++) {
            if (res[i].state != CUBLAS_STATUS_SUCCESS)
                continue;
            double t = time_candidate(g, p, &res[i].algo, X, W, Ys, e0, e1);
            if (t > 0 && (best < 0 || t < best * 0.99)) /* a clear win over GemmEx */
                best = t, best_i = i;
        }
    }
    cudaStreamSynchronize(g->st);
    cudaGetLastError(); /* a failed candidate is not an error */
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    cudaFree(Ys);
    CUDA_OK(ce, "GEMM tuning");
    if (best_i >= 0) {
        p.lt = 1;
        p.algo = res[best_i].algo;
        snprintf(p.name, sizeof p.name, "Lt #%d", best_i);
    } else {
        plan_release(p);
    }
    return 0;
}

static gemm_plan *find_plan(std::vector<gemm_plan> &v, int M, int N, int K, cudaDataType tin,
                            cudaDataType tout, float beta)
{
    for (gemm_plan &p : v)
        if (p.M == M && p.N == N && p.K == K && p.tin == tin && p.tout == tout && p.beta == beta)
            return &p;
    return NULL;
}

int lmc_gemm_run(lmc_gemm *g, const void *X, const void *W, void *Y, int M, int N, int K,
                 cudaDataType tin, cudaDataType tout, float beta, lmc_error *err)
{
    gemm_plan *p = find_plan(g->plans, M, N, K, tin, tout, beta);
    if (!p) {
        gemm_plan np;
        memset(&np, 0, sizeof np);
        np.M = M, np.N = N, np.K = K, np.tin = tin, np.tout = tout, np.beta = beta;
        snprintf(np.name, sizeof np.name, "GemmEx");
        if (g->tune && 2.0 * M * N * K >= TUNE_MIN_FLOP && tune_plan(g, np, X, W, err) < 0) {
            plan_release(np);
            return -1;
        }
        g->plans.push_back(np);
        p = &g->plans.back();
    }
    return run_plan(g, *p, X, W, Y, err);
}

const char *lmc_gemm_plan_name(const lmc_gemm *g, int M, int N, int K, cudaDataType tin,
                               cudaDataType tout, float beta)
{
    for (const gemm_plan &p : g->plans)
        if (p.M == M && p.N == N && p.K == K && p.tin == tin && p.tout == tout && p.beta == beta)
            return p.name;
    return NULL;
}
