/* LMC_ENC_INT8_OUTLIER: LLM.int8() (Dettmers et al. 2022) weights. A
 * [rows, cols] weight is stored as int8 per output row (absmax / 127) plus
 * an fp16 copy of a few "outlier" input columns: the columns whose
 * activations reach the outlier threshold. At run time the outlier columns
 * of the input multiply the fp16 weights in fp32, the other columns are
 * quantized to int8 per token (absmax / 127) and multiply the int8 weights
 * with int32 accumulation.
 *
 * Outlier columns are fixed when the model is compressed (calibration max |x|
 * >= threshold), not found per batch as bitsandbytes does: finding them per
 * batch would need an fp16 copy of every column. An input column that
 * reaches the threshold at run time without being a stored outlier is
 * computed in int8 like the rest (the kernel counts such columns, see
 * lmc_int8_counts).
 *
 * Encoding field: n_outlier (0 <= n_outlier <= cols).
 *
 * Blob layout (little-endian; each section starts at a multiple of 4 bytes,
 * padding bytes are zero):
 *   1. q        int8 [rows][cols], the outlier columns are 0
 *   2. scales   fp16 [rows]: w[r][c] = scale[r] * q[r][c] off the outliers;
 *               scale = absmax over the row's non-outlier columns / 127,
 *               rounded to fp16, q = round-half-even(w / scale) in [-127, 127]
 *   3. oidx     int32 [n_outlier], strictly ascending column indices
 *   4. ow       fp16 [rows][n_outlier]: the original weights of those columns
 *   5. thresh   fp32: the activation threshold the outliers were chosen with
 *               (0: unknown; the kernel then counts nothing)
 *
 * to_f32 decodes the weights the kernel multiplies (q * scale, outlier
 * columns from ow); effective MACs are rows * cols. */
#ifndef LMC_INT8_H
#define LMC_INT8_H

#include <stddef.h>
#include <stdint.h>

#include "encoding.h"

extern const lmc_enc_traits lmc_enc_int8_outlier_traits;

typedef struct lmc_int8_layout {
    size_t off_q, off_scales, off_oidx, off_ow, off_thresh;
    size_t nbytes;
} lmc_int8_layout;

void lmc_int8_layout_of(int64_t rows, int64_t cols, int n_outlier, lmc_int8_layout *l);

/* Encode w [rows][cols] with the outlier columns oidx[n_outlier] (strictly
 * ascending, in [0, cols)). Fails on bad parameters or a weight that is not
 * finite or overflows fp16 (naming row and column). *blob is malloc'd. */
int lmc_int8_encode(const float *w, int64_t rows, int64_t cols, const int32_t *oidx,
                    int n_outlier, float threshold, lmc_encoding *e, uint8_t **blob,
                    size_t *nbytes, lmc_error *err);

/* Process-wide counters of the CPU kernel since start (or the last reset):
 * calls, non-outlier input columns examined (sum over calls), and missed
 * columns: non-outlier columns in which some token of the call reached the
 * threshold (they were computed in int8). */
typedef struct lmc_int8_counts {
    int64_t calls;
    int64_t columns;
    int64_t missed;
} lmc_int8_counts;
void lmc_int8_counts_get(lmc_int8_counts *c);
void lmc_int8_counts_reset(void);

#endif
