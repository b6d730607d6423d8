/* The CPU forward pass's building blocks, exposed for unit tests (against
 * naive double-precision versions) and for backends that test against the
 * reference. Not needed to run a model: see forward.h. */
#ifndef LMC_FORWARD_OPS_H
#define LMC_FORWARD_OPS_H

#include <stddef.h>

#include "forward.h"

/* y[n][H] = norm(x[n][H]): RMSNorm (rms=1, b ignored) or LayerNorm (b may be NULL). */
void lmc_op_norm(const float *x, float *y, int n, int H, const float *w, const float *b, int rms,
                 double eps);
/* In place: a = act(a). */
void lmc_op_act(float *a, size_t n, lmc_act act);
/* In place: a = silu(a) * b. */
void lmc_op_silu_mul(float *a, const float *b, size_t n);
/* inv_freq[head_dim/2] with the config's RoPE scaling (default, linear, llama3). */
void lmc_op_rope_inv_freq(const lmc_config *c, float *inv);
/* cos/sin tables [T][head_dim/2] (malloc'ed). -1 when out of memory. */
int lmc_op_rope_tables(const lmc_config *c, int T, float **cs, float **sn);
/* In place on x[n][nheads*hd], rotate_half pairs (i, i + hd/2). */
void lmc_op_rope_apply(float *x, int n, int nheads, int hd, const float *cs, const float *sn);
/* Causal multi-head attention with GQA: q[n][nh*hd], k, v [n][nkv*hd] ->
 * ctx[n][nh*hd], scores scaled by 1/sqrt(hd). s sized for n tokens of c. */
void lmc_op_attention(const lmc_config *c, lmc_scratch *s, const float *q, const float *k,
                      const float *v, float *ctx, int n);
/* -log softmax(l[V])[target], in double. */
double lmc_op_row_nll(const float *l, int V, int target);

#endif
