/* The error-feedback solver (GPTQ / SparseGPT) against a naive column-by-
 * column implementation written here in double precision: explicit H^-1,
 * the OBS update W[:, j] -= (w - q) * Hinv[p][j] / Hinv[p][p] and the
 * elimination of the decided column from Hinv after every column; no
 * blocks, no lazy batch updates, no Cholesky. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compress/quantizer.h"
#include "../compress/rtn.h"
#include "../compress/solver.h"
#include "../core/encoding.h"
#include "testutil.h"

#define ROWS 32
#define COLS 96
#define NSAMP 200
#define DEAD_COL 7

static uint64_t rng;
static double rnd_uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double rnd_normal(void)
{
    double u = rnd_uniform(), v = rnd_uniform();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

typedef struct {
    float W[ROWS * COLS];
    double X[NSAMP * COLS];
    double H[COLS * COLS];
} layer;

/* Random weights; inputs with uneven scales (so act-order matters), a few
 * strongly correlated columns and optionally one dead column. */
static void make_layer(layer *L, uint64_t seed, int dead)
{
    rng = seed;
    for (int i = 0; i < ROWS * COLS; i++)
        L->W[i] = (float)(0.1 * rnd_normal());
    L->W[3 * COLS + 40] = 0.9f; /* an outlier */
    for (int s = 0; s < NSAMP; s++) {
        double *x = L->X + s * COLS;
        for (int c = 0; c < COLS; c++)
            x[c] = rnd_normal() * (1 + c % 5);
        x[11] = x[10] + 0.1 * rnd_normal();
        x[12] = 0.5 * x[10] - 0.3 * x[11] + 0.05 * rnd_normal();
        x[50] = x[49] + x[48] + 0.02 * rnd_normal();
        if (dead)
            x[DEAD_COL] = 0;
    }
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j < COLS; j++) {
            double a = 0;
            for (int s = 0; s < NSAMP; s++)
                a += L->X[s * COLS + i] * L->X[s * COLS + j];
            L->H[i * COLS + j] = 2.0 * a / NSAMP;
        }
}

/* ---- the naive reference ---- */

typedef struct {
    double Q[ROWS * COLS];
    uint8_t codes[ROWS * COLS];
    float scales[ROWS * COLS];
    uint8_t zeros[ROWS * COLS];
    uint8_t mask[ROWS * COLS];
    double loss;
} naive_out;

static void invert(double *A, int n) /* Gauss-Jordan with partial pivoting */
{
    double *B = calloc((size_t)n * n, sizeof *B);
    for (int i = 0; i < n; i++)
        B[i * n + i] = 1;
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[p * n + c]))
                p = r;
        for (int k = 0; k < n; k++) {
            double t = A[c * n + k];
            A[c * n + k] = A[p * n + k];
            A[p * n + k] = t;
            t = B[c * n + k];
            B[c * n + k] = B[p * n + k];
            B[p * n + k] = t;
        }
        double d = A[c * n + c];
        for (int k = 0; k < n; k++) {
            A[c * n + k] /= d;
            B[c * n + k] /= d;
        }
        for (int r = 0; r < n; r++)
            if (r != c) {
                double f = A[r * n + c];
                for (int k = 0; k < n; k++) {
                    A[r * n + k] -= f * A[c * n + k];
                    B[r * n + k] -= f * B[c * n + k];
                }
            }
    }
    memcpy(A, B, (size_t)n * n * sizeof *A);
    free(B);
}

static void eliminate(double *T, int n, int p)
{
    double d = T[p * n + p];
    for (int a = p + 1; a < n; a++)
        for (int b = p + 1; b < n; b++)
            T[a * n + b] -= T[a * n + p] * T[p * n + b] / d;
}

typedef struct {
    double score;
    int pos;
} scored;
static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return x->pos - y->pos;
}

