/* core/enc_lowrank.c and compress/svd.c: factor-pair encoding round trip and
 * sizes, the two-sgemm kernel against decode + sgemm, malformed parameters
 * and blobs; rank selection; the plain SVD's Eckart-Young error; ASVD
 * scales; the whitening optimality property (SVD-LLM's output error on the
 * calibration inputs is the smallest of the three methods, and equals the
 * discarded spectrum of W L); damping of a singular x x^T. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compress/svd.h"
#include "../core/encoding.h"
#include "../core/half.h"
#include "../core/lowrank.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float unif(void) { return (float)(rnd() % 1000001) / 1000000.0f; }
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
    lmc_enc_register(&lmc_enc_lowrank_traits); /* the table holds it weakly */
    const lmc_enc_traits *t = lmc_enc_get(LMC_ENC_LOWRANK);
    ck_assert_ptr_nonnull(t);
    return t;
}

static float stored(int inner, float v)
{
    return inner == LMC_ENC_F16 ? lmc_f16_to_f32(lmc_f32_to_f16(v)) : v;
}

START_TEST(roundtrip_and_size)
{
    const lmc_enc_traits *t = traits();
    const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 1}, {3, 5, 3}, {7, 13, 5}, {64, 32, 9},
                                 {33, 100, 33}};
    const int inners[] = {LMC_ENC_F16, LMC_ENC_F32};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ii = 0; ii < 2; ii++) {
            int64_t rows = shapes[s][0], cols = shapes[s][1];
            int rank = (int)shapes[s][2], inner = inners[ii];
            float *A = rand_gauss(rows * rank, 0.3f), *B = rand_gauss(rank * cols, 0.3f);
            lmc_encoding e;
            uint8_t *blob;
            size_t nb;
            lmc_error err;
            ck_assert_msg(lmc_lowrank_encode(A, B, rows, cols, rank, inner, &e, &blob, &nb,
                                             &err) == 0, "%s", err.msg);
            ck_assert_int_eq(e.id, LMC_ENC_LOWRANK);
            ck_assert_int_eq(e.rank, rank);
            ck_assert_int_eq(e.inner, inner);
            size_t vs = inner == LMC_ENC_F16 ? 2 : 4;
            size_t want = ((size_t)(rows * rank) * vs + 3) / 4 * 4 + (size_t)(rank * cols) * vs;
            ck_assert_uint_eq(nb, want);
            ck_assert_uint_eq(t->nbytes(&e, rows, cols), want);
            ck_assert_int_eq(t->validate(&e, rows, cols, &err), 0);
            ck_assert_int_eq(t->effective_macs(&e, blob, rows, cols), rank * (rows + cols));
            float *A2 = malloc((size_t)(rows * rank) * 4), *B2 = malloc((size_t)(rank * cols) * 4);
            lmc_lowrank_factors(&e, blob, rows, cols, A2, B2);
            for (int64_t i = 0; i < rows * rank; i++)
                ck_assert(A2[i] == stored(inner, A[i]));
            for (int64_t i = 0; i < rank * cols; i++)
                ck_assert(B2[i] == stored(inner, B[i]));
            float *W = malloc((size_t)(rows * cols) * 4);
            ck_assert_msg(t->to_f32(&e, blob, rows, cols, W, &err) == 0, "%s", err.msg);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    double want_v = 0, mag = 0;
                    for (int k = 0; k < rank; k++) {
                        want_v += (double)A2[r * rank + k] * B2[k * cols + c];
                        mag += fabs((double)A2[r * rank + k] * B2[k * cols + c]);
                    }
                    ck_assert(fabs(W[r * cols + c] - want_v) <= 1e-6 * mag + 1e-30);
                }
            free(A), free(B), free(A2), free(B2), free(W), free(blob);
        }
}
END_TEST

