/* core/enc_sparse.c, core/enc_nm.c: round trips, exact sizes, byte ratios,
 * effective MACs, malformed parameters and blobs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/encoding.h"
#include "../core/half.h"
#include "../core/qgroup.h"
#include "../core/sparse.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rndf(void) { return ((float)(rnd() % 20001) - 10000.0f) / 997.0f; }

static float *rand_matrix(int64_t rows, int64_t cols)
{
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++)
        w[i] = rndf();
    return w;
}

/* What a kept value must decode to. */
static float stored(int inner, float v)
{
    return inner == LMC_ENC_F16 ? lmc_f16_to_f32(lmc_f32_to_f16(v)) : v;
}

/* Decode through the table exactly as a reader would. */
static float *decode(const lmc_encoding *e, const uint8_t *blob, int64_t rows, int64_t cols)
{
    const lmc_enc_traits *t = lmc_enc_get(e->id);
    ck_assert_ptr_nonnull(t);
    lmc_error err;
    ck_assert_msg(t->validate(e, rows, cols, &err) == 0, "%s", err.msg);
    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    ck_assert_msg(t->to_f32(e, blob, rows, cols, out, &err) == 0, "%s", err.msg);
    return out;
}

static const int64_t shapes[][2] = {{1, 1}, {3, 5}, {7, 13}, {16, 24}, {5, 64}, {33, 17}, {2, 1000}};
static const int inners[] = {LMC_ENC_F16, LMC_ENC_F32};

START_TEST(sparse_roundtrip)
{
    const int dens[] = {0, 10, 50, 90, 100}; /* percent kept */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t d = 0; d < 5; d++)
            for (int ii = 0; ii < 2; ii++) {
                int64_t rows = shapes[s][0], cols = shapes[s][1], total = rows * cols;
                float *w = rand_matrix(rows, cols);
                uint8_t *keep = malloc((size_t)total), *back = malloc((size_t)total);
                int64_t nnz = 0;
                for (int64_t i = 0; i < total; i++)
                    nnz += keep[i] = (int)(rnd() % 100) < dens[d];
                lmc_encoding e;
                uint8_t *blob;
                size_t nb;
                lmc_error err;
                ck_assert_msg(lmc_sparse_encode(w, keep, rows, cols, inners[ii], &e, &blob, &nb,
                                                &err) == 0, "%s", err.msg);
                ck_assert_int_eq(e.id, LMC_ENC_SPARSE);
                ck_assert_int_eq(e.inner, inners[ii]);
                ck_assert_int_eq(e.nnz, nnz);
                /* exact size: mask bits rounded up to bytes, then to 4, then values */
                size_t mb = (size_t)(total + 7) / 8;
                size_t want = (mb + 3) / 4 * 4 + (size_t)nnz * (inners[ii] == LMC_ENC_F16 ? 2 : 4);
                ck_assert_uint_eq(nb, want);
                ck_assert_uint_eq(lmc_enc_get(LMC_ENC_SPARSE)->nbytes(&e, rows, cols), want);
                float *out = decode(&e, blob, rows, cols);
                for (int64_t i = 0; i < total; i++)
                    ck_assert_msg(out[i] == (keep[i] ? stored(inners[ii], w[i]) : 0.0f),
                                  "[%lld,%lld] at %lld", (long long)rows, (long long)cols,
                                  (long long)i);
                ck_assert_int_eq(lmc_sparse_mask(&e, blob, rows, cols, back, &err), 0);
                ck_assert_mem_eq(back, keep, (size_t)total);
                ck_assert_int_eq(lmc_enc_get(LMC_ENC_SPARSE)->effective_macs(&e, blob, rows, cols),
                                 nnz);
                free(out);
                free(blob);
                free(keep);
                free(back);
                free(w);
            }
}
END_TEST

/* A keep mask with exactly n (or, when short, fewer) kept per group. */
static void nm_mask(uint8_t *keep, int64_t rows, int64_t cols, int n, int m, int short_groups)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += m) {
            uint8_t *k = keep + r * cols + c0;
            memset(k, 0, (size_t)m);
            int want = short_groups ? (int)(rnd() % (unsigned)(n + 1)) : n;
            for (int got = 0; got < want;) {
                int j = (int)(rnd() % (unsigned)m);
                if (!k[j]) {
                    k[j] = 1;
                    got++;
                }
            }
        }
}

