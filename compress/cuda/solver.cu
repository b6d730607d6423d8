/* GPTQ / SparseGPT on the GPU, the twin of compress/solver.c (read that
 * file for the algorithm; this one follows it step by step):
 *   prepare: H = 2/N Sum x x^T from the backend's device accumulator, dead
 *     columns, act-order (sorted on the host, as the CPU sorts: stable),
 *     damping with x10 retries, A = J P^T H P J, cuSOLVER potrf + trtri in
 *     double, U = J L^-1 J in fp32;
 *   run: per block of columns, the unstructured SparseGPT mask (a stable
 *     radix sort of w^2 / U_ii^2 gives the CPU's lowest-k with ties by
 *     position), then one warp per row walks the block's columns with
 *     U[i1:i2, i1:i2] in shared memory (group fits at group starts on the
 *     block-start weights, N:M choices on the updated ones, quantization,
 *     the error pushed onto the rest of the block with separately rounded
 *     multiply and subtract as the CPU computes it), then the lazy update of
 *     every later column as one fp32 cuBLAS GEMM. */
#include <cub/cub.cuh>
#include <cusolverDn.h>

#include "../../eval/cuda/model.cuh"

extern "C" {
#include "../../core/half.h"
#include "../../eval/cuda/backend_cuda.h"
#include "solver_cuda.h"
}

#define FULL 0xffffffffu
#define MAX_BS 128 /* U block of 64 KB in shared memory */

struct lmc_cuda_hinv {
    lmc_cu *cu;
    int64_t n;
    int act_order;
    double percdamp_used;
    int damp_raised, n_dead;
    std::vector<uint8_t> dead;
    std::vector<int32_t> perm;
    uint8_t *d_dead;
    int32_t *d_perm;
    float *U; /* [n][n] row-major upper, permuted order */
};

/* ---- prepare ---- */

__global__ void k_diag_check(const double *H, int64_t n, double f, double *diag,
                             unsigned long long *bad)
{
    size_t nn = (size_t)n * n;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < nn;
         k += (size_t)gridDim.x * blockDim.x) {
        double v = H[k] * f;
        if (!isfinite(v))
            atomicMin(bad, (unsigned long long)k);
        if (k / n == k % n)
            diag[k / n] = v;
    }
}

/* A[i][j] = f H[p[n-1-i]][p[n-1-j]], diagonal diag[p[n-1-i]] + damp. */
__global__ void k_gather(const double *H, int64_t n, double f, const int32_t *perm,
                         const double *diag, double damp, double *A)
{
    size_t nn = (size_t)n * n;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < nn;
         k += (size_t)gridDim.x * blockDim.x) {
        int64_t i = (int64_t)(k / n), j = (int64_t)(k % n);
        int64_t pi = perm[n - 1 - i], pj = perm[n - 1 - j];
        A[k] = i == j ? diag[pi] + damp : H[pi * n + pj] * f;
    }
}

/* U[i][j] = Lr^-1(n-1-i, n-1-j) for j >= i, Lr^-1 (a, b) at A[b*n + a]. */
__global__ void k_make_u(const double *A, int64_t n, float *U)
{
    size_t nn = (size_t)n * n;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < nn;
         k += (size_t)gridDim.x * blockDim.x) {
        int64_t i = (int64_t)(k / n), j = (int64_t)(k % n);
        U[k] = j >= i ? (float)A[(n - 1 - j) * n + (n - 1 - i)] : 0.0f;
    }
}

static void warnf(const lmc_solver_opts *o, const char *fmt, double a, double b)
{
    if (!o->warn)
        return;
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, b);
    o->warn(o->warn_ctx, msg);
}

