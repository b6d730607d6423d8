/* The CUDA forward pass, the GPU twin of forward_cpu.c: embeddings, blocks,
 * head and NLL over nwin windows of S tokens, eager or replayed as a CUDA
 * graph; one block on host rows for the tests. Layout and kernels: see
 * docs/CUDA.md. */
#include "attention.cuh"
#include "kernels.cuh"
#include "model.cuh"

extern "C" { /* C */
#include "../../core/clock.h"
}


/* Y[M][N] (=|+=) X[M][K] . W[N][K]^T, row-major, fp32 accumulation. */
static int gemm(lmc_gemm *g, const void *X, const void *W, void *Y, int M, int N, int K,
                cudaDataType tin, cudaDataType tout, float beta, lmc_error *err)
{
    return lmc_gemm_run(g, X, W, Y, M, N, K, tin, tout, beta, err);
}

template <typename T, typename R> static int run_embed(lmc_cu *cu, int n, int S, lmc_error *err)
{
    const lmc_cu_dims *d = &cu->d;
    launch_embed<T, R>(cu->ids, (const T *)cu->embed, cu->gv[LMC_CU_POS], d->pos_offset, S,
                       d->hidden, (R *)cu->x, n, cu->st);
    LAUNCH_OK("embedding kernel");
    return 0;
}

/* Y (=|+=) X . W^T for block slot `which` (N outputs, K inputs): a
 * quantized slot's products (qslot.cu), one GEMM on the dense matrix, or x . B^T for every factor pair at once into lr_tmp
 * (rounded to the weight type) and then one GEMM per part into its columns
 * of Y. */
