/* The low-rank factorization on the GPU (see svd_cuda.h), the twin of
 * compress/svd.c's lmc_svd_factor and rel_output_error, step by step.
 *
 * The row-major [rows][cols] weight is, read column-major, its transpose
 * X = M^T [cols x rows]; everything here works on that view:
 *   asvd    X(j, r) *= s_j;
 *   whiten  H + eps mean(diag H) I = U^T U (potrf, upper, column-major:
 *           U = L^T of the CPU's row-major lower L), X <- U X (= (M L)^T);
 *   SVD     of X itself when cols >= rows (m >= n, as the SVD routines
 *           want), else of its transpose (cublasDgeam): either way the
 *           left singular vectors of M come out as a column-major
 *           [rows][k] matrix and the right ones as [cols][k];
 *   then    U_i *= sqrt(s_i), V_i *= sqrt(s_i); asvd V(j, i) /= s_j;
 *           whiten V <- U^-1 V (trsm; = B L^-1 transposed); the rank-one
 *           terms rebalanced; A = U_r (row-major), B = V_r^T, which is V_r's
 *           column-major memory as it is. */
#include <cusolverDn.h>

#include <functional>

#include "../../eval/cuda/model.cuh"

extern "C" {
#include "../../core/clock.h"
#include "../../core/log.h"
#include "../../eval/cuda/backend_cuda.h"
#include "../svd.h"
#include "svd_cuda.h"
}

enum { M_PLAIN = 0, M_ASVD = 1, M_WHITEN = 2 }; /* lmc_svd_method */
#define NB_DOT 1024 /* blocks of the dot product: a fixed summation order */

/* scratch buffers, kept (grown) from one linear to the next */
enum { B_W, B_W2, B_SC, B_H, B_L, B_X, B_X2, B_SV, B_U, B_V, B_WORK, B_INFO, B_DIAG, B_Q, B_D,
       B_A, B_B, B_BAD, B_PART, B_COUNT };
/* phases timed with LMC_CUDA_PROFILE=1 (synchronizing after each) */
enum { P_UP, P_CHOL, P_BUILD, P_SVD, P_POST, P_ERR, P_COUNT };
static const char *const phase_name[P_COUNT] = {"upload", "whitening Cholesky", "W (L)",
                                                "SVD", "factors", "stored error"};

struct lmc_cuda_svd {
    lmc_cu *cu;
    int own; /* cu is this context's (no backend) */
    cbuf b[B_COUNT];
    size_t cap[B_COUNT];
    int prof;
    double t[P_COUNT], t0;
    int n_svd, n_qr;
};

/* Buffer id holding at least `bytes` (its contents are not kept). */
static void *need(lmc_cuda_svd *s, int id, size_t bytes, lmc_error *err)
{
    if (s->b[id].p && s->cap[id] >= bytes)
        return s->b[id].p;
    if (s->b[id].alloc(s->cu, bytes, err, "the SVD") < 0) {
        s->cap[id] = 0;
        return NULL;
    }
    s->cap[id] = bytes;
    return s->b[id].p;
}

/* With LMC_CUDA_PROFILE: the time since the last mark goes to phase ph. */
static int mark_phase(lmc_cuda_svd *s, int ph, lmc_error *err)
{
    if (!s->prof)
        return 0;
    CUDA_OK(cudaStreamSynchronize(s->cu->st), "svd");
    double t = lmc_now();
    s->t[ph] += t - s->t0;
    s->t0 = t;
    return 0;
}

