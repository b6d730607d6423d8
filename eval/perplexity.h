/* Perplexity under the project's protocol (../shared/README.md): the token
 * ids of a whole text, cut into non-overlapping windows of seqlen tokens
 * (remainder dropped); each window scores its seqlen-1 next-token
 * predictions; ppl = exp(total NLL / scored). */
#ifndef LMC_PERPLEXITY_H
#define LMC_PERPLEXITY_H

#include <stdint.h>

#include "weights.h"

typedef struct lmc_ppl_opts {
    int seqlen;           /* tokens per window (>= 2) */
    int64_t max_windows;  /* 0: every full window */
    const char *source;   /* name of the text or ids file, for messages */
    /* Called after each window (may be NULL). */
    void (*progress)(void *ctx, int64_t done, int64_t total, double seconds);
    void *progress_ctx;
} lmc_ppl_opts;

typedef struct lmc_ppl_result {
    double ppl;
    double nll;               /* total, nats */
    int64_t tokens;           /* ids in the text */
    int64_t windows;          /* evaluated */
    int64_t scored;           /* windows * (seqlen - 1) */
    double seconds;           /* forward time, windows only */
    double tokens_per_second; /* windows * seqlen / seconds */
} lmc_ppl_result;

/* Fails on fewer ids than one window ("SOURCE: 500 tokens, fewer than one
 * window of 1024"), an id outside the vocabulary (naming its position), or
 * a non-finite NLL (naming the window): never returns a NaN perplexity. */
int lmc_perplexity(const lmc_weights *w, const int32_t *ids, int64_t n, const lmc_ppl_opts *o,
                   lmc_ppl_result *r, lmc_error *err);

/* The protocol around any forward (the CPU one below, the CUDA one in
 * forward_cuda.h): lmc_ppl_begin checks seqlen, that one window fits and
 * every id to score is in the vocabulary, and sets *nw, the windows to
 * score; lmc_ppl_end fills r from their total NLL and fails on a
 * non-finite perplexity. */
int lmc_ppl_begin(const int32_t *ids, int64_t n, int vocab, const lmc_ppl_opts *o, int64_t *nw,
                  lmc_error *err);
int lmc_ppl_end(int64_t n, int64_t nw, double total, double seconds, const lmc_ppl_opts *o,
                lmc_ppl_result *r, lmc_error *err);

/* Read int32 little-endian token ids (a whole file; caller frees). */
int lmc_read_ids_i32(const char *path, int32_t **ids, int64_t *n, lmc_error *err);

#endif
