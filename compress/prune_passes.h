/* The pruning passes without weight update: magnitude and Wanda (the mask
 * selection they share is in prune.h). */
#ifndef LMC_PRUNE_PASSES_H
#define LMC_PRUNE_PASSES_H

#include "prune.h"

/* The passes. o must stay alive while the pass runs; it is checked here
 * (lmc_prune_opts_check) and p is filled: name "magnitude" (stats 0, no
 * calibration) or "wanda" (LMC_STAT_SQ_SUM). They prune every
 * blk.N.{q,k,v,o,gate,up,down}.weight (core/model.h lmc_block_linears);
 * embeddings, norms and the head stay as they are. begin() checks every
 * input width against M before any work. */
int lmc_magnitude_pass(lmc_pass *p, const lmc_prune_opts *o, lmc_error *err);
int lmc_wanda_pass(lmc_pass *p, const lmc_prune_opts *o, lmc_error *err);

#endif
