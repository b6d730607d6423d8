/* CUDA forward pass, the GPU twin of forward_cpu.c: the same window
 * protocol, the same op order, the same NLL.
 *
 * Layout of one forward over nwin windows of S tokens (T = nwin * S rows):
 *   x    [T][H]       residual stream: fp32, or the compute type (res_half,
 *                     the default at fp16/bf16, as transformers keeps it)
 *   xn   [T][H]       norm output, in the weight type W (fp32/fp16/bf16)
 *   qkv  [T][qd+2kvd] one GEMM against the fused q|k|v weight, then bias +
 *                     RoPE in place (without biases, k_attn_wg rotates Q
 *                     as it loads it, and only k is rotated here)
 *   ctx  [T][qd]      attention (flash-style, online softmax, causal, GQA)
 *   x   += ctx Wo^T   GEMM straight into the residual (beta = 1)
 *   gu   [T][2F]      fused gate|up GEMM (up only without a gate)
 *   act  [T][F]       silu(g)*u / act(u), biases added here
 *   x   += act Wd^T   GEMM into the residual
 * o/down biases are added by the next norm kernel (x += b; then normalize),
 * in the same order the CPU adds them. The head runs in row chunks into
 * logits (fp16 at fp16 with the half residual, else fp32); one block per
 * row computes the NLL (exponentials summed in double), and one block per
 * window sums its rows in a fixed order.
 *
 * Matrix products: cuBLAS GemmEx (gemm_cuda.cu), compute type fp32
 * (pedantic, i.e. no TF32, for fp32 precision). A slot whose linears are
 * all low-rank keeps the factors: x . B^T for all of them in one product,
 * then one product per linear into its columns (slot_gemm).
 * Attention, fp16/bf16: on a
 * Hopper (sm_90a build) and head_dim 64 a wgmma kernel (k_attn_wg), else an
 * mma.sync m16n8k16 kernel for head_dim 32/64/96/128 (k_attn_tc), both with
 * fp32 accumulation; a SIMT fp32 kernel otherwise and for fp32 precision.
 * The NLL forward is captured once per shape and replayed as a CUDA graph.
 *
 * This file sees no lmc_model (core/encoding.h is C only): forward_cuda.c
 * loads the model through forward_cuda_dev.h. Environment knobs, for
 * comparisons: LMC_CUDA_PROFILE=1 prints device time per stage when the
 * model is freed (every forward then runs eagerly, and the events between
 * kernels slow it); LMC_CUDA_GRAPH=0 runs forwards eagerly;
 * LMC_CUDA_NO_WGMMA=1 and LMC_CUDA_ATTN_NOPACK=1 select the mma.sync
 * attention and turn off its GQA head packing; LMC_CUDA_ROPE_UNFUSED=1
 * rotates Q in the RoPE kernel rather than inside k_attn_wg.
 *
 * Measured (H200, TinyLlama-1.1B shape, fp16, 8 windows of 2048 per forward;
 * ncu per kernel, scripts/bench-cuda for the rates): GEMMs at cuBLAS's own
 * rate on these shapes (610-760 TFLOP/s), attention 330 TFLOP/s of causal
 * FLOPs (wgmma; mma.sync 266), the norm/activation/RoPE/NLL kernels at
 * 2.5-4 TB/s; a forward is ~69 ms, of which GEMMs ~46, attention ~9. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <type_traits>
#include <vector>

extern "C" { /* C */
#include "../core/clock.h"
}
#include "cuda_check.h"
#include "forward_cuda_dev.h"
#include "gemm_cuda.h"

typedef __half f16;
typedef __nv_bfloat16 bf16;

/* ---------------------------------------------------------------- types */

__device__ __forceinline__ float tof(float x) { return x; }
__device__ __forceinline__ float tof(f16 x) { return __half2float(x); }
__device__ __forceinline__ float tof(bf16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T fromf(float x);
template <> __device__ __forceinline__ float fromf<float>(float x) { return x; }
template <> __device__ __forceinline__ f16 fromf<f16>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ bf16 fromf<bf16>(float x) { return __float2bfloat16_rn(x); }

/* Pairs of elements (4- or 8-byte accesses). */
template <typename T> struct vec2;
template <> struct vec2<float> { typedef float2 type; };
template <> struct vec2<f16> { typedef __half2 type; };
template <> struct vec2<bf16> { typedef __nv_bfloat162 type; };
template <typename T> __device__ __forceinline__ typename vec2<T>::type fromf2(float x, float y);
template <> __device__ __forceinline__ float2 fromf2<float>(float x, float y)
{
    return make_float2(x, y);
}
template <> __device__ __forceinline__ __half2 fromf2<f16>(float x, float y)
{
    return __floats2half2_rn(x, y);
}
template <> __device__ __forceinline__ __nv_bfloat162 fromf2<bf16>(float x, float y)
{
    return __floats2bfloat162_rn(x, y);
}
__device__ __forceinline__ float2 tof2(float2 v) { return v; }
__device__ __forceinline__ float2 tof2(__half2 v) { return __half22float2(v); }
__device__ __forceinline__ float2 tof2(__nv_bfloat162 v) { return __bfloat1622float2(v); }

template <typename T> static cudaDataType dtype_of();
template <> cudaDataType dtype_of<float>() { return CUDA_R_32F; }
template <> cudaDataType dtype_of<f16>() { return CUDA_R_16F; }
template <> cudaDataType dtype_of<bf16>() { return CUDA_R_16BF; }

enum { PREC_FP32 = 1, PREC_FP16 = 2, PREC_BF16 = 3 }; /* lmc_precision's values */
static size_t esize_of(int p) { return p == PREC_FP32 ? 4 : 2; }

/* ---------------------------------------------------------------- reductions */

__device__ __forceinline__ double warp_sum(double v)
{
    for (int o = 16; o; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sumf(float v)
{
    for (int o = 16; o; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim a multiple of 32, <= 1024), result to all. */
__device__ double block_sum(double v, double *red)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* red may still be read from a previous call */
    if (lane == 0)
        red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0;
    return warp_sum(v);
}

__device__ float block_max(float v, float *red)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0)
        red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

/* ---------------------------------------------------------------- conversion */

/* d = T(s); bad <- smallest index whose converted value is not finite. */
template <typename T>
__global__ void k_from_f32(const float *s, T *d, size_t n, unsigned long long *bad)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        T o = fromf<T>(s[i]);
        d[i] = o;
        if (!isfinite(tof(o)))
            atomicMin(bad, (unsigned long long)i);
    }
}

template <typename T>
__global__ void k_from_u16(const uint16_t *s, T *d, size_t n, int is_bf16, unsigned long long *bad)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = is_bf16 ? __bfloat162float(__ushort_as_bfloat16(s[i]))
                          : __half2float(__ushort_as_half(s[i]));
        T o = fromf<T>(v);
        d[i] = o;
        if (!isfinite(tof(o)))
            atomicMin(bad, (unsigned long long)i);
    }
}

template <typename T> __global__ void k_to_f32(const T *s, float *d, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        d[i] = tof(s[i]);
}

static int grid_for(size_t n)
{
    size_t g = (n + 255) / 256;
    return (int)(g > 65536 ? 65536 : (g ? g : 1));
}

/* ---------------------------------------------------------------- kernels */

/* x[t] = E[ids[t]] (+ P[t % S + pos_off]) */
template <typename T, typename R>
__global__ void k_embed(const int32_t *ids, const T *E, const float *P, int pos_off, int S, int H,
                        R *x)
{
    size_t t = blockIdx.x;
    const T *e = E + (size_t)ids[t] * H;
    const float *p = P ? P + (size_t)((int)(t % S) + pos_off) * H : NULL;
    R *xr = x + t * H;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        float v = tof(e[j]);
        if (p)
            v += p[j];
        xr[j] = fromf<R>(v);
    }
}

/* v rounded to the residual type R (identity for fp32) */
template <typename R> __device__ __forceinline__ float rnd(float v) { return tof(fromf<R>(v)); }

/* One row per block: x += badd (stored back), y = norm(x), as lmc_op_norm.
 * R is the residual's type: fp32, or the compute type (--residual half). */
template <typename T, typename R>
__global__ void k_norm(R *x, const float *badd, T *y, int H, const float *w, const float *b,
                       int rms, float eps)
{
    __shared__ double red[32];
    R *xr = x + (size_t)blockIdx.x * H;
    T *yr = y + (size_t)blockIdx.x * H;
    double s = 0;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        float v = tof(xr[j]);
        if (badd) {
            v = rnd<R>(v + badd[j]);
            xr[j] = fromf<R>(v);
        }
        s += rms ? (double)v * v : (double)v;
    }
    s = block_sum(s, red);
    if (rms) {
        float var = (float)(s / H);
        float r = 1.0f / sqrtf(var + eps);
        for (int j = threadIdx.x; j < H; j += blockDim.x)
            yr[j] = fromf<T>(w[j] * (tof(xr[j]) * r));
        return;
    }
    double mu = s / H, s2 = 0;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        double d = tof(xr[j]) - mu;
        s2 += d * d;
    }
    s2 = block_sum(s2, red);
    float r = (float)(1.0 / sqrt(s2 / H + (double)eps)), m = (float)mu;
    for (int j = threadIdx.x; j < H; j += blockDim.x)
        yr[j] = fromf<T>((tof(xr[j]) - m) * r * w[j] + (b ? b[j] : 0.0f));
}

/* The same for H % 4 == 0 and H <= 32 * blockDim: the row stays in
 * registers (one read of x), 16-byte loads, 8-byte stores of 16-bit y. */
template <typename T> __device__ __forceinline__ void store4(T *p, float a, float b, float c,
                                                            float d)
{
    if constexpr (sizeof(T) == 4) {
        *reinterpret_cast<float4 *>(p) = make_float4(a, b, c, d);
    } else {
        typename vec2<T>::type lo = fromf2<T>(a, b), hi = fromf2<T>(c, d);
        uint2 u;
        u.x = *reinterpret_cast<uint32_t *>(&lo);
        u.y = *reinterpret_cast<uint32_t *>(&hi);
        *reinterpret_cast<uint2 *>(p) = u;
    }
}

/* Four elements from p (16-byte aligned for fp32, 8-byte for 16-bit). */
template <typename T> __device__ __forceinline__ float4 load4(const T *p)
{
    if constexpr (sizeof(T) == 4) {
        return *reinterpret_cast<const float4 *>(p);
    } else {
        typedef typename vec2<T>::type V2;
        uint2 u = *reinterpret_cast<const uint2 *>(p);
        float2 lo = tof2(*reinterpret_cast<const V2 *>(&u.x)),
               hi = tof2(*reinterpret_cast<const V2 *>(&u.y));
        return make_float4(lo.x, lo.y, hi.x, hi.y);
    }
}

template <typename T, typename R>
__global__ void k_norm4(R *x, const float *badd, T *y, int H, const float *w, const float *b,
                        int rms, float eps)
{
    __shared__ double red[32];
    R *xr = x + (size_t)blockIdx.x * H;
    T *yr = y + (size_t)blockIdx.x * H;
    const float4 *ba = reinterpret_cast<const float4 *>(badd);
    const float4 *w4 = reinterpret_cast<const float4 *>(w), *b4 = reinterpret_cast<const float4 *>(b);
    int H4 = H / 4;
    float4 v[8];
    double s = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int j = threadIdx.x + i * blockDim.x;
        if (j < H4) {
            float4 a = load4<R>(xr + 4 * j);
            if (ba) {
                float4 c = ba[j];
                a.x = rnd<R>(a.x + c.x), a.y = rnd<R>(a.y + c.y), a.z = rnd<R>(a.z + c.z),
                a.w = rnd<R>(a.w + c.w);
                store4<R>(xr + 4 * j, a.x, a.y, a.z, a.w);
            }
            v[i] = a;
            s += rms ? (double)a.x * a.x + (double)a.y * a.y + (double)a.z * a.z +
                           (double)a.w * a.w
                     : (double)a.x + (double)a.y + (double)a.z + (double)a.w;
        }
    }
    s = block_sum(s, red);
    float r, m = 0.0f;
    if (rms) {
        float var = (float)(s / H);
        r = 1.0f / sqrtf(var + eps);
    } else {
        double mu = s / H, s2 = 0;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (threadIdx.x + i * blockDim.x < H4) {
                double d0 = v[i].x - mu, d1 = v[i].y - mu, d2 = v[i].z - mu, d3 = v[i].w - mu;
                s2 += d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3;
            }
        s2 = block_sum(s2, red);
        r = (float)(1.0 / sqrt(s2 / H + (double)eps));
        m = (float)mu;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int j = threadIdx.x + i * blockDim.x;
        if (j < H4) {
            float4 a = v[i], ww = w4[j];
            if (rms) {
                store4<T>(yr + 4 * j, ww.x * (a.x * r), ww.y * (a.y * r), ww.z * (a.z * r),
                          ww.w * (a.w * r));
            } else {
                float4 bb = b4 ? b4[j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                store4<T>(yr + 4 * j, (a.x - m) * r * ww.x + bb.x, (a.y - m) * r * ww.y + bb.y,
                          (a.z - m) * r * ww.z + bb.z, (a.w - m) * r * ww.w + bb.w);
            }
        }
    }
}

static int norm_threads(int H)
{
    int t = (H / 4 + 31) / 32 * 32;
    return t < 64 ? 64 : (t > 1024 ? 1024 : t);
}

template <typename T, typename R>
static void launch_norm(R *x, const float *badd, T *y, int n, int H, const float *w,
                        const float *b, int rms, float eps, cudaStream_t st)
{
    int H4 = H / 4;
    /* ~4 float4 per thread: smaller blocks, more rows in flight per SM
     * (2.3 -> ~3.3 TB/s at H = 2048; 2 and 8 per thread measured slower) */
    int t = std::min(1024, std::max(64, (H4 / 4 + 31) / 32 * 32));
    if (H % 4 == 0 && H4 <= 8 * t)
        k_norm4<T, R><<<n, t, 0, st>>>(x, badd, y, H, w, b, rms, eps);
    else
        k_norm<T, R><<<n, norm_threads(H), 0, st>>>(x, badd, y, H, w, b, rms, eps);
}

/* One rotate_half RoPE pair, written once so that every kernel that rotates
 * (k_qkv_post, k_qkv_rope2, k_attn_wg's Q) rounds alike. */
__device__ __forceinline__ void rope_pair(float x1, float x2, float c, float s, float &y1,
                                          float &y2)
{
    y1 = fmaf(x1, c, -x2 * s);
    y2 = fmaf(x2, c, x1 * s);
}