START_TEST(kernel_matches_decode)
{
    const lmc_enc_traits *t = traits();
    const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 2}, {48, 64, 20}, {130, 40, 17}};
    const int64_t ns[] = {1, 3, 64, 65, 300};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        int rank = (int)shapes[s][2];
        float *A = rand_gauss(rows * rank, 0.3f), *B = rand_gauss(rank * cols, 0.3f);
        lmc_encoding e;
        uint8_t *blob;
        size_t nb;
        lmc_error err;
        ck_assert_int_eq(lmc_lowrank_encode(A, B, rows, cols, rank, LMC_ENC_F16, &e, &blob, &nb,
                                            &err), 0);
        float *W = malloc((size_t)(rows * cols) * 4);
        ck_assert_int_eq(t->to_f32(&e, blob, rows, cols, W, &err), 0);
        void *st;
        ck_assert_msg(t->kernel_prepare(&e, blob, rows, cols, &st, &err) == 0, "%s", err.msg);
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            int64_t n = ns[k];
            float *x = rand_gauss(n * cols, 1.0f);
            float *y = malloc((size_t)(n * rows) * 4), *yd = malloc((size_t)(n * rows) * 4);
            for (int acc = 0; acc <= 1; acc++) {
                for (int64_t i = 0; i < n * rows; i++)
                    yd[i] = y[i] = acc ? gauss() : NAN; /* overwrite mode must not read y */
                t->kernel_apply(st, x, n, y, acc);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows,
                            (int)cols, 1.0f, x, (int)cols, W, (int)cols, acc ? 1.0f : 0.0f, yd,
                            (int)rows);
                for (int64_t i = 0; i < n * rows; i++) {
                    /* fp32 rounding of two different summation orders */
                    int64_t tk = i / rows, r = i % rows;
                    double mag = 0;
                    for (int64_t c = 0; c < cols; c++)
                        mag += fabs((double)x[tk * cols + c] * W[r * cols + c]);
                    for (int kk = 0; kk < rank; kk++) {
                        double xb = 0;
                        for (int64_t c = 0; c < cols; c++)
                            xb += fabs((double)x[tk * cols + c] * B[kk * cols + c]);
                        mag += xb * fabs(A[r * rank + kk]);
                    }
                    if (acc)
                        mag += fabs(yd[i]);
                    ck_assert_msg(fabs(y[i] - yd[i]) <= 1e-5 * mag + 1e-30,
                                  "n=%lld acc=%d i=%lld: %g vs %g", (long long)n, acc,
                                  (long long)i, (double)y[i], (double)yd[i]);
                }
            }
            free(x), free(y), free(yd);
        }
        t->kernel_free(st);
        free(A), free(B), free(W), free(blob);
    }
}
END_TEST

