/* CPU reference forward pass: fp32 everywhere. Linears (and the LM head) go
 * through OpenBLAS sgemm, x[n][in] . W^T, always called from the calling
 * thread. Attention, activations and the log-softmax run on a small pool of
 * our own threads (below), never inside an sgemm.
 *
 * Why our own pool and not OpenMP: OpenBLAS (the pthread build) keeps its
 * workers spinning for a while after each call, and libgomp does the same
 * after each parallel region unless OMP_WAIT_POLICY=passive is set before
 * the process starts. A forward pass alternates the two dozens of times per
 * block, and on a loaded machine the spinners took the cores from the
 * threads with work (2-4x slower). The pool's threads block on a condition
 * variable as soon as their tasks are done.
 *
 * Attention: tasks are (head, block of QB query rows); each holds QB x n
 * scores at most, computed by register-tiled kernels on keys packed per kv
 * head, then a causal softmax and the probability-weighted values. */
#pragma GCC optimize("fp-contract=fast") /* let a*b+c become FMA in the kernels */

#include "forward.h"
#include "forward_ops.h"

#include "../core/threads.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hot kernels are compiled for AVX-512, AVX2+FMA and baseline x86-64 and
 * picked at load time: the build itself targets baseline x86-64. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LMC_NO_CLONES)
#define LMC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LMC_CLONES
#endif

#define QB 32        /* query rows per attention task */
#define JB 32        /* keys per score tile (two 16-float vectors) */

typedef float v16f __attribute__((vector_size(64)));
#define LD16(p) ({ v16f v_; memcpy(&v_, (p), sizeof v_); v_; })
#define ST16(p, v) do { v16f v_ = (v); memcpy((p), &v_, sizeof v_); } while (0)

struct lmc_scratch {
    lmc_config cfg;
    int max_tokens;
    int lds;      /* row length of score rows, a multiple of JB */
    int nthr;     /* attention buffers exist for this many threads */
    float *x;     /* [T][H] residual stream (window_nll) */
    float *xn;    /* [T][H] normalized input of a site */
    float *q;     /* [T][nh*hd] */
    float *k, *v; /* [T][nkv*hd] */
    float *kp;    /* [nkv][lds/JB][hd][JB] keys packed in tiles per kv head */
    float *vp;    /* [nkv][T][hd] values per kv head */
    float *ctx;   /* [T][nh*hd] */
    float *f1, *f2; /* [T][ffn] */
    float *att;   /* [nthr][QB][lds] scores, then probabilities */
    int head_rows; /* logits rows computed per sgemm when scoring */
    float *logits; /* [head_rows][vocab] */
    double *row_nll; /* [head_rows] */
    float *hw;       /* a decoded head: [head_vc][hidden] (allocated when first needed) */
    int head_vc;     /* vocab rows of the head decoded at a time */
    float *rope_cos, *rope_sin; /* [T][hd/2] */
};

/* ---- thread pool ---- */

/* Tasks 0..ntask-1 of fn are taken one at a time by the calling thread
 * (worker 0) and the pool's threads (workers 1..). One dispatch at a time. */
typedef void (*task_fn)(void *ctx, int task, int worker);

static struct pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t *th;
    int nth;             /* helper threads running */
    int want;            /* helper threads asked for (creation may fall short) */
    unsigned gen;        /* dispatch generation */
    int busy;            /* helpers still in this generation */
    task_fn fn;
    void *ctx;
    int ntask, nworkers;
    atomic_int next;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};
static pthread_mutex_t pool_dispatch = PTHREAD_MUTEX_INITIALIZER;

static void pool_work(int worker)
{
    if (worker >= pool.nworkers)
        return;
    for (int t; (t = atomic_fetch_add(&pool.next, 1)) < pool.ntask;)
        pool.fn(pool.ctx, t, worker);
}

static void *pool_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned seen = 0;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.gen == seen)
            pthread_cond_wait(&pool.go, &pool.mu);
        seen = pool.gen;
        if (!pool.fn) /* shutdown */
            break;
        pthread_mutex_unlock(&pool.mu);
        pool_work(id);
        pthread_mutex_lock(&pool.mu);
        if (--pool.busy == 0)
            pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

/* (Re)size to nthreads - 1 helpers; stopping old helpers first. */
static void pool_resize(int nth)
{
    if (pool.th) {
        pthread_mutex_lock(&pool.mu);
        pool.fn = NULL;
        pool.gen++;
        pthread_cond_broadcast(&pool.go);
        pthread_mutex_unlock(&pool.mu);
        for (int i = 0; i < pool.nth; i++)
            pthread_join(pool.th[i], NULL);
        free(pool.th);
        pool.th = NULL;
    }
    pool.nth = 0;
    pool.want = nth;
    if (nth <= 0 || !(pool.th = malloc((size_t)nth * sizeof *pool.th)))
        return;
    for (int i = 0; i < nth; i++) {
        if (pthread_create(&pool.th[i], NULL, pool_main, (void *)(intptr_t)(i + 1)) != 0)
            break; /* fewer helpers: still correct */
        pool.nth++;
    }
}

