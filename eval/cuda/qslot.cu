/* Quantized block slots on the device (see qslot.cuh), the GPU twins of the
 * CPU kernels of core/enc_w8a8.c (W8A8) and core/enc_int8.c (LLM.int8()):
 * the same per-token activation quantizer (rint, clamp to +-127), the same
 * exact int32 products (cuBLAS int8 GEMM) and the same fp32 epilogue
 * expression, so that at --precision fp32 only the order of the outlier
 * GEMM's fp32 sums differs from the CPU. Packed qgroup weights are expanded
 * with lmc_qgroup_dequant's expression, rounded to the compute type exactly
 * as a dequantize-at-load upload rounds them. */
#include "gemm_i8.cuh"
#include "kernels.cuh"
#include "model.cuh"

#include <assert.h>
#include <float.h>

/* ---------------------------------------------------------------- kernels */

/* W8A8 activations: one block per token; q[t][kp] int8 (zeros from K),
 * sx[t] = max(absmax, 1e-5) / 127 (NaN when the row is not finite). */
template <typename T>
__global__ void k_quant_w8a8(const T *x, int K, int kp, const float *smooth, int8_t *q,
                             float *sx)
{
    __shared__ float red[32];
    const T *xt = x + (size_t)blockIdx.x * K;
    int8_t *qt = q + (size_t)blockIdx.x * kp;
    float m = 0.0f;
    int bad = 0;
    for (int c = threadIdx.x; c < K; c += blockDim.x) {
        float v = tof(xt[c]);
        if (smooth)
            v = v / smooth[c];
        float a = fabsf(v);
        bad |= !isfinite(a);
        m = a > m ? a : m;
    }
    bad = __syncthreads_or(bad);
    m = block_max(m, red);
    float s = w8a8_scale(m);
    for (int c = threadIdx.x; c < kp; c += blockDim.x) {
        int8_t r = 0;
        if (c < K) {
            float v = tof(xt[c]);
            if (smooth)
                v = v / smooth[c];
            r = w8a8_code(v, s);
        }
        qt[c] = r;
    }
    if (threadIdx.x == 0)
        sx[blockIdx.x] = bad ? NAN : s;
}

/* 8 consecutive elements of a 16-byte-aligned row, as float */
template <typename T> __device__ __forceinline__ void load8(const T *p, float *v)
{
    if constexpr (sizeof(T) == 4) {
        float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
        v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
        uint4 u = *(const uint4 *)p;
        const typename vec2<T>::type *h = (const typename vec2<T>::type *)&u;
        for (int i = 0; i < 4; i++) {
            float2 f = tof2(h[i]);
            v[2 * i] = f.x, v[2 * i + 1] = f.y;
        }
    }
}

/* k_quant_w8a8 with 8 columns per thread and step (K and kp multiples of
 * 8: 16-byte loads, 8-byte stores): the same expressions, so the same
 * codes and scales. The quantizer reads its row twice (the second time from
 * L2) and was a tenth of the W8A8 forward with 2-byte loads. */
template <typename T>
__global__ void k_quant_w8a8_v8(const T *x, int K, int kp, const float *smooth, int8_t *q,
                                float *sx)
{
    __shared__ float red[32];
    const T *xt = x + (size_t)blockIdx.x * K;
    int8_t *qt = q + (size_t)blockIdx.x * kp;
    float m = 0.0f;
    int bad = 0;
    for (int c = threadIdx.x * 8; c < K; c += blockDim.x * 8) {
        float v[8];
        load8(xt + c, v);
        if (smooth) {
            float sm[8];
            load8(smooth + c, sm);
            for (int i = 0; i < 8; i++)
                v[i] = v[i] / sm[i];
        }
        for (int i = 0; i < 8; i++) {
            float a = fabsf(v[i]);
            bad |= !isfinite(a);
            m = a > m ? a : m;
        }
    }
    bad = __syncthreads_or(bad);
    m = block_max(m, red);
    float s = w8a8_scale(m);
    for (int c = threadIdx.x * 8; c < kp; c += blockDim.x * 8) {
        union {
            int8_t b[8];
            uint2 u;
        } o;
        if (c < K) {
            float v[8];
            load8(xt + c, v);
            if (smooth) {
                float sm[8];
                load8(smooth + c, sm);
                for (int i = 0; i < 8; i++)
                    v[i] = v[i] / sm[i];
            }
            for (int i = 0; i < 8; i++)
                o.b[i] = w8a8_code(v[i], s);
        } else {
            o.u = make_uint2(0, 0);
        }
        *(uint2 *)(qt + c) = o.u;
    }
    if (threadIdx.x == 0)
        sx[blockIdx.x] = bad ? NAN : s;
}

