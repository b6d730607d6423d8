/* Error-feedback solver (GPTQ / SparseGPT). See solver.h for the algorithm
 * and the list of deliberate differences from the reference. */
#include "solver.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmc_solver_opts_default(lmc_solver_opts *o)
{
    memset(o, 0, sizeof *o);
    o->percdamp = 0.01;
    o->damp_retries = 5;
    o->blocksize = 128;
    o->group = -1;
}

void lmc_hinv_free(lmc_hinv *hv)
{
    free(hv->dead);
    free(hv->perm);
    free(hv->U);
    memset(hv, 0, sizeof *hv);
}

/* Descending diag(H), ties by column index: a stable argsort. */
typedef struct {
    double key;
    int32_t idx;
} keyed;
static int cmp_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key > y->key)
        return -1;
    if (x->key < y->key)
        return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static void warnf(const lmc_solver_opts *o, const char *fmt, double a, double b)
{
    if (!o->warn)
        return;
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, b);
    o->warn(o->warn_ctx, msg);
}

int lmc_hinv_prepare(const double *H, int64_t cols, const lmc_solver_opts *o, lmc_hinv *hv,
                     lmc_error *err)
{
    return lmc_hinv_prepare_scaled(H, 1.0, cols, o, hv, err);
}

int lmc_hinv_prepare_scaled(const double *S, double f, int64_t cols, const lmc_solver_opts *o,
                            lmc_hinv *hv, lmc_error *err)
{
    memset(hv, 0, sizeof *hv);
    if (cols <= 0)
        return lmc_fail(err, "solver: empty Hessian");
    size_t nn = (size_t)cols * (size_t)cols;
    double *A = malloc(nn * sizeof *A);
    if (!A)
        return lmc_fail(err, "solver: out of memory for a %lldx%lld Hessian", (long long)cols,
                        (long long)cols);
    memcpy(A, S, nn * sizeof *A);
    return lmc_hinv_prepare_consume(A, f, cols, o, hv, err);
}

/* a[i][*] = a[p[i]][*] (rows of n doubles) in place, cycle by cycle */
static void permute_rows(double *a, int64_t n, const int32_t *p, double *row, uint8_t *seen)
{
    memset(seen, 0, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        if (seen[i] || p[i] == i)
            continue;
        memcpy(row, a + i * n, (size_t)n * sizeof *row);
        int64_t j = i;
        for (;;) {
            seen[j] = 1;
            int64_t k = p[j];
            if (k == i) {
                memcpy(a + j * n, row, (size_t)n * sizeof *row);
                break;
            }
            memcpy(a + j * n, a + k * n, (size_t)n * sizeof *row);
            j = k;
        }
    }
}

