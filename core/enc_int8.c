/* LMC_ENC_INT8_OUTLIER: LLM.int8() weights and kernel (layout in int8.h). */
#pragma GCC optimize("O3") /* the integer dot products need the vectorizer */
#include "int8.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

/* The kernel is compiled for AVX-512, AVX2 and baseline x86-64 and picked at
 * load time, as eval/forward_cpu.c does. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LMC_NO_CLONES)
#define LMC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LMC_CLONES
#endif

/* int32 accumulation of products of at most 127 * 127 stays exact below
 * 2^31 / 127^2 = 133143 columns. */
#define I8_MAX_COLS 131072

static size_t align4(size_t n) { return (n + 3) & ~(size_t)3; }

void lmc_int8_layout_of(int64_t rows, int64_t cols, int n_outlier, lmc_int8_layout *l)
{
    size_t off = 0;
    l->off_q = off;
    off = align4(off + (size_t)rows * (size_t)cols);
    l->off_scales = off;
    off = align4(off + (size_t)rows * 2);
    l->off_oidx = off;
    off += (size_t)n_outlier * 4;
    l->off_ow = off;
    off = align4(off + (size_t)rows * (size_t)n_outlier * 2);
    l->off_thresh = off;
    l->nbytes = off + 4;
}

static int i8_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "int8: empty tensor shape [%lld, %lld]", (long long)rows,
                        (long long)cols);
    if (cols > I8_MAX_COLS)
        return lmc_fail(err, "int8: %lld input columns, at most %d (int32 accumulation)",
                        (long long)cols, I8_MAX_COLS);
    if (e->n_outlier < 0 || e->n_outlier > cols)
        return lmc_fail(err, "int8: n_outlier %d outside [0, %lld]", e->n_outlier,
                        (long long)cols);
    return 0;
}

static size_t i8_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    lmc_int8_layout l;
    lmc_int8_layout_of(rows, cols, e->n_outlier, &l);
    return l.nbytes;
}

static float get_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2); /* the blob need not be aligned in memory */
    return lmc_f16_to_f32(h);
}

/* The parts of a blob, decoded and checked: scales sc[rows], oidx[nout],
 * ow[rows][nout] (fp32). Every check a damaged or hand-made blob can fail. */
typedef struct i8_parts {
    float *sc;
    int32_t *oidx;
    float *ow;
    float thresh;
} i8_parts;

static void parts_free(i8_parts *p)
{
    free(p->sc);
    free(p->oidx);
    free(p->ow);
    memset(p, 0, sizeof *p);
}

static int parts_read(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                      i8_parts *p, lmc_error *err)
{
    memset(p, 0, sizeof *p);
    if (i8_validate(e, rows, cols, err))
        return -1;
    const int nout = e->n_outlier;
    lmc_int8_layout l;
    lmc_int8_layout_of(rows, cols, nout, &l);
    p->sc = malloc((size_t)rows * sizeof *p->sc);
    p->oidx = malloc((size_t)(nout ? nout : 1) * sizeof *p->oidx);
    p->ow = malloc((size_t)rows * (size_t)(nout ? nout : 1) * sizeof *p->ow);
    if (!p->sc || !p->oidx || !p->ow) {
        parts_free(p);
        return lmc_fail(err, "int8: out of memory");
    }
    for (int64_t r = 0; r < rows; r++) {
        p->sc[r] = get_f16(data + l.off_scales + 2 * (size_t)r);
        if (!isfinite(p->sc[r]) || p->sc[r] < 0) {
            double bad = p->sc[r];
            parts_free(p);
            return lmc_fail(err, "int8: scale of row %lld is %g (finite, >= 0 expected)",
                            (long long)r, bad);
        }
    }
    memcpy(p->oidx, data + l.off_oidx, (size_t)nout * 4);
    for (int j = 0; j < nout; j++)
        if (p->oidx[j] < 0 || p->oidx[j] >= cols || (j && p->oidx[j] <= p->oidx[j - 1])) {
            int bad = p->oidx[j];
            parts_free(p);
            return lmc_fail(err, "int8: outlier column %d = %d %s", j, bad,
                            bad < 0 || bad >= cols ? "out of range" : "not ascending");
        }
    for (size_t i = 0; i < (size_t)rows * (size_t)nout; i++) {
        p->ow[i] = get_f16(data + l.off_ow + 2 * i);
        if (!isfinite(p->ow[i])) {
            parts_free(p);
            return lmc_fail(err, "int8: outlier weight [%lld, %d] is not finite",
                            (long long)(i / (size_t)nout), (int)(i % (size_t)nout));
        }
    }
    /* the int8 part of an outlier column must be empty, or the kernel would
     * count that column twice */
    const int8_t *q = (const int8_t *)(data + l.off_q);
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < nout; j++)
            if (q[r * cols + p->oidx[j]]) {
                int c = p->oidx[j];
                parts_free(p);
                return lmc_fail(err, "int8: row %lld outlier column %d has a nonzero int8 value",
                                (long long)r, c);
            }
    memcpy(&p->thresh, data + l.off_thresh, 4);
    if (!isfinite(p->thresh) || p->thresh < 0) {
        double bad = p->thresh;
        parts_free(p);
        return lmc_fail(err, "int8: threshold %g (finite, >= 0 expected)", bad);
    }
    return 0;
}