static int hinv_build(lmc_cuda_hinv *h, const double *H, int64_t ntok, const lmc_solver_opts *o,
                      lmc_error *err)
{
    lmc_cu *cu = h->cu;
    const int64_t n = h->n;
    const double f = 2.0 / (double)ntok;
    size_t nn = (size_t)n * n;
    cbuf diagb, badb, A, work, info;
    if (diagb.alloc(cu, (size_t)n * 8, err) < 0 || badb.alloc(cu, 8, err) < 0)
        return -1;
    unsigned long long none = ~0ull, bad;
    CUDA_OK(cudaMemcpyAsync(badb.p, &none, 8, cudaMemcpyHostToDevice, cu->st), "solver");
    k_diag_check<<<grid_for(nn), 256, 0, cu->st>>>(H, n, f, diagb.as<double>(),
                                                   badb.as<unsigned long long>());
    LAUNCH_OK("solver: Hessian check");
    std::vector<double> diag((size_t)n);
    CUDA_OK(cudaMemcpyAsync(&bad, badb.p, 8, cudaMemcpyDeviceToHost, cu->st), "solver");
    CUDA_OK(cudaMemcpyAsync(diag.data(), diagb.p, (size_t)n * 8, cudaMemcpyDeviceToHost, cu->st),
            "solver");
    CUDA_OK(cudaStreamSynchronize(cu->st), "solver");
    if (bad != none)
        return lmc_fail(err, "solver: Hessian entry (%lld, %lld) is not finite",
                        (long long)(bad / n), (long long)(bad % n));
    /* dead inputs: H_ii = 1, the weights' columns zeroed in run */
    h->dead.assign((size_t)n, 0);
    h->perm.resize((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        h->perm[i] = (int32_t)i;
        if (diag[i] == 0) {
            h->dead[i] = 1;
            h->n_dead++;
            diag[i] = 1;
        }
    }
    if (o->act_order) /* descending diag(H), ties by column: stable, as solver.c */
        std::stable_sort(h->perm.begin(), h->perm.end(),
                         [&](int32_t a, int32_t b) { return diag[a] > diag[b]; });
    if (dalloc(cu, (void **)&h->d_perm, (size_t)n * 4, "the solver", err) < 0 ||
        dalloc(cu, (void **)&h->d_dead, (size_t)n, "the solver", err) < 0)
        return -1;
    CUDA_OK(cudaMemcpyAsync(h->d_perm, h->perm.data(), (size_t)n * 4, cudaMemcpyHostToDevice,
                            cu->st),
            "solver");
    CUDA_OK(cudaMemcpyAsync(h->d_dead, h->dead.data(), (size_t)n, cudaMemcpyHostToDevice, cu->st),
            "solver");
    CUDA_OK(cudaMemcpyAsync(diagb.p, diag.data(), (size_t)n * 8, cudaMemcpyHostToDevice, cu->st),
            "solver");
    if (lmc_cu_dn_handle(cu, err) < 0 || A.alloc(cu, nn * 8, err) < 0 || info.alloc(cu, 4, err) < 0)
        return -1;
    size_t wd1 = 0, wh1 = 0, wd2 = 0, wh2 = 0;
    SOLVER_OK(cusolverDnXpotrf_bufferSize(cu->dn, cu->dn_params, CUBLAS_FILL_MODE_LOWER, n,
                                          CUDA_R_64F, A.p, n, CUDA_R_64F, &wd1, &wh1),
              "potrf workspace");
    SOLVER_OK(cusolverDnXtrtri_bufferSize(cu->dn, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n,
                                          CUDA_R_64F, A.p, n, &wd2, &wh2),
              "trtri workspace");
    size_t wd = std::max(wd1, wd2), wh = std::max(wh1, wh2);
    std::vector<char> hwork(wh ? wh : 1);
    if (work.alloc(cu, wd ? wd : 16, err) < 0)
        return -1;
    double mean = 0;
    for (int64_t i = 0; i < n; i++)
        mean += diag[i];
    mean /= (double)n;
    if (!(mean > 0))
        return lmc_fail(err, "solver: Hessian has a non-positive mean diagonal (%g)", mean);
    double percdamp = o->percdamp;
    for (int attempt = 0;; attempt++) {
        k_gather<<<grid_for(nn), 256, 0, cu->st>>>(H, n, f, h->d_perm, diagb.as<double>(),
                                                   percdamp * mean, A.as<double>());
        LAUNCH_OK("solver: damped Hessian");
        int hinfo = 0;
        SOLVER_OK(cusolverDnXpotrf(cu->dn, cu->dn_params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F,
                                   A.p, n, CUDA_R_64F, work.p, wd, hwork.data(), wh,
                                   info.as<int>()),
                  "potrf");
        CUDA_OK(cudaMemcpyAsync(&hinfo, info.p, 4, cudaMemcpyDeviceToHost, cu->st), "solver");
        CUDA_OK(cudaStreamSynchronize(cu->st), "solver: Cholesky");
        if (hinfo == 0) {
            SOLVER_OK(cusolverDnXtrtri(cu->dn, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n,
                                       CUDA_R_64F, A.p, n, work.p, wd, hwork.data(), wh,
                                       info.as<int>()),
                      "trtri");
            CUDA_OK(cudaMemcpyAsync(&hinfo, info.p, 4, cudaMemcpyDeviceToHost, cu->st), "solver");
            CUDA_OK(cudaStreamSynchronize(cu->st), "solver: triangular inverse");
        }
        if (hinfo == 0)
            break;
        if (hinfo < 0 || attempt >= o->damp_retries)
            return lmc_fail(err,
                            "solver: Hessian (%lld columns) is not positive definite even with "
                            "damping %g x mean(diag H)",
                            (long long)n, percdamp);
        double next = percdamp > 0 ? percdamp * 10 : 0.01;
        warnf(o, "Hessian not positive definite with damping %g x mean(diag H); retrying with %g",
              percdamp, next);
        percdamp = next;
        h->damp_raised++;
    }
    h->percdamp_used = percdamp;
    if (dalloc(cu, (void **)&h->U, nn * 4, "the solver", err) < 0)
        return -1;
    k_make_u<<<grid_for(nn), 256, 0, cu->st>>>(A.as<double>(), n, h->U);
    LAUNCH_OK("solver: U");
    CUDA_OK(cudaStreamSynchronize(cu->st), "solver");
    return 0;
}

extern "C" int lmc_cuda_hinv_prepare(lmc_backend *b, lmc_site s, int64_t cols,
                                     const lmc_solver_opts *o, lmc_cuda_hinv **out,
                                     lmc_error *err)
{
    *out = NULL;
    if (!(o->percdamp >= 0) || o->damp_retries < 0)
        return lmc_fail(err, "solver: invalid damping %g (retries %d)", o->percdamp,
                        o->damp_retries);
    lmc_cu *cu = lmc_cuda_backend_cu(b);
    if (!cu)
        return lmc_fail(err, "solver: not a CUDA calibration backend");
    const double *H;
    int64_t dim, ntok;
    if (lmc_cu_site_hessian(cu, (int)s, &H, &dim, &ntok, err) < 0)
        return -1;
    if (dim != cols)
        return lmc_fail(err, "solver: %lld columns, the Hessian has %lld", (long long)cols,
                        (long long)dim);
    lmc_cuda_hinv *h = new lmc_cuda_hinv();
    h->cu = cu;
    h->n = cols;
    h->act_order = o->act_order;
    h->damp_raised = h->n_dead = 0;
    h->d_dead = NULL;
    h->d_perm = NULL;
    h->U = NULL;
    if (hinv_build(h, H, ntok, o, err) < 0) {
        lmc_cuda_hinv_free(h);
        return -1;
    }
    *out = h;
    return 0;
}

extern "C" void lmc_cuda_hinv_free(lmc_cuda_hinv *h)
{
    if (!h)
        return;
    dfree(h->cu, h->U);
    dfree(h->cu, h->d_perm);
    dfree(h->cu, h->d_dead);
    delete h;
}

extern "C" void lmc_cuda_hinv_info(const lmc_cuda_hinv *h, double *percdamp_used,
                                   int *damp_raised, int *n_dead)
{
    *percdamp_used = h->percdamp_used;
    *damp_raised = h->damp_raised;
    *n_dead = h->n_dead;
}

/* ---- run ---- */

/* lmc_quant_fit on a range [xmin, xmax] already containing 0. */
__device__ void qfit(int bits, int sym, float xmin, float xmax, float *scale, int *zero)
{
    const int maxq = (1 << bits) - 1;
    if (sym) {
        if (-xmin > xmax)
            xmax = -xmin;
        if (xmin < 0)
            xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    float s = __half2float(__float2half_rn((xmax - xmin) / (float)maxq));
    if (!(s > 0.0f))
        s = 5.9604644775390625e-08f; /* smallest positive fp16 */
    else if (isinf(s))
        s = 65504.0f;
    *scale = s;
    if (sym) {
        *zero = (maxq + 1) / 2;
    } else {
        float z = rintf(-xmin / s);
        if (!(z >= 0.0f))
            z = 0.0f;
        if (z > (float)maxq)
            z = (float)maxq;
        *zero = (int)z;
    }
}

__device__ __forceinline__ int qcode(float x, float scale, int zero, int maxq)
{
    float q = rintf(x / scale) + (float)zero;
    if (!(q >= 0.0f))
        return 0;
    if (q > (float)maxq)
        return maxq;
    return (int)q;
}

/* One block (of 128 threads) per (group, row): fit on W[r][c0, c0 + len)
 * with masked positions read as 0 (fit_mask may be NULL). */
__global__ void k_fit(const float *W, int64_t n, int64_t g, int64_t ng, const uint8_t *fit_mask,
                      int bits, int sym, float *scales, uint8_t *zeros)
{
    __shared__ float smin[128], smax[128];
    int64_t r = blockIdx.y, k = blockIdx.x, c0 = k * g, len = c0 + g < n ? g : n - c0;
    const float *w = W + r * n + c0;
    const uint8_t *m = fit_mask ? fit_mask + r * n + c0 : NULL;
    float mn = 0.0f, mx = 0.0f;
    for (int64_t t = threadIdx.x; t < len; t += blockDim.x) {
        float x = m && m[t] ? 0.0f : w[t];
        mn = fminf(mn, x);
        mx = fmaxf(mx, x);
    }
    smin[threadIdx.x] = mn;
    smax[threadIdx.x] = mx;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) {
            smin[threadIdx.x] = fminf(smin[threadIdx.x], smin[threadIdx.x + o]);
            smax[threadIdx.x] = fmaxf(smax[threadIdx.x], smax[threadIdx.x + o]);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float s;
        int z;
        qfit(bits, sym, smin[0], smax[0], &s, &z);
        scales[r * ng + k] = s;
        zeros[r * ng + k] = (uint8_t)z;
    }
}

__global__ void k_zero_dead(float *W, int64_t rows, int64_t n, const uint8_t *dead)
{
    size_t nn = (size_t)rows * n;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < nn;
         k += (size_t)gridDim.x * blockDim.x)
        if (dead[k % n])
            W[k] = 0.0f;
}