/* Per token row of qkv [q | k | v]: + bias, then rotate_half RoPE on q and k
 * heads at position t % S. */
template <typename T>
__global__ void k_qkv_post(T *qkv, const float *bias, int ld, int qd, int kvd, int nh, int nkv,
                           int hd, int S, const float *cs, const float *sn)
{
    size_t t = blockIdx.x;
    T *row = qkv + t * ld;
    if (cs) {
        int half = hd / 2, pos = (int)(t % S);
        const float *c = cs + (size_t)pos * half, *s = sn + (size_t)pos * half;
        int npairs = (nh + nkv) * half;
        for (int idx = threadIdx.x; idx < npairs; idx += blockDim.x) {
            int hh = idx / half, i = idx - hh * half;
            int off = (hh < nh ? hh * hd : qd + (hh - nh) * hd) + i;
            float x1 = tof(row[off]), x2 = tof(row[off + half]);
            if (bias) {
                x1 += bias[off];
                x2 += bias[off + half];
            }
            float y1, y2;
            rope_pair(x1, x2, c[i], s[i], y1, y2);
            row[off] = fromf<T>(y1);
            row[off + half] = fromf<T>(y2);
        }
        if (bias)
            for (int j = threadIdx.x; j < kvd; j += blockDim.x) {
                int o = qd + kvd + j;
                row[o] = fromf<T>(tof(row[o]) + bias[o]);
            }
    } else if (bias) {
        for (int j = threadIdx.x; j < ld; j += blockDim.x)
            row[j] = fromf<T>(tof(row[j]) + bias[j]);
    }
}

/* k_qkv_post's RoPE for even half = head_dim / 2: two adjacent pairs per
 * thread (4-byte loads of 16-bit values, float2 tables): 1.35 -> 0.92 ms per
 * TinyLlama-shaped forward (ncu, H200). nh = 0: the k heads only (k_attn_wg
 * rotates Q itself). */
template <typename T>
__global__ void k_qkv_rope2(T *qkv, const float *bias, int ld, int qd, int kvd, int nh, int nkv,
                            int hd, int S, const float *cs, const float *sn)
{
    typedef typename vec2<T>::type T2;
    size_t t = blockIdx.x;
    T *row = qkv + t * ld;
    int half = hd / 2, hp = half / 2, pos = (int)(t % S);
    const float2 *c = reinterpret_cast<const float2 *>(cs + (size_t)pos * half),
                 *s = reinterpret_cast<const float2 *>(sn + (size_t)pos * half);
    int n2 = (nh + nkv) * hp;
    for (int idx = threadIdx.x; idx < n2; idx += blockDim.x) {
        int hh = idx / hp, i2 = idx - hh * hp;
        int off = (hh < nh ? hh * hd : qd + (hh - nh) * hd) + 2 * i2;
        float2 x1 = tof2(*reinterpret_cast<const T2 *>(row + off)),
               x2 = tof2(*reinterpret_cast<const T2 *>(row + off + half));
        if (bias) {
            x1.x += bias[off], x1.y += bias[off + 1];
            x2.x += bias[off + half], x2.y += bias[off + half + 1];
        }
        float2 cc = c[i2], ss = s[i2], y1, y2;
        rope_pair(x1.x, x2.x, cc.x, ss.x, y1.x, y2.x);
        rope_pair(x1.y, x2.y, cc.y, ss.y, y1.y, y2.y);
        *reinterpret_cast<T2 *>(row + off) = fromf2<T>(y1.x, y1.y);
        *reinterpret_cast<T2 *>(row + off + half) = fromf2<T>(y2.x, y2.y);
    }
    if (bias)
        for (int j = threadIdx.x; j < kvd; j += blockDim.x) {
            int o = qd + kvd + j;
            row[o] = fromf<T>(tof(row[o]) + bias[o]);
        }
}

/* lmc_act's values (core/model.h) */
enum { ACT_SILU = 1, ACT_RELU = 2, ACT_GELU_NEW = 3, ACT_GELU = 4 };

__device__ __forceinline__ float act_f(float x, int act)
{
    switch (act) {
    case ACT_SILU: return x / (1.0f + expf(-x));
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    case ACT_GELU_NEW:
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    default: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
}

/* a[t][j] = act(g + bg) * (u + bu) (gated: gu row = g[F] | u[F]) or act(u + bu). */
template <typename T>
__global__ void k_act(const T *gu, const float *bias, T *a, int F, int gated, int act)
{
    size_t t = blockIdx.y;
    int ldg = gated ? 2 * F : F;
    const T *g = gu + t * ldg, *u = gated ? g + F : g;
    const float *bg = bias, *bu = bias ? (gated ? bias + F : bias) : NULL;
    T *ar = a + t * F;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < F; j += gridDim.x * blockDim.x) {
        float uv = tof(u[j]) + (bu ? bu[j] : 0.0f);
        float r;
        if (gated) {
            float gv = tof(g[j]) + (bg ? bg[j] : 0.0f);
            r = act_f(gv, act) * uv;
        } else {
            r = act_f(uv, act);
        }
        ar[j] = fromf<T>(r);
    }
}

/* Activations for 16-bit passes: fast exponential and division (their
 * error is far below the output's rounding); fp32 keeps the exact ones. */
template <typename T> __device__ __forceinline__ float act_t(float x, int act)
{
    if constexpr (sizeof(T) == 2) {
        if (act == ACT_SILU)
            return __fdividef(x, 1.0f + __expf(-x));
    }
    return act_f(x, act);
}

/* The same with 16-byte loads and stores (F a multiple of 16 / sizeof(T)):
 * the kernel is memory-bound. */
template <typename T>
__global__ void k_act_v(const T *gu, const float *bias, T *a, int F, int gated, int act)
{
    constexpr int V = 16 / sizeof(T);
    size_t t = blockIdx.y;
    int ldg = gated ? 2 * F : F, FV = F / V;
    const uint4 *g = reinterpret_cast<const uint4 *>(gu + t * ldg);
    const uint4 *u = reinterpret_cast<const uint4 *>(gu + t * ldg + (gated ? F : 0));
    uint4 *ar = reinterpret_cast<uint4 *>(a + t * F);
    const float *bg = bias, *bu = bias ? (gated ? bias + F : bias) : NULL;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < FV; j += gridDim.x * blockDim.x) {
        uint4 uw = u[j], gw = gated ? g[j] : uw, ow;
        const T *ue = reinterpret_cast<const T *>(&uw), *ge = reinterpret_cast<const T *>(&gw);
        T *oe = reinterpret_cast<T *>(&ow);
#pragma unroll
        for (int e = 0; e < V; e++) {
            float uv = tof(ue[e]) + (bu ? bu[j * V + e] : 0.0f), r;
            if (gated)
                r = act_t<T>(tof(ge[e]) + (bg ? bg[j * V + e] : 0.0f), act) * uv;
            else
                r = act_t<T>(uv, act);
            oe[e] = fromf<T>(r);
        }
        ar[j] = ow;
    }
}

template <typename T>
static void launch_act(const T *gu, const float *bias, T *a, int n, int F, int gated, int act,
                       cudaStream_t st)
{
    constexpr int V = 16 / sizeof(T);
    if (F % V == 0) {
        dim3 g((F / V + 127) / 128, n);
        k_act_v<T><<<g, 128, 0, st>>>(gu, bias, a, F, gated, act);
    } else {
        dim3 g((F + 255) / 256, n);
        k_act<T><<<g, 256, 0, st>>>(gu, bias, a, F, gated, act);
    }
}

/* One row per block: nll = log sum exp(l - max) + max - l[target], one pass
 * over the row (online max), the exponentials summed in double. */
__device__ __forceinline__ void lse_add(float v, float &m, double &s)
{
    if (v > m) { /* rare after the first few values */
        s = s * exp((double)m - (double)v) + 1.0;
        m = v;
    } else {
        s += (double)expf(v - m);
    }
}

template <typename L>
__global__ void k_row_nll(const L *logits, int V, const int32_t *targets, double *out)
{
    __shared__ float redf[32];
    __shared__ double redd[32];
    size_t row = blockIdx.x;
    int tgt = targets[row];
    if (tgt < 0) { /* block-uniform */
        if (threadIdx.x == 0)
            out[row] = 0.0;
        return;
    }
    const L *l = logits + row * V;
    float m = -INFINITY;
    double s = 0.0;
    if (V % 4 == 0) { /* rows aligned: vector loads */
        /* per group of 4: one max update, then four independent exps
         * (0.92 -> 0.60 ms per TinyLlama-shaped forward, ncu, H200) */
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
            float4 v = load4<L>(l + 4 * j);
            float m4 = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
            if (m4 > m) {
                s = m == -INFINITY ? 0.0 : s * exp((double)m - (double)m4);
                m = m4;
            }
            s += (double)(expf(v.x - m) + expf(v.y - m) + expf(v.z - m) + expf(v.w - m));
        }
    } else {
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            lse_add(tof(l[j]), m, s);
    }
    float M = block_max(m, redf);
    s = m == -INFINITY ? 0.0 : s * exp((double)m - (double)M);
    s = block_sum(s, redd);
    if (threadIdx.x == 0)
        out[row] = log(s) + (double)M - (double)tof(l[tgt]);
}

/* win[w] = sum of row_nll over window w's S rows, in a fixed order. */
__global__ void k_window_sum(const double *row_nll, int S, double *win)
{
    __shared__ double red[32];
    const double *r = row_nll + (size_t)blockIdx.x * S;
    double s = 0;
    for (int j = threadIdx.x; j < S; j += blockDim.x)
        s += r[j];
    s = block_sum(s, red);
    if (threadIdx.x == 0)
        win[blockIdx.x] = s;
}

/* ---------------------------------------------------------------- attention, SIMT */

/* Causal GQA attention, fp32 math, any head_dim <= 256. A block of 8 warps
 * takes 32 query rows of one head (4 per warp); key/value tiles of 32 rows
 * are staged in shared memory; each lane scores one key, then accumulates
 * head_dim / 32 output columns. Online softmax with exact expf. */
#define SIMT_BR 32
#define SIMT_BC 32
template <typename T>
__global__ void __launch_bounds__(256)
k_attn_simt(const T *qkv, T *ctx, int S, int ld, int qd, int kvd, int group, int hd, float scale)
{
    extern __shared__ float sm[];
    float *sQ = sm;                        /* [BR][hd] */
    float *sK = sQ + SIMT_BR * hd;         /* [BC][hd+1] */
    float *sV = sK + SIMT_BC * (hd + 1);   /* [BC][hd] */
    int qt = gridDim.x - 1 - blockIdx.x; /* longest rows first */
    int h = blockIdx.y, w = blockIdx.z, g = h / group;
    int q0 = qt * SIMT_BR;
    const T *base = qkv + (size_t)w * S * ld;
    const T *Qg = base + (size_t)h * hd, *Kg = base + qd + (size_t)g * hd,
            *Vg = base + qd + kvd + (size_t)g * hd;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int i = tid; i < SIMT_BR * hd; i += blockDim.x) {
        int r = i / hd, d = i - r * hd, q = q0 + r;
        sQ[i] = q < S ? tof(Qg[(size_t)q * ld + d]) : 0.0f;
    }
    const int RPW = SIMT_BR / 8; /* rows per warp */
    float acc[RPW][8], m[RPW], l[RPW];
    for (int r = 0; r < RPW; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int c = 0; c < 8; c++)
            acc[r][c] = 0.0f;
    }
    int qlast = min(q0 + SIMT_BR, S) - 1;
    int nkt = qlast / SIMT_BC + 1;
    for (int kt = 0; kt < nkt; kt++) {
        int k0 = kt * SIMT_BC;
        __syncthreads();
        for (int i = tid; i < SIMT_BC * hd; i += blockDim.x) {
            int r = i / hd, d = i - r * hd, k = k0 + r;
            float kv = 0.0f, vv = 0.0f;
            if (k < S) {
                kv = tof(Kg[(size_t)k * ld + d]);
                vv = tof(Vg[(size_t)k * ld + d]);
            }
            sK[r * (hd + 1) + d] = kv;
            sV[r * hd + d] = vv;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            int qr = warp * RPW + r, qi = q0 + qr;
            int kj = k0 + lane;
            float s = -INFINITY;
            if (kj <= qi) {
                const float *qv = sQ + qr * hd, *kv = sK + lane * (hd + 1);
                float d0 = 0.0f;
                for (int d = 0; d < hd; d++)
                    d0 += qv[d] * kv[d];
                s = d0 * scale;
            }
            float mx = warp_max(s);
            float mn = fmaxf(m[r], mx);
            float corr = expf(m[r] - mn); /* 0 on the first tile */
            float p = s == -INFINITY ? 0.0f : expf(s - mn);
            l[r] = l[r] * corr + warp_sumf(p);
            m[r] = mn;
#pragma unroll
            for (int c = 0; c < 8; c++)
                acc[r][c] *= corr;
            for (int j = 0; j < SIMT_BC; j++) {
                float pj = __shfl_sync(0xffffffffu, p, j);
                const float *vr = sV + j * hd;
#pragma unroll
                for (int c = 0; c < 8; c++) {
                    int d = lane + 32 * c;
                    if (d < hd)
                        acc[r][c] += pj * vr[d];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        int qi = q0 + warp * RPW + r;
        if (qi >= S)
            continue;
        float inv = 1.0f / l[r];
        T *out = ctx + ((size_t)w * S + qi) * qd + (size_t)h * hd;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            int d = lane + 32 * c;
            if (d < hd)
                out[d] = fromf<T>(acc[r][c] * inv);
        }
    }
}

/* ---------------------------------------------------------------- attention, tensor cores */

__device__ __forceinline__ void cp_async16(void *smem, const void *g, bool pred)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    int n = pred ? 16 : 0; /* 0: zero-fill */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(g), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(const void *p, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                        uint32_t &r3)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_t(const void *p, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                          uint32_t &r3)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(a));
}

