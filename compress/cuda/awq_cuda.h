/* AWQ's scale and clip searches on the GPU: the twins of compress/awq.c's
 * search_group / module_mse and lmc_awq_clip_linear (read that file for the
 * method). The block's inputs are the ones the CUDA backend captured in the
 * last observed forward (lmc_pass.device_capture_tokens), in the compute
 * type; the modules run in the compute type on the tensor cores, as
 * llm-awq runs them in fp16 (fp32 with --precision fp32). The candidates
 * Q(W diag(s)) diag(s)^-1 are computed in fp32 exactly as the CPU computes
 * them, then rounded to the compute type. Losses are sums in double in a
 * fixed order: the same on every run. CUDA builds only. */
#ifndef LMC_AWQ_CUDA_H
#define LMC_AWQ_CUDA_H

#include <stdint.h>

#include "../../eval/backend.h"

/* The block's linears, in awq.c's role order. */
enum { LMC_AWQ_Q, LMC_AWQ_K, LMC_AWQ_V, LMC_AWQ_O, LMC_AWQ_GATE, LMC_AWQ_UP, LMC_AWQ_DOWN,
       LMC_AWQ_ROLES };
/* Modules a group's loss is measured on (awq.c's MOD_*). */
enum { LMC_AWQ_MOD_LINEAR, LMC_AWQ_MOD_ATTN, LMC_AWQ_MOD_MLP };

typedef struct lmc_cuda_awq_lin {
    const float *w; /* host fp32 [rows][cols]; NULL: the block has no such linear */
    const float *b; /* host fp32 [rows] or NULL */
    int64_t rows, cols;
} lmc_cuda_awq_lin;

typedef struct lmc_cuda_awq lmc_cuda_awq;

/* The searches of the block whose observed forward backend b (CUDA) just
 * ran, on its captured inputs (windows of seqlen tokens); the weights are
 * uploaded (the original ones: every group is searched on them). */
int lmc_cuda_awq_open(lmc_backend *b, int seqlen, const lmc_cuda_awq_lin lin[LMC_AWQ_ROLES],
                      lmc_cuda_awq **out, lmc_error *err);
void lmc_cuda_awq_free(lmc_cuda_awq *h);

/* Module mod (LMC_AWQ_MOD_LINEAR: linear `role` alone) on every captured
 * token. s NULL: computes and keeps its output with the original weights
 * (the reference of the next losses). Else: *loss = the mean squared
 * difference from that reference with the consumers cons[0..ncons) replaced
 * by Q(W diag(s)) diag(s)^-1 (s: dim scales; AWQ's quantizer, bits, group,
 * sym). */
int lmc_cuda_awq_loss(lmc_cuda_awq *h, int mod, int role, int ncons, const int *cons,
                      const float *s, int64_t dim, int bits, int group, int sym, double *loss,
                      lmc_error *err);

/* lmc_awq_clip_linear's search on the GPU for linear `role` with its
 * folded weights W (host [rows][cols]): the inputs are the captured ones
 * divided by the site's scales s (NULL: not scaled). shrink [rows][groups]
 * receives each group's chosen step i (clamp at +-max|w| (1 - i /
 * clip_grid); -1: none, no clamp), *gain the error after / before. */
int lmc_cuda_awq_clip(lmc_cuda_awq *h, int role, const float *s, const float *W, int bits,
                      int group, int sym, int clip_grid, double max_shrink, int64_t clip_tokens,
                      int *shrink, double *gain, lmc_error *err);

#endif
