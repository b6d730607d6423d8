/* The precision names (every build), and the CUDA entry points for a build
 * without nvcc: each one fails with the same message, so that
 * `lmc eval --device cuda` says why instead of missing a symbol. */
#include "forward_cuda.h"

#include <string.h>

int lmc_precision_parse(const char *s, lmc_precision *p)
{
    static const struct { const char *name; lmc_precision p; } t[] = {
        {"auto", LMC_PREC_AUTO}, {"fp32", LMC_PREC_FP32}, {"fp16", LMC_PREC_FP16},
        {"bf16", LMC_PREC_BF16}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (s && !strcmp(s, t[i].name)) {
            *p = t[i].p;
            return 0;
        }
    return -1;
}

int lmc_residual_parse(const char *s, lmc_residual *r)
{
    static const struct { const char *name; lmc_residual r; } t[] = {
        {"auto", LMC_RESIDUAL_AUTO}, {"fp32", LMC_RESIDUAL_FP32}, {"half", LMC_RESIDUAL_HALF}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (s && !strcmp(s, t[i].name)) {
            *r = t[i].r;
            return 0;
        }
    return -1;
}

lmc_residual lmc_residual_resolve(lmc_residual r, lmc_precision p)
{
    return p == LMC_PREC_FP32 || r == LMC_RESIDUAL_FP32 ? LMC_RESIDUAL_FP32 : LMC_RESIDUAL_HALF;
}

const char *lmc_precision_name(lmc_precision p)
{
    switch (p) {
    case LMC_PREC_AUTO: return "auto";
    case LMC_PREC_FP32: return "fp32";
    case LMC_PREC_FP16: return "fp16";
    case LMC_PREC_BF16: return "bf16";
    }
    return "?";
}

lmc_precision lmc_precision_resolve(lmc_precision p, const lmc_config *c)
{
    if (p != LMC_PREC_AUTO)
        return p;
    /* bf16 checkpoints may hold activations beyond fp16's range */
    return c && !strcmp(c->src_dtype, "bfloat16") ? LMC_PREC_BF16 : LMC_PREC_FP16;
}

#ifndef LMC_HAVE_CUDA

#define NO_CUDA(err) lmc_fail(err, "lmc was built without CUDA (nvcc not found at build time)")

int lmc_cuda_available(char *name, size_t name_len, lmc_error *err)
{
    if (name && name_len)
        name[0] = 0;
    return NO_CUDA(err);
}

int lmc_cuda_model_new(const lmc_model *m, lmc_precision prec, lmc_residual res, int max_tokens,
                       int seqlen_hint, lmc_cuda_model **out, lmc_error *err)
{
    (void)m, (void)prec, (void)res, (void)max_tokens, (void)seqlen_hint;
    *out = NULL;
    return NO_CUDA(err);
}

void lmc_cuda_model_free(lmc_cuda_model *cm) { (void)cm; }

lmc_precision lmc_cuda_model_precision(const lmc_cuda_model *cm)
{
    (void)cm;
    return LMC_PREC_AUTO;
}

lmc_residual lmc_cuda_model_residual(const lmc_cuda_model *cm)
{
    (void)cm;
    return LMC_RESIDUAL_AUTO;
}

size_t lmc_cuda_model_bytes(const lmc_cuda_model *cm)
{
    (void)cm;
    return 0;
}

int lmc_cuda_windows_nll(lmc_cuda_model *cm, const int32_t *ids, int nwin, int seqlen,
                         double *nll, lmc_error *err)
{
    (void)cm, (void)ids, (void)nwin, (void)seqlen, (void)nll;
    return NO_CUDA(err);
}

int lmc_cuda_perplexity(lmc_cuda_model *cm, const int32_t *ids, int64_t n, const lmc_ppl_opts *o,
                        lmc_ppl_result *r, lmc_error *err)
{
    (void)cm, (void)ids, (void)n, (void)o;
    memset(r, 0, sizeof *r);
    return NO_CUDA(err);
}

int lmc_cuda_forward_block(lmc_cuda_model *cm, int layer, float *x, int n, lmc_error *err)
{
    (void)cm, (void)layer, (void)x, (void)n;
    return NO_CUDA(err);
}

int lmc_cuda_forward_logits(lmc_cuda_model *cm, const int32_t *ids, int n, float *logits,
                            lmc_error *err)
{
    (void)cm, (void)ids, (void)n, (void)logits;
    return NO_CUDA(err);
}

int lmc_cuda_test_norm(const float *x, const float *badd, float *xo, float *y, int n, int H,
                       const float *w, const float *b, int rms, double eps, lmc_precision p,
                       lmc_error *err)
{
    (void)x, (void)badd, (void)xo, (void)y, (void)n, (void)H, (void)w, (void)b, (void)rms,
        (void)eps, (void)p;
    return NO_CUDA(err);
}

int lmc_cuda_test_qkv_rope(const lmc_config *c, float *qkv, const float *bias, int n, int S,
                           lmc_precision p, lmc_error *err)
{
    (void)c, (void)qkv, (void)bias, (void)n, (void)S, (void)p;
    return NO_CUDA(err);
}

int lmc_cuda_test_attention(const lmc_config *c, const float *q, const float *k, const float *v,
                            float *ctx, int nwin, int S, int kind, lmc_precision p,
                            lmc_error *err)
{
    (void)c, (void)q, (void)k, (void)v, (void)ctx, (void)nwin, (void)S, (void)kind, (void)p;
    return NO_CUDA(err);
}

int lmc_cuda_test_attention_rope(const lmc_config *c, const float *q, const float *k,
                                 const float *v, float *ctx, int nwin, int S, int in_kernel,
                                 lmc_precision p, lmc_error *err)
{
    (void)c, (void)q, (void)k, (void)v, (void)ctx, (void)nwin, (void)S, (void)in_kernel, (void)p;
    return NO_CUDA(err);
}

int lmc_cuda_test_act(lmc_act act, int gated, const float *gu, const float *bias, float *a, int n,
                      int F, lmc_precision p, lmc_error *err)
{
    (void)act, (void)gated, (void)gu, (void)bias, (void)a, (void)n, (void)F, (void)p;
    return NO_CUDA(err);
}

int lmc_cuda_test_row_nll(const float *logits, int rows, int V, const int32_t *targets,
                          lmc_precision p, double *nll, lmc_error *err)
{
    (void)logits, (void)rows, (void)V, (void)targets, (void)p, (void)nll;
    return NO_CUDA(err);
}

int lmc_cuda_bench_gemm(const lmc_config *c, int tokens, lmc_precision p, lmc_residual res,
                        lmc_cuda_gemm_rate *rates, int *n_rates, double *mix_tflops,
                        lmc_error *err)
{
    (void)c, (void)tokens, (void)p, (void)res, (void)rates;
    *n_rates = 0;
    *mix_tflops = 0;
    return NO_CUDA(err);
}

#endif