static int i8_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                     float *out, lmc_error *err)
{
    i8_parts p;
    if (parts_read(e, data, rows, cols, &p, err))
        return -1;
    const int8_t *q = (const int8_t *)data; /* off_q is 0 */
    const int nout = e->n_outlier;
    for (int64_t r = 0; r < rows; r++) {
        const float s = p.sc[r];
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = s * (float)q[r * cols + c];
        for (int j = 0; j < nout; j++)
            out[r * cols + p.oidx[j]] = p.ow[r * nout + j];
    }
    parts_free(&p);
    return 0;
}

/* ---- CPU kernel ---- */

static int64_t g_calls, g_columns, g_missed; /* lmc_int8_counts, updated atomically */

void lmc_int8_counts_get(lmc_int8_counts *c)
{
    c->calls = __atomic_load_n(&g_calls, __ATOMIC_RELAXED);
    c->columns = __atomic_load_n(&g_columns, __ATOMIC_RELAXED);
    c->missed = __atomic_load_n(&g_missed, __ATOMIC_RELAXED);
}

void lmc_int8_counts_reset(void)
{
    __atomic_store_n(&g_calls, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g_columns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g_missed, 0, __ATOMIC_RELAXED);
}

#define TB 4           /* tokens per micro-tile */
#define KALIGN 32      /* row length padding of the packed operands */
#define I8_MIN_CAP 64  /* tokens of scratch allocated at load */

/* Packed state. The int8 values are held widened to int16 so that the
 * vectorized dot product maps onto multiply-add-pairs (pmaddwd) without a
 * sign extension per use; the arithmetic is int8 x int8 into int32. */
typedef struct i8_state {
    int64_t rows, cols, kp; /* kp: cols rounded up to KALIGN */
    int nout;
    int16_t *w;       /* [rows][kp] int8 codes, outlier columns and padding 0 */
    float *sw;        /* [rows] row scales */
    int32_t *oidx;    /* [nout] */
    float *ow;        /* [rows][nout] fp32 */
    uint8_t *is_out;  /* [cols] */
    float thresh;
    /* scratch, grown on demand (apply runs on one thread at a time) */
    int16_t *xq;      /* [cap][kp] */
    float *sx;        /* [cap] token scales */
    float *amax;      /* [cap] token absmax over non-outlier columns */
    float *xo;        /* [cap][nout] */
    uint8_t *flag;    /* [cols] missed-column flags of one call */
    int64_t cap;      /* tokens, a multiple of TB */
} i8_state;

static void i8_free(void *state)
{
    i8_state *s = state;
    if (!s)
        return;
    free(s->w), free(s->sw), free(s->oidx), free(s->ow), free(s->is_out);
    free(s->xq), free(s->sx), free(s->amax), free(s->xo), free(s->flag);
    free(s);
}

