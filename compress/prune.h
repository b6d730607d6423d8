/* Pruning without weight update: mask selection for magnitude and Wanda, the
 * option checks shared by the passes and their CLI, and the two passes.
 *
 * Conventions (fixed so that results are reproducible and testable):
 * - keep[i] = 1 for a kept weight, 0 for a pruned one, row-major [rows][cols].
 * - "prune the k lowest": scores ordered by (score, index); on equal scores
 *   the lower flat index is pruned first (stable, as Wanda's
 *   torch.sort(stable=True)).
 * - Unstructured magnitude: one threshold per matrix, exactly
 *   int(rows*cols*p) weights pruned (the Wanda repository's baseline prunes
 *   every |W| <= the value at that sorted position, one more weight when
 *   there are no ties; we prune exactly the count).
 * - Unstructured Wanda: score |W_ij| * sqrt(sum_x x_j^2 / N), exactly
 *   int(cols*p) pruned in every output row.
 * - N:M means N KEPT of every M consecutive inputs of a row (NVIDIA's 2:4);
 *   the M-N lowest scores of each group are pruned. Wanda's code prunes N of
 *   every M instead; both read the same for 2:4 and 4:8.
 * - int(x*p) is computed in double and truncated, like Python's int(). */
#ifndef LMC_PRUNE_H
#define LMC_PRUNE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "../calib/pass.h"
#include "../core/encoding.h"
#include "../core/error.h"

typedef struct lmc_prune_opts {
    double sparsity;  /* unstructured: pruned fraction, 0 < p < 1 (0: unset) */
    int n, m;         /* N:M when m > 0 (n kept of every m inputs) */
    lmc_enc_id inner; /* kept values: LMC_ENC_F16 (default) or LMC_ENC_F32 */
} lmc_prune_opts;

/* sparsity 0, no N:M, inner f16. */
void lmc_prune_opts_default(lmc_prune_opts *o);
/* Option parsers for "--sparsity P", "--nm N:M", "--inner f16|f32"; the error
 * names the option and the bad value. */
int lmc_prune_parse_sparsity(const char *s, double *p, lmc_error *err);
int lmc_prune_parse_nm(const char *s, int *n, int *m, lmc_error *err);
int lmc_prune_parse_inner(const char *s, lmc_enc_id *inner, lmc_error *err);
/* Shape-independent check: exactly one of --sparsity / --nm, 0 < p < 1,
 * 1 <= N < M <= 256, a supported inner encoding. */
int lmc_prune_opts_check(const lmc_prune_opts *o, lmc_error *err);
/* For N:M: M must divide the input width cols of tensor (named in the error). */
int lmc_prune_check_width(const lmc_prune_opts *o, const char *tensor, int64_t cols,
                          lmc_error *err);
/* Record the options in a provenance "args" object. */
void lmc_prune_opts_to_json(const lmc_prune_opts *o, cJSON *args);

/* Prune the k lowest of score[0..n) (ties: lower index first): keep[i] = 0
 * for them, 1 for the rest. k is clamped to [0, n]. O(n). */
void lmc_prune_lowest(const float *score, int64_t n, int64_t k, uint8_t *keep);
/* Exactly int(rows*cols*p) lowest of the whole matrix. */
void lmc_prune_mask_matrix(const float *score, int64_t rows, int64_t cols, double p,
                           uint8_t *keep);
/* Exactly int(cols*p) lowest of every row. */
void lmc_prune_mask_rows(const float *score, int64_t rows, int64_t cols, double p,
                         uint8_t *keep);
/* n kept (the m-n lowest pruned) in every group of m consecutive columns of
 * every row; m divides cols. */
void lmc_prune_mask_nm(const float *score, int64_t rows, int64_t cols, int n, int m,
                       uint8_t *keep);

/* Magnitude mask of w[rows][cols] under o: per matrix, or N:M per row. */
int lmc_magnitude_mask(const float *w, int64_t rows, int64_t cols, const lmc_prune_opts *o,
                       uint8_t *keep, lmc_error *err);
/* Wanda mask: sq_sum[cols] = sum over ntok calibration tokens of x_j^2 (the
 * input of this linear); per row, or N:M per row. */
int lmc_wanda_mask(const float *w, int64_t rows, int64_t cols, const double *sq_sum,
                   int64_t ntok, const lmc_prune_opts *o, uint8_t *keep, lmc_error *err);

/* Apply keep to w and encode it: LMC_ENC_SPARSE for unstructured,
 * LMC_ENC_NM for N:M, values in o->inner. Fills t (name, shape, encoding,
 * owned blob); the caller hands it to lmc_model_set_tensor or frees
 * t->owned. */
int lmc_prune_encode(const char *name, const float *w, int64_t rows, int64_t cols,
                     const uint8_t *keep, const lmc_prune_opts *o, lmc_tensor *t,
                     lmc_error *err);

/* The skeleton of the pruning passes (prune.c): per-tensor scoring hook,
 * and begin(), which checks every input width against M (SparseGPT too). */
typedef int (*lmc_prune_mask_fn)(const lmc_pass_ctx *ctx, const lmc_linear_desc *d,
                                 const char *tensor, const float *w, int64_t rows, int64_t cols,
                                 const lmc_prune_opts *o, uint8_t *keep, lmc_error *err);
int lmc_prune_compress_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_prune_mask_fn mask,
                             lmc_error *err);
int lmc_prune_begin(const lmc_pass *p, lmc_model *m, lmc_error *err);

#endif
