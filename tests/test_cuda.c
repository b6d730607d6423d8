/* eval/forward_cuda: every kernel against the CPU path on random inputs, a
 * block and whole windows of tiny random models of each architecture, the
 * vendored data/llama-xs, and the perplexity of ../shared models (fp16
 * checkpoints, and in-memory qgroup, sparse and 2:4 versions of llama-s)
 * against the CPU evaluator. Without a GPU (or a CUDA build) every test but
 * the error message check prints SKIP and passes.
 *
 * Tolerances: ||gpu - cpu|| / ||cpu|| <= 1e-5 in fp32 (order of summation
 * only), 2e-3 fp16, 1.5e-2 bf16 for kernels whose output is stored in that
 * type; perplexity: fp32 within 0.01%, fp16 within 0.3% (the bars).
 * LMC_CUDA_PPL_WINDOWS=N evaluates N windows of the ../shared models
 * (default 16; 0: the whole text). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compress/prune_passes.h"
#include "../compress/qstore.h"
#include "../compress/quant_passes.h"
#include "../compress/rtn.h"
#include "../compress/svd.h"
#include "../core/lowrank.h"
#include "../core/fileio.h"
#include "../core/half.h"
#include "../core/int8.h"
#include "../core/qgroup.h"
#include "../core/w8a8.h"
#include "../core/model.h"
#include "../eval/forward.h"
#include "../eval/backend.h"
#include "../formats/arch.h"
#ifdef LMC_HAVE_CUDA
#include "../eval/cuda/test_hooks.h"
#include "../compress/cuda/svd_cuda.h"
#endif
#include "../eval/forward_ops.h"
#include "../eval/perplexity.h"
#include "../eval/weights.h"
#include "testutil.h"
#include "tinymodel.h"

/* An evaluation backend on the GPU. */
static int cuda_open(const lmc_model *m, lmc_precision p, lmc_residual res, int max_tokens,
                     int seqlen_hint, lmc_backend **out, lmc_error *err)
{
    lmc_backend_opts o;
    lmc_backend_opts_default(&o);
    o.device = LMC_DEVICE_CUDA;
    o.precision = p;
    o.residual = res;
    o.max_tokens = max_tokens;
    o.seqlen_hint = seqlen_hint;
    return lmc_backend_open(m, &o, out, err);
}

/* ---- the message without a device (runs everywhere) ---- */

START_TEST(test_unavailable_message)
{
    lmc_error err;
    err.msg[0] = 0;
    char name[64];
    if (lmc_device_available(LMC_DEVICE_CUDA, name, sizeof name, &err) == 0) {
        ck_assert(name[0] != 0);
        return;
    }
    ck_assert_msg(strstr(err.msg, "no CUDA device found") ||
                      strstr(err.msg, "built without CUDA") ||
                      strstr(err.msg, "compute capability"),
                  "unexpected message: %s", err.msg);
    /* the other entry points fail the same way instead of crashing */
    lmc_model m;
    memset(&m, 0, sizeof m);
    lmc_backend *cm = (lmc_backend *)1;
    m.cfg.arch = LMC_ARCH_LLAMA;
    m.cfg.vocab = m.cfg.hidden = m.cfg.n_layers = m.cfg.n_heads = m.cfg.n_kv_heads = 1;
    m.cfg.head_dim = 2, m.cfg.ffn = 1, m.cfg.max_pos = 8, m.cfg.act = LMC_ACT_SILU;
    ck_assert_int_eq(cuda_open(&m, LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 0, 8, &cm, &err),
                     -1);
    ck_assert_ptr_null(cm);
    ck_assert(err.msg[0] != 0);
}
END_TEST

/* ---- precision names ---- */

START_TEST(test_precision_names)
{
    lmc_precision p;
    const char *names[] = {"auto", "fp32", "fp16", "bf16"};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(lmc_precision_parse(names[i], &p), 0);
        ck_assert_str_eq(lmc_precision_name(p), names[i]);
    }
    ck_assert_int_eq(lmc_precision_parse("fp8", &p), -1);
    ck_assert_int_eq(lmc_precision_parse("", &p), -1);
    lmc_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.src_dtype, sizeof c.src_dtype, "bfloat16");
    ck_assert_int_eq(lmc_precision_resolve(LMC_PREC_AUTO, &c), LMC_PREC_BF16);
    snprintf(c.src_dtype, sizeof c.src_dtype, "float16");
    ck_assert_int_eq(lmc_precision_resolve(LMC_PREC_AUTO, &c), LMC_PREC_FP16);
    ck_assert_int_eq(lmc_precision_resolve(LMC_PREC_FP32, &c), LMC_PREC_FP32);
    lmc_residual r;
    ck_assert_int_eq(lmc_residual_parse("auto", &r), 0);
    ck_assert_int_eq(r, LMC_RESIDUAL_AUTO);
    ck_assert_int_eq(lmc_residual_parse("fp32", &r), 0);
    ck_assert_int_eq(r, LMC_RESIDUAL_FP32);
    ck_assert_int_eq(lmc_residual_parse("half", &r), 0);
    ck_assert_int_eq(r, LMC_RESIDUAL_HALF);
    ck_assert_int_eq(lmc_residual_parse("fp16", &r), -1);
    ck_assert_int_eq(lmc_residual_resolve(LMC_RESIDUAL_AUTO, LMC_PREC_FP16), LMC_RESIDUAL_HALF);
    ck_assert_int_eq(lmc_residual_resolve(LMC_RESIDUAL_AUTO, LMC_PREC_BF16), LMC_RESIDUAL_HALF);
    ck_assert_int_eq(lmc_residual_resolve(LMC_RESIDUAL_AUTO, LMC_PREC_FP32), LMC_RESIDUAL_FP32);
    ck_assert_int_eq(lmc_residual_resolve(LMC_RESIDUAL_FP32, LMC_PREC_FP16), LMC_RESIDUAL_FP32);
}
END_TEST

#ifdef LMC_HAVE_CUDA

/* ---- device ---- */

static int gpu(void)
{
    static int state = -1;
    static char why[1024];
    if (state < 0) {
        lmc_error err;
        char name[256];
        state = lmc_device_available(LMC_DEVICE_CUDA, name, sizeof name, &err) == 0;
        if (state)
            fprintf(stderr, "test_cuda: device %s\n", name);
        else
            snprintf(why, sizeof why, "%s", err.msg);
    }
    if (!state)
        printf("SKIP: %s\n", why);
    return state;
}

static const lmc_precision PRECS[3] = {LMC_PREC_FP32, LMC_PREC_FP16, LMC_PREC_BF16};
static double tol_of(lmc_precision p)
{
    return p == LMC_PREC_FP32 ? 1e-5 : p == LMC_PREC_FP16 ? 2e-3 : 1.5e-2;
}

/* Every evaluation mode: precision, residual (AUTO: half at fp16/bf16),
 * tolerance of a window's NLL (tiny random models) and of a perplexity (real
 * models; the issue asks 0.3 % of the default modes). Largest seen (H100,
 * 2026-11-22): fp16 half 4e-5, fp16 fp32-residual 2e-5, bf16 6e-4. */
static const struct {
    lmc_precision p;
    lmc_residual res;
    double win_tol, ppl_tol;
} MODES[] = {
    {LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 1e-6, 1e-4}, {LMC_PREC_FP16, LMC_RESIDUAL_AUTO, 5e-4, 1e-3},
    {LMC_PREC_FP16, LMC_RESIDUAL_FP32, 5e-4, 1e-4}, {LMC_PREC_BF16, LMC_RESIDUAL_AUTO, 5e-3, 5e-3},
    {LMC_PREC_BF16, LMC_RESIDUAL_FP32, 5e-3, 5e-3},
};
#define N_MODES (int)(sizeof MODES / sizeof MODES[0])

static const char *mode_res(const lmc_backend *cm)
{
    return lmc_backend_residual(cm) == LMC_RESIDUAL_HALF ? "half" : "fp32";
}

/* ---- random numbers (tests/tinymodel.c's generator) ---- */

static float *rnd(size_t n, double scale, double offset)
{
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(offset + scale * lmc_test_urand());
    return x;
}

/* ||a - b|| / ||b||, and every a finite (outputs are poisoned or fresh). */
static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(a[i]), "non-finite output at %zu", i);
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}


/* ---- kernels ---- */

