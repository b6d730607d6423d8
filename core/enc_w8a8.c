/* LMC_ENC_W8A8: layout and arithmetic documented in w8a8.h. */
#include "w8a8.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The integer tile kernel is compiled for AVX-512, AVX2 and baseline x86-64
 * and picked at load time (the build targets baseline x86-64); O3 because
 * GCC's -O2 does not vectorize the int16 dot-product reductions (measured
 * 3 vs 50-70 GMAC/s on one core). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LMC_NO_CLONES)
#define W8_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define W8_CLONES
#endif
#if defined(__GNUC__) && !defined(__clang__)
#define W8_O3 __attribute__((optimize("O3")))
#else
#define W8_O3
#endif

#define TB 4   /* tokens per register tile */
#define RB 4   /* weight rows per register tile */
#define KALIGN 32

static size_t align4(size_t x) { return (x + 3) & ~(size_t)3; }

void lmc_w8a8_layout_of(int has_smooth, int64_t rows, int64_t cols, lmc_w8a8_layout *l)
{
    memset(l, 0, sizeof *l);
    size_t off = align4((size_t)rows * (size_t)cols);
    l->off_scales = off;
    off += (size_t)rows * 4;
    if (has_smooth) {
        l->off_smooth = off;
        off += (size_t)cols * 4;
    }
    l->nbytes = off;
}

/* Returns the scale; NaN when the row holds a non-finite value, so that a
 * bad input shows up as a non-finite output instead of garbage codes. */
float lmc_w8a8_quantize_row(const float *x, int64_t n, int8_t *codes)
{
    float m = 0.0f;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        bad |= !isfinite(a);
        m = a > m ? a : m;
    }
    if (m < 1e-5f) /* the reference clamps the absmax before dividing by 127 */
        m = 1e-5f;
    float s = m / 127.0f;
    for (int64_t i = 0; i < n; i++) {
        float q = rintf(x[i] / s);
        q = q > 127.0f ? 127.0f : q;
        q = q < -127.0f ? -127.0f : q;
        codes[i] = (int8_t)(q == q ? q : 0.0f);
    }
    return bad ? NAN : s;
}

void lmc_w8a8_quantize_rows(const float *W, int64_t rows, int64_t cols, int8_t *codes,
                            float *scales)
{
    for (int64_t r = 0; r < rows; r++)
        scales[r] = lmc_w8a8_quantize_row(W + r * cols, cols, codes + r * cols);
}

static int w8_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "w8a8: empty shape [%lld, %lld]", (long long)rows, (long long)cols);
    if (cols > LMC_W8A8_MAX_COLS)
        return lmc_fail(err, "w8a8: %lld input columns, int32 accumulation allows at most %d",
                        (long long)cols, LMC_W8A8_MAX_COLS);
    if (e->has_smooth != 0 && e->has_smooth != 1)
        return lmc_fail(err, "w8a8: has_smooth %d (must be 0 or 1)", e->has_smooth);
    if (e->n_outlier != 0)
        return lmc_fail(err, "w8a8: n_outlier %d (must be 0)", e->n_outlier);
    return 0;
}

static size_t w8_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    lmc_w8a8_layout l;
    lmc_w8a8_layout_of(e->has_smooth, rows, cols, &l);
    return l.nbytes;
}

/* Scales must be finite and positive, codes within [-127, 127] (the int32
 * bound assumes it). A damaged or hand-made blob fails here. */