extern "C" int lmc_cuda_svd_open(lmc_backend *b, lmc_cuda_svd **out, lmc_error *err)
{
    *out = NULL;
    lmc_cu *cu = NULL;
    int own = 0;
    if (b) {
        if (!(cu = lmc_cuda_backend_cu(b)))
            return lmc_fail(err, "svd: not a CUDA calibration backend");
    } else {
        if (lmc_cu_new_compute(&cu, err) < 0)
            return -1;
        own = 1;
    }
    if (lmc_cu_dn_handle(cu, err) < 0) {
        if (own)
            lmc_cu_free(cu);
        return -1;
    }
    lmc_cuda_svd *s = new lmc_cuda_svd();
    s->cu = cu;
    s->own = own;
    const char *pe = getenv("LMC_CUDA_PROFILE");
    s->prof = pe && *pe && strcmp(pe, "0");
    *out = s;
    return 0;
}

extern "C" void lmc_cuda_svd_free(lmc_cuda_svd *s)
{
    if (!s)
        return;
    if (s->prof && s->n_svd) {
        lmc_log(LMC_LOG_INFO, "lmc cuda svd profile (%d factorizations, %d by gesvd):", s->n_svd,
                s->n_qr);
        for (int i = 0; i < P_COUNT; i++)
            lmc_log(LMC_LOG_INFO, "  %-20s %10.1f ms", phase_name[i], s->t[i] * 1e3);
    }
    for (int i = 0; i < B_COUNT; i++) /* before the context they were counted in */
        s->b[i].release();
    if (s->own)
        lmc_cu_free(s->cu);
    delete s;
}

extern "C" size_t lmc_cuda_svd_peak_bytes(const lmc_cuda_svd *s)
{
    return s && s->own ? lmc_cu_peak_bytes(s->cu) : 0;
}

/* ---- kernels ---- */

/* X = w in double, column j (of the row-major weight) times s[j] when s */
__global__ void k_load(const float *w, size_t n, int64_t cols, const double *s, double *X)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        double v = w[i];
        if (s)
            v *= s[i % cols];
        X[i] = v;
    }
}

__global__ void k_diag(const double *H, int64_t n, double *d)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        d[i] = H[i * n + i];
}

__global__ void k_add_diag(double *L, int64_t n, double v)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        L[i * n + i] += v;
}

/* U(:, i) *= q_i, V(:, i) *= q_i (then / s_j when s), for i < rank */
__global__ void k_scale(double *U, int64_t rows, double *V, int64_t cols, int rank,
                        const double *q, const double *s)
{
    size_t nu = (size_t)rows * rank, n = nu + (size_t)cols * rank;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x) {
        if (k < nu) {
            U[k] *= q[k / rows];
        } else {
            size_t kv = k - nu;
            double v = V[kv] * q[kv / cols];
            if (s)
                v /= s[kv % cols];
            V[kv] = v;
        }
    }
}

/* Block i: d_i = (|V_i|^2 / |U_i|^2)^(1/4) (1 when plain or either is 0),
 * each sum in a fixed order. */
__global__ void k_balance(const double *U, int64_t rows, const double *V, int64_t cols,
                          int plain, double *d)
{
    __shared__ double sa[256], sb[256];
    const int i = blockIdx.x, t = threadIdx.x;
    double na = 0, nb = 0;
    for (int64_t r = t; r < rows; r += 256) {
        double u = U[(size_t)i * rows + r];
        na += u * u;
    }
    for (int64_t j = t; j < cols; j += 256) {
        double v = V[(size_t)i * cols + j];
        nb += v * v;
    }
    sa[t] = na;
    sb[t] = nb;
    __syncthreads();
    for (int h = 128; h > 0; h >>= 1) {
        if (t < h) {
            sa[t] += sa[t + h];
            sb[t] += sb[t + h];
        }
        __syncthreads();
    }
    if (t == 0)
        d[i] = !plain && sa[0] > 0 && sb[0] > 0 ? sqrt(sqrt(sb[0] / sa[0])) : 1.0;
}

/* A [rows][rank] row-major = U(r, i) d_i; B [rank][cols] = V(j, i) / d_i
 * (V's own layout); *bad: first non-finite index (A first, then B). */
