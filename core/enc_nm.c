/* LMC_ENC_NM: per group of m inputs, n index codes + n kept values (layout
 * in sparse.h). */
#include "sparse.h"

#include <stdlib.h>
#include <string.h>

#include "qgroup.h"

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
    if (e->inner == LMC_ENC_QGROUP) {
        if (lmc_sparse_check_qinner(e, "nm", err))
            return -1;
        if (!lmc_nm_qgroup_ok(e->group, e->has_gidx, e->m))
            return lmc_fail(err,
                            "nm: inner qgroup needs a group size that is -1 or a multiple of "
                            "M = %d and no g_idx (group %d, has_gidx %d)",
                            e->m, e->group, e->has_gidx);
    } else if (lmc_sparse_check_inner(e->inner, "nm", err)) {
        return -1;
    }
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

int lmc_nm_qgroup_ok(int group, int has_gidx, int m)
{
    return !has_gidx && (group == -1 || (group > 0 && m > 0 && group % m == 0));
}

/* The QGROUP encoding of the compacted [rows][K] values of an inner-QGROUP
 * NM tensor: group g of the original columns holds g*n/m stored values. */
static lmc_encoding nm_inner_qgroup(const lmc_encoding *e)
{
    lmc_encoding q = lmc_enc_dense(LMC_ENC_QGROUP);
    q.bits = e->bits;
    q.sym = e->sym;
    q.group = e->group > 0 ? e->group / e->m * e->n : -1;
    return q;
}

static size_t nm_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    int64_t K = (cols / e->m) * e->n;
    size_t head = lmc_align4(nm_index_bytes(e, rows, cols));
    if (e->inner == LMC_ENC_QGROUP) {
        lmc_encoding q = nm_inner_qgroup(e);
        lmc_qgroup_layout l;
        lmc_qgroup_layout_of(&q, rows, K, &l);
        return head + l.nbytes;
    }
    return head + (size_t)rows * (size_t)K * lmc_sparse_inner_size(e->inner);
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
    float *qv = NULL; /* inner QGROUP: the compacted values, decoded by QGROUP itself */
    if (e->inner == LMC_ENC_QGROUP) {
        lmc_encoding q = nm_inner_qgroup(e);
        const lmc_enc_traits *qt = lmc_enc_get(LMC_ENC_QGROUP);
        qv = malloc((size_t)rows * (size_t)K * sizeof *qv);
        if (!qv) {
            free(pos);
            return lmc_fail(err, "nm: out of memory");
        }
        if (qt->validate(&q, rows, K, err) || qt->to_f32(&q, vals, rows, K, qv, err)) {
            free(pos);
            free(qv);
            return lmc_fail_prefix(err, "nm");
        }
    }
    memset(out, 0, (size_t)rows * (size_t)cols * sizeof *out);
    for (int64_t r = 0; r < rows; r++) {
        if (nm_read_positions(e, data, rows, cols, r, pos, err)) {
            free(pos);
            free(qv);
            return -1;
        }
        for (int64_t k = 0; k < K; k++)
            out[r * cols + pos[k]] =
                qv ? qv[r * K + k] : lmc_sparse_get_value(e->inner, vals, r * K + k);
    }
    free(pos);
    free(qv);
    return 0;
}

static int64_t nm_macs(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols)
{
    (void)data;
    /* a 2:4 kernel multiplies every stored value, zeros included */
    return rows * (cols / e->m) * e->n;
}

const lmc_enc_traits lmc_enc_nm_traits = {
    .id = LMC_ENC_NM, .name = "nm", .validate = nm_validate, .nbytes = nm_nbytes,
    .to_f32 = nm_to_f32, .effective_macs = nm_macs,
};

/* The n stored positions of every group of every row, pos[rows][K] (column
 * indices, ascending within a group): the kept ones, then, when a group
 * keeps fewer than n, its lowest unkept positions (pad[] = 1 for those). */
static int nm_positions(const uint8_t *keep, int64_t rows, int64_t cols, int n, int m,
                        int32_t *pos, uint8_t *pad, lmc_error *err)
{
    int64_t groups = cols / m, K = groups * n;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *kr = keep + r * cols;
        int64_t i = r * K;
        for (int64_t g = 0; g < groups; g++) {
            int64_t c0 = g * m;
            int nk = 0;
            for (int j = 0; j < m; j++)
                nk += kr[c0 + j] != 0;
            if (nk > n)
                return lmc_fail(err, "nm: row %lld columns %lld..%lld keep %d values, more than %d",
                                (long long)r, (long long)c0, (long long)(c0 + m - 1), nk, n);
            /* fill up with the lowest unkept positions, stored as 0 */
            int fill = n - nk;
            for (int j = 0; j < m; j++) {
                int kept = kr[c0 + j] != 0;
                if (!kept && fill <= 0)
                    continue;
                if (!kept)
                    fill--;
                pos[i] = (int32_t)(c0 + j);
                pad[i] = !kept;
                i++;
            }
        }
    }
    return 0;
}

/* Shared start of both encoders: validate, positions, the blob with its
 * index section written. */