static int check_params(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                        lmc_error *err)
{
    lmc_w8a8_layout l;
    lmc_w8a8_layout_of(e->has_smooth, rows, cols, &l);
    for (int64_t r = 0; r < rows; r++) {
        float s;
        memcpy(&s, data + l.off_scales + 4 * (size_t)r, 4);
        if (!isfinite(s) || !(s > 0.0f))
            return lmc_fail(err, "w8a8: scale of row %lld is %g (must be finite and > 0)",
                            (long long)r, (double)s);
    }
    if (e->has_smooth)
        for (int64_t c = 0; c < cols; c++) {
            float s;
            memcpy(&s, data + l.off_smooth + 4 * (size_t)c, 4);
            if (!isfinite(s) || !(s > 0.0f))
                return lmc_fail(err,
                                "w8a8: smoothing scale of column %lld is %g (must be finite "
                                "and > 0)",
                                (long long)c, (double)s);
        }
    const int8_t *q = (const int8_t *)data;
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
        if (q[i] == -128)
            return lmc_fail(err, "w8a8: code -128 at [%lld, %lld] (codes are in [-127, 127])",
                            (long long)(i / (size_t)cols), (long long)(i % (size_t)cols));
    return 0;
}

static int w8_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                     float *out, lmc_error *err)
{
    if (w8_validate(e, rows, cols, err) || check_params(e, data, rows, cols, err))
        return -1;
    lmc_w8a8_layout l;
    lmc_w8a8_layout_of(e->has_smooth, rows, cols, &l);
    const int8_t *q = (const int8_t *)data;
    float *inv = NULL;
    if (e->has_smooth) {
        inv = malloc((size_t)cols * sizeof *inv);
        if (!inv)
            return lmc_fail(err, "w8a8: out of memory");
        for (int64_t c = 0; c < cols; c++) {
            float s;
            memcpy(&s, data + l.off_smooth + 4 * (size_t)c, 4);
            inv[c] = s;
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        float s;
        memcpy(&s, data + l.off_scales + 4 * (size_t)r, 4);
        const int8_t *qr = q + r * cols;
        float *o = out + r * cols;
        if (inv)
            for (int64_t c = 0; c < cols; c++)
                o[c] = (float)qr[c] * s / inv[c];
        else
            for (int64_t c = 0; c < cols; c++)
                o[c] = (float)qr[c] * s;
    }
    free(inv);
    return 0;
}

int lmc_w8a8_encode(const float *W, int64_t rows, int64_t cols, const float *smooth,
                    lmc_encoding *enc, uint8_t **blob, size_t *nbytes, lmc_error *err)
{
    *blob = NULL;
    *nbytes = 0;
    lmc_encoding e = lmc_enc_dense(LMC_ENC_W8A8);
    e.has_smooth = smooth != NULL;
    if (w8_validate(&e, rows, cols, err))
        return -1;
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
        if (!isfinite(W[i]))
            return lmc_fail(err, "w8a8: non-finite weight at [%lld, %lld]",
                            (long long)(i / (size_t)cols), (long long)(i % (size_t)cols));
    if (smooth)
        for (int64_t c = 0; c < cols; c++)
            if (!isfinite(smooth[c]) || !(smooth[c] > 0.0f))
                return lmc_fail(err, "w8a8: smoothing scale %g of column %lld", (double)smooth[c],
                                (long long)c);
    lmc_w8a8_layout l;
    lmc_w8a8_layout_of(e.has_smooth, rows, cols, &l);
    uint8_t *b = calloc(1, l.nbytes);
    float *sc = malloc((size_t)rows * sizeof *sc);
    if (!b || !sc) {
        free(b);
        free(sc);
        return lmc_fail(err, "w8a8: out of memory for a [%lld, %lld] weight", (long long)rows,
                        (long long)cols);
    }
    lmc_w8a8_quantize_rows(W, rows, cols, (int8_t *)b, sc);
    memcpy(b + l.off_scales, sc, (size_t)rows * 4);
    if (smooth)
        memcpy(b + l.off_smooth, smooth, (size_t)cols * 4);
    free(sc);
    *enc = e;
    *blob = b;
    *nbytes = l.nbytes;
    return 0;
}

void lmc_w8a8_igemm_ref(const int8_t *qx, int64_t n, const int8_t *qw, int64_t rows,
                        int64_t cols, int32_t *acc)
{
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
            int32_t s = 0;
            for (int64_t c = 0; c < cols; c++)
                s += (int32_t)qx[t * cols + c] * (int32_t)qw[r * cols + c];
            acc[t * rows + r] = s;
        }
}