START_TEST(test_norm)
{
    if (!gpu())
        return;
    lmc_test_rng_seed(1);
    int n = 7;
    /* scalar kernel (H % 4 != 0); vector kernel at three widths */
    const int Hs[] = {333, 768, 2048, 8192};
    for (size_t hi = 0; hi < sizeof Hs / sizeof Hs[0]; hi++)
    for (int rms = 0; rms < 2; rms++)
        for (int pi = 0; pi < 3; pi++) {
            int H = Hs[hi];
            float *x = rnd((size_t)n * H, 2.0, 0.3), *badd = rnd(H, 0.5, 0),
                  *w = rnd(H, 0.2, 1.0), *b = rnd(H, 0.1, 0);
            float *xo = malloc(sizeof(float) * n * H), *y = malloc(sizeof(float) * n * H),
                  *ref = malloc(sizeof(float) * n * H), *xr = malloc(sizeof(float) * n * H);
            lmc_error err;
            ck_assert_msg(lmc_cuda_test_norm(x, badd, xo, y, n, H, w, rms ? NULL : b, rms, 1e-5,
                                             PRECS[pi], &err) == 0,
                          "%s", err.msg);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < H; j++)
                    xr[i * H + j] = x[i * H + j] + badd[j];
            lmc_op_norm(xr, ref, n, H, w, rms ? NULL : b, rms, 1e-5);
            ck_assert_msg(rel_err(xo, xr, (size_t)n * H) == 0, "residual + bias differs");
            double e = rel_err(y, ref, (size_t)n * H);
            printf("norm H=%d rms=%d %s: rel err %.2e\n", H, rms, lmc_precision_name(PRECS[pi]),
                   e);
            ck_assert_msg(e <= tol_of(PRECS[pi]), "norm rms=%d %s: %g", rms,
                          lmc_precision_name(PRECS[pi]), e);
            free(x), free(badd), free(w), free(b), free(xo), free(y), free(ref), free(xr);
        }
}
END_TEST

static lmc_config attn_config(int nh, int nkv, int hd)
{
    lmc_config c;
    memset(&c, 0, sizeof c);
    c.arch = LMC_ARCH_LLAMA;
    c.vocab = 16;
    c.hidden = nh * hd;
    c.n_layers = 1;
    c.n_heads = nh;
    c.n_kv_heads = nkv;
    c.head_dim = hd;
    c.ffn = 8;
    c.max_pos = 4096;
    c.norm_is_rms = 1;
    c.norm_eps = 1e-5;
    c.act = LMC_ACT_SILU;
    c.rope_type = LMC_ROPE_DEFAULT;
    c.rope_theta = 10000;
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.bos_id = c.eos_id = -1;
    lmc_arch_caps(&c, NULL);
    return c;
}

START_TEST(test_qkv_rope)
{
    if (!gpu())
        return;
    lmc_test_rng_seed(2);
    int S = 37, nwin = 2, n = S * nwin;
    /* head_dim 16: the two-pairs-per-thread kernel; 18: one pair per thread */
    for (int hd = 16; hd <= 18; hd += 2)
    for (int variant = 0; variant < 5; variant++) {
        lmc_config c = attn_config(4, 2, hd);
        int with_bias = variant >= 3;
        if (variant == 1) {
            c.rope_type = LMC_ROPE_LINEAR;
            c.rope_factor = 4;
        } else if (variant == 2 || variant == 3) {
            c.rope_type = LMC_ROPE_LLAMA3;
            c.rope_factor = 8, c.rope_low_freq_factor = 1, c.rope_high_freq_factor = 4;
            c.rope_orig_max_pos = 16;
            c.rope_theta = 500000;
        } else if (variant == 4) {
            c.rope_type = LMC_ROPE_NONE; /* GPT-2 / OPT: biases only */
        }
        int qd = 4 * hd, kvd = 2 * hd, ld = qd + 2 * kvd;
        for (int pi = 0; pi < 3; pi++) {
            float *qkv = rnd((size_t)n * ld, 1.0, 0), *bias = with_bias ? rnd(ld, 0.3, 0) : NULL;
            float *ref = malloc(sizeof(float) * n * ld);
            memcpy(ref, qkv, sizeof(float) * n * ld);
            lmc_error err;
            ck_assert_msg(
                lmc_cuda_test_qkv_rope(&c, qkv, bias, n, S, PRECS[pi], &err) == 0, "%s", err.msg);
            /* CPU: + bias, then RoPE per window on the q and k parts */
            float *q = malloc(sizeof(float) * S * qd), *k = malloc(sizeof(float) * S * kvd);
            float *cs = NULL, *sn = NULL;
            if (c.rope_type != LMC_ROPE_NONE)
                ck_assert_int_eq(lmc_op_rope_tables(&c, S, &cs, &sn), 0);
            for (int w = 0; w < nwin; w++) {
                float *r = ref + (size_t)w * S * ld;
                for (int t = 0; t < S; t++)
                    for (int j = 0; j < ld; j++)
                        r[t * ld + j] += bias ? bias[j] : 0.0f;
                if (!cs)
                    continue;
                for (int t = 0; t < S; t++) {
                    memcpy(q + t * qd, r + t * ld, sizeof(float) * qd);
                    memcpy(k + t * kvd, r + t * ld + qd, sizeof(float) * kvd);
                }
                lmc_op_rope_apply(q, S, 4, hd, cs, sn);
                lmc_op_rope_apply(k, S, 2, hd, cs, sn);
                for (int t = 0; t < S; t++) {
                    memcpy(r + t * ld, q + t * qd, sizeof(float) * qd);
                    memcpy(r + t * ld + qd, k + t * kvd, sizeof(float) * kvd);
                }
            }
            double e = rel_err(qkv, ref, (size_t)n * ld);
            printf("qkv hd %d variant %d %s: rel err %.2e\n", hd, variant,
                   lmc_precision_name(PRECS[pi]), e);
            ck_assert_msg(e <= tol_of(PRECS[pi]), "qkv variant %d %s: %g", variant,
                          lmc_precision_name(PRECS[pi]), e);
            free(qkv), free(bias), free(ref), free(q), free(k), free(cs), free(sn);
        }
    }
}
END_TEST

START_TEST(test_attention)
{
    if (!gpu())
        return;
    lmc_test_rng_seed(3);
    /* head_dims with and without a tensor-core kernel; S not a multiple of
     * the 64-row tiles; two windows so the window offset is exercised */
    struct { int nh, nkv, hd, S; } cases[] = {
        {4, 2, 32, 100}, {4, 4, 64, 200}, {8, 2, 128, 77}, {2, 1, 96, 130}, {3, 1, 40, 50},
        {2, 2, 64, 1}, {4, 1, 64, 1030}, {32, 4, 64, 300}, {16, 1, 32, 45},
        {6, 3, 64, 129}, {8, 1, 64, 257}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        lmc_config c = attn_config(cases[ci].nh, cases[ci].nkv, cases[ci].hd);
        int S = cases[ci].S, nwin = 2, n = S * nwin;
        int qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
        float *q = rnd((size_t)n * qd, 2.0, 0), *k = rnd((size_t)n * kvd, 2.0, 0),
              *v = rnd((size_t)n * kvd, 1.0, 0);
        float *ref = malloc(sizeof(float) * n * qd), *out = malloc(sizeof(float) * n * qd);
        lmc_scratch *s = lmc_scratch_new(&c, S);
        ck_assert_ptr_nonnull(s);
        for (int w = 0; w < nwin; w++)
            lmc_op_attention(&c, s, q + (size_t)w * S * qd, k + (size_t)w * S * kvd,
                             v + (size_t)w * S * kvd, ref + (size_t)w * S * qd, S);
        lmc_scratch_free(s);
        /* kind 0: what the forward runs (the wgmma kernel on a Hopper for
         * head_dim 64), 1: the SIMT kernel, 2: the mma.sync kernel */
        static const char *const kinds[3] = {"", " simt", " mma.sync"};
        for (int pi = 0; pi < 3; pi++)
            for (int kind = 0; kind < 3; kind++) {
                if (kind && PRECS[pi] == LMC_PREC_FP32)
                    continue; /* fp32 always runs the SIMT kernel */
                lmc_error err;
                ck_assert_msg(lmc_cuda_test_attention(&c, q, k, v, out, nwin, S, kind, PRECS[pi],
                                                      &err) == 0,
                              "%s", err.msg);
                double e = rel_err(out, ref, (size_t)n * qd);
                printf("attention nh %d nkv %d hd %d S %d %s%s: rel err %.2e\n", c.n_heads,
                       c.n_kv_heads, c.head_dim, S, lmc_precision_name(PRECS[pi]), kinds[kind],
                       e);
                ck_assert_msg(e <= tol_of(PRECS[pi]), "attention case %zu %s kind %d: %g", ci,
                              lmc_precision_name(PRECS[pi]), kind, e);
            }
        free(q), free(k), free(v), free(ref), free(out);
    }
}
END_TEST

/* RoPE then attention, as the forward runs them without q/k/v biases: Q
 * rotated inside the wgmma kernel (head_dim 64 on a Hopper, fp16/bf16) must
 * give what rotating q and k beforehand gives, and both what the CPU gives. */
