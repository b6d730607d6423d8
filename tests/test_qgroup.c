/* The min/max quantizer, LMC_ENC_QGROUP packing and decoding, RTN. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compress/quantizer.h"
#include "../compress/rtn.h"
#include "../core/encoding.h"
#include "../core/half.h"
#include "../core/qgroup.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rnd_unit(void) { return (float)(rnd_u32() % 1000000) / 500000.0f - 1.0f; }

/* ---- quantizer ---- */

START_TEST(quant_asym_basic)
{
    const float x[] = {-1.0f, 0.5f, 2.0f};
    float s;
    uint8_t z;
    lmc_quant_fit(4, 0, x, 3, &s, &z);
    /* scale = (2 - -1)/15 = 0.2, stored fp16: 0x3266 = 0.199951171875 */
    ck_assert(s == 0.199951171875f);
    /* zero = round(1 / 0.19995...) = round(5.0012) = 5 */
    ck_assert_int_eq(z, 5);
    /* -1 -> round(-5.0012)+5 = 0; 0.5 -> round(2.5006)+5 = 8; 2 -> round(10.0024)+5 = 15 */
    ck_assert_int_eq(lmc_quant_code(-1.0f, s, z, 15), 0);
    ck_assert_int_eq(lmc_quant_code(0.5f, s, z, 15), 8);
    ck_assert_int_eq(lmc_quant_code(2.0f, s, z, 15), 15);
    uint8_t c;
    ck_assert(lmc_quant_apply(0.5f, s, z, 15, &c) == 0.199951171875f * 3.0f);
    ck_assert_int_eq(c, 8);
    /* out of range clamps */
    ck_assert_int_eq(lmc_quant_code(100.0f, s, z, 15), 15);
    ck_assert_int_eq(lmc_quant_code(-100.0f, s, z, 15), 0);
}
END_TEST

START_TEST(quant_all_zero_and_positive)
{
    const float zeros[4] = {0, 0, 0, 0};
    float s;
    uint8_t z;
    lmc_quant_fit(4, 0, zeros, 4, &s, &z);
    /* xmin=-1, xmax=1: scale = 2/15 -> fp16 0.13330078125; zero = round(7.5018) = 8
     * (with the fp32 scale of the reference it would be round(7.4999996) = 7) */
    ck_assert(s == 0.13330078125f);
    ck_assert_int_eq(z, 8);
    ck_assert(lmc_quant_apply(0.0f, s, z, 15, NULL) == 0.0f);

    /* all positive: xmin is forced to 0 */
    const float pos[2] = {1.0f, 3.0f};
    lmc_quant_fit(2, 0, pos, 2, &s, &z);
    ck_assert(s == 1.0f);
    ck_assert_int_eq(z, 0);
    ck_assert_int_eq(lmc_quant_code(1.0f, s, z, 3), 1);
    ck_assert_int_eq(lmc_quant_code(3.0f, s, z, 3), 3);
    /* all negative: xmax is forced to 0, zero = maxq */
    const float neg[2] = {-3.0f, -1.0f};
    lmc_quant_fit(2, 0, neg, 2, &s, &z);
    ck_assert(s == 1.0f);
    ck_assert_int_eq(z, 3);
    ck_assert(lmc_quant_apply(-1.0f, s, z, 3, NULL) == -1.0f);
}
END_TEST

START_TEST(quant_half_even)
{
    /* scale 1, zero 0: ties go to the even integer like torch.round */
    const float x[2] = {0.0f, 3.0f};
    float s;
    uint8_t z;
    lmc_quant_fit(2, 0, x, 2, &s, &z);
    ck_assert(s == 1.0f && z == 0);
    ck_assert_int_eq(lmc_quant_code(0.5f, s, z, 3), 0);  /* roundf would give 1 */
    ck_assert_int_eq(lmc_quant_code(1.5f, s, z, 3), 2);
    ck_assert_int_eq(lmc_quant_code(2.5f, s, z, 3), 2);  /* roundf would give 3 */
    ck_assert_int_eq(lmc_quant_code(-0.5f, 1.0f, 2, 3), 2); /* -0.5 -> -0 */
    ck_assert_int_eq(lmc_quant_code(-1.5f, 1.0f, 2, 3), 0); /* -1.5 -> -2 */
}
END_TEST

