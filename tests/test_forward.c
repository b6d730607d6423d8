/* eval/: the CPU forward pass, layer by layer and whole, against naive
 * double-precision implementations written here; weight decoding and its
 * error paths. Models are tiny and random, built in memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/half.h"
#include "../core/model.h"
#include "../core/threads.h"
#include "../eval/forward.h"
#include "../eval/forward_ops.h"
#include "../eval/weights.h"
#include "testutil.h"
#include "tinymodel.h"

/* ---- random numbers ---- */

/* the shared generator of tests/tinymodel.c */
#define rng_seed lmc_test_rng_seed
#define urand lmc_test_urand
static void fill(float *x, size_t n, double scale, double offset)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(offset + scale * urand());
}

/* ---- tiny models in memory ---- */




static const float *tf(const lmc_model *m, const char *name)
{
    const lmc_tensor *t = lmc_model_find(m, name);
    return t ? (const float *)t->data : NULL;
}
static const float *tb(const lmc_model *m, int l, const char *role, const char *kind)
{
    const lmc_tensor *t = lmc_model_block_tensor(m, l, role, kind);
    return t ? (const float *)t->data : NULL;
}

/* ---- naive double-precision reference ---- */

static void ref_norm(const double *x, double *y, int n, int H, const float *w, const float *b,
                     int rms, double eps)
{
    for (int i = 0; i < n; i++) {
        const double *xi = x + (size_t)i * H;
        double *yi = y + (size_t)i * H;
        if (rms) {
            double ss = 0;
            for (int j = 0; j < H; j++)
                ss += xi[j] * xi[j];
            double r = 1.0 / sqrt(ss / H + eps);
            for (int j = 0; j < H; j++)
                yi[j] = xi[j] * r * w[j];
        } else {
            double mu = 0, var = 0;
            for (int j = 0; j < H; j++)
                mu += xi[j];
            mu /= H;
            for (int j = 0; j < H; j++)
                var += (xi[j] - mu) * (xi[j] - mu);
            var /= H;
            for (int j = 0; j < H; j++)
                yi[j] = (xi[j] - mu) / sqrt(var + eps) * w[j] + (b ? b[j] : 0);
        }
    }
}

static double ref_act(double x, lmc_act a)
{
    switch (a) {
    case LMC_ACT_SILU: return x / (1 + exp(-x));
    case LMC_ACT_RELU: return x > 0 ? x : 0;
    case LMC_ACT_GELU_NEW:
        return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case LMC_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    }
    return NAN;
}

/* y[n][out] = x[n][in] W^T + b */
static void ref_linear(const double *x, double *y, int n, int out, int in, const float *W,
                       const float *b)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double acc = b ? b[o] : 0;
            for (int j = 0; j < in; j++)
                acc += x[(size_t)i * in + j] * W[(size_t)o * in + j];
            y[(size_t)i * out + o] = acc;
        }
}

/* Hugging Face's inv_freq formulas, transcribed in double. */
static void ref_inv_freq(const lmc_config *c, double *inv)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++)
        inv[i] = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);
    if (c->rope_type == LMC_ROPE_LINEAR)
        for (int i = 0; i < half; i++)
            inv[i] /= c->rope_factor;
    if (c->rope_type == LMC_ROPE_LLAMA3) {
        double old = c->rope_orig_max_pos, lo = c->rope_low_freq_factor,
               hi = c->rope_high_freq_factor, f = c->rope_factor;
        double lo_wl = old / lo, hi_wl = old / hi;
        for (int i = 0; i < half; i++) {
            double wl = 2 * M_PI / inv[i];
            double il = wl > lo_wl ? inv[i] / f : inv[i];
            double sm = (old / wl - lo) / (hi - lo);
            double smoothed = (1 - sm) * il / f + sm * il;
            int medium = !(wl < hi_wl) && !(wl > lo_wl);
            inv[i] = medium ? smoothed : il;
        }
    }
}

static void ref_rope(double *x, int n, int nheads, int hd, const lmc_config *c)
{
    double inv[256];
    ref_inv_freq(c, inv);
    int half = hd / 2;
    for (int p = 0; p < n; p++)
        for (int h = 0; h < nheads; h++) {
            double *a = x + ((size_t)p * nheads + h) * hd;
            for (int i = 0; i < half; i++) {
                double cs = cos(p * inv[i]), sn = sin(p * inv[i]);
                double x1 = a[i], x2 = a[i + half];
                a[i] = x1 * cs - x2 * sn;
                a[i + half] = x2 * cs + x1 * sn;
            }
        }
}

