/* int8 x int8 products with the W8A8 / LLM.int8() rescale fused into the
 * GEMM's epilogue, on Hopper's wgmma (gemm_i8.cu): the same bits as cuBLAS's
 * int32 products followed by qslot.cu's epilogue kernels, without the int32
 * products in memory. Internal to eval/cuda/. */
#ifndef LMC_CUDA_GEMM_I8_CUH
#define LMC_CUDA_GEMM_I8_CUH

#include "common.cuh"

/* What the epilogue does with the exact product p[t][c] of token t and
 * weight row c: */
struct i8wg_epi {
    const float *sw; /* [N] weight scales */
    const float *sx; /* [M] token scales */
    /* a NULL: y[t][c] (=|+= when accumulate) i8_rescale(p, sw[c], sx[t]),
     * row stride ldy, in the output type */
    int int8_order, accumulate;
    void *y;
    int ldy;
    /* a not NULL: a[t][j] (j < F) = act(g + bg) * (u + bu) as k_i8_act
     * computes it, gated (g = p[t][j], u = p[t][F + j], N = 2F), else
     * act(u + bu) (u = p[t][j], N = F); bias [N] or NULL; fast: act_t */
    const float *bias;
    void *a;
    int F, gated, act, fast;
    int vec; /* set by i8wg_run */
};

/* 1: the W8A8 slots use these kernels: this build has them and the device
 * runs them (sm_90a, Hopper), and LMC_CUDA_I8_GEMM (wgmma or cublas, for
 * tests and measurements) does not ask for cuBLAS's int32 products. */
bool i8wg_ok();
/* X[M][K] . W[N][K]^T with epilogue e (Y: the output type, that of a in
 * activation mode); K a multiple of 16 (and the row stride of both). */
template <typename Y>
int i8wg_run(const int8_t *X, const int8_t *W, int M, int N, int K, const i8wg_epi &e,
             cudaStream_t st, lmc_error *err);

#endif
