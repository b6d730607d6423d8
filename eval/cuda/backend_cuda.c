/* CUDA evaluator, host side (C): config checks, weights from any encoding to
 * the device (through forward_cuda_dev.h), the perplexity protocol. The
 * device side is forward_cuda.cu; a build without nvcc compiles
 * forward_cuda_stub.c's versions of these functions instead. */
#ifdef LMC_HAVE_CUDA

#include "forward_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/half.h"
#include "forward_cuda_dev.h"
#include "forward_ops.h"
#include "weights.h"

struct lmc_cuda_model {
    lmc_cu *cu;
    lmc_config cfg;
    lmc_precision prec;
    lmc_residual res; /* resolved: FP32 or HALF */
    int max_tokens;
};

static int64_t t_rows(const lmc_tensor *t) { return t->shape[0]; }
static int64_t t_cols(const lmc_tensor *t) { return t->ndim == 2 ? t->shape[1] : 1; }

static const char *model_name(const lmc_model *m)
{
    return m->source_path ? m->source_path : "model";
}

static int check_config(const lmc_config *c, lmc_error *err)
{
    if (c->arch != LMC_ARCH_LLAMA && c->arch != LMC_ARCH_OPT && c->arch != LMC_ARCH_GPT2)
        return lmc_fail(err, "unsupported architecture id %d", (int)c->arch);
    if (c->vocab <= 0 || c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->head_dim <= 0 || c->ffn <= 0 || c->max_pos <= 0)
        return lmc_fail(err, "config: non-positive dimension");
    if (c->n_heads % c->n_kv_heads)
        return lmc_fail(err, "config: %d heads not a multiple of %d kv heads", c->n_heads,
                        c->n_kv_heads);
    if (c->rope_type != LMC_ROPE_NONE && c->head_dim % 2)
        return lmc_fail(err, "config: RoPE needs an even head_dim, got %d", c->head_dim);
    if (c->head_dim > 256)
        return lmc_fail(err, "config: head_dim %d: the CUDA attention kernels take at most 256",
                        c->head_dim);
    if (c->act != LMC_ACT_SILU && c->act != LMC_ACT_RELU && c->act != LMC_ACT_GELU_NEW &&
        c->act != LMC_ACT_GELU)
        return lmc_fail(err, "config: unsupported activation id %d", (int)c->act);
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
    d->gated = c->arch == LMC_ARCH_LLAMA;
    d->pos_rows = pos_rows;
    d->pos_offset = c->pos_offset;
    d->norm_is_rms = c->norm_is_rms;
    d->norm_eps = c->norm_eps;
    d->act = (int)c->act;
    d->rope = c->rope_type != LMC_ROPE_NONE;
    d->tied = tied;
}

int lmc_cuda_available(char *name, size_t name_len, lmc_error *err)
{
    return lmc_cu_device(name, name_len, err);
}

/* The error for value `bad` of src (src_type, rows of `cols`), which was not
 * finite once converted to the compute type: NaN/Inf, or an overflow. */
static int bad_weight(const lmc_cuda_model *cm, const lmc_tensor *t, const char *what,
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
                        t->name, what, v, r, c, lmc_precision_name(cm->prec));
    return lmc_fail(err, "tensor %s: non-finite %s (%s) at [%lld, %lld]", t->name, what,
                    isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"), r, c);
}

/* Matrix tensor t into slot `which` at element offset off: fp32/fp16/bf16
 * blobs go up as stored, other encodings are decoded on the host first. */