static void ref_attention(const double *q, const double *k, const double *v, double *ctx, int n,
                          int nh, int nkv, int hd)
{
    double *sc = malloc((size_t)n * sizeof *sc);
    int qd = nh * hd, kvd = nkv * hd;
    for (int h = 0; h < nh; h++) {
        int g = h / (nh / nkv);
        for (int i = 0; i < n; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= i; j++) {
                double s = 0;
                for (int d = 0; d < hd; d++)
                    s += q[(size_t)i * qd + h * hd + d] * k[(size_t)j * kvd + g * hd + d];
                sc[j] = s / sqrt((double)hd);
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int j = 0; j <= i; j++)
                sum += (sc[j] = exp(sc[j] - mx));
            for (int d = 0; d < hd; d++) {
                double acc = 0;
                for (int j = 0; j <= i; j++)
                    acc += sc[j] * v[(size_t)j * kvd + g * hd + d];
                ctx[(size_t)i * qd + h * hd + d] = acc / sum;
            }
        }
    }
    free(sc);
}

/* One block in place on x[n][H]. */
static void ref_block(const lmc_model *m, int l, double *x, int n)
{
    const lmc_config *c = &m->cfg;
    int H = c->hidden, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim,
        F = c->ffn;
    double *h = malloc(sizeof(double) * n * H), *q = malloc(sizeof(double) * n * qd),
           *k = malloc(sizeof(double) * n * kvd), *v = malloc(sizeof(double) * n * kvd),
           *ctx = malloc(sizeof(double) * n * qd), *o = malloc(sizeof(double) * n * H),
           *a = malloc(sizeof(double) * n * F), *b = malloc(sizeof(double) * n * F);
    ref_norm(x, h, n, H, tb(m, l, "attn_norm", "weight"), tb(m, l, "attn_norm", "bias"),
             c->norm_is_rms, c->norm_eps);
    ref_linear(h, q, n, qd, H, tb(m, l, "q", "weight"), tb(m, l, "q", "bias"));
    ref_linear(h, k, n, kvd, H, tb(m, l, "k", "weight"), tb(m, l, "k", "bias"));
    ref_linear(h, v, n, kvd, H, tb(m, l, "v", "weight"), tb(m, l, "v", "bias"));
    if (c->rope_type != LMC_ROPE_NONE) {
        ref_rope(q, n, c->n_heads, c->head_dim, c);
        ref_rope(k, n, c->n_kv_heads, c->head_dim, c);
    }
    ref_attention(q, k, v, ctx, n, c->n_heads, c->n_kv_heads, c->head_dim);
    ref_linear(ctx, o, n, H, qd, tb(m, l, "o", "weight"), tb(m, l, "o", "bias"));
    for (size_t i = 0; i < (size_t)n * H; i++)
        x[i] += o[i];
    ref_norm(x, h, n, H, tb(m, l, "ffn_norm", "weight"), tb(m, l, "ffn_norm", "bias"),
             c->norm_is_rms, c->norm_eps);
    ref_linear(h, b, n, F, H, tb(m, l, "up", "weight"), tb(m, l, "up", "bias"));
    if (tb(m, l, "gate", "weight")) {
        ref_linear(h, a, n, F, H, tb(m, l, "gate", "weight"), tb(m, l, "gate", "bias"));
        for (size_t i = 0; i < (size_t)n * F; i++)
            a[i] = ref_act(a[i], c->act) * b[i];
    } else {
        for (size_t i = 0; i < (size_t)n * F; i++)
            a[i] = ref_act(b[i], c->act);
    }
    ref_linear(a, o, n, H, F, tb(m, l, "down", "weight"), tb(m, l, "down", "bias"));
    for (size_t i = 0; i < (size_t)n * H; i++)
        x[i] += o[i];
    free(h); free(q); free(k); free(v); free(ctx); free(o); free(a); free(b);
}

static void ref_embed(const lmc_model *m, const int32_t *ids, int n, double *x)
{
    const lmc_config *c = &m->cfg;
    const float *e = tf(m, "embed.weight"), *p = tf(m, "pos_embed.weight");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c->hidden; j++)
            x[(size_t)i * c->hidden + j] = e[(size_t)ids[i] * c->hidden + j] +
                                           (p ? p[(size_t)(i + c->pos_offset) * c->hidden + j] : 0);
}

