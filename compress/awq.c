#include "awq.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/half.h"
#include "../eval/forward_ops.h"
#include "../eval/weights.h"
#include "qstore.h"
#include "scale_fold.h"
#ifdef LMC_HAVE_CUDA
#include "cuda/awq_cuda.h"
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define AWQ_O3 __attribute__((optimize("O3")))
#else
#define AWQ_O3
#endif

void lmc_awq_opts_default(lmc_awq_opts *o)
{
    memset(o, 0, sizeof *o);
    o->bits = 4;
    o->group = 128;
    o->grid = 20;
    o->scale = 1;
    o->clip = 1;
    o->search_tokens = 65536;
    o->clip_grid = 20;
    o->max_shrink = 0.5;
    o->clip_tokens = 512;
}

int lmc_awq_opts_check(const lmc_awq_opts *o, lmc_error *err)
{
    if (lmc_quant_opts_check(o->bits, o->group, err))
        return -1;
    if (o->grid < 1 || o->grid > 1000)
        return lmc_fail(err, "--grid %d: must be between 1 and 1000", o->grid);
    if (o->search_tokens < 1)
        return lmc_fail(err, "--search-tokens %lld: must be positive",
                        (long long)o->search_tokens);
    if (o->clip_grid < 1 || o->max_shrink < 0 || o->max_shrink >= 1 || o->clip_tokens < 1)
        return lmc_fail(err, "clip search parameters out of range");
    return 0;
}

/* ---- AWQ's quantizer ---- */

static float fp16_scale(float s)
{
    float h = lmc_f16_to_f32(lmc_f32_to_f16(s));
    if (!(h >= 0x1p-24f)) /* the smallest fp16 subnormal: a zero scale cannot divide */
        h = 0x1p-24f;
    if (h > 65504.0f)
        h = 65504.0f;
    return h;
}

void lmc_awq_fit(int bits, int sym, const float *x, int64_t n, float *scale, uint8_t *zero)
{
    if (sym) {
        float m = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            float a = fabsf(x[i]);
            m = a > m ? a : m;
        }
        if (m < 1e-5f)
            m = 1e-5f;
        *scale = fp16_scale(m / (float)((1 << (bits - 1)) - 1));
        *zero = (uint8_t)(1 << (bits - 1));
        return;
    }
    int maxq = (1 << bits) - 1;
    float mx = x[0], mn = x[0];
    for (int64_t i = 1; i < n; i++) {
        mx = x[i] > mx ? x[i] : mx;
        mn = x[i] < mn ? x[i] : mn;
    }
    float d = mx - mn;
    if (d < 1e-5f)
        d = 1e-5f;
    float s = fp16_scale(d / (float)maxq);
    float z = -rintf(mn / s);
    z = z < 0.0f ? 0.0f : z;
    z = z > (float)maxq ? (float)maxq : z;
    *scale = s;
    *zero = (uint8_t)z;
}

/* Quantize-dequantize one group (codes optional). */
static void quant_group(int bits, int sym, const float *x, int64_t n, float *out, uint8_t *codes,
                        float *scale_out, uint8_t *zero_out)
{
    float s;
    uint8_t z;
    lmc_awq_fit(bits, sym, x, n, &s, &z);
    int maxq = (1 << bits) - 1;
    for (int64_t i = 0; i < n; i++) {
        int c = lmc_quant_code(x[i], s, z, maxq);
        if (codes)
            codes[i] = (uint8_t)c;
        if (out)
            out[i] = lmc_qgroup_dequant(s, c, z);
    }
    if (scale_out)
        *scale_out = s;
    if (zero_out)
        *zero_out = z;
}

void lmc_awq_quantize(const float *W, int64_t rows, int64_t cols, int bits, int group, int sym,
                      float *wq, lmc_qresult *q)
{
    int64_t g = group > 0 ? group : cols, ng = (cols + g - 1) / g;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < ng; k++) {
            int64_t c0 = k * g, n = c0 + g < cols ? g : cols - c0;
            size_t off = (size_t)r * (size_t)cols + (size_t)c0;
            quant_group(bits, sym, W + off, n, wq ? wq + off : NULL, q ? q->codes + off : NULL,
                        q ? &q->scales[r * ng + k] : NULL, q ? &q->zeros[r * ng + k] : NULL);
        }
}

/* ---- small helpers ---- */

/* y[n][rows] = x[n][cols] . W^T (+ b) */
static void gemm_bias(const float *x, int64_t n, const float *W, const float *b, int64_t rows,
                      int64_t cols, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.0f, x,
                (int)cols, W, (int)cols, 0.0f, y, (int)rows);
    if (b)
        for (int64_t t = 0; t < n; t++)
            for (int64_t r = 0; r < rows; r++)
                y[t * rows + r] += b[r];
}

static double sq_diff(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s;
}