/* ---- the CPU kernel ---- */

typedef struct w8_state {
    int64_t rows, cols, kp;  /* kp: cols rounded up to KALIGN (zero padded) */
    int64_t rows_pad;        /* rows rounded up to RB (zero rows) */
    int16_t *w;              /* [rows_pad][kp]: int16 so the dot products map to pmaddwd */
    float *sw;               /* [rows] */
    float *smooth;           /* [cols] or NULL */
} w8_state;

static void w8_free(void *p)
{
    w8_state *s = p;
    if (!s)
        return;
    free(s->w);
    free(s->sw);
    free(s->smooth);
    free(s);
}

static int w8_prepare(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                      void **state, lmc_error *err)
{
    *state = NULL;
    if (w8_validate(e, rows, cols, err) || check_params(e, data, rows, cols, err))
        return -1;
    lmc_w8a8_layout l;
    lmc_w8a8_layout_of(e->has_smooth, rows, cols, &l);
    w8_state *s = calloc(1, sizeof *s);
    if (!s)
        return lmc_fail(err, "w8a8: out of memory");
    s->rows = rows;
    s->cols = cols;
    s->kp = (cols + KALIGN - 1) / KALIGN * KALIGN;
    s->rows_pad = (rows + RB - 1) / RB * RB;
    s->w = calloc((size_t)s->rows_pad * (size_t)s->kp, sizeof *s->w);
    s->sw = malloc((size_t)rows * sizeof *s->sw);
    if (e->has_smooth)
        s->smooth = malloc((size_t)cols * sizeof *s->smooth);
    if (!s->w || !s->sw || (e->has_smooth && !s->smooth)) {
        w8_free(s);
        return lmc_fail(err, "w8a8: out of memory for the kernel of a [%lld, %lld] weight",
                        (long long)rows, (long long)cols);
    }
    const int8_t *q = (const int8_t *)data;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            s->w[r * s->kp + c] = q[r * cols + c];
    memcpy(s->sw, data + l.off_scales, (size_t)rows * 4);
    if (s->smooth)
        memcpy(s->smooth, data + l.off_smooth, (size_t)cols * 4);
    *state = s;
    return 0;
}

/* o[TB][RB] = x[TB][kp] . w[RB][kp]^T, int32. */
W8_CLONES W8_O3 static void tile(const int16_t *x, const int16_t *w, int64_t kp, int32_t *o)
{
    const int16_t *x0 = x, *x1 = x + kp, *x2 = x + 2 * kp, *x3 = x + 3 * kp;
    const int16_t *w0 = w, *w1 = w + kp, *w2 = w + 2 * kp, *w3 = w + 3 * kp;
    int32_t a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
    int32_t a20 = 0, a21 = 0, a22 = 0, a23 = 0, a30 = 0, a31 = 0, a32 = 0, a33 = 0;
    for (int64_t i = 0; i < kp; i++) {
        int32_t p0 = x0[i], p1 = x1[i], p2 = x2[i], p3 = x3[i];
        int32_t q0 = w0[i], q1 = w1[i], q2 = w2[i], q3 = w3[i];
        a00 += p0 * q0; a01 += p0 * q1; a02 += p0 * q2; a03 += p0 * q3;
        a10 += p1 * q0; a11 += p1 * q1; a12 += p1 * q2; a13 += p1 * q3;
        a20 += p2 * q0; a21 += p2 * q1; a22 += p2 * q2; a23 += p2 * q3;
        a30 += p3 * q0; a31 += p3 * q1; a32 += p3 * q2; a33 += p3 * q3;
    }
    o[0] = a00; o[1] = a01; o[2] = a02; o[3] = a03;
    o[4] = a10; o[5] = a11; o[6] = a12; o[7] = a13;
    o[8] = a20; o[9] = a21; o[10] = a22; o[11] = a23;
    o[12] = a30; o[13] = a31; o[14] = a32; o[15] = a33;
}

