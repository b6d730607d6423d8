/* lmc_model -> GGUF v3 for llama.cpp (architectures llama, qwen2, gpt2).
 *
 * Tensor names and metadata keys follow llama.cpp's converter
 * (convert_hf_to_gguf.py, gguf-py constants) and what its loaders read
 * (src/models/{llama,qwen2,gpt2}.cpp, llama-model.cpp load_hparams).
 * LLaMA/Mistral q and k rows are permuted within each head from Hugging
 * Face's rotate_half layout (pairs i, i + d/2) to the interleaved pairs
 * (2i, 2i + 1) of llama.cpp's default RoPE, exactly as the converter's
 * permute() does; Qwen2 runs NeoX RoPE (rotate_half) and keeps them.
 * GPT-2's q, k, v become one attn_qkv tensor again. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export_internal.h"
#include "gguf.h"
#include "gguf_tensor.h"
#include "gguf_vocab.h"

typedef struct gtensor {
    char name[64];
    const lmc_tensor *src[3];
    int nsrc;
    int ndim;
    int64_t ne[2];
    lmc_ggml_type type;
    int permute_heads; /* q/k: heads to permute the rows of (0: none) */
    int dequantized;
    float *gen;        /* a generated F32 tensor (rope_freqs), owned */
} gtensor;

typedef struct plan {
    const lmc_model *m;
    const lmc_export_opts *o;
    gtensor *t;
    int n, cap;
    lmc_refusals rf;
    int oom;
    int done;
} plan;

static int qrank(lmc_ggml_type t)
{
    switch (t) {
    case LMC_GGML_Q4_0: return 1;
    case LMC_GGML_Q4_1: return 2;
    case LMC_GGML_Q5_0: return 3;
    case LMC_GGML_Q5_1: return 4;
    case LMC_GGML_Q8_0: return 5;
    default: return 0; /* float */
    }
}

static lmc_ggml_type dequant_type(const lmc_export_opts *o)
{
    lmc_enc_id e = lmc_export_dequant_to(o);
    return e == LMC_ENC_F32 ? LMC_GGML_F32 : e == LMC_ENC_BF16 ? LMC_GGML_BF16 : LMC_GGML_F16;
}

static gtensor *new_out(plan *p, const char *name)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        gtensor *nt = realloc(p->t, (size_t)cap * sizeof *nt);
        if (!nt) {
            p->oom = 1;
            return NULL;
        }
        p->t = nt;
        p->cap = cap;
    }
    gtensor *g = &p->t[p->n++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    return g;
}

/* An output tensor made of nsrc lmc tensors stacked along rows. Decides its
 * type now, so that every refusal is known before anything is written. */
static int add_out(plan *p, const char *name, const lmc_tensor **src, int nsrc, int permute,
                   lmc_error *err)
{
    gtensor *g = new_out(p, name);
    if (!g)
        return 0;
    g->nsrc = nsrc;
    g->permute_heads = permute;
    int64_t rows = 0;
    for (int j = 0; j < nsrc; j++) {
        g->src[j] = src[j];
        rows += src[j]->shape[0];
    }
    g->ndim = src[0]->ndim;
    g->ne[0] = g->ndim == 2 ? src[0]->shape[1] : rows;
    g->ne[1] = rows;
    lmc_ggml_type ty[3];
    char why[200] = "";
    int refused = 0;
    for (int j = 0; j < nsrc && !refused; j++) {
        int r = lmc_gguf_exact_type(src[j], &ty[j], why, sizeof why, err);
        if (r < 0)
            return -1;
        refused = r;
    }
    if (!refused) {
        g->type = ty[0];
        for (int j = 1; j < nsrc && !refused; j++) {
            if (qrank(ty[j]) && qrank(g->type))
                g->type = qrank(ty[j]) > qrank(g->type) ? ty[j] : g->type; /* each type holds the smaller ones */
            else if (ty[j] != g->type) {
                snprintf(why, sizeof why, "q, k and v share one attn_qkv tensor in llama.cpp "
                                          "but have no common ggml type");
                refused = 1;
            }
        }
    }
    if (refused) {
        char who[80];
        snprintf(who, sizeof who, "%s", src[0]->name);
        if (nsrc > 1) { /* name the fused trio by its q */
            char *dot = strrchr(who, '.');
            if (dot)
                snprintf(who, sizeof who, "%.*s+k+v%s", (int)(dot - who), src[0]->name, dot);
        }
        if (!p->o->dequant) {
            lmc_refuse(&p->rf, who, why);
            return 0;
        }
        g->type = g->ndim == 1 ? LMC_GGML_F32 : dequant_type(p->o);
        g->dequantized = 1;
    }
    return 0;
}