/* s = max(xmean^ratio, 1e-4) / sqrt(max s * min s); pow(0, 0) = 1, as torch */
static void ratio_scales(const double *xmean, int64_t dim, double ratio, float *s)
{
    double mx = 0, mn = INFINITY;
    for (int64_t j = 0; j < dim; j++) {
        double v = fmax(pow(xmean[j], ratio), 1e-4);
        mx = v > mx ? v : mx;
        mn = v < mn ? v : mn;
    }
    double norm = sqrt(mx * mn);
    for (int64_t j = 0; j < dim; j++)
        s[j] = (float)(fmax(pow(xmean[j], ratio), 1e-4) / norm);
}

/* W' = Q(W diag(s)) diag(s)^-1 into out */
static void scaled_quant(const float *W, int64_t rows, int64_t cols, const float *s,
                         const lmc_awq_opts *o, float *out)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = W[r * cols + c] * s[c];
    lmc_awq_quantize(out, rows, cols, o->bits, o->group, o->sym, out, NULL);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] /= s[c];
}

/* ---- the block's weights and captured inputs ---- */

enum { R_Q, R_K, R_V, R_O, R_GATE, R_UP, R_DOWN, R_N };
static const char *const role_name[R_N] = {"q", "k", "v", "o", "gate", "up", "down"};

static int role_index(const char *r)
{
    for (int i = 0; i < R_N; i++)
        if (!strcmp(r, role_name[i]))
            return i;
    return -1;
}

static const lmc_site role_site[R_N] = {LMC_SITE_ATTN_IN, LMC_SITE_ATTN_IN, LMC_SITE_ATTN_IN,
                                        LMC_SITE_ATTN_OUT, LMC_SITE_FFN_IN, LMC_SITE_FFN_IN,
                                        LMC_SITE_FFN_MID};

enum { MOD_LINEAR, MOD_ATTN, MOD_MLP };

typedef struct awq_blk {
    const lmc_config *cfg;
    int layer;
    float *w[R_N], *b[R_N];
    int64_t rows[R_N], cols[R_N];
    int has[R_N];
    /* captured inputs of each site, [N][dim], N = nwin * S */
    float *x[LMC_SITE_COUNT];
    int64_t dim[LMC_SITE_COUNT];
    int nwin, S;
    int64_t N;
    lmc_scratch *scratch;
    const float *rope_cs, *rope_sn;
    /* per-window work buffers */
    float *q, *k, *v, *ctx, *f1, *f2, *out;
    /* the searches on the GPU (compress/cuda/awq_cuda.h): then no host
     * inputs or work buffers */
    struct lmc_cuda_awq *dev;
} awq_blk;

static void blk_free(awq_blk *b)
{
#ifdef LMC_HAVE_CUDA
    lmc_cuda_awq_free(b->dev);
#endif
    for (int i = 0; i < R_N; i++) {
        free(b->w[i]);
        free(b->b[i]);
    }
    for (int s = 0; s < LMC_SITE_COUNT; s++)
        free(b->x[s]);
    free(b->q);
    free(b->k);
    free(b->v);
    free(b->ctx);
    free(b->f1);
    free(b->f2);
    free(b->out);
    memset(b, 0, sizeof *b);
}

typedef struct capture {
    awq_blk *b;
    int win;
} capture;

static void capture_obs(void *c, int layer, lmc_site site, const float *x, int64_t ntok,
                        int64_t dim)
{
    (void)layer;
    capture *cp = c;
    awq_blk *b = cp->b;
    if (dim != b->dim[site] || ntok != b->S || !b->x[site])
        return;
    memcpy(b->x[site] + (size_t)cp->win * (size_t)b->S * (size_t)dim, x,
           (size_t)ntok * (size_t)dim * sizeof(float));
}

/* The block's fp32 weights and biases. */
static int blk_weights(awq_blk *b, lmc_pass_ctx *ctx, lmc_error *err)
{
    const lmc_config *c = &ctx->model->cfg;
    b->cfg = c;
    b->layer = ctx->layer;
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(c, lin);
    for (int i = 0; i < nl; i++) {
        int r = role_index(lin[i].role);
        if (r < 0)
            return lmc_fail(err, "unknown linear role %s", lin[i].role);
        if (lmc_pass_load_linear(ctx, lin[i].role, &b->w[r], &b->rows[r], &b->cols[r], err))
            return -1;
        b->has[r] = 1;
        lmc_tensor *t = lmc_model_block_tensor(ctx->model, ctx->layer, lin[i].role, "bias");
        if (t && lmc_tensor_to_f32(t, &b->b[r], err))
            return -1;
    }
    b->dim[LMC_SITE_ATTN_IN] = c->hidden;
    b->dim[LMC_SITE_ATTN_OUT] = (int64_t)c->n_heads * c->head_dim;
    b->dim[LMC_SITE_FFN_IN] = c->hidden;
    b->dim[LMC_SITE_FFN_MID] = c->ffn;
    return 0;
}

/* Then, on the CPU, run the block on the first nwin calibration windows
 * capturing the input of every site. */