/* One token: qx[kp] (zero padded) and its scale. */
static float quant_token(const w8_state *s, const float *x, float *tmp, int8_t *q8,
                         int16_t *qx)
{
    const float *src = x;
    if (s->smooth) {
        for (int64_t c = 0; c < s->cols; c++)
            tmp[c] = x[c] / s->smooth[c];
        src = tmp;
    }
    float sc = lmc_w8a8_quantize_row(src, s->cols, q8);
    for (int64_t c = 0; c < s->cols; c++)
        qx[c] = q8[c];
    for (int64_t c = s->cols; c < s->kp; c++)
        qx[c] = 0;
    return sc;
}

#define TOK_CHUNK 16 /* tokens per parallel task (4 tiles) */
#define ROW_CHUNK 64 /* weight rows per parallel task (16 tiles) */

static void w8_apply(const void *state, const float *x, int64_t n, float *y, int accumulate)
{
    const w8_state *s = state;
    if (n <= 0)
        return;
    const int64_t kp = s->kp, rows = s->rows, cols = s->cols;
    int64_t np = (n + TOK_CHUNK - 1) / TOK_CHUNK * TOK_CHUNK;
    int16_t *qx = malloc((size_t)np * (size_t)kp * sizeof *qx);
    float *sx = malloc((size_t)np * sizeof *sx);
    if (!qx || !sx) {
        /* No error channel here: make the failure impossible to miss (eval
         * stops on the non-finite log-likelihood). */
        lmc_warn("w8a8 kernel: out of memory for %lld tokens", (long long)n);
        for (int64_t i = 0; i < n * rows; i++)
            y[i] = NAN;
        free(qx);
        free(sx);
        return;
    }
    int fail = 0;
#pragma omp parallel
    {
        float *tmp = s->smooth ? malloc((size_t)cols * sizeof *tmp) : NULL;
        int8_t *q8 = malloc((size_t)cols);
        if ((s->smooth && !tmp) || !q8) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < np; t++) {
            int16_t *qt = qx + t * kp;
            if (t >= n || !q8 || (s->smooth && !tmp)) {
                memset(qt, 0, (size_t)kp * sizeof *qt);
                sx[t] = 0.0f;
            } else {
                sx[t] = quant_token(s, x + t * cols, tmp, q8, qt);
            }
        }
        free(tmp);
        free(q8);
    }
    if (fail) {
        lmc_warn("w8a8 kernel: out of memory");
        for (int64_t i = 0; i < n * rows; i++)
            y[i] = NAN;
        free(qx);
        free(sx);
        return;
    }
    const int64_t ntc = np / TOK_CHUNK, nrc = (s->rows_pad + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntc * nrc; task++) {
        int64_t t0 = (task / nrc) * TOK_CHUNK, r0 = (task % nrc) * ROW_CHUNK;
        int64_t r1 = r0 + ROW_CHUNK < s->rows_pad ? r0 + ROW_CHUNK : s->rows_pad;
        for (int64_t t = t0; t < t0 + TOK_CHUNK && t < n; t += TB)
            for (int64_t r = r0; r < r1; r += RB) {
                int32_t o[TB * RB];
                tile(qx + t * kp, s->w + r * kp, kp, o);
                for (int a = 0; a < TB && t + a < n; a++)
                    for (int b = 0; b < RB && r + b < rows; b++) {
                        /* same expression as the naive reference in the tests */
                        float v = (float)o[a * RB + b] * s->sw[r + b] * sx[t + a];
                        float *dst = y + (t + a) * rows + r + b;
                        *dst = accumulate ? *dst + v : v;
                    }
            }
    }
    free(qx);
    free(sx);
}

const lmc_enc_traits lmc_enc_w8a8_traits = {
    .id = LMC_ENC_W8A8,
    .name = "w8a8",
    .validate = w8_validate,
    .nbytes = w8_nbytes,
    .to_f32 = w8_to_f32,
    .kernel_prepare = w8_prepare,
    .kernel_apply = w8_apply,
    .kernel_free = w8_free,
};