/* Run tasks on up to max_workers threads (the caller included). */
static void pool_run(task_fn fn, void *ctx, int ntask, int max_workers)
{
    pthread_mutex_lock(&pool_dispatch);
    int want = lmc_threads_get() - 1;
    if (want != pool.want)
        pool_resize(want);
    pool.ntask = ntask;
    pool.nworkers = max_workers;
    atomic_store(&pool.next, 0);
    if (pool.nth > 0 && ntask > 1 && max_workers > 1) {
        pthread_mutex_lock(&pool.mu);
        pool.fn = fn;
        pool.ctx = ctx;
        pool.busy = pool.nth;
        pool.gen++;
        pthread_cond_broadcast(&pool.go);
        pthread_mutex_unlock(&pool.mu);
        pool_work(0);
        pthread_mutex_lock(&pool.mu);
        while (pool.busy > 0)
            pthread_cond_wait(&pool.done, &pool.mu);
        pthread_mutex_unlock(&pool.mu);
    } else {
        pool.fn = fn;
        pool.ctx = ctx;
        pool_work(0);
    }
    pthread_mutex_unlock(&pool_dispatch);
}

/* Rows 0..n-1 in chunks, one task per chunk. */
typedef struct rows_job {
    void (*fn)(void *ctx, int r0, int r1);
    void *ctx;
    int n, chunk;
} rows_job;

static void rows_task(void *ctx, int task, int worker)
{
    (void)worker;
    rows_job *j = ctx;
    int r0 = task * j->chunk, r1 = r0 + j->chunk < j->n ? r0 + j->chunk : j->n;
    j->fn(j->ctx, r0, r1);
}

/* About 4 tasks per thread, at least min_rows rows each. */
static void pool_rows(void (*fn)(void *, int, int), void *ctx, int n, int min_rows)
{
    int nthr = lmc_threads_get();
    int chunk = (n + 4 * nthr - 1) / (4 * nthr);
    chunk = chunk < min_rows ? min_rows : chunk;
    rows_job j = {fn, ctx, n, chunk};
    pool_run(rows_task, &j, (n + chunk - 1) / chunk, nthr);
}

/* ---- elementwise math ---- */

/* exp for x in any range, ~1 ulp (Cephes polynomial after Cody-Waite range
 * reduction), written so that it vectorizes inside simd loops: libm's expf
 * does not, and attention needs about n^2/2 of them per head and layer. */
static inline float fast_expf(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    /* round to nearest via the 1.5*2^23 trick (no fast-math here) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } u;
    u.i = ((int32_t)n + 127) << 23;
    return p * u.f;
}

LMC_CLONES void lmc_op_silu_mul(float *a, const float *b, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        a[i] = a[i] / (1.0f + fast_expf(-a[i])) * b[i];
}

LMC_CLONES void lmc_op_act(float *a, size_t n, lmc_act act)
{
    switch (act) {
    case LMC_ACT_SILU:
#pragma omp simd
        for (size_t i = 0; i < n; i++)
            a[i] = a[i] / (1.0f + fast_expf(-a[i]));
        break;
    case LMC_ACT_RELU:
#pragma omp simd
        for (size_t i = 0; i < n; i++)
            a[i] = a[i] > 0.0f ? a[i] : 0.0f;
        break;
    case LMC_ACT_GELU_NEW:
        /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), tanh(u) = 1 - 2/(1+e^2u) */
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float x = a[i];
            float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            float t = 1.0f - 2.0f / (1.0f + fast_expf(2.0f * u));
            a[i] = 0.5f * x * (1.0f + t);
        }
        break;
    case LMC_ACT_GELU:
        for (size_t i = 0; i < n; i++)
            a[i] = 0.5f * a[i] * (1.0f + erff(a[i] * 0.70710678118654752f));
        break;
    }
}

/* RMSNorm as Hugging Face computes it in fp32: x * rsqrt(mean(x^2) + eps) * w.
 * LayerNorm: (x - mean) / sqrt(var + eps) * w + b, biased variance. */
