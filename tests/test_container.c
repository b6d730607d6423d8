/* formats/container.c, formats/config_json.c, core/sha256.c. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <zlib.h>

#include "../formats/arch.h"
#include "../core/half.h"
#include "../core/sha256.h"
#include "../formats/config_json.h"
#include "../formats/container.h"
#include "testutil.h"

/* ---- helpers ---- */

static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state;
}

static void add_tensor(lmc_model *m, const char *name, int ndim, int64_t r, int64_t c,
                       lmc_enc_id id)
{
    lmc_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.ndim = ndim;
    t.shape[0] = r;
    t.shape[1] = ndim == 2 ? c : 1;
    t.enc = lmc_enc_dense(id);
    size_t n = (size_t)r * (size_t)t.shape[1];
    t.nbytes = n * (id == LMC_ENC_F32 ? 4 : 2);
    uint8_t *d = malloc(t.nbytes);
    for (size_t i = 0; i < n; i++) {
        float v = ((int)(rng() >> 8) % 2001 - 1000) / 512.0f;
        if (id == LMC_ENC_F32)
            memcpy(d + 4 * i, &v, 4);
        else {
            uint16_t h = id == LMC_ENC_F16 ? lmc_f32_to_f16(v) : lmc_f32_to_bf16(v);
            memcpy(d + 2 * i, &h, 2);
        }
    }
    t.data = d;
    t.owned = d;
    lmc_error err;
    ck_assert_int_eq(lmc_model_set_tensor(m, &t, &err), 0);
}

/* A tiny LLaMA-shaped model with f16, bf16 and f32 tensors. */
static lmc_model *tiny_model(void)
{
    rng_state = 12345; /* every call builds the same model */
    lmc_model *m = calloc(1, sizeof *m);
    lmc_config *c = &m->cfg;
    c->arch = LMC_ARCH_LLAMA;
    lmc_arch_caps(c, NULL);
    strcpy(c->model_type, "llama");
    c->vocab = 16;
    c->hidden = 8;
    c->n_layers = 1;
    c->n_heads = 2;
    c->n_kv_heads = 1;
    c->head_dim = 4;
    c->ffn = 12;
    c->max_pos = 32;
    c->norm_is_rms = 1;
    c->norm_eps = 1e-5;
    c->act = LMC_ACT_SILU;
    c->rope_type = LMC_ROPE_LLAMA3;
    c->rope_theta = 500000.0;
    c->rope_factor = 8.0;
    c->rope_low_freq_factor = 1.0;
    c->rope_high_freq_factor = 4.0;
    c->rope_orig_max_pos = 8192;
    c->bos_id = 1;
    c->eos_id = -1;
    strcpy(c->src_dtype, "bfloat16");
    add_tensor(m, "embed.weight", 2, 16, 8, LMC_ENC_F16);
    add_tensor(m, "blk.0.attn_norm.weight", 1, 8, 1, LMC_ENC_F32);
    add_tensor(m, "blk.0.q.weight", 2, 8, 8, LMC_ENC_BF16);
    add_tensor(m, "blk.0.k.weight", 2, 4, 8, LMC_ENC_F16);
    add_tensor(m, "blk.0.v.weight", 2, 4, 8, LMC_ENC_F16);
    add_tensor(m, "blk.0.o.weight", 2, 8, 8, LMC_ENC_F32);
    add_tensor(m, "blk.0.ffn_norm.weight", 1, 8, 1, LMC_ENC_F32);
    add_tensor(m, "blk.0.gate.weight", 2, 12, 8, LMC_ENC_BF16);
    add_tensor(m, "blk.0.up.weight", 2, 12, 8, LMC_ENC_BF16);
    add_tensor(m, "blk.0.down.weight", 2, 8, 12, LMC_ENC_F16);
    add_tensor(m, "final_norm.weight", 1, 8, 1, LMC_ENC_F32);
    add_tensor(m, "head.weight", 2, 16, 8, LMC_ENC_F16);
    m->tokenizer_json = strdup("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\\u00e9\": 3}}}");
    m->tokenizer_json_len = strlen(m->tokenizer_json);
    m->config_json = strdup("{\"model_type\": \"llama\", \"note\": \"quotes \\\" and \\n\"}\n");
    m->provenance_json = strdup("[{\"tool\":\"lmc\",\"pass\":\"earlier\"}]");
    m->source_kind = LMC_SRC_CHECKPOINT;
    return m;
}

