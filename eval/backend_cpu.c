/* The CPU backend, the reference every other backend is tested against:
 * weights decoded to fp32 (weights.c), the forward of forward_cpu.c on
 * OpenBLAS, the statistics of stats.c.
 *
 * Evaluation decodes the whole model once, unless its fp32 copy would take
 * more than half the memory the system has available (an 8B model is 32 GB
 * in fp32): then it streams, decoding one block at a time and running a
 * batch of windows (STREAM_WINDOWS) through it before the next, so that
 * memory is one block plus the batch's activations. LMC_EVAL_STREAM=1
 * forces streaming, =0 forbids it. Both give the same numbers. */
#include "backend_impl.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/clock.h"
#include "../core/log.h"
#include "../core/threads.h"
#include "forward.h"
#include "weights.h"

#define STREAM_WINDOWS 64

typedef struct cpu_state {
    lmc_weights *w;     /* evaluation: the whole model (streaming: all but the blocks) */
    int streaming;      /* evaluation: blocks decoded one at a time */
    float *sx;          /* streaming: activations of a batch of windows */
    size_t sx_elems;
    lmc_weights shell;  /* calibration: cfg and embeddings only */
    float *embed, *pos; /* calibration: decoded embeddings (freed after the first acts) */
    lmc_block_w bw;     /* calibration: the loaded block */
    int layer;          /* the loaded block, -1: none */
    lmc_scratch *s;
    int s_tokens;
    size_t peak;
} cpu_state;

typedef struct cpu_acts {
    float *x;   /* [nwin][seqlen][hidden] */
    float *tmp; /* one window */
} cpu_acts;

static int cpu_available(char *name, size_t n, lmc_error *err)
{
    (void)err;
    if (name && n)
        snprintf(name, n, "cpu (%d threads)", lmc_threads_get());
    return 0;
}

static size_t cpu_bytes(const lmc_backend *b)
{
    const cpu_state *s = b->impl;
    return s->w ? lmc_weights_bytes(s->w) : 0;
}

static size_t cpu_peak(const lmc_backend *b)
{
    const cpu_state *s = b->impl;
    size_t n = cpu_bytes(b);
    return n > s->peak ? n : s->peak;
}

/* Whether the fp32 model would take more than half the available memory. */
static int stream_eval(const lmc_model *m)
{
    const char *e = getenv("LMC_EVAL_STREAM");
    if (e && *e)
        return strcmp(e, "0") != 0;
    long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0)
        return 0;
    return 4.0 * (double)lmc_model_params(m) > 0.5 * (double)pages * (double)psz;
}

static int cpu_open(lmc_backend *b, lmc_error *err)
{
    if (b->opts.precision != LMC_PREC_AUTO && b->opts.precision != LMC_PREC_FP32)
        return lmc_fail(err, "the CPU backend computes in fp32, not %s",
                        lmc_precision_name(b->opts.precision));
    cpu_state *s = calloc(1, sizeof *s);
    if (!s)
        return lmc_fail(err, "out of memory");
    s->layer = -1;
    b->impl = s;
    b->prec = LMC_PREC_FP32;
    b->res = LMC_RESIDUAL_FP32;
    const lmc_model *m = b->model;
    if (b->opts.use == LMC_USE_EVAL) {
        s->streaming = stream_eval(m);
        if ((s->streaming ? lmc_weights_prepare_outer(m, &s->w, err)
                          : lmc_weights_prepare(m, &s->w, err)) < 0)
            goto fail;
        if (s->streaming)
            lmc_log(LMC_LOG_PROGRESS, "eval: decoding one block at a time (the fp32 model is "
                                      "%.1f GB%s)",
                    4.0 * (double)lmc_model_params(m) / 1e9,
                    getenv("LMC_EVAL_STREAM") ? ", LMC_EVAL_STREAM" : ", over half the memory "
                                                                      "available");
        return 0;
    }
    s->shell.model = m;
    s->shell.cfg = &m->cfg;
    return 0;
fail:
    free(s);
    b->impl = NULL;
    return -1;
}

static void cpu_close(lmc_backend *b)
{
    cpu_state *s = b->impl;
    if (!s)
        return;
    lmc_weights_free(s->w);
    free(s->sx);
    lmc_block_w_release(&s->bw);
    free(s->embed);
    free(s->pos);
    lmc_scratch_free(s->s);
    free(s);
}

static int scratch_for(cpu_state *s, const lmc_config *c, int n, lmc_error *err)
{
    if (s->s && s->s_tokens >= n)
        return 0;
    lmc_scratch_free(s->s);
    s->s = lmc_scratch_new(c, n);
    s->s_tokens = s->s ? n : 0;
    return s->s ? 0 : lmc_fail(err, "out of memory for windows of %d tokens", n);
}

static int cpu_windows_per_call(const lmc_backend *b, int seqlen)
{
    (void)seqlen;
    /* one window per call (progress after each), a batch when streaming:
     * each block is decoded once per call */
    return ((const cpu_state *)b->impl)->streaming ? STREAM_WINDOWS : 1;
}

