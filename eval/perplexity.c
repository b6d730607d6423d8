#include "perplexity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/fileio.h"
#include "forward.h"

int lmc_ppl_begin(const int32_t *ids, int64_t n, int vocab, const lmc_ppl_opts *o, int64_t *nw,
                  lmc_error *err)
{
    const char *src = o->source ? o->source : "input";
    if (o->seqlen < 2)
        return lmc_fail(err, "sequence length %d: need at least 2 tokens per window", o->seqlen);
    if (n < o->seqlen)
        return lmc_fail(err, "%s: %lld tokens, fewer than one window of %d", src, (long long)n,
                        o->seqlen);
    *nw = n / o->seqlen;
    if (o->max_windows > 0 && o->max_windows < *nw)
        *nw = o->max_windows;
    /* every id first: a bad id at the end should not cost a whole run */
    for (int64_t i = 0; i < *nw * o->seqlen; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return lmc_fail(err, "%s: token id %d at position %lld is outside the model's "
                                 "vocabulary of %d",
                            src, (int)ids[i], (long long)i, vocab);
    return 0;
}

int lmc_ppl_end(int64_t n, int64_t nw, double total, double seconds, const lmc_ppl_opts *o,
                lmc_ppl_result *r, lmc_error *err)
{
    r->seconds = seconds;
    r->tokens = n;
    r->windows = nw;
    r->scored = nw * (int64_t)(o->seqlen - 1);
    r->nll = total;
    r->ppl = exp(total / (double)r->scored);
    r->tokens_per_second = seconds > 0 ? (double)(nw * o->seqlen) / seconds : 0;
    if (!isfinite(r->ppl))
        return lmc_fail(err, "%s: perplexity is not finite (mean NLL %g)",
                        o->source ? o->source : "input", total / (double)r->scored);
    return 0;
}

int lmc_perplexity(const lmc_weights *w, const int32_t *ids, int64_t n, const lmc_ppl_opts *o,
                   lmc_ppl_result *r, lmc_error *err)
{
    memset(r, 0, sizeof *r);
    int64_t nw;
    if (lmc_ppl_begin(ids, n, w->cfg->vocab, o, &nw, err) < 0)
        return -1;
    lmc_scratch *s = lmc_scratch_new(w->cfg, o->seqlen);
    if (!s)
        return lmc_fail(err, "out of memory for windows of %d tokens", o->seqlen);
    double total = 0, t0 = lmc_now();
    for (int64_t k = 0; k < nw; k++) {
        double nll;
        if (lmc_forward_window_nll(w, ids + k * o->seqlen, o->seqlen, s, &nll, NULL, err) < 0) {
            lmc_scratch_free(s);
            char pre[600];
            snprintf(pre, sizeof pre, "%s, window %lld", o->source ? o->source : "input",
                     (long long)k);
            return lmc_fail_prefix(err, pre);
        }
        total += nll;
        if (o->progress)
            o->progress(o->progress_ctx, k + 1, nw, lmc_now() - t0);
    }
    lmc_scratch_free(s);
    return lmc_ppl_end(n, nw, total, lmc_now() - t0, o, r, err);
}

int lmc_read_ids_i32(const char *path, int32_t **ids, int64_t *n, lmc_error *err)
{
    *ids = NULL;
    *n = 0;
    char *data;
    size_t size;
    if (lmc_read_file(path, &data, &size, err) < 0)
        return -1;
    if (size == 0) {
        free(data);
        return lmc_fail(err, "%s: empty file", path);
    }
    if (size % 4) {
        free(data);
        return lmc_fail(err, "%s: %zu bytes, not a whole number of int32 ids", path, size);
    }
    int32_t *out = malloc(size);
    if (!out) {
        free(data);
        return lmc_fail(err, "%s: out of memory", path);
    }
    const unsigned char *b = (const unsigned char *)data;
    for (size_t i = 0; i < size / 4; i++) /* little-endian whatever the host */
        out[i] = (int32_t)((uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                           (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24);
    free(data);
    *ids = out;
    *n = (int64_t)(size / 4);
    return 0;
}
