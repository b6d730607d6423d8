/* core/enc_int8.c and compress/int8.c: LLM.int8() encoding round trip and
 * sizes, the kernel against a naive reference of the same arithmetic and
 * against decode + sgemm, the outlier split on synthetic activations with
 * injected outliers, the run-time count of unexpected outlier columns,
 * malformed parameters and blobs. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compress/int8.h"
#include "../core/encoding.h"
#include "../core/half.h"
#include "../core/int8.h"
#include "testutil.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float unif(void) { return (float)(rnd() % 1000001) / 1000000.0f; } /* [0, 1] */
static float gauss(void)
{
    float u = unif() * 0.999f + 0.0005f, v = unif();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static float *rand_gauss(int64_t n, float scale)
{
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++)
        w[i] = scale * gauss();
    return w;
}

static const lmc_enc_traits *traits(void)
{
    lmc_enc_register(&lmc_enc_int8_outlier_traits); /* the table holds it weakly */
    const lmc_enc_traits *t = lmc_enc_get(LMC_ENC_INT8_OUTLIER);
    ck_assert_ptr_nonnull(t);
    return t;
}

static void encode(const float *w, int64_t rows, int64_t cols, const int32_t *oidx, int nout,
                   float thr, lmc_encoding *e, uint8_t **blob, size_t *nb)
{
    lmc_error err;
    ck_assert_msg(lmc_int8_encode(w, rows, cols, oidx, nout, thr, e, blob, nb, &err) == 0, "%s",
                  err.msg);
}

/* Random ascending outlier columns. */
static int pick_outliers(int64_t cols, int want, int32_t *idx)
{
    int n = 0;
    for (int64_t c = 0; c < cols && n < want; c++)
        if ((int64_t)(rnd() % (uint32_t)cols) < want)
            idx[n++] = (int32_t)c;
    return n;
}

START_TEST(roundtrip_and_size)
{
    const lmc_enc_traits *t = traits();
    const int64_t shapes[][2] = {{1, 1}, {3, 5}, {7, 13}, {16, 33}, {64, 100}, {5, 257}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int want = 0; want <= 3; want++) {
            int64_t rows = shapes[s][0], cols = shapes[s][1];
            float *w = rand_gauss(rows * cols, 0.05f);
            if (rows > 2)
                for (int64_t c = 0; c < cols; c++)
                    w[1 * cols + c] = 0; /* an all-zero row */
            int32_t idx[300];
            int nout = pick_outliers(cols, want * 2, idx);
            if (nout)
                w[0 * cols + idx[0]] = 3.0f; /* a large outlier weight: not in the row scale */
            lmc_encoding e;
            uint8_t *blob;
            size_t nb;
            encode(w, rows, cols, idx, nout, 6.0f, &e, &blob, &nb);
            ck_assert_int_eq(e.id, LMC_ENC_INT8_OUTLIER);
            ck_assert_int_eq(e.n_outlier, nout);
            size_t a4 = (size_t)(rows * cols + 3) / 4 * 4;
            size_t want_nb = a4 + (size_t)(2 * rows + 3) / 4 * 4 + 4 * (size_t)nout +
                             (size_t)(2 * rows * nout + 3) / 4 * 4 + 4;
            ck_assert_uint_eq(nb, want_nb);
            ck_assert_uint_eq(t->nbytes(&e, rows, cols), want_nb);
            lmc_error err;
            ck_assert_int_eq(t->validate(&e, rows, cols, &err), 0);
            float *out = malloc((size_t)(rows * cols) * sizeof *out);
            ck_assert_msg(t->to_f32(&e, blob, rows, cols, out, &err) == 0, "%s", err.msg);
            uint8_t *is_out = calloc((size_t)cols, 1);
            for (int j = 0; j < nout; j++)
                is_out[idx[j]] = 1;
            for (int64_t r = 0; r < rows; r++) {
                float am = 0;
                for (int64_t c = 0; c < cols; c++)
                    if (!is_out[c] && fabsf(w[r * cols + c]) > am)
                        am = fabsf(w[r * cols + c]);
                float sc = lmc_f16_to_f32(lmc_f32_to_f16(am / 127.0f));
                for (int64_t c = 0; c < cols; c++) {
                    float v = w[r * cols + c], o = out[r * cols + c];
                    if (is_out[c]) {
                        ck_assert(o == lmc_f16_to_f32(lmc_f32_to_f16(v)));
                    } else {
                        int8_t q = ((const int8_t *)blob)[r * cols + c];
                        ck_assert(q != -128);
                        ck_assert(o == sc * (float)q);
                        /* nearest code of the stored scale (clamped at +-127) */
                        ck_assert_msg(fabsf(o - v) <= 0.5001f * sc + 1e-3f * am, "[%lld,%lld] %g %g",
                                      (long long)r, (long long)c, (double)o, (double)v);
                    }
                }
            }
            free(is_out);
            free(out);
            free(blob);
            free(w);
        }
}
END_TEST

