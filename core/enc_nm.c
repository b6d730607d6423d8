/* LMC_ENC_NM: per group of m inputs, n index codes + n kept values (layout
 * in sparse.h). */
#include "sparse.h"

#include <stdlib.h>
#include <string.h>

int lmc_nm_index_bits(int m)
{
    int b = 0;
    while ((1 << b) < m)
        b++;
    return b;
}

size_t lmc_nm_index_row_bytes(int n, int m, int64_t cols)
{
    size_t k = (size_t)(cols / m) * (size_t)n;
    return (k * (size_t)lmc_nm_index_bits(m) + 7) / 8;
}

/* ib-bit code number i of a row stream (LSB-first). */
static unsigned get_code(const uint8_t *row, size_t i, int ib)
{
    size_t bit = i * (size_t)ib;
    unsigned v = 0;
    for (int k = 0; k < ib; k++, bit++)
        v |= (unsigned)((row[bit >> 3] >> (bit & 7)) & 1) << k;
    return v;
}

static void put_code(uint8_t *row, size_t i, int ib, unsigned v)
{
    size_t bit = i * (size_t)ib;
    for (int k = 0; k < ib; k++, bit++)
        row[bit >> 3] |= (uint8_t)(((v >> k) & 1) << (bit & 7));
}

static int nm_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "nm: empty tensor shape [%lld, %lld]", (long long)rows,
                        (long long)cols);
    if (e->m < 2 || e->m > LMC_NM_MAX_M)
        return lmc_fail(err, "nm: M = %d outside [2, %d]", e->m, LMC_NM_MAX_M);
    if (e->n < 1 || e->n >= e->m)
        return lmc_fail(err, "nm: %d:%d needs 1 <= N < M", e->n, e->m);
    if (cols % e->m)
        return lmc_fail(err, "nm: M = %d does not divide the input width %lld", e->m,
                        (long long)cols);
    if (lmc_sparse_check_inner(e->inner, "nm", err))
        return -1;
    int64_t kept = rows * (cols / e->m) * e->n;
    if (e->nnz != 0 && e->nnz != kept)
        return lmc_fail(err, "nm: nnz %lld but %d:%d of [%lld, %lld] stores %lld values",
                        (long long)e->nnz, e->n, e->m, (long long)rows, (long long)cols,
                        (long long)kept);
    return 0;
}

static size_t nm_index_bytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    return (size_t)rows * lmc_nm_index_row_bytes(e->n, e->m, cols);
}

static size_t nm_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    size_t kept = (size_t)rows * (size_t)(cols / e->m) * (size_t)e->n;
    return lmc_align4(nm_index_bytes(e, rows, cols)) + kept * lmc_sparse_inner_size(e->inner);
}

/* Decode every row's positions into pos[rows][K] (column indices), checking
 * ranges, ascending order and zero padding. pos may be NULL (check only). */
static int nm_read_positions(const lmc_encoding *e, const uint8_t *data, int64_t rows,
                             int64_t cols, int64_t r, int32_t *pos, lmc_error *err)
{
    int ib = lmc_nm_index_bits(e->m);
    int64_t groups = cols / e->m;
    size_t rb = lmc_nm_index_row_bytes(e->n, e->m, cols);
    size_t kbits = (size_t)groups * (size_t)e->n * (size_t)ib;
    const uint8_t *row = data + (size_t)r * rb;
    (void)rows;
    if (kbits % 8 && (row[rb - 1] >> (kbits % 8)))
        return lmc_fail(err, "nm: row %lld: nonzero padding bits after the indices",
                        (long long)r);
    size_t i = 0;
    for (int64_t g = 0; g < groups; g++) {
        int prev = -1;
        for (int k = 0; k < e->n; k++, i++) {
            int idx = (int)get_code(row, i, ib);
            if (idx >= e->m || idx <= prev)
                return lmc_fail(err,
                                "nm: row %lld group %lld: index %d %s", (long long)r,
                                (long long)g, idx,
                                idx >= e->m ? "out of range" : "not in ascending order");
            prev = idx;
            if (pos)
                pos[i] = (int32_t)(g * e->m + idx);
        }
    }
    return 0;
}

static int nm_check_pad(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                        lmc_error *err)
{
    size_t ib = nm_index_bytes(e, rows, cols);
    for (size_t i = ib; i < lmc_align4(ib); i++)
        if (data[i])
            return lmc_fail(err, "nm: nonzero padding byte after the indices");
    return 0;
}