/* logits[n][V] and the window NLL. */
static double ref_forward(const lmc_model *m, const int32_t *ids, int n, double *logits)
{
    const lmc_config *c = &m->cfg;
    int H = c->hidden, V = c->vocab;
    double *x = malloc(sizeof(double) * n * H), *h = malloc(sizeof(double) * n * H);
    ref_embed(m, ids, n, x);
    for (int l = 0; l < c->n_layers; l++)
        ref_block(m, l, x, n);
    ref_norm(x, h, n, H, tf(m, "final_norm.weight"), tf(m, "final_norm.bias"), c->norm_is_rms,
             c->norm_eps);
    const float *W = tf(m, "head.weight") ? tf(m, "head.weight") : tf(m, "embed.weight");
    ref_linear(h, logits, n, V, H, W, NULL);
    double nll = 0;
    for (int t = 0; t + 1 < n; t++) {
        const double *l = logits + (size_t)t * V;
        double mx = l[0], s = 0;
        for (int j = 1; j < V; j++)
            mx = l[j] > mx ? l[j] : mx;
        for (int j = 0; j < V; j++)
            s += exp(l[j] - mx);
        nll += log(s) + mx - l[ids[t + 1]];
    }
    free(x);
    free(h);
    return nll;
}

/* ---- layer tests ---- */

static void assert_close(const float *got, const double *want, size_t n, double atol, double rtol,
                         const char *what)
{
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) - rtol * fabs(want[i]);
        if (!(e <= worst)) { /* NaN counts as worst */
            worst = isnan(e) ? INFINITY : e;
            wi = i;
        }
    }
    if (!(worst <= atol))
        ck_abort_msg("%s: element %zu got %.9g want %.9g", what, wi, got[wi], want[wi]);
}

START_TEST(norms_match_reference)
{
    rng_seed(1);
    int n = 7, H = 48;
    float x[7 * 48], w[48], b[48], y[7 * 48];
    double xd[7 * 48], yd[7 * 48];
    fill(x, sizeof x / 4, 3.0, 0.5);
    fill(w, 48, 0.5, 1.0);
    fill(b, 48, 0.3, 0.0);
    for (int i = 0; i < n * H; i++)
        xd[i] = x[i];
    for (int rms = 0; rms <= 1; rms++) {
        lmc_op_norm(x, y, n, H, w, rms ? NULL : b, rms, 1e-5);
        ref_norm(xd, yd, n, H, w, rms ? NULL : b, rms, 1e-5);
        assert_close(y, yd, (size_t)n * H, 1e-6, 2e-6, rms ? "rmsnorm" : "layernorm");
    }
    /* LayerNorm without bias, and a constant row (variance 0: only eps) */
    for (int j = 0; j < H; j++)
        x[j] = xd[j] = 2.5;
    lmc_op_norm(x, y, n, H, w, NULL, 0, 1e-5);
    ref_norm(xd, yd, n, H, w, NULL, 0, 1e-5);
    assert_close(y, yd, (size_t)n * H, 1e-6, 2e-6, "layernorm no bias");
}
END_TEST

START_TEST(activations_match_reference)
{
    enum { N = 2003 }; /* odd: vector tails */
    float x[N], y[N], b[N];
    double want[N];
    for (int i = 0; i < N; i++) {
        x[i] = (float)(-30.0 + 60.0 * i / (N - 1)); /* includes the saturated ranges */
        b[i] = (float)(0.5 + 0.001 * i);
    }
    x[0] = -100.0f;
    x[N - 1] = 100.0f;
    lmc_act acts[4] = {LMC_ACT_SILU, LMC_ACT_RELU, LMC_ACT_GELU_NEW, LMC_ACT_GELU};
    for (int a = 0; a < 4; a++) {
        memcpy(y, x, sizeof y);
        lmc_op_act(y, N, acts[a]);
        for (int i = 0; i < N; i++)
            want[i] = ref_act(x[i], acts[a]);
        assert_close(y, want, N, 1e-6, 1e-6, "activation");
    }
    memcpy(y, x, sizeof y);
    lmc_op_silu_mul(y, b, N);
    for (int i = 0; i < N; i++)
        want[i] = ref_act(x[i], LMC_ACT_SILU) * b[i];
    assert_close(y, want, N, 1e-6, 1e-6, "silu*up");
}
END_TEST

START_TEST(row_nll_matches_reference)
{
    rng_seed(2);
    enum { V = 1001 };
    float l[V];
    fill(l, V, 20.0, 5.0);
    l[17] = 60.0f; /* a dominant logit */
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < V; j++)
        mx = l[j] > mx ? l[j] : mx;
    for (int j = 0; j < V; j++)
        s += exp(l[j] - mx);
    for (int t = 0; t < V; t += 97) {
        double want = log(s) + mx - l[t];
        ck_assert_double_eq_tol(lmc_op_row_nll(l, V, t), want, 1e-5 * (1 + fabs(want)));
    }
}
END_TEST