static int blk_capture(awq_blk *b, lmc_pass_ctx *ctx, int nwin, lmc_error *err)
{
    const lmc_config *c = &ctx->model->cfg;
    b->nwin = nwin;
    b->S = ctx->seqlen;
    b->N = (int64_t)nwin * ctx->seqlen;
    b->scratch = ctx->scratch;
    if (!ctx->x_in || !ctx->w)
        return lmc_fail(err, "no block inputs on the host for the search");
    size_t S = (size_t)b->S, H = (size_t)c->hidden, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim, F = (size_t)c->ffn;
    for (int s = 0; s < LMC_SITE_COUNT; s++)
        if (!(b->x[s] = malloc((size_t)b->N * (size_t)b->dim[s] * sizeof(float))))
            return lmc_fail(err, "out of memory capturing %lld calibration tokens",
                            (long long)b->N);
    size_t omax = H > F ? H : F;
    b->q = malloc(S * qd * sizeof(float));
    b->k = malloc(S * kvd * sizeof(float));
    b->v = malloc(S * kvd * sizeof(float));
    b->ctx = malloc(S * qd * sizeof(float));
    b->f1 = malloc(S * F * sizeof(float));
    b->f2 = malloc(S * F * sizeof(float));
    b->out = malloc(S * omax * sizeof(float));
    float *tmp = malloc(S * H * sizeof(float));
    if (!b->q || !b->k || !b->v || !b->ctx || !b->f1 || !b->f2 || !b->out || !tmp) {
        free(tmp);
        return lmc_fail(err, "out of memory");
    }
    capture cp = {b, 0};
    for (int w = 0; w < nwin; w++) {
        cp.win = w;
        memcpy(tmp, ctx->x_in + (size_t)w * S * H, S * H * sizeof(float));
        if (lmc_forward_block(ctx->w, ctx->layer, ctx->bw, tmp, b->S, ctx->scratch, capture_obs,
                              &cp, err)) {
            free(tmp);
            return -1;
        }
    }
    free(tmp);
    return 0;
}

/* Or the searches on the GPU, on the inputs the backend captured. */
static int blk_device(awq_blk *b, lmc_pass_ctx *ctx, int nwin, lmc_error *err)
{
#ifdef LMC_HAVE_CUDA
    _Static_assert((int)LMC_AWQ_Q == (int)R_Q && (int)LMC_AWQ_DOWN == (int)R_DOWN &&
                       (int)LMC_AWQ_ROLES == (int)R_N,
                   "awq_cuda.h's roles are awq.c's");
    _Static_assert((int)LMC_AWQ_MOD_ATTN == (int)MOD_ATTN && (int)LMC_AWQ_MOD_MLP == (int)MOD_MLP,
                   "awq_cuda.h's modules are awq.c's");
    lmc_cuda_awq_lin lin[R_N];
    memset(lin, 0, sizeof lin);
    for (int r = 0; r < R_N; r++)
        if (b->has[r])
            lin[r] = (lmc_cuda_awq_lin){b->w[r], b->b[r], b->rows[r], b->cols[r]};
    b->nwin = nwin;
    b->S = ctx->seqlen;
    b->N = (int64_t)nwin * ctx->seqlen;
    if (lmc_cuda_awq_open(ctx->backend, ctx->seqlen, lin, &b->dev, err))
        return -1;
    return 0;
#else
    (void)b, (void)ctx, (void)nwin;
    return lmc_fail(err, "the searches on a device this build has no kernels for");
#endif
}

static int on_device(const lmc_pass_ctx *ctx)
{
    return ctx->backend && lmc_backend_device(ctx->backend) != LMC_DEVICE_CPU;
}

/* Runs module `mod` (single linear `role` for MOD_LINEAR) on window w with
 * the weights W[role] (NULL entries: the block's), output into b->out
 * [S][out_dim]. */
