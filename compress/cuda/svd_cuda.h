/* The low-rank factorization of compress/svd.h on the GPU: the twin of
 * lmc_svd_factor (plain SVD, ASVD, SVD-LLM whitening) and of the pass's
 * relative output error, in double throughout as on the CPU. The SVD is
 * cuSOLVER's polar-decomposition SVD (Xgesvdp), and its QR-iteration SVD
 * (Xgesvd) where Xgesvdp reports a failure or a perturbation of the
 * spectrum, as the CPU falls back from dgesdd to dgesvd. The whitening
 * Cholesky is cuSOLVER's potrf, the products and the triangular solve
 * cuBLAS's. Singular vectors may differ in sign from LAPACK's; the stored
 * product does not. The check of what is stored (the product of the
 * rounded factors against W) runs there too. CUDA builds only. */
#ifndef LMC_SVD_CUDA_H
#define LMC_SVD_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "../../eval/backend.h"

typedef struct lmc_cuda_svd lmc_cuda_svd;

/* On the device of b (a CUDA calibration backend, whose buffers count
 * what this allocates, and whose Hessians whitening reads), or, b NULL, on
 * a context of its own. */
int lmc_cuda_svd_open(lmc_backend *b, lmc_cuda_svd **out, lmc_error *err);
void lmc_cuda_svd_free(lmc_cuda_svd *s);
/* The most device memory its own context held (0 on a backend's). */
size_t lmc_cuda_svd_peak_bytes(const lmc_cuda_svd *s);

typedef struct lmc_cuda_svd_info {
    double energy; /* as lmc_svd_info */
    double damp;
    int qr;        /* 1: Xgesvdp was not usable, Xgesvd computed it */
} lmc_cuda_svd_info;

/* lmc_svd_factor's arguments (method: lmc_svd_method's values) on the GPU;
 * whitening reads xtx (host [cols][cols]) or, xtx NULL, the Hessian of
 * site `site` of the backend's last observed block. */
int lmc_cuda_svd_factor(lmc_cuda_svd *s, const float *w, int64_t rows, int64_t cols, int rank,
                        int method, const double *sc, const double *xtx, int site, float *A,
                        float *B, lmc_cuda_svd_info *info, lmc_error *err);

/* The error of what the last lmc_cuda_svd_factor gave, as stored (f16:
 * its factors rounded to fp16), against its w: *rel = ||W - AB||_F /
 * ||W||_F, and with whiten *rel_out = sqrt(tr(E H E^T) / tr(W H W^T)),
 * E = W - AB, H = xtx or (NULL) the site's Hessian (-1 when not defined
 * or not whiten), as svd.c computes them on the host. Rounds the device's
 * copy of the factors. */
int lmc_cuda_svd_stored_error(lmc_cuda_svd *s, int f16, int64_t rows, int64_t cols, int rank,
                              int whiten, const double *xtx, int site, double *rel,
                              double *rel_out, lmc_error *err);

#endif
