/* Calibration on the GPU, the twin of backend_cpu.c's calibration: the
 * activations of every window stay on the device in fp32 (the residual
 * stream's type); one block runs on them chunk by chunk (max_tokens rows at
 * a time), either observed (statistics of its linear inputs accumulate, the
 * activations stay) or advancing (the outputs replace the activations).
 *
 * Statistics, as eval/stats.c computes them on the CPU: Sum x x^T per chunk
 * in fp32 on the tensor cores (16-bit inputs are exact in fp32 products),
 * summed across chunks in double; Sum |x|, max |x|, Sum x^2 per column in
 * double. The observed run skips the down product, whose output nobody
 * reads. */
#include "kernels.cuh"
#include "model.cuh"

struct lmc_cu_acts {
    lmc_cu *cu;
    int nwin, S;
    float *x;    /* device [nwin * S][H] */
    float *host; /* lmc_cu_acts_host's copy */
};

struct calib_state {
    int layer;                  /* the block set by lmc_cu_calib_set_block, -1: none */
    int64_t dim[4], ntok[4];
    double *H[4];               /* Sum x x^T, [dim][dim] */
    float *Hc;                  /* one chunk's Sum x x^T (fp32), the widest site */
    double *asum[4], *sq[4];    /* [dim] */
    double *part;               /* per row split partial sums [2][splits][dim], widest site */
    size_t part_elems;
    unsigned *amax[4];          /* [dim], float bits of max |x| */
    void *cap[4];               /* captured inputs [cap_rows][dim], compute type */
    int64_t cap_alloc[4];       /* rows cap[s] holds room for */
    int64_t cap_rows;           /* rows captured by the last observed forward */
    std::vector<cudaEvent_t> ev; /* pairs around each accumulation */
    size_t ev_used;
};

static int64_t site_dim(const lmc_cu_dims *d, int s)
{
    return s == 1 ? (int64_t)qdim(d) : s == 3 ? (int64_t)d->ffn : (int64_t)d->hidden;
}

static int state(lmc_cu *cu, lmc_error *err)
{
    if (cu->cs)
        return 0;
    if (!cu->calib)
        return lmc_fail(err, "CUDA model not opened for calibration");
    cu->cs = new calib_state();
    memset(cu->cs->H, 0, sizeof cu->cs->H);
    cu->cs->layer = -1;
    cu->cs->Hc = NULL;
    cu->cs->part = NULL;
    cu->cs->part_elems = 0;
    for (int s = 0; s < 4; s++) {
        cu->cs->dim[s] = site_dim(&cu->d, s);
        cu->cs->ntok[s] = 0;
        cu->cs->asum[s] = cu->cs->sq[s] = NULL;
        cu->cs->amax[s] = NULL;
        cu->cs->cap[s] = NULL;
        cu->cs->cap_alloc[s] = 0;
    }
    cu->cs->cap_rows = 0;
    cu->cs->ev_used = 0;
    return 0;
}

void calib_state_free(lmc_cu *cu)
{
    if (!cu->cs)
        return;
    for (cudaEvent_t e : cu->cs->ev)
        cudaEventDestroy(e);
    delete cu->cs; /* its buffers are in cu->allocs */
    cu->cs = NULL;
}

/* ---- activations ---- */

