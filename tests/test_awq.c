/* compress/awq.c: AWQ's quantizer and its exact LMC_ENC_QGROUP storage, the
 * scale search and the clip search on synthetic layers, the pass on tiny
 * random models of every architecture. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/driver.h"
#include "../calib/windows.h"
#include "../compress/awq.h"
#include "../core/half.h"
#include "../core/model.h"
#include "../eval/forward.h"
#include "../eval/weights.h"
#include "testutil.h"
#include "tinymodel.h"

/* the shared generator of tests/tinymodel.c */
#define rng_seed lmc_test_rng_seed
#define urand lmc_test_urand
static double nrand(void) /* roughly normal */
{
    return (urand() + urand() + urand() + urand()) * 0.866;
}

static float f16r(float x) { return lmc_f16_to_f32(lmc_f32_to_f16(x)); }

/* ---- AWQ's quantizer ---- */

START_TEST(awq_fit_formula)
{
    /* all positive: AWQ does not force 0 into the range (GPTQ's would) */
    const float a[] = {0.5f, 1.0f, 2.0f};
    float s;
    uint8_t z;
    lmc_awq_fit(2, 0, a, 3, &s, &z);
    ck_assert_float_eq(s, 0.5f);
    ck_assert_int_eq(z, 0); /* -round(0.5 / 0.5) = -1, clamped to 0 */
    float q[3];
    lmc_qresult r;
    lmc_error err;
    ck_assert_int_eq(lmc_qresult_alloc(&r, 1, 3, 2, -1, 0, &err), 0);
    lmc_awq_quantize(a, 1, 3, 2, -1, 0, q, &r);
    ck_assert_float_eq(q[0], 0.5f);
    ck_assert_float_eq(q[1], 1.0f);
    ck_assert_float_eq(q[2], 1.5f); /* code 4 clamps to 3 */
    ck_assert_int_eq(r.codes[2], 3);
    lmc_qresult_free(&r);

    /* mixed signs, 3 bits: scale = fp16((max - min) / 7), zero = -round(min / scale) */
    const float b[] = {-1.0f, 0.2f, 2.0f, 0.0f};
    lmc_awq_fit(3, 0, b, 4, &s, &z);
    float ws = f16r(3.0f / 7.0f);
    ck_assert_float_eq(s, ws);
    ck_assert_int_eq(z, (int)-rintf(-1.0f / ws));
    /* a constant group: the 1e-5 floor of the range */
    const float c[] = {0.0f, 0.0f};
    lmc_awq_fit(4, 0, c, 2, &s, &z);
    ck_assert_float_eq(s, f16r(1e-5f / 15.0f));
    ck_assert_int_eq(z, 0);
    /* symmetric: absmax / (2^(b-1) - 1), zero fixed at 2^(b-1) */
    const float d[] = {-1.0f, 0.5f};
    lmc_awq_fit(4, 1, d, 2, &s, &z);
    ck_assert_float_eq(s, f16r(1.0f / 7.0f));
    ck_assert_int_eq(z, 8);
}
END_TEST

