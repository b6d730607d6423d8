/* The sequential layer-by-layer driver shared by every pass:
 *   embeddings -> for each block: run it on the captured inputs while the
 *   backend accumulates the statistics the pass asked for; let the pass
 *   replace the block's tensors; reload the block from the new tensors and
 *   run it again to produce the next block's inputs.
 * Memory: the calibration activations and one block on the backend's
 * device, one block's host copies for passes that ask for them; the rest
 * of the model stays memory-mapped. */
#ifndef LMC_DRIVER_H
#define LMC_DRIVER_H

#include <cjson/cJSON.h>

#include "pass.h"
#include "windows.h"

typedef struct lmc_driver_opts {
    lmc_backend_opts backend; /* device and precision of the calibration forward */
    /* resume: blocks before start_layer were compressed by an earlier run
     * (their tensors are in the model): they are only run forward */
    int start_layer;
    /* after each block is compressed and the next block's inputs computed:
     * reports is the array of this block's tensor reports (may be NULL) */
    int (*block_done)(void *ctx, lmc_model *m, int layer, const cJSON *reports, lmc_error *err);
    void *block_done_ctx;
    cJSON *earlier_reports; /* resume: the finished blocks' reports (copied into the summary) */
} lmc_driver_opts;

void lmc_driver_opts_default(lmc_driver_opts *o);

/* Runs pass p over every block of m. win is required when p->stats != 0.
 * summary receives {"layers": [...per tensor reports...], "seconds": {...},
 * "device": ..., "device_peak_bytes": ...}. Progress goes to the log
 * (core/log.h) after each block. */
int lmc_driver_run(lmc_model *m, const lmc_pass *p, const lmc_windows *win,
                   const lmc_driver_opts *o, cJSON *summary, lmc_error *err);

#endif
