#include "tinymodel.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/arch.h"
#include "../core/half.h"
#include "../eval/forward.h"

static uint64_t rng_state = 88172645463325252ull;

void lmc_test_rng_seed(uint64_t s) { rng_state = s * 2654435761ull + 1; }

double lmc_test_urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 4503599627370496.0 - 1.0;
}

void lmc_tiny_add_f32(lmc_model *m, const char *name, int64_t rows, int64_t cols, double scale,
                      double offset)
{
    lmc_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.ndim = cols > 1 ? 2 : 1;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.enc = lmc_enc_dense(LMC_ENC_F32);
    t.nbytes = (size_t)(rows * cols) * 4;
    float *d = malloc(t.nbytes);
    ck_assert_ptr_nonnull(d);
    for (int64_t i = 0; i < rows * cols; i++)
        d[i] = (float)(offset + scale * lmc_test_urand());
    t.data = (const uint8_t *)d;
    t.owned = d;
    lmc_error err;
    ck_assert_int_eq(lmc_model_set_tensor(m, &t, &err), 0);
}

/* A matrix of lmc_tiny_add_f32's values, stored as an fp16 blob with f16. */
static void add_mat(lmc_model *m, const char *name, int64_t rows, int64_t cols, double scale,
                    int f16)
{
    lmc_tiny_add_f32(m, name, rows, cols, scale, 0);
    if (!f16)
        return;
    lmc_tensor *t = lmc_model_find(m, name);
    size_t n = (size_t)(rows * cols);
    uint16_t *h = malloc(n * 2);
    ck_assert_ptr_nonnull(h);
    lmc_f32_to_f16_n((const float *)t->owned, h, n);
    free(t->owned);
    t->enc = lmc_enc_dense(LMC_ENC_F16);
    t->nbytes = n * 2;
    t->data = (const uint8_t *)h;
    t->owned = h;
}

lmc_config lmc_tiny_config(lmc_arch arch, int hidden, int nh, int nkv, int hd, int ffn,
                           int vocab, int layers)
{
    lmc_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    c.vocab = vocab;
    c.hidden = hidden;
    c.n_layers = layers;
    c.n_heads = nh;
    c.n_kv_heads = nkv;
    c.head_dim = hd;
    c.ffn = ffn;
    c.max_pos = 64;
    c.norm_eps = 1e-5;
    c.bos_id = c.eos_id = -1;
    if (arch == LMC_ARCH_LLAMA) {
        snprintf(c.model_type, sizeof c.model_type, "llama");
        c.norm_is_rms = 1;
        c.act = LMC_ACT_SILU;
        c.rope_type = LMC_ROPE_DEFAULT;
        c.rope_theta = 10000.0;
    } else if (arch == LMC_ARCH_OPT) {
        snprintf(c.model_type, sizeof c.model_type, "opt");
        c.pos_offset = 2;
        c.act = LMC_ACT_RELU;
        c.qkv_bias = c.o_bias = c.mlp_bias = 1;
        c.tied = 1;
    } else {
        snprintf(c.model_type, sizeof c.model_type, "gpt2");
        c.act = LMC_ACT_GELU_NEW;
        c.qkv_bias = c.o_bias = c.mlp_bias = 1;
        c.tied = 1;
    }
    lmc_arch_caps(&c, NULL);
    return c;
}

lmc_model *lmc_tiny_model(const lmc_config *c, uint64_t seed, const lmc_tiny_opts *opts)
{
    static const lmc_tiny_opts defaults = {3.0, {0, 0}, {0, 0}, 0};
    if (!opts)
        opts = &defaults;
    lmc_test_rng_seed(seed);
    lmc_model *m = calloc(1, sizeof *m);
    ck_assert_ptr_nonnull(m);
    m->cfg = *c;
    int H = c->hidden, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    add_mat(m, "embed.weight", c->vocab, H, 1.0, opts->f16);
    if (c->arch != LMC_ARCH_LLAMA)
        add_mat(m, "pos_embed.weight", c->max_pos + c->pos_offset, H, 0.5, opts->f16);
    char n[64];
    for (int l = 0; l < c->n_layers; l++) {
        const char *norms[2] = {"attn_norm", "ffn_norm"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, norms[k]);
            lmc_tiny_add_f32(m, n, H, 1, 0.2, 1.0);
            float *w = (float *)lmc_model_find(m, n)->owned;
            for (int o = 0; o < 2; o++)
                if (opts->outlier_val[o] != 0.0f)
                    w[opts->outlier_ch[o]] = opts->outlier_val[o];
            if (!c->norm_is_rms) {
                snprintf(n, sizeof n, "blk.%d.%s.bias", l, norms[k]);
                lmc_tiny_add_f32(m, n, H, 1, 0.1, 0);
            }
        }
        struct { const char *role; int out, in, bias; } lin[] = {
            {"q", qd, H, c->qkv_bias}, {"k", kvd, H, c->qkv_bias}, {"v", kvd, H, c->qkv_bias},
            {"o", H, qd, c->o_bias},   {"gate", c->ffn, H, c->mlp_bias},
            {"up", c->ffn, H, c->mlp_bias}, {"down", H, c->ffn, c->mlp_bias}};
        for (int k = 0; k < 7; k++) {
            if (!strcmp(lin[k].role, "gate") && c->arch != LMC_ARCH_LLAMA)
                continue;
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, lin[k].role);
            /* q and k larger than usual so that attention is far from uniform */
            double sc = (k < 2 ? opts->qk_scale : 1.5) / sqrt((double)lin[k].in);
            add_mat(m, n, lin[k].out, lin[k].in, sc, opts->f16);
            if (lin[k].bias) {
                snprintf(n, sizeof n, "blk.%d.%s.bias", l, lin[k].role);
                lmc_tiny_add_f32(m, n, lin[k].out, 1, 0.1, 0);
            }
        }
    }
    lmc_tiny_add_f32(m, "final_norm.weight", H, 1, 0.2, 1.0);
    if (!c->norm_is_rms)
        lmc_tiny_add_f32(m, "final_norm.bias", H, 1, 0.1, 0);
    if (!c->tied)
        add_mat(m, "head.weight", c->vocab, H, 1.0 / sqrt((double)H), opts->f16);
    return m;
}

float *lmc_tiny_logits(const lmc_model *m, int ntok, int mul, int add)
{
    lmc_weights *w;
    lmc_error err;
    ck_assert_msg(lmc_weights_prepare(m, &w, &err) == 0, "%s", err.msg);
    lmc_scratch *s = lmc_scratch_new(&m->cfg, ntok);
    ck_assert_ptr_nonnull(s);
    int32_t *ids = malloc((size_t)ntok * sizeof *ids);
    for (int i = 0; i < ntok; i++)
        ids[i] = (int32_t)((i * mul + add) % m->cfg.vocab);
    float *lg = malloc(sizeof(float) * (size_t)ntok * (size_t)m->cfg.vocab);
    double nll;
    ck_assert_msg(lmc_forward_window_nll(w, ids, ntok, s, &nll, lg, &err) == 0, "%s", err.msg);
    free(ids);
    lmc_scratch_free(s);
    lmc_weights_free(w);
    return lg;
}
