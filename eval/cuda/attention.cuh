/* Attention on qkv rows [n][q | k | v] of nwin windows of S tokens into
 * ctx [n][qd] (attention.cu). */
#ifndef LMC_CUDA_ATTENTION_CUH
#define LMC_CUDA_ATTENTION_CUH

#include "common.cuh"

/* kind: ATTN_AUTO picks the fastest kernel for the shape and device;
 * ATTN_SIMT / ATTN_MMA force the generic fp32 or the mma.sync kernel (tests) */
enum { ATTN_AUTO = 0, ATTN_SIMT = 1, ATTN_MMA = 2 };

/* Whether attention(kind) runs k_attn_wg, which can rotate Q itself. */
template <typename T> bool attn_is_wg(const lmc_cu_dims *d, int kind);
/* rcs/rsn: RoPE tables when Q is still to be rotated (only where
 * attn_is_wg), else NULL. */
template <typename T>
int attention(const lmc_cu_dims *d, const T *qkv, T *ctx, int nwin, int S, int kind,
              const float *rcs, const float *rsn, cudaStream_t st, lmc_error *err);

#endif
