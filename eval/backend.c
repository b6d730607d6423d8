/* Device choice and dispatch to the backends (backend_impl.h), the
 * precision names, and the perplexity protocol on any backend. */
#include "backend_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"

/* The backends this build has: a build without nvcc lists no CUDA one. */
static const lmc_backend_ops *const backends[] = {
    &lmc_backend_cpu_ops,
#ifdef LMC_HAVE_CUDA
    &lmc_backend_cuda_ops,
#endif
};

static const char *const device_names[LMC_DEVICE_COUNT] = {"cpu", "cuda"};

static const lmc_backend_ops *ops_of(lmc_device d)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (backends[i]->device == d)
            return backends[i];
    return NULL;
}

void lmc_backend_opts_default(lmc_backend_opts *o)
{
    memset(o, 0, sizeof *o);
    o->device = LMC_DEVICE_CPU;
    o->use = LMC_USE_EVAL;
    o->precision = LMC_PREC_AUTO;
    o->residual = LMC_RESIDUAL_AUTO;
}

int lmc_device_parse(const char *s, lmc_device *d)
{
    for (int i = 0; i < LMC_DEVICE_COUNT; i++)
        if (s && !strcmp(s, device_names[i])) {
            *d = (lmc_device)i;
            return 0;
        }
    return -1;
}

const char *lmc_device_name(lmc_device d)
{
    return (unsigned)d < LMC_DEVICE_COUNT ? device_names[d] : "?";
}

int lmc_device_available(lmc_device d, char *name, size_t name_len, lmc_error *err)
{
    if (name && name_len)
        name[0] = 0;
    const lmc_backend_ops *ops = ops_of(d);
    if (!ops)
        return lmc_fail(err, "this lmc was built without %s (%s)", d == LMC_DEVICE_CUDA ? "CUDA"
                                                                                      : "that device",
                        d == LMC_DEVICE_CUDA ? "nvcc was not found at build time"
                                             : "no backend");
    return ops->available(name, name_len, err);
}

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

