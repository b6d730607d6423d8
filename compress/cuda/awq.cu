/* AWQ's searches on the GPU (see awq_cuda.h), the twin of compress/awq.c:
 *   scale search: per candidate s, the consumers' Q(W diag(s)) diag(s)^-1
 *     (one warp per row and group, fp32 as the CPU, then the compute type)
 *     into a copy of their block slot, the module (linear, attention with
 *     RoPE, or MLP: the evaluator's GEMMs and kernels) on the captured
 *     windows chunk by chunk, and the squared differences from the
 *     reference output summed in double in a fixed order;
 *   clip search: for a chunk of rows, every shrink step's Q(clamp(w)) - w
 *     of every group at once, then per group one strided batched fp32 GEMM
 *     against the sampled inputs (e = X_g d_g) and the mean of e^2 per row,
 *     shrink and group; the first smallest wins, as on the CPU, and the
 *     caller clamps (awq.c).
 * Output biases are left out of both the reference and the candidates'
 * outputs (they cancel in the difference); biases inside a module (q, k, v
 * before attention, gate / up before the activation) are applied. */
#include "../../eval/cuda/attention.cuh"
#include "../../eval/cuda/kernels.cuh"
#include "../../eval/cuda/model.cuh"

extern "C" {
#include "../../eval/cuda/backend_cuda.h"
#include "awq_cuda.h"
}

enum { SL_QKV, SL_O, SL_GU, SL_DOWN, SL_N };
#define NB_SQ 1024 /* blocks of the squared-difference kernel: a fixed summation order */

struct lmc_cuda_awq {
    lmc_cu *cu;
    int S, nwin;
    int64_t N; /* captured rows, nwin * S */
    const void *x[4];
    int64_t xdim[4];
    int has[LMC_AWQ_ROLES];
    int64_t rows[LMC_AWQ_ROLES], cols[LMC_AWQ_ROLES], off[LMC_AWQ_ROLES];
    int slot[LMC_AWQ_ROLES];
    float *w32[LMC_AWQ_ROLES]; /* fp32 weights */
    int64_t srows[SL_N], scols[SL_N];
    void *ref[SL_N], *cand[SL_N]; /* slot matrices in the compute type */
    float *bias[SL_N];            /* q|k|v and gate|up biases (fp32), NULL: none */
    float *org;                   /* reference output [N][org_od] */
    int org_mod, org_role;
    int64_t org_od;
    float *out; /* one chunk's output [chunk rows][widest] */
    double *part, *sum;
    float *s;
};

static const int role_site[LMC_AWQ_ROLES] = {0, 0, 0, 1, 2, 2, 3};

static int halloc(lmc_cuda_awq *h, void **p, size_t bytes, lmc_error *err)
{
    return dalloc(h->cu, p, bytes, "AWQ's search", err);
}

extern "C" void lmc_cuda_awq_free(lmc_cuda_awq *h)
{
    if (!h)
        return;
    lmc_cu *cu = h->cu;
    for (int r = 0; r < LMC_AWQ_ROLES; r++)
        dfree(cu, h->w32[r]);
    for (int k = 0; k < SL_N; k++) {
        dfree(cu, h->ref[k]);
        dfree(cu, h->cand[k]);
        dfree(cu, h->bias[k]);
    }
    dfree(cu, h->org);
    dfree(cu, h->out);
    dfree(cu, h->part);
    dfree(cu, h->sum);
    dfree(cu, h->s);
    delete h;
}

/* ---- kernels ---- */

template <typename T> __global__ void k_convert(const float *s, T *d, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        d[i] = fromf<T>(s[i]);
}

