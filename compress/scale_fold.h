/* Per-input-channel scale folding, shared by AWQ and SmoothQuant.
 *
 * For positive scales s[dim] on the input of a group of consumer linears,
 *   y = W x = (W diag(s)) (diag(s)^-1 x),
 * so multiplying the consumers' input columns by s and dividing whatever
 * produced x by s leaves the function unchanged. The producer ("prev") is
 *   - a norm (attn_norm, ffn_norm): weight /= s and bias /= s;
 *   - a linear (v for o, up for down): its output rows /= s and bias /= s.
 * v -> o is valid only when every o input column comes from one v row
 * (no grouped-query attention: the context is linear in v per channel);
 * up -> down when the FFN is gated (down(act(gate x) * up x) is linear in
 * up x) or its activation is positively homogeneous (ReLU); not for GELU.
 * The stored model stays a plain model: nothing but the weights changes. */
#ifndef LMC_SCALE_FOLD_H
#define LMC_SCALE_FOLD_H

#include <stdint.h>

#include "../core/model.h"

typedef struct lmc_fold_group {
    const char *prev;    /* "attn_norm", "ffn_norm", "v" or "up" */
    const char *cons[3]; /* consumer linears */
    int ncons;
    lmc_site site;       /* the site the consumers read */
} lmc_fold_group;

/* The groups whose producer can absorb the scales, in block order (llm-awq
 * auto_scale_block): attn_norm -> q,k,v; v -> o (MHA only); ffn_norm ->
 * gate,up (up); up -> down (gated or ReLU FFN). norms_only: just the two
 * norm groups (SmoothQuant). Returns the count (at most 4). */
int lmc_fold_groups(const lmc_config *c, int norms_only, lmc_fold_group out[4]);

/* Is role one of the block norms? */
int lmc_fold_prev_is_norm(const char *prev);

/* In-memory helpers on row-major fp32 buffers. */
void lmc_scale_cols(float *W, int64_t rows, int64_t cols, const float *s); /* W[:,j] *= s[j] */
void lmc_unscale_rows(float *W, float *b, int64_t rows, int64_t cols,
                      const float *s);                           /* W[i,:], b[i] /= s[i] */
void lmc_unscale_vec(float *v, int64_t n, const float *s);       /* v[i] /= s[i] */

/* Store rows x cols fp32 values as tensor `name` (ndim 1 when cols == 1) in
 * a dense encoding (F32, F16 or BF16), replacing any tensor of that name. */
int lmc_store_dense(lmc_model *m, const char *name, int64_t rows, int64_t cols,
                    const float *data, lmc_enc_id enc, lmc_error *err);

/* Fold s[dim] into the tensors of block `layer` of m: prev (a norm or a
 * linear, see above) and the consumers, read from their current
 * encodings (which must be dense: folding into integer codes would
 * silently requantize them). Linear weights are stored as lin_enc (F32 or
 * F16), norms and biases as F32. Fails naming the tensor on a missing
 * tensor, a shape that does not match dim, or a scale that is not finite
 * and positive. */
int lmc_fold_scales(lmc_model *m, int layer, const lmc_fold_group *g, const float *s,
                    int64_t dim, lmc_enc_id lin_enc, lmc_error *err);

#endif
