/* AWQ (Lin et al. 2024; mit-han-lab/llm-awq auto_scale.py, auto_clip.py,
 * quantizer.py) as an lmc_pass. Per block:
 *
 * 1. Scale search, per group of linears sharing an input whose producer
 *    can absorb a scale (compress/scale_fold.h lmc_fold_groups: attn_norm
 *    -> q,k,v; v -> o without GQA; ffn_norm -> gate,up / up; up -> down for
 *    gated or ReLU FFNs): with x̄ = mean |x| per input channel over the
 *    calibration tokens, for ratio r in {0, 1/grid, ..., (grid-1)/grid}
 *      s = max(x̄^r, 1e-4);  s /= sqrt(max(s) * min(s))
 *      W' = Q(W diag(s)) diag(s)^-1 for each linear of the group
 *    and keep the s minimizing the mean squared error of the inspected
 *    module's output against the original, on the captured inputs. The
 *    module is llm-awq's module2inspect: the attention (q,k,v,rope,
 *    attention,o with o unquantized) for q,k,v; the whole MLP for
 *    LLaMA gate,up and GPT-2's up (as llm-awq's GPT-2-like bigcode); the
 *    linear itself otherwise (o, down, OPT's fc1). Every search sees the
 *    original block; then all scales are folded (norm or producer rows
 *    /= s, consumer columns *= s) and the captured inputs divided by s.
 * 2. Clip search on every linear but q and k (auto_clip.py): per output
 *    row and group, max_val = absmax * (1 - i/20), i = 0..9, chosen by the
 *    mean squared error of the group's partial output on about 512 sampled
 *    tokens (every (N / 512)-th); the weights are clamped to +-max_val.
 * 3. Round-to-nearest with AWQ's quantizer into LMC_ENC_QGROUP (the GPTQ
 *    encoding), or with scale_only the scaled and clipped weights are kept
 *    as fp16 for a later pass (lmc gptq).
 *
 * AWQ's quantizer (pseudo_quantize_tensor) differs from GPTQ's min/max one:
 * it does not force 0 into the range. asym: scale = max(max - min, 1e-5) /
 * (2^b - 1), zero = clamp(-round(min / scale), 0, 2^b - 1), code =
 * clamp(round(w / scale) + zero, 0, 2^b - 1); sym: scale = max(absmax,
 * 1e-5) / (2^(b-1) - 1), code = clamp(round(w / scale), -2^(b-1),
 * 2^(b-1) - 1) + 2^(b-1). Zeros and codes always lie in [0, 2^b - 1], so
 * LMC_ENC_QGROUP represents it exactly: dequant = scale * (code - zero).
 * As in compress/quantizer.h the scale is rounded to fp16 (the stored
 * precision) before the zero and the codes are computed from it.
 *
 * Calibration: llm-awq feeds each block the fp16 output of the previous
 * one, computed before that block was scaled, clipped and rounded. Here
 * the rounding is deferred to the end of the pass (LMC_ENC_F32 in
 * between), so block L calibrates on blocks < L scaled (function-
 * preserving) and clipped, but not rounded: the one difference from the
 * reference is the clipping. sequential = 1 instead rounds each block at
 * once, so that later blocks calibrate on rounded outputs (the skeleton of
 * GPTQ; an option, not the reference). */
#ifndef LMC_AWQ_H
#define LMC_AWQ_H

#include "../calib/pass.h"
#include "quantizer.h"

typedef struct lmc_awq_opts {
    int bits;              /* 2..8, default 4 */
    int group;             /* default 128, -1 = one group per row */
    int sym;               /* default 0 (llm-awq's zero_point=True) */
    int grid;              /* scale ratios searched, default 20 */
    int scale;             /* 0: no scale search (s = 1) */
    int clip;              /* 0: no clip search */
    int scale_only;        /* 1: keep scaled+clipped weights fp16, no quantization */
    int sequential;        /* 1: round each block before calibrating the next */
    int64_t search_tokens; /* captured tokens for the searches, default 65536 */
    int clip_grid;         /* 20 */
    double max_shrink;     /* 0.5 */
    int clip_tokens;       /* 512 */
} lmc_awq_opts;

void lmc_awq_opts_default(lmc_awq_opts *o);
/* bits 2..8, group -1 or > 0, grid >= 1, search_tokens >= 1. */
int lmc_awq_opts_check(const lmc_awq_opts *o, lmc_error *err);

/* Fill p; o must outlive p. */
void lmc_awq_pass(lmc_pass *p, const lmc_awq_opts *o);

/* AWQ's quantizer on the n values of one group: fp16-representable scale
 * and zero (2^(bits-1) when sym). */
void lmc_awq_fit(int bits, int sym, const float *x, int64_t n, float *scale, uint8_t *zero);

/* Quantize W [rows][cols] group-wise with AWQ's quantizer. wq (may be NULL,
 * may equal W) receives the dequantized weights; q (may be NULL) must have
 * been allocated with lmc_qresult_alloc(rows, cols, bits, group, sym). */
void lmc_awq_quantize(const float *W, int64_t rows, int64_t cols, int bits, int group, int sym,
                      float *wq, lmc_qresult *q);

/* The scale search for one linear on its own inputs (the o / down case),
 * exposed for tests: W [rows][cols], b [rows] or NULL, X [n][cols]. Fills
 * s[cols] with the best scales, *ratio with the chosen ratio and
 * loss[grid] (may be NULL) with the output MSE of every ratio. */
int lmc_awq_search_linear(const float *W, const float *b, int64_t rows, int64_t cols,
                          const float *X, int64_t n, const lmc_awq_opts *o, float *s,
                          double *ratio, double *loss, lmc_error *err);

/* The clip search for one linear (auto_clip_layer) on inputs X [n][cols];
 * clamps W in place. Returns the summed squared-error ratio after / before
 * clipping in *gain (may be NULL). */
int lmc_awq_clip_linear(float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                        const lmc_awq_opts *o, double *gain, lmc_error *err);

#endif
