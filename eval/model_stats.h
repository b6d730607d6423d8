/* Size of a model as stored, against its fp16 size. */
#ifndef LMC_MODEL_STATS_H
#define LMC_MODEL_STATS_H

#include <stdint.h>

#include "../core/model.h"

typedef struct lmc_model_stats {
    int64_t params;           /* lmc_model_params: logical elements, tied head once */
    double bytes_fp16;        /* params x 2 */
    double bytes_model;       /* sum of every tensor's nbytes as stored */
    double compression_ratio; /* bytes_fp16 / bytes_model */
    int64_t linear_params;    /* elements of blk.*.{q,k,v,o,gate,up,down}.weight */
    double linear_bytes;      /* their bytes as stored */
    double bits_per_weight;   /* 8 x linear_bytes / linear_params */
} lmc_model_stats;

void lmc_model_stats_compute(const lmc_model *m, lmc_model_stats *st);

#endif