__global__ void k_out(const double *U, int64_t rows, const double *V, int64_t cols, int rank,
                      const double *d, float *A, float *B, unsigned long long *bad)
{
    size_t na = (size_t)rows * rank, n = na + (size_t)cols * rank;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x) {
        float o;
        if (k < na) {
            int64_t r = (int64_t)(k / rank), i = (int64_t)(k % rank);
            o = (float)(U[(size_t)i * rows + r] * d[i]);
            A[k] = o;
        } else {
            size_t kb = k - na;
            o = (float)(V[kb] / d[kb / cols]);
            B[kb] = o;
        }
        if (!isfinite(o))
            atomicMin(bad, (unsigned long long)k);
    }
}

/* E = w - w2 in double (w2 NULL: E = w) */
__global__ void k_diff(const float *w, const float *w2, size_t n, double *E)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        E[i] = w2 ? (double)w[i] - (double)w2[i] : (double)w[i];
}

/* the factors rounded to fp16 and back, as the container stores them */
__global__ void k_round_f16(float *A, size_t na, float *B, size_t nb)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < na + nb;
         i += (size_t)gridDim.x * blockDim.x) {
        float *p = i < na ? A + i : B + (i - na);
        *p = __half2float(__float2half_rn(*p));
    }
}

/* part[b] = the block's share of sum a_i b_i, grid-strided by NB_DOT
 * blocks of 256: the same order on every run */
