/* formats/hf_checkpoint + model_load: Hugging Face directories into the one
 * internal model. The repo copy of llama-xs and synthetic checkpoints
 * written here always run; the ../shared models run when present. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/encoding.h"
#include "../core/fileio.h"
#include "../core/half.h"
#include "../core/model.h"
#include "../formats/hf_checkpoint.h"
#include "../formats/hf_config.h"
#include "../formats/safetensors.h"
#include "testutil.h"

/* ------------------------------------------------------------- helpers */

static const char *subdir(const char *name)
{
    static char buf[16][512];
    static int k;
    char *b = buf[k++ & 15];
    snprintf(b, 512, "%s/%s", lmc_test_tmpdir(), name);
    mkdir(b, 0755);
    return b;
}

static const char *join(const char *dir, const char *name)
{
    static char buf[16][8192];
    static int k;
    char tmp[8192]; /* dir may be an earlier result of join */
    snprintf(tmp, sizeof tmp, "%s/%s", dir, name);
    char *b = buf[k++ & 15];
    memcpy(b, tmp, sizeof tmp);
    return b;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path)
{
    char *t;
    lmc_error err;
    ck_assert_msg(lmc_read_file(path, &t, NULL, &err) == 0, "%s", err.msg);
    return t;
}

/* Replace the first occurrence of a in s (heap) by b; returns a new string. */
static char *replace(const char *s, const char *a, const char *b)
{
    const char *p = strstr(s, a);
    ck_assert_ptr_nonnull(p);
    size_t n = strlen(s) - strlen(a) + strlen(b);
    char *r = malloc(n + 1);
    size_t k = (size_t)(p - s);
    memcpy(r, s, k);
    strcpy(r + k, b);
    strcat(r, p + strlen(a));
    return r;
}

typedef struct wlist {
    lmc_st_write_tensor t[256];
    char names[256][128];
    int n;
} wlist;

static lmc_st_write_tensor *wl_add(wlist *w, const char *name, const char *dtype, int ndim,
                                   int64_t r, int64_t c, const void *data)
{
    ck_assert_int_lt(w->n, 256);
    lmc_st_write_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    snprintf(w->names[w->n], sizeof w->names[0], "%s", name);
    t->name = w->names[w->n];
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = r;
    t->shape[1] = c;
    t->data = data;
    w->n++;
    return t;
}

static int wl_index(const wlist *w, const char *name)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return i;
    return -1;
}

static void wl_remove(wlist *w, const char *name)
{
    int i = wl_index(w, name);
    ck_assert_int_ge(i, 0);
    for (; i + 1 < w->n; i++) {
        w->t[i] = w->t[i + 1];
        memcpy(w->names[i], w->names[i + 1], sizeof w->names[0]);
        w->t[i].name = w->names[i];
    }
    w->n--;
}

/* The raw tensors of a safetensors file as a write list (data in st's map). */
static void wl_from(wlist *w, const lmc_safetensors *st)
{
    w->n = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        lmc_st_write_tensor *t = wl_add(w, st->tensors[i].name, st->tensors[i].dtype,
                                        st->tensors[i].ndim, 0, 0, st->tensors[i].data);
        memcpy(t->shape, st->tensors[i].shape, sizeof t->shape);
    }
}

static void write_ckpt(const char *dir, const char *config, const wlist *w)
{
    lmc_error err;
    write_text(join(dir, "config.json"), config);
    ck_assert_msg(lmc_safetensors_write(join(dir, "model.safetensors"), w->t, w->n, NULL, &err) ==
                      0,
                  "%s", err.msg);
}

static void expect_load_fail(const char *dir, const char *what)
{
    lmc_model *m = NULL;
    lmc_error err = {{0}};
    int rc = lmc_model_load(dir, &m, &err);
    lmc_model_free(m);
    ck_assert_msg(rc == -1, "%s loaded although it should fail with '%s'", dir, what);
    ck_assert_msg(strstr(err.msg, what) != NULL, "expected '%s' in: %s", what, err.msg);
}

static lmc_model *load_ok(const char *dir)
{
    lmc_model *m = NULL;
    lmc_error err;
    ck_assert_msg(lmc_model_load(dir, &m, &err) == 0, "%s", err.msg);
    ck_assert_ptr_nonnull(m);
    return m;
}

static float *decode(const lmc_tensor *t)
{
    size_t n = (size_t)(t->shape[0] * t->shape[1]);
    float *f = malloc(n * sizeof *f);
    lmc_error err;
    ck_assert_msg(lmc_enc_get(t->enc.id)->to_f32(&t->enc, t->data, t->shape[0], t->shape[1], f,
                                                  &err) == 0,
                  "%s", err.msg);
    return f;
}

static lmc_tensor *need(const lmc_model *m, const char *name)
{
    lmc_tensor *t = lmc_model_find(m, name);
    ck_assert_msg(t != NULL, "missing %s", name);
    return t;
}

static void check_shape(const lmc_model *m, const char *name, int64_t r, int64_t c)
{
    lmc_tensor *t = need(m, name);
    ck_assert_msg(t->shape[0] == r && t->shape[1] == c, "%s is [%lld,%lld], want [%lld,%lld]",
                  name, (long long)t->shape[0], (long long)t->shape[1], (long long)r,
                  (long long)c);
}

/* The canonical tensor holds exactly the bytes of the raw HF tensor. */
static void same_bytes(const lmc_model *m, const char *canon, const lmc_safetensors *st,
                       const char *hf)
{
    const lmc_tensor *t = need(m, canon);
    const lmc_st_tensor *r = lmc_safetensors_find(st, hf);
    ck_assert_msg(r != NULL, "raw %s missing", hf);
    ck_assert_uint_eq(t->nbytes, r->nbytes);
    ck_assert_msg(memcmp(t->data, r->data, r->nbytes) == 0, "%s differs from %s", canon, hf);
}

static const char *xs_dir(void) { return lmc_test_data("llama-xs"); }

/* ------------------------------------------------------------ llama-xs */

