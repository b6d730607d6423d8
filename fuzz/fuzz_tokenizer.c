/* libFuzzer target: tokenizer.json loading (lmc_tokenizer_from_json) and
 * encoding/decoding. Input: tokenizer.json text, optionally followed by a
 * NUL and the text to encode (at most 512 bytes of it; without a NUL a fixed
 * sample is encoded). JSON text cannot hold a raw NUL, so the split is
 * unambiguous.
 *
 * Properties: a rejection names the source; encoded ids lie in
 * [0, vocab_size); decode accepts what encode produced and any id at all
 * (unknown ids are skipped). */
#include <stdint.h>

#include "../formats/tokenizer.h"
#include "fuzz_util.h"

#define SRC "fuzz/tokenizer.json"

static const char sample[] = "Hello, World! It's 2024: caf\xc3\xa9 \xe2\x80\x94 na\xc3\xafve "
                             "<s> x</s>\n\t  spaced   12345 \xf0\x9f\x98\x80 \xff\xfe end.";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    const char *text = sample;
    size_t tlen = sizeof sample - 1;
    if (nul) {
        text = (const char *)nul + 1;
        tlen = size - jlen - 1;
        if (tlen > 512)
            tlen = 512;
    }
    lmc_tokenizer *t;
    lmc_error err = {{0}};
    if (lmc_tokenizer_from_json((const char *)data, jlen, SRC, &t, &err) != 0) {
        lmc_fuzz_check_error(&err, SRC);
        return 0;
    }
    int vocab = lmc_tokenizer_vocab_size(t);
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (lmc_tokenizer_encode(t, text, tlen, special, &ids, &n, &err) != 0) {
            lmc_fuzz_check_error(&err, SRC);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            LMC_FUZZ_ASSERT(ids[i] >= 0 && ids[i] < vocab, "id %d of %d", ids[i], vocab);
        char *back = NULL;
        size_t blen = 0;
        if (lmc_tokenizer_decode(t, ids, n, special, &back, &blen, &err) != 0)
            lmc_fuzz_check_error(&err, SRC);
        else
            LMC_FUZZ_ASSERT(back[blen] == 0, "decoded text of %zu bytes not terminated", blen);
        free(back);
        free(ids);
    }
    /* decode arbitrary ids taken from the text bytes, out-of-range ones too */
    int32_t raw[64];
    size_t nraw = 0;
    for (size_t i = 0; i + 4 <= tlen && nraw < 64; i += 4, nraw++)
        memcpy(&raw[nraw], text + i, 4);
    for (size_t i = 0; i < nraw; i++)
        if (i % 2)
            raw[i] = (int32_t)((uint32_t)raw[i] % (uint32_t)(vocab + 2)) - 1;
    char *back = NULL;
    size_t blen = 0;
    if (lmc_tokenizer_decode(t, raw, nraw, 0, &back, &blen, &err) != 0)
        lmc_fuzz_check_error(&err, SRC);
    free(back);
    lmc_tokenizer_free(t);
    return 0;
}