static void run_window(awq_blk *b, int mod, int role, float *const *W, int w)
{
    const lmc_config *c = b->cfg;
    size_t S = (size_t)b->S;
#define WT(r) (W && W[r] ? W[r] : b->w[r])
    if (mod == MOD_LINEAR) {
        lmc_site st = role_site[role];
        const float *x = b->x[st] + (size_t)w * S * (size_t)b->dim[st];
        gemm_bias(x, b->S, WT(role), b->b[role], b->rows[role], b->cols[role], b->out);
    } else if (mod == MOD_ATTN) {
        const float *x = b->x[LMC_SITE_ATTN_IN] + (size_t)w * S * (size_t)c->hidden;
        gemm_bias(x, b->S, WT(R_Q), b->b[R_Q], b->rows[R_Q], b->cols[R_Q], b->q);
        gemm_bias(x, b->S, WT(R_K), b->b[R_K], b->rows[R_K], b->cols[R_K], b->k);
        gemm_bias(x, b->S, WT(R_V), b->b[R_V], b->rows[R_V], b->cols[R_V], b->v);
        if (c->rope_type != LMC_ROPE_NONE) {
            lmc_op_rope_apply(b->q, b->S, c->n_heads, c->head_dim, b->rope_cs, b->rope_sn);
            lmc_op_rope_apply(b->k, b->S, c->n_kv_heads, c->head_dim, b->rope_cs, b->rope_sn);
        }
        lmc_op_attention(c, b->scratch, b->q, b->k, b->v, b->ctx, b->S);
        gemm_bias(b->ctx, b->S, WT(R_O), b->b[R_O], b->rows[R_O], b->cols[R_O], b->out);
    } else {
        const float *x = b->x[LMC_SITE_FFN_IN] + (size_t)w * S * (size_t)c->hidden;
        size_t F = (size_t)c->ffn;
        gemm_bias(x, b->S, WT(R_UP), b->b[R_UP], b->rows[R_UP], b->cols[R_UP], b->f2);
        if (b->has[R_GATE]) {
            gemm_bias(x, b->S, WT(R_GATE), b->b[R_GATE], b->rows[R_GATE], b->cols[R_GATE], b->f1);
            lmc_op_act(b->f1, S * F, c->act);
            for (size_t i = 0; i < S * F; i++)
                b->f1[i] *= b->f2[i];
        } else {
            memcpy(b->f1, b->f2, S * F * sizeof(float));
            lmc_op_act(b->f1, S * F, c->act);
        }
        gemm_bias(b->f1, b->S, WT(R_DOWN), b->b[R_DOWN], b->rows[R_DOWN], b->cols[R_DOWN],
                  b->out);
    }
#undef WT
}

static int64_t module_out_dim(const awq_blk *b, int mod, int role)
{
    return mod == MOD_LINEAR ? b->rows[role] : b->cfg->hidden;
}

/* The module's output on all captured tokens, [N][out_dim] (caller frees). */
static float *module_output(awq_blk *b, int mod, int role)
{
    int64_t od = module_out_dim(b, mod, role);
    size_t per = (size_t)b->S * (size_t)od;
    float *o = malloc((size_t)b->nwin * per * sizeof(float));
    if (!o)
        return NULL;
    for (int w = 0; w < b->nwin; w++) {
        run_window(b, mod, role, NULL, w);
        memcpy(o + (size_t)w * per, b->out, per * sizeof(float));
    }
    return o;
}

static double module_mse(awq_blk *b, int mod, int role, float *const *W, const float *org)
{
    int64_t od = module_out_dim(b, mod, role);
    size_t per = (size_t)b->S * (size_t)od;
    double s = 0;
    for (int w = 0; w < b->nwin; w++) {
        run_window(b, mod, role, W, w);
        s += sq_diff(b->out, org + (size_t)w * per, per);
    }
    return s / ((double)b->nwin * (double)per);
}

/* ---- scale search ---- */

typedef struct group_result {
    double ratio, loss, loss0;
    float *s; /* [dim], NULL when the group was not searched */
} group_result;

/* The loss of scales s for group g (consumers cons) on module mod. */
static int group_loss(awq_blk *b, const lmc_fold_group *g, const int *cons, int mod, int role,
                      const float *s, float *const *cand, const float *org,
                      const lmc_awq_opts *o, double *loss, lmc_error *err)
{
    int64_t dim = b->dim[g->site];
    if (b->dev) {
#ifdef LMC_HAVE_CUDA
        return lmc_cuda_awq_loss(b->dev, mod, role, g->ncons, cons, s, dim, o->bits, o->group,
                                 o->sym, loss, err);
#endif
    }
    (void)err, (void)dim;
    for (int k = 0; k < g->ncons; k++)
        scaled_quant(b->w[cons[k]], b->rows[cons[k]], b->cols[cons[k]], s, o, cand[cons[k]]);
    *loss = module_mse(b, mod, role, cand, org);
    return 0;
}

