/* libFuzzer target: the .lmc container reader (lmc_container_parse, the code
 * lmc_container_load runs on the mapped file), then what a loaded model is
 * used for: decoding every tensor through the encoding table (as eval does),
 * the encodings' own kernels and the finiteness check.
 * Input: a whole container image.
 *
 * Checksums would stop almost every mutation at the first CRC, so before
 * parsing, the target repairs them the way a crafted file would carry them:
 * when the header is JSON, every blob's crc32 is recomputed from the bytes
 * it designates (the header is then reprinted by cJSON and the data area
 * kept), and the preamble's header CRC always. A header that is not JSON
 * goes through byte for byte. The CRC mismatch paths themselves are covered
 * by tests/test_container.c. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <zlib.h>

#include "../core/encoding.h"
#include "../formats/container.h"
#include "fuzz_util.h"

#define SRC "fuzz.lmc"
#define MAX_DECODE (1 << 22) /* elements; larger tensors are only parsed */

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void wr(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_blob(cJSON *o, const uint8_t *data, uint64_t dsize)
{
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(o, "offset");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "nbytes");
    if (!cJSON_IsNumber(off) || !cJSON_IsNumber(n) ||
        !cJSON_GetObjectItemCaseSensitive(o, "crc32"))
        return;
    double a = off->valuedouble, b = n->valuedouble;
    if (!(a >= 0 && b >= 0 && a <= (double)dsize && b <= (double)dsize - a))
        return;
    uLong c = crc32(0L, data + (uint64_t)a, (uInt)(uint64_t)b);
    cJSON_ReplaceItemInObjectCaseSensitive(o, "crc32", cJSON_CreateNumber((double)c));
}

static void fix_blobs(cJSON *h, const uint8_t *data, uint64_t dsize)
{
    cJSON *tok = cJSON_GetObjectItemCaseSensitive(h, "tokenizer");
    if (cJSON_IsObject(tok))
        fix_blob(tok, data, dsize);
    cJSON *o;
    cJSON *ts = cJSON_GetObjectItemCaseSensitive(h, "tensors");
    if (cJSON_IsArray(ts))
        cJSON_ArrayForEach(o, ts) if (cJSON_IsObject(o)) fix_blob(o, data, dsize);
}

/* A copy of the input with consistent checksums (see the top), in either
 * layout: version 1 (header after a 24-byte preamble), version 2 (data from
 * byte 64, the header at the offset in bytes 24..32, ending the file). */
static uint8_t *repair(const uint8_t *in, size_t size, size_t *out_size)
{
    uint8_t *buf = NULL;
    *out_size = size;
    int v2 = size >= 64 && rd64(in + 8) % (1ull << 32) == 2;
    uint64_t hlen = size >= 24 ? rd64(in + 16) : 0;
    uint64_t hoff = v2 ? rd64(in + 24) : 24;
    if (size < 24 || hoff > size || hlen > size - hoff || (v2 && hoff < 64)) {
        buf = malloc(size ? size : 1);
        memcpy(buf, in, size);
        return buf;
    }
    uint64_t ds = v2 ? 64 : (24 + hlen + 63) / 64 * 64, dend = v2 ? hoff : size;
    cJSON *h = ds <= dend ? cJSON_ParseWithLength((const char *)in + hoff, hlen) : NULL;
    char *text = NULL;
    if (cJSON_IsObject(h)) {
        fix_blobs(h, in + ds, dend - ds);
        text = cJSON_PrintUnformatted(h);
    }
    cJSON_Delete(h);
    if (text && v2) {
        size_t nh = strlen(text);
        *out_size = hoff + nh;
        buf = calloc(1, *out_size);
        memcpy(buf, in, hoff);
        wr(buf + 16, nh, 8);
        memcpy(buf + hoff, text, nh);
        free(text);
        hlen = nh;
    } else if (text) {
        size_t nh = strlen(text), nds = (24 + nh + 63) / 64 * 64;
        *out_size = nds + (size - ds);
        buf = calloc(1, *out_size);
        memcpy(buf, in, 16);
        wr(buf + 16, nh, 8);
        memcpy(buf + 24, text, nh);
        memcpy(buf + nds, in + ds, size - ds);
        free(text);
        hlen = nh;
        hoff = 24;
    } else {
        buf = malloc(size);
        memcpy(buf, in, size);
    }
    wr(buf + 12, crc32(0L, buf + hoff, (uInt)hlen), 4);
    return buf;
}

static void use_tensor(const lmc_tensor *t)
{
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    LMC_FUZZ_ASSERT(tr != NULL, "tensor %s: encoding %d accepted but unknown", t->name,
                    (int)t->enc.id);
    int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    char desc[128];
    lmc_enc_describe(&t->enc, desc, sizeof desc);
    if (rows * cols > MAX_DECODE)
        return;
    lmc_error err = {{0}};
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    if (tr->to_f32(&t->enc, t->data, rows, cols, w, &err) != 0)
        LMC_FUZZ_ASSERT(err.msg[0], "tensor %s: decode failed without a message", t->name);
    if (tr->effective_macs) {
        int64_t macs = tr->effective_macs(&t->enc, t->data, rows, cols);
        LMC_FUZZ_ASSERT(macs >= 0 && macs <= rows * cols, "tensor %s: %lld macs", t->name,
                        (long long)macs);
    }
    void *state = NULL;
    if (tr->kernel_prepare && tr->kernel_prepare(&t->enc, t->data, rows, cols, &state, &err) == 0) {
        float *x = malloc((size_t)cols * 2 * sizeof *x), *y = calloc((size_t)rows * 2, sizeof *y);
        for (int64_t i = 0; i < 2 * cols; i++)
            x[i] = (float)((i % 7) - 3) * 0.25f;
        tr->kernel_apply(state, x, 2, y, 0);
        tr->kernel_free(state);
        free(x);
        free(y);
    }
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n;
    uint8_t *buf = repair(data, size, &n);
    lmc_model *m;
    lmc_error err = {{0}};
    if (lmc_container_parse(buf, n, SRC, &m, &err) != 0) {
        lmc_fuzz_check_error(&err, SRC);
        free(buf);
        return 0;
    }
    for (int i = 0; i < m->n_tensors; i++)
        use_tensor(&m->tensors[i]);
    if (lmc_model_check_finite(m, &err) != 0)
        lmc_fuzz_check_error(&err, SRC);
    lmc_model_free(m);
    free(buf);
    return 0;
}