void lmc_op_norm(const float *x, float *y, int n, int H, const float *w, const float *b, int rms,
                 double eps)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * H;
        float *yi = y + (size_t)i * H;
        if (rms) {
            double ss = 0;
            for (int j = 0; j < H; j++)
                ss += (double)xi[j] * xi[j];
            float var = (float)(ss / H);
            float r = 1.0f / sqrtf(var + (float)eps);
            for (int j = 0; j < H; j++)
                yi[j] = w[j] * (xi[j] * r);
        } else {
            double mu = 0, var = 0;
            for (int j = 0; j < H; j++)
                mu += xi[j];
            mu /= H;
            for (int j = 0; j < H; j++) {
                double d = xi[j] - mu;
                var += d * d;
            }
            var /= H;
            float r = (float)(1.0 / sqrt(var + eps)), m = (float)mu;
            for (int j = 0; j < H; j++)
                yi[j] = (xi[j] - m) * r * w[j] + (b ? b[j] : 0.0f);
        }
    }
}

/* ---- the same, spread over the pool by rows ---- */

typedef struct norm_job {
    const float *x, *w, *b;
    float *y;
    int H, rms;
    double eps;
} norm_job;

static void norm_rows(void *ctx, int r0, int r1)
{
    norm_job *j = ctx;
    lmc_op_norm(j->x + (size_t)r0 * j->H, j->y + (size_t)r0 * j->H, r1 - r0, j->H, j->w, j->b,
                j->rms, j->eps);
}

static void norm_par(const float *x, float *y, int n, int H, const float *w, const float *b,
                     int rms, double eps)
{
    norm_job j = {x, w, b, y, H, rms, eps};
    pool_rows(norm_rows, &j, n, 16);
}

typedef struct ew_job {
    float *a;
    const float *b; /* silu(a) * b when not NULL */
    int cols;
    lmc_act act;
} ew_job;

static void act_rows(void *ctx, int r0, int r1)
{
    ew_job *j = ctx;
    size_t off = (size_t)r0 * j->cols, cnt = (size_t)(r1 - r0) * j->cols;
    if (j->b && j->act == LMC_ACT_SILU) {
        lmc_op_silu_mul(j->a + off, j->b + off, cnt);
    } else {
        lmc_op_act(j->a + off, cnt, j->act);
        if (j->b)
            for (size_t i = off; i < off + cnt; i++)
                j->a[i] *= j->b[i];
    }
}

/* a = act(a) (* b) on [n][cols] */
static void act_par(float *a, const float *b, int n, int cols, lmc_act act)
{
    ew_job j = {a, b, cols, act};
    pool_rows(act_rows, &j, n, 16);
}

static void bias_rows(void *ctx, int r0, int r1)
{
    ew_job *j = ctx;
    for (int i = r0; i < r1; i++) {
        float *yi = j->a + (size_t)i * j->cols;
        for (int k = 0; k < j->cols; k++)
            yi[k] += j->b[k];
    }
}

/* y[n][out] (=|+=) x[n][in] . W^T (+ b). Serial caller only (see top). */
static void linear(const lmc_linear *L, const float *x, int n, float *y, int accumulate)
{
    if (L->kstate) /* encodings with a kernel of their own (W8A8, low rank, ...) */
        L->kernel->kernel_apply(L->kstate, x, n, y, accumulate);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)L->out, (int)L->in, 1.0f,
                    x, (int)L->in, L->w, (int)L->in, accumulate ? 1.0f : 0.0f, y, (int)L->out);
    if (L->b) {
        ew_job j = {y, L->b, (int)L->out, LMC_ACT_RELU};
        pool_rows(bias_rows, &j, n, 32);
    }
}

/* ---- RoPE ---- */

/* inv_freq as Hugging Face computes it (fp32), with linear or llama3
 * scaling applied to the frequencies. */
void lmc_op_rope_inv_freq(const lmc_config *c, float *inv)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        inv[i] = 1.0f / powf((float)c->rope_theta, e);
    }
    if (c->rope_type == LMC_ROPE_LINEAR && c->rope_factor > 0) {
        for (int i = 0; i < half; i++)
            inv[i] = (float)(inv[i] / c->rope_factor);
    } else if (c->rope_type == LMC_ROPE_LLAMA3) {
        double factor = c->rope_factor, lo = c->rope_low_freq_factor,
               hi = c->rope_high_freq_factor, old = c->rope_orig_max_pos;
        double lo_wl = old / lo, hi_wl = old / hi;
        for (int i = 0; i < half; i++) {
            double f = inv[i], wl = 2 * M_PI / f, nf;
            if (wl < hi_wl)
                nf = f; /* high frequency: kept */
            else if (wl > lo_wl)
                nf = f / factor; /* low frequency: scaled */
            else {
                double sm = (old / wl - lo) / (hi - lo);
                nf = (1 - sm) * f / factor + sm * f;
            }
            inv[i] = (float)nf;
        }
    }
}