static int search_group(awq_blk *b, const lmc_fold_group *g, int mod, const double *xmean,
                        const lmc_awq_opts *o, group_result *res, lmc_error *err)
{
    int64_t dim = b->dim[g->site];
    int cons[3];
    float *cand[R_N] = {0};
    float *s = malloc((size_t)dim * sizeof *s), *best = malloc((size_t)dim * sizeof *best);
    float *org = NULL;
    int role = -1, rc = -1;
    if (!s || !best)
        goto oom;
    for (int k = 0; k < g->ncons; k++) {
        cons[k] = role_index(g->cons[k]);
        if (cons[k] < 0 || !b->has[cons[k]]) {
            lmc_fail(err, "blk.%d.%s.weight: missing", b->layer, g->cons[k]);
            goto out;
        }
        if (b->dev)
            continue;
        cand[cons[k]] = malloc((size_t)b->rows[cons[k]] * (size_t)b->cols[cons[k]] *
                               sizeof(float));
        if (!cand[cons[k]])
            goto oom;
    }
    if (mod == MOD_LINEAR)
        role = cons[0];
    if (b->dev) {
#ifdef LMC_HAVE_CUDA
        double unused;
        if (lmc_cuda_awq_loss(b->dev, mod, role, 0, NULL, NULL, dim, o->bits, o->group, o->sym,
                              &unused, err))
            goto out;
#endif
    } else if (!(org = module_output(b, mod, role))) {
        goto oom;
    }
    res->loss = INFINITY;
    res->ratio = -1;
    for (int i = 0; i < o->grid; i++) {
        double ratio = (double)i / o->grid, loss;
        ratio_scales(xmean, dim, ratio, s);
        if (group_loss(b, g, cons, mod, role, s, cand, org, o, &loss, err))
            goto out;
        if (i == 0)
            res->loss0 = loss;
        if (loss < res->loss) { /* strict: the first of equal losses, as the reference */
            res->loss = loss;
            res->ratio = ratio;
            memcpy(best, s, (size_t)dim * sizeof *s);
        }
    }
    if (res->ratio < 0) {
        lmc_fail(err, "blk.%d: scale search for %s found no finite loss (NaN activations?)",
                 b->layer, g->prev);
        goto out;
    }
    res->s = best;
    best = NULL;
    rc = 0;
    goto out;
oom:
    lmc_fail(err, "out of memory in the scale search");
out:
    for (int i = 0; i < R_N; i++)
        free(cand[i]);
    free(org);
    free(s);
    free(best);
    return rc;
}

int lmc_awq_search_linear(const float *W, const float *bias, int64_t rows, int64_t cols,
                          const float *X, int64_t n, const lmc_awq_opts *o, float *s,
                          double *ratio, double *loss, lmc_error *err)
{
    double *xm = calloc((size_t)cols, sizeof *xm);
    float *org = malloc((size_t)n * (size_t)rows * sizeof *org);
    float *out = malloc((size_t)n * (size_t)rows * sizeof *out);
    float *cand = malloc((size_t)rows * (size_t)cols * sizeof *cand);
    float *t = malloc((size_t)cols * sizeof *t);
    int rc = -1;
    if (!xm || !org || !out || !cand || !t) {
        lmc_fail(err, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < cols; c++)
            xm[c] += fabs((double)X[i * cols + c]);
    for (int64_t c = 0; c < cols; c++)
        xm[c] /= (double)n;
    gemm_bias(X, n, W, bias, rows, cols, org);
    double bl = INFINITY;
    *ratio = -1;
    for (int i = 0; i < o->grid; i++) {
        double r = (double)i / o->grid;
        ratio_scales(xm, cols, r, t);
        scaled_quant(W, rows, cols, t, o, cand);
        gemm_bias(X, n, cand, bias, rows, cols, out);
        double l = sq_diff(out, org, (size_t)n * (size_t)rows) / ((double)n * rows);
        if (loss)
            loss[i] = l;
        if (l < bl) {
            bl = l;
            *ratio = r;
            memcpy(s, t, (size_t)cols * sizeof *s);
        }
    }
    rc = *ratio < 0 ? lmc_fail(err, "no finite loss") : 0;
out:
    free(xm);
    free(org);
    free(out);
    free(cand);
    free(t);
    return rc;
}

/* ---- clip search ---- */

/* err[i] for one (row, group): e_t = sum_c XT[c][t] (q_c - w_c), mean_t e_t^2. */
AWQ_O3 static double group_err(const float *XT, int64_t T, const float *w, const float *q,
                               int64_t n, float *e)
{
    for (int64_t t = 0; t < T; t++)
        e[t] = 0.0f;
    for (int64_t c = 0; c < n; c++) {
        float d = q[c] - w[c];
        const float *xc = XT + c * T;
        for (int64_t t = 0; t < T; t++)
            e[t] += xc[t] * d;
    }
    double s = 0;
    for (int64_t t = 0; t < T; t++)
        s += (double)e[t] * e[t];
    return s / (double)T;
}

int lmc_awq_clip_linear(float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                        const lmc_awq_opts *o, double *gain, lmc_error *err)
{
    int64_t step = n / o->clip_tokens;
    if (step < 1)
        step = 1;
    int64_t T = (n + step - 1) / step; /* tokens 0, step, 2 step, ... (x[0::step]) */
    float *XT = malloc((size_t)T * (size_t)cols * sizeof *XT);
    if (!XT)
        return lmc_fail(err, "out of memory in the clip search");
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < cols; c++)
            XT[c * T + t] = X[(t * step) * cols + c];
    int64_t g = o->group > 0 ? o->group : cols, ng = (cols + g - 1) / g;
    int nshrink = (int)(o->max_shrink * o->clip_grid);
    double before = 0, after = 0;
    int fail = 0;
#pragma omp parallel reduction(+ : before, after)
    {
        float *cur = malloc((size_t)g * sizeof *cur), *qw = malloc((size_t)g * sizeof *qw);
        float *e = malloc((size_t)T * sizeof *e);
        if (!cur || !qw || !e) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t r = 0; r < rows; r++) {
            if (!cur || !qw || !e)
                continue;
            for (int64_t k = 0; k < ng; k++) {
                int64_t c0 = k * g, m = c0 + g < cols ? g : cols - c0;
                float *w = W + r * cols + c0;
                float amax = 0.0f;
                for (int64_t c = 0; c < m; c++)
                    amax = fabsf(w[c]) > amax ? fabsf(w[c]) : amax;
                double best = DBL_MAX, first = 0;
                float best_mv = amax;
                for (int i = 0; i < nshrink; i++) {
                    float mv = amax * (1.0f - (float)i / (float)o->clip_grid);
                    for (int64_t c = 0; c < m; c++)
                        cur[c] = w[c] > mv ? mv : (w[c] < -mv ? -mv : w[c]);
                    quant_group(o->bits, o->sym, cur, m, qw, NULL, NULL, NULL);
                    double er = group_err(XT + c0 * T, T, w, qw, m, e);
                    if (i == 0)
                        first = er;
                    if (er < best) {
                        best = er;
                        best_mv = mv;
                    }
                }
                before += first;
                after += best < DBL_MAX ? best : first;
                for (int64_t c = 0; c < m; c++)
                    w[c] = w[c] > best_mv ? best_mv : (w[c] < -best_mv ? -best_mv : w[c]);
            }
        }
        free(cur);
        free(qw);
        free(e);
    }
    free(XT);
    if (fail)
        return lmc_fail(err, "out of memory in the clip search");
    if (gain)
        *gain = before > 0 ? after / before : 1.0;
    return 0;
}

