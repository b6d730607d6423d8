/* Mask selection and the block loop shared by the magnitude and Wanda
 * passes (conventions in prune.h). */
#include "prune.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sparse.h"

/* ---- options ---- */

void lmc_prune_opts_default(lmc_prune_opts *o)
{
    memset(o, 0, sizeof *o);
    o->inner = LMC_ENC_F16;
}

int lmc_prune_parse_sparsity(const char *s, double *p, lmc_error *err)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v > 0 && v < 1))
        return lmc_fail(err, "--sparsity '%s': must be a number with 0 < P < 1", s);
    *p = v;
    return 0;
}

int lmc_prune_parse_nm(const char *s, int *n, int *m, lmc_error *err)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (end == s || *end != ':' || errno)
        return lmc_fail(err, "--nm '%s': expected N:M (e.g. 2:4)", s);
    const char *s2 = end + 1;
    long b = strtol(s2, &end, 10);
    if (end == s2 || *end || errno)
        return lmc_fail(err, "--nm '%s': expected N:M (e.g. 2:4)", s);
    if (b < 2 || b > LMC_NM_MAX_M)
        return lmc_fail(err, "--nm '%s': M must be in [2, %d]", s, LMC_NM_MAX_M);
    if (a < 1 || a >= b)
        return lmc_fail(err, "--nm '%s': N must satisfy 1 <= N < M", s);
    *n = (int)a;
    *m = (int)b;
    return 0;
}

int lmc_prune_parse_inner(const char *s, lmc_enc_id *inner, lmc_error *err)
{
    if (!strcmp(s, "f16"))
        *inner = LMC_ENC_F16;
    else if (!strcmp(s, "f32"))
        *inner = LMC_ENC_F32;
    else
        return lmc_fail(err, "--inner '%s': not supported (yet): f16 or f32", s);
    return 0;
}

int lmc_prune_opts_check(const lmc_prune_opts *o, lmc_error *err)
{
    if (o->m > 0 && o->sparsity != 0)
        return lmc_fail(err, "give either --sparsity or --nm, not both");
    if (o->m <= 0) {
        if (o->n != 0)
            return lmc_fail(err, "--nm %d:%d: M must be in [2, %d]", o->n, o->m, LMC_NM_MAX_M);
        if (o->sparsity == 0)
            return lmc_fail(err, "give --sparsity P (0 < P < 1) or --nm N:M");
        if (!(o->sparsity > 0 && o->sparsity < 1))
            return lmc_fail(err, "--sparsity %g: must be in (0, 1)", o->sparsity);
    } else {
        if (o->m < 2 || o->m > LMC_NM_MAX_M)
            return lmc_fail(err, "--nm %d:%d: M must be in [2, %d]", o->n, o->m, LMC_NM_MAX_M);
        if (o->n < 1 || o->n >= o->m)
            return lmc_fail(err, "--nm %d:%d: N must satisfy 1 <= N < M", o->n, o->m);
    }
    if (lmc_sparse_check_inner(o->inner, "--inner", err))
        return -1;
    return 0;
}

int lmc_prune_check_width(const lmc_prune_opts *o, const char *tensor, int64_t cols,
                          lmc_error *err)
{
    if (o->m > 0 && (cols <= 0 || cols % o->m))
        return lmc_fail(err, "--nm %d:%d: M = %d does not divide the input width %lld of %s",
                        o->n, o->m, o->m, (long long)cols, tensor);
    return 0;
}

void lmc_prune_opts_to_json(const lmc_prune_opts *o, cJSON *args)
{
    if (o->m > 0) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d:%d", o->n, o->m);
        cJSON_AddStringToObject(args, "nm", buf);
    } else {
        cJSON_AddNumberToObject(args, "sparsity", o->sparsity);
    }
    cJSON_AddStringToObject(args, "inner", o->inner == LMC_ENC_F32 ? "f32" : "f16");
}

/* ---- selection ---- */

/* Order-preserving map float -> uint32 (both zeros map to the same key). */
static uint32_t fkey(float f)
{
    uint32_t u;
    if (f == 0.0f)
        f = 0.0f;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

void lmc_prune_lowest(const float *score, int64_t n, int64_t k, uint8_t *keep)
{
    if (k <= 0) {
        memset(keep, 1, (size_t)n);
        return;
    }
    if (k >= n) {
        memset(keep, 0, (size_t)n);
        return;
    }
    /* Radix select of the k-th smallest key T, 8 bits at a time: need counts
     * how many of the elements matching the prefix so far are still to be
     * pruned. Deterministic O(n), no worst case, no copy. */
    uint32_t prefix = 0, pmask = 0;
    int64_t need = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        int64_t hist[256] = {0};
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = fkey(score[i]);
            if ((u & pmask) == prefix)
                hist[(u >> shift) & 255]++;
        }
        int b = 0;
        int64_t cum = 0;
        while (cum + hist[b] < need)
            cum += hist[b++];
        need -= cum;
        prefix |= (uint32_t)b << shift;
        pmask |= 255u << shift;
    }
    /* all keys below T are pruned, then the first `need` equal to T */
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = fkey(score[i]);
        if (u < prefix || (u == prefix && need > 0)) {
            keep[i] = 0;
            if (u == prefix)
                need--;
        } else {
            keep[i] = 1;
        }
    }
}

