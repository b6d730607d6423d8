/* The pass interface. A pass declares the statistics it needs and compresses
 * one block at a time; driver.c owns the loop over blocks, the calibration
 * forward on the chosen backend (eval/backend.h), the re-run of the
 * compressed block, progress and timing. Passes talk to the model only
 * through this context. */
#ifndef LMC_PASS_H
#define LMC_PASS_H

#include <cjson/cJSON.h>

#include "../core/model.h"
#include "../eval/backend.h"
#include "../eval/forward.h"
#include "../eval/stats.h"

/* What a pass reads beyond the statistics (lmc_pass.needs): the driver
 * fills the matching fields of the context before compress_block. */
enum {
    LMC_PASS_BLOCK_W = 1u << 0, /* bw: the block's fp32 weights before compression */
    LMC_PASS_INPUTS = 1u << 1,  /* x_in on the host, w and scratch to run the CPU forward */
};

typedef struct lmc_pass_ctx {
    lmc_model *model;           /* replace tensors with lmc_model_set_tensor */
    int layer;
    lmc_block_stats *stats;     /* NULL for passes without calibration; a solver may take
                                   a site's Hessian (lmc_block_stats_take_hessian) */
    int nwin, seqlen;           /* calibration windows (0 without calibration) */
    lmc_backend *backend;       /* the calibration backend, or NULL: device solvers run
                                   there (compress/site_hinv.h) */
    lmc_device device;          /* the device asked for (passes without calibration have
                                   no backend but may still compute there) */
    cJSON *report;              /* array: append one object per compressed tensor */
    int warnings;               /* incremented for each warning logged */
    /* LMC_PASS_BLOCK_W */
    const lmc_block_w *bw;
    /* LMC_PASS_INPUTS */
    const lmc_weights *w;       /* cfg and embeddings; blocks not filled */
    const float *x_in;          /* block inputs [nwin][seqlen][hidden] */
    lmc_scratch *scratch;       /* for running the block on the CPU */
} lmc_pass_ctx;

typedef struct lmc_pass {
    const char *name;
    unsigned stats;        /* LMC_STAT_* flags; 0 means the pass needs no calibration */
    unsigned device_stats; /* of those, what its device solver reads where the backend
                              computed them (not copied to the host unless on the CPU) */
    unsigned needs;        /* LMC_PASS_* */
    unsigned device_skips; /* of needs, what the pass does not read when the backend is
                              a GPU (it runs its search there) */
    int64_t device_capture_tokens; /* a GPU backend keeps every site's inputs of this many
                                      tokens of the first windows (whole windows, at
                                      least one, at most all; lmc_pass_capture_windows) */
    int streams;           /* a block's tensors are final once compress_block returns, and
                              end() reads none of them: they can be written out as each
                              block finishes (bounded memory) and a killed run resumed
                              after its last finished block */
    const void *opts;      /* the pass's own options */
    int (*compress_block)(const struct lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err);
    /* Optional: called once before block 0 / after the last block. */
    int (*begin)(const struct lmc_pass *p, lmc_model *m, lmc_error *err);
    int (*end)(const struct lmc_pass *p, lmc_model *m, cJSON *summary, lmc_error *err);
    /* Optional: called once when the driver is done with the pass, after
     * end() or on a failure, before the backend closes (what the pass kept
     * from block to block, on the backend's device too). */
    void (*release)(const struct lmc_pass *p);
} lmc_pass;

/* Windows of seqlen tokens among nwin that hold `tokens` tokens: at least
 * one, at most nwin (what AWQ's search runs on). */
int lmc_pass_capture_windows(int64_t tokens, int nwin, int seqlen);

/* Decode the current weight tensor blk.<layer>.<role>.weight to fp32
 * (caller frees). */
int lmc_pass_load_linear(const lmc_pass_ctx *ctx, const char *role, float **w, int64_t *rows,
                         int64_t *cols, lmc_error *err);

#endif