/* LLM.int8() activations: absmax over the non-outlier columns, codes
 * rint(x * 127 / absmax) with 0 in the outlier columns, sx = absmax / 127. */
template <typename T>
__global__ void k_quant_int8(const T *x, int K, int kp, const uint8_t *is_out, int8_t *q,
                             float *sx)
{
    __shared__ float red[32];
    const T *xt = x + (size_t)blockIdx.x * K;
    int8_t *qt = q + (size_t)blockIdx.x * kp;
    float am = 0.0f;
    int bad = 0;
    for (int c = threadIdx.x; c < K; c += blockDim.x) {
        float a = fabsf(tof(xt[c]));
        bad |= !(a <= FLT_MAX);
        if (!is_out[c] && a > am)
            am = a;
    }
    bad = __syncthreads_or(bad);
    am = block_max(am, red);
    float sc = bad ? NAN : am / 127.0f;
    if (bad)
        am = 0.0f;
    float inv = am > 0 ? 127.0f / am : 0.0f;
    for (int c = threadIdx.x; c < kp; c += blockDim.x) {
        float r = 0.0f;
        if (c < K && !is_out[c]) {
            r = rintf(tof(xt[c]) * inv);
            r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
            r = r == r ? r : 0.0f;
        }
        qt[c] = (int8_t)r;
    }
    if (threadIdx.x == 0)
        sx[blockIdx.x] = sc;
}

/* xo[t][j] = x[t][oidx[j]] */
template <typename T>
__global__ void k_gather(const T *x, int K, const int *oidx, int nout, T *xo, int n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)n * nout)
        return;
    size_t t = i / nout, j = i % nout;
    xo[i] = x[t * K + oidx[j]];
}

/* y[t][c0 + r] (=|+=) the rescaled int32 product. */
template <typename Y>
__global__ void k_i8_epilogue(const int32_t *acc, int ld, const float *sw, const float *sx,
                              Y *y, int c0, int rows, int n, int int8_order, int accumulate)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)n * rows)
        return;
    size_t t = i / rows, r = c0 + i % rows;
    size_t o = t * ld + r;
    y[o] = fromf<Y>(i8_rescale((float)acc[o], sw[r], sx[t], int8_order,
                               accumulate ? tof(y[o]) : 0.0f, accumulate));
}

/* k_i8_epilogue for 4 consecutive rows per thread, one grid row per token
 * (ld, c0 and rows multiples of 4: 16-byte loads of acc): the same
 * expression; no 64-bit division per element. */
template <typename Y>
__global__ void k_i8_epilogue_v4(const int32_t *acc, int ld, const float *sw, const float *sx,
                                 Y *y, int c0, int rows, int int8_order, int accumulate)
{
    int r4 = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (r4 >= rows)
        return;
    size_t t = blockIdx.y;
    size_t o = t * ld + c0 + r4;
    int4 a = *(const int4 *)(acc + o);
    float4 w = *(const float4 *)(sw + c0 + r4);
    float st = sx[t];
    float av[4] = {(float)a.x, (float)a.y, (float)a.z, (float)a.w};
    float wv[4] = {w.x, w.y, w.z, w.w};
    for (int i = 0; i < 4; i++)
        y[o + i] = fromf<Y>(i8_rescale(av[i], wv[i], st, int8_order,
                                       accumulate ? tof(y[o + i]) : 0.0f, accumulate));
}

/* The W8A8 gate|up (or fc1) epilogue fused with the activation: a[t][j] as
 * k_act(_v) computes it from the slot's outputs rounded to T as
 * k_i8_epilogue(_v4) stores them, without those outputs in memory (4
 * columns per thread, F a multiple of 4). fast: k_act_v's act_t (when F is
 * a multiple of 16 / sizeof(T)), else k_act's act_f. */
