#include "hf_checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf_config.h"
#include "safetensors.h"
#include "tokenizer.h"

/* ------------------------------------------------ the files of a checkpoint */

typedef struct st_entry {
    const lmc_st_tensor *t;
    int file;
} st_entry;

typedef struct ckpt_files {
    lmc_safetensors *st;
    int n_st;
    st_entry *e;
    int n_e;
} ckpt_files;

static void files_close(ckpt_files *f)
{
    for (int i = 0; i < f->n_st; i++)
        lmc_safetensors_close(&f->st[i]);
    free(f->st);
    free(f->e);
    memset(f, 0, sizeof *f);
}

/* A shard must be a plain file name inside the checkpoint directory. */
static int plain_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int add_entries(ckpt_files *f, int file, lmc_error *err)
{
    const lmc_safetensors *st = &f->st[file];
    st_entry *ne = realloc(f->e, (size_t)(f->n_e + st->n_tensors + 1) * sizeof *ne);
    if (!ne)
        return lmc_fail(err, "%s: out of memory", st->path);
    f->e = ne;
    for (int i = 0; i < st->n_tensors; i++)
        f->e[f->n_e++] = (st_entry){&st->tensors[i], file};
    return 0;
}

static int open_sharded(const char *dir, const char *ipath, ckpt_files *f, lmc_error *err)
{
    char *text;
    size_t len;
    if (lmc_read_file(ipath, &text, &len, err) != 0)
        return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = -1;
    char **shards = NULL;
    int n_shards = 0;
    if (!root) {
        lmc_fail(err, "%s: not valid JSON", ipath);
        goto out;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        lmc_fail(err, "%s: no 'weight_map' object", ipath);
        goto out;
    }
    int n = cJSON_GetArraySize(wm);
    if (n == 0) {
        lmc_fail(err, "%s: weight_map is empty", ipath);
        goto out;
    }
    shards = calloc((size_t)n, sizeof *shards);
    if (!shards) {
        lmc_fail(err, "%s: out of memory", ipath);
        goto out;
    }
    const cJSON *kv;
    cJSON_ArrayForEach(kv, wm)
    {
        if (!cJSON_IsString(kv) || !plain_name(kv->valuestring)) {
            lmc_fail(err, "%s: weight_map entry for %s is not a file name in the checkpoint "
                          "directory",
                     ipath, kv->string);
            goto out;
        }
        int k = 0;
        while (k < n_shards && strcmp(shards[k], kv->valuestring) != 0)
            k++;
        if (k == n_shards)
            shards[n_shards++] = kv->valuestring;
    }
    f->st = calloc((size_t)n_shards, sizeof *f->st);
    if (!f->st) {
        lmc_fail(err, "%s: out of memory", ipath);
        goto out;
    }
    for (int s = 0; s < n_shards; s++) {
        char *p = lmc_path_join(dir, shards[s]);
        if (!p) {
            lmc_fail(err, "%s: out of memory", ipath);
            goto out;
        }
        if (!lmc_file_exists(p)) {
            int cnt = 0;
            const char *example = NULL;
            cJSON_ArrayForEach(kv, wm) if (strcmp(kv->valuestring, shards[s]) == 0)
            {
                if (!cnt++)
                    example = kv->string;
            }
            lmc_fail(err, "%s: shard %s is missing (the index lists %d tensor%s in it, e.g. %s)",
                     ipath, shards[s], cnt, cnt == 1 ? "" : "s", example);
            free(p);
            goto out;
        }
        int r = lmc_safetensors_open(p, &f->st[s], err);
        free(p);
        if (r != 0)
            goto out;
        f->n_st++;
        /* the shard and the index must agree, tensor by tensor */
        const lmc_safetensors *st = &f->st[s];
        for (int i = 0; i < st->n_tensors; i++) {
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(wm, st->tensors[i].name);
            if (!w) {
                lmc_fail(err, "%s: tensor %s is not listed in %s", st->path,
                         st->tensors[i].name, ipath);
                goto out;
            }
            if (strcmp(w->valuestring, shards[s]) != 0) {
                lmc_fail(err, "%s: tensor %s is listed in the index under shard %s", st->path,
                         st->tensors[i].name, w->valuestring);
                goto out;
            }
        }
        if (add_entries(f, s, err) != 0)
            goto out;
    }
    cJSON_ArrayForEach(kv, wm)
    {
        int s = 0;
        while (strcmp(shards[s], kv->valuestring) != 0)
            s++;
        if (!lmc_safetensors_find(&f->st[s], kv->string)) {
            lmc_fail(err, "%s: the index lists %s in this shard, but it has no such tensor",
                     f->st[s].path, kv->string);
            goto out;
        }
    }
    rc = 0;
out:
    free(shards);
    cJSON_Delete(root);
    if (rc != 0)
        files_close(f);
    return rc;
}

