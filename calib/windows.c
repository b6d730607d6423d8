#include "windows.h"

#include <stdlib.h>
#include <string.h>

/* Python's random module: MT19937 seeded by init_by_array over the 32-bit
 * words of the seed, randint(a, b) = a + randbelow(b - a + 1) by rejection
 * on getrandbits(bit_length). The GPTQ/SparseGPT/Wanda references draw
 * their calibration crops with random.seed(seed); random.randint(0, n -
 * seqlen - 1), so the same generator gives the same windows. */
typedef struct mt19937 {
    uint32_t mt[624];
    int mti;
} mt19937;

static void mt_init(mt19937 *m, uint32_t s)
{
    m->mt[0] = s;
    for (int i = 1; i < 624; i++)
        m->mt[i] = 1812433253u * (m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) + (uint32_t)i;
    m->mti = 624;
}

static void mt_init_by_array(mt19937 *m, const uint32_t *key, int len)
{
    mt_init(m, 19650218u);
    int i = 1, j = 0;
    for (int k = 624 > len ? 624 : len; k; k--) {
        m->mt[i] = (m->mt[i] ^ ((m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) * 1664525u)) + key[j] +
                   (uint32_t)j;
        i++;
        j++;
        if (i >= 624) {
            m->mt[0] = m->mt[623];
            i = 1;
        }
        if (j >= len)
            j = 0;
    }
    for (int k = 623; k; k--) {
        m->mt[i] = (m->mt[i] ^ ((m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) * 1566083941u)) -
                   (uint32_t)i;
        i++;
        if (i >= 624) {
            m->mt[0] = m->mt[623];
            i = 1;
        }
    }
    m->mt[0] = 0x80000000u;
}

static uint32_t mt_next(mt19937 *m)
{
    if (m->mti >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->mt[k] & 0x80000000u) | (m->mt[(k + 1) % 624] & 0x7fffffffu);
            m->mt[k] = m->mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        m->mti = 0;
    }
    uint32_t y = m->mt[m->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* random.randbelow(n) for 0 < n < 2^32 */
static uint32_t mt_below(mt19937 *m, uint32_t n)
{
    int k = 0;
    while (k < 32 && (n >> k))
        k++;
    uint32_t r;
    do
        r = mt_next(m) >> (32 - k);
    while (r >= n);
    return r;
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
    if (ntok - seqlen > (int64_t)UINT32_MAX)
        return lmc_fail(err, "%s: %lld tokens: calibration texts beyond 2^32 tokens are not "
                        "supported", source, (long long)ntok);
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    mt19937 mt;
    mt_init_by_array(&mt, key, key[1] ? 2 : 1);
    uint32_t range = (uint32_t)(ntok - seqlen); /* randint(0, ntok - seqlen - 1) */
    for (int k = 0; k < nsamples; k++) {
        uint64_t start = mt_below(&mt, range);
        memcpy(out->ids + (size_t)k * seqlen, ids + start, (size_t)seqlen * sizeof(int32_t));
    }
    return 0;
}

void lmc_windows_free(lmc_windows *w)
{
    free(w->ids);
    memset(w, 0, sizeof *w);
}