template <typename T>
__global__ void k_i8_act(const int32_t *acc, int ld, const float *sw, const float *sx,
                         const float *bias, T *a, int F, int gated, int act, int fast)
{
    int j = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (j >= F)
        return;
    size_t t = blockIdx.y;
    float st = sx[t];
    int uo = gated ? F : 0;
    int4 uq = *(const int4 *)(acc + t * ld + uo + j);
    float4 uw = *(const float4 *)(sw + uo + j);
    int4 gq = gated ? *(const int4 *)(acc + t * ld + j) : uq;
    float4 gw = gated ? *(const float4 *)(sw + j) : uw;
    const int uqv[4] = {uq.x, uq.y, uq.z, uq.w}, gqv[4] = {gq.x, gq.y, gq.z, gq.w};
    const float uwv[4] = {uw.x, uw.y, uw.z, uw.w}, gwv[4] = {gw.x, gw.y, gw.z, gw.w};
    const float *bg = bias, *bu = bias ? (gated ? bias + F : bias) : NULL;
    T *ar = a + t * F + j;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float u = tof(fromf<T>(i8_rescale((float)uqv[e], uwv[e], st, 0, 0.0f, 0)));
        float uv = __fadd_rn(u, bu ? bu[j + e] : 0.0f), r;
        if (gated) {
            float g = tof(fromf<T>(i8_rescale((float)gqv[e], gwv[e], st, 0, 0.0f, 0)));
            g = __fadd_rn(g, bg ? bg[j + e] : 0.0f);
            r = (fast ? act_t<T>(g, act) : act_f(g, act)) * uv;
        } else {
            r = fast ? act_t<T>(uv, act) : act_f(uv, act);
        }
        ar[e] = fromf<T>(r);
    }
}

/* w[r][c] = scale[r][g] * (code[r][c] - zero[r][g]) of a qgroup blob,
 * rounded to T; bad <- the first index not finite in T. */
__device__ __forceinline__ int bits_at(const uint8_t *row, size_t row_bytes, int64_t i, int bits)
{
    int64_t bit = i * bits;
    size_t byte = (size_t)(bit >> 3);
    unsigned v = row[byte];
    if (byte + 1 < row_bytes)
        v |= (unsigned)row[byte + 1] << 8;
    return (int)((v >> (bit & 7)) & ((1u << bits) - 1));
}

template <typename T>
__global__ void k_dequant(const uint8_t *blob, int rows, int K, int bits, int group, int sym,
                          int has_gidx, int ngroups, size_t crb, size_t zrb, size_t off_scales,
                          size_t off_zeros, size_t off_gidx, T *w, unsigned long long *bad)
{
    size_t n = (size_t)rows * K;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int r = (int)(i / K), c = (int)(i % K);
        int g = has_gidx ? ((const int32_t *)(blob + off_gidx))[c] : group > 0 ? c / group : 0;
        int code = bits_at(blob + (size_t)r * crb, crb, c, bits);
        int zero = sym ? 1 << (bits - 1) : bits_at(blob + off_zeros + (size_t)r * zrb, zrb, g, bits);
        float s = __half2float(((const __half *)(blob + off_scales))[(size_t)r * ngroups + g]);
        T o = fromf<T>(s * (float)(code - zero)); /* lmc_qgroup_dequant */
        w[i] = o;
        if (bad && !isfinite(tof(o)))
            atomicMin(bad, (unsigned long long)i);
    }
}

/* ---------------------------------------------------------------- products */

/* The products of part p's group with the epilogue fused: the wgmma GEMM
 * (gemm_i8.cu) writes yc's columns or, with af, the activation. */
template <typename T, typename Y>
static int wg_product(lmc_cu *cu, const dquant &q, const dqpart &p, int nt, int N, Y *yc,
                      int t0, int int8, int accumulate, const qslot_act *af, lmc_error *err)
{
    i8wg_epi e = {};
    e.sx = cu->q_sx;
    if (af) {
        e.sw = q.sw, e.bias = af->bias, e.a = (T *)af->a + (size_t)t0 * af->F;
        e.F = af->F, e.gated = af->gated, e.act = af->act;
        e.fast = af->F % (16 / (int)sizeof(T)) == 0;
        if (i8wg_run<T>(cu->q_xq, q.codes, nt, N, q.kp, e, cu->st, err) < 0)
            return -1;
    } else {
        e.sw = q.sw + p.row0, e.int8_order = int8, e.accumulate = accumulate;
        e.y = yc + p.row0, e.ldy = N;
        if (i8wg_run<Y>(cu->q_xq, q.codes + (size_t)p.row0 * q.kp, nt, p.grows, q.kp, e, cu->st,
                        err) < 0)
            return -1;
    }
    mark(cu, ST_I8_GEMM);
    return 0;
}

/* Their twins: cuBLAS's int32 products in q_acc, then the epilogue kernels
 * (scalar: the one-element ones). */