START_TEST(test_attention_rope)
{
    if (!gpu())
        return;
    lmc_test_rng_seed(4);
    struct { int nh, nkv, hd, S; } cases[] = {
        {32, 4, 64, 300}, {4, 4, 64, 200}, {8, 1, 64, 257}, {6, 3, 64, 129}, {4, 2, 32, 100}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        lmc_config c = attn_config(cases[ci].nh, cases[ci].nkv, cases[ci].hd);
        int S = cases[ci].S, nwin = 2, n = S * nwin, hd = c.head_dim;
        int qd = c.n_heads * hd, kvd = c.n_kv_heads * hd;
        float *q = rnd((size_t)n * qd, 2.0, 0), *k = rnd((size_t)n * kvd, 2.0, 0),
              *v = rnd((size_t)n * kvd, 1.0, 0);
        float *ref = malloc(sizeof(float) * n * qd), *out = malloc(sizeof(float) * n * qd),
              *out2 = malloc(sizeof(float) * n * qd);
        float *qr = malloc(sizeof(float) * n * qd), *kr = malloc(sizeof(float) * n * kvd);
        memcpy(qr, q, sizeof(float) * n * qd);
        memcpy(kr, k, sizeof(float) * n * kvd);
        float *cs = NULL, *sn = NULL;
        ck_assert_int_eq(lmc_op_rope_tables(&c, S, &cs, &sn), 0);
        lmc_scratch *s = lmc_scratch_new(&c, S);
        ck_assert_ptr_nonnull(s);
        for (int w = 0; w < nwin; w++) {
            float *qw = qr + (size_t)w * S * qd, *kw = kr + (size_t)w * S * kvd;
            lmc_op_rope_apply(qw, S, c.n_heads, hd, cs, sn);
            lmc_op_rope_apply(kw, S, c.n_kv_heads, hd, cs, sn);
            lmc_op_attention(&c, s, qw, kw, v + (size_t)w * S * kvd, ref + (size_t)w * S * qd, S);
        }
        lmc_scratch_free(s);
        for (int pi = 0; pi < 3; pi++) {
            lmc_error err;
            int r0 = lmc_cuda_test_attention_rope(&c, q, k, v, out, nwin, S, 0, PRECS[pi], &err);
            ck_assert_msg(r0 == 0, "%s", r0 < 0 ? err.msg : "Q rotated in the kernel unasked");
            int r1 = lmc_cuda_test_attention_rope(&c, q, k, v, out2, nwin, S, 1, PRECS[pi], &err);
            ck_assert_msg(r1 >= 0, "%s", err.msg);
            double e0 = rel_err(out, ref, (size_t)n * qd), e1 = rel_err(out2, ref, (size_t)n * qd),
                   e01 = rel_err(out2, out, (size_t)n * qd);
            printf("attention+RoPE nh %d nkv %d hd %d S %d %s: rel err %.2e, Q in kernel %s %.2e "
                   "(%.2e from the RoPE kernel's)\n",
                   c.n_heads, c.n_kv_heads, hd, S, lmc_precision_name(PRECS[pi]), e0,
                   r1 ? "yes" : "no", e1, e01);
            ck_assert_msg(e0 <= tol_of(PRECS[pi]) && e1 <= tol_of(PRECS[pi]),
                          "attention+RoPE case %zu %s: %g %g", ci, lmc_precision_name(PRECS[pi]),
                          e0, e1);
            /* the same rounding of the rotated Q: only summation order may differ */
            ck_assert_msg(e01 <= 1e-6, "Q rotated in the kernel differs: %g", e01);
        }
        free(q), free(k), free(v), free(ref), free(out), free(out2), free(qr), free(kr);
        free(cs), free(sn);
    }
}
END_TEST

START_TEST(test_act)
{
    if (!gpu())
        return;
    lmc_test_rng_seed(4);
    int n = 5;
    lmc_act acts[4] = {LMC_ACT_SILU, LMC_ACT_RELU, LMC_ACT_GELU_NEW, LMC_ACT_GELU};
    for (int F = 300; F <= 304; F += 4) /* vector (16-byte) and scalar kernels */
    for (int ai = 0; ai < 4; ai++)
        for (int gated = 0; gated < 2; gated++)
            for (int pi = 0; pi < 3; pi++) {
                int w = gated ? 2 * F : F;
                float *gu = rnd((size_t)n * w, 3.0, 0), *bias = rnd(w, 0.5, 0);
                float *a = malloc(sizeof(float) * n * F), *ref = malloc(sizeof(float) * n * F),
                      *u = malloc(sizeof(float) * n * F);
                lmc_error err;
                ck_assert_msg(lmc_cuda_test_act(acts[ai], gated, gu, bias, a, n, F, PRECS[pi],
                                                &err) == 0,
                              "%s", err.msg);
                /* CPU as forward_cpu.c: act(g) * u, or act(u), biases first */
                for (int t = 0; t < n; t++)
                    for (int j = 0; j < F; j++) {
                        if (gated) {
                            ref[t * F + j] = gu[t * w + j] + bias[j];
                            u[t * F + j] = gu[t * w + F + j] + bias[F + j];
                        } else {
                            ref[t * F + j] = gu[t * w + j] + bias[j];
                        }
                    }
                if (gated && acts[ai] == LMC_ACT_SILU) {
                    lmc_op_silu_mul(ref, u, (size_t)n * F);
                } else {
                    lmc_op_act(ref, (size_t)n * F, acts[ai]);
                    if (gated)
                        for (int i = 0; i < n * F; i++)
                            ref[i] *= u[i];
                }
                double e = rel_err(a, ref, (size_t)n * F);
                ck_assert_msg(e <= tol_of(PRECS[pi]), "act %d gated %d %s: %g", (int)acts[ai],
                              gated, lmc_precision_name(PRECS[pi]), e);
                free(gu), free(bias), free(a), free(ref), free(u);
            }
}
END_TEST

/* The wgmma int8 GEMM against exact integer sums: shapes that leave
 * partial row, column and K tiles (tiles 128 x 256 x 128). */
START_TEST(test_i8_gemm)
{
    if (!gpu())
        return;
    const int shapes[][3] = {{1, 8, 16}, {150, 136, 144}, {300, 520, 1040}, {129, 257, 272}};
    lmc_test_rng_seed(9);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        int8_t *x = malloc((size_t)M * K), *w = malloc((size_t)N * K);
        float *y = malloc(sizeof(float) * M * N);
        /* |codes| <= 100: sums below 2^24 at K = 1040, exact in fp32 */
        for (int i = 0; i < M * K; i++)
            x[i] = (int8_t)lrint(100.0 * lmc_test_urand());
        for (int i = 0; i < N * K; i++)
            w[i] = (int8_t)lrint(100.0 * lmc_test_urand());
        lmc_error err;
        int r = lmc_cuda_test_i8_gemm(x, w, M, N, K, y, &err);
        ck_assert_msg(r >= 0, "%s", err.msg);
        if (r == 1) {
            printf("int8 wgmma GEMM: not on this device, skipped\n");
            free(x), free(w), free(y);
            return;
        }
        long bad = 0;
        for (int t = 0; t < M; t++)
            for (int c = 0; c < N; c++) {
                int64_t acc = 0;
                for (int k = 0; k < K; k++)
                    acc += (int64_t)x[(size_t)t * K + k] * w[(size_t)c * K + k];
                bad += y[(size_t)t * N + c] != (float)acc;
            }
        ck_assert_msg(bad == 0, "int8 GEMM %d x %d x %d: %ld of %d outputs wrong", M, N, K, bad,
                      M * N);
        free(x), free(w), free(y);
    }
    printf("int8 wgmma GEMM: exact on 4 shapes\n");
}
END_TEST

START_TEST(test_row_nll)
{
    if (!gpu())
        return;
    /* V odd: scalar loads; V % 4 == 0: vector loads. fp16: the logits as
     * the fp16 NLL forward stores them, the reference on the same values */
    for (int vi = 0; vi < 2; vi++)
        for (int half = 0; half < 2; half++) {
            lmc_test_rng_seed(5);
            int rows = 6, V = vi ? 32000 : 32003;
            float *l = rnd((size_t)rows * V, 6.0, 0);
            l[3 * V + 17] = 40.0f; /* one dominant logit */
            if (half)
                for (size_t i = 0; i < (size_t)rows * V; i++)
                    l[i] = lmc_f16_to_f32(lmc_f32_to_f16(l[i]));
            int32_t tg[6] = {0, V - 1, 12345, 17, -1, 999};
            double nll[6];
            lmc_error err;
            ck_assert_msg(lmc_cuda_test_row_nll(l, rows, V, tg,
                                                half ? LMC_PREC_FP16 : LMC_PREC_FP32, nll,
                                                &err) == 0,
                          "%s", err.msg);
            for (int r = 0; r < rows; r++) {
                double ref = tg[r] < 0 ? 0.0 : lmc_op_row_nll(l + (size_t)r * V, V, tg[r]);
                ck_assert_msg(fabs(nll[r] - ref) <= 1e-5 * (1 + fabs(ref)),
                              "V %d half %d row %d: %.9f vs %.9f", V, half, r, nll[r], ref);
            }
            free(l);
        }
}
END_TEST

/* ---- tiny random models in memory ---- */

typedef struct tiny_spec {
    lmc_arch arch;
    int hidden, nh, nkv, hd, ffn, vocab, layers;
    int qkv_bias, tied, f16;
} tiny_spec;

/* tests/tinymodel.c's model for a spec, with 160 positions */
static lmc_model *tiny_model(const tiny_spec *sp, uint64_t seed)
{
    lmc_config c = lmc_tiny_config(sp->arch, sp->hidden, sp->nh, sp->nkv, sp->hd, sp->ffn,
                                   sp->vocab, sp->layers);
    c.max_pos = 160;
    c.tied = sp->tied;
    if (sp->arch == LMC_ARCH_LLAMA)
        c.qkv_bias = sp->qkv_bias;
    lmc_tiny_opts o = {3.0, {0, 0}, {0, 0}, sp->f16};
    return lmc_tiny_model(&c, seed, &o);
}