template <typename T> struct mma_op;
template <> struct mma_op<f16> {
    static __device__ __forceinline__ void run(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        __half2 h = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};
template <> struct mma_op<bf16> {
    static __device__ __forceinline__ void run(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};

/* 2^x on the SFU (ex2.approx: ~2 ulp, 0 for -inf): the fp16/bf16 paths only */
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* FlashAttention-2 style: a block of 4 warps takes BR = 64 * MT query rows;
 * each warp owns MT m16 tiles (16 * MT rows, Q fragments in registers), so
 * every K/V fragment read from shared memory feeds MT tensor-core products
 * (MT = 2 halves the ldmatrix traffic that bounded MT = 1, and gives two
 * independent chains to overlap). 64-key K/V tiles are double-buffered in
 * shared memory with cp.async; S = Q K^T and O += P V on mma.sync with fp32
 * accumulators; online softmax in fp32, exp2 with the scale folded into one
 * FMA; P goes from accumulator to A-fragment registers.
 * GQA packing: the BR rows are BR/P positions x P query heads that share one
 * kv head (row r: position q0 + r / P, head h0 + r % P), so each K/V tile
 * loaded serves P heads. P = 1 is plain one-head tiles.
 * Grid: x = kv head x head pack, y = window, z = position tile, longest
 * rows first over the whole grid (blocks issue in x, y, z order), so the
 * short causal tiles fill the tail. */
#define TC_BC 64
template <typename T, int HD, int MT>
__global__ void __launch_bounds__(128, MT == 2 ? 2 : (HD <= 64 ? 4 : 2))
k_attn_tc(const T *qkv, T *ctx, int S, int ld, int qd, int kvd, int group, int lp,
          float scale_log2)
{
    constexpr int BR = 64 * MT;
    constexpr int LDS = HD + 8; /* +16 bytes: conflict-free ldmatrix */
    constexpr int CH = HD / 8;  /* 16-byte chunks per row */
    extern __shared__ __align__(16) unsigned char smraw[];
    T *sQ = reinterpret_cast<T *>(smraw);
    T *sK = sQ + BR * LDS; /* [2][BC][LDS] */
    T *sV = sK + 2 * TC_BC * LDS;
    const int P = 1 << lp, packs = group >> lp; /* heads per tile, tiles per kv head */
    int qt = gridDim.z - 1 - blockIdx.z;        /* longest rows first */
    int g = blockIdx.x / packs, h0 = g * group + (blockIdx.x - g * packs) * P, w = blockIdx.y;
    int q0 = qt * (BR >> lp); /* first position */
    const T *base = qkv + (size_t)w * S * ld;
    const T *Kg = base + qd + (size_t)g * HD, *Vg = base + qd + kvd + (size_t)g * HD;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    for (int c = tid; c < BR * CH; c += 128) {
        int r = c / CH, cc = c - r * CH, q = q0 + (r >> lp), h = h0 + (r & (P - 1));
        cp_async16(sQ + r * LDS + cc * 8, base + (size_t)min(q, S - 1) * ld + h * HD + cc * 8,
                   q < S);
    }
    int qlast = min(q0 + (BR >> lp), S) - 1;
    int nkt = qlast / TC_BC + 1;
    auto load_kv = [&](int kt, int buf) {
        T *dk = sK + buf * TC_BC * LDS, *dv = sV + buf * TC_BC * LDS;
        for (int c = tid; c < TC_BC * CH; c += 128) {
            int r = c / CH, cc = c - r * CH, k = kt * TC_BC + r;
            size_t off = (size_t)min(k, S - 1) * ld + cc * 8;
            cp_async16(dk + r * LDS + cc * 8, Kg + off, k < S);
            cp_async16(dv + r * LDS + cc * 8, Vg + off, k < S);
        }
    };
    load_kv(0, 0);
    cp_async_commit();

    uint32_t qf[MT][HD / 16][4];
    float o[MT][HD / 8][4];
    float mrow[MT][2], lrow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < HD / 8; i++)
            o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
        mrow[mt][0] = mrow[mt][1] = -INFINITY;
        lrow[mt][0] = lrow[mt][1] = 0.0f;
    }
    const int wr = warp * 16 * MT; /* this warp's first tile row */

    for (int kt = 0; kt < nkt; kt++) {
        int buf = kt & 1;
        if (kt + 1 < nkt)
            load_kv(kt + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
                    const T *p =
                        sQ + (wr + mt * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8;
                    ldsm_x4(p, qf[mt][kk][0], qf[mt][kk][1], qf[mt][kk][2], qf[mt][kk][3]);
                }
        }
        const T *tK = sK + buf * TC_BC * LDS, *tV = sV + buf * TC_BC * LDS;
        float s[MT][TC_BC / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int j = 0; j < TC_BC / 8; j++)
                s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
            for (int nn = 0; nn < TC_BC / 16; nn++) {
                uint32_t b0, b1, b2, b3;
                const T *p = tK + (nn * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk * 16 +
                             ((lane >> 3) & 1) * 8;
                ldsm_x4(p, b0, b1, b2, b3);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_op<T>::run(s[mt][2 * nn], qf[mt][kk], b0, b1);
                    mma_op<T>::run(s[mt][2 * nn + 1], qf[mt][kk], b2, b3);
                }
            }
        }
        /* causal mask (only tiles reaching past this warp's first row) */
        int k0 = kt * TC_BC;
        if (k0 + TC_BC - 1 > q0 + (wr >> lp)) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < TC_BC / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int col = k0 + j * 8 + 2 * (lane & 3) + (e & 1);
                        int row = wr + mt * 16 + (lane >> 2) + (e >> 1) * 8;
                        if (col > q0 + (row >> lp))
                            s[mt][j][e] = -INFINITY;
                    }
        }
        /* online softmax, per row (2 per m-tile and thread; a quad shares a
         * row), in units of log2 with the scale folded in */
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int hr = 0; hr < 2; hr++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < TC_BC / 8; j++)
                    mx = fmaxf(mx, fmaxf(s[mt][j][2 * hr], s[mt][j][2 * hr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float mn = fmaxf(mrow[mt][hr], mx * scale_log2);
                float corr = fast_exp2(mrow[mt][hr] - mn); /* 0 on the first tile */
                mrow[mt][hr] = mn;
                float sum = 0.0f;
#pragma unroll
                for (int j = 0; j < TC_BC / 8; j++) {
                    float p0 = fast_exp2(fmaf(s[mt][j][2 * hr], scale_log2, -mn));
                    float p1 = fast_exp2(fmaf(s[mt][j][2 * hr + 1], scale_log2, -mn));
                    s[mt][j][2 * hr] = p0;
                    s[mt][j][2 * hr + 1] = p1;
                    sum += p0 + p1;
                }
                lrow[mt][hr] = lrow[mt][hr] * corr + sum;
#pragma unroll
                for (int i = 0; i < HD / 8; i++) {
                    o[mt][i][2 * hr] *= corr;
                    o[mt][i][2 * hr + 1] *= corr;
                }
            }
        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < TC_BC / 16; kk++) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                a[mt][0] = mma_op<T>::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                a[mt][1] = mma_op<T>::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                a[mt][2] = mma_op<T>::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                a[mt][3] = mma_op<T>::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dn = 0; dn < HD / 16; dn++) {
                uint32_t b0, b1, b2, b3;
                const T *p = tV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + dn * 16 +
                             (lane >> 4) * 8;
                ldsm_x4_t(p, b0, b1, b2, b3);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_op<T>::run(o[mt][2 * dn], a[mt], b0, b1);
                    mma_op<T>::run(o[mt][2 * dn + 1], a[mt], b2, b3);
                }
            }
        }
        __syncthreads(); /* the buffer is refilled two tiles later */
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            float l = lrow[mt][hr];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            float inv = 1.0f / l;
            int r = wr + mt * 16 + (lane >> 2) + hr * 8, q = q0 + (r >> lp);
            if (q >= S)
                continue;
            T *out = ctx + ((size_t)w * S + q) * qd + (size_t)(h0 + (r & (P - 1))) * HD +
                     2 * (lane & 3);
#pragma unroll
            for (int i = 0; i < HD / 8; i++) {
                uint32_t v = mma_op<T>::pack(o[mt][i][2 * hr] * inv, o[mt][i][2 * hr + 1] * inv);
                *reinterpret_cast<uint32_t *>(out + i * 8) = v;
            }
        }
}

/* ---------------------------------------------------------------- attention, Hopper wgmma */

/* The same attention on Hopper's warpgroup MMA (sm_90a builds, head_dim 64,
 * fp16/bf16): a block of two warpgroups takes 128 query rows (64 each);
 * S = Q K^T and O += P V are wgmma m64n64k16 with Q, K and V read by the
 * tensor cores straight from shared memory (no ldmatrix), P from registers.
 * Tiles sit in shared memory in the 128-byte swizzled layout wgmma reads
 * (16-byte chunk c of 128-byte row r at chunk c ^ (r % 8)); V is read
 * transposed (its rows are the reduction dimension). Registers: S and O are
 * 32 floats per thread, so four warpgroups fit per SM, and one warpgroup's
 * softmax overlaps another's products. GQA packing, grid order and the
 * online softmax are k_attn_tc's. */
#define WG_BC 64
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LMC_DEVICE_WGMMA 1
#endif

/* Shared-memory matrix descriptor: 128-byte swizzle, 8-row groups 1024
 * bytes apart (the stride), leading offset unused by this layout (1). */
__device__ __forceinline__ uint64_t wg_desc(const void *p)
{
    uint64_t a = (uint64_t)__cvta_generic_to_shared(p);
    return ((a & 0x3FFFF) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}

/* the 32 fp32 accumulators of a m64n64 tile, per thread: operand text and
 * constraint list */
#define LMC_WG_D                                                                              \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23," \
    "%24,%25,%26,%27,%28,%29,%30,%31}, "
#define LMC_WG_ACC4(r) "+f"(r[0]), "+f"(r[1]), "+f"(r[2]), "+f"(r[3])
#define LMC_WG_ACC(d)                                                                         \
    LMC_WG_ACC4(d[0]), LMC_WG_ACC4(d[1]), LMC_WG_ACC4(d[2]), LMC_WG_ACC4(d[3]),               \
        LMC_WG_ACC4(d[4]), LMC_WG_ACC4(d[5]), LMC_WG_ACC4(d[6]), LMC_WG_ACC4(d[7])

template <typename T> struct wg_op;
#define LMC_WG_OPS(TY, PT)                                                                    \
    template <> struct wg_op<TY> {                                                            \
        /* d (+)= A B, A and B from shared memory (both K-major) */                           \
        static __device__ __forceinline__ void ss(float (&d)[8][4], uint64_t da, uint64_t db, \
                                                  int acc)                                    \
        {                                                                                     \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                         \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." PT "." PT " "          \
                         LMC_WG_D                                                             \
                         "%32, %33, p, 1, 1, 0, 0;\n}\n"                                      \
                         : LMC_WG_ACC(d)                                                      \
                         : "l"(da), "l"(db), "r"(acc));                                       \
        }                                                                                     \
        /* d += A B, A from registers, B from shared memory read transposed */                \
        static __device__ __forceinline__ void rs_t(float (&d)[8][4], const uint32_t (&a)[4], \
                                                    uint64_t db)                              \
        {                                                                                     \
            asm volatile("{\n"                                                                \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." PT "." PT " "          \
                         LMC_WG_D                                                             \
                         "{%32,%33,%34,%35}, %36, 1, 1, 1, 1;\n}\n"                           \
                         : LMC_WG_ACC(d)                                                      \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));              \
        }                                                                                     \
    };
LMC_WG_OPS(f16, "f16")
LMC_WG_OPS(bf16, "bf16")
#undef LMC_WG_OPS
#undef LMC_WG_ACC
#undef LMC_WG_ACC4
#undef LMC_WG_D

__device__ __forceinline__ void wg_fence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* cp.async writes through the generic proxy, wgmma reads through the async
 * one: make the former visible to the latter */
__device__ __forceinline__ void fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* Causal mask of one warp's 16 x 64 score tile (rows from tile row wr). */
__device__ __forceinline__ void wg_mask(float (&s)[8][4], int k0, int q0, int wr, int lp,
                                        int lane)
{
    if (k0 + WG_BC - 1 <= q0 + (wr >> lp)) /* the whole tile is visible */
        return;
#pragma unroll
    for (int j = 0; j < WG_BC / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int col = k0 + j * 8 + 2 * (lane & 3) + (e & 1);
            int row = wr + (lane >> 2) + (e >> 1) * 8;
            if (col > q0 + (row >> lp))
                s[j][e] = -INFINITY;
        }
}

/* Online softmax of a score tile in place (s <- P, in units of log2 with
 * the scale folded in); corr[hr]: the factor O's rows must be scaled by. */
__device__ __forceinline__ void wg_softmax(float (&s)[8][4], float (&mrow)[2], float (&lrow)[2],
                                           float (&corr)[2], float scale_log2)
{
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < WG_BC / 8; j++)
            mx = fmaxf(mx, fmaxf(s[j][2 * hr], s[j][2 * hr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        float mn = fmaxf(mrow[hr], mx * scale_log2);
        corr[hr] = fast_exp2(mrow[hr] - mn); /* 0 on the first tile */
        mrow[hr] = mn;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < WG_BC / 8; j++) {
            float p0 = fast_exp2(fmaf(s[j][2 * hr], scale_log2, -mn));
            float p1 = fast_exp2(fmaf(s[j][2 * hr + 1], scale_log2, -mn));
            s[j][2 * hr] = p0;
            s[j][2 * hr + 1] = p1;
            sum += p0 + p1;
        }
        lrow[hr] = lrow[hr] * corr[hr] + sum;
    }
}

