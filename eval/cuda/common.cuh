/* What every CUDA source of lmc shares: element types and their
 * conversions, warp/block reductions, conversion kernels, the RoPE pair.
 * C++ (nvcc) only. */
#ifndef LMC_CUDA_COMMON_CUH
#define LMC_CUDA_COMMON_CUH

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

#include "check.h"
#include "dev.h"

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

template <typename T> inline cudaDataType dtype_of();
template <> inline cudaDataType dtype_of<float>() { return CUDA_R_32F; }
template <> inline cudaDataType dtype_of<f16>() { return CUDA_R_16F; }
template <> inline cudaDataType dtype_of<bf16>() { return CUDA_R_16BF; }

enum { PREC_FP32 = 1, PREC_FP16 = 2, PREC_BF16 = 3 }; /* lmc_precision's values */
static inline size_t esize_of(int p) { return p == PREC_FP32 ? 4 : 2; }


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
static __device__ double block_sum(double v, double *red)
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

static __device__ float block_max(float v, float *red)
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

static inline int grid_for(size_t n)
{
    size_t g = (n + 255) / 256;
    return (int)(g > 65536 ? 65536 : (g ? g : 1));
}


/* One rotate_half RoPE pair, written once so that every kernel that rotates
 * (k_qkv_post, k_qkv_rope2, k_attn_wg's Q) rounds alike. */
__device__ __forceinline__ void rope_pair(float x1, float x2, float c, float s, float &y1,
                                          float &y2)
{
    y1 = fmaf(x1, c, -x2 * s);
    y2 = fmaf(x2, c, x1 * s);
}

static inline int qdim(const lmc_cu_dims *d) { return d->n_heads * d->head_dim; }
static inline int kvdim(const lmc_cu_dims *d) { return d->n_kv_heads * d->head_dim; }

#define DISPATCH(p, fn, ...)                                                                  \
    ((p) == PREC_FP32   ? fn<float>(__VA_ARGS__)                                              \
     : (p) == PREC_BF16 ? fn<bf16>(__VA_ARGS__)                                               \
                        : fn<f16>(__VA_ARGS__))

#endif