static int put_matrix(lmc_cuda_model *cm, const lmc_tensor *t, int which, int layer, size_t off,
                      lmc_error *err)
{
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    if (!tr || !tr->to_f32)
        return lmc_fail(err, "tensor %s: encoding id %d is not supported by this build", t->name,
                        (int)t->enc.id);
    /* Encodings whose CPU kernel is more than decode + GEMM (activation
     * quantization) would silently compute something else here. A low-rank
     * pair decodes to the same product, so it may go through. */
    if (tr->kernel_prepare && t->enc.id != LMC_ENC_LOWRANK)
        return lmc_fail(err, "tensor %s: encoding %s has no CUDA kernel yet (its activation "
                        "quantization would be skipped); use --device cpu", t->name, tr->name);
    size_t n = (size_t)(t_rows(t) * t_cols(t));
    int src_type = t->enc.id == LMC_ENC_F16    ? LMC_CU_SRC_F16
                   : t->enc.id == LMC_ENC_BF16 ? LMC_CU_SRC_BF16
                                               : LMC_CU_SRC_F32;
    float *host = NULL;
    const void *src = t->data;
    if (t->enc.id == LMC_ENC_F16 || t->enc.id == LMC_ENC_BF16 || t->enc.id == LMC_ENC_F32) {
        size_t need = tr->nbytes(&t->enc, t_rows(t), t_cols(t));
        if (t->nbytes != need || !t->data)
            return lmc_fail(err, "tensor %s: %zu bytes of data, encoding %s needs %zu", t->name,
                            t->nbytes, tr->name, need);
    } else {
        /* dequantize once at load (validates the blob and checks finiteness) */
        if (lmc_tensor_to_f32(t, &host, err) < 0)
            return -1;
        src = host;
    }
    int64_t bad;
    int rc = lmc_cu_upload(cm->cu, which, layer, off, src, src_type, n, &bad, err);
    if (rc == 0 && bad >= 0)
        rc = bad_weight(cm, t, "weight", host ? host : src, host ? LMC_CU_SRC_F32 : src_type, bad,
                        t_cols(t), err);
    free(host);
    return rc;
}

/* A low-rank tensor's encoding fields and blob size. */
static int check_lowrank(const lmc_tensor *t, lmc_error *err)
{
    const lmc_enc_traits *tr = lmc_enc_get(LMC_ENC_LOWRANK);
    int64_t rows = t_rows(t), cols = t_cols(t);
    if (tr->validate(&t->enc, rows, cols, err) < 0) {
        char pre[128];
        snprintf(pre, sizeof pre, "tensor %s", t->name);
        return lmc_fail_prefix(err, pre);
    }
    size_t need = tr->nbytes(&t->enc, rows, cols);
    if (t->nbytes != need || !t->data)
        return lmc_fail(err, "tensor %s: %zu bytes of data, encoding %s needs %zu", t->name,
                        t->nbytes, tr->name, need);
    return 0;
}

/* Part `part` of a low-rank slot (checked with check_lowrank): the factors
 * go up as stored (f16 or f32), without forming A . B. */