/* ---- the pass ---- */

/* Which module llm-awq inspects for a group (see awq.h). */
static int group_module(const lmc_config *c, const lmc_fold_group *g)
{
    if (!strcmp(g->prev, "attn_norm"))
        return MOD_ATTN;
    /* llm-awq inspects the whole MLP behind ffn_norm, except OPT's fc1, which
     * it inspects alone: among lmc's architectures, the ungated ReLU FFN */
    if (!strcmp(g->prev, "ffn_norm") && (c->gated_ffn || c->act != LMC_ACT_RELU))
        return MOD_MLP;
    return MOD_LINEAR;
}

static int store_block(lmc_pass_ctx *ctx, awq_blk *b, const lmc_fold_group *g, int ng,
                       const group_result *gr, const lmc_awq_opts *o, lmc_enc_id dense_enc,
                       cJSON **rep, lmc_error *err)
{
    char name[64];
    /* producers: norms (weight, bias) and linears' biases were changed in the
     * fp32 copies; store them as f32 (tiny) */
    for (int i = 0; i < ng; i++) {
        if (!gr[i].s)
            continue;
        if (lmc_fold_prev_is_norm(g[i].prev)) {
            const char *kinds[2] = {"weight", "bias"};
            for (int k = 0; k < 2; k++) {
                lmc_tensor *t = lmc_model_block_tensor(ctx->model, ctx->layer, g[i].prev, kinds[k]);
                if (!t)
                    continue;
                float *v = NULL;
                if (lmc_tensor_to_f32(t, &v, err))
                    return -1;
                int64_t n = t->shape[0];
                if (n != b->dim[g[i].site]) {
                    free(v);
                    return lmc_fail(err, "%s: %lld values, the scales have %lld", t->name,
                                    (long long)n, (long long)b->dim[g[i].site]);
                }
                lmc_unscale_vec(v, n, gr[i].s);
                snprintf(name, sizeof name, "blk.%d.%s.%s", ctx->layer, g[i].prev, kinds[k]);
                int rc = lmc_store_dense(ctx->model, name, n, 1, v, LMC_ENC_F32, err);
                free(v);
                if (rc)
                    return -1;
            }
        } else {
            int r = role_index(g[i].prev);
            if (b->b[r]) {
                snprintf(name, sizeof name, "blk.%d.%s.bias", ctx->layer, g[i].prev);
                if (lmc_store_dense(ctx->model, name, b->rows[r], 1, b->b[r], LMC_ENC_F32, err))
                    return -1;
            }
        }
    }
    for (int r = 0; r < R_N; r++) {
        if (!b->has[r])
            continue;
        snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, role_name[r]);
        if (dense_enc != LMC_ENC_QGROUP) {
            if (lmc_store_dense(ctx->model, name, b->rows[r], b->cols[r], b->w[r], dense_enc,
                                err))
                return -1;
        } else {
            lmc_qresult q;
            memset(&q, 0, sizeof q);
            if (lmc_qresult_alloc(&q, b->rows[r], b->cols[r], o->bits, o->group, o->sym, err))
                return -1;
            lmc_awq_quantize(b->w[r], b->rows[r], b->cols[r], o->bits, o->group, o->sym, NULL,
                             &q);
            int rc = lmc_store_quantized(ctx->model, ctx->layer, role_name[r], &q, NULL, err);
            lmc_qresult_free(&q);
            if (rc)
                return -1;
        }
        if (rep[r])
            cJSON_AddItemToArray(ctx->report, rep[r]);
        rep[r] = NULL;
    }
    return 0;
}