/* What the kernel must compute, with the activation quantization spelled
 * out exactly as documented, in double. */
static void reference(const lmc_encoding *e, const uint8_t *blob, int64_t rows, int64_t cols,
                      const float *x, int64_t n, double *y)
{
    lmc_int8_layout l;
    lmc_int8_layout_of(rows, cols, e->n_outlier, &l);
    const int8_t *q = (const int8_t *)blob;
    int32_t oidx[1024];
    memcpy(oidx, blob + l.off_oidx, (size_t)e->n_outlier * 4);
    uint8_t *is_out = calloc((size_t)cols, 1);
    for (int j = 0; j < e->n_outlier; j++)
        is_out[oidx[j]] = 1;
    int32_t *xq = malloc((size_t)cols * sizeof *xq);
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * cols;
        float am = 0;
        for (int64_t c = 0; c < cols; c++)
            if (!is_out[c] && fabsf(xt[c]) > am)
                am = fabsf(xt[c]);
        float inv = am > 0 ? 127.0f / am : 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            float v = rintf(xt[c] * inv);
            xq[c] = is_out[c] ? 0 : (int32_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        for (int64_t r = 0; r < rows; r++) {
            uint16_t h;
            memcpy(&h, blob + l.off_scales + 2 * r, 2);
            int64_t acc = 0;
            for (int64_t c = 0; c < cols; c++)
                acc += (int64_t)xq[c] * q[r * cols + c];
            double v = (double)(am / 127.0f) * lmc_f16_to_f32(h) * (double)acc;
            for (int j = 0; j < e->n_outlier; j++) {
                memcpy(&h, blob + l.off_ow + 2 * (r * e->n_outlier + j), 2);
                v += (double)xt[oidx[j]] * lmc_f16_to_f32(h);
            }
            y[t * rows + r] = v;
        }
    }
    free(xq);
    free(is_out);
}