int lmc_backend_open(const lmc_model *m, const lmc_backend_opts *o, lmc_backend **out,
                     lmc_error *err)
{
    *out = NULL;
    if (lmc_device_available(o->device, NULL, 0, err) < 0)
        return -1;
    lmc_backend *b = calloc(1, sizeof *b);
    if (!b)
        return lmc_fail(err, "out of memory");
    b->ops = ops_of(o->device);
    b->opts = *o;
    b->model = m;
    if (b->ops->open(b, err) < 0) {
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

void lmc_backend_close(lmc_backend *b)
{
    if (!b)
        return;
    b->ops->close(b);
    free(b);
}

lmc_device lmc_backend_device(const lmc_backend *b) { return b->ops->device; }
lmc_precision lmc_backend_precision(const lmc_backend *b) { return b->prec; }
lmc_residual lmc_backend_residual(const lmc_backend *b) { return b->res; }
size_t lmc_backend_bytes(const lmc_backend *b) { return b->ops->bytes(b); }
size_t lmc_backend_peak_bytes(const lmc_backend *b) { return b->ops->peak_bytes(b); }
int lmc_backend_weight_bytes(const lmc_backend *b, lmc_weight_bytes *out, int max)
{
    return b->ops->weight_bytes ? b->ops->weight_bytes(b, out, max) : 0;
}

static int need_use(const lmc_backend *b, lmc_backend_use u, lmc_error *err)
{
    if (b->opts.use == u)
        return 0;
    return lmc_fail(err, "%s backend opened for %s, not %s", lmc_device_name(b->ops->device),
                    b->opts.use == LMC_USE_EVAL ? "evaluation" : "calibration",
                    u == LMC_USE_EVAL ? "evaluation" : "calibration");
}

int lmc_backend_windows_per_call(const lmc_backend *b, int seqlen)
{
    int n = b->ops->windows_per_call(b, seqlen);
    return n < 1 ? 1 : n;
}

int lmc_backend_windows_nll(lmc_backend *b, const int32_t *ids, int nwin, int seqlen,
                            double *nll, lmc_error *err)
{
    if (need_use(b, LMC_USE_EVAL, err) < 0)
        return -1;
    if (nwin < 1 || seqlen < 1)
        return lmc_fail(err, "empty window");
    if (b->model->cfg.learned_pos && seqlen > b->model->cfg.max_pos)
        return lmc_fail(err, "window of %d tokens exceeds the model's %d learned positions",
                        seqlen, b->model->cfg.max_pos);
    for (int64_t i = 0; i < (int64_t)nwin * seqlen; i++)
        if (ids[i] < 0 || ids[i] >= b->model->cfg.vocab)
            return lmc_fail(err, "token id %d at position %lld is outside the vocabulary (%d)",
                            (int)ids[i], (long long)i, b->model->cfg.vocab);
    return b->ops->windows_nll(b, ids, nwin, seqlen, nll, err);
}

int lmc_backend_logits(lmc_backend *b, const int32_t *ids, int n, float *logits, lmc_error *err)
{
    if (need_use(b, LMC_USE_EVAL, err) < 0)
        return -1;
    if (n < 1 || (b->model->cfg.learned_pos && n > b->model->cfg.max_pos))
        return lmc_fail(err, "window of %d tokens: outside [1, %d]", n, b->model->cfg.max_pos);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= b->model->cfg.vocab)
            return lmc_fail(err, "token id %d at position %d is outside the vocabulary (%d)",
                            (int)ids[i], i, b->model->cfg.vocab);
    return b->ops->logits(b, ids, n, logits, err);
}

int lmc_backend_perplexity(lmc_backend *b, const int32_t *ids, int64_t n, const lmc_ppl_opts *o,
                           lmc_ppl_result *r, lmc_error *err)
{
    const char *src = o->source ? o->source : "input";
    memset(r, 0, sizeof *r);
    int64_t nw;
    if (need_use(b, LMC_USE_EVAL, err) < 0 ||
        lmc_ppl_begin(ids, n, b->model->cfg.vocab, o, &nw, err) < 0)
        return -1;
    int S = o->seqlen, per = lmc_backend_windows_per_call(b, S);
    double *wn = malloc((size_t)per * sizeof *wn);
    if (!wn)
        return lmc_fail(err, "out of memory");
    double total = 0, t0 = lmc_now();
    for (int64_t k = 0; k < nw; k += per) {
        int nb = nw - k < per ? (int)(nw - k) : per;
        if (lmc_backend_windows_nll(b, ids + k * S, nb, S, wn, err) < 0) {
            free(wn);
            char pre[600];
            snprintf(pre, sizeof pre, "%s, window %lld", src, (long long)k);
            return lmc_fail_prefix(err, pre);
        }
        for (int i = 0; i < nb; i++) {
            if (!isfinite(wn[i])) {
                const char *hint = b->ops->nonfinite_hint ? b->ops->nonfinite_hint(b) : NULL;
                free(wn);
                return lmc_fail(err, "%s, window %lld: non-finite negative log-likelihood in a "
                                     "window of %d tokens%s%s",
                                src, (long long)(k + i), S, hint ? " " : "", hint ? hint : "");
            }
            total += wn[i];
        }
        if (o->progress)
            o->progress(o->progress_ctx, k + nb, nw, lmc_now() - t0);
    }
    free(wn);
    return lmc_ppl_end(n, nw, total, lmc_now() - t0, o, r, err);
}

int lmc_backend_acts_new(lmc_backend *b, const int32_t *ids, int nwin, int seqlen,
                         lmc_acts **out, lmc_error *err)
{
    *out = NULL;
    if (need_use(b, LMC_USE_CALIB, err) < 0)
        return -1;
    if (nwin < 1 || seqlen < 1)
        return lmc_fail(err, "no calibration windows");
    if (b->model->cfg.learned_pos && seqlen > b->model->cfg.max_pos)
        return lmc_fail(err, "windows of %d tokens exceed the model's %d learned positions",
                        seqlen, b->model->cfg.max_pos);
    for (int64_t i = 0; i < (int64_t)nwin * seqlen; i++)
        if (ids[i] < 0 || ids[i] >= b->model->cfg.vocab)
            return lmc_fail(err, "calibration token id %d at position %lld is outside the "
                                 "vocabulary (%d)",
                            (int)ids[i], (long long)i, b->model->cfg.vocab);
    lmc_acts *a = calloc(1, sizeof *a);
    if (!a)
        return lmc_fail(err, "out of memory");
    a->b = b;
    a->nwin = nwin;
    a->seqlen = seqlen;
    if (b->ops->acts_new(a, ids, err) < 0) {
        free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void lmc_acts_free(lmc_acts *a)
{
    if (!a)
        return;
    a->b->ops->acts_free(a);
    free(a);
}

int lmc_acts_host(lmc_acts *a, const float **x, lmc_error *err)
{
    return a->b->ops->acts_host(a, x, err);
}

int lmc_backend_load_block(lmc_backend *b, int layer, lmc_error *err)
{
    if (need_use(b, LMC_USE_CALIB, err) < 0)
        return -1;
    if (layer < 0 || layer >= b->model->cfg.n_layers)
        return lmc_fail(err, "block %d out of range (model has %d)", layer,
                        b->model->cfg.n_layers);
    return b->ops->load_block(b, layer, err);
}

int lmc_backend_block_forward(lmc_backend *b, lmc_acts *a, lmc_block_stats *stats,
                              lmc_error *err)
{
    return b->ops->block_forward(b, a, stats, err);
}

int lmc_backend_bench_gemm(lmc_device d, const lmc_config *c, int tokens, lmc_precision p,
                           lmc_residual res, lmc_gemm_rate *rates, int *n_rates,
                           double *mix_gflops, lmc_error *err)
{
    *n_rates = 0;
    *mix_gflops = 0;
    if (lmc_device_available(d, NULL, 0, err) < 0)
        return -1;
    return ops_of(d)->bench_gemm(c, tokens, p, res, rates, n_rates, mix_gflops, err);
}