static int open_files(const char *dir, ckpt_files *f, lmc_error *err)
{
    memset(f, 0, sizeof *f);
    char *ipath = lmc_path_join(dir, "model.safetensors.index.json");
    char *spath = lmc_path_join(dir, "model.safetensors");
    char *bpath = lmc_path_join(dir, "pytorch_model.bin");
    int rc = -1;
    if (!ipath || !spath || !bpath) {
        lmc_fail(err, "%s: out of memory", dir);
    } else if (lmc_file_exists(ipath)) {
        rc = open_sharded(dir, ipath, f, err);
    } else if (lmc_file_exists(spath)) {
        f->st = calloc(1, sizeof *f->st);
        if (!f->st)
            lmc_fail(err, "%s: out of memory", dir);
        else if (lmc_safetensors_open(spath, &f->st[0], err) == 0) {
            f->n_st = 1;
            rc = add_entries(f, 0, err);
        }
        if (rc != 0)
            files_close(f);
    } else {
        lmc_fail(err, "%s: no model.safetensors or model.safetensors.index.json%s", dir,
                 lmc_file_exists(bpath) ? " (pytorch_model.bin is not supported: convert the "
                                          "checkpoint to safetensors)"
                                        : "");
    }
    free(ipath);
    free(spath);
    free(bpath);
    return rc;
}

/* ------------------------------------------------------------ name mapping */

typedef enum { M_UNKNOWN = 0, M_PLAIN, M_CONV1D, M_QKV, M_SKIP, M_HEAD } mkind;

typedef struct rule {
    const char *hf;
    const char *canon; /* for M_QKV: "qkv.weight" / "qkv.bias" */
    mkind kind;
} rule;

typedef struct arch_names {
    const char *prefixes[3]; /* stripped if present, first match wins; [0] used in hints */
    const char *layers;      /* "layers." or "h." after the prefix */
    const rule *top, *layer;
} arch_names;

static const rule llama_top[] = {
    {"embed_tokens.weight", "embed.weight", M_PLAIN},
    {"norm.weight", "final_norm.weight", M_PLAIN},
    {"rotary_emb.inv_freq", NULL, M_SKIP},
    {NULL, NULL, 0},
};
static const rule llama_layer[] = {
    {"input_layernorm.weight", "attn_norm.weight", M_PLAIN},
    {"self_attn.q_proj.weight", "q.weight", M_PLAIN},
    {"self_attn.q_proj.bias", "q.bias", M_PLAIN},
    {"self_attn.k_proj.weight", "k.weight", M_PLAIN},
    {"self_attn.k_proj.bias", "k.bias", M_PLAIN},
    {"self_attn.v_proj.weight", "v.weight", M_PLAIN},
    {"self_attn.v_proj.bias", "v.bias", M_PLAIN},
    {"self_attn.o_proj.weight", "o.weight", M_PLAIN},
    {"self_attn.o_proj.bias", "o.bias", M_PLAIN},
    {"post_attention_layernorm.weight", "ffn_norm.weight", M_PLAIN},
    {"mlp.gate_proj.weight", "gate.weight", M_PLAIN},
    {"mlp.gate_proj.bias", "gate.bias", M_PLAIN},
    {"mlp.up_proj.weight", "up.weight", M_PLAIN},
    {"mlp.up_proj.bias", "up.bias", M_PLAIN},
    {"mlp.down_proj.weight", "down.weight", M_PLAIN},
    {"mlp.down_proj.bias", "down.bias", M_PLAIN},
    {"self_attn.rotary_emb.inv_freq", NULL, M_SKIP},
    {NULL, NULL, 0},
};
static const rule opt_top[] = {
    {"embed_tokens.weight", "embed.weight", M_PLAIN},
    {"embed_positions.weight", "pos_embed.weight", M_PLAIN},
    {"final_layer_norm.weight", "final_norm.weight", M_PLAIN},
    {"final_layer_norm.bias", "final_norm.bias", M_PLAIN},
    {NULL, NULL, 0},
};
static const rule opt_layer[] = {
    {"self_attn_layer_norm.weight", "attn_norm.weight", M_PLAIN},
    {"self_attn_layer_norm.bias", "attn_norm.bias", M_PLAIN},
    {"self_attn.q_proj.weight", "q.weight", M_PLAIN},
    {"self_attn.q_proj.bias", "q.bias", M_PLAIN},
    {"self_attn.k_proj.weight", "k.weight", M_PLAIN},
    {"self_attn.k_proj.bias", "k.bias", M_PLAIN},
    {"self_attn.v_proj.weight", "v.weight", M_PLAIN},
    {"self_attn.v_proj.bias", "v.bias", M_PLAIN},
    {"self_attn.out_proj.weight", "o.weight", M_PLAIN},
    {"self_attn.out_proj.bias", "o.bias", M_PLAIN},
    {"final_layer_norm.weight", "ffn_norm.weight", M_PLAIN},
    {"final_layer_norm.bias", "ffn_norm.bias", M_PLAIN},
    {"fc1.weight", "up.weight", M_PLAIN},
    {"fc1.bias", "up.bias", M_PLAIN},
    {"fc2.weight", "down.weight", M_PLAIN},
    {"fc2.bias", "down.bias", M_PLAIN},
    {NULL, NULL, 0},
};
static const rule gpt2_top[] = {
    {"wte.weight", "embed.weight", M_PLAIN},
    {"wpe.weight", "pos_embed.weight", M_PLAIN},
    {"ln_f.weight", "final_norm.weight", M_PLAIN},
    {"ln_f.bias", "final_norm.bias", M_PLAIN},
    {NULL, NULL, 0},
};
/* Conv1D weights are stored [in, out]; c_attn fuses q, k, v along out. */
static const rule gpt2_layer[] = {
    {"ln_1.weight", "attn_norm.weight", M_PLAIN},
    {"ln_1.bias", "attn_norm.bias", M_PLAIN},
    {"attn.c_attn.weight", "qkv.weight", M_QKV},
    {"attn.c_attn.bias", "qkv.bias", M_QKV},
    {"attn.c_proj.weight", "o.weight", M_CONV1D},
    {"attn.c_proj.bias", "o.bias", M_PLAIN},
    {"ln_2.weight", "ffn_norm.weight", M_PLAIN},
    {"ln_2.bias", "ffn_norm.bias", M_PLAIN},
    {"mlp.c_fc.weight", "up.weight", M_CONV1D},
    {"mlp.c_fc.bias", "up.bias", M_PLAIN},
    {"mlp.c_proj.weight", "down.weight", M_CONV1D},
    {"mlp.c_proj.bias", "down.bias", M_PLAIN},
    /* causal-mask buffers of old exports, not parameters */
    {"attn.bias", NULL, M_SKIP},
    {"attn.masked_bias", NULL, M_SKIP},
    {NULL, NULL, 0},
};