START_TEST(quant_sym)
{
    const float x[2] = {-2.0f, 1.0f};
    float s;
    uint8_t z;
    lmc_quant_fit(4, 1, x, 2, &s, &z);
    /* xmax = 2, xmin = -2: scale = 4/15 -> fp16 0.2666015625, zero = 8 */
    ck_assert(s == 0.2666015625f);
    ck_assert_int_eq(z, 8);
    ck_assert_int_eq(lmc_quant_code(-2.0f, s, z, 15), 0);  /* round(-7.5018) = -8 */
    ck_assert_int_eq(lmc_quant_code(1.0f, s, z, 15), 12);  /* round(3.7509) = 4 */
    /* the reference's quirk: all-nonnegative input keeps xmin = 0, so the top
     * of the range clips at (maxq - zero) * scale */
    const float p[2] = {0.0f, 3.0f};
    lmc_quant_fit(4, 1, p, 2, &s, &z);
    ck_assert(s == 0.199951171875f);
    ck_assert_int_eq(z, 8);
    ck_assert_int_eq(lmc_quant_code(3.0f, s, z, 15), 15);
    ck_assert(lmc_quant_apply(3.0f, s, z, 15, NULL) == 0.199951171875f * 7.0f);
}
END_TEST

/* ---- bit packing ---- */

START_TEST(pack_bits_lsb_first)
{
    const uint8_t c4[3] = {1, 2, 3};
    uint8_t b[4] = {0xaa, 0xaa, 0xaa, 0xaa};
    lmc_pack_bits(c4, 3, 4, b);
    ck_assert_uint_eq(b[0], 0x21);
    ck_assert_uint_eq(b[1], 0x03);
    ck_assert_uint_eq(b[2], 0xaa); /* only ceil(3*4/8) = 2 bytes written */
    /* 3-bit codes 1..7,0: 1 | 2<<3 | 3<<6 | ... | 7<<18 = 0x1f58d1 */
    const uint8_t c3[8] = {1, 2, 3, 4, 5, 6, 7, 0};
    memset(b, 0xaa, sizeof b);
    lmc_pack_bits(c3, 8, 3, b);
    ck_assert_uint_eq(b[0], 0xd1);
    ck_assert_uint_eq(b[1], 0x58);
    ck_assert_uint_eq(b[2], 0x1f);
    ck_assert_uint_eq(b[3], 0xaa);
    uint8_t back[8];
    lmc_unpack_bits(b, 8, 3, back);
    ck_assert_mem_eq(back, c3, 8);
    /* every width, odd lengths: round trip */
    for (int bits = 1; bits <= 8; bits++)
        for (int n = 1; n <= 19; n++) {
            uint8_t codes[19], packed[20], out[19];
            for (int i = 0; i < n; i++)
                codes[i] = (uint8_t)(rnd_u32() & ((1u << bits) - 1));
            memset(packed, 0xff, sizeof packed);
            lmc_pack_bits(codes, n, bits, packed);
            int nb = (n * bits + 7) / 8;
            ck_assert_uint_eq(packed[nb], 0xff);
            if ((n * bits) % 8) /* padding bits are zero */
                ck_assert_uint_eq(packed[nb - 1] >> ((n * bits) % 8), 0);
            lmc_unpack_bits(packed, n, bits, out);
            ck_assert_mem_eq(out, codes, (size_t)n);
        }
}
END_TEST

/* ---- the encoding ---- */

static lmc_encoding qenc(int bits, int group, int sym, int gidx)
{
    lmc_encoding e = lmc_enc_dense(LMC_ENC_QGROUP);
    e.bits = bits;
    e.group = group;
    e.sym = sym;
    e.has_gidx = gidx;
    return e;
}