START_TEST(rope_default_linear_llama3)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_LLAMA, 64, 2, 1, 32, 64, 16, 1);
    lmc_rope_type types[3] = {LMC_ROPE_DEFAULT, LMC_ROPE_LINEAR, LMC_ROPE_LLAMA3};
    for (int k = 0; k < 3; k++) {
        c.rope_type = types[k];
        c.rope_theta = k == 2 ? 500000.0 : 10000.0;
        c.rope_factor = k == 1 ? 4.0 : 8.0;
        c.rope_low_freq_factor = 1.0;
        c.rope_high_freq_factor = 4.0;
        c.rope_orig_max_pos = 64; /* wavelengths 16..64 are "medium": all three bands used */
        float inv[16];
        double invd[16];
        lmc_op_rope_inv_freq(&c, inv);
        ref_inv_freq(&c, invd);
        int bands[3] = {0, 0, 0};
        for (int i = 0; i < 16; i++) {
            ck_assert_double_eq_tol(inv[i], invd[i], 1e-6 * invd[i]);
            double wl = 2 * M_PI / (1.0 / pow(c.rope_theta, 2.0 * i / 32));
            bands[wl < 16 ? 0 : wl > 64 ? 2 : 1]++;
        }
        if (k == 2)
            ck_assert(bands[0] && bands[1] && bands[2]);
        /* application on [n][heads*hd] */
        int n = 50, nh = 3, hd = 32;
        float *cs, *sn;
        ck_assert_int_eq(lmc_op_rope_tables(&c, n, &cs, &sn), 0);
        float *x = malloc(sizeof(float) * n * nh * hd);
        double *xd = malloc(sizeof(double) * n * nh * hd);
        rng_seed(3 + k);
        fill(x, (size_t)n * nh * hd, 1.0, 0);
        for (int i = 0; i < n * nh * hd; i++)
            xd[i] = x[i];
        lmc_op_rope_apply(x, n, nh, hd, cs, sn);
        ref_rope(xd, n, nh, hd, &c);
        /* fp32 angles (as in HF) at position < 50: error well under 1e-5 */
        assert_close(x, xd, (size_t)n * nh * hd, 2e-5, 1e-5, "rope");
        free(x);
        free(xd);
        free(cs);
        free(sn);
    }
}
END_TEST

/* GQA, causal mask, head_dim on the vector path (16, 32) and off it (6),
 * lengths that are not multiples of the tile sizes. */
START_TEST(attention_gqa_causal)
{
    int shapes[][4] = {{4, 2, 16, 37}, {8, 2, 32, 70}, {2, 2, 6, 33}, {3, 1, 16, 1}, {4, 4, 16, 96}};
    for (int s = 0; s < 5; s++) {
        int nh = shapes[s][0], nkv = shapes[s][1], hd = shapes[s][2], n = shapes[s][3];
        lmc_config c = lmc_tiny_config(LMC_ARCH_OPT, 32, nh, nkv, hd, 32, 16, 1);
        lmc_scratch *sc = lmc_scratch_new(&c, n + 5);
        ck_assert_ptr_nonnull(sc);
        int qd = nh * hd, kvd = nkv * hd;
        float *q = malloc(sizeof(float) * n * qd), *k = malloc(sizeof(float) * n * kvd),
              *v = malloc(sizeof(float) * n * kvd), *ctx = malloc(sizeof(float) * n * qd);
        double *qd_ = malloc(sizeof(double) * n * qd), *kd = malloc(sizeof(double) * n * kvd),
               *vd = malloc(sizeof(double) * n * kvd), *cd = malloc(sizeof(double) * n * qd);
        rng_seed(10 + s);
        fill(q, (size_t)n * qd, 2.0, 0);
        fill(k, (size_t)n * kvd, 2.0, 0);
        fill(v, (size_t)n * kvd, 1.0, 0);
        for (int i = 0; i < n * qd; i++)
            qd_[i] = q[i];
        for (int i = 0; i < n * kvd; i++) {
            kd[i] = k[i];
            vd[i] = v[i];
        }
        lmc_op_attention(&c, sc, q, k, v, ctx, n);
        ref_attention(qd_, kd, vd, cd, n, nh, nkv, hd);
        assert_close(ctx, cd, (size_t)n * qd, 2e-6, 2e-6, "attention");
        /* causal: changing the last key/value leaves every earlier row alone */
        for (int i = 0; i < kvd; i++) {
            k[(size_t)(n - 1) * kvd + i] += 5.0f;
            v[(size_t)(n - 1) * kvd + i] -= 3.0f;
        }
        float *ctx2 = malloc(sizeof(float) * n * qd);
        lmc_op_attention(&c, sc, q, k, v, ctx2, n);
        ck_assert_int_eq(memcmp(ctx, ctx2, sizeof(float) * (n - 1) * qd), 0);
        if (n > 1)
            ck_assert(memcmp(ctx + (size_t)(n - 1) * qd, ctx2 + (size_t)(n - 1) * qd,
                             sizeof(float) * qd) != 0);
        free(q); free(k); free(v); free(ctx); free(ctx2);
        free(qd_); free(kd); free(vd); free(cd);
        lmc_scratch_free(sc);
    }
}
END_TEST