/* count token ids uniform over m's vocabulary (malloc'd) */
static int32_t *random_ids(const lmc_model *m, int count, uint64_t seed)
{
    int32_t *ids = malloc(sizeof(int32_t) * count);
    ck_assert_ptr_nonnull(ids);
    lmc_test_rng_seed(seed);
    for (int i = 0; i < count; i++)
        ids[i] = (int32_t)((lmc_test_urand() + 1) * 0.5 * m->cfg.vocab) % m->cfg.vocab;
    return ids;
}

static const tiny_spec TINY[] = {
    {LMC_ARCH_LLAMA, 128, 4, 2, 32, 200, 300, 2, 0, 0, 0},
    {LMC_ARCH_LLAMA, 256, 4, 1, 64, 160, 301, 2, 1, 1, 1}, /* qkv bias, tied, fp16 blobs */
    {LMC_ARCH_OPT, 96, 3, 3, 32, 200, 257, 2, 0, 1, 0},
    {LMC_ARCH_GPT2, 80, 2, 2, 40, 160, 259, 2, 0, 1, 1},  /* head_dim 40: SIMT kernel */
};
#define N_TINY (int)(sizeof TINY / sizeof TINY[0])

START_TEST(test_block)
{
    if (!gpu())
        return;
    int ti = _i;
    lmc_model *m = tiny_model(&TINY[ti], 10 + ti);
    const lmc_config *c = &m->cfg;
    lmc_error err;
    lmc_weights *w;
    ck_assert_msg(lmc_weights_prepare(m, &w, &err) == 0, "%s", err.msg);
    int n = 150, H = c->hidden;
    lmc_scratch *s = lmc_scratch_new(c, n);
    for (int ci = 0; ci < N_MODES; ci++) {
        lmc_precision p = MODES[ci].p;
        lmc_backend *cm;
        ck_assert_msg(cuda_open(m, p, MODES[ci].res, 512, n, &cm, &err) == 0, "%s",
                      err.msg);
        for (int l = 0; l < c->n_layers; l++) {
            lmc_test_rng_seed(100 + l);
            float *x = rnd((size_t)n * H, 1.0, 0), *ref = malloc(sizeof(float) * n * H);
            memcpy(ref, x, sizeof(float) * n * H);
            ck_assert_msg(lmc_forward_block(w, l, &w->blocks[l], ref, n, s, NULL, NULL, &err) ==
                              0,
                          "%s", err.msg);
            ck_assert_msg(lmc_cuda_forward_block(cm, l, x, n, &err) == 0, "%s", err.msg);
            double e = rel_err(x, ref, (size_t)n * H);
            printf("block %s #%d layer %d %s, %s residual: rel err %.2e\n",
                   lmc_arch_name(c->arch), ti, l, lmc_precision_name(p), mode_res(cm), e);
            ck_assert_msg(e <= tol_of(p), "block %d layer %d %s: %g", ti, l,
                          lmc_precision_name(p), e);
            free(x), free(ref);
        }
        lmc_backend_close(cm);
    }
    lmc_scratch_free(s);
    lmc_weights_free(w);
    lmc_model_free(m);
}
END_TEST

/* The int8 kernels against their CPU twins (the encodings' kernel_apply)
 * on every slot of each tiny model at fp32, on the same inputs: W8A8, W8A8
 * with smoothing scales (two quantization groups in the qkv slot),
 * LLM.int8() (two outlier groups). The codes and int32 products are the
 * same on both sides; what may differ is the last bit of the epilogue (FMA
 * contraction) and the order of the outlier GEMM's fp32 sums. (Whole
 * blocks are not compared this way: their quantizers' inputs differ in the
 * last bit between the devices, and one code flipped by that moves a
 * block's output by ~1e-4.) */
static void reencode(lmc_model *m, int kind);
START_TEST(test_slot_int8)
{
    if (!gpu())
        return;
    int ti = _i / 3, kind = 5 + _i % 3;
    lmc_model *m = tiny_model(&TINY[ti], 40 + ti);
    reencode(m, kind);
    const lmc_config *c = &m->cfg;
    lmc_error err;
    int n = 150;
    lmc_backend *cm;
    ck_assert_msg(cuda_open(m, LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 512, n, &cm, &err) == 0, "%s",
                  err.msg);
    lmc_slot_desc sl[LMC_SLOT_COUNT];
    lmc_block_slots(c, sl);
    double worst = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < LMC_SLOT_COUNT; k++) {
            int N = 0, K = (int)sl[k].in;
            for (int i = 0; i < sl[k].n; i++)
                N += (int)sl[k].out[i];
            lmc_test_rng_seed(300 + 7 * l + k);
            float *x = rnd((size_t)n * K, 2.0, 0), *y = malloc(sizeof(float) * n * N);
            float *ref = malloc(sizeof(float) * n * N), *part = malloc(sizeof(float) * n * N);
            /* the vector quantizer and epilogue through cuBLAS, and the wgmma
             * GEMM with its epilogue (where it runs), against the scalar
             * twins: bit for bit */
            setenv("LMC_CUDA_I8_SCALAR", "1", 1);
            ck_assert_msg(lmc_cuda_slot_product(cm, l, k, x, n, ref, &err) == 0, "%s", err.msg);
            unsetenv("LMC_CUDA_I8_SCALAR");
            for (int g = 0; g < 2; g++) {
                setenv("LMC_CUDA_I8_GEMM", g ? "wgmma" : "cublas", 1);
                ck_assert_msg(lmc_cuda_slot_product(cm, l, k, x, n, y, &err) == 0, "%s",
                              err.msg);
                ck_assert_msg(!memcmp(y, ref, sizeof(float) * n * N),
                              "tiny #%d kind %d layer %d slot %d: %s and scalar int8 kernels "
                              "differ",
                              ti, kind, l, k, g ? "wgmma" : "cuBLAS");
            }
            unsetenv("LMC_CUDA_I8_GEMM");
            ck_assert_msg(lmc_cuda_slot_product(cm, l, k, x, n, y, &err) == 0, "%s", err.msg);
            int o0 = 0;
            for (int i = 0; i < sl[k].n; i++) {
                lmc_tensor *t = lmc_model_block_tensor(m, l, sl[k].roles[i], "weight");
                const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
                ck_assert_ptr_nonnull(tr->kernel_apply);
                void *st;
                int64_t rows = t->shape[0];
                ck_assert_msg(tr->kernel_prepare(&t->enc, t->data, rows, K, &st, &err) == 0,
                              "%s", err.msg);
                tr->kernel_apply(st, x, n, part, 0);
                tr->kernel_free(st);
                for (int tk = 0; tk < n; tk++)
                    memcpy(ref + (size_t)tk * N + o0, part + (size_t)tk * rows,
                           sizeof(float) * rows);
                o0 += (int)rows;
            }
            double e = rel_err(y, ref, (size_t)n * N);
            worst = e > worst ? e : worst;
            ck_assert_msg(e <= 1e-6, "tiny #%d kind %d layer %d slot %d: rel err %g", ti, kind, l,
                          k, e);
            free(x), free(y), free(ref), free(part);
        }
    printf("int8 slots, tiny %s #%d, %s: worst rel err %.2e\n", lmc_arch_name(c->arch), ti,
           kind == 5 ? "w8a8" : kind == 6 ? "w8a8 smoothed" : "llm.int8()", worst);
    lmc_backend_close(cm);
    lmc_model_free(m);
}
END_TEST

/* The whole W8A8 forward with the vector quantizer, the vector epilogue and
 * the gate|up epilogue fused with the activation, through cuBLAS and
 * through the wgmma GEMM with those epilogues in it, against the scalar
 * kernels and the separate activation (LMC_CUDA_I8_SCALAR=1): the same NLL
 * to the last bit, at fp32 and fp16, with and without smoothing. */
START_TEST(test_i8_forward)
{
    if (!gpu())
        return;
    int ti = _i / 2, kind = 5 + _i % 2;
    lmc_model *m = tiny_model(&TINY[ti], 60 + ti);
    reencode(m, kind);
    int S = 150, nwin = 3;
    int32_t *ids = random_ids(m, S * nwin, 11);
    const lmc_precision ps[2] = {LMC_PREC_FP32, LMC_PREC_FP16};
    lmc_error err;
    for (int pi = 0; pi < 2; pi++) {
        double nll[3][3];
        for (int sc = 0; sc < 3; sc++) { /* wgmma GEMM (where it runs), cuBLAS, scalar */
            setenv("LMC_CUDA_I8_GEMM", sc ? "cublas" : "wgmma", 1);
            if (sc == 2)
                setenv("LMC_CUDA_I8_SCALAR", "1", 1);
            lmc_backend *cm;
            ck_assert_msg(cuda_open(m, ps[pi], LMC_RESIDUAL_AUTO, nwin * S, S, &cm, &err) == 0,
                          "%s", err.msg);
            ck_assert_msg(lmc_backend_windows_nll(cm, ids, nwin, S, nll[sc], &err) == 0, "%s",
                          err.msg);
            lmc_backend_close(cm);
            unsetenv("LMC_CUDA_I8_SCALAR");
            unsetenv("LMC_CUDA_I8_GEMM");
        }
        for (int sc = 0; sc < 2; sc++)
            for (int k = 0; k < nwin; k++)
                ck_assert_msg(nll[sc][k] == nll[2][k] && isfinite(nll[sc][k]),
                              "tiny #%d kind %d %s window %d: nll %.17g (%s) against %.17g", ti,
                              kind, lmc_precision_name(ps[pi]), k, nll[sc][k],
                              sc ? "cuBLAS" : "wgmma", nll[2][k]);
    }
    free(ids);
    lmc_model_free(m);
}
END_TEST

