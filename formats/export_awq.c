/* AutoAWQ GEMM tensors (WQLinear_GEMM.from_linear, loaded by transformers'
 * AWQ integration and vLLM), 4-bit:
 *
 *   qweight int32 [in, out / 8]: word j of input row i holds the codes of
 *           outputs 8j .. 8j+7, nibble k (bits 4k..4k+3) holding output
 *           8j + [0, 2, 4, 6, 1, 3, 5, 7][k] (AWQ's interleaved order).
 *   qzeros  int32 [in / group, out / 8]: the zeros, raw, packed alike.
 *   scales  fp16 [in / group, out]
 * A loader decodes w = scale * (q - zero) with the group of input i being
 * i / group: no g_idx, no short last group, no one-group-per-row (vLLM
 * needs group_size > 0), 4 bits only; anything else is refused. */
#include <stdio.h>
#include <string.h>

#include "export_internal.h"

/* nibble k of a word holds output 8j + ORDER[k]; output 8j + r sits at nibble SLOT[r] */
static const int SLOT[8] = {0, 4, 1, 5, 2, 6, 3, 7};

int lmc_awq_refuse(const lmc_qlinear *q, char *why, size_t nwhy)
{
    if (q->bits != 4) {
        snprintf(why, nwhy, "%d-bit codes (AWQ GEMM is 4-bit only)", q->bits);
        return 1;
    }
    if (q->t->enc.group <= 0) {
        snprintf(why, nwhy, "one group per row (AWQ loaders need a group size dividing "
                            "in_features)");
        return 1;
    }
    if (q->in % q->g) {
        snprintf(why, nwhy, "in_features not a multiple of the group size %lld (AWQ has no "
                            "short last group)",
                 (long long)q->g);
        return 1;
    }
    if (q->out % 8) {
        snprintf(why, nwhy, "out_features not a multiple of 8 (AWQ packs 8 outputs per word)");
        return 1;
    }
    if (!q->plain_gidx) {
        snprintf(why, nwhy, "act-order g_idx (AWQ has none: group = input / group size)");
        return 1;
    }
    return 0;
}

void lmc_awq_pack(const lmc_qlinear *q, int64_t col0, int64_t out_total, uint32_t *qweight,
                  uint32_t *qzeros, uint16_t *scales)
{
    const int64_t wpr = out_total / 8; /* words per row */
    /* word column j holds outputs 8j..8j+7 and no other: columns in parallel,
     * each word assembled from its 8 codes and stored once */
    const int64_t j0 = col0 / 8, j1 = (col0 + q->out + 7) / 8;
#pragma omp parallel for schedule(static) if (q->out * q->in > 65536)
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *c[8];
        for (int r = 0; r < 8; r++) {
            int64_t o = 8 * j + r - col0;
            c[r] = o >= 0 && o < q->out ? q->codes + o * q->in : NULL;
        }
        for (int64_t i = 0; i < q->in; i++) {
            uint32_t w = 0;
            for (int r = 0; r < 8; r++)
                if (c[r])
                    w |= (uint32_t)c[r][i] << (4u * (unsigned)SLOT[r]);
            qweight[i * wpr + j] |= w;
        }
    }
    for (int64_t o = 0; o < q->out; o++) {
        int64_t oc = col0 + o;
        unsigned shift = 4u * (unsigned)SLOT[oc % 8];
        for (int64_t g = 0; g < q->ng; g++) {
            qzeros[g * wpr + oc / 8] |= (uint32_t)q->zeros[o * q->ng + g] << shift;
            scales[g * out_total + oc] = q->sbits[o * q->ng + g];
        }
    }
}