__device__ __forceinline__ float warp_min(float v)
{
    for (int o = 16; o; o >>= 1)
        v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* awq.c's fp16_scale */
__device__ __forceinline__ float fp16_scale(float s)
{
    float h = __half2float(__float2half_rn(s));
    if (!(h >= 0x1p-24f))
        h = 0x1p-24f;
    if (h > 65504.0f)
        h = 65504.0f;
    return h;
}

/* lmc_awq_fit from the group's max, min and max |x| */
__device__ __forceinline__ void awq_fit(int bits, int sym, float mx, float mn, float am,
                                        float *scale, int *zero)
{
    if (sym) {
        float m = am < 1e-5f ? 1e-5f : am;
        *scale = fp16_scale(m / (float)((1 << (bits - 1)) - 1));
        *zero = 1 << (bits - 1);
        return;
    }
    int maxq = (1 << bits) - 1;
    float d = mx - mn;
    if (d < 1e-5f)
        d = 1e-5f;
    float s = fp16_scale(d / (float)maxq);
    float z = -rintf(mn / s);
    z = z < 0.0f ? 0.0f : z;
    z = z > (float)maxq ? (float)maxq : z;
    *scale = s;
    *zero = (int)z;
}

/* The group's scale and zero from each lane's partial max, min, max |x| */
__device__ __forceinline__ void warp_fit(int bits, int sym, float mx, float mn, float am,
                                         float *scale, int *zero)
{
    awq_fit(bits, sym, warp_max(mx), warp_min(mn), warp_max(am), scale, zero);
}

/* lmc_quant_code then lmc_qgroup_dequant */
__device__ __forceinline__ float awq_qdq(float x, float scale, int zero, int maxq)
{
    float q = rintf(x / scale) + (float)zero;
    int c = !(q >= 0.0f) ? 0 : q > (float)maxq ? maxq : (int)q;
    return scale * (float)(c - zero);
}

/* One warp per (row, group): out[r][c] = Q(W[r][c] s[c]) / s[c]. The same
 * group walk as k_clip_diff with another element transform (scaled here,
 * clamped there). */
template <typename T>
__global__ void k_awq_cand(const float *W, int64_t rows, int cols, int g, int ng, const float *s,
                           int bits, int sym, T *out)
{
    int64_t wid = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (wid >= rows * ng)
        return;
    int64_t r = wid / ng;
    int c0 = (int)(wid % ng) * g, m = min(g, cols - c0);
    const float *w = W + r * cols + c0;
    float mx = -INFINITY, mn = INFINITY, am = 0.0f;
    for (int c = lane; c < m; c += 32) {
        float x = w[c] * s[c0 + c];
        mx = fmaxf(mx, x);
        mn = fminf(mn, x);
        am = fmaxf(am, fabsf(x));
    }
    float sc;
    int z;
    warp_fit(bits, sym, mx, mn, am, &sc, &z);
    int maxq = (1 << bits) - 1;
    T *o = out + r * cols + c0;
    for (int c = lane; c < m; c += 32) {
        float x = w[c] * s[c0 + c];
        o[c] = fromf<T>(awq_qdq(x, sc, z, maxq) / s[c0 + c]);
    }
}

/* part[chunk * NB_SQ + block] = Sum (a - b)^2 over the block's share */
__global__ void k_sqdiff(const float *a, const float *b, size_t n, double *part)
{
    __shared__ double red[32];
    double s = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0)
        part[blockIdx.x] = s;
}

/* *sum = Sum part[0..n), one block, a fixed order */
__global__ void k_sum(const double *part, int n, double *sum)
{
    __shared__ double red[32];
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += part[i];
    s = block_sum(s, red);
    if (threadIdx.x == 0)
        *sum = s;
}

/* XT[t][c] = x[t * step][c] / s[c] (s NULL: 1) */
template <typename T>
__global__ void k_gather(const T *x, int64_t step, int64_t nt, int cols, const float *s,
                         float *XT)
{
    size_t n = (size_t)nt * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int64_t t = i / cols;
        int c = (int)(i % cols);
        float v = tof(x[(size_t)t * step * cols + c]);
        XT[i] = s ? v / s[c] : v;
    }
}

/* One warp per (shrink i, row r of the chunk, group k): D[i][r][c] =
 * Q(clamp(w, +-amax (1 - i / grid))) - w on the group's columns. */
