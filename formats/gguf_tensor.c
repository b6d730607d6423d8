/* lmc tensors as ggml data: the mapping and why it is exact are in
 * gguf_tensor.h; block layouts from ggml-common.h (see gguf.c). */
#include "gguf_tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/half.h"
#include "../core/qgroup.h"

static int is_dense(lmc_enc_id id) { return id == LMC_ENC_F16 || id == LMC_ENC_BF16 || id == LMC_ENC_F32; }

static lmc_ggml_type dense_type(lmc_enc_id id)
{
    return id == LMC_ENC_F16 ? LMC_GGML_F16 : id == LMC_ENC_BF16 ? LMC_GGML_BF16 : LMC_GGML_F32;
}

/* ------------------------------------------------------- qgroup rows */

typedef struct qview {
    const lmc_tensor *t;
    const lmc_encoding *e;
    lmc_qgroup_layout l;
    int64_t rows, cols, ng, g; /* g: columns per group */
} qview;

static void qview_init(qview *v, const lmc_tensor *t)
{
    v->t = t;
    v->e = &t->enc;
    v->rows = t->shape[0];
    v->cols = t->shape[1];
    lmc_qgroup_layout_of(v->e, v->rows, v->cols, &v->l);
    v->ng = v->l.ngroups;
    v->g = v->e->group > 0 ? v->e->group : v->cols;
}

/* Row r: codes [cols], the raw fp16 bits of its scales [ng], zeros [ng]. */
static void qrow(const qview *v, int64_t r, uint8_t *codes, uint16_t *sbits, uint8_t *zeros)
{
    const uint8_t *d = v->t->data;
    lmc_unpack_bits(d + v->l.off_codes + (size_t)r * v->l.code_row_bytes, v->cols, v->e->bits,
                    codes);
    memcpy(sbits, d + v->l.off_scales + (size_t)r * (size_t)v->ng * 2, (size_t)v->ng * 2);
    if (v->e->sym)
        memset(zeros, 1 << (v->e->bits - 1), (size_t)v->ng);
    else
        lmc_unpack_bits(d + v->l.off_zeros + (size_t)r * v->l.zero_row_bytes, v->ng, v->e->bits,
                        zeros);
}

/* Is m = -s * k an fp16 number? (s * k itself is exact in fp32.) */
static int min_exact(uint16_t sbits, int k, uint16_t *m)
{
    float p = -(lmc_f16_to_f32(sbits) * (float)k);
    uint16_t h = lmc_f32_to_f16(p);
    if (!isfinite(lmc_f16_to_f32(h)) || lmc_f16_to_f32(h) != p)
        return 0;
    *m = h;
    return 1;
}

/* The offset k of a group for d * (v + k) + m with 0 <= v + k <= xmax and m
 * = -s * k exact; the zero itself (x = q, the obvious layout) when it
 * qualifies. -1 when none does. */
static int pick_k(uint16_t sbits, int zero, int vmin, int vmax, int xmax, uint16_t *m)
{
    int lo = vmin < 0 ? -vmin : 0, hi = xmax - vmax;
    if (lo > hi)
        return -1;
    if (zero >= lo && zero <= hi && min_exact(sbits, zero, m))
        return zero;
    for (int k = lo; k <= hi; k++)
        if (min_exact(sbits, k, m))
            return k;
    return -1;
}