__global__ void k_dot(const double *a, const double *b, size_t n, double *part)
{
    __shared__ double sh[256];
    double acc = 0;
    for (size_t i = blockIdx.x * (size_t)256 + threadIdx.x; i < n; i += (size_t)NB_DOT * 256)
        acc += a[i] * b[i];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int h = 128; h > 0; h >>= 1) {
        if ((int)threadIdx.x < h)
            sh[threadIdx.x] += sh[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        part[blockIdx.x] = sh[0];
}

/* ---- steps ---- */

static int dot(lmc_cuda_svd *s, const double *a, const double *b, size_t n, double *res,
               lmc_error *err)
{
    lmc_cu *cu = s->cu;
    double *part = (double *)need(s, B_PART, NB_DOT * 8, err);
    if (!part)
        return -1;
    k_dot<<<NB_DOT, 256, 0, cu->st>>>(a, b, n, part);
    LAUNCH_OK("svd: dot product");
    std::vector<double> h(NB_DOT);
    CUDA_OK(cudaMemcpyAsync(h.data(), part, NB_DOT * 8, cudaMemcpyDeviceToHost, cu->st), "svd");
    CUDA_OK(cudaStreamSynchronize(cu->st), "svd: dot product");
    double sum = 0;
    for (int i = 0; i < NB_DOT; i++)
        sum += h[i];
    *res = sum;
    return 0;
}

/* The Hessian on the device: the site's, or xtx uploaded. */
static int hessian(lmc_cuda_svd *s, const double *xtx, int site, int64_t cols, const double **H,
                   lmc_error *err)
{
    if (xtx) {
        size_t b = (size_t)cols * cols * 8;
        void *d = need(s, B_H, b, err);
        if (!d)
            return -1;
        CUDA_OK(cudaMemcpyAsync(d, xtx, b, cudaMemcpyHostToDevice, s->cu->st), "svd: x x^T");
        *H = (const double *)d;
        return 0;
    }
    int64_t dim, ntok;
    if (lmc_cu_site_hessian(s->cu, site, H, &dim, &ntok, err) < 0)
        return -1;
    if (dim != cols)
        return lmc_fail(err, "svd: %lld columns, the statistics have %lld", (long long)cols,
                        (long long)dim);
    return 0;
}

/* whiten_chol of svd.c: U^T U = H + eps mean(diag H) I, eps = 0, 1e-6,
 * 1e-5, ... while not positive definite; U in L's upper triangle. */
static int whiten_chol(lmc_cuda_svd *s, const double *H, int64_t n, double *L, double *damp,
                       lmc_error *err)
{
    lmc_cu *cu = s->cu;
    double *dg = (double *)need(s, B_DIAG, (size_t)n * 8, err);
    int *info = (int *)need(s, B_INFO, 4, err);
    if (!dg || !info)
        return -1;
    k_diag<<<grid_for((size_t)n), 256, 0, cu->st>>>(H, n, dg);
    LAUNCH_OK("svd: diagonal");
    std::vector<double> diag((size_t)n);
    CUDA_OK(cudaMemcpyAsync(diag.data(), dg, (size_t)n * 8, cudaMemcpyDeviceToHost, cu->st),
            "svd");
    CUDA_OK(cudaStreamSynchronize(cu->st), "svd: diagonal");
    double md = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(diag[i]))
            return lmc_fail(err, "whitening: calibration statistic x x^T is not finite");
        md += diag[i];
    }
    md /= (double)n;
    if (!(md > 0))
        return lmc_fail(err, "whitening: the calibration inputs of this linear are all zero");
    size_t wd = 0, wh = 0;
    SOLVER_OK(cusolverDnXpotrf_bufferSize(cu->dn, cu->dn_params, CUBLAS_FILL_MODE_UPPER, n,
                                          CUDA_R_64F, L, n, CUDA_R_64F, &wd, &wh),
              "potrf workspace");
    std::vector<char> hwork(wh ? wh : 1);
    void *work = need(s, B_WORK, wd ? wd : 16, err);
    if (!work)
        return -1;
    double eps = 0;
    for (int tries = 0; tries < 10; tries++) {
        CUDA_OK(cudaMemcpyAsync(L, H, (size_t)n * n * 8, cudaMemcpyDeviceToDevice, cu->st),
                "svd");
        if (eps > 0) {
            k_add_diag<<<grid_for((size_t)n), 256, 0, cu->st>>>(L, n, eps * md);
            LAUNCH_OK("svd: damping");
        }
        SOLVER_OK(cusolverDnXpotrf(cu->dn, cu->dn_params, CUBLAS_FILL_MODE_UPPER, n, CUDA_R_64F,
                                   L, n, CUDA_R_64F, work, wd, hwork.data(), wh, info),
                  "potrf");
        int hi = 0;
        CUDA_OK(cudaMemcpyAsync(&hi, info, 4, cudaMemcpyDeviceToHost, cu->st), "svd");
        CUDA_OK(cudaStreamSynchronize(cu->st), "svd: Cholesky");
        if (hi == 0) {
            *damp = eps;
            return 0;
        }
        if (hi < 0)
            return lmc_fail(err, "whitening: potrf argument %d invalid", -hi);
        eps = eps > 0 ? eps * 10 : 1e-6;
    }
    return lmc_fail(err, "whitening: x x^T not positive definite even with damping %g x mean "
                    "diagonal", eps / 10);
}

/* The matrix to decompose, column-major [m][n] with m >= n (see the top),
 * in X or X2; *spare: the other one. */
static int build(lmc_cu *cu, const float *wd, int64_t rows, int64_t cols, int method,
                 const double *sd, const double *U, double *X, double *X2, double **mat,
                 double **spare, lmc_error *err)
{
    cublasHandle_t hb = lmc_gemm_handle(cu->gemm);
    const double one = 1, zero = 0;
    size_t nw = (size_t)rows * cols;
    k_load<<<grid_for(nw), 256, 0, cu->st>>>(wd, nw, cols, method == M_ASVD ? sd : NULL, X);
    LAUNCH_OK("svd: weights");
    double *cur = X, *oth = X2;
    if (method == M_WHITEN) {
        BLAS_OK(cublasDtrmm(hb, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                            CUBLAS_DIAG_NON_UNIT, (int)cols, (int)rows, &one, U, (int)cols, cur,
                            (int)cols, oth, (int)cols),
                "svd: W L");
        std::swap(cur, oth);
    }
    if (cols < rows) { /* M itself, column-major [rows][cols] */
        BLAS_OK(cublasDgeam(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)cols, &one, cur,
                            (int)cols, &zero, oth, (int)rows, oth, (int)rows),
                "svd: transpose");
        std::swap(cur, oth);
    }
    *mat = cur;
    *spare = oth;
    return 0;
}

