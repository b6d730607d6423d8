/* LMC_ENC_QGROUP: layout documented in qgroup.h. */
#include "qgroup.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

static size_t row_bytes(int64_t n, int bits) { return (size_t)((n * bits + 7) / 8); }
static size_t align4(size_t x) { return (x + 3) & ~(size_t)3; }

int64_t lmc_qgroup_ngroups(const lmc_encoding *e, int64_t cols)
{
    return e->group > 0 ? (cols + e->group - 1) / e->group : 1;
}

void lmc_qgroup_layout_of(const lmc_encoding *e, int64_t rows, int64_t cols,
                          lmc_qgroup_layout *l)
{
    memset(l, 0, sizeof *l);
    l->ngroups = lmc_qgroup_ngroups(e, cols);
    l->code_row_bytes = row_bytes(cols, e->bits);
    l->zero_row_bytes = e->sym ? 0 : row_bytes(l->ngroups, e->bits);
    size_t off = 0;
    l->off_codes = off;
    off = align4(off + (size_t)rows * l->code_row_bytes);
    l->off_scales = off;
    off = align4(off + (size_t)rows * (size_t)l->ngroups * 2);
    if (!e->sym) {
        l->off_zeros = off;
        off = align4(off + (size_t)rows * l->zero_row_bytes);
    }
    if (e->has_gidx) {
        l->off_gidx = off;
        off += (size_t)cols * 4;
    }
    l->nbytes = off;
}

void lmc_pack_bits(const uint8_t *codes, int64_t n, int bits, uint8_t *dst)
{
    if (bits == 8) {
        memcpy(dst, codes, (size_t)n);
        return;
    }
    if (bits == 4) { /* the common case, two codes a byte */
        int64_t i = 0;
        for (; i + 1 < n; i += 2)
            dst[i >> 1] = (uint8_t)(codes[i] | codes[i + 1] << 4);
        if (i < n)
            dst[i >> 1] = codes[i];
        return;
    }
    uint64_t acc = 0;
    int have = 0;
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        acc |= (uint64_t)codes[i] << have;
        have += bits;
        while (have >= 8) {
            dst[o++] = (uint8_t)acc;
            acc >>= 8;
            have -= 8;
        }
    }
    if (have > 0)
        dst[o] = (uint8_t)acc;
}

void lmc_unpack_bits(const uint8_t *src, int64_t n, int bits, uint8_t *codes)
{
    int64_t i = 0;
    if (bits == 8) {
        memcpy(codes, src, (size_t)n);
        return;
    }
    if (bits == 4) {
        for (; i + 1 < n; i += 2) {
            uint8_t b = src[i >> 1];
            codes[i] = b & 15;
            codes[i + 1] = b >> 4;
        }
        if (i < n)
            codes[i] = src[i >> 1] & 15;
        return;
    }
    if (bits == 2) {
        for (; i + 3 < n; i += 4) {
            uint8_t b = src[i >> 2];
            codes[i] = b & 3;
            codes[i + 1] = (b >> 2) & 3;
            codes[i + 2] = (b >> 4) & 3;
            codes[i + 3] = b >> 6;
        }
        for (; i < n; i++)
            codes[i] = (src[i >> 2] >> (2 * (i & 3))) & 3;
        return;
    }
    uint64_t acc = 0;
    int have = 0;
    size_t o = 0;
    const uint8_t mask = (uint8_t)((1u << bits) - 1);
    for (; i < n; i++) {
        if (have < bits) {
            acc |= (uint64_t)src[o++] << have;
            have += 8;
        }
        codes[i] = (uint8_t)acc & mask;
        acc >>= bits;
        have -= bits;
    }
}

void lmc_qgroup_pack(const lmc_encoding *e, int64_t rows, int64_t cols, const uint8_t *codes,
                     const float *scales, const uint8_t *zeros, const int32_t *g_idx,
                     uint8_t *blob)
{
    lmc_qgroup_layout l;
    lmc_qgroup_layout_of(e, rows, cols, &l);
    memset(blob, 0, l.nbytes);
    const unsigned maxq = (1u << e->bits) - 1;
    (void)maxq; /* asserts only */
    /* rows pack independently: 8B-class blocks hold ~2e8 codes */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *cr = codes + r * cols;
        for (int64_t c = 0; c < cols; c++)
            assert(cr[c] <= maxq);
        lmc_pack_bits(cr, cols, e->bits, blob + l.off_codes + (size_t)r * l.code_row_bytes);
    }
    size_t ns = (size_t)rows * (size_t)l.ngroups;
    for (size_t i = 0; i < ns; i++) {
        uint16_t h = lmc_f32_to_f16(scales[i]);
        memcpy(blob + l.off_scales + 2 * i, &h, 2);
    }
    if (!e->sym) {
        assert(zeros);
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *zr = zeros + r * l.ngroups;
            for (int64_t g = 0; g < l.ngroups; g++)
                assert(zr[g] <= maxq);
            lmc_pack_bits(zr, l.ngroups, e->bits,
                          blob + l.off_zeros + (size_t)r * l.zero_row_bytes);
        }
    }
    if (e->has_gidx) {
        assert(g_idx);
        memcpy(blob + l.off_gidx, g_idx, (size_t)cols * 4);
    }
}

static int32_t default_group(const lmc_encoding *e, int64_t c)
{
    return e->group > 0 ? (int32_t)(c / e->group) : 0;
}