/* What AWQ computes is what the container decodes, bit for bit. */
START_TEST(awq_qgroup_exact)
{
    const struct { int bits, group, sym; } cases[] = {
        {4, 128, 0}, {3, 128, 0}, {4, 64, 1}, {3, -1, 0}, {2, 32, 0}, {8, 128, 0}};
    const int64_t R = 9, C = 300; /* the last group of 128 is short (44) */
    float *W = malloc(sizeof(float) * R * C), *wq = malloc(sizeof(float) * R * C);
    float *dec = malloc(sizeof(float) * R * C);
    rng_seed(4);
    for (int64_t i = 0; i < R * C; i++)
        W[i] = (float)(nrand() * 0.05 + (i % 7 == 0 ? 0.03 : 0.0));
    lmc_encodings_init();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lmc_qresult q;
        lmc_error err;
        ck_assert_int_eq(
            lmc_qresult_alloc(&q, R, C, cases[k].bits, cases[k].group, cases[k].sym, &err), 0);
        lmc_awq_quantize(W, R, C, cases[k].bits, cases[k].group, cases[k].sym, wq, &q);
        lmc_encoding e;
        uint8_t *blob;
        size_t nb;
        ck_assert_msg(lmc_qresult_encode(&q, &e, &blob, &nb, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(lmc_enc_get(LMC_ENC_QGROUP)->to_f32(&e, blob, R, C, dec, &err), 0);
        double num = 0, den = 0;
        for (int64_t i = 0; i < R * C; i++) {
            ck_assert_msg(dec[i] == wq[i], "case %zu: [%lld] %g vs %g", k, (long long)i,
                          (double)dec[i], (double)wq[i]);
            num += (double)(wq[i] - W[i]) * (wq[i] - W[i]);
            den += (double)W[i] * W[i];
        }
        /* and it is a quantization, not a copy or garbage */
        double rel = sqrt(num / den);
        ck_assert_msg(rel > 0 && rel < 0.5, "case %zu: relative error %g", k, rel);
        free(blob);
        lmc_qresult_free(&q);
    }
    free(W);
    free(wq);
    free(dec);
}
END_TEST

/* ---- searches on synthetic layers ---- */

/* A linear whose inputs have a few outlier channels (mean |x| 30x the
 * rest): the search must move weight precision towards them (r > 0) and
 * beat plain rounding (r = 0, s = 1) on the output error. */
START_TEST(awq_search_picks_outlier_scales)
{
    const int64_t R = 96, C = 256, N = 512;
    float *W = malloc(sizeof(float) * R * C), *X = malloc(sizeof(float) * N * C);
    float *s = malloc(sizeof(float) * C);
    rng_seed(7);
    for (int64_t i = 0; i < R * C; i++)
        W[i] = (float)(nrand() * 0.02);
    for (int64_t t = 0; t < N; t++)
        for (int64_t c = 0; c < C; c++)
            X[t * C + c] = (float)(nrand() * (c % 64 == 5 ? 30.0 : 1.0));
    lmc_awq_opts o;
    lmc_awq_opts_default(&o);
    o.bits = 3;
    double ratio, loss[20];
    lmc_error err;
    ck_assert_int_eq(lmc_awq_search_linear(W, NULL, R, C, X, N, &o, s, &ratio, loss, &err), 0);
    ck_assert_msg(ratio > 0, "ratio %g", ratio);
    int best = (int)lround(ratio * o.grid);
    ck_assert_msg(loss[best] < 0.8 * loss[0], "loss %g vs rtn %g", loss[best], loss[0]);
    for (int i = 0; i < o.grid; i++)
        ck_assert(loss[best] <= loss[i]);
    /* the scales favour the outlier channels and are normalized */
    ck_assert(s[5] > 2.0f * s[6]);
    float mx = 0, mn = INFINITY;
    for (int64_t c = 0; c < C; c++) {
        mx = fmaxf(mx, s[c]);
        mn = fminf(mn, s[c]);
    }
    ck_assert_msg(fabs(mx * mn - 1.0) < 1e-3, "max*min = %g", (double)(mx * mn));

    /* uniform inputs: nothing to protect; whatever it picks is no worse than r = 0 */
    for (int64_t i = 0; i < N * C; i++)
        X[i] = (float)nrand();
    ck_assert_int_eq(lmc_awq_search_linear(W, NULL, R, C, X, N, &o, s, &ratio, loss, &err), 0);
    best = (int)lround(ratio * o.grid);
    ck_assert(loss[best] <= loss[0]);
    free(W);
    free(X);
    free(s);
}
END_TEST

static double quant_output_mse(const float *W, int64_t R, int64_t C, const float *X, int64_t N,
                               const lmc_awq_opts *o, const float *Wref)
{
    float *q = malloc(sizeof(float) * R * C);
    lmc_awq_quantize(W, R, C, o->bits, o->group, o->sym, q, NULL);
    double e = 0;
    for (int64_t t = 0; t < N; t++)
        for (int64_t r = 0; r < R; r++) {
            double a = 0;
            for (int64_t c = 0; c < C; c++)
                a += (double)X[t * C + c] * ((double)q[r * C + c] - Wref[r * C + c]);
            e += a * a;
        }
    free(q);
    return e / (double)(N * R);
}

/* Weights with rare large entries: clipping trades them for finer steps
 * elsewhere and lowers the quantized output error. */
START_TEST(awq_clip_reduces_error)
{
    const int64_t R = 32, C = 256, N = 1024;
    float *W = malloc(sizeof(float) * R * C), *W0 = malloc(sizeof(float) * R * C);
    float *X = malloc(sizeof(float) * N * C);
    rng_seed(9);
    for (int64_t i = 0; i < R * C; i++)
        W[i] = W0[i] = (float)(nrand() * 0.02 * (i % 97 == 0 ? 8.0 : 1.0));
    for (int64_t i = 0; i < N * C; i++)
        X[i] = (float)nrand();
    lmc_awq_opts o;
    lmc_awq_opts_default(&o);
    o.bits = 3;
    double before = quant_output_mse(W, R, C, X, N, &o, W0), gain;
    lmc_error err;
    ck_assert_int_eq(lmc_awq_clip_linear(W, R, C, X, N, &o, &gain, &err), 0);
    double after = quant_output_mse(W, R, C, X, N, &o, W0);
    ck_assert_msg(gain < 0.95 && after < 0.95 * before, "gain %g, mse %g -> %g", gain, before,
                  after);
    int clipped = 0;
    for (int64_t i = 0; i < R * C; i++) {
        ck_assert(fabsf(W[i]) <= fabsf(W0[i]));
        clipped += W[i] != W0[i];
    }
    ck_assert(clipped > 0);
    free(W);
    free(W0);
    free(X);
}
END_TEST

/* ---- the pass on tiny models ---- */

#define NTOK 48

/* norm outlier channels, as real models have */
static const lmc_tiny_opts awq_tiny = {1.5, {3, 40}, {6.0f, -5.0f}, 0};
static lmc_config tiny_config(lmc_arch arch, int nkv)
{
    return lmc_tiny_config(arch, 64, 4, nkv, 16, 96, 97, 2);
}
static lmc_model *tiny_model(const lmc_config *c, uint64_t seed)
{
    return lmc_tiny_model(c, seed, &awq_tiny);
}
static float *logits(const lmc_model *m) { return lmc_tiny_logits(m, NTOK, 37, 11); }

static double rms_diff(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)a[i] * a[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static lmc_windows g_win;

static void run_awq(lmc_model *m, const lmc_awq_opts *o, cJSON **summary)
{
    if (!g_win.n) {
        const int64_t ntok = 4096;
        int32_t *ids = malloc((size_t)ntok * sizeof *ids);
        for (int64_t i = 0; i < ntok; i++)
            ids[i] = (int32_t)((i * 7919 + (i >> 2) * 31) % 97);
        lmc_error err;
        ck_assert_msg(lmc_windows_sample(ids, ntok, 8, 32, 0, &g_win, "ids", &err) == 0, "%s",
                      err.msg);
        free(ids);
    }
    lmc_pass p;
    lmc_awq_pass(&p, o);
    lmc_error err;
    cJSON *s = cJSON_CreateObject();
    lmc_driver_opts dopt;
    lmc_driver_opts_default(&dopt);
    ck_assert_msg(lmc_driver_run(m, &p, p.stats ? &g_win : NULL, &dopt, s, &err) == 0, "%s",
                  err.msg);
    if (summary)
        *summary = s;
    else
        cJSON_Delete(s);
}

static const struct {
    lmc_arch arch;
    int nkv;
    const char *what;
} archs[] = {{LMC_ARCH_LLAMA, 4, "llama"}, {LMC_ARCH_LLAMA, 2, "llama-gqa"},
             {LMC_ARCH_OPT, 4, "opt"},     {LMC_ARCH_GPT2, 4, "gpt2"}};

/* --scale-only --no-clip: the searched scales are folded (norms, v -> o,
 * up -> down) and nothing else changes: the fp16 result computes the
 * original function up to fp16 rounding of the weights. */
START_TEST(awq_scale_only_keeps_function)
{
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        lmc_config c = tiny_config(archs[a].arch, archs[a].nkv);
        lmc_model *m = tiny_model(&c, 41 + a);
        float *ref = logits(m);
        lmc_awq_opts o;
        lmc_awq_opts_default(&o);
        o.bits = 3;
        o.group = 32;
        o.scale_only = 1;
        o.clip = 0;
        cJSON *sum;
        run_awq(m, &o, &sum);
        float *got = logits(m);
        double d = rms_diff(ref, got, (size_t)NTOK * c.vocab);
        ck_assert_msg(d < 3e-3, "%s: scaled model differs by %g", archs[a].what, d);
        /* not vacuous: some group was scaled (r > 0) */
        cJSON *it;
        int scaled = 0;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(sum, "layers"))
        {
            cJSON *r = cJSON_GetObjectItem(it, "ratio");
            scaled += r && r->valuedouble > 0;
        }
        ck_assert_msg(scaled > 0, "%s: every group chose r = 0", archs[a].what);
        ck_assert_int_eq(lmc_model_block_tensor(m, 1, "down", "weight")->enc.id, LMC_ENC_F16);
        cJSON_Delete(sum);
        free(ref);
        free(got);
        lmc_model_free(m);
    }
}
END_TEST