static void naive_solve(const float *W0, const double *H, const lmc_solver_opts *o,
                        double percdamp, naive_out *out)
{
    const int n = COLS, R = ROWS, bs = o->blocksize;
    const int quant = o->bits > 0, maxq = (1 << o->bits) - 1, g = o->group;
    const int stat = quant && o->static_groups && g > 0;
    const int ng = g > 0 ? (n + g - 1) / g : 1;
    memset(out, 0, sizeof *out);
    double diag[COLS];
    int dead[COLS], perm[COLS];
    for (int i = 0; i < n; i++) {
        diag[i] = H[i * n + i];
        dead[i] = diag[i] == 0;
        if (dead[i])
            diag[i] = 1;
        perm[i] = i;
    }
    if (o->act_order) /* insertion sort: descending, stable */
        for (int i = 1; i < n; i++) {
            int v = perm[i], j = i;
            while (j > 0 && diag[perm[j - 1]] < diag[v]) {
                perm[j] = perm[j - 1];
                j--;
            }
            perm[j] = v;
        }
    double *Hi = malloc(sizeof(double) * n * n), *T = malloc(sizeof(double) * n * n);
    double mean = 0;
    for (int i = 0; i < n; i++)
        mean += diag[i] / n;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++)
            Hi[i * n + j] = H[perm[i] * n + perm[j]];
        Hi[i * n + i] = diag[perm[i]] + percdamp * mean;
    }
    invert(Hi, n);
    double dU[COLS]; /* diagonal of the upper Cholesky factor of H^-1 */
    memcpy(T, Hi, sizeof(double) * n * n);
    for (int p = 0; p < n; p++) {
        dU[p] = sqrt(T[p * n + p]);
        eliminate(T, n, p);
    }

    float Wf[ROWS * COLS];
    memcpy(Wf, W0, sizeof Wf);
    /* parameters are fitted with input-masked weights read as 0 */
    float Wm[ROWS * COLS];
    for (int i = 0; i < R * n; i++)
        Wm[i] = o->mask_in && o->mask_in[i] ? 0.0f : Wf[i];
    if (quant && g < 0)
        for (int r = 0; r < R; r++)
            lmc_quant_fit(o->bits, o->sym, Wm + r * n, n, &out->scales[r], &out->zeros[r]);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < n; c++)
            if (dead[c])
                Wf[r * n + c] = 0;
    for (int i = 0; i < R * n; i++)
        if (o->mask_in && o->mask_in[i])
            Wm[i] = 0.0f;
        else
            Wm[i] = Wf[i];
    if (stat)
        for (int r = 0; r < R; r++)
            for (int k = 0; k < ng; k++)
                lmc_quant_fit(o->bits, o->sym, Wm + r * n + k * g, k * g + g < n ? g : n - k * g,
                              &out->scales[r * ng + k], &out->zeros[r * ng + k]);
    static double Wp[ROWS * COLS], S[ROWS * COLS];
    uint8_t M[ROWS * COLS] = {0};
    for (int r = 0; r < R; r++)
        for (int c = 0; c < n; c++) {
            Wp[r * n + c] = Wf[r * n + perm[c]];
            if (o->mask_in)
                M[r * n + c] = o->mask_in[r * n + perm[c]] != 0;
        }
    for (int p = 0; p < n; p++) {
        if (p % bs == 0) {
            memcpy(S, Wp, sizeof S); /* the weights at the start of the block */
            int cnt = p + bs < n ? bs : n - p;
            int k = (int)((double)(R * cnt) * o->sparsity);
            if (k > 0) {
                scored *sc = malloc(sizeof *sc * R * cnt);
                for (int r = 0; r < R; r++)
                    for (int i = 0; i < cnt; i++) {
                        float w = (float)S[r * n + p + i], d = (float)dU[p + i];
                        sc[r * cnt + i] = (scored){w * w / (d * d), r * cnt + i};
                    }
                qsort(sc, (size_t)(R * cnt), sizeof *sc, cmp_scored);
                for (int t = 0; t < k; t++)
                    M[(sc[t].pos / cnt) * n + p + sc[t].pos % cnt] = 1;
                free(sc);
            }
        }
        if (o->prune_n && p % o->prune_m == 0)
            for (int r = 0; r < R; r++) {
                scored sc[16];
                for (int j = 0; j < o->prune_m; j++) {
                    float w = (float)Wp[r * n + p + j], d = (float)dU[p + j];
                    sc[j] = (scored){w * w / (d * d), j};
                }
                qsort(sc, (size_t)o->prune_m, sizeof *sc, cmp_scored);
                for (int t = 0; t < o->prune_n; t++)
                    M[r * n + p + sc[t].pos] = 1;
            }
        for (int r = 0; r < R; r++) {
            double w = Wp[r * n + p];
            double q = M[r * n + p] ? 0 : w;
            if (quant) {
                int gk = 0;
                if (g > 0) {
                    gk = stat ? perm[p] / g : p / g;
                    if (!stat && p % g == 0) {
                        float seg[COLS];
                        int len = p + g < n ? g : n - p;
                        for (int j = 0; j < len; j++)
                            seg[j] = o->mask_in && M[r * n + p + j] ? 0.0f
                                                                   : (float)S[r * n + p + j];
                        lmc_quant_fit(o->bits, o->sym, seg, len, &out->scales[r * ng + gk],
                                      &out->zeros[r * ng + gk]);
                    }
                }
                q = lmc_quant_apply((float)q, out->scales[r * ng + gk], out->zeros[r * ng + gk],
                                    maxq, &out->codes[r * n + perm[p]]);
            }
            double hpp = Hi[p * n + p];
            for (int j = p + 1; j < n; j++)
                Wp[r * n + j] -= (w - q) * Hi[p * n + j] / hpp;
            out->loss += (w - q) * (w - q) / hpp / 2;
            Wp[r * n + p] = q;
        }
        eliminate(Hi, n, p);
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < n; c++) {
            out->Q[r * n + perm[c]] = Wp[r * n + c];
            out->mask[r * n + perm[c]] = M[r * n + c];
        }
    free(Hi);
    free(T);
}

