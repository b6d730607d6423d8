/* The CUDA backend, host side (C): the model's tensors from any encoding to
 * the device (through dev.h), evaluation, the GEMM benchmark. The device
 * side is the .cu files beside this one. Built only with nvcc
 * (LMC_HAVE_CUDA); a build without it has no CUDA backend at all.
 *
 * Weights live on the device in the compute precision: tensors whose
 * encoding has a dense view (f32/f16/bf16) go up as stored, low-rank
 * factor pairs stay factors when a whole slot is low-rank, block slots of
 * W8A8 or LLM.int8() linears run their integer products on the device and
 * grouped integer (qgroup) slots stay packed, expanded just before their
 * GEMM (qslot.cu, quant_slots.c); every other encoding (sparse, N:M, a
 * qgroup linear in a mixed slot, ...) is decoded once at load through the
 * encoding table.
 * Environment: LMC_CUDA_TOKENS (tokens per
 * forward, default 16384); the knobs of docs/CUDA.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/clock.h"
#include "../../core/half.h"
#include "../../formats/config_json.h"
#include "../backend_impl.h"
#include "../forward_ops.h"
#include "../weights.h"
#include "dev.h"
#include "backend_cuda.h"
#include "quant_slots.h"
#include "test_hooks.h"

typedef struct lmc_cuda_model {
    lmc_cu *cu;
    lmc_config cfg;
    lmc_precision prec;
    lmc_residual res; /* resolved: FP32 or HALF */
    int max_tokens;
    int packed; /* qgroup slots stay packed (LMC_CUDA_PACKED=0: decoded at load) */
    lmc_weight_bytes wb[LMC_MAX_WEIGHT_BYTES]; /* device weight bytes by encoding */
    int nwb;
} lmc_cuda_model;

/* Adds bytes to the tally of (encoding, held). */
static void tally(lmc_cuda_model *cm, lmc_enc_id e, const char *held, double bytes)
{
    const char *name = lmc_enc_get(e)->name;
    int i = 0;
    while (i < cm->nwb && (strcmp(cm->wb[i].encoding, name) || strcmp(cm->wb[i].held, held)))
        i++;
    if (i == cm->nwb) {
        if (i == LMC_MAX_WEIGHT_BYTES)
            return;
        memset(&cm->wb[i], 0, sizeof cm->wb[i]);
        snprintf(cm->wb[i].encoding, sizeof cm->wb[i].encoding, "%s", name);
        snprintf(cm->wb[i].held, sizeof cm->wb[i].held, "%s", held);
        cm->nwb++;
    }
    cm->wb[i].bytes += bytes;
    cm->wb[i].tensors++;
}

static int64_t t_rows(const lmc_tensor *t) { return t->shape[0]; }
static int64_t t_cols(const lmc_tensor *t) { return t->ndim == 2 ? t->shape[1] : 1; }

static const char *model_name(const lmc_model *m)
{
    return m->source_path ? m->source_path : "model";
}

/* The shared config check, plus what the CUDA kernels add. */
static int check_config(const lmc_config *c, const char *what, lmc_error *err)
{
    if (lmc_config_check(c, what, err) < 0)
        return -1;
    if (c->head_dim > 256)
        return lmc_fail(err, "%s: head_dim %d: the CUDA attention kernels take at most 256",
                        what, c->head_dim);
    return 0;
}

static void dims_of(const lmc_config *c, int pos_rows, int tied, lmc_cu_dims *d)
{
    memset(d, 0, sizeof *d);
    d->vocab = c->vocab;
    d->hidden = c->hidden;
    d->n_layers = c->n_layers;
    d->n_heads = c->n_heads;
    d->n_kv_heads = c->n_kv_heads;
    d->head_dim = c->head_dim;
    d->ffn = c->ffn;
    d->gated = c->gated_ffn;
    d->pos_rows = pos_rows;
    d->pos_offset = c->pos_offset;
    d->norm_is_rms = c->norm_is_rms;
    d->norm_eps = c->norm_eps;
    d->act = (int)c->act;
    d->rope = c->rope_type != LMC_ROPE_NONE;
    d->tied = tied;
}

static int src_type_of(lmc_enc_id e)
{
    return e == LMC_ENC_F16 ? LMC_CU_SRC_F16 : e == LMC_ENC_BF16 ? LMC_CU_SRC_BF16 : LMC_CU_SRC_F32;
}