START_TEST(kernel_matches_reference)
{
    const lmc_enc_traits *t = traits();
    const int64_t shapes[][2] = {{1, 1}, {5, 7}, {33, 64}, {48, 130}, {130, 48}};
    const int64_t ns[] = {1, 3, 4, 9, 67, 200}; /* 67, 200: past the initial scratch */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        float *w = rand_gauss(rows * cols, 0.1f);
        int32_t idx[300];
        int nout = pick_outliers(cols, cols > 8 ? 4 : 0, idx);
        lmc_encoding e;
        uint8_t *blob;
        size_t nb;
        encode(w, rows, cols, idx, nout, 6.0f, &e, &blob, &nb);
        lmc_error err;
        void *st = NULL;
        ck_assert_msg(t->kernel_prepare(&e, blob, rows, cols, &st, &err) == 0, "%s", err.msg);
        float *dec = malloc((size_t)(rows * cols) * sizeof *dec);
        ck_assert_int_eq(t->to_f32(&e, blob, rows, cols, dec, &err), 0);
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            int64_t n = ns[k];
            float *x = rand_gauss(n * cols, 1.0f);
            for (int j = 0; j < nout; j++) /* outlier columns carry large values */
                for (int64_t tk = 0; tk < n; tk += 2)
                    x[tk * cols + idx[j]] = 20.0f * gauss();
            double *yr = malloc((size_t)(n * rows) * sizeof *yr);
            float *y = malloc((size_t)(n * rows) * sizeof *y);
            float *y0 = malloc((size_t)(n * rows) * sizeof *y0);
            float *yd = malloc((size_t)(n * rows) * sizeof *yd);
            reference(&e, blob, rows, cols, x, n, yr);
            for (int acc = 0; acc <= 1; acc++) {
                for (int64_t i = 0; i < n * rows; i++)
                    y[i] = y0[i] = acc ? gauss() : NAN; /* overwrite mode must not read y */
                t->kernel_apply(st, x, n, y, acc);
                for (int64_t i = 0; i < n * rows; i++) {
                    double want = yr[i] + (acc ? y0[i] : 0);
                    double mag = fabs(yr[i]) + 1e-3;
                    ck_assert_msg(fabs(y[i] - want) <= 2e-5 * (mag + fabs(want)) + 1e-6,
                                  "[%lldx%lld] n=%lld acc=%d i=%lld: %g vs %g", (long long)rows,
                                  (long long)cols, (long long)n, acc, (long long)i,
                                  (double)y[i], want);
                }
            }
            /* and close to decode + sgemm: the difference is only the
             * activations' rounding, at most half a step per column */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols,
                        1.0f, x, (int)cols, dec, (int)cols, 0.0f, yd, (int)rows);
            t->kernel_apply(st, x, n, y, 0);
            for (int64_t tk = 0; tk < n; tk++) {
                float am = 0;
                for (int64_t c = 0; c < cols; c++) {
                    int o = 0;
                    for (int j = 0; j < nout; j++)
                        o |= idx[j] == c;
                    if (!o && fabsf(x[tk * cols + c]) > am)
                        am = fabsf(x[tk * cols + c]);
                }
                for (int64_t r = 0; r < rows; r++) {
                    double bound = 0;
                    for (int64_t c = 0; c < cols; c++)
                        bound += fabs(dec[r * cols + c]) * am / 127.0 * 0.5;
                    ck_assert(fabs(y[tk * rows + r] - yd[tk * rows + r]) <= bound * 1.001 + 1e-4);
                }
            }
            free(x), free(yr), free(y), free(y0), free(yd);
        }
        t->kernel_free(st);
        free(dec), free(blob), free(w);
    }
}
END_TEST

/* Relative error ||y - y_exact|| / ||y_exact|| of the kernel. */
static double kernel_rel_error(const float *w, int64_t rows, int64_t cols, const int32_t *idx,
                               int nout, const float *x, int64_t n)
{
    const lmc_enc_traits *t = traits();
    lmc_encoding e;
    uint8_t *blob;
    size_t nb;
    encode(w, rows, cols, idx, nout, 6.0f, &e, &blob, &nb);
    void *st;
    lmc_error err;
    ck_assert_int_eq(t->kernel_prepare(&e, blob, rows, cols, &st, &err), 0);
    float *y = malloc((size_t)(n * rows) * sizeof *y);
    t->kernel_apply(st, x, n, y, 0);
    double num = 0, den = 0;
    for (int64_t tk = 0; tk < n; tk++)
        for (int64_t r = 0; r < rows; r++) {
            double ex = 0;
            for (int64_t c = 0; c < cols; c++)
                ex += (double)x[tk * cols + c] * w[r * cols + c];
            double d = y[tk * rows + r] - ex;
            num += d * d;
            den += ex * ex;
        }
    t->kernel_free(st);
    free(y), free(blob);
    return sqrt(num / den);
}