static int scratch_alloc(i8_state *s, int64_t cap)
{
    cap = (cap + TB - 1) / TB * TB;
    int16_t *xq = malloc((size_t)cap * (size_t)s->kp * sizeof *xq);
    float *sx = malloc((size_t)cap * sizeof *sx);
    float *am = malloc((size_t)cap * sizeof *am);
    float *xo = malloc((size_t)cap * (size_t)(s->nout ? s->nout : 1) * sizeof *xo);
    if (!xq || !sx || !am || !xo) {
        free(xq), free(sx), free(am), free(xo);
        return -1;
    }
    free(s->xq), free(s->sx), free(s->amax), free(s->xo);
    s->xq = xq, s->sx = sx, s->amax = am, s->xo = xo, s->cap = cap;
    return 0;
}

static int i8_prepare(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                      void **state, lmc_error *err)
{
    *state = NULL;
    i8_parts p;
    if (parts_read(e, data, rows, cols, &p, err))
        return -1;
    i8_state *s = calloc(1, sizeof *s);
    if (!s) {
        parts_free(&p);
        return lmc_fail(err, "int8: out of memory");
    }
    s->rows = rows, s->cols = cols, s->nout = e->n_outlier, s->thresh = p.thresh;
    s->kp = (cols + KALIGN - 1) / KALIGN * KALIGN;
    s->sw = p.sc, s->oidx = p.oidx, s->ow = p.ow; /* taken over */
    s->w = calloc((size_t)rows * (size_t)s->kp, sizeof *s->w);
    s->is_out = calloc((size_t)cols, 1);
    s->flag = calloc((size_t)cols, 1);
    if (!s->w || !s->is_out || !s->flag || scratch_alloc(s, I8_MIN_CAP)) {
        i8_free(s);
        return lmc_fail(err, "int8: out of memory");
    }
    const int8_t *q = (const int8_t *)data;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            s->w[r * s->kp + c] = q[r * cols + c];
    for (int j = 0; j < s->nout; j++)
        s->is_out[s->oidx[j]] = 1;
    *state = s;
    return 0;
}

/* acc[t][r] = xq[t] . w[r] for TB tokens and every row. */
LMC_CLONES static void dot_tile(const int16_t *restrict xq, const int16_t *restrict w,
                                int64_t rows, int64_t kp, int32_t *restrict acc)
{
    const int16_t *x0 = xq, *x1 = xq + kp, *x2 = xq + 2 * kp, *x3 = xq + 3 * kp;
    for (int64_t r = 0; r < rows; r++) {
        const int16_t *wr = w + r * kp;
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t k = 0; k < kp; k++) {
            int32_t wk = wr[k];
            s0 += x0[k] * wk;
            s1 += x1[k] * wk;
            s2 += x2[k] * wk;
            s3 += x3[k] * wk;
        }
        acc[r] = s0;
        acc[rows + r] = s1;
        acc[2 * rows + r] = s2;
        acc[3 * rows + r] = s3;
    }
}

/* Quantize tokens [t0, t1) of x: per-token absmax over the non-outlier
 * columns, int8 codes (round half to even), outlier values gathered. */
static void quantize_tokens(const i8_state *s, const float *x, int64_t t0, int64_t t1)
{
    const int64_t cols = s->cols, kp = s->kp;
    for (int64_t t = t0; t < t1; t++) {
        const float *xt = x + t * cols;
        int16_t *qt = s->xq + t * kp;
        float am = 0;
        int bad = 0;
        for (int64_t c = 0; c < cols; c++) {
            float a = fabsf(xt[c]);
            bad |= !(a <= FLT_MAX);
            if (!s->is_out[c] && a > am)
                am = a;
        }
        /* a NaN or Inf input makes the token's outputs NaN, as sgemm would */
        float sc = bad ? NAN : am / 127.0f;
        if (bad)
            am = 0;
        float inv = am > 0 ? 127.0f / am : 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            float v = rintf(xt[c] * inv);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            qt[c] = s->is_out[c] ? 0 : (int16_t)v;
        }
        for (int64_t c = cols; c < kp; c++)
            qt[c] = 0;
        for (int j = 0; j < s->nout; j++)
            s->xo[t * s->nout + j] = xt[s->oidx[j]];
        s->sx[t] = sc;
        s->amax[t] = am;
    }
}