void lmc_prune_mask_matrix(const float *score, int64_t rows, int64_t cols, double p,
                           uint8_t *keep)
{
    int64_t n = rows * cols;
    lmc_prune_lowest(score, n, (int64_t)((double)n * p), keep);
}

void lmc_prune_mask_rows(const float *score, int64_t rows, int64_t cols, double p,
                         uint8_t *keep)
{
    int64_t k = (int64_t)((double)cols * p);
#pragma omp parallel for schedule(static) /* rows are independent */
    for (int64_t r = 0; r < rows; r++)
        lmc_prune_lowest(score + r * cols, cols, k, keep + r * cols);
}

void lmc_prune_mask_nm(const float *score, int64_t rows, int64_t cols, int n, int m,
                       uint8_t *keep)
{
    int prune = m - n;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += m) {
            const float *s = score + r * cols + c0;
            uint8_t *k = keep + r * cols + c0;
            /* rank by (score, index); m is small, so O(m^2) beats sorting */
            for (int j = 0; j < m; j++) {
                int rank = 0;
                for (int i = 0; i < m; i++)
                    rank += s[i] < s[j] || (s[i] == s[j] && i < j);
                k[j] = rank >= prune;
            }
        }
}

int lmc_magnitude_mask(const float *w, int64_t rows, int64_t cols, const lmc_prune_opts *o,
                       uint8_t *keep, lmc_error *err)
{
    if (lmc_prune_opts_check(o, err) || lmc_prune_check_width(o, "the matrix", cols, err))
        return -1;
    size_t total = (size_t)rows * (size_t)cols;
    float *s = malloc(total * sizeof *s);
    if (!s)
        return lmc_fail(err, "out of memory for %zu scores", total);
    for (size_t i = 0; i < total; i++)
        s[i] = fabsf(w[i]);
    if (o->m > 0)
        lmc_prune_mask_nm(s, rows, cols, o->n, o->m, keep);
    else
        lmc_prune_mask_matrix(s, rows, cols, o->sparsity, keep);
    free(s);
    return 0;
}

int lmc_wanda_mask(const float *w, int64_t rows, int64_t cols, const double *sq_sum,
                   int64_t ntok, const lmc_prune_opts *o, uint8_t *keep, lmc_error *err)
{
    if (lmc_prune_opts_check(o, err) || lmc_prune_check_width(o, "the matrix", cols, err))
        return -1;
    if (ntok <= 0)
        return lmc_fail(err, "wanda: no calibration tokens were seen");
    size_t total = (size_t)rows * (size_t)cols;
    float *s = malloc(total * sizeof *s);
    float *norm = malloc((size_t)cols * sizeof *norm);
    if (!s || !norm) {
        free(s);
        free(norm);
        return lmc_fail(err, "out of memory for %zu scores", total);
    }
    for (int64_t j = 0; j < cols; j++)
        norm[j] = (float)sqrt(sq_sum[j] / (double)ntok);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            s[r * cols + j] = fabsf(w[r * cols + j]) * norm[j];
    if (o->m > 0)
        lmc_prune_mask_nm(s, rows, cols, o->n, o->m, keep);
    else
        lmc_prune_mask_rows(s, rows, cols, o->sparsity, keep);
    free(s);
    free(norm);
    return 0;
}

int lmc_prune_encode(const char *name, const float *w, int64_t rows, int64_t cols,
                     const uint8_t *keep, const lmc_prune_opts *o, lmc_tensor *t,
                     lmc_error *err)
{
    memset(t, 0, sizeof *t);
    if (strlen(name) >= sizeof t->name)
        return lmc_fail(err, "%s: tensor name too long", name);
    uint8_t *blob = NULL;
    size_t nb = 0;
    lmc_encoding e;
    int rc = o->m > 0 ? lmc_nm_encode(w, keep, rows, cols, o->n, o->m, o->inner, &e, &blob, &nb,
                                      err)
                      : lmc_sparse_encode(w, keep, rows, cols, o->inner, &e, &blob, &nb, err);
    if (rc)
        return lmc_fail_prefix(err, name);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = 2;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->enc = e;
    t->data = blob;
    t->nbytes = nb;
    t->owned = blob;
    return 0;
}