/* The error for value `bad` of src (src_type, rows of `cols`), which was not
 * finite once converted to the compute type: NaN/Inf, or an overflow. */
static int bad_weight(lmc_precision prec, const lmc_tensor *t, const char *what,
                      const void *src, int src_type, int64_t bad, int64_t cols, lmc_error *err)
{
    float v;
    if (src_type == LMC_CU_SRC_F16)
        v = lmc_f16_to_f32(((const uint16_t *)src)[bad]);
    else if (src_type == LMC_CU_SRC_BF16)
        v = lmc_bf16_to_f32(((const uint16_t *)src)[bad]);
    else
        memcpy(&v, (const uint8_t *)src + 4 * (size_t)bad, 4);
    long long r = (long long)(bad / cols), c = (long long)(bad % cols);
    if (isfinite(v))
        return lmc_fail(err, "tensor %s: %s %g at [%lld, %lld] overflows %s (use "
                             "--precision bf16 or fp32)",
                        t->name, what, v, r, c, lmc_precision_name(prec));
    return lmc_fail(err, "tensor %s: non-finite %s (%s) at [%lld, %lld]", t->name, what,
                    isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"), r, c);
}

/* Matrix tensor t into slot `which` at element offset off: a dense view
 * goes up as stored, any other encoding is decoded on the host first. */
static int put_matrix(lmc_cuda_model *cm, const lmc_tensor *t, int which, int layer, size_t off,
                      lmc_error *err)
{
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    lmc_enc_view v;
    int r = lmc_tensor_view(t, &v, err);
    if (r < 0)
        return -1;
    float *host = NULL;
    const void *src;
    int src_type;
    if (r == 1 && v.kind == LMC_VIEW_DENSE) {
        src = v.a;
        src_type = src_type_of(v.elem);
    } else {
        /* an encoding whose CPU kernel is more than decode + GEMM
         * (activation quantization) would silently compute something else */
        if (r == 0 && tr->kernel_prepare)
            return lmc_fail(err, "tensor %s: encoding %s has no CUDA kernel yet (its activation "
                                 "quantization would be skipped); use --device cpu",
                            t->name, tr->name);
        /* dequantize once at load (validates the blob and checks finiteness) */
        if (lmc_tensor_to_f32(t, &host, err) < 0)
            return -1;
        src = host;
        src_type = LMC_CU_SRC_F32;
    }
    size_t n = (size_t)(t_rows(t) * t_cols(t));
    tally(cm, t->enc.id, r == 1 && v.kind == LMC_VIEW_DENSE ? "dense" : "dequantized",
          (double)n * (cm->prec == LMC_PREC_FP32 ? 4 : 2));
    int64_t bad;
    int rc = lmc_cu_upload(cm->cu, which, layer, off, src, src_type, n, &bad, err);
    if (rc == 0 && bad >= 0)
        rc = bad_weight(cm->prec, t, "weight", src, src_type, bad, t_cols(t), err);
    free(host);
    return rc;
}

/* Part `part` of a low-rank slot: the factors of view v go up as stored,
 * without forming A . B; A's rows padded to lmc_cu_rank_pad(rank). */
static int put_factors(lmc_cuda_model *cm, const lmc_tensor *t, const lmc_enc_view *v, int which,
                       int layer, int part, lmc_error *err)
{
    int64_t rows = t_rows(t), cols = t_cols(t);
    int r = v->rank, rp = lmc_cu_rank_pad(r), src_type = src_type_of(v->elem);
    size_t es = v->elem == LMC_ENC_F32 ? 4 : 2;
    uint8_t *a = calloc((size_t)rows * rp, es);
    if (!a)
        return lmc_fail(err, "out of memory");
    tally(cm, t->enc.id, "factors",
          (double)(rows * rp + (int64_t)r * cols) * (cm->prec == LMC_PREC_FP32 ? 4 : 2));
    for (int64_t i = 0; i < rows; i++)
        memcpy(a + (size_t)i * rp * es, (const uint8_t *)v->a + (size_t)i * r * es,
               (size_t)r * es);
    int64_t bad;
    int rc = lmc_cu_upload_factor(cm->cu, which, layer, part, 0, a, src_type, (size_t)rows * rp,
                                  &bad, err);
    if (rc == 0 && bad >= 0)
        rc = bad_weight(cm->prec, t, "factor A value", a, src_type, bad, rp, err);
    free(a);
    if (rc < 0)
        return -1;
    if (lmc_cu_upload_factor(cm->cu, which, layer, part, 1, v->b, src_type, (size_t)r * cols,
                             &bad, err) < 0)
        return -1;
    if (bad >= 0)
        return bad_weight(cm->prec, t, "factor B value", v->b, src_type, bad, cols, err);
    return 0;
}

static int put_vector(lmc_cuda_model *cm, const lmc_tensor *t, int which, int layer, size_t off,
                      lmc_error *err)
{
    float *h;
    if (lmc_tensor_to_f32(t, &h, err) < 0)
        return -1;
    int rc = lmc_cu_upload_vec(cm->cu, which, layer, off, h, (size_t)(t_rows(t) * t_cols(t)),
                               err);
    free(h);
    return rc;
}

/* A vector tensor [n] by name; absent is an error only when required. */
static int load_vec(lmc_cuda_model *cm, const lmc_model *m, const char *name, int64_t n,
                    int required, int which, int layer, lmc_error *err)
{
    const lmc_tensor *t = lmc_model_find(m, name);
    if (!t)
        return required ? lmc_fail(err, "%s: tensor %s is missing", model_name(m), name) : 0;
    if (lmc_tensor_expect_shape(t, n, 1, err) < 0)
        return -1;
    return put_vector(cm, t, which, layer, 0, err);
}

/* One slot of block `layer` (core/model.h lmc_block_slots): its linears
 * stacked along rows into one device matrix and their biases into one
 * vector (zeros for a missing one). When every linear of the slot has a
 * factor-pair view, the slot keeps the factors (two products per linear, as
 * the CPU runs them); otherwise each is decoded to dense. */
static const int slot_w[LMC_SLOT_COUNT] = {LMC_CU_QKV, LMC_CU_O, LMC_CU_GU, LMC_CU_DOWN};
static const int slot_b[LMC_SLOT_COUNT] = {LMC_CU_QKV_B, LMC_CU_O_B, LMC_CU_GU_B, LMC_CU_DOWN_B};

static int load_slot(lmc_cuda_model *cm, const lmc_model *m, int layer, const lmc_slot_desc *s,
                     int k, lmc_error *err)
{
    const lmc_tensor *ts[3];
    lmc_enc_view views[3];
    int ranks[3], lowrank = 1;
    for (int i = 0; i < s->n; i++) {
        char wn[64];
        snprintf(wn, sizeof wn, "blk.%d.%s.weight", layer, s->roles[i]);
        ts[i] = lmc_model_find(m, wn);
        if (!ts[i])
            return lmc_fail(err, "%s: tensor %s is missing", model_name(m), wn);
        if (lmc_tensor_expect_shape(ts[i], s->out[i], s->in, err) < 0)
            return -1;
        int r = lmc_tensor_view(ts[i], &views[i], err);
        if (r < 0)
            return -1;
        lowrank = lowrank && r == 1 && views[i].kind == LMC_VIEW_FACTORS;
        ranks[i] = lowrank ? views[i].rank : 0;
    }
    if (lowrank && lmc_cu_set_lowrank(cm->cu, slot_w[k], layer, s->n, ranks, err) < 0)
        return -1;
    int qk = lowrank ? 0 : lmc_cuda_quant_kind(ts, s->n, cm->packed, err);
    if (qk < 0)
        return -1;
    if (qk) {
        double bytes;
        if (lmc_cuda_put_quant(cm->cu, ts, s->n, slot_w[k], layer, qk,
                               lmc_precision_name(cm->prec), &bytes, err) < 0)
            return -1;
        for (int i = 0; i < s->n; i++)
            tally(cm, ts[i]->enc.id, qk == LMC_CU_Q_PACKED ? "packed" : "int8 kernel",
                  bytes / s->n);
    }
    int64_t row = 0;
    for (int i = 0; i < s->n; i++) {
        char bn[64];
        snprintf(bn, sizeof bn, "blk.%d.%s.bias", layer, s->roles[i]);
        const lmc_tensor *t = ts[i];
        if (!qk && (lowrank ? put_factors(cm, t, &views[i], slot_w[k], layer, i, err) < 0
                            : put_matrix(cm, t, slot_w[k], layer, (size_t)(row * s->in), err) < 0))
            return -1;
        /* a stored bias is used even when the config does not announce it */
        const lmc_tensor *bt = lmc_model_find(m, bn);
        if (!bt && s->bias)
            return lmc_fail(err, "%s: tensor %s is missing", model_name(m), bn);
        if (bt && (lmc_tensor_expect_shape(bt, s->out[i], 1, err) < 0 ||
                   put_vector(cm, bt, slot_b[k], layer, (size_t)row, err) < 0))
            return -1;
        row += s->out[i];
    }
    return 0;
}

/* Norms and slots of block `layer`. */
static int load_block(lmc_cuda_model *cm, const lmc_model *m, int layer, lmc_error *err)
{
    const lmc_config *c = &cm->cfg;
    int64_t H = c->hidden;
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "blk.%d.attn_norm.weight", layer);
    snprintf(n2, sizeof n2, "blk.%d.attn_norm.bias", layer);
    if (load_vec(cm, m, n1, H, 1, LMC_CU_ATTN_NORM_W, layer, err) < 0 ||
        (!c->norm_is_rms && load_vec(cm, m, n2, H, 0, LMC_CU_ATTN_NORM_B, layer, err) < 0))
        return -1;
    snprintf(n1, sizeof n1, "blk.%d.ffn_norm.weight", layer);
    snprintf(n2, sizeof n2, "blk.%d.ffn_norm.bias", layer);
    if (load_vec(cm, m, n1, H, 1, LMC_CU_FFN_NORM_W, layer, err) < 0 ||
        (!c->norm_is_rms && load_vec(cm, m, n2, H, 0, LMC_CU_FFN_NORM_B, layer, err) < 0))
        return -1;
    lmc_slot_desc sl[LMC_SLOT_COUNT];
    lmc_block_slots(c, sl);
    for (int k = 0; k < LMC_SLOT_COUNT; k++)
        if (load_slot(cm, m, layer, &sl[k], k, err) < 0)
            return -1;
    return 0;
}