int lmc_op_rope_tables(const lmc_config *c, int T, float **cs, float **sn)
{
    int half = c->head_dim / 2;
    float *inv = malloc((size_t)half * sizeof *inv);
    *cs = malloc((size_t)T * half * sizeof **cs);
    *sn = malloc((size_t)T * half * sizeof **sn);
    if (!inv || !*cs || !*sn) {
        free(inv);
        return -1;
    }
    lmc_op_rope_inv_freq(c, inv);
    for (int p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv[i]; /* the angle is an fp32 product in HF too */
            (*cs)[(size_t)p * half + i] = (float)cos((double)a);
            (*sn)[(size_t)p * half + i] = (float)sin((double)a);
        }
    free(inv);
    return 0;
}

/* rotate_half convention: pairs (i, i + hd/2). x is [n][nheads*hd]. */
void lmc_op_rope_apply(float *x, int n, int nheads, int hd, const float *cs, const float *sn)
{
    int half = hd / 2;
    for (int p = 0; p < n; p++) {
        const float *c = cs + (size_t)p * half, *s = sn + (size_t)p * half;
        for (int h = 0; h < nheads; h++) {
            float *a = x + ((size_t)p * nheads + h) * hd, *b = a + half;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float x1 = a[i], x2 = b[i];
                a[i] = x1 * c[i] - x2 * s[i];
                b[i] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

typedef struct rope_job {
    float *x;
    int nheads, hd;
    const float *cs, *sn;
} rope_job;

static void rope_rows(void *ctx, int r0, int r1)
{
    rope_job *j = ctx;
    int half = j->hd / 2;
    lmc_op_rope_apply(j->x + (size_t)r0 * j->nheads * j->hd, r1 - r0, j->nheads, j->hd,
                      j->cs + (size_t)r0 * half, j->sn + (size_t)r0 * half);
}

static void rope_par(float *x, int n, int nheads, int hd, const float *cs, const float *sn)
{
    rope_job j = {x, nheads, hd, cs, sn};
    pool_rows(rope_rows, &j, n, 32);
}

/* ---- attention ---- */

/* One (head, query block) task: rows i0..i1-1 attend to keys 0..i.
 * q rows have stride ldq; kp: this kv head's key tiles [lds/JB][hd][JB];
 * vp: its values [T][hd]; ctx rows stride ldc; S: [QB][lds] scratch. */
LMC_CLONES static void attn_rows(const float *q, int ldq, const float *kp, const float *vp,
                                 float *ctx, int ldc, int i0, int i1, int hd, float scale,
                                 float *S, int lds)
{
    int nr = i1 - i0;
    float inv_sum[QB];
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const float *qr[4];
        for (int t = 0; t < 4; t++)
            qr[t] = q + (size_t)(i0 + (r0 + t < nr ? r0 + t : nr - 1)) * ldq;
        int jend = i0 + (r0 + 4 < nr ? r0 + 4 : nr); /* keys this row group sees */
        /* scores: 4 rows x JB keys per tile, accumulated over d in registers */
        for (int j0 = 0; j0 < jend; j0 += JB) {
            v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
            const float *kt = kp + (size_t)(j0 / JB) * hd * JB;
            for (int d = 0; d < hd; d++, kt += JB) {
                v16f k0 = LD16(kt), k1 = LD16(kt + 16);
                float q0 = qr[0][d], q1 = qr[1][d], q2 = qr[2][d], q3 = qr[3][d];
                a0 += q0 * k0; b0 += q0 * k1;
                a1 += q1 * k0; b1 += q1 * k1;
                a2 += q2 * k0; b2 += q2 * k1;
                a3 += q3 * k0; b3 += q3 * k1;
            }
            float *s0 = S + (size_t)r0 * lds + j0;
            ST16(s0, a0 * scale); ST16(s0 + 16, b0 * scale);
            if (r0 + 1 < nr) { ST16(s0 + lds, a1 * scale); ST16(s0 + lds + 16, b1 * scale); }
            if (r0 + 2 < nr) { ST16(s0 + 2 * lds, a2 * scale); ST16(s0 + 2 * lds + 16, b2 * scale); }
            if (r0 + 3 < nr) { ST16(s0 + 3 * lds, a3 * scale); ST16(s0 + 3 * lds + 16, b3 * scale); }
        }
        /* causal softmax of each row over keys 0..i, unnormalized (1/sum is
         * applied to the context); zeros up to jend so that the context
         * kernel can run the four rows together */
        for (int t = 0; t < 4 && r0 + t < nr; t++) {
            float *sr = S + (size_t)(r0 + t) * lds;
            int len = i0 + r0 + t + 1;
            float m = sr[0];
#pragma omp simd reduction(max : m)
            for (int j = 0; j < len; j++)
                m = sr[j] > m ? sr[j] : m;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < len; j++) {
                float e = fast_expf(sr[j] - m);
                sr[j] = e;
                sum += e;
            }
            for (int j = len; j < jend; j++)
                sr[j] = 0.0f;
            inv_sum[r0 + t] = 1.0f / sum;
        }
        /* context: ctx[i] = sum_j p[i][j] v[j] / sum, 4 rows x 32 (or 16) dims */
        const float *pr[4];
        for (int t = 0; t < 4; t++)
            pr[t] = S + (size_t)(r0 + t < nr ? r0 + t : nr - 1) * lds;
        int d0 = 0;
        for (; d0 + 32 <= hd; d0 += 32) {
            v16f c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, e0 = {0}, e1 = {0}, e2 = {0}, e3 = {0};
            const float *vr = vp + d0;
            for (int j = 0; j < jend; j++, vr += hd) {
                v16f v0 = LD16(vr), v1 = LD16(vr + 16);
                float p0 = pr[0][j], p1 = pr[1][j], p2 = pr[2][j], p3 = pr[3][j];
                c0 += p0 * v0; e0 += p0 * v1;
                c1 += p1 * v0; e1 += p1 * v1;
                c2 += p2 * v0; e2 += p2 * v1;
                c3 += p3 * v0; e3 += p3 * v1;
            }
            v16f cs[4] = {c0, c1, c2, c3}, es[4] = {e0, e1, e2, e3};
            for (int t = 0; t < 4 && r0 + t < nr; t++) {
                float *cr = ctx + (size_t)(i0 + r0 + t) * ldc + d0;
                ST16(cr, cs[t] * inv_sum[r0 + t]);
                ST16(cr + 16, es[t] * inv_sum[r0 + t]);
            }
        }
        for (; d0 + 16 <= hd; d0 += 16) {
            v16f c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
            const float *vr = vp + d0;
            for (int j = 0; j < jend; j++, vr += hd) {
                v16f v0 = LD16(vr);
                c0 += pr[0][j] * v0;
                c1 += pr[1][j] * v0;
                c2 += pr[2][j] * v0;
                c3 += pr[3][j] * v0;
            }
            v16f cs[4] = {c0, c1, c2, c3};
            for (int t = 0; t < 4 && r0 + t < nr; t++)
                ST16(ctx + (size_t)(i0 + r0 + t) * ldc + d0, cs[t] * inv_sum[r0 + t]);
        }
        for (; d0 < hd; d0++) /* head_dim not a multiple of 16 */
            for (int t = 0; t < 4 && r0 + t < nr; t++) {
                float acc = 0.0f;
                for (int j = 0; j < jend; j++)
                    acc += pr[t][j] * vp[(size_t)j * hd + d0];
                ctx[(size_t)(i0 + r0 + t) * ldc + d0] = acc * inv_sum[r0 + t];
            }
    }
}

typedef struct attn_job {
    const lmc_config *c;
    lmc_scratch *s;
    int n, nqb;
} attn_job;

/* Pack keys into [kvh][j/JB][d][JB] tiles and values into [kvh][j][hd]. */
static void pack_kv_rows(void *ctx, int r0, int r1)
{
    attn_job *a = ctx;
    const lmc_config *c = a->c;
    lmc_scratch *s = a->s;
    int hd = c->head_dim, kvd = c->n_kv_heads * hd;
    for (int j = r0; j < r1; j++)
        for (int g = 0; g < c->n_kv_heads; g++) {
            const float *kr = s->k + (size_t)j * kvd + (size_t)g * hd;
            float *kt = s->kp + ((size_t)g * (s->lds / JB) + j / JB) * hd * JB + j % JB;
            for (int d = 0; d < hd; d++)
                kt[(size_t)d * JB] = kr[d];
            memcpy(s->vp + ((size_t)g * s->max_tokens + j) * hd, s->v + (size_t)j * kvd + g * hd,
                   (size_t)hd * sizeof(float));
        }
}

static void attn_task(void *ctx, int t, int worker)
{
    attn_job *a = ctx;
    const lmc_config *c = a->c;
    lmc_scratch *s = a->s;
    int nh = c->n_heads, hd = c->head_dim, qd = nh * hd;
    int qb = a->nqb - 1 - t / nh, h = t % nh; /* longest rows first */
    int g = h / (nh / c->n_kv_heads), i0 = qb * QB, i1 = i0 + QB < a->n ? i0 + QB : a->n;
    attn_rows(s->q + (size_t)h * hd, qd, s->kp + (size_t)g * (s->lds / JB) * hd * JB,
              s->vp + (size_t)g * s->max_tokens * hd, s->ctx + (size_t)h * hd, qd, i0, i1, hd,
              1.0f / sqrtf((float)hd), s->att + (size_t)worker * QB * s->lds, s->lds);
}

static void attention(const lmc_config *c, lmc_scratch *s, int n)
{
    attn_job a = {c, s, n, (n + QB - 1) / QB};
    pool_rows(pack_kv_rows, &a, n, 64);
    pool_run(attn_task, &a, c->n_heads * a.nqb, s->nthr);
}

void lmc_op_attention(const lmc_config *c, lmc_scratch *s, const float *q, const float *k,
                      const float *v, float *ctx, int n)
{
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    memcpy(s->q, q, (size_t)n * qd * sizeof(float));
    memcpy(s->k, k, (size_t)n * kvd * sizeof(float));
    memcpy(s->v, v, (size_t)n * kvd * sizeof(float));
    attention(c, s, n);
    memcpy(ctx, s->ctx, (size_t)n * qd * sizeof(float));
}

/* ---- scratch ---- */

lmc_scratch *lmc_scratch_new(const lmc_config *cfg, int max_tokens)
{
    if (max_tokens <= 0)
        return NULL;
    lmc_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->max_tokens = max_tokens;
    s->lds = (max_tokens + JB - 1) / JB * JB;
    s->nthr = lmc_threads_get();
    size_t T = (size_t)max_tokens, H = cfg->hidden, qd = (size_t)cfg->n_heads * cfg->head_dim,
           kvd = (size_t)cfg->n_kv_heads * cfg->head_dim, F = cfg->ffn;
    s->x = malloc(T * H * sizeof(float));
    s->xn = malloc(T * H * sizeof(float));
    s->q = malloc(T * qd * sizeof(float));
    s->k = malloc(T * kvd * sizeof(float));
    s->v = malloc(T * kvd * sizeof(float));
    /* zeroed: score tiles read (and discard) keys past the window's end */
    s->kp = calloc(kvd * (size_t)s->lds, sizeof(float));
    s->vp = malloc(T * kvd * sizeof(float));
    s->ctx = malloc(T * qd * sizeof(float));
    s->f1 = malloc(T * F * sizeof(float));
    s->f2 = malloc(T * F * sizeof(float));
    s->att = malloc((size_t)s->nthr * QB * (size_t)s->lds * sizeof(float));
    /* about 8 MB of logits at a time, at least 32 rows */
    /* up to 256 MB of logits: a head decoded on the fly is decoded once
     * per chunk of rows (and the whole-model path uses the same chunks) */
    s->head_rows = (int)(((size_t)64 << 20) / (size_t)cfg->vocab);
    s->head_rows = s->head_rows < 32 ? 32 : s->head_rows;
    s->head_rows = s->head_rows > max_tokens ? max_tokens : s->head_rows;
    /* a head decoded on the fly: 16 MB of it at a time (LMC_EVAL_HEAD_VC:
     * another count of vocab rows, to test the chunking on small models) */
    const char *vc = getenv("LMC_EVAL_HEAD_VC");
    s->head_vc = vc && atoi(vc) > 0 ? atoi(vc) : (int)(((size_t)4 << 20) / H);
    s->head_vc = s->head_vc < 64 ? 64 : s->head_vc;
    s->head_vc = s->head_vc > cfg->vocab ? cfg->vocab : s->head_vc;
    s->logits = malloc((size_t)s->head_rows * (size_t)cfg->vocab * sizeof(float));
    s->row_nll = malloc((size_t)s->head_rows * sizeof(double));
    int ok = s->x && s->xn && s->q && s->k && s->v && s->kp && s->vp && s->ctx && s->f1 && s->f2 &&
             s->att && s->logits && s->row_nll;
    if (ok && cfg->rope_type != LMC_ROPE_NONE)
        ok = lmc_op_rope_tables(cfg, max_tokens, &s->rope_cos, &s->rope_sin) == 0;
    if (!ok) {
        lmc_scratch_free(s);
        return NULL;
    }
    return s;
}

void lmc_scratch_free(lmc_scratch *s)
{
    if (!s)
        return;
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->kp);
    free(s->vp);
    free(s->ctx);
    free(s->f1);
    free(s->f2);
    free(s->att);
    free(s->logits);
    free(s->row_nll);
    free(s->hw);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s);
}

