/* LMC_ENC_SPARSE: bitmask + kept values (layout in sparse.h). */
#include "sparse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "qgroup.h"

size_t lmc_sparse_inner_size(int inner)
{
    switch (inner) {
    case LMC_ENC_F16: return 2;
    case LMC_ENC_F32: return 4;
    default: return 0;
    }
}

int lmc_sparse_check_inner(int inner, const char *what, lmc_error *err)
{
    if (lmc_sparse_inner_size(inner))
        return 0;
    if (inner == LMC_ENC_QGROUP)
        return lmc_fail(err,
                        "%s: inner encoding qgroup not supported yet for float values (f16 or "
                        "f32; a qgroup inner holds quantized codes)",
                        what);
    if (inner == LMC_ENC_BF16)
        return lmc_fail(err, "%s: inner encoding bf16 not supported (f16, f32 or qgroup)", what);
    return lmc_fail(err, "%s: inner encoding id %d not supported (f16, f32 or qgroup)", what,
                    inner);
}

int lmc_sparse_check_qinner(const lmc_encoding *e, const char *what, lmc_error *err)
{
    if (e->bits < 2 || e->bits > 8)
        return lmc_fail(err, "%s: inner qgroup bits %d out of range 2..8", what, e->bits);
    if (e->group == 0 || e->group < -1)
        return lmc_fail(err, "%s: inner qgroup group size %d invalid (positive, or -1)", what,
                        e->group);
    if ((e->sym != 0 && e->sym != 1) || (e->has_gidx != 0 && e->has_gidx != 1))
        return lmc_fail(err, "%s: inner qgroup sym %d / has_gidx %d must be 0 or 1", what, e->sym,
                        e->has_gidx);
    return 0;
}

/* Inner check of either kind. */
static int check_any_inner(const lmc_encoding *e, const char *what, lmc_error *err)
{
    if (e->inner == LMC_ENC_QGROUP)
        return lmc_sparse_check_qinner(e, what, err);
    return lmc_sparse_check_inner(e->inner, what, err);
}

int lmc_sparse_put_value(int inner, uint8_t *vals, int64_t i, float v, int64_t r, int64_t c,
                         lmc_error *err)
{
    if (inner == LMC_ENC_F32) {
        memcpy(vals + (size_t)i * 4, &v, 4);
        return 0;
    }
    uint16_t h = lmc_f32_to_f16(v);
    if ((h & 0x7c00) == 0x7c00 && isfinite(v))
        return lmc_fail(err, "weight [%lld, %lld] = %g overflows f16 (use inner f32)",
                        (long long)r, (long long)c, (double)v);
    memcpy(vals + (size_t)i * 2, &h, 2);
    return 0;
}

float lmc_sparse_get_value(int inner, const uint8_t *vals, int64_t i)
{
    if (inner == LMC_ENC_F32) {
        float f;
        memcpy(&f, vals + (size_t)i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, vals + (size_t)i * 2, 2);
    return lmc_f16_to_f32(h);
}

size_t lmc_sparse_mask_bytes(int64_t rows, int64_t cols)
{
    return ((size_t)rows * (size_t)cols + 7) / 8;
}

static int sparse_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "sparse: empty tensor shape [%lld, %lld]", (long long)rows,
                        (long long)cols);
    if (check_any_inner(e, "sparse", err))
        return -1;
    if (e->nnz < 0 || e->nnz > rows * cols)
        return lmc_fail(err, "sparse: nnz %lld outside [0, %lld] for shape [%lld, %lld]",
                        (long long)e->nnz, (long long)(rows * cols), (long long)rows,
                        (long long)cols);
    return 0;
}

/* Sections of an inner-QGROUP SPARSE blob (layout in sparse.h). */
typedef struct sq_layout {
    int64_t ngroups;
    size_t code_bytes;     /* ceil(nnz * bits / 8) */
    size_t zero_row_bytes; /* 0 when sym */
    size_t off_codes, off_scales, off_zeros, off_gidx, nbytes;
} sq_layout;

static void sq_layout_of(const lmc_encoding *e, int64_t rows, int64_t cols, sq_layout *l)
{
    memset(l, 0, sizeof *l);
    l->ngroups = lmc_qgroup_ngroups(e, cols);
    l->code_bytes = ((size_t)e->nnz * (size_t)e->bits + 7) / 8;
    l->zero_row_bytes = e->sym ? 0 : ((size_t)l->ngroups * (size_t)e->bits + 7) / 8;
    size_t off = lmc_align4(lmc_sparse_mask_bytes(rows, cols));
    l->off_codes = off;
    off = lmc_align4(off + l->code_bytes);
    l->off_scales = off;
    off = lmc_align4(off + (size_t)rows * (size_t)l->ngroups * 2);
    if (!e->sym) {
        l->off_zeros = off;
        off = lmc_align4(off + (size_t)rows * l->zero_row_bytes);
    }
    if (e->has_gidx) {
        l->off_gidx = off;
        off += (size_t)cols * 4;
    }
    l->nbytes = off;
}

