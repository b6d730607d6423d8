/* lmc_model -> a Hugging Face checkpoint directory in the GPTQ v1 or AutoAWQ
 * GEMM layout (packers in export_gptq.c / export_awq.c):
 *
 *   OUT/model.safetensors   every tensor under its save_pretrained name
 *                           (formats/hf_checkpoint.h lmc_hf_tensor_name):
 *                           quantized linears as MODULE.qweight / .qzeros /
 *                           .scales (/ .g_idx for GPTQ), biases and the other
 *                           tensors as they were (GPT-2's Conv1D weights
 *                           transposed back to [in, out], q|k|v re-fused)
 *   OUT/config.json         the original config.json with quantization_config
 *   OUT/quantize_config.json  (GPTQ) the same object, for AutoGPTQ
 *   OUT/tokenizer files     copied from the source checkpoint directory, or
 *                           tokenizer.json from the container
 *
 * Every quantized linear shares one quantization_config (bits, group size);
 * a linear that does not fit is refused, or with --dequant written dense
 * (with its fused partners q/k/v and gate/up, which loaders such as vLLM
 * quantize together) and excluded from quantization in the config. The
 * directory is written as PATH.tmp.XXXXXX and renamed into place. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "../core/half.h"
#include "../core/qgroup.h"
#include "export_internal.h"
#include "hf_checkpoint.h"
#include "safetensors.h"

/* ------------------------------------------------------------ qlinear */

int lmc_qlinear_load(lmc_qlinear *q, const lmc_tensor *t, int codes, lmc_error *err)
{
    memset(q, 0, sizeof *q);
    q->t = t;
    q->out = t->shape[0];
    q->in = t->shape[1];
    q->bits = t->enc.bits;
    q->sym = t->enc.sym;
    q->ng = lmc_qgroup_ngroups(&t->enc, q->in);
    q->g = t->enc.group > 0 ? t->enc.group : q->in;
    size_t ns = (size_t)(q->out * q->ng);
    float *sc = malloc(ns * sizeof *sc);
    q->codes = codes ? malloc((size_t)(q->out * q->in)) : NULL;
    q->sbits = malloc(ns * 2);
    q->zeros = malloc(ns);
    q->g_idx = malloc((size_t)q->in * sizeof *q->g_idx);
    if (!sc || (codes && !q->codes) || !q->sbits || !q->zeros || !q->g_idx) {
        free(sc);
        lmc_qlinear_free(q);
        return lmc_fail(err, "%s: out of memory", t->name);
    }
    lmc_qgroup_unpack(&t->enc, q->out, q->in, t->data, q->codes, sc, q->zeros, q->g_idx);
    int bad = 0;
    for (size_t k = 0; k < ns; k++) {
        q->sbits[k] = lmc_f32_to_f16(sc[k]); /* the stored fp16, back exactly */
        bad |= !isfinite(sc[k]);
    }
    free(sc);
    q->plain_gidx = 1;
    for (int64_t i = 0; i < q->in; i++) {
        bad |= q->g_idx[i] < 0 || q->g_idx[i] >= q->ng;
        q->plain_gidx &= q->g_idx[i] == (int32_t)(i / q->g);
    }
    if (bad) {
        lmc_qlinear_free(q);
        return lmc_fail(err, "%s: a scale is not finite or g_idx is out of range (damaged "
                             "tensor)",
                        t->name);
    }
    return 0;
}

void lmc_qlinear_free(lmc_qlinear *q)
{
    free(q->codes);
    free(q->sbits);
    free(q->zeros);
    free(q->g_idx);
    memset(q, 0, sizeof *q);
}

/* ------------------------------------------------------------ the plan */

enum { P_DENSE = 0, P_QWEIGHT, P_QZEROS, P_SCALES, P_GIDX };

/* A group of lmc tensors that becomes one module (a linear: its weight,
 * quantized or dense) or one plain tensor (norms, embeddings, biases). */
typedef struct hmod {
    char name[160];            /* the HF tensor name (".weight" included) */
    const lmc_tensor *src[3];  /* stacked along the outputs (GPT-2 q|k|v) */
    int nsrc;
    lmc_hf_layout layout;
    int linear;                /* a block linear's weight */
    int quant;                 /* written packed */
    int dequantized;           /* decoded through to_f32 */
    lmc_enc_id dtype;          /* dense output type */
} hmod;

typedef struct hout {
    char name[176];
    int mod, part;
} hout;