START_TEST(llama_xs)
{
    lmc_model *m = load_ok(xs_dir());
    const lmc_config *c = &m->cfg;
    ck_assert_int_eq(c->arch, LMC_ARCH_LLAMA);
    int64_t params = lmc_model_params(m);
    printf("llama-xs params %lld\n", (long long)params);
    ck_assert_int_eq(params, 1787008);
    ck_assert_int_eq(m->n_tensors, 1 + 4 * 9 + 1);
    ck_assert_ptr_null(lmc_model_find(m, "head.weight")); /* tied */
    check_shape(m, "embed.weight", 8192, 128);
    check_shape(m, "blk.0.attn_norm.weight", 128, 1);
    check_shape(m, "blk.0.q.weight", 128, 128);
    check_shape(m, "blk.0.k.weight", 64, 128);
    check_shape(m, "blk.0.v.weight", 64, 128);
    check_shape(m, "blk.0.o.weight", 128, 128);
    check_shape(m, "blk.3.gate.weight", 352, 128);
    check_shape(m, "blk.3.up.weight", 352, 128);
    check_shape(m, "blk.3.down.weight", 128, 352);
    check_shape(m, "blk.3.ffn_norm.weight", 128, 1);
    check_shape(m, "final_norm.weight", 128, 1);
    ck_assert_int_eq(need(m, "final_norm.weight")->ndim, 1);
    ck_assert_ptr_null(lmc_model_find(m, "blk.0.q.bias"));
    ck_assert_ptr_null(lmc_model_find(m, "blk.4.q.weight"));
    for (int i = 0; i < m->n_tensors; i++) {
        ck_assert_int_eq(m->tensors[i].enc.id, LMC_ENC_F16);
        ck_assert_ptr_null(m->tensors[i].owned); /* all point into the map */
        ck_assert_uint_eq(m->tensors[i].nbytes,
                          (size_t)(m->tensors[i].shape[0] * m->tensors[i].shape[1]) * 2);
    }
    ck_assert_str_eq(c->src_dtype, "float16");
    ck_assert_int_eq(m->source_kind, LMC_SRC_CHECKPOINT);
    ck_assert_str_eq(m->source_path, xs_dir());
    ck_assert_int_eq(m->n_maps, 1);
    ck_assert_ptr_nonnull(m->tokenizer_json);
    ck_assert_uint_eq(strlen(m->tokenizer_json), m->tokenizer_json_len);
    ck_assert(strstr(m->tokenizer_json, "\"model\"") != NULL);
    ck_assert_ptr_nonnull(m->config_json);
    ck_assert(strstr(m->config_json, "\"model_type\": \"llama\"") != NULL);
    ck_assert_ptr_null(m->provenance_json);

    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(join(xs_dir(), "model.safetensors"), &st, &err) == 0, "%s",
                  err.msg);
    same_bytes(m, "embed.weight", &st, "model.embed_tokens.weight");
    same_bytes(m, "blk.2.gate.weight", &st, "model.layers.2.mlp.gate_proj.weight");
    same_bytes(m, "blk.1.attn_norm.weight", &st, "model.layers.1.input_layernorm.weight");
    same_bytes(m, "blk.1.ffn_norm.weight", &st, "model.layers.1.post_attention_layernorm.weight");
    same_bytes(m, "blk.3.o.weight", &st, "model.layers.3.self_attn.o_proj.weight");
    same_bytes(m, "final_norm.weight", &st, "model.norm.weight");
    ck_assert_ptr_eq(lmc_model_block_tensor(m, 2, "v", "weight")->data,
                     lmc_safetensors_find(&st, "model.layers.2.self_attn.v_proj.weight")->data -
                         (const uint8_t *)st.map.data + m->maps[0].data);
    lmc_safetensors_close(&st);
    lmc_model_free(m);
}
END_TEST

/* -------------------------------------------------- the shared models */

START_TEST(shared_llama_s_sharded)
{
    const char *dir = lmc_test_shared_path("models/llama-s");
    if (!dir)
        return;
    lmc_model *m = load_ok(dir);
    int64_t params = lmc_model_params(m);
    printf("llama-s params %lld\n", (long long)params);
    ck_assert_int_eq(params, 9998592);
    ck_assert_int_eq(m->n_maps, 3);
    ck_assert_int_eq(m->cfg.tied, 0);
    check_shape(m, "head.weight", 8192, 256);
    check_shape(m, "blk.7.q.weight", 256, 256);
    check_shape(m, "blk.7.k.weight", 128, 256);
    check_shape(m, "blk.7.down.weight", 256, 688);
    ck_assert_int_eq(m->n_tensors, 1 + 8 * 9 + 1 + 1);
    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(join(dir, "model-00003-of-00003.safetensors"), &st, &err) ==
                      0,
                  "%s", err.msg);
    same_bytes(m, "head.weight", &st, "lm_head.weight");
    lmc_safetensors_close(&st);
    ck_assert_msg(lmc_safetensors_open(join(dir, "model-00001-of-00003.safetensors"), &st, &err) ==
                      0,
                  "%s", err.msg);
    same_bytes(m, "blk.0.q.weight", &st, "model.layers.0.self_attn.q_proj.weight");
    lmc_safetensors_close(&st);
    lmc_model_free(m);
}
END_TEST

START_TEST(shared_missing_shard)
{
    const char *src = lmc_test_shared_path("models/llama-s");
    if (!src)
        return;
    char abs[4096];
    ck_assert_ptr_nonnull(realpath(src, abs));
    const char *dir = subdir("llama-s-missing-shard");
    const char *keep[] = {"config.json", "model.safetensors.index.json",
                          "model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors",
                          NULL};
    for (int i = 0; keep[i]; i++)
        ck_assert_int_eq(symlink(join(abs, keep[i]), join(dir, keep[i])), 0);
    expect_load_fail(dir, "shard model-00002-of-00003.safetensors is missing");
}
END_TEST