START_TEST(outlier_split_keeps_error_low)
{
    /* A layer whose inputs have a few systematic outlier features (as in
     * the LLM.int8() paper): 3 of 256 columns carry magnitudes ~60 in most
     * tokens. Per-token absmax int8 without the split spends its whole range
     * on them and rounds every normal feature to 0 or +-1. */
    const int64_t rows = 96, cols = 256, n = 64;
    float *w = rand_gauss(rows * cols, 0.05f);
    float *x = rand_gauss(n * cols, 1.0f);
    const int32_t out_cols[3] = {17, 101, 230};
    for (int64_t tk = 0; tk < n; tk++)
        for (int j = 0; j < 3; j++)
            if (tk % 4 != 3)
                x[tk * cols + out_cols[j]] = (j == 1 ? -1.0f : 1.0f) * (50.0f + 10.0f * unif());
    /* the pass's choice from max |x| statistics */
    double amax[256] = {0};
    for (int64_t tk = 0; tk < n; tk++)
        for (int64_t c = 0; c < cols; c++)
            if (fabs(x[tk * cols + c]) > amax[c])
                amax[c] = fabs(x[tk * cols + c]);
    int32_t idx[256];
    int nout = lmc_int8_outlier_columns(amax, cols, 6.0, idx);
    ck_assert_int_eq(nout, 3);
    for (int j = 0; j < 3; j++)
        ck_assert_int_eq(idx[j], out_cols[j]);
    double e_split = kernel_rel_error(w, rows, cols, idx, nout, x, n);
    double e_plain = kernel_rel_error(w, rows, cols, idx, 0, x, n);
    printf("int8 outlier test: relative output error %.5f with the split, %.5f plain int8\n",
           e_split, e_plain);
    ck_assert_msg(e_split < 0.01, "split error %g", e_split);
    ck_assert_msg(e_plain > 5 * e_split, "plain %g vs split %g", e_plain, e_split);
    /* without outliers both are the same arithmetic */
    float *x2 = rand_gauss(n * cols, 1.0f);
    double a = kernel_rel_error(w, rows, cols, idx, nout, x2, n);
    double b = kernel_rel_error(w, rows, cols, idx, 0, x2, n);
    ck_assert(a < 0.01 && b < 0.01);
    free(w), free(x), free(x2);
}
END_TEST

START_TEST(counts_unexpected_outliers)
{
    const lmc_enc_traits *t = traits();
    const int64_t rows = 8, cols = 40, n = 10;
    float *w = rand_gauss(rows * cols, 0.1f);
    int32_t idx[2] = {3, 20};
    lmc_encoding e;
    uint8_t *blob;
    size_t nb;
    encode(w, rows, cols, idx, 2, 6.0f, &e, &blob, &nb);
    void *st;
    lmc_error err;
    ck_assert_int_eq(t->kernel_prepare(&e, blob, rows, cols, &st, &err), 0);
    float *x = rand_gauss(n * cols, 0.5f), *y = malloc((size_t)(n * rows) * sizeof *y);
    for (int64_t i = 0; i < n * cols; i++)
        x[i] = fmaxf(-5.9f, fminf(5.9f, x[i]));
    x[0 * cols + 3] = 30.0f;  /* a stored outlier: not counted */
    x[2 * cols + 7] = -6.0f;  /* two tokens in column 7: counted once */
    x[5 * cols + 7] = 9.0f;
    x[9 * cols + 39] = 6.5f;  /* column 39 */
    lmc_int8_counts c0, c1;
    lmc_int8_counts_reset();
    lmc_int8_counts_get(&c0);
    ck_assert(c0.calls == 0 && c0.missed == 0 && c0.columns == 0);
    t->kernel_apply(st, x, n, y, 0);
    t->kernel_apply(st, x, 1, y, 0); /* the first token only: nothing missed */
    lmc_int8_counts_get(&c1);
    ck_assert_int_eq(c1.calls, 2);
    ck_assert_int_eq(c1.columns, 2 * (cols - 2));
    ck_assert_int_eq(c1.missed, 2);
    t->kernel_free(st);
    free(w), free(x), free(y), free(blob);
}
END_TEST