/* Windows of a model: NLL per window and the logits of window 0, GPU in
 * precision p against the CPU evaluator. Returns the worst relative NLL
 * difference. */
static double compare_windows(const lmc_model *m, const int32_t *ids, int nwin, int S,
                              lmc_precision p, lmc_residual res, double tol)
{
    lmc_error err;
    lmc_weights *w;
    ck_assert_msg(lmc_weights_prepare(m, &w, &err) == 0, "%s", err.msg);
    lmc_scratch *s = lmc_scratch_new(&m->cfg, S);
    ck_assert_ptr_nonnull(s);
    int V = m->cfg.vocab;
    float *lc = malloc(sizeof(float) * S * V), *lg = malloc(sizeof(float) * S * V);
    double *cpu = malloc(sizeof(double) * nwin), *gpu_nll = malloc(sizeof(double) * nwin);
    for (int k = 0; k < nwin; k++)
        ck_assert_msg(lmc_forward_window_nll(w, ids + (size_t)k * S, S, s, &cpu[k],
                                             k == 0 ? lc : NULL, &err) == 0,
                      "%s", err.msg);
    lmc_backend *cm;
    ck_assert_msg(cuda_open(m, p, res, nwin * S, S, &cm, &err) == 0, "%s", err.msg);
    ck_assert_msg(lmc_backend_windows_nll(cm, ids, nwin, S, gpu_nll, &err) == 0, "%s", err.msg);
    ck_assert_msg(lmc_backend_logits(cm, ids, S, lg, &err) == 0, "%s", err.msg);
    double worst = 0;
    for (int k = 0; k < nwin; k++) {
        double d = fabs(gpu_nll[k] - cpu[k]) / fabs(cpu[k]);
        worst = d > worst ? d : worst;
    }
    double le = rel_err(lg, lc, (size_t)S * V);
    printf("  %s, %s residual: %d windows of %d, worst window NLL rel diff %.2e, logits rel "
           "err %.2e\n",
           lmc_precision_name(lmc_backend_precision(cm)), mode_res(cm), nwin, S, worst, le);
    ck_assert_msg(worst <= tol, "window NLL differs by %g (tolerance %g)", worst, tol);
    ck_assert_msg(le <= (p == LMC_PREC_FP32 ? 1e-5 : p == LMC_PREC_BF16 ? 3e-2 : 5e-3),
                  "logits differ: %g", le);
    lmc_backend_close(cm);
    free(lc), free(lg), free(cpu), free(gpu_nll);
    lmc_scratch_free(s);
    lmc_weights_free(w);
    return worst;
}

START_TEST(test_tiny_windows)
{
    if (!gpu())
        return;
    int ti = _i;
    lmc_model *m = tiny_model(&TINY[ti], 20 + ti);
    int S = 150, nwin = 3;
    int32_t *ids = random_ids(m, S * nwin, 7);
    printf("tiny %s #%d:\n", lmc_arch_name(m->cfg.arch), ti);
    for (int ci = 0; ci < N_MODES; ci++)
        compare_windows(m, ids, nwin, S, MODES[ci].p, MODES[ci].res, MODES[ci].win_tol);
    free(ids);
    lmc_model_free(m);
}
END_TEST

/* ---- real models ---- */

START_TEST(test_llama_xs)
{
    if (!gpu())
        return;
    lmc_model *m;
    lmc_error err;
    ck_assert_msg(lmc_model_load(lmc_test_data("llama-xs"), &m, &err) == 0, "%s", err.msg);
    int64_t n;
    int32_t *ids = lmc_test_tokenize(m, lmc_test_data("eval.txt"), &n);
    int S = 256, nwin = 4;
    ck_assert(n >= (int64_t)S * nwin);
    printf("llama-xs:\n");
    compare_windows(m, ids, nwin, S, LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 1e-6);
    compare_windows(m, ids, nwin, S, LMC_PREC_AUTO, LMC_RESIDUAL_AUTO, 5e-4);
    compare_windows(m, ids, nwin, S, LMC_PREC_BF16, LMC_RESIDUAL_AUTO, 5e-3);
    free(ids);
    lmc_model_free(m);
}
END_TEST

static int64_t ppl_windows(void)
{
    const char *e = getenv("LMC_CUDA_PPL_WINDOWS");
    return e && *e ? atoll(e) : 16;
}

/* Perplexity of m on ids: CPU evaluator, then the GPU in every mode, each
 * within its mode's tolerance or `floor`, the larger. */
static void ppl_agreement_tol(const char *label, const lmc_model *m, const int32_t *ids,
                              int64_t n, int seqlen, double floor)
{
    lmc_error err;
    lmc_ppl_opts o = {seqlen, ppl_windows(), label, NULL, NULL};
    lmc_ppl_result rc, rg;
    lmc_weights *w;
    ck_assert_msg(lmc_weights_prepare(m, &w, &err) == 0, "%s", err.msg);
    ck_assert_msg(lmc_perplexity(w, ids, n, &o, &rc, &err) == 0, "%s", err.msg);
    lmc_weights_free(w);
    printf("%s: cpu ppl %.6f (%lld windows, %.1f s, %.0f tokens/s)\n", label, rc.ppl,
           (long long)rc.windows, rc.seconds, rc.tokens_per_second);
    for (int i = 0; i < N_MODES; i++) {
        lmc_backend *cm;
        ck_assert_msg(cuda_open(m, MODES[i].p, MODES[i].res, 0, seqlen, &cm, &err) == 0,
                      "%s", err.msg);
        ck_assert_msg(lmc_backend_perplexity(cm, ids, n, &o, &rg, &err) == 0, "%s", err.msg);
        double d = (rg.ppl - rc.ppl) / rc.ppl;
        printf("%s: cuda %s, %s residual: ppl %.6f (relative %+.2e, %.3f s, %.0f tokens/s)\n",
               label, lmc_precision_name(lmc_backend_precision(cm)), mode_res(cm), rg.ppl, d,
               rg.seconds, rg.tokens_per_second);
        ck_assert_int_eq(rg.windows, rc.windows);
        ck_assert_int_eq(rg.scored, rc.scored);
        double tol = MODES[i].ppl_tol > floor ? MODES[i].ppl_tol : floor;
        ck_assert_msg(fabs(d) <= tol, "%s %s, %s residual: ppl %.6f vs cpu %.6f",
                      label, lmc_precision_name(lmc_backend_precision(cm)), mode_res(cm),
                      rg.ppl, rc.ppl);
        lmc_backend_close(cm);
    }
}

static void ppl_agreement(const char *label, const lmc_model *m, const int32_t *ids, int64_t n,
                          int seqlen)
{
    ppl_agreement_tol(label, m, ids, n, seqlen, 0);
}

static lmc_model *load_shared(const char *name, int32_t **ids, int64_t *n)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    const char *mp = lmc_test_shared_path(rel);
    if (!mp)
        return NULL;
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", mp);
    snprintf(rel, sizeof rel, "reference/%s.eval.ids.i32", name);
    lmc_error err;
    ck_assert_msg(lmc_read_ids_i32(lmc_test_shared_path(rel), ids, n, &err) == 0, "%s", err.msg);
    lmc_model *m;
    ck_assert_msg(lmc_model_load(mpath, &m, &err) == 0, "%s", err.msg);
    return m;
}

static const char *SHARED[] = {"llama-s", "opt-s", "gpt2-s"};

START_TEST(test_shared_ppl)
{
    if (!gpu())
        return;
    int32_t *ids;
    int64_t n;
    lmc_model *m = load_shared(SHARED[_i], &ids, &n);
    if (!m)
        return;
    ppl_agreement(SHARED[_i], m, ids, n, 1024);
    free(ids);
    lmc_model_free(m);
}
END_TEST

/* Linear w [rows][cols] of t's name as f16 low-rank factors keeping half
 * its parameters (plain SVD). */
static void set_lowrank(lmc_model *m, const lmc_tensor *t, const float *w, int64_t rows,
                        int64_t cols)
{
    lmc_error err;
    lmc_svd_opts o;
    lmc_svd_opts_default(&o);
    o.keep = 0.5;
    int r = lmc_svd_rank(&o, rows, cols);
    ck_assert_int_gt(r, 0);
    float *A = malloc(sizeof(float) * rows * r), *B = malloc(sizeof(float) * r * cols);
    lmc_svd_info info;
    ck_assert_msg(lmc_svd_factor(w, rows, cols, r, LMC_SVD_PLAIN, NULL, NULL, A, B, &info, &err) ==
                      0,
                  "%s", err.msg);
    lmc_tensor nt;
    memset(&nt, 0, sizeof nt);
    snprintf(nt.name, sizeof nt.name, "%s", t->name);
    nt.ndim = 2;
    nt.shape[0] = rows;
    nt.shape[1] = cols;
    uint8_t *blob;
    ck_assert_msg(lmc_lowrank_encode(A, B, rows, cols, r, LMC_ENC_F16, &nt.enc, &blob, &nt.nbytes,
                                     &err) == 0,
                  "%s", err.msg);
    nt.data = nt.owned = blob;
    ck_assert_msg(lmc_model_set_tensor(m, &nt, &err) == 0, "%s", err.msg);
    free(A), free(B);
}