extern "C" int lmc_cu_acts_new(lmc_cu *cu, const int32_t *ids, int nwin, int S,
                               lmc_cu_acts **out, lmc_error *err)
{
    *out = NULL;
    if (state(cu, err) < 0)
        return -1;
    if (S < 1 || S > cu->max_tokens)
        return lmc_fail(err, "windows of %d tokens: the device buffers hold %d", S,
                        cu->max_tokens);
    if (!cu->embed)
        return lmc_fail(err, "embeddings not on the device");
    const lmc_cu_dims *d = &cu->d;
    size_t H = d->hidden, rows = (size_t)nwin * S;
    lmc_cu_acts *a = new lmc_cu_acts();
    a->cu = cu;
    a->nwin = nwin;
    a->S = S;
    a->host = NULL;
    char what[96];
    snprintf(what, sizeof what, "the activations of %d calibration windows of %d tokens", nwin,
             S);
    if (dalloc(cu, (void **)&a->x, rows * H * 4, what, err) < 0) {
        delete a;
        return -1;
    }
    int per = cu->max_tokens / S;
    for (int w0 = 0; w0 < nwin; w0 += per) {
        int k = std::min(per, nwin - w0), n = k * S;
        float *xc = a->x + (size_t)w0 * S * H;
        CUDA_OK(cudaMemcpyAsync(cu->ids, ids + (size_t)w0 * S, (size_t)n * 4,
                                cudaMemcpyHostToDevice, cu->st),
                "calibration ids");
        if (cu->prec == PREC_FP32)
            launch_embed<float, float>(cu->ids, (const float *)cu->embed, cu->gv[LMC_CU_POS],
                                       d->pos_offset, S, d->hidden, xc, n, cu->st);
        else if (cu->prec == PREC_BF16)
            launch_embed<bf16, float>(cu->ids, (const bf16 *)cu->embed, cu->gv[LMC_CU_POS],
                                      d->pos_offset, S, d->hidden, xc, n, cu->st);
        else
            launch_embed<f16, float>(cu->ids, (const f16 *)cu->embed, cu->gv[LMC_CU_POS],
                                     d->pos_offset, S, d->hidden, xc, n, cu->st);
        LAUNCH_OK("embedding kernel");
        /* the ids buffer is reused by the next chunk */
        CUDA_OK(cudaStreamSynchronize(cu->st), "calibration embeddings");
    }
    *out = a;
    return 0;
}

extern "C" void lmc_cu_acts_free(lmc_cu_acts *a)
{
    if (!a)
        return;
    dfree(a->cu, a->x);
    free(a->host);
    delete a;
}

extern "C" int lmc_cu_acts_host(lmc_cu_acts *a, const float **x, lmc_error *err)
{
    size_t nb = (size_t)a->nwin * a->S * a->cu->d.hidden * 4;
    if (!a->host && !(a->host = (float *)malloc(nb)))
        return lmc_fail(err, "out of host memory for %.1f MB of calibration activations",
                        nb / 1e6);
    CUDA_OK(cudaMemcpy(a->host, a->x, nb, cudaMemcpyDeviceToHost), "calibration activations");
    *x = a->host;
    return 0;
}

extern "C" int lmc_cu_calib_set_block(lmc_cu *cu, int layer, lmc_error *err)
{
    if (state(cu, err) < 0)
        return -1;
    if (layer < 0 || layer >= cu->d.n_layers)
        return lmc_fail(err, "block %d out of range", layer);
    cu->cs->layer = layer;
    return 0;
}

/* ---- statistics ---- */

/* Per column j over the rows of split blockIdx.y: Sum |x| and Sum x^2 in
 * double into part[0 / 1][split][j], max |x| into amax. */
template <typename T>
__global__ void k_colstats(const T *x, int n, int dim, int rows_per, double *part,
                           unsigned *amax)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim)
        return;
    int r0 = blockIdx.y * rows_per, r1 = min(n, r0 + rows_per);
    double s = 0, q = 0;
    float m = 0.0f;
    for (int r = r0; r < r1; r++) {
        float v = fabsf(tof(x[(size_t)r * dim + j]));
        s += v;
        q += (double)v * v;
        m = fmaxf(m, v);
    }
    size_t splits = gridDim.y;
    part[(size_t)blockIdx.y * dim + j] = s;
    part[(splits + blockIdx.y) * dim + j] = q;
    if (amax) /* non-negative floats order as their bits: max is order-free */
        atomicMax(&amax[j], __float_as_uint(m));
}

/* The splits' partial sums added in a fixed order: the same statistics on
 * every run. */
__global__ void k_colsum(const double *part, int splits, int dim, double *asum, double *sq)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim)
        return;
    double s = 0, q = 0;
    for (int k = 0; k < splits; k++) {
        s += part[(size_t)k * dim + j];
        q += part[((size_t)splits + k) * dim + j];
    }
    if (asum)
        asum[j] += s;
    if (sq)
        sq[j] += q;
}

/* acc[i] += c[i] (double += fp32). */
__global__ void k_acc(double *acc, const float *c, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        acc[i] += (double)c[i];
}

