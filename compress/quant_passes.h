/* The weight-quantization passes: RTN and GPTQ, as lmc_pass objects. */
#ifndef LMC_QUANT_PASSES_H
#define LMC_QUANT_PASSES_H

#include "../calib/pass.h"
#include "solver.h"

typedef struct lmc_rtn_opts {
    int bits, group, sym;
} lmc_rtn_opts;

/* Check bits (2..8) and group (-1 or > 0); -1 with a message naming the option. */
int lmc_quant_opts_check(int bits, int group, lmc_error *err);

/* Fill p; o must outlive p. */
void lmc_rtn_pass(lmc_pass *p, const lmc_rtn_opts *o);
void lmc_gptq_pass(lmc_pass *p, const lmc_solver_opts *o);

/* The pruned positions of a tensor already pruned by an earlier pass (a
 * SPARSE or N:M encoding, or a dense tensor with exact zeros from one):
 * mask[rows*cols], 1 = pruned, so later passes keep those weights at zero.
 * Returns 0 and *mask = NULL when the tensor is not sparse. */
int lmc_existing_prune_mask(const lmc_tensor *t, const float *w, uint8_t **mask,
                            lmc_error *err);

/* The Hessian inverses of one block, one per input site, prepared on first
 * use: linears reading the same input (q/k/v, gate/up) share H and its
 * factorization. Zero-initialize, then free with lmc_block_hinv_free. */
typedef struct lmc_block_hinv {
    lmc_hinv hv[LMC_SITE_COUNT];
    int have[LMC_SITE_COUNT];
} lmc_block_hinv;

/* The factor for blk.<ctx->layer>.<role> (cols inputs) reading site s,
 * prepared from ctx->stats with o's damping and act-order. */
int lmc_block_hinv_get(lmc_block_hinv *b, const lmc_pass_ctx *ctx, const char *role, lmc_site s,
                       int64_t cols, const lmc_solver_opts *o, const lmc_hinv **hv,
                       lmc_error *err);
void lmc_block_hinv_free(lmc_block_hinv *b);

/* Encode a quantization result as the tensor blk.<layer>.<role>.weight of
 * m. With a prune mask (1 = pruned) only the kept values are stored: N:M
 * inner QGROUP when the tensor it replaces is N:M (and q's groups fit that
 * layout, core/sparse.h), else SPARSE inner QGROUP; pruned weights decode to
 * exactly 0 whatever their codes in q. */
int lmc_store_quantized(lmc_model *m, int layer, const char *role, const lmc_qresult *q,
                        const uint8_t *mask, lmc_error *err);

#endif
