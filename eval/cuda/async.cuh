/* Asynchronous copies and Hopper warpgroup-MMA plumbing shared by the
 * tensor-core kernels (attention.cu, gemm_i8.cu). C++ (nvcc) only. */
#ifndef LMC_CUDA_ASYNC_CUH
#define LMC_CUDA_ASYNC_CUH

#include <cuda_runtime.h>
#include <stdint.h>

/* sm_90a device code: the wgmma instructions exist */
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LMC_DEVICE_WGMMA 1
#endif

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

/* Shared-memory matrix descriptor: 128-byte swizzle, 8-row groups 1024
 * bytes apart (the stride), leading offset unused by this layout (1). */
__device__ __forceinline__ uint64_t wg_desc(const void *p)
{
    uint64_t a = (uint64_t)__cvta_generic_to_shared(p);
    return ((a & 0x3FFFF) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}

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

/* The wgmma kernel exists in this build (sm_90a code, LMC_SM90A from the
 * Makefile) and the device is a Hopper (compute capability 9.0). */
static inline bool wgmma_ok()
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

#endif