/* H[i][j] = H[j][i] for i > j: the upper triangle is the reference, as
 * stats.c's finish mirrors it. */
__global__ void k_mirror(double *H, int d)
{
    size_t n = (size_t)d * d;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(k / d), j = (int)(k % d);
        if (i > j)
            H[k] = H[(size_t)j * d + i];
    }
}

struct obs_ctx {
    lmc_cu *cu;
    const lmc_cu_stats *want;
    int64_t row0; /* the chunk's first row among all windows' */
};

static cudaEvent_t next_event(calib_state *cs)
{
    if (cs->ev_used == cs->ev.size()) {
        cudaEvent_t e;
        if (cudaEventCreate(&e) != cudaSuccess)
            return NULL;
        cs->ev.push_back(e);
    }
    return cs->ev[cs->ev_used++];
}

template <typename T>
static int observe_t(lmc_cu *cu, const lmc_cu_stats *w, int64_t row0, int s, const T *x, int n,
                     int dim, lmc_error *err)
{
    calib_state *cs = cu->cs;
    if (row0 < cs->cap_rows) {
        int64_t k = std::min<int64_t>(n, cs->cap_rows - row0);
        CUDA_OK(cudaMemcpyAsync((T *)cs->cap[s] + (size_t)row0 * dim, x,
                                (size_t)k * dim * sizeof(T), cudaMemcpyDeviceToDevice, cu->st),
                "capturing site inputs");
    }
    cudaEvent_t e0 = next_event(cs), e1 = next_event(cs);
    if (e0)
        cudaEventRecord(e0, cu->st);
    if (w->want_hessian) {
        CUDA_OK(cudaMemsetAsync(cs->Hc, 0, (size_t)dim * dim * 4, cu->st), "statistics");
        if (lmc_gemm_xtx(cu->gemm, x, n, dim, dtype_of<T>(), cs->Hc, err) < 0)
            return -1;
        size_t nn = (size_t)dim * dim;
        k_acc<<<grid_for(nn), 256, 0, cu->st>>>(cs->H[s], cs->Hc, nn);
        LAUNCH_OK("statistics");
    }
    if (w->want_abs_sum || w->want_abs_max || w->want_sq_sum) {
        int rows_per = std::max(16, (n + 255) / 256), splits = (n + rows_per - 1) / rows_per;
        size_t need = (size_t)2 * splits * dim;
        if (need > cs->part_elems) {
            dfree(cu, cs->part);
            cs->part = NULL;
            cs->part_elems = 0;
            if (dalloc(cu, (void **)&cs->part, need * 8, "statistics", err) < 0)
                return -1;
            cs->part_elems = need;
        }
        dim3 g((dim + 255) / 256, splits);
        k_colstats<T><<<g, 256, 0, cu->st>>>(x, n, dim, rows_per, cs->part,
                                             w->want_abs_max ? cs->amax[s] : NULL);
        k_colsum<<<(dim + 255) / 256, 256, 0, cu->st>>>(cs->part, splits, dim,
                                                       w->want_abs_sum ? cs->asum[s] : NULL,
                                                       w->want_sq_sum ? cs->sq[s] : NULL);
        LAUNCH_OK("statistics");
    }
    if (e1)
        cudaEventRecord(e1, cu->st);
    cs->ntok[s] += n;
    return 0;
}

static int observe(void *ctx, int s, const void *x, int n, int dim, lmc_error *err)
{
    obs_ctx *o = (obs_ctx *)ctx;
    lmc_cu *cu = o->cu;
    if (dim != cu->cs->dim[s])
        return lmc_fail(err, "statistics: site %d has %d columns, expected %lld", s, dim,
                        (long long)cu->cs->dim[s]);
    if (cu->prec == PREC_FP32)
        return observe_t(cu, o->want, o->row0, s, (const float *)x, n, dim, err);
    if (cu->prec == PREC_BF16)
        return observe_t(cu, o->want, o->row0, s, (const bf16 *)x, n, dim, err);
    return observe_t(cu, o->want, o->row0, s, (const f16 *)x, n, dim, err);
}