START_TEST(nm_roundtrip)
{
    const int nms[][2] = {{2, 4}, {4, 8}, {1, 2}, {1, 4}, {3, 8}, {5, 16}, {2, 3}};
    const int64_t nshapes[][2] = {{1, 16}, {3, 48}, {7, 96}, {16, 240}, {5, 528}};
    for (size_t q = 0; q < sizeof nms / sizeof nms[0]; q++)
        for (size_t s = 0; s < sizeof nshapes / sizeof nshapes[0]; s++)
            for (int ii = 0; ii < 2; ii++)
                for (int sh = 0; sh < 2; sh++) {
                    int n = nms[q][0], m = nms[q][1];
                    int64_t rows = nshapes[s][0], cols = nshapes[s][1], total = rows * cols;
                    if (cols % m)
                        continue;
                    float *w = rand_matrix(rows, cols);
                    uint8_t *keep = malloc((size_t)total), *back = malloc((size_t)total);
                    nm_mask(keep, rows, cols, n, m, sh);
                    lmc_encoding e;
                    uint8_t *blob;
                    size_t nb;
                    lmc_error err;
                    ck_assert_msg(lmc_nm_encode(w, keep, rows, cols, n, m, inners[ii], &e, &blob,
                                                &nb, &err) == 0, "%s", err.msg);
                    ck_assert_int_eq(e.id, LMC_ENC_NM);
                    ck_assert_int_eq(e.n, n);
                    ck_assert_int_eq(e.m, m);
                    int64_t K = cols / m * n;
                    int ib = m <= 2 ? 1 : m <= 4 ? 2 : m <= 8 ? 3 : 4;
                    ck_assert_int_eq(lmc_nm_index_bits(m), ib);
                    size_t irow = (size_t)(K * ib + 7) / 8;
                    size_t want = ((size_t)rows * irow + 3) / 4 * 4 +
                                  (size_t)(rows * K) * (inners[ii] == LMC_ENC_F16 ? 2 : 4);
                    ck_assert_uint_eq(nb, want);
                    ck_assert_uint_eq(lmc_enc_get(LMC_ENC_NM)->nbytes(&e, rows, cols), want);
                    float *out = decode(&e, blob, rows, cols);
                    for (int64_t i = 0; i < total; i++)
                        ck_assert(out[i] == (keep[i] ? stored(inners[ii], w[i]) : 0.0f));
                    /* the stored positions: every kept one, exactly n per group */
                    ck_assert_int_eq(lmc_sparse_mask(&e, blob, rows, cols, back, &err), 0);
                    for (int64_t g = 0; g < total; g += m) {
                        int cnt = 0;
                        for (int j = 0; j < m; j++) {
                            cnt += back[g + j];
                            if (keep[g + j])
                                ck_assert(back[g + j]);
                        }
                        ck_assert_int_eq(cnt, n);
                    }
                    ck_assert_int_eq(
                        lmc_enc_get(LMC_ENC_NM)->effective_macs(&e, blob, rows, cols), rows * K);
                    ck_assert_int_eq(rows * cols * n / m, rows * K);
                    free(out);
                    free(blob);
                    free(keep);
                    free(back);
                    free(w);
                }
}
END_TEST

static double ratio_sparse(int64_t rows, int64_t cols, double kept_frac, int inner)
{
    int64_t total = rows * cols;
    float *w = rand_matrix(rows, cols);
    uint8_t *keep = calloc((size_t)total, 1);
    for (int64_t i = 0; i < (int64_t)(total * kept_frac); i++)
        keep[(i * 7919) % total] = 1; /* 7919 prime: a permutation for these shapes */
    lmc_encoding e;
    uint8_t *blob;
    size_t nb;
    lmc_error err;
    ck_assert_int_eq(lmc_sparse_encode(w, keep, rows, cols, inner, &e, &blob, &nb, &err), 0);
    ck_assert_int_eq(e.nnz, (int64_t)(total * kept_frac));
    free(w);
    free(keep);
    free(blob);
    return (double)nb / (double)(2 * total);
}

static double ratio_nm(int64_t rows, int64_t cols, int n, int m, int inner)
{
    int64_t total = rows * cols;
    float *w = rand_matrix(rows, cols);
    uint8_t *keep = malloc((size_t)total);
    nm_mask(keep, rows, cols, n, m, 0);
    lmc_encoding e;
    uint8_t *blob;
    size_t nb;
    lmc_error err;
    ck_assert_int_eq(lmc_nm_encode(w, keep, rows, cols, n, m, inner, &e, &blob, &nb, &err), 0);
    free(w);
    free(keep);
    free(blob);
    return (double)nb / (double)(2 * total);
}