static void group_range(const uint8_t *codes, int64_t c0, int64_t c1, int zero, int *vmin,
                        int *vmax)
{
    int lo = 255, hi = -255;
    for (int64_t c = c0; c < c1; c++) {
        int v = (int)codes[c] - zero;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *vmin = lo;
    *vmax = hi;
}

static int qgroup_type(const lmc_tensor *t, lmc_ggml_type *type, char *why, size_t nwhy,
                       lmc_error *err)
{
    const lmc_encoding *e = &t->enc;
    int64_t cols = t->shape[1];
    if (e->group > 0 && e->group % 32 != 0) {
        snprintf(why, nwhy, "group size %d is not a multiple of ggml's 32-column blocks",
                 e->group);
        return 1;
    }
    if (cols % 32 != 0) {
        snprintf(why, nwhy, "%lld columns are not a multiple of ggml's 32-column blocks",
                 (long long)cols);
        return 1;
    }
    qview v;
    qview_init(&v, t);
    if (e->has_gidx) {
        const uint8_t *gp = t->data + v.l.off_gidx;
        for (int64_t c = 0; c < cols; c++) {
            int32_t gi;
            memcpy(&gi, gp + 4 * c, 4);
            if (gi != (int32_t)(c / v.g)) {
                snprintf(why, nwhy, "act-order g_idx (groups of non-consecutive columns), while "
                                    "a ggml block is 32 consecutive columns sharing one scale");
                return 1;
            }
        }
    }
    /* pass 1: the range of q - zero of every group (rows in parallel) */
    size_t ns = (size_t)(v.rows * v.ng);
    int16_t *lo = malloc(ns * sizeof *lo), *hi = malloc(ns * sizeof *hi);
    uint16_t *sball = malloc(ns * 2);
    uint8_t *zall = malloc(ns);
    int fail = !lo || !hi || !sball || !zall, bad_scale = 0;
#pragma omp parallel if (v.rows * cols > 65536)
    {
        uint8_t *codes = fail ? NULL : malloc((size_t)cols);
        if (!codes) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < v.rows; r++) {
            if (!codes)
                continue;
            uint16_t *sb = sball + r * v.ng;
            uint8_t *zr = zall + r * v.ng;
            qrow(&v, r, codes, sb, zr);
            for (int64_t k = 0; k < v.ng; k++) {
                if ((sb[k] & 0x7c00) == 0x7c00) {
#pragma omp atomic write
                    bad_scale = 1;
                }
                int64_t c1 = (k + 1) * v.g < cols ? (k + 1) * v.g : cols;
                int l, h;
                group_range(codes, k * v.g, c1, zr[k], &l, &h);
                lo[r * v.ng + k] = (int16_t)l;
                hi[r * v.ng + k] = (int16_t)h;
            }
        }
        free(codes);
    }
    int vmin = 255, vmax = -255, q41 = 1, q51 = 1;
    for (size_t k = 0; k < ns && !fail; k++) {
        vmin = lo[k] < vmin ? lo[k] : vmin;
        vmax = hi[k] > vmax ? hi[k] : vmax;
    }
    /* pass 2, only when Q4_0 does not hold it: an offset k per group */
    uint16_t m;
    if (!fail && !bad_scale && !(vmin >= -8 && vmax <= 7))
        for (size_t k = 0; k < ns && q41; k++)
            q41 = pick_k(sball[k], zall[k], lo[k], hi[k], 15, &m) >= 0;
    if (!fail && !bad_scale && !q41 && !(vmin >= -16 && vmax <= 15))
        for (size_t k = 0; k < ns && q51; k++)
            q51 = pick_k(sball[k], zall[k], lo[k], hi[k], 31, &m) >= 0;
    free(lo);
    free(hi);
    free(sball);
    free(zall);
    if (fail)
        return lmc_fail(err, "%s: out of memory", t->name);
    if (bad_scale)
        return lmc_fail(err, "%s: a scale is not finite (damaged tensor)", t->name);
    if (vmin >= -8 && vmax <= 7)
        *type = LMC_GGML_Q4_0;
    else if (q41)
        *type = LMC_GGML_Q4_1;
    else if (vmin >= -16 && vmax <= 15)
        *type = LMC_GGML_Q5_0;
    else if (q51)
        *type = LMC_GGML_Q5_1;
    else if (vmin >= -128 && vmax <= 127)
        *type = LMC_GGML_Q8_0;
    else {
        snprintf(why, nwhy, "asymmetric 8-bit codes with q - zero beyond Q8_0's int8 "
                            "(-128..127) in some group");
        return 1;
    }
    return 0;
}

