/* LMC_ENC_LOWRANK: factor pair A [rows][rank] . B [rank][cols] (layout in
 * lowrank.h). */
#include "lowrank.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

static size_t val_size(int inner)
{
    return inner == LMC_ENC_F16 ? 2 : inner == LMC_ENC_F32 ? 4 : 0;
}

static size_t align4(size_t n) { return (n + 3) & ~(size_t)3; }

static size_t off_b(int inner, int64_t rows, int rank)
{
    return align4((size_t)rows * (size_t)rank * val_size(inner));
}

size_t lmc_lowrank_nbytes(int inner, int64_t rows, int64_t cols, int rank)
{
    if (!val_size(inner) || rows <= 0 || cols <= 0 || rank <= 0)
        return 0;
    return off_b(inner, rows, rank) + (size_t)rank * (size_t)cols * val_size(inner);
}

static int lr_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "lowrank: empty tensor shape [%lld, %lld]", (long long)rows,
                        (long long)cols);
    if (!val_size(e->inner))
        return lmc_fail(err, "lowrank: factor encoding id %d not supported (f16 or f32)",
                        e->inner);
    int64_t mn = rows < cols ? rows : cols;
    if (e->rank < 1 || e->rank > mn)
        return lmc_fail(err, "lowrank: rank %d outside [1, %lld] for shape [%lld, %lld]",
                        e->rank, (long long)mn, (long long)rows, (long long)cols);
    return 0;
}

static size_t lr_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    return lmc_lowrank_nbytes(e->inner, rows, cols, e->rank);
}

static void get_vals(int inner, const uint8_t *src, size_t n, float *dst)
{
    if (inner == LMC_ENC_F16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2); /* the blob need not be aligned in memory */
            dst[i] = lmc_f16_to_f32(h);
        }
    } else {
        memcpy(dst, src, n * 4);
    }
}

void lmc_lowrank_factors(const lmc_encoding *e, const uint8_t *blob, int64_t rows, int64_t cols,
                         float *A, float *B)
{
    if (A)
        get_vals(e->inner, blob, (size_t)rows * (size_t)e->rank, A);
    if (B)
        get_vals(e->inner, blob + off_b(e->inner, rows, e->rank), (size_t)e->rank * (size_t)cols,
                 B);
}

static int check_finite(const float *v, size_t n, const char *what, lmc_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return lmc_fail(err, "lowrank: factor %s value %zu is not finite", what, i);
    return 0;
}

/* Decoded factors, checked: a non-finite value can only come from a damaged
 * or hand-made blob, and would poison every output. */
static int load_factors(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                        float **A, float **B, lmc_error *err)
{
    *A = malloc((size_t)rows * (size_t)e->rank * sizeof **A);
    *B = malloc((size_t)e->rank * (size_t)cols * sizeof **B);
    if (!*A || !*B) {
        free(*A), free(*B);
        *A = *B = NULL;
        return lmc_fail(err, "lowrank: out of memory for rank %d factors", e->rank);
    }
    lmc_lowrank_factors(e, data, rows, cols, *A, *B);
    if (check_finite(*A, (size_t)rows * (size_t)e->rank, "A", err) ||
        check_finite(*B, (size_t)e->rank * (size_t)cols, "B", err)) {
        free(*A), free(*B);
        *A = *B = NULL;
        return -1;
    }
    return 0;
}

static int lr_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                     float *out, lmc_error *err)
{
    if (lr_validate(e, rows, cols, err))
        return -1;
    float *A, *B;
    if (load_factors(e, data, rows, cols, &A, &B, err))
        return -1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, e->rank, 1.0f,
                A, e->rank, B, (int)cols, 0.0f, out, (int)cols);
    free(A);
    free(B);
    return 0;
}

static int64_t lr_macs(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols)
{
    (void)data;
    return (int64_t)e->rank * (rows + cols);
}

/* ---- CPU kernel ---- */

typedef struct lr_state {
    int64_t rows, cols;
    int rank;
    float *A, *B;   /* fp32 factors */
    float *tmp;     /* [cap][rank] intermediate x . B^T */
    int64_t cap;    /* tokens tmp holds */
} lr_state;

#define LR_MIN_CAP 64 /* allocated at load, so apply can always make progress */

static void lr_free(void *state)
{
    lr_state *s = state;
    if (!s)
        return;
    free(s->A);
    free(s->B);
    free(s->tmp);
    free(s);
}