START_TEST(malformed)
{
    const lmc_enc_traits *t = traits();
    lmc_error err;
    lmc_encoding e = lmc_enc_dense(LMC_ENC_INT8_OUTLIER);
    e.n_outlier = 6;
    ck_assert_int_eq(t->validate(&e, 4, 5, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "n_outlier 6"));
    e.n_outlier = -1;
    ck_assert_int_eq(t->validate(&e, 4, 5, &err), -1);
    e.n_outlier = 0;
    ck_assert_int_eq(t->validate(&e, 0, 5, &err), -1);
    ck_assert_int_eq(t->validate(&e, 4, 200000, &err), -1);

    const int64_t rows = 4, cols = 10;
    float *w = rand_gauss(rows * cols, 1.0f);
    int32_t idx[2] = {2, 7};
    uint8_t *blob;
    size_t nb;
    encode(w, rows, cols, idx, 2, 6.0f, &e, &blob, &nb);
    lmc_int8_layout l;
    lmc_int8_layout_of(rows, cols, 2, &l);
    float out[40];
    uint8_t *bad = malloc(nb);
    void *st;
#define EXPECT_BAD(what)                                                                      \
    do {                                                                                      \
        ck_assert_int_eq(t->to_f32(&e, bad, rows, cols, out, &err), -1);                      \
        ck_assert_msg(strstr(err.msg, what), "%s", err.msg);                                  \
        ck_assert_int_eq(t->kernel_prepare(&e, bad, rows, cols, &st, &err), -1);              \
    } while (0)
    int32_t v;
    memcpy(bad, blob, nb);
    v = 2;
    memcpy(bad + l.off_oidx + 4, &v, 4); /* {2, 2} */
    EXPECT_BAD("not ascending");
    memcpy(bad, blob, nb);
    v = 10;
    memcpy(bad + l.off_oidx + 4, &v, 4);
    EXPECT_BAD("out of range");
    memcpy(bad, blob, nb);
    bad[l.off_q + 1 * cols + 7] = 5; /* int8 value in an outlier column */
    EXPECT_BAD("nonzero int8");
    memcpy(bad, blob, nb);
    uint16_t h = 0x7e00; /* NaN scale */
    memcpy(bad + l.off_scales + 2, &h, 2);
    EXPECT_BAD("scale of row 1");
    memcpy(bad, blob, nb);
    memcpy(bad + l.off_ow + 2 * 3, &h, 2);
    EXPECT_BAD("outlier weight [1, 1]");
    memcpy(bad, blob, nb);
    float f = NAN;
    memcpy(bad + l.off_thresh, &f, 4);
    EXPECT_BAD("threshold");
    free(bad);
    free(blob);

    /* encoder errors */
    uint8_t *b2;
    int32_t rev[2] = {7, 2}, oob[1] = {10};
    ck_assert_int_eq(lmc_int8_encode(w, rows, cols, rev, 2, 6.0f, &e, &b2, &nb, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "not ascending"));
    ck_assert_int_eq(lmc_int8_encode(w, rows, cols, oob, 1, 6.0f, &e, &b2, &nb, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "out of range"));
    w[5] = 1e6f; /* outlier column 2 of row 0? no: column 5, an int8 column: scale fits */
    ck_assert_int_eq(lmc_int8_encode(w, rows, cols, idx, 2, 6.0f, &e, &b2, &nb, &err), 0);
    free(b2);
    w[2] = 1e6f; /* outlier column 2: fp16 overflow */
    ck_assert_int_eq(lmc_int8_encode(w, rows, cols, idx, 2, 6.0f, &e, &b2, &nb, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "outlier weight [0, 2]"));
    w[2] = NAN;
    ck_assert_int_eq(lmc_int8_encode(w, rows, cols, idx, 2, 6.0f, &e, &b2, &nb, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "[0, 2] is not finite"));
    w[2] = 0;
    w[6] = 1e8f; /* scale 1e8/127 overflows fp16 */
    ck_assert_int_eq(lmc_int8_encode(w, rows, cols, idx, 2, 6.0f, &e, &b2, &nb, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "row 0"));
    free(w);
}
END_TEST

START_TEST(table_and_opts)
{
    traits();
    ck_assert_ptr_eq(lmc_enc_by_name("int8"), &lmc_enc_int8_outlier_traits);
    lmc_int8_opts o;
    lmc_int8_opts_default(&o);
    ck_assert(o.threshold == 6.0);
    lmc_error err;
    ck_assert_int_eq(lmc_int8_opts_check(&o, &err), 0);
    o.threshold = 0;
    ck_assert_int_eq(lmc_int8_opts_check(&o, &err), -1);
    o.threshold = NAN;
    ck_assert_int_eq(lmc_int8_opts_check(&o, &err), -1);
    double am[5] = {1, 6, 5.99, 100, 6.01};
    int32_t idx[5];
    ck_assert_int_eq(lmc_int8_outlier_columns(am, 5, 6.0, idx), 3);
    ck_assert(idx[0] == 1 && idx[1] == 3 && idx[2] == 4);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("int8");
    TCase *tc = tcase_create("int8");
    tcase_add_test(tc, roundtrip_and_size);
    tcase_add_test(tc, kernel_matches_reference);
    tcase_add_test(tc, outlier_split_keeps_error_low);
    tcase_add_test(tc, counts_unexpected_outliers);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, table_and_opts);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