static const char *tmp(const char *name)
{
    static char buf[4][600];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 600, "%s/%s", lmc_test_tmpdir(), name);
    return b;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    char *d;
    lmc_error err;
    ck_assert_msg(lmc_read_file(path, &d, n, &err) == 0, "%s", err.msg);
    return (unsigned char *)d;
}

static void spit(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(d, 1, n, f), n);
    fclose(f);
}

/* Load must fail, naming the file and containing `what`. */
static void expect_fail(const char *path, const char *what)
{
    lmc_model *m = (lmc_model *)1;
    lmc_error err = {{0}};
    ck_assert_int_eq(lmc_container_load(path, &m, &err), -1);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message lacks the path: %s", err.msg);
    ck_assert_msg(strstr(err.msg, what) != NULL, "expected '%s' in: %s", what, err.msg);
}

static const char *good_file(void)
{
    static char path[600];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s", tmp("good.lmc"));
        lmc_model *m = tiny_model();
        lmc_error err;
        ck_assert_msg(lmc_container_write(m, path, "{\"pass\":\"test\",\"n\":1}", &err) == 0,
                      "%s", err.msg);
        lmc_model_free(m);
    }
    return path;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Header JSON of the good file (version 2: the data from byte 64, the
 * header at the offset the preamble gives, ending the file), parsed;
 * *hoff: where the header starts, i.e. where the data area ends. */
static cJSON *good_header(unsigned char **bytes, size_t *n, size_t *hoff)
{
    *bytes = slurp(good_file(), n);
    ck_assert_uint_eq(le32(*bytes + 8), 2);
    uint64_t hlen = le64(*bytes + 16);
    *hoff = (size_t)le64(*bytes + 24);
    ck_assert_uint_eq(*hoff + hlen, *n);
    cJSON *h = cJSON_ParseWithLength((const char *)*bytes + *hoff, hlen);
    ck_assert_ptr_nonnull(h);
    return h;
}

/* A container with header text `hdr` (fresh, correct CRC and length) and
 * the good file's data area. */
static void rebuild(const char *path, const char *hdr, const unsigned char *good, size_t hoff)
{
    size_t hlen = strlen(hdr), n = hoff + hlen;
    unsigned char *b = calloc(1, n);
    memcpy(b, good, hoff);
    put_le(b + 12, (uint32_t)crc32(0, (const Bytef *)hdr, (uInt)hlen), 4);
    put_le(b + 16, hlen, 8);
    memcpy(b + hoff, hdr, hlen);
    spit(path, b, n);
    free(b);
}

/* The same content in version 1's layout (24-byte preamble, header, zero
 * padding to 64, data): what lmc wrote before streaming, still readable. */
static void rebuild_v1(const char *path, const char *hdr, const unsigned char *good, size_t hoff)
{
    size_t hlen = strlen(hdr), ds = (24 + hlen + 63) / 64 * 64, n = ds + (hoff - 64);
    unsigned char *b = calloc(1, n);
    memcpy(b, good, 8);
    put_le(b + 8, 1, 4);
    put_le(b + 12, (uint32_t)crc32(0, (const Bytef *)hdr, (uInt)hlen), 4);
    put_le(b + 16, hlen, 8);
    memcpy(b + 24, hdr, hlen);
    memcpy(b + ds, good + 64, hoff - 64);
    spit(path, b, n);
    free(b);
}

/* Edit the good header with `edit`, rebuild, expect a failure with `what`. */
static void expect_header_edit_fails(void (*edit)(cJSON *h), const char *what)
{
    unsigned char *g;
    size_t n, ds;
    cJSON *h = good_header(&g, &n, &ds);
    edit(h);
    char *txt = cJSON_PrintUnformatted(h);
    const char *p = tmp("edited.lmc");
    (void)n;
    rebuild(p, txt, g, ds);
    expect_fail(p, what);
    free(txt);
    cJSON_Delete(h);
    free(g);
}

static cJSON *tensor_json(cJSON *h, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItem(h, "tensors"), i);
}

static void set_num(cJSON *o, const char *key, double v)
{
    cJSON_ReplaceItemInObject(o, key, cJSON_CreateNumber(v));
}

/* ---- tests ---- */