int lmc_gguf_exact_type(const lmc_tensor *t, lmc_ggml_type *type, char *why, size_t nwhy,
                        lmc_error *err)
{
    lmc_enc_id id = t->enc.id;
    if (t->ndim == 1) {
        if (!is_dense(id)) {
            snprintf(why, nwhy, "a vector in encoding %d", (int)id);
            return 1;
        }
        *type = LMC_GGML_F32;
        return 0;
    }
    if (is_dense(id)) {
        *type = dense_type(id);
        return 0;
    }
    /* the encoding's class, not its parameters: one reason for many tensors */
    lmc_encodings_init();
    const lmc_enc_traits *tr = lmc_enc_get(id);
    const char *cls = tr ? tr->name : "unknown";
    switch (id) {
    case LMC_ENC_QGROUP: return qgroup_type(t, type, why, nwhy, err);
    case LMC_ENC_SPARSE:
    case LMC_ENC_NM:
        snprintf(why, nwhy, "%s weights: ggml has no sparse types (the pruned zeros would be "
                            "stored)",
                 cls);
        return 1;
    case LMC_ENC_LOWRANK:
        snprintf(why, nwhy, "%s weights: llama.cpp has no factor pairs", cls);
        return 1;
    case LMC_ENC_INT8_OUTLIER:
    case LMC_ENC_W8A8:
        snprintf(why, nwhy, "%s weights: llama.cpp does not quantize activations as lmc evaluates "
                            "them",
                 cls);
        return 1;
    default: snprintf(why, nwhy, "%s weights: no ggml type", cls); return 1;
    }
}

/* ---------------------------------------------------------- encoding */

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* One row of qgroup codes into ggml blocks of type. */
static int encode_qrow(const qview *v, lmc_ggml_type type, const uint8_t *codes,
                       const uint16_t *sb, const uint8_t *zeros, uint8_t *out)
{
    const size_t bb = lmc_ggml_block_bytes(type);
    int64_t nb = v->cols / 32;
    int64_t kg = -1; /* group of the cached k / m */
    int k = 0;
    uint16_t m = 0;
    for (int64_t b = 0; b < nb; b++) {
        int64_t c0 = b * 32, grp = c0 / v->g;
        int z = zeros[grp];
        uint8_t *o = out + (size_t)b * bb;
        int x[32];
        if ((type == LMC_GGML_Q4_1 || type == LMC_GGML_Q5_1) && grp != kg) {
            int64_t g1 = (grp + 1) * v->g < v->cols ? (grp + 1) * v->g : v->cols;
            int lo, hi;
            group_range(codes, grp * v->g, g1, z, &lo, &hi);
            k = pick_k(sb[grp], z, lo, hi, type == LMC_GGML_Q4_1 ? 15 : 31, &m);
            if (k < 0)
                return -1;
            kg = grp;
        }
        int off = type == LMC_GGML_Q4_0 ? 8 : type == LMC_GGML_Q5_0 ? 16 : type == LMC_GGML_Q8_0 ? 0 : k;
        for (int j = 0; j < 32; j++)
            x[j] = (int)codes[c0 + j] - z + off;
        put16(o, sb[grp]);
        switch (type) {
        case LMC_GGML_Q8_0:
            for (int j = 0; j < 32; j++)
                o[2 + j] = (uint8_t)(int8_t)x[j];
            break;
        case LMC_GGML_Q4_1:
            put16(o + 2, m);
            /* fall through */
        case LMC_GGML_Q4_0: {
            uint8_t *qs = o + (type == LMC_GGML_Q4_1 ? 4 : 2);
            for (int j = 0; j < 16; j++)
                qs[j] = (uint8_t)(x[j] | (x[j + 16] << 4));
            break;
        }
        case LMC_GGML_Q5_1:
            put16(o + 2, m);
            /* fall through */
        case LMC_GGML_Q5_0: {
            uint8_t *qh = o + (type == LMC_GGML_Q5_1 ? 4 : 2), *qs = qh + 4;
            uint32_t h = 0;
            for (int j = 0; j < 32; j++)
                h |= (uint32_t)((x[j] >> 4) & 1) << j;
            for (int j = 0; j < 4; j++)
                qh[j] = (uint8_t)(h >> (8 * j));
            for (int j = 0; j < 16; j++)
                qs[j] = (uint8_t)((x[j] & 15) | ((x[j + 16] & 15) << 4));
            break;
        }
        default: return -1;
        }
    }
    return 0;
}