/* dst[r][c] = src[r][perm[c]] (inverse 0), or dst[r][perm[c]] = src[r][c] (inverse 1). */
template <typename T>
__global__ void k_permute(const T *src, T *dst, int64_t rows, int64_t n, const int32_t *perm,
                          int inverse)
{
    size_t nn = (size_t)rows * n;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < nn;
         k += (size_t)gridDim.x * blockDim.x) {
        size_t r = k / n, c = k % n;
        if (inverse)
            dst[r * n + perm[c]] = src[k];
        else
            dst[k] = src[r * n + perm[c]];
    }
}

/* scores of the block [i1, i1 + count): w^2 / U_ii^2, with their positions. */
__global__ void k_scores(const float *Wp, const float *U, int64_t rows, int64_t n, int64_t i1,
                         int count, float *key, int32_t *val)
{
    size_t total = (size_t)rows * count;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int64_t r = (int64_t)(t / count), i = (int64_t)(t % count);
        float d = U[(i1 + i) * n + i1 + i], w = Wp[r * n + i1 + i];
        key[t] = w * w / (d * d);
        val[t] = (int32_t)t;
    }
}

__global__ void k_mark(const int32_t *val, int64_t k, int count, uint8_t *maskp, int64_t n,
                       int64_t i1)
{
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < k;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t p = val[t];
        maskp[(p / count) * n + i1 + p % count] = 1;
    }
}