/* Decode the blocks one at a time (see the top of this file). */
static int stream_nll(lmc_backend *b, const int32_t *ids, int nwin, int S, double *nll,
                      lmc_error *err)
{
    cpu_state *s = b->impl;
    const lmc_config *c = &b->model->cfg;
    size_t per = (size_t)S * (size_t)c->hidden, need = (size_t)nwin * per;
    if (need > s->sx_elems) {
        free(s->sx);
        s->sx_elems = 0;
        if (!(s->sx = malloc(need * sizeof(float))))
            return lmc_fail(err, "out of memory for %d windows of %d tokens", nwin, S);
        s->sx_elems = need;
    }
    for (int k = 0; k < nwin; k++)
        if (lmc_forward_embed(s->w, ids + (size_t)k * S, S, s->sx + k * per, err) < 0)
            return -1;
    for (int l = 0; l < c->n_layers; l++) {
        if (lmc_weights_prepare_block(b->model, l, &s->bw, err) < 0)
            return -1;
        for (int k = 0; k < nwin; k++)
            if (lmc_forward_block(s->w, l, &s->bw, s->sx + k * per, S, s->s, NULL, NULL, err) < 0)
                return -1;
        lmc_block_w_release(&s->bw);
        lmc_model_release_block_pages(b->model, l);
    }
    for (int k = 0; k < nwin; k++)
        if (lmc_forward_head_nll(s->w, ids + (size_t)k * S, S, s->sx + k * per, s->s, &nll[k],
                                 NULL, err) < 0)
            return -1;
    return 0;
}

static int cpu_windows_nll(lmc_backend *b, const int32_t *ids, int nwin, int S, double *nll,
                           lmc_error *err)
{
    cpu_state *s = b->impl;
    if (scratch_for(s, &b->model->cfg, S, err) < 0)
        return -1;
    if (s->streaming)
        return stream_nll(b, ids, nwin, S, nll, err);
    for (int k = 0; k < nwin; k++)
        if (lmc_forward_window_nll(s->w, ids + (size_t)k * S, S, s->s, &nll[k], NULL, err) < 0)
            return -1;
    return 0;
}

static int cpu_logits(lmc_backend *b, const int32_t *ids, int n, float *logits, lmc_error *err)
{
    cpu_state *s = b->impl;
    double nll;
    if (scratch_for(s, &b->model->cfg, n, err) < 0)
        return -1;
    if (s->streaming)
        return lmc_fail(err, "logits of a streamed evaluation: not available");
    return lmc_forward_window_nll(s->w, ids, n, s->s, &nll, logits, err);
}

/* ---- calibration ---- */

static int cpu_acts_new(lmc_acts *a, const int32_t *ids, lmc_error *err)
{
    cpu_state *s = a->b->impl;
    const lmc_model *m = a->b->model;
    size_t per = (size_t)a->seqlen * (size_t)m->cfg.hidden;
    const lmc_tensor *te = lmc_model_find(m, "embed.weight");
    if (!s->shell.embed_src) {
        if (!te)
            return lmc_fail(err, "embed.weight: missing");
        if (lmc_tensor_expect_shape(te, m->cfg.vocab, m->cfg.hidden, err) < 0)
            return -1;
        /* dense embeddings: the rows the windows use, decoded when used
         * (the whole table is 2.1 GB in fp32 at 8B) */
        if (!lmc_tensor_rows_sliceable(te) && lmc_tensor_to_f32(te, &s->embed, err) < 0)
            return -1;
        s->shell.embed = s->embed;
        s->shell.embed_src = te;
        const lmc_tensor *tp = lmc_model_find(m, "pos_embed.weight");
        if (tp) {
            if (lmc_tensor_to_f32(tp, &s->pos, err) < 0)
                return -1;
            s->shell.pos_embed = s->pos;
        }
    }
    cpu_acts *c = calloc(1, sizeof *c);
    if (!c)
        return lmc_fail(err, "out of memory");
    c->x = malloc((size_t)a->nwin * per * sizeof(float));
    c->tmp = malloc(per * sizeof(float));
    if (!c->x || !c->tmp || scratch_for(s, &m->cfg, a->seqlen, err) < 0) {
        free(c->x);
        free(c->tmp);
        free(c);
        return lmc_fail(err, "out of memory for %d calibration windows of %d tokens", a->nwin,
                        a->seqlen);
    }
    for (int k = 0; k < a->nwin; k++)
        if (lmc_forward_embed(&s->shell, ids + (size_t)k * a->seqlen, a->seqlen,
                              c->x + (size_t)k * per, err) < 0) {
            free(c->x);
            free(c->tmp);
            free(c);
            return -1;
        }
    lmc_model_release_pages(m, te->data, te->nbytes);
    a->impl = c;
    return 0;
}

