/* The CUDA backend's pieces on host arrays, for tests only
 * (tests/test_cuda.c checks each against its CPU twin): one block of an
 * evaluation backend, and the kernels one by one, computed in precision p
 * (inputs rounded to it where the forward stores them in it). Not part of
 * the library's API (eval/backend.h is). */
#ifndef LMC_CUDA_TEST_HOOKS_H
#define LMC_CUDA_TEST_HOOKS_H

#include <stdint.h>

#include "../../core/model.h"
#include "../backend.h"

/* One block in place on host x[n][hidden] (one window of n tokens) of an
 * evaluation backend opened on CUDA. */
int lmc_cuda_forward_block(lmc_backend *b, int layer, float *x, int n, lmc_error *err);

/* y[n][N] = x[n][K] . W^T for block slot `slot` (lmc_block_slots order:
 * qkv, o, gate|up, down) of `layer` of an evaluation backend opened on CUDA
 * at fp32, when the slot is held quantized (W8A8, LLM.int8(), packed): x
 * goes up exactly, so the int8 kernels quantize the same inputs as the CPU
 * twins do. */
int lmc_cuda_slot_product(lmc_backend *b, int layer, int slot, const float *x, int n, float *y,
                          lmc_error *err);

/* xo = x + badd (badd may be NULL), y = norm(xo) as lmc_op_norm. */
int lmc_cuda_test_norm(const float *x, const float *badd, float *xo, float *y, int n, int H,
                       const float *w, const float *b, int rms, double eps, lmc_precision p,
                       lmc_error *err);
/* In place on qkv[n][(nh + 2 nkv) hd] (q | k | v per token): + bias (may be
 * NULL), then RoPE on q and k at positions t % S. */
int lmc_cuda_test_qkv_rope(const lmc_config *c, float *qkv, const float *bias, int n, int S,
                           lmc_precision p, lmc_error *err);
/* Causal GQA attention over nwin windows of S tokens: q[n][nh hd], k, v
 * [n][nkv hd] -> ctx[n][nh hd], n = nwin * S. kind: 0 the kernel the
 * forward would pick, 1 the generic fp32 kernel, 2 the mma.sync tensor-core
 * kernel (head_dim 32/64/96/128, fp16/bf16; else as 0). */
int lmc_cuda_test_attention(const lmc_config *c, const float *q, const float *k, const float *v,
                            float *ctx, int nwin, int S, int kind, lmc_precision p,
                            lmc_error *err);
/* The same with RoPE (tables from c) applied to q and k first, as the
 * forward does: in_kernel 0, by the qkv kernel; 1, Q rotated inside the
 * attention kernel where that kernel can (the forward's choice without q/k/v
 * biases). Returns 1 when Q was rotated in the kernel, 0 when not, -1 on
 * error. */
int lmc_cuda_test_attention_rope(const lmc_config *c, const float *q, const float *k,
                                 const float *v, float *ctx, int nwin, int S, int in_kernel,
                                 lmc_precision p, lmc_error *err);
/* a[n][F] = act(g + bg) * (u + bu) when gated (gu = [n][2F]: g | u, bias
 * [2F]), else act(u + bu) (gu = [n][F], bias [F]); bias may be NULL. */
int lmc_cuda_test_act(lmc_act act, int gated, const float *gu, const float *bias, float *a, int n,
                      int F, lmc_precision p, lmc_error *err);
/* y[M][N] = X[M][K] . W[N][K]^T (int8, K a multiple of 16) through the
 * wgmma int8 GEMM of the W8A8 slots with unit scales; 1 where that kernel
 * does not run (not a Hopper, or not an sm_90a build). */
int lmc_cuda_test_i8_gemm(const int8_t *X, const int8_t *W, int M, int N, int K, float *y,
                          lmc_error *err);
/* nll[r] = -log softmax(logits[r])[targets[r]] (0 where targets[r] < 0),
 * from logits stored as the NLL forward stores them in precision p (fp16 at
 * fp16, else fp32). */
int lmc_cuda_test_row_nll(const float *logits, int rows, int V, const int32_t *targets,
                          lmc_precision p, double *nll, lmc_error *err);

#endif