__global__ void k_clip_diff(const float *W, int rc, int cols, int g, int ng, int nshrink,
                            int grid, int bits, int sym, float *D)
{
    int64_t wid = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (wid >= (int64_t)nshrink * rc * ng)
        return;
    int k = (int)(wid % ng), r = (int)((wid / ng) % rc), i = (int)(wid / ((int64_t)ng * rc));
    int c0 = k * g, m = min(g, cols - c0);
    const float *w = W + (size_t)r * cols + c0;
    float amax = 0.0f;
    for (int c = lane; c < m; c += 32)
        amax = fmaxf(amax, fabsf(w[c]));
    amax = warp_max(amax);
    float mv = amax * (1.0f - (float)i / (float)grid);
    float mx = -INFINITY, mn = INFINITY, am = 0.0f;
    for (int c = lane; c < m; c += 32) {
        float x = w[c] > mv ? mv : (w[c] < -mv ? -mv : w[c]);
        mx = fmaxf(mx, x);
        mn = fminf(mn, x);
        am = fmaxf(am, fabsf(x));
    }
    float sc;
    int z;
    warp_fit(bits, sym, mx, mn, am, &sc, &z);
    int maxq = (1 << bits) - 1;
    float *d = D + ((size_t)i * rc + r) * cols + c0;
    for (int c = lane; c < m; c += 32) {
        float x = w[c] > mv ? mv : (w[c] < -mv ? -mv : w[c]);
        d[c] = awq_qdq(x, sc, z, maxq) - w[c];
    }
}

/* err[b] = mean over t of E[b][t]^2 (one block per row b of E) */
__global__ void k_rowmsq(const float *E, int T, double *err)
{
    __shared__ double red[32];
    const float *e = E + (size_t)blockIdx.x * T;
    double s = 0;
    for (int t = threadIdx.x; t < T; t += blockDim.x)
        s += (double)e[t] * e[t];
    s = block_sum(s, red);
    if (threadIdx.x == 0)
        err[blockIdx.x] = s / (double)T;
}

/* Per (group k, row r of the chunk): the first smallest error over the
 * shrink steps (err [ng][nshrink][rc]); best index (-1: none finite), the
 * first step's and the best error, at row r0 + r of [rows][ng]. */
__global__ void k_clip_pick(const double *err, int rc, int ng, int nshrink, int r0, int *bi,
                            double *first, double *best)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= rc * ng)
        return;
    int k = j / rc, r = j % rc;
    double b = 1.7976931348623157e308, f = 0;
    int idx = -1;
    for (int i = 0; i < nshrink; i++) {
        double e = err[((size_t)k * nshrink + i) * rc + r];
        if (i == 0)
            f = e;
        if (e < b) {
            b = e;
            idx = i;
        }
    }
    size_t o = (size_t)(r0 + r) * ng + k;
    bi[o] = idx;
    first[o] = f;
    best[o] = idx >= 0 ? b : f;
}

/* ---- set-up ---- */