static const arch_names llama_names = {{"model.", NULL, NULL}, "layers.", llama_top, llama_layer};
static const arch_names opt_names = {{"model.decoder.", "decoder.", NULL}, "layers.", opt_top,
                                     opt_layer};
static const arch_names gpt2_names = {{"transformer.", NULL, NULL}, "h.", gpt2_top, gpt2_layer};

static const arch_names *names_for(lmc_arch a)
{
    return a == LMC_ARCH_OPT ? &opt_names : a == LMC_ARCH_GPT2 ? &gpt2_names : &llama_names;
}

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* HF name -> kind and canonical name ("blk.N.q.weight", or "blk.N.qkv.*"). */
static mkind map_name(const arch_names *an, int n_layers, const char *name, char canon[64])
{
    if (strcmp(name, "lm_head.weight") == 0) {
        snprintf(canon, 64, "head.weight");
        return M_HEAD;
    }
    const char *s = name;
    for (int i = 0; i < 3 && an->prefixes[i]; i++)
        if (starts(s, an->prefixes[i])) {
            s += strlen(an->prefixes[i]);
            break;
        }
    for (const rule *r = an->top; r->hf; r++)
        if (strcmp(s, r->hf) == 0) {
            if (r->canon)
                snprintf(canon, 64, "%s", r->canon);
            return r->kind;
        }
    if (!starts(s, an->layers))
        return M_UNKNOWN;
    s += strlen(an->layers);
    /* a layer index: digits without a leading zero, below n_layers */
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return M_UNKNOWN;
    long layer = 0;
    while (*s >= '0' && *s <= '9' && layer < n_layers)
        layer = layer * 10 + (*s++ - '0');
    if (layer >= n_layers || *s != '.')
        return M_UNKNOWN;
    s++;
    for (const rule *r = an->layer; r->hf; r++)
        if (strcmp(s, r->hf) == 0) {
            if (r->canon)
                snprintf(canon, 64, "blk.%ld.%s", layer, r->canon);
            return r->kind;
        }
    return M_UNKNOWN;
}

/* The save_pretrained name of a canonical tensor and its layout; -1 when the
 * architecture has none. */
