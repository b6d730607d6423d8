/* FLOPs per token of a forward pass, the convention every report uses:
 *   - 2 FLOPs per multiply-accumulate;
 *   - every block linear (q k v o gate up down) and the LM head: its MACs per
 *     token, rows x cols dense, or the encoding's effective_macs (pruned,
 *     low-rank, ... weights) when the encoding table provides it;
 *   - attention: q.k scores and the probability-weighted sum of values,
 *     n_heads x head_dim MACs each per key, at the average causal context of
 *     a window, (seqlen + 1) / 2 keys;
 *   - not counted: embeddings, norms, biases, activations, RoPE, softmax
 *     (O(hidden) per token, negligible next to the above). */
#ifndef LMC_FLOPS_H
#define LMC_FLOPS_H

#include "../core/model.h"

typedef struct lmc_flops {
    double per_token;        /* effective: linears + head + attention */
    double per_token_dense;  /* the same with every linear dense */
    double linear, linear_dense; /* block linears only */
    double head, head_dense;
    double attention;
    double avg_context;      /* keys per query: (seqlen + 1) / 2 */
} lmc_flops;

/* Fails when a linear weight is missing or its encoding is unknown. */
int lmc_flops_per_token(const lmc_model *m, int seqlen, lmc_flops *f, lmc_error *err);

#endif