/* lmc_awq_clip_linear on the GPU: the inputs are divided there by the
 * scales of the group that read them (as the CPU path divides its copies). */
static int clip_device(awq_blk *b, int r, const lmc_fold_group *g, int ng,
                       const group_result *gr, const lmc_awq_opts *o, double *gain,
                       lmc_error *err)
{
#ifdef LMC_HAVE_CUDA
    const float *s = NULL;
    for (int i = 0; i < ng; i++)
        if (g[i].site == role_site[r] && gr[i].s)
            s = gr[i].s;
    int64_t rows = b->rows[r], cols = b->cols[r];
    int64_t gs = o->group > 0 ? o->group : cols, ngr = (cols + gs - 1) / gs;
    int *shrink = malloc((size_t)rows * (size_t)ngr * sizeof *shrink);
    if (!shrink)
        return lmc_fail(err, "out of memory in the clip search");
    if (lmc_cuda_awq_clip(b->dev, r, s, b->w[r], o->bits, o->group, o->sym, o->clip_grid,
                          o->max_shrink, o->clip_tokens, shrink, gain, err)) {
        free(shrink);
        return -1;
    }
    /* the chosen clamp, computed as the CPU search computes it */
    float *W = b->w[r];
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < rows; row++)
        for (int64_t k = 0; k < ngr; k++) {
            int64_t c0 = k * gs, m = c0 + gs < cols ? gs : cols - c0;
            float *w = W + row * cols + c0, amax = 0.0f;
            for (int64_t c = 0; c < m; c++)
                amax = fabsf(w[c]) > amax ? fabsf(w[c]) : amax;
            int i = shrink[row * ngr + k];
            float mv = i < 0 ? amax : amax * (1.0f - (float)i / (float)o->clip_grid);
            for (int64_t c = 0; c < m; c++)
                w[c] = w[c] > mv ? mv : (w[c] < -mv ? -mv : w[c]);
        }
    free(shrink);
    return 0;
#else
    (void)b, (void)r, (void)g, (void)ng, (void)gr, (void)o, (void)gain;
    return lmc_fail(err, "the searches on a device this build has no kernels for");
#endif
}

static int awq_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    const lmc_awq_opts *o = p->opts;
    const lmc_config *c = &ctx->model->cfg;
    double t0 = lmc_now();
    awq_blk b;
    memset(&b, 0, sizeof b);
    lmc_fold_group g[4];
    int ng = o->scale ? lmc_fold_groups(c, 0, g) : 0;
    group_result gr[4];
    memset(gr, 0, sizeof gr);
    cJSON *rep[R_N] = {0};
    float *cs = NULL, *sn = NULL;
    int rc = -1;
    int nwin = 0; /* plain rounding (no search): nothing to capture */
    if ((o->scale || o->clip) && ctx->seqlen > 0 && ctx->nwin > 0) {
        /* the windows a GPU backend captured (device_capture_tokens) */
        nwin = lmc_pass_capture_windows(o->search_tokens, ctx->nwin, ctx->seqlen);
    } else if (o->scale || o->clip) {
        lmc_fail(err, "the scale and clip searches need calibration windows");
        goto out;
    }
    if (blk_weights(&b, ctx, err))
        goto out;
    if (nwin > 0 && (on_device(ctx) ? blk_device(&b, ctx, nwin, err)
                                    : blk_capture(&b, ctx, nwin, err)))
        goto out;
    if (c->rope_type != LMC_ROPE_NONE && nwin > 0 && !b.dev) {
        if (lmc_op_rope_tables(c, ctx->seqlen, &cs, &sn)) {
            lmc_fail(err, "out of memory");
            goto out;
        }
        b.rope_cs = cs;
        b.rope_sn = sn;
    }
    for (int r = 0; r < R_N; r++)
        if (b.has[r]) {
            rep[r] = cJSON_CreateObject();
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, role_name[r]);
            cJSON_AddStringToObject(rep[r], "tensor", name);
        }

    /* 1. every group searched on the original block */
    for (int i = 0; i < ng; i++) {
        const lmc_site_stats *st = &ctx->stats->site[g[i].site];
        if (!st->abs_sum || st->ntok == 0 || st->dim != b.dim[g[i].site]) {
            lmc_fail(err, "%s: no activation statistics", lmc_site_name(g[i].site));
            goto out;
        }
        double *xm = malloc((size_t)st->dim * sizeof *xm);
        if (!xm) {
            lmc_fail(err, "out of memory");
            goto out;
        }
        for (int64_t j = 0; j < st->dim; j++)
            xm[j] = st->abs_sum[j] / (double)st->ntok;
        int r = search_group(&b, &g[i], group_module(c, &g[i]), xm, o, &gr[i], err);
        free(xm);
        if (r)
            goto out;
        for (int k = 0; k < g[i].ncons; k++) {
            cJSON *o2 = rep[role_index(g[i].cons[k])];
            cJSON_AddStringToObject(o2, "scaled_by", g[i].prev);
            cJSON_AddNumberToObject(o2, "ratio", gr[i].ratio);
            cJSON_AddNumberToObject(o2, "scale_loss", gr[i].loss);
            cJSON_AddNumberToObject(o2, "scale_loss_ratio0", gr[i].loss0);
        }
    }
    /* then folded, and the captured inputs rescaled for the clip search */
    for (int i = 0; i < ng; i++) {
        const float *s = gr[i].s;
        if (!lmc_fold_prev_is_norm(g[i].prev)) {
            int pr = role_index(g[i].prev);
            lmc_unscale_rows(b.w[pr], b.b[pr], b.rows[pr], b.cols[pr], s);
        }
        for (int k = 0; k < g[i].ncons; k++) {
            int cr = role_index(g[i].cons[k]);
            lmc_scale_cols(b.w[cr], b.rows[cr], b.cols[cr], s);
        }
        int64_t d = b.dim[g[i].site];
        float *x = b.x[g[i].site];
        for (int64_t t = 0; x && t < b.N; t++)
            lmc_unscale_vec(x + t * d, d, s);
    }
    /* 2. clipping, all linears but q and k (the q.k product makes their
     * output error a poor proxy, as llm-awq notes) */
    if (o->clip)
        for (int r = 0; r < R_N; r++) {
            if (!b.has[r] || r == R_Q || r == R_K)
                continue;
            double gain = 1;
            if (b.dev ? clip_device(&b, r, g, ng, gr, o, &gain, err)
                      : lmc_awq_clip_linear(b.w[r], b.rows[r], b.cols[r], b.x[role_site[r]], b.N,
                                            o, &gain, err))
                goto out;
            cJSON_AddNumberToObject(rep[r], "clip_err_ratio", gain);
        }
    /* 3. store: rounded now (sequential), or kept fp32 until the end so that
     * the next block calibrates on unrounded outputs, as llm-awq does */
    lmc_enc_id enc = o->scale_only ? LMC_ENC_F16 : o->sequential ? LMC_ENC_QGROUP : LMC_ENC_F32;
    for (int r = 0; r < R_N; r++)
        if (rep[r])
            cJSON_AddNumberToObject(rep[r], "seconds", lmc_now() - t0);
    if (store_block(ctx, &b, g, ng, gr, o, enc, rep, err))
        goto out;
    rc = 0;
