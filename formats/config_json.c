/* The config is stored as named fields (not a struct dump) so the header
 * stays readable and a field added later can get a default when absent. */
#include "config_json.h"
#include "arch.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const act_names[] = {[LMC_ACT_SILU] = "silu", [LMC_ACT_RELU] = "relu",
                                        [LMC_ACT_GELU_NEW] = "gelu_new", [LMC_ACT_GELU] = "gelu"};
static const char *const rope_names[] = {[LMC_ROPE_NONE] = "none", [LMC_ROPE_DEFAULT] = "default",
                                         [LMC_ROPE_LINEAR] = "linear", [LMC_ROPE_LLAMA3] = "llama3"};

typedef enum { F_INT, F_DOUBLE, F_STR, F_ARCH, F_ACT, F_ROPE } ftype;

typedef struct {
    const char *key;
    ftype type;
    size_t off;
    size_t size; /* F_STR: buffer size */
} field;

#define FI(name) {#name, F_INT, offsetof(lmc_config, name), 0}
#define FD(name) {#name, F_DOUBLE, offsetof(lmc_config, name), 0}
#define FS(name) {#name, F_STR, offsetof(lmc_config, name), sizeof(((lmc_config *)0)->name)}

static const field fields[] = {
    {"arch", F_ARCH, offsetof(lmc_config, arch), 0},
    FS(model_type),
    FI(vocab),
    FI(hidden),
    FI(n_layers),
    FI(n_heads),
    FI(n_kv_heads),
    FI(head_dim),
    FI(ffn),
    FI(max_pos),
    FI(pos_offset),
    FI(tied),
    FI(norm_is_rms),
    FD(norm_eps),
    {"act", F_ACT, offsetof(lmc_config, act), 0},
    FI(qkv_bias),
    FI(o_bias),
    FI(mlp_bias),
    {"rope_type", F_ROPE, offsetof(lmc_config, rope_type), 0},
    FD(rope_theta),
    FD(rope_factor),
    FD(rope_low_freq_factor),
    FD(rope_high_freq_factor),
    FI(rope_orig_max_pos),
    FI(bos_id),
    FI(eos_id),
    FS(src_dtype),
};

static const char *enum_name(const char *const *names, size_t n, int v)
{
    return v >= 0 && (size_t)v < n && names[v] ? names[v] : NULL;
}

static int enum_value(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

cJSON *lmc_config_to_json(const lmc_config *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    const char *base = (const char *)c;
    for (size_t i = 0; i < NELEM(fields); i++) {
        const field *f = &fields[i];
        const void *p = base + f->off;
        cJSON *v = NULL;
        const char *s = NULL;
        switch (f->type) {
        case F_INT: v = cJSON_CreateNumber(*(const int *)p); break;
        case F_DOUBLE: v = cJSON_CreateNumber(*(const double *)p); break;
        case F_STR: {
            char tmp[64];
            snprintf(tmp, sizeof tmp, "%.*s", (int)f->size, (const char *)p);
            v = cJSON_CreateString(tmp);
            break;
        }
        case F_ARCH: {
            lmc_arch a;
            s = lmc_arch_name(*(const lmc_arch *)p);
            if (lmc_arch_by_name(s, &a) < 0)
                s = NULL;
            break;
        }
        case F_ACT: s = enum_name(act_names, NELEM(act_names), *(const int *)p); break;
        case F_ROPE: s = enum_name(rope_names, NELEM(rope_names), *(const int *)p); break;
        }
        if (f->type == F_ARCH || f->type == F_ACT || f->type == F_ROPE)
            v = s ? cJSON_CreateString(s) : cJSON_CreateNumber(*(const int *)p);
        if (!v) {
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddItemToObject(o, f->key, v);
    }
    return o;
}

int lmc_json_get_i64(const cJSON *item, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(item))
        return -1;
    double d = item->valuedouble;
    /* doubles hold integers exactly up to 2^53 */
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0)
        return -1;
    int64_t v = (int64_t)d;
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int lmc_config_from_json(const cJSON *obj, lmc_config *c, const char *what, lmc_error *err)
{
    if (!cJSON_IsObject(obj))
        return lmc_fail(err, "%s: config is not a JSON object", what);
    memset(c, 0, sizeof *c);
    char *base = (char *)c;
    for (size_t i = 0; i < NELEM(fields); i++) {
        const field *f = &fields[i];
        void *p = base + f->off;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->key);
        if (!v)
            return lmc_fail(err, "%s: config: missing field '%s'", what, f->key);
        switch (f->type) {
        case F_INT: {
            int64_t x;
            if (lmc_json_get_i64(v, -2147483647 - 1, 2147483647, &x) != 0)
                return lmc_fail(err, "%s: config: '%s' is not an integer", what, f->key);
            *(int *)p = (int)x;
            break;
        }
        case F_DOUBLE:
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
                return lmc_fail(err, "%s: config: '%s' is not a number", what, f->key);
            *(double *)p = v->valuedouble;
            break;
        case F_STR:
            if (!cJSON_IsString(v) || strlen(v->valuestring) >= f->size)
                return lmc_fail(err, "%s: config: '%s' is not a string of at most %zu bytes",
                                what, f->key, f->size - 1);
            memcpy(p, v->valuestring, strlen(v->valuestring) + 1);
            break;
        case F_ARCH:
        case F_ACT:
        case F_ROPE: {
            const char *const *names = f->type == F_ACT ? act_names : rope_names;
            size_t n = f->type == F_ACT ? NELEM(act_names) : NELEM(rope_names);
            int e = -1;
            if (f->type == F_ARCH) {
                lmc_arch a;
                if (cJSON_IsString(v) && lmc_arch_by_name(v->valuestring, &a) == 0)
                    e = (int)a;
            } else if (cJSON_IsString(v)) {
                e = enum_value(names, n, v->valuestring);
            }
            if (e < 0)
                return lmc_fail(err, "%s: config: unknown %s %s%s%s", what, f->key,
                                cJSON_IsString(v) ? "'" : "",
                                cJSON_IsString(v) ? v->valuestring : "(not a string)",
                                cJSON_IsString(v) ? "'" : "");
            *(int *)p = e;
            break;
        }
        }
    }
    if (lmc_arch_caps(c, err) < 0) /* derived, not stored */
        return lmc_fail_prefix(err, what);
    return 0;
}