static size_t sparse_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    if (e->inner == LMC_ENC_QGROUP) {
        sq_layout l;
        sq_layout_of(e, rows, cols, &l);
        return l.nbytes;
    }
    return lmc_align4(lmc_sparse_mask_bytes(rows, cols)) +
           (size_t)e->nnz * lmc_sparse_inner_size(e->inner);
}

/* Every check that to_f32 and the mask extraction share: the set bits must
 * match nnz (otherwise the values section would be over- or under-read) and
 * the padding must be zero. */
static int sparse_check_blob(const lmc_encoding *e, const uint8_t *data, int64_t rows,
                             int64_t cols, lmc_error *err)
{
    if (sparse_validate(e, rows, cols, err))
        return -1;
    size_t total = (size_t)rows * (size_t)cols, mb = lmc_sparse_mask_bytes(rows, cols);
    int64_t set = 0;
    for (size_t i = 0; i < mb; i++)
        set += __builtin_popcount(data[i]);
    if (total % 8 && (data[mb - 1] >> (total % 8)))
        return lmc_fail(err, "sparse: nonzero padding bits after the last mask bit");
    if (set != e->nnz)
        return lmc_fail(err, "sparse: mask has %lld bits set but nnz is %lld", (long long)set,
                        (long long)e->nnz);
    for (size_t i = mb; i < lmc_align4(mb); i++)
        if (data[i])
            return lmc_fail(err, "sparse: nonzero padding byte after the mask");
    return 0;
}

static int zero_bytes(const uint8_t *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Checks of the inner-QGROUP sections: zero padding (bits after the code
 * stream and each zero row, bytes between sections), finite scales, g_idx
 * in range. */
static int sq_check(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                    const sq_layout *l, lmc_error *err)
{
    size_t cbits = (size_t)e->nnz * (size_t)e->bits;
    if (cbits % 8 && (data[l->off_codes + l->code_bytes - 1] >> (cbits % 8)))
        return lmc_fail(err, "sparse: nonzero padding bits after the last code");
    if (!zero_bytes(data, l->off_codes + l->code_bytes, l->off_scales))
        return lmc_fail(err, "sparse: nonzero padding byte after the codes");
    size_t ns = (size_t)rows * (size_t)l->ngroups;
    for (size_t i = 0; i < ns; i++) {
        uint16_t h;
        memcpy(&h, data + l->off_scales + 2 * i, 2);
        if ((h & 0x7c00) == 0x7c00)
            return lmc_fail(err, "sparse: scale of row %lld group %lld is not finite",
                            (long long)(i / (size_t)l->ngroups),
                            (long long)(i % (size_t)l->ngroups));
    }
    size_t end = l->off_scales + ns * 2;
    if (!e->sym) {
        if (!zero_bytes(data, end, l->off_zeros))
            return lmc_fail(err, "sparse: nonzero padding byte after the scales");
        size_t zbits = (size_t)l->ngroups * (size_t)e->bits;
        for (int64_t r = 0; zbits % 8 && r < rows; r++)
            if (data[l->off_zeros + (size_t)(r + 1) * l->zero_row_bytes - 1] >> (zbits % 8))
                return lmc_fail(err, "sparse: row %lld: nonzero padding bits after the zeros",
                                (long long)r);
        end = l->off_zeros + (size_t)rows * l->zero_row_bytes;
    }
    if (e->has_gidx) {
        if (!zero_bytes(data, end, l->off_gidx))
            return lmc_fail(err, "sparse: nonzero padding byte before g_idx");
        for (int64_t c = 0; c < cols; c++) {
            int32_t g;
            memcpy(&g, data + l->off_gidx + (size_t)c * 4, 4);
            if (g < 0 || g >= l->ngroups)
                return lmc_fail(err, "sparse: g_idx[%lld] = %d out of range [0, %lld)",
                                (long long)c, (int)g, (long long)l->ngroups);
        }
    } else if (!zero_bytes(data, end, l->nbytes)) {
        return lmc_fail(err, "sparse: nonzero padding byte at the end");
    }
    return 0;
}

static int sparse_q_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows,
                           int64_t cols, float *out, lmc_error *err)
{
    sq_layout l;
    sq_layout_of(e, rows, cols, &l);
    if (sq_check(e, data, rows, cols, &l, err))
        return -1;
    const int64_t ng = l.ngroups;
    uint8_t *codes = malloc((size_t)e->nnz + 1);
    uint8_t *zeros = malloc((size_t)ng);
    float *sc = malloc((size_t)ng * sizeof *sc);
    int32_t *gidx = malloc((size_t)cols * sizeof *gidx);
    if (!codes || !zeros || !sc || !gidx) {
        free(codes), free(zeros), free(sc), free(gidx);
        return lmc_fail(err, "sparse: out of memory");
    }
    lmc_unpack_bits(data + l.off_codes, e->nnz, e->bits, codes);
    for (int64_t c = 0; c < cols; c++) {
        if (e->has_gidx)
            memcpy(&gidx[c], data + l.off_gidx + (size_t)c * 4, 4);
        else
            gidx[c] = e->group > 0 ? (int32_t)(c / e->group) : 0;
    }
    int64_t j = 0;
    size_t i = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < ng; k++) {
            uint16_t h;
            memcpy(&h, data + l.off_scales + ((size_t)r * (size_t)ng + (size_t)k) * 2, 2);
            sc[k] = lmc_f16_to_f32(h);
        }
        if (e->sym)
            memset(zeros, 1 << (e->bits - 1), (size_t)ng);
        else
            lmc_unpack_bits(data + l.off_zeros + (size_t)r * l.zero_row_bytes, ng, e->bits,
                            zeros);
        float *o = out + r * cols;
        for (int64_t c = 0; c < cols; c++, i++) {
            if ((data[i >> 3] >> (i & 7)) & 1) {
                int32_t g = gidx[c];
                o[c] = lmc_qgroup_dequant(sc[g], codes[j++], zeros[g]);
            } else {
                o[c] = 0.0f;
            }
        }
    }
    free(codes), free(zeros), free(sc), free(gidx);
    return 0;
}