START_TEST(qgroup_registered)
{
    const lmc_enc_traits *t = lmc_enc_get(LMC_ENC_QGROUP);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "qgroup");
    ck_assert_ptr_eq(lmc_enc_by_name("qgroup"), t);
    ck_assert_ptr_null(t->effective_macs);
    lmc_error err;
    lmc_encoding e = qenc(4, 128, 0, 0);
    ck_assert_int_eq(t->validate(&e, 256, 688, &err), 0);
    e.bits = 1;
    ck_assert_int_eq(t->validate(&e, 4, 4, &err), -1);
    ck_assert(strstr(err.msg, "bits") != NULL);
    e.bits = 9;
    ck_assert_int_eq(t->validate(&e, 4, 4, &err), -1);
    e = qenc(4, 0, 0, 0);
    ck_assert_int_eq(t->validate(&e, 4, 4, &err), -1);
    ck_assert(strstr(err.msg, "group") != NULL);
    e.group = -2;
    ck_assert_int_eq(t->validate(&e, 4, 4, &err), -1);
    e.group = -1;
    ck_assert_int_eq(t->validate(&e, 4, 4, &err), 0);
    ck_assert_int_eq(t->validate(&e, 0, 4, &err), -1);
}
END_TEST

START_TEST(qgroup_nbytes)
{
    const lmc_enc_traits *t = lmc_enc_get(LMC_ENC_QGROUP);
    /* W4 g128 asym on a [256, 688] down projection: 6 groups (last of 48) */
    lmc_encoding e = qenc(4, 128, 0, 0);
    ck_assert_int_eq(lmc_qgroup_ngroups(&e, 688), 6);
    size_t nb = t->nbytes(&e, 256, 688);
    size_t expect = 256 * 344 + 256 * 6 * 2 + 256 * 3; /* codes, scales, zeros: all 4-aligned */
    ck_assert_uint_eq(nb, expect);
    double bpw = 8.0 * (double)nb / (256.0 * 688);
    ck_assert(bpw > 4.0 && bpw < 4.25);
    /* a 3-bit odd shape: every section padded to 4 bytes */
    e = qenc(3, 5, 0, 1);
    lmc_qgroup_layout l;
    lmc_qgroup_layout_of(&e, 3, 11, &l);
    ck_assert_int_eq(l.ngroups, 3);
    ck_assert_uint_eq(l.code_row_bytes, 5);       /* 33 bits */
    ck_assert_uint_eq(l.off_scales, 16);          /* 15 -> 16 */
    ck_assert_uint_eq(l.off_zeros, 16 + 20);      /* 18 bytes of scales -> 20 */
    ck_assert_uint_eq(l.zero_row_bytes, 2);       /* 9 bits */
    ck_assert_uint_eq(l.off_gidx, 36 + 8);        /* 6 -> 8 */
    ck_assert_uint_eq(l.nbytes, 44 + 44);
    ck_assert_uint_eq(t->nbytes(&e, 3, 11), l.nbytes);
    /* sym: no zeros */
    e = qenc(8, -1, 1, 0);
    ck_assert_uint_eq(t->nbytes(&e, 3, 11), 36 + 8);
}
END_TEST

/* Pack random codes, check unpack returns them and to_f32 matches the
 * formula, for one parameter set. */
