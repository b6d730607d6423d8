#include "windows.h"

#include <stdlib.h>
#include <string.h>

uint64_t lmc_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int lmc_windows_sample(const int32_t *ids, int64_t ntok, int nsamples, int seqlen, uint64_t seed,
                       lmc_windows *out, const char *source, lmc_error *err)
{
    memset(out, 0, sizeof *out);
    if (nsamples <= 0 || seqlen <= 1)
        return lmc_fail(err, "%s: need at least one window of at least 2 tokens", source);
    if (ntok < (int64_t)seqlen + 1)
        return lmc_fail(err, "%s: %lld tokens, fewer than one calibration window of %d + 1",
                        source, (long long)ntok, seqlen);
    out->ids = malloc((size_t)nsamples * (size_t)seqlen * sizeof(int32_t));
    if (!out->ids)
        return lmc_fail(err, "%s: out of memory for %d calibration windows", source, nsamples);
    out->n = nsamples;
    out->seqlen = seqlen;
    out->source_tokens = ntok;
    uint64_t st = seed;
    uint64_t range = (uint64_t)(ntok - seqlen); /* starts 0 .. ntok-seqlen-1 */
    for (int k = 0; k < nsamples; k++) {
        uint64_t start = lmc_splitmix64(&st) % range;
        memcpy(out->ids + (size_t)k * seqlen, ids + start, (size_t)seqlen * sizeof(int32_t));
    }
    return 0;
}

void lmc_windows_free(lmc_windows *w)
{
    free(w->ids);
    memset(w, 0, sizeof *w);
}