static int sparse_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                         float *out, lmc_error *err)
{
    if (sparse_check_blob(e, data, rows, cols, err))
        return -1;
    if (e->inner == LMC_ENC_QGROUP)
        return sparse_q_to_f32(e, data, rows, cols, out, err);
    const uint8_t *vals = data + lmc_align4(lmc_sparse_mask_bytes(rows, cols));
    /* rows in parallel: each starts at the values the rows before it keep */
    int64_t *start = malloc((size_t)rows * sizeof *start);
    if (!start)
        return lmc_fail(err, "sparse: out of memory");
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = 0;
        for (size_t i = (size_t)r * (size_t)cols; i < (size_t)(r + 1) * (size_t)cols; i++)
            n += (data[i >> 3] >> (i & 7)) & 1;
        start[r] = n;
    }
    int64_t acc = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = start[r];
        start[r] = acc;
        acc += n;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t j = start[r];
        for (size_t i = (size_t)r * (size_t)cols; i < (size_t)(r + 1) * (size_t)cols; i++)
            out[i] = (data[i >> 3] >> (i & 7)) & 1 ? lmc_sparse_get_value(e->inner, vals, j++)
                                                   : 0.0f;
    }
    free(start);
    return 0;
}

static int64_t sparse_macs(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols)
{
    (void)data, (void)rows, (void)cols;
    return e->nnz;
}

const lmc_enc_traits lmc_enc_sparse_traits = {
    .id = LMC_ENC_SPARSE, .name = "sparse", .validate = sparse_validate,
    .nbytes = sparse_nbytes, .to_f32 = sparse_to_f32, .effective_macs = sparse_macs,
};

int lmc_sparse_encode(const float *w, const uint8_t *keep, int64_t rows, int64_t cols,
                      lmc_enc_id inner, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                      lmc_error *err)
{
    lmc_encoding enc = {0};
    enc.id = LMC_ENC_SPARSE;
    enc.inner = inner;
    if (inner == LMC_ENC_QGROUP) /* codes, not floats: lmc_sparse_encode_q */
        return lmc_sparse_check_inner(inner, "sparse", err);
    size_t total = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < total; i++)
        enc.nnz += keep[i] != 0;
    if (sparse_validate(&enc, rows, cols, err))
        return -1;
    size_t nb = sparse_nbytes(&enc, rows, cols);
    uint8_t *b = calloc(nb ? nb : 1, 1);
    if (!b)
        return lmc_fail(err, "sparse: out of memory for %zu bytes", nb);
    uint8_t *vals = b + lmc_align4(lmc_sparse_mask_bytes(rows, cols));
    size_t mbytes = (total + 7) / 8;