template <typename T>
__device__ __forceinline__ void wg_pack_p(const float (&s)[8][4], uint32_t (&a)[4][4])
{
#pragma unroll
    for (int kk = 0; kk < WG_BC / 16; kk++) {
        a[kk][0] = mma_op<T>::pack(s[2 * kk][0], s[2 * kk][1]);
        a[kk][1] = mma_op<T>::pack(s[2 * kk][2], s[2 * kk][3]);
        a[kk][2] = mma_op<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        a[kk][3] = mma_op<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

/* Three K/V buffers: iteration kt issues S = Q K(kt)^T and then
 * O += P(kt-1) V(kt-1) before waiting for the former, so the exponentials
 * of tile kt run while the tensor cores do the previous tile's P V (the
 * ordering of FlashAttention-3's intra-warpgroup overlap: 330 against 320
 * TFLOP/s for the plain order, scripts/bench-cuda's attention line, H200). */
template <typename T>
__global__ void __launch_bounds__(256, 2)
k_attn_wg(const T *qkv, T *ctx, int S, int ld, int qd, int kvd, int group, int lp,
          float scale_log2, const float *rcs, const float *rsn)
{
#ifdef LMC_DEVICE_WGMMA
    constexpr int HD = 64, BR = 128, NB = 3; /* K/V buffers */
    extern __shared__ unsigned char smraw[];
    /* swizzle atoms are 1024 bytes: align the base (the launch adds 1 KiB) */
    T *sQ = reinterpret_cast<T *>(((uintptr_t)smraw + 1023) & ~(uintptr_t)1023);
    T *sK = sQ + BR * HD; /* [NB][BC][HD] */
    T *sV = sK + NB * WG_BC * HD;
    const int P = 1 << lp, packs = group >> lp;
    int qt = gridDim.z - 1 - blockIdx.z; /* longest rows first */
    int g = blockIdx.x / packs, h0 = g * group + (blockIdx.x - g * packs) * P, w = blockIdx.y;
    int q0 = qt * (BR >> lp);
    const T *base = qkv + (size_t)w * S * ld;
    const T *Kg = base + qd + (size_t)g * HD, *Vg = base + qd + kvd + (size_t)g * HD;
    int tid = threadIdx.x, lane = tid & 31, wgi = tid >> 7, warp = (tid >> 5) & 3;

    for (int c = tid; c < BR * 8; c += 256) {
        int r = c >> 3, cc = c & 7, q = q0 + (r >> lp), h = h0 + (r & (P - 1));
        cp_async16(sQ + r * HD + ((cc ^ (r & 7)) << 3),
                   base + (size_t)min(q, S - 1) * ld + h * HD + cc * 8, q < S);
    }
    int qlast = min(q0 + (BR >> lp), S) - 1;
    int nkt = qlast / WG_BC + 1;
    auto load_kv = [&](int kt, int buf) {
        T *dk = sK + buf * WG_BC * HD, *dv = sV + buf * WG_BC * HD;
        for (int c = tid; c < WG_BC * 8; c += 256) {
            int r = c >> 3, cc = c & 7, k = kt * WG_BC + r;
            size_t off = (size_t)min(k, S - 1) * ld + cc * 8;
            int sw = r * HD + ((cc ^ (r & 7)) << 3);
            cp_async16(dk + sw, Kg + off, k < S);
            cp_async16(dv + sw, Vg + off, k < S);
        }
    };
    auto kdesc = [&](int buf) { return wg_desc(sK + buf * WG_BC * HD); };
    auto vdesc = [&](int buf) { return wg_desc(sV + buf * WG_BC * HD); };
    load_kv(0, 0);
    cp_async_commit();
    if (rcs) {
        /* RoPE of Q in shared memory (rcs/rsn: [S][HD/2] tables; K was
         * rotated by k_qkv_rope2): pairs (i, i + 32) are the 16-byte chunks
         * cc and cc + 4 of a row. Saves a pass over q in global memory. */
        cp_async_wait<0>(); /* Q, committed with K/V tile 0 */
        __syncthreads();
        for (int c = tid; c < BR * 4; c += 256) {
            int r = c >> 2, cc = c & 3, q = q0 + (r >> lp);
            if (q >= S)
                continue;
            T *p1 = sQ + r * HD + ((cc ^ (r & 7)) << 3);
            T *p2 = sQ + r * HD + (((cc + 4) ^ (r & 7)) << 3);
            size_t t0 = (size_t)q * (HD / 2) + cc * 8;
            const float4 *c4 = reinterpret_cast<const float4 *>(rcs + t0);
            const float4 *s4 = reinterpret_cast<const float4 *>(rsn + t0);
            float4 ca = c4[0], cb = c4[1], sa = s4[0], sb = s4[1];
            float cv[8] = {ca.x, ca.y, ca.z, ca.w, cb.x, cb.y, cb.z, cb.w};
            float sv[8] = {sa.x, sa.y, sa.z, sa.w, sb.x, sb.y, sb.z, sb.w};
            uint4 u1 = *reinterpret_cast<const uint4 *>(p1);
            uint4 u2 = *reinterpret_cast<const uint4 *>(p2);
            T *a1 = reinterpret_cast<T *>(&u1), *a2 = reinterpret_cast<T *>(&u2);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float y1, y2;
                rope_pair(tof(a1[i]), tof(a2[i]), cv[i], sv[i], y1, y2);
                a1[i] = fromf<T>(y1);
                a2[i] = fromf<T>(y2);
            }
            *reinterpret_cast<uint4 *>(p1) = u1;
            *reinterpret_cast<uint4 *>(p2) = u2;
        }
        /* the loop's first fence.proxy.async and barrier publish these
         * writes to the tensor cores */
    }

    float o[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f}, corr[2];
    const int wr = wgi * 64 + warp * 16; /* this warp's first tile row */
    const uint64_t dq = wg_desc(sQ + wgi * 64 * HD);
    float s[8][4];
    uint32_t a[WG_BC / 16][4];

    {
        /* tile t lives in buffer t % 3; one cp.async group per tile.
         * Before iteration kt: a[] holds P(kt-1), O is in P(kt-1)'s units. */
        for (int kt = 0; kt < nkt; kt++) {
            int buf = kt % 3;
            cp_async_wait<0>(); /* tile kt (and Q) landed */
            fence_proxy_async();
            /* every warpgroup is past iteration kt - 1, hence done with
             * buffer (kt + 1) % 3 = (kt - 2) % 3 */
            __syncthreads();
            if (kt + 1 < nkt)
                load_kv(kt + 1, (kt + 1) % 3);
            cp_async_commit();
            wg_fence(); /* orders the last iteration's writes of o and a[] */
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++)
                wg_op<T>::ss(s, dq + 2 * kk, kdesc(buf) + 2 * kk, kk > 0);
            wg_commit();
            if (kt == 0) {
                wg_wait<0>();
                wg_mask(s, 0, q0, wr, lp, lane);
                wg_softmax(s, mrow, lrow, corr, scale_log2); /* O is zero: no rescale */
                wg_pack_p<T>(s, a);
                continue;
            }
            /* O += P(kt-1) V(kt-1) on the tensor cores while this tile's
             * softmax runs */
            int pb = (kt + 2) % 3;
#pragma unroll
            for (int kk = 0; kk < WG_BC / 16; kk++)
                wg_op<T>::rs_t(o, a[kk], vdesc(pb) + kk * (2048 >> 4));
            wg_commit();
            wg_wait<1>(); /* the scores (groups complete in order) */
            wg_mask(s, kt * WG_BC, q0, wr, lp, lane);
            wg_softmax(s, mrow, lrow, corr, scale_log2);
            wg_wait<0>(); /* P(kt-1) V(kt-1) is in O and a[] is free */
#pragma unroll
            for (int i = 0; i < 8; i++) {
                o[i][0] *= corr[0], o[i][1] *= corr[0];
                o[i][2] *= corr[1], o[i][3] *= corr[1];
            }
            wg_pack_p<T>(s, a);
        }
        wg_fence();
        int pb = (nkt - 1) % 3;
#pragma unroll
        for (int kk = 0; kk < WG_BC / 16; kk++)
            wg_op<T>::rs_t(o, a[kk], vdesc(pb) + kk * (2048 >> 4));
        wg_commit();
        wg_wait<0>();
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        float l = lrow[hr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        float inv = 1.0f / l;
        int r = wr + (lane >> 2) + hr * 8, q = q0 + (r >> lp);
        if (q >= S)
            continue;
        T *out = ctx + ((size_t)w * S + q) * qd + (size_t)(h0 + (r & (P - 1))) * HD +
                 2 * (lane & 3);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t v = mma_op<T>::pack(o[i][2 * hr] * inv, o[i][2 * hr + 1] * inv);
            *reinterpret_cast<uint32_t *>(out + i * 8) = v;
        }
    }
#else
    (void)qkv, (void)ctx, (void)S, (void)ld, (void)qd, (void)kvd, (void)group, (void)lp,
        (void)scale_log2, (void)rcs, (void)rsn;
    __trap(); /* never launched: the host checks wgmma_ok() */
#endif
}

/* ---------------------------------------------------------------- the device model */

/* A block matrix slot kept as low-rank factor pairs (nparts 0: dense). Part
 * p gives output columns [o_p, o_p + out[p]) as (x . B_p^T) . A_p^T; the
 * B_p are stacked so that one GEMM computes every x . B_p^T. Ranks are
 * padded to lmc_cu_rank_pad (zero columns of A, zero rows of B) so that
 * every leading dimension and column offset is 16-byte aligned. */
struct dfactors {
    int nparts, rsum;
    int rank[3], rpad[3], out[3];
    void *A[3]; /* [out][rpad], weight type */
    void *B;    /* [rsum][in], part p from row rpad[0] + ... + rpad[p-1] */
};

struct dblock {
    void *wqkv, *wo, *wgu, *wdown; /* weight type; NULL where the slot is low-rank */
    dfactors lr[4];                /* by LMC_CU_QKV .. LMC_CU_DOWN */
    float *v[LMC_CU_DOWN_B + 1];   /* per-layer fp32 vectors by LMC_CU_* id, NULL when absent */
};

struct lmc_cu {
    lmc_cu_dims d;
    int prec;
    size_t es; /* bytes per weight / activation element */
    lmc_gemm *gemm; /* cuBLAS / cuBLASLt on st, shapes planned once */
    cudaStream_t st;
    std::vector<void *> allocs;
    size_t bytes;
    /* weights */
    void *embed, *head;
    float *gv[LMC_CU_DOWN_B + 1]; /* model-level fp32 vectors (pos, final norm) */
    std::vector<dblock> blk;
    /* activations */
    int max_tokens, head_rows;
    float *rope_cos, *rope_sin;
    /* the residual stream: fp32, or the compute type with res_half (fp16 and
     * bf16 only); logits of the NLL forward in the compute type with
     * logits_half (fp32 for lmc_cu_forward_logits) */
    int res_half, logits_half;
    void *x;
    void *xn, *qkv, *ctx, *gu, *act;
    void *logits;
    double *row_nll, *win_nll;
    int32_t *ids, *tgt;
    void *lr_tmp; /* x . B^T of a low-rank slot: [max_tokens][lr_cap] */
    int lr_cap;
    /* uploads */
    void *staging;
    size_t staging_bytes;
    unsigned long long *bad;
    /* windows_nll replays the forward as a CUDA graph, captured after the
     * first eager run of a shape (LMC_CUDA_GRAPH=0: always eager) */
    int use_graph;
    cudaGraphExec_t graph;
    int graph_nwin, graph_S;
    /* LMC_CUDA_PROFILE: device time per stage, printed by lmc_cu_free */
    int rope_in_attn; /* 0: LMC_CUDA_ROPE_UNFUSED=1 (comparisons) */
    int prof;
    double host_ms; /* host time enqueueing forwards */
    std::vector<cudaEvent_t> prof_ev;
    std::vector<int> prof_stage;
    double prof_ms[16];
};

enum {
    ST_EMBED, ST_NORM, ST_QKV_GEMM, ST_QKV_POST, ST_ATTN, ST_O_GEMM, ST_GU_GEMM, ST_ACT,
    ST_DOWN_GEMM, ST_HEAD_GEMM, ST_NLL, ST_COUNT
};
static const char *const stage_name[ST_COUNT] = {
    "embedding", "norms", "qkv GEMM", "bias+RoPE", "attention", "o GEMM", "gate|up GEMM",
    "activation", "down GEMM", "head GEMM", "NLL"};

/* Marks the end of `stage` (work enqueued since the previous mark). */
static void mark(lmc_cu *cu, int stage)
{
    if (!cu->prof)
        return;
    size_t k = cu->prof_stage.size();
    if (k >= cu->prof_ev.size()) {
        cudaEvent_t e;
        if (cudaEventCreate(&e) != cudaSuccess)
            return;
        cu->prof_ev.push_back(e);
    }
    cudaEventRecord(cu->prof_ev[k], cu->st);
    cu->prof_stage.push_back(stage);
}

/* After a synchronized forward: add the marked intervals up. */
static void prof_collect(lmc_cu *cu)
{
    for (size_t k = 1; k < cu->prof_stage.size(); k++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, cu->prof_ev[k - 1], cu->prof_ev[k]) == cudaSuccess)
            cu->prof_ms[cu->prof_stage[k]] += ms;
    }
    cu->prof_stage.clear();
}

static int dalloc(lmc_cu *cu, void **p, size_t bytes, const char *what, lmc_error *err)
{
    *p = NULL;
    if (bytes == 0)
        bytes = 16;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return lmc_fail(err,
                        "CUDA: out of device memory allocating %.1f MB for %s (%.1f MB free of "
                        "%.1f MB)",
                        bytes / 1e6, what, fr / 1e6, tot / 1e6);
    }
    cu->allocs.push_back(*p);
    cu->bytes += bytes;
    return 0;
}

/* Frees p (from dalloc, `bytes` as asked; NULL: nothing) before lmc_cu_free. */
static void dfree(lmc_cu *cu, void *p, size_t bytes)
{
    auto it = std::find(cu->allocs.begin(), cu->allocs.end(), p);
    if (!p || it == cu->allocs.end())
        return;
    cu->allocs.erase(it);
    cu->bytes -= bytes ? bytes : 16;
    cudaFree(p);
}

static int qdim(const lmc_cu_dims *d) { return d->n_heads * d->head_dim; }
static int kvdim(const lmc_cu_dims *d) { return d->n_kv_heads * d->head_dim; }

extern "C" size_t lmc_cu_vec_len(const lmc_cu_dims *d, int which)
{
    switch (which) {
    case LMC_CU_POS: return (size_t)d->pos_rows * d->hidden;
    case LMC_CU_QKV_B: return (size_t)qdim(d) + 2 * (size_t)kvdim(d);
    case LMC_CU_GU_B: return (size_t)d->ffn * (d->gated ? 2 : 1);
    default: return (size_t)d->hidden; /* norms, o and down biases */
    }
}

static size_t mat_elems(const lmc_cu_dims *d, int which)
{
    size_t H = d->hidden, F = d->ffn;
    switch (which) {
    case LMC_CU_EMBED:
    case LMC_CU_HEAD: return (size_t)d->vocab * H;
    case LMC_CU_QKV: return ((size_t)qdim(d) + 2 * (size_t)kvdim(d)) * H;
    case LMC_CU_O: return H * (size_t)qdim(d);
    case LMC_CU_GU: return F * (d->gated ? 2 : 1) * H;
    default: return H * F;
    }
}

static void **mat_slot(lmc_cu *cu, int which, int layer)
{
    switch (which) {
    case LMC_CU_EMBED: return &cu->embed;
    case LMC_CU_HEAD: return &cu->head;
    case LMC_CU_QKV: return &cu->blk[layer].wqkv;
    case LMC_CU_O: return &cu->blk[layer].wo;
    case LMC_CU_GU: return &cu->blk[layer].wgu;
    default: return &cu->blk[layer].wdown;
    }
}

static int is_layer_vec(int which)
{
    return which >= LMC_CU_ATTN_NORM_W && which <= LMC_CU_DOWN_B;
}