int lmc_hinv_prepare_consume(double *A, double f, int64_t cols, const lmc_solver_opts *o,
                             lmc_hinv *hv, lmc_error *err)
{
    memset(hv, 0, sizeof *hv);
    const int64_t n = cols;
    double *diag = NULL, *row = NULL;
    int32_t *rp = NULL;
    uint8_t *seen = NULL;
    if (n <= 0) {
        free(A);
        return lmc_fail(err, "solver: empty Hessian");
    }
    if (!(o->percdamp >= 0) || o->damp_retries < 0) {
        free(A);
        return lmc_fail(err, "solver: invalid damping %g (retries %d)", o->percdamp,
                        o->damp_retries);
    }
    for (int64_t k = 0; k < n * n; k++)
        if (!isfinite(A[k] * f)) {
            free(A);
            return lmc_fail(err, "solver: Hessian entry (%lld, %lld) is not finite",
                            (long long)(k / n), (long long)(k % n));
        }
    hv->cols = n;
    hv->act_order = o->act_order;
    hv->percdamp = o->percdamp;
    hv->dead = calloc((size_t)n, 1);
    hv->perm = malloc((size_t)n * sizeof *hv->perm);
    diag = malloc((size_t)n * sizeof *diag);
    row = malloc((size_t)n * sizeof *row);
    rp = malloc((size_t)n * sizeof *rp);
    seen = malloc((size_t)n);
    if (!hv->dead || !hv->perm || !diag || !row || !rp || !seen) {
        lmc_fail(err, "solver: out of memory for a %lldx%lld Hessian", (long long)n,
                 (long long)n);
        goto fail;
    }
    /* Dead inputs (never nonzero in calibration): H_ii = 1, weights zeroed in run. */
    for (int64_t i = 0; i < n; i++) {
        diag[i] = A[i * n + i] * f;
        hv->perm[i] = (int32_t)i;
        if (diag[i] == 0) {
            hv->dead[i] = 1;
            hv->n_dead++;
            diag[i] = 1;
        }
    }
    if (o->act_order) {
        keyed *kv = malloc((size_t)n * sizeof *kv);
        if (!kv) {
            lmc_fail(err, "solver: out of memory");
            goto fail;
        }
        for (int64_t i = 0; i < n; i++)
            kv[i] = (keyed){diag[i], (int32_t)i};
        qsort(kv, (size_t)n, sizeof *kv, cmp_desc);
        for (int64_t i = 0; i < n; i++)
            hv->perm[i] = kv[i].idx;
        free(kv);
    }
    /* We need U upper with (damped H)^-1 = U^T U, the reference's
     * cholesky(cholesky_inverse(cholesky(H)), upper=True). With J the order
     * reversal: chol(J H J) = Lr (lower) gives H = V V^T with V = J Lr J
     * upper, so H^-1 = (V^-1)^T V^-1 and U = V^-1 = J Lr^-1 J: one Cholesky
     * and one triangular inverse instead of three factorizations.
     * A = f J P^T S P J is formed in place (S is the largest buffer of the
     * pass): rows, then each row's columns, by rp[i] = perm[n-1-i]. */
    for (int64_t i = 0; i < n; i++)
        rp[i] = hv->perm[n - 1 - i];
    permute_rows(A, n, rp, row, seen);
    for (int64_t i = 0; i < n; i++) {
        double *ai = A + i * n;
        for (int64_t j = 0; j < n; j++)
            row[j] = ai[rp[j]] * f;
        memcpy(ai, row, (size_t)n * sizeof *row);
    }
    /* LAPACK (column-major, 'L') works on the row-major upper triangle and
     * leaves the strict lower one, which keeps A for a retry */
    double percdamp = o->percdamp;
    for (int attempt = 0;; attempt++) {
        double mean = 0;
        for (int64_t i = 0; i < n; i++)
            mean += diag[i];
        mean /= (double)n;
        if (!(mean > 0)) {
            lmc_fail(err, "solver: Hessian has a non-positive mean diagonal (%g)", mean);
            goto fail;
        }
        const double damp = percdamp * mean;
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = i + 1; attempt > 0 && j < n; j++)
                A[i * n + j] = A[j * n + i];
            A[i * n + i] = diag[rp[i]] + damp;
        }
        lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n);
        if (info == 0)
            info = LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'L', 'N', (lapack_int)n, A, (lapack_int)n);
        if (info == 0)
            break;
        if (info < 0 || attempt >= o->damp_retries) {
            lmc_fail(err,
                     "solver: Hessian (%lld columns) is not positive definite even with "
                     "damping %g x mean(diag H)",
                     (long long)n, percdamp);
            goto fail;
        }
        double next = percdamp > 0 ? percdamp * 10 : 0.01;
        warnf(o, "Hessian not positive definite with damping %g x mean(diag H); retrying with %g",
              percdamp, next);
        percdamp = next;
        hv->damp_raised++;
    }
    hv->percdamp_used = percdamp;
    free(diag);
    free(row);
    free(rp);
    free(seen);
    diag = NULL, row = NULL, rp = NULL, seen = NULL;
    if (!(hv->U = malloc((size_t)n * (size_t)n * sizeof *hv->U))) {
        lmc_fail(err, "solver: out of memory for a %lldx%lld Hessian", (long long)n,
                 (long long)n);
        goto fail;
    }
    /* Lr^-1 (a, b), a >= b, is at A[b*n + a] (column-major); U[i][j] = Lr^-1(n-1-i, n-1-j) */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            hv->U[i * n + j] = j >= i ? (float)A[(n - 1 - j) * n + (n - 1 - i)] : 0.0f;
    free(A);
    return 0;
fail:
    free(A);
    free(diag);
    free(row);
    free(rp);
    free(seen);
    lmc_hinv_free(hv);
    return -1;
}

