/* Low-rank factorization pass: plain SVD, ASVD, SVD-LLM whitening (see
 * svd.h). */
#define _POSIX_C_SOURCE 200809L
#include "svd.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/log.h"
#include "../core/lowrank.h"
#include "../eval/weights.h"
#ifdef LMC_HAVE_CUDA
#include "cuda/svd_cuda.h"
#else
typedef struct lmc_cuda_svd lmc_cuda_svd; /* never opened without CUDA */
#endif

void lmc_svd_opts_default(lmc_svd_opts *o)
{
    memset(o, 0, sizeof *o);
    o->method = LMC_SVD_PLAIN;
    o->alpha = 0.5;
    o->dtype = LMC_ENC_F16;
}

int lmc_svd_opts_check(const lmc_svd_opts *o, lmc_error *err)
{
    if ((o->keep > 0) == (o->rank > 0))
        return lmc_fail(err, "give --keep F or --rank R (exactly one)");
    if (o->keep != 0 && !(o->keep > 0 && o->keep < 1))
        return lmc_fail(err, "--keep %g: must be a fraction between 0 and 1 (exclusive)", o->keep);
    if (o->rank < 0)
        return lmc_fail(err, "--rank %d: must be a positive integer", o->rank);
    if (!(o->alpha >= 0 && o->alpha <= 4))
        return lmc_fail(err, "--alpha %g: must be between 0 and 4", o->alpha);
    if (o->method != LMC_SVD_PLAIN && o->method != LMC_SVD_ASVD && o->method != LMC_SVD_WHITEN)
        return lmc_fail(err, "unknown method id %d", (int)o->method);
    if (o->dtype != LMC_ENC_F16 && o->dtype != LMC_ENC_F32)
        return lmc_fail(err, "--dtype: factors are stored as f16 or f32");
    return 0;
}

int lmc_svd_parse_method(const char *s, lmc_svd_method *m, lmc_error *err)
{
    if (!strcmp(s, "plain"))
        *m = LMC_SVD_PLAIN;
    else if (!strcmp(s, "asvd"))
        *m = LMC_SVD_ASVD;
    else if (!strcmp(s, "whiten"))
        *m = LMC_SVD_WHITEN;
    else
        return lmc_fail(err, "--method '%s': expected plain, asvd or whiten", s);
    return 0;
}

const char *lmc_svd_method_name(lmc_svd_method m)
{
    switch (m) {
    case LMC_SVD_PLAIN: return "plain";
    case LMC_SVD_ASVD: return "asvd";
    case LMC_SVD_WHITEN: return "whiten";
    }
    return "?";
}

double lmc_svd_energy(const double *sv, int64_t k, int rank)
{
    double etot = 0, ekeep = 0;
    for (int64_t i = 0; i < k; i++) {
        etot += sv[i] * sv[i];
        if (i < rank)
            ekeep += sv[i] * sv[i];
    }
    return etot > 0 ? ekeep / etot : 1;
}

int lmc_svd_rank(const lmc_svd_opts *o, int64_t rows, int64_t cols)
{
    int64_t mn = rows < cols ? rows : cols, r;
    if (o->rank > 0) {
        r = o->rank < mn ? o->rank : mn;
    } else {
        /* computed in double and truncated; a product at an exact integer
         * must not lose one to rounding, hence the tiny nudge */
        double x = o->keep * (double)rows * (double)cols / (double)(rows + cols);
        r = (int64_t)floor(x * (1 + 1e-12));
        if (r < 1)
            r = 1;
        if (r > mn)
            r = mn;
    }
    if (r * (rows + cols) >= rows * cols)
        return 0;
    return (int)r;
}

void lmc_asvd_scales(const double *abs_sum, int64_t ntok, int64_t cols, double alpha, double *s)
{
    double mx = 0;
    for (int64_t j = 0; j < cols; j++) {
        double m = ntok > 0 ? abs_sum[j] / (double)ntok : 0;
        s[j] = m;
        if (m > mx)
            mx = m;
    }
    for (int64_t j = 0; j < cols; j++) {
        if (mx <= 0) {
            s[j] = 1;
            continue;
        }
        double m = s[j] > 1e-6 * mx ? s[j] : 1e-6 * mx;
        s[j] = pow(m, alpha);
    }
}

/* Lower Cholesky factor of xtx (row-major, upper part zeroed), damped by
 * eps * mean(diag) with eps = 1e-6, 1e-5, ... while not positive definite. */