static int hf_name(const arch_names *an, const char *canon, char *buf, size_t n,
                   lmc_hf_layout *layout)
{
    *layout = LMC_HF_PLAIN;
    if (strcmp(canon, "head.weight") == 0) {
        snprintf(buf, n, "lm_head.weight");
        return 0;
    }
    int layer;
    char role[32], kind[16];
    if (sscanf(canon, "blk.%d.%31[^.].%15s", &layer, role, kind) != 3) {
        for (const rule *r = an->top; r->hf; r++)
            if (r->canon && strcmp(r->canon, canon) == 0) {
                snprintf(buf, n, "%s%s", an->prefixes[0], r->hf);
                return 0;
            }
        return -1;
    }
    /* q, k, v of an architecture that fuses them come from the fused tensor */
    int fused = 0;
    for (const rule *r = an->layer; r->hf; r++)
        fused |= r->kind == M_QKV;
    int qkv = !strcmp(role, "q") || !strcmp(role, "k") || !strcmp(role, "v");
    char want[64];
    snprintf(want, sizeof want, "%s.%s", fused && qkv ? "qkv" : role, kind);
    for (const rule *r = an->layer; r->hf; r++)
        if (r->canon && strcmp(r->canon, want) == 0) {
            snprintf(buf, n, "%s%s%d.%s", an->prefixes[0], an->layers, layer, r->hf);
            *layout = r->kind == M_QKV      ? LMC_HF_FUSED_QKV
                      : r->kind == M_CONV1D ? LMC_HF_CONV1D
                                            : LMC_HF_PLAIN;
            return 0;
        }
    return -1;
}

/* The usual HF name of a canonical tensor, for "missing tensor" messages. */
static void hint_name(const arch_names *an, const char *canon, char *buf, size_t n)
{
    lmc_hf_layout layout;
    if (hf_name(an, canon, buf, n, &layout) != 0)
        snprintf(buf, n, "%s", canon);
}

int lmc_hf_tensor_name(lmc_arch arch, const char *canon, char *buf, size_t n,
                       lmc_hf_layout *layout)
{
    return hf_name(names_for(arch), canon, buf, n, layout);
}

/* -------------------------------------------------- expected tensors (slots) */

typedef struct slot {
    lmc_tensor t;       /* name, ndim, shape set up front; data once found */
    const char *source; /* the HF name that filled it */
    int filled;
} slot;

typedef struct slots {
    slot *s;
    int n, cap;
} slots;

static int add_slot(slots *ss, const char *name, int ndim, int64_t rows, int64_t cols)
{
    if (ss->n == ss->cap) {
        int cap = ss->cap ? 2 * ss->cap : 64;
        slot *ns = realloc(ss->s, (size_t)cap * sizeof *ns);
        if (!ns)
            return -1;
        ss->s = ns;
        ss->cap = cap;
    }
    slot *s = &ss->s[ss->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->t.name, sizeof s->t.name, "%s", name);
    s->t.ndim = ndim;
    s->t.shape[0] = rows;
    s->t.shape[1] = ndim == 2 ? cols : 1;
    return 0;
}

static int add_linear(slots *ss, int layer, const char *role, int64_t out, int64_t in, int bias)
{
    char nm[64];
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", layer, role);
    if (add_slot(ss, nm, 2, out, in) != 0)
        return -1;
    snprintf(nm, sizeof nm, "blk.%d.%s.bias", layer, role);
    return bias ? add_slot(ss, nm, 1, out, 1) : 0;
}

static int add_norm(slots *ss, int layer, const char *role, int64_t dim, int bias)
{
    char nm[64];
    if (layer >= 0)
        snprintf(nm, sizeof nm, "blk.%d.%s.weight", layer, role);
    else
        snprintf(nm, sizeof nm, "%s.weight", role);
    if (add_slot(ss, nm, 1, dim, 1) != 0)
        return -1;
    if (!bias)
        return 0;
    memcpy(strrchr(nm, '.'), ".bias", 6);
    return add_slot(ss, nm, 1, dim, 1);
}

/* Every tensor the config implies, in canonical order. */
static int build_slots(const lmc_config *c, slots *ss)
{
    int64_t H = c->hidden, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim, F = c->ffn;
    int ln_bias = !c->norm_is_rms;
    if (add_slot(ss, "embed.weight", 2, c->vocab, H) != 0)
        return -1;
    if (c->arch != LMC_ARCH_LLAMA &&
        add_slot(ss, "pos_embed.weight", 2, (int64_t)c->max_pos + c->pos_offset, H) != 0)
        return -1;
    for (int l = 0; l < c->n_layers; l++) {
        if (add_norm(ss, l, "attn_norm", H, ln_bias) != 0 ||
            add_linear(ss, l, "q", qd, H, c->qkv_bias) != 0 ||
            add_linear(ss, l, "k", kvd, H, c->qkv_bias) != 0 ||
            add_linear(ss, l, "v", kvd, H, c->qkv_bias) != 0 ||
            add_linear(ss, l, "o", H, qd, c->o_bias) != 0 ||
            add_norm(ss, l, "ffn_norm", H, ln_bias) != 0)
            return -1;
        if (c->arch == LMC_ARCH_LLAMA && add_linear(ss, l, "gate", F, H, c->mlp_bias) != 0)
            return -1;
        if (add_linear(ss, l, "up", F, H, c->mlp_bias) != 0 ||
            add_linear(ss, l, "down", H, F, c->mlp_bias) != 0)
            return -1;
    }
    if (add_norm(ss, -1, "final_norm", H, ln_bias) != 0)
        return -1;
    if (!c->tied && add_slot(ss, "head.weight", 2, c->vocab, H) != 0)
        return -1;
    return 0;
}

