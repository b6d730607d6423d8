/* Calibration windows: token windows sampled from a calibration text. */
#ifndef LMC_WINDOWS_H
#define LMC_WINDOWS_H

#include <stdint.h>

#include "../core/error.h"

typedef struct lmc_windows {
    int n;          /* number of windows */
    int seqlen;     /* tokens per window */
    int32_t *ids;   /* [n][seqlen] */
    int64_t source_tokens; /* tokens in the whole calibration text */
    char sha256[65];       /* of the calibration file's bytes */
} lmc_windows;

/* Sampling (docs/DESIGN.md): the whole text is tokenized once with the
 * model's default special tokens; window k starts at
 * random.randint(0, tokens - seqlen - 1) of Python's generator after
 * random.seed(seed) (MT19937, reimplemented here), exactly as the GPTQ,
 * SparseGPT and Wanda references draw their calibration crops, so the same
 * seed selects the same windows as they do. Windows may overlap. Fails when
 * the text has fewer than seqlen + 1 tokens. */
int lmc_windows_sample(const int32_t *ids, int64_t ntok, int nsamples, int seqlen, uint64_t seed,
                       lmc_windows *out, const char *source, lmc_error *err);
void lmc_windows_free(lmc_windows *w);


#endif