/* ---- the forward ---- */

static int has_learned_pos(const lmc_config *c) { return c->learned_pos; }

int lmc_forward_embed(const lmc_weights *w, const int32_t *ids, int n, float *x, lmc_error *err)
{
    const lmc_config *c = w->cfg;
    if (n <= 0)
        return lmc_fail(err, "empty window");
    if (has_learned_pos(c) && n > c->max_pos)
        return lmc_fail(err, "window of %d tokens exceeds the model's %d learned positions", n,
                        c->max_pos);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return lmc_fail(err, "token id %d at position %d is outside the vocabulary (%d)",
                            (int)ids[i], i, c->vocab);
    size_t H = (size_t)c->hidden;
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * H;
        if (w->embed)
            memcpy(xi, w->embed + (size_t)ids[i] * H, H * sizeof(float));
        else if (lmc_tensor_rows_f32(w->embed_src, ids[i], 1, xi, err) < 0)
            return -1;
        if (w->pos_embed) {
            const float *p = w->pos_embed + (size_t)(i + c->pos_offset) * H;
            for (size_t j = 0; j < H; j++)
                xi[j] += p[j];
        }
    }
    return 0;
}

int lmc_forward_block(const lmc_weights *w, int layer, const lmc_block_w *bw, float *x, int n,
                      lmc_scratch *s, lmc_observer_fn obs, void *obs_ctx, lmc_error *err)
{
    const lmc_config *c = w->cfg;
    if (n <= 0 || n > s->max_tokens)
        return lmc_fail(err, "block %d: %d tokens, scratch holds %d", layer, n, s->max_tokens);
    int H = c->hidden, F = c->ffn;

    norm_par(x, s->xn, n, H, bw->attn_norm_w, bw->attn_norm_b, c->norm_is_rms, c->norm_eps);
    if (obs)
        obs(obs_ctx, layer, LMC_SITE_ATTN_IN, s->xn, n, H);
    linear(&bw->q, s->xn, n, s->q, 0);
    linear(&bw->k, s->xn, n, s->k, 0);
    linear(&bw->v, s->xn, n, s->v, 0);
    if (c->rope_type != LMC_ROPE_NONE) {
        rope_par(s->q, n, c->n_heads, c->head_dim, s->rope_cos, s->rope_sin);
        rope_par(s->k, n, c->n_kv_heads, c->head_dim, s->rope_cos, s->rope_sin);
    }
    attention(c, s, n);
    if (obs)
        obs(obs_ctx, layer, LMC_SITE_ATTN_OUT, s->ctx, n, bw->o.in);
    linear(&bw->o, s->ctx, n, x, 1); /* residual: x += o(ctx) */

    norm_par(x, s->xn, n, H, bw->ffn_norm_w, bw->ffn_norm_b, c->norm_is_rms, c->norm_eps);
    if (obs)
        obs(obs_ctx, layer, LMC_SITE_FFN_IN, s->xn, n, H);
    linear(&bw->up, s->xn, n, s->f2, 0);
    if (bw->gate.w || bw->gate.kstate) {
        linear(&bw->gate, s->xn, n, s->f1, 0);
        act_par(s->f1, s->f2, n, F, c->act);
    } else {
        float *tmp = s->f1; /* activation output goes to f1 for the observer */
        s->f1 = s->f2;
        s->f2 = tmp;
        act_par(s->f1, NULL, n, F, c->act);
    }
    if (obs)
        obs(obs_ctx, layer, LMC_SITE_FFN_MID, s->f1, n, F);
    linear(&bw->down, s->f1, n, x, 1); /* residual: x += down(...) */
    return 0;
}

