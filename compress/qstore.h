/* Quantization and pruning results stored as tensors of the model: the
 * library piece that GPTQ, RTN, AWQ and SparseGPT share (no pass depends on
 * another). */
#ifndef LMC_QSTORE_H
#define LMC_QSTORE_H

#include <stdint.h>

#include "../core/model.h"
#include "quantizer.h"

/* The pruned positions of a tensor already pruned by an earlier pass (a
 * SPARSE or N:M encoding, or a dense tensor with exact zeros from one):
 * mask[rows*cols], 1 = pruned, so later passes keep those weights at zero.
 * Returns 0 and *mask = NULL when the tensor is not sparse. */
int lmc_existing_prune_mask(const lmc_tensor *t, const float *w, uint8_t **mask,
                            lmc_error *err);

/* Encode a quantization result as the tensor blk.<layer>.<role>.weight of
 * m. With a prune mask (1 = pruned) only the kept values are stored: N:M
 * inner QGROUP when the tensor it replaces is N:M (and q's groups fit that
 * layout, core/sparse.h), else SPARSE inner QGROUP; pruned weights decode to
 * exactly 0 whatever their codes in q. */
int lmc_store_quantized(lmc_model *m, int layer, const char *role, const lmc_qresult *q,
                        const uint8_t *mask, lmc_error *err);

/* The tensor `name` holding quantized values q (original column order) at
 * the positions keep[i] != 0 only: NM inner QGROUP when m > 0 and q's
 * groups fit that layout (lmc_nm_qgroup_ok; keep must then hold at most n
 * of every m), else SPARSE inner QGROUP. Fills t (owned blob); the caller
 * hands it to lmc_model_set_tensor or frees t->owned. */
int lmc_sparse_qtensor(const char *name, const lmc_qresult *q, const uint8_t *keep, int n, int m,
                       lmc_tensor *t, lmc_error *err);

#endif