START_TEST(malformed)
{
    const lmc_enc_traits *t = traits();
    lmc_error err;
    lmc_encoding e = lmc_enc_dense(LMC_ENC_LOWRANK);
    e.inner = LMC_ENC_F16;
    e.rank = 0;
    ck_assert_int_eq(t->validate(&e, 4, 5, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "rank 0 outside [1, 4]"));
    e.rank = 5;
    ck_assert_int_eq(t->validate(&e, 4, 5, &err), -1);
    e.rank = 4;
    ck_assert_int_eq(t->validate(&e, 4, 5, &err), 0);
    e.inner = LMC_ENC_BF16;
    ck_assert_int_eq(t->validate(&e, 4, 5, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "f16 or f32"));
    ck_assert_uint_eq(lmc_lowrank_nbytes(LMC_ENC_BF16, 4, 5, 2), 0);

    float A[6] = {1, 2, 3, 4, 5, 6}, B[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    uint8_t *blob;
    size_t nb;
    ck_assert_int_eq(lmc_lowrank_encode(A, B, 3, 5, 2, LMC_ENC_F16, &e, &blob, &nb, &err), 0);
    float W[15];
    uint16_t inf = 0x7c00;
    memcpy(blob + 12, &inf, 2); /* B[0][0]: right after A (6 fp16 values, no padding) */
    ck_assert_int_eq(t->to_f32(&e, blob, 3, 5, W, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "factor B value 0 is not finite"));
    void *st;
    ck_assert_int_eq(t->kernel_prepare(&e, blob, 3, 5, &st, &err), -1);
    free(blob);

    B[3] = 1e5f; /* beyond fp16 */
    ck_assert_int_eq(lmc_lowrank_encode(A, B, 3, 5, 2, LMC_ENC_F16, &e, &blob, &nb, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "factor B [0, 3]"));
    ck_assert_ptr_nonnull(strstr(err.msg, "overflows fp16"));
    ck_assert_int_eq(lmc_lowrank_encode(A, B, 3, 5, 2, LMC_ENC_F32, &e, &blob, &nb, &err), 0);
    free(blob);
    A[5] = NAN;
    ck_assert_int_eq(lmc_lowrank_encode(A, B, 3, 5, 2, LMC_ENC_F32, &e, &blob, &nb, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "factor A [2, 1] is not finite"));
    ck_assert_int_eq(lmc_lowrank_encode(A, B, 3, 5, 4, LMC_ENC_F32, &e, &blob, &nb, &err), -1);
}
END_TEST

START_TEST(rank_selection)
{
    lmc_svd_opts o;
    lmc_svd_opts_default(&o);
    lmc_error err;
    ck_assert_int_eq(lmc_svd_opts_check(&o, &err), -1); /* neither keep nor rank */
    o.keep = 0.8;
    ck_assert_int_eq(lmc_svd_opts_check(&o, &err), 0);
    /* llama-s shapes: floor(0.8 * out * in / (out + in)) */
    ck_assert_int_eq(lmc_svd_rank(&o, 256, 256), 102);
    ck_assert_int_eq(lmc_svd_rank(&o, 128, 256), 68);
    ck_assert_int_eq(lmc_svd_rank(&o, 688, 256), 149);
    ck_assert_int_eq(lmc_svd_rank(&o, 256, 688), 149);
    o.keep = 0.5;
    ck_assert_int_eq(lmc_svd_rank(&o, 100, 100), 25); /* exactly 25.0 */
    o.keep = 0.001;
    ck_assert_int_eq(lmc_svd_rank(&o, 10, 10), 1); /* at least 1 */
    o.keep = 0.9;
    ck_assert_int_eq(lmc_svd_rank(&o, 1, 100), 0); /* 1 * 101 >= 100: stays dense */
    ck_assert_int_eq(lmc_svd_rank(&o, 2, 2), 0);
    o.keep = 0;
    o.rank = 40;
    ck_assert_int_eq(lmc_svd_opts_check(&o, &err), 0);
    ck_assert_int_eq(lmc_svd_rank(&o, 256, 256), 40);
    ck_assert_int_eq(lmc_svd_rank(&o, 60, 100), 0); /* 40 * 160 >= 6000 */
    o.rank = 1000;
    ck_assert_int_eq(lmc_svd_rank(&o, 50, 2000), 0); /* capped at 50: 50 * 2050 >= 100000 */
    o.keep = 0.5;
    ck_assert_int_eq(lmc_svd_opts_check(&o, &err), -1); /* both */
    o.rank = 0;
    o.keep = 1.0;
    ck_assert_int_eq(lmc_svd_opts_check(&o, &err), -1);
    o.keep = 0.5;
    o.dtype = LMC_ENC_BF16;
    ck_assert_int_eq(lmc_svd_opts_check(&o, &err), -1);
    lmc_svd_method m;
    ck_assert_int_eq(lmc_svd_parse_method("whiten", &m, &err), 0);
    ck_assert_int_eq(m, LMC_SVD_WHITEN);
    ck_assert_int_eq(lmc_svd_parse_method("svd-llm", &m, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "plain, asvd or whiten"));
}
END_TEST

static double fro_err(const float *W, const float *A, const float *B, int64_t rows,
                      int64_t cols, int rank, double *wnorm)
{
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double v = 0;
            for (int k = 0; k < rank; k++)
                v += (double)A[r * rank + k] * B[k * cols + c];
            double d = W[r * cols + c] - v;
            num += d * d;
            den += (double)W[r * cols + c] * W[r * cols + c];
        }
    if (wnorm)
        *wnorm = sqrt(den);
    return sqrt(num);
}

