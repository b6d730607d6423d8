/* Weights for the forward pass: every tensor decoded to fp32 once.
 * fp32 tensors that are 4-byte aligned in memory are used in place (the
 * mmap), everything else goes through the encoding table's to_f32. */
#include "weights.h"
#include "../formats/config_json.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Heap blocks a weights object (or one block) must free. */
typedef struct owned_ptr {
    void *p;
    void (*release)(void *); /* free() unless an encoding kernel's state */
} owned_ptr;

typedef struct ownlist {
    owned_ptr *p;
    int n, cap;
    size_t bytes; /* decoded fp32 buffers held */
} ownlist;

static int own_push_fn(ownlist *o, void *p, void (*release)(void *), lmc_error *err)
{
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        owned_ptr *np = realloc(o->p, (size_t)cap * sizeof *np);
        if (!np) {
            release(p);
            return lmc_fail(err, "out of memory");
        }
        o->p = np;
        o->cap = cap;
    }
    o->p[o->n].p = p;
    o->p[o->n++].release = release;
    return 0;
}

static int own_push(ownlist *o, void *p, lmc_error *err) { return own_push_fn(o, p, free, err); }

static void own_free(ownlist *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++)
        o->p[i].release(o->p[i].p);
    free(o->p);
    free(o);
}

static int64_t t_rows(const lmc_tensor *t) { return t->shape[0]; }
static int64_t t_cols(const lmc_tensor *t) { return t->ndim == 2 ? t->shape[1] : 1; }

/* First non-finite element, or -1. */
static int64_t find_nonfinite(const float *x, size_t n)
{
    /* a cheap pass first: a sum of x*0 is NaN iff some x is NaN or Inf */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += x[i] * 0.0f;
    if (acc == 0.0f)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return (int64_t)i;
    return -1;
}

/* Rows [r0, r0 + n) of t decoded in x: the first non-finite one names its
 * place in the whole tensor. */
static int check_finite_rows(const lmc_tensor *t, const float *x, int64_t r0, int64_t n,
                             lmc_error *err)
{
    int64_t cols = t_cols(t);
    int64_t bad = find_nonfinite(x, (size_t)(n * cols));
    if (bad < 0)
        return 0;
    float v = x[bad];
    return lmc_fail(err, "tensor %s: non-finite weight (%s) at [%lld, %lld]", t->name,
                    isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"), (long long)(r0 + bad / cols),
                    (long long)(bad % cols));
}

static int check_finite(const lmc_tensor *t, const float *x, lmc_error *err)
{
    return check_finite_rows(t, x, 0, t_rows(t), err);
}

/* The encoding's decoder on n rows of blob data p (t's rows from r0). */
static int decode_rows(const lmc_tensor *t, const lmc_enc_traits *tr, const void *p, int64_t r0,
                       int64_t n, float *out, lmc_error *err)
{
    if (tr->to_f32(&t->enc, p, n, t_cols(t), out, err) < 0) {
        char pre[128];
        snprintf(pre, sizeof pre, "tensor %s", t->name);
        return lmc_fail_prefix(err, pre);
    }
    return check_finite_rows(t, out, r0, n, err);
}

/* Encoding known, parameters valid for the shape, data present and of the
 * exact size the encoding needs. */
static int check_blob(const lmc_tensor *t, const lmc_enc_traits **tr_out, lmc_error *err)
{
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    if (!tr || !tr->to_f32)
        return lmc_fail(err, "tensor %s: encoding id %d is not supported by this build", t->name,
                        (int)t->enc.id);
    if (t->ndim < 1 || t->ndim > 2 || t_rows(t) <= 0 || t_cols(t) <= 0)
        return lmc_fail(err, "tensor %s: bad shape", t->name);
    if (tr->validate && tr->validate(&t->enc, t_rows(t), t_cols(t), err) < 0) {
        char pre[128];
        snprintf(pre, sizeof pre, "tensor %s", t->name);
        return lmc_fail_prefix(err, pre);
    }
    size_t need = tr->nbytes(&t->enc, t_rows(t), t_cols(t));
    if (t->nbytes != need)
        return lmc_fail(err, "tensor %s: %zu bytes of data, encoding %s needs %zu", t->name,
                        t->nbytes, tr->name, need);
    if (!t->data)
        return lmc_fail(err, "tensor %s: no data", t->name);
    *tr_out = tr;
    return 0;
}

int lmc_tensor_check_blob(const lmc_tensor *t, lmc_error *err)
{
    const lmc_enc_traits *tr;
    return check_blob(t, &tr, err);
}

