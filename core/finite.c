/* lmc_model_check_finite: the rule that weights are finite (docs/DESIGN.md,
 * "NaN and Inf"), checked once where a model enters a command that computes
 * with it or writes it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "model.h"

#define CHUNK 4096

/* Index of the first element of n dense values (F16, BF16 or F32 bits,
 * possibly unaligned) whose exponent is all ones (NaN or ±Inf), or -1. The
 * bit test on whole chunks vectorizes; only a chunk that has one is
 * searched element by element. */
static int64_t first_bad(lmc_enc_id id, const uint8_t *p, size_t n)
{
    size_t esz = id == LMC_ENC_F32 ? 4 : 2;
    uint32_t mask = id == LMC_ENC_F32 ? 0x7f800000u : id == LMC_ENC_F16 ? 0x7c00u : 0x7f80u;
    uint32_t u[CHUNK];
    uint16_t h[CHUNK];
    for (size_t k = 0; k < n; k += CHUNK) {
        size_t m = n - k < CHUNK ? n - k : CHUNK;
        if (esz == 2) {
            memcpy(h, p + k * 2, m * 2);
            for (size_t i = 0; i < m; i++)
                u[i] = h[i];
        } else {
            memcpy(u, p + k * 4, m * 4);
        }
        int any = 0;
        for (size_t i = 0; i < m; i++)
            any |= (u[i] & mask) == mask;
        if (any)
            for (size_t i = 0; i < m; i++)
                if ((u[i] & mask) == mask)
                    return (int64_t)(k + i);
    }
    return -1;
}

static float value_at(lmc_enc_id id, const uint8_t *p, int64_t i)
{
    float f;
    uint16_t h;
    if (id == LMC_ENC_F32) {
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    memcpy(&h, p + 2 * i, 2);
    return id == LMC_ENC_F16 ? lmc_f16_to_f32(h) : lmc_bf16_to_f32(h);
}

/* The map a tensor's data lies in, or NULL (heap copies, in-memory images). */
static const lmc_mmap *map_of(const lmc_model *m, const lmc_tensor *t)
{
    for (int i = 0; i < m->n_maps; i++) {
        const lmc_mmap *mp = &m->maps[i];
        if (mp->data && t->data >= mp->data && t->data + t->nbytes <= mp->data + mp->size)
            return mp;
    }
    return NULL;
}

int lmc_model_check_finite(const lmc_model *m, lmc_error *err)
{
    lmc_encodings_init();
    const char *src = m->source_path ? m->source_path : "model";
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
        size_t n = (size_t)(rows * cols);
        lmc_enc_id id = t->enc.id;
        int64_t bad;
        float v;
        if (id == LMC_ENC_F16 || id == LMC_ENC_BF16 || id == LMC_ENC_F32) {
            bad = first_bad(id, t->data, n);
            v = bad >= 0 ? value_at(id, t->data, bad) : 0;
            /* a scan of a mapped model must not leave it all resident */
            const lmc_mmap *mp = map_of(m, t);
            if (mp)
                lmc_mmap_release(mp, t->data, t->nbytes);
        } else {
            /* other encodings: the decoded values (scales, outliers, factors) */
            const lmc_enc_traits *tr = lmc_enc_get(id);
            float *w = malloc(n * sizeof *w);
            if (!w)
                return lmc_fail(err, "%s: tensor %s: out of memory decoding %zu values", src,
                                t->name, n);
            if (!tr || tr->to_f32(&t->enc, t->data, rows, cols, w, err) != 0) {
                free(w);
                char pre[1200];
                snprintf(pre, sizeof pre, "%s: tensor %s", src, t->name);
                return tr ? lmc_fail_prefix(err, pre)
                          : lmc_fail(err, "%s: unknown encoding %d", pre, (int)id);
            }
            bad = first_bad(LMC_ENC_F32, (const uint8_t *)w, n);
            v = bad >= 0 ? w[bad] : 0;
            free(w);
        }
        if (bad >= 0) {
            const char *what = isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
            if (t->ndim == 2)
                return lmc_fail(err, "%s: tensor %s: non-finite weight (%s) at [%lld, %lld]",
                                src, t->name, what, (long long)(bad / cols),
                                (long long)(bad % cols));
            return lmc_fail(err, "%s: tensor %s: non-finite weight (%s) at [%lld]", src,
                            t->name, what, (long long)bad);
        }
    }
    return 0;
}