/* The SVD of mat [m][n] (m >= n = k): singular values into Sv (and sv on
 * the host), left vectors into Ul [m][k], right into Vr [n][k]. Xgesvdp,
 * or Xgesvd where it does not serve; mat is rebuilt for the second try. */
static int decompose(lmc_cuda_svd *s, int64_t m, int64_t n, double *mat, double *spare,
                     double *Sv, double *Ul, double *Vr, std::vector<double> &sv, int *qr,
                     const std::function<int(double **, double **)> &rebuild, lmc_error *err)
{
    lmc_cu *cu = s->cu;
    cudaStream_t st = cu->st;
    const int64_t k = n;
    int *info = (int *)need(s, B_INFO, 4, err);
    if (!info)
        return -1;
    size_t wd = 0, wh = 0;
    SOLVER_OK(cusolverDnXgesvdp_bufferSize(cu->dn, cu->dn_params, CUSOLVER_EIG_MODE_VECTOR, 1, m,
                                           n, CUDA_R_64F, mat, m, CUDA_R_64F, Sv, CUDA_R_64F, Ul,
                                           m, CUDA_R_64F, Vr, n, CUDA_R_64F, &wd, &wh),
              "gesvdp workspace");
    std::vector<char> hwork(wh ? wh : 1);
    void *work = need(s, B_WORK, wd ? wd : 16, err);
    if (!work)
        return -1;
    double err_sigma = 0;
    SOLVER_OK(cusolverDnXgesvdp(cu->dn, cu->dn_params, CUSOLVER_EIG_MODE_VECTOR, 1, m, n,
                                CUDA_R_64F, mat, m, CUDA_R_64F, Sv, CUDA_R_64F, Ul, m,
                                CUDA_R_64F, Vr, n, CUDA_R_64F, work, wd, hwork.data(), wh, info,
                                &err_sigma),
              "gesvdp");
    int hi = 0;
    sv.resize((size_t)k);
    CUDA_OK(cudaMemcpyAsync(&hi, info, 4, cudaMemcpyDeviceToHost, st), "svd");
    CUDA_OK(cudaMemcpyAsync(sv.data(), Sv, (size_t)k * 8, cudaMemcpyDeviceToHost, st), "svd");
    CUDA_OK(cudaStreamSynchronize(st), "svd: gesvdp");
    /* the polar decomposition perturbs a (nearly) singular matrix to
     * converge: then the QR-iteration SVD, which does not
     * (LMC_CUDA_SVD_QR=1 always takes it: the tests check both) */
    const char *fq = getenv("LMC_CUDA_SVD_QR");
    int force_qr = fq && *fq && strcmp(fq, "0");
    *qr = force_qr || hi != 0 || !isfinite(err_sigma) || !(err_sigma <= 1e-12 * sv[0]) ||
          !(sv[0] >= 0);
    if (!*qr)
        return 0;
    if (rebuild(&mat, &spare) < 0)
        return -1;
    /* VT [k][n] into the spare buffer, then Vr = VT^T */
    SOLVER_OK(cusolverDnXgesvd_bufferSize(cu->dn, cu->dn_params, 'S', 'S', m, n, CUDA_R_64F, mat,
                                          m, CUDA_R_64F, Sv, CUDA_R_64F, Ul, m, CUDA_R_64F, spare,
                                          k, CUDA_R_64F, &wd, &wh),
              "gesvd workspace");
    hwork.assign(wh ? wh : 1, 0);
    if (!(work = need(s, B_WORK, wd ? wd : 16, err)))
        return -1;
    SOLVER_OK(cusolverDnXgesvd(cu->dn, cu->dn_params, 'S', 'S', m, n, CUDA_R_64F, mat, m,
                               CUDA_R_64F, Sv, CUDA_R_64F, Ul, m, CUDA_R_64F, spare, k,
                               CUDA_R_64F, work, wd, hwork.data(), wh, info),
              "gesvd");
    CUDA_OK(cudaMemcpyAsync(&hi, info, 4, cudaMemcpyDeviceToHost, st), "svd");
    CUDA_OK(cudaMemcpyAsync(sv.data(), Sv, (size_t)k * 8, cudaMemcpyDeviceToHost, st), "svd");
    CUDA_OK(cudaStreamSynchronize(st), "svd: gesvd");
    if (hi != 0)
        return lmc_fail(err, "SVD of a [%lld, %lld] matrix failed (cuSOLVER info %d)",
                        (long long)m, (long long)n, hi);
    const double one = 1, zero = 0;
    BLAS_OK(cublasDgeam(lmc_gemm_handle(cu->gemm), CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)k, &one,
                        spare, (int)k, &zero, Vr, (int)n, Vr, (int)n),
            "svd: V");
    return 0;
}