/* Non-outlier columns where some token reached the threshold. */
static int64_t count_missed(i8_state *s, const float *x, int64_t nt)
{
    if (!(s->thresh > 0))
        return 0;
    int64_t missed = 0;
    for (int64_t t = 0; t < nt; t++) {
        if (s->amax[t] < s->thresh)
            continue;
        const float *xt = x + t * s->cols;
        for (int64_t c = 0; c < s->cols; c++)
            if (!s->is_out[c] && !s->flag[c] && fabsf(xt[c]) >= s->thresh) {
                s->flag[c] = 1;
                missed++;
            }
    }
    if (missed)
        memset(s->flag, 0, (size_t)s->cols);
    return missed;
}

static void i8_apply(const void *state, const float *x, int64_t n, float *y, int accumulate)
{
    /* Scratch lives in the state: apply runs on one thread at a time
     * (encoding.h), so growing it here is safe. */
    i8_state *s = (i8_state *)state;
    if (n > s->cap)
        scratch_alloc(s, n); /* on failure: chunks of the current capacity */
    const int64_t rows = s->rows, kp = s->kp, cap = s->cap;
    int64_t missed = 0;
    for (int64_t i0 = 0; i0 < n; i0 += cap) {
        const int64_t nb = n - i0 < cap ? n - i0 : cap;
        const float *xb = x + i0 * s->cols;
        float *yb = y + i0 * rows;
        const int64_t ntile = (nb + TB - 1) / TB;
#pragma omp parallel
        {
            int32_t *acc = malloc((size_t)TB * (size_t)rows * sizeof *acc);
#pragma omp for schedule(static)
            for (int64_t tile = 0; tile < ntile; tile++) {
                int64_t t0 = tile * TB, t1 = t0 + TB < nb ? t0 + TB : nb;
                quantize_tokens(s, xb, t0, t1);
                for (int64_t t = t1; t < t0 + TB; t++) { /* a short last tile */
                    memset(s->xq + t * kp, 0, (size_t)kp * sizeof *s->xq);
                    s->sx[t] = 0;
                }
                if (acc) {
                    dot_tile(s->xq + t0 * kp, s->w, rows, kp, acc);
                } else { /* no memory for the tile buffer: one dot product at a time */
                    for (int64_t t = t0; t < t1; t++)
                        for (int64_t r = 0; r < rows; r++) {
                            int32_t a = 0;
                            for (int64_t k = 0; k < kp; k++)
                                a += (int32_t)s->xq[t * kp + k] * s->w[r * kp + k];
                            float v = s->sx[t] * s->sw[r] * (float)a;
                            yb[t * rows + r] = accumulate ? yb[t * rows + r] + v : v;
                        }
                    continue;
                }
                for (int64_t t = t0; t < t1; t++) {
                    const int32_t *at = acc + (t - t0) * rows;
                    float *yt = yb + t * rows;
                    const float sx = s->sx[t];
                    if (accumulate)
                        for (int64_t r = 0; r < rows; r++)
                            yt[r] += sx * s->sw[r] * (float)at[r];
                    else
                        for (int64_t r = 0; r < rows; r++)
                            yt[r] = sx * s->sw[r] * (float)at[r];
                }
            }
            free(acc);
        }
        /* the outlier columns in fp32 against their fp16 weights */
        if (s->nout)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)rows, s->nout,
                        1.0f, s->xo, s->nout, s->ow, s->nout, 1.0f, yb, (int)rows);
        missed += count_missed(s, xb, nb);
    }
    __atomic_fetch_add(&g_calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&g_columns, s->cols - s->nout, __ATOMIC_RELAXED);
    __atomic_fetch_add(&g_missed, missed, __ATOMIC_RELAXED);
}