/* ---- whole blocks and models ---- */

static void check_model(const lmc_config *c, int n, uint64_t seed, const char *what)
{
    lmc_model *m = lmc_tiny_model(c, seed, NULL);
    lmc_weights *w;
    lmc_error err;
    ck_assert_msg(lmc_weights_prepare(m, &w, &err) == 0, "%s", err.msg);
    lmc_scratch *s = lmc_scratch_new(c, n);
    ck_assert_ptr_nonnull(s);
    int32_t *ids = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)((seed * 31 + (uint64_t)i * 7919) % (uint64_t)c->vocab);

    /* one block on its own */
    int H = c->hidden;
    float *x = malloc(sizeof(float) * n * H);
    double *xd = malloc(sizeof(double) * n * H);
    ck_assert_int_eq(lmc_forward_embed(w, ids, n, x, &err), 0);
    ref_embed(m, ids, n, xd);
    assert_close(x, xd, (size_t)n * H, 1e-6, 1e-6, "embed");
    ck_assert_msg(lmc_forward_block(w, 0, &w->blocks[0], x, n, s, NULL, NULL, &err) == 0, "%s",
                  err.msg);
    ref_block(m, 0, xd, n);
    assert_close(x, xd, (size_t)n * H, 5e-5, 5e-5, what);

    /* the whole model: logits and NLL */
    float *lg = malloc(sizeof(float) * n * c->vocab);
    double *lgd = malloc(sizeof(double) * n * c->vocab);
    double nll;
    ck_assert_msg(lmc_forward_window_nll(w, ids, n, s, &nll, lg, &err) == 0, "%s", err.msg);
    double want = ref_forward(m, ids, n, lgd);
    assert_close(lg, lgd, (size_t)n * c->vocab, 2e-4, 1e-4, what);
    ck_assert_msg(fabs(nll - want) <= 1e-5 * fabs(want) + 1e-5, "%s: nll %.9g want %.9g", what,
                  nll, want);
    /* without logits_out the same NLL comes out (head computed in chunks) */
    double nll2;
    ck_assert_int_eq(lmc_forward_window_nll(w, ids, n, s, &nll2, NULL, &err), 0);
    ck_assert_double_eq(nll, nll2);
    /* and by the step-by-step API */
    ck_assert_int_eq(lmc_forward_embed(w, ids, n, x, &err), 0);
    for (int l = 0; l < c->n_layers; l++)
        ck_assert_int_eq(lmc_forward_block(w, l, &w->blocks[l], x, n, s, NULL, NULL, &err), 0);
    float *lg2 = malloc(sizeof(float) * n * c->vocab);
    ck_assert_int_eq(lmc_forward_head(w, x, n, lg2, s, &err), 0);
    ck_assert_int_eq(memcmp(lg, lg2, sizeof(float) * n * c->vocab), 0);
    free(lg2);
    free(lg);
    free(lgd);
    free(x);
    free(xd);
    free(ids);
    lmc_scratch_free(s);
    lmc_weights_free(w);
    lmc_model_free(m);
}

START_TEST(llama_gqa_matches_reference)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_LLAMA, 64, 4, 2, 16, 96, 97, 2);
    check_model(&c, 45, 21, "llama");
    c.qkv_bias = 1; /* qwen2 style */
    c.o_bias = 1;
    c.tied = 1;
    check_model(&c, 33, 22, "llama with biases, tied");
}
END_TEST

START_TEST(llama3_rope_model_matches_reference)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_LLAMA, 64, 2, 1, 32, 80, 61, 2);
    c.rope_type = LMC_ROPE_LLAMA3;
    c.rope_theta = 500000.0;
    c.rope_factor = 8.0;
    c.rope_low_freq_factor = 1.0;
    c.rope_high_freq_factor = 4.0;
    c.rope_orig_max_pos = 32;
    check_model(&c, 64, 23, "llama3 rope");
}
END_TEST