/* Embeddings, learned positions, final norm and head. */
static int load_outer(lmc_cuda_model *cm, const lmc_model *m, int head, lmc_error *err)
{
    const lmc_config *c = &cm->cfg;
    int64_t H = c->hidden;
    const lmc_tensor *t = lmc_model_find(m, "embed.weight");
    if (!t)
        return lmc_fail(err, "%s: tensor embed.weight is missing", model_name(m));
    if (lmc_tensor_expect_shape(t, c->vocab, H, err) < 0 ||
        put_matrix(cm, t, LMC_CU_EMBED, 0, 0, err) < 0)
        return -1;
    if (c->learned_pos) {
        const lmc_tensor *pt = lmc_model_find(m, "pos_embed.weight");
        if (put_vector(cm, pt, LMC_CU_POS, 0, 0, err) < 0)
            return -1;
    }
    if (!head)
        return 0;
    if (load_vec(cm, m, "final_norm.weight", H, 1, LMC_CU_FINAL_NORM_W, 0, err) < 0 ||
        (!c->norm_is_rms &&
         load_vec(cm, m, "final_norm.bias", H, 0, LMC_CU_FINAL_NORM_B, 0, err) < 0))
        return -1;
    const lmc_tensor *ht = lmc_model_find(m, "head.weight");
    if (ht && (lmc_tensor_expect_shape(ht, c->vocab, H, err) < 0 ||
               put_matrix(cm, ht, LMC_CU_HEAD, 0, 0, err) < 0))
        return -1;
    return 0;
}

