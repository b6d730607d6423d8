/* The CUDA evaluator's device model: allocation, uploads of dense matrices,
 * factor pairs and vectors (converted on the device, non-finite values
 * reported), RoPE tables, the device query, set-up and release. */
#include "model.cuh"

extern "C" { /* C */
#include "../../core/clock.h"
#include "../../core/log.h"
}

void mark(lmc_cu *cu, int stage)
{
    if (!cu->prof)
        return;
    size_t k = cu->prof_stage.size();
    if (k >= cu->prof_ev.size()) {
        cudaEvent_t e;
        if (cudaEventCreate(&e) != cudaSuccess)
            return;
        cu->prof_ev.push_back(e);
    }
    cudaEventRecord(cu->prof_ev[k], cu->st);
    cu->prof_stage.push_back(stage);
}

void prof_collect(lmc_cu *cu)
{
    for (size_t k = 1; k < cu->prof_stage.size(); k++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, cu->prof_ev[k - 1], cu->prof_ev[k]) == cudaSuccess)
            cu->prof_ms[cu->prof_stage[k]] += ms;
    }
    cu->prof_stage.clear();
}

int dalloc(lmc_cu *cu, void **p, size_t bytes, const char *what, lmc_error *err)
{
    *p = NULL;
    if (bytes == 0)
        bytes = 16;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return lmc_fail(err,
                        "CUDA: out of device memory allocating %.1f MB for %s (%.1f MB free of "
                        "%.1f MB)",
                        bytes / 1e6, what, fr / 1e6, tot / 1e6);
    }
    cu->allocs.push_back(std::make_pair(*p, bytes));
    cu->bytes += bytes;
    cu->peak = std::max(cu->peak, cu->bytes);
    return 0;
}

int lmc_cu_dn_handle(lmc_cu *cu, lmc_error *err)
{
    if (cu->dn)
        return 0;
    SOLVER_OK(cusolverDnCreate(&cu->dn), "cusolverDnCreate");
    SOLVER_OK(cusolverDnSetStream(cu->dn, cu->st), "cusolverDnSetStream");
    SOLVER_OK(cusolverDnCreateParams(&cu->dn_params), "cusolverDnCreateParams");
    return 0;
}

void dfree(lmc_cu *cu, void *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < cu->allocs.size(); i++)
        if (cu->allocs[i].first == p) {
            cu->bytes -= cu->allocs[i].second;
            cu->allocs.erase(cu->allocs.begin() + (long)i);
            cudaFree(p);
            return;
        }
}


extern "C" size_t lmc_cu_vec_len(const lmc_cu_dims *d, int which)
{
    switch (which) {
    case LMC_CU_POS: return (size_t)d->pos_rows * d->hidden;
    case LMC_CU_QKV_B: return (size_t)qdim(d) + 2 * (size_t)kvdim(d);
    case LMC_CU_GU_B: return (size_t)d->ffn * (d->gated ? 2 : 1);
    default: return (size_t)d->hidden; /* norms, o and down biases */
    }
}

static size_t mat_elems(const lmc_cu_dims *d, int which)
{
    size_t H = d->hidden, F = d->ffn;
    switch (which) {
    case LMC_CU_EMBED:
    case LMC_CU_HEAD: return (size_t)d->vocab * H;
    case LMC_CU_QKV: return ((size_t)qdim(d) + 2 * (size_t)kvdim(d)) * H;
    case LMC_CU_O: return H * (size_t)qdim(d);
    case LMC_CU_GU: return F * (d->gated ? 2 : 1) * H;
    default: return H * F;
    }
}

static void **mat_slot(lmc_cu *cu, int which, int layer)
{
    switch (which) {
    case LMC_CU_EMBED: return &cu->embed;
    case LMC_CU_HEAD: return &cu->head;
    case LMC_CU_QKV: return &cu->blk[layer].wqkv;
    case LMC_CU_O: return &cu->blk[layer].wo;
    case LMC_CU_GU: return &cu->blk[layer].wgu;
    default: return &cu->blk[layer].wdown;
    }
}