/* The head's logits y[n][vocab] of xn, head_vc vocab rows at a time, each
 * piece one sgemm into its columns of y; a head with no fp32 copy (w NULL:
 * streaming) is decoded piece by piece. Both cases run the same sgemm
 * shapes, so a streamed evaluation gives the same logits bit for bit. */
static int head_linear(const lmc_weights *w, const float *xn, int n, float *y, lmc_scratch *s,
                       lmc_error *err)
{
    const lmc_linear *L = &w->head;
    if (L->kstate) {
        linear(L, xn, n, y, 0);
        return 0;
    }
    int V = (int)L->out, H = (int)L->in;
    if (!L->w && !s->hw && !(s->hw = malloc((size_t)s->head_vc * (size_t)H * sizeof(float))))
        return lmc_fail(err, "out of memory for %d rows of the head", s->head_vc);
    for (int v0 = 0; v0 < V; v0 += s->head_vc) {
        int nv = V - v0 < s->head_vc ? V - v0 : s->head_vc;
        const float *hw = L->w ? L->w + (size_t)v0 * (size_t)H : s->hw;
        if (!L->w && lmc_tensor_rows_f32(L->src, v0, nv, s->hw, err) < 0)
            return -1;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nv, H, 1.0f, xn, H, hw, H,
                    0.0f, y + v0, V);
        if (!L->w) { /* nor its encoded pages: read again from the page cache next time */
            size_t rb = L->src->nbytes / (size_t)V;
            lmc_model_release_pages(w->model, L->src->data + (size_t)v0 * rb, (size_t)nv * rb);
        }
    }
    if (L->b) {
        ew_job j = {y, L->b, V, LMC_ACT_RELU};
        pool_rows(bias_rows, &j, n, 32);
    }
    return 0;
}

