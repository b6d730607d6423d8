/* The pass interface. A pass declares the statistics it needs and compresses
 * one block at a time; driver.c owns the loop over blocks, the
 * calibration forward, the re-run of the compressed block, progress and
 * timing. Passes talk to the model only through this context. */
#ifndef LMC_PASS_H
#define LMC_PASS_H

#include <cjson/cJSON.h>

#include "stats.h"
#include "../core/model.h"
#include "../eval/forward.h"

typedef struct lmc_pass_ctx {
    lmc_model *model;           /* replace tensors with lmc_model_set_tensor */
    const lmc_weights *w;       /* cfg and embeddings; blocks may be partial */
    int layer;
    const lmc_block_w *bw;      /* this block's weights, fp32, before compression */
    const lmc_block_stats *stats; /* NULL for passes without calibration */
    const float *x_in;          /* block inputs [nwin][seqlen][hidden], or NULL */
    int nwin, seqlen;
    lmc_scratch *scratch;       /* for passes that run the block themselves */
    cJSON *report;              /* array: append one object per compressed tensor */
    int warnings;               /* incremented for each warning printed */
} lmc_pass_ctx;

typedef struct lmc_pass {
    const char *name;
    unsigned stats;  /* LMC_STAT_* flags; 0 means the pass needs no calibration */
    const void *opts; /* the pass's own options */
    int (*compress_block)(const struct lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err);
    /* Optional: called once before block 0 / after the last block. */
    int (*begin)(const struct lmc_pass *p, lmc_model *m, lmc_error *err);
    int (*end)(const struct lmc_pass *p, lmc_model *m, cJSON *summary, lmc_error *err);
} lmc_pass;

/* Decode the current weight tensor blk.<layer>.<role>.weight to fp32
 * (caller frees). */
int lmc_pass_load_linear(const lmc_pass_ctx *ctx, const char *role, float **w, int64_t *rows,
                         int64_t *cols, lmc_error *err);

#endif