struct blk_args {
    float *Wp;
    int64_t n, rows, i1;
    int count, bs;
    const float *U;
    float *E;
    double *loss;
    int quant, bits, sym, maxq;
    int64_t g, ng;
    int static_g;
    const int32_t *perm;
    float *scales;
    uint8_t *zeros, *codes, *maskp;
    int fit_mask, prune_n, prune_m;
};

/* One warp per row over the block's count columns; lane l holds columns
 * l, l + 32, ... of the row's block in w[]. */
template <int K> __global__ void __launch_bounds__(256) k_solve_block(blk_args a)
{
    extern __shared__ float Us[]; /* [count][count] */
    const int count = a.count;
    for (int idx = threadIdx.x; idx < count * count; idx += blockDim.x)
        Us[idx] = a.U[(a.i1 + idx / count) * a.n + a.i1 + idx % count];
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= a.rows)
        return;
    float *wrow = a.Wp + r * a.n; /* [i1, n) stays as at block start until the end */
    uint8_t *mrow = a.maskp ? a.maskp + r * a.n : NULL;
    float w[K];
#pragma unroll
    for (int k = 0; k < K; k++) {
        int j = lane + 32 * k;
        w[k] = j < count ? wrow[a.i1 + j] : 0.0f;
    }
    float scale = 0.0f;
    int zero = 0;
    int64_t cur = -1;
    if (a.quant && a.g < 0) {
        scale = a.scales[r];
        zero = a.zeros[r];
    }
    double l = 0;
    for (int i = 0; i < count; i++) {
        const int64_t c = a.i1 + i;
        const float d = Us[i * count + i];
        if (a.prune_n && i % a.prune_m == 0) {
            /* the N lowest w^2/U_jj^2 of the next M (updated) weights; ties:
             * lowest position first */
            float s[64];
            for (int j = 0; j < a.prune_m; j++) {
                int jj = i + j;
                float sel = 0.0f;
#pragma unroll
                for (int k = 0; k < K; k++)
                    if (k == jj / 32)
                        sel = w[k];
                float v = __shfl_sync(FULL, sel, jj & 31);
                float dj = Us[jj * count + jj];
                s[j] = v * v / (dj * dj);
            }
            if (lane == 0)
                for (int t = 0; t < a.prune_n; t++) {
                    int best = -1;
                    for (int j = 0; j < a.prune_m; j++)
                        if (!mrow[c + j] && (best < 0 || s[j] < s[best]))
                            best = j;
                    mrow[c + best] = 1;
                }
            __syncwarp();
        }
        float sel = 0.0f;
#pragma unroll
        for (int k = 0; k < K; k++)
            if (k == i / 32)
                sel = w[k];
        const float wv = __shfl_sync(FULL, sel, i & 31);
        float q = mrow && mrow[c] ? 0.0f : wv;
        if (a.quant) {
            if (a.g > 0) {
                int64_t gk = a.static_g ? a.perm[c] / a.g : c / a.g;
                if (!a.static_g && c % a.g == 0) {
                    /* fitted on the block-start weights, as the reference */
                    int64_t len = c + a.g < a.n ? a.g : a.n - c;
                    float mn = 0.0f, mx = 0.0f;
                    for (int64_t t = lane; t < len; t += 32) {
                        float x = a.fit_mask && mrow[c + t] ? 0.0f : wrow[c + t];
                        mn = fminf(mn, x);
                        mx = fmaxf(mx, x);
                    }
                    for (int o = 16; o; o >>= 1) {
                        mn = fminf(mn, __shfl_xor_sync(FULL, mn, o));
                        mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, o));
                    }
                    qfit(a.bits, a.sym, mn, mx, &scale, &zero);
                    cur = gk;
                    if (lane == 0) {
                        a.scales[r * a.ng + gk] = scale;
                        a.zeros[r * a.ng + gk] = (uint8_t)zero;
                    }
                } else if (gk != cur) {
                    scale = a.scales[r * a.ng + gk];
                    zero = a.zeros[r * a.ng + gk];
                    cur = gk;
                }
            }
            int code = qcode(q, scale, zero, a.maxq);
            q = scale * (float)(code - zero);
            if (lane == 0)
                a.codes[r * a.n + a.perm[c]] = (uint8_t)code;
        }
        const float diff = wv - q;
        const float ei = diff / d;
        l += (double)diff * diff / ((double)d * d);
        if (lane == 0)
            a.E[r * a.bs + i] = ei;
        const float *uu = Us + i * count;