typedef struct hx {
    const lmc_model *m;
    const lmc_export_opts *o;
    hmod *mods;
    int nmods;
    hout *outs;
    int nouts;
    int bits, group, sym, desc_act;
    int none_fit; /* no linear can be packed: --dequant would not help */
    lmc_refusals rf;
    /* the packed module currently served */
    int cached;
    uint32_t *qw, *qz;
    uint16_t *sc;
    int32_t *gi;
    int done;
} hx;

static int is_linear(const char *canon)
{
    static const char *const roles[] = {"q", "k", "v", "o", "gate", "up", "down", NULL};
    int l;
    char role[16], kind[16];
    if (sscanf(canon, "blk.%d.%15[^.].%15s", &l, role, kind) != 3 || strcmp(kind, "weight"))
        return 0;
    for (int i = 0; roles[i]; i++)
        if (!strcmp(role, roles[i]))
            return 1;
    return 0;
}

static const char *st_dtype(lmc_enc_id id)
{
    return id == LMC_ENC_F32 ? "F32" : id == LMC_ENC_BF16 ? "BF16" : "F16";
}

static int is_dense(lmc_enc_id id) { return id == LMC_ENC_F16 || id == LMC_ENC_BF16 || id == LMC_ENC_F32; }

/* Module name of a linear: its weight's name without ".weight". */
static void module_of(const hmod *h, char *buf, size_t n)
{
    snprintf(buf, n, "%.*s", (int)(strlen(h->name) - strlen(".weight")), h->name);
}

/* The quantization parameters of a part, or why it cannot be packed. */
static int check_part(hx *x, const lmc_tensor *t, char *why, size_t nwhy, lmc_error *err)
{
    if (t->enc.id != LMC_ENC_QGROUP) {
        const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
        snprintf(why, nwhy, "%s weights (a %s checkpoint holds grouped integer weights only)",
                 tr ? tr->name : "unknown", lmc_export_format_name(x->o->format));
        return 1;
    }
    lmc_qlinear q;
    if (lmc_qlinear_load(&q, t, 0, err) != 0)
        return -1;
    int r = x->o->format == LMC_EXPORT_GPTQ ? lmc_gptq_refuse(&q, why, nwhy)
                                            : lmc_awq_refuse(&q, why, nwhy);
    lmc_qlinear_free(&q);
    return r;
}

static int add_mod(hx *x, const char *name, const lmc_tensor **src, int nsrc,
                   lmc_hf_layout layout)
{
    hmod *nm = realloc(x->mods, (size_t)(x->nmods + 1) * sizeof *nm);
    if (!nm)
        return -1;
    x->mods = nm;
    hmod *h = &x->mods[x->nmods++];
    memset(h, 0, sizeof *h);
    snprintf(h->name, sizeof h->name, "%s", name);
    for (int j = 0; j < nsrc; j++)
        h->src[j] = src[j];
    h->nsrc = nsrc;
    h->layout = layout;
    h->linear = is_linear(src[0]->name);
    h->dtype = src[0]->enc.id;
    return 0;
}

/* Layer and role of a linear module ("blk.3.gate.weight" -> 3, "gate"). */
static void layer_role(const hmod *h, int *layer, char role[16])
{
    *layer = -1;
    role[0] = 0;
    sscanf(h->src[0]->name, "blk.%d.%15[^.]", layer, role);
}

/* Loaders fuse q/k/v and gate/up: a dense one makes its partners dense. */
static int partners(const hmod *a, const hmod *b)
{
    int la, lb;
    char ra[16], rb[16];
    layer_role(a, &la, ra);
    layer_role(b, &lb, rb);
    if (la != lb || la < 0)
        return 0;
    int qa = strchr("qkv", ra[0]) && !ra[1], qb = strchr("qkv", rb[0]) && !rb[1];
    int ga = !strcmp(ra, "gate") || !strcmp(ra, "up"), gb = !strcmp(rb, "gate") || !strcmp(rb, "up");
    return (qa && qb) || (ga && gb);
}