START_TEST(opt_matches_reference)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_OPT, 48, 4, 4, 12, 64, 53, 2);
    check_model(&c, 64, 24, "opt"); /* all positions, offset 2 */
}
END_TEST

START_TEST(gpt2_matches_reference)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_GPT2, 64, 4, 4, 16, 128, 71, 2);
    check_model(&c, 40, 25, "gpt2");
    c.act = LMC_ACT_GELU;
    check_model(&c, 17, 26, "gpt2 erf gelu");
}
END_TEST

/* ---- observer ---- */

typedef struct {
    int calls[LMC_SITE_COUNT];
    int64_t dims[LMC_SITE_COUNT];
    double sum_ffn_mid;
} obs_log;

static void observe(void *ctx, int layer, lmc_site site, const float *x, int64_t ntok, int64_t dim)
{
    obs_log *o = ctx;
    ck_assert_int_eq(layer, 1);
    ck_assert_int_eq((int)ntok, 20);
    o->calls[site]++;
    o->dims[site] = dim;
    if (site == LMC_SITE_FFN_MID)
        for (int64_t i = 0; i < ntok * dim; i++)
            o->sum_ffn_mid += x[i] < 0 ? -x[i] : 0; /* ReLU output: never negative */
}

START_TEST(observer_sees_every_site)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_OPT, 32, 2, 2, 16, 48, 30, 2);
    lmc_model *m = lmc_tiny_model(&c, 5, NULL);
    lmc_weights *w;
    lmc_error err;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), 0);
    lmc_scratch *s = lmc_scratch_new(&c, 20);
    int32_t ids[20];
    for (int i = 0; i < 20; i++)
        ids[i] = i;
    float x[20 * 32], y[20 * 32];
    ck_assert_int_eq(lmc_forward_embed(w, ids, 20, x, &err), 0);
    memcpy(y, x, sizeof x);
    obs_log o;
    memset(&o, 0, sizeof o);
    ck_assert_int_eq(lmc_forward_block(w, 1, &w->blocks[1], x, 20, s, observe, &o, &err), 0);
    for (int k = 0; k < LMC_SITE_COUNT; k++)
        ck_assert_int_eq(o.calls[k], 1);
    ck_assert_int_eq(o.dims[LMC_SITE_ATTN_IN], 32);
    ck_assert_int_eq(o.dims[LMC_SITE_ATTN_OUT], 32);
    ck_assert_int_eq(o.dims[LMC_SITE_FFN_IN], 32);
    ck_assert_int_eq(o.dims[LMC_SITE_FFN_MID], 48);
    ck_assert(o.sum_ffn_mid == 0);
    /* observing changes nothing */
    ck_assert_int_eq(lmc_forward_block(w, 1, &w->blocks[1], y, 20, s, NULL, NULL, &err), 0);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
    lmc_scratch_free(s);
    lmc_weights_free(w);
    lmc_model_free(m);
}
END_TEST

/* ---- threads ---- */

START_TEST(threads_do_not_change_the_result)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_LLAMA, 128, 4, 2, 32, 256, 500, 2);
    c.max_pos = 256;
    lmc_model *m = lmc_tiny_model(&c, 7, NULL);
    lmc_weights *w;
    lmc_error err;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), 0);
    int n = 200;
    int32_t ids[200];
    for (int i = 0; i < n; i++)
        ids[i] = (i * 37) % c.vocab;
    double nll[2];
    int save = lmc_threads_get();
    for (int k = 0; k < 2; k++) {
        lmc_threads_set(k == 0 ? 1 : 2);
        lmc_scratch *s = lmc_scratch_new(&c, n);
        ck_assert_int_eq(lmc_forward_window_nll(w, ids, n, s, &nll[k], NULL, &err), 0);
        lmc_scratch_free(s);
    }
    lmc_threads_set(save);
    /* OpenBLAS may block the products differently per thread count: fp32
     * rounding noise only */
    ck_assert_msg(fabs(nll[0] - nll[1]) <= 1e-6 * fabs(nll[0]), "%.12g vs %.12g", nll[0], nll[1]);
    lmc_weights_free(w);
    lmc_model_free(m);
}
END_TEST

/* ---- weights: decoding and errors ---- */

static void set_enc(lmc_model *m, const char *name, lmc_enc_id id)
{
    lmc_tensor *t = lmc_model_find(m, name);
    const float *src = (const float *)t->data;
    size_t n = (size_t)(t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1));
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        h[i] = id == LMC_ENC_F16 ? lmc_f32_to_f16(src[i]) : lmc_f32_to_bf16(src[i]);
    lmc_tensor nt = *t;
    nt.enc = lmc_enc_dense(id);
    nt.data = (const uint8_t *)h;
    nt.nbytes = n * 2;
    nt.owned = h;
    lmc_error err;
    ck_assert_int_eq(lmc_model_set_tensor(m, &nt, &err), 0);
}

