/* Kernel checks on host arrays (lmc_cu_test_*, declared in test_hooks.h):
 * tests/test_cuda.c runs each against its CPU twin. */
#include "attention.cuh"
#include "dbuf.cuh"
#include "gemm_i8.cuh"
#include "kernels.cuh"

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
        launch_row_nll((const f16 *)dl.p, V, (const int32_t *)dt.p, (double *)dn.p, rows, 0);
    else
        launch_row_nll((const float *)dl.p, V, (const int32_t *)dt.p, (double *)dn.p, rows, 0);
    LAUNCH_OK("nll kernel");
    CUDA_OK(cudaMemcpy(nll, dn.p, (size_t)rows * 8, cudaMemcpyDeviceToHost), "test download");
    return 0;
}


/* The wgmma int8 GEMM alone: y = X . W^T through its epilogue with unit
 * scales, which leaves the int32 sums exact in fp32 below 2^24. */
extern "C" int lmc_cu_test_i8_gemm(const int8_t *X, const int8_t *W, int M, int N, int K, float *y,
                                   lmc_error *err)
{
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    if (!i8wg_ok())
        return 1;
    dbuf dx, dw, dy, ds;
    size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
    int mx = M > N ? M : N;
    std::vector<float> ones((size_t)mx, 1.0f);
    if (dnew(dx, nx, err) < 0 || dnew(dw, nw, err) < 0 || dnew(dy, ny * 4, err) < 0 ||
        f32_dev(ds, ones.data(), (size_t)mx, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(dx.p, X, nx, cudaMemcpyHostToDevice), "test upload");
    CUDA_OK(cudaMemcpy(dw.p, W, nw, cudaMemcpyHostToDevice), "test upload");
    i8wg_epi e = {};
    e.sw = e.sx = (const float *)ds.p;
    e.y = dy.p, e.ldy = N;
    if (i8wg_run<float>((const int8_t *)dx.p, (const int8_t *)dw.p, M, N, K, e, 0, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(y, dy.p, ny * 4, cudaMemcpyDeviceToHost), "test download");
    return 0;
}
