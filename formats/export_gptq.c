/* GPTQ "v1" tensors as AutoGPTQ's QuantLinear stores them (and GPTQModel,
 * transformers, vLLM and TGI load them), checkpoint_format "gptq":
 *
 *   qweight int32 [in * bits / 32, out]: column o is the bit stream of the
 *           codes of output o, input after input, LSB first: code i occupies
 *           bits [i*bits, (i+1)*bits) of the stream, bit b of the stream is
 *           bit b % 32 of row b / 32. For 2, 4 and 8 bits that is 32/bits
 *           codes per word; 3-bit codes spill across words (32 codes in
 *           three words), exactly AutoGPTQ's pack() loop.
 *   qzeros  int32 [groups, out * bits / 32]: zero - 1 per group and
 *           output, packed the same way along the outputs.
 *   scales  fp16 [groups, out]
 *   g_idx   int32 [in]: the group of each input (act-order included).
 * A loader decodes w = scale * (q - (qzero + 1)), lmc's scale * (q - z):
 * exact whenever zero - 1 fits in bits bits, i.e. zero >= 1. A zero of 0
 * (an asymmetric group with no negative weight) cannot be stored in this
 * format: such tensors are refused. */
#include <stdio.h>
#include <string.h>

#include "export_internal.h"

int lmc_gptq_refuse(const lmc_qlinear *q, char *why, size_t nwhy)
{
    if (q->bits != 2 && q->bits != 3 && q->bits != 4 && q->bits != 8) {
        snprintf(why, nwhy, "%d-bit codes (GPTQ loaders pack 2, 3, 4 or 8 bits)", q->bits);
        return 1;
    }
    if (q->in % 32 || q->out % 32) {
        snprintf(why, nwhy, "in or out features not a multiple of 32 (GPTQ loaders size qweight "
                            "as in / 32 * bits rows and qzeros as out / 32 * bits columns)");
        return 1;
    }
    for (int64_t k = 0; k < q->out * q->ng; k++)
        if (q->zeros[k] == 0) {
            snprintf(why, nwhy, "a zero point of 0 in some group (GPTQ v1 stores zero - 1 in "
                                "%d bits)",
                     q->bits);
            return 1;
        }
    return 0;
}

/* OR value v (bits wide) into a 32-bit word stream at bit position p. */
static void put_bits(uint32_t *words, int64_t stride, uint64_t p, uint32_t v, int bits)
{
    uint64_t w = p / 32;
    unsigned s = (unsigned)(p % 32);
    words[w * (uint64_t)stride] |= v << s;
    if (s + (unsigned)bits > 32)
        words[(w + 1) * (uint64_t)stride] |= v >> (32 - s);
}

void lmc_gptq_pack(const lmc_qlinear *q, int64_t col0, int64_t out_total, uint32_t *qweight,
                   uint32_t *qzeros, uint16_t *scales)
{
    const int b = q->bits;
    /* qweight column col0 + o is the row's code stream, word after word
     * (words strided by out_total); columns are independent */
#pragma omp parallel for schedule(static) if (q->out * q->in > 65536)
    for (int64_t o = 0; o < q->out; o++) {
        const uint8_t *c = q->codes + o * q->in;
        uint32_t *col = qweight + col0 + o;
        uint64_t acc = 0, w = 0;
        int have = 0;
        for (int64_t i = 0; i < q->in; i++) {
            acc |= (uint64_t)c[i] << have;
            if ((have += b) >= 32) {
                col[w++ * (uint64_t)out_total] = (uint32_t)acc;
                acc >>= 32;
                have -= 32;
            }
        }
    }
    for (int64_t o = 0; o < q->out; o++) {
        for (int64_t g = 0; g < q->ng; g++) {
            put_bits(qzeros + g * (out_total * b / 32), 1, (uint64_t)((col0 + o) * b),
                     (uint32_t)(q->zeros[o * q->ng + g] - 1), b);
            scales[g * out_total + col0 + o] = q->sbits[o * q->ng + g];
        }
    }
}