/* Run the engine on a copy of L->W and compare everything with the naive
 * reference. Returns the engine's weights in Wout. */
static void check_against_naive(const layer *L, const double *H, const lmc_solver_opts *o,
                                lmc_solver_result *res, float *Wout)
{
    lmc_error err;
    memcpy(Wout, L->W, sizeof L->W);
    ck_assert_msg(lmc_solve(Wout, ROWS, COLS, H, o, res, &err) == 0, "%s", err.msg);
    static naive_out ref;
    naive_solve(L->W, H, o, res->percdamp_used, &ref);
    double maxabs = 0, maxdiff = 0;
    for (int i = 0; i < ROWS * COLS; i++) {
        ck_assert(isfinite(Wout[i]));
        maxabs = fmax(maxabs, fabs(ref.Q[i]));
        maxdiff = fmax(maxdiff, fabs(Wout[i] - ref.Q[i]));
    }
    if (res->quantized) { /* the weights are exactly the container's dequantization */
        static float dq[ROWS * COLS];
        lmc_qresult_dequant(&res->q, dq);
        ck_assert_mem_eq(dq, Wout, sizeof dq);
    }
    if (o->bits == 8) {
        /* 8-bit steps are fine enough that fp32 vs fp64 rounding noise flips
         * a few rounding decisions (and fp16 scales), and each flip then
         * propagates: compare within a step and the loss loosely */
        int mism = 0;
        for (int i = 0; i < ROWS * COLS; i++)
            mism += res->q.codes[i] != ref.codes[i];
        ck_assert_msg(mism <= ROWS * COLS / 20, "%d of %d codes differ", mism, ROWS * COLS);
        ck_assert_msg(maxdiff <= 2 * maxabs / 255, "max |engine - naive| = %g", maxdiff);
        ck_assert_msg(fabs(res->loss - ref.loss) <= 0.05 * ref.loss, "loss %.9g vs naive %.9g",
                      res->loss, ref.loss);
        return;
    }
    ck_assert_msg(maxdiff <= 1e-4 * maxabs, "max |engine - naive| = %g (max |w| %g)", maxdiff,
                  maxabs);
    ck_assert_msg(fabs(res->loss - ref.loss) <= 1e-3 * ref.loss + 1e-12,
                  "loss %.9g vs naive %.9g", res->loss, ref.loss);
    if (res->quantized) {
        int64_t ng = res->q.ngroups;
        ck_assert_mem_eq(res->q.codes, ref.codes, ROWS * COLS);
        ck_assert_mem_eq(res->q.zeros, ref.zeros, (size_t)(ROWS * ng));
        for (int64_t i = 0; i < ROWS * ng; i++)
            ck_assert_msg(fabsf(res->q.scales[i] - ref.scales[i]) <= 1e-3f * ref.scales[i],
                          "scale %lld: %g vs %g", (long long)i, (double)res->q.scales[i],
                          (double)ref.scales[i]);
    }
    if (res->mask)
        ck_assert_mem_eq(res->mask, ref.mask, ROWS * COLS);
}

