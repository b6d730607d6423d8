/* The exporters' pieces on synthetic tensors: the qgroup -> ggml type
 * choice and block encoding (decoded here with ggml's formulas and
 * compared with lmc's to_f32), the GGUF file layout, the tokenizer
 * refusals, GPTQ/AWQ packing, and the atomic output directory. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/fileio.h"
#include "../core/half.h"
#include "../core/qgroup.h"
#include "../formats/export_internal.h"
#include "../formats/gguf.h"
#include "../formats/gguf_tensor.h"
#include "../formats/gguf_vocab.h"
#include "testutil.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* A qgroup tensor [rows, cols]: random codes, zeros and fp16 scales;
 * scale_bits > 0 keeps only that many significant bits of each scale. */
typedef struct qt {
    lmc_tensor t;
    uint8_t *codes, *zeros;
    float *scales;
    int32_t *gidx;
} qt;

static void qt_make(qt *q, int64_t rows, int64_t cols, int bits, int group, int sym, int scale_bits)
{
    memset(q, 0, sizeof *q);
    lmc_encoding e = {.id = LMC_ENC_QGROUP, .bits = bits, .group = group, .sym = sym};
    int64_t ng = lmc_qgroup_ngroups(&e, cols);
    q->codes = malloc((size_t)(rows * cols));
    q->zeros = malloc((size_t)(rows * ng));
    q->scales = malloc((size_t)(rows * ng) * sizeof *q->scales);
    q->gidx = malloc((size_t)cols * sizeof *q->gidx);
    for (int64_t i = 0; i < rows * cols; i++)
        q->codes[i] = (uint8_t)(rnd() % (1u << bits));
    for (int64_t i = 0; i < rows * ng; i++) {
        q->zeros[i] = (uint8_t)(rnd() % (1u << bits));
        uint16_t h = (uint16_t)(0x1c00 + rnd() % 0x1800); /* ~0.004 .. 0.25 */
        if (scale_bits > 0)
            h &= (uint16_t)~((1u << (11 - scale_bits)) - 1);
        q->scales[i] = lmc_f16_to_f32(h);
    }
    for (int64_t c = 0; c < cols; c++)
        q->gidx[c] = group > 0 ? (int32_t)(c / group) : 0;
    lmc_qgroup_layout l;
    lmc_qgroup_layout_of(&e, rows, cols, &l);
    uint8_t *blob = malloc(l.nbytes);
    lmc_qgroup_pack(&e, rows, cols, q->codes, q->scales, q->zeros, q->gidx, blob);
    snprintf(q->t.name, sizeof q->t.name, "blk.0.q.weight");
    q->t.ndim = 2;
    q->t.shape[0] = rows;
    q->t.shape[1] = cols;
    q->t.enc = e;
    q->t.data = blob;
    q->t.nbytes = l.nbytes;
    q->t.owned = blob;
}

static void qt_repack(qt *q)
{
    lmc_qgroup_pack(&q->t.enc, q->t.shape[0], q->t.shape[1], q->codes, q->scales, q->zeros,
                    q->gidx, q->t.owned);
}

static void qt_free(qt *q)
{
    free(q->codes);
    free(q->zeros);
    free(q->scales);
    free(q->gidx);
    free(q->t.owned);
}

static float h2f(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return lmc_f16_to_f32(h);
}

/* ggml-quants.c dequantize_row_* for one row of n values. */
static void ggml_row(lmc_ggml_type ty, const uint8_t *x, int64_t n, float *y)
{
    for (int64_t b = 0; b < n / 32; b++) {
        const uint8_t *o = x + b * lmc_ggml_block_bytes(ty);
        float d = h2f(o), *out = y + 32 * b;
        switch (ty) {
        case LMC_GGML_Q4_0:
            for (int j = 0; j < 16; j++) {
                out[j] = ((o[2 + j] & 0x0F) - 8) * d;
                out[j + 16] = ((o[2 + j] >> 4) - 8) * d;
            }
            break;
        case LMC_GGML_Q4_1: {
            float m = h2f(o + 2);
            for (int j = 0; j < 16; j++) {
                out[j] = (o[4 + j] & 0x0F) * d + m;
                out[j + 16] = (o[4 + j] >> 4) * d + m;
            }
            break;
        }
        case LMC_GGML_Q5_0:
        case LMC_GGML_Q5_1: {
            int one = ty == LMC_GGML_Q5_1;
            float m = one ? h2f(o + 2) : 0;
            uint32_t qh;
            memcpy(&qh, o + 2 + 2 * one, 4);
            const uint8_t *qs = o + 6 + 2 * one;
            for (int j = 0; j < 16; j++) {
                uint8_t h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
                int x0 = (qs[j] & 0x0F) | h0, x1 = (qs[j] >> 4) | h1;
                out[j] = one ? x0 * d + m : (x0 - 16) * d;
                out[j + 16] = one ? x1 * d + m : (x1 - 16) * d;
            }
            break;
        }
        case LMC_GGML_Q8_0:
            for (int j = 0; j < 32; j++)
                out[j] = (int8_t)o[2 + j] * d;
            break;
        default: ck_abort_msg("not a block type");
        }
    }
}