static int build(hx *x, lmc_error *err)
{
    const lmc_model *m = x->m;
    lmc_arch arch = m->cfg.arch;
    if (x->o->format == LMC_EXPORT_AWQ && arch == LMC_ARCH_GPT2)
        return lmc_fail(err, "%s: cannot export to awq: AWQ loaders replace nn.Linear layers "
                             "and GPT-2's are Conv1D (use --format gptq)",
                        m->source_path);
    /* 1. modules and plain tensors, in the model's order */
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        char hf[160];
        lmc_hf_layout lay;
        if (lmc_hf_tensor_name(arch, t->name, hf, sizeof hf, &lay) != 0)
            return lmc_fail(err, "%s: tensor %s has no Hugging Face name", m->source_path,
                            t->name);
        const lmc_tensor *src[3] = {t, NULL, NULL};
        int nsrc = 1;
        if (lay == LMC_HF_FUSED_QKV) {
            int l;
            char role[16], kind[16];
            sscanf(t->name, "blk.%d.%15[^.].%15s", &l, role, kind);
            if (strcmp(role, "q"))
                continue; /* k and v join q's module */
            for (int j = 1; j < 3; j++) {
                char nm[64];
                snprintf(nm, sizeof nm, "blk.%d.%c.%s", l, "qkv"[j], kind);
                if (!(src[j] = lmc_model_find(m, nm)))
                    return lmc_fail(err, "%s: %s without %s", m->source_path, t->name, nm);
            }
            nsrc = 3;
        }
        if (add_mod(x, hf, src, nsrc, lay) != 0)
            return lmc_fail(err, "out of memory");
    }
    /* 2. which linears pack, under one (bits, group) */
    int votes_n = 0;
    struct vote {
        int bits, group, n;
    } votes[16];
    char why[200];
    for (int k = 0; k < x->nmods; k++) {
        hmod *h = &x->mods[k];
        if (!h->linear || h->src[0]->enc.id != LMC_ENC_QGROUP)
            continue;
        int ok = 1;
        for (int j = 0; j < h->nsrc && ok; j++) {
            int r = check_part(x, h->src[j], why, sizeof why, err);
            if (r < 0)
                return -1;
            ok = r == 0 && h->src[j]->enc.bits == h->src[0]->enc.bits &&
                 h->src[j]->enc.group == h->src[0]->enc.group;
        }
        if (!ok)
            continue;
        h->quant = 1;
        int v = 0;
        while (v < votes_n && (votes[v].bits != h->src[0]->enc.bits ||
                               votes[v].group != h->src[0]->enc.group))
            v++;
        if (v == votes_n && votes_n < 16)
            votes[votes_n++] = (struct vote){h->src[0]->enc.bits, h->src[0]->enc.group, 0};
        if (v < votes_n)
            votes[v].n++;
    }
    int best = -1, any_q = 0;
    for (int v = 0; v < votes_n; v++)
        if (best < 0 || votes[v].n > votes[best].n)
            best = v;
    const lmc_tensor *first = NULL;
    for (int k = 0; k < x->nmods; k++) {
        any_q |= x->mods[k].linear && x->mods[k].src[0]->enc.id == LMC_ENC_QGROUP;
        if (x->mods[k].linear && !first)
            first = x->mods[k].src[0];
    }
    if (!any_q) {
        const lmc_enc_traits *tr = first ? lmc_enc_get(first->enc.id) : NULL;
        return lmc_fail(err, "%s: cannot export to %s: no linear is stored in grouped integers "
                             "(%s is %s; quantize with lmc rtn, gptq or awq first)",
                        m->source_path, lmc_export_format_name(x->o->format),
                        first ? first->name : "the model has no linear",
                        tr ? tr->name : "?");
    }
    if (best >= 0) {
        x->bits = votes[best].bits;
        x->group = votes[best].group;
    }
    x->none_fit = best < 0;
    x->sym = 1;
    /* 3. refusals, or dense linears under --dequant */
    int changed = 1;
    for (int k = 0; k < x->nmods; k++) {
        hmod *h = &x->mods[k];
        if (h->quant && (h->src[0]->enc.bits != x->bits || h->src[0]->enc.group != x->group)) {
            snprintf(why, sizeof why, "w%d g%d while the other linears are w%d g%d (one "
                                      "quantization_config)",
                     h->src[0]->enc.bits, h->src[0]->enc.group, x->bits, x->group);
            h->quant = 0;
        } else if (h->linear && !h->quant && !is_dense(h->src[0]->enc.id)) {
            int r = 0;
            for (int j = 0; j < h->nsrc && r == 0; j++)
                if ((r = check_part(x, h->src[j], why, sizeof why, err)) < 0)
                    return -1;
            if (r == 0)
                snprintf(why, sizeof why, "q, k and v in different bits or group sizes (one "
                                          "c_attn module)");
        } else if (!h->linear && !is_dense(h->src[0]->enc.id)) {
            const lmc_enc_traits *tr = lmc_enc_get(h->src[0]->enc.id);
            snprintf(why, sizeof why, "%s weights outside the block linears (loaders expect them "
                                      "dense)",
                     tr ? tr->name : "unknown");
        } else
            continue;
        if (!x->o->dequant || x->none_fit)
            lmc_refuse(&x->rf, h->src[0]->name, why);
        h->dequantized = 1;
        h->dtype = lmc_export_dequant_to(x->o);
    }
    /* a dense linear makes its fused partners dense (loaders quantize q/k/v
     * and gate/up as one), which is a refusal unless --dequant */
    while (changed) {
        changed = 0;
        for (int a = 0; a < x->nmods; a++)
            for (int b = 0; b < x->nmods; b++) {
                hmod *ha = &x->mods[a], *hb = &x->mods[b];
                if (ha->linear && hb->linear && !ha->quant && hb->quant && partners(ha, hb)) {
                    if (!x->o->dequant)
                        lmc_refuse(&x->rf, hb->src[0]->name,
                                   "fused by loaders with a partner that is not quantized "
                                   "(q/k/v, gate/up)");
                    hb->quant = 0;
                    hb->dequantized = 1;
                    hb->dtype = lmc_export_dequant_to(x->o);
                    changed = 1;
                }
            }
    }
    if (x->rf.n)
        return 0;
    for (int k = 0; k < x->nmods; k++) {
        hmod *h = &x->mods[k];
        for (int j = 0; h->quant && j < h->nsrc; j++) {
            x->sym &= h->src[j]->enc.sym;
            if (x->o->format == LMC_EXPORT_GPTQ && h->src[j]->enc.has_gidx) {
                lmc_qlinear q;
                if (lmc_qlinear_load(&q, h->src[j], 0, err) != 0)
                    return -1;
                x->desc_act |= !q.plain_gidx;
                lmc_qlinear_free(&q);
            }
        }
    }
    /* 4. the safetensors tensors */
    x->outs = calloc((size_t)x->nmods * 4 + 1, sizeof *x->outs);
    if (!x->outs)
        return lmc_fail(err, "out of memory");
    for (int k = 0; k < x->nmods; k++) {
        hmod *h = &x->mods[k];
        if (!h->quant) {
            x->outs[x->nouts++] = (hout){.mod = k, .part = P_DENSE};
            snprintf(x->outs[x->nouts - 1].name, sizeof x->outs[0].name, "%s", h->name);
            continue;
        }
        char mod[160];
        module_of(h, mod, sizeof mod);
        static const char *const sfx[] = {NULL, "qweight", "qzeros", "scales", "g_idx"};
        int last = x->o->format == LMC_EXPORT_GPTQ ? P_GIDX : P_SCALES;
        for (int p = P_QWEIGHT; p <= last; p++) {
            hout *ho = &x->outs[x->nouts++];
            ho->mod = k;
            ho->part = p;
            snprintf(ho->name, sizeof ho->name, "%s.%s", mod, sfx[p]);
        }
    }
    return 0;
}