template <typename T, typename Y>
static int blas_product(lmc_cu *cu, const dquant &q, const dqpart &p, int nt, int N, Y *yc,
                        int t0, int int8, int accumulate, int scalar, const qslot_act *af,
                        lmc_error *err)
{
    if (lmc_gemm_run_i8(cu->gemm, cu->q_xq, q.kp, q.codes + (size_t)p.row0 * q.kp, q.kp,
                        cu->q_acc + p.row0, N, nt, p.grows, q.kp, err) < 0)
        return -1;
    mark(cu, ST_I8_GEMM);
    if (af) {
        int fast = af->F % (16 / (int)sizeof(T)) == 0;
        dim3 g((unsigned)((af->F / 4 + 127) / 128), (unsigned)nt);
        k_i8_act<T><<<g, 128, 0, cu->st>>>(cu->q_acc, N, q.sw, cu->q_sx, af->bias,
                                           (T *)af->a + (size_t)t0 * af->F, af->F, af->gated,
                                           af->act, fast);
        LAUNCH_OK("int8 activation epilogue");
    } else if (!scalar && N % 4 == 0 && p.row0 % 4 == 0 && p.grows % 4 == 0) {
        dim3 g((unsigned)((p.grows / 4 + 127) / 128), (unsigned)nt);
        k_i8_epilogue_v4<Y><<<g, 128, 0, cu->st>>>(cu->q_acc, N, q.sw, cu->q_sx, yc, p.row0,
                                                   p.grows, int8, accumulate);
        LAUNCH_OK("int8 epilogue");
    } else {
        size_t ne = (size_t)nt * p.grows;
        k_i8_epilogue<Y><<<(unsigned)((ne + 255) / 256), 256, 0, cu->st>>>(
            cu->q_acc, N, q.sw, cu->q_sx, yc, p.row0, p.grows, nt, int8, accumulate);
        LAUNCH_OK("int8 epilogue");
    }
    mark(cu, ST_I8_EPI);
    return 0;
}

/* af: the activation of a W8A8 gate|up slot fused into its epilogue
 * (qslot_fuses_act), Y_ unused; NULL: Y_ (=|+=) the products. X NULL: the
 * codes and scales of all n rows are in q_xq and q_sx already
 * (qslot_norm_quant). */
