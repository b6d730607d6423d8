/* formats/safetensors: writer round trip, conversion, and every malformed
 * file the reader must refuse (crafted byte by byte here). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "../core/half.h"
#include "../formats/safetensors.h"
#include "testutil.h"

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 512, "%s/%s", lmc_test_tmpdir(), name);
    return b;
}

/* A file: 8-byte length (hlen, or strlen(header) when hlen < 0), the
 * header, then ndata bytes of data (0x11, 0x22, ...). */
static const char *craft(const char *name, const char *header, long long hlen, size_t ndata)
{
    const char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned long long n = hlen < 0 ? strlen(header) : (unsigned long long)hlen;
    for (int i = 0; i < 8; i++)
        fputc((int)((n >> (8 * i)) & 0xff), f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < ndata; i++)
        fputc((int)((i * 0x11) & 0xff), f);
    fclose(f);
    return p;
}

/* Open must fail with a message naming the file and containing WHAT. */
static void expect_fail(const char *path, const char *what)
{
    lmc_safetensors st;
    lmc_error err = {{0}};
    int rc = lmc_safetensors_open(path, &st, &err);
    if (rc == 0)
        lmc_safetensors_close(&st);
    ck_assert_msg(rc == -1, "%s opened although malformed (%s)", path, what);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, what) != NULL, "expected '%s' in: %s", what, err.msg);
}