static void cpu_acts_free(lmc_acts *a)
{
    cpu_acts *c = a->impl;
    if (!c)
        return;
    free(c->x);
    free(c->tmp);
    free(c);
}

static int cpu_acts_host(lmc_acts *a, const float **x, lmc_error *err)
{
    (void)err;
    *x = ((cpu_acts *)a->impl)->x;
    return 0;
}

static int cpu_load_block(lmc_backend *b, int layer, lmc_error *err)
{
    cpu_state *s = b->impl;
    s->layer = -1;
    if (lmc_weights_prepare_block(b->model, layer, &s->bw, err) < 0)
        return -1;
    s->layer = layer;
    return 0;
}

static int cpu_block_forward(lmc_backend *b, lmc_acts *a, lmc_block_stats *st, lmc_error *err)
{
    cpu_state *s = b->impl;
    cpu_acts *c = a->impl;
    if (s->layer < 0)
        return lmc_fail(err, "no block loaded");
    size_t per = (size_t)a->seqlen * (size_t)b->model->cfg.hidden;
    if (st && lmc_block_stats_reset(st, err))
        return -1;
    for (int k = 0; k < a->nwin; k++) {
        float *x = c->x + (size_t)k * per;
        if (st) { /* the inputs stay: the block runs on a copy */
            memcpy(c->tmp, x, per * sizeof(float));
            x = c->tmp;
        }
        if (lmc_forward_block(&s->shell, s->layer, &s->bw, x, a->seqlen, s->s,
                              st ? lmc_block_stats_observe : NULL, st, err) < 0)
            return -1;
    }
    if (st)
        lmc_block_stats_finish(st);
    return 0;
}

/* ---- benchmark: sgemm on the model's own linear shapes ---- */

static int cpu_bench_gemm(const lmc_config *c, int tokens, lmc_precision p, lmc_residual res,
                          lmc_gemm_rate *rates, int *n_rates, double *mix_gflops,
                          lmc_error *err)
{
    (void)p, (void)res;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    struct { const char *name; int64_t out, in; int count; } sh[] = {
        {"q", qd, c->hidden, c->n_layers},
        {"k,v", kvd, c->hidden, 2 * c->n_layers},
        {"o", c->hidden, qd, c->n_layers},
        {c->gated_ffn ? "gate,up" : "up", c->ffn, c->hidden, (c->gated_ffn ? 2 : 1) * c->n_layers},
        {"down", c->hidden, c->ffn, c->n_layers},
        {"head", c->vocab, c->hidden, 1},
    };
    int ns = sizeof sh / sizeof sh[0];
    double total_flops = 0, total_time = 0;
    for (int k = 0; k < ns; k++) {
        size_t xin = (size_t)tokens * sh[k].in, wn = (size_t)sh[k].out * sh[k].in;
        float *x = malloc(xin * 4), *w = malloc(wn * 4),
              *y = malloc((size_t)tokens * sh[k].out * 4);
        if (!x || !w || !y) {
            free(x), free(w), free(y);
            return lmc_fail(err, "out of memory");
        }
        for (size_t i = 0; i < xin; i++)
            x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
        for (size_t i = 0; i < wn; i++)
            w[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
        double flop = 2.0 * tokens * (double)sh[k].out * (double)sh[k].in;
        /* warm up once, then repeat for at least 0.3 s */
        int reps = -1;
        double t0 = 0, t;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, (int)sh[k].out,
                        (int)sh[k].in, 1.0f, x, (int)sh[k].in, w, (int)sh[k].in, 0.0f, y,
                        (int)sh[k].out);
            if (reps++ < 0)
                t0 = lmc_now();
            t = lmc_now() - t0;
        } while (t < 0.3 || reps < 3);
        lmc_gemm_rate *r = &rates[k];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", sh[k].name);
        r->m = tokens;
        r->n = sh[k].out;
        r->k = sh[k].in;
        r->per_forward = sh[k].count;
        r->gflops = flop * reps / t * 1e-9;
        total_flops += flop * sh[k].count;
        total_time += flop * sh[k].count / (r->gflops * 1e9);
        free(x), free(w), free(y);
    }
    *n_rates = ns;
    *mix_gflops = total_flops / total_time * 1e-9;
    return 0;
}

const lmc_backend_ops lmc_backend_cpu_ops = {
    .device = LMC_DEVICE_CPU,
    .available = cpu_available,
    .open = cpu_open,
    .close = cpu_close,
    .bytes = cpu_bytes,
    .peak_bytes = cpu_peak,
    .windows_per_call = cpu_windows_per_call,
    .windows_nll = cpu_windows_nll,
    .logits = cpu_logits,
    .acts_new = cpu_acts_new,
    .acts_free = cpu_acts_free,
    .acts_host = cpu_acts_host,
    .load_block = cpu_load_block,
    .block_forward = cpu_block_forward,
    .bench_gemm = cpu_bench_gemm,
};