/* Accumulators for what w wants, zeroed; room for the captured rows. */
static int stats_reset(lmc_cu *cu, const lmc_cu_stats *w, int64_t cap_rows, lmc_error *err)
{
    calib_state *cs = cu->cs;
    int64_t wide = 0;
    cs->cap_rows = 0;
    for (int s = 0; s < 4 && cap_rows > 0; s++)
        if (cs->cap_alloc[s] < cap_rows) {
            dfree(cu, cs->cap[s]);
            cs->cap[s] = NULL;
            cs->cap_alloc[s] = 0;
            char what[96];
            snprintf(what, sizeof what, "the inputs of %lld calibration tokens kept for the search",
                     (long long)cap_rows);
            if (dalloc(cu, &cs->cap[s], (size_t)cap_rows * cs->dim[s] * cu->es, what, err) < 0)
                return -1;
            cs->cap_alloc[s] = cap_rows;
        }
    cs->cap_rows = cap_rows;
    for (int s = 0; s < 4; s++) {
        size_t d = (size_t)cs->dim[s];
        cs->ntok[s] = 0;
        if (w->want_hessian) {
            if (!cs->H[s] && dalloc(cu, (void **)&cs->H[s], d * d * 8, "statistics", err) < 0)
                return -1;
            CUDA_OK(cudaMemsetAsync(cs->H[s], 0, d * d * 8, cu->st), "statistics");
            wide = std::max(wide, cs->dim[s]);
        }
        if (w->want_abs_sum || w->want_sq_sum || w->want_abs_max) {
            if (!cs->asum[s] && (dalloc(cu, (void **)&cs->asum[s], d * 8, "statistics", err) < 0 ||
                                 dalloc(cu, (void **)&cs->sq[s], d * 8, "statistics", err) < 0 ||
                                 dalloc(cu, (void **)&cs->amax[s], d * 4, "statistics", err) < 0))
                return -1;
            CUDA_OK(cudaMemsetAsync(cs->asum[s], 0, d * 8, cu->st), "statistics");
            CUDA_OK(cudaMemsetAsync(cs->sq[s], 0, d * 8, cu->st), "statistics");
            CUDA_OK(cudaMemsetAsync(cs->amax[s], 0, d * 4, cu->st), "statistics");
        }
    }
    if (w->want_hessian && !cs->Hc &&
        dalloc(cu, (void **)&cs->Hc, (size_t)wide * wide * 4, "statistics", err) < 0)
        return -1;
    cs->ev_used = 0;
    return 0;
}

/* After the last chunk (stream synchronized): the sums into w's host arrays. */
static int stats_download(lmc_cu *cu, lmc_cu_stats *w, lmc_error *err)
{
    calib_state *cs = cu->cs;
    float ms = 0;
    w->seconds = 0;
    for (size_t k = 0; k + 1 < cs->ev_used; k += 2)
        if (cudaEventElapsedTime(&ms, cs->ev[k], cs->ev[k + 1]) == cudaSuccess)
            w->seconds += ms * 1e-3;
    std::vector<unsigned> mx;
    for (int s = 0; s < 4; s++) {
        size_t d = (size_t)cs->dim[s];
        w->ntok[s] = cs->ntok[s];
        if (w->want_hessian) {
            k_mirror<<<grid_for(d * d), 256, 0, cu->st>>>(cs->H[s], (int)d);
            LAUNCH_OK("statistics");
            if (w->xtx[s])
                CUDA_OK(cudaMemcpyAsync(w->xtx[s], cs->H[s], d * d * 8, cudaMemcpyDeviceToHost,
                                        cu->st),
                        "statistics download");
        }
        if (w->abs_sum[s])
            CUDA_OK(cudaMemcpyAsync(w->abs_sum[s], cs->asum[s], d * 8, cudaMemcpyDeviceToHost,
                                    cu->st),
                    "statistics download");
        if (w->sq_sum[s])
            CUDA_OK(cudaMemcpyAsync(w->sq_sum[s], cs->sq[s], d * 8, cudaMemcpyDeviceToHost,
                                    cu->st),
                    "statistics download");
        if (w->abs_max[s]) {
            mx.resize(d);
            CUDA_OK(cudaMemcpyAsync(mx.data(), cs->amax[s], d * 4, cudaMemcpyDeviceToHost,
                                    cu->st),
                    "statistics download");
            CUDA_OK(cudaStreamSynchronize(cu->st), "statistics download");
            for (size_t j = 0; j < d; j++) {
                float f;
                memcpy(&f, &mx[j], 4);
                w->abs_max[s][j] = f;
            }
        }
    }
    CUDA_OK(cudaStreamSynchronize(cu->st), "statistics download");
    return 0;
}