static int staging_reserve(lmc_cu *cu, size_t bytes, lmc_error *err)
{
    if (bytes <= cu->staging_bytes)
        return 0;
    if (cu->staging)
        cudaFree(cu->staging);
    cu->staging = NULL;
    cu->staging_bytes = 0;
    CUDA_OK(cudaMalloc(&cu->staging, bytes), "staging buffer for weight upload");
    cu->staging_bytes = bytes;
    return 0;
}

template <typename T>
static void convert(const void *s, int src_type, T *d, size_t n, unsigned long long *bad,
                    cudaStream_t st)
{
    int g = grid_for(n);
    if (src_type == LMC_CU_SRC_F32)
        k_from_f32<T><<<g, 256, 0, st>>>((const float *)s, d, n, bad);
    else
        k_from_u16<T><<<g, 256, 0, st>>>((const uint16_t *)s, d, n, src_type == LMC_CU_SRC_BF16,
                                         bad);
}

/* n host values of src_type into device dst (weight type) at element off;
 * *bad as lmc_cu_upload. */
static int upload_to(lmc_cu *cu, void *dst, size_t off, const void *src, int src_type, size_t n,
                     int64_t *bad, lmc_error *err)
{
    *bad = -1;
    size_t sb = n * (src_type == LMC_CU_SRC_F32 ? 4 : 2);
    if (staging_reserve(cu, sb, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(cu->staging, src, sb, cudaMemcpyHostToDevice), "weight upload");
    unsigned long long none = ~0ull;
    CUDA_OK(cudaMemcpy(cu->bad, &none, sizeof none, cudaMemcpyHostToDevice), "weight upload");
    if (cu->prec == PREC_FP32)
        convert<float>(cu->staging, src_type, (float *)dst + off, n, cu->bad, 0);
    else if (cu->prec == PREC_FP16)
        convert<f16>(cu->staging, src_type, (f16 *)dst + off, n, cu->bad, 0);
    else
        convert<bf16>(cu->staging, src_type, (bf16 *)dst + off, n, cu->bad, 0);
    LAUNCH_OK("weight conversion");
    unsigned long long b;
    CUDA_OK(cudaMemcpy(&b, cu->bad, sizeof b, cudaMemcpyDeviceToHost), "weight conversion");
    *bad = b == none ? -1 : (int64_t)b;
    return 0;
}

static bool is_block_slot(int which) { return which >= LMC_CU_QKV && which <= LMC_CU_DOWN; }

extern "C" int lmc_cu_upload(lmc_cu *cu, int which, int layer, size_t off, const void *src,
                             int src_type, size_t n, int64_t *bad, lmc_error *err)
{
    *bad = -1;
    int lay = is_block_slot(which);
    if (which < LMC_CU_EMBED || which > LMC_CU_DOWN ||
        (lay && (layer < 0 || layer >= cu->d.n_layers)))
        return lmc_fail(err, "upload: bad matrix %d / layer %d", which, layer);
    if (which == LMC_CU_HEAD && cu->d.tied)
        return lmc_fail(err, "upload: the head is tied to the embedding");
    if (off + n > mat_elems(&cu->d, which))
        return lmc_fail(err, "upload: %zu values at %zu overflow matrix %d", n, off, which);
    void **slot = mat_slot(cu, which, layer);
    if (lay && cu->blk[layer].lr[which - LMC_CU_QKV].nparts)
        return lmc_fail(err, "upload: matrix %d of block %d is held as factors", which, layer);
    if (!*slot) { /* block matrices: allocated on their first upload */
        char what[64];
        snprintf(what, sizeof what, "block %d weights", layer);
        if (dalloc(cu, slot, mat_elems(&cu->d, which) * cu->es, what, err) < 0)
            return -1;
    }
    return upload_to(cu, *slot, off, src, src_type, n, bad, err);
}

/* The parts of a block slot: their output sizes and the input size. */
static int slot_parts(const lmc_cu_dims *d, int which, int out[3], int *in)
{
    switch (which) {
    case LMC_CU_QKV:
        out[0] = qdim(d), out[1] = out[2] = kvdim(d), *in = d->hidden;
        return 3;
    case LMC_CU_O: out[0] = d->hidden, *in = qdim(d); return 1;
    case LMC_CU_GU:
        out[0] = out[1] = d->ffn, *in = d->hidden;
        return d->gated ? 2 : 1;
    default: out[0] = d->hidden, *in = d->ffn; return 1;
    }
}

extern "C" int lmc_cu_set_lowrank(lmc_cu *cu, int which, int layer, int nparts, const int *ranks,
                                  lmc_error *err)
{
    const lmc_cu_dims *d = &cu->d;
    int out[3], in;
    if (!is_block_slot(which) || layer < 0 || layer >= d->n_layers ||
        nparts != slot_parts(d, which, out, &in))
        return lmc_fail(err, "low-rank slot: bad matrix %d / layer %d / %d parts", which, layer,
                        nparts);
    dblock &b = cu->blk[layer];
    dfactors &f = b.lr[which - LMC_CU_QKV];
    if (*mat_slot(cu, which, layer) || f.nparts)
        return lmc_fail(err, "low-rank slot: matrix %d of block %d already has weights", which,
                        layer);
    char what[64];
    snprintf(what, sizeof what, "block %d factors", layer);
    int rsum = 0;
    for (int p = 0; p < nparts; p++) {
        if (ranks[p] < 1 || ranks[p] > std::min(out[p], in))
            return lmc_fail(err, "low-rank slot: rank %d of part %d outside [1, %d]", ranks[p],
                            p, std::min(out[p], in));
        f.rank[p] = ranks[p];
        f.rpad[p] = lmc_cu_rank_pad(ranks[p]);
        f.out[p] = out[p];
        size_t na = (size_t)out[p] * f.rpad[p] * cu->es;
        if (dalloc(cu, &f.A[p], na, what, err) < 0)
            return -1;
        CUDA_OK(cudaMemset(f.A[p], 0, na), "low-rank factors");
        rsum += f.rpad[p];
    }
    size_t nb = (size_t)rsum * in * cu->es;
    if (dalloc(cu, &f.B, nb, what, err) < 0)
        return -1;
    CUDA_OK(cudaMemset(f.B, 0, nb), "low-rank factors");
    f.rsum = rsum;
    f.nparts = nparts;
    if (rsum > cu->lr_cap) { /* the intermediate x . B^T, as wide as the widest slot */
        dfree(cu, cu->lr_tmp, (size_t)cu->max_tokens * cu->lr_cap * cu->es);
        cu->lr_cap = 0;
        if (dalloc(cu, &cu->lr_tmp, (size_t)cu->max_tokens * rsum * cu->es,
                   "low-rank activations", err) < 0)
            return -1;
        cu->lr_cap = rsum;
    }
    return 0;
}

extern "C" int lmc_cu_upload_factor(lmc_cu *cu, int which, int layer, int part, int is_b,
                                    const void *src, int src_type, size_t n, int64_t *bad,
                                    lmc_error *err)
{
    *bad = -1;
    int out[3], in;
    if (!is_block_slot(which) || layer < 0 || layer >= cu->d.n_layers)
        return lmc_fail(err, "factor upload: bad matrix %d / layer %d", which, layer);
    slot_parts(&cu->d, which, out, &in);
    const dfactors &f = cu->blk[layer].lr[which - LMC_CU_QKV];
    if (part < 0 || part >= f.nparts)
        return lmc_fail(err, "factor upload: matrix %d of block %d has no low-rank part %d",
                        which, layer, part);
    size_t want = is_b ? (size_t)f.rank[part] * in : (size_t)f.out[part] * f.rpad[part];
    if (n != want)
        return lmc_fail(err, "factor upload: %zu values, factor %c of part %d takes %zu", n,
                        is_b ? 'B' : 'A', part, want);
    size_t off = 0;
    for (int p = 0; is_b && p < part; p++)
        off += (size_t)f.rpad[p] * in;
    return upload_to(cu, is_b ? f.B : f.A[part], off, src, src_type, n, bad, err);
}

extern "C" int lmc_cu_upload_vec(lmc_cu *cu, int which, int layer, size_t off, const float *src,
                                 size_t n, lmc_error *err)
{
    if (which < LMC_CU_POS || which > LMC_CU_DOWN_B ||
        (is_layer_vec(which) && (layer < 0 || layer >= cu->d.n_layers)))
        return lmc_fail(err, "upload: bad vector %d / layer %d", which, layer);
    size_t len = lmc_cu_vec_len(&cu->d, which);
    if (off + n > len)
        return lmc_fail(err, "upload: %zu values at %zu overflow vector %d", n, off, which);
    float **slot = is_layer_vec(which) ? &cu->blk[layer].v[which] : &cu->gv[which];
    if (!*slot) {
        if (dalloc(cu, (void **)slot, len * 4, "weights", err) < 0)
            return -1;
        CUDA_OK(cudaMemset(*slot, 0, len * 4), "weight upload");
    }
    CUDA_OK(cudaMemcpy(*slot + off, src, n * 4, cudaMemcpyHostToDevice), "weight upload");
    return 0;
}

extern "C" int lmc_cu_set_rope(lmc_cu *cu, const float *cs, const float *sn, int positions,
                               lmc_error *err)
{
    if (positions < cu->max_tokens)
        return lmc_fail(err, "RoPE tables for %d positions, buffers hold %d tokens", positions,
                        cu->max_tokens);
    size_t nb = (size_t)positions * (cu->d.head_dim / 2) * 4;
    if (!cu->rope_cos && (dalloc(cu, (void **)&cu->rope_cos, nb, "RoPE tables", err) < 0 ||
                          dalloc(cu, (void **)&cu->rope_sin, nb, "RoPE tables", err) < 0))
        return -1;
    CUDA_OK(cudaMemcpy(cu->rope_cos, cs, nb, cudaMemcpyHostToDevice), "RoPE tables");
    CUDA_OK(cudaMemcpy(cu->rope_sin, sn, nb, cudaMemcpyHostToDevice), "RoPE tables");
    return 0;
}

extern "C" void lmc_cu_upload_done(lmc_cu *cu)
{
    if (cu->staging)
        cudaFree(cu->staging);
    cu->staging = NULL;
    cu->staging_bytes = 0;
}

extern "C" size_t lmc_cu_bytes(const lmc_cu *cu) { return cu->bytes; }

/* ---------------------------------------------------------------- availability */

extern "C" int lmc_cu_device(char *name, size_t name_len, lmc_error *err)
{
    if (name && name_len)
        name[0] = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return lmc_fail(err, "no CUDA device found (cudaGetDeviceCount: %s)",
                        e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    int dev = 0;
    CUDA_OK(cudaGetDevice(&dev), "cudaGetDevice");
    cudaDeviceProp p;
    CUDA_OK(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    if (p.major < 8)
        return lmc_fail(err, "CUDA device %d (%s) has compute capability %d.%d; lmc's kernels "
                             "need 8.0 or newer",
                        dev, p.name, p.major, p.minor);
    if (name && name_len)
        snprintf(name, name_len, "%s", p.name);
    return 0;
}

/* ---------------------------------------------------------------- forward pieces */

/* Y[M][N] (=|+=) X[M][K] . W[N][K]^T, row-major, fp32 accumulation. */
static int gemm(lmc_gemm *g, const void *X, const void *W, void *Y, int M, int N, int K,
                cudaDataType tin, cudaDataType tout, float beta, lmc_error *err)
{
    return lmc_gemm_run(g, X, W, Y, M, N, K, tin, tout, beta, err);
}

/* m16 tiles per warp: two where the registers allow (head_dim <= 64) */
template <int HD> constexpr int tc_mtiles() { return HD <= 64 ? 2 : 1; }

template <typename T, int HD>
static int launch_tc(const lmc_cu_dims *d, const T *qkv, T *ctx, int nwin, int S,
                     cudaStream_t st, lmc_error *err)
{
    constexpr int MT = tc_mtiles<HD>(), BR = 64 * MT, LDS = HD + 8;
    size_t smem = (size_t)(BR + 4 * TC_BC) * LDS * sizeof(T);
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_OK(cudaFuncSetAttribute(k_attn_tc<T, HD, MT>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                "attention shared memory");
        attr_set = true;
    }
    int qd = d->n_heads * HD, kvd = d->n_kv_heads * HD, ld = qd + 2 * kvd;
    int group = d->n_heads / d->n_kv_heads, lp = 0;
    /* pack P = 2^lp heads of a kv group per tile: P divides the group, <= 8
     * (fewer K/V tile loads per query row; LMC_CUDA_ATTN_NOPACK=1 turns it
     * off for comparison) */
    static const int nopack = getenv("LMC_CUDA_ATTN_NOPACK") != NULL;
    while (!nopack && lp < 3 && group % (2 << lp) == 0)
        lp++;
    float scale_log2 = (1.0f / sqrtf((float)HD)) * 1.4426950408889634f;
    int rows = BR >> lp; /* positions per tile */
    int tiles = (S + rows - 1) / rows;
    if (tiles > 65535 || nwin > 65535)
        return lmc_fail(err, "attention: %d windows of %d tokens exceed the launch grid", nwin,
                        S);
    dim3 grid(d->n_kv_heads * (group >> lp), nwin, tiles);
    k_attn_tc<T, HD, MT><<<grid, 128, smem, st>>>(qkv, ctx, S, ld, qd, kvd, group, lp,
                                                  scale_log2);
    LAUNCH_OK("attention kernel");
    return 0;
}

/* The wgmma kernel exists in this build (sm_90a code, LMC_SM90A from the
 * Makefile) and the device is a Hopper (compute capability 9.0). */
static bool wgmma_ok()
{
#ifdef LMC_SM90A
    static int ok = -1;
    if (ok < 0) {
        int dev = 0, major = 0, minor = 0;
        ok = cudaGetDevice(&dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) ==
                 cudaSuccess &&
             cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) ==
                 cudaSuccess &&
             major == 9 && minor == 0;
    }
    return ok == 1;
#else
    return false;
#endif
}

template <typename T>
static int launch_wg(const lmc_cu_dims *d, const T *qkv, T *ctx, int nwin, int S,
                     const float *rcs, const float *rsn, cudaStream_t st, lmc_error *err)
{
    constexpr int HD = 64, BR = 128;
    size_t smem = (size_t)(BR + 2 * 3 * WG_BC) * HD * sizeof(T) + 1024;
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_OK(cudaFuncSetAttribute(k_attn_wg<T>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                "attention shared memory");
        attr_set = true;
    }
    int qd = d->n_heads * HD, kvd = d->n_kv_heads * HD, ld = qd + 2 * kvd;
    int group = d->n_heads / d->n_kv_heads, lp = 0;
    while (lp < 3 && group % (2 << lp) == 0)
        lp++;
    float scale_log2 = (1.0f / sqrtf((float)HD)) * 1.4426950408889634f;
    int rows = BR >> lp, tiles = (S + rows - 1) / rows;
    if (tiles > 65535 || nwin > 65535)
        return lmc_fail(err, "attention: %d windows of %d tokens exceed the launch grid", nwin,
                        S);
    dim3 grid(d->n_kv_heads * (group >> lp), nwin, tiles);
    k_attn_wg<T><<<grid, 256, smem, st>>>(qkv, ctx, S, ld, qd, kvd, group, lp, scale_log2,
                                          rcs, rsn);
    LAUNCH_OK("attention kernel");
    return 0;
}

/* kind: ATTN_AUTO picks the fastest kernel for the shape and device;
 * ATTN_SIMT / ATTN_MMA force the generic fp32 or the mma.sync kernel (tests) */
enum { ATTN_AUTO = 0, ATTN_SIMT = 1, ATTN_MMA = 2 };

/* Whether attention(kind) runs k_attn_wg, which can rotate Q itself. */
template <typename T> static bool attn_is_wg(const lmc_cu_dims *d, int kind)
{
    static const bool no_wgmma = getenv("LMC_CUDA_NO_WGMMA") != NULL;
    return !std::is_same<T, float>::value && kind == ATTN_AUTO && d->head_dim == 64 &&
           !no_wgmma && wgmma_ok();
}

/* rcs/rsn: RoPE tables when Q is still to be rotated (only where
 * attn_is_wg), else NULL. */
template <typename T>
static int attention(const lmc_cu_dims *d, const T *qkv, T *ctx, int nwin, int S, int kind,
                     const float *rcs, const float *rsn, cudaStream_t st, lmc_error *err)
{
    int hd = d->head_dim;
    if constexpr (!std::is_same<T, float>::value)
        if (attn_is_wg<T>(d, kind))
            return launch_wg<T>(d, qkv, ctx, nwin, S, rcs, rsn, st, err);
    if (rcs)
        return lmc_fail(err, "attention: RoPE of Q asked of a kernel that does not do it");
    if constexpr (!std::is_same<T, float>::value) {
        if (kind != ATTN_SIMT && (hd == 32 || hd == 64 || hd == 96 || hd == 128)) {
            switch (hd) {
            case 32: return launch_tc<T, 32>(d, qkv, ctx, nwin, S, st, err);
            case 64: return launch_tc<T, 64>(d, qkv, ctx, nwin, S, st, err);
            case 96: return launch_tc<T, 96>(d, qkv, ctx, nwin, S, st, err);
            default: return launch_tc<T, 128>(d, qkv, ctx, nwin, S, st, err);
            }
        }
    }
    if (hd > 256)
        return lmc_fail(err, "head_dim %d: the CUDA attention kernels take at most 256", hd);
    int qd = d->n_heads * hd, kvd = d->n_kv_heads * hd, ld = qd + 2 * kvd;
    size_t smem = (size_t)(SIMT_BR * hd + SIMT_BC * (hd + 1) + SIMT_BC * hd) * sizeof(float);
    static bool attr_set = false;
    if (!attr_set) { /* enough for head_dim 256 */
        CUDA_OK(cudaFuncSetAttribute(k_attn_simt<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)((SIMT_BR * 256 + SIMT_BC * 257 + SIMT_BC * 256) * 4)),
                "attention shared memory");
        attr_set = true;
    }
    dim3 grid((S + SIMT_BR - 1) / SIMT_BR, d->n_heads, nwin);
    k_attn_simt<T><<<grid, 256, smem, st>>>(qkv, ctx, S, ld, qd, kvd, d->n_heads / d->n_kv_heads,
                                            hd, 1.0f / sqrtf((float)hd));
    LAUNCH_OK("attention kernel");
    return 0;
}

/* qkv rows [n][q | k | v]: + bias (may be NULL), RoPE when cs is not NULL;
 * k_only: RoPE of the k heads alone, no bias (attention rotates Q) */
template <typename T>
static void launch_qkv_post(const lmc_cu_dims *d, T *qkv, const float *bias, int n, int S,
                            const float *cs, const float *sn, int k_only, cudaStream_t st)
{
    int hd = d->head_dim, qd = qdim(d), kvd = kvdim(d), ld = qd + 2 * kvd;
    if (k_only) {
        int t = std::min(128, (d->n_kv_heads * hd / 4 + 31) / 32 * 32);
        k_qkv_rope2<T><<<n, t, 0, st>>>(qkv, NULL, ld, qd, kvd, 0, d->n_kv_heads, hd, S, cs,
                                        sn);
    } else if (cs && hd % 4 == 0)
        k_qkv_rope2<T><<<n, 128, 0, st>>>(qkv, bias, ld, qd, kvd, d->n_heads, d->n_kv_heads, hd,
                                          S, cs, sn);
    else
        k_qkv_post<T><<<n, 128, 0, st>>>(qkv, bias, ld, qd, kvd, d->n_heads, d->n_kv_heads, hd,
                                         S, cs, sn);
}

/* x <- embeddings of cu->ids[0..n) (positions t % S). */
template <typename T, typename R> static int run_embed(lmc_cu *cu, int n, int S, lmc_error *err)
{
    const lmc_cu_dims *d = &cu->d;
    k_embed<T, R><<<n, norm_threads(d->hidden), 0, cu->st>>>(
        cu->ids, (const T *)cu->embed, cu->gv[LMC_CU_POS], d->pos_offset, S, d->hidden,
        (R *)cu->x);
    LAUNCH_OK("embedding kernel");
    return 0;
}

/* Y (=|+=) X . W^T for block slot `which` (N outputs, K inputs): one GEMM on
 * the dense matrix, or x . B^T for every factor pair at once into lr_tmp
 * (rounded to the weight type) and then one GEMM per part into its columns
 * of Y. */
template <typename T>
static int slot_gemm(lmc_cu *cu, const dblock &b, int which, const void *X, void *Y, int n,
                     int N, int K, cudaDataType tout, float beta, lmc_error *err)
{
    cudaDataType dt = dtype_of<T>();
    const dfactors &f = b.lr[which - LMC_CU_QKV];
    if (!f.nparts) {
        const void *W = which == LMC_CU_QKV ? b.wqkv
                        : which == LMC_CU_O ? b.wo
                        : which == LMC_CU_GU ? b.wgu
                                             : b.wdown;
        return gemm(cu->gemm, X, W, Y, n, N, K, dt, tout, beta, err);
    }
    if (lmc_gemm_run_ld(cu->gemm, X, K, f.B, K, cu->lr_tmp, f.rsum, n, f.rsum, K, dt, dt, 0.0f,
                        err) < 0)
        return -1;
    size_t oes = tout == CUDA_R_32F ? 4 : sizeof(T);
    int r0 = 0, o0 = 0;
    for (int p = 0; p < f.nparts; p++) {
        if (lmc_gemm_run_ld(cu->gemm, (const T *)cu->lr_tmp + r0, f.rsum, f.A[p], f.rpad[p],
                            (char *)Y + (size_t)o0 * oes, N, n, f.out[p], f.rpad[p], dt, tout,
                            beta, err) < 0)
            return -1;
        r0 += f.rpad[p];
        o0 += f.out[p];
    }
    return 0;
}

/* One block on cu->x (residual type R). *pending: a bias the previous
 * linear still owes x. */
template <typename T, typename R>
static int run_block(lmc_cu *cu, int l, int n, int S, const float **pending, lmc_error *err)
{
    const lmc_cu_dims *d = &cu->d;
    const dblock &b = cu->blk[l];
    int H = d->hidden, F = d->ffn, qd = qdim(d), kvd = kvdim(d), ld = qd + 2 * kvd;
    cudaDataType dt = dtype_of<T>();
    float eps = (float)d->norm_eps;

    launch_norm<T, R>((R *)cu->x, *pending, (T *)cu->xn, n, H, b.v[LMC_CU_ATTN_NORM_W],
                   b.v[LMC_CU_ATTN_NORM_B], d->norm_is_rms, eps, cu->st);
    LAUNCH_OK("norm kernel");
    mark(cu, ST_NORM);
    *pending = NULL;
    if (slot_gemm<T>(cu, b, LMC_CU_QKV, cu->xn, cu->qkv, n, ld, H, dt, 0.0f, err) < 0)
        return -1;
    mark(cu, ST_QKV_GEMM);
    const float *bqkv = b.v[LMC_CU_QKV_B];
    /* no bias: the attention kernel rotates Q where it can (a pass over q
     * in memory less) */
    int q_in_attn = d->rope && !bqkv && cu->rope_in_attn && attn_is_wg<T>(d, ATTN_AUTO);
    if (d->rope || bqkv) {
        launch_qkv_post<T>(d, (T *)cu->qkv, bqkv, n, S, d->rope ? cu->rope_cos : NULL,
                           d->rope ? cu->rope_sin : NULL, q_in_attn, cu->st);
        LAUNCH_OK("qkv kernel");
        mark(cu, ST_QKV_POST);
    }
    if (attention<T>(d, (const T *)cu->qkv, (T *)cu->ctx, n / S, S, ATTN_AUTO,
                     q_in_attn ? cu->rope_cos : NULL, q_in_attn ? cu->rope_sin : NULL, cu->st,
                     err) < 0)
        return -1;
    mark(cu, ST_ATTN);
    if (slot_gemm<T>(cu, b, LMC_CU_O, cu->ctx, cu->x, n, H, qd, dtype_of<R>(), 1.0f, err) < 0)
        return -1;
    mark(cu, ST_O_GEMM);
    launch_norm<T, R>((R *)cu->x, b.v[LMC_CU_O_B], (T *)cu->xn, n, H, b.v[LMC_CU_FFN_NORM_W],
                   b.v[LMC_CU_FFN_NORM_B], d->norm_is_rms, eps, cu->st);
    LAUNCH_OK("norm kernel");
    mark(cu, ST_NORM);
    if (slot_gemm<T>(cu, b, LMC_CU_GU, cu->xn, cu->gu, n, d->gated ? 2 * F : F, H, dt, 0.0f,
                     err) < 0)
        return -1;
    mark(cu, ST_GU_GEMM);
    launch_act<T>((const T *)cu->gu, b.v[LMC_CU_GU_B], (T *)cu->act, n, F, d->gated, d->act,
                  cu->st);
    LAUNCH_OK("activation kernel");
    mark(cu, ST_ACT);
    if (slot_gemm<T>(cu, b, LMC_CU_DOWN, cu->act, cu->x, n, H, F, dtype_of<R>(), 1.0f, err) < 0)
        return -1;
    mark(cu, ST_DOWN_GEMM);
    *pending = b.v[LMC_CU_DOWN_B];
    return 0;
}

/* Final norm and head in row chunks: logits_host receives [n][V] (fp32)
 * when not NULL; row NLLs (targets in cu->tgt) into cu->row_nll. */
template <typename T, typename R>
static int run_head(lmc_cu *cu, int n, const float *pending, float *logits_host, lmc_error *err)
{
    const lmc_cu_dims *d = &cu->d;
    int H = d->hidden, V = d->vocab;
    bool lh = cu->logits_half && !logits_host && sizeof(T) == 2;
    launch_norm<T, R>((R *)cu->x, pending, (T *)cu->xn, n, H, cu->gv[LMC_CU_FINAL_NORM_W],
                   cu->gv[LMC_CU_FINAL_NORM_B], d->norm_is_rms, (float)d->norm_eps, cu->st);
    LAUNCH_OK("norm kernel");
    mark(cu, ST_NORM);
    const void *W = d->tied ? cu->embed : cu->head;
    for (int r0 = 0; r0 < n; r0 += cu->head_rows) {
        int nr = std::min(cu->head_rows, n - r0);
        const T *xr = (const T *)cu->xn + (size_t)r0 * H;
        if (gemm(cu->gemm, xr, W, cu->logits, nr, V, H, dtype_of<T>(),
                 lh ? dtype_of<T>() : CUDA_R_32F, 0.0f, err) < 0)
            return -1;
        mark(cu, ST_HEAD_GEMM);
        if (lh)
            k_row_nll<<<nr, 256, 0, cu->st>>>((const T *)cu->logits, V, cu->tgt + r0,
                                              cu->row_nll + r0);
        else
            k_row_nll<<<nr, 256, 0, cu->st>>>((const float *)cu->logits, V, cu->tgt + r0,
                                              cu->row_nll + r0);
        LAUNCH_OK("nll kernel");
        mark(cu, ST_NLL);
        if (logits_host)
            CUDA_OK(cudaMemcpyAsync(logits_host + (size_t)r0 * V, cu->logits,
                                    (size_t)nr * V * sizeof(float), cudaMemcpyDeviceToHost,
                                    cu->st),
                    "copying logits");
    }
    return 0;
}

template <typename T, typename R>
static int run_windows_r(lmc_cu *cu, int nwin, int S, float *logits_host, lmc_error *err)
{
    int n = nwin * S;
    cu->prof_stage.clear();
    mark(cu, ST_EMBED); /* start */
    if (run_embed<T, R>(cu, n, S, err) < 0)
        return -1;
    mark(cu, ST_EMBED);
    const float *pending = NULL;
    for (int l = 0; l < cu->d.n_layers; l++)
        if (run_block<T, R>(cu, l, n, S, &pending, err) < 0)
            return -1;
    if (run_head<T, R>(cu, n, pending, logits_host, err) < 0)
        return -1;
    k_window_sum<<<nwin, 256, 0, cu->st>>>(cu->row_nll, S, cu->win_nll);
    LAUNCH_OK("window sum kernel");
    mark(cu, ST_NLL);
    return 0;
}

template <typename T>
static int run_windows(lmc_cu *cu, int nwin, int S, float *logits_host, lmc_error *err)
{
    return cu->res_half ? run_windows_r<T, T>(cu, nwin, S, logits_host, err)
                        : run_windows_r<T, float>(cu, nwin, S, logits_host, err);
}

template <typename T>
static int run_block_any(lmc_cu *cu, int l, int n, int S, const float **pending, lmc_error *err)
{
    return cu->res_half ? run_block<T, T>(cu, l, n, S, pending, err)
                        : run_block<T, float>(cu, l, n, S, pending, err);
}

#define DISPATCH(p, fn, ...)                                                                  \
    ((p) == PREC_FP32   ? fn<float>(__VA_ARGS__)                                              \
     : (p) == PREC_BF16 ? fn<bf16>(__VA_ARGS__)                                               \
                        : fn<f16>(__VA_ARGS__))

static int check_tokens(lmc_cu *cu, int n, lmc_error *err)
{
    if (n < 1 || n > cu->max_tokens)
        return lmc_fail(err, "%d tokens: the device buffers hold 1 to %d", n, cu->max_tokens);
    if (cu->d.rope && !cu->rope_cos)
        return lmc_fail(err, "RoPE tables not set");
    return 0;
}

static int put_ids(lmc_cu *cu, const int32_t *ids, const int32_t *targets, int n, lmc_error *err)
{
    CUDA_OK(cudaMemcpyAsync(cu->ids, ids, (size_t)n * 4, cudaMemcpyHostToDevice, cu->st), "ids");
    if (targets)
        CUDA_OK(cudaMemcpyAsync(cu->tgt, targets, (size_t)n * 4, cudaMemcpyHostToDevice, cu->st),
                "ids");
    else
        CUDA_OK(cudaMemsetAsync(cu->tgt, 0xff, (size_t)n * 4, cu->st), "ids"); /* -1: unscored */
    return 0;
}

/* Captures the NLL forward of nwin windows of S tokens into cu->graph. */
static int capture_forward(lmc_cu *cu, int nwin, int S, lmc_error *err)
{
    if (cu->graph) {
        cudaGraphExecDestroy(cu->graph);
        cu->graph = NULL;
    }
    CUDA_OK(cudaStreamBeginCapture(cu->st, cudaStreamCaptureModeThreadLocal), "graph capture");
    int rc = DISPATCH(cu->prec, run_windows, cu, nwin, S, NULL, err);
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cu->st, &g);
    if (rc < 0) {
        if (g)
            cudaGraphDestroy(g);
        return -1;
    }
    CUDA_OK(e, "graph capture");
    e = cudaGraphInstantiate(&cu->graph, g, 0);
    cudaGraphDestroy(g);
    CUDA_OK(e, "graph instantiation");
    cu->graph_nwin = nwin;
    cu->graph_S = S;
    return 0;
}