/* Linear w [rows][cols] of t's name as W8A8 (smooth: with unfolded
 * smoothing scales, different for k so that the qkv slot quantizes its
 * input twice) or LLM.int8() (outlier columns by a rule of the role: k's
 * differ, so that the slot has two outlier groups). */
static void set_int8(lmc_model *m, const lmc_tensor *t, const char *role, float *w,
                     int64_t rows, int64_t cols, int kind)
{
    lmc_error err;
    lmc_tensor nt;
    memset(&nt, 0, sizeof nt);
    snprintf(nt.name, sizeof nt.name, "%s", t->name);
    nt.ndim = 2;
    nt.shape[0] = rows;
    nt.shape[1] = cols;
    uint8_t *blob;
    int isk = !strcmp(role, "k");
    if (kind == 2) {
        int32_t *oi = malloc(sizeof(int32_t) * cols);
        int no = 0;
        for (int64_t c = 0; c < cols; c++)
            if (isk ? c % 29 == 5 : c % 41 == 3)
                oi[no++] = (int32_t)c;
        ck_assert_msg(lmc_int8_encode(w, rows, cols, oi, no, 6.0f, &nt.enc, &blob, &nt.nbytes,
                                      &err) == 0,
                      "%s", err.msg);
        free(oi);
    } else {
        float *sm = NULL;
        if (kind == 1) {
            sm = malloc(sizeof(float) * cols);
            for (int64_t c = 0; c < cols; c++) {
                sm[c] = 0.5f + 0.25f * (float)(c % 7) + (isk ? 0.125f : 0.0f);
                for (int64_t r = 0; r < rows; r++)
                    w[r * cols + c] *= sm[c];
            }
        }
        ck_assert_msg(lmc_w8a8_encode(w, rows, cols, sm, &nt.enc, &blob, &nt.nbytes, &err) == 0,
                      "%s", err.msg);
        free(sm);
    }
    nt.data = nt.owned = blob;
    ck_assert_msg(lmc_model_set_tensor(m, &nt, &err) == 0, "%s", err.msg);
}

/* llama-s with every block linear re-encoded in memory: RTN w4 g128 (qgroup,
 * GPTQ's encoding), 50% magnitude (sparse), 2:4 (N:M), low-rank factor pairs
 * (kept as factors on the device), low-rank but for "up" (the gate|up slot
 * mixed, hence decoded to dense), W8A8, W8A8 with smoothing scales,
 * LLM.int8() (int8 products on the device), RTN w3 g128 with a scattered
 * act-order g_idx (packed with g_idx). */
static void reencode(lmc_model *m, int kind)
{
    lmc_linear_desc ld[8];
    int nl = lmc_block_linears(&m->cfg, ld);
    lmc_error err;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < nl; k++) {
            lmc_tensor *t = lmc_model_block_tensor(m, l, ld[k].role, "weight");
            ck_assert_ptr_nonnull(t);
            float *w;
            ck_assert_msg(lmc_tensor_to_f32(t, &w, &err) == 0, "%s", err.msg);
            int64_t rows = t->shape[0], cols = t->shape[1];
            if (kind >= 5 && kind <= 7) {
                set_int8(m, t, ld[k].role, w, rows, cols, kind - 5);
            } else if (kind >= 3 && kind <= 4) {
                if (kind == 3 || strcmp(ld[k].role, "up"))
                    set_lowrank(m, t, w, rows, cols);
            } else if (kind == 0 || kind == 8) {
                lmc_qresult q;
                ck_assert_msg(lmc_rtn_quantize(w, rows, cols, kind ? 3 : 4, 128, 0, &q, NULL,
                                               &err) == 0,
                              "%s", err.msg);
                if (kind == 8) { /* columns scattered over the groups, as act-order does */
                    for (int64_t c = 0; c < cols; c++)
                        q.g_idx[c] = (int32_t)((c * 7919) % q.ngroups);
                    q.has_gidx = q.ngroups > 1;
                }
                ck_assert_msg(lmc_store_quantized(m, l, ld[k].role, &q, NULL, &err) == 0, "%s",
                              err.msg);
                lmc_qresult_free(&q);
            } else {
                lmc_prune_opts o;
                lmc_prune_opts_default(&o);
                if (kind == 1)
                    o.sparsity = 0.5;
                else
                    o.n = 2, o.m = 4;
                uint8_t *keep = malloc((size_t)(rows * cols));
                ck_assert_msg(lmc_magnitude_mask(w, rows, cols, &o, keep, &err) == 0, "%s",
                              err.msg);
                lmc_tensor nt;
                char name[64];
                snprintf(name, sizeof name, "%s", t->name);
                ck_assert_msg(lmc_prune_encode(name, w, rows, cols, keep, &o, &nt, &err) == 0,
                              "%s", err.msg);
                ck_assert_msg(lmc_model_set_tensor(m, &nt, &err) == 0, "%s", err.msg);
                free(keep);
            }
            free(w);
        }
}

START_TEST(test_encoded_ppl)
{
    if (!gpu())
        return;
    int32_t *ids;
    int64_t n;
    lmc_model *m = load_shared("llama-s", &ids, &n);
    if (!m)
        return;
    const char *labels[8] = {"llama-s rtn w4 g128 (qgroup, packed)",
                             "llama-s magnitude 50% (sparse)", "llama-s magnitude 2:4 (nm)",
                             "llama-s svd keep 0.5 (lowrank)",
                             "llama-s svd keep 0.5 but up (lowrank + f16)", "llama-s w8a8",
                             "llama-s w8a8 with smoothing scales", "llama-s llm.int8()"};
    reencode(m, _i);
    lmc_tensor *t = lmc_model_block_tensor(m, 0, "q", "weight");
    static const lmc_enc_id ids_of[8] = {LMC_ENC_QGROUP,  LMC_ENC_SPARSE, LMC_ENC_NM,
                                         LMC_ENC_LOWRANK, LMC_ENC_LOWRANK, LMC_ENC_W8A8,
                                         LMC_ENC_W8A8,    LMC_ENC_INT8_OUTLIER};
    ck_assert_int_eq(t->enc.id, ids_of[_i]);
    /* activation-quantized models (W8A8, LLM.int8()) cannot agree to 1e-4:
     * their quantizers' inputs differ between the devices in the last bit,
     * and that alone moves the ppl by ~3e-4. Measured with the CPU alone on
     * a llama-s SmoothQuant container (16 windows): a 1-ulp change of half
     * the W8A8 quantizer inputs moved the ppl from 65.01496 to 65.03404
     * (2.9e-4). 1e-3 leaves room for that; test_slot_int8 checks the
     * kernels themselves on identical inputs. */
    ppl_agreement_tol(labels[_i], m, ids, n, 1024, _i >= 5 ? 1e-3 : 0);
    free(ids);
    lmc_model_free(m);
}
END_TEST

/* Packed qgroup slots (expanded per GEMM on the device) against the same
 * weights dequantized on the host at load (LMC_CUDA_PACKED=0): the device
 * dequantizer rounds as the host's decode + upload, so the window NLLs are
 * identical in every mode; W4 g128 and W3 g128 with a scattered g_idx. */
START_TEST(test_packed_exact)
{
    if (!gpu())
        return;
    int32_t *ids;
    int64_t n;
    lmc_model *m = load_shared("llama-s", &ids, &n);
    if (!m)
        return;
    reencode(m, _i ? 8 : 0);
    lmc_tensor *t = lmc_model_block_tensor(m, 1, "down", "weight");
    ck_assert_int_eq(t->enc.id, LMC_ENC_QGROUP);
    ck_assert_int_eq(t->enc.has_gidx, _i);
    int S = 1024, nwin = 4;
    ck_assert(n >= (int64_t)S * nwin);
    lmc_error err;
    for (int ci = 0; ci < N_MODES; ci++) {
        double nll[2][4];
        size_t dev[2];
        for (int packed = 0; packed < 2; packed++) {
            setenv("LMC_CUDA_PACKED", packed ? "1" : "0", 1);
            lmc_backend *cm;
            ck_assert_msg(cuda_open(m, MODES[ci].p, MODES[ci].res, nwin * S, S, &cm, &err) == 0,
                          "%s", err.msg);
            ck_assert_msg(lmc_backend_windows_nll(cm, ids, nwin, S, nll[packed], &err) == 0,
                          "%s", err.msg);
            dev[packed] = lmc_backend_bytes(cm);
            lmc_weight_bytes wb[LMC_MAX_WEIGHT_BYTES];
            int nwb = lmc_backend_weight_bytes(cm, wb, LMC_MAX_WEIGHT_BYTES);
            int seen = 0;
            for (int i = 0; i < nwb; i++)
                seen |= !strcmp(wb[i].encoding, "qgroup") &&
                        !strcmp(wb[i].held, packed ? "packed" : "dequantized");
            ck_assert_msg(seen, "no qgroup weights held %s", packed ? "packed" : "dequantized");
            lmc_backend_close(cm);
        }
        unsetenv("LMC_CUDA_PACKED");
        printf("llama-s w%d g128%s, %s: packed device bytes %.1f MB, decoded %.1f MB\n",
               _i ? 3 : 4, _i ? " g_idx" : "", lmc_precision_name(MODES[ci].p), dev[1] / 1e6,
               dev[0] / 1e6);
        ck_assert(dev[1] < dev[0]);
        for (int k = 0; k < nwin; k++)
            ck_assert_msg(nll[0][k] == nll[1][k], "window %d: packed %.17g, decoded %.17g", k,
                          nll[1][k], nll[0][k]);
    }
    free(ids);
    lmc_model_free(m);
}
END_TEST