static void cuda_model_free(lmc_cuda_model *cm)
{
    if (!cm)
        return;
    lmc_cu_free(cm->cu);
    free(cm);
}

/* ids checked, next-token targets (-1 at each window's last row). */
static int windows_nll(lmc_cuda_model *cm, const int32_t *ids, int nwin, int S, double *nll,
                       lmc_error *err)
{
    if (S < 1 || nwin < 1)
        return lmc_fail(err, "empty window");
    if ((int64_t)nwin * S > cm->max_tokens)
        return lmc_fail(err, "%d windows of %d tokens: the device buffers hold %d tokens", nwin,
                        S, cm->max_tokens);
    if (cm->cfg.arch != LMC_ARCH_LLAMA && S > cm->cfg.max_pos)
        return lmc_fail(err, "window of %d tokens exceeds the model's %d learned positions", S,
                        cm->cfg.max_pos);
    int n = nwin * S;
    int32_t *tg = malloc((size_t)n * sizeof *tg);
    if (!tg)
        return lmc_fail(err, "out of memory");
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= cm->cfg.vocab) {
            free(tg);
            return lmc_fail(err, "token id %d at position %d is outside the vocabulary (%d)",
                            (int)ids[i], i, cm->cfg.vocab);
        }
        tg[i] = i % S == S - 1 ? -1 : ids[i + 1];
    }
    int rc = lmc_cu_windows_nll(cm->cu, ids, tg, nwin, S, nll, err);
    free(tg);
    return rc;
}