/* The forward over cu->ids / cu->tgt: the first time a shape is seen it
 * runs eagerly (kernel attributes, cuBLAS heuristics and lazy module
 * loading all happen outside any capture), then is captured; later calls
 * replay the graph: one launch instead of ~10 per layer. */
static int run_nll_forward(lmc_cu *cu, int nwin, int S, lmc_error *err)
{
    double t0 = cu->prof ? lmc_now() : 0;
    if (cu->use_graph && cu->graph && cu->graph_nwin == nwin && cu->graph_S == S) {
        CUDA_OK(cudaGraphLaunch(cu->graph, cu->st), "graph launch");
    } else {
        if (DISPATCH(cu->prec, run_windows, cu, nwin, S, NULL, err) < 0)
            return -1;
        if (cu->use_graph) { /* capture for the next calls (capturing runs nothing) */
            CUDA_OK(cudaStreamSynchronize(cu->st), "forward");
            lmc_error cerr;
            if (capture_forward(cu, nwin, S, &cerr) < 0) {
                /* the eager forward just worked: stay eager rather than fail */
                fprintf(stderr, "lmc: warning: CUDA graph capture failed (%s); forwards run "
                                "eagerly\n", cerr.msg);
                cudaGetLastError();
                cu->use_graph = 0;
            }
        }
    }
    if (cu->prof)
        cu->host_ms += (lmc_now() - t0) * 1e3;
    return 0;
}