START_TEST(plain_svd)
{
    const int64_t rows = 40, cols = 60;
    lmc_svd_info info;
    lmc_error err;
    /* an exactly rank-5 matrix is reproduced at rank 5 */
    float *P = rand_gauss(rows * 5, 1.0f), *Q = rand_gauss(5 * cols, 1.0f);
    float *W = malloc((size_t)(rows * cols) * 4);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, 5, 1.0f, P, 5,
                Q, (int)cols, 0.0f, W, (int)cols);
    float *A = malloc((size_t)rows * 40 * 4), *B = malloc((size_t)40 * cols * 4);
    ck_assert_int_eq(lmc_svd_factor(W, rows, cols, 5, LMC_SVD_PLAIN, NULL, NULL, A, B, &info,
                                    &err), 0);
    double wn, e = fro_err(W, A, B, rows, cols, 5, &wn);
    ck_assert_msg(e / wn < 1e-6, "rank-5 residual %g", e / wn);
    ck_assert(fabs(info.energy - 1) < 1e-9);
    /* A = U sqrt(S), B = sqrt(S) V^T: column k of A and row k of B have equal norms */
    for (int k = 0; k < 5; k++) {
        double na = 0, nb = 0;
        for (int64_t r = 0; r < rows; r++)
            na += (double)A[r * 5 + k] * A[r * 5 + k];
        for (int64_t c = 0; c < cols; c++)
            nb += (double)B[k * cols + c] * B[k * cols + c];
        ck_assert(fabs(sqrt(na) - sqrt(nb)) < 1e-4 * sqrt(na));
    }
    /* a random matrix: the error is the discarded spectrum (Eckart-Young),
     * and it falls with the rank */
    free(W);
    W = rand_gauss(rows * cols, 1.0f);
    double prev = INFINITY;
    for (int r = 1; r <= 40; r += 13) {
        ck_assert_int_eq(lmc_svd_factor(W, rows, cols, r, LMC_SVD_PLAIN, NULL, NULL, A, B, &info,
                                        &err), 0);
        e = fro_err(W, A, B, rows, cols, r, &wn);
        double want = sqrt(fmax(0, 1 - info.energy));
        ck_assert_msg(fabs(e / wn - want) < 1e-5, "rank %d: %g vs %g", r, e / wn, want);
        ck_assert(e < prev);
        prev = e;
    }
    ck_assert_int_eq(lmc_svd_factor(W, rows, cols, 41, LMC_SVD_PLAIN, NULL, NULL, A, B, &info,
                                    &err), -1);
    ck_assert_int_eq(lmc_svd_factor(W, rows, cols, 5, LMC_SVD_ASVD, NULL, NULL, A, B, &info,
                                    &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "needs calibration"));
    free(P), free(Q), free(W), free(A), free(B);
}
END_TEST

START_TEST(asvd_scales)
{
    double sum[4] = {0, 40, 10, 1e-9}, s[4];
    lmc_asvd_scales(sum, 10, 4, 0.5, s);
    /* means 0, 4, 1, 1e-10; the tiny ones clamped to 1e-6 * 4 */
    ck_assert(fabs(s[0] - sqrt(4e-6)) < 1e-15);
    ck_assert(fabs(s[1] - 2) < 1e-15);
    ck_assert(fabs(s[2] - 1) < 1e-15);
    ck_assert(fabs(s[3] - sqrt(4e-6)) < 1e-15);
    double z[3] = {0, 0, 0};
    lmc_asvd_scales(z, 5, 3, 0.5, s);
    ck_assert(s[0] == 1 && s[1] == 1 && s[2] == 1);
    lmc_asvd_scales(sum, 10, 4, 0.0, s);
    ck_assert(s[1] == 1 && s[0] == 1);
}
END_TEST

/* ||(W - AB) X^T||_F with X [n][cols]. */
static double out_err(const float *W, const float *A, const float *B, int64_t rows,
                      int64_t cols, int rank, const float *X, int64_t n)
{
    double *E = malloc((size_t)(rows * cols) * sizeof *E);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double v = 0;
            for (int k = 0; k < rank; k++)
                v += (double)A[r * rank + k] * B[k * cols + c];
            E[r * cols + c] = W[r * cols + c] - v;
        }
    double s = 0;
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
            double v = 0;
            for (int64_t c = 0; c < cols; c++)
                v += E[r * cols + c] * X[t * cols + c];
            s += v * v;
        }
    free(E);
    return sqrt(s);
}

