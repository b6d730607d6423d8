/* Round-to-nearest quantization of one matrix with the min/max quantizer:
 * each group's scale/zero fitted on the original weights. The output is the
 * same lmc_qresult the error-feedback solver produces. */
#ifndef LMC_RTN_H
#define LMC_RTN_H

#include "quantizer.h"

/* W [rows][cols] row-major. bits 2..8, group > 0 or -1 (one group per row;
 * the last group may be shorter). Fills q (allocated here; free with
 * lmc_qresult_free) and, when wq is not NULL, the dequantized weights
 * (wq may equal W). */
int lmc_rtn_quantize(const float *W, int64_t rows, int64_t cols, int bits, int group, int sym,
                     lmc_qresult *q, float *wq, lmc_error *err);

#endif
