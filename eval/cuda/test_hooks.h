/* CUDA forward pass: the same model, windows and NLL as forward_cpu.c, on an
 * NVIDIA GPU (built only when nvcc is found; otherwise forward_cuda_stub.c
 * provides these functions and they fail with "lmc was built without CUDA").
 *
 * Weights live on the device in the chosen precision: fp16/bf16 tensors are
 * uploaded as they are stored, every other encoding (qgroup, sparse, N:M, ...)
 * is decoded once at load through the encoding table. Math: norms, softmax
 * and the NLL in fp32 (NLL sums in double) in every precision, the residual
 * stream in fp32 or the compute type (lmc_residual); the matrix products are
 * cuBLAS with fp32 accumulation; fp32 precision disables TF32 so that it
 * agrees with the CPU evaluator.
 * Environment: LMC_CUDA_TOKENS (tokens per forward, default 16384),
 * LMC_CUDA_PROFILE=1 (device time per stage on stderr at lmc_cuda_model_free). */
#ifndef LMC_FORWARD_CUDA_H
#define LMC_FORWARD_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "../core/model.h"
#include "perplexity.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LMC_PREC_AUTO = 0, /* bf16 for bfloat16 checkpoints, fp16 for everything else */
    LMC_PREC_FP32 = 1,
    LMC_PREC_FP16 = 2,
    LMC_PREC_BF16 = 3
} lmc_precision;

/* The residual stream's type at fp16/bf16. HALF (AUTO's choice there): the
 * compute type, as transformers keeps it: fewer bytes per layer (2.7 %
 * faster on a TinyLlama-shaped model, 14 % on llama-s, H100) and agreement
 * with the CPU evaluator to ~4e-5 (fp16) / ~6e-4 (bf16) in perplexity.
 * FP32: ~1e-5 / ~5e-4, and no fp16 overflow of the residual. fp32
 * precision always keeps an fp32 residual. */
typedef enum {
    LMC_RESIDUAL_AUTO = 0,
    LMC_RESIDUAL_FP32 = 1,
    LMC_RESIDUAL_HALF = 2
} lmc_residual;

/* "auto", "fp32", "half" -> 0; anything else -1. */
int lmc_residual_parse(const char *s, lmc_residual *r);
/* The residual's type at resolved precision p: FP32 at fp32 or when asked,
 * else HALF. */
lmc_residual lmc_residual_resolve(lmc_residual r, lmc_precision p);

/* "auto", "fp32", "fp16", "bf16" -> 0; anything else -1. */
int lmc_precision_parse(const char *s, lmc_precision *p);
const char *lmc_precision_name(lmc_precision p);
/* AUTO resolved for a model (the others unchanged). */
lmc_precision lmc_precision_resolve(lmc_precision p, const lmc_config *c);

/* 0 when a CUDA device can be used; -1 with "no CUDA device found
 * (cudaGetDeviceCount: ...)" or "lmc was built without CUDA ...". If name is
 * not NULL it receives the device's name. */
int lmc_cuda_available(char *name, size_t name_len, lmc_error *err);

typedef struct lmc_cuda_model lmc_cuda_model;

/* Upload m's weights and allocate activations for forwards of up to
 * max_tokens tokens (0: max(seqlen_hint, 16384, or $LMC_CUDA_TOKENS)); perplexity runs
 * max_tokens / seqlen windows per forward. m must outlive nothing: the
 * device copy is independent of it. Fails naming the tensor on a missing or
 * misshapen tensor, a non-finite weight, or a weight that overflows fp16. */
int lmc_cuda_model_new(const lmc_model *m, lmc_precision prec, lmc_residual res, int max_tokens,
                       int seqlen_hint, lmc_cuda_model **out, lmc_error *err);
void lmc_cuda_model_free(lmc_cuda_model *cm);
lmc_precision lmc_cuda_model_precision(const lmc_cuda_model *cm);
/* The residual's type as resolved: LMC_RESIDUAL_FP32 or LMC_RESIDUAL_HALF. */
lmc_residual lmc_cuda_model_residual(const lmc_cuda_model *cm);
/* Device memory held by the model (weights + activations), bytes. */
size_t lmc_cuda_model_bytes(const lmc_cuda_model *cm);

/* nwin consecutive windows of seqlen ids each (nwin * seqlen <= max_tokens):
 * nll[w] = sum of -log p(ids[t+1] | ids[..t]) within window w. */
int lmc_cuda_windows_nll(lmc_cuda_model *cm, const int32_t *ids, int nwin, int seqlen,
                         double *nll, lmc_error *err);

/* lmc_perplexity (perplexity.h) on the device: same protocol, same result
 * fields, same error messages. */
int lmc_cuda_perplexity(lmc_cuda_model *cm, const int32_t *ids, int64_t n, const lmc_ppl_opts *o,
                        lmc_ppl_result *r, lmc_error *err);

/* ---- for tests: one window through the model, pieces of the pass ---- */

/* One block in place on host x[n][hidden] (one window of n tokens). */
int lmc_cuda_forward_block(lmc_cuda_model *cm, int layer, float *x, int n, lmc_error *err);
/* logits[n][vocab] of one window. */
int lmc_cuda_forward_logits(lmc_cuda_model *cm, const int32_t *ids, int n, float *logits,
                            lmc_error *err);

/* Kernels on host arrays, computed in precision p (inputs rounded to it
 * where the pass stores them in it). */
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
/* nll[r] = -log softmax(logits[r])[targets[r]] (0 where targets[r] < 0),
 * from logits stored as the NLL forward stores them in precision p (fp16 at
 * fp16, else fp32). */
int lmc_cuda_test_row_nll(const float *logits, int rows, int V, const int32_t *targets,
                          lmc_precision p, double *nll, lmc_error *err);

/* cuBLAS throughput on the forward's own matrix products (tokens rows, the
 * fused q|k|v and gate|up weights, in precision p, with the output types of
 * residual mode res: o and down into the residual, fp16 logits with a half
 * residual at fp16). */
typedef struct lmc_cuda_gemm_rate {
    char name[16];
    int64_t m, n, k;
    int per_forward; /* how many such products one forward makes */
    double tflops;   /* median of timed repeats */
    int is_attention; /* not a GEMM: the attention kernel, m rows in windows of n
                         tokens, k = head_dim (causal FLOPs); outside the mix */
} lmc_cuda_gemm_rate;
/* Fills up to 8 rates: the GEMMs, then the attention kernel on windows of
 * min(tokens, max_pos) tokens; *mix_tflops: the GEMMs' FLOP-weighted
 * harmonic mix. */
int lmc_cuda_bench_gemm(const lmc_config *c, int tokens, lmc_precision p, lmc_residual res,
                        lmc_cuda_gemm_rate *rates, int *n_rates, double *mix_tflops,
                        lmc_error *err);

#ifdef __cplusplus
}
#endif

#endif
