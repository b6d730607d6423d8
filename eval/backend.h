/* Compute backends: the CPU reference (OpenBLAS, fp32) and, in a build with
 * nvcc, CUDA. `lmc eval` and the calibration driver (calib/driver.c) reach a
 * model only through this interface and choose the device once; a build
 * without nvcc has no CUDA backend at all, and asking for it fails with
 * "this lmc was built without CUDA".
 *
 * Two ways to open a model:
 *  - LMC_USE_EVAL: the whole model on the device, for perplexity
 *    (lmc_backend_windows_nll, lmc_backend_perplexity);
 *  - LMC_USE_CALIB: the calibration skeleton. Embeddings of a batch of
 *    windows (lmc_acts) stay on the device; one block at a time is loaded
 *    from the model's current tensors and run on every window, accumulating
 *    the statistics of its linear inputs (eval/stats.h) or advancing the
 *    activations to the next block. The rest of the model stays where it is
 *    (memory-mapped on the host).
 * docs/DESIGN.md says what adding a backend touches. */
#ifndef LMC_BACKEND_H
#define LMC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../core/model.h"
#include "perplexity.h"
#include "stats.h"

typedef enum { LMC_DEVICE_CPU = 0, LMC_DEVICE_CUDA = 1, LMC_DEVICE_COUNT } lmc_device;

typedef enum {
    LMC_PREC_AUTO = 0, /* CPU: fp32; CUDA: bf16 for bfloat16 checkpoints, else fp16 */
    LMC_PREC_FP32 = 1,
    LMC_PREC_FP16 = 2,
    LMC_PREC_BF16 = 3
} lmc_precision;

/* The residual stream's type at fp16/bf16 (CUDA). HALF (AUTO's choice
 * there): the compute type, as transformers keeps it; FP32: closer
 * agreement with the CPU and no fp16 overflow. fp32 precision always keeps
 * an fp32 residual. docs/CUDA.md has the measured agreement and speed. */
typedef enum {
    LMC_RESIDUAL_AUTO = 0,
    LMC_RESIDUAL_FP32 = 1,
    LMC_RESIDUAL_HALF = 2
} lmc_residual;

typedef enum { LMC_USE_EVAL = 0, LMC_USE_CALIB = 1 } lmc_backend_use;

typedef struct lmc_backend_opts {
    lmc_device device;
    lmc_backend_use use;
    lmc_precision precision;
    lmc_residual residual;
    int max_tokens;  /* tokens per forward; 0: the backend's default */
    int seqlen_hint; /* the window length the caller will use (0: unknown) */
} lmc_backend_opts;

/* cpu, eval, auto precision and residual, default sizes. */
void lmc_backend_opts_default(lmc_backend_opts *o);

/* "cpu", "cuda" -> 0; else -1. Both names parse in every build. */
int lmc_device_parse(const char *s, lmc_device *d);
const char *lmc_device_name(lmc_device d);
/* 0 when the device can be used (name, if not NULL, receives its name);
 * else -1: "this lmc was built without CUDA ...", "no CUDA device found
 * ...". */
int lmc_device_available(lmc_device d, char *name, size_t name_len, lmc_error *err);

/* "auto", "fp32", "fp16", "bf16" -> 0; anything else -1. */
int lmc_precision_parse(const char *s, lmc_precision *p);
const char *lmc_precision_name(lmc_precision p);
/* AUTO resolved for a CUDA model (the others unchanged). */
lmc_precision lmc_precision_resolve(lmc_precision p, const lmc_config *c);
/* "auto", "fp32", "half" -> 0; anything else -1. */
int lmc_residual_parse(const char *s, lmc_residual *r);
/* The residual's type at resolved precision p: FP32 at fp32 or when asked,
 * else HALF. */
lmc_residual lmc_residual_resolve(lmc_residual r, lmc_precision p);

typedef struct lmc_backend lmc_backend;

/* Opens m on o->device (checks the config and, for LMC_USE_EVAL, every
 * tensor: missing, misshapen, non-finite, beyond the compute type's range,
 * naming it). m must outlive the backend for LMC_USE_CALIB only. */
int lmc_backend_open(const lmc_model *m, const lmc_backend_opts *o, lmc_backend **out,
                     lmc_error *err);