/* The shape (and dtype) of output i. */
static void out_shape(const hx *x, int i, lmc_st_write_tensor *w)
{
    const hout *ho = &x->outs[i];
    const hmod *h = &x->mods[ho->mod];
    int64_t rows = 0, in = h->src[0]->ndim == 2 ? h->src[0]->shape[1] : 1;
    for (int j = 0; j < h->nsrc; j++)
        rows += h->src[j]->shape[0];
    int64_t ng = h->quant ? lmc_qgroup_ngroups(&h->src[0]->enc, in) : 0;
    int gptq = x->o->format == LMC_EXPORT_GPTQ, b = x->bits;
    w->name = ho->name;
    w->ndim = 2;
    switch (ho->part) {
    case P_QWEIGHT:
        w->dtype = "I32";
        w->shape[0] = gptq ? in * b / 32 : in;
        w->shape[1] = gptq ? rows : rows / 8;
        return;
    case P_QZEROS:
        w->dtype = "I32";
        w->shape[0] = ng;
        w->shape[1] = gptq ? rows * b / 32 : rows / 8;
        return;
    case P_SCALES:
        w->dtype = "F16";
        w->shape[0] = ng;
        w->shape[1] = rows;
        return;
    case P_GIDX:
        w->dtype = "I32";
        w->ndim = 1;
        w->shape[0] = in;
        return;
    }
    w->dtype = st_dtype(h->dtype);
    if (h->src[0]->ndim == 1) {
        w->ndim = 1;
        w->shape[0] = rows;
    } else if (h->layout != LMC_HF_PLAIN) { /* Conv1D: [in, out] */
        w->shape[0] = in;
        w->shape[1] = rows;
    } else {
        w->shape[0] = rows;
        w->shape[1] = in;
    }
}