static int encode_qgroup(const lmc_tensor *t, lmc_ggml_type type, const int64_t *rowmap,
                         uint8_t *dst, lmc_error *err)
{
    qview v;
    qview_init(&v, t);
    size_t rb = lmc_ggml_row_bytes(type, v.cols);
    int oom = 0;
    int64_t bad = -1;
#pragma omp parallel if (v.rows * v.cols > 65536)
    {
        uint8_t *codes = malloc((size_t)v.cols + (size_t)v.ng);
        uint16_t *sb = malloc((size_t)v.ng * 2);
        if (!codes || !sb) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < v.rows; i++) {
            if (!codes || !sb)
                continue;
            qrow(&v, rowmap ? rowmap[i] : i, codes, sb, codes + v.cols);
            if (encode_qrow(&v, type, codes, sb, codes + v.cols, dst + (size_t)i * rb) != 0) {
#pragma omp atomic write
                bad = i;
            }
        }
        free(codes);
        free(sb);
    }
    if (oom)
        return lmc_fail(err, "%s: out of memory", t->name);
    if (bad >= 0)
        return lmc_fail(err, "%s: internal error: row %lld does not fit %s", t->name,
                        (long long)bad, lmc_ggml_type_name(type));
    return 0;
}

/* Through to_f32 into a float type (vectors, dense type changes, --dequant). */
static int encode_float(const lmc_tensor *t, lmc_ggml_type type, const int64_t *rowmap,
                        uint8_t *dst, lmc_error *err)
{
    int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    if (t->ndim == 1) { /* a vector is one row */
        cols = rows;
        rows = 1;
    }
    size_t n = (size_t)rows * (size_t)cols;
    float *f = malloc(n * sizeof *f);
    if (!f)
        return lmc_fail(err, "%s: out of memory", t->name);
    lmc_encodings_init();
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    if (!tr || tr->to_f32(&t->enc, t->data, t->shape[0], t->ndim == 2 ? t->shape[1] : 1, f,
                          err) != 0) {
        free(f);
        return tr ? lmc_fail_prefix(err, t->name) : lmc_fail(err, "%s: unknown encoding", t->name);
    }
    size_t es = lmc_ggml_block_bytes(type);
    for (int64_t i = 0; i < rows; i++) {
        const float *s = f + (size_t)(rowmap ? rowmap[i] : i) * (size_t)cols;
        uint8_t *o = dst + (size_t)i * (size_t)cols * es;
        for (int64_t c = 0; c < cols; c++) {
            if (type == LMC_GGML_F32) {
                memcpy(o + 4 * c, &s[c], 4);
                continue;
            }
            uint16_t h = type == LMC_GGML_F16 ? lmc_f32_to_f16(s[c]) : lmc_f32_to_bf16(s[c]);
            float back = type == LMC_GGML_F16 ? lmc_f16_to_f32(h) : lmc_bf16_to_f32(h);
            if (isfinite(s[c]) && !isfinite(back)) {
                lmc_fail(err, "%s: value %g at row %lld does not fit in %s", t->name,
                         (double)s[c], (long long)i, lmc_ggml_type_name(type));
                free(f);
                return -1;
            }
            put16(o + 2 * c, h);
        }
    }
    free(f);
    return 0;
}

int lmc_gguf_encode(const lmc_tensor *t, lmc_ggml_type type, const int64_t *rowmap,
                    uint8_t *dst, lmc_error *err)
{
    if (t->ndim == 2 && is_dense(t->enc.id) && dense_type(t->enc.id) == type) {
        size_t rb = (size_t)t->shape[1] * lmc_ggml_block_bytes(type);
        for (int64_t i = 0; i < t->shape[0]; i++)
            memcpy(dst + (size_t)i * rb, t->data + (size_t)(rowmap ? rowmap[i] : i) * rb, rb);
        return 0;
    }
    if (type == LMC_GGML_F32 || type == LMC_GGML_F16 || type == LMC_GGML_BF16)
        return encode_float(t, type, rowmap, dst, err);
    if (t->enc.id != LMC_ENC_QGROUP || t->ndim != 2)
        return lmc_fail(err, "%s: internal error: no %s encoding for this tensor", t->name,
                        lmc_ggml_type_name(type));
    return encode_qgroup(t, type, rowmap, dst, err);
}
