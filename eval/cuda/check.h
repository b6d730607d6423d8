/* Error checks shared by the CUDA sources: each returns lmc_fail(err, ...)
 * (so -1) from the enclosing function, which must have an lmc_error *err. */
#ifndef LMC_CUDA_CHECK_H
#define LMC_CUDA_CHECK_H

#define CUDA_OK(call, what)                                                                   \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess)                                                                \
            return lmc_fail(err, "CUDA: %s: %s", what, cudaGetErrorString(e_));               \
    } while (0)

#define LAUNCH_OK(what) CUDA_OK(cudaGetLastError(), what)

#define BLAS_OK(call, what)                                                                   \
    do {                                                                                      \
        cublasStatus_t s_ = (call);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                      \
            return lmc_fail(err, "cuBLAS: %s: %s", what, cublasGetStatusString(s_));          \
    } while (0)

/* cuSOLVER (only where cusolverDn.h is included) */
#define SOLVER_OK(call, what)                                                                 \
    do {                                                                                      \
        cusolverStatus_t s_ = (call);                                                         \
        if (s_ != CUSOLVER_STATUS_SUCCESS)                                                    \
            return lmc_fail(err, "cuSOLVER: %s: status %d", what, (int)s_);                   \
    } while (0)

#endif