static int is_layer_vec(int which)
{
    return which >= LMC_CU_ATTN_NORM_W && which <= LMC_CU_DOWN_B;
}

int staging_reserve(lmc_cu *cu, size_t bytes, lmc_error *err)
{
    if (bytes <= cu->staging_bytes)
        return 0;
    if (cu->staging)
        cudaFree(cu->staging);
    cu->bytes -= cu->staging_bytes;
    cu->staging = NULL;
    cu->staging_bytes = 0;
    CUDA_OK(cudaMalloc(&cu->staging, bytes), "staging buffer for weight upload");
    cu->staging_bytes = bytes;
    cu->bytes += bytes;
    cu->peak = std::max(cu->peak, cu->bytes);
    return 0;
}

template <typename T>
static void convert(const void *s, int src_type, T *d, size_t n, unsigned long long *bad,
                    cudaStream_t st)
{
    int g = grid_for(n);
    if (src_type == LMC_CU_SRC_F32)
        k_from_f32<T><<<g, 256, 0, st>>>((const float *)s, d, n, bad);
    else
        k_from_u16<T><<<g, 256, 0, st>>>((const uint16_t *)s, d, n, src_type == LMC_CU_SRC_BF16,
                                         bad);
}

/* n host values of src_type into device dst (weight type) at element off;
 * *bad as lmc_cu_upload. */
int upload_to(lmc_cu *cu, void *dst, size_t off, const void *src, int src_type, size_t n,
                     int64_t *bad, lmc_error *err)
{
    *bad = -1;
    size_t sb = n * (src_type == LMC_CU_SRC_F32 ? 4 : 2);
    if (staging_reserve(cu, sb, err) < 0)
        return -1;
    CUDA_OK(cudaMemcpy(cu->staging, src, sb, cudaMemcpyHostToDevice), "weight upload");
    unsigned long long none = ~0ull;
    CUDA_OK(cudaMemcpy(cu->bad, &none, sizeof none, cudaMemcpyHostToDevice), "weight upload");
    if (cu->prec == PREC_FP32)
        convert<float>(cu->staging, src_type, (float *)dst + off, n, cu->bad, 0);
    else if (cu->prec == PREC_FP16)
        convert<f16>(cu->staging, src_type, (f16 *)dst + off, n, cu->bad, 0);
    else
        convert<bf16>(cu->staging, src_type, (bf16 *)dst + off, n, cu->bad, 0);
    LAUNCH_OK("weight conversion");
    unsigned long long b;
    CUDA_OK(cudaMemcpy(&b, cu->bad, sizeof b, cudaMemcpyDeviceToHost), "weight conversion");
    *bad = b == none ? -1 : (int64_t)b;
    return 0;
}

static bool is_block_slot(int which) { return which >= LMC_CU_QKV && which <= LMC_CU_DOWN; }

extern "C" int lmc_cu_upload(lmc_cu *cu, int which, int layer, size_t off, const void *src,
                             int src_type, size_t n, int64_t *bad, lmc_error *err)
{
    *bad = -1;
    int lay = is_block_slot(which);
    if (which < LMC_CU_EMBED || which > LMC_CU_DOWN ||
        (lay && (layer < 0 || layer >= cu->d.n_layers)))
        return lmc_fail(err, "upload: bad matrix %d / layer %d", which, layer);
    if (which == LMC_CU_HEAD && cu->d.tied)
        return lmc_fail(err, "upload: the head is tied to the embedding");
    if (off + n > mat_elems(&cu->d, which))
        return lmc_fail(err, "upload: %zu values at %zu overflow matrix %d", n, off, which);
    void **slot = mat_slot(cu, which, layer);
    if (lay && cu->blk[layer].lr[which - LMC_CU_QKV].nparts)
        return lmc_fail(err, "upload: matrix %d of block %d is held as factors", which, layer);
    if (lay && cu->blk[layer].q[which - LMC_CU_QKV].kind)
        return lmc_fail(err, "upload: matrix %d of block %d is held quantized", which, layer);
    if (!*slot) { /* block matrices: allocated on their first upload */
        char what[64];
        snprintf(what, sizeof what, "block %d weights", layer);
        if (dalloc(cu, slot, mat_elems(&cu->d, which) * cu->es, what, err) < 0)
            return -1;
    }
    return upload_to(cu, *slot, off, src, src_type, n, bad, err);
}

