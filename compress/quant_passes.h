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

/* Encode a quantization result as the tensor blk.<layer>.<role>.weight of
 * m, keeping a prune mask (SPARSE inner QGROUP) when mask is not NULL. */
int lmc_store_quantized(lmc_model *m, int layer, const char *role, const lmc_qresult *q,
                        const uint8_t *mask, lmc_error *err);

#endif