START_TEST(round_trip)
{
    lmc_model *a = tiny_model();
    const char *path = good_file();
    lmc_model *b;
    lmc_error err;
    ck_assert_msg(lmc_container_load(path, &b, &err) == 0, "%s", err.msg);
    ck_assert(lmc_container_sniff(path));
    ck_assert(!lmc_container_sniff("data/llama-xs/config.json"));
    ck_assert_int_eq(b->source_kind, LMC_SRC_CONTAINER);
    ck_assert_str_eq(b->source_path, path);

    /* every config field */
#define EQ(f) ck_assert_msg(a->cfg.f == b->cfg.f, "config field " #f)
    EQ(arch); EQ(vocab); EQ(hidden); EQ(n_layers); EQ(n_heads); EQ(n_kv_heads); EQ(head_dim);
    EQ(ffn); EQ(max_pos); EQ(pos_offset); EQ(tied); EQ(norm_is_rms); EQ(norm_eps); EQ(act);
    EQ(qkv_bias); EQ(o_bias); EQ(mlp_bias); EQ(rope_type); EQ(rope_theta); EQ(rope_factor);
    EQ(rope_low_freq_factor); EQ(rope_high_freq_factor); EQ(rope_orig_max_pos); EQ(bos_id);
    EQ(eos_id);
#undef EQ
    ck_assert_str_eq(a->cfg.model_type, b->cfg.model_type);
    ck_assert_str_eq(a->cfg.src_dtype, b->cfg.src_dtype);

    ck_assert_str_eq(b->tokenizer_json, a->tokenizer_json);
    ck_assert_uint_eq(b->tokenizer_json_len, a->tokenizer_json_len);
    ck_assert_str_eq(b->config_json, a->config_json);

    /* provenance: the earlier record, then the appended one */
    cJSON *p = cJSON_Parse(b->provenance_json);
    ck_assert(cJSON_IsArray(p));
    ck_assert_int_eq(cJSON_GetArraySize(p), 2);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(p, 0), "pass")->valuestring,
                     "earlier");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(p, 1), "pass")->valuestring, "test");
    cJSON_Delete(p);

    ck_assert_int_eq(b->n_tensors, a->n_tensors);
    ck_assert_int_eq(lmc_model_params(b), lmc_model_params(a));
    for (int i = 0; i < a->n_tensors; i++) {
        const lmc_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->ndim, y->ndim);
        ck_assert_int_eq(x->shape[0], y->shape[0]);
        ck_assert_int_eq(x->shape[1], y->shape[1]);
        ck_assert_int_eq(x->enc.id, y->enc.id);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_ptr_null(y->owned);
        ck_assert_uint_eq((uintptr_t)y->data % 64, 0); /* mmap-friendly alignment */
        ck_assert(memcmp(x->data, y->data, x->nbytes) == 0);
    }

    /* a second generation appends again; writing is deterministic */
    const char *p2 = tmp("gen2.lmc"), *p3 = tmp("gen2b.lmc");
    ck_assert_msg(lmc_container_write(b, p2, "{\"pass\":\"again\"}", &err) == 0, "%s", err.msg);
    ck_assert_msg(lmc_container_write(b, p3, "{\"pass\":\"again\"}", &err) == 0, "%s", err.msg);
    size_t n2, n3;
    unsigned char *d2 = slurp(p2, &n2), *d3 = slurp(p3, &n3);
    ck_assert_uint_eq(n2, n3);
    ck_assert(memcmp(d2, d3, n2) == 0);
    free(d2);
    free(d3);
    lmc_model *c;
    ck_assert_msg(lmc_container_load(p2, &c, &err) == 0, "%s", err.msg);
    p = cJSON_Parse(c->provenance_json);
    ck_assert_int_eq(cJSON_GetArraySize(p), 3);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(p, 2), "pass")->valuestring, "again");
    cJSON_Delete(p);
    lmc_model_free(c);

    /* no tokenizer, no hf config, no provenance: all optional */
    free(b->tokenizer_json);
    free(b->config_json);
    free(b->provenance_json);
    b->tokenizer_json = b->config_json = b->provenance_json = NULL;
    b->tokenizer_json_len = 0;
    ck_assert_msg(lmc_container_write(b, p2, NULL, &err) == 0, "%s", err.msg);
    ck_assert_msg(lmc_container_load(p2, &c, &err) == 0, "%s", err.msg);
    ck_assert_ptr_null(c->tokenizer_json);
    ck_assert_ptr_null(c->config_json);
    ck_assert_str_eq(c->provenance_json, "[]");
    ck_assert(memcmp(c->tensors[5].data, a->tensors[5].data, a->tensors[5].nbytes) == 0);
    lmc_model_free(c);
    lmc_model_free(b);
    lmc_model_free(a);
}
END_TEST