/* sum over rows of d H d^T, d = W - Q: the layer's output error on X */
static double output_error(const float *W, const float *Q, const double *H)
{
    double e = 0;
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < COLS; i++) {
            double di = (double)W[r * COLS + i] - Q[r * COLS + i];
            if (di == 0)
                continue;
            for (int j = 0; j < COLS; j++)
                e += di * H[i * COLS + j] * ((double)W[r * COLS + j] - Q[r * COLS + j]);
        }
    return e;
}

static lmc_solver_opts gptq_opts(int bits, int group)
{
    lmc_solver_opts o;
    lmc_solver_opts_default(&o);
    o.blocksize = 32;
    o.bits = bits;
    o.group = group;
    return o;
}

static layer L0, L1; /* L1 has a dead column */
static void setup(void)
{
    make_layer(&L0, 0x1234567ull, 0);
    make_layer(&L1, 0x7654321ull, 1);
}

START_TEST(gptq_matches_naive_and_beats_rtn)
{
    const int cfg[][3] = {{4, 32, 0}, {3, 32, 0}, {4, -1, 0}, {4, 16, 1}, {3, 40, 0}, {8, 32, 0}};
    for (size_t k = 0; k < sizeof cfg / sizeof *cfg; k++) {
        lmc_solver_opts o = gptq_opts(cfg[k][0], cfg[k][1]);
        o.sym = cfg[k][2];
        lmc_solver_result res;
        static float Wg[ROWS * COLS], Wr[ROWS * COLS];
        check_against_naive(&L0, L0.H, &o, &res, Wg);
        ck_assert_int_eq(res.n_dead, 0);
        ck_assert_int_eq(res.damp_raised, 0);
        ck_assert(res.percdamp_used == 0.01);
        ck_assert_int_eq(res.q.has_gidx, 0);
        ck_assert_ptr_null(res.mask);
        lmc_qresult rq;
        lmc_error err;
        ck_assert_int_eq(lmc_rtn_quantize(L0.W, ROWS, COLS, o.bits, o.group, o.sym, &rq, Wr, &err),
                         0);
        double eg = output_error(L0.W, Wg, L0.H), er = output_error(L0.W, Wr, L0.H);
        ck_assert_msg(eg < 0.8 * er, "w%d g%d: GPTQ output error %g not below RTN %g", o.bits,
                      o.group, eg, er);
        lmc_qresult_free(&rq);
        lmc_solver_result_free(&res);
    }
}
END_TEST

