/* The sequential layer-by-layer driver shared by every pass:
 *   embeddings -> for each block: run it on the captured inputs while the
 *   observer accumulates the statistics the pass asked for; let the pass
 *   replace the block's tensors; rebuild the block from the new tensors and
 *   run it again to produce the next block's inputs.
 * Memory: one block's fp32 weights + the calibration activations. */
#ifndef LMC_DRIVER_H
#define LMC_DRIVER_H

#include <cjson/cJSON.h>

#include "pass.h"
#include "windows.h"

typedef struct lmc_driver_opts {
    int quiet;
} lmc_driver_opts;

/* Runs pass p over every block of m. win is required when p->stats != 0.
 * summary receives {"layers": [...per tensor reports...], "seconds": {...}}. */
int lmc_driver_run(lmc_model *m, const lmc_pass *p, const lmc_windows *win,
                   const lmc_driver_opts *o, cJSON *summary, lmc_error *err);

#endif
