/* For implementations of a backend (backend_cpu.c, cuda/backend_cuda.c):
 * the operations table and the objects backend.c hands them. Adding a
 * backend: one table of these functions, one line in backend.c's list. */
#ifndef LMC_BACKEND_IMPL_H
#define LMC_BACKEND_IMPL_H

#include "backend.h"

struct lmc_backend {
    const struct lmc_backend_ops *ops;
    lmc_backend_opts opts;
    const lmc_model *model;
    lmc_precision prec; /* resolved by open */
    lmc_residual res;   /* resolved by open */
    void *impl;
};

struct lmc_acts {
    lmc_backend *b;
    int nwin, seqlen;
    void *impl;
};

typedef struct lmc_backend_ops {
    lmc_device device;
    int (*available)(char *name, size_t name_len, lmc_error *err);
    /* b->opts and b->model are set; fill b->impl, b->prec, b->res */
    int (*open)(lmc_backend *b, lmc_error *err);
    void (*close)(lmc_backend *b);
    size_t (*bytes)(const lmc_backend *b);
    size_t (*peak_bytes)(const lmc_backend *b);
    /* lmc_backend_weight_bytes (may be NULL) */
    int (*weight_bytes)(const lmc_backend *b, lmc_weight_bytes *out, int max);
    /* evaluation */
    int (*windows_per_call)(const lmc_backend *b, int seqlen);
    int (*windows_nll)(lmc_backend *b, const int32_t *ids, int nwin, int seqlen, double *nll,
                       lmc_error *err);
    int (*logits)(lmc_backend *b, const int32_t *ids, int n, float *logits, lmc_error *err);
    /* what to try when a window's NLL is not finite (may be NULL) */
    const char *(*nonfinite_hint)(const lmc_backend *b);
    /* calibration: a->b, a->nwin, a->seqlen are set; fill a->impl */
    int (*acts_new)(lmc_acts *a, const int32_t *ids, lmc_error *err);
    void (*acts_free)(lmc_acts *a);
    int (*acts_host)(lmc_acts *a, const float **x, lmc_error *err);
    int (*load_block)(lmc_backend *b, int layer, lmc_error *err);
    int (*block_forward)(lmc_backend *b, lmc_acts *a, lmc_block_stats *stats, lmc_error *err);
    /* benchmark */
    int (*bench_gemm)(const lmc_config *c, int tokens, lmc_precision p, lmc_residual res,
                      lmc_gemm_rate *rates, int *n_rates, double *mix_gflops, lmc_error *err);
} lmc_backend_ops;

extern const lmc_backend_ops lmc_backend_cpu_ops;
#ifdef LMC_HAVE_CUDA
extern const lmc_backend_ops lmc_backend_cuda_ops;
#endif

#endif