/* Load errors name the tensor, on the device as on the CPU. */
START_TEST(test_load_errors)
{
    if (!gpu())
        return;
    lmc_error err;
    lmc_backend *cm;
    /* a NaN in an fp16 blob */
    lmc_model *m = tiny_model(&TINY[1], 30);
    lmc_tensor *t = lmc_model_block_tensor(m, 1, "up", "weight");
    ((uint16_t *)t->owned)[5 * t->shape[1] + 3] = 0x7e00;
    ck_assert_int_eq(
        cuda_open(m, LMC_PREC_FP16, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.1.up.weight") && strstr(err.msg, "NaN") &&
                      strstr(err.msg, "[5, 3]"),
                  "%s", err.msg);
    lmc_model_free(m);
    /* an fp32 weight beyond fp16's range: fine in fp32 and bf16, not fp16 */
    m = tiny_model(&TINY[0], 31);
    t = lmc_model_block_tensor(m, 0, "down", "weight");
    ((float *)t->owned)[7] = 1e6f;
    ck_assert_int_eq(
        cuda_open(m, LMC_PREC_FP16, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.0.down.weight") && strstr(err.msg, "overflows fp16"), "%s",
                  err.msg);
    ck_assert_msg(
        cuda_open(m, LMC_PREC_BF16, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err) == 0,
        "%s", err.msg);
    lmc_backend_close(cm);
    /* a missing tensor */
    t = lmc_model_block_tensor(m, 1, "k", "weight");
    snprintf(t->name, sizeof t->name, "blk.1.kk.weight");
    ck_assert_int_eq(
        cuda_open(m, LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.1.k.weight is missing"), "%s", err.msg);
    lmc_model_free(m);
    /* a NaN in a low-rank factor kept as factors on the device */
    m = tiny_model(&TINY[0], 33);
    t = lmc_model_block_tensor(m, 1, "down", "weight");
    float *w;
    ck_assert_msg(lmc_tensor_to_f32(t, &w, &err) == 0, "%s", err.msg);
    set_lowrank(m, t, w, t->shape[0], t->shape[1]);
    free(w);
    t = lmc_model_block_tensor(m, 1, "down", "weight");
    ck_assert_int_eq(t->enc.id, LMC_ENC_LOWRANK);
    ck_assert_msg(
        cuda_open(m, LMC_PREC_FP16, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err) == 0,
        "%s", err.msg);
    lmc_backend_close(cm);
    ((uint16_t *)t->owned)[t->enc.rank + 1] = 0x7e00; /* A [1][1] */
    ck_assert_int_eq(
        cuda_open(m, LMC_PREC_FP16, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.1.down.weight") && strstr(err.msg, "factor A") &&
                      strstr(err.msg, "NaN") && strstr(err.msg, "[1, 1]"),
                  "%s", err.msg);
    lmc_model_free(m);
    /* an int8 slot that mixes W8A8 with a dense linear */
    m = tiny_model(&TINY[0], 34);
    t = lmc_model_block_tensor(m, 0, "k", "weight");
    ck_assert_msg(lmc_tensor_to_f32(t, &w, &err) == 0, "%s", err.msg);
    set_int8(m, t, "k", w, t->shape[0], t->shape[1], 0);
    free(w);
    ck_assert_int_eq(
        cuda_open(m, LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.0.k.weight") && strstr(err.msg, "w8a8") &&
                      strstr(err.msg, "--device cpu"),
                  "%s", err.msg);
    lmc_model_free(m);
    /* a packed qgroup scale beyond what fp16 holds once dequantized */
    m = tiny_model(&TINY[0], 35);
    t = lmc_model_block_tensor(m, 1, "o", "weight");
    ck_assert_msg(lmc_tensor_to_f32(t, &w, &err) == 0, "%s", err.msg);
    {
        lmc_qresult q;
        ck_assert_msg(lmc_rtn_quantize(w, t->shape[0], t->shape[1], 4, 32, 0, &q, NULL, &err) ==
                          0,
                      "%s", err.msg);
        q.scales[2] = 60000.0f; /* row 0, group 2 */
        for (int c = 64; c < 96; c++)
            q.codes[c] = 15, q.zeros[2] = 0;
        ck_assert_msg(lmc_store_quantized(m, 1, "o", &q, NULL, &err) == 0, "%s", err.msg);
        lmc_qresult_free(&q);
    }
    free(w);
    ck_assert_int_eq(
        cuda_open(m, LMC_PREC_FP16, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.1.o.weight") && strstr(err.msg, "overflows fp16") &&
                      strstr(err.msg, "[0, 64]"),
                  "%s", err.msg);
    ck_assert_msg(
        cuda_open(m, LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err) == 0, "%s",
        err.msg);
    lmc_backend_close(cm);
    /* a packed g_idx out of range (checked on the host, not decoded there) */
    t = lmc_model_block_tensor(m, 1, "o", "weight");
    {
        lmc_qgroup_layout l;
        lmc_qgroup_layout_of(&t->enc, t->shape[0], t->shape[1], &l);
        ck_assert(!t->enc.has_gidx);
        ck_assert_msg(lmc_tensor_to_f32(t, &w, &err) == 0, "%s", err.msg);
        lmc_qresult q;
        ck_assert_msg(lmc_rtn_quantize(w, t->shape[0], t->shape[1], 4, 32, 0, &q, NULL, &err) ==
                          0,
                      "%s", err.msg);
        free(w);
        q.g_idx[3] = 1, q.g_idx[40] = 0; /* a g_idx the encoding must store */
        q.has_gidx = 1;
        ck_assert_msg(lmc_store_quantized(m, 1, "o", &q, NULL, &err) == 0, "%s", err.msg);
        int32_t bad = (int32_t)q.ngroups + 7;
        lmc_qresult_free(&q);
        t = lmc_model_block_tensor(m, 1, "o", "weight");
        ck_assert(t->enc.has_gidx && t->owned);
        lmc_qgroup_layout_of(&t->enc, t->shape[0], t->shape[1], &l);
        memcpy((uint8_t *)t->owned + l.off_gidx + 12, &bad, 4);
    }
    ck_assert_int_eq(
        cuda_open(m, LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 256, 64, &cm, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.1.o.weight") && strstr(err.msg, "g_idx[3]"), "%s",
                  err.msg);
    lmc_model_free(m);
    /* windows: too many tokens, a bad id */
    m = tiny_model(&TINY[2], 32);
    ck_assert_msg(
        cuda_open(m, LMC_PREC_FP32, LMC_RESIDUAL_AUTO, 200, 100, &cm, &err) == 0,
        "%s", err.msg);
    int32_t ids[200] = {0};
    double nll[2];
    ck_assert_int_eq(lmc_backend_windows_nll(cm, ids, 2, 101, nll, &err), -1);
    ck_assert_int_eq(lmc_backend_windows_nll(cm, ids, 1, 161, nll, &err), -1); /* > max_pos */
    ck_assert_msg(strstr(err.msg, "learned positions"), "%s", err.msg);
    ids[9] = m->cfg.vocab;
    ck_assert_int_eq(lmc_backend_windows_nll(cm, ids, 1, 100, nll, &err), -1);
    ck_assert_msg(strstr(err.msg, "position 9"), "%s", err.msg);
    lmc_backend_close(cm);
    /* a half residual: not at fp32, and no block input beyond fp16's range */
    ck_assert_int_eq(
        cuda_open(m, LMC_PREC_FP32, LMC_RESIDUAL_HALF, 200, 100, &cm, &err), -1);
    ck_assert_msg(strstr(err.msg, "half residual"), "%s", err.msg);
    ck_assert_msg(
        cuda_open(m, LMC_PREC_FP16, LMC_RESIDUAL_AUTO, 200, 100, &cm, &err) == 0, "%s",
        err.msg);
    int H = m->cfg.hidden;
    float *x = calloc((size_t)100 * H, sizeof(float));
    x[5 * H + 2] = 1e6f;
    ck_assert_int_eq(lmc_cuda_forward_block(cm, 0, x, 100, &err), -1);
    ck_assert_msg(strstr(err.msg, "[5, 2]") && strstr(err.msg, "not finite in the fp16 residual"),
                  "%s", err.msg);
    free(x);
    lmc_backend_close(cm);
    lmc_model_free(m);
}
END_TEST


/* ---- the SVD pass's factorization against LAPACK's ---- */

/* sum_k A[r][k] B[k][c] in double */
static void lr_product(const float *A, const float *B, int64_t rows, int64_t cols, int r,
                       double *P)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int k = 0; k < r; k++)
                s += (double)A[i * r + k] * (double)B[k * cols + j];
            P[i * cols + j] = s;
        }
}

/* Shapes wide, tall and square, each method; case 3 of each shape: a
 * weight of rank 4 factored at rank 12 (a singular spectrum), whitening
 * on an x x^T with a dead input channel (damped on both devices). */
START_TEST(test_svd_factor)
{
    if (!gpu())
        return;
    static const int64_t shapes[3][2] = {{40, 72}, {72, 40}, {56, 56}};
    const int64_t rows = shapes[_i / 4][0], cols = shapes[_i / 4][1];
    const int variant = _i % 4; /* 0 plain, 1 asvd, 2 whiten, 3 rank-deficient whiten */
    const lmc_svd_method m = variant == 0 ? LMC_SVD_PLAIN
                             : variant == 1 ? LMC_SVD_ASVD
                                            : LMC_SVD_WHITEN;
    const int r = 12;
    lmc_test_rng_seed(900 + _i);
    float *w = rnd((size_t)rows * cols, 0.1, -0.05);
    if (variant == 3) { /* w = P Q, P [rows][4], Q [4][cols] */
        float *P = rnd((size_t)rows * 4, 1, -0.5), *Q = rnd((size_t)4 * cols, 1, -0.5);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                float a = 0;
                for (int k = 0; k < 4; k++)
                    a += P[i * 4 + k] * Q[k * cols + j];
                w[i * cols + j] = a;
            }
        free(P), free(Q);
    }
    double *sc = malloc(sizeof(double) * cols), *xtx = calloc((size_t)cols * cols, 8);
    for (int64_t j = 0; j < cols; j++)
        sc[j] = 1.2 + lmc_test_urand(); /* urand: [-1, 1) */
    const int ntok = 3 * (int)cols;
    float *x = rnd((size_t)ntok * cols, 2, -1);
    for (int t = 0; t < ntok; t++) {
        if (variant == 3)
            x[(size_t)t * cols + 5] = 0; /* a dead channel: x x^T singular */
        for (int64_t a = 0; a < cols; a++)
            for (int64_t b = 0; b < cols; b++)
                xtx[a * cols + b] += (double)x[(size_t)t * cols + a] * x[(size_t)t * cols + b];
    }
    float *A0 = malloc(sizeof(float) * rows * r), *B0 = malloc(sizeof(float) * r * cols);
    float *A1 = malloc(sizeof(float) * rows * r), *B1 = malloc(sizeof(float) * r * cols);
    double *P0 = malloc(sizeof(double) * rows * cols), *P1 = malloc(sizeof(double) * rows * cols);
    lmc_error err;
    lmc_svd_info i0;
    lmc_cuda_svd_info i1;
    ck_assert_msg(lmc_svd_factor(w, rows, cols, r, m, sc, xtx, A0, B0, &i0, &err) == 0, "%s",
                  err.msg);
    lmc_cuda_svd *dev;
    ck_assert_msg(lmc_cuda_svd_open(NULL, &dev, &err) == 0, "%s", err.msg);
    lr_product(A0, B0, rows, cols, r, P0);
    for (int qr = 0; qr < 2; qr++) { /* Xgesvdp, then the QR-iteration fallback */
        setenv("LMC_CUDA_SVD_QR", qr ? "1" : "0", 1);
        ck_assert_msg(lmc_cuda_svd_factor(dev, w, rows, cols, r, (int)m, sc, xtx, -1, A1, B1, &i1,
                                          &err) == 0,
                      "%s", err.msg);
        if (qr)
            ck_assert_msg(i1.qr == 1, "LMC_CUDA_SVD_QR=1 did not take the QR path");
        lr_product(A1, B1, rows, cols, r, P1);
        double num = 0, den = 0;
        for (size_t k = 0; k < (size_t)(rows * cols); k++) {
            num += (P1[k] - P0[k]) * (P1[k] - P0[k]);
            den += P0[k] * P0[k];
        }
        double rel = sqrt(num / den);
        ck_assert_msg(rel < 2e-6, "svd shape %lld x %lld variant %d qr %d: products differ by %g",
                      (long long)rows, (long long)cols, variant, qr, rel);
        ck_assert_msg(fabs(i1.energy - i0.energy) < 1e-12, "energy %.15g vs %.15g", i1.energy,
                      i0.energy);
        ck_assert_msg(i1.damp == i0.damp, "damp %g vs %g", i1.damp, i0.damp);
        if (variant == 3)
            ck_assert_msg(i0.damp > 0, "the dead channel did not need damping");
        /* the rebalanced factors themselves: up to the sign of each pair */
        if (m != LMC_SVD_PLAIN && variant != 3) {
            double worst = 0;
            for (int k = 0; k < r; k++) {
                double sg = 0;
                for (int64_t i = 0; i < rows; i++)
                    sg += (double)A0[i * r + k] * A1[i * r + k];
                sg = sg < 0 ? -1 : 1;
                for (int64_t i = 0; i < rows; i++)
                    worst = fmax(worst, fabs(A1[i * r + k] * sg - A0[i * r + k]));
            }
            ck_assert_msg(worst < 1e-4, "factor A differs by %g beyond its sign", worst);
        }
    }
    unsetenv("LMC_CUDA_SVD_QR");
    /* the error of what is stored (the last, QR-path factors in fp16),
     * against the same sums in double on the host */
    double e1, o1;
    ck_assert_msg(lmc_cuda_svd_stored_error(dev, 1, rows, cols, r, m == LMC_SVD_WHITEN, xtx, -1,
                                            &e1, &o1, &err) == 0,
                  "%s", err.msg);
    for (size_t k = 0; k < (size_t)(rows * r); k++)
        A1[k] = lmc_f16_to_f32(lmc_f32_to_f16(A1[k]));
    for (size_t k = 0; k < (size_t)(r * cols); k++)
        B1[k] = lmc_f16_to_f32(lmc_f32_to_f16(B1[k]));
    lr_product(A1, B1, rows, cols, r, P1);
    double fn = 0, fd = 0, tn = 0, td = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t a = 0; a < cols; a++) {
            double ea = (double)w[i * cols + a] - P1[i * cols + a];
            fn += ea * ea;
            fd += (double)w[i * cols + a] * w[i * cols + a];
            if (m != LMC_SVD_WHITEN)
                continue;
            for (int64_t b = 0; b < cols; b++) {
                double eb = (double)w[i * cols + b] - P1[i * cols + b];
                tn += ea * xtx[a * cols + b] * eb;
                td += (double)w[i * cols + a] * xtx[a * cols + b] * w[i * cols + b];
            }
        }
    double e0 = sqrt(fn / fd), o0 = m == LMC_SVD_WHITEN ? sqrt(tn / td) : -1;
    ck_assert_msg(fabs(e1 - e0) <= 1e-5 * e0 + 1e-6, "stored error %.10g vs %.10g", e1, e0);
    ck_assert_msg(fabs(o1 - o0) <= 1e-5 * fabs(o0) + 1e-6, "output error %.10g vs %.10g", o1,
                  o0);
    ck_assert_msg(lmc_cuda_svd_peak_bytes(dev) > 0, "the context counted no device memory");
    lmc_cuda_svd_free(dev);
    free(w), free(sc), free(xtx), free(x), free(A0), free(B0), free(A1), free(B1), free(P0),
        free(P1);
}
END_TEST

#endif /* LMC_HAVE_CUDA */

static Suite *suite(void)
{
    Suite *s = suite_create("cuda");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_unavailable_message);
    tcase_add_test(tc, test_precision_names);
#ifdef LMC_HAVE_CUDA /* a build without nvcc has no CUDA backend to check */
    tcase_add_test(tc, test_norm);
    tcase_add_test(tc, test_qkv_rope);
    tcase_add_test(tc, test_attention);
    tcase_add_test(tc, test_attention_rope);
    tcase_add_test(tc, test_act);
    tcase_add_test(tc, test_row_nll);
    tcase_add_test(tc, test_i8_gemm);
    tcase_add_loop_test(tc, test_block, 0, N_TINY);
    tcase_add_loop_test(tc, test_slot_int8, 0, 3 * N_TINY);
    tcase_add_loop_test(tc, test_i8_forward, 0, 2 * N_TINY);
    tcase_add_loop_test(tc, test_tiny_windows, 0, N_TINY);
    tcase_add_test(tc, test_load_errors);
    tcase_add_loop_test(tc, test_svd_factor, 0, 12);
#endif
    suite_add_tcase(s, tc);
#ifdef LMC_HAVE_CUDA
    TCase *tm = tcase_create("models");
    tcase_set_timeout(tm, 1800);
    tcase_add_test(tm, test_llama_xs);
    tcase_add_loop_test(tm, test_shared_ppl, 0, 3);
    tcase_add_loop_test(tm, test_encoded_ppl, 0, 8);
    tcase_add_loop_test(tm, test_packed_exact, 0, 2);
    suite_add_tcase(s, tm);
#endif
    return s;
}

int main(void)
{
    lmc_encodings_init();
    return lmc_test_run(suite());
}