START_TEST(byte_ratios)
{
    /* shapes of llama-s (q [256,256], down [256,688]) and an odd one */
    double s50 = ratio_sparse(256, 256, 0.5, LMC_ENC_F16);
    double s50d = ratio_sparse(256, 688, 0.5, LMC_ENC_F16);
    double s50o = ratio_sparse(33, 17, 0.5, LMC_ENC_F16);
    double nm24 = ratio_nm(256, 688, 2, 4, LMC_ENC_F16);
    double nm48 = ratio_nm(256, 256, 4, 8, LMC_ENC_F16);
    double s50f32 = ratio_sparse(256, 256, 0.5, LMC_ENC_F32);
    printf("bytes / dense f16: sparse 50%% f16 [256,256] %.4f, [256,688] %.4f, [33,17] %.4f; "
           "2:4 f16 %.4f; 4:8 f16 %.4f; sparse 50%% f32 %.4f\n",
           s50, s50d, s50o, nm24, nm48, s50f32);
    ck_assert(s50 <= 0.6 && s50d <= 0.6);
    ck_assert(fabs(s50 - 0.5625) < 1e-3); /* 1 mask bit + 8 value bits of 16 */
    ck_assert(s50o <= 0.6);
    ck_assert(nm24 <= 0.6 && fabs(nm24 - 0.5625) < 1e-9);
    ck_assert(nm48 <= 0.6 && fabs(nm48 - 9.5 / 16) < 1e-9);
    ck_assert(fabs(s50f32 - 17.0 / 16) < 1e-3);
}
END_TEST

START_TEST(table_and_describe)
{
    ck_assert_ptr_eq(lmc_enc_by_name("sparse"), lmc_enc_get(LMC_ENC_SPARSE));
    ck_assert_ptr_eq(lmc_enc_by_name("nm"), lmc_enc_get(LMC_ENC_NM));
    ck_assert_ptr_nonnull(lmc_enc_get(LMC_ENC_NM));
    lmc_encoding e = {0};
    e.id = LMC_ENC_NM;
    e.n = 2;
    e.m = 4;
    char buf[64];
    e.inner = LMC_ENC_F16;
    lmc_enc_describe(&e, buf, sizeof buf);
    ck_assert_msg(strncmp(buf, "nm 2:4", 6) == 0, "%s", buf);
}
END_TEST

static void expect_invalid(lmc_encoding e, int64_t rows, int64_t cols, const char *needle)
{
    lmc_error err = {{0}};
    ck_assert_int_eq(lmc_enc_get(e.id)->validate(&e, rows, cols, &err), -1);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "'%s' lacks '%s'", err.msg, needle);
}

START_TEST(malformed_params)
{
    lmc_encoding s = {0};
    s.id = LMC_ENC_SPARSE;
    s.inner = LMC_ENC_F16;
    s.nnz = 16;
    lmc_error err;
    ck_assert_int_eq(lmc_enc_get(LMC_ENC_SPARSE)->validate(&s, 4, 4, &err), 0);
    s.nnz = 17;
    expect_invalid(s, 4, 4, "nnz 17");
    s.nnz = -1;
    expect_invalid(s, 4, 4, "nnz -1");
    s.nnz = 0;
    expect_invalid(s, 0, 4, "empty");
    s.inner = LMC_ENC_QGROUP; /* bits 0 */
    expect_invalid(s, 4, 4, "inner qgroup bits 0");
    s.bits = 4;
    s.group = 0;
    expect_invalid(s, 4, 4, "group size 0");
    s.group = -1;
    ck_assert_int_eq(lmc_enc_get(LMC_ENC_SPARSE)->validate(&s, 4, 4, &err), 0);
    s.sym = 2;
    expect_invalid(s, 4, 4, "must be 0 or 1");
    s.sym = 0;
    s.bits = 9;
    expect_invalid(s, 4, 4, "bits 9");
    s.bits = 0;
    s.inner = LMC_ENC_BF16;
    expect_invalid(s, 4, 4, "not supported");
    s.inner = 77;
    expect_invalid(s, 4, 4, "not supported");

    lmc_encoding nm = {0};
    nm.id = LMC_ENC_NM;
    nm.inner = LMC_ENC_F32;
    nm.n = 2;
    nm.m = 4;
    ck_assert_int_eq(lmc_enc_get(LMC_ENC_NM)->validate(&nm, 3, 8, &err), 0);
    expect_invalid(nm, 3, 10, "does not divide the input width 10");
    nm.n = 4;
    expect_invalid(nm, 3, 8, "N < M");
    nm.n = 0;
    expect_invalid(nm, 3, 8, "N < M");
    nm.n = 2;
    nm.m = 1;
    expect_invalid(nm, 3, 8, "M = 1");
    nm.m = 512;
    expect_invalid(nm, 3, 512, "M = 512");
    nm.m = 4;
    nm.nnz = 5; /* 3 rows x 2 groups x 2 = 12 */
    expect_invalid(nm, 3, 8, "nnz 5");
    nm.nnz = 12;
    ck_assert_int_eq(lmc_enc_get(LMC_ENC_NM)->validate(&nm, 3, 8, &err), 0);
    nm.inner = LMC_ENC_QGROUP;
    nm.bits = 4;
    nm.group = 8;
    ck_assert_int_eq(lmc_enc_get(LMC_ENC_NM)->validate(&nm, 3, 8, &err), 0);
    nm.group = -1;
    ck_assert_int_eq(lmc_enc_get(LMC_ENC_NM)->validate(&nm, 3, 8, &err), 0);
    nm.group = 6; /* not a multiple of M = 4 */
    expect_invalid(nm, 3, 8, "multiple of M = 4");
    nm.group = 8;
    nm.has_gidx = 1; /* act-order groups cannot be compacted */
    expect_invalid(nm, 3, 8, "no g_idx");
}
END_TEST