int lmc_forward_head(const lmc_weights *w, const float *x, int n, float *logits, lmc_scratch *s,
                     lmc_error *err)
{
    const lmc_config *c = w->cfg;
    if (n <= 0 || n > s->max_tokens)
        return lmc_fail(err, "head: %d tokens, scratch holds %d", n, s->max_tokens);
    norm_par(x, s->xn, n, c->hidden, w->final_norm_w, w->final_norm_b, c->norm_is_rms,
             c->norm_eps);
    return head_linear(w, s->xn, n, logits, s, err);
}

/* -log softmax(l)[target], exponentials summed in double. */
LMC_CLONES double lmc_op_row_nll(const float *l, int V, int target)
{
    float m = l[0];
#pragma omp simd reduction(max : m)
    for (int j = 0; j < V; j++)
        m = l[j] > m ? l[j] : m;
    /* float partial sums over short blocks (vectorized), the blocks in double */
    double sum = 0.0;
    for (int j0 = 0; j0 < V; j0 += 512) {
        int j1 = j0 + 512 < V ? j0 + 512 : V;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (int j = j0; j < j1; j++)
            part += fast_expf(l[j] - m);
        sum += part;
    }
    return log(sum) + (double)m - (double)l[target];
}

typedef struct nll_job {
    const float *logits;
    const int32_t *targets; /* targets[r] = ids[row + 1] */
    double *out;
    int V, last; /* rows >= last have no next token */
} nll_job;