START_TEST(every_flipped_byte_detected)
{
    /* CRCs over header and blobs, zero padding, checked preamble: flipping
     * any single bit of the file must make the load fail. */
    size_t n;
    unsigned char *d = slurp(good_file(), &n);
    const char *p = tmp("flip.lmc");
    spit(p, d, n);
    FILE *f = fopen(p, "r+b");
    ck_assert_ptr_nonnull(f);
    int crc_msgs = 0, pad_msgs = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = d[i] ^ (unsigned char)(1u << (i % 8));
        fseek(f, (long)i, SEEK_SET);
        fputc(x, f);
        fflush(f);
        lmc_model *m;
        lmc_error err;
        int rc = lmc_container_load(p, &m, &err);
        ck_assert_msg(rc == -1, "flip at byte %zu of %zu not detected", i, n);
        ck_assert_msg(strstr(err.msg, p) != NULL, "%s", err.msg);
        crc_msgs += strstr(err.msg, "CRC") != NULL;
        pad_msgs += strstr(err.msg, "padding") != NULL;
        fseek(f, (long)i, SEEK_SET);
        fputc(d[i], f);
        fflush(f);
    }
    fclose(f);
    ck_assert_int_gt(crc_msgs, (int)n / 2);
    ck_assert_int_gt(pad_msgs, 0);
    /* restored file loads again */
    lmc_model *m;
    lmc_error err;
    ck_assert_msg(lmc_container_load(p, &m, &err) == 0, "%s", err.msg);
    lmc_model_free(m);
    free(d);
}
END_TEST

START_TEST(targeted_corruption)
{
    size_t n;
    unsigned char *d = slurp(good_file(), &n);
    const char *p = tmp("bad.lmc");
    lmc_model *m;
    lmc_error err;
    ck_assert_msg(lmc_container_load(good_file(), &m, &err) == 0, "%s", err.msg);
    size_t q_off = (size_t)(m->tensors[2].data - m->maps[0].data);
    size_t hlen = (size_t)le64(d + 16), hoff = (size_t)le64(d + 24);
    lmc_model_free(m);

    /* (a) header byte */
    d[hoff + hlen / 2] ^= 0x20;
    spit(p, d, n);
    expect_fail(p, "header CRC mismatch");
    d[hoff + hlen / 2] ^= 0x20;
    /* (b) tensor data: names the tensor */
    d[q_off + 3] ^= 0x01;
    spit(p, d, n);
    expect_fail(p, "tensor blk.0.q.weight: CRC mismatch");
    d[q_off + 3] ^= 0x01;
    /* (c) the preamble's reserved bytes */
    d[40] = 0xff;
    spit(p, d, n);
    expect_fail(p, "corrupt");
    d[40] = 0;
    /* bytes appended after the header */
    unsigned char *longer = calloc(1, n + 64);
    memcpy(longer, d, n);
    spit(p, longer, n + 64);
    expect_fail(p, "corrupt");
    free(longer);

    /* wrong magic; not a container at all; empty file */
    d[1] = 'X';
    spit(p, d, n);
    expect_fail(p, "wrong magic");
    d[1] = 'L';
    spit(p, "hello world, this is text and not a container", 45);
    expect_fail(p, "wrong magic");
    spit(p, "", 0);
    expect_fail(p, "wrong magic");
    /* unsupported version */
    d[8] = 3;
    spit(p, d, n);
    expect_fail(p, "unsupported container version 3");
    d[8] = 2;
    /* header length beyond the file */
    put_le(d + 16, n + 100, 8);
    spit(p, d, n);
    expect_fail(p, "truncated or corrupt");
    put_le(d + 16, hlen, 8);
    /* what a killed writer leaves: the preamble never filled in */
    unsigned char *cut = malloc(hoff);
    memcpy(cut, d, hoff);
    memset(cut + 12, 0, 20);
    spit(p, cut, hoff);
    expect_fail(p, "incomplete container");
    free(cut);
    /* truncated at several cut points: preamble, data, tensor, header, last
     * byte */
    size_t cuts[] = {4, 12, 23, 40, 63, 64 + 5, q_off + 7, hoff + hlen / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(p, d, cuts[i]);
        expect_fail(p, "truncated");
    }
    /* intact again */
    spit(p, d, n);
    ck_assert_msg(lmc_container_load(p, &m, &err) == 0, "%s", err.msg);
    lmc_model_free(m);
    free(d);
}
END_TEST