/* The parts of a block slot: their output sizes and the input size. */
int slot_parts(const lmc_cu_dims *d, int which, int out[3], int *in)
{
    switch (which) {
    case LMC_CU_QKV:
        out[0] = qdim(d), out[1] = out[2] = kvdim(d), *in = d->hidden;
        return 3;
    case LMC_CU_O: out[0] = d->hidden, *in = qdim(d); return 1;
    case LMC_CU_GU:
        out[0] = out[1] = d->ffn, *in = d->hidden;
        return d->gated ? 2 : 1;
    default: out[0] = d->hidden, *in = d->ffn; return 1;
    }
}

extern "C" int lmc_cu_set_lowrank(lmc_cu *cu, int which, int layer, int nparts, const int *ranks,
                                  lmc_error *err)
{
    const lmc_cu_dims *d = &cu->d;
    int out[3], in;
    if (!is_block_slot(which) || layer < 0 || layer >= d->n_layers ||
        nparts != slot_parts(d, which, out, &in))
        return lmc_fail(err, "low-rank slot: bad matrix %d / layer %d / %d parts", which, layer,
                        nparts);
    dblock &b = cu->blk[layer];
    dfactors &f = b.lr[which - LMC_CU_QKV];
    if (*mat_slot(cu, which, layer) || f.nparts || b.q[which - LMC_CU_QKV].kind)
        return lmc_fail(err, "low-rank slot: matrix %d of block %d already has weights", which,
                        layer);
    char what[64];
    snprintf(what, sizeof what, "block %d factors", layer);
    int rsum = 0;
    for (int p = 0; p < nparts; p++) {
        if (ranks[p] < 1 || ranks[p] > std::min(out[p], in))
            return lmc_fail(err, "low-rank slot: rank %d of part %d outside [1, %d]", ranks[p],
                            p, std::min(out[p], in));
        f.rank[p] = ranks[p];
        f.rpad[p] = lmc_cu_rank_pad(ranks[p]);
        f.out[p] = out[p];
        size_t na = (size_t)out[p] * f.rpad[p] * cu->es;
        if (dalloc(cu, &f.A[p], na, what, err) < 0)
            return -1;
        CUDA_OK(cudaMemset(f.A[p], 0, na), "low-rank factors");
        rsum += f.rpad[p];
    }
    size_t nb = (size_t)rsum * in * cu->es;
    if (dalloc(cu, &f.B, nb, what, err) < 0)
        return -1;
    CUDA_OK(cudaMemset(f.B, 0, nb), "low-rank factors");
    f.rsum = rsum;
    f.nparts = nparts;
    if (rsum > cu->lr_cap) { /* the intermediate x . B^T, as wide as the widest slot */
        dfree(cu, cu->lr_tmp);
        cu->lr_cap = 0;
        if (dalloc(cu, &cu->lr_tmp, (size_t)cu->max_tokens * rsum * cu->es,
                   "low-rank activations", err) < 0)
            return -1;
        cu->lr_cap = rsum;
    }
    return 0;
}

extern "C" int lmc_cu_upload_factor(lmc_cu *cu, int which, int layer, int part, int is_b,
                                    const void *src, int src_type, size_t n, int64_t *bad,
                                    lmc_error *err)
{
    *bad = -1;
    int out[3], in;
    if (!is_block_slot(which) || layer < 0 || layer >= cu->d.n_layers)
        return lmc_fail(err, "factor upload: bad matrix %d / layer %d", which, layer);
    slot_parts(&cu->d, which, out, &in);
    const dfactors &f = cu->blk[layer].lr[which - LMC_CU_QKV];
    if (part < 0 || part >= f.nparts)
        return lmc_fail(err, "factor upload: matrix %d of block %d has no low-rank part %d",
                        which, layer, part);
    size_t want = is_b ? (size_t)f.rank[part] * in : (size_t)f.out[part] * f.rpad[part];
    if (n != want)
        return lmc_fail(err, "factor upload: %zu values, factor %c of part %d takes %zu", n,
                        is_b ? 'B' : 'A', part, want);
    size_t off = 0;
    for (int p = 0; is_b && p < part; p++)
        off += (size_t)f.rpad[p] * in;
    return upload_to(cu, is_b ? f.B : f.A[part], off, src, src_type, n, bad, err);
}