const lmc_enc_traits lmc_enc_int8_outlier_traits = {
    .id = LMC_ENC_INT8_OUTLIER, .name = "int8", .validate = i8_validate, .nbytes = i8_nbytes,
    .to_f32 = i8_to_f32, .kernel_prepare = i8_prepare, .kernel_apply = i8_apply,
    .kernel_free = i8_free,
};

/* ---- encoder ---- */

int lmc_int8_encode(const float *w, int64_t rows, int64_t cols, const int32_t *oidx,
                    int n_outlier, float threshold, lmc_encoding *e, uint8_t **blob,
                    size_t *nbytes, lmc_error *err)
{
    lmc_encoding enc = lmc_enc_dense(LMC_ENC_INT8_OUTLIER);
    enc.n_outlier = n_outlier;
    *blob = NULL;
    if (i8_validate(&enc, rows, cols, err))
        return -1;
    if (!isfinite(threshold) || threshold < 0)
        return lmc_fail(err, "int8: threshold %g (finite, >= 0 expected)", (double)threshold);
    for (int j = 0; j < n_outlier; j++)
        if (oidx[j] < 0 || oidx[j] >= cols || (j && oidx[j] <= oidx[j - 1]))
            return lmc_fail(err, "int8: outlier column %d = %d %s", j, (int)oidx[j],
                            oidx[j] < 0 || oidx[j] >= cols ? "out of range" : "not ascending");
    lmc_int8_layout l;
    lmc_int8_layout_of(rows, cols, n_outlier, &l);
    uint8_t *b = calloc(l.nbytes, 1);
    uint8_t *is_out = calloc((size_t)cols, 1);
    if (!b || !is_out) {
        free(b), free(is_out);
        return lmc_fail(err, "int8: out of memory for %zu bytes", l.nbytes);
    }
    for (int j = 0; j < n_outlier; j++)
        is_out[oidx[j]] = 1;
    int8_t *q = (int8_t *)(b + l.off_q);
    for (int64_t r = 0; r < rows; r++) {
        const float *wr = w + r * cols;
        float am = 0;
        for (int64_t c = 0; c < cols; c++) {
            if (!isfinite(wr[c])) {
                free(b), free(is_out);
                return lmc_fail(err, "int8: weight [%lld, %lld] is not finite", (long long)r,
                                (long long)c);
            }
            if (!is_out[c] && fabsf(wr[c]) > am)
                am = fabsf(wr[c]);
        }
        /* quantize against the scale as stored, so decode is what we chose */
        uint16_t hs = lmc_f32_to_f16(am / 127.0f);
        if ((hs & 0x7c00) == 0x7c00) {
            free(b), free(is_out);
            return lmc_fail(err, "int8: row %lld absmax %g: scale overflows fp16", (long long)r,
                            (double)am);
        }
        memcpy(b + l.off_scales + 2 * (size_t)r, &hs, 2);
        float s = lmc_f16_to_f32(hs);
        for (int64_t c = 0; c < cols; c++) {
            if (is_out[c] || s == 0)
                continue; /* q stays 0 */
            float v = rintf(wr[c] / s);
            q[r * cols + c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        for (int j = 0; j < n_outlier; j++) {
            float v = wr[oidx[j]];
            uint16_t h = lmc_f32_to_f16(v);
            if ((h & 0x7c00) == 0x7c00) {
                free(b), free(is_out);
                return lmc_fail(err, "int8: outlier weight [%lld, %d] = %g overflows fp16",
                                (long long)r, (int)oidx[j], (double)v);
            }
            memcpy(b + l.off_ow + 2 * ((size_t)r * (size_t)n_outlier + (size_t)j), &h, 2);
        }
    }
    memcpy(b + l.off_oidx, oidx, (size_t)n_outlier * 4);
    memcpy(b + l.off_thresh, &threshold, 4);
    free(is_out);
    *e = enc;
    *blob = b;
    *nbytes = l.nbytes;
    return 0;
}
