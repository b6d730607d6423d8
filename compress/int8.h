/* LLM.int8() pass (Dettmers et al. 2022): every block linear stored as
 * LMC_ENC_INT8_OUTLIER (core/int8.h): int8 weights per output row plus the
 * fp16 weights of the outlier input columns.
 *
 * Outlier columns are chosen from calibration, per input site (q, k, v share
 * theirs; gate and up too): the columns whose max |x| over the calibration
 * tokens reaches the threshold (6.0, the paper's). bitsandbytes decides per
 * batch instead; a fixed set keeps the stored model small (see core/int8.h
 * for what happens to a column that crosses the threshold only at run
 * time). */
#ifndef LMC_COMPRESS_INT8_H
#define LMC_COMPRESS_INT8_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "../calib/pass.h"
#include "../core/error.h"

typedef struct lmc_int8_opts {
    double threshold; /* > 0, default 6.0 */
} lmc_int8_opts;

void lmc_int8_opts_default(lmc_int8_opts *o);
int lmc_int8_opts_check(const lmc_int8_opts *o, lmc_error *err);

/* The outlier columns of a site: indices j (ascending) with
 * abs_max[j] >= threshold. Returns their count; idx may be NULL. */
int lmc_int8_outlier_columns(const double *abs_max, int64_t cols, double threshold,
                             int32_t *idx);

/* The pass: run holds the options (checked here) and receives totals.
 * record, when not NULL, is an array that receives one small object per
 * tensor {tensor, n_outlier, act_absmax} (the CLI puts it in the
 * container's provenance). */
typedef struct lmc_int8_run {
    lmc_int8_opts o;
    cJSON *record;
    int64_t cols_total, outliers_total; /* over the block linears */
    int64_t bytes_before, bytes_after;  /* fp16 size vs stored size */
} lmc_int8_run;

int lmc_int8_pass(lmc_pass *p, lmc_int8_run *run, lmc_error *err);

#endif