static void roundtrip(int bits, int group, int sym, int gidx, int64_t rows, int64_t cols)
{
    lmc_encoding e = qenc(bits, group, sym, gidx);
    const lmc_enc_traits *t = lmc_enc_get(LMC_ENC_QGROUP);
    lmc_error err;
    ck_assert_int_eq(t->validate(&e, rows, cols, &err), 0);
    int64_t ng = lmc_qgroup_ngroups(&e, cols);
    ck_assert_int_eq(ng, group > 0 ? (cols + group - 1) / group : 1);
    const unsigned maxq = (1u << bits) - 1;
    uint8_t *codes = malloc((size_t)(rows * cols));
    float *scales = malloc((size_t)(rows * ng) * sizeof *scales);
    uint8_t *zeros = malloc((size_t)(rows * ng));
    int32_t *g_idx = malloc((size_t)cols * sizeof *g_idx);
    for (int64_t i = 0; i < rows * cols; i++)
        codes[i] = (uint8_t)(rnd_u32() & maxq);
    for (int64_t i = 0; i < rows * ng; i++) {
        scales[i] = lmc_f16_to_f32(lmc_f32_to_f16(0.001f + (float)(rnd_u32() % 1000) * 1e-4f));
        zeros[i] = (uint8_t)(rnd_u32() & maxq);
    }
    for (int64_t c = 0; c < cols; c++)
        g_idx[c] = gidx ? (int32_t)(rnd_u32() % (uint32_t)ng) : (group > 0 ? (int32_t)(c / group) : 0);
    size_t nb = t->nbytes(&e, rows, cols);
    uint8_t *blob = malloc(nb + 16);
    memset(blob, 0x5a, nb + 16);
    lmc_qgroup_pack(&e, rows, cols, codes, scales, zeros, g_idx, blob);
    for (int i = 0; i < 16; i++) /* exactly nbytes written */
        ck_assert_uint_eq(blob[nb + i], 0x5a);

    uint8_t *c2 = malloc((size_t)(rows * cols));
    float *s2 = malloc((size_t)(rows * ng) * sizeof *s2);
    uint8_t *z2 = malloc((size_t)(rows * ng));
    int32_t *g2 = malloc((size_t)cols * sizeof *g2);
    lmc_qgroup_unpack(&e, rows, cols, blob, c2, s2, z2, g2);
    ck_assert_mem_eq(c2, codes, (size_t)(rows * cols));
    ck_assert_mem_eq(s2, scales, (size_t)(rows * ng) * sizeof *s2);
    ck_assert_mem_eq(g2, g_idx, (size_t)cols * sizeof *g2);
    for (int64_t i = 0; i < rows * ng; i++)
        ck_assert_uint_eq(z2[i], sym ? 1u << (bits - 1) : zeros[i]);

    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    ck_assert_int_eq(t->to_f32(&e, blob, rows, cols, out, &err), 0);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t k = r * ng + g_idx[c];
            int z = sym ? 1 << (bits - 1) : zeros[k];
            float expect = scales[k] * (float)((int)codes[r * cols + c] - z);
            ck_assert_msg(out[r * cols + c] == expect, "b%d g%d sym%d gidx%d (%lld,%lld): %g != %g",
                          bits, group, sym, gidx, (long long)r, (long long)c,
                          (double)out[r * cols + c], (double)expect);
        }
    free(codes);
    free(scales);
    free(zeros);
    free(g_idx);
    free(blob);
    free(c2);
    free(s2);
    free(z2);
    free(g2);
    free(out);
}

START_TEST(qgroup_roundtrip_all)
{
    const int groups[] = {-1, 1, 4, 7, 16, 37, 64};
    for (int bits = 2; bits <= 8; bits++)
        for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++)
            for (int sym = 0; sym < 2; sym++)
                for (int gidx = 0; gidx < 2; gidx++) {
                    roundtrip(bits, groups[gi], sym, gidx, 5, 37); /* 37: partial last groups */
                    roundtrip(bits, groups[gi], sym, gidx, 1, 1);
                }
    roundtrip(4, 128, 0, 0, 16, 688);
    roundtrip(3, 128, 0, 1, 16, 688);
}
END_TEST

START_TEST(qgroup_to_f32_rejects_bad_data)
{
    const lmc_enc_traits *t = lmc_enc_get(LMC_ENC_QGROUP);
    lmc_encoding e = qenc(4, 4, 0, 1);
    lmc_error err;
    uint8_t codes[2 * 8] = {0};
    float scales[2 * 2] = {1, 1, 1, 1};
    uint8_t zeros[2 * 2] = {0};
    int32_t g_idx[8] = {0, 1, 0, 1, 0, 1, 0, 2}; /* 2 is out of range (2 groups) */
    size_t nb = t->nbytes(&e, 2, 8);
    uint8_t *blob = malloc(nb);
    float out[16];
    lmc_qgroup_pack(&e, 2, 8, codes, scales, zeros, g_idx, blob);
    ck_assert_int_eq(t->to_f32(&e, blob, 2, 8, out, &err), -1);
    ck_assert(strstr(err.msg, "g_idx[7]") != NULL);
    g_idx[7] = -1;
    lmc_qgroup_pack(&e, 2, 8, codes, scales, zeros, g_idx, blob);
    ck_assert_int_eq(t->to_f32(&e, blob, 2, 8, out, &err), -1);
    g_idx[7] = 1;
    lmc_qgroup_pack(&e, 2, 8, codes, scales, zeros, g_idx, blob);
    ck_assert_int_eq(t->to_f32(&e, blob, 2, 8, out, &err), 0);
    scales[3] = INFINITY;
    lmc_qgroup_pack(&e, 2, 8, codes, scales, zeros, g_idx, blob);
    ck_assert_int_eq(t->to_f32(&e, blob, 2, 8, out, &err), -1);
    ck_assert(strstr(err.msg, "row 1 group 1") != NULL);
    free(blob);
}
END_TEST