#pragma unroll
        for (int k = 0; k < K; k++) {
            int j = lane + 32 * k;
            if (j == i)
                w[k] = q;
            else if (j > i && j < count)
                w[k] = __fsub_rn(w[k], __fmul_rn(ei, uu[j]));
        }
    }
#pragma unroll
    for (int k = 0; k < K; k++) {
        int j = lane + 32 * k;
        if (j < count)
            wrow[a.i1 + j] = w[k];
    }
    if (lane == 0)
        a.loss[r] += l;
}

static int launch_block(const blk_args &a, cudaStream_t st, lmc_error *err)
{
    dim3 grid((unsigned)((a.rows + 7) / 8));
    int smem = a.count * a.count * 4;
    int K = (a.count + 31) / 32;
#define LAUNCH(KK)                                                                            \
    case KK: {                                                                                \
        static bool attr = false;                                                             \
        if (!attr) {                                                                          \
            CUDA_OK(cudaFuncSetAttribute(k_solve_block<KK>,                                   \
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,         \
                                         MAX_BS * MAX_BS * 4),                                \
                    "solver shared memory");                                                  \
            attr = true;                                                                      \
        }                                                                                     \
        k_solve_block<KK><<<grid, 256, smem, st>>>(a);                                        \
        break;                                                                                \
    }
    switch (K) {
        LAUNCH(1) LAUNCH(2) LAUNCH(3) LAUNCH(4)
    default: return lmc_fail(err, "solver: block of %d columns (at most %d)", a.count, MAX_BS);
    }
#undef LAUNCH
    LAUNCH_OK("solver: column block");
    return 0;
}