static void drop_cache(hx *x)
{
    free(x->qw);
    free(x->qz);
    free(x->sc);
    free(x->gi);
    x->qw = x->qz = NULL;
    x->sc = NULL;
    x->gi = NULL;
    x->cached = -1;
}

static int pack_module(hx *x, int k, lmc_error *err)
{
    if (x->cached == k)
        return 0;
    drop_cache(x);
    const hmod *h = &x->mods[k];
    int64_t out = 0, in = h->src[0]->shape[1], b = x->bits;
    for (int j = 0; j < h->nsrc; j++)
        out += h->src[j]->shape[0];
    int64_t ng = lmc_qgroup_ngroups(&h->src[0]->enc, in);
    int gptq = x->o->format == LMC_EXPORT_GPTQ;
    size_t nqw = gptq ? (size_t)(in * b / 32 * out) : (size_t)(in * out / 8);
    size_t nqz = gptq ? (size_t)(ng * out * b / 32) : (size_t)(ng * out / 8);
    x->qw = calloc(nqw, 4);
    x->qz = calloc(nqz, 4);
    x->sc = calloc((size_t)(ng * out), 2);
    x->gi = calloc((size_t)in, 4);
    if (!x->qw || !x->qz || !x->sc || !x->gi) {
        drop_cache(x);
        return lmc_fail(err, "%s: out of memory", h->name);
    }
    int64_t col0 = 0;
    for (int j = 0; j < h->nsrc; j++) {
        lmc_qlinear q;
        if (lmc_qlinear_load(&q, h->src[j], 1, err) != 0) {
            drop_cache(x);
            return -1;
        }
        if (j > 0 && memcmp(q.g_idx, x->gi, (size_t)in * 4) != 0) {
            lmc_qlinear_free(&q);
            drop_cache(x);
            return lmc_fail(err, "%s: q, k and v share GPT-2's c_attn but not one g_idx",
                            h->name);
        }
        memcpy(x->gi, q.g_idx, (size_t)in * 4);
        if (gptq)
            lmc_gptq_pack(&q, col0, out, x->qw, x->qz, x->sc);
        else
            lmc_awq_pack(&q, col0, out, x->qw, x->qz, x->sc);
        col0 += q.out;
        lmc_qlinear_free(&q);
    }
    x->cached = k;
    return 0;
}

/* A dense module: its parts' values in h->dtype, [rows][in] or transposed. */
static int fill_dense(const hmod *h, uint8_t *dst, lmc_error *err)
{
    int64_t in = h->src[0]->ndim == 2 ? h->src[0]->shape[1] : 1, total = 0;
    for (int j = 0; j < h->nsrc; j++)
        total += h->src[j]->shape[0];
    size_t es = h->dtype == LMC_ENC_F32 ? 4 : 2;
    int64_t r0 = 0;
    for (int j = 0; j < h->nsrc; j++) {
        const lmc_tensor *t = h->src[j];
        int64_t rows = t->shape[0];
        size_t n = (size_t)(rows * in);
        const uint8_t *v = t->data; /* the source bytes when already in dtype */
        uint8_t *conv = NULL;
        if (t->enc.id != h->dtype) {
            float *f = malloc(n * sizeof *f);
            conv = malloc(n * es);
            const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
            if (!f || !conv || !tr || tr->to_f32(&t->enc, t->data, rows, in, f, err) != 0) {
                int oom = !f || !conv;
                free(f);
                free(conv);
                return oom ? lmc_fail(err, "%s: out of memory", t->name)
                           : lmc_fail_prefix(err, t->name);
            }
            for (size_t i = 0; i < n; i++) {
                if (h->dtype == LMC_ENC_F32) {
                    memcpy(conv + 4 * i, &f[i], 4);
                    continue;
                }
                uint16_t hv = h->dtype == LMC_ENC_F16 ? lmc_f32_to_f16(f[i]) : lmc_f32_to_bf16(f[i]);
                float back = h->dtype == LMC_ENC_F16 ? lmc_f16_to_f32(hv) : lmc_bf16_to_f32(hv);
                if (isfinite(f[i]) && !isfinite(back)) {
                    lmc_fail(err, "%s: value %g does not fit in %s", t->name, (double)f[i],
                             st_dtype(h->dtype));
                    free(f);
                    free(conv);
                    return -1;
                }
                memcpy(conv + 2 * i, &hv, 2);
            }
            free(f);
            v = conv;
        }
        if (t->ndim == 2 && h->layout != LMC_HF_PLAIN) { /* Conv1D [in][total] */
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < in; c++)
                    memcpy(dst + ((size_t)(c * total + r0 + r)) * es, v + (size_t)(r * in + c) * es,
                           es);
        } else {
            memcpy(dst + (size_t)(r0 * in) * es, v, n * es);
        }
        free(conv);
        r0 += rows;
    }
    return 0;
}