START_TEST(version_1_still_loads)
{
    unsigned char *g;
    size_t n, hoff;
    cJSON *h = good_header(&g, &n, &hoff);
    cJSON_ReplaceItemInObject(h, "format_version", cJSON_CreateNumber(1));
    char *txt = cJSON_PrintUnformatted(h);
    const char *p = tmp("v1.lmc");
    rebuild_v1(p, txt, g, hoff);
    lmc_model *a, *b;
    lmc_error err;
    ck_assert_msg(lmc_container_load(p, &a, &err) == 0, "%s", err.msg);
    ck_assert_msg(lmc_container_load(good_file(), &b, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        ck_assert_str_eq(a->tensors[i].name, b->tensors[i].name);
        ck_assert_uint_eq(a->tensors[i].nbytes, b->tensors[i].nbytes);
        ck_assert(!memcmp(a->tensors[i].data, b->tensors[i].data, a->tensors[i].nbytes));
    }
    ck_assert_str_eq(a->tokenizer_json, b->tokenizer_json);
    /* a version 1 header in a version 2 file (or the reverse) is refused */
    rebuild(p, txt, g, hoff);
    expect_fail(p, "format_version 1, the preamble says 2");
    lmc_model_free(a);
    lmc_model_free(b);
    free(txt);
    cJSON_Delete(h);
    free(g);
}
END_TEST

static void edit_unknown_id(cJSON *h)
{
    cJSON *e = cJSON_GetObjectItem(tensor_json(h, 0), "encoding");
    set_num(e, "id", 99);
    cJSON_DeleteItemFromObject(e, "name");
}
static void edit_name_mismatch(cJSON *h)
{
    cJSON *e = cJSON_GetObjectItem(tensor_json(h, 0), "encoding");
    cJSON_ReplaceItemInObject(e, "name", cJSON_CreateString("bf16"));
}
static void edit_overlap(cJSON *h)
{
    cJSON *t = tensor_json(h, 1);
    set_num(t, "offset", cJSON_GetObjectItem(tensor_json(h, 0), "offset")->valuedouble);
}
static void edit_unaligned(cJSON *h) { set_num(tensor_json(h, 1), "offset",
                                               cJSON_GetObjectItem(tensor_json(h, 1), "offset")->valuedouble + 2); }
static void edit_nbytes(cJSON *h) { set_num(tensor_json(h, 0), "nbytes", 254); }
static void edit_out_of_range(cJSON *h) { set_num(tensor_json(h, 11), "offset", 1 << 20); }
static void edit_kv_heads(cJSON *h) { set_num(cJSON_GetObjectItem(h, "config"), "n_kv_heads", 3); }
static void edit_hidden(cJSON *h) { set_num(cJSON_GetObjectItem(h, "config"), "hidden", 16); }
static void edit_missing_field(cJSON *h)
{
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(h, "config"), "rope_theta");
}
static void edit_bad_arch(cJSON *h)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(h, "config"), "arch",
                              cJSON_CreateString("bloom"));
}
static void edit_tied(cJSON *h) { set_num(cJSON_GetObjectItem(h, "config"), "tied", 1); }
static void edit_layers(cJSON *h)
{
    cJSON_ReplaceItemInObject(tensor_json(h, 2), "name", cJSON_CreateString("blk.1.q.weight"));
}
static void edit_dup(cJSON *h)
{
    cJSON_ReplaceItemInObject(tensor_json(h, 4), "name", cJSON_CreateString("blk.0.k.weight"));
}
static void edit_shape(cJSON *h)
{
    cJSON *s = cJSON_GetObjectItem(tensor_json(h, 3), "shape");
    cJSON_ReplaceItemInArray(s, 0, cJSON_CreateNumber(-4));
}
static void edit_version(cJSON *h) { set_num(h, "format_version", 3); }
static void edit_crc(cJSON *h)
{
    cJSON *t = tensor_json(h, 5);
    set_num(t, "crc32", (double)(((uint32_t)cJSON_GetObjectItem(t, "crc32")->valuedouble) ^ 1u));
}