START_TEST(malformed_blobs)
{
    float w[24];
    uint8_t keep[24];
    for (int i = 0; i < 24; i++) {
        w[i] = (float)(i + 1);
        keep[i] = i % 3 == 0;
    }
    lmc_encoding e;
    uint8_t *blob;
    size_t nb;
    lmc_error err;
    float out[24];
    /* [4, 5]: 20 mask bits, 4 padding bits in byte 2 */
    ck_assert_int_eq(lmc_sparse_encode(w, keep, 4, 5, LMC_ENC_F16, &e, &blob, &nb, &err), 0);
    const lmc_enc_traits *st = lmc_enc_get(LMC_ENC_SPARSE);
    ck_assert_int_eq(st->to_f32(&e, blob, 4, 5, out, &err), 0);
    e.nnz++; /* mask and nnz disagree: would over-read the values */
    ck_assert_int_eq(st->to_f32(&e, blob, 4, 5, out, &err), -1);
    ck_assert(strstr(err.msg, "bits set but nnz") != NULL);
    e.nnz--;
    blob[2] |= 0x80; /* a padding bit */
    ck_assert_int_eq(st->to_f32(&e, blob, 4, 5, out, &err), -1);
    ck_assert(strstr(err.msg, "padding") != NULL);
    blob[2] &= 0x7f;
    blob[3] = 1; /* padding byte before the values */
    ck_assert_int_eq(st->to_f32(&e, blob, 4, 5, out, &err), -1);
    ck_assert_int_eq(lmc_sparse_mask(&e, blob, 4, 5, keep, &err), -1);
    free(blob);

    /* 2:4 of [2, 8]: row index bytes = 2 groups x 2 x 2 bits = 1 byte */
    for (int i = 0; i < 16; i++)
        keep[i] = i % 4 < 2;
    ck_assert_int_eq(lmc_nm_encode(w, keep, 2, 8, 2, 4, LMC_ENC_F32, &e, &blob, &nb, &err), 0);
    const lmc_enc_traits *nt = lmc_enc_get(LMC_ENC_NM);
    ck_assert_int_eq(nt->to_f32(&e, blob, 2, 8, out, &err), 0);
    ck_assert(out[0] == 1 && out[1] == 2 && out[2] == 0 && out[3] == 0);
    uint8_t save = blob[0];
    blob[0] = (uint8_t)((save & 0xf0) | 0x1 | (0x1 << 2)); /* group 0 indices 1, 1 */
    ck_assert_int_eq(nt->to_f32(&e, blob, 2, 8, out, &err), -1);
    ck_assert(strstr(err.msg, "row 0 group 0") && strstr(err.msg, "ascending"));
    ck_assert_int_eq(lmc_sparse_mask(&e, blob, 2, 8, keep, &err), -1);
    blob[0] = save;
    blob[2] = 1; /* padding byte after the 2 index bytes */
    ck_assert_int_eq(nt->to_f32(&e, blob, 2, 8, out, &err), -1);
    free(blob);

    /* 1:3 of [1, 6]: 2-bit indices can hold 3, which is out of range */
    for (int i = 0; i < 6; i++)
        keep[i] = i % 3 == 0;
    ck_assert_int_eq(lmc_nm_encode(w, keep, 1, 6, 1, 3, LMC_ENC_F16, &e, &blob, &nb, &err), 0);
    blob[0] |= 3;
    ck_assert_int_eq(nt->to_f32(&e, blob, 1, 6, out, &err), -1);
    ck_assert(strstr(err.msg, "out of range") != NULL);
    blob[0] &= (uint8_t)~3;
    blob[0] |= 0x10; /* padding bit after 2 indices x 2 bits */
    ck_assert_int_eq(nt->to_f32(&e, blob, 1, 6, out, &err), -1);
    ck_assert(strstr(err.msg, "padding") != NULL);
    free(blob);

    /* a mask that is not a dense encoding's business */
    lmc_encoding d = lmc_enc_dense(LMC_ENC_F16);
    ck_assert_int_eq(lmc_sparse_mask(&d, (const uint8_t *)w, 1, 1, keep, &err), -1);
    ck_assert(strstr(err.msg, "f16") != NULL);
}
END_TEST