/* x[t][j] += b[j] (the down bias the block output still owes). */
__global__ void k_add_bias(float *x, const float *b, size_t n, int H)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] += b[i % H];
}

extern "C" int lmc_cu_calib_forward(lmc_cu *cu, lmc_cu_acts *a, lmc_cu_stats *st,
                                    lmc_error *err)
{
    if (state(cu, err) < 0)
        return -1;
    calib_state *cs = cu->cs;
    if (cs->layer < 0)
        return lmc_fail(err, "no block loaded");
    if (cu->d.rope && !cu->rope_cos)
        return lmc_fail(err, "RoPE tables not set");
    int S = a->S, per = cu->max_tokens / S, H = cu->d.hidden;
    int64_t cap_rows = st ? (int64_t)std::min(std::max(st->capture_windows, 0), a->nwin) * S : 0;
    if (st && stats_reset(cu, st, cap_rows, err) < 0)
        return -1;
    obs_ctx oc = {cu, st, 0};
    lmc_cu_observer obs = {observe, &oc, 1};
    void *own_x = cu->x;
    int rc = 0;
    for (int w0 = 0; w0 < a->nwin && rc == 0; w0 += per) {
        int k = std::min(per, a->nwin - w0), n = k * S;
        float *xc = a->x + (size_t)w0 * S * H;
        const float *pending = NULL;
        oc.row0 = (int64_t)w0 * S;
        if (st) { /* observed: on a copy, the activations stay */
            cudaError_t e = cudaMemcpyAsync(cu->x, xc, (size_t)n * H * 4,
                                            cudaMemcpyDeviceToDevice, cu->st);
            rc = e == cudaSuccess ? run_block_obs(cu, cs->layer, n, S, &pending, &obs, err)
                                  : lmc_fail(err, "CUDA: activations: %s", cudaGetErrorString(e));
        } else { /* advancing: in place */
            cu->x = xc;
            rc = run_block_obs(cu, cs->layer, n, S, &pending, NULL, err);
            if (rc == 0 && pending) {
                size_t nh = (size_t)n * H;
                k_add_bias<<<grid_for(nh), 256, 0, cu->st>>>(xc, pending, nh, H);
                cudaError_t e = cudaGetLastError();
                if (e != cudaSuccess)
                    rc = lmc_fail(err, "CUDA: bias kernel: %s", cudaGetErrorString(e));
            }
            cu->x = own_x;
        }
    }
    cu->x = own_x;
    if (rc < 0)
        return -1;
    CUDA_OK(cudaStreamSynchronize(cu->st), "calibration forward");
    return st ? stats_download(cu, st, err) : 0;
}

extern "C" int lmc_cu_site_capture(lmc_cu *cu, int s, const void **x, int64_t *rows,
                                   int64_t *dim, lmc_error *err)
{
    if (!cu->cs || s < 0 || s > 3 || !cu->cs->cap[s] || cu->cs->cap_rows == 0)
        return lmc_fail(err, "no captured inputs on the device for site %d", s);
    *x = cu->cs->cap[s];
    *rows = cu->cs->cap_rows;
    *dim = cu->cs->dim[s];
    return 0;
}

extern "C" int lmc_cu_site_hessian(lmc_cu *cu, int s, const double **H, int64_t *dim,
                                   int64_t *ntok, lmc_error *err)
{
    if (!cu->cs || s < 0 || s > 3 || !cu->cs->H[s] || cu->cs->ntok[s] == 0)
        return lmc_fail(err, "no statistics on the device for site %d", s);
    *H = cu->cs->H[s];
    *dim = cu->cs->dim[s];
    *ntok = cu->cs->ntok[s];
    return 0;
}