START_TEST(whitening_is_optimal)
{
    /* Calibration inputs with strongly unequal, correlated channels (a few
     * large features, as in LLM activations): X = Z M. */
    const int64_t rows = 48, cols = 64, n = 400;
    float *W = rand_gauss(rows * cols, 0.2f);
    float *Z = rand_gauss(n * cols, 1.0f), *M = rand_gauss(cols * cols, 0.15f);
    for (int64_t c = 0; c < cols; c++)
        M[c * cols + c] += c % 9 == 0 ? 8.0f : 1.0f;
    float *X = malloc((size_t)(n * cols) * 4);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)cols, (int)cols, 1.0f, Z,
                (int)cols, M, (int)cols, 0.0f, X, (int)cols);
    double *H = calloc((size_t)(cols * cols), sizeof *H), *asum = calloc((size_t)cols, 8);
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < cols; i++) {
            asum[i] += fabs(X[t * cols + i]);
            for (int64_t j = 0; j < cols; j++)
                H[i * cols + j] += (double)X[t * cols + i] * X[t * cols + j];
        }
    double s[64];
    lmc_asvd_scales(asum, n, cols, 0.5, s);
    float *A = malloc((size_t)rows * 48 * 4), *B = malloc((size_t)48 * cols * 4);
    lmc_svd_info info;
    lmc_error err;
    double full = out_err(W, A, B, rows, cols, 0, X, n); /* ||W X^T|| */
    for (int r = 4; r <= 40; r += 12) {
        double e[3];
        for (int m = 0; m < 3; m++) {
            ck_assert_msg(lmc_svd_factor(W, rows, cols, r, (lmc_svd_method)m, s, H, A, B, &info,
                                         &err) == 0, "%s", err.msg);
            e[m] = out_err(W, A, B, rows, cols, r, X, n);
            if (m == LMC_SVD_WHITEN) {
                ck_assert(info.damp == 0);
                /* the output error is the discarded spectrum of W L */
                double want = sqrt(fmax(0, 1 - info.energy));
                ck_assert_msg(fabs(e[m] / full - want) < 1e-4, "%g vs %g", e[m] / full, want);
            }
        }
        printf("rank %d: relative output error plain %.4f asvd %.4f whiten %.4f\n", r,
               e[0] / full, e[1] / full, e[2] / full);
        ck_assert_msg(e[2] <= e[0] * (1 + 1e-6), "rank %d: whiten %g > plain %g", r, e[2], e[0]);
        ck_assert_msg(e[2] <= e[1] * (1 + 1e-6), "rank %d: whiten %g > asvd %g", r, e[2], e[1]);
        /* on such inputs it is clearly better, not just equal */
        ck_assert(e[2] < 0.9 * e[0]);
        /* and no nearby rank-r pair does better: perturb the factors */
        ck_assert_int_eq(lmc_svd_factor(W, rows, cols, r, LMC_SVD_WHITEN, s, H, A, B, &info,
                                        &err), 0);
        for (int trial = 0; trial < 3; trial++) {
            float *A2 = malloc((size_t)rows * r * 4);
            for (int64_t i = 0; i < rows * r; i++)
                A2[i] = A[i] * (1 + 0.01f * gauss());
            ck_assert(out_err(W, A2, B, rows, cols, r, X, n) >= e[2] * (1 - 1e-6));
            free(A2);
        }
    }
    free(W), free(Z), free(M), free(X), free(H), free(asum), free(A), free(B);
}
END_TEST

START_TEST(whitening_damps_singular)
{
    /* a dead input channel (never nonzero) makes x x^T singular */
    const int64_t rows = 12, cols = 16, n = 50;
    float *W = rand_gauss(rows * cols, 1.0f), *X = rand_gauss(n * cols, 1.0f);
    for (int64_t t = 0; t < n; t++)
        X[t * cols + 5] = 0;
    double *H = calloc((size_t)(cols * cols), sizeof *H);
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < cols; i++)
            for (int64_t j = 0; j < cols; j++)
                H[i * cols + j] += (double)X[t * cols + i] * X[t * cols + j];
    float *A = malloc((size_t)rows * 6 * 4), *B = malloc((size_t)6 * cols * 4);
    lmc_svd_info info;
    lmc_error err;
    ck_assert_msg(lmc_svd_factor(W, rows, cols, 6, LMC_SVD_WHITEN, NULL, H, A, B, &info, &err) ==
                      0, "%s", err.msg);
    ck_assert(info.damp > 0);
    for (int64_t i = 0; i < rows * 6; i++)
        ck_assert(isfinite(A[i]));
    for (int64_t i = 0; i < 6 * cols; i++)
        ck_assert(isfinite(B[i]));
    /* all-zero inputs: nothing to whiten against */
    memset(H, 0, (size_t)(cols * cols) * sizeof *H);
    ck_assert_int_eq(lmc_svd_factor(W, rows, cols, 6, LMC_SVD_WHITEN, NULL, H, A, B, &info, &err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "all zero"));
    free(W), free(X), free(H), free(A), free(B);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lowrank");
    TCase *tc = tcase_create("lowrank");
    tcase_add_test(tc, roundtrip_and_size);
    tcase_add_test(tc, kernel_matches_decode);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, rank_selection);
    tcase_add_test(tc, plain_svd);
    tcase_add_test(tc, asvd_scales);
    tcase_add_test(tc, whitening_is_optimal);
    tcase_add_test(tc, whitening_damps_singular);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