void lmc_qgroup_unpack(const lmc_encoding *e, int64_t rows, int64_t cols, const uint8_t *blob,
                       uint8_t *codes, float *scales, uint8_t *zeros, int32_t *g_idx)
{
    lmc_qgroup_layout l;
    lmc_qgroup_layout_of(e, rows, cols, &l);
    if (codes)
        for (int64_t r = 0; r < rows; r++)
            lmc_unpack_bits(blob + l.off_codes + (size_t)r * l.code_row_bytes, cols, e->bits,
                            codes + r * cols);
    size_t ns = (size_t)rows * (size_t)l.ngroups;
    if (scales)
        for (size_t i = 0; i < ns; i++) {
            uint16_t h;
            memcpy(&h, blob + l.off_scales + 2 * i, 2);
            scales[i] = lmc_f16_to_f32(h);
        }
    if (zeros) {
        if (e->sym)
            memset(zeros, 1 << (e->bits - 1), ns);
        else
            for (int64_t r = 0; r < rows; r++)
                lmc_unpack_bits(blob + l.off_zeros + (size_t)r * l.zero_row_bytes, l.ngroups,
                                e->bits, zeros + r * l.ngroups);
    }
    if (g_idx) {
        if (e->has_gidx)
            memcpy(g_idx, blob + l.off_gidx, (size_t)cols * 4);
        else
            for (int64_t c = 0; c < cols; c++)
                g_idx[c] = default_group(e, c);
    }
}

/* ---- traits ---- */

static int qg_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "qgroup: empty tensor shape [%lld, %lld]", (long long)rows,
                        (long long)cols);
    if (e->bits < 2 || e->bits > 8)
        return lmc_fail(err, "qgroup: bits %d out of range 2..8", e->bits);
    if (e->group == 0 || e->group < -1)
        return lmc_fail(err, "qgroup: group size %d invalid (positive, or -1 for one group per row)",
                        e->group);
    return 0;
}

static size_t qg_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    lmc_qgroup_layout l;
    lmc_qgroup_layout_of(e, rows, cols, &l);
    return l.nbytes;
}

static int qg_to_f32(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                     float *out, lmc_error *err)
{
    if (qg_validate(e, rows, cols, err))
        return -1;
    lmc_qgroup_layout l;
    lmc_qgroup_layout_of(e, rows, cols, &l);
    const int64_t ng = l.ngroups;
    int32_t *gidx = NULL;
    if (e->has_gidx) {
        gidx = malloc((size_t)cols * sizeof *gidx);
        if (!gidx)
            return lmc_fail(err, "qgroup: out of memory");
        memcpy(gidx, data + l.off_gidx, (size_t)cols * 4);
        for (int64_t c = 0; c < cols; c++)
            if (gidx[c] < 0 || gidx[c] >= ng) {
                lmc_fail(err, "qgroup: g_idx[%lld] = %d out of range [0, %lld)", (long long)c,
                         (int)gidx[c], (long long)ng);
                free(gidx);
                return -1;
            }
    }
    /* A non-finite scale can only come from a damaged or hand-made blob. */
    for (size_t i = 0; i < (size_t)rows * (size_t)ng; i++) {
        uint16_t h;
        memcpy(&h, data + l.off_scales + 2 * i, 2);
        if ((h & 0x7c00) == 0x7c00) {
            free(gidx);
            return lmc_fail(err, "qgroup: scale of row %lld group %lld is not finite",
                            (long long)(i / (size_t)ng), (long long)(i % (size_t)ng));
        }
    }
    int fail = 0;
#pragma omp parallel
    {
        uint8_t *codes = malloc((size_t)cols + (size_t)ng);
        float *sc = malloc((size_t)ng * sizeof *sc);
        if (!codes || !sc) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!codes || !sc)
                continue;
            uint8_t *zr = codes + cols;
            lmc_unpack_bits(data + l.off_codes + (size_t)r * l.code_row_bytes, cols, e->bits,
                            codes);
            /* memcpy: the blob need not be 2-byte aligned in memory */
            const uint8_t *sp = data + l.off_scales + (size_t)r * (size_t)ng * 2;
            for (int64_t k = 0; k < ng; k++) {
                uint16_t h;
                memcpy(&h, sp + 2 * k, 2);
                sc[k] = lmc_f16_to_f32(h);
            }
            if (e->sym)
                memset(zr, 1 << (e->bits - 1), (size_t)ng);
            else
                lmc_unpack_bits(data + l.off_zeros + (size_t)r * l.zero_row_bytes, ng, e->bits,
                                zr);
            float *o = out + r * cols;
            if (gidx) {
                for (int64_t c = 0; c < cols; c++)
                    o[c] = lmc_qgroup_dequant(sc[gidx[c]], codes[c], zr[gidx[c]]);
            } else {
                int64_t g = e->group > 0 ? e->group : cols;
                for (int64_t k = 0; k < ng; k++) {
                    const float s = sc[k];
                    const int z = zr[k];
                    int64_t c1 = (k + 1) * g < cols ? (k + 1) * g : cols;
                    for (int64_t c = k * g; c < c1; c++)
                        o[c] = lmc_qgroup_dequant(s, codes[c], z);
                }
            }
        }
        free(codes);
        free(sc);
    }
    free(gidx);
    if (fail)
        return lmc_fail(err, "qgroup: out of memory");
    return 0;
}

const lmc_enc_traits lmc_enc_qgroup_traits = {
    .id = LMC_ENC_QGROUP, .name = "qgroup", .validate = qg_validate, .nbytes = qg_nbytes,
    .to_f32 = qg_to_f32,
};