int lmc_config_check(const lmc_config *c, const char *what, lmc_error *err)
{
#define NEED(cond, ...)                                                                         \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            char m_[512];                                                                       \
            snprintf(m_, sizeof m_, __VA_ARGS__);                                               \
            return lmc_fail(err, "%s: inconsistent config: %s", what, m_);                      \
        }                                                                                       \
    } while (0)
    lmc_config caps = *c;
    NEED(lmc_arch_caps(&caps, NULL) == 0, "unknown arch %d", (int)c->arch);
    NEED(caps.gated_ffn == c->gated_ffn && caps.learned_pos == c->learned_pos &&
             caps.fused_qkv == c->fused_qkv,
         "capability flags do not match architecture %s", lmc_arch_name(c->arch));
    NEED(memchr(c->model_type, 0, sizeof c->model_type) && c->model_type[0],
         "model_type is empty");
    NEED(c->vocab > 0, "vocab %d", c->vocab);
    NEED(c->hidden > 0, "hidden %d", c->hidden);
    NEED(c->n_layers > 0, "n_layers %d", c->n_layers);
    NEED(c->n_heads > 0, "n_heads %d", c->n_heads);
    NEED(c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0,
         "n_heads %d is not a multiple of n_kv_heads %d", c->n_heads, c->n_kv_heads);
    NEED(c->head_dim > 0, "head_dim %d", c->head_dim);
    NEED(c->ffn > 0, "ffn %d", c->ffn);
    NEED(c->max_pos > 0, "max_pos %d", c->max_pos);
    NEED(c->pos_offset >= 0, "pos_offset %d", c->pos_offset);
    NEED(c->tied == 0 || c->tied == 1, "tied %d (not 0/1)", c->tied);
    NEED(c->norm_is_rms == 0 || c->norm_is_rms == 1, "norm_is_rms %d (not 0/1)", c->norm_is_rms);
    NEED(isfinite(c->norm_eps) && c->norm_eps > 0, "norm_eps %g", c->norm_eps);
    NEED(enum_name(act_names, NELEM(act_names), (int)c->act), "unknown act %d", (int)c->act);
    NEED((c->qkv_bias | c->o_bias | c->mlp_bias) >= 0 && c->qkv_bias <= 1 && c->o_bias <= 1 &&
             c->mlp_bias <= 1,
         "bias flags %d/%d/%d (not 0/1)", c->qkv_bias, c->o_bias, c->mlp_bias);
    NEED(enum_name(rope_names, NELEM(rope_names), (int)c->rope_type), "unknown rope_type %d",
         (int)c->rope_type);
    NEED(c->rope_type == LMC_ROPE_NONE || (isfinite(c->rope_theta) && c->rope_theta > 0),
         "rope_theta %g", c->rope_theta);
    NEED(c->rope_type == LMC_ROPE_NONE || c->head_dim % 2 == 0,
         "RoPE needs an even head_dim, got %d", c->head_dim);
    NEED(c->bos_id >= -1 && c->bos_id < c->vocab, "bos_id %d outside the vocabulary", c->bos_id);
    NEED(c->eos_id >= -1 && c->eos_id < c->vocab, "eos_id %d outside the vocabulary", c->eos_id);
    NEED(memchr(c->src_dtype, 0, sizeof c->src_dtype), "src_dtype not terminated");