static int add1(plan *p, const char *gname, const char *canon, int permute, int optional,
                lmc_error *err)
{
    const lmc_tensor *t = lmc_model_find(p->m, canon);
    if (!t) {
        if (optional)
            return 0;
        return lmc_fail(err, "%s: no tensor %s", p->m->source_path, canon);
    }
    return add_out(p, gname, &t, 1, permute, err);
}

static void free_plan(plan *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->t[i].gen);
    free(p->t);
    lmc_refusals_free(&p->rf);
}

/* Which llama.cpp architecture runs this model, or a refusal. */
static const char *gguf_arch(const lmc_config *c, int *permute, char *why, size_t nwhy)
{
    *permute = 0;
    if (c->arch == LMC_ARCH_OPT) {
        snprintf(why, nwhy, "llama.cpp has no OPT architecture (its converter refuses "
                            "OPTForCausalLM too); export OPT models with --format gptq or awq");
        return NULL;
    }
    if (c->arch == LMC_ARCH_GPT2) {
        if (c->act != LMC_ACT_GELU_NEW) {
            snprintf(why, nwhy, "GPT-2 with activation %d: llama.cpp's gpt2 runs gelu_new only",
                     (int)c->act);
            return NULL;
        }
        if (c->n_kv_heads != c->n_heads || c->n_heads * c->head_dim != c->hidden) {
            snprintf(why, nwhy, "GPT-2 with grouped or resized heads, which llama.cpp's gpt2 "
                                "does not load");
            return NULL;
        }
        return "gpt2";
    }
    if (c->act != LMC_ACT_SILU || !c->norm_is_rms) {
        snprintf(why, nwhy, "a LLaMA-family model without SiLU and RMSNorm");
        return NULL;
    }
    if (c->head_dim % 2) {
        snprintf(why, nwhy, "odd head_dim %d (RoPE pairs)", c->head_dim);
        return NULL;
    }
    if (!strcmp(c->model_type, "qwen2")) {
        if (c->n_heads * c->head_dim != c->hidden || c->o_bias || c->mlp_bias) {
            snprintf(why, nwhy, "a Qwen2 model whose attention width differs from hidden or "
                                "with o/mlp biases, which llama.cpp's qwen2 does not load");
            return NULL;
        }
        return "qwen2";
    }
    *permute = 1; /* llama, mistral: rotate_half -> interleaved */
    return "llama";
}

static void set_ftype(lmc_gguf *g, const plan *p)
{
    /* general.file_type: the type holding most linear weights (informative) */
    static const struct {
        lmc_ggml_type t;
        uint32_t ftype;
    } ft[] = {{LMC_GGML_F32, 0},  {LMC_GGML_F16, 1},  {LMC_GGML_Q4_0, 2}, {LMC_GGML_Q4_1, 3},
              {LMC_GGML_Q8_0, 7}, {LMC_GGML_Q5_0, 8}, {LMC_GGML_Q5_1, 9}, {LMC_GGML_BF16, 32}};
    double count[8] = {0};
    for (int i = 0; i < p->n; i++)
        if (p->t[i].ndim == 2 && strncmp(p->t[i].name, "blk.", 4) == 0)
            for (int k = 0; k < 8; k++)
                if (ft[k].t == p->t[i].type)
                    count[k] += (double)p->t[i].ne[0] * (double)p->t[i].ne[1];
    int best = 1;
    for (int k = 0; k < 8; k++)
        if (count[k] > count[best])
            best = k;
    lmc_gguf_set_u32(g, "general.file_type", ft[best].ftype);
}

