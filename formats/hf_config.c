#include "hf_config.h"
#include "arch.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_json.h"

/* A key whose value is JSON null counts as absent (transformers writes
 * "head_dim": null, "n_inner": null, ...). */
static const cJSON *item(const cJSON *o, const char *key)
{
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

typedef struct ctx {
    const char *path;
    lmc_error *err;
} ctx;

/* Integer key in [lo, hi]. required: absent is an error; else *out = def. */
static int get_int(const ctx *c, const cJSON *o, const char *key, int required, long def,
                   long lo, long hi, int *out)
{
    const cJSON *v = item(o, key);
    if (!v) {
        if (required)
            return lmc_fail(c->err, "%s: missing required key '%s'", c->path, key);
        *out = (int)def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return lmc_fail(c->err, "%s: '%s' must be an integer in [%ld, %ld]", c->path, key, lo,
                        hi);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_double(const ctx *c, const cJSON *o, const char *key, int required, double def,
                      double *out)
{
    const cJSON *v = item(o, key);
    if (!v) {
        if (required)
            return lmc_fail(c->err, "%s: missing required key '%s'", c->path, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lmc_fail(c->err, "%s: '%s' must be a number", c->path, key);
    *out = v->valuedouble;
    return 0;
}

static int get_bool(const ctx *c, const cJSON *o, const char *key, int def, int *out)
{
    const cJSON *v = item(o, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return lmc_fail(c->err, "%s: '%s' must be true or false", c->path, key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

/* String key; NULL when absent; error when present but not a string. */
static int get_str(const ctx *c, const cJSON *o, const char *key, const char **out)
{
    const cJSON *v = item(o, key);
    *out = NULL;
    if (!v)
        return 0;
    if (!cJSON_IsString(v))
        return lmc_fail(c->err, "%s: '%s' must be a string", c->path, key);
    *out = v->valuestring;
    return 0;
}

/* bos/eos: an int, a list of ints (the first is used) or absent/null (-1). */
static int get_token_id(const ctx *c, const cJSON *o, const char *key, int *out)
{
    const cJSON *v = item(o, key);
    *out = -1;
    if (!v)
        return 0;
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) == 0)
            return 0;
        v = cJSON_GetArrayItem(v, 0);
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 2147483647.0)
        return lmc_fail(c->err, "%s: '%s' must be a token id, a list of them or null", c->path,
                        key);
    *out = (int)v->valuedouble;
    return 0;
}

static int parse_act(const ctx *c, const char *key, const char *name, lmc_act *act)
{
    if (!strcmp(name, "silu") || !strcmp(name, "swish"))
        *act = LMC_ACT_SILU;
    else if (!strcmp(name, "relu"))
        *act = LMC_ACT_RELU;
    /* gelu_pytorch_tanh and gelu_fast are the same tanh formula as gelu_new */
    else if (!strcmp(name, "gelu_new") || !strcmp(name, "gelu_pytorch_tanh") ||
             !strcmp(name, "gelu_fast"))
        *act = LMC_ACT_GELU_NEW;
    else if (!strcmp(name, "gelu"))
        *act = LMC_ACT_GELU;
    else
        return lmc_fail(c->err,
                        "%s: %s '%s' is not supported (supported: silu, relu, gelu, gelu_new)",
                        c->path, key, name);
    return 0;
}

/* A number the rope scaling type needs. */
static int rope_param(const ctx *c, const cJSON *sc, const char *type, const char *key,
                      double *out)
{
    const cJSON *v = item(sc, key);
    if (!v)
        return lmc_fail(c->err, "%s: rope scaling '%s' needs '%s'", c->path, type, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lmc_fail(c->err, "%s: rope scaling '%s': '%s' must be a number", c->path, type,
                        key);
    *out = v->valuedouble;
    return 0;
}

/* RoPE: theta from the top level (4.x) or rope_parameters (5.x); scaling from
 * rope_scaling (4.x) or rope_parameters (5.x). */
static int parse_rope(const ctx *c, const cJSON *root, lmc_config *cfg)
{
    const cJSON *rp = item(root, "rope_parameters");
    const cJSON *rs = item(root, "rope_scaling");
    if (rp && !cJSON_IsObject(rp))
        return lmc_fail(c->err, "%s: 'rope_parameters' must be an object", c->path);
    if (rs && !cJSON_IsObject(rs))
        return lmc_fail(c->err, "%s: 'rope_scaling' must be an object or null", c->path);
    if (rp) {
        /* 5.x models with several attention types nest one set per type */
        const cJSON *ch;
        cJSON_ArrayForEach(ch, rp) if (cJSON_IsObject(ch)) return lmc_fail(
            c->err, "%s: per-layer-type rope_parameters ('%s') are not supported", c->path,
            ch->string);
    }
    if (item(root, "rope_theta")) {
        if (get_double(c, root, "rope_theta", 1, 0, &cfg->rope_theta) != 0)
            return -1;
    } else if (get_double(c, rp, "rope_theta", 0, 10000.0, &cfg->rope_theta) != 0) {
        return -1;
    }
    if (!(cfg->rope_theta > 0))
        return lmc_fail(c->err, "%s: rope_theta must be positive", c->path);

    const cJSON *sc = rs ? rs : rp;
    const char *type = NULL;
    if (get_str(c, sc, "rope_type", &type) != 0)
        return -1;
    if (!type && get_str(c, sc, "type", &type) != 0)
        return -1;
    if (!type)
        type = "default";
    double prf = 1.0;
    if (get_double(c, sc, "partial_rotary_factor", 0, 1.0, &prf) != 0 ||
        get_double(c, root, "partial_rotary_factor", 0, prf, &prf) != 0)
        return -1;
    if (prf != 1.0)
        return lmc_fail(c->err, "%s: partial_rotary_factor %g is not supported", c->path, prf);

    cfg->rope_factor = 1.0;
    if (!strcmp(type, "default")) {
        cfg->rope_type = LMC_ROPE_DEFAULT;
    } else if (!strcmp(type, "linear")) {
        cfg->rope_type = LMC_ROPE_LINEAR;
        if (rope_param(c, sc, type, "factor", &cfg->rope_factor) != 0)
            return -1;
    } else if (!strcmp(type, "llama3")) {
        cfg->rope_type = LMC_ROPE_LLAMA3;
        double omp;
        if (rope_param(c, sc, type, "factor", &cfg->rope_factor) != 0 ||
            rope_param(c, sc, type, "low_freq_factor", &cfg->rope_low_freq_factor) != 0 ||
            rope_param(c, sc, type, "high_freq_factor", &cfg->rope_high_freq_factor) != 0 ||
            rope_param(c, sc, type, "original_max_position_embeddings", &omp) != 0)
            return -1;
        if (omp != floor(omp) || omp < 1 || omp > (double)(1 << 30))
            return lmc_fail(c->err, "%s: rope original_max_position_embeddings must be a "
                                    "positive integer",
                            c->path);
        cfg->rope_orig_max_pos = (int)omp;
        if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor) ||
            !(cfg->rope_low_freq_factor > 0))
            return lmc_fail(c->err, "%s: llama3 rope needs high_freq_factor > low_freq_factor > 0",
                            c->path);
    } else {
        return lmc_fail(c->err,
                        "%s: rope type '%s' is not supported (supported: default, linear, llama3)",
                        c->path, type);
    }
    if (!(cfg->rope_factor > 0))
        return lmc_fail(c->err, "%s: rope scaling factor must be positive", c->path);
    return 0;
}

/* Lower max_pos to a sliding window that full causal attention would exceed. */
static int apply_sliding_window(const ctx *c, const cJSON *root, lmc_config *cfg)
{
    int use = 1;
    if (!strcmp(cfg->model_type, "qwen2") && get_bool(c, root, "use_sliding_window", 0, &use) != 0)
        return -1;
    if (!use)
        return 0;
    int sw = 0;
    if (get_int(c, root, "sliding_window", 0, 0, 1, 1 << 30, &sw) != 0)
        return -1;
    if (sw > 0 && sw < cfg->max_pos)
        cfg->max_pos = sw;
    return 0;
}

static int parse_llama(const ctx *c, const cJSON *root, lmc_config *cfg)
{
    cfg->arch = LMC_ARCH_LLAMA;
    /* transformers class defaults for keys save_pretrained may omit */
    long def_pos = !strcmp(cfg->model_type, "mistral") ? 4096L * 32
                   : !strcmp(cfg->model_type, "qwen2") ? 32768
                                                       : 2048;
    if (get_int(c, root, "vocab_size", 1, 0, 1, 1 << 24, &cfg->vocab) != 0 ||
        get_int(c, root, "hidden_size", 1, 0, 1, 1 << 17, &cfg->hidden) != 0 ||
        get_int(c, root, "intermediate_size", 1, 0, 1, 1 << 20, &cfg->ffn) != 0 ||
        get_int(c, root, "num_hidden_layers", 1, 0, 1, 4096, &cfg->n_layers) != 0 ||
        get_int(c, root, "num_attention_heads", 1, 0, 1, 1 << 14, &cfg->n_heads) != 0 ||
        get_int(c, root, "num_key_value_heads", 0, cfg->n_heads, 1, 1 << 14,
                &cfg->n_kv_heads) != 0 ||
        get_int(c, root, "max_position_embeddings", 0, def_pos, 1, 1 << 30, &cfg->max_pos) != 0 ||
        get_double(c, root, "rms_norm_eps", 0, 1e-6, &cfg->norm_eps) != 0)
        return -1;
    if (!item(root, "head_dim")) {
        if (cfg->hidden % cfg->n_heads)
            return lmc_fail(c->err, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                            c->path, cfg->hidden, cfg->n_heads);
        cfg->head_dim = cfg->hidden / cfg->n_heads;
    } else if (get_int(c, root, "head_dim", 1, 0, 1, 1 << 14, &cfg->head_dim) != 0) {
        return -1;
    }
    if (cfg->head_dim % 2)
        return lmc_fail(c->err, "%s: head_dim %d is odd (RoPE rotates pairs)", c->path,
                        cfg->head_dim);
    if (cfg->n_heads % cfg->n_kv_heads)
        return lmc_fail(c->err,
                        "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        c->path, cfg->n_heads, cfg->n_kv_heads);
    const char *act = NULL;
    if (get_str(c, root, "hidden_act", &act) != 0 ||
        parse_act(c, "hidden_act", act ? act : "silu", &cfg->act) != 0)
        return -1;
    int attn_bias = 0, mlp_bias = 0;
    if (get_bool(c, root, "attention_bias", 0, &attn_bias) != 0 ||
        get_bool(c, root, "mlp_bias", 0, &mlp_bias) != 0 ||
        get_bool(c, root, "tie_word_embeddings", 0, &cfg->tied) != 0)
        return -1;
    if (!strcmp(cfg->model_type, "qwen2")) {
        /* Qwen2Attention: q, k, v always carry biases, o never */
        cfg->qkv_bias = 1;
        cfg->o_bias = 0;
    } else {
        cfg->qkv_bias = cfg->o_bias = attn_bias;
    }
    cfg->mlp_bias = mlp_bias;
    cfg->norm_is_rms = 1;
    cfg->pos_offset = 0;
    if (parse_rope(c, root, cfg) != 0)
        return -1;
    return apply_sliding_window(c, root, cfg);
}

static int parse_opt(const ctx *c, const cJSON *root, lmc_config *cfg)
{
    cfg->arch = LMC_ARCH_OPT;
    if (get_int(c, root, "vocab_size", 1, 0, 1, 1 << 24, &cfg->vocab) != 0 ||
        get_int(c, root, "hidden_size", 1, 0, 1, 1 << 17, &cfg->hidden) != 0 ||
        get_int(c, root, "ffn_dim", 1, 0, 1, 1 << 20, &cfg->ffn) != 0 ||
        get_int(c, root, "num_hidden_layers", 1, 0, 1, 4096, &cfg->n_layers) != 0 ||
        get_int(c, root, "num_attention_heads", 1, 0, 1, 1 << 14, &cfg->n_heads) != 0 ||
        get_int(c, root, "max_position_embeddings", 0, 2048, 1, 1 << 30, &cfg->max_pos) != 0)
        return -1;
    int pre_ln, remove_final, affine, bias, wpd;
    if (get_bool(c, root, "do_layer_norm_before", 1, &pre_ln) != 0 ||
        get_bool(c, root, "_remove_final_layer_norm", 0, &remove_final) != 0 ||
        get_bool(c, root, "layer_norm_elementwise_affine", 1, &affine) != 0 ||
        get_bool(c, root, "enable_bias", 1, &bias) != 0 ||
        get_bool(c, root, "tie_word_embeddings", 1, &cfg->tied) != 0 ||
        get_int(c, root, "word_embed_proj_dim", 0, cfg->hidden, 1, 1 << 17, &wpd) != 0)
        return -1;
    if (!pre_ln)
        return lmc_fail(c->err, "%s: OPT with do_layer_norm_before=false (post-LayerNorm, as "
                                "opt-350m) is not supported",
                        c->path);
    if (remove_final)
        return lmc_fail(c->err, "%s: OPT with _remove_final_layer_norm=true is not supported",
                        c->path);
    if (!affine)
        return lmc_fail(c->err,
                        "%s: OPT with layer_norm_elementwise_affine=false is not supported",
                        c->path);
    if (wpd != cfg->hidden)
        return lmc_fail(c->err,
                        "%s: OPT with word_embed_proj_dim %d != hidden_size %d (project_in/out, "
                        "as opt-350m) is not supported",
                        c->path, wpd, cfg->hidden);
    if (cfg->hidden % cfg->n_heads)
        return lmc_fail(c->err, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                        c->path, cfg->hidden, cfg->n_heads);
    const char *act = NULL;
    if (get_str(c, root, "activation_function", &act) != 0 ||
        parse_act(c, "activation_function", act ? act : "relu", &cfg->act) != 0)
        return -1;
    cfg->n_kv_heads = cfg->n_heads;
    cfg->head_dim = cfg->hidden / cfg->n_heads;
    cfg->pos_offset = 2; /* OPTLearnedPositionalEmbedding: rows 0, 1 are never used */
    cfg->norm_is_rms = 0;
    cfg->norm_eps = 1e-5; /* nn.LayerNorm default; OPT has no config key for it */
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = bias;
    cfg->rope_type = LMC_ROPE_NONE;
    return 0;
}

static int parse_gpt2(const ctx *c, const cJSON *root, lmc_config *cfg)
{
    cfg->arch = LMC_ARCH_GPT2;
    if (get_int(c, root, "vocab_size", 1, 0, 1, 1 << 24, &cfg->vocab) != 0 ||
        get_int(c, root, "n_embd", 1, 0, 1, 1 << 17, &cfg->hidden) != 0 ||
        get_int(c, root, "n_layer", 1, 0, 1, 4096, &cfg->n_layers) != 0 ||
        get_int(c, root, "n_head", 1, 0, 1, 1 << 14, &cfg->n_heads) != 0 ||
        get_double(c, root, "layer_norm_epsilon", 0, 1e-5, &cfg->norm_eps) != 0)
        return -1;
    int npos_def = 1024;
    if (get_int(c, root, "n_ctx", 0, 1024, 1, 1 << 30, &npos_def) != 0 ||
        get_int(c, root, "n_positions", 0, npos_def, 1, 1 << 30, &cfg->max_pos) != 0)
        return -1;
    if (cfg->hidden % cfg->n_heads)
        return lmc_fail(c->err, "%s: n_embd %d is not a multiple of n_head %d", c->path,
                        cfg->hidden, cfg->n_heads);
    if (get_int(c, root, "n_inner", 0, 4L * cfg->hidden, 1, 1 << 20, &cfg->ffn) != 0)
        return -1;
    int by_layer, scale, cross;
    if (get_bool(c, root, "scale_attn_by_inverse_layer_idx", 0, &by_layer) != 0 ||
        get_bool(c, root, "scale_attn_weights", 1, &scale) != 0 ||
        get_bool(c, root, "add_cross_attention", 0, &cross) != 0 ||
        get_bool(c, root, "tie_word_embeddings", 1, &cfg->tied) != 0)
        return -1;
    if (by_layer)
        return lmc_fail(c->err, "%s: GPT-2 with scale_attn_by_inverse_layer_idx=true is not "
                                "supported",
                        c->path);
    if (!scale)
        return lmc_fail(c->err, "%s: GPT-2 with scale_attn_weights=false is not supported",
                        c->path);
    if (cross)
        return lmc_fail(c->err, "%s: GPT-2 with add_cross_attention=true is not supported",
                        c->path);
    const char *act = NULL;
    if (get_str(c, root, "activation_function", &act) != 0 ||
        parse_act(c, "activation_function", act ? act : "gelu_new", &cfg->act) != 0)
        return -1;
    cfg->n_kv_heads = cfg->n_heads;
    cfg->head_dim = cfg->hidden / cfg->n_heads;
    cfg->pos_offset = 0;
    cfg->norm_is_rms = 0;
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = 1;
    cfg->rope_type = LMC_ROPE_NONE;
    return 0;
}

int lmc_hf_config_parse(const char *text, size_t len, const char *path, lmc_config *cfg,
                        lmc_error *err)
{
    ctx c = {path, err};
    memset(cfg, 0, sizeof *cfg);
    cfg->bos_id = cfg->eos_id = -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root)
        return lmc_fail(err, "%s: not valid JSON", path);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        lmc_fail(err, "%s: not a JSON object", path);
        goto out;
    }
    const char *mt = NULL;
    if (get_str(&c, root, "model_type", &mt) != 0)
        goto out;
    if (!mt) {
        lmc_fail(err, "%s: missing required key 'model_type'", path);
        goto out;
    }
    if (strcmp(mt, "llama") && strcmp(mt, "mistral") && strcmp(mt, "qwen2") &&
        strcmp(mt, "opt") && strcmp(mt, "gpt2")) {
        lmc_fail(err, "%s: model_type '%.64s' is not supported (supported: llama, mistral, "
                      "qwen2, opt, gpt2)",
                 path, mt);
        goto out;
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    int r = !strcmp(mt, "opt")    ? parse_opt(&c, root, cfg)
            : !strcmp(mt, "gpt2") ? parse_gpt2(&c, root, cfg)
                                  : parse_llama(&c, root, cfg);
    if (r != 0 || lmc_arch_caps(cfg, err) != 0)
        goto out;
    if (!(cfg->norm_eps > 0)) {
        lmc_fail(err, "%s: norm epsilon must be positive", path);
        goto out;
    }
    if (get_token_id(&c, root, "bos_token_id", &cfg->bos_id) != 0 ||
        get_token_id(&c, root, "eos_token_id", &cfg->eos_id) != 0)
        goto out;
    const char *dt = NULL;
    if (get_str(&c, root, "dtype", &dt) != 0 || (!dt && get_str(&c, root, "torch_dtype", &dt) != 0))
        goto out;
    if (dt && (!strcmp(dt, "float16") || !strcmp(dt, "bfloat16") || !strcmp(dt, "float32")))
        snprintf(cfg->src_dtype, sizeof cfg->src_dtype, "%s", dt);
    /* what a container would refuse (bos/eos outside the vocabulary, ...) is
     * refused here, naming config.json, not by the first write */
    rc = lmc_config_check(cfg, path, err);
out:
    cJSON_Delete(root);
    return rc;
}

int lmc_hf_config_load(const char *path, lmc_config *cfg, char **text, lmc_error *err)
{
    char *buf;
    size_t n;
    if (text)
        *text = NULL;
    if (lmc_read_file(path, &buf, &n, err) != 0)
        return -1;
    if (lmc_hf_config_parse(buf, n, path, cfg, err) != 0) {
        free(buf);
        return -1;
    }
    if (text)
        *text = buf;
    else
        free(buf);
    return 0;
}