typedef struct fctx {
    hx *x;
    int i;
} fctx;

static int fill(void *ctx, void *dst, size_t nbytes, const void **data, lmc_error *err)
{
    fctx *f = ctx;
    hx *x = f->x;
    const hout *ho = &x->outs[f->i];
    const hmod *h = &x->mods[ho->mod];
    if (x->o->progress)
        x->o->progress(x->o->progress_ctx, f->i + 1, x->nouts, ho->name);
    if (ho->part == P_DENSE && h->nsrc == 1 && h->src[0]->enc.id == h->dtype &&
        (h->layout == LMC_HF_PLAIN || h->src[0]->ndim == 1) && h->src[0]->nbytes == nbytes) {
        *data = h->src[0]->data; /* as stored: no copy */
        return 0;
    }
    if (ho->part == P_DENSE)
        return fill_dense(h, dst, err);
    if (pack_module(x, ho->mod, err) != 0)
        return -1;
    const void *src = ho->part == P_QWEIGHT ? (const void *)x->qw
                      : ho->part == P_QZEROS ? (const void *)x->qz
                      : ho->part == P_SCALES ? (const void *)x->sc
                                             : (const void *)x->gi;
    memcpy(dst, src, nbytes); /* int32 and fp16 are stored little-endian, as on the host */
    return 0;
}

/* ------------------------------------------------------------ config */

static cJSON *quant_config(const hx *x)
{
    cJSON *q = cJSON_CreateObject();
    int gptq = x->o->format == LMC_EXPORT_GPTQ;
    cJSON_AddStringToObject(q, "quant_method", gptq ? "gptq" : "awq");
    cJSON_AddNumberToObject(q, "bits", x->bits);
    cJSON_AddNumberToObject(q, "group_size", x->group);
    cJSON *names = cJSON_CreateArray(), *dyn = cJSON_CreateObject();
    int any_dense = 0;
    for (int k = 0; k < x->nmods; k++) {
        const hmod *h = &x->mods[k];
        if (!h->linear)
            continue;
        char mod[160], re[400];
        module_of(h, mod, sizeof mod);
        if (h->quant) {
            cJSON_AddItemToArray(names, cJSON_CreateString(mod));
            continue;
        }
        any_dense = 1;
        size_t o = snprintf(re, sizeof re, "-:^");
        for (const char *s = mod; *s && o + 3 < sizeof re; s++) {
            if (*s == '.')
                re[o++] = '\\';
            re[o++] = *s;
        }
        snprintf(re + o, sizeof re - o, "$");
        cJSON_AddItemToObject(dyn, re, cJSON_CreateObject());
        if (!gptq) { /* AWQ: the dense ones by name */
            cJSON *ex = cJSON_GetObjectItem(q, "modules_to_not_convert");
            if (!ex)
                ex = cJSON_AddArrayToObject(q, "modules_to_not_convert");
            cJSON_AddItemToArray(ex, cJSON_CreateString(mod));
        }
    }
    if (gptq) {
        cJSON_AddBoolToObject(q, "desc_act", x->desc_act);
        cJSON_AddBoolToObject(q, "sym", x->sym);
        cJSON_AddBoolToObject(q, "static_groups", 0);
        cJSON_AddBoolToObject(q, "true_sequential", 1);
        cJSON_AddNumberToObject(q, "damp_percent", 0.01);
        cJSON_AddStringToObject(q, "checkpoint_format", "gptq");
        cJSON_AddStringToObject(q, "pack_dtype", "int32");
        cJSON_AddBoolToObject(q, "lm_head", 0);
        if (any_dense) {
            /* optimum/transformers keep only these (suffix match); GPTQModel
             * and vLLM skip the "-:" regexes of `dynamic` */
            cJSON *outer = cJSON_AddArrayToObject(q, "modules_in_block_to_quantize");
            cJSON_AddItemToArray(outer, names);
            names = NULL;
            cJSON_AddItemToObject(q, "dynamic", dyn);
            dyn = NULL;
        }
    } else {
        cJSON_AddStringToObject(q, "version", "gemm");
        cJSON_AddBoolToObject(q, "zero_point", 1);
        if (!cJSON_GetObjectItem(q, "modules_to_not_convert"))
            cJSON_AddNullToObject(q, "modules_to_not_convert");
    }
    cJSON_Delete(names);
    cJSON_Delete(dyn);
    return q;
}