template <typename T>
static int open_t(lmc_cuda_awq *h, int seqlen, const lmc_cuda_awq_lin *lin, lmc_error *err)
{
    lmc_cu *cu = h->cu;
    const lmc_cu_dims *d = &cu->d;
    for (int s = 0; s < 4; s++) {
        int64_t rows;
        if (lmc_cu_site_capture(cu, s, &h->x[s], &rows, &h->xdim[s], err) < 0)
            return -1;
        if (s > 0 && rows != h->N)
            return lmc_fail(err, "captured inputs: %lld rows at site %d, %lld at site 0",
                            (long long)rows, s, (long long)h->N);
        h->N = rows;
    }
    if (seqlen < 1 || h->N % seqlen)
        return lmc_fail(err, "captured inputs: %lld rows are not windows of %d",
                        (long long)h->N, seqlen);
    h->S = seqlen;
    h->nwin = (int)(h->N / seqlen);
    int qd = qdim(d), kvd = kvdim(d), F = d->ffn, H = d->hidden;
    const int slot_of[LMC_AWQ_ROLES] = {SL_QKV, SL_QKV, SL_QKV, SL_O, SL_GU, SL_GU, SL_DOWN};
    const int64_t off_of[LMC_AWQ_ROLES] = {0, qd, qd + kvd, 0, 0, d->gated ? F : 0, 0};
    h->srows[SL_QKV] = qd + 2 * kvd, h->scols[SL_QKV] = H;
    h->srows[SL_O] = H, h->scols[SL_O] = qd;
    h->srows[SL_GU] = d->gated ? 2 * F : F, h->scols[SL_GU] = H;
    h->srows[SL_DOWN] = H, h->scols[SL_DOWN] = F;
    for (int k = 0; k < SL_N; k++) {
        size_t n = (size_t)h->srows[k] * h->scols[k];
        if (halloc(h, &h->ref[k], n * sizeof(T), err) < 0 ||
            halloc(h, &h->cand[k], n * sizeof(T), err) < 0)
            return -1;
        /* a slot part the block lacks multiplies as zeros */
        CUDA_OK(cudaMemsetAsync(h->ref[k], 0, n * sizeof(T), cu->st), "AWQ's search");
    }
    for (int r = 0; r < LMC_AWQ_ROLES; r++) {
        if (!lin[r].w)
            continue;
        int k = slot_of[r];
        if (lin[r].cols != h->scols[k] || off_of[r] + lin[r].rows > h->srows[k] ||
            (r == LMC_AWQ_GATE && !d->gated))
            return lmc_fail(err,
                            "AWQ on the GPU: linear %d is %lld x %lld, the model's slot %lld x "
                            "%lld",
                            r, (long long)lin[r].rows, (long long)lin[r].cols,
                            (long long)h->srows[k], (long long)h->scols[k]);
        h->has[r] = 1;
        h->rows[r] = lin[r].rows;
        h->cols[r] = lin[r].cols;
        h->slot[r] = k;
        h->off[r] = off_of[r];
        size_t n = (size_t)lin[r].rows * lin[r].cols;
        if (halloc(h, (void **)&h->w32[r], n * 4, err) < 0)
            return -1;
        CUDA_OK(cudaMemcpyAsync(h->w32[r], lin[r].w, n * 4, cudaMemcpyHostToDevice, cu->st),
                "AWQ's search: weights");
        k_convert<T><<<grid_for(n), 256, 0, cu->st>>>(
            h->w32[r], (T *)h->ref[k] + (size_t)h->off[r] * h->scols[k], n);
        LAUNCH_OK("AWQ's search: weights");
        if (lin[r].b && r != LMC_AWQ_O && r != LMC_AWQ_DOWN) {
            if (!h->bias[k]) {
                if (halloc(h, (void **)&h->bias[k], (size_t)h->srows[k] * 4, err) < 0)
                    return -1;
                CUDA_OK(cudaMemsetAsync(h->bias[k], 0, (size_t)h->srows[k] * 4, cu->st),
                        "AWQ's search");
            }
            CUDA_OK(cudaMemcpyAsync(h->bias[k] + h->off[r], lin[r].b, lin[r].rows * 4,
                                    cudaMemcpyHostToDevice, cu->st),
                    "AWQ's search: biases");
        }
    }
    int per = std::max(1, cu->max_tokens / seqlen);
    int64_t chunk = (int64_t)std::min(per, h->nwin) * seqlen;
    int nchunks = (h->nwin + per - 1) / per;
    int64_t widest = std::max<int64_t>(H, F), dmax = std::max<int64_t>(widest, qd);
    if (halloc(h, (void **)&h->out, (size_t)chunk * widest * 4, err) < 0 ||
        halloc(h, (void **)&h->part, (size_t)nchunks * NB_SQ * 8, err) < 0 ||
        halloc(h, (void **)&h->sum, 8, err) < 0 ||
        halloc(h, (void **)&h->s, (size_t)dmax * 4, err) < 0)
        return -1;
    CUDA_OK(cudaStreamSynchronize(cu->st), "AWQ's search: uploads");
    return 0;
}