START_TEST(header_validation)
{
    expect_header_edit_fails(edit_unknown_id, "unknown encoding id 99");
    expect_header_edit_fails(edit_name_mismatch, "encoding name does not match");
    expect_header_edit_fails(edit_overlap, "overlaps");
    expect_header_edit_fails(edit_unaligned, "not 64-byte aligned");
    expect_header_edit_fails(edit_nbytes, "needs 256");
    expect_header_edit_fails(edit_out_of_range, "truncated or corrupt");
    expect_header_edit_fails(edit_kv_heads, "inconsistent config");
    expect_header_edit_fails(edit_hidden, "config implies");
    expect_header_edit_fails(edit_missing_field, "missing field 'rope_theta'");
    expect_header_edit_fails(edit_bad_arch, "unknown arch 'bloom'");
    expect_header_edit_fails(edit_tied, "tied embeddings but head.weight present");
    expect_header_edit_fails(edit_layers, "config has 1 layers");
    expect_header_edit_fails(edit_dup, "duplicate tensor blk.0.k.weight");
    expect_header_edit_fails(edit_shape, "bad shape");
    expect_header_edit_fails(edit_version, "format_version 3");
    expect_header_edit_fails(edit_crc, "tensor blk.0.o.weight: CRC mismatch");

    /* not JSON, and JSON that is not an object (both with a valid CRC) */
    unsigned char *g;
    size_t n, ds;
    cJSON *h = good_header(&g, &n, &ds);
    cJSON_Delete(h);
    const char *p = tmp("json.lmc");
    rebuild(p, "{\"format_version\": 2, \"config\": {", g, ds);
    expect_fail(p, "not valid JSON");
    rebuild(p, "[1, 2, 3]", g, ds);
    expect_fail(p, "not a JSON object");
    free(g);
}
END_TEST

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        k += e->d_name[0] != '.';
    closedir(d);
    return k;
}

START_TEST(write_failures_leave_nothing)
{
    lmc_model *m = tiny_model();
    lmc_error err;
    /* missing directory */
    const char *p = tmp("missing/x.lmc");
    ck_assert_int_eq(lmc_container_write(m, p, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, p) != NULL, "%s", err.msg);
    ck_assert(!lmc_file_exists(p));

    /* a model the reader would refuse is never written */
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tmp("wdir"));
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    char out[700];
    snprintf(out, sizeof out, "%s/y.lmc", dir);
    m->tensors[3].enc.id = (lmc_enc_id)99;
    ck_assert_int_eq(lmc_container_write(m, out, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "unknown encoding id 99"), "%s", err.msg);
    m->tensors[3].enc.id = LMC_ENC_F16;
    m->tensors[3].nbytes -= 2;
    ck_assert_int_eq(lmc_container_write(m, out, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.0.k.weight"), "%s", err.msg);
    m->tensors[3].nbytes += 2;
    ck_assert_int_eq(lmc_container_write(m, out, "[\"not an object\"]", &err), -1);
    ck_assert_msg(strstr(err.msg, "not a JSON object"), "%s", err.msg);
    m->cfg.n_kv_heads = 3;
    ck_assert_int_eq(lmc_container_write(m, out, NULL, &err), -1);
    m->cfg.n_kv_heads = 1;
    ck_assert_int_eq(dir_entries(dir), 0);

    /* non-writable directory (root ignores permissions: skip that part) */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(dir, 0555), 0);
        ck_assert_int_eq(lmc_container_write(m, out, NULL, &err), -1);
        ck_assert_msg(strstr(err.msg, out) != NULL, "%s", err.msg);
        ck_assert_int_eq(dir_entries(dir), 0);
        chmod(dir, 0755);
    } else {
        printf("SKIP: running as root, non-writable directory not testable\n");
    }
    /* a parent that is a regular file */
    char under_file[700];
    snprintf(under_file, sizeof under_file, "%s/y.lmc/z.lmc", dir);
    ck_assert_int_eq(lmc_container_write(m, out, NULL, &err), 0);
    ck_assert_int_eq(lmc_container_write(m, under_file, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, under_file) != NULL, "%s", err.msg);
    unlink(out);
    ck_assert_int_eq(dir_entries(dir), 0);

    /* the disk fills up half-way through (file size limit): the temporary
     * file is removed and nothing appears */
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 2048;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = lmc_container_write(m, out, NULL, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err.msg, out) != NULL, "%s", err.msg);
    ck_assert_int_eq(dir_entries(dir), 0);

    /* and the good path still works, leaving exactly the output */
    ck_assert_msg(lmc_container_write(m, out, NULL, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(dir_entries(dir), 1);
    lmc_model_free(m);
}
END_TEST

START_TEST(config_json_round_trip)
{
    lmc_model *m = tiny_model();
    cJSON *j = lmc_config_to_json(&m->cfg);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "arch")->valuestring, "llama");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "rope_type")->valuestring, "llama3");
    char *txt = cJSON_PrintUnformatted(j);
    cJSON *k = cJSON_Parse(txt);
    lmc_config c;
    lmc_error err;
    ck_assert_msg(lmc_config_from_json(k, &c, "x", &err) == 0, "%s", err.msg);
    ck_assert(c.norm_eps == m->cfg.norm_eps && c.rope_theta == m->cfg.rope_theta);
    ck_assert_int_eq(c.eos_id, -1);
    ck_assert_int_eq(lmc_config_check(&c, "x", &err), 0);
    /* a fractional integer is refused */
    cJSON_ReplaceItemInObject(k, "hidden", cJSON_CreateNumber(8.5));
    ck_assert_int_eq(lmc_config_from_json(k, &c, "x", &err), -1);
    ck_assert_msg(strstr(err.msg, "'hidden'"), "%s", err.msg);
    free(txt);
    cJSON_Delete(j);
    cJSON_Delete(k);
    lmc_model_free(m);
}
END_TEST

