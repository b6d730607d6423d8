/* Scratch device buffers that free themselves, and host <-> device copies
 * with conversion (tests, benchmarks, passes). */
#ifndef LMC_CUDA_DBUF_CUH
#define LMC_CUDA_DBUF_CUH

#include "common.cuh"


/* A scratch device buffer that frees itself. */
struct dbuf {
    void *p = NULL;
    ~dbuf()
    {
        if (p)
            cudaFree(p);
    }
};

static inline int dnew(dbuf &b, size_t bytes, lmc_error *err)
{
    CUDA_OK(cudaMalloc(&b.p, bytes ? bytes : 16), "test buffer");
    return 0;
}

/* Host fp32 -> device T (rounded as the pass stores it). */
template <typename T> static inline int to_dev(dbuf &d, const float *h, size_t n, lmc_error *err)
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

template <typename T> static inline int from_dev(float *h, const dbuf &d, size_t n, lmc_error *err)
{
    dbuf tmp;
    if (dnew(tmp, n * 4, err) < 0)
        return -1;
    k_to_f32<T><<<grid_for(n), 256>>>((const T *)d.p, (float *)tmp.p, n);
    LAUNCH_OK("test download");
    CUDA_OK(cudaMemcpy(h, tmp.p, n * 4, cudaMemcpyDeviceToHost), "test download");
    return 0;
}

static inline int f32_dev(dbuf &d, const float *h, size_t n, lmc_error *err)
{
    if (!h)
        return 0;
    if (dnew(d, n * 4, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(d.p, h, n * 4, cudaMemcpyHostToDevice), "test upload");
    return 0;
}

#endif