/* The device model of m: every block when calib is 0 (evaluation), none
 * and no head when 1 (calibration loads one block at a time). */
static int cuda_model_new(const lmc_model *m, lmc_precision prec, lmc_residual res, int max_tokens,
                          int seqlen_hint, int calib, lmc_cuda_model **out, lmc_error *err)
{
    *out = NULL;
    const lmc_config *c = &m->cfg;
    lmc_precision p = lmc_precision_resolve(prec, c);
    if (res == LMC_RESIDUAL_HALF && p == LMC_PREC_FP32)
        return lmc_fail(err, "a half residual needs fp16 or bf16 precision, not fp32");
    if (check_config(c, model_name(m), err) < 0 || lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    lmc_encodings_init();
    int pos_rows = 0;
    if (c->learned_pos) {
        /* learned positions: the table must cover every position the config
         * allows, offset rows included */
        const lmc_tensor *pt = lmc_model_find(m, "pos_embed.weight");
        if (!pt)
            return lmc_fail(err, "%s: tensor pos_embed.weight is missing", model_name(m));
        int64_t need = (int64_t)c->max_pos + c->pos_offset;
        if (pt->ndim != 2 || pt->shape[1] != c->hidden || pt->shape[0] < need)
            return lmc_fail(err,
                            "tensor pos_embed.weight: shape [%lld, %lld], expected [%lld, %d]",
                            (long long)pt->shape[0], (long long)t_cols(pt), (long long)need,
                            c->hidden);
        pos_rows = (int)pt->shape[0];
    }
    int tied = 0;
    if (!lmc_model_find(m, "head.weight")) {
        if (!c->tied)
            return lmc_fail(err, "%s: tensor head.weight is missing and the head is not tied",
                            model_name(m));
        tied = 1;
    }
    lmc_cuda_model *cm = calloc(1, sizeof *cm);
    if (!cm)
        return lmc_fail(err, "out of memory");
    cm->cfg = *c;
    cm->prec = p;
    cm->res = lmc_residual_resolve(res, p);
    if (max_tokens <= 0) {
        /* LMC_CUDA_TOKENS: override the default (for tuning) */
        const char *e = getenv("LMC_CUDA_TOKENS");
        int def = e && atoi(e) > 0 ? atoi(e) : 16384;
        max_tokens = seqlen_hint > def ? seqlen_hint : def;
    }
    cm->max_tokens = max_tokens;
    const char *pk = getenv("LMC_CUDA_PACKED");
    cm->packed = !(pk && !strcmp(pk, "0"));
    lmc_cu_dims d;
    dims_of(c, pos_rows, tied, &d);
    if (lmc_cu_new(&d, (int)cm->prec, cm->res == LMC_RESIDUAL_HALF, max_tokens, calib, &cm->cu,
                   err) < 0 ||
        load_outer(cm, m, !calib, err) < 0)
        goto fail;
    for (int l = 0; !calib && l < c->n_layers; l++)
        if (load_block(cm, m, l, err) < 0)
            goto fail;
    lmc_cu_upload_done(cm->cu);
    if (d.rope) {
        float *cs, *sn;
        if (lmc_op_rope_tables(c, max_tokens, &cs, &sn) < 0) {
            lmc_fail(err, "out of memory for RoPE tables");
            goto fail;
        }
        int rc = lmc_cu_set_rope(cm->cu, cs, sn, max_tokens, err);
        free(cs);
        free(sn);
        if (rc < 0)
            goto fail;
    }
    /* warm-up outside any timing, at the shape evaluation will use (the
     * seqlen hint's windows filling the buffers): cuBLAS picks kernels by
     * shape and CUDA loads each kernel lazily on its first launch, which
     * cost a 64-token warm-up ~0.1 s inside the first timed forward of the
     * TinyLlama-shaped benchmark */
    if (!calib) {
        int S = seqlen_hint > 1 && seqlen_hint <= max_tokens ? seqlen_hint : max_tokens;
        if (c->max_pos > 0 && S > c->max_pos)
            S = c->max_pos;
        int nwin = max_tokens / S;
        int32_t *z = calloc((size_t)nwin * S, sizeof *z);
        double *nll = malloc((size_t)nwin * sizeof *nll);
        int rc = z && nll ? windows_nll(cm, z, nwin, S, nll, err)
                          : lmc_fail(err, "out of memory");
        free(z);
        free(nll);
        if (rc < 0) {
            lmc_fail_prefix(err, "warm-up forward");
            goto fail;
        }
    }
    *out = cm;
    return 0;
fail:
    cuda_model_free(cm);
    return -1;
}

/* ---- the backend's operations ---- */

static lmc_cuda_model *cm_of(const lmc_backend *b) { return b->impl; }

static int cuda_available(char *name, size_t n, lmc_error *err)
{
    return lmc_cu_device(name, n, err);
}

static int cuda_open(lmc_backend *b, lmc_error *err)
{
    lmc_cuda_model *cm;
    int calib = b->opts.use == LMC_USE_CALIB;
    if (cuda_model_new(b->model, b->opts.precision, b->opts.residual, b->opts.max_tokens,
                       b->opts.seqlen_hint, calib, &cm, err) < 0)
        return lmc_fail_prefix(err, model_name(b->model));
    b->impl = cm;
    b->prec = cm->prec;
    b->res = cm->res;
    return 0;
}

static void cuda_close(lmc_backend *b) { cuda_model_free(cm_of(b)); }

static size_t cuda_bytes(const lmc_backend *b) { return lmc_cu_bytes(cm_of(b)->cu); }
static size_t cuda_peak(const lmc_backend *b) { return lmc_cu_peak_bytes(cm_of(b)->cu); }

static int cuda_weight_bytes(const lmc_backend *b, lmc_weight_bytes *out, int max)
{
    const lmc_cuda_model *cm = cm_of(b);
    int n = cm->nwb < max ? cm->nwb : max;
    memcpy(out, cm->wb, (size_t)n * sizeof *out);
    size_t sc = lmc_cu_expand_bytes(cm->cu);
    if (sc && n < max) {
        memset(&out[n], 0, sizeof out[n]);
        snprintf(out[n].encoding, sizeof out[n].encoding, "qgroup");
        snprintf(out[n].held, sizeof out[n].held, "expansion scratch");
        out[n++].bytes = (double)sc;
    }
    return n;
}

static int cuda_windows_per_call(const lmc_backend *b, int seqlen)
{
    return seqlen > 0 ? cm_of(b)->max_tokens / seqlen : 0;
}

static int cuda_windows_nll(lmc_backend *b, const int32_t *ids, int nwin, int seqlen, double *nll,
                            lmc_error *err)
{
    return windows_nll(cm_of(b), ids, nwin, seqlen, nll, err);
}

static int cuda_logits(lmc_backend *b, const int32_t *ids, int n, float *logits, lmc_error *err)
{
    lmc_cuda_model *cm = cm_of(b);
    if (n > cm->max_tokens)
        return lmc_fail(err, "window of %d tokens: the device buffers hold %d", n,
                        cm->max_tokens);
    return lmc_cu_forward_logits(cm->cu, ids, n, logits, err);
}

static const char *cuda_nonfinite_hint(const lmc_backend *b)
{
    const lmc_cuda_model *cm = cm_of(b);
    if (cm->prec == LMC_PREC_FP32)
        return "(try --device cpu)";
    return cm->res == LMC_RESIDUAL_HALF ? "(overflow of the half residual? try --residual fp32 "
                                          "or --precision fp32)"
                                        : "(overflow? try --precision fp32)";
}

static int cuda_bench_gemm(const lmc_config *c, int tokens, lmc_precision p, lmc_residual res,
                           lmc_gemm_rate *rates, int *n_rates, double *mix_gflops, lmc_error *err)
{
    if (check_config(c, "model", err) < 0)
        return -1;
    lmc_cu_dims d;
    dims_of(c, 0, 0, &d);
    lmc_cu_gemm_rate r[8];
    int n;
    int window = tokens < c->max_pos ? tokens : c->max_pos;
    lmc_precision rp = lmc_precision_resolve(p, c);
    int res_half = lmc_residual_resolve(res, rp) == LMC_RESIDUAL_HALF;
    double mix;
    if (lmc_cu_bench_gemm(&d, tokens, window, (int)rp, res_half, r, &n, &mix, err) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        memset(&rates[i], 0, sizeof rates[i]);
        memcpy(rates[i].name, r[i].name, sizeof rates[i].name); /* both char[16] */
        rates[i].name[sizeof rates[i].name - 1] = 0;
        rates[i].m = r[i].m;
        rates[i].n = r[i].n;
        rates[i].k = r[i].k;
        rates[i].per_forward = r[i].per_forward;
        rates[i].gflops = r[i].tflops * 1e3;
        rates[i].is_attention = r[i].is_attention;
    }
    *n_rates = n;
    *mix_gflops = mix * 1e3;
    return 0;
}

/* ---- calibration: one block at a time (the device side: calib.cu) ---- */

static int cuda_load_block(lmc_backend *b, int layer, lmc_error *err)
{
    lmc_cuda_model *cm = cm_of(b);
    lmc_cu_release_blocks(cm->cu);
    if (load_block(cm, b->model, layer, err) < 0)
        return -1;
    lmc_cu_upload_done(cm->cu);
    return lmc_cu_calib_set_block(cm->cu, layer, err);
}

static int cuda_acts_new(lmc_acts *a, const int32_t *ids, lmc_error *err)
{
    lmc_cuda_model *cm = cm_of(a->b);
    lmc_cu_acts *ca;
    if (lmc_cu_acts_new(cm->cu, ids, a->nwin, a->seqlen, &ca, err) < 0)
        return -1;
    a->impl = ca;
    /* embeddings are needed once: their device memory goes back */
    lmc_cu_release_embed(cm->cu);
    return 0;
}

static void cuda_acts_free(lmc_acts *a) { lmc_cu_acts_free(a->impl); }

static int cuda_acts_host(lmc_acts *a, const float **x, lmc_error *err)
{
    return lmc_cu_acts_host(a->impl, x, err);
}

static int cuda_block_forward(lmc_backend *b, lmc_acts *a, lmc_block_stats *st, lmc_error *err)
{
    lmc_cuda_model *cm = cm_of(b);
    if (!st)
        return lmc_cu_calib_forward(cm->cu, a->impl, NULL, err);
    if (lmc_block_stats_alloc(st, err) < 0)
        return -1;
    lmc_cu_stats cs;
    memset(&cs, 0, sizeof cs);
    cs.want_hessian = (st->flags & LMC_STAT_HESSIAN) != 0;
    cs.want_abs_sum = (st->flags & LMC_STAT_ABS_MEAN) != 0;
    cs.want_abs_max = (st->flags & LMC_STAT_ABS_MAX) != 0;
    cs.want_sq_sum = (st->flags & LMC_STAT_SQ_SUM) != 0;
    cs.capture_windows = st->capture_windows;
    for (int s = 0; s < LMC_SITE_COUNT; s++) {
        lmc_site_stats *ss = &st->site[s];
        if (ss->dim != lmc_site_dim(&cm->cfg, (lmc_site)s))
            return lmc_fail(err, "statistics of site %s: %lld columns, the model has %lld",
                            lmc_site_name((lmc_site)s), (long long)ss->dim,
                            (long long)lmc_site_dim(&cm->cfg, (lmc_site)s));
        cs.xtx[s] = ss->xtx; /* NULL when kept on the device only */
        cs.abs_sum[s] = ss->abs_sum;
        cs.abs_max[s] = ss->abs_max;
        cs.sq_sum[s] = ss->sq_sum;
    }
    if (lmc_cu_calib_forward(cm->cu, a->impl, &cs, err) < 0)
        return -1;
    for (int s = 0; s < LMC_SITE_COUNT; s++)
        st->site[s].ntok = cs.ntok[s];
    st->seconds += cs.seconds;
    return 0;
}

lmc_cu *lmc_cuda_backend_cu(lmc_backend *b)
{
    return b && lmc_backend_device(b) == LMC_DEVICE_CUDA ? cm_of(b)->cu : NULL;
}

const lmc_backend_ops lmc_backend_cuda_ops = {
    .device = LMC_DEVICE_CUDA,
    .available = cuda_available,
    .open = cuda_open,
    .close = cuda_close,
    .bytes = cuda_bytes,
    .peak_bytes = cuda_peak,
    .weight_bytes = cuda_weight_bytes,
    .windows_per_call = cuda_windows_per_call,
    .windows_nll = cuda_windows_nll,
    .logits = cuda_logits,
    .nonfinite_hint = cuda_nonfinite_hint,
    .acts_new = cuda_acts_new,
    .acts_free = cuda_acts_free,
    .acts_host = cuda_acts_host,
    .load_block = cuda_load_block,
    .block_forward = cuda_block_forward,
    .bench_gemm = cuda_bench_gemm,
};

/* ---- for tests (test_hooks.h) ---- */

int lmc_cuda_forward_block(lmc_backend *b, int layer, float *x, int n, lmc_error *err)
{
    lmc_cuda_model *cm = cm_of(b);
    if (n > cm->max_tokens || (cm->cfg.learned_pos && n > cm->cfg.max_pos))
        return lmc_fail(err, "block %d: %d tokens, too many", layer, n);
    return lmc_cu_forward_block(cm->cu, layer, x, n, err);
}

int lmc_cuda_slot_product(lmc_backend *b, int layer, int slot, const float *x, int n, float *y,
                          lmc_error *err)
{
    lmc_cuda_model *cm = cm_of(b);
    if (cm->prec != LMC_PREC_FP32 || slot < 0 || slot >= LMC_SLOT_COUNT || layer < 0 ||
        layer >= cm->cfg.n_layers)
        return lmc_fail(err, "slot product: fp32 and a slot of a block only");
    return lmc_cu_test_qslot(cm->cu, slot_w[slot], layer, x, n, y, err);
}

/* ---- kernel tests ---- */

static int prec_of(lmc_precision p) { return p == LMC_PREC_AUTO ? LMC_PREC_FP16 : p; }

int lmc_cuda_test_norm(const float *x, const float *badd, float *xo, float *y, int n, int H,
                       const float *w, const float *b, int rms, double eps, lmc_precision p,
                       lmc_error *err)
{
    return lmc_cu_test_norm(x, badd, xo, y, n, H, w, b, rms, eps, prec_of(p), err);
}

int lmc_cuda_test_qkv_rope(const lmc_config *c, float *qkv, const float *bias, int n, int S,
                           lmc_precision p, lmc_error *err)
{
    lmc_cu_dims d;
    dims_of(c, 0, 0, &d);
    float *cs = NULL, *sn = NULL;
    if (d.rope && lmc_op_rope_tables(c, S, &cs, &sn) < 0)
        return lmc_fail(err, "out of memory");
    int rc = lmc_cu_test_qkv(&d, cs, sn, qkv, bias, n, S, prec_of(p), err);
    free(cs);
    free(sn);
    return rc;
}

int lmc_cuda_test_attention(const lmc_config *c, const float *q, const float *k, const float *v,
                            float *ctx, int nwin, int S, int kind, lmc_precision p,
                            lmc_error *err)
{
    if (check_config(c, "config", err) < 0)
        return -1;
    lmc_cu_dims d;
    dims_of(c, 0, 0, &d);
    int in_kernel = 0;
    return lmc_cu_test_attention(&d, q, k, v, NULL, NULL, &in_kernel, ctx, nwin, S, kind,
                                 prec_of(p), err);
}

int lmc_cuda_test_attention_rope(const lmc_config *c, const float *q, const float *k,
                                 const float *v, float *ctx, int nwin, int S, int in_kernel,
                                 lmc_precision p, lmc_error *err)
{
    if (check_config(c, "config", err) < 0)
        return -1;
    lmc_cu_dims d;
    dims_of(c, 0, 0, &d);
    if (!d.rope)
        return lmc_fail(err, "attention with RoPE: the config has no RoPE");
    float *cs = NULL, *sn = NULL;
    if (lmc_op_rope_tables(c, S, &cs, &sn) < 0)
        return lmc_fail(err, "out of memory");
    int rc = lmc_cu_test_attention(&d, q, k, v, cs, sn, &in_kernel, ctx, nwin, S, 0, prec_of(p),
                                   err);
    free(cs);
    free(sn);
    return rc < 0 ? -1 : in_kernel;
}

int lmc_cuda_test_act(lmc_act act, int gated, const float *gu, const float *bias, float *a, int n,
                      int F, lmc_precision p, lmc_error *err)
{
    return lmc_cu_test_act((int)act, gated, gu, bias, a, n, F, prec_of(p), err);
}

int lmc_cuda_test_i8_gemm(const int8_t *X, const int8_t *W, int M, int N, int K, float *y,
                          lmc_error *err)
{
    return lmc_cu_test_i8_gemm(X, W, M, N, K, y, err);
}

int lmc_cuda_test_row_nll(const float *logits, int rows, int V, const int32_t *targets,
                          lmc_precision p, double *nll, lmc_error *err)
{
    return lmc_cu_test_row_nll(logits, rows, V, targets, prec_of(p) == LMC_PREC_FP16, nll, err);
}