START_TEST(gptq_act_order_and_static_groups)
{
    static float W[ROWS * COLS];
    lmc_error err;
    for (int stat = 0; stat < 2; stat++) {
        lmc_solver_opts o = gptq_opts(4, 32);
        o.act_order = 1;
        o.static_groups = stat;
        lmc_solver_result res;
        check_against_naive(&L0, L0.H, &o, &res, W);
        /* static groups keep column order groups: no g_idx needed */
        ck_assert_int_eq(res.q.has_gidx, !stat);
        if (!stat) { /* g_idx[c] = position of c in the act-order // group */
            int pos_of_max = -1;
            double best = -1;
            for (int c = 0; c < COLS; c++)
                if (L0.H[c * COLS + c] > best) {
                    best = L0.H[c * COLS + c];
                    pos_of_max = c;
                }
            ck_assert_int_eq(res.q.g_idx[pos_of_max], 0);
            int count[3] = {0};
            for (int c = 0; c < COLS; c++)
                count[res.q.g_idx[c]]++;
            ck_assert(count[0] == 32 && count[1] == 32 && count[2] == 32);
        }
        /* the packed container decodes to exactly the solver's weights */
        lmc_encoding e;
        uint8_t *blob;
        size_t nb;
        ck_assert_int_eq(lmc_qresult_encode(&res.q, &e, &blob, &nb, &err), 0);
        ck_assert_int_eq(e.has_gidx, !stat);
        static float dec[ROWS * COLS];
        ck_assert_int_eq(lmc_enc_get(LMC_ENC_QGROUP)->to_f32(&e, blob, ROWS, COLS, dec, &err), 0);
        ck_assert_mem_eq(dec, W, sizeof dec);
        free(blob);
        lmc_solver_result_free(&res);
    }
    /* act-order, per-row groups, block not dividing the width */
    lmc_solver_opts o = gptq_opts(3, -1);
    o.act_order = 1;
    o.blocksize = 40;
    lmc_solver_result res;
    check_against_naive(&L0, L0.H, &o, &res, W);
    ck_assert_int_eq(res.q.has_gidx, 0);
    lmc_solver_result_free(&res);
}
END_TEST

START_TEST(gptq_dead_column)
{
    static float W[ROWS * COLS];
    lmc_solver_opts o = gptq_opts(4, 32);
    for (int ao = 0; ao < 2; ao++) {
        o.act_order = ao;
        lmc_solver_result res;
        check_against_naive(&L1, L1.H, &o, &res, W);
        ck_assert_int_eq(res.n_dead, 1);
        for (int r = 0; r < ROWS; r++)
            ck_assert(W[r * COLS + DEAD_COL] == 0.0f);
        lmc_solver_result_free(&res);
    }
    /* per-row parameters are fitted before the dead column is zeroed (as the
     * reference): make the dead column hold each row's extreme value */
    static layer L2;
    L2 = L1;
    for (int r = 0; r < ROWS; r++)
        L2.W[r * COLS + DEAD_COL] = 5.0f;
    o = gptq_opts(4, -1);
    lmc_solver_result res;
    check_against_naive(&L2, L2.H, &o, &res, W);
    float s;
    uint8_t z;
    lmc_quant_fit(4, 0, L2.W, COLS, &s, &z);
    ck_assert(res.q.scales[0] == s);
    lmc_solver_result_free(&res);
}
END_TEST

static int warn_count;
static char warn_msg[256];
static void on_warn(void *ctx, const char *msg)
{
    (void)ctx;
    warn_count++;
    snprintf(warn_msg, sizeof warn_msg, "%s", msg);
}

START_TEST(gptq_not_positive_definite)
{
    /* H - c v v^T with v^T H v - c = -0.05 mean(diag H): damping 0.01 cannot fix it */
    static double Hn[COLS * COLS];
    double v[COLS], nv = 0, vHv = 0, mean = 0;
    rng = 42;
    for (int i = 0; i < COLS; i++) {
        v[i] = rnd_normal();
        nv += v[i] * v[i];
        mean += L0.H[i * COLS + i] / COLS;
    }
    for (int i = 0; i < COLS; i++)
        v[i] /= sqrt(nv);
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j < COLS; j++)
            vHv += v[i] * L0.H[i * COLS + j] * v[j];
    double c = vHv + 0.05 * mean;
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j < COLS; j++)
            Hn[i * COLS + j] = L0.H[i * COLS + j] - c * v[i] * v[j];
    lmc_solver_opts o = gptq_opts(4, 32);
    o.warn = on_warn;
    warn_count = 0;
    static float W[ROWS * COLS];
    lmc_solver_result res;
    check_against_naive(&L0, Hn, &o, &res, W);
    ck_assert_int_ge(res.damp_raised, 1);
    ck_assert_int_eq(warn_count, res.damp_raised);
    ck_assert(strstr(warn_msg, "not positive definite") != NULL);
    ck_assert(fabs(res.percdamp_used - 0.01 * pow(10, res.damp_raised)) < 1e-12);
    lmc_solver_result_free(&res);

    /* no retries allowed: an error, not a silent result */
    o.damp_retries = 0;
    lmc_error err;
    memcpy(W, L0.W, sizeof W);
    ck_assert_int_eq(lmc_solve(W, ROWS, COLS, Hn, &o, &res, &err), -1);
    ck_assert(strstr(err.msg, "not positive definite") != NULL);
}
END_TEST