static int build_plan(plan *p, const char *arch, int permute, lmc_error *err)
{
    const lmc_config *c = &p->m->cfg;
    char gn[64], cn[64];
    int gpt2 = !strcmp(arch, "gpt2");
    if (add1(p, "token_embd.weight", "embed.weight", 0, 0, err) ||
        (gpt2 && add1(p, "position_embd.weight", "pos_embed.weight", 0, 0, err)))
        return -1;
    static const char *const kinds[] = {"weight", "bias"};
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < 2; k++) {
            const char *kd = kinds[k];
#define ONE(G, C, PERM)                                                                     \
    do {                                                                                    \
        snprintf(gn, sizeof gn, "blk.%d.%s.%s", l, G, kd);                                  \
        snprintf(cn, sizeof cn, "blk.%d.%s.%s", l, C, kd);                                  \
        if (add1(p, gn, cn, PERM, k == 1, err))                                             \
            return -1;                                                                      \
    } while (0)
            ONE("attn_norm", "attn_norm", 0);
            if (gpt2) {
                const lmc_tensor *qkv[3];
                int have = 0;
                for (int j = 0; j < 3; j++) {
                    snprintf(cn, sizeof cn, "blk.%d.%c.%s", l, "qkv"[j], kd);
                    have += (qkv[j] = lmc_model_find(p->m, cn)) != NULL;
                }
                if (have == 3) {
                    snprintf(gn, sizeof gn, "blk.%d.attn_qkv.%s", l, kd);
                    if (add_out(p, gn, qkv, 3, 0, err))
                        return -1;
                } else if (have)
                    return lmc_fail(err, "%s: layer %d has only some of q, k, v %ss",
                                    p->m->source_path, l, kd);
            } else {
                ONE("attn_q", "q", permute ? c->n_heads : 0);
                ONE("attn_k", "k", permute ? c->n_kv_heads : 0);
                ONE("attn_v", "v", 0);
            }
            ONE("attn_output", "o", 0);
            ONE("ffn_norm", "ffn_norm", 0);
            if (!gpt2)
                ONE("ffn_gate", "gate", 0);
            ONE("ffn_up", "up", 0);
            ONE("ffn_down", "down", 0);
#undef ONE
        }
    }
    if (add1(p, "output_norm.weight", "final_norm.weight", 0, 0, err) ||
        add1(p, "output_norm.bias", "final_norm.bias", 0, 1, err) ||
        (!c->tied && add1(p, "output.weight", "head.weight", 0, 0, err)))
        return -1;
    if (c->rope_type == LMC_ROPE_LLAMA3) {
        /* llama.cpp divides each frequency by rope_freqs[i]: the converter's
         * factors for Llama 3's frequency-dependent scaling */
        gtensor *g = new_out(p, "rope_freqs.weight");
        int half = c->head_dim / 2;
        if (!g || !(g->gen = malloc((size_t)half * sizeof *g->gen)))
            return lmc_fail(err, "out of memory");
        g->ndim = 1;
        g->ne[0] = half;
        g->ne[1] = 1;
        g->type = LMC_GGML_F32;
        double lo_wl = c->rope_orig_max_pos / c->rope_low_freq_factor;
        double hi_wl = c->rope_orig_max_pos / c->rope_high_freq_factor;
        for (int i = 0; i < half; i++) {
            double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
            double wl = 2 * M_PI / f, sm;
            if (wl < hi_wl)
                g->gen[i] = 1.0f;
            else if (wl > lo_wl)
                g->gen[i] = (float)c->rope_factor;
            else {
                sm = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) /
                     (c->rope_high_freq_factor - c->rope_low_freq_factor);
                g->gen[i] = (float)(1.0 / ((1 - sm) / c->rope_factor + sm));
            }
        }
    }
    if (p->oom)
        return lmc_fail(err, "out of memory");
    /* every tensor of the model must have gone somewhere */
    for (int i = 0; i < p->m->n_tensors; i++) {
        const lmc_tensor *t = &p->m->tensors[i];
        int used = 0;
        for (int k = 0; k < p->n && !used; k++)
            for (int j = 0; j < p->t[k].nsrc; j++)
                used |= p->t[k].src[j] == t;
        if (!used && p->rf.n == 0)
            return lmc_fail(err, "%s: tensor %s has no place in llama.cpp's %s", p->m->source_path,
                            t->name, arch);
    }
    return 0;
}