int lmc_tensor_to_f32(const lmc_tensor *t, float **out, lmc_error *err)
{
    *out = NULL;
    const lmc_enc_traits *tr;
    if (check_blob(t, &tr, err) < 0)
        return -1;
    size_t n = (size_t)(t_rows(t) * t_cols(t));
    float *buf = malloc(n * sizeof *buf);
    if (!buf)
        return lmc_fail(err, "tensor %s: out of memory decoding %zu values", t->name, n);
    if (decode_rows(t, tr, t->data, 0, t_rows(t), buf, err) < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

static size_t dense_elem(lmc_enc_id id)
{
    return id == LMC_ENC_F32 ? 4 : (id == LMC_ENC_F16 || id == LMC_ENC_BF16) ? 2 : 0;
}

int lmc_tensor_rows_sliceable(const lmc_tensor *t)
{
    return t->ndim == 2 && dense_elem(t->enc.id) != 0;
}

int lmc_tensor_rows_f32(const lmc_tensor *t, int64_t r0, int64_t n, float *out, lmc_error *err)
{
    const lmc_enc_traits *tr;
    size_t es = dense_elem(t->enc.id);
    assert(es && t->ndim == 2); /* callers check lmc_tensor_rows_sliceable */
    if (r0 < 0 || n <= 0 || r0 + n > t_rows(t))
        return lmc_fail(err, "tensor %s: rows %lld..%lld of %lld", t->name, (long long)r0,
                        (long long)(r0 + n), (long long)t_rows(t));
    if (check_blob(t, &tr, err) < 0)
        return -1;
    int64_t cols = t_cols(t);
    const unsigned char *p = (const unsigned char *)t->data + (size_t)(r0 * cols) * es;
    return decode_rows(t, tr, p, r0, n, out, err);
}

/* fp32 view of a tensor: in place when it is aligned fp32, else decoded
 * into a buffer recorded in own. */
static int get_f32(const lmc_tensor *t, ownlist *own, const float **out, lmc_error *err)
{
    if (t->enc.id == LMC_ENC_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        const lmc_enc_traits *tr;
        if (check_blob(t, &tr, err) < 0)
            return -1;
        if (check_finite(t, (const float *)t->data, err) < 0)
            return -1;
        *out = (const float *)t->data;
        return 0;
    }
    float *buf;
    if (lmc_tensor_to_f32(t, &buf, err) < 0)
        return -1;
    if (own_push(own, buf, err) < 0)
        return -1;
    own->bytes += (size_t)(t_rows(t) * t_cols(t)) * sizeof(float);
    *out = buf;
    return 0;
}

int lmc_tensor_expect_shape(const lmc_tensor *t, int64_t rows, int64_t cols, lmc_error *err)
{
    if (cols == 1) { /* a vector: accept [n] and [n, 1] */
        if (t_rows(t) == rows && t_cols(t) == 1)
            return 0;
        return lmc_fail(err, "tensor %s: shape [%lld, %lld], expected [%lld] from the config",
                        t->name, (long long)t_rows(t), (long long)t_cols(t), (long long)rows);
    }
    if (t->ndim == 2 && t_rows(t) == rows && t_cols(t) == cols)
        return 0;
    return lmc_fail(err, "tensor %s: shape [%lld, %lld], expected [%lld, %lld] from the config",
                    t->name, (long long)t_rows(t), (long long)t_cols(t), (long long)rows,
                    (long long)cols);
}

/* Tensor by name, decoded and shape-checked. required=0: *out NULL when
 * absent. */
static int load_named(const lmc_model *m, const char *name, int64_t rows, int64_t cols,
                      int required, ownlist *own, const float **out, const lmc_tensor **src,
                      lmc_error *err)
{
    *out = NULL;
    const lmc_tensor *t = lmc_model_find(m, name);
    if (src)
        *src = t;
    if (!t) {
        if (required)
            return lmc_fail(err, "%s: tensor %s is missing",
                            m->source_path ? m->source_path : "model", name);
        return 0;
    }
    if (lmc_tensor_expect_shape(t, rows, cols, err) < 0)
        return -1;
    return get_f32(t, own, out, err);
}

static int load_linear(const lmc_model *m, int layer, const char *role, int64_t out_dim,
                       int64_t in_dim, int bias_required, ownlist *own, lmc_linear *L,
                       lmc_error *err)
{
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "blk.%d.%s.weight", layer, role);
    snprintf(bn, sizeof bn, "blk.%d.%s.bias", layer, role);
    assert(L); /* roles come from lmc_block_slots */
    memset(L, 0, sizeof *L);
    L->out = out_dim;
    L->in = in_dim;
    const lmc_tensor *t = lmc_model_find(m, wn);
    const lmc_enc_traits *tr = t ? lmc_enc_get(t->enc.id) : NULL;
    if (tr && tr->kernel_prepare) {
        /* an encoding with its own kernel: no fp32 copy of the weight */
        if (lmc_tensor_expect_shape(t, out_dim, in_dim, err) < 0 || check_blob(t, &tr, err) < 0)
            return -1;
        if (tr->kernel_prepare(&t->enc, t->data, out_dim, in_dim, &L->kstate, err) < 0)
            return lmc_fail_prefix(err, wn);
        if (own_push_fn(own, L->kstate, tr->kernel_free, err) < 0)
            return -1;
        L->src = t;
        L->kernel = tr;
    } else if (load_named(m, wn, out_dim, in_dim, 1, own, &L->w, &L->src, err) < 0) {
        return -1;
    }
    /* a bias that is present is used even when the config does not announce
     * it: dropping stored parameters silently would be worse */
    return load_named(m, bn, out_dim, 1, bias_required, own, &L->b, NULL, err);
}

static int load_norm(const lmc_model *m, const char *prefix, const lmc_config *c, ownlist *own,
                     const float **w, const float **b, lmc_error *err)
{
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    if (load_named(m, wn, c->hidden, 1, 1, own, w, NULL, err) < 0)
        return -1;
    *b = NULL;
    if (c->norm_is_rms)
        return 0;
    /* LayerNorm without a stored bias (bias=False variants) is bias 0 */
    return load_named(m, bn, c->hidden, 1, 0, own, b, NULL, err);
}

int lmc_weights_prepare_block(const lmc_model *m, int layer, lmc_block_w *bw, lmc_error *err)
{
    lmc_block_w_release(bw);
    const lmc_config *c = &m->cfg;
    if (lmc_config_check(c, m->source_path ? m->source_path : "model", err) < 0)
        return -1;
    if (layer < 0 || layer >= c->n_layers)
        return lmc_fail(err, "block %d out of range (model has %d)", layer, c->n_layers);
    ownlist *own = calloc(1, sizeof *own);
    if (!own)
        return lmc_fail(err, "out of memory");
    lmc_block_w b;
    memset(&b, 0, sizeof b);
    b.owned = own;
    char pre[64];
    snprintf(pre, sizeof pre, "blk.%d.attn_norm", layer);
    if (load_norm(m, pre, c, own, &b.attn_norm_w, &b.attn_norm_b, err) < 0)
        goto fail;
    snprintf(pre, sizeof pre, "blk.%d.ffn_norm", layer);
    if (load_norm(m, pre, c, own, &b.ffn_norm_w, &b.ffn_norm_b, err) < 0)
        goto fail;
    lmc_slot_desc sl[LMC_SLOT_COUNT];
    lmc_block_slots(c, sl);
    for (int k = 0; k < LMC_SLOT_COUNT; k++)
        for (int i = 0; i < sl[k].n; i++)
            if (load_linear(m, layer, sl[k].roles[i], sl[k].out[i], sl[k].in, sl[k].bias, own,
                            lmc_block_w_linear(&b, sl[k].roles[i]), err) < 0)
                goto fail;
    *bw = b;
    return 0;
fail:
    own_free(own);
    return -1;
}

lmc_linear *lmc_block_w_linear(lmc_block_w *bw, const char *role)
{
    static const struct { const char *role; size_t off; } t[] = {
        {"q", offsetof(lmc_block_w, q)},       {"k", offsetof(lmc_block_w, k)},
        {"v", offsetof(lmc_block_w, v)},       {"o", offsetof(lmc_block_w, o)},
        {"gate", offsetof(lmc_block_w, gate)}, {"up", offsetof(lmc_block_w, up)},
        {"down", offsetof(lmc_block_w, down)}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(role, t[i].role))
            return (lmc_linear *)((char *)bw + t[i].off);
    return NULL;
}

void lmc_block_w_release(lmc_block_w *bw)
{
    if (!bw)
        return;
    own_free(bw->owned);
    memset(bw, 0, sizeof *bw);
}

static int prepare(const lmc_model *m, int blocks, lmc_weights **out, lmc_error *err);

int lmc_weights_prepare(const lmc_model *m, lmc_weights **out, lmc_error *err)
{
    return prepare(m, 1, out, err);
}

int lmc_weights_prepare_outer(const lmc_model *m, lmc_weights **out, lmc_error *err)
{
    return prepare(m, 0, out, err);
}

static int prepare(const lmc_model *m, int blocks, lmc_weights **out, lmc_error *err)
{
    *out = NULL;
    const lmc_config *c = &m->cfg;
    if (lmc_config_check(c, m->source_path ? m->source_path : "model", err) < 0)
        return -1;
    lmc_weights *w = calloc(1, sizeof *w);
    ownlist *own = calloc(1, sizeof *own);
    if (!w || !own) {
        free(w);
        free(own);
        return lmc_fail(err, "out of memory");
    }
    w->model = m;
    w->cfg = c;
    w->owned = own;
    w->blocks = calloc((size_t)c->n_layers, sizeof *w->blocks);
    if (!w->blocks) {
        lmc_fail(err, "out of memory");
        goto fail;
    }
    /* without the blocks (a model too large for memory in fp32), dense
     * embeddings and head are decoded a piece at a time when used */
    const lmc_tensor *et = lmc_model_find(m, "embed.weight");
    if (!blocks && et && lmc_tensor_rows_sliceable(et)) {
        if (lmc_tensor_expect_shape(et, c->vocab, c->hidden, err) < 0)
            goto fail;
        w->embed_src = et;
    } else if (load_named(m, "embed.weight", c->vocab, c->hidden, 1, own, &w->embed,
                          &w->embed_src, err) < 0) {
        goto fail;
    }
    if (c->learned_pos) {
        /* learned positions: the table must cover every position the config
         * allows, offset rows included */
        const lmc_tensor *pt = lmc_model_find(m, "pos_embed.weight");
        if (!pt) {
            lmc_fail(err, "%s: tensor pos_embed.weight is missing",
                     m->source_path ? m->source_path : "model");
            goto fail;
        }
        int64_t need = (int64_t)c->max_pos + c->pos_offset;
        if (pt->ndim != 2 || pt->shape[1] != c->hidden || pt->shape[0] < need) {
            lmc_fail(err, "tensor pos_embed.weight: shape [%lld, %lld], expected [%lld, %d]",
                     (long long)pt->shape[0], (long long)t_cols(pt), (long long)need, c->hidden);
            goto fail;
        }
        if (get_f32(pt, own, &w->pos_embed, err) < 0)
            goto fail;
    }
    if (load_norm(m, "final_norm", c, own, &w->final_norm_w, &w->final_norm_b, err) < 0)
        goto fail;
    w->head.out = c->vocab;
    w->head.in = c->hidden;
    const lmc_tensor *ht = lmc_model_find(m, "head.weight");
    if (ht && !blocks && lmc_tensor_rows_sliceable(ht)) {
        if (lmc_tensor_expect_shape(ht, c->vocab, c->hidden, err) < 0)
            goto fail;
        w->head.src = ht; /* w NULL: decoded in row chunks (forward_cpu.c) */
    } else if (ht) {
        if (load_named(m, "head.weight", c->vocab, c->hidden, 1, own, &w->head.w, &w->head.src,
                       err) < 0)
            goto fail;
    } else if (c->tied) {
        w->head.w = w->embed;
        w->head.src = w->embed_src;
    } else {
        lmc_fail(err, "%s: tensor head.weight is missing and the head is not tied",
                 m->source_path ? m->source_path : "model");
        goto fail;
    }
    for (int l = 0; blocks && l < c->n_layers; l++)
        if (lmc_weights_prepare_block(m, l, &w->blocks[l], err) < 0)
            goto fail;
    *out = w;
    return 0;
fail:
    lmc_weights_free(w);
    return -1;
}

size_t lmc_weights_bytes(const lmc_weights *w)
{
    size_t n = w->owned ? ((const ownlist *)w->owned)->bytes : 0;
    if (w->blocks)
        for (int l = 0; l < w->cfg->n_layers; l++)
            if (w->blocks[l].owned)
                n += ((const ownlist *)w->blocks[l].owned)->bytes;
    return n;
}

void lmc_weights_free(lmc_weights *w)
{
    if (!w)
        return;
    if (w->blocks)
        for (int l = 0; l < w->cfg->n_layers; l++)
            lmc_block_w_release(&w->blocks[l]);
    free(w->blocks);
    own_free(w->owned);
    free(w);
}