static void nll_rows(void *ctx, int r0, int r1)
{
    nll_job *j = ctx;
    for (int r = r0; r < r1 && r < j->last; r++)
        j->out[r] = lmc_op_row_nll(j->logits + (size_t)r * j->V, j->V, j->targets[r]);
}

int lmc_forward_window_nll(const lmc_weights *w, const int32_t *ids, int n, lmc_scratch *s,
                           double *nll, float *logits_out, lmc_error *err)
{
    const lmc_config *c = w->cfg;
    *nll = 0;
    if (n < 1 || n > s->max_tokens)
        return lmc_fail(err, "window of %d tokens, scratch holds %d", n, s->max_tokens);
    if (lmc_forward_embed(w, ids, n, s->x, err) < 0)
        return -1;
    for (int l = 0; l < c->n_layers; l++)
        if (lmc_forward_block(w, l, &w->blocks[l], s->x, n, s, NULL, NULL, err) < 0)
            return -1;
    return lmc_forward_head_nll(w, ids, n, s->x, s, nll, logits_out, err);
}

int lmc_forward_head_nll(const lmc_weights *w, const int32_t *ids, int n, const float *x,
                         lmc_scratch *s, double *nll, float *logits_out, lmc_error *err)
{
    const lmc_config *c = w->cfg;
    *nll = 0;
    if (n < 1 || n > s->max_tokens)
        return lmc_fail(err, "window of %d tokens, scratch holds %d", n, s->max_tokens);
    norm_par(x, s->xn, n, c->hidden, w->final_norm_w, w->final_norm_b, c->norm_is_rms,
             c->norm_eps);
    /* the head in row chunks: the logits of a whole window need not exist
     * at once (n x vocab floats) unless the caller asks for them */
    int V = c->vocab;
    double total = 0.0;
    for (int r0 = 0; r0 < n; r0 += s->head_rows) {
        int nr = n - r0 < s->head_rows ? n - r0 : s->head_rows;
        float *lg = logits_out ? logits_out + (size_t)r0 * V : s->logits;
        if (head_linear(w, s->xn + (size_t)r0 * c->hidden, nr, lg, s, err) < 0)
            return -1;
        nll_job j = {lg, ids + r0 + 1, s->row_nll, V, n - 1 - r0};
        pool_rows(nll_rows, &j, nr, 8);
        for (int r = 0; r < nr && r0 + r + 1 < n; r++) /* fixed order: same sum on any threads */
            total += s->row_nll[r];
    }
    if (!isfinite(total))
        return lmc_fail(err, "non-finite negative log-likelihood in a window of %d tokens", n);
    *nll = total;
    return 0;
}