void lmc_backend_close(lmc_backend *b);
lmc_device lmc_backend_device(const lmc_backend *b);
/* Resolved: fp32 on the CPU. */
lmc_precision lmc_backend_precision(const lmc_backend *b);
/* Resolved: LMC_RESIDUAL_FP32 or LMC_RESIDUAL_HALF. */
lmc_residual lmc_backend_residual(const lmc_backend *b);
/* Memory the backend holds on its device now (CUDA: device bytes; CPU: the
 * decoded fp32 weights and buffers) and the most it held. */
size_t lmc_backend_bytes(const lmc_backend *b);
size_t lmc_backend_peak_bytes(const lmc_backend *b);
/* The model's weights as the backend holds them: bytes per (encoding, how
 * held: "dense", "dequantized", "factors", "packed", "int8 kernel",
 * "expansion scratch"). Returns the number of entries written (at most
 * max); 0 when the backend does not report it (CPU). */
#define LMC_MAX_WEIGHT_BYTES 16
typedef struct lmc_weight_bytes {
    char encoding[16], held[20];
    double bytes;
    int64_t tensors;
} lmc_weight_bytes;
int lmc_backend_weight_bytes(const lmc_backend *b, lmc_weight_bytes *out, int max);

/* ---- evaluation (LMC_USE_EVAL) ---- */

/* Windows of seqlen tokens one call of lmc_backend_windows_nll takes. */
int lmc_backend_windows_per_call(const lmc_backend *b, int seqlen);
/* nwin consecutive windows of seqlen ids (nwin <= windows_per_call):
 * nll[w] = sum of -log p(ids[t+1] | ids[..t]) within window w. */
int lmc_backend_windows_nll(lmc_backend *b, const int32_t *ids, int nwin, int seqlen,
                            double *nll, lmc_error *err);
/* logits[n][vocab] of one window of n ids. */
int lmc_backend_logits(lmc_backend *b, const int32_t *ids, int n, float *logits, lmc_error *err);
/* The protocol of perplexity.h on this backend: same checks, same result,
 * same error messages on every device. */
int lmc_backend_perplexity(lmc_backend *b, const int32_t *ids, int64_t n, const lmc_ppl_opts *o,
                           lmc_ppl_result *r, lmc_error *err);

/* ---- calibration (LMC_USE_CALIB) ---- */

/* The activations of nwin windows of seqlen tokens: block inputs. */
typedef struct lmc_acts lmc_acts;

/* Embeds the windows (ids[nwin][seqlen], positions 0..seqlen-1 each). */
int lmc_backend_acts_new(lmc_backend *b, const int32_t *ids, int nwin, int seqlen,
                         lmc_acts **out, lmc_error *err);
void lmc_acts_free(lmc_acts *a);
/* Host copy x[nwin][seqlen][hidden] of the current activations (the CPU
 * backend returns its own buffer, valid until the next forward). */
int lmc_acts_host(lmc_acts *a, const float **x, lmc_error *err);

/* (Re)loads block `layer` from the model's current tensors, replacing the
 * block loaded before. */
int lmc_backend_load_block(lmc_backend *b, int layer, lmc_error *err);
/* Runs the loaded block on every window of a. stats != NULL: the
 * statistics stats->flags asks for accumulate over all windows (reset
 * first, finished after), and a is left unchanged; stats->device_only are
 * kept on the device (see lmc_backend_site_hessian_dev). stats == NULL: the
 * block's outputs become a's activations. */
int lmc_backend_block_forward(lmc_backend *b, lmc_acts *a, lmc_block_stats *stats,
                              lmc_error *err);

/* ---- benchmark ---- */

/* The GEMM rate on the forward's own matrix shapes (CPU: sgemm; CUDA:
 * cuBLAS with the output types of precision p / residual res), plus the
 * attention kernel alone on CUDA. */
typedef struct lmc_gemm_rate {
    char name[16];
    int64_t m, n, k;
    int per_forward;  /* how many such products one forward makes */
    double gflops;    /* median of timed repeats */
    int is_attention; /* not a GEMM: the attention kernel, m rows in windows of n
                         tokens, k = head_dim (causal FLOPs); outside the mix */
} lmc_gemm_rate;
/* Fills up to 8 rates; *mix_gflops: the GEMMs' FLOP-weighted harmonic mix. */
int lmc_backend_bench_gemm(lmc_device d, const lmc_config *c, int tokens, lmc_precision p,
                           lmc_residual res, lmc_gemm_rate *rates, int *n_rates,
                           double *mix_gflops, lmc_error *err);

#endif