/* The full pass: grouped-integer output, and scale + clip search beat plain
 * rounding with the same quantizer on the model's logits. */
START_TEST(awq_pass_beats_rtn)
{
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        lmc_config c = tiny_config(archs[a].arch, archs[a].nkv);
        lmc_model *m = tiny_model(&c, 51 + a), *r = tiny_model(&c, 51 + a);
        lmc_model *sq = tiny_model(&c, 51 + a);
        float *ref = logits(m);
        lmc_awq_opts o;
        lmc_awq_opts_default(&o);
        o.bits = 3;
        o.group = 32;
        run_awq(m, &o, NULL);
        o.sequential = 1;
        run_awq(sq, &o, NULL);
        o.sequential = 0;
        o.scale = o.clip = 0;
        run_awq(r, &o, NULL);
        lmc_linear_desc lin[8];
        int nl = lmc_block_linears(&c, lin);
        for (int l = 0; l < c.n_layers; l++)
            for (int i = 0; i < nl; i++) {
                const lmc_tensor *t = lmc_model_block_tensor(m, l, lin[i].role, "weight");
                ck_assert_int_eq(t->enc.id, LMC_ENC_QGROUP);
                ck_assert_int_eq(t->enc.bits, 3);
                ck_assert_int_eq(t->enc.group, 32);
                ck_assert_int_eq(lmc_model_block_tensor(sq, l, lin[i].role, "weight")->enc.id,
                                 LMC_ENC_QGROUP);
            }
        float *la = logits(m), *lr = logits(r), *ls = logits(sq);
        double da = rms_diff(ref, la, (size_t)NTOK * c.vocab);
        double dr = rms_diff(ref, lr, (size_t)NTOK * c.vocab);
        double ds = rms_diff(ref, ls, (size_t)NTOK * c.vocab);
        ck_assert_msg(da < dr && ds < dr, "%s: awq %g, awq sequential %g, rtn %g", archs[a].what,
                      da, ds, dr);
        free(ref);
        free(la);
        free(lr);
        free(ls);
        lmc_model_free(m);
        lmc_model_free(r);
        lmc_model_free(sq);
    }
}
END_TEST

START_TEST(awq_opts_check)
{
    lmc_awq_opts o;
    lmc_awq_opts_default(&o);
    lmc_error err;
    ck_assert_int_eq(lmc_awq_opts_check(&o, &err), 0);
    o.bits = 9;
    ck_assert_int_eq(lmc_awq_opts_check(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "--bits"), "%s", err.msg);
    lmc_awq_opts_default(&o);
    o.grid = 0;
    ck_assert_int_eq(lmc_awq_opts_check(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "--grid"), "%s", err.msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("awq");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, awq_fit_formula);
    tcase_add_test(tc, awq_qgroup_exact);
    tcase_add_test(tc, awq_search_picks_outlier_scales);
    tcase_add_test(tc, awq_clip_reduces_error);
    tcase_add_test(tc, awq_scale_only_keeps_function);
    tcase_add_test(tc, awq_pass_beats_rtn);
    tcase_add_test(tc, awq_opts_check);
    suite_add_tcase(s, tc);
    int rc = lmc_test_run(s);
    lmc_windows_free(&g_win);
    return rc;
}