static slot *find_slot(slots *ss, const char *name)
{
    for (int i = 0; i < ss->n; i++)
        if (strcmp(ss->s[i].t.name, name) == 0)
            return &ss->s[i];
    return NULL;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

static int check_shape(const char *file, const lmc_st_tensor *t, int ndim, int64_t a, int64_t b,
                       lmc_error *err)
{
    int64_t want[2] = {a, b};
    int ok = t->ndim == ndim && t->shape[0] == a && (ndim == 1 || t->shape[1] == b);
    if (ok)
        return 0;
    char got[128], exp[64];
    shape_str(t->shape, t->ndim, got, sizeof got);
    shape_str(want, ndim, exp, sizeof exp);
    return lmc_fail(err, "%s: %s has shape %s, config says %s", file, t->name, got, exp);
}

/* dst[c][r] = src[r][col0 + c] for r < rows, c < ncols: a Conv1D [in, out]
 * slice to [out, in]. Blocked so both sides stay in cache. */
static void transpose(const uint8_t *src, int64_t rows, int64_t cols, int64_t col0,
                      int64_t ncols, size_t esz, uint8_t *dst)
{
    enum { B = 32 };
    for (int64_t r0 = 0; r0 < rows; r0 += B)
        for (int64_t c0 = 0; c0 < ncols; c0 += B) {
            int64_t r1 = r0 + B < rows ? r0 + B : rows, c1 = c0 + B < ncols ? c0 + B : ncols;
            for (int64_t c = c0; c < c1; c++)
                for (int64_t r = r0; r < r1; r++)
                    memcpy(dst + (size_t)(c * rows + r) * esz,
                           src + (size_t)(r * cols + col0 + c) * esz, esz);
        }
}

/* Point the slot at data (in the map), copying when it is misaligned. */
static int place(slot *s, const uint8_t *data, size_t esz, const char *file, lmc_error *err)
{
    size_t nbytes = (size_t)(s->t.shape[0] * s->t.shape[1]) * esz;
    if ((uintptr_t)data % esz) {
        void *p = malloc(nbytes);
        if (!p)
            return lmc_fail(err, "%s: out of memory copying %s", file, s->t.name);
        memcpy(p, data, nbytes);
        s->t.owned = p;
        data = p;
    }
    s->t.data = data;
    s->t.nbytes = nbytes;
    return 0;
}

/* Owned [out, in] copy of columns col0.. of a Conv1D weight. */
static int place_transposed(slot *s, const lmc_st_tensor *t, int64_t col0, size_t esz,
                            const char *file, lmc_error *err)
{
    int64_t out = s->t.shape[0], in = s->t.shape[1];
    size_t nbytes = (size_t)(out * in) * esz;
    uint8_t *p = malloc(nbytes ? nbytes : 1);
    if (!p)
        return lmc_fail(err, "%s: out of memory transposing %s", file, t->name);
    transpose(t->data, t->shape[0], t->shape[1], col0, out, esz, p);
    s->t.owned = p;
    s->t.data = p;
    s->t.nbytes = nbytes;
    return 0;
}

static int fill(slot *s, const lmc_st_tensor *t, lmc_enc_id id)
{
    s->filled = 1;
    s->source = t->name;
    s->t.enc = lmc_enc_dense(id);
    return 0;
}

/* One HF tensor into its slot(s). */
static int take_tensor(slots *ss, const char *file,
                       const lmc_st_tensor *t, mkind kind, const char *canon, lmc_error *err)
{
    slot *trio[3] = {NULL, NULL, NULL};
    int nslot = 1;
    if (kind == M_QKV) {
        const char *kindp = strrchr(canon, '.'); /* ".weight" / ".bias" */
        int layer = atoi(canon + 4);
        for (int j = 0; j < 3; j++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%c%s", layer, "qkv"[j], kindp);
            trio[j] = find_slot(ss, nm);
        }
        nslot = 3;
    } else {
        trio[0] = find_slot(ss, canon);
    }
    for (int j = 0; j < nslot; j++) {
        if (!trio[j])
            return lmc_fail(err,
                            "%s: unexpected tensor %s (config.json describes no such weight; "
                            "lmc does not ignore weights)",
                            file, t->name);
        if (trio[j]->filled)
            return lmc_fail(err, "%s: %s and %s both provide %s", file, trio[j]->source, t->name,
                            trio[j]->t.name);
    }
    lmc_enc_id id;
    if (lmc_st_weight_encoding(file, t, &id, err) != 0)
        return -1;
    size_t esz = lmc_st_dtype_size(t->dtype);
    const lmc_tensor *c0 = &trio[0]->t;
    switch (kind) {
    case M_PLAIN:
    case M_HEAD:
        if (check_shape(file, t, c0->ndim, c0->shape[0], c0->shape[1], err) != 0 ||
            place(trio[0], t->data, esz, file, err) != 0)
            return -1;
        return fill(trio[0], t, id);
    case M_CONV1D:
        if (check_shape(file, t, 2, c0->shape[1], c0->shape[0], err) != 0 ||
            place_transposed(trio[0], t, 0, esz, file, err) != 0)
            return -1;
        return fill(trio[0], t, id);
    case M_QKV: {
        int64_t total = trio[0]->t.shape[0] + trio[1]->t.shape[0] + trio[2]->t.shape[0];
        int is_w = c0->ndim == 2;
        if (check_shape(file, t, is_w ? 2 : 1, is_w ? c0->shape[1] : total, total, err) != 0)
            return -1;
        int64_t off = 0;
        for (int j = 0; j < 3; j++) {
            int r = is_w ? place_transposed(trio[j], t, off, esz, file, err)
                         : place(trio[j], t->data + (size_t)off * esz, esz, file, err);
            if (r != 0)
                return -1;
            fill(trio[j], t, id);
            off += trio[j]->t.shape[0];
        }
        return 0;
    }
    default: return lmc_fail(err, "%s: internal error mapping %s", file, t->name);
    }
}

static const char *enc_torch_name(lmc_enc_id id)
{
    return id == LMC_ENC_F32 ? "float32" : id == LMC_ENC_BF16 ? "bfloat16" : "float16";
}

int lmc_hf_checkpoint_load(const char *dir, lmc_model **out, lmc_error *err)
{
    *out = NULL;
    if (!lmc_is_dir(dir))
        return lmc_fail(err, "%s: not a directory", dir);
    char *cpath = lmc_path_join(dir, "config.json");
    if (!cpath)
        return lmc_fail(err, "%s: out of memory", dir);
    if (!lmc_file_exists(cpath)) {
        free(cpath);
        return lmc_fail(err, "%s: no config.json (not a Hugging Face checkpoint directory)",
                        dir);
    }
    lmc_model *m = calloc(1, sizeof *m);
    slots ss = {0};
    ckpt_files f = {0};
    int rc = -1;
    if (!m) {
        lmc_fail(err, "%s: out of memory", dir);
        goto out;
    }
    if (lmc_hf_config_load(cpath, &m->cfg, &m->config_json, err) != 0)
        goto out;
    if (build_slots(&m->cfg, &ss) != 0) {
        lmc_fail(err, "%s: out of memory", dir);
        goto out;
    }
    if (open_files(dir, &f, err) != 0)
        goto out;

    const arch_names *an = names_for(m->cfg.arch);
    for (int i = 0; i < f.n_e; i++) {
        const lmc_st_tensor *t = f.e[i].t;
        const char *file = f.st[f.e[i].file].path;
        char canon[64] = "";
        mkind kind = map_name(an, m->cfg.n_layers, t->name, canon);
        if (kind == M_UNKNOWN) {
            lmc_fail(err,
                     "%s: unexpected tensor %s (not a weight of a %s model with %d layers; lmc "
                     "does not ignore weights)",
                     file, t->name, m->cfg.model_type, m->cfg.n_layers);
            goto out;
        }
        if (kind == M_SKIP || (kind == M_HEAD && m->cfg.tied))
            continue;
        if (take_tensor(&ss, file, t, kind, canon, err) != 0)
            goto out;
    }
    for (int i = 0; i < ss.n; i++)
        if (!ss.s[i].filled) {
            char hint[160];
            hint_name(an, ss.s[i].t.name, hint, sizeof hint);
            lmc_fail(err, "%s: missing tensor %s (%s)%s", dir, hint, ss.s[i].t.name,
                     strcmp(ss.s[i].t.name, "head.weight") == 0
                         ? "; config.json says tie_word_embeddings is false"
                         : "");
            goto out;
        }

    /* src_dtype: the dtype holding most of the elements */
    int64_t count[3] = {0, 0, 0}; /* F32, F16, BF16 */
    for (int i = 0; i < ss.n; i++)
        count[ss.s[i].t.enc.id == LMC_ENC_F32 ? 0 : ss.s[i].t.enc.id == LMC_ENC_F16 ? 1 : 2] +=
            ss.s[i].t.shape[0] * ss.s[i].t.shape[1];
    int best = count[1] >= count[0] && count[1] >= count[2] ? 1 : count[2] >= count[0] ? 2 : 0;
    snprintf(m->cfg.src_dtype, sizeof m->cfg.src_dtype, "%s",
             enc_torch_name(best == 0 ? LMC_ENC_F32 : best == 1 ? LMC_ENC_F16 : LMC_ENC_BF16));

    m->tensors = calloc((size_t)ss.n, sizeof *m->tensors);
    m->maps = calloc((size_t)f.n_st, sizeof *m->maps);
    m->source_path = strdup(dir);
    if (!m->tensors || !m->maps || !m->source_path) {
        lmc_fail(err, "%s: out of memory", dir);
        goto out;
    }
    char *tpath = lmc_path_join(dir, "tokenizer.json");
    if (tpath && lmc_file_exists(tpath) &&
        (lmc_read_file(tpath, &m->tokenizer_json, &m->tokenizer_json_len, err) != 0 ||
         lmc_tokenizer_json_check(m->tokenizer_json, m->tokenizer_json_len, tpath, err) != 0)) {
        free(tpath);
        goto out;
    }
    free(tpath);
    /* success from here on: hand the tensors and maps over to the model */
    for (int i = 0; i < ss.n; i++) {
        m->tensors[i] = ss.s[i].t;
        ss.s[i].t.owned = NULL;
    }
    m->n_tensors = ss.n;
    for (int i = 0; i < f.n_st; i++)
        m->maps[m->n_maps++] = lmc_safetensors_take_map(&f.st[i]);
    m->source_kind = LMC_SRC_CHECKPOINT;
    *out = m;
    m = NULL;
    rc = 0;
out:
    for (int i = 0; i < ss.n; i++)
        free(ss.s[i].t.owned);
    free(ss.s);
    files_close(&f);
    lmc_model_free(m);
    free(cpath);
    return rc;
}

/* ------------------------------------------------------------------ variants */

/* text with the string value of the first `"KEY": "..."` replaced by value
 * (heap), or NULL when no such pattern is found. */
static char *edit_string_value(const char *text, const char *key, const char *value)
{
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    for (const char *p = strstr(text, pat); p; p = strstr(p + 1, pat)) {
        const char *q = p + strlen(pat);
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (*q++ != ':')
            continue;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (*q != '"')
            continue;
        const char *e = strchr(q + 1, '"');
        if (!e)
            return NULL;
        size_t head = (size_t)(q + 1 - text), vl = strlen(value), tail = strlen(e);
        char *out = malloc(head + vl + tail + 1);
        if (!out)
            return NULL;
        memcpy(out, text, head);
        memcpy(out + head, value, vl);
        memcpy(out + head + vl, e, tail + 1);
        return out;
    }
    return NULL;
}

/* config.json with dtype (5.x) and/or torch_dtype (4.x) set to DTYPE. The
 * source text is kept byte for byte apart from that value (so numbers like
 * 10000.0 stay floats for transformers); when a textual edit cannot be
 * verified to mean exactly the intended change, cJSON prints the file. */
static int write_config_variant(const char *src, const char *dst, const char *dtype,
                                lmc_error *err)
{
    char *text;
    size_t n;
    if (lmc_read_file(src, &text, &n, err) != 0)
        return -1;
    cJSON *root = cJSON_ParseWithLength(text, n);
    if (!cJSON_IsObject(root)) {
        free(text);
        cJSON_Delete(root);
        return lmc_fail(err, "%s: not a JSON object", src);
    }
    /* keep the key style of the source: 4.x torch_dtype, 5.x dtype */
    int has_torch = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype") != NULL;
    int has_dtype = cJSON_GetObjectItemCaseSensitive(root, "dtype") != NULL;
    int ok = 1;
    if (has_torch)
        ok &= cJSON_ReplaceItemInObjectCaseSensitive(root, "torch_dtype",
                                                     cJSON_CreateString(dtype));
    if (has_dtype)
        ok &= cJSON_ReplaceItemInObjectCaseSensitive(root, "dtype", cJSON_CreateString(dtype));
    if (!has_torch && !has_dtype)
        ok &= cJSON_AddStringToObject(root, "dtype", dtype) != NULL;

    char *out = NULL;
    if (ok && (has_torch || has_dtype)) {
        char *t1 = has_torch ? edit_string_value(text, "torch_dtype", dtype) : strdup(text);
        char *t2 = t1 && has_dtype ? edit_string_value(t1, "dtype", dtype) : t1;
        if (t2 != t1)
            free(t1);
        cJSON *check = t2 ? cJSON_Parse(t2) : NULL;
        if (check && cJSON_Compare(check, root, 1))
            out = t2;
        else
            free(t2);
        cJSON_Delete(check);
    }
    free(text);
    if (!out && ok) {
        char *printed = cJSON_Print(root);
        if (printed) {
            out = malloc(strlen(printed) + 2);
            if (out)
                sprintf(out, "%s\n", printed);
            free(printed);
        }
    }
    cJSON_Delete(root);
    if (!out)
        return lmc_fail(err, "%s: out of memory", dst);
    lmc_atomic_file af;
    int rc = -1;
    if (lmc_atomic_open(&af, dst, err) == 0) {
        if (lmc_atomic_write(&af, out, strlen(out), err) != 0)
            lmc_atomic_abort(&af);
        else
            rc = lmc_atomic_commit(&af, err);
    }
    free(out);
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->t->name, ((const st_entry *)b)->t->name);
}