static int lr_prepare(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                      void **state, lmc_error *err)
{
    *state = NULL;
    if (lr_validate(e, rows, cols, err))
        return -1;
    lr_state *s = calloc(1, sizeof *s);
    if (!s)
        return lmc_fail(err, "lowrank: out of memory");
    s->rows = rows, s->cols = cols, s->rank = e->rank;
    if (load_factors(e, data, rows, cols, &s->A, &s->B, err)) {
        free(s);
        return -1;
    }
    s->tmp = malloc((size_t)LR_MIN_CAP * (size_t)e->rank * sizeof *s->tmp);
    if (!s->tmp) {
        lr_free(s);
        return lmc_fail(err, "lowrank: out of memory");
    }
    s->cap = LR_MIN_CAP;
    *state = s;
    return 0;
}

static void lr_apply(const void *state, const float *x, int64_t n, float *y, int accumulate)
{
    /* The scratch buffer is part of the state: apply is called from one
     * thread at a time (encoding.h), so growing it here is safe. */
    lr_state *s = (lr_state *)state;
    if (n > s->cap) {
        float *t = realloc(s->tmp, (size_t)n * (size_t)s->rank * sizeof *t);
        if (t) {
            s->tmp = t;
            s->cap = n;
        } /* else: no memory to grow, work in chunks of what we have */
    }
    const int r = s->rank, in = (int)s->cols, out = (int)s->rows;
    for (int64_t i0 = 0; i0 < n; i0 += s->cap) {
        int nb = (int)(n - i0 < s->cap ? n - i0 : s->cap);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, r, in, 1.0f, x + i0 * in, in,
                    s->B, in, 0.0f, s->tmp, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, out, r, 1.0f, s->tmp, r, s->A,
                    r, accumulate ? 1.0f : 0.0f, y + i0 * out, out);
    }
}

/* The factors as stored: a device runs the two products on them directly. */
static int lr_view(const lmc_encoding *e, const uint8_t *data, size_t nbytes, int64_t rows,
                   int64_t cols, lmc_enc_view *v, lmc_error *err)
{
    if (lr_validate(e, rows, cols, err) < 0)
        return -1;
    size_t need = lr_nbytes(e, rows, cols);
    if (nbytes != need || !data)
        return lmc_fail(err, "%zu bytes of data, encoding lowrank needs %zu", nbytes, need);
    size_t es = e->inner == LMC_ENC_F16 ? 2 : 4;
    size_t b_off = ((size_t)rows * (size_t)e->rank * es + 3) & ~(size_t)3;
    *v = (lmc_enc_view){.kind = LMC_VIEW_FACTORS, .elem = (lmc_enc_id)e->inner, .a = data,
                        .b = data + b_off, .rank = e->rank};
    return 0;
}

const lmc_enc_traits lmc_enc_lowrank_traits = {
    .id = LMC_ENC_LOWRANK, .name = "lowrank", .validate = lr_validate, .nbytes = lr_nbytes,
    .to_f32 = lr_to_f32, .effective_macs = lr_macs, .kernel_prepare = lr_prepare,
    .kernel_apply = lr_apply, .kernel_free = lr_free, .view = lr_view,
};

/* ---- encoder ---- */

static int put_vals(int inner, const float *src, size_t n, int64_t ld, const char *what,
                    uint8_t *dst, lmc_error *err)
{
    for (size_t i = 0; i < n; i++) {
        float v = src[i];
        if (!isfinite(v))
            return lmc_fail(err, "lowrank: factor %s [%lld, %lld] is not finite", what,
                            (long long)(i / (size_t)ld), (long long)(i % (size_t)ld));
        if (inner == LMC_ENC_F16) {
            uint16_t h = lmc_f32_to_f16(v);
            if ((h & 0x7c00) == 0x7c00)
                return lmc_fail(err, "lowrank: factor %s [%lld, %lld] = %g overflows fp16 "
                                "(use f32 factors)", what, (long long)(i / (size_t)ld),
                                (long long)(i % (size_t)ld), (double)v);
            memcpy(dst + 2 * i, &h, 2);
        } else {
            memcpy(dst + 4 * i, &v, 4);
        }
    }
    return 0;
}

int lmc_lowrank_encode(const float *A, const float *B, int64_t rows, int64_t cols, int rank,
                       int inner, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                       lmc_error *err)
{
    lmc_encoding enc = lmc_enc_dense(LMC_ENC_LOWRANK);
    enc.rank = rank;
    enc.inner = inner;
    *blob = NULL;
    if (lr_validate(&enc, rows, cols, err))
        return -1;
    size_t nb = lmc_lowrank_nbytes(inner, rows, cols, rank);
    uint8_t *b = calloc(nb, 1);
    if (!b)
        return lmc_fail(err, "lowrank: out of memory for %zu bytes", nb);
    if (put_vals(inner, A, (size_t)rows * (size_t)rank, rank, "A", b, err) ||
        put_vals(inner, B, (size_t)rank * (size_t)cols, cols, "B", b + off_b(inner, rows, rank),
                 err)) {
        free(b);
        return -1;
    }
    *e = enc;
    *blob = b;
    *nbytes = nb;
    return 0;
}