START_TEST(roundtrip)
{
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.125f, 1e-3f};
    uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
    int64_t ids[2] = {7, -3};
    lmc_st_write_tensor t[4] = {
        {.name = "w.a", .dtype = "F32", .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "b\"quoted\\", .dtype = "F16", .ndim = 1, .shape = {4}, .data = h},
        {.name = "ids", .dtype = "I64", .ndim = 1, .shape = {2}, .data = ids},
        {.name = "empty", .dtype = "F32", .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    const char *meta[] = {"format", "pt", "note", "tab\there", NULL};
    const char *p = tmp_path("rt.safetensors");
    lmc_error err;
    ck_assert_msg(lmc_safetensors_write(p, t, 4, meta, &err) == 0, "%s", err.msg);

    lmc_safetensors st;
    ck_assert_msg(lmc_safetensors_open(p, &st, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(st.n_tensors, 4);
    ck_assert_str_eq(lmc_safetensors_meta(&st, "format"), "pt");
    ck_assert_str_eq(lmc_safetensors_meta(&st, "note"), "tab\there");
    ck_assert_ptr_null(lmc_safetensors_meta(&st, "absent"));
    const lmc_st_tensor *x = lmc_safetensors_find(&st, "w.a");
    ck_assert_ptr_nonnull(x);
    ck_assert_str_eq(x->dtype, "F32");
    ck_assert_int_eq(x->ndim, 2);
    ck_assert_int_eq(x->shape[0], 2);
    ck_assert_int_eq(x->shape[1], 3);
    ck_assert_uint_eq(x->nbytes, sizeof a);
    ck_assert_mem_eq(x->data, a, sizeof a);
    x = lmc_safetensors_find(&st, "b\"quoted\\");
    ck_assert_ptr_nonnull(x);
    ck_assert_mem_eq(x->data, h, sizeof h);
    x = lmc_safetensors_find(&st, "ids");
    ck_assert_str_eq(x->dtype, "I64");
    ck_assert_mem_eq(x->data, ids, sizeof ids);
    x = lmc_safetensors_find(&st, "empty");
    ck_assert_uint_eq(x->nbytes, 0);
    ck_assert_int_eq(x->shape[1], 5);

    /* header padded with spaces to a multiple of 8, so the data area is aligned */
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | st.map.data[i];
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_uint_eq(st.map.size, 8 + n + sizeof a + sizeof h + sizeof ids);
    ck_assert(st.map.data[8 + n - 1] == ' ' || st.map.data[8 + n - 1] == '}');
    /* the weight check refuses I64 with the documented message */
    lmc_enc_id id;
    ck_assert_int_eq(lmc_st_weight_encoding("model.safetensors", x, &id, &err), 0);
    ck_assert_int_eq(id, LMC_ENC_F32);
    x = lmc_safetensors_find(&st, "ids");
    ck_assert_int_eq(lmc_st_weight_encoding("model.safetensors", x, &id, &err), -1);
    ck_assert_str_eq(err.msg, "model.safetensors: tensor ids has dtype I64, expected F16, BF16 "
                              "or F32");
    lmc_safetensors_close(&st);
}
END_TEST

START_TEST(write_converts)
{
    float a[5] = {1.0f, 1.0f + 3.0f / 256, -7.3f, 65504.0f, 1e-8f};
    lmc_st_write_tensor t[2] = {
        {.name = "bf", .dtype = "BF16", .ndim = 1, .shape = {5}, .data = a, .src_dtype = "F32"},
        {.name = "h", .dtype = "F16", .ndim = 1, .shape = {5}, .data = a, .src_dtype = "F32"},
    };
    const char *p = tmp_path("conv.safetensors");
    lmc_error err;
    ck_assert_msg(lmc_safetensors_write(p, t, 2, NULL, &err) == 0, "%s", err.msg);
    lmc_safetensors st;
    ck_assert_msg(lmc_safetensors_open(p, &st, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(st.n_meta, 0);
    const lmc_st_tensor *bf = lmc_safetensors_find(&st, "bf"), *h = lmc_safetensors_find(&st, "h");
    ck_assert_str_eq(bf->dtype, "BF16");
    for (int i = 0; i < 5; i++) {
        uint16_t v, w;
        memcpy(&v, bf->data + 2 * i, 2);
        memcpy(&w, h->data + 2 * i, 2);
        ck_assert_uint_eq(v, lmc_f32_to_bf16(a[i]));
        ck_assert_uint_eq(w, lmc_f32_to_f16(a[i]));
    }
    lmc_safetensors_close(&st);

    /* a finite value beyond float16's range is an error, and no file is left */
    float big[2] = {1.0f, 1e6f};
    lmc_st_write_tensor o = {.name = "big", .dtype = "F16", .ndim = 1, .shape = {2}, .data = big,
                             .src_dtype = "F32"};
    const char *q = tmp_path("overflow.safetensors");
    ck_assert_int_eq(lmc_safetensors_write(q, &o, 1, NULL, &err), -1);
    ck_assert(strstr(err.msg, "overflows float16") != NULL);
    ck_assert(strstr(err.msg, "big") != NULL);
    ck_assert(!lmc_file_exists(q));
    /* converting an integer tensor is refused */
    int32_t iv[2] = {1, 2};
    lmc_st_write_tensor ii = {.name = "i", .dtype = "F16", .ndim = 1, .shape = {2}, .data = iv,
                              .src_dtype = "I32"};
    ck_assert_int_eq(lmc_safetensors_write(q, &ii, 1, NULL, &err), -1);
    ck_assert(strstr(err.msg, "cannot convert I32") != NULL);
    /* duplicate names */
    lmc_st_write_tensor dup[2] = {o, o};
    dup[0].src_dtype = dup[1].src_dtype = NULL;
    dup[0].dtype = dup[1].dtype = "F32";
    ck_assert_int_eq(lmc_safetensors_write(q, dup, 2, NULL, &err), -1);
    ck_assert(strstr(err.msg, "given twice") != NULL);
    ck_assert(!lmc_file_exists(q));
}
END_TEST

START_TEST(malformed)
{
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    /* the valid baseline opens */
    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(craft("ok.st", ok, -1, 8), &st, &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(st.n_tensors, 1);
    lmc_safetensors_close(&st);

    /* shorter than the 8-byte length */
    const char *p = tmp_path("short.st");
    FILE *f = fopen(p, "wb");
    fwrite("\x05\x00\x00", 1, 3, f);
    fclose(f);
    expect_fail(p, "too short");
    expect_fail(craft("empty.st", "", 0, 0), "not a JSON object");
    expect_fail(craft("beyond.st", ok, 1000, 8), "beyond the end of the file");
    expect_fail(craft("huge.st", ok, 200000000LL, 8), "100 MB");
    expect_fail(craft("badjson.st", "{\"a\": {\"dtype\": ", -1, 0), "not valid JSON");
    expect_fail(craft("array.st", "[1, 2]   ", -1, 0), "not a JSON object");
    expect_fail(craft("trailing.st", "{}xx", -1, 0), "trailing bytes");
    /* truncated data: the header promises 8 bytes, the file has 5 */
    expect_fail(craft("truncated.st", ok, -1, 5), "file truncated");
    expect_fail(craft("longer.st", ok, -1, 12), "4 unexplained trailing bytes");
    expect_fail(craft("overlap.st",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      -1, 12),
                "overlaps");
    expect_fail(craft("gap.st",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                      -1, 20),
                "bytes [8, 12) of the data area belong to no tensor");
    expect_fail(craft("gapstart.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      -1, 12),
                "belong to no tensor");
    expect_fail(craft("size.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                      -1, 8),
                "needs 12 bytes");
    expect_fail(craft("size2.st",
                      "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", -1,
                      4),
                "needs 8 bytes");
    expect_fail(craft("dtype.st", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                      -1, 8),
                "unknown dtype 'Q4'");
    expect_fail(craft("nodtype.st", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8),
                "no string 'dtype'");
    expect_fail(craft("noshape.st", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", -1, 8),
                "no 'shape' array");
    expect_fail(craft("negshape.st",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, 8),
                "not a non-negative integer");
    expect_fail(craft("fracshape.st",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", -1,
                      8),
                "not a non-negative integer");
    expect_fail(craft("hugeshape.st",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,8]}}",
                      -1, 8),
                "too large");
    expect_fail(craft("nooff.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", -1, 8),
                "data_offsets");
    expect_fail(craft("backoff.st",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", -1, 8),
                "end before they begin");
    expect_fail(craft("notobj.st", "{\"a\":5}", -1, 0), "not an object");
    expect_fail(craft("dup.st",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      -1, 8),
                "appears twice");
    expect_fail(craft("meta.st", "{\"__metadata__\":{\"format\":1}}", -1, 0), "not a string");
    expect_fail(craft("meta2.st", "{\"__metadata__\":[]}", -1, 0), "__metadata__ is not an object");
    expect_fail(tmp_path("does-not-exist.st"), "cannot open");
}
END_TEST

START_TEST(zero_sized_and_order)
{
    /* offsets tile even when the header lists tensors out of order and one is empty */
    const char *h = "{\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                    "\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[8,8]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                    "\"__metadata__\":{\"k\":\"v\"}}";
    lmc_safetensors st;
    lmc_error err;
    const char *p = craft("order.st", h, -1, 12);
    ck_assert_msg(lmc_safetensors_open(p, &st, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(st.n_tensors, 3);
    const lmc_st_tensor *a = lmc_safetensors_find(&st, "a"), *b = lmc_safetensors_find(&st, "b");
    ck_assert_ptr_eq(b->data, a->data + 8);
    ck_assert_uint_eq(b->data[0], (8 * 0x11) & 0xff);
    ck_assert_ptr_null(lmc_safetensors_find(&st, "z")->data);
    ck_assert_str_eq(lmc_safetensors_meta(&st, "k"), "v");
    /* the map survives the handle when taken over */
    lmc_mmap m = lmc_safetensors_take_map(&st);
    lmc_safetensors_close(&st);
    ck_assert_uint_eq(m.size, 8 + strlen(h) + 12);
    ck_assert_uint_eq(m.data[8 + strlen(h) + 9], (9 * 0x11) & 0xff);
    lmc_mmap_close(&m);
}
END_TEST

START_TEST(real_file)
{
    const char *p = lmc_test_data("llama-xs/model.safetensors");
    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(p, &st, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(st.n_tensors, 4 * 9 + 2);
    ck_assert_str_eq(lmc_safetensors_meta(&st, "format"), "pt");
    const lmc_st_tensor *e = lmc_safetensors_find(&st, "model.embed_tokens.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->dtype, "F16");
    ck_assert_int_eq(e->shape[0], 8192);
    ck_assert_int_eq(e->shape[1], 128);
    int64_t total = 0;
    for (int i = 0; i < st.n_tensors; i++)
        total += (int64_t)st.tensors[i].nbytes;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | st.map.data[i];
    ck_assert_int_eq(total, (int64_t)(st.map.size - 8 - n));

    /* rewriting with our writer reproduces every tensor */
    lmc_st_write_tensor *w = calloc((size_t)st.n_tensors, sizeof *w);
    for (int i = 0; i < st.n_tensors; i++) {
        w[i].name = st.tensors[i].name;
        w[i].dtype = st.tensors[i].dtype;
        w[i].ndim = st.tensors[i].ndim;
        memcpy(w[i].shape, st.tensors[i].shape, sizeof w[i].shape);
        w[i].data = st.tensors[i].data;
    }
    const char *q = tmp_path("copy.safetensors");
    ck_assert_msg(lmc_safetensors_write(q, w, st.n_tensors, NULL, &err) == 0, "%s", err.msg);
    lmc_safetensors c;
    ck_assert_msg(lmc_safetensors_open(q, &c, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(c.n_tensors, st.n_tensors);
    for (int i = 0; i < st.n_tensors; i++) {
        const lmc_st_tensor *x = lmc_safetensors_find(&c, st.tensors[i].name);
        ck_assert_ptr_nonnull(x);
        ck_assert_uint_eq(x->nbytes, st.tensors[i].nbytes);
        ck_assert(memcmp(x->data, st.tensors[i].data, x->nbytes) == 0);
    }
    lmc_safetensors_close(&c);
    free(w);
    lmc_safetensors_close(&st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_test(tc, roundtrip);
    tcase_add_test(tc, write_converts);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, zero_sized_and_order);
    tcase_add_test(tc, real_file);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