static int put_factors(lmc_cuda_model *cm, const lmc_tensor *t, int which, int layer, int part,
                       lmc_error *err)
{
    int64_t rows = t_rows(t), cols = t_cols(t);
    int r = t->enc.rank, rp = lmc_cu_rank_pad(r), f16 = t->enc.inner == LMC_ENC_F16;
    int src_type = f16 ? LMC_CU_SRC_F16 : LMC_CU_SRC_F32;
    size_t es = f16 ? 2 : 4, b_off = ((size_t)rows * r * es + 3) & ~(size_t)3;
    /* A with its rows padded to rp values (zeros), as the device keeps it */
    uint8_t *a = calloc((size_t)rows * rp, es);
    if (!a)
        return lmc_fail(err, "out of memory");
    for (int64_t i = 0; i < rows; i++)
        memcpy(a + (size_t)i * rp * es, t->data + (size_t)i * r * es, (size_t)r * es);
    int64_t bad;
    int rc = lmc_cu_upload_factor(cm->cu, which, layer, part, 0, a, src_type, (size_t)rows * rp,
                                  &bad, err);
    if (rc == 0 && bad >= 0)
        rc = bad_weight(cm, t, "factor A value", a, src_type, bad, rp, err);
    free(a);
    if (rc < 0)
        return -1;
    if (lmc_cu_upload_factor(cm->cu, which, layer, part, 1, t->data + b_off, src_type,
                             (size_t)r * cols, &bad, err) < 0)
        return -1;
    if (bad >= 0)
        return bad_weight(cm, t, "factor B value", t->data + b_off, src_type, bad, cols, err);
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

/* Linears stacked along rows into one device matrix (q|k|v, gate|up) and
 * their biases into one vector (zeros for a missing one). When every one of
 * them is a low-rank factor pair, the slot keeps the factors (two products
 * per linear, as the CPU runs them); otherwise each is decoded to dense. */
static int load_linears(lmc_cuda_model *cm, const lmc_model *m, int layer,
                        const char *const *roles, const int64_t *outs, int nroles, int64_t in,
                        int bias_required, int wslot, int bslot, lmc_error *err)
{
    const lmc_tensor *ts[3];
    int ranks[3], lowrank = 1;
    for (int i = 0; i < nroles; i++) {
        char wn[64];
        snprintf(wn, sizeof wn, "blk.%d.%s.weight", layer, roles[i]);
        ts[i] = lmc_model_find(m, wn);
        if (!ts[i])
            return lmc_fail(err, "%s: tensor %s is missing", model_name(m), wn);
        if (lmc_tensor_expect_shape(ts[i], outs[i], in, err) < 0)
            return -1;
        lowrank = lowrank && ts[i]->enc.id == LMC_ENC_LOWRANK;
        ranks[i] = ts[i]->enc.rank;
    }
    for (int i = 0; lowrank && i < nroles; i++)
        if (check_lowrank(ts[i], err) < 0)
            return -1;
    if (lowrank && lmc_cu_set_lowrank(cm->cu, wslot, layer, nroles, ranks, err) < 0)
        return -1;
    int64_t row = 0;
    for (int i = 0; i < nroles; i++) {
        char bn[64];
        snprintf(bn, sizeof bn, "blk.%d.%s.bias", layer, roles[i]);
        const lmc_tensor *t = ts[i];
        if (lowrank ? put_factors(cm, t, wslot, layer, i, err) < 0
                    : put_matrix(cm, t, wslot, layer, (size_t)(row * in), err) < 0)
            return -1;
        /* a stored bias is used even when the config does not announce it */
        const lmc_tensor *bt = lmc_model_find(m, bn);
        if (!bt && bias_required)
            return lmc_fail(err, "%s: tensor %s is missing", model_name(m), bn);
        if (bt && (lmc_tensor_expect_shape(bt, outs[i], 1, err) < 0 ||
                   put_vector(cm, bt, bslot, layer, (size_t)row, err) < 0))
            return -1;
        row += outs[i];
    }
    return 0;
}

static int load_weights(lmc_cuda_model *cm, const lmc_model *m, lmc_error *err)
{
    const lmc_config *c = &cm->cfg;
    int64_t H = c->hidden, F = c->ffn, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const lmc_tensor *t = lmc_model_find(m, "embed.weight");
    if (!t)
        return lmc_fail(err, "%s: tensor embed.weight is missing", model_name(m));
    if (lmc_tensor_expect_shape(t, c->vocab, H, err) < 0 ||
        put_matrix(cm, t, LMC_CU_EMBED, 0, 0, err) < 0)
        return -1;
    if (c->arch != LMC_ARCH_LLAMA) {
        const lmc_tensor *pt = lmc_model_find(m, "pos_embed.weight");
        if (put_vector(cm, pt, LMC_CU_POS, 0, 0, err) < 0)
            return -1;
    }
    if (load_vec(cm, m, "final_norm.weight", H, 1, LMC_CU_FINAL_NORM_W, 0, err) < 0 ||
        (!c->norm_is_rms &&
         load_vec(cm, m, "final_norm.bias", H, 0, LMC_CU_FINAL_NORM_B, 0, err) < 0))
        return -1;
    const lmc_tensor *ht = lmc_model_find(m, "head.weight");
    if (ht && (lmc_tensor_expect_shape(ht, c->vocab, H, err) < 0 ||
               put_matrix(cm, ht, LMC_CU_HEAD, 0, 0, err) < 0))
        return -1;
    for (int l = 0; l < c->n_layers; l++) {
        char n1[64], n2[64];
        snprintf(n1, sizeof n1, "blk.%d.attn_norm.weight", l);
        snprintf(n2, sizeof n2, "blk.%d.attn_norm.bias", l);
        if (load_vec(cm, m, n1, H, 1, LMC_CU_ATTN_NORM_W, l, err) < 0 ||
            (!c->norm_is_rms && load_vec(cm, m, n2, H, 0, LMC_CU_ATTN_NORM_B, l, err) < 0))
            return -1;
        snprintf(n1, sizeof n1, "blk.%d.ffn_norm.weight", l);
        snprintf(n2, sizeof n2, "blk.%d.ffn_norm.bias", l);
        if (load_vec(cm, m, n1, H, 1, LMC_CU_FFN_NORM_W, l, err) < 0 ||
            (!c->norm_is_rms && load_vec(cm, m, n2, H, 0, LMC_CU_FFN_NORM_B, l, err) < 0))
            return -1;
        static const char *const qkv[3] = {"q", "k", "v"}, *const o[1] = {"o"},
                                 *const gu[2] = {"gate", "up"}, *const dn[1] = {"down"};
        const int64_t qkv_out[3] = {qd, kvd, kvd}, h_out[1] = {H}, f_out[2] = {F, F};
        int gated = c->arch == LMC_ARCH_LLAMA;
        if (load_linears(cm, m, l, qkv, qkv_out, 3, H, c->qkv_bias, LMC_CU_QKV, LMC_CU_QKV_B,
                         err) < 0 ||
            load_linears(cm, m, l, o, h_out, 1, qd, c->o_bias, LMC_CU_O, LMC_CU_O_B, err) < 0 ||
            load_linears(cm, m, l, gated ? gu : gu + 1, f_out, gated ? 2 : 1, H, c->mlp_bias,
                         LMC_CU_GU, LMC_CU_GU_B, err) < 0 ||
            load_linears(cm, m, l, dn, h_out, 1, F, c->mlp_bias, LMC_CU_DOWN, LMC_CU_DOWN_B,
                         err) < 0)
            return -1;
    }
    return 0;
}

void lmc_cuda_model_free(lmc_cuda_model *cm)
{
    if (!cm)
        return;
    lmc_cu_free(cm->cu);
    free(cm);
}

lmc_precision lmc_cuda_model_precision(const lmc_cuda_model *cm) { return cm->prec; }

lmc_residual lmc_cuda_model_residual(const lmc_cuda_model *cm) { return cm->res; }

size_t lmc_cuda_model_bytes(const lmc_cuda_model *cm) { return lmc_cu_bytes(cm->cu); }

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

int lmc_cuda_windows_nll(lmc_cuda_model *cm, const int32_t *ids, int nwin, int seqlen,
                         double *nll, lmc_error *err)
{
    return windows_nll(cm, ids, nwin, seqlen, nll, err);
}

int lmc_cuda_model_new(const lmc_model *m, lmc_precision prec, lmc_residual res, int max_tokens,
                       int seqlen_hint, lmc_cuda_model **out, lmc_error *err)
{
    *out = NULL;
    const lmc_config *c = &m->cfg;
    lmc_precision p = lmc_precision_resolve(prec, c);
    if (res == LMC_RESIDUAL_HALF && p == LMC_PREC_FP32)
        return lmc_fail(err, "a half residual needs fp16 or bf16 precision, not fp32");
    if (check_config(c, err) < 0 || lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    lmc_encodings_init();
    int pos_rows = 0;
    if (c->arch != LMC_ARCH_LLAMA) {
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
    lmc_cu_dims d;
    dims_of(c, pos_rows, tied, &d);
    if (lmc_cu_new(&d, (int)cm->prec, cm->res == LMC_RESIDUAL_HALF, max_tokens, &cm->cu, err) <
            0 ||
        load_weights(cm, m, err) < 0)
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
    {
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
    lmc_cuda_model_free(cm);
    return -1;
}

int lmc_cuda_perplexity(lmc_cuda_model *cm, const int32_t *ids, int64_t n, const lmc_ppl_opts *o,
                        lmc_ppl_result *r, lmc_error *err)
{
    const char *src = o->source ? o->source : "input";
    memset(r, 0, sizeof *r);
    int64_t nw;
    if (lmc_ppl_begin(ids, n, cm->cfg.vocab, o, &nw, err) < 0)
        return -1;
    if (o->seqlen > cm->max_tokens)
        return lmc_fail(err, "windows of %d tokens: the device buffers hold %d tokens",
                        o->seqlen, cm->max_tokens);
    int S = o->seqlen, per = cm->max_tokens / S;
    double *wn = malloc((size_t)per * sizeof *wn);
    if (!wn)
        return lmc_fail(err, "out of memory");
    double total = 0, t0 = lmc_now();
    for (int64_t k = 0; k < nw; k += per) {
        int nb = nw - k < per ? (int)(nw - k) : per;
        if (windows_nll(cm, ids + k * S, nb, S, wn, err) < 0) {
            free(wn);
            char pre[600];
            snprintf(pre, sizeof pre, "%s, window %lld", src, (long long)k);
            return lmc_fail_prefix(err, pre);
        }
        for (int i = 0; i < nb; i++) {
            if (!isfinite(wn[i])) {
                free(wn);
                return lmc_fail(err, "%s, window %lld: non-finite negative log-likelihood in a "
                                     "window of %d tokens (%s overflow? try %s)",
                                src, (long long)(k + i), S, lmc_precision_name(cm->prec),
                                cm->res == LMC_RESIDUAL_HALF ? "--residual fp32 or --precision fp32"
                                                             : "--precision fp32");
            }
            total += wn[i];
        }
        if (o->progress)
            o->progress(o->progress_ctx, k + nb, nw, lmc_now() - t0);
    }
    free(wn);
    return lmc_ppl_end(n, nw, total, lmc_now() - t0, o, r, err);
}

int lmc_cuda_forward_block(lmc_cuda_model *cm, int layer, float *x, int n, lmc_error *err)
{
    if (n > cm->max_tokens || (cm->cfg.arch != LMC_ARCH_LLAMA && n > cm->cfg.max_pos))
        return lmc_fail(err, "block %d: %d tokens, too many", layer, n);
    return lmc_cu_forward_block(cm->cu, layer, x, n, err);
}

int lmc_cuda_forward_logits(lmc_cuda_model *cm, const int32_t *ids, int n, float *logits,
                            lmc_error *err)
{
    if (n > cm->max_tokens || (cm->cfg.arch != LMC_ARCH_LLAMA && n > cm->cfg.max_pos))
        return lmc_fail(err, "window of %d tokens: too many", n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cm->cfg.vocab)
            return lmc_fail(err, "token id %d at position %d is outside the vocabulary (%d)",
                            (int)ids[i], i, cm->cfg.vocab);
    return lmc_cu_forward_logits(cm->cu, ids, n, logits, err);
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
    if (check_config(c, err) < 0)
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
    if (check_config(c, err) < 0)
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

int lmc_cuda_test_row_nll(const float *logits, int rows, int V, const int32_t *targets,
                          lmc_precision p, double *nll, lmc_error *err)
{
    return lmc_cu_test_row_nll(logits, rows, V, targets, prec_of(p) == LMC_PREC_FP16, nll, err);
}

int lmc_cuda_bench_gemm(const lmc_config *c, int tokens, lmc_precision p, lmc_residual res,
                        lmc_cuda_gemm_rate *rates, int *n_rates, double *mix_tflops,
                        lmc_error *err)
{
    *n_rates = 0;
    *mix_tflops = 0;
    if (check_config(c, err) < 0)
        return -1;
    lmc_cu_dims d;
    dims_of(c, 0, 0, &d);
    lmc_cu_gemm_rate r[8];
    int n;
    int window = tokens < c->max_pos ? tokens : c->max_pos;
    lmc_precision rp = lmc_precision_resolve(p, c);
    int res_half = lmc_residual_resolve(res, rp) == LMC_RESIDUAL_HALF;
    if (lmc_cu_bench_gemm(&d, tokens, window, (int)rp, res_half, r, &n, mix_tflops, err) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        memcpy(rates[i].name, r[i].name, sizeof rates[i].name); /* both char[16] */
        rates[i].name[sizeof rates[i].name - 1] = 0;
        rates[i].m = r[i].m;
        rates[i].n = r[i].n;
        rates[i].k = r[i].k;
        rates[i].per_forward = r[i].per_forward;
        rates[i].tflops = r[i].tflops;
        rates[i].is_attention = r[i].is_attention;
    }
    *n_rates = n;
    return 0;
}

#else
typedef int lmc_forward_cuda_c_unused; /* ISO C: no empty translation unit */
#endif /* LMC_HAVE_CUDA */