extern "C" int lmc_cuda_svd_factor(lmc_cuda_svd *s, const float *w, int64_t rows, int64_t cols,
                                   int rank, int method, const double *sc, const double *xtx,
                                   int site, float *A, float *B, lmc_cuda_svd_info *info,
                                   lmc_error *err)
{
    lmc_cu *cu = s->cu;
    const int64_t k = rows < cols ? rows : cols;
    const int64_t m = rows < cols ? cols : rows, n = k; /* the decomposed matrix, m >= n */
    if (rank < 1 || rank > k)
        return lmc_fail(err, "rank %d outside [1, %lld]", rank, (long long)k);
    if (method == M_ASVD && !sc)
        return lmc_fail(err, "asvd needs calibration statistics");
    if (rows > INT32_MAX || cols > INT32_MAX)
        return lmc_fail(err, "svd: a [%lld, %lld] matrix is too large for the GPU path",
                        (long long)rows, (long long)cols);
    memset(info, 0, sizeof *info);
    if (method == M_ASVD)
        for (int64_t j = 0; j < cols; j++)
            if (!(sc[j] > 0) || !isfinite(sc[j]))
                return lmc_fail(err, "asvd: channel scale %lld is %g (positive expected)",
                                (long long)j, sc[j]);
    if (s->prof) {
        CUDA_OK(cudaStreamSynchronize(cu->st), "svd");
        s->t0 = lmc_now();
    }
    cudaStream_t st = cu->st;
    cublasHandle_t hb = lmc_gemm_handle(cu->gemm);
    const size_t nw = (size_t)rows * cols;
    float *wd = (float *)need(s, B_W, nw * 4, err);
    double *X = (double *)need(s, B_X, nw * 8, err), *X2 = (double *)need(s, B_X2, nw * 8, err);
    double *Sv = (double *)need(s, B_SV, (size_t)k * 8, err);
    double *U = (double *)need(s, B_U, (size_t)rows * k * 8, err);
    double *V = (double *)need(s, B_V, (size_t)cols * k * 8, err);
    double *sd = method == M_ASVD ? (double *)need(s, B_SC, (size_t)cols * 8, err) : NULL;
    double *L = method == M_WHITEN ? (double *)need(s, B_L, (size_t)cols * cols * 8, err) : NULL;
    if (!wd || !X || !X2 || !Sv || !U || !V || (method == M_ASVD && !sd) ||
        (method == M_WHITEN && !L))
        return -1;
    CUDA_OK(cudaMemcpyAsync(wd, w, nw * 4, cudaMemcpyHostToDevice, st), "svd: weights");
    if (sd)
        CUDA_OK(cudaMemcpyAsync(sd, sc, (size_t)cols * 8, cudaMemcpyHostToDevice, st),
                "svd: scales");
    const double *H = NULL;
    if (method == M_WHITEN && hessian(s, xtx, site, cols, &H, err) < 0)
        return -1;
    if (mark_phase(s, P_UP, err) < 0)
        return -1;
    if (method == M_WHITEN && (whiten_chol(s, H, cols, L, &info->damp, err) < 0 ||
                               mark_phase(s, P_CHOL, err) < 0))
        return -1;
    /* the decomposed matrix's left singular vectors [m][k] go to Ul, its
     * right ones [n][k] to Vr, so that M's are U [rows][k] and V [cols][k]
     * in either case (cols >= rows: the matrix is M^T) */
    double *Ul = cols >= rows ? V : U, *Vr = cols >= rows ? U : V;
    auto rebuild = [&](double **mat, double **spare) {
        return build(cu, wd, rows, cols, method, sd, L, X, X2, mat, spare, err);
    };
    double *mat, *spare;
    std::vector<double> sv;
    if (rebuild(&mat, &spare) < 0 || mark_phase(s, P_BUILD, err) < 0 ||
        decompose(s, m, n, mat, spare, Sv, Ul, Vr, sv, &info->qr, rebuild, err) < 0 ||
        mark_phase(s, P_SVD, err) < 0)
        return -1;
    s->n_svd++;
    s->n_qr += info->qr;
    info->energy = lmc_svd_energy(sv.data(), k, rank);
    std::vector<double> q((size_t)rank);
    for (int i = 0; i < rank; i++)
        q[i] = sqrt(sv[i]);
    double *qd = (double *)need(s, B_Q, (size_t)rank * 8, err);
    double *dd = (double *)need(s, B_D, (size_t)rank * 8, err);
    float *Ad = (float *)need(s, B_A, (size_t)rows * rank * 4, err);
    float *Bd = (float *)need(s, B_B, (size_t)rank * cols * 4, err);
    unsigned long long *badd = (unsigned long long *)need(s, B_BAD, 8, err);
    if (!qd || !dd || !Ad || !Bd || !badd)
        return -1;
    CUDA_OK(cudaMemcpyAsync(qd, q.data(), (size_t)rank * 8, cudaMemcpyHostToDevice, st), "svd");
    size_t nsc = (size_t)(rows + cols) * rank;
    k_scale<<<grid_for(nsc), 256, 0, st>>>(U, rows, V, cols, rank, qd, sd);
    LAUNCH_OK("svd: factors");
    if (method == M_WHITEN) { /* B <- B L^-1, i.e. V <- U^-1 V */
        const double one = 1;
        BLAS_OK(cublasDtrsm(hb, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                            CUBLAS_DIAG_NON_UNIT, (int)cols, rank, &one, L, (int)cols, V,
                            (int)cols),
                "svd: B L^-1");
    }
    k_balance<<<rank, 256, 0, st>>>(U, rows, V, cols, method == M_PLAIN, dd);
    LAUNCH_OK("svd: balance");
    unsigned long long none = ~0ull, bad = 0;
    CUDA_OK(cudaMemcpyAsync(badd, &none, 8, cudaMemcpyHostToDevice, st), "svd");
    k_out<<<grid_for(nsc), 256, 0, st>>>(U, rows, V, cols, rank, dd, Ad, Bd, badd);
    LAUNCH_OK("svd: output");
    CUDA_OK(cudaMemcpyAsync(A, Ad, (size_t)rows * rank * 4, cudaMemcpyDeviceToHost, st), "svd");
    CUDA_OK(cudaMemcpyAsync(B, Bd, (size_t)rank * cols * 4, cudaMemcpyDeviceToHost, st), "svd");
    CUDA_OK(cudaMemcpyAsync(&bad, badd, 8, cudaMemcpyDeviceToHost, st), "svd");
    CUDA_OK(cudaStreamSynchronize(st), "svd: factors");
    if (mark_phase(s, P_POST, err) < 0)
        return -1;
    if (bad != none)
        return lmc_fail(err, "factorization produced a non-finite value");
    return 0;
}