START_TEST(shared_opt_s)
{
    const char *dir = lmc_test_shared_path("models/opt-s");
    if (!dir)
        return;
    lmc_model *m = load_ok(dir);
    int64_t params = lmc_model_params(m);
    printf("opt-s params %lld\n", (long long)params);
    ck_assert_int_eq(params, 7098880);
    ck_assert_ptr_null(lmc_model_find(m, "head.weight"));
    check_shape(m, "pos_embed.weight", 1026, 256); /* includes the 2 offset rows */
    check_shape(m, "blk.5.up.weight", 1024, 256);
    check_shape(m, "blk.5.down.weight", 256, 1024);
    check_shape(m, "blk.5.up.bias", 1024, 1);
    check_shape(m, "final_norm.bias", 256, 1);
    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(join(dir, "model.safetensors"), &st, &err) == 0, "%s",
                  err.msg);
    same_bytes(m, "pos_embed.weight", &st, "model.decoder.embed_positions.weight");
    same_bytes(m, "blk.0.o.bias", &st, "model.decoder.layers.0.self_attn.out_proj.bias");
    same_bytes(m, "blk.0.o.weight", &st, "model.decoder.layers.0.self_attn.out_proj.weight");
    same_bytes(m, "blk.2.attn_norm.bias", &st, "model.decoder.layers.2.self_attn_layer_norm.bias");
    same_bytes(m, "blk.2.ffn_norm.weight", &st, "model.decoder.layers.2.final_layer_norm.weight");
    same_bytes(m, "blk.4.up.weight", &st, "model.decoder.layers.4.fc1.weight");
    same_bytes(m, "blk.4.down.bias", &st, "model.decoder.layers.4.fc2.bias");
    same_bytes(m, "final_norm.weight", &st, "model.decoder.final_layer_norm.weight");
    lmc_safetensors_close(&st);
    lmc_model_free(m);
}
END_TEST

/* dst [out][in] must be src Conv1D [in][cols] columns col0.. transposed. */
static void check_transposed(const lmc_tensor *t, const lmc_st_tensor *r, int64_t col0)
{
    int64_t out = t->shape[0], in = t->shape[1], cols = r->shape[1];
    ck_assert_int_eq(r->shape[0], in);
    const uint16_t *d = (const uint16_t *)t->data;
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            uint16_t v;
            memcpy(&v, r->data + 2 * (size_t)(i * cols + col0 + o), 2);
            if (d[o * in + i] != v)
                ck_abort_msg("%s[%lld][%lld] != %s[%lld][%lld]", t->name, (long long)o,
                             (long long)i, r->name, (long long)i, (long long)(col0 + o));
        }
}

START_TEST(shared_gpt2_s)
{
    const char *dir = lmc_test_shared_path("models/gpt2-s");
    if (!dir)
        return;
    lmc_model *m = load_ok(dir);
    int64_t params = lmc_model_params(m);
    printf("gpt2-s params %lld\n", (long long)params);
    ck_assert_int_eq(params, 7098368);
    ck_assert_ptr_null(lmc_model_find(m, "head.weight"));
    check_shape(m, "pos_embed.weight", 1024, 256);
    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(join(dir, "model.safetensors"), &st, &err) == 0, "%s",
                  err.msg);
    for (int l = 0; l < 6; l += 5) {
        char nm[128];
#define RAW(suffix) (snprintf(nm, sizeof nm, "transformer.h.%d.%s", l, suffix), \
                     lmc_safetensors_find(&st, nm))
        const lmc_st_tensor *attn = RAW("attn.c_attn.weight");
        ck_assert_ptr_nonnull(attn);
        check_transposed(lmc_model_block_tensor(m, l, "q", "weight"), attn, 0);
        check_transposed(lmc_model_block_tensor(m, l, "k", "weight"), attn, 256);
        check_transposed(lmc_model_block_tensor(m, l, "v", "weight"), attn, 512);
        check_transposed(lmc_model_block_tensor(m, l, "o", "weight"), RAW("attn.c_proj.weight"), 0);
        check_transposed(lmc_model_block_tensor(m, l, "up", "weight"), RAW("mlp.c_fc.weight"), 0);
        check_transposed(lmc_model_block_tensor(m, l, "down", "weight"), RAW("mlp.c_proj.weight"),
                         0);
        const lmc_st_tensor *b = RAW("attn.c_attn.bias");
        for (int j = 0; j < 3; j++) {
            const lmc_tensor *t = lmc_model_block_tensor(m, l, j == 0 ? "q" : j == 1 ? "k" : "v",
                                                         "bias");
            ck_assert_int_eq(t->shape[0], 256);
            ck_assert(memcmp(t->data, b->data + 512 * j, 512) == 0);
        }
        ck_assert(memcmp(lmc_model_block_tensor(m, l, "o", "bias")->data,
                         RAW("attn.c_proj.bias")->data, 512) == 0);
        ck_assert(memcmp(lmc_model_block_tensor(m, l, "attn_norm", "weight")->data,
                         RAW("ln_1.weight")->data, 512) == 0);
        ck_assert(memcmp(lmc_model_block_tensor(m, l, "ffn_norm", "bias")->data,
                         RAW("ln_2.bias")->data, 512) == 0);
#undef RAW
    }
    /* a spot check written out by hand: q[3][5] is c_attn[5][3], v[7][2] is c_attn[2][519] */
    const lmc_st_tensor *a0 = lmc_safetensors_find(&st, "transformer.h.0.attn.c_attn.weight");
    float *q = decode(lmc_model_block_tensor(m, 0, "q", "weight"));
    float *v = decode(lmc_model_block_tensor(m, 0, "v", "weight"));
    uint16_t h;
    memcpy(&h, a0->data + 2 * (5 * 768 + 3), 2);
    ck_assert(q[3 * 256 + 5] == lmc_f16_to_f32(h));
    memcpy(&h, a0->data + 2 * (2 * 768 + 519), 2);
    ck_assert(v[7 * 256 + 2] == lmc_f16_to_f32(h));
    free(q);
    free(v);
    same_bytes(m, "embed.weight", &st, "transformer.wte.weight");
    same_bytes(m, "pos_embed.weight", &st, "transformer.wpe.weight");
    same_bytes(m, "final_norm.bias", &st, "transformer.ln_f.bias");
    lmc_safetensors_close(&st);
    lmc_model_free(m);
}
END_TEST