int lmc_checkpoint_write_variant(const char *src_dir, const char *dst_dir, const char *dtype,
                                 lmc_error *err)
{
    const char *st_dtype = lmc_st_dtype_from_torch(dtype ? dtype : "");
    if (!st_dtype || (strcmp(st_dtype, "F16") && strcmp(st_dtype, "BF16") &&
                      strcmp(st_dtype, "F32")))
        return lmc_fail(err, "%s: variant dtype '%s' is not float16, bfloat16 or float32",
                        dst_dir, dtype ? dtype : "(null)");
    if (!lmc_is_dir(src_dir))
        return lmc_fail(err, "%s: not a directory", src_dir);
    if (mkdir(dst_dir, 0755) != 0 && errno != EEXIST)
        return lmc_fail(err, "%s: cannot create directory: %s", dst_dir, strerror(errno));
    if (!lmc_is_dir(dst_dir))
        return lmc_fail(err, "%s: not a directory", dst_dir);
    char rs[PATH_MAX], rd[PATH_MAX];
    if (realpath(src_dir, rs) && realpath(dst_dir, rd) && strcmp(rs, rd) == 0)
        return lmc_fail(err, "%s: the variant must go to another directory than its source",
                        dst_dir);

    ckpt_files f;
    if (open_files(src_dir, &f, err) != 0)
        return -1;
    int rc = -1;
    lmc_st_write_tensor *wt = calloc((size_t)f.n_e + 1, sizeof *wt);
    char *p = NULL, *q = NULL;
    if (!wt) {
        lmc_fail(err, "%s: out of memory", dst_dir);
        goto out;
    }
    /* sorted by name, as the reference writer does */
    qsort(f.e, (size_t)f.n_e, sizeof *f.e, cmp_entry);
    for (int i = 0; i < f.n_e; i++) {
        const lmc_st_tensor *t = f.e[i].t;
        lmc_enc_id id;
        int is_float = lmc_st_weight_encoding(f.st[f.e[i].file].path, t, &id, NULL) == 0;
        wt[i].name = t->name;
        wt[i].dtype = is_float ? st_dtype : t->dtype; /* buffers (masks) stay as they are */
        wt[i].src_dtype = t->dtype;
        wt[i].ndim = t->ndim;
        memcpy(wt[i].shape, t->shape, sizeof wt[i].shape);
        wt[i].data = t->data;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    p = lmc_path_join(dst_dir, "model.safetensors");
    if (!p) {
        lmc_fail(err, "%s: out of memory", dst_dir);
        goto out;
    }
    if (lmc_safetensors_write(p, wt, f.n_e, meta, err) != 0)
        goto out;
    free(p);
    p = lmc_path_join(src_dir, "config.json");
    q = lmc_path_join(dst_dir, "config.json");
    if (!p || !q) {
        lmc_fail(err, "%s: out of memory", dst_dir);
        goto out;
    }
    if (write_config_variant(p, q, dtype, err) != 0)
        goto out;
    static const char *const copies[] = {
        "tokenizer.json",         "tokenizer_config.json", "generation_config.json",
        "special_tokens_map.json", "tokenizer.model",      "vocab.json",
        "merges.txt",             "added_tokens.json",     NULL,
    };
    for (int i = 0; copies[i]; i++) {
        free(p);
        free(q);
        q = NULL;
        if (!(p = lmc_path_join(src_dir, copies[i])) ||
            !(q = lmc_path_join(dst_dir, copies[i]))) {
            lmc_fail(err, "%s: out of memory", dst_dir);
            goto out;
        }
        if (lmc_file_exists(p) && lmc_copy_file(p, q, err) != 0)
            goto out;
    }
    free(q);
    /* an index left from an earlier sharded copy would shadow model.safetensors */
    if ((q = lmc_path_join(dst_dir, "model.safetensors.index.json")) && lmc_file_exists(q) &&
        unlink(q) != 0) {
        lmc_fail(err, "%s: cannot remove stale index: %s", q, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(p);
    free(q);
    free(wt);
    files_close(&f);
    return rc;
}