extern "C" int lmc_cu_upload_vec(lmc_cu *cu, int which, int layer, size_t off, const float *src,
                                 size_t n, lmc_error *err)
{
    if (which < LMC_CU_POS || which > LMC_CU_DOWN_B ||
        (is_layer_vec(which) && (layer < 0 || layer >= cu->d.n_layers)))
        return lmc_fail(err, "upload: bad vector %d / layer %d", which, layer);
    size_t len = lmc_cu_vec_len(&cu->d, which);
    if (off + n > len)
        return lmc_fail(err, "upload: %zu values at %zu overflow vector %d", n, off, which);
    float **slot = is_layer_vec(which) ? &cu->blk[layer].v[which] : &cu->gv[which];
    if (!*slot) {
        if (dalloc(cu, (void **)slot, len * 4, "weights", err) < 0)
            return -1;
        CUDA_OK(cudaMemset(*slot, 0, len * 4), "weight upload");
    }
    CUDA_OK(cudaMemcpy(*slot + off, src, n * 4, cudaMemcpyHostToDevice), "weight upload");
    return 0;
}

extern "C" int lmc_cu_set_rope(lmc_cu *cu, const float *cs, const float *sn, int positions,
                               lmc_error *err)
{
    if (positions < cu->max_tokens)
        return lmc_fail(err, "RoPE tables for %d positions, buffers hold %d tokens", positions,
                        cu->max_tokens);
    size_t nb = (size_t)positions * (cu->d.head_dim / 2) * 4;
    if (!cu->rope_cos && (dalloc(cu, (void **)&cu->rope_cos, nb, "RoPE tables", err) < 0 ||
                          dalloc(cu, (void **)&cu->rope_sin, nb, "RoPE tables", err) < 0))
        return -1;
    CUDA_OK(cudaMemcpy(cu->rope_cos, cs, nb, cudaMemcpyHostToDevice), "RoPE tables");
    CUDA_OK(cudaMemcpy(cu->rope_sin, sn, nb, cudaMemcpyHostToDevice), "RoPE tables");
    return 0;
}

extern "C" void lmc_cu_upload_done(lmc_cu *cu)
{
    if (cu->staging)
        cudaFree(cu->staging);
    cu->bytes -= cu->staging_bytes;
    cu->staging = NULL;
    cu->staging_bytes = 0;
}

extern "C" size_t lmc_cu_bytes(const lmc_cu *cu) { return cu->bytes; }
extern "C" size_t lmc_cu_peak_bytes(const lmc_cu *cu) { return cu->peak; }

static void free_factors(lmc_cu *cu, dfactors &f)
{
    for (int p = 0; p < f.nparts; p++)
        dfree(cu, f.A[p]);
    dfree(cu, f.B);
    memset(&f, 0, sizeof f);
}

extern "C" void lmc_cu_release_blocks(lmc_cu *cu)
{
    if (cu->st)
        cudaStreamSynchronize(cu->st); /* nothing may still read them */
    for (dblock &b : cu->blk) {
        dfree(cu, b.wqkv);
        dfree(cu, b.wo);
        dfree(cu, b.wgu);
        dfree(cu, b.wdown);
        for (dfactors &f : b.lr)
            free_factors(cu, f);
        for (dquant &q : b.q)
            qslot_free(cu, q);
        for (float *&v : b.v)
            dfree(cu, v);
        memset(&b, 0, sizeof b);
    }
}