START_TEST(encode_errors)
{
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t keep[8] = {1, 1, 1, 0, 1, 0, 0, 0};
    lmc_encoding e;
    uint8_t *blob = NULL;
    size_t nb;
    lmc_error err;
    /* 3 kept in a group of 4 for 2:4 */
    ck_assert_int_eq(lmc_nm_encode(w, keep, 1, 8, 2, 4, LMC_ENC_F16, &e, &blob, &nb, &err), -1);
    ck_assert_msg(strstr(err.msg, "columns 0..3 keep 3") != NULL, "%s", err.msg);
    /* f16 overflow is refused, f32 takes it */
    w[4] = 1e6f;
    ck_assert_int_eq(lmc_sparse_encode(w, keep, 1, 8, LMC_ENC_F16, &e, &blob, &nb, &err), -1);
    ck_assert_msg(strstr(err.msg, "[0, 4]") && strstr(err.msg, "overflows f16"), "%s", err.msg);
    ck_assert_int_eq(lmc_sparse_encode(w, keep, 1, 8, LMC_ENC_F32, &e, &blob, &nb, &err), 0);
    free(blob);
    ck_assert_int_eq(lmc_sparse_encode(w, keep, 1, 8, LMC_ENC_QGROUP, &e, &blob, &nb, &err), -1);
    ck_assert_msg(strstr(err.msg, "quantized codes") != NULL, "%s", err.msg);
    ck_assert_int_eq(lmc_nm_encode(w, keep, 1, 8, 2, 4, LMC_ENC_QGROUP, &e, &blob, &nb, &err), -1);
    ck_assert_msg(strstr(err.msg, "quantized codes") != NULL, "%s", err.msg);
    ck_assert_int_eq(lmc_nm_encode(w, keep, 1, 8, 2, 3, LMC_ENC_F16, &e, &blob, &nb, &err), -1);
    ck_assert(strstr(err.msg, "does not divide") != NULL);
}
END_TEST

/* ---- inner QGROUP ---- */

/* Random quantized values of a [rows][cols] matrix with the parameters of
 * e (bits, group, sym, has_gidx); arrays owned by the caller (free_qv). */
static lmc_sparse_qvals rand_qvals(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    lmc_sparse_qvals q = {e->bits, e->group, e->sym, e->has_gidx, NULL, NULL, NULL, NULL};
    int64_t ng = lmc_qgroup_ngroups(e, cols);
    uint8_t *codes = malloc((size_t)(rows * cols));
    float *scales = malloc((size_t)(rows * ng) * sizeof *scales);
    uint8_t *zeros = malloc((size_t)(rows * ng));
    int32_t *gidx = malloc((size_t)cols * sizeof *gidx);
    unsigned levels = 1u << e->bits;
    for (int64_t i = 0; i < rows * cols; i++)
        codes[i] = (uint8_t)(rnd() % levels);
    for (int64_t i = 0; i < rows * ng; i++) {
        scales[i] = lmc_f16_to_f32(lmc_f32_to_f16(0.001f + (float)(rnd() % 1000) / 3000.0f));
        zeros[i] = (uint8_t)(rnd() % levels);
    }
    for (int64_t c = 0; c < cols; c++)
        gidx[c] = e->has_gidx ? (int32_t)(rnd() % (unsigned)ng)
                              : (int32_t)(e->group > 0 ? c / e->group : 0);
    q.codes = codes;
    q.scales = scales;
    q.zeros = e->sym && (rnd() & 1) ? NULL : zeros; /* sym: zeros may be NULL */
    q.g_idx = gidx;
    free(q.zeros ? NULL : zeros);
    return q;
}

static void free_qv(lmc_sparse_qvals *q)
{
    free((void *)q->codes);
    free((void *)q->scales);
    free((void *)q->zeros);
    free((void *)q->g_idx);
}

/* What a kept position decodes to: the dense QGROUP expression. */
static float qexpect(const lmc_sparse_qvals *q, int64_t ng, int64_t cols, int64_t r, int64_t c)
{
    int32_t g = q->g_idx[c];
    int z = q->sym ? 1 << (q->bits - 1) : q->zeros[r * ng + g];
    return lmc_qgroup_dequant(q->scales[r * ng + g], q->codes[r * cols + c], z);
}

static size_t a4(size_t n) { return (n + 3) / 4 * 4; }