static int write_text(lmc_atomic_dir *ad, const char *name, const char *text, uint64_t *bytes,
                      lmc_error *err)
{
    char *p = lmc_atomic_dir_file(ad, name);
    if (!p)
        return lmc_fail(err, "%s: out of memory", name);
    lmc_atomic_file af;
    int rc = lmc_atomic_open(&af, p, err);
    free(p);
    if (rc != 0)
        return -1;
    if (lmc_atomic_write(&af, text, strlen(text), err) != 0) {
        lmc_atomic_abort(&af);
        return -1;
    }
    *bytes += strlen(text);
    return lmc_atomic_commit(&af, err);
}

/* config.json with quantization_config added. The original text is kept
 * byte for byte (number spellings transformers reads back as floats),
 * with the object inserted before its closing brace; the result must parse
 * as the original plus that key, else cJSON prints the whole object. */
static char *config_text(const char *orig, cJSON *qc)
{
    cJSON *root = cJSON_Parse(orig);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON_AddItemToObject(root, "quantization_config", cJSON_Duplicate(qc, 1));
    char *qtext = cJSON_PrintUnformatted(qc), *out = NULL;
    const char *end = strrchr(orig, '}');
    if (qtext && end) {
        size_t head = (size_t)(end - orig);
        while (head > 0 && (orig[head - 1] == ' ' || orig[head - 1] == '\n' ||
                            orig[head - 1] == '\t' || orig[head - 1] == '\r'))
            head--;
        int empty = head > 0 && orig[head - 1] == '{';
        size_t n = head + strlen(qtext) + 64;
        out = malloc(n);
        if (out) {
            snprintf(out, n, "%.*s%s\n  \"quantization_config\": %s\n}\n", (int)head, orig,
                     empty ? "" : ",", qtext);
            cJSON *check = cJSON_Parse(out);
            if (!check || !cJSON_Compare(check, root, 1)) {
                free(out);
                out = NULL;
            }
            cJSON_Delete(check);
        }
    }
    if (!out) {
        char *p = cJSON_Print(root);
        if (p && (out = malloc(strlen(p) + 2)))
            sprintf(out, "%s\n", p);
        free(p);
    }
    free(qtext);
    cJSON_Delete(root);
    return out;
}

static int write_files(hx *x, lmc_atomic_dir *ad, uint64_t *bytes, lmc_error *err)
{
    const lmc_model *m = x->m;
    cJSON *qc = quant_config(x);
    char *cfg = qc ? config_text(m->config_json, qc) : NULL;
    char *qtext = qc ? cJSON_Print(qc) : NULL;
    cJSON_Delete(qc);
    int rc = -1;
    if (!cfg || !qtext) {
        lmc_fail(err, "%s: config.json: not a JSON object, or out of memory", m->source_path);
        goto out;
    }
    if (write_text(ad, "config.json", cfg, bytes, err) != 0)
        goto out;
    if (x->o->format == LMC_EXPORT_GPTQ) {
        size_t n = strlen(qtext);
        char *t = realloc(qtext, n + 2);
        if (!t) {
            lmc_fail(err, "out of memory");
            goto out;
        }
        qtext = t;
        memcpy(qtext + n, "\n", 2);
        if (write_text(ad, "quantize_config.json", qtext, bytes, err) != 0)
            goto out;
    }
    static const char *const copies[] = {"tokenizer.json",        "tokenizer_config.json",
                                         "special_tokens_map.json", "generation_config.json",
                                         "tokenizer.model",       "vocab.json",
                                         "merges.txt",            "added_tokens.json",
                                         NULL};
    int have_tok = 0;
    for (int i = 0; x->o->source_dir && copies[i]; i++) {
        char *src = lmc_path_join(x->o->source_dir, copies[i]);
        char *dst = src ? lmc_atomic_dir_file(ad, copies[i]) : NULL;
        int r = 0;
        if (!src || !dst)
            r = lmc_fail(err, "out of memory");
        else if (lmc_file_exists(src)) {
            r = lmc_copy_file(src, dst, err);
            have_tok |= i == 0;
            lmc_mmap mm;
            if (r == 0 && lmc_mmap_open(dst, &mm, NULL) == 0) {
                *bytes += mm.size;
                lmc_mmap_close(&mm);
            }
        }
        free(src);
        free(dst);
        if (r != 0)
            goto out;
    }
    if (!have_tok && m->tokenizer_json) {
        if (write_text(ad, "tokenizer.json", m->tokenizer_json, bytes, err) != 0)
            goto out;
    }
    rc = 0;
out:
    free(cfg);
    free(qtext);
    return rc;
}