#pragma omp parallel for schedule(static) /* by mask byte: rows may share one */
    for (size_t k = 0; k < mbytes; k++) {
        uint8_t m = 0;
        for (size_t i = 8 * k; i < 8 * k + 8 && i < total; i++)
            m |= (uint8_t)((keep[i] != 0) << (i & 7));
        b[k] = m;
    }
    int64_t *start = malloc((size_t)rows * sizeof *start);
    if (!start) {
        free(b);
        return lmc_fail(err, "sparse: out of memory");
    }
    int64_t acc = 0;
    for (int64_t r = 0; r < rows; r++) {
        start[r] = acc;
        for (int64_t c = 0; c < cols; c++)
            acc += keep[r * cols + c] != 0;
    }
    int64_t bad = -1; /* first row whose value overflows (the message names the weight) */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t j = start[r];
        for (int64_t c = 0; c < cols; c++)
            if (keep[r * cols + c] &&
                lmc_sparse_put_value(inner, vals, j++, w[r * cols + c], r, c, NULL)) {
#pragma omp critical
                if (bad < 0 || r < bad)
                    bad = r;
                break;
            }
    }
    free(start);
    if (bad >= 0) { /* again serially for the message */
        int64_t j = 0;
        for (int64_t c = 0; c < cols; c++)
            if (keep[bad * cols + c] &&
                lmc_sparse_put_value(inner, vals, j++, w[bad * cols + c], bad, c, err))
                break;
        free(b);
        return lmc_fail_prefix(err, "sparse");
    }
    *e = enc;
    *blob = b;
    *nbytes = nb;
    return 0;
}

int lmc_sparse_encode_q(const lmc_sparse_qvals *q, const uint8_t *keep, int64_t rows,
                        int64_t cols, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                        lmc_error *err)
{
    lmc_encoding enc = {0};
    enc.id = LMC_ENC_SPARSE;
    enc.inner = LMC_ENC_QGROUP;
    enc.bits = q->bits;
    enc.group = q->group;
    enc.sym = q->sym != 0;
    enc.has_gidx = q->has_gidx != 0;
    size_t total = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < total; i++)
        enc.nnz += keep[i] != 0;
    if (sparse_validate(&enc, rows, cols, err))
        return -1;
    sq_layout l;
    sq_layout_of(&enc, rows, cols, &l);
    const int64_t ng = l.ngroups;
    const unsigned maxq = (1u << enc.bits) - 1;
    if (enc.has_gidx)
        for (int64_t c = 0; c < cols; c++)
            if (q->g_idx[c] < 0 || q->g_idx[c] >= ng)
                return lmc_fail(err, "sparse: g_idx[%lld] = %d out of range [0, %lld)",
                                (long long)c, (int)q->g_idx[c], (long long)ng);
    uint8_t *b = calloc(l.nbytes ? l.nbytes : 1, 1);
    uint8_t *kc = malloc((size_t)enc.nnz + 1);
    if (!b || !kc) {
        free(b), free(kc);
        return lmc_fail(err, "sparse: out of memory for %zu bytes", l.nbytes);
    }
    int64_t j = 0;
    for (size_t i = 0; i < total; i++) {
        if (!keep[i])
            continue;
        if (q->codes[i] > maxq) {
            free(b), free(kc);
            return lmc_fail(err, "sparse: code %u at [%lld, %lld] does not fit %d bits",
                            q->codes[i], (long long)(i / (size_t)cols),
                            (long long)(i % (size_t)cols), enc.bits);
        }
        b[i >> 3] |= (uint8_t)(1u << (i & 7));
        kc[j++] = q->codes[i];
    }
    lmc_pack_bits(kc, enc.nnz, enc.bits, b + l.off_codes);
    free(kc);
    size_t ns = (size_t)rows * (size_t)ng;
    for (size_t i = 0; i < ns; i++) {
        uint16_t h = lmc_f32_to_f16(q->scales[i]);
        memcpy(b + l.off_scales + 2 * i, &h, 2);
    }
    if (!enc.sym) {
        for (size_t i = 0; i < ns; i++)
            if (q->zeros[i] > maxq) {
                free(b);
                return lmc_fail(err, "sparse: zero point %u of row %lld does not fit %d bits",
                                q->zeros[i], (long long)(i / (size_t)ng), enc.bits);
            }
        for (int64_t r = 0; r < rows; r++)
            lmc_pack_bits(q->zeros + r * ng, ng, enc.bits,
                          b + l.off_zeros + (size_t)r * l.zero_row_bytes);
    }
    if (enc.has_gidx)
        memcpy(b + l.off_gidx, q->g_idx, (size_t)cols * 4);
    *e = enc;
    *blob = b;
    *nbytes = l.nbytes;
    return 0;
}

int lmc_sparse_mask(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                    uint8_t *keep, lmc_error *err)
{
    if (e->id == LMC_ENC_NM)
        return lmc_nm_mask(e, data, rows, cols, keep, err);
    if (e->id != LMC_ENC_SPARSE) {
        const lmc_enc_traits *t = lmc_enc_get(e->id);
        return lmc_fail(err, "encoding %s has no sparsity mask", t ? t->name : "unknown");
    }
    if (sparse_check_blob(e, data, rows, cols, err))
        return -1;
    size_t total = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < total; i++)
        keep[i] = (data[i >> 3] >> (i & 7)) & 1;
    return 0;
}