static int whiten_chol(const double *xtx, int64_t n, double *L, double *damp, lmc_error *err)
{
    double md = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(xtx[i * n + i]))
            return lmc_fail(err, "whitening: calibration statistic x x^T is not finite");
        md += xtx[i * n + i];
    }
    md /= (double)n;
    if (!(md > 0))
        return lmc_fail(err, "whitening: the calibration inputs of this linear are all zero");
    double eps = 0;
    for (int tries = 0; tries < 10; tries++) {
        memcpy(L, xtx, (size_t)n * (size_t)n * sizeof *L);
        for (int64_t i = 0; i < n; i++)
            L[i * n + i] += eps * md;
        lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, L, (lapack_int)n);
        if (info == 0) {
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i + 1; j < n; j++)
                    L[i * n + j] = 0;
            *damp = eps;
            return 0;
        }
        if (info < 0)
            return lmc_fail(err, "whitening: dpotrf argument %d invalid", (int)-info);
        eps = eps > 0 ? eps * 10 : 1e-6;
    }
    return lmc_fail(err, "whitening: x x^T not positive definite even with damping %g x mean "
                    "diagonal", eps / 10);
}

int lmc_svd_factor(const float *w, int64_t rows, int64_t cols, int rank, lmc_svd_method m,
                   const double *s, const double *xtx, float *A, float *B, lmc_svd_info *info,
                   lmc_error *err)
{
    const int64_t k = rows < cols ? rows : cols;
    if (rank < 1 || rank > k)
        return lmc_fail(err, "rank %d outside [1, %lld]", rank, (long long)k);
    if ((m == LMC_SVD_ASVD && !s) || (m == LMC_SVD_WHITEN && !xtx))
        return lmc_fail(err, "%s needs calibration statistics", lmc_svd_method_name(m));
    memset(info, 0, sizeof *info);
    info->routine = "dgesdd";
    size_t nw = (size_t)rows * (size_t)cols;
    double *M = malloc(nw * sizeof *M);
    double *U = malloc((size_t)rows * (size_t)k * sizeof *U);
    double *VT = malloc((size_t)k * (size_t)cols * sizeof *VT);
    double *sv = malloc((size_t)k * sizeof *sv);
    double *L = m == LMC_SVD_WHITEN ? malloc((size_t)cols * (size_t)cols * sizeof *L) : NULL;
    int rc = -1;
    if (!M || !U || !VT || !sv || (m == LMC_SVD_WHITEN && !L)) {
        lmc_fail(err, "out of memory for the SVD of a [%lld, %lld] matrix", (long long)rows,
                 (long long)cols);
        goto out;
    }
    for (size_t i = 0; i < nw; i++)
        M[i] = w[i];
    if (m == LMC_SVD_ASVD) {
        for (int64_t j = 0; j < cols; j++)
            if (!(s[j] > 0) || !isfinite(s[j])) {
                lmc_fail(err, "asvd: channel scale %lld is %g (positive expected)", (long long)j,
                         s[j]);
                goto out;
            }
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++)
                M[r * cols + j] *= s[j];
    } else if (m == LMC_SVD_WHITEN) {
        if (whiten_chol(xtx, cols, L, &info->damp, err))
            goto out;
        cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit,
                    (int)rows, (int)cols, 1.0, L, (int)cols, M, (int)cols);
    }
    lapack_int li = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)rows, (lapack_int)cols, M,
                                   (lapack_int)cols, sv, U, (lapack_int)k, VT, (lapack_int)cols);
    if (li != 0) {
        /* dgesdd's divide and conquer can fail to converge where the
         * QR-iteration SVD still does; M was overwritten, so rebuild it */
        for (size_t i = 0; i < nw; i++)
            M[i] = w[i];
        if (m == LMC_SVD_ASVD)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++)
                    M[r * cols + j] *= s[j];
        else if (m == LMC_SVD_WHITEN)
            cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit,
                        (int)rows, (int)cols, 1.0, L, (int)cols, M, (int)cols);
        info->routine = "dgesvd";
        double *superb = malloc((size_t)k * sizeof *superb);
        li = superb ? LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', (lapack_int)rows,
                                     (lapack_int)cols, M, (lapack_int)cols, sv, U, (lapack_int)k,
                                     VT, (lapack_int)cols, superb)
                    : -1000;
        free(superb);
        if (li != 0) {
            lmc_fail(err, "SVD of a [%lld, %lld] matrix failed (LAPACK info %d)",
                     (long long)rows, (long long)cols, (int)li);
            goto out;
        }
    }
    info->energy = lmc_svd_energy(sv, k, rank);
    /* A = U_r sqrt(S_r) (into U's first columns), B = sqrt(S_r) V_r^T */
    for (int64_t i = 0; i < rank; i++) {
        double q = sqrt(sv[i]);
        for (int64_t r = 0; r < rows; r++)
            U[r * k + i] *= q;
        for (int64_t j = 0; j < cols; j++)
            VT[i * cols + j] *= q;
    }
    if (m == LMC_SVD_ASVD) {
        for (int64_t i = 0; i < rank; i++)
            for (int64_t j = 0; j < cols; j++)
                VT[i * cols + j] /= s[j];
    } else if (m == LMC_SVD_WHITEN) {
        /* B <- B L^-1: solve X L = B for the first rank rows */
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, rank,
                    (int)cols, 1.0, L, (int)cols, VT, (int)cols);
    }
    for (int64_t i = 0; i < rank; i++) {
        double d = 1;
        if (m != LMC_SVD_PLAIN) {
            double na = 0, nb = 0;
            for (int64_t r = 0; r < rows; r++)
                na += U[r * k + i] * U[r * k + i];
            for (int64_t j = 0; j < cols; j++)
                nb += VT[i * cols + j] * VT[i * cols + j];
            if (na > 0 && nb > 0)
                d = sqrt(sqrt(nb / na));
        }
        for (int64_t r = 0; r < rows; r++)
            A[r * rank + i] = (float)(U[r * k + i] * d);
        for (int64_t j = 0; j < cols; j++)
            B[i * cols + j] = (float)(VT[i * cols + j] / d);
    }
    for (size_t i = 0; i < (size_t)rows * (size_t)rank; i++)
        if (!isfinite(A[i])) {
            lmc_fail(err, "factorization produced a non-finite value");
            goto out;
        }
    for (size_t i = 0; i < (size_t)rank * (size_t)cols; i++)
        if (!isfinite(B[i])) {
            lmc_fail(err, "factorization produced a non-finite value");
            goto out;
        }
    rc = 0;