static int nm_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                     float *out, lmc_error *err)
{
    if (nm_validate(e, rows, cols, err) || nm_check_pad(e, data, rows, cols, err))
        return -1;
    int64_t K = (cols / e->m) * e->n;
    int32_t *pos = malloc((size_t)K * sizeof *pos);
    if (!pos)
        return lmc_fail(err, "nm: out of memory");
    const uint8_t *vals = data + lmc_align4(nm_index_bytes(e, rows, cols));
    memset(out, 0, (size_t)rows * (size_t)cols * sizeof *out);
    for (int64_t r = 0; r < rows; r++) {
        if (nm_read_positions(e, data, rows, cols, r, pos, err)) {
            free(pos);
            return -1;
        }
        for (int64_t k = 0; k < K; k++)
            out[r * cols + pos[k]] = lmc_sparse_get_value(e->inner, vals, r * K + k);
    }
    free(pos);
    return 0;
}

static int64_t nm_macs(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols)
{
    (void)data;
    /* a 2:4 kernel multiplies every stored value, zeros included */
    return rows * (cols / e->m) * e->n;
}

const lmc_enc_traits lmc_enc_nm_traits = {LMC_ENC_NM, "nm", nm_validate, nm_nbytes, nm_to_f32,
                                          nm_macs};

int lmc_nm_encode(const float *w, const uint8_t *keep, int64_t rows, int64_t cols, int n, int m,
                  lmc_enc_id inner, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                  lmc_error *err)
{
    lmc_encoding enc = {0};
    enc.id = LMC_ENC_NM;
    enc.n = n;
    enc.m = m;
    enc.inner = inner;
    if (nm_validate(&enc, rows, cols, err))
        return -1;
    int64_t groups = cols / m, K = groups * n;
    enc.nnz = rows * K;
    int ib = lmc_nm_index_bits(m);
    size_t rb = lmc_nm_index_row_bytes(n, m, cols), nb = nm_nbytes(&enc, rows, cols);
    uint8_t *b = calloc(nb, 1);
    if (!b)
        return lmc_fail(err, "nm: out of memory for %zu bytes", nb);
    uint8_t *vals = b + lmc_align4(nm_index_bytes(&enc, rows, cols));
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = b + (size_t)r * rb;
        const uint8_t *kr = keep + r * cols;
        size_t i = 0;
        for (int64_t g = 0; g < groups; g++) {
            int64_t c0 = g * m;
            int nk = 0;
            for (int j = 0; j < m; j++)
                nk += kr[c0 + j] != 0;
            if (nk > n) {
                free(b);
                return lmc_fail(err, "nm: row %lld columns %lld..%lld keep %d values, more than %d",
                                (long long)r, (long long)c0, (long long)(c0 + m - 1), nk, n);
            }
            /* fill up with the lowest unkept positions, stored as 0 */
            int pad = n - nk;
            for (int j = 0; j < m; j++) {
                int kept = kr[c0 + j] != 0;
                if (!kept && pad <= 0)
                    continue;
                if (!kept)
                    pad--;
                put_code(row, i, ib, (unsigned)j);
                float v = kept ? w[r * cols + c0 + j] : 0.0f;
                if (lmc_sparse_put_value(inner, vals, r * K + (int64_t)i, v, r, c0 + j, err)) {
                    free(b);
                    return lmc_fail_prefix(err, "nm");
                }
                i++;
            }
        }
    }
    *e = enc;
    *blob = b;
    *nbytes = nb;
    return 0;
}

int lmc_nm_mask(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                uint8_t *keep, lmc_error *err)
{
    if (e->id != LMC_ENC_NM)
        return lmc_fail(err, "not an nm encoding");
    if (nm_validate(e, rows, cols, err) || nm_check_pad(e, data, rows, cols, err))
        return -1;
    int64_t K = (cols / e->m) * e->n;
    int32_t *pos = malloc((size_t)K * sizeof *pos);
    if (!pos)
        return lmc_fail(err, "nm: out of memory");
    memset(keep, 0, (size_t)rows * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        if (nm_read_positions(e, data, rows, cols, r, pos, err)) {
            free(pos);
            return -1;
        }
        for (int64_t k = 0; k < K; k++)
            keep[r * cols + pos[k]] = 1;
    }
    free(pos);
    return 0;
}