extern "C" int lmc_cuda_awq_open(lmc_backend *b, int seqlen,
                                 const lmc_cuda_awq_lin lin[LMC_AWQ_ROLES], lmc_cuda_awq **out,
                                 lmc_error *err)
{
    *out = NULL;
    lmc_cu *cu = lmc_cuda_backend_cu(b);
    if (!cu)
        return lmc_fail(err, "AWQ's search on the GPU needs a CUDA calibration backend");
    lmc_cuda_awq *h = new lmc_cuda_awq();
    memset((void *)h, 0, sizeof *h);
    h->cu = cu;
    h->org_mod = -1;
    int rc = DISPATCH(cu->prec, open_t, h, seqlen, lin, err);
    if (rc < 0) {
        lmc_cuda_awq_free(h);
        return -1;
    }
    *out = h;
    return 0;
}

/* ---- the scale search ---- */

static int64_t module_od(const lmc_cuda_awq *h, int mod, int role)
{
    return mod == LMC_AWQ_MOD_LINEAR ? h->rows[role] : h->cu->d.hidden;
}

/* Module mod on captured rows [r0, r0 + n) with slot matrices M into out
 * [n][od] (fp32). */
template <typename T>
static int run_module(lmc_cuda_awq *h, int mod, int role, void *const *M, int64_t r0, int n,
                      float *out, lmc_error *err)
{
    lmc_cu *cu = h->cu;
    const lmc_cu_dims *d = &cu->d;
    cudaDataType dt = dtype_of<T>();
    int H = d->hidden, F = d->ffn, qd = qdim(d), ld = qd + 2 * kvdim(d);
    if (mod == LMC_AWQ_MOD_LINEAR) {
        int s = role_site[role], k = h->slot[role];
        int64_t cols = h->cols[role];
        const T *X = (const T *)h->x[s] + (size_t)r0 * cols;
        const T *W = (const T *)M[k] + (size_t)h->off[role] * cols;
        return lmc_gemm_run(cu->gemm, X, W, out, n, (int)h->rows[role], (int)cols, dt,
                            CUDA_R_32F, 0.0f, err);
    }
    if (mod == LMC_AWQ_MOD_ATTN) {
        const T *X = (const T *)h->x[0] + (size_t)r0 * H;
        if (lmc_gemm_run(cu->gemm, X, M[SL_QKV], cu->qkv, n, ld, H, dt, dt, 0.0f, err) < 0)
            return -1;
        if (d->rope || h->bias[SL_QKV]) {
            launch_qkv_post<T>(d, (T *)cu->qkv, h->bias[SL_QKV], n, h->S,
                               d->rope ? cu->rope_cos : NULL, d->rope ? cu->rope_sin : NULL, 0,
                               cu->st);
            LAUNCH_OK("AWQ's search: qkv kernel");
        }
        if (attention<T>(d, (const T *)cu->qkv, (T *)cu->ctx, n / h->S, h->S, ATTN_AUTO, NULL,
                         NULL, cu->st, err) < 0)
            return -1;
        return lmc_gemm_run(cu->gemm, cu->ctx, M[SL_O], out, n, H, qd, dt, CUDA_R_32F, 0.0f,
                            err);
    }
    const T *X = (const T *)h->x[2] + (size_t)r0 * H;
    if (lmc_gemm_run(cu->gemm, X, M[SL_GU], cu->gu, n, d->gated ? 2 * F : F, H, dt, dt, 0.0f,
                     err) < 0)
        return -1;
    launch_act<T>((const T *)cu->gu, h->bias[SL_GU], (T *)cu->act, n, F, d->gated, d->act,
                  cu->st);
    LAUNCH_OK("AWQ's search: activation kernel");
    return lmc_gemm_run(cu->gemm, cu->act, M[SL_DOWN], out, n, H, F, dt, CUDA_R_32F, 0.0f, err);
}