void lmc_solver_result_free(lmc_solver_result *res)
{
    if (res->quantized)
        lmc_qresult_free(&res->q);
    free(res->mask);
    memset(res, 0, sizeof *res);
}

/* k-th smallest (0-based) of a[0..n) by quickselect; reorders a. */
static float kth_smallest(float *a, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float x = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < x)
                i++;
            while (a[j] > x)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

/* Unstructured SparseGPT mask of one block: the k lowest w^2 / U_ii^2 over
 * the rows x count block, k = floor(rows*count*sparsity); ties by position. */
static void block_mask(const float *Wp, uint8_t *maskp, int64_t rows, int64_t n, int64_t i1,
                       int64_t count, const float *U, double sparsity, float *scratch,
                       float *scores)
{
    const int64_t total = rows * count;
    const int64_t k = (int64_t)((double)total * sparsity);
    if (k <= 0)
        return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < count; i++) {
            float d = U[(i1 + i) * n + i1 + i];
            float w = Wp[r * n + i1 + i];
            scores[r * count + i] = w * w / (d * d);
        }
    memcpy(scratch, scores, (size_t)total * sizeof *scratch);
    const float thresh = kth_smallest(scratch, total, k - 1);
    int64_t taken = 0;
    for (int64_t t = 0; t < total; t++)
        if (scores[t] < thresh) {
            maskp[(t / count) * n + i1 + t % count] = 1;
            taken++;
        }
    for (int64_t t = 0; t < total && taken < k; t++)
        if (scores[t] == thresh) {
            maskp[(t / count) * n + i1 + t % count] = 1;
            taken++;
        }
}

/* Fit a group with the positions flagged in m (NULL: none) read as 0: weights
 * held at zero by an input mask (prune, then quantize) must not widen the
 * range with the drift the error feedback gives them. tmp: len floats. */
static void fit_masked(const lmc_solver_opts *o, const float *x, const uint8_t *m, int64_t len,
                       float *tmp, float *scale, uint8_t *zero)
{
    if (m) {
        for (int64_t i = 0; i < len; i++)
            tmp[i] = m[i] ? 0.0f : x[i];
        x = tmp;
    }
    lmc_quant_fit(o->bits, o->sym, x, len, scale, zero);
}

static int check_opts(const lmc_hinv *hv, int64_t rows, const lmc_solver_opts *o, lmc_error *err)
{
    const int64_t n = hv->cols;
    if (rows <= 0)
        return lmc_fail(err, "solver: empty weight (%lld rows)", (long long)rows);
    if (o->blocksize <= 0)
        return lmc_fail(err, "solver: block size %d must be positive", o->blocksize);
    if (o->bits != 0 && (o->bits < 2 || o->bits > 8))
        return lmc_fail(err, "solver: bits %d out of range 2..8", o->bits);
    if (o->bits && (o->group == 0 || o->group < -1))
        return lmc_fail(err, "solver: group size %d invalid (positive, or -1)", o->group);
    if (!(o->sparsity >= 0 && o->sparsity < 1))
        return lmc_fail(err, "solver: sparsity %g outside [0, 1)", o->sparsity);
    if (o->prune_n || o->prune_m) {
        if (o->prune_n <= 0 || o->prune_m <= o->prune_n || o->prune_m > 64)
            return lmc_fail(err, "solver: N:M pattern %d:%d invalid (need 0 < N < M <= 64)",
                            o->prune_n, o->prune_m);
        if (n % o->prune_m || o->blocksize % o->prune_m)
            return lmc_fail(err,
                            "solver: N:M with M = %d needs the input width (%lld) and the block "
                            "size (%d) to be multiples of M",
                            o->prune_m, (long long)n, o->blocksize);
        if (o->act_order)
            return lmc_fail(err, "solver: N:M pruning cannot be combined with act-order");
    }
    if ((o->sparsity > 0) + (o->prune_n > 0) + (o->mask_in != NULL) > 1)
        return lmc_fail(err, "solver: choose one of sparsity, N:M and an input mask");
    if (!hv->U || hv->act_order != o->act_order)
        return lmc_fail(err, "solver: Hessian inverse was prepared with different act-order");
    return 0;
}