extern "C" int lmc_cu_windows_nll(lmc_cu *cu, const int32_t *ids, const int32_t *targets,
                                  int nwin, int S, double *nll, lmc_error *err)
{
    if (S < 1 || nwin < 1)
        return lmc_fail(err, "empty window");
    if (check_tokens(cu, nwin * S, err) < 0 || put_ids(cu, ids, targets, nwin * S, err) < 0)
        return -1;
    if (run_nll_forward(cu, nwin, S, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpyAsync(nll, cu->win_nll, (size_t)nwin * sizeof(double),
                            cudaMemcpyDeviceToHost, cu->st),
            "window NLL");
    CUDA_OK(cudaStreamSynchronize(cu->st), "forward");
    if (cu->prof)
        prof_collect(cu);
    return 0;
}

extern "C" int lmc_cu_forward_logits(lmc_cu *cu, const int32_t *ids, int n, float *logits,
                                     lmc_error *err)
{
    if (check_tokens(cu, n, err) < 0 || put_ids(cu, ids, NULL, n, err) < 0)
        return -1;
    if (DISPATCH(cu->prec, run_windows, cu, 1, n, logits, err) < 0)
        return -1;
    CUDA_OK(cudaStreamSynchronize(cu->st), "forward");
    return 0;
}

extern "C" int lmc_cu_forward_block(lmc_cu *cu, int layer, float *x, int n, lmc_error *err)
{
    if (layer < 0 || layer >= cu->d.n_layers)
        return lmc_fail(err, "block %d out of range (model has %d)", layer, cu->d.n_layers);
    if (check_tokens(cu, n, err) < 0)
        return -1;
    int H = cu->d.hidden;
    size_t nh = (size_t)n * H, bytes = nh * sizeof(float);
    if (!cu->res_half) {
        CUDA_OK(cudaMemcpyAsync(cu->x, x, bytes, cudaMemcpyHostToDevice, cu->st), "block input");
    } else { /* a half residual: converted on the device, through the staging buffer */
        int64_t bad;
        if (upload_to(cu, cu->x, 0, x, LMC_CU_SRC_F32, nh, &bad, err) < 0)
            return -1;
        if (bad >= 0)
            return lmc_fail(err, "block %d input [%lld, %lld] = %g is not finite in the %s "
                                 "residual (--residual fp32 keeps it in fp32)",
                            layer, (long long)(bad / H), (long long)(bad % H), x[bad],
                            cu->prec == PREC_BF16 ? "bf16" : "fp16");
    }
    const float *pending = NULL;
    if (DISPATCH(cu->prec, run_block_any, cu, layer, n, n, &pending, err) < 0)
        return -1;
    const void *out = cu->x;
    if (cu->res_half) {
        if (staging_reserve(cu, bytes, err) < 0)
            return -1;
        if (cu->prec == PREC_BF16)
            k_to_f32<<<grid_for(nh), 256, 0, cu->st>>>((const bf16 *)cu->x, (float *)cu->staging,
                                                       nh);
        else
            k_to_f32<<<grid_for(nh), 256, 0, cu->st>>>((const f16 *)cu->x, (float *)cu->staging,
                                                      nh);
        LAUNCH_OK("block output");
        out = cu->staging;
    }
    std::vector<float> b;
    if (pending) { /* the down bias, which the next norm would add */
        b.resize((size_t)H);
        CUDA_OK(cudaMemcpyAsync(b.data(), pending, (size_t)H * 4, cudaMemcpyDeviceToHost, cu->st),
                "block output");
    }
    CUDA_OK(cudaMemcpyAsync(x, out, bytes, cudaMemcpyDeviceToHost, cu->st), "block output");
    CUDA_OK(cudaStreamSynchronize(cu->st), "block");
    if (pending)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < H; j++)
                x[(size_t)i * H + j] += b[j];
    return 0;
}

/* ---------------------------------------------------------------- setup */

extern "C" void lmc_cu_free(lmc_cu *cu)
{
    if (!cu)
        return;
    if (cu->st)
        cudaStreamSynchronize(cu->st);
    double tot = 0;
    for (int i = 0; i < ST_COUNT; i++)
        tot += cu->prof_ms[i];
    if (cu->prof && tot > 0) {
        fprintf(stderr, "lmc cuda profile (device time, all forwards):\n");
        for (int i = 0; i < ST_COUNT; i++)
            fprintf(stderr, "  %-14s %10.2f ms %5.1f%%\n", stage_name[i], cu->prof_ms[i],
                    100.0 * cu->prof_ms[i] / tot);
        fprintf(stderr, "  %-14s %10.2f ms\n", "total", tot);
        fprintf(stderr, "  host time enqueueing the NLL forwards: %.2f ms\n", cu->host_ms);
    }
    if (cu->graph)
        cudaGraphExecDestroy(cu->graph);
    for (cudaEvent_t e : cu->prof_ev)
        cudaEventDestroy(e);
    for (void *p : cu->allocs)
        cudaFree(p);
    if (cu->staging)
        cudaFree(cu->staging);
    if (cu->bad)
        cudaFree(cu->bad);
    lmc_gemm_free(cu->gemm);
    if (cu->st)
        cudaStreamDestroy(cu->st);
    delete cu;
}

/* A stream and the GEMM engine on it. */
static int make_engine(lmc_gemm **g, cudaStream_t *st, int prec, lmc_error *err)
{
    *g = NULL;
    CUDA_OK(cudaStreamCreateWithFlags(st, cudaStreamNonBlocking), "creating a stream");
    return lmc_gemm_new(g, *st, prec == PREC_FP32, err);
}

static int cu_setup(lmc_cu *cu, lmc_error *err)
{
    const lmc_cu_dims *d = &cu->d;
    if (make_engine(&cu->gemm, &cu->st, cu->prec, err) < 0)
        return -1;
    CUDA_OK(cudaMalloc((void **)&cu->bad, sizeof(unsigned long long)), "allocating a flag");
    /* block matrices are allocated by their first upload, dense or as
     * factors (lmc_cu_set_lowrank) */
    cu->blk.assign((size_t)d->n_layers, dblock());
    for (int l = 0; l < d->n_layers; l++)
        memset(&cu->blk[l], 0, sizeof(dblock));
    if (dalloc(cu, &cu->embed, mat_elems(d, LMC_CU_EMBED) * cu->es, "embeddings", err) < 0)
        return -1;
    if (!d->tied &&
        dalloc(cu, &cu->head, mat_elems(d, LMC_CU_HEAD) * cu->es, "LM head", err) < 0)
        return -1;
    size_t T = (size_t)cu->max_tokens, H = d->hidden, F = d->ffn, qd = qdim(d),
           kvd = kvdim(d), es = cu->es;
    /* logits in chunks of about 512 MB */
    size_t rows = ((size_t)512 << 20) / ((size_t)d->vocab * 4);
    cu->head_rows = (int)std::max((size_t)1, std::min(rows, T));
    if (dalloc(cu, &cu->x, T * H * (cu->res_half ? es : 4), "activations", err) < 0 ||
        dalloc(cu, &cu->xn, T * H * es, "activations", err) < 0 ||
        dalloc(cu, &cu->qkv, T * (qd + 2 * kvd) * es, "activations", err) < 0 ||
        dalloc(cu, &cu->ctx, T * qd * es, "activations", err) < 0 ||
        dalloc(cu, &cu->gu, T * F * (d->gated ? 2 : 1) * es, "activations", err) < 0 ||
        dalloc(cu, &cu->act, T * F * es, "activations", err) < 0 ||
        dalloc(cu, &cu->logits, (size_t)cu->head_rows * d->vocab * 4, "logits", err) <
            0 ||
        dalloc(cu, (void **)&cu->row_nll, T * sizeof(double), "activations", err) < 0 ||
        dalloc(cu, (void **)&cu->win_nll, T * sizeof(double), "activations", err) < 0 ||
        dalloc(cu, (void **)&cu->ids, T * 4, "activations", err) < 0 ||
        dalloc(cu, (void **)&cu->tgt, T * 4, "activations", err) < 0)
        return -1;
    return 0;
}

extern "C" int lmc_cu_new(const lmc_cu_dims *d, int prec, int res_half, int max_tokens,
                          lmc_cu **out, lmc_error *err)
{
    *out = NULL;
    if (prec < PREC_FP32 || prec > PREC_BF16)
        return lmc_fail(err, "bad precision %d", prec);
    if (max_tokens < 1 || max_tokens > 65535) /* tokens on grid.x, rows on grid.y */
        return lmc_fail(err, "%d tokens per forward: the CUDA kernels take 1 to 65535",
                        max_tokens);
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    lmc_cu *cu = new lmc_cu();
    cu->d = *d;
    cu->prec = prec;
    cu->es = esize_of(prec);
    cu->max_tokens = max_tokens;
    const char *pe = getenv("LMC_CUDA_PROFILE");
    cu->prof = pe && *pe && strcmp(pe, "0");
    const char *ge = getenv("LMC_CUDA_GRAPH");
    cu->use_graph = !cu->prof && !(ge && !strcmp(ge, "0")); /* events need eager runs */
    const char *ru = getenv("LMC_CUDA_ROPE_UNFUSED");
    cu->rope_in_attn = !(ru && *ru && strcmp(ru, "0"));
    cu->res_half = prec != PREC_FP32 && res_half;
    /* with the half residual, fp16 logits at fp16 (0.2-0.4 % faster on the
     * TinyLlama-shaped model, H100); an fp32 residual keeps fp32 logits too
     * (fp16 logits moved llama-s's ppl by 2.5e-5). bf16 logits: never, its
     * 8-bit mantissa would bias log-sum-exp by ~1e-4. */
    cu->logits_half = cu->res_half && prec == PREC_FP16;
    if (cu_setup(cu, err) < 0) {
        lmc_cu_free(cu);
        return -1;
    }
    *out = cu;
    return 0;
}

/* ---------------------------------------------------------------- kernel tests */

/* A scratch device buffer that frees itself. */
struct dbuf {
    void *p = NULL;
    ~dbuf()
    {
        if (p)
            cudaFree(p);
    }
};

static int dnew(dbuf &b, size_t bytes, lmc_error *err)
{
    CUDA_OK(cudaMalloc(&b.p, bytes ? bytes : 16), "test buffer");
    return 0;
}