/* Section sizes of a dense QGROUP blob of [rows][cols], computed here from
 * the layout rules (not through lmc_qgroup_layout_of). */
static size_t qgroup_bytes(int bits, int64_t group, int sym, int64_t rows, int64_t cols)
{
    int64_t ng = group > 0 ? (cols + group - 1) / group : 1;
    return a4((size_t)rows * (size_t)((cols * bits + 7) / 8)) + a4((size_t)(rows * ng) * 2) +
           (sym ? 0 : a4((size_t)rows * (size_t)((ng * bits + 7) / 8)));
}

START_TEST(sparse_q_roundtrip)
{
    const int bitss[] = {2, 3, 4, 5, 8};
    const int64_t qshapes[][2] = {{1, 1}, {3, 5}, {7, 13}, {16, 24}, {5, 300}, {2, 688}};
    const int groups[] = {-1, 1, 4, 5, 128};
    const int dens[] = {0, 30, 50, 100};
    int cases = 0;
    for (size_t s = 0; s < sizeof qshapes / sizeof qshapes[0]; s++)
        for (size_t b = 0; b < sizeof bitss / sizeof bitss[0]; b++)
            for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
                for (int variant = 0; variant < 3; variant++) {
                    int64_t rows = qshapes[s][0], cols = qshapes[s][1], total = rows * cols;
                    lmc_encoding p = {0};
                    p.bits = bitss[b];
                    p.group = groups[g];
                    p.sym = variant == 1;
                    p.has_gidx = variant == 2 && p.group > 0;
                    lmc_sparse_qvals q = rand_qvals(&p, rows, cols);
                    int64_t ng = lmc_qgroup_ngroups(&p, cols);
                    uint8_t *keep = malloc((size_t)total), *back = malloc((size_t)total);
                    int64_t nnz = 0;
                    int dn = dens[(s + b + g + (size_t)variant) % 4];
                    for (int64_t i = 0; i < total; i++)
                        nnz += keep[i] = (int)(rnd() % 100) < dn;
                    lmc_encoding e;
                    uint8_t *blob;
                    size_t nb;
                    lmc_error err;
                    ck_assert_msg(lmc_sparse_encode_q(&q, keep, rows, cols, &e, &blob, &nb, &err)
                                      == 0, "%s", err.msg);
                    ck_assert_int_eq(e.id, LMC_ENC_SPARSE);
                    ck_assert_int_eq(e.inner, LMC_ENC_QGROUP);
                    ck_assert_int_eq(e.nnz, nnz);
                    ck_assert_int_eq(e.bits, p.bits);
                    ck_assert_int_eq(e.group, p.group);
                    ck_assert_int_eq(e.sym, p.sym);
                    ck_assert_int_eq(e.has_gidx, p.has_gidx);
                    size_t want = a4((size_t)(total + 7) / 8) + a4((size_t)(nnz * p.bits + 7) / 8) +
                                  a4((size_t)(rows * ng) * 2) +
                                  (p.sym ? 0 : a4((size_t)rows * (size_t)((ng * p.bits + 7) / 8))) +
                                  (p.has_gidx ? (size_t)cols * 4 : 0);
                    ck_assert_uint_eq(nb, want);
                    ck_assert_uint_eq(lmc_enc_get(LMC_ENC_SPARSE)->nbytes(&e, rows, cols), want);
                    float *out = decode(&e, blob, rows, cols);
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t c = 0; c < cols; c++) {
                            float x = out[r * cols + c];
                            if (keep[r * cols + c])
                                ck_assert_msg(x == qexpect(&q, ng, cols, r, c),
                                              "w%d g%d [%lld,%lld] at (%lld,%lld)", p.bits,
                                              p.group, (long long)rows, (long long)cols,
                                              (long long)r, (long long)c);
                            else
                                ck_assert(x == 0.0f && !signbit(x));
                        }
                    ck_assert_int_eq(lmc_sparse_mask(&e, blob, rows, cols, back, &err), 0);
                    ck_assert_mem_eq(back, keep, (size_t)total);
                    ck_assert_int_eq(
                        lmc_enc_get(LMC_ENC_SPARSE)->effective_macs(&e, blob, rows, cols), nnz);
                    cases++;
                    free(out);
                    free(blob);
                    free(keep);
                    free(back);
                    free_qv(&q);
                }
    ck_assert_int_gt(cases, 400);
}
END_TEST

