/* SparseGPT (Frantar & Alistarh 2023; IST-DASLab sparsegpt.py fasterprune)
 * as an lmc_pass: the GPTQ error-feedback solver (compress/solver.h) in its
 * pruning mode, on the same Hessian H = 2/N sum x x^T and the same per-site
 * upper Cholesky factor of H^-1 as GPTQ (shared through lmc_block_hinv).
 *
 *  - Unstructured (--sparsity P): per 128-column block, the floor(rows*128*P)
 *    lowest w^2 / U_ii^2 over the whole rows x 128 block are pruned (the
 *    reference prunes one more, see solver.h). A tensor therefore loses
 *    exactly sum over blocks of floor(rows*count*P) weights, which differs
 *    from floor(rows*cols*P) by less than the number of blocks.
 *  - Linears that the source checkpoint stores as ONE matrix are pruned as
 *    that matrix, rows stacked, since the reference prunes modules: GPT-2's
 *    c_attn holds q, k and v, so there one threshold per block spans the
 *    three (checked against the reference: 70% on gpt2-s within 0.04% with
 *    the same calibration windows, 1% off when pruned separately).
 *  - N:M (--nm N:M, N KEPT of every M as in compress/prune.h): per row, the
 *    M-N lowest scores of every M columns, chosen on the already-updated
 *    weights when the solver reaches the group.
 *  - Joint quantization (--bits B): each kept weight is quantized as the
 *    solver reaches it (min/max grid of its group, fitted as GPTQ fits it;
 *    per row by default, as the reference's quantizer), and the error of
 *    pruning and rounding is pushed onto the columns not yet decided.
 *
 * Output: SPARSE (bitmask) or NM encoding (core/sparse.h) with f16/f32 kept
 * values, or inner QGROUP with --bits. Embeddings, norms and the LM head
 * are left as they are. */
#ifndef LMC_SPARSEGPT_H
#define LMC_SPARSEGPT_H

#include <stdint.h>

#include "../calib/pass.h"
#include "../core/error.h"
#include "prune.h"
#include "quantizer.h"
#include "solver.h"

typedef struct lmc_sparsegpt_opts {
    lmc_prune_opts prune;   /* sparsity or N:M (n kept of m), inner (f16/f32) without bits */
    lmc_solver_opts solver; /* percdamp, damp_retries, blocksize; bits (0 = prune only),
                               group, sym. Its pruning fields are ignored: the pass sets
                               them from prune. act_order must be 0. */
} lmc_sparsegpt_opts;

/* 50% unstructured is NOT the default: prune is left unset (must be given);
 * solver defaults (percdamp 0.01, block 128), no quantization, group -1. */
void lmc_sparsegpt_opts_default(lmc_sparsegpt_opts *o);
/* Shape-independent checks (lmc_prune_opts_check, the solver's limits on
 * N:M: M <= 64 and a multiple-of-M block size, bits/group when
 * quantizing); -1 with a message naming the option. */
int lmc_sparsegpt_opts_check(const lmc_sparsegpt_opts *o, lmc_error *err);
/* Fill p (name "sparsegpt", LMC_STAT_HESSIAN); o must outlive the pass.
 * begin() checks every input width against M before any work. end() adds
 * "zero_fraction" and "linear_bits_per_weight" (lmc_linear_sparsity) to the
 * summary. */
int lmc_sparsegpt_pass(lmc_pass *p, const lmc_sparsegpt_opts *o, lmc_error *err);

/* Over the block linears of m: the fraction of weights that decode to
 * exactly 0, and the stored bits per weight (mask/index overhead included). */
int lmc_linear_sparsity(const lmc_model *m, double *sparsity, double *bits_per_weight,
                        lmc_error *err);

#endif