START_TEST(weights_decode_encodings)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_LLAMA, 32, 2, 1, 16, 48, 20, 1);
    lmc_model *m = lmc_tiny_model(&c, 9, NULL);
    set_enc(m, "blk.0.q.weight", LMC_ENC_F16);
    set_enc(m, "blk.0.up.weight", LMC_ENC_BF16);
    lmc_weights *w;
    lmc_error err;
    ck_assert_msg(lmc_weights_prepare(m, &w, &err) == 0, "%s", err.msg);
    const lmc_tensor *t = lmc_model_find(m, "blk.0.q.weight");
    const uint16_t *h = (const uint16_t *)t->data;
    for (int i = 0; i < 32 * 32; i++)
        ck_assert(w->blocks[0].q.w[i] == lmc_f16_to_f32(h[i]));
    t = lmc_model_find(m, "blk.0.up.weight");
    h = (const uint16_t *)t->data;
    for (int i = 0; i < 48 * 32; i++)
        ck_assert(w->blocks[0].up.w[i] == lmc_bf16_to_f32(h[i]));
    /* aligned fp32 is used in place, untied head is its own tensor */
    ck_assert_ptr_eq(w->blocks[0].k.w, (const float *)lmc_model_find(m, "blk.0.k.weight")->data);
    ck_assert_ptr_eq(w->blocks[0].q.src, lmc_model_find(m, "blk.0.q.weight"));
    ck_assert_ptr_eq(w->head.w, (const float *)lmc_model_find(m, "head.weight")->data);
    ck_assert_ptr_null(w->blocks[0].q.b);
    ck_assert_ptr_nonnull(w->blocks[0].gate.w);
    lmc_weights_free(w);

    /* prepare_block again on a prepared block frees and rebuilds */
    lmc_block_w bw;
    memset(&bw, 0, sizeof bw);
    ck_assert_int_eq(lmc_weights_prepare_block(m, 0, &bw, &err), 0);
    ck_assert_int_eq(lmc_weights_prepare_block(m, 0, &bw, &err), 0);
    ck_assert_int_eq(lmc_weights_prepare_block(m, 1, &bw, &err), -1);
    ck_assert_ptr_null(bw.q.w);
    lmc_block_w_release(&bw);
    lmc_model_free(m);
}
END_TEST

START_TEST(weights_unaligned_f32_is_copied)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_LLAMA, 32, 2, 1, 16, 48, 20, 1);
    lmc_model *m = lmc_tiny_model(&c, 9, NULL);
    lmc_tensor *t = lmc_model_find(m, "blk.0.v.weight");
    uint8_t *buf = malloc(t->nbytes + 1);
    memcpy(buf + 1, t->data, t->nbytes);
    lmc_tensor nt = *t;
    nt.data = buf + 1;
    nt.owned = buf;
    float first;
    memcpy(&first, t->data, 4);
    lmc_error err;
    ck_assert_int_eq(lmc_model_set_tensor(m, &nt, &err), 0);
    lmc_weights *w;
    ck_assert_msg(lmc_weights_prepare(m, &w, &err) == 0, "%s", err.msg);
    ck_assert_ptr_ne(w->blocks[0].v.w, (const float *)(buf + 1));
    ck_assert(w->blocks[0].v.w[0] == first);
    lmc_weights_free(w);
    lmc_model_free(m);
}
END_TEST