START_TEST(sparsegpt_unstructured)
{
    static float W[ROWS * COLS];
    for (int quant = 0; quant < 2; quant++) {
        lmc_solver_opts o = gptq_opts(quant ? 4 : 0, 32);
        o.sparsity = 0.5;
        lmc_solver_result res;
        check_against_naive(&L1, L1.H, &o, &res, W);
        ck_assert_ptr_nonnull(res.mask);
        ck_assert_int_eq(res.n_pruned, ROWS * COLS / 2);
        for (int b = 0; b < COLS / 32; b++) { /* exactly half of every block */
            int cnt = 0;
            for (int r = 0; r < ROWS; r++)
                for (int c = b * 32; c < b * 32 + 32; c++)
                    cnt += res.mask[r * COLS + c];
            ck_assert_int_eq(cnt, ROWS * 32 / 2);
        }
        for (int i = 0; i < ROWS * COLS; i++) {
            if (res.mask[i]) {
                ck_assert(W[i] == 0.0f);
                if (quant) /* joint: a pruned weight is the zero point */
                    ck_assert_uint_eq(res.q.codes[i], res.q.zeros[(i / COLS) * 3 + (i % COLS) / 32]);
            } else if (!quant) {
                ck_assert(W[i] != 0.0f);
            }
        }
        lmc_solver_result_free(&res);
    }
    /* a non-integral count: floor(32 * 32 * 0.3) = 307 per block */
    lmc_solver_opts o = gptq_opts(0, 32);
    o.sparsity = 0.3;
    lmc_solver_result res;
    check_against_naive(&L0, L0.H, &o, &res, W);
    ck_assert_int_eq(res.n_pruned, 3 * 307);
    lmc_solver_result_free(&res);
}
END_TEST

START_TEST(sparsegpt_nm_and_prune_then_quantize)
{
    static float W[ROWS * COLS], Wq[ROWS * COLS];
    static uint8_t mask[ROWS * COLS];
    lmc_solver_opts o = gptq_opts(0, 32);
    o.prune_n = 2;
    o.prune_m = 4;
    lmc_solver_result res;
    check_against_naive(&L0, L0.H, &o, &res, W);
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c += 4) {
            int z = 0;
            for (int j = 0; j < 4; j++) {
                z += res.mask[r * COLS + c + j];
                if (res.mask[r * COLS + c + j])
                    ck_assert(W[r * COLS + c + j] == 0.0f);
                else
                    ck_assert(W[r * COLS + c + j] != 0.0f);
            }
            ck_assert_int_eq(z, 2);
        }
    memcpy(mask, res.mask, sizeof mask);
    lmc_solver_result_free(&res);

    /* prune, then quantize the pruned weights keeping the mask */
    static layer P;
    P = L0;
    memcpy(P.W, W, sizeof W);
    const int cfg[][4] = {/* bits, group, act_order, static */
                          {4, 32, 0, 0}, {3, -1, 0, 0}, {4, 32, 1, 1}, {4, 16, 1, 0}};
    for (size_t k = 0; k < sizeof cfg / sizeof *cfg; k++) {
        o = gptq_opts(cfg[k][0], cfg[k][1]);
        o.act_order = cfg[k][2];
        o.static_groups = cfg[k][3];
        o.mask_in = mask;
        check_against_naive(&P, P.H, &o, &res, Wq);
        ck_assert_mem_eq(res.mask, mask, sizeof mask);
        for (int i = 0; i < ROWS * COLS; i++)
            if (mask[i])
                ck_assert(Wq[i] == 0.0f);
        lmc_solver_result_free(&res);
    }

    /* N:M with joint quantization */
    o = gptq_opts(4, 32);
    o.prune_n = 1;
    o.prune_m = 4;
    check_against_naive(&L1, L1.H, &o, &res, W);
    ck_assert_int_eq(res.n_pruned, ROWS * COLS / 4);
    for (int i = 0; i < ROWS * COLS; i++)
        if (res.mask[i])
            ck_assert(W[i] == 0.0f);
    lmc_solver_result_free(&res);
}
END_TEST