template <typename T, typename Y>
static int i8_gemm(lmc_cu *cu, const dquant &q, const T *X, Y *Y_, int n, int N, int K,
                   int accumulate, lmc_error *err, const qslot_act *af = NULL)
{
    cudaDataType dt = dtype_of<T>();
    int int8 = q.kind == LMC_CU_Q_INT8;
    /* 16-byte rows of x and 8-byte rows of codes for the vector quantizer */
    int scalar = getenv("LMC_CUDA_I8_SCALAR") != NULL; /* the twins, for the tests */
    int vec8 = !scalar && K % 8 == 0 && q.kp % 8 == 0;
    /* the wgmma GEMM with the epilogue fused (gemm_i8.cu); the cuBLAS int32
     * products and the epilogue kernels are their twins */
    int wg = !scalar && i8wg_ok();
    for (int t0 = 0; t0 < n; t0 += cu->q_chunk) {
        int nt = std::min(cu->q_chunk, n - t0);
        const T *xc = X ? X + (size_t)t0 * K : NULL;
        Y *yc = Y_ + (size_t)t0 * N;
        for (int pi = 0; pi < q.nparts; pi++) {
            const dqpart &p = q.p[pi];
            if (p.lead != pi)
                continue;
            if (!X)
                assert(t0 == 0 && nt == n && q.kind == LMC_CU_Q_W8A8);
            else if (int8)
                k_quant_int8<T><<<nt, 256, 0, cu->st>>>(xc, K, q.kp, p.is_out, cu->q_xq,
                                                        cu->q_sx);
            else if (vec8)
                k_quant_w8a8_v8<T><<<nt, 128, 0, cu->st>>>(xc, K, q.kp, p.smooth, cu->q_xq,
                                                           cu->q_sx);
            else
                k_quant_w8a8<T><<<nt, 256, 0, cu->st>>>(xc, K, q.kp, p.smooth, cu->q_xq,
                                                        cu->q_sx);
            LAUNCH_OK("int8 activation quantization");
            mark(cu, ST_I8_QUANT);
            int r = wg ? wg_product<T, Y>(cu, q, p, nt, N, yc, t0, int8, accumulate, af, err)
                       : blas_product<T, Y>(cu, q, p, nt, N, yc, t0, int8, accumulate, scalar,
                                            af, err);
            if (r < 0)
                return -1;
            if (af) /* one group: the whole slot */
                continue;
            if (int8 && p.nout) {
                size_t no = (size_t)nt * p.nout;
                k_gather<T><<<(unsigned)((no + 255) / 256), 256, 0, cu->st>>>(
                    xc, K, p.oidx, p.nout, (T *)cu->q_xo, nt);
                LAUNCH_OK("outlier gather");
                /* the group's rows are consecutive, their ow too (same nout) */
                if (lmc_gemm_run_ld(cu->gemm, cu->q_xo, p.nout, p.ow, p.nout, yc + p.row0, N,
                                    nt, p.grows, p.nout, dt, dtype_of<Y>(), 1.0f, err) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

template <typename T>
static int packed_gemm(lmc_cu *cu, const dquant &q, const void *X, void *Y, int n, int N, int K,
                       cudaDataType tout, float beta, lmc_error *err)
{
    for (int pi = 0; pi < q.nparts; pi++) {
        const dqpart &p = q.p[pi];
        size_t ne = (size_t)p.rows * K;
        k_dequant<T><<<grid_for(ne), 256, 0, cu->st>>>(
            p.blob, p.rows, K, p.bits, p.group, p.sym, p.has_gidx, p.ngroups, p.crb, p.zrb,
            p.off_scales, p.off_zeros, p.off_gidx, (T *)cu->q_w + (size_t)p.row0 * K, NULL);
        LAUNCH_OK("dequantization kernel");
    }
    return lmc_gemm_run(cu->gemm, X, cu->q_w, Y, n, N, K, dtype_of<T>(), tout, beta, err);
}

template <typename T>
static int qgemm_t(lmc_cu *cu, const dquant &q, const void *X, void *Y, int n, int N, int K,
                   cudaDataType tout, float beta, lmc_error *err)
{
    if (q.kind == LMC_CU_Q_PACKED)
        return packed_gemm<T>(cu, q, X, Y, n, N, K, tout, beta, err);
    int acc = beta != 0.0f;
    if (tout == CUDA_R_32F)
        return i8_gemm<T, float>(cu, q, (const T *)X, (float *)Y, n, N, K, acc, err);
    return i8_gemm<T, T>(cu, q, (const T *)X, (T *)Y, n, N, K, acc, err);
}

int qslot_gemm(lmc_cu *cu, const dquant &q, const void *X, void *Y, int n, int N, int K,
               cudaDataType tout, float beta, lmc_error *err)
{
    return DISPATCH(cu->prec, qgemm_t, cu, q, X, Y, n, N, K, tout, beta, err);
}

/* W8A8 with one activation quantization for the whole slot */
static int one_w8a8_group(const dquant &q)
{
    if (q.kind != LMC_CU_Q_W8A8 || getenv("LMC_CUDA_I8_UNFUSED") || getenv("LMC_CUDA_I8_SCALAR"))
        return 0;
    for (int i = 0; i < q.nparts; i++)
        if (q.p[i].lead != 0)
            return 0;
    return 1;
}

int qslot_fuses_act(const dquant &q, int F) { return one_w8a8_group(q) && F % 4 == 0 && q.N % 4 == 0; }

int qslot_norm_quant(const lmc_cu *cu, const dquant &q, int n, const float **smooth,
                     int8_t **codes, float **sx, int *kp)
{
    if (!one_w8a8_group(q) || n > cu->q_chunk || !norm_q_ok(q.K))
        return 0;
    *smooth = q.p[0].smooth, *codes = cu->q_xq, *sx = cu->q_sx, *kp = q.kp;
    return 1;
}

template <typename T>
static int qact_t(lmc_cu *cu, const dquant &q, const void *X, int n, int K, const qslot_act &af,
                  lmc_error *err)
{
    return i8_gemm<T, T>(cu, q, (const T *)X, NULL, n, q.N, K, 0, err, &af);
}

int qslot_gemm_act(lmc_cu *cu, const dquant &q, const void *X, int n, int K,
                   const qslot_act &af, lmc_error *err)
{
    return DISPATCH(cu->prec, qact_t, cu, q, X, n, K, af, err);
}

/* ---------------------------------------------------------------- set-up */

void qslot_free(lmc_cu *cu, dquant &q)
{
    dfree(cu, q.codes);
    dfree(cu, q.sw);
    for (int i = 0; i < q.nparts; i++) {
        dqpart &p = q.p[i];
        dfree(cu, p.smooth);
        dfree(cu, p.is_out);
        dfree(cu, p.oidx);
        dfree(cu, p.ow);
        dfree(cu, p.blob);
    }
    memset(&q, 0, sizeof q);
}

/* *p holds at least `bytes` (a scratch buffer; contents not kept). */
static int grow(lmc_cu *cu, void **p, size_t *cap, size_t bytes, const char *what,
                lmc_error *err)
{
    if (bytes <= *cap)
        return 0;
    dfree(cu, *p);
    *p = NULL;
    *cap = 0;
    if (dalloc(cu, p, bytes, what, err) < 0)
        return -1;
    *cap = bytes;
    return 0;
}

static int up(lmc_cu *cu, void **d, const void *h, size_t bytes, const char *what,
              lmc_error *err)
{
    if (dalloc(cu, d, bytes, what, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(*d, h, bytes, cudaMemcpyHostToDevice), what);
    return 0;
}

/* Same activation quantization: equal smoothing (W8A8) or outlier columns. */
static bool same_quant(int kind, const lmc_cu_qpart &a, const lmc_cu_qpart &b, int K)
{
    if (kind == LMC_CU_Q_W8A8)
        return (!a.smooth && !b.smooth) ||
               (a.smooth && b.smooth && !memcmp(a.smooth, b.smooth, (size_t)K * 4));
    return a.nout == b.nout && !memcmp(a.oidx, b.oidx, (size_t)a.nout * 4);
}

/* The scratch every int8 slot shares, sized for this one. */
static int int8_scratch(lmc_cu *cu, int N, int kp, int nout, lmc_error *err)
{
    if (!cu->q_chunk) {
        /* tokens per int8 product: the int32 products of the widest slot
         * in at most 1 GiB, in equal chunks of a forward's rows (TinyLlama
         * shape, H200: 16384 rows at once 275.6k tokens/s, chunks of 8192
         * 270.5k, 5957 + 5957 + 4470 262.1k) */
        const lmc_cu_dims *d = &cu->d;
        int wide = std::max({qdim(d) + 2 * kvdim(d), d->ffn * (d->gated ? 2 : 1), d->hidden});
        size_t c = ((size_t)1 << 30) / ((size_t)wide * 4), mt = (size_t)cu->max_tokens;
        const char *e = getenv("LMC_CUDA_I8_TOKENS"); /* for measurements */
        if (e && atoi(e) > 0)
            c = (size_t)atoi(e);
        c = std::max((size_t)64, c);
        if (c < mt) {
            size_t nch = (mt + c - 1) / c;
            c = std::min(c, ((mt + nch - 1) / nch + 127) / 128 * 128);
        }
        cu->q_chunk = (int)std::min(c, mt);
    }
    size_t T = (size_t)cu->q_chunk;
    if (kp > cu->q_kp) {
        size_t c1 = 0, c2 = 0;
        dfree(cu, cu->q_xq);
        dfree(cu, cu->q_sx);
        cu->q_xq = NULL, cu->q_sx = NULL, cu->q_kp = 0;
        if (grow(cu, (void **)&cu->q_xq, &c1, T * kp, "int8 activations", err) < 0 ||
            grow(cu, (void **)&cu->q_sx, &c2, T * 4, "int8 activations", err) < 0)
            return -1;
        cu->q_kp = kp;
    }
    if (N > cu->q_n) {
        size_t c = 0;
        dfree(cu, cu->q_acc);
        cu->q_acc = NULL, cu->q_n = 0;
        if (grow(cu, (void **)&cu->q_acc, &c, T * N * 4, "int8 products", err) < 0)
            return -1;
        cu->q_n = N;
    }
    if (nout > cu->q_nout) {
        size_t c = 0;
        dfree(cu, cu->q_xo);
        cu->q_xo = NULL, cu->q_nout = 0;
        if (grow(cu, &cu->q_xo, &c, T * nout * cu->es, "outlier activations", err) < 0)
            return -1;
        cu->q_nout = nout;
    }
    return 0;
}

/* Expands part p into the scratch to check it: *bad as k_dequant's. */
static int packed_check(lmc_cu *cu, const dqpart &p, int K, int64_t *bad, lmc_error *err)
{
    unsigned long long none = ~0ull, b;
    CUDA_OK(cudaMemcpy(cu->bad, &none, sizeof none, cudaMemcpyHostToDevice), "dequantization");
    size_t ne = (size_t)p.rows * K;
#define DQ(T)                                                                                 \
    k_dequant<T><<<grid_for(ne), 256>>>(p.blob, p.rows, K, p.bits, p.group, p.sym, p.has_gidx, \
                                        p.ngroups, p.crb, p.zrb, p.off_scales, p.off_zeros,    \
                                        p.off_gidx, (T *)cu->q_w, cu->bad)
    if (cu->prec == PREC_FP32)
        DQ(float);
    else if (cu->prec == PREC_FP16)
        DQ(f16);
    else
        DQ(bf16);
#undef DQ
    LAUNCH_OK("dequantization kernel");
    CUDA_OK(cudaMemcpy(&b, cu->bad, sizeof b, cudaMemcpyDeviceToHost), "dequantization");
    *bad = b == none ? -1 : (int64_t)b;
    return 0;
}

extern "C" int lmc_cu_set_quant(lmc_cu *cu, int which, int layer, int kind, int nparts,
                                const lmc_cu_qpart *parts, int *bad_part, int64_t *bad,
                                lmc_error *err)
{
    *bad_part = -1;
    *bad = -1;
    const lmc_cu_dims *d = &cu->d;
    int out[3], K;
    if (which < LMC_CU_QKV || which > LMC_CU_DOWN || layer < 0 || layer >= d->n_layers ||
        nparts != slot_parts(d, which, out, &K) || kind < LMC_CU_Q_W8A8 ||
        kind > LMC_CU_Q_PACKED)
        return lmc_fail(err, "quantized slot: bad matrix %d / layer %d / %d parts / kind %d",
                        which, layer, nparts, kind);
    dblock &b = cu->blk[layer];
    dquant &q = b.q[which - LMC_CU_QKV];
    void *dense = which == LMC_CU_QKV ? b.wqkv
                  : which == LMC_CU_O ? b.wo
                  : which == LMC_CU_GU ? b.wgu
                                       : b.wdown;
    if (dense || b.lr[which - LMC_CU_QKV].nparts || q.kind)
        return lmc_fail(err, "quantized slot: matrix %d of block %d already has weights", which,
                        layer);
    int N = 0;
    for (int i = 0; i < nparts; i++) {
        if (parts[i].rows != out[i])
            return lmc_fail(err, "quantized slot: part %d has %d rows, expected %d", i,
                            parts[i].rows, out[i]);
        N += out[i];
    }
    char what[64];
    snprintf(what, sizeof what, "block %d quantized weights", layer);
    q.kind = kind;
    q.nparts = nparts;
    q.N = N;
    q.K = K;
    if (kind == LMC_CU_Q_PACKED) {
        int row0 = 0;
        for (int i = 0; i < nparts; i++) {
            const lmc_cu_qpart &h = parts[i];
            dqpart &p = q.p[i];
            p.row0 = row0, p.rows = h.rows, p.lead = i, p.grows = h.rows;
            p.bits = h.bits, p.group = h.group, p.sym = h.sym, p.has_gidx = h.has_gidx;
            p.ngroups = h.ngroups, p.crb = h.code_row_bytes, p.zrb = h.zero_row_bytes;
            p.off_scales = h.off_scales, p.off_zeros = h.off_zeros, p.off_gidx = h.off_gidx;
            if (up(cu, (void **)&p.blob, h.blob, h.nbytes, what, err) < 0)
                return -1;
            row0 += h.rows;
        }
        size_t c = cu->q_wcap;
        if (grow(cu, &cu->q_w, &c, (size_t)N * K * cu->es, "expanded weights", err) < 0)
            return -1;
        cu->q_wcap = c;
        for (int i = 0; i < nparts; i++) {
            if (packed_check(cu, q.p[i], K, bad, err) < 0)
                return -1;
            if (*bad >= 0) {
                *bad_part = i;
                return 0;
            }
        }
        return 0;
    }
    /* int8 kinds: codes padded to kp columns (16-byte rows for the GEMM) */
    int kp = (K + 15) & ~15, nout_max = 0;
    std::vector<int8_t> codes((size_t)N * kp, 0);
    std::vector<float> sw((size_t)N);
    int row0 = 0;
    for (int i = 0; i < nparts; i++) {
        const lmc_cu_qpart &h = parts[i];
        for (int r = 0; r < h.rows; r++)
            memcpy(&codes[(size_t)(row0 + r) * kp], h.codes + (size_t)r * K, (size_t)K);
        memcpy(&sw[row0], h.sw, (size_t)h.rows * 4);
        dqpart &p = q.p[i];
        p.row0 = row0, p.rows = h.rows;
        p.lead = i > 0 && same_quant(kind, parts[i - 1], h, K) ? q.p[i - 1].lead : i;
        q.p[p.lead].grows = (p.lead == i ? 0 : q.p[p.lead].grows) + h.rows;
        if (p.lead == i && kind == LMC_CU_Q_W8A8 && h.smooth &&
            up(cu, (void **)&p.smooth, h.smooth, (size_t)K * 4, what, err) < 0)
            return -1;
        if (kind == LMC_CU_Q_INT8) {
            p.nout = h.nout;
            nout_max = std::max(nout_max, h.nout);
            if (p.lead == i) {
                std::vector<uint8_t> m((size_t)K, 0);
                for (int j = 0; j < h.nout; j++)
                    m[(size_t)h.oidx[j]] = 1;
                if (up(cu, (void **)&p.is_out, m.data(), (size_t)K, what, err) < 0 ||
                    (h.nout && up(cu, (void **)&p.oidx, h.oidx, (size_t)h.nout * 4, what, err) < 0))
                    return -1;
            } else {
                p.oidx = NULL; /* the lead's */
            }
            if (h.nout) {
                /* the group's ow rows must be consecutive: one buffer per
                 * group, parts at their row offsets */
                dqpart &L = q.p[p.lead];
                if (p.lead == i) {
                    int grows = h.rows;
                    for (int j = i + 1; j < nparts && same_quant(kind, parts[j - 1], parts[j], K);
                         j++)
                        grows += parts[j].rows;
                    if (dalloc(cu, &L.ow, (size_t)grows * h.nout * cu->es, what, err) < 0)
                        return -1;
                }
                size_t off = (size_t)(row0 - L.row0) * h.nout;
                if (upload_to(cu, L.ow, off, h.ow, LMC_CU_SRC_F32, (size_t)h.rows * h.nout, bad,
                              err) < 0)
                    return -1;
                if (*bad >= 0) {
                    *bad_part = i;
                    return 0;
                }
            }
        }
        row0 += h.rows;
    }
    if (up(cu, (void **)&q.codes, codes.data(), codes.size(), what, err) < 0 ||
        up(cu, (void **)&q.sw, sw.data(), sw.size() * 4, what, err) < 0)
        return -1;
    q.kp = kp;
    return int8_scratch(cu, N, kp, nout_max, err);
}

extern "C" size_t lmc_cu_expand_bytes(const lmc_cu *cu) { return cu->q_wcap; }

extern "C" int lmc_cu_test_qslot(lmc_cu *cu, int which, int layer, const float *x, int n,
                                 float *y, lmc_error *err)
{
    err->msg[0] = 0;
    if (cu->prec != PREC_FP32 || which < LMC_CU_QKV || which > LMC_CU_DOWN || layer < 0 ||
        layer >= cu->d.n_layers || n < 1 || n > cu->max_tokens)
        return lmc_fail(err, "slot test: bad arguments");
    const dquant &q = cu->blk[layer].q[which - LMC_CU_QKV];
    if (!q.kind)
        return lmc_fail(err, "slot test: matrix %d of block %d is not held quantized", which,
                        layer);
    void *dx, *dy;
    if (dalloc(cu, &dx, (size_t)n * q.K * 4, "test input", err) < 0)
        return -1;
    if (dalloc(cu, &dy, (size_t)n * q.N * 4, "test output", err) < 0) {
        dfree(cu, dx);
        return -1;
    }
    int rc = -1;
    if (cudaMemcpy(dx, x, (size_t)n * q.K * 4, cudaMemcpyHostToDevice) != cudaSuccess)
        lmc_fail(err, "slot test: upload");
    else if (qslot_gemm(cu, q, dx, dy, n, q.N, q.K, CUDA_R_32F, 0.0f, err) == 0 &&
             cudaStreamSynchronize(cu->st) == cudaSuccess &&
             cudaMemcpy(y, dy, (size_t)n * q.N * 4, cudaMemcpyDeviceToHost) == cudaSuccess)
        rc = 0;
    else if (!err->msg[0])
        lmc_fail(err, "slot test: %s", cudaGetErrorString(cudaGetLastError()));
    dfree(cu, dx);
    dfree(cu, dy);
    return rc;
}