/* t's exact type must be want; its blocks decode to lmc's values. */
static void check_exact(const lmc_tensor *t, lmc_ggml_type want)
{
    lmc_error err;
    lmc_ggml_type ty;
    char why[200] = "";
    int r = lmc_gguf_exact_type(t, &ty, why, sizeof why, &err);
    ck_assert_msg(r == 0, "refused: %s", why);
    ck_assert_msg(ty == want, "type %s, want %s", lmc_ggml_type_name(ty), lmc_ggml_type_name(want));
    int64_t rows = t->shape[0], cols = t->shape[1];
    size_t rb = lmc_ggml_row_bytes(ty, cols);
    uint8_t *blk = malloc(rb * (size_t)rows);
    float *ref = malloc((size_t)(rows * cols) * sizeof *ref), *got = malloc(cols * sizeof *got);
    lmc_encodings_init();
    ck_assert(lmc_enc_get(t->enc.id)->to_f32(&t->enc, t->data, rows, cols, ref, &err) == 0);
    ck_assert_msg(lmc_gguf_encode(t, ty, NULL, blk, &err) == 0, "%s", err.msg);
    for (int64_t r0 = 0; r0 < rows; r0++) {
        ggml_row(ty, blk + r0 * rb, cols, got);
        for (int64_t c = 0; c < cols; c++)
            ck_assert_msg(got[c] == ref[r0 * cols + c], "%s row %lld col %lld: %g vs %g",
                          lmc_ggml_type_name(ty), (long long)r0, (long long)c, (double)got[c],
                          (double)ref[r0 * cols + c]);
    }
    free(blk);
    free(ref);
    free(got);
}

static void check_refused(const lmc_tensor *t, const char *pattern)
{
    lmc_error err;
    lmc_ggml_type ty;
    char why[200] = "";
    ck_assert_int_eq(lmc_gguf_exact_type(t, &ty, why, sizeof why, &err), 1);
    ck_assert_msg(strstr(why, pattern), "reason '%s' lacks '%s'", why, pattern);
}