START_TEST(nm_q_roundtrip)
{
    const int nms[][2] = {{2, 4}, {4, 8}, {1, 4}, {3, 8}, {1, 2}};
    /* 688 = 5 x 128 + 48: a short last group for g128; 40 = 32 + 8 */
    const int64_t nshapes[][2] = {{1, 16}, {3, 40}, {6, 96}, {4, 688}};
    const int groups[] = {-1, 8, 16, 32, 128};
    const int bitss[] = {2, 3, 4, 8};
    int cases = 0;
    for (size_t a = 0; a < sizeof nms / sizeof nms[0]; a++)
        for (size_t s = 0; s < sizeof nshapes / sizeof nshapes[0]; s++)
            for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
                for (int variant = 0; variant < 4; variant++) {
                    int n = nms[a][0], m = nms[a][1];
                    int64_t rows = nshapes[s][0], cols = nshapes[s][1], total = rows * cols;
                    if (cols % m || (groups[g] > 0 && groups[g] % m))
                        continue;
                    lmc_encoding p = {0};
                    p.bits = bitss[(a + s + g + (size_t)variant) % 4];
                    p.group = groups[g];
                    p.sym = variant & 1;
                    ck_assert(lmc_nm_qgroup_ok(p.group, 0, m));
                    lmc_sparse_qvals q = rand_qvals(&p, rows, cols);
                    int64_t ng = lmc_qgroup_ngroups(&p, cols);
                    uint8_t *keep = malloc((size_t)total), *back = malloc((size_t)total);
                    nm_mask(keep, rows, cols, n, m, variant >= 2); /* short groups: padding */
                    lmc_encoding e;
                    uint8_t *blob;
                    size_t nb;
                    lmc_error err;
                    ck_assert_msg(lmc_nm_encode_q(&q, keep, rows, cols, n, m, &e, &blob, &nb,
                                                  &err) == 0, "%s", err.msg);
                    ck_assert_int_eq(e.id, LMC_ENC_NM);
                    ck_assert_int_eq(e.inner, LMC_ENC_QGROUP);
                    ck_assert_int_eq(e.group, p.group);
                    int64_t K = cols / m * n;
                    ck_assert_int_eq(e.nnz, rows * K);
                    int ib = lmc_nm_index_bits(m);
                    size_t want = a4((size_t)rows * (size_t)((K * ib + 7) / 8)) +
                                  qgroup_bytes(p.bits, p.group > 0 ? p.group / m * n : -1, p.sym,
                                               rows, K);
                    ck_assert_uint_eq(nb, want);
                    ck_assert_uint_eq(lmc_enc_get(LMC_ENC_NM)->nbytes(&e, rows, cols), want);
                    float *out = decode(&e, blob, rows, cols);
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t c = 0; c < cols; c++) {
                            float x = out[r * cols + c];
                            if (keep[r * cols + c])
                                ck_assert_msg(x == qexpect(&q, ng, cols, r, c),
                                              "%d:%d w%d g%d [%lld,%lld] at (%lld,%lld)", n, m,
                                              p.bits, p.group, (long long)rows, (long long)cols,
                                              (long long)r, (long long)c);
                            else /* pruned, or a padding position: exactly 0 */
                                ck_assert(x == 0.0f && !signbit(x));
                        }
                    ck_assert_int_eq(lmc_sparse_mask(&e, blob, rows, cols, back, &err), 0);
                    for (int64_t i = 0; i < total; i++)
                        if (keep[i])
                            ck_assert(back[i]);
                    cases++;
                    free(out);
                    free(blob);
                    free(keep);
                    free(back);
                    free_qv(&q);
                }
    ck_assert_int_gt(cases, 100);
}
END_TEST

