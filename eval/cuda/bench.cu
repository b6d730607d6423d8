/* --bench-gemm --device cuda: cuBLAS on the forward's own products with
 * the output types of the precision and residual mode, and the attention
 * kernel alone (scripts/bench-cuda). */
#include "attention.cuh"
#include "dbuf.cuh"
#include "gemm.cuh"
#include "model.cuh"

/* Y[M][N] (=|+=) X[M][K] . W[N][K]^T, row-major, fp32 accumulation. */
static int gemm(lmc_gemm *g, const void *X, const void *W, void *Y, int M, int N, int K,
                cudaDataType tin, cudaDataType tout, float beta, lmc_error *err)
{
    return lmc_gemm_run(g, X, W, Y, M, N, K, tin, tout, beta, err);
}


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