/* RTN: every group's parameters are the quantizer's on the original weights,
 * and the packed blob decodes to exactly the returned weights. */
START_TEST(rtn_matches_quantizer_and_container)
{
    const int64_t rows = 7, cols = 45;
    const int cfg[][3] = {{4, 16, 0}, {3, -1, 0}, {8, 45, 1}, {2, 7, 1}};
    float W[7 * 45], Wq[7 * 45];
    for (int i = 0; i < rows * cols; i++)
        W[i] = rnd_unit() * (1 + i % 3);
    for (size_t k = 0; k < sizeof cfg / sizeof *cfg; k++) {
        int bits = cfg[k][0], group = cfg[k][1], sym = cfg[k][2];
        lmc_qresult q;
        lmc_error err;
        ck_assert_int_eq(lmc_rtn_quantize(W, rows, cols, bits, group, sym, &q, Wq, &err), 0);
        ck_assert_int_eq(q.has_gidx, 0);
        int64_t g = group > 0 ? group : cols;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t gk = 0; gk < q.ngroups; gk++) {
                int64_t c0 = gk * g, len = c0 + g < cols ? g : cols - c0;
                float s;
                uint8_t z;
                lmc_quant_fit(bits, sym, W + r * cols + c0, len, &s, &z);
                ck_assert(q.scales[r * q.ngroups + gk] == s);
                ck_assert_uint_eq(q.zeros[r * q.ngroups + gk], z);
                for (int64_t c = c0; c < c0 + len; c++) {
                    uint8_t code;
                    float v = lmc_quant_apply(W[r * cols + c], s, z, (1 << bits) - 1, &code);
                    ck_assert_uint_eq(q.codes[r * cols + c], code);
                    ck_assert(Wq[r * cols + c] == v);
                    /* round to nearest: within half a step, plus what the fp16
                     * rounding of the scale can clip at the range ends (the sym
                     * quirk clips more) */
                    if (!sym)
                        ck_assert(fabsf(v - W[r * cols + c]) <=
                                  s * (0.5f + (float)((1 << bits) - 1) / 2048.0f) * 1.0001f);
                }
            }
        lmc_encoding e;
        uint8_t *blob;
        size_t nb;
        ck_assert_int_eq(lmc_qresult_encode(&q, &e, &blob, &nb, &err), 0);
        ck_assert_int_eq(e.id, LMC_ENC_QGROUP);
        float out[7 * 45];
        ck_assert_int_eq(lmc_enc_get(LMC_ENC_QGROUP)->to_f32(&e, blob, rows, cols, out, &err), 0);
        ck_assert_mem_eq(out, Wq, sizeof out);
        lmc_qresult_dequant(&q, out);
        ck_assert_mem_eq(out, Wq, sizeof out);
        free(blob);
        lmc_qresult_free(&q);
    }
    lmc_qresult q;
    lmc_error err;
    ck_assert_int_eq(lmc_rtn_quantize(W, rows, cols, 4, 0, 0, &q, NULL, &err), -1);
    ck_assert_int_eq(lmc_rtn_quantize(W, rows, cols, 9, 8, 0, &q, NULL, &err), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("qgroup");
    TCase *tc = tcase_create("qgroup");
    tcase_add_test(tc, quant_asym_basic);
    tcase_add_test(tc, quant_all_zero_and_positive);
    tcase_add_test(tc, quant_half_even);
    tcase_add_test(tc, quant_sym);
    tcase_add_test(tc, pack_bits_lsb_first);
    tcase_add_test(tc, qgroup_registered);
    tcase_add_test(tc, qgroup_nbytes);
    tcase_add_test(tc, qgroup_roundtrip_all);
    tcase_add_test(tc, qgroup_to_f32_rejects_bad_data);
    tcase_add_test(tc, rtn_matches_quantizer_and_container);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
