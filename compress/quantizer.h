/* Min/max integer quantizer (IST-DASLab quant.py, Quantizer.find_params with
 * perchannel=True) and the result shared by every weight quantizer (RTN,
 * GPTQ, AWQ): codes + per-group scales/zeros + g_idx, ready to pack into
 * LMC_ENC_QGROUP.
 *
 * One deliberate deviation from the reference: the scale is rounded to fp16
 * (the precision LMC_ENC_QGROUP stores) BEFORE the zero and the codes are
 * computed from it, so what the solver assumes is exactly what the container
 * dequantizes to. The reference keeps the scale in fp32 while quantizing
 * and only casts when exporting. The difference is below 2^-11 relative on
 * the scale. */
#ifndef LMC_QUANTIZER_H
#define LMC_QUANTIZER_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/encoding.h"
#include "../core/error.h"
#include "../core/qgroup.h"

static inline int lmc_quant_maxq(int bits) { return (1 << bits) - 1; }

/* Fit (scale, zero) to the n values x (one row, or one group of one row):
 *   xmin = min(0, min x), xmax = max(0, max x)
 *   sym: xmax = max(|xmin|, xmax); xmin = -xmax if xmin < 0
 *   xmin == xmax == 0: xmin = -1, xmax = 1
 *   scale = fp16((xmax - xmin) / maxq), clamped to the finite positive fp16 range
 *   zero  = sym ? (maxq+1)/2 : clamp(round_half_even(-xmin / scale), 0, maxq)
 * Like the reference, sym keeps xmin = 0 for an all-nonnegative input (then
 * the top half of the range clips): we reproduce it rather than fix it. */
void lmc_quant_fit(int bits, int sym, const float *x, int64_t n, float *scale, uint8_t *zero);

/* q = clamp(round_half_even(x / scale) + zero, 0, maxq), as the reference
 * (division, not a reciprocal multiply, so ties land where torch puts them). */
static inline int lmc_quant_code(float x, float scale, int zero, int maxq)
{
    float q = rintf(x / scale) + (float)zero;
    if (!(q >= 0.0f)) /* also NaN */
        return 0;
    if (q > (float)maxq)
        return maxq;
    return (int)q;
}

/* Quantize-dequantize one value. */
static inline float lmc_quant_apply(float x, float scale, int zero, int maxq, uint8_t *code)
{
    int c = lmc_quant_code(x, scale, zero, maxq);
    if (code)
        *code = (uint8_t)c;
    return lmc_qgroup_dequant(scale, c, zero);
}

/* A quantized matrix, in the original column order. */
typedef struct lmc_qresult {
    int64_t rows, cols, ngroups;
    int bits, group, sym;
    uint8_t *codes;  /* [rows][cols] */
    float *scales;   /* [rows][ngroups], fp16-representable */
    uint8_t *zeros;  /* [rows][ngroups]; 2^(bits-1) when sym */
    int32_t *g_idx;  /* [cols] group of each column */
    int has_gidx;    /* g_idx differs from c / group: the encoding must store it */
} lmc_qresult;

/* Allocate the arrays (g_idx set to c / group, has_gidx 0). group -1 = one
 * group per row. */
int lmc_qresult_alloc(lmc_qresult *q, int64_t rows, int64_t cols, int bits, int group, int sym,
                      lmc_error *err);
void lmc_qresult_free(lmc_qresult *q);
/* Recompute has_gidx from g_idx. */
void lmc_qresult_update_has_gidx(lmc_qresult *q);
/* The LMC_ENC_QGROUP encoding and a malloc'ed blob holding q. */
int lmc_qresult_encode(const lmc_qresult *q, lmc_encoding *enc, uint8_t **blob, size_t *nbytes,
                       lmc_error *err);
/* Dequantize q into out[rows][cols] (same values as the encoding's to_f32). */
void lmc_qresult_dequant(const lmc_qresult *q, float *out);

/* Check bits (2..8) and group (-1 or > 0); -1 with a message naming the option. */
int lmc_quant_opts_check(int bits, int group, lmc_error *err);

#endif