START_TEST(q_errors_and_ratios)
{
    lmc_error err;
    lmc_encoding p = {0};
    p.bits = 4;
    p.group = 6;
    lmc_sparse_qvals q = rand_qvals(&p, 2, 24);
    uint8_t keep[48];
    for (int i = 0; i < 48; i++)
        keep[i] = i % 4 < 2;
    lmc_encoding e;
    uint8_t *blob = NULL;
    size_t nb;
    /* group 6 is not a multiple of M = 4: no N:M layout, the bitmask works */
    ck_assert(!lmc_nm_qgroup_ok(6, 0, 4) && lmc_nm_qgroup_ok(8, 0, 4) &&
              !lmc_nm_qgroup_ok(8, 1, 4) && lmc_nm_qgroup_ok(-1, 0, 4));
    ck_assert_int_eq(lmc_nm_encode_q(&q, keep, 2, 24, 2, 4, &e, &blob, &nb, &err), -1);
    ck_assert_msg(strstr(err.msg, "multiple of M = 4") != NULL, "%s", err.msg);
    ck_assert_int_eq(lmc_sparse_encode_q(&q, keep, 2, 24, &e, &blob, &nb, &err), 0);
    const lmc_enc_traits *st = lmc_enc_get(LMC_ENC_SPARSE);
    float out[48];
    ck_assert_int_eq(st->to_f32(&e, blob, 2, 24, out, &err), 0);
    /* 24 kept x 4 bits = 12 code bytes at offset 8, then scales at 20 */
    size_t off_scales = 20;
    uint16_t inf = 0x7c00;
    uint8_t save[2];
    memcpy(save, blob + off_scales, 2);
    memcpy(blob + off_scales, &inf, 2);
    ck_assert_int_eq(st->to_f32(&e, blob, 2, 24, out, &err), -1);
    ck_assert_msg(strstr(err.msg, "not finite") != NULL, "%s", err.msg);
    memcpy(blob + off_scales, save, 2);
    /* zeros: 4 groups x 4 bits = 2 bytes per row at 20 + 16 = 36..39; nb 40 */
    ck_assert_uint_eq(nb, 40);
    blob[6] = 1; /* padding between mask (6 bytes) and codes (offset 8) */
    ck_assert_int_eq(st->to_f32(&e, blob, 2, 24, out, &err), -1);
    ck_assert(strstr(err.msg, "padding") != NULL);
    free(blob);
    /* a code or zero that does not fit the bits */
    ((uint8_t *)q.codes)[0] = 16;
    ck_assert_int_eq(lmc_sparse_encode_q(&q, keep, 2, 24, &e, &blob, &nb, &err), -1);
    ck_assert_msg(strstr(err.msg, "does not fit 4 bits") != NULL, "%s", err.msg);
    free_qv(&q);

    /* g_idx out of range is refused on encode and on decode */
    p.group = 8;
    p.has_gidx = 1;
    q = rand_qvals(&p, 2, 24);
    ((int32_t *)q.g_idx)[5] = 3;
    ck_assert_int_eq(lmc_sparse_encode_q(&q, keep, 2, 24, &e, &blob, &nb, &err), -1);
    ck_assert_msg(strstr(err.msg, "g_idx[5] = 3") != NULL, "%s", err.msg);
    ((int32_t *)q.g_idx)[5] = 2;
    ck_assert_int_eq(lmc_sparse_encode_q(&q, keep, 2, 24, &e, &blob, &nb, &err), 0);
    int32_t bad = 7;
    memcpy(blob + nb - 4, &bad, 4);
    ck_assert_int_eq(st->to_f32(&e, blob, 2, 24, out, &err), -1);
    ck_assert_msg(strstr(err.msg, "g_idx[23] = 7") != NULL, "%s", err.msg);
    free(blob);
    /* act-order groups cannot be laid out as N:M */
    ck_assert_int_eq(lmc_nm_encode_q(&q, keep, 2, 24, 2, 4, &e, &blob, &nb, &err), -1);
    ck_assert_msg(strstr(err.msg, "no g_idx") != NULL, "%s", err.msg);
    free_qv(&q);

    /* bits per weight of llama-s's down [256, 688] at 50%, 4-bit g128 asym */
    p.has_gidx = 0;
    p.group = 128;
    int64_t rows = 256, cols = 688, total = rows * cols;
    q = rand_qvals(&p, rows, cols);
    uint8_t *k = malloc((size_t)total);
    nm_mask(k, rows, cols, 2, 4, 0);
    ck_assert_int_eq(lmc_sparse_encode_q(&q, k, rows, cols, &e, &blob, &nb, &err), 0);
    double bpw_sparse = 8.0 * (double)nb / (double)total;
    free(blob);
    ck_assert_int_eq(lmc_nm_encode_q(&q, k, rows, cols, 2, 4, &e, &blob, &nb, &err), 0);
    double bpw_nm = 8.0 * (double)nb / (double)total;
    free(blob);
    /* 1 + 0.5 x 4 + 6 groups x (16 + 4) bits / 688 */
    double want = 1 + 2 + 6 * 20.0 / 688;
    printf("50%% w4 g128 [256,688]: sparse %.4f, 2:4 %.4f bits/weight (model %.4f)\n",
           bpw_sparse, bpw_nm, want);
    ck_assert(fabs(bpw_sparse - want) < 0.01 && fabs(bpw_nm - want) < 0.01);
    free(k);
    free_qv(&q);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sparse");
    TCase *tc = tcase_create("sparse");
    tcase_add_test(tc, sparse_roundtrip);
    tcase_add_test(tc, nm_roundtrip);
    tcase_add_test(tc, byte_ratios);
    tcase_add_test(tc, table_and_describe);
    tcase_add_test(tc, malformed_params);
    tcase_add_test(tc, malformed_blobs);
    tcase_add_test(tc, encode_errors);
    tcase_add_test(tc, sparse_q_roundtrip);
    tcase_add_test(tc, nm_q_roundtrip);
    tcase_add_test(tc, q_errors_and_ratios);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