/* ------------------------------------------- sharding, errors, variants */

START_TEST(sharded_xs)
{
    /* split llama-xs into two shards with an index: loads to the same model */
    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(join(xs_dir(), "model.safetensors"), &st, &err) == 0, "%s",
                  err.msg);
    static wlist all, a, b;
    wl_from(&all, &st);
    a.n = b.n = 0;
    char index[16384];
    size_t k = (size_t)snprintf(index, sizeof index,
                                "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < all.n; i++) {
        wlist *w = i % 2 ? &b : &a;
        lmc_st_write_tensor *t = wl_add(w, all.t[i].name, all.t[i].dtype, all.t[i].ndim, 0, 0,
                                        all.t[i].data);
        memcpy(t->shape, all.t[i].shape, sizeof t->shape);
        k += (size_t)snprintf(index + k, sizeof index - k, "%s\"%s\": \"part-%c.safetensors\"",
                              i ? ", " : "", all.t[i].name, i % 2 ? 'b' : 'a');
    }
    snprintf(index + k, sizeof index - k, "}}");
    const char *dir = subdir("xs-sharded");
    char *cfg = read_text(join(xs_dir(), "config.json"));
    write_text(join(dir, "config.json"), cfg);
    write_text(join(dir, "model.safetensors.index.json"), index);
    ck_assert(lmc_safetensors_write(join(dir, "part-a.safetensors"), a.t, a.n, NULL, &err) == 0);
    ck_assert(lmc_safetensors_write(join(dir, "part-b.safetensors"), b.t, b.n, NULL, &err) == 0);
    lmc_model *m = load_ok(dir), *ref = load_ok(xs_dir());
    ck_assert_int_eq(m->n_maps, 2);
    ck_assert_int_eq(m->n_tensors, ref->n_tensors);
    ck_assert_ptr_null(m->tokenizer_json); /* absent: not an error at load */
    for (int i = 0; i < ref->n_tensors; i++) {
        ck_assert_str_eq(m->tensors[i].name, ref->tensors[i].name);
        ck_assert(memcmp(m->tensors[i].data, ref->tensors[i].data, ref->tensors[i].nbytes) == 0);
    }
    ck_assert_int_eq(lmc_model_params(m), lmc_model_params(ref));
    lmc_model_free(m);
    lmc_model_free(ref);

    /* an index entry whose shard lacks the tensor */
    char *bad = replace(index, "\"model.norm.weight\": \"part-b", "\"model.norm.weight\": \"part-a");
    write_text(join(dir, "model.safetensors.index.json"), bad);
    expect_load_fail(dir, "model.norm.weight");
    free(bad);
    /* shard and index disagree: part-c (a copy of part-a) holds tensors the
     * index places in part-a */
    bad = replace(index, "\"part-a.safetensors\"", "\"part-c.safetensors\"");
    write_text(join(dir, "model.safetensors.index.json"), bad);
    ck_assert_int_eq(symlink("part-a.safetensors", join(dir, "part-c.safetensors")), 0);
    expect_load_fail(dir, "is listed in the index under shard part-a.safetensors");
    free(bad);
    bad = replace(index, "\"part-a.safetensors\"", "\"../part-a.safetensors\"");
    write_text(join(dir, "model.safetensors.index.json"), bad);
    expect_load_fail(dir, "is not a file name in the checkpoint directory");
    free(bad);
    /* one shard gone */
    write_text(join(dir, "model.safetensors.index.json"), index);
    ck_assert_int_eq(unlink(join(dir, "part-b.safetensors")), 0);
    expect_load_fail(dir, "shard part-b.safetensors is missing");
    free(cfg);
    lmc_safetensors_close(&st);
}
END_TEST