out:
    free(M), free(U), free(VT), free(sv), free(L);
    return rc;
}

/* ---- the pass ---- */

/* sqrt(tr(E H E^T) / tr(W H W^T)) with E = W - W2: the relative output error
 * over the calibration inputs. -1 when it cannot be computed. */
static double rel_output_error(const float *w, const float *w2, int64_t rows, int64_t cols,
                               const double *H)
{
    double *E = malloc((size_t)rows * (size_t)cols * sizeof *E);
    double *W = malloc((size_t)rows * (size_t)cols * sizeof *W);
    double *T = malloc((size_t)rows * (size_t)cols * sizeof *T);
    double res = -1;
    if (E && W && T) {
        for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) {
            W[i] = w[i];
            E[i] = (double)w[i] - (double)w2[i];
        }
        double num = 0, den = 0;
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)cols, 1.0, H,
                    (int)cols, E, (int)cols, 0.0, T, (int)cols);
        for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
            num += T[i] * E[i];
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)cols, 1.0, H,
                    (int)cols, W, (int)cols, 0.0, T, (int)cols);
        for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
            den += T[i] * W[i];
        if (den > 0 && num >= 0)
            res = sqrt(num / den);
    }
    free(E), free(W), free(T);
    return res;
}

static double rel_fro(const float *w, const float *w2, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)w[i] - (double)w2[i];
        num += d * d;
        den += (double)w[i] * (double)w[i];
    }
    return den > 0 ? sqrt(num / den) : 0;
}

/* Factor with LAPACK on the host, or on the GPU (dev). */
static int factor(lmc_cuda_svd *dev, const float *w, int64_t rows, int64_t cols, int r,
                  lmc_svd_method m, const double *s, const double *xtx, int site, float *A,
                  float *B, lmc_svd_info *info, lmc_error *err)
{
#ifdef LMC_HAVE_CUDA
    if (dev) {
        lmc_cuda_svd_info di;
        if (lmc_cuda_svd_factor(dev, w, rows, cols, r, (int)m, s, xtx, site, A, B, &di, err))
            return -1;
        info->energy = di.energy;
        info->damp = di.damp;
        info->routine = di.qr ? "cusolver gesvd" : "cusolver gesvdp";
        return 0;
    }
#else
    (void)dev, (void)site;
#endif
    return lmc_svd_factor(w, rows, cols, r, m, s, xtx, A, B, info, err);
}

/* The error of what is stored (fp16 factors included): relative Frobenius
 * and, whitening, over the calibration inputs (-1: not computed). On the
 * GPU from the factors it still holds, else from the decoded blob. */