extern "C" int lmc_cuda_svd_stored_error(lmc_cuda_svd *s, int f16, int64_t rows, int64_t cols,
                                         int rank, int whiten, const double *xtx, int site,
                                         double *rel, double *rel_out, lmc_error *err)
{
    lmc_cu *cu = s->cu;
    *rel = 0;
    *rel_out = -1;
    const size_t nw = (size_t)rows * cols, na = (size_t)rows * rank, nb = (size_t)rank * cols;
    /* the last factorization's buffers */
    float *wd = (float *)s->b[B_W].p, *Ad = (float *)s->b[B_A].p, *Bd = (float *)s->b[B_B].p;
    if (!wd || !Ad || !Bd || s->cap[B_W] < nw * 4 || s->cap[B_A] < na * 4 ||
        s->cap[B_B] < nb * 4)
        return lmc_fail(err, "svd: no factorization of [%lld, %lld] to check", (long long)rows,
                        (long long)cols);
    if (s->prof) {
        CUDA_OK(cudaStreamSynchronize(cu->st), "svd");
        s->t0 = lmc_now();
    }
    cudaStream_t st = cu->st;
    cublasHandle_t hb = lmc_gemm_handle(cu->gemm);
    const double *H = NULL;
    if (whiten && hessian(s, xtx, site, cols, &H, err) < 0)
        return -1;
    float *P = (float *)need(s, B_W2, nw * 4, err);
    double *E = (double *)need(s, B_X, nw * 8, err), *T = (double *)need(s, B_X2, nw * 8, err);
    if (!P || !E || !T)
        return -1;
    if (f16) { /* what the container holds */
        k_round_f16<<<grid_for(na + nb), 256, 0, st>>>(Ad, na, Bd, nb);
        LAUNCH_OK("svd: fp16 factors");
    }
    /* P = A B row-major: P^T = B^T A^T column-major */
    const float onef = 1, zerof = 0;
    BLAS_OK(cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)cols, (int)rows, rank, &onef, Bd,
                         CUDA_R_32F, (int)cols, Ad, CUDA_R_32F, rank, &zerof, P, CUDA_R_32F,
                         (int)cols, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
            "svd: A B");
    const double one = 1, zero = 0;
    double num = 0, den = 0, num_o = 0, den_o = 0;
    /* the error over the calibration inputs: E H in row-major terms is
     * H E^T column-major, H [cols][cols] . E^T */
    k_diff<<<grid_for(nw), 256, 0, st>>>(wd, P, nw, E);
    LAUNCH_OK("svd: error");
    if (dot(s, E, E, nw, &num, err) < 0)
        return -1;
    if (whiten) {
        BLAS_OK(cublasDsymm(hb, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, (int)cols, (int)rows,
                            &one, H, (int)cols, E, (int)cols, &zero, T, (int)cols),
                "svd: E H");
        if (dot(s, T, E, nw, &num_o, err) < 0)
            return -1;
    }
    k_diff<<<grid_for(nw), 256, 0, st>>>(wd, NULL, nw, E);
    LAUNCH_OK("svd: error");
    if (dot(s, E, E, nw, &den, err) < 0)
        return -1;
    if (whiten) {
        BLAS_OK(cublasDsymm(hb, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, (int)cols, (int)rows,
                            &one, H, (int)cols, E, (int)cols, &zero, T, (int)cols),
                "svd: W H");
        if (dot(s, T, E, nw, &den_o, err) < 0)
            return -1;
    }
    if (mark_phase(s, P_ERR, err) < 0)
        return -1;
    *rel = den > 0 ? sqrt(num / den) : 0;
    if (whiten && den_o > 0 && num_o >= 0)
        *rel_out = sqrt(num_o / den_o);
    return 0;
}