START_TEST(weights_errors_name_the_tensor)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_GPT2, 32, 2, 2, 16, 48, 20, 2);
    lmc_weights *w;
    lmc_error err;
    /* NaN and Inf, in fp32 (in place) and in f16 (decoded) */
    for (int k = 0; k < 3; k++) {
        lmc_model *m = lmc_tiny_model(&c, 11, NULL);
        const char *name = k == 2 ? "blk.1.down.weight" : "blk.1.up.bias";
        if (k == 2)
            set_enc(m, name, LMC_ENC_F16);
        lmc_tensor *t = lmc_model_find(m, name);
        if (k == 2)
            ((uint16_t *)t->owned)[5] = 0x7c00; /* +Inf */
        else
            ((float *)t->owned)[3] = k == 0 ? NAN : -INFINITY;
        ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), -1);
        ck_assert_msg(strstr(err.msg, name) && strstr(err.msg, "non-finite"), "%s", err.msg);
        lmc_model_free(m);
    }
    /* missing tensor */
    lmc_model *m = lmc_tiny_model(&c, 12, NULL);
    snprintf(lmc_model_find(m, "blk.1.v.weight")->name, 64, "blk.1.vv.weight");
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.1.v.weight") && strstr(err.msg, "missing"), "%s", err.msg);
    lmc_model_free(m);
    /* missing bias the config announces */
    m = lmc_tiny_model(&c, 12, NULL);
    snprintf(lmc_model_find(m, "blk.0.q.bias")->name, 64, "blk.0.qq.bias");
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.0.q.bias"), "%s", err.msg);
    lmc_model_free(m);
    /* shape that does not match the config */
    m = lmc_tiny_model(&c, 13, NULL);
    lmc_tensor *t = lmc_model_find(m, "blk.0.o.weight");
    t->shape[0] = 16;
    t->shape[1] = 64;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.0.o.weight") && strstr(err.msg, "shape"), "%s", err.msg);
    lmc_model_free(m);
    /* byte size that does not match the encoding */
    m = lmc_tiny_model(&c, 14, NULL);
    lmc_model_find(m, "embed.weight")->nbytes -= 4;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), -1);
    ck_assert_msg(strstr(err.msg, "embed.weight"), "%s", err.msg);
    lmc_model_free(m);
    /* position table too short for the config */
    m = lmc_tiny_model(&c, 15, NULL);
    lmc_model_find(m, "pos_embed.weight")->shape[0] = 10;
    lmc_model_find(m, "pos_embed.weight")->nbytes = 10 * 32 * 4;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), -1);
    ck_assert_msg(strstr(err.msg, "pos_embed.weight"), "%s", err.msg);
    lmc_model_free(m);
    /* unknown encoding */
    m = lmc_tiny_model(&c, 16, NULL);
    lmc_model_find(m, "blk.0.k.weight")->enc.id = (lmc_enc_id)99;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.0.k.weight"), "%s", err.msg);
    lmc_model_free(m);
}
END_TEST

START_TEST(forward_input_errors)
{
    lmc_config c = lmc_tiny_config(LMC_ARCH_OPT, 32, 2, 2, 16, 48, 20, 1);
    lmc_model *m = lmc_tiny_model(&c, 17, NULL);
    lmc_weights *w;
    lmc_error err;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), 0);
    lmc_scratch *s = lmc_scratch_new(&c, 80);
    int32_t ids[80] = {0};
    double nll;
    ids[5] = 20; /* == vocab */
    ck_assert_int_eq(lmc_forward_window_nll(w, ids, 10, s, &nll, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "20") && strstr(err.msg, "vocabulary"), "%s", err.msg);
    ids[5] = -1;
    ck_assert_int_eq(lmc_forward_window_nll(w, ids, 10, s, &nll, NULL, &err), -1);
    ids[5] = 3;
    /* learned positions: 64 fit, 65 do not */
    ck_assert_int_eq(lmc_forward_window_nll(w, ids, 64, s, &nll, NULL, &err), 0);
    ck_assert(isfinite(nll) && nll > 0);
    ck_assert_int_eq(lmc_forward_window_nll(w, ids, 65, s, &nll, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "positions"), "%s", err.msg);
    /* more tokens than the scratch holds */
    float x[100 * 32];
    ck_assert_int_eq(lmc_forward_block(w, 0, &w->blocks[0], x, 81, s, NULL, NULL, &err), -1);
    /* one token: nothing scored */
    ck_assert_int_eq(lmc_forward_window_nll(w, ids, 1, s, &nll, NULL, &err), 0);
    ck_assert(nll == 0.0);
    lmc_scratch_free(s);
    lmc_weights_free(w);
    lmc_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("forward");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, norms_match_reference);
    tcase_add_test(tc, activations_match_reference);
    tcase_add_test(tc, row_nll_matches_reference);
    tcase_add_test(tc, rope_default_linear_llama3);
    tcase_add_test(tc, attention_gqa_causal);
    tcase_add_test(tc, llama_gqa_matches_reference);
    tcase_add_test(tc, llama3_rope_model_matches_reference);
    tcase_add_test(tc, opt_matches_reference);
    tcase_add_test(tc, gpt2_matches_reference);
    tcase_add_test(tc, observer_sees_every_site);
    tcase_add_test(tc, threads_do_not_change_the_result);
    tcase_add_test(tc, weights_decode_encodings);
    tcase_add_test(tc, weights_unaligned_f32_is_copied);
    tcase_add_test(tc, weights_errors_name_the_tensor);
    tcase_add_test(tc, forward_input_errors);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