/* A stand-in encoding whose size depends on every parameter, registered
 * under an unused id: the container must carry all lmc_encoding fields
 * without knowing what they mean. */
static int fake_validate(const lmc_encoding *e, int64_t rows, int64_t cols, lmc_error *err)
{
    (void)rows;
    (void)cols;
    return e->bits > 0 ? 0 : lmc_fail(err, "bits must be positive");
}
static size_t fake_nbytes(const lmc_encoding *e, int64_t rows, int64_t cols)
{
    return (size_t)(rows + cols) + (size_t)(e->bits + e->group + e->sym + e->has_gidx + e->n +
                                            e->m + e->inner + e->rank + e->n_outlier +
                                            e->has_smooth) + (size_t)(e->nnz % 1000);
}
static const lmc_enc_traits fake_traits = {
    .id = (lmc_enc_id)100, .name = "fake", .validate = fake_validate, .nbytes = fake_nbytes};

START_TEST(encoding_params_round_trip)
{
    lmc_encodings_init();
    lmc_enc_register(&fake_traits);
    lmc_model *m = tiny_model();
    lmc_tensor *t = lmc_model_find(m, "blk.0.down.weight");
    lmc_encoding e = {0};
    e.id = (lmc_enc_id)100;
    e.bits = 3;
    e.group = -1;
    e.sym = 1;
    e.has_gidx = 1;
    e.n = 2;
    e.m = 4;
    e.inner = LMC_ENC_QGROUP;
    e.nnz = 123456789012LL;
    e.rank = 5;
    e.n_outlier = 7;
    e.has_smooth = 1;
    free(t->owned);
    t->enc = e;
    t->nbytes = fake_nbytes(&e, t->shape[0], t->shape[1]);
    t->owned = malloc(t->nbytes);
    memset(t->owned, 0xa5, t->nbytes);
    t->data = t->owned;
    const char *p = tmp("fake.lmc");
    lmc_error err;
    ck_assert_msg(lmc_container_write(m, p, NULL, &err) == 0, "%s", err.msg);
    lmc_model *b;
    ck_assert_msg(lmc_container_load(p, &b, &err) == 0, "%s", err.msg);
    const lmc_tensor *u = lmc_model_find(b, "blk.0.down.weight");
    ck_assert_int_eq(u->enc.id, 100);
    ck_assert_int_eq(u->enc.bits, 3);
    ck_assert_int_eq(u->enc.group, -1);
    ck_assert_int_eq(u->enc.sym, 1);
    ck_assert_int_eq(u->enc.has_gidx, 1);
    ck_assert_int_eq(u->enc.n, 2);
    ck_assert_int_eq(u->enc.m, 4);
    ck_assert_int_eq(u->enc.inner, LMC_ENC_QGROUP);
    ck_assert(u->enc.nnz == 123456789012LL);
    ck_assert_int_eq(u->enc.rank, 5);
    ck_assert_int_eq(u->enc.n_outlier, 7);
    ck_assert_int_eq(u->enc.has_smooth, 1);
    ck_assert_uint_eq(u->nbytes, t->nbytes);
    ck_assert(memcmp(u->data, t->data, t->nbytes) == 0);
    /* the encoding's own validate runs on load too */
    lmc_model_free(b);
    t->enc.bits = 0;
    ck_assert_int_eq(lmc_container_write(m, tmp("fake2.lmc"), NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "bits must be positive"), "%s", err.msg);
    lmc_model_free(m);
}
END_TEST

/* Raw safetensors of llama-xs, mapped to canonical names, compared bit for
 * bit with the container's tensors. */