template <typename T>
static int loss_t(lmc_cuda_awq *h, int mod, int role, int ncons, const int *cons,
                  const float *s, int64_t dim, int bits, int group, int sym, double *loss,
                  lmc_error *err)
{
    lmc_cu *cu = h->cu;
    int64_t od = module_od(h, mod, role);
    void *M[SL_N];
    for (int k = 0; k < SL_N; k++)
        M[k] = h->ref[k];
    if (s) {
        if (h->org_mod != mod || h->org_role != role)
            return lmc_fail(err, "AWQ's search: no reference output for this module");
        CUDA_OK(cudaMemcpyAsync(h->s, s, (size_t)dim * 4, cudaMemcpyHostToDevice, cu->st),
                "AWQ's search: scales");
        for (int i = 0; i < ncons; i++) {
            int r = cons[i], k = h->slot[r];
            if (!h->has[r] || h->cols[r] != dim)
                return lmc_fail(err, "AWQ's search: consumer %d does not read %lld inputs", r,
                                (long long)dim);
            if (M[k] != h->cand[k]) { /* the slot's other parts stay as they are */
                CUDA_OK(cudaMemcpyAsync(h->cand[k], h->ref[k],
                                        (size_t)h->srows[k] * h->scols[k] * sizeof(T),
                                        cudaMemcpyDeviceToDevice, cu->st),
                        "AWQ's search");
                M[k] = h->cand[k];
            }
            int64_t g = group > 0 ? group : dim, ng = (dim + g - 1) / g;
            size_t threads = (size_t)h->rows[r] * ng * 32;
            k_awq_cand<T><<<(unsigned)((threads + 255) / 256), 256, 0, cu->st>>>(
                h->w32[r], h->rows[r], (int)dim, (int)g, (int)ng, h->s, bits, sym,
                (T *)h->cand[k] + (size_t)h->off[r] * h->scols[k]);
            LAUNCH_OK("AWQ's search: candidate kernel");
        }
    } else {
        if (h->org_mod != mod || h->org_role != role || !h->org) {
            dfree(cu, h->org);
            h->org = NULL;
            h->org_mod = -1;
            if (halloc(h, (void **)&h->org, (size_t)h->N * od * 4, err) < 0)
                return -1;
        }
    }
    int per = std::max(1, cu->max_tokens / h->S), nchunks = 0;
    for (int w0 = 0; w0 < h->nwin; w0 += per, nchunks++) {
        int n = std::min(per, h->nwin - w0) * h->S;
        int64_t r0 = (int64_t)w0 * h->S;
        float *o = s ? h->out : h->org + (size_t)r0 * od;
        if (run_module<T>(h, mod, role, M, r0, n, o, err) < 0)
            return -1;
        if (s) {
            k_sqdiff<<<NB_SQ, 256, 0, cu->st>>>(h->out, h->org + (size_t)r0 * od,
                                                (size_t)n * od, h->part + (size_t)nchunks * NB_SQ);
            LAUNCH_OK("AWQ's search: loss kernel");
        }
    }
    if (!s) {
        h->org_mod = mod;
        h->org_role = role;
        h->org_od = od;
        CUDA_OK(cudaStreamSynchronize(cu->st), "AWQ's search: reference output");
        return 0;
    }
    k_sum<<<1, 1024, 0, cu->st>>>(h->part, nchunks * NB_SQ, h->sum);
    LAUNCH_OK("AWQ's search: loss kernel");
    double sum;
    CUDA_OK(cudaMemcpyAsync(&sum, h->sum, 8, cudaMemcpyDeviceToHost, cu->st), "AWQ's search");
    CUDA_OK(cudaStreamSynchronize(cu->st), "AWQ's search: loss");
    *loss = sum / ((double)h->N * (double)od);
    return 0;
}