/* q/k rows: Hugging Face's head-major halves -> interleaved pairs (the
 * converter's permute: new row h*d + 2i + j is old row h*d + j*d/2 + i). */
static int64_t *permuted_rows(int64_t rows, int heads)
{
    int64_t *map = malloc((size_t)rows * sizeof *map);
    if (!map)
        return NULL;
    int64_t d = rows / heads;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < d / 2; i++)
            for (int j = 0; j < 2; j++)
                map[h * d + 2 * i + j] = h * d + j * (d / 2) + i;
    return map;
}

static int fill(void *ctx, int index, uint8_t *dst, size_t nbytes, const uint8_t **data,
                lmc_error *err)
{
    plan *p = ctx;
    const gtensor *g = &p->t[index];
    if (p->o->progress)
        p->o->progress(p->o->progress_ctx, index + 1, p->n, g->name);
    if (g->gen) {
        memcpy(dst, g->gen, (size_t)g->ne[0] * 4);
        return 0;
    }
    const lmc_tensor *t0 = g->src[0];
    if (g->nsrc == 1 && !g->permute_heads && t0->ndim == 2 && !g->dequantized &&
        ((t0->enc.id == LMC_ENC_F16 && g->type == LMC_GGML_F16) ||
         (t0->enc.id == LMC_ENC_BF16 && g->type == LMC_GGML_BF16) ||
         (t0->enc.id == LMC_ENC_F32 && g->type == LMC_GGML_F32)) &&
        t0->nbytes == nbytes) {
        *data = t0->data; /* already ggml's row-major layout: straight from the map */
        return 0;
    }
    size_t off = 0;
    for (int j = 0; j < g->nsrc; j++) {
        const lmc_tensor *t = g->src[j];
        int64_t rows = t->shape[0];
        int64_t *map = g->permute_heads ? permuted_rows(rows, g->permute_heads) : NULL;
        if (g->permute_heads && !map)
            return lmc_fail(err, "%s: out of memory", t->name);
        int rc;
        if (g->ndim == 2) {
            rc = lmc_gguf_encode(t, g->type, map, dst + off, err);
            off += (size_t)rows * lmc_ggml_row_bytes(g->type, t->shape[1]);
        } else if (map) { /* a q/k bias: the same permutation, element-wise */
            float *v = malloc((size_t)rows * sizeof *v);
            rc = v ? lmc_gguf_encode(t, LMC_GGML_F32, NULL, (uint8_t *)v, err)
                   : lmc_fail(err, "%s: out of memory", t->name);
            for (int64_t i = 0; i < rows && rc == 0; i++)
                memcpy(dst + off + 4 * (size_t)i, &v[map[i]], 4);
            free(v);
            off += (size_t)rows * 4;
        } else {
            rc = lmc_gguf_encode(t, LMC_GGML_F32, NULL, dst + off, err);
            off += (size_t)rows * 4;
        }
        free(map);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static void set_hparams(lmc_gguf *g, const lmc_config *c, const char *arch, const char *name)
{
    char k[96];
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    lmc_gguf_set_str(g, "general.architecture", arch);
    if (name)
        lmc_gguf_set_str(g, "general.name", name);
    lmc_gguf_set_u32(g, "general.quantization_version", 2);
    lmc_gguf_set_u32(g, KEY("vocab_size"), (uint32_t)c->vocab);
    lmc_gguf_set_u32(g, KEY("context_length"), (uint32_t)c->max_pos);
    lmc_gguf_set_u32(g, KEY("embedding_length"), (uint32_t)c->hidden);
    lmc_gguf_set_u32(g, KEY("block_count"), (uint32_t)c->n_layers);
    lmc_gguf_set_u32(g, KEY("feed_forward_length"), (uint32_t)c->ffn);
    lmc_gguf_set_u32(g, KEY("attention.head_count"), (uint32_t)c->n_heads);
    lmc_gguf_set_u32(g, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    lmc_gguf_set_u32(g, KEY("attention.key_length"), (uint32_t)c->head_dim);
    lmc_gguf_set_u32(g, KEY("attention.value_length"), (uint32_t)c->head_dim);
    if (c->norm_is_rms)
        lmc_gguf_set_f32(g, KEY("attention.layer_norm_rms_epsilon"), (float)c->norm_eps);
    else
        lmc_gguf_set_f32(g, KEY("attention.layer_norm_epsilon"), (float)c->norm_eps);
    if (c->rope_type != LMC_ROPE_NONE) {
        lmc_gguf_set_u32(g, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
        lmc_gguf_set_f32(g, KEY("rope.freq_base"), (float)c->rope_theta);
        if (c->rope_type == LMC_ROPE_LINEAR && c->rope_factor > 0) {
            lmc_gguf_set_str(g, KEY("rope.scaling.type"), "linear");
            lmc_gguf_set_f32(g, KEY("rope.scaling.factor"), (float)c->rope_factor);
        }
    }
#undef KEY
}

int lmc_export_gguf(const lmc_model *m, const char *out, const lmc_export_opts *o,
                    lmc_export_report *rep, lmc_error *err)
{
    const lmc_config *c = &m->cfg;
    char why[300] = "";
    int permute;
    const char *arch = gguf_arch(c, &permute, why, sizeof why);
    if (!arch)
        return lmc_fail(err, "%s: cannot export to gguf: %s", m->source_path, why);
    if (!m->tokenizer_json)
        return lmc_fail(err, "%s: no tokenizer.json (a GGUF file carries the vocabulary)",
                        m->source_path);
    plan p = {.m = m, .o = o};
    lmc_gguf *g = lmc_gguf_new();
    int rc = -1;
    if (!g) {
        lmc_fail(err, "out of memory");
        goto out;
    }
    if (build_plan(&p, arch, permute, err) != 0)
        goto out;
    if (p.rf.n) {
        lmc_refusals_fail(&p.rf, m->source_path, o, 1, err);
        goto out;
    }
    set_hparams(g, c, arch, o->name);
    set_ftype(g, &p);
    int v = lmc_gguf_add_vocab(g, m->tokenizer_json, m->tokenizer_json_len, c, why, sizeof why,
                               err);
    if (v < 0) {
        lmc_fail_prefix(err, m->source_path);
        goto out;
    }
    if (v > 0) {
        lmc_fail(err, "%s: cannot export to gguf: the tokenizer is %s", m->source_path, why);
        goto out;
    }
    for (int i = 0; i < p.n; i++)
        if (lmc_gguf_add_tensor(g, p.t[i].name, p.t[i].ndim, p.t[i].ne, p.t[i].type) < 0) {
            lmc_fail(err, "out of memory");
            goto out;
        }
    uint64_t written = 0;
    if (lmc_gguf_write(g, out, fill, &p, &written, err) != 0)
        goto out;
    for (int i = 0; i < p.n; i++) {
        char from[200] = "", part[48];
        for (int j = 0; j < p.t[i].nsrc; j++) {
            lmc_export_describe(p.t[i].src[j], part, sizeof part);
            if (j == 0 || strcmp(part, from) != 0) /* a fused trio in one encoding: once */
                snprintf(from + strlen(from), sizeof from - strlen(from), "%s%s", j ? " + " : "",
                         part);
        }
        if (p.t[i].gen)
            snprintf(from, sizeof from, "generated");
        if (lmc_export_report_add(rep, p.t[i].name, from, lmc_ggml_type_name(p.t[i].type),
                                  p.t[i].dequantized, lmc_gguf_tensor_bytes(g, i)) != 0) {
            lmc_fail(err, "out of memory");
            goto out;
        }
    }
    rep->bytes_written = written;
    snprintf(rep->format_note, sizeof rep->format_note, "gguf v3, llama.cpp architecture %s",
             arch);
    rc = 0;
out:
    free_plan(&p);
    lmc_gguf_free(g);
    return rc;
}