extern "C" void lmc_cu_release_embed(lmc_cu *cu)
{
    if (cu->st)
        cudaStreamSynchronize(cu->st);
    dfree(cu, cu->embed);
    cu->embed = NULL;
}

/* ---------------------------------------------------------------- availability */

extern "C" int lmc_cu_device(char *name, size_t name_len, lmc_error *err)
{
    if (name && name_len)
        name[0] = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return lmc_fail(err, "no CUDA device found (cudaGetDeviceCount: %s)",
                        e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    int dev = 0;
    CUDA_OK(cudaGetDevice(&dev), "cudaGetDevice");
    cudaDeviceProp p;
    CUDA_OK(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    if (p.major < 8)
        return lmc_fail(err, "CUDA device %d (%s) has compute capability %d.%d; lmc's kernels "
                             "need 8.0 or newer",
                        dev, p.name, p.major, p.minor);
    if (name && name_len)
        snprintf(name, name_len, "%s", p.name);
    return 0;
}


extern "C" void lmc_cu_free(lmc_cu *cu)
{
    if (!cu)
        return;
    if (cu->st)
        cudaStreamSynchronize(cu->st);
    double tot = 0;
    for (int i = 0; i < ST_COUNT; i++)
        tot += cu->prof_ms[i];
    if (cu->prof && tot > 0) {
        lmc_log(LMC_LOG_INFO, "lmc cuda profile (device time, all forwards):");
        for (int i = 0; i < ST_COUNT; i++)
            lmc_log(LMC_LOG_INFO, "  %-14s %10.2f ms %5.1f%%", stage_name[i], cu->prof_ms[i],
                    100.0 * cu->prof_ms[i] / tot);
        lmc_log(LMC_LOG_INFO, "  %-14s %10.2f ms", "total", tot);
        lmc_log(LMC_LOG_INFO, "  host time enqueueing the NLL forwards: %.2f ms", cu->host_ms);
    }
    calib_state_free(cu);
    if (cu->dn_params)
        cusolverDnDestroyParams(cu->dn_params);
    if (cu->dn)
        cusolverDnDestroy(cu->dn);
    if (cu->graph)
        cudaGraphExecDestroy(cu->graph);
    for (cudaEvent_t e : cu->prof_ev)
        cudaEventDestroy(e);
    for (auto &a : cu->allocs)
        cudaFree(a.first);
    if (cu->staging)
        cudaFree(cu->staging);
    if (cu->bad)
        cudaFree(cu->bad);
    lmc_gemm_free(cu->gemm);
    if (cu->st)
        cudaStreamDestroy(cu->st);
    delete cu;
}

/* A stream and the GEMM engine on it. */
int make_engine(lmc_gemm **g, cudaStream_t *st, int prec, lmc_error *err)
{
    *g = NULL;
    CUDA_OK(cudaStreamCreateWithFlags(st, cudaStreamNonBlocking), "creating a stream");
    return lmc_gemm_new(g, *st, prec == PREC_FP32, err);
}

static int cu_setup(lmc_cu *cu, lmc_error *err)
{
    const lmc_cu_dims *d = &cu->d;
    if (make_engine(&cu->gemm, &cu->st, cu->prec, err) < 0)
        return -1;
    CUDA_OK(cudaMalloc((void **)&cu->bad, sizeof(unsigned long long)), "allocating a flag");
    /* block matrices are allocated by their first upload, dense or as
     * factors (lmc_cu_set_lowrank) */
    cu->blk.assign((size_t)d->n_layers, dblock());
    for (int l = 0; l < d->n_layers; l++)
        memset(&cu->blk[l], 0, sizeof(dblock));
    if (dalloc(cu, &cu->embed, mat_elems(d, LMC_CU_EMBED) * cu->es, "embeddings", err) < 0)
        return -1;
    if (!d->tied && !cu->calib &&
        dalloc(cu, &cu->head, mat_elems(d, LMC_CU_HEAD) * cu->es, "LM head", err) < 0)
        return -1;
    size_t T = (size_t)cu->max_tokens, H = d->hidden, F = d->ffn, qd = qdim(d),
           kvd = kvdim(d), es = cu->es;
    /* logits in chunks of about 512 MB */
    size_t rows = ((size_t)512 << 20) / ((size_t)d->vocab * 4);
    cu->head_rows = (int)std::max((size_t)1, std::min(rows, T));
    if (dalloc(cu, &cu->x, T * H * (cu->res_half ? es : 4), "activations", err) < 0 ||
        dalloc(cu, &cu->xn, T * H * es, "activations", err) < 0 ||
        dalloc(cu, &cu->qkv, T * (qd + 2 * kvd) * es, "activations", err) < 0 ||
        dalloc(cu, &cu->ctx, T * qd * es, "activations", err) < 0 ||
        dalloc(cu, &cu->gu, T * F * (d->gated ? 2 : 1) * es, "activations", err) < 0 ||
        dalloc(cu, &cu->act, T * F * es, "activations", err) < 0 ||
        (!cu->calib &&
         dalloc(cu, &cu->logits, (size_t)cu->head_rows * d->vocab * 4, "logits", err) < 0) ||
        dalloc(cu, (void **)&cu->row_nll, T * sizeof(double), "activations", err) < 0 ||
        dalloc(cu, (void **)&cu->win_nll, T * sizeof(double), "activations", err) < 0 ||
        dalloc(cu, (void **)&cu->ids, T * 4, "activations", err) < 0 ||
        dalloc(cu, (void **)&cu->tgt, T * 4, "activations", err) < 0)
        return -1;
    return 0;
}

extern "C" int lmc_cu_new_compute(lmc_cu **out, lmc_error *err)
{
    *out = NULL;
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    lmc_cu *cu = new lmc_cu();
    cu->prec = PREC_FP32;
    cu->es = esize_of(PREC_FP32);
    if (make_engine(&cu->gemm, &cu->st, PREC_FP32, err) < 0) {
        lmc_cu_free(cu);
        return -1;
    }
    *out = cu;
    return 0;
}

extern "C" int lmc_cu_new(const lmc_cu_dims *d, int prec, int res_half, int max_tokens,
                          int calib, lmc_cu **out, lmc_error *err)
{
    *out = NULL;
    if (prec < PREC_FP32 || prec > PREC_BF16)
        return lmc_fail(err, "bad precision %d", prec);
    if (max_tokens < 1 || max_tokens > 65535) /* tokens on grid.x, rows on grid.y */
        return lmc_fail(err, "%d tokens per forward: the CUDA kernels take 1 to 65535",
                        max_tokens);
    if (lmc_cu_device(NULL, 0, err) < 0)
        return -1;
    lmc_cu *cu = new lmc_cu();
    cu->d = *d;
    cu->prec = prec;
    cu->es = esize_of(prec);
    cu->max_tokens = max_tokens;
    const char *pe = getenv("LMC_CUDA_PROFILE");
    cu->prof = pe && *pe && strcmp(pe, "0");
    const char *ge = getenv("LMC_CUDA_GRAPH");
    cu->use_graph = !cu->prof && !(ge && !strcmp(ge, "0")); /* events need eager runs */
    const char *ru = getenv("LMC_CUDA_ROPE_UNFUSED");
    cu->rope_in_attn = !(ru && *ru && strcmp(ru, "0"));
    cu->calib = calib;
    /* calibration keeps its activations (and the residual) in fp32 */
    cu->res_half = prec != PREC_FP32 && res_half && !calib;
    /* with the half residual, fp16 logits at fp16 (0.2-0.4 % faster on the
     * TinyLlama-shaped model, H100); an fp32 residual keeps fp32 logits too
     * (fp16 logits moved llama-s's ppl by 2.5e-5). bf16 logits: never, its
     * 8-bit mantissa would bias log-sum-exp by ~1e-4. */
    cu->logits_half = cu->res_half && prec == PREC_FP16;
    if (cu_setup(cu, err) < 0) {
        lmc_cu_free(cu);
        return -1;
    }
    *out = cu;
    return 0;
}