extern "C" int lmc_cuda_awq_loss(lmc_cuda_awq *h, int mod, int role, int ncons, const int *cons,
                                 const float *s, int64_t dim, int bits, int group, int sym,
                                 double *loss, lmc_error *err)
{
    if (mod < LMC_AWQ_MOD_LINEAR || mod > LMC_AWQ_MOD_MLP ||
        (mod == LMC_AWQ_MOD_LINEAR && (role < 0 || role >= LMC_AWQ_ROLES || !h->has[role])))
        return lmc_fail(err, "AWQ's search: bad module %d / linear %d", mod, role);
    return DISPATCH(h->cu->prec, loss_t, h, mod, role, ncons, cons, s, dim, bits, group, sym,
                    loss, err);
}

/* ---- the clip search ---- */

/* cuBLAS owns no device buffers of ours: freed on every return */
struct abuf {
    lmc_cu *cu;
    void *p = NULL;
    explicit abuf(lmc_cu *c) : cu(c) {}
    ~abuf()
    {
        if (p)
            dfree(cu, p);
    }
};

template <typename T>
static int clip_t(lmc_cuda_awq *h, int role, const float *s, const float *W, int bits,
                  int group, int sym, int clip_grid, double max_shrink, int64_t clip_tokens,
                  int *shrink, double *gain, lmc_error *err)
{
    lmc_cu *cu = h->cu;
    cudaStream_t st = cu->st;
    const int64_t rows = h->rows[role], cols = h->cols[role];
    const int site = role_site[role];
    int64_t step = h->N / clip_tokens;
    if (step < 1)
        step = 1;
    const int64_t T_ = (h->N + step - 1) / step; /* x[0::step] */
    const int64_t g = group > 0 ? group : cols, ng = (cols + g - 1) / g;
    const int nshrink = (int)(max_shrink * clip_grid);
    *gain = 1.0;
    if (nshrink < 1) { /* as the CPU: nothing tried, nothing clipped */
        for (int64_t j = 0; j < rows * ng; j++)
            shrink[j] = -1;
        return 0;
    }
    /* rows per chunk: the products E [ng][nshrink * rc][T] within 256 MB */
    int64_t per_row = ng * nshrink * T_ * 4;
    int64_t rc = std::max<int64_t>(1, std::min<int64_t>(rows, ((int64_t)256 << 20) / per_row));
    const int64_t Mr = nshrink * rc;
    abuf XT(cu), D(cu), E(cu), er(cu), bi(cu), fi(cu), be(cu), sd(cu);
    if (halloc(h, &XT.p, (size_t)T_ * cols * 4, err) < 0 ||
        halloc(h, &D.p, (size_t)Mr * cols * 4, err) < 0 ||
        halloc(h, &E.p, (size_t)ng * Mr * T_ * 4, err) < 0 ||
        halloc(h, &er.p, (size_t)ng * Mr * 8, err) < 0 ||
        halloc(h, &bi.p, (size_t)rows * ng * 4, err) < 0 ||
        halloc(h, &fi.p, (size_t)rows * ng * 8, err) < 0 ||
        halloc(h, &be.p, (size_t)rows * ng * 8, err) < 0 ||
        (s && halloc(h, &sd.p, (size_t)cols * 4, err) < 0))
        return -1;
    if (s)
        CUDA_OK(cudaMemcpyAsync(sd.p, s, (size_t)cols * 4, cudaMemcpyHostToDevice, st),
                "AWQ's clip search: scales");
    k_gather<T><<<grid_for((size_t)T_ * cols), 256, 0, st>>>(
        (const T *)h->x[site], step, T_, (int)cols, (const float *)sd.p, (float *)XT.p);
    LAUNCH_OK("AWQ's clip search: inputs");
    /* the folded weights replace the originals (every search is done) */
    CUDA_OK(cudaMemcpyAsync(h->w32[role], W, (size_t)rows * cols * 4, cudaMemcpyHostToDevice,
                            st),
            "AWQ's clip search: weights");
    cublasHandle_t hb = lmc_gemm_handle(cu->gemm);
    const float one = 1.0f, zero = 0.0f;
    const int64_t full = cols / g; /* groups of g columns; a shorter last one apart */
    for (int64_t r0 = 0; r0 < rows; r0 += rc) {
        int n = (int)std::min(rc, rows - r0), mr = nshrink * n;
        size_t warps = (size_t)nshrink * n * ng;
        k_clip_diff<<<(unsigned)((warps * 32 + 255) / 256), 256, 0, st>>>(
            h->w32[role] + (size_t)r0 * cols, n, (int)cols, (int)g, (int)ng, nshrink,
            clip_grid, bits, sym, (float *)D.p);
        LAUNCH_OK("AWQ's clip search: candidates");
        /* E_k [mr][T] = D[:, group k] . XT[:, group k]^T, row-major */
        if (full > 0)
            BLAS_OK(cublasGemmStridedBatchedEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)T_, mr, (int)g,
                                               &one, XT.p, CUDA_R_32F, (int)cols, g, D.p,
                                               CUDA_R_32F, (int)cols, g, &zero, E.p, CUDA_R_32F,
                                               (int)T_, (long long)mr * T_, (int)full,
                                               CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
                    "AWQ's clip search: products");
        if (full < ng) {
            int64_t c0 = full * g;
            BLAS_OK(cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)T_, mr, (int)(cols - c0),
                                 &one, (const float *)XT.p + c0, CUDA_R_32F, (int)cols,
                                 (const float *)D.p + c0, CUDA_R_32F, (int)cols, &zero,
                                 (float *)E.p + (size_t)full * mr * T_, CUDA_R_32F, (int)T_,
                                 CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
                    "AWQ's clip search: products");
        }
        k_rowmsq<<<(unsigned)(ng * mr), 128, 0, st>>>((const float *)E.p, (int)T_,
                                                     (double *)er.p);
        LAUNCH_OK("AWQ's clip search: errors");
        int nj = n * (int)ng;
        k_clip_pick<<<(nj + 255) / 256, 256, 0, st>>>((const double *)er.p, n, (int)ng, nshrink,
                                                      (int)r0, (int *)bi.p, (double *)fi.p,
                                                      (double *)be.p);
        LAUNCH_OK("AWQ's clip search: choice");
    }
    std::vector<int> best((size_t)rows * ng);
    std::vector<double> first((size_t)rows * ng), berr((size_t)rows * ng);
    CUDA_OK(cudaMemcpyAsync(best.data(), bi.p, best.size() * 4, cudaMemcpyDeviceToHost, st),
            "AWQ's clip search");
    CUDA_OK(cudaMemcpyAsync(first.data(), fi.p, first.size() * 8, cudaMemcpyDeviceToHost, st),
            "AWQ's clip search");
    CUDA_OK(cudaMemcpyAsync(berr.data(), be.p, berr.size() * 8, cudaMemcpyDeviceToHost, st),
            "AWQ's clip search");
    CUDA_OK(cudaStreamSynchronize(st), "AWQ's clip search");
    double before = 0, after = 0;
    for (size_t j = 0; j < best.size(); j++) {
        before += first[j];
        after += berr[j];
        shrink[j] = best[j];
    }
    *gain = before > 0 ? after / before : 1.0;
    return 0;
}

extern "C" int lmc_cuda_awq_clip(lmc_cuda_awq *h, int role, const float *s, const float *W,
                                 int bits, int group, int sym, int clip_grid, double max_shrink,
                                 int64_t clip_tokens, int *shrink, double *gain, lmc_error *err)
{
    if (role < 0 || role >= LMC_AWQ_ROLES || !h->has[role])
        return lmc_fail(err, "AWQ's clip search: no linear %d", role);
    if (clip_grid < 1 || clip_tokens < 1)
        return lmc_fail(err, "AWQ's clip search: bad parameters");
    return DISPATCH(h->cu->prec, clip_t, h, role, s, W, bits, group, sym, clip_grid,
                    max_shrink, clip_tokens, shrink, gain, err);
}