int lmc_solver_run(const lmc_hinv *hv, float *W, int64_t rows, const lmc_solver_opts *o,
                   lmc_solver_result *res, lmc_error *err)
{
    memset(res, 0, sizeof *res);
    if (check_opts(hv, rows, o, err))
        return -1;
    const int64_t n = hv->cols;
    for (int64_t k = 0; k < rows * n; k++)
        if (!isfinite(W[k]))
            return lmc_fail(err, "solver: weight (%lld, %lld) is not finite",
                            (long long)(k / n), (long long)(k % n));
    const int quant = o->bits > 0;
    const int maxq = quant ? lmc_quant_maxq(o->bits) : 0;
    const int64_t g = o->group;
    const int static_g = quant && o->static_groups && g > 0;
    const int nm = o->prune_n > 0;
    const int use_mask = o->sparsity > 0 || nm || o->mask_in;
    const int64_t bs = o->blocksize < n ? o->blocksize : n;
    const int32_t *perm = hv->perm;
    const float *U = hv->U;

    res->percdamp_used = hv->percdamp_used;
    res->damp_raised = hv->damp_raised;
    res->n_dead = hv->n_dead;
    if (quant) {
        if (lmc_qresult_alloc(&res->q, rows, n, o->bits, o->group, o->sym, err))
            return -1;
        res->quantized = 1;
    }
    const int64_t ng = quant ? res->q.ngroups : 0;

    float *Wp = o->act_order ? malloc((size_t)rows * (size_t)n * sizeof *Wp) : W;
    float *W1 = malloc((size_t)rows * (size_t)bs * sizeof *W1);
    float *E = malloc((size_t)rows * (size_t)bs * sizeof *E);
    double *loss = calloc((size_t)rows, sizeof *loss);
    uint8_t *maskp = use_mask ? calloc((size_t)rows * (size_t)n, 1) : NULL;
    float *scores = o->sparsity > 0 ? malloc((size_t)rows * (size_t)bs * 2 * sizeof *scores)
                                    : NULL;
    const int64_t fitlen = g > 0 && g < n ? g : n;
    const int fit_mask = quant && o->mask_in;
    float *fitbuf = fit_mask ? malloc((size_t)rows * (size_t)fitlen * sizeof *fitbuf) : NULL;
    if (!Wp || !W1 || !E || !loss || (use_mask && !maskp) || (o->sparsity > 0 && !scores) ||
        (fit_mask && !fitbuf)) {
        free(fitbuf);
        if (Wp != W)
            free(Wp);
        free(W1);
        free(E);
        free(loss);
        free(maskp);
        free(scores);
        lmc_solver_result_free(res);
        return lmc_fail(err, "solver: out of memory for a %lldx%lld weight", (long long)rows,
                        (long long)n);
    }

    /* Per-row parameters (group -1) come from the weights as given, before
     * dead columns are zeroed, like the reference's initial find_params. */
    if (quant && g < 0)
        for (int64_t r = 0; r < rows; r++)
            fit_masked(o, W + r * n, fit_mask ? o->mask_in + r * n : NULL, n, fitbuf,
                       &res->q.scales[r], &res->q.zeros[r]);
    for (int64_t c = 0; c < n; c++)
        if (hv->dead[c])
            for (int64_t r = 0; r < rows; r++)
                W[r * n + c] = 0.0f;
    if (static_g)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < ng; k++) {
                int64_t c0 = k * g, len = c0 + g < n ? g : n - c0;
                fit_masked(o, W + r * n + c0, fit_mask ? o->mask_in + r * n + c0 : NULL, len,
                           fitbuf, &res->q.scales[r * ng + k], &res->q.zeros[r * ng + k]);
            }
    if (o->act_order)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < n; c++)
                Wp[r * n + c] = W[r * n + perm[c]];
    if (o->mask_in)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < n; c++)
                maskp[r * n + c] = o->mask_in[r * n + perm[c]] != 0;

    for (int64_t i1 = 0; i1 < n; i1 += bs) {
        const int64_t i2 = i1 + bs < n ? i1 + bs : n;
        const int64_t count = i2 - i1;
        if (o->sparsity > 0)
            block_mask(Wp, maskp, rows, n, i1, count, U, o->sparsity, scores,
                       scores + rows * bs);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            float *wrow = Wp + r * n; /* [i1, n) stays as at block start until the end */
            float *w1 = W1 + r * bs;
            float *e1 = E + r * bs;
            uint8_t *mrow = maskp ? maskp + r * n : NULL;
            double l = 0;
            memcpy(w1, wrow + i1, (size_t)count * sizeof *w1);
            for (int64_t i = 0; i < count; i++) {
                const int64_t c = i1 + i;
                const float *u = U + c * n;
                const float d = u[c];
                if (nm && i % o->prune_m == 0) {
                    /* the N lowest w^2/U_jj^2 of the next M (updated) weights;
                     * ties: lowest position first */
                    float s[64];
                    const int m = o->prune_m;
                    for (int j = 0; j < m; j++) {
                        float dj = U[(c + j) * n + c + j];
                        s[j] = w1[i + j] * w1[i + j] / (dj * dj);
                    }
                    for (int t = 0; t < o->prune_n; t++) {
                        int best = -1;
                        for (int j = 0; j < m; j++)
                            if (!mrow[c + j] && (best < 0 || s[j] < s[best]))
                                best = j;
                        mrow[c + best] = 1;
                    }
                }
                const float w = w1[i];
                float q = mrow && mrow[c] ? 0.0f : w;
                if (quant) {
                    int64_t gk = 0;
                    if (g > 0) {
                        if (static_g) {
                            gk = perm[c] / g;
                        } else {
                            gk = c / g;
                            /* fitted on the block-start weights, as the reference */
                            if (c % g == 0)
                                fit_masked(o, wrow + c, fit_mask ? mrow + c : NULL,
                                           c + g < n ? g : n - c,
                                           fitbuf ? fitbuf + r * fitlen : NULL,
                                           &res->q.scales[r * ng + gk],
                                           &res->q.zeros[r * ng + gk]);
                        }
                    }
                    q = lmc_quant_apply(q, res->q.scales[r * ng + gk], res->q.zeros[r * ng + gk],
                                        maxq, &res->q.codes[r * n + perm[c]]);
                }
                const float diff = w - q;
                const float ei = diff / d;
                l += (double)diff * diff / ((double)d * d);
                e1[i] = ei;
                w1[i] = q;
                const float *uu = u + i1;
#pragma omp simd
                for (int64_t j = i + 1; j < count; j++)
                    w1[j] -= ei * uu[j];
            }
            memcpy(wrow + i1, w1, (size_t)count * sizeof *w1);
            loss[r] += l;
        }
        /* lazy batch update of every later column */
        if (i2 < n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(n - i2),
                        (int)count, -1.0f, E, (int)bs, U + i1 * n + i2, (int)n, 1.0f, Wp + i2,
                        (int)n);
    }

    if (o->act_order) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < n; c++)
                W[r * n + perm[c]] = Wp[r * n + c];
        free(Wp);
    }
    double total = 0;
    for (int64_t r = 0; r < rows; r++)
        total += loss[r];
    res->loss = total / 2;
    if (use_mask) {
        res->mask = malloc((size_t)rows * (size_t)n);
        if (!res->mask) {
            free(fitbuf);
            free(W1);
            free(E);
            free(loss);
            free(maskp);
            free(scores);
            lmc_solver_result_free(res);
            return lmc_fail(err, "solver: out of memory for a %lldx%lld mask", (long long)rows,
                            (long long)n);
        }
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < n; c++) {
                uint8_t m = maskp[r * n + c];
                res->mask[r * n + perm[c]] = m;
                res->n_pruned += m;
            }
    }
    if (quant && g > 0) {
        for (int64_t c = 0; c < n; c++)
            res->q.g_idx[perm[c]] = (int32_t)(static_g ? perm[c] / g : c / g);
        lmc_qresult_update_has_gidx(&res->q);
    }
    free(W1);
    free(E);
    free(loss);
    free(maskp);
    free(scores);
    free(fitbuf);
    return 0;
}

int lmc_solve(float *W, int64_t rows, int64_t cols, const double *H, const lmc_solver_opts *o,
              lmc_solver_result *res, lmc_error *err)
{
    lmc_hinv hv;
    memset(res, 0, sizeof *res);
    if (lmc_hinv_prepare(H, cols, o, &hv, err))
        return -1;
    int rc = lmc_solver_run(&hv, W, rows, o, res, err);
    lmc_hinv_free(&hv);
    return rc;
}