static int check_opts(const lmc_cuda_hinv *h, int64_t rows, const lmc_solver_opts *o,
                      lmc_error *err)
{
    const int64_t n = h->n;
    if (rows <= 0)
        return lmc_fail(err, "solver: empty weight (%lld rows)", (long long)rows);
    if (o->blocksize <= 0)
        return lmc_fail(err, "solver: block size %d must be positive", o->blocksize);
    if (o->blocksize > MAX_BS && n > MAX_BS)
        return lmc_fail(err, "solver: block size %d: the GPU solver takes at most %d (--block)",
                        o->blocksize, MAX_BS);
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
    if (h->act_order != o->act_order)
        return lmc_fail(err, "solver: Hessian inverse was prepared with different act-order");
    return 0;
}

/* The weight into d (fp32 [rows][n]): host fp32 W, or tensor t as stored;
 * fails naming the first value that is not finite. */
static int upload_weight(lmc_cu *cu, const float *W, const lmc_tensor *t, size_t count,
                         int64_t n, float *d, lmc_error *err)
{
    cbuf raw, badb;
    if (badb.alloc(cu, 8, err) < 0)
        return -1;
    unsigned long long none = ~0ull, bad;
    CUDA_OK(cudaMemcpyAsync(badb.p, &none, 8, cudaMemcpyHostToDevice, cu->st), "solver");
    int is16 = 0, bf = 0;
    const void *src = W;
    if (!W) {
        lmc_enc_view v;
        if (lmc_tensor_view(t, &v, err) != 1 || v.kind != LMC_VIEW_DENSE)
            return lmc_fail(err, "solver: tensor %s is not dense", t->name);
        src = v.a;
        is16 = v.elem != LMC_ENC_F32;
        bf = v.elem == LMC_ENC_BF16;
    }
    size_t es = is16 ? 2 : 4;
    if (raw.alloc(cu, count * es, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpyAsync(raw.p, src, count * es, cudaMemcpyHostToDevice, cu->st),
            "solver: weight upload");
    if (is16)
        k_from_u16<float><<<grid_for(count), 256, 0, cu->st>>>(
            raw.as<uint16_t>(), d, count, bf, badb.as<unsigned long long>());
    else
        k_from_f32<float><<<grid_for(count), 256, 0, cu->st>>>(raw.as<float>(), d, count,
                                                               badb.as<unsigned long long>());
    LAUNCH_OK("solver: weight upload");
    CUDA_OK(cudaMemcpyAsync(&bad, badb.p, 8, cudaMemcpyDeviceToHost, cu->st), "solver");
    CUDA_OK(cudaStreamSynchronize(cu->st), "solver: weight upload");
    if (bad != none)
        return lmc_fail(err, "solver: weight (%lld, %lld) is not finite", (long long)(bad / n),
                        (long long)(bad % n));
    return 0;
}

extern "C" int lmc_cuda_solver_run(lmc_cuda_hinv *h, float *W, const lmc_tensor *t, int64_t rows,
                                   const lmc_solver_opts *o, float *W_out,
                                   lmc_solver_result *res, lmc_error *err)
{
    memset(res, 0, sizeof *res);
    if (check_opts(h, rows, o, err) < 0)
        return -1;
    lmc_cu *cu = h->cu;
    cudaStream_t st = cu->st;
    const int64_t n = h->n;
    const size_t rn = (size_t)rows * n;
    const int quant = o->bits > 0;
    const int64_t g = o->group;
    const int static_g = quant && o->static_groups && g > 0;
    const int nm = o->prune_n > 0;
    const int use_mask = o->sparsity > 0 || nm || o->mask_in;
    const int fit_mask = quant && o->mask_in;
    const int64_t bs = o->blocksize < n ? o->blocksize : n;
    res->percdamp_used = h->percdamp_used;
    res->damp_raised = h->damp_raised;
    res->n_dead = h->n_dead;
    if (quant) {
        if (lmc_qresult_alloc(&res->q, rows, n, o->bits, o->group, o->sym, err))
            return -1;
        res->quantized = 1;
    }
    const int64_t ng = quant ? res->q.ngroups : 0;
    cbuf Wd, Wpb, E, loss, codes, scales, zeros, maskp, min_, keys, vals, keys2, vals2, tmp;
    int rc = 0;
#define TRY(x)                                                                                \
    do {                                                                                      \
        if ((x) < 0) {                                                                        \
            rc = -1;                                                                          \
            goto out;                                                                         \
        }                                                                                     \
    } while (0)
#define TRYC(call, what)                                                                      \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            rc = lmc_fail(err, "CUDA: solver: %s: %s", what, cudaGetErrorString(e_));         \
            goto out;                                                                         \
        }                                                                                     \
    } while (0)
    {
        TRY(Wd.alloc(cu, rn * 4, err));
        TRY(upload_weight(cu, W, W ? NULL : t, rn, n, Wd.as<float>(), err));
        TRY(E.alloc(cu, (size_t)rows * bs * 4, err));
        TRY(loss.alloc(cu, (size_t)rows * 8, err));
        TRYC(cudaMemsetAsync(loss.p, 0, (size_t)rows * 8, st), "loss");
        if (quant) {
            TRY(codes.alloc(cu, rn, err));
            TRY(scales.alloc(cu, (size_t)rows * ng * 4, err));
            TRY(zeros.alloc(cu, (size_t)rows * ng, err));
        }
        if (o->mask_in) {
            TRY(min_.alloc(cu, rn, err));
            TRYC(cudaMemcpyAsync(min_.p, o->mask_in, rn, cudaMemcpyHostToDevice, st), "mask");
        }
        if (use_mask) {
            TRY(maskp.alloc(cu, rn, err));
            TRYC(cudaMemsetAsync(maskp.p, 0, rn, st), "mask");
        }
        /* per-row parameters (group -1) from the weights as given, before
         * dead columns are zeroed */
        if (quant && g < 0) {
            k_fit<<<dim3(1, (unsigned)rows), 128, 0, st>>>(
                Wd.as<float>(), n, n, 1, fit_mask ? min_.as<uint8_t>() : NULL, o->bits, o->sym,
                scales.as<float>(), zeros.as<uint8_t>());
            TRYC(cudaGetLastError(), "fit");
        }
        k_zero_dead<<<grid_for(rn), 256, 0, st>>>(Wd.as<float>(), rows, n, h->d_dead);
        TRYC(cudaGetLastError(), "dead columns");
        if (static_g) {
            k_fit<<<dim3((unsigned)ng, (unsigned)rows), 128, 0, st>>>(
                Wd.as<float>(), n, g, ng, fit_mask ? min_.as<uint8_t>() : NULL, o->bits, o->sym,
                scales.as<float>(), zeros.as<uint8_t>());
            TRYC(cudaGetLastError(), "fit");
        }
        float *Wp = Wd.as<float>();
        if (o->act_order) {
            TRY(Wpb.alloc(cu, rn * 4, err));
            Wp = Wpb.as<float>();
            k_permute<float><<<grid_for(rn), 256, 0, st>>>(Wd.as<float>(), Wp, rows, n,
                                                           h->d_perm, 0);
            TRYC(cudaGetLastError(), "permutation");
        }
        if (o->mask_in) {
            k_permute<uint8_t><<<grid_for(rn), 256, 0, st>>>(min_.as<uint8_t>(),
                                                             maskp.as<uint8_t>(), rows, n,
                                                             h->d_perm, 0);
            TRYC(cudaGetLastError(), "permutation");
        }
        size_t sort_bytes = 0;
        if (o->sparsity > 0) {
            size_t total = (size_t)rows * bs;
            TRY(keys.alloc(cu, total * 4, err));
            TRY(vals.alloc(cu, total * 4, err));
            TRY(keys2.alloc(cu, total * 4, err));
            TRY(vals2.alloc(cu, total * 4, err));
            TRYC(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, keys.as<float>(),
                                                 keys2.as<float>(), vals.as<int32_t>(),
                                                 vals2.as<int32_t>(), (int64_t)total, 0, 32, st),
                 "sort workspace");
            TRY(tmp.alloc(cu, sort_bytes ? sort_bytes : 16, err));
        }
        cublasHandle_t hb = lmc_gemm_handle(cu->gemm);
        blk_args a;
        memset(&a, 0, sizeof a);
        a.Wp = Wp;
        a.n = n;
        a.rows = rows;
        a.bs = (int)bs;
        a.U = h->U;
        a.E = E.as<float>();
        a.loss = loss.as<double>();
        a.quant = quant;
        a.bits = o->bits;
        a.sym = o->sym;
        a.maxq = quant ? (1 << o->bits) - 1 : 0;
        a.g = g;
        a.ng = ng;
        a.static_g = static_g;
        a.perm = h->d_perm;
        a.scales = scales.as<float>();
        a.zeros = zeros.as<uint8_t>();
        a.codes = codes.as<uint8_t>();
        a.maskp = use_mask ? maskp.as<uint8_t>() : NULL;
        a.fit_mask = fit_mask;
        a.prune_n = nm ? o->prune_n : 0;
        a.prune_m = nm ? o->prune_m : 0;
        for (int64_t i1 = 0; i1 < n; i1 += bs) {
            const int64_t i2 = i1 + bs < n ? i1 + bs : n;
            const int count = (int)(i2 - i1);
            if (o->sparsity > 0) {
                int64_t total = rows * count, k = (int64_t)((double)total * o->sparsity);
                if (k > 0) {
                    k_scores<<<grid_for((size_t)total), 256, 0, st>>>(
                        Wp, h->U, rows, n, i1, count, keys.as<float>(), vals.as<int32_t>());
                    TRYC(cudaGetLastError(), "scores");
                    size_t sb = sort_bytes;
                    TRYC(cub::DeviceRadixSort::SortPairs(tmp.p, sb, keys.as<float>(),
                                                         keys2.as<float>(), vals.as<int32_t>(),
                                                         vals2.as<int32_t>(), total, 0, 32, st),
                         "sort");
                    k_mark<<<grid_for((size_t)k), 256, 0, st>>>(vals2.as<int32_t>(), k, count,
                                                                maskp.as<uint8_t>(), n, i1);
                    TRYC(cudaGetLastError(), "mask");
                }
            }
            a.i1 = i1;
            a.count = count;
            TRY(launch_block(a, st, err));
            /* lazy batch update of every later column:
             * Wp[:, i2:] -= E[:, :count] . U[i1:i2, i2:] (row-major) */
            if (i2 < n) {
                float alpha = -1.0f, beta = 1.0f;
                cublasStatus_t s = cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)(n - i2),
                                               (int)rows, count, &alpha, h->U + i1 * n + i2,
                                               (int)n, E.as<float>(), (int)bs, &beta, Wp + i2,
                                               (int)n);
                if (s != CUBLAS_STATUS_SUCCESS) {
                    rc = lmc_fail(err, "cuBLAS: solver update: %s", cublasGetStatusString(s));
                    goto out;
                }
            }
        }
        if (o->act_order) {
            k_permute<float><<<grid_for(rn), 256, 0, st>>>(Wp, Wd.as<float>(), rows, n,
                                                           h->d_perm, 1);
            TRYC(cudaGetLastError(), "permutation");
        }
        float *dst = W ? W : W_out;
        if (dst)
            TRYC(cudaMemcpyAsync(dst, Wd.p, rn * 4, cudaMemcpyDeviceToHost, st), "download");
        std::vector<double> lh((size_t)rows);
        TRYC(cudaMemcpyAsync(lh.data(), loss.p, (size_t)rows * 8, cudaMemcpyDeviceToHost, st),
             "download");
        if (quant) {
            TRYC(cudaMemcpyAsync(res->q.codes, codes.p, rn, cudaMemcpyDeviceToHost, st),
                 "download");
            TRYC(cudaMemcpyAsync(res->q.scales, scales.p, (size_t)rows * ng * 4,
                                 cudaMemcpyDeviceToHost, st),
                 "download");
            TRYC(cudaMemcpyAsync(res->q.zeros, zeros.p, (size_t)rows * ng,
                                 cudaMemcpyDeviceToHost, st),
                 "download");
        }
        std::vector<uint8_t> mh(use_mask ? rn : 0);
        if (use_mask)
            TRYC(cudaMemcpyAsync(mh.data(), maskp.p, rn, cudaMemcpyDeviceToHost, st), "download");
        TRYC(cudaStreamSynchronize(st), "solver");
        double total = 0;
        for (int64_t r = 0; r < rows; r++)
            total += lh[(size_t)r];
        res->loss = total / 2;
        if (use_mask) {
            res->mask = (uint8_t *)malloc(rn);
            if (!res->mask) {
                rc = lmc_fail(err, "solver: out of memory for a %lldx%lld mask", (long long)rows,
                              (long long)n);
                goto out;
            }
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < n; c++) {
                    uint8_t m = mh[(size_t)(r * n + c)];
                    res->mask[r * n + h->perm[c]] = m;
                    res->n_pruned += m;
                }
        }
        if (quant && g > 0) {
            for (int64_t c = 0; c < n; c++)
                res->q.g_idx[h->perm[c]] = (int32_t)(static_g ? h->perm[c] / g : c / g);
            lmc_qresult_update_has_gidx(&res->q);
        }
    }
out:
#undef TRY
#undef TRYC
    if (rc < 0)
        lmc_solver_result_free(res);
    return rc;
}