static int stored_error(lmc_cuda_svd *dev, const lmc_tensor *t, const float *w, int64_t rows,
                        int64_t cols, int whiten, const double *xtx, int site, double *rel,
                        double *rel_out, lmc_error *err)
{
#ifdef LMC_HAVE_CUDA
    if (dev)
        return lmc_cuda_svd_stored_error(dev, t->enc.inner == LMC_ENC_F16, rows, cols,
                                         t->enc.rank, whiten, xtx, site, rel, rel_out, err);
#else
    (void)dev, (void)site;
#endif
    float *back = malloc((size_t)rows * (size_t)cols * sizeof *back);
    if (!back)
        return lmc_fail(err, "out of memory");
    if (lmc_enc_lowrank_traits.to_f32(&t->enc, t->data, rows, cols, back, err)) {
        free(back);
        return -1;
    }
    *rel = rel_fro(w, back, (size_t)rows * (size_t)cols);
    *rel_out = whiten ? rel_output_error(w, back, rows, cols, xtx) : -1;
    free(back);
    return 0;
}

static int svd_one(lmc_svd_run *run, lmc_pass_ctx *ctx, const lmc_linear_desc *d,
                   lmc_cuda_svd *dev, lmc_error *err)
{
    const lmc_svd_opts *o = &run->o;
    double t0 = lmc_now();
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", ctx->layer, d->role);
    float *w = NULL, *A = NULL, *B = NULL;
    double *s = NULL;
    uint8_t *blob = NULL;
    int64_t rows, cols;
    int rc = -1;
    if (lmc_pass_load_linear(ctx, d->role, &w, &rows, &cols, err))
        return -1;
    int r = lmc_svd_rank(o, rows, cols);
    run->params_before += rows * cols;
    cJSON *rep = cJSON_CreateObject();
    cJSON_AddStringToObject(rep, "tensor", name);
    cJSON_AddStringToObject(rep, "method", lmc_svd_method_name(o->method));
    if (r == 0) {
        /* the factors would not be smaller: keep the tensor as it is */
        run->params_after += rows * cols;
        run->n_dense++;
        cJSON_AddNumberToObject(rep, "rank", 0);
        cJSON_AddBoolToObject(rep, "dense", 1);
        cJSON_AddNumberToObject(rep, "kept_fraction", 1.0);
        cJSON_AddNumberToObject(rep, "seconds", lmc_now() - t0);
        cJSON_AddItemToArray(ctx->report, rep);
        free(w);
        return 0;
    }
    const lmc_site_stats *st = ctx->stats ? &ctx->stats->site[d->site] : NULL;
    /* whitening on the GPU reads the Hessian where the backend keeps it */
    int h_dev = dev && ctx->stats && (ctx->stats->device_only & LMC_STAT_HESSIAN);
    if (o->method != LMC_SVD_PLAIN) {
        if (!st || st->dim != cols ||
            (o->method == LMC_SVD_ASVD ? !st->abs_sum : !st->xtx && !h_dev)) {
            lmc_fail(err, "%s: no calibration statistics of width %lld for site %s", name,
                     (long long)cols, lmc_site_name(d->site));
            goto out;
        }
    }
    A = malloc((size_t)rows * (size_t)r * sizeof *A);
    B = malloc((size_t)r * (size_t)cols * sizeof *B);
    if (o->method == LMC_SVD_ASVD)
        s = malloc((size_t)cols * sizeof *s);
    if (!A || !B || (o->method == LMC_SVD_ASVD && !s)) {
        lmc_fail(err, "%s: out of memory", name);
        goto out;
    }
    if (s)
        lmc_asvd_scales(st->abs_sum, st->ntok, cols, o->alpha, s);
    lmc_svd_info info;
    const double *xtx = o->method == LMC_SVD_WHITEN && !h_dev ? st->xtx : NULL;
    if (factor(dev, w, rows, cols, r, o->method, s, xtx, (int)d->site, A, B, &info, err)) {
        lmc_fail_prefix(err, name);
        goto out;
    }
    lmc_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    size_t nb = 0;
    if (lmc_lowrank_encode(A, B, rows, cols, r, o->dtype, &t.enc, &blob, &nb, err)) {
        lmc_fail_prefix(err, name);
        goto out;
    }
    t.data = blob;
    t.nbytes = nb;
    t.owned = blob;
    double rel = 0, rel_out = -1;
    if (stored_error(dev, &t, w, rows, cols, o->method == LMC_SVD_WHITEN, xtx, (int)d->site,
                     &rel, &rel_out, err)) {
        lmc_fail_prefix(err, name);
        goto out;
    }
    if (lmc_model_set_tensor(ctx->model, &t, err))
        goto out;
    blob = NULL; /* the model owns it now */
    run->params_after += (int64_t)r * (rows + cols);
    run->n_factored++;
    cJSON_AddNumberToObject(rep, "rank", r);
    cJSON_AddBoolToObject(rep, "dense", 0);
    cJSON_AddNumberToObject(rep, "kept_fraction",
                            (double)r * (double)(rows + cols) / ((double)rows * (double)cols));
    cJSON_AddNumberToObject(rep, "rel_error", rel);
    if (rel_out >= 0)
        cJSON_AddNumberToObject(rep, "rel_output_error", rel_out);
    cJSON_AddNumberToObject(rep, "energy", info.energy);
    cJSON_AddStringToObject(rep, "routine", info.routine);
    if (o->method == LMC_SVD_WHITEN) {
        cJSON_AddNumberToObject(rep, "damp", info.damp);
        if (info.damp > 0) {
            lmc_warn("%s: x x^T not positive definite, damped by %g x mean diagonal", name,
                     info.damp);
            ctx->warnings++;
        }
    }
    cJSON_AddNumberToObject(rep, "seconds", lmc_now() - t0);
    rc = 0;
out:
    if (rc == 0) {
        cJSON_AddItemToArray(ctx->report, rep);
    } else {
        cJSON_Delete(rep);
    }
    free(w), free(A), free(B), free(s), free(blob);
    return rc;
}