/* ---- the block loop ---- */

/* Decode a weight through the encoding table (core only, so the passes run
 * and are testable without eval/), refusing non-finite values: a NaN would
 * make the ordering meaningless. */
static int load_weight(const lmc_tensor *t, float **out, int64_t *rows, int64_t *cols,
                       lmc_error *err)
{
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    if (t->ndim != 2)
        return lmc_fail(err, "%s: expected a matrix, got %d dimension(s)", t->name, t->ndim);
    if (!tr)
        return lmc_fail(err, "%s: unknown encoding id %d", t->name, (int)t->enc.id);
    int64_t r = t->shape[0], c = t->shape[1];
    size_t total = (size_t)r * (size_t)c;
    float *w = malloc(total * sizeof *w);
    if (!w)
        return lmc_fail(err, "%s: out of memory decoding [%lld, %lld]", t->name, (long long)r,
                        (long long)c);
    if (tr->validate(&t->enc, r, c, err) || tr->to_f32(&t->enc, t->data, r, c, w, err)) {
        free(w);
        return lmc_fail_prefix(err, t->name);
    }
    for (size_t i = 0; i < total; i++)
        if (!isfinite(w[i])) {
            free(w);
            return lmc_fail(err, "%s: non-finite weight at [%lld, %lld]", t->name,
                            (long long)(i / (size_t)c), (long long)(i % (size_t)c));
        }
    *out = w;
    *rows = r;
    *cols = c;
    return 0;
}

int lmc_prune_begin(const lmc_pass *p, lmc_model *m, lmc_error *err)
{
    const lmc_prune_opts *o = p->opts;
    if (lmc_prune_opts_check(o, err))
        return -1;
    lmc_linear_desc d[8];
    int nl = lmc_block_linears(&m->cfg, d);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < nl; i++) {
            lmc_tensor *t = lmc_model_block_tensor(m, l, d[i].role, "weight");
            if (!t)
                return lmc_fail(err, "blk.%d.%s.weight: missing", l, d[i].role);
            if (t->ndim != 2)
                return lmc_fail(err, "%s: expected a matrix", t->name);
            if (lmc_prune_check_width(o, t->name, t->shape[1], err))
                return -1;
        }
    return 0;
}

int lmc_prune_compress_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_prune_mask_fn mask,
                             lmc_error *err)
{
    const lmc_prune_opts *o = p->opts;
    lmc_linear_desc d[8];
    int nl = lmc_block_linears(&ctx->model->cfg, d);
    for (int i = 0; i < nl; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, d[i].role);
        lmc_tensor *t = lmc_model_find(ctx->model, name);
        if (!t)
            return lmc_fail(err, "%s: missing", name);
        float *w = NULL;
        int64_t rows = 0, cols = 0;
        if (load_weight(t, &w, &rows, &cols, err))
            return -1;
        size_t total = (size_t)rows * (size_t)cols;
        uint8_t *keep = malloc(total);
        lmc_tensor nt;
        int rc = -1;
        if (!keep) {
            lmc_fail(err, "%s: out of memory for the mask", name);
        } else if (lmc_prune_check_width(o, name, cols, err) == 0 &&
                   mask(ctx, &d[i], name, w, rows, cols, o, keep, err) == 0 &&
                   lmc_prune_encode(name, w, rows, cols, keep, o, &nt, err) == 0) {
            int64_t kept = 0;
            for (size_t k = 0; k < total; k++)
                kept += keep[k] != 0;
            if (ctx->report) {
                char desc[64];
                lmc_enc_describe(&nt.enc, desc, sizeof desc);
                cJSON *r = cJSON_CreateObject();
                cJSON_AddStringToObject(r, "tensor", name);
                cJSON *shape = cJSON_AddArrayToObject(r, "shape");
                cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)rows));
                cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)cols));
                cJSON_AddStringToObject(r, "encoding", desc);
                cJSON_AddNumberToObject(r, "kept", (double)kept);
                cJSON_AddNumberToObject(r, "sparsity", 1.0 - (double)kept / (double)total);
                cJSON_AddNumberToObject(r, "nbytes", (double)nt.nbytes);
                cJSON_AddNumberToObject(r, "f16_nbytes", 2.0 * (double)total);
                cJSON_AddItemToArray(ctx->report, r);
            }
            rc = lmc_model_set_tensor(ctx->model, &nt, err);
            if (rc)
                free(nt.owned);
        }
        free(keep);
        free(w);
        if (rc)
            return -1;
    }
    return 0;
}