template <typename T>
static int slot_gemm(lmc_cu *cu, const dblock &b, int which, const void *X, void *Y, int n,
                     int N, int K, cudaDataType tout, float beta, lmc_error *err)
{
    cudaDataType dt = dtype_of<T>();
    const dquant &q = b.q[which - LMC_CU_QKV];
    if (q.kind)
        return qslot_gemm(cu, q, X, Y, n, N, K, tout, beta, err);
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

/* launch_norm_q for the norm (weight and bias vectors wv, bv of b) before
 * the W8A8 slot q, where qslot_norm_quant allows it: 1 when launched. */
template <typename T, typename R>
static int norm_then_quant(lmc_cu *cu, const dquant &q, const float *badd, int n, int wv, int bv,
                           const dblock &b)
{
    const float *sm;
    int8_t *codes;
    float *sx;
    int kp;
    if (!qslot_norm_quant(cu, q, n, &sm, &codes, &sx, &kp))
        return 0;
    const lmc_cu_dims *d = &cu->d;
    launch_norm_q<T, R>((R *)cu->x, badd, n, d->hidden, b.v[wv], b.v[bv], d->norm_is_rms,
                        (float)d->norm_eps, sm, codes, sx, kp, cu->st);
    return 1;
}

/* One block on cu->x (residual type R). *pending: a bias the previous
 * linear still owes x. obs (calibration, may be NULL) sees every linear's
 * input. */
template <typename T, typename R>
static int run_block(lmc_cu *cu, int l, int n, int S, const float **pending, lmc_error *err,
                     const lmc_cu_observer *obs = NULL)
{
    const lmc_cu_dims *d = &cu->d;
    const dblock &b = cu->blk[l];
    int H = d->hidden, F = d->ffn, qd = qdim(d), kvd = kvdim(d), ld = qd + 2 * kvd;
    cudaDataType dt = dtype_of<T>();
    float eps = (float)d->norm_eps;

    /* W8A8 (no observer reads the norm's output): the norm writes the
     * slot's int8 codes, not xn */
    int qn = !obs && norm_then_quant<T, R>(cu, b.q[0], *pending, n, LMC_CU_ATTN_NORM_W,
                                           LMC_CU_ATTN_NORM_B, b);
    if (!qn)
        launch_norm<T, R>((R *)cu->x, *pending, (T *)cu->xn, n, H, b.v[LMC_CU_ATTN_NORM_W],
                          b.v[LMC_CU_ATTN_NORM_B], d->norm_is_rms, eps, cu->st);
    LAUNCH_OK("norm kernel");
    mark(cu, ST_NORM);
    *pending = NULL;
    if (obs && obs->fn(obs->ctx, 0, cu->xn, n, H, err) < 0)
        return -1;
    if (slot_gemm<T>(cu, b, LMC_CU_QKV, qn ? NULL : cu->xn, cu->qkv, n, ld, H, dt, 0.0f, err) < 0)
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
    if (obs && obs->fn(obs->ctx, 1, cu->ctx, n, qd, err) < 0)
        return -1;
    if (slot_gemm<T>(cu, b, LMC_CU_O, cu->ctx, cu->x, n, H, qd, dtype_of<R>(), 1.0f, err) < 0)
        return -1;
    mark(cu, ST_O_GEMM);
    const dquant &qgu = b.q[LMC_CU_GU - LMC_CU_QKV];
    qn = !obs && norm_then_quant<T, R>(cu, qgu, b.v[LMC_CU_O_B], n, LMC_CU_FFN_NORM_W,
                                       LMC_CU_FFN_NORM_B, b);
    if (!qn)
        launch_norm<T, R>((R *)cu->x, b.v[LMC_CU_O_B], (T *)cu->xn, n, H,
                          b.v[LMC_CU_FFN_NORM_W], b.v[LMC_CU_FFN_NORM_B], d->norm_is_rms, eps,
                          cu->st);
    LAUNCH_OK("norm kernel");
    mark(cu, ST_NORM);
    if (obs && obs->fn(obs->ctx, 2, cu->xn, n, H, err) < 0)
        return -1;
    const void *xgu = qn ? NULL : cu->xn;
    if (qslot_fuses_act(qgu, F)) { /* W8A8: no gate|up outputs in memory */
        qslot_act af = {b.v[LMC_CU_GU_B], cu->act, F, d->gated, d->act};
        if (qslot_gemm_act(cu, qgu, xgu, n, H, af, err) < 0)
            return -1;
        mark(cu, ST_ACT);
    } else {
        if (slot_gemm<T>(cu, b, LMC_CU_GU, xgu, cu->gu, n, d->gated ? 2 * F : F, H, dt, 0.0f,
                         err) < 0)
            return -1;
        mark(cu, ST_GU_GEMM);
        launch_act<T>((const T *)cu->gu, b.v[LMC_CU_GU_B], (T *)cu->act, n, F, d->gated,
                      d->act, cu->st);
        LAUNCH_OK("activation kernel");
        mark(cu, ST_ACT);
    }
    if (obs && obs->fn(obs->ctx, 3, cu->act, n, F, err) < 0)
        return -1;
    if (obs && obs->skip_down)
        return 0; /* the outputs are discarded */
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
            launch_row_nll((const T *)cu->logits, V, cu->tgt + r0, cu->row_nll + r0, nr,
                           cu->st);
        else
            launch_row_nll((const float *)cu->logits, V, cu->tgt + r0, cu->row_nll + r0, nr,
                           cu->st);
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
    launch_window_sum(cu->row_nll, S, cu->win_nll, nwin, cu->st);
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
static int run_block_f32(lmc_cu *cu, int l, int n, int S, const float **pending,
                         const lmc_cu_observer *obs, lmc_error *err)
{
    return run_block<T, float>(cu, l, n, S, pending, err, obs);
}

int run_block_obs(lmc_cu *cu, int l, int n, int S, const float **pending,
                  const lmc_cu_observer *obs, lmc_error *err)
{
    if (cu->res_half)
        return lmc_fail(err, "calibration runs an fp32 residual");
    return DISPATCH(cu->prec, run_block_f32, cu, l, n, S, pending, obs, err);
}

template <typename T>
static int run_block_any(lmc_cu *cu, int l, int n, int S, const float **pending, lmc_error *err)
{
    return cu->res_half ? run_block<T, T>(cu, l, n, S, pending, err)
                        : run_block<T, float>(cu, l, n, S, pending, err);
}


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