/* Host fp32 -> device T (rounded as the pass stores it). */
template <typename T> static int to_dev(dbuf &d, const float *h, size_t n, lmc_error *err)
{
    dbuf tmp, bad;
    if (dnew(d, n * sizeof(T), err) < 0 || dnew(tmp, n * 4, err) < 0 || dnew(bad, 8, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(tmp.p, h, n * 4, cudaMemcpyHostToDevice), "test upload");
    k_from_f32<T><<<grid_for(n), 256>>>((const float *)tmp.p, (T *)d.p, n,
                                        (unsigned long long *)bad.p);
    CUDA_OK(cudaDeviceSynchronize(), "test upload");
    return 0;
}

template <typename T> static int from_dev(float *h, const dbuf &d, size_t n, lmc_error *err)
{
    dbuf tmp;
    if (dnew(tmp, n * 4, err) < 0)
        return -1;
    k_to_f32<T><<<grid_for(n), 256>>>((const T *)d.p, (float *)tmp.p, n);
    LAUNCH_OK("test download");
    CUDA_OK(cudaMemcpy(h, tmp.p, n * 4, cudaMemcpyDeviceToHost), "test download");
    return 0;
}

static int f32_dev(dbuf &d, const float *h, size_t n, lmc_error *err)
{
    if (!h)
        return 0;
    if (dnew(d, n * 4, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(d.p, h, n * 4, cudaMemcpyHostToDevice), "test upload");
    return 0;
}

template <typename T>
static int test_norm(const float *x, const float *badd, float *xo, float *y, int n, int H,
                     const float *w, const float *b, int rms, double eps, lmc_error *err)
{
    size_t nh = (size_t)n * H;
    dbuf dx, dba, dy, dw, db;
    if (f32_dev(dx, x, nh, err) < 0 || f32_dev(dba, badd, H, err) < 0 ||
        f32_dev(dw, w, H, err) < 0 || f32_dev(db, b, H, err) < 0 ||
        dnew(dy, nh * sizeof(T), err) < 0)
        return -1;
    launch_norm<T>((float *)dx.p, (const float *)dba.p, (T *)dy.p, n, H, (const float *)dw.p,
                   (const float *)db.p, rms, (float)eps, 0);
    LAUNCH_OK("norm kernel");
    if (xo)
        CUDA_OK(cudaMemcpy(xo, dx.p, nh * 4, cudaMemcpyDeviceToHost), "test download");
    return from_dev<T>(y, dy, nh, err);
}

extern "C" int lmc_cu_test_norm(const float *x, const float *badd, float *xo, float *y, int n,
                                int H, const float *w, const float *b, int rms, double eps,
                                int prec, lmc_error *err)
{
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    return DISPATCH(prec, test_norm, x, badd, xo, y, n, H, w, b, rms, eps, err);
}

template <typename T>
static int test_qkv(const lmc_cu_dims *d, const float *cs, const float *sn, float *qkv,
                    const float *bias, int n, int S, lmc_error *err)
{
    int hd = d->head_dim, qd = qdim(d), kvd = kvdim(d), ld = qd + 2 * kvd;
    size_t nq = (size_t)n * ld, nb = (size_t)S * (hd / 2);
    dbuf dq, db, dc, ds;
    if (to_dev<T>(dq, qkv, nq, err) < 0 || f32_dev(db, bias, ld, err) < 0 ||
        f32_dev(dc, d->rope ? cs : NULL, nb, err) < 0 ||
        f32_dev(ds, d->rope ? sn : NULL, nb, err) < 0)
        return -1;
    launch_qkv_post<T>(d, (T *)dq.p, (const float *)db.p, n, S, (const float *)dc.p,
                       (const float *)ds.p, 0, 0);
    LAUNCH_OK("qkv kernel");
    return from_dev<T>(qkv, dq, nq, err);
}

extern "C" int lmc_cu_test_qkv(const lmc_cu_dims *d, const float *cs, const float *sn, float *qkv,
                               const float *bias, int n, int S, int prec, lmc_error *err)
{
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    return DISPATCH(prec, test_qkv, d, cs, sn, qkv, bias, n, S, err);
}

template <typename T>
static int test_attn(const lmc_cu_dims *d, const float *q, const float *k, const float *v,
                     const float *cs, const float *sn, int *q_in_kernel, float *ctx, int nwin,
                     int S, int kind, lmc_error *err)
{
    int qd = qdim(d), kvd = kvdim(d), ld = qd + 2 * kvd;
    size_t n = (size_t)nwin * S;
    std::vector<float> h(n * ld);
    for (size_t t = 0; t < n; t++) {
        memcpy(&h[t * ld], q + t * qd, (size_t)qd * 4);
        memcpy(&h[t * ld + qd], k + t * kvd, (size_t)kvd * 4);
        memcpy(&h[t * ld + qd + kvd], v + t * kvd, (size_t)kvd * 4);
    }
    dbuf dq, dc;
    if (to_dev<T>(dq, h.data(), n * ld, err) < 0 || dnew(dc, n * qd * sizeof(T), err) < 0)
        return -1;
    CUDA_OK(cudaMemset(dc.p, 0xff, n * qd * sizeof(T)), "test"); /* poison: NaN */
    /* RoPE first, as run_block does it */
    dbuf rc, rs;
    size_t nt = (size_t)S * (d->head_dim / 2);
    *q_in_kernel = cs && *q_in_kernel && attn_is_wg<T>(d, kind);
    if (cs) {
        if (f32_dev(rc, cs, nt, err) < 0 || f32_dev(rs, sn, nt, err) < 0)
            return -1;
        launch_qkv_post<T>(d, (T *)dq.p, NULL, (int)n, S, (const float *)rc.p,
                           (const float *)rs.p, *q_in_kernel, 0);
        LAUNCH_OK("qkv kernel");
    }
    const float *qc = *q_in_kernel ? (const float *)rc.p : NULL,
                *qs = *q_in_kernel ? (const float *)rs.p : NULL;
    if (attention<T>(d, (const T *)dq.p, (T *)dc.p, nwin, S, kind, qc, qs, 0, err) < 0)
        return -1;
    return from_dev<T>(ctx, dc, n * qd, err);
}

extern "C" int lmc_cu_test_attention(const lmc_cu_dims *d, const float *q, const float *k,
                                     const float *v, const float *cs, const float *sn,
                                     int *q_in_kernel, float *ctx, int nwin, int S, int kind,
                                     int prec, lmc_error *err)
{
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    return DISPATCH(prec, test_attn, d, q, k, v, cs, sn, q_in_kernel, ctx, nwin, S, kind, err);
}

template <typename T>
static int test_act(int act, int gated, const float *gu, const float *bias, float *a, int n,
                    int F, lmc_error *err)
{
    size_t ng = (size_t)n * F * (gated ? 2 : 1), na = (size_t)n * F;
    dbuf dg, db, da;
    if (to_dev<T>(dg, gu, ng, err) < 0 ||
        f32_dev(db, bias, (size_t)F * (gated ? 2 : 1), err) < 0 ||
        dnew(da, na * sizeof(T), err) < 0)
        return -1;
    launch_act<T>((const T *)dg.p, (const float *)db.p, (T *)da.p, n, F, gated, act, 0);
    LAUNCH_OK("activation kernel");
    return from_dev<T>(a, da, na, err);
}

extern "C" int lmc_cu_test_act(int act, int gated, const float *gu, const float *bias, float *a,
                               int n, int F, int prec, lmc_error *err)
{
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    return DISPATCH(prec, test_act, act, gated, gu, bias, a, n, F, err);
}

extern "C" int lmc_cu_test_row_nll(const float *logits, int rows, int V, const int32_t *targets,
                                   int half, double *nll, lmc_error *err)
{
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    dbuf dl, dt, dn;
    size_t n = (size_t)rows * V;
    if ((half ? to_dev<f16>(dl, logits, n, err) : f32_dev(dl, logits, n, err)) < 0 ||
        dnew(dt, (size_t)rows * 4, err) < 0 || dnew(dn, (size_t)rows * 8, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(dt.p, targets, (size_t)rows * 4, cudaMemcpyHostToDevice), "test upload");
    if (half)
        k_row_nll<<<rows, 256>>>((const f16 *)dl.p, V, (const int32_t *)dt.p, (double *)dn.p);
    else
        k_row_nll<<<rows, 256>>>((const float *)dl.p, V, (const int32_t *)dt.p, (double *)dn.p);
    LAUNCH_OK("nll kernel");
    CUDA_OK(cudaMemcpy(nll, dn.p, (size_t)rows * 8, cudaMemcpyDeviceToHost), "test download");
    return 0;
}

/* ---------------------------------------------------------------- GEMM benchmark */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct bench_ctx {
    lmc_gemm *g = NULL;
    cudaStream_t st = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    ~bench_ctx()
    {
        if (e0)
            cudaEventDestroy(e0);
        if (e1)
            cudaEventDestroy(e1);
        lmc_gemm_free(g);
        if (st)
            cudaStreamDestroy(st);
    }
};

template <typename T>
static int random_dev(dbuf &d, size_t n, uint64_t seed, lmc_error *err)
{
    std::vector<float> h(n);
    uint64_t s = 88172645463325252ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        h[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
    }
    return to_dev<T>(d, h.data(), n, err);
}

/* Median seconds of one call of run() (int run(): < 0 on error), timed by
 * events over `inner` calls, `reps` times. */
template <typename F>
static int time_median(bench_ctx &b, int reps, int inner, F run, double *sec, lmc_error *err)
{
    std::vector<double> t((size_t)reps);
    for (int i = 0; i < reps; i++) {
        CUDA_OK(cudaEventRecord(b.e0, b.st), "benchmark");
        for (int r = 0; r < inner; r++)
            if (run() < 0)
                return -1;
        CUDA_OK(cudaEventRecord(b.e1, b.st), "benchmark");
        CUDA_OK(cudaEventSynchronize(b.e1), "benchmark");
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, b.e0, b.e1), "benchmark");
        t[i] = ms / inner * 1e-3;
    }
    qsort(t.data(), (size_t)reps, sizeof t[0], cmp_double);
    *sec = t[reps / 2];
    return 0;
}

template <typename T>
static int bench_one(bench_ctx &b, lmc_cu_gemm_rate *o, int out32, float beta, lmc_error *err)
{
    size_t nx = (size_t)(o->m * o->k), nw = (size_t)(o->n * o->k), ny = (size_t)(o->m * o->n);
    dbuf X, W, Y;
    /* random data, not zeros: zeros run faster than real data */
    if (random_dev<T>(X, nx, 1, err) < 0 || random_dev<T>(W, nw, 2, err) < 0 ||
        dnew(Y, ny * (out32 ? 4 : sizeof(T)), err) < 0)
        return -1;
    CUDA_OK(cudaMemset(Y.p, 0, ny * (out32 ? 4 : sizeof(T))), "benchmark");
    cudaDataType dt = dtype_of<T>(), to = out32 ? CUDA_R_32F : dt;
    int M = (int)o->m, N = (int)o->n, K = (int)o->k;
    for (int i = 0; i < 3; i++)
        if (gemm(b.g, X.p, W.p, Y.p, M, N, K, dt, to, beta, err) < 0)
            return -1;
    double sec = 0;
    if (time_median(
            b, 15, 5, [&] { return gemm(b.g, X.p, W.p, Y.p, M, N, K, dt, to, beta, err); }, &sec,
            err) < 0)
        return -1;
    o->tflops = 2.0 * o->m * o->n * o->k / sec * 1e-12;
    return 0;
}

template <typename T>
static int bench_attention(bench_ctx &b, const lmc_cu_dims *d, lmc_cu_gemm_rate *o,
                           lmc_error *err)
{
    int S = (int)o->n, nwin = (int)(o->m / S);
    int64_t ld = qdim(d) + 2 * kvdim(d);
    dbuf X, Y;
    if (random_dev<T>(X, (size_t)(o->m * ld), 3, err) < 0 ||
        dnew(Y, (size_t)(o->m * qdim(d)) * sizeof(T), err) < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (attention<T>(d, (const T *)X.p, (T *)Y.p, nwin, S, 0, NULL, NULL, b.st, err) < 0)
            return -1;
    double sec = 0;
    auto run = [&] {
        return attention<T>(d, (const T *)X.p, (T *)Y.p, nwin, S, 0, NULL, NULL, b.st, err);
    };
    if (time_median(b, 9, 3, run, &sec, err) < 0)
        return -1;
    /* scores and context, n_heads x head_dim MACs per (query, key <= query) */
    double flop = 2.0 * 2.0 * d->n_heads * d->head_dim * nwin * (double)S * (S + 1) / 2.0;
    o->tflops = flop / sec * 1e-12;
    return 0;
}

extern "C" int lmc_cu_bench_gemm(const lmc_cu_dims *d, int tokens, int window, int prec,
                                 int res_half, lmc_cu_gemm_rate *rates, int *n_rates, double *mix_tflops,
                                 lmc_error *err)
{
    *n_rates = 0;
    *mix_tflops = 0;
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    int64_t H = d->hidden, F = d->ffn, qd = qdim(d), kvd = kvdim(d);
    int64_t head_rows = std::min<int64_t>(tokens, ((int64_t)512 << 20) / ((int64_t)d->vocab * 4));
    head_rows = std::max<int64_t>(head_rows, 1);
    /* output types as the pass has them: o and down into the residual, fp16
     * logits with a half residual at fp16 */
    int r32 = prec == PREC_FP32 || !res_half, l32 = r32 || prec != PREC_FP16;
    struct shape { const char *name; int64_t m, n, k; int count, out32; float beta; } sh[] = {
        {"qkv", tokens, qd + 2 * kvd, H, d->n_layers, 0, 0.0f},
        {"o", tokens, H, qd, d->n_layers, r32, 1.0f},
        {d->gated ? "gate_up" : "up", tokens, d->gated ? 2 * F : F, H, d->n_layers, 0, 0.0f},
        {"down", tokens, H, F, d->n_layers, r32, 1.0f},
        {"head", head_rows, d->vocab, H, (int)((tokens + head_rows - 1) / head_rows), l32, 0.0f},
    };
    bench_ctx b;
    if (make_engine(&b.g, &b.st, prec, err) < 0)
        return -1;
    CUDA_OK(cudaEventCreate(&b.e0), "benchmark");
    CUDA_OK(cudaEventCreate(&b.e1), "benchmark");
    double flop = 0, time = 0;
    int ns = (int)(sizeof sh / sizeof sh[0]);
    for (int s = 0; s < ns; s++) {
        lmc_cu_gemm_rate *o = &rates[s];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", sh[s].name);
        o->m = sh[s].m;
        o->n = sh[s].n;
        o->k = sh[s].k;
        o->per_forward = sh[s].count;
        if (DISPATCH(prec, bench_one, b, o, sh[s].out32, sh[s].beta, err) < 0)
            return -1;
        double f = 2.0 * o->m * o->n * o->k * o->per_forward;
        flop += f;
        time += f / (o->tflops * 1e12);
        *n_rates = s + 1;
    }
    *mix_tflops = time > 0 ? flop / time * 1e-12 : 0;
    /* the attention kernel on windows of `window` tokens filling the rows:
     * not a GEMM, so outside the mix; causal FLOPs as eval counts them */
    if (window >= 2 && window <= tokens) {
        lmc_cu_gemm_rate *o = &rates[ns];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "attention");
        o->is_attention = 1;
        o->m = (tokens / window) * (int64_t)window;
        o->n = window;
        o->k = d->head_dim;
        o->per_forward = d->n_layers;
        if (DISPATCH(prec, bench_attention, b, d, o, err) < 0)
            return -1;
        *n_rates = ns + 1;
    }
    return 0;
}
