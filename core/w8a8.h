/* LMC_ENC_W8A8: SmoothQuant-style W8A8 linears. Weights are int8, symmetric
 * absmax per output row; at run time the kernel quantizes each token's
 * input row to int8 the same way (dynamic, per token), multiplies int8 x
 * int8 with int32 accumulation and rescales:
 *
 *   y[t][r] = (float)acc[t][r] * sw[r] * sx[t],   acc = sum_c qx[t][c] * qw[r][c]
 *   sw[r]   = max(max_c |W[r][c]|, 1e-5) / 127,   qw = clamp(rint(W / sw), -127, 127)
 *   sx[t]   = max(max_c |x[t][c]|, 1e-5) / 127,   qx = clamp(rint(x / sx), -127, 127)
 *
 * as mit-han-lab/smoothquant's fake_quant.py (quantize_weight_per_channel_absmax,
 * quantize_activation_per_token_absmax; torch.round is half-to-even, and
 * rint is too in the default rounding mode). Unlike the reference, which
 * keeps fake-quantized weights as fp16 products q*s, the scales are kept in
 * fp32 and the products are exact integers: eval computes what an int8
 * GEMM with fp32 epilogue would.
 *
 * Blob layout for a [rows, cols] weight (little-endian; sections start at
 * multiples of 4 bytes, padding bytes zero):
 *   1. codes   int8 [rows][cols], row-major
 *   2. scales  fp32 [rows]: sw
 *   3. smooth  fp32 [cols], only when has_smooth: unfolded smoothing scales;
 *              the kernel divides x[t][c] by smooth[c] before quantizing
 *              (then W was multiplied by smooth before its quantization).
 *              lmc smoothquant folds the scales into the preceding norm
 *              instead and writes has_smooth = 0.
 * Decoding (to_f32): w[r][c] = qw[r][c] * sw[r] (/ smooth[c]).
 *
 * int32 accumulation is exact while cols * 127 * 127 < 2^31: validate
 * rejects cols > LMC_W8A8_MAX_COLS. */
#ifndef LMC_W8A8_H
#define LMC_W8A8_H

#include <stddef.h>
#include <stdint.h>

#include "encoding.h"

#define LMC_W8A8_MAX_COLS 131072

extern const lmc_enc_traits lmc_enc_w8a8_traits;

typedef struct lmc_w8a8_layout {
    size_t off_codes, off_scales, off_smooth; /* off_smooth 0 when absent */
    size_t nbytes;
} lmc_w8a8_layout;

void lmc_w8a8_layout_of(int has_smooth, int64_t rows, int64_t cols, lmc_w8a8_layout *l);

/* Per-row symmetric absmax quantization of W [rows][cols]: codes [rows][cols],
 * scales [rows]. Deterministic, no allocation. */
void lmc_w8a8_quantize_rows(const float *W, int64_t rows, int64_t cols, int8_t *codes,
                            float *scales);

/* The same per-row quantizer on one row (also the per-token activation
 * quantizer): returns the scale, writes n codes. */
float lmc_w8a8_quantize_row(const float *x, int64_t n, int8_t *codes);

/* Build the W8A8 tensor blob of W [rows][cols] (already multiplied by the
 * smoothing scales, if any). smooth: NULL or [cols] positive scales, stored
 * with has_smooth = 1. Fills *enc and a malloc'ed blob. */
int lmc_w8a8_encode(const float *W, int64_t rows, int64_t cols, const float *smooth,
                    lmc_encoding *enc, uint8_t **blob, size_t *nbytes, lmc_error *err);

/* The integer GEMM on already quantized operands (exposed for tests):
 * acc[n][rows] = qx[n][cols] . qw[rows][cols]^T in int32. */
void lmc_w8a8_igemm_ref(const int8_t *qx, int64_t n, const int8_t *qw, int64_t rows,
                        int64_t cols, int32_t *acc);

#endif