static int svd_block(const lmc_pass *p, lmc_pass_ctx *ctx, lmc_error *err)
{
    lmc_svd_run *run = (lmc_svd_run *)p->opts; /* the pass's own run record */
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(&ctx->model->cfg, lin);
#ifdef LMC_HAVE_CUDA
    /* on the calibration backend's device, or (plain: no calibration) on
     * a context of the pass's own; kept, with its buffers, until release */
    if (ctx->device != LMC_DEVICE_CPU && !run->dev &&
        lmc_cuda_svd_open(ctx->backend, (lmc_cuda_svd **)&run->dev, err))
        return -1;
#endif
    for (int i = 0; i < nl; i++)
        if (svd_one(run, ctx, &lin[i], run->dev, err))
            return -1;
    return 0;
}

static void svd_release(const lmc_pass *p)
{
    lmc_svd_run *run = (lmc_svd_run *)p->opts;
#ifdef LMC_HAVE_CUDA
    lmc_cuda_svd_free(run->dev);
#endif
    run->dev = NULL;
}

static int svd_begin(const lmc_pass *p, lmc_model *m, lmc_error *err)
{
    (void)m, (void)err;
    lmc_svd_run *run = (lmc_svd_run *)p->opts;
    run->params_before = run->params_after = 0;
    run->n_factored = run->n_dense = 0;
    run->dev = NULL;
    return 0;
}

static int svd_end(const lmc_pass *p, lmc_model *m, cJSON *summary, lmc_error *err)
{
    (void)m, (void)err;
    const lmc_svd_run *run = p->opts;
    if (run->n_dense)
        lmc_warn("svd: %d linear(s) left dense: the factors would not be smaller", run->n_dense);
    if (summary) {
        cJSON *o = cJSON_AddObjectToObject(summary, "svd");
        cJSON_AddNumberToObject(o, "linears_factored", run->n_factored);
        cJSON_AddNumberToObject(o, "linears_dense", run->n_dense);
        cJSON_AddNumberToObject(o, "params_before", (double)run->params_before);
        cJSON_AddNumberToObject(o, "params_after", (double)run->params_after);
        cJSON_AddNumberToObject(o, "kept_fraction",
                                run->params_before ? (double)run->params_after /
                                                         (double)run->params_before
                                                   : 1.0);
        /* a calibration backend reports its own (it held these buffers) */
        size_t pk = 0;
#ifdef LMC_HAVE_CUDA
        pk = lmc_cuda_svd_peak_bytes(run->dev);
#endif
        if (pk)
            cJSON_AddNumberToObject(summary, "device_peak_bytes", (double)pk);
    }
    return 0;
}

int lmc_svd_pass(lmc_pass *p, lmc_svd_run *run, lmc_error *err)
{
    if (lmc_svd_opts_check(&run->o, err))
        return -1;
    unsigned stats = run->o.method == LMC_SVD_ASVD     ? LMC_STAT_ABS_MEAN
                     : run->o.method == LMC_SVD_WHITEN ? LMC_STAT_HESSIAN
                                                       : 0;
    /* whitening's device twin reads the Hessian on the GPU */
    *p = (lmc_pass){.name = "svd", .stats = stats,
                    .device_stats = stats & LMC_STAT_HESSIAN, .opts = run,
                    .compress_block = svd_block, .begin = svd_begin, .end = svd_end,
                    .release = svd_release};
    return 0;
}
