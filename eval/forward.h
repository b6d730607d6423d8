/* Batched forward pass on the CPU reference backend (OpenBLAS sgemm, fp32).
 * A window of n tokens is processed at once, positions 0..n-1, causal. */
#ifndef LMC_FORWARD_H
#define LMC_FORWARD_H

#include <stdint.h>

#include "weights.h"

/* Called with the input rows of every linear site of a block, so that calib/
 * can collect statistics without the forward knowing about passes.
 * x is [ntok][dim] row-major and only valid during the call. */
typedef void (*lmc_observer_fn)(void *ctx, int layer, lmc_site site, const float *x,
                                int64_t ntok, int64_t dim);

typedef struct lmc_scratch lmc_scratch;

/* Scratch buffers for windows of up to max_tokens tokens. */
lmc_scratch *lmc_scratch_new(const lmc_config *cfg, int max_tokens);
void lmc_scratch_free(lmc_scratch *s);

/* x[n][hidden] = token (+ position) embeddings. Ids outside the vocabulary
 * are an error. */
int lmc_forward_embed(const lmc_weights *w, const int32_t *ids, int n, float *x,
                      lmc_error *err);

/* In place: x[n][hidden] <- block(x). bw is the block's weights (normally
 * &w->blocks[layer]; calib/ passes a compressed copy). obs may be NULL. */
int lmc_forward_block(const lmc_weights *w, int layer, const lmc_block_w *bw, float *x, int n,
                      lmc_scratch *s, lmc_observer_fn obs, void *obs_ctx, lmc_error *err);

/* Final norm + LM head: logits[n][vocab]. */
int lmc_forward_head(const lmc_weights *w, const float *x, int n, float *logits,
                     lmc_scratch *s, lmc_error *err);

/* The window's NLL from its final hidden states x[n][hidden] (after the
 * last block): final norm, head, -log p(ids[t+1] | ids[..t]) summed over
 * t = 0..n-2 in double; logits_out (may be NULL) receives logits[n][vocab]. */
int lmc_forward_head_nll(const lmc_weights *w, const int32_t *ids, int n, const float *x,
                         lmc_scratch *s, double *nll, float *logits_out, lmc_error *err);

/* Whole window: sum of -log p(ids[t+1] | ids[..t]) over t = 0..n-2, in double.
 * If logits_out is not NULL it receives logits[n][vocab]. */
int lmc_forward_window_nll(const lmc_weights *w, const int32_t *ids, int n, lmc_scratch *s,
                           double *nll, float *logits_out, lmc_error *err);

#endif