int lmc_export_hf(const lmc_model *m, const char *out, const lmc_export_opts *o,
                  lmc_export_report *rep, lmc_error *err)
{
    const char *fmt = lmc_export_format_name(o->format);
    if (!m->config_json)
        return lmc_fail(err, "%s: cannot export to %s: the model carries no original "
                             "config.json",
                        m->source_path, fmt);
    hx x = {.m = m, .o = o, .cached = -1};
    lmc_st_write_tensor *wt = NULL;
    fctx *fc = NULL;
    lmc_atomic_dir ad = {0};
    int rc = -1, opened = 0;
    if (build(&x, err) != 0)
        goto out;
    if (x.rf.n) {
        lmc_refusals_fail(&x.rf, m->source_path, o, !x.none_fit, err);
        goto out;
    }
    wt = calloc((size_t)x.nouts + 1, sizeof *wt);
    fc = calloc((size_t)x.nouts + 1, sizeof *fc);
    if (!wt || !fc) {
        lmc_fail(err, "out of memory");
        goto out;
    }
    uint64_t data = 0;
    for (int i = 0; i < x.nouts; i++) {
        out_shape(&x, i, &wt[i]);
        fc[i] = (fctx){&x, i};
        wt[i].fill = fill;
        wt[i].fill_ctx = &fc[i];
    }
    if (lmc_atomic_dir_open(&ad, out, err) != 0)
        goto out;
    opened = 1;
    char *st = lmc_atomic_dir_file(&ad, "model.safetensors");
    if (!st) {
        lmc_fail(err, "out of memory");
        goto out;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    int r = lmc_safetensors_write(st, wt, x.nouts, meta, err);
    lmc_mmap mm;
    if (r == 0 && lmc_mmap_open(st, &mm, NULL) == 0) {
        data = mm.size;
        lmc_mmap_close(&mm);
    }
    free(st);
    if (r != 0)
        goto out;
    uint64_t bytes = data;
    if (write_files(&x, &ad, &bytes, err) != 0 || lmc_atomic_dir_commit(&ad, err) != 0)
        goto out;
    opened = 0;
    for (int i = 0; i < x.nouts; i++) {
        const hmod *h = &x.mods[x.outs[i].mod];
        char from[200] = "", part[48], to[32];
        for (int j = 0; j < h->nsrc; j++) {
            lmc_export_describe(h->src[j], part, sizeof part);
            if (j == 0 || strcmp(part, from) != 0)
                snprintf(from + strlen(from), sizeof from - strlen(from), "%s%s", j ? " + " : "",
                         part);
        }
        if (x.outs[i].part == P_DENSE)
            snprintf(to, sizeof to, "%s", st_dtype(h->dtype));
        else
            snprintf(to, sizeof to, "%s w%d g%d", fmt, x.bits, x.group);
        size_t n = 1;
        for (int d = 0; d < wt[i].ndim; d++)
            n *= (size_t)wt[i].shape[d];
        n *= lmc_st_dtype_size(wt[i].dtype);
        if (lmc_export_report_add(rep, x.outs[i].name, from, to, h->dequantized, n) != 0) {
            lmc_fail(err, "out of memory");
            goto out;
        }
    }
    rep->bytes_written = bytes;
    snprintf(rep->format_note, sizeof rep->format_note, "%s checkpoint, w%d g%d%s%s", fmt, x.bits,
             x.group, o->format == LMC_EXPORT_GPTQ && x.desc_act ? " desc_act" : "",
             o->format == LMC_EXPORT_GPTQ && x.sym ? " sym" : "");
    rc = 0;
out:
    if (opened) {
        /* name the output, not its temporary directory, in the message */
        size_t tl = strlen(ad.tmp_path);
        if (rc != 0 && strncmp(err->msg, ad.tmp_path, tl) == 0) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s%s", out, err->msg + tl);
            memcpy(err->msg, msg, sizeof msg);
        }
        lmc_atomic_dir_abort(&ad);
    }
    drop_cache(&x);
    free(x.mods);
    free(x.outs);
    free(wt);
    free(fc);
    lmc_refusals_free(&x.rf);
    return rc;
}