static int nm_begin(const lmc_encoding *enc, const uint8_t *keep, int64_t rows, int64_t cols,
                    int32_t **pos, uint8_t **pad, uint8_t **blob, size_t *nb, lmc_error *err)
{
    *pos = NULL, *pad = NULL, *blob = NULL;
    if (nm_validate(enc, rows, cols, err))
        return -1;
    const int n = enc->n, m = enc->m;
    int64_t K = (cols / m) * n;
    int ib = lmc_nm_index_bits(m);
    size_t rb = lmc_nm_index_row_bytes(n, m, cols);
    *nb = nm_nbytes(enc, rows, cols);
    *pos = malloc((size_t)rows * (size_t)K * sizeof **pos);
    *pad = malloc((size_t)rows * (size_t)K);
    *blob = calloc(*nb, 1);
    if (!*pos || !*pad || !*blob) {
        free(*pos), free(*pad), free(*blob);
        return lmc_fail(err, "nm: out of memory for %zu bytes", *nb);
    }
    if (nm_positions(keep, rows, cols, n, m, *pos, *pad, err)) {
        free(*pos), free(*pad), free(*blob);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < K; k++)
            put_code(*blob + (size_t)r * rb, (size_t)k, ib, (unsigned)((*pos)[r * K + k] % m));
    return 0;
}

int lmc_nm_encode(const float *w, const uint8_t *keep, int64_t rows, int64_t cols, int n, int m,
                  lmc_enc_id inner, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                  lmc_error *err)
{
    lmc_encoding enc = {0};
    enc.id = LMC_ENC_NM;
    enc.n = n;
    enc.m = m;
    enc.inner = inner;
    if (inner == LMC_ENC_QGROUP) /* codes, not floats: lmc_nm_encode_q */
        return lmc_sparse_check_inner(inner, "nm", err);
    int32_t *pos;
    uint8_t *pad, *b;
    size_t nb;
    if (nm_begin(&enc, keep, rows, cols, &pos, &pad, &b, &nb, err))
        return -1;
    int64_t K = (cols / m) * n;
    enc.nnz = rows * K;
    uint8_t *vals = b + lmc_align4(nm_index_bytes(&enc, rows, cols));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < K; k++) {
            int64_t i = r * K + k, c = pos[i];
            float v = pad[i] ? 0.0f : w[r * cols + c];
            if (lmc_sparse_put_value(inner, vals, i, v, r, c, err)) {
                free(pos), free(pad), free(b);
                return lmc_fail_prefix(err, "nm");
            }
        }
    free(pos), free(pad);
    *e = enc;
    *blob = b;
    *nbytes = nb;
    return 0;
}

int lmc_nm_encode_q(const lmc_sparse_qvals *q, const uint8_t *keep, int64_t rows, int64_t cols,
                    int n, int m, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                    lmc_error *err)
{
    lmc_encoding enc = {0};
    enc.id = LMC_ENC_NM;
    enc.n = n;
    enc.m = m;
    enc.inner = LMC_ENC_QGROUP;
    enc.bits = q->bits;
    enc.group = q->group;
    enc.sym = q->sym != 0;
    enc.has_gidx = q->has_gidx != 0;
    int32_t *pos;
    uint8_t *pad, *b;
    size_t nb;
    if (nm_begin(&enc, keep, rows, cols, &pos, &pad, &b, &nb, err))
        return -1;
    const int64_t K = (cols / m) * n;
    enc.nnz = rows * K;
    lmc_encoding qe = nm_inner_qgroup(&enc);
    const int64_t ng = lmc_qgroup_ngroups(&enc, cols);
    const unsigned maxq = (1u << enc.bits) - 1;
    const uint8_t zsym = (uint8_t)(1u << (enc.bits - 1));
    uint8_t *cc = malloc((size_t)rows * (size_t)K + 1);
    if (!cc) {
        free(pos), free(pad), free(b);
        return lmc_fail(err, "nm: out of memory");
    }
    int rc = 0;
    for (int64_t r = 0; r < rows && !rc; r++)
        for (int64_t k = 0; k < K; k++) {
            int64_t i = r * K + k, c = pos[i];
            int64_t g = enc.group > 0 ? c / enc.group : 0;
            uint8_t z = enc.sym ? zsym : q->zeros[r * ng + g];
            /* a padding position decodes to exactly 0 through its group's zero */
            uint8_t code = pad[i] ? z : q->codes[r * cols + c];
            if (code > maxq || z > maxq) {
                rc = lmc_fail(err, "nm: code %u / zero %u at [%lld, %lld] does not fit %d bits",
                              code, z, (long long)r, (long long)c, enc.bits);
                break;
            }
            cc[i] = code;
        }
    if (!rc)
        lmc_qgroup_pack(&qe, rows, K, cc, q->scales, enc.sym ? NULL : q->zeros, NULL,
                        b + lmc_align4(nm_index_bytes(&enc, rows, cols)));
    free(cc), free(pos), free(pad);
    if (rc) {
        free(b);
        return -1;
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