START_TEST(gguf_types_exact)
{
    static const struct {
        int bits, group, sym, scale_bits;
        lmc_ggml_type want;
    } cases[] = {
        {4, 32, 1, 0, LMC_GGML_Q4_0},  {4, -1, 1, 0, LMC_GGML_Q4_0},  {4, 64, 0, 0, LMC_GGML_Q5_0},
        {4, 32, 0, 7, LMC_GGML_Q4_1},  {5, 32, 1, 0, LMC_GGML_Q5_0},  {5, 96, 0, 6, LMC_GGML_Q5_1},
        {5, 32, 0, 0, LMC_GGML_Q8_0},  {6, 32, 0, 0, LMC_GGML_Q8_0},  {7, -1, 1, 0, LMC_GGML_Q8_0},
        {8, 32, 1, 0, LMC_GGML_Q8_0},  {3, 32, 0, 0, LMC_GGML_Q4_0},  {2, 64, 1, 0, LMC_GGML_Q4_0},
        {2, 32, 0, 0, LMC_GGML_Q4_0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qt q;
        qt_make(&q, 7, 192, cases[i].bits, cases[i].group, cases[i].sym, cases[i].scale_bits);
        check_exact(&q.t, cases[i].want);
        qt_free(&q);
    }
}
END_TEST

START_TEST(gguf_q41_offset_per_group)
{
    /* group 0 spans every code with zero 3 (v in [-3, 12]: not Q4_0) and an
     * exact 3*s; group 1's zero 5 times its scale is no fp16 number, but its
     * codes leave room for another offset k with an exact k*s */
    qt q;
    qt_make(&q, 1, 64, 4, 32, 0, 0);
    for (int c = 0; c < 32; c++)
        q.codes[c] = (uint8_t)(c % 16);
    for (int c = 32; c < 64; c++)
        q.codes[c] = (uint8_t)(4 + c % 9);
    q.zeros[0] = 3;
    q.scales[0] = 1.0f;
    q.zeros[1] = 5;
    q.scales[1] = lmc_f16_to_f32(0x3c01); /* 1 + 2^-10: 5 * s needs 13 bits */
    qt_repack(&q);
    check_exact(&q.t, LMC_GGML_Q4_1);
    qt_free(&q);
}
END_TEST

START_TEST(gguf_refusals)
{
    qt q;
    qt_make(&q, 3, 96, 4, 48, 1, 0);
    check_refused(&q.t, "group size 48 is not a multiple");
    qt_free(&q);
    qt_make(&q, 3, 80, 4, -1, 1, 0);
    check_refused(&q.t, "80 columns are not a multiple");
    qt_free(&q);
    /* asymmetric 8-bit codes 0 and 255 around a zero of 0 / 255 */
    qt_make(&q, 2, 64, 8, 32, 0, 0);
    q.codes[0] = 255;
    q.zeros[0] = 0;
    qt_repack(&q);
    check_refused(&q.t, "beyond Q8_0's int8");
    qt_free(&q);
    /* act-order: a g_idx that is not c / group; the plain one is accepted */
    qt_make(&q, 2, 64, 4, 32, 1, 0);
    q.t.enc.has_gidx = 1;
    lmc_qgroup_layout l;
    lmc_qgroup_layout_of(&q.t.enc, 2, 64, &l);
    q.t.owned = q.t.owned ? realloc(q.t.owned, l.nbytes) : NULL;
    q.t.data = q.t.owned;
    q.t.nbytes = l.nbytes;
    qt_repack(&q);
    check_exact(&q.t, LMC_GGML_Q4_0);
    q.gidx[0] = 1;
    q.gidx[40] = 0;
    qt_repack(&q);
    check_refused(&q.t, "act-order g_idx");
    qt_free(&q);
}
END_TEST

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* fill: byte i of tensor k is k + i */
static int fill_pattern(void *ctx, int index, uint8_t *dst, size_t n, const uint8_t **data,
                        lmc_error *err)
{
    (void)ctx;
    (void)err;
    (void)data;
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(index + i);
    return 0;
}

START_TEST(gguf_file_parse_back)
{
    lmc_gguf *g = lmc_gguf_new();
    lmc_gguf_set_str(g, "general.architecture", "llama");
    lmc_gguf_set_u32(g, "llama.block_count", 4);
    lmc_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", 1);
    int64_t ne1[1] = {5}, ne2[2] = {64, 3};
    lmc_gguf_add_tensor(g, "v", 1, ne1, LMC_GGML_F32);
    lmc_gguf_add_tensor(g, "m", 2, ne2, LMC_GGML_Q8_0);
    char path[512];
    snprintf(path, sizeof path, "%s/p.gguf", lmc_test_tmpdir());
    lmc_error err;
    uint64_t written;
    ck_assert_msg(lmc_gguf_write(g, path, fill_pattern, NULL, &written, &err) == 0, "%s", err.msg);
    lmc_gguf_free(g);
    lmc_mmap mm;
    ck_assert(lmc_mmap_open(path, &mm, &err) == 0);
    const uint8_t *p = mm.data;
    ck_assert_uint_eq(mm.size, written);
    ck_assert(memcmp(p, "GGUF", 4) == 0);
    uint32_t ver;
    memcpy(&ver, p + 4, 4);
    ck_assert_int_eq(ver, 3);
    ck_assert_uint_eq(rd64(p + 8), 2); /* tensors */
    ck_assert_uint_eq(rd64(p + 16), 3); /* key/values */
    size_t o = 24;
    for (int k = 0; k < 3; k++) { /* keys: string, type, value */
        o += 8 + rd64(p + o);
        uint32_t ty;
        memcpy(&ty, p + o, 4);
        o += 4;
        o += ty == 8 ? 8 + rd64(p + o) : ty == 7 ? 1 : 4;
    }
    uint64_t offs[2];
    for (int t = 0; t < 2; t++) {
        o += 8 + rd64(p + o); /* name */
        uint32_t nd;
        memcpy(&nd, p + o, 4);
        o += 4 + 8 * nd + 4;
        offs[t] = rd64(p + o);
        o += 8;
    }
    size_t start = (o + 31) / 32 * 32;
    ck_assert_uint_eq(offs[0], 0);
    ck_assert_uint_eq(offs[1], 32); /* 20 bytes padded to 32 */
    ck_assert_int_eq(p[start + 3], 3);         /* tensor 0, byte 3 */
    ck_assert_int_eq(p[start + 32 + 10], 11);  /* tensor 1, byte 10 */
    ck_assert_uint_eq(mm.size, start + 32 + (3 * 2 * 34 + 31) / 32 * 32);
    lmc_mmap_close(&mm);
}
END_TEST

START_TEST(vocab_refusals)
{
    lmc_config cfg = {0};
    cfg.vocab = 4;
    cfg.bos_id = cfg.eos_id = -1;
    char why[300];
    lmc_error err;
    /* a byte-level BPE with a pre-tokenizer regex llama.cpp does not know */
    const char *j =
        "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,"
        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
        "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},"
        "\"post_processor\":null,\"decoder\":null,\"model\":{\"type\":\"BPE\",\"dropout\":null,"
        "\"unk_token\":null,\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,"
        "\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
        "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3},\"merges\":[\"a b\"]}}";
    lmc_gguf *g = lmc_gguf_new();
    ck_assert_int_eq(lmc_gguf_add_vocab(g, j, strlen(j), &cfg, why, sizeof why, &err), 1);
    ck_assert_msg(strstr(why, "pre-tokenizer"), "%s", why);
    lmc_gguf_free(g);
    /* the GPT-2 layout maps (but not with ids beyond the embedding); so does
     * llama-xs's SentencePiece layout */
    char *k = strdup(j), *at = strstr(k, "\"pre_tokenizer\"");
    const char *gpt2 = "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                       "\"trim_offsets\":true,\"use_regex\":true},";
    char *end = strstr(at, "\"post_processor\"");
    size_t n = (size_t)(at - k);
    char *m2 = malloc(strlen(k) + strlen(gpt2) + 1);
    sprintf(m2, "%.*s%s%s", (int)n, k, gpt2, end);
    cfg.vocab = 3;
    g = lmc_gguf_new();
    ck_assert_int_eq(lmc_gguf_add_vocab(g, m2, strlen(m2), &cfg, why, sizeof why, &err), 1);
    ck_assert_msg(strstr(why, "beyond the model's 3 embedding rows"), "%s", why);
    lmc_gguf_free(g);
    cfg.vocab = 6;
    g = lmc_gguf_new();
    ck_assert_msg(lmc_gguf_add_vocab(g, m2, strlen(m2), &cfg, why, sizeof why, &err) == 0, "%s",
                  why);
    lmc_gguf_free(g);
    free(k);
    free(m2);
    char *tj;
    size_t tl;
    ck_assert(lmc_read_file("data/llama-xs/tokenizer.json", &tj, &tl, &err) == 0);
    cfg.vocab = 8192;
    cfg.bos_id = 1;
    cfg.eos_id = 2;
    g = lmc_gguf_new();
    ck_assert_msg(lmc_gguf_add_vocab(g, tj, tl, &cfg, why, sizeof why, &err) == 0, "%s", why);
    lmc_gguf_free(g);
    free(tj);
}
END_TEST

/* code i of GPTQ column o: bits [i*b, (i+1)*b) of the column's word stream */
static unsigned gptq_code(const uint32_t *qw, int64_t out, int64_t o, int64_t i, int b)
{
    unsigned v = 0;
    for (int k = 0; k < b; k++) {
        uint64_t bit = (uint64_t)(i * b + k);
        v |= ((qw[(bit / 32) * (uint64_t)out + (uint64_t)o] >> (bit % 32)) & 1u) << k;
    }
    return v;
}

START_TEST(gptq_pack_and_refuse)
{
    lmc_error err;
    char why[200];
    for (int bits = 2; bits <= 8; bits++) {
        if (bits == 5 || bits == 6 || bits == 7)
            continue;
        qt q;
        qt_make(&q, 64, 96, bits, 32, 0, 0);
        for (int64_t k = 0; k < 64 * 3; k++)
            q.zeros[k] = (uint8_t)(1 + q.zeros[k] % ((1u << bits) - 1)); /* >= 1 */
        qt_repack(&q);
        lmc_qlinear ql;
        ck_assert(lmc_qlinear_load(&ql, &q.t, 1, &err) == 0);
        ck_assert_int_eq(lmc_gptq_refuse(&ql, why, sizeof why), 0);
        /* the tensor as the second half of a 128-output module */
        int64_t out = 128;
        uint32_t *qw = calloc((size_t)(96 * bits / 32 * out), 4);
        uint32_t *qz = calloc((size_t)(3 * out * bits / 32), 4);
        uint16_t *sc = calloc((size_t)(3 * out), 2);
        lmc_gptq_pack(&ql, 64, out, qw, qz, sc);
        for (int64_t o = 0; o < 64; o++)
            for (int64_t i = 0; i < 96; i++)
                ck_assert_uint_eq(gptq_code(qw, out, 64 + o, i, bits), q.codes[o * 96 + i]);
        for (int64_t g = 0; g < 3; g++)
            for (int64_t o = 0; o < 64; o++) {
                ck_assert_uint_eq(gptq_code(qz + g * (out * bits / 32), 1, 0, 64 + o, bits) + 1,
                                  q.zeros[o * 3 + g]);
                ck_assert(lmc_f16_to_f32(sc[g * out + 64 + o]) == q.scales[o * 3 + g]);
            }
        for (int64_t w = 0; w < 96 * bits / 32; w++) /* the first half untouched */
            ck_assert_uint_eq(qw[w * out], 0);
        free(qw);
        free(qz);
        free(sc);
        /* a zero of 0 cannot be stored as zero - 1 */
        q.zeros[5] = 0;
        qt_repack(&q);
        lmc_qlinear_free(&ql);
        ck_assert(lmc_qlinear_load(&ql, &q.t, 1, &err) == 0);
        ck_assert_int_eq(lmc_gptq_refuse(&ql, why, sizeof why), 1);
        ck_assert_msg(strstr(why, "zero point of 0"), "%s", why);
        lmc_qlinear_free(&ql);
        qt_free(&q);
    }
    qt q;
    qt_make(&q, 48, 64, 4, 32, 1, 0);
    lmc_qlinear ql;
    ck_assert(lmc_qlinear_load(&ql, &q.t, 1, &err) == 0);
    ck_assert_int_eq(lmc_gptq_refuse(&ql, why, sizeof why), 1);
    ck_assert_msg(strstr(why, "multiple of 32"), "%s", why);
    lmc_qlinear_free(&ql);
    qt_free(&q);
    qt_make(&q, 32, 64, 6, 32, 1, 0);
    ck_assert(lmc_qlinear_load(&ql, &q.t, 1, &err) == 0);
    ck_assert_int_eq(lmc_gptq_refuse(&ql, why, sizeof why), 1);
    lmc_qlinear_free(&ql);
    qt_free(&q);
}
END_TEST

START_TEST(awq_pack_order)
{
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    lmc_error err;
    char why[200];
    qt q;
    qt_make(&q, 16, 64, 4, 32, 0, 0);
    lmc_qlinear ql;
    ck_assert(lmc_qlinear_load(&ql, &q.t, 1, &err) == 0);
    ck_assert_int_eq(lmc_awq_refuse(&ql, why, sizeof why), 0);
    int64_t out = 24; /* as outputs 8..23 of a module */
    uint32_t *qw = calloc((size_t)(64 * out / 8), 4), *qz = calloc((size_t)(2 * out / 8), 4);
    uint16_t *sc = calloc((size_t)(2 * out), 2);
    lmc_awq_pack(&ql, 8, out, qw, qz, sc);
    for (int64_t i = 0; i < 64; i++)
        for (int64_t j = 1; j < 3; j++)
            for (int k = 0; k < 8; k++) {
                int64_t o = 8 * j + order[k] - 8; /* nibble k holds output 8j + order[k] */
                ck_assert_uint_eq((qw[i * 3 + j] >> (4 * k)) & 15, q.codes[o * 64 + i]);
            }
    for (int64_t g = 0; g < 2; g++)
        for (int k = 0; k < 8; k++)
            ck_assert_uint_eq((qz[g * 3 + 1] >> (4 * k)) & 15, q.zeros[order[k] * 2 + g]);
    ck_assert_uint_eq(qw[0], 0);
    free(qw);
    free(qz);
    free(sc);
    lmc_qlinear_free(&ql);
    qt_free(&q);
    qt_make(&q, 16, 96, 4, 64, 0, 0); /* a short last group */
    ck_assert(lmc_qlinear_load(&ql, &q.t, 1, &err) == 0);
    ck_assert_int_eq(lmc_awq_refuse(&ql, why, sizeof why), 1);
    lmc_qlinear_free(&ql);
    qt_free(&q);
}
END_TEST

static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

static int put_file(lmc_atomic_dir *ad, const char *name, const char *text, lmc_error *err)
{
    char *p = lmc_atomic_dir_file(ad, name);
    lmc_atomic_file af;
    int rc = p ? lmc_atomic_open(&af, p, err) : -1;
    free(p);
    if (rc == 0 && lmc_atomic_write(&af, text, strlen(text), err) == 0)
        return lmc_atomic_commit(&af, err);
    return -1;
}

START_TEST(atomic_dir)
{
    char base[512], out[600];
    snprintf(base, sizeof base, "%s/ad", lmc_test_tmpdir());
    mkdir(base, 0755);
    snprintf(out, sizeof out, "%s/ck", base);
    lmc_error err;
    lmc_atomic_dir ad;
    /* abort: nothing left */
    ck_assert(lmc_atomic_dir_open(&ad, out, &err) == 0);
    ck_assert(put_file(&ad, "a.json", "{}", &err) == 0);
    lmc_atomic_dir_abort(&ad);
    ck_assert_int_eq(count_entries(base, "ck"), 0);
    /* commit: the directory with its files appears */
    ck_assert(lmc_atomic_dir_open(&ad, out, &err) == 0);
    ck_assert(put_file(&ad, "a.json", "{}", &err) == 0);
    ck_assert(lmc_atomic_dir_commit(&ad, &err) == 0);
    char f[700];
    snprintf(f, sizeof f, "%s/a.json", out);
    ck_assert(lmc_file_exists(f));
    /* onto a non-empty directory: fails, the old one intact, no temporary */
    ck_assert(lmc_atomic_dir_open(&ad, out, &err) == 0);
    ck_assert(put_file(&ad, "b.json", "[]", &err) == 0);
    ck_assert(lmc_atomic_dir_commit(&ad, &err) != 0);
    ck_assert_msg(strstr(err.msg, "cannot rename into place"), "%s", err.msg);
    ck_assert_int_eq(count_entries(base, "ck"), 1);
    ck_assert(lmc_file_exists(f));
    /* a signal while a file is being written removes file and directory */
    snprintf(out, sizeof out, "%s/sig", base);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        lmc_atomic_dir d2;
        lmc_error e2;
        if (lmc_atomic_dir_open(&d2, out, &e2) != 0 || put_file(&d2, "done.json", "{}", &e2) != 0)
            _exit(3);
        char *p = lmc_atomic_dir_file(&d2, "big.bin");
        lmc_atomic_file af;
        if (!p || lmc_atomic_open(&af, p, &e2) != 0 || lmc_atomic_write(&af, "xx", 2, &e2) != 0)
            _exit(4);
        fflush(af.f);
        raise(SIGTERM);
        _exit(5);
    }
    int st;
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "child status %d", st);
    ck_assert_int_eq(count_entries(base, "sig"), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_add_test(tc, gguf_types_exact);
    tcase_add_test(tc, gguf_q41_offset_per_group);
    tcase_add_test(tc, gguf_refusals);
    tcase_add_test(tc, gguf_file_parse_back);
    tcase_add_test(tc, vocab_refusals);
    tcase_add_test(tc, gptq_pack_and_refuse);
    tcase_add_test(tc, awq_pack_order);
    tcase_add_test(tc, atomic_dir);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