static const char *canon(const char *hf, char *buf, size_t n)
{
    int l, used = 0;
    char rest[128];
    if (!strcmp(hf, "model.embed_tokens.weight"))
        return "embed.weight";
    if (!strcmp(hf, "model.norm.weight"))
        return "final_norm.weight";
    if (!strcmp(hf, "lm_head.weight"))
        return "head.weight";
    if (sscanf(hf, "model.layers.%d.%127s%n", &l, rest, &used) != 2)
        return NULL;
    static const char *map[][2] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "q.weight"}, {"self_attn.k_proj.weight", "k.weight"},
        {"self_attn.v_proj.weight", "v.weight"}, {"self_attn.o_proj.weight", "o.weight"},
        {"mlp.gate_proj.weight", "gate.weight"}, {"mlp.up_proj.weight", "up.weight"},
        {"mlp.down_proj.weight", "down.weight"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(rest, map[i][0])) {
            snprintf(buf, n, "blk.%d.%s", l, map[i][1]);
            return buf;
        }
    return NULL;
}

START_TEST(convert_llama_xs)
{
    lmc_model *src;
    lmc_error err;
    ck_assert_msg(lmc_model_load("data/llama-xs", &src, &err) == 0, "%s", err.msg);
    const char *p = tmp("llama-xs.lmc");
    ck_assert_msg(lmc_container_write(src, p, "{\"pass\":\"convert\"}", &err) == 0, "%s", err.msg);
    lmc_model *m;
    ck_assert_msg(lmc_container_load(p, &m, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(lmc_model_params(m), 1787008);
    ck_assert_int_eq(lmc_model_params(src), 1787008);
    ck_assert_int_eq(m->n_tensors, src->n_tensors);
    ck_assert_str_eq(m->tokenizer_json, src->tokenizer_json);
    ck_assert_int_eq(m->cfg.hidden, 128);
    ck_assert_int_eq(m->cfg.n_kv_heads, 2);
    ck_assert_int_eq(m->cfg.tied, 1);

    size_t n;
    unsigned char *st = slurp("data/llama-xs/model.safetensors", &n);
    uint64_t hl = le32(st) | (uint64_t)le32(st + 4) << 32;
    cJSON *h = cJSON_ParseWithLength((const char *)st + 8, hl);
    ck_assert_ptr_nonnull(h);
    int compared = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, h)
    {
        if (!strcmp(e->string, "__metadata__"))
            continue;
        char buf[64];
        const char *name = canon(e->string, buf, sizeof buf);
        ck_assert_msg(name != NULL, "unmapped %s", e->string);
        ck_assert_str_eq(cJSON_GetObjectItem(e, "dtype")->valuestring, "F16");
        cJSON *o = cJSON_GetObjectItem(e, "data_offsets");
        size_t b = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble;
        size_t end = (size_t)cJSON_GetArrayItem(o, 1)->valuedouble;
        lmc_tensor *t = lmc_model_find(m, name);
        ck_assert_msg(t != NULL, "%s missing", name);
        ck_assert_int_eq(t->enc.id, LMC_ENC_F16);
        ck_assert_uint_eq(t->nbytes, end - b);
        ck_assert_msg(memcmp(t->data, st + 8 + hl + b, end - b) == 0, "%s differs", name);
        compared++;
    }
    ck_assert_int_eq(compared, m->n_tensors);
    cJSON_Delete(h);
    free(st);
    lmc_model_free(m);
    lmc_model_free(src);
}
END_TEST

static void hex_of(const void *d, size_t n, char hex[65])
{
    uint8_t dig[32];
    lmc_sha256(d, n, dig);
    lmc_sha256_hex(dig, hex);
}

START_TEST(sha256_vectors)
{
    char hex[65];
    hex_of("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *s448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(s448, strlen(s448), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in uneven pieces to exercise the buffering */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    lmc_sha256_ctx c;
    lmc_sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t k = step < 1000000 - off ? step : 1000000 - off;
        lmc_sha256_update(&c, a + off, k);
        off += k;
        step = step * 3 % 997 + 1;
    }
    uint8_t d[32];
    lmc_sha256_final(&c, d);
    lmc_sha256_hex(d, hex);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* file variant agrees with one-shot */
    const char *p = tmp("million.txt");
    spit(p, a, 1000000);
    lmc_error err;
    ck_assert_int_eq(lmc_sha256_file(p, hex, &err), 0);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    ck_assert_int_eq(lmc_sha256_file(tmp("nope"), hex, &err), -1);
    free(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("container");
    TCase *tc = tcase_create("container");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, every_flipped_byte_detected);
    tcase_add_test(tc, targeted_corruption);
    tcase_add_test(tc, version_1_still_loads);
    tcase_add_test(tc, header_validation);
    tcase_add_test(tc, write_failures_leave_nothing);
    tcase_add_test(tc, config_json_round_trip);
    tcase_add_test(tc, encoding_params_round_trip);
    tcase_add_test(tc, convert_llama_xs);
    tcase_add_test(tc, sha256_vectors);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