out:
    for (int r = 0; r < R_N; r++)
        cJSON_Delete(rep[r]);
    for (int i = 0; i < 4; i++)
        free(gr[i].s);
    free(cs);
    free(sn);
    blk_free(&b);
    return rc;
}

/* Round every block linear with AWQ's quantizer (the deferred step 3). */
static int awq_end(const lmc_pass *p, lmc_model *m, cJSON *summary, lmc_error *err)
{
    (void)summary;
    const lmc_awq_opts *o = p->opts;
    if (o->scale_only || o->sequential)
        return 0;
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(&m->cfg, lin);
    for (int layer = 0; layer < m->cfg.n_layers; layer++)
        for (int i = 0; i < nl; i++) {
            lmc_tensor *t = lmc_model_block_tensor(m, layer, lin[i].role, "weight");
            if (!t || t->ndim != 2)
                return lmc_fail(err, "blk.%d.%s.weight: missing or not a matrix", layer,
                                lin[i].role);
            float *w = NULL;
            if (lmc_tensor_to_f32(t, &w, err))
                return -1;
            lmc_qresult q;
            memset(&q, 0, sizeof q);
            int rc = lmc_qresult_alloc(&q, t->shape[0], t->shape[1], o->bits, o->group, o->sym,
                                       err);
            if (!rc) {
                lmc_awq_quantize(w, t->shape[0], t->shape[1], o->bits, o->group, o->sym, NULL,
                                 &q);
                rc = lmc_store_quantized(m, layer, lin[i].role, &q, NULL, err);
            }
            lmc_qresult_free(&q);
            free(w);
            if (rc)
                return -1;
        }
    return 0;
}

void lmc_awq_pass(lmc_pass *p, const lmc_awq_opts *o)
{
    memset(p, 0, sizeof *p);
    p->name = "awq";
    /* mean |x| for the scales; calibration also gives the block inputs the
     * searches run on */
    p->stats = (o->scale || o->clip) ? LMC_STAT_ABS_MEAN : 0;
    /* the searches run the block on the CPU, or on the GPU on the inputs the
     * backend keeps there */
    p->needs = LMC_PASS_BLOCK_W | LMC_PASS_INPUTS;
    p->device_skips = LMC_PASS_BLOCK_W | LMC_PASS_INPUTS;
    p->device_capture_tokens = (o->scale || o->clip) ? o->search_tokens : 0;
    p->opts = o;
    p->compress_block = awq_block;
    p->end = awq_end;
}