START_TEST(checkpoint_errors)
{
    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(join(xs_dir(), "model.safetensors"), &st, &err) == 0, "%s",
                  err.msg);
    char *cfg = read_text(join(xs_dir(), "config.json"));
    static wlist w;
    const lmc_st_tensor *norm = lmc_safetensors_find(&st, "model.norm.weight");

    wl_from(&w, &st);
    wl_add(&w, "model.layers.0.self_attn.extra.weight", "F16", 1, 128, 0, norm->data);
    write_ckpt(subdir("e-extra"), cfg, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-extra"),
                     "unexpected tensor model.layers.0.self_attn.extra.weight");

    wl_from(&w, &st);
    wl_add(&w, "model.layers.4.input_layernorm.weight", "F16", 1, 128, 0, norm->data);
    write_ckpt(subdir("e-layer"), cfg, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-layer"),
                     "unexpected tensor model.layers.4.input_layernorm.weight");

    wl_from(&w, &st);
    wl_add(&w, "model.layers.0.self_attn.q_proj.bias", "F16", 1, 128, 0, norm->data);
    write_ckpt(subdir("e-bias"), cfg, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-bias"),
                     "unexpected tensor model.layers.0.self_attn.q_proj.bias (config.json "
                     "describes no such weight");

    wl_from(&w, &st);
    wl_remove(&w, "model.norm.weight");
    write_ckpt(subdir("e-missing"), cfg, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-missing"), "missing tensor model.norm.weight");

    wl_from(&w, &st);
    int i = wl_index(&w, "model.layers.0.self_attn.k_proj.weight");
    w.t[i].shape[0] = 128;
    w.t[i].shape[1] = 64;
    write_ckpt(subdir("e-shape"), cfg, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-shape"),
                     "model.safetensors: model.layers.0.self_attn.k_proj.weight has shape "
                     "[128,64], config says [64,128]");

    static int32_t ints[128];
    wl_from(&w, &st);
    i = wl_index(&w, "model.layers.1.input_layernorm.weight");
    w.t[i].dtype = "I32";
    w.t[i].data = ints;
    write_ckpt(subdir("e-dtype"), cfg, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-dtype"),
                     "model.safetensors: tensor model.layers.1.input_layernorm.weight has dtype "
                     "I32, expected F16, BF16 or F32");

    wl_from(&w, &st);
    wl_add(&w, "norm.weight", "F16", 1, 128, 0, norm->data);
    write_ckpt(subdir("e-dup"), cfg, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-dup"), "both provide final_norm.weight");

    char *untied = replace(cfg, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    wl_from(&w, &st);
    write_ckpt(subdir("e-untied"), untied, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-untied"),
                     "missing tensor lm_head.weight (head.weight); config.json says "
                     "tie_word_embeddings is false");
    free(untied);

    char *bad = replace(cfg, "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 3");
    wl_from(&w, &st);
    write_ckpt(subdir("e-layers"), bad, &w);
    expect_load_fail(join(lmc_test_tmpdir(), "e-layers"), "model.layers.3.");
    free(bad);

    const char *d = subdir("e-nofile");
    write_text(join(d, "config.json"), cfg);
    expect_load_fail(d, "no model.safetensors or model.safetensors.index.json");
    write_text(join(d, "pytorch_model.bin"), "x");
    expect_load_fail(d, "pytorch_model.bin is not supported");
    expect_load_fail(subdir("e-noconfig"), "no config.json");
    d = subdir("e-badconfig");
    write_text(join(d, "config.json"), "{\"model_type\": \"bert\"}");
    expect_load_fail(d, "model_type 'bert' is not supported");
    d = subdir("e-corrupt");
    write_text(join(d, "config.json"), cfg);
    FILE *f = fopen(join(d, "model.safetensors"), "wb");
    fwrite("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 1, 13, f);
    fclose(f);
    expect_load_fail(d, "e-corrupt/model.safetensors: header length 16 goes beyond the end");

    free(cfg);
    lmc_safetensors_close(&st);
}
END_TEST

START_TEST(prefixless_tied_head_and_buffers)
{
    /* names without "model.", an lm_head that a tied config ignores, and a
     * rotary buffer of an old export: loads to the same model */
    lmc_safetensors st;
    lmc_error err;
    ck_assert_msg(lmc_safetensors_open(join(xs_dir(), "model.safetensors"), &st, &err) == 0, "%s",
                  err.msg);
    static wlist w;
    wl_from(&w, &st);
    for (int i = 0; i < w.n; i++)
        if (strncmp(w.names[i], "model.", 6) == 0)
            memmove(w.names[i], w.names[i] + 6, strlen(w.names[i] + 6) + 1);
    wl_add(&w, "lm_head.weight", "F16", 2, 8192, 128,
           lmc_safetensors_find(&st, "model.embed_tokens.weight")->data);
    static float inv_freq[16];
    wl_add(&w, "layers.0.self_attn.rotary_emb.inv_freq", "F32", 1, 16, 0, inv_freq);
    char *cfg = read_text(join(xs_dir(), "config.json"));
    const char *dir = subdir("xs-prefixless");
    write_ckpt(dir, cfg, &w);
    lmc_model *m = load_ok(dir), *ref = load_ok(xs_dir());
    ck_assert_ptr_null(lmc_model_find(m, "head.weight"));
    ck_assert_int_eq(m->n_tensors, ref->n_tensors);
    ck_assert_int_eq(lmc_model_params(m), 1787008);
    for (int i = 0; i < ref->n_tensors; i++)
        ck_assert(memcmp(lmc_model_find(m, ref->tensors[i].name)->data, ref->tensors[i].data,
                         ref->tensors[i].nbytes) == 0);
    lmc_model_free(m);
    lmc_model_free(ref);
    free(cfg);
    lmc_safetensors_close(&st);
}
END_TEST

static void compare_variant(const lmc_model *ref, const lmc_model *v, int bf16)
{
    ck_assert_int_eq(v->n_tensors, ref->n_tensors);
    ck_assert_int_eq(lmc_model_params(v), lmc_model_params(ref));
    for (int i = 0; i < ref->n_tensors; i++) {
        const lmc_tensor *a = &ref->tensors[i], *b = lmc_model_find(v, a->name);
        ck_assert_ptr_nonnull(b);
        ck_assert_int_eq(b->enc.id, bf16 ? LMC_ENC_BF16 : LMC_ENC_F32);
        ck_assert_int_eq(b->shape[0], a->shape[0]);
        ck_assert_int_eq(b->shape[1], a->shape[1]);
        float *x = decode(a), *y = decode(b);
        size_t n = (size_t)(a->shape[0] * a->shape[1]), bad = 0;
        /* (no ck_assert per element: Check logs every call, which is slow) */
        for (size_t j = 0; j < n; j++) {
            if (!bf16)
                bad += x[j] != y[j];
            else /* bf16 keeps 8 significant bits: the nearest bf16 of the fp16 value */
                bad += !(fabsf(x[j] - y[j]) <= fabsf(x[j]) * (1.0f / 256)) ||
                       y[j] != lmc_bf16_to_f32(lmc_f32_to_bf16(x[j]));
        }
        ck_assert_msg(bad == 0, "%s: %zu of %zu values differ", a->name, bad, n);
        free(x);
        free(y);
    }
}

START_TEST(variants)
{
    lmc_error err;
    const char *bfd = join(lmc_test_tmpdir(), "xs-bf16"), *f32d = join(lmc_test_tmpdir(), "xs-f32"),
               *f16d = join(lmc_test_tmpdir(), "xs-f16-again");
    ck_assert_msg(lmc_checkpoint_write_variant(xs_dir(), bfd, "bfloat16", &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(lmc_checkpoint_write_variant(xs_dir(), f32d, "float32", &err) == 0, "%s",
                  err.msg);
    lmc_model *ref = load_ok(xs_dir()), *bf = load_ok(bfd), *f32 = load_ok(f32d);
    ck_assert_str_eq(bf->cfg.src_dtype, "bfloat16");
    ck_assert_str_eq(f32->cfg.src_dtype, "float32");
    /* config.json: the original text with the dtype value changed */
    char *want = replace(ref->config_json, "\"dtype\": \"float16\"", "\"dtype\": \"bfloat16\"");
    ck_assert_str_eq(bf->config_json, want);
    free(want);
    ck_assert_str_eq(bf->tokenizer_json, ref->tokenizer_json);
    ck_assert(lmc_file_exists(join(bfd, "tokenizer_config.json")));
    ck_assert(lmc_file_exists(join(bfd, "generation_config.json")));
    compare_variant(ref, bf, 1);
    compare_variant(ref, f32, 0);

    /* fp32 back to fp16 reproduces the original bytes; names are the HF ones */
    ck_assert_msg(lmc_checkpoint_write_variant(f32d, f16d, "float16", &err) == 0, "%s", err.msg);
    lmc_safetensors a, b;
    ck_assert(lmc_safetensors_open(join(xs_dir(), "model.safetensors"), &a, &err) == 0);
    ck_assert(lmc_safetensors_open(join(f16d, "model.safetensors"), &b, &err) == 0);
    ck_assert_int_eq(a.n_tensors, b.n_tensors);
    ck_assert_str_eq(lmc_safetensors_meta(&b, "format"), "pt");
    for (int i = 0; i < a.n_tensors; i++) {
        const lmc_st_tensor *y = lmc_safetensors_find(&b, a.tensors[i].name);
        ck_assert_ptr_nonnull(y);
        ck_assert_str_eq(y->dtype, "F16");
        ck_assert(memcmp(a.tensors[i].data, y->data, y->nbytes) == 0);
    }
    lmc_safetensors_close(&a);
    lmc_safetensors_close(&b);

    ck_assert_int_eq(lmc_checkpoint_write_variant(xs_dir(), join(lmc_test_tmpdir(), "x8"), "int8",
                                                  &err),
                     -1);
    ck_assert(strstr(err.msg, "'int8' is not float16, bfloat16 or float32") != NULL);
    ck_assert_int_eq(lmc_checkpoint_write_variant(xs_dir(), xs_dir(), "float32", &err), -1);
    ck_assert(strstr(err.msg, "another directory") != NULL);

    /* no dtype key at all, and a nested "dtype" before the top-level one:
     * the variant's config still says exactly the new dtype at the top */
    char *cfg = read_text(join(xs_dir(), "config.json"));
    char *nodt = replace(cfg, "\"dtype\": \"float16\",", "");
    char *nested = replace(cfg, "\"architectures\"",
                           "\"quantization_config\": {\"dtype\": \"keep\"}, \"architectures\"");
    char abs[4096];
    ck_assert_ptr_nonnull(realpath(join(xs_dir(), "model.safetensors"), abs));
    const char *cases[2][2] = {{"xs-nodtype", nodt}, {"xs-nested", nested}};
    for (int k = 0; k < 2; k++) {
        const char *d = subdir(cases[k][0]);
        write_text(join(d, "config.json"), cases[k][1]);
        ck_assert_int_eq(symlink(abs, join(d, "model.safetensors")), 0);
        char out[600];
        snprintf(out, sizeof out, "%s-f32", d);
        ck_assert_msg(lmc_checkpoint_write_variant(d, out, "float32", &err) == 0, "%s", err.msg);
        lmc_model *v = load_ok(out);
        ck_assert_str_eq(v->cfg.src_dtype, "float32");
        lmc_config c2;
        ck_assert(lmc_hf_config_parse(v->config_json, strlen(v->config_json), out, &c2, &err) == 0);
        ck_assert_str_eq(c2.src_dtype, "float32");
        if (k == 1)
            ck_assert(strstr(v->config_json, "\"keep\"") != NULL);
        lmc_model_free(v);
    }
    free(cfg);
    free(nodt);
    free(nested);
    lmc_model_free(ref);
    lmc_model_free(bf);
    lmc_model_free(f32);
}
END_TEST

START_TEST(shared_variants)
{
    /* what the evaluator needs: bf16 / fp32 copies of the shared models load */
    const char *names[] = {"llama-s", "opt-s", "gpt2-s"};
    for (int k = 0; k < 3; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "models/%s", names[k]);
        const char *src = lmc_test_shared_path(rel);
        if (!src)
            return;
        char dst[512];
        snprintf(dst, sizeof dst, "%s/%s-bf16", lmc_test_tmpdir(), names[k]);
        lmc_error err;
        ck_assert_msg(lmc_checkpoint_write_variant(src, dst, "bfloat16", &err) == 0, "%s",
                      err.msg);
        lmc_model *ref = load_ok(src), *v = load_ok(dst);
        ck_assert_int_eq(v->n_maps, 1);
        compare_variant(ref, v, 1);
        lmc_model_free(ref);
        lmc_model_free(v);
    }
}
END_TEST

/* ------------------------------------------------ synthetic GPT-2 and OPT */

#define G_E 8
#define G_L 2
#define G_V 16
#define G_P 8
#define G_F 32

START_TEST(synthetic_gpt2_legacy)
{
    /* old-style names without "transformer.", causal-mask buffers, fp32 */
    static float wte[G_V * G_E], wpe[G_P * G_E], lnw[G_E], lnb[G_E], cattn[G_L][G_E * 3 * G_E],
        cattnb[G_L][3 * G_E], cproj[G_E * G_E], pb[G_E], cfc[G_L][G_E * G_F], fcb[G_F],
        mproj[G_F * G_E], mask[G_P * G_P], masked_bias[1];
    for (int i = 0; i < G_V * G_E; i++)
        wte[i] = (float)i * 0.01f;
    for (int l = 0; l < G_L; l++) {
        for (int i = 0; i < G_E * 3 * G_E; i++)
            cattn[l][i] = (float)(l * 1000 + i);
        for (int i = 0; i < 3 * G_E; i++)
            cattnb[l][i] = -(float)(l * 100 + i);
        for (int i = 0; i < G_E * G_F; i++)
            cfc[l][i] = (float)(l * 5000 + i) * 0.5f;
    }
    for (int i = 0; i < G_E * G_E; i++)
        cproj[i] = (float)i + 0.25f;
    for (int i = 0; i < G_F * G_E; i++)
        mproj[i] = (float)i - 0.5f;
    static wlist w;
    w.n = 0;
    wl_add(&w, "wte.weight", "F32", 2, G_V, G_E, wte);
    wl_add(&w, "wpe.weight", "F32", 2, G_P, G_E, wpe);
    for (int l = 0; l < G_L; l++) {
        char nm[96];
#define ADD(suffix, nd, r, c, data) \
    (snprintf(nm, sizeof nm, "h.%d.%s", l, suffix), wl_add(&w, nm, "F32", nd, r, c, data))
        ADD("ln_1.weight", 1, G_E, 0, lnw);
        ADD("ln_1.bias", 1, G_E, 0, lnb);
        ADD("attn.c_attn.weight", 2, G_E, 3 * G_E, cattn[l]);
        ADD("attn.c_attn.bias", 1, 3 * G_E, 0, cattnb[l]);
        ADD("attn.c_proj.weight", 2, G_E, G_E, cproj);
        ADD("attn.c_proj.bias", 1, G_E, 0, pb);
        ADD("ln_2.weight", 1, G_E, 0, lnw);
        ADD("ln_2.bias", 1, G_E, 0, lnb);
        ADD("mlp.c_fc.weight", 2, G_E, G_F, cfc[l]);
        ADD("mlp.c_fc.bias", 1, G_F, 0, fcb);
        ADD("mlp.c_proj.weight", 2, G_F, G_E, mproj);
        ADD("mlp.c_proj.bias", 1, G_E, 0, pb);
        lmc_st_write_tensor *t = ADD("attn.bias", 2, 1, 1, mask);
        t->ndim = 4;
        t->shape[2] = G_P;
        t->shape[3] = G_P;
        ADD("attn.masked_bias", 0, 0, 0, masked_bias);
#undef ADD
    }
    wl_add(&w, "ln_f.weight", "F32", 1, G_E, 0, lnw);
    wl_add(&w, "ln_f.bias", "F32", 1, G_E, 0, lnb);
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\": \"gpt2\", \"n_embd\": %d, \"n_head\": 2, \"n_layer\": %d, "
             "\"vocab_size\": %d, \"n_positions\": %d, \"n_inner\": %d, \"torch_dtype\": "
             "\"float32\"}",
             G_E, G_L, G_V, G_P, G_F);
    const char *dir = subdir("gpt2-legacy");
    write_ckpt(dir, cfg, &w);
    lmc_model *m = load_ok(dir);
    ck_assert_str_eq(m->cfg.src_dtype, "float32");
    int64_t per_layer = 4 * G_E + 3 * (G_E * G_E + G_E) + G_E * G_E + G_E + 2 * G_F * G_E + G_F + G_E;
    ck_assert_int_eq(lmc_model_params(m), G_V * G_E + G_P * G_E + G_L * per_layer + 2 * G_E);
    for (int l = 0; l < G_L; l++) {
        const float *q = (const float *)lmc_model_block_tensor(m, l, "q", "weight")->data;
        const float *k = (const float *)lmc_model_block_tensor(m, l, "k", "weight")->data;
        const float *v = (const float *)lmc_model_block_tensor(m, l, "v", "weight")->data;
        const float *o = (const float *)lmc_model_block_tensor(m, l, "o", "weight")->data;
        const float *up = (const float *)lmc_model_block_tensor(m, l, "up", "weight")->data;
        const float *dn = (const float *)lmc_model_block_tensor(m, l, "down", "weight")->data;
        const float *kb = (const float *)lmc_model_block_tensor(m, l, "k", "bias")->data;
        ck_assert_int_eq(lmc_model_block_tensor(m, l, "up", "weight")->shape[0], G_F);
        ck_assert_int_eq(lmc_model_block_tensor(m, l, "down", "weight")->shape[1], G_F);
        ck_assert_ptr_nonnull(lmc_model_block_tensor(m, l, "q", "weight")->owned);
        for (int r = 0; r < G_E; r++) {
            ck_assert(kb[r] == cattnb[l][G_E + r]);
            for (int c = 0; c < G_E; c++) {
                ck_assert(q[r * G_E + c] == cattn[l][c * 3 * G_E + r]);
                ck_assert(k[r * G_E + c] == cattn[l][c * 3 * G_E + G_E + r]);
                ck_assert(v[r * G_E + c] == cattn[l][c * 3 * G_E + 2 * G_E + r]);
                ck_assert(o[r * G_E + c] == cproj[c * G_E + r]);
            }
        }
        for (int r = 0; r < G_F; r++)
            for (int c = 0; c < G_E; c++) {
                ck_assert(up[r * G_E + c] == cfc[l][c * G_F + r]);
                ck_assert(dn[c * G_F + r] == mproj[r * G_E + c]);
            }
    }
    ck_assert_ptr_null(need(m, "embed.weight")->owned);
    lmc_model_free(m);

    /* a missing fused tensor is reported under its usual HF name */
    static wlist w2;
    w2 = w;
    for (int i = 0; i < w2.n; i++)
        w2.t[i].name = w2.names[i];
    wl_remove(&w2, "h.1.attn.c_attn.weight");
    const char *dm = subdir("gpt2-missing");
    write_ckpt(dm, cfg, &w2);
    expect_load_fail(dm, "missing tensor transformer.h.1.attn.c_attn.weight (blk.1.q.weight)");

    /* the same file with a header one byte longer: data no longer aligned,
     * the loader copies instead of handing out misaligned pointers */
    char *raw;
    size_t n;
    lmc_error err;
    ck_assert(lmc_read_file(join(dir, "model.safetensors"), &raw, &n, &err) == 0);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | (unsigned char)raw[i];
    const char *dir2 = subdir("gpt2-unaligned");
    write_text(join(dir2, "config.json"), cfg);
    FILE *f = fopen(join(dir2, "model.safetensors"), "wb");
    uint64_t hl2 = hl + 1;
    for (int i = 0; i < 8; i++)
        fputc((int)((hl2 >> (8 * i)) & 0xff), f);
    fwrite(raw + 8, 1, hl, f);
    fputc(' ', f);
    fwrite(raw + 8 + hl, 1, n - 8 - hl, f);
    fclose(f);
    free(raw);
    m = load_ok(dir2);
    const lmc_tensor *e = need(m, "embed.weight");
    ck_assert_ptr_nonnull(e->owned);
    ck_assert_uint_eq((uintptr_t)e->data % 4, 0);
    ck_assert(memcmp(e->data, wte, sizeof wte) == 0);
    const float *kb = (const float *)lmc_model_block_tensor(m, 1, "v", "bias")->data;
    ck_assert_uint_eq((uintptr_t)kb % 4, 0);
    ck_assert(kb[3] == cattnb[1][2 * G_E + 3]);
    lmc_model_free(m);

    /* a variant keeps the 4.x torch_dtype key */
    const char *dir3 = join(lmc_test_tmpdir(), "gpt2-legacy-f16");
    ck_assert_msg(lmc_checkpoint_write_variant(dir, dir3, "float16", &err) == 0, "%s", err.msg);
    char *c3 = read_text(join(dir3, "config.json"));
    ck_assert(strstr(c3, "\"torch_dtype\": \"float16\"") != NULL);
    ck_assert(strstr(c3, "\"dtype\"") == NULL);
    free(c3);
    m = load_ok(dir3);
    ck_assert_str_eq(m->cfg.src_dtype, "float16");
    ck_assert_int_eq(need(m, "blk.1.q.weight")->enc.id, LMC_ENC_F16);
    lmc_model_free(m);
}
END_TEST

START_TEST(synthetic_opt_decoder_prefix)
{
    /* OPTModel-style "decoder." names, enable_bias false: no linear biases */
    enum { E = 8, F = 16, V = 12, P = 6, L = 1 };
    static uint16_t buf[4096];
    for (int i = 0; i < 4096; i++)
        buf[i] = lmc_f32_to_f16((float)(i % 97) / 97.0f);
    static wlist w;
    w.n = 0;
    wl_add(&w, "decoder.embed_tokens.weight", "F16", 2, V, E, buf);
    wl_add(&w, "decoder.embed_positions.weight", "F16", 2, P + 2, E, buf);
    wl_add(&w, "decoder.final_layer_norm.weight", "F16", 1, E, 0, buf);
    wl_add(&w, "decoder.final_layer_norm.bias", "F16", 1, E, 0, buf + 1);
    const char *lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                         "self_attn.out_proj"};
    for (int j = 0; j < 4; j++) {
        char nm[96];
        snprintf(nm, sizeof nm, "decoder.layers.0.%s.weight", lin[j]);
        wl_add(&w, nm, "F16", 2, E, E, buf + j);
    }
    wl_add(&w, "decoder.layers.0.fc1.weight", "F16", 2, F, E, buf + 5);
    wl_add(&w, "decoder.layers.0.fc2.weight", "F16", 2, E, F, buf + 6);
    wl_add(&w, "decoder.layers.0.self_attn_layer_norm.weight", "F16", 1, E, 0, buf + 7);
    wl_add(&w, "decoder.layers.0.self_attn_layer_norm.bias", "F16", 1, E, 0, buf + 8);
    wl_add(&w, "decoder.layers.0.final_layer_norm.weight", "F16", 1, E, 0, buf + 9);
    wl_add(&w, "decoder.layers.0.final_layer_norm.bias", "F16", 1, E, 0, buf + 10);
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\": \"opt\", \"hidden_size\": %d, \"ffn_dim\": %d, "
             "\"num_hidden_layers\": %d, \"num_attention_heads\": 2, \"vocab_size\": %d, "
             "\"max_position_embeddings\": %d, \"enable_bias\": false, \"dtype\": \"float16\"}",
             E, F, L, V, P);
    const char *dir = subdir("opt-decoder");
    write_ckpt(dir, cfg, &w);
    lmc_model *m = load_ok(dir);
    ck_assert_int_eq(m->cfg.arch, LMC_ARCH_OPT);
    ck_assert_ptr_null(lmc_model_find(m, "blk.0.q.bias"));
    ck_assert_ptr_null(lmc_model_find(m, "blk.0.up.bias"));
    check_shape(m, "pos_embed.weight", P + 2, E);
    ck_assert(memcmp(need(m, "blk.0.ffn_norm.bias")->data, buf + 10, 2 * E) == 0);
    ck_assert(memcmp(need(m, "final_norm.bias")->data, buf + 1, 2 * E) == 0);
    ck_assert(memcmp(need(m, "blk.0.down.weight")->data, buf + 6, 2 * E * F) == 0);
    ck_assert_int_eq(lmc_model_params(m),
                     V * E + (P + 2) * E + 4 * E * E + 2 * E * F + 4 * E + 2 * E);
    lmc_model_free(m);

    /* position table without the 2 offset rows */
    w.t[1].shape[0] = P;
    write_ckpt(dir, cfg, &w);
    expect_load_fail(dir, "decoder.embed_positions.weight has shape [6,8], config says [8,8]");
}
END_TEST

START_TEST(dispatch)
{
    const char *d = subdir("dispatch");
    write_text(join(d, "notes.txt"), "hello, not a model");
    expect_load_fail(join(d, "notes.txt"), "neither a Hugging Face checkpoint directory nor an "
                                           ".lmc container");
    expect_load_fail(join(d, "nothing-here"), "no such file or directory");
    expect_load_fail(join(xs_dir(), "model.safetensors"),
                     "pass the checkpoint directory that holds this file");
    lmc_model *m = load_ok(xs_dir());
    lmc_model_free(m);
}
END_TEST

int main(void)
{
    lmc_encodings_init();
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, llama_xs);
    tcase_add_test(tc, shared_llama_s_sharded);
    tcase_add_test(tc, shared_missing_shard);
    tcase_add_test(tc, shared_opt_s);
    tcase_add_test(tc, shared_gpt2_s);
    tcase_add_test(tc, sharded_xs);
    tcase_add_test(tc, checkpoint_errors);
    tcase_add_test(tc, prefixless_tied_head_and_buffers);
    tcase_add_test(tc, variants);
    tcase_add_test(tc, shared_variants);
    tcase_add_test(tc, synthetic_gpt2_legacy);
    tcase_add_test(tc, synthetic_opt_decoder_prefix);
    tcase_add_test(tc, dispatch);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