#undef NEED
    return 0;
}

/* expected shape: ndim 1 -> [a], ndim 2 -> [a, b] */
static int want(const lmc_tensor *t, int ndim, int64_t a, int64_t b, const char *what,
                lmc_error *err)
{
    int ok = t->ndim == ndim && t->shape[0] == a && (ndim == 1 || t->shape[1] == b);
    if (ok)
        return 0;
    char got[64], exp[64];
    if (t->ndim == 2)
        snprintf(got, sizeof got, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
    else
        snprintf(got, sizeof got, "[%lld]", (long long)t->shape[0]);
    if (ndim == 2)
        snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)a, (long long)b);
    else
        snprintf(exp, sizeof exp, "[%lld]", (long long)a);
    return lmc_fail(err, "%s: tensor %s has shape %s, config implies %s", what, t->name, got, exp);
}

int lmc_config_check_tensor(const lmc_config *c, const lmc_tensor *t, const char *what,
                            lmc_error *err)
{
    const int64_t H = c->hidden, Q = (int64_t)c->n_heads * c->head_dim,
                  KV = (int64_t)c->n_kv_heads * c->head_dim, F = c->ffn;
    const char *n = t->name;
    if (!strcmp(n, "embed.weight"))
        return want(t, 2, c->vocab, H, what, err);
    if (!strcmp(n, "pos_embed.weight")) {
        if (t->ndim != 2 || t->shape[1] != H)
            return lmc_fail(err, "%s: tensor %s: expected [positions, %lld]", what, n,
                            (long long)H);
        return 0;
    }
    if (!strcmp(n, "head.weight")) {
        if (c->tied)
            return lmc_fail(err, "%s: inconsistent config: tied embeddings but %s present", what,
                            n);
        return want(t, 2, c->vocab, H, what, err);
    }
    if (!strcmp(n, "final_norm.weight") || !strcmp(n, "final_norm.bias"))
        return want(t, 1, H, 1, what, err);
    /* the index by strtoll: sscanf's %d is undefined on overflow (and glibc
     * wraps blk.4294967296 to block 0) */
    if (strncmp(n, "blk.", 4) != 0 || !((n[4] >= '0' && n[4] <= '9') || n[4] == '-'))
        return 0; /* not a block tensor: nothing the config says about it */
    char *end;
    errno = 0;
    long long layer = strtoll(n + 4, &end, 10);
    int used = 0;
    char role[32], kind[16];
    if (sscanf(end, ".%31[a-z_].%15[a-z]%n", role, kind, &used) != 2 || end[used])
        return 0;
    if (errno == ERANGE || layer < 0 || layer >= c->n_layers)
        return lmc_fail(err, "%s: tensor %s: block %.*s but the config has %d layers", what, n,
                        (int)(end - (n + 4)), n + 4, c->n_layers);
    int bias = !strcmp(kind, "bias");
    if (!bias && strcmp(kind, "weight"))
        return 0;
    int64_t out, in;
    if (!strcmp(role, "attn_norm") || !strcmp(role, "ffn_norm"))
        return want(t, 1, H, 1, what, err);
    else if (!strcmp(role, "q"))
        out = Q, in = H;
    else if (!strcmp(role, "k") || !strcmp(role, "v"))
        out = KV, in = H;
    else if (!strcmp(role, "o"))
        out = H, in = Q;
    else if (!strcmp(role, "gate") || !strcmp(role, "up"))
        out = F, in = H;
    else if (!strcmp(role, "down"))
        out = H, in = F;
    else
        return 0;
    return bias ? want(t, 1, out, 1, what, err) : want(t, 2, out, in, what, err);
}
