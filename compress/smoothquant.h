/* SmoothQuant (Xiao et al. 2023; mit-han-lab/smoothquant smooth.py and
 * fake_quant.py) as an lmc_pass:
 *
 *   per block, for each norm -> consumers group (attn_norm -> q,k,v;
 *   ffn_norm -> gate,up or up):
 *     s_j = max|X_j|^alpha / max(max_{consumers,rows} |W_:,j|, 1e-5)^(1-alpha),
 *     s_j = max(s_j, 1e-5)
 *   with max|X_j| over every calibration token at the norm's output; s is
 *   folded into the norm (weight, bias /= s) and the consumers' columns
 *   (*= s), compress/scale_fold.c. The model computes the same function.
 *   After the last block every block linear (q k v o gate up down) becomes
 *   LMC_ENC_W8A8 (core/w8a8.h): int8 per output row; activations are
 *   quantized per token by the evaluator's kernel.
 *
 * Quantizing at the end, not block by block, keeps the calibration of
 * block L on the smoothed but unquantized outputs of blocks < L, as the
 * reference computes its activation scales on the fp16 model. */
#ifndef LMC_SMOOTHQUANT_H
#define LMC_SMOOTHQUANT_H

#include "../calib/pass.h"

typedef struct lmc_smoothquant_opts {
    double alpha;  /* migration strength, default 0.5 */
    int smooth;    /* 0: plain W8A8 (no calibration at all) */
    int quantize;  /* 0: smoothing only, linears kept fp32 (checks that the
                      smoothed model computes the original function) */
} lmc_smoothquant_opts;

void lmc_smoothquant_opts_default(lmc_smoothquant_opts *o);

/* Fill p; o must outlive p. */
void lmc_smoothquant_pass(lmc_pass *p, const lmc_smoothquant_opts *o);

/* The smoothing scales of one group: act_max[dim] (max |x| per channel),
 * the consumers' weights W[k] [rows[k]][dim]. s[dim] out. */
void lmc_smoothquant_scales(const double *act_max, const float *const *W, const int64_t *rows,
                            int nw, int64_t dim, double alpha, float *s);

/* Replace every block linear of m by its W8A8 encoding. report (may be
 * NULL) receives one object per tensor with the relative weight error. */
int lmc_w8a8_quantize_model(lmc_model *m, cJSON *report, lmc_error *err);

#endif