START_TEST(shared_hinv_and_errors)
{
    lmc_error err;
    lmc_solver_opts o = gptq_opts(4, 32);
    o.act_order = 1;
    lmc_hinv hv;
    ck_assert_int_eq(lmc_hinv_prepare(L0.H, COLS, &o, &hv, &err), 0);
    static float A[ROWS * COLS], B[ROWS * COLS];
    lmc_solver_result ra, rb;
    for (int pass = 0; pass < 2; pass++) { /* the same prepared inverse for two weights */
        const float *src = pass ? L1.W : L0.W;
        memcpy(A, src, sizeof A);
        memcpy(B, src, sizeof B);
        ck_assert_int_eq(lmc_solver_run(&hv, A, ROWS, &o, &ra, &err), 0);
        ck_assert_int_eq(lmc_solve(B, ROWS, COLS, L0.H, &o, &rb, &err), 0);
        ck_assert_mem_eq(A, B, sizeof A);
        lmc_solver_result_free(&ra);
        lmc_solver_result_free(&rb);
    }
    memcpy(A, L0.W, sizeof A);
    o.act_order = 0; /* prepared with act-order */
    ck_assert_int_eq(lmc_solver_run(&hv, A, ROWS, &o, &ra, &err), -1);
    lmc_hinv_free(&hv);

    o = gptq_opts(4, 32);
    o.prune_n = 2;
    o.prune_m = 4;
    o.act_order = 1;
    ck_assert_int_eq(lmc_solve(A, ROWS, COLS, L0.H, &o, &ra, &err), -1);
    ck_assert(strstr(err.msg, "act-order") != NULL);
    o.act_order = 0;
    o.prune_m = 5; /* 96 % 5 != 0 */
    ck_assert_int_eq(lmc_solve(A, ROWS, COLS, L0.H, &o, &ra, &err), -1);
    o = gptq_opts(9, 32);
    ck_assert_int_eq(lmc_solve(A, ROWS, COLS, L0.H, &o, &ra, &err), -1);
    ck_assert(strstr(err.msg, "bits") != NULL);
    o = gptq_opts(4, 0);
    ck_assert_int_eq(lmc_solve(A, ROWS, COLS, L0.H, &o, &ra, &err), -1);
    o = gptq_opts(4, 32);
    o.sparsity = 0.5;
    o.prune_n = 2;
    o.prune_m = 4;
    ck_assert_int_eq(lmc_solve(A, ROWS, COLS, L0.H, &o, &ra, &err), -1);
    o = gptq_opts(4, 32);
    o.sparsity = 1.0;
    ck_assert_int_eq(lmc_solve(A, ROWS, COLS, L0.H, &o, &ra, &err), -1);
    /* non-finite inputs */
    static double Hb[COLS * COLS];
    memcpy(Hb, L0.H, sizeof Hb);
    Hb[5 * COLS + 9] = NAN;
    o = gptq_opts(4, 32);
    ck_assert_int_eq(lmc_solve(A, ROWS, COLS, Hb, &o, &ra, &err), -1);
    ck_assert(strstr(err.msg, "(5, 9)") != NULL);
    A[3] = INFINITY;
    ck_assert_int_eq(lmc_solve(A, ROWS, COLS, L0.H, &o, &ra, &err), -1);
    ck_assert(strstr(err.msg, "weight (0, 3)") != NULL);
}
END_TEST

int main(void)
{
    setup();
    Suite *s = suite_create("solver");
    TCase *tc = tcase_create("solver");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gptq_matches_naive_and_beats_rtn);
    tcase_add_test(tc, gptq_act_order_and_static_groups);
    tcase_add_test(tc, gptq_dead_column);
    tcase_add_test(tc, gptq_not_positive_definite);
    tcase_add_test(tc, sparsegpt_unstructured);
    tcase_add_test(tc, sparsegpt_nm_and_prune_then_quantize);
    tcase_add_test(tc, shared_hinv_and_errors);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
