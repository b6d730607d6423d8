/* The device model of the CUDA evaluator: weights per block slot (dense or
 * low-rank factor pairs), activation buffers, the GEMM engine, graphs and
 * the stage profile. Internal to eval/cuda/. */
#ifndef LMC_CUDA_MODEL_CUH
#define LMC_CUDA_MODEL_CUH

#include <cusolverDn.h>

#include "common.cuh"
#include "gemm.cuh"
#include "qslot.cuh"

/* A block matrix slot kept as low-rank factor pairs (nparts 0: dense). Part
 * p gives output columns [o_p, o_p + out[p]) as (x . B_p^T) . A_p^T; the
 * B_p are stacked so that one GEMM computes every x . B_p^T. Ranks are
 * padded to lmc_cu_rank_pad (zero columns of A, zero rows of B) so that
 * every leading dimension and column offset is 16-byte aligned. */
struct dfactors {
    int nparts, rsum;
    int rank[3], rpad[3], out[3];
    void *A[3]; /* [out][rpad], weight type */
    void *B;    /* [rsum][in], part p from row rpad[0] + ... + rpad[p-1] */
};

struct dblock {
    void *wqkv, *wo, *wgu, *wdown; /* weight type; NULL where the slot is low-rank */
    dfactors lr[4];                /* by LMC_CU_QKV .. LMC_CU_DOWN */
    dquant q[4];                   /* by LMC_CU_QKV .. LMC_CU_DOWN; kind 0: not quantized */
    float *v[LMC_CU_DOWN_B + 1];   /* per-layer fp32 vectors by LMC_CU_* id, NULL when absent */
};

struct lmc_cu {
    lmc_cu_dims d;
    int prec;
    size_t es; /* bytes per weight / activation element */
    lmc_gemm *gemm; /* cuBLAS / cuBLASLt on st, shapes planned once */
    cudaStream_t st;
    std::vector<std::pair<void *, size_t>> allocs; /* dalloc'ed: pointer, bytes */
    size_t bytes, peak;                            /* held now (staging included), the most */
    int calib; /* opened for calibration: no head or logits, one block at a time */
    struct calib_state *cs; /* calib.cu */
    cusolverDnHandle_t dn;  /* the solvers' (compress/cuda/), created on first use */
    cusolverDnParams_t dn_params;
    /* weights */
    void *embed, *head;
    float *gv[LMC_CU_DOWN_B + 1]; /* model-level fp32 vectors (pos, final norm) */
    std::vector<dblock> blk;
    /* activations */
    int max_tokens, head_rows;
    float *rope_cos, *rope_sin;
    /* the residual stream: fp32, or the compute type with res_half (fp16 and
     * bf16 only); logits of the NLL forward in the compute type with
     * logits_half (fp32 for lmc_cu_forward_logits) */
    int res_half, logits_half;
    void *x;
    void *xn, *qkv, *ctx, *gu, *act;
    void *logits;
    double *row_nll, *win_nll;
    int32_t *ids, *tgt;
    void *lr_tmp; /* x . B^T of a low-rank slot: [max_tokens][lr_cap] */
    int lr_cap;
    /* quantized slots' scratch (qslot.cu), grown when a slot is set: int8
     * activations [q_chunk][q_kp] and their scales, the int32 products
     * [q_chunk][q_n], gathered outlier inputs [q_chunk][q_nout], the
     * expanded packed weights [q_wcap elements] */
    int8_t *q_xq;
    float *q_sx;
    int32_t *q_acc;
    void *q_xo, *q_w;
    int q_chunk, q_kp, q_n, q_nout;
    size_t q_wcap;
    /* uploads */
    void *staging;
    size_t staging_bytes;
    unsigned long long *bad;
    /* windows_nll replays the forward as a CUDA graph, captured after the
     * first eager run of a shape (LMC_CUDA_GRAPH=0: always eager) */
    int use_graph;
    cudaGraphExec_t graph;
    int graph_nwin, graph_S;
    /* LMC_CUDA_PROFILE: device time per stage, printed by lmc_cu_free */
    int rope_in_attn; /* 0: LMC_CUDA_ROPE_UNFUSED=1 (comparisons) */
    int prof;
    double host_ms; /* host time enqueueing forwards */
    std::vector<cudaEvent_t> prof_ev;
    std::vector<int> prof_stage;
    double prof_ms[16];
};

enum {
    ST_EMBED, ST_NORM, ST_QKV_GEMM, ST_QKV_POST, ST_ATTN, ST_O_GEMM, ST_GU_GEMM, ST_ACT,
    ST_DOWN_GEMM, ST_HEAD_GEMM, ST_NLL,
    /* inside the int8 slots' products (whose stage then holds the rest) */
    ST_I8_QUANT, ST_I8_GEMM, ST_I8_EPI, ST_COUNT
};
static const char *const stage_name[ST_COUNT] = {
    "embedding", "norms", "qkv GEMM", "bias+RoPE", "attention", "o GEMM", "gate|up GEMM",
    "activation", "down GEMM", "head GEMM", "NLL", "int8 quantize", "int8 GEMM",
    "int8 epilogue"};



/* Marks the end of `stage` (work enqueued since the previous mark). */
void mark(lmc_cu *cu, int stage);
/* After a synchronized forward: add the marked intervals up. */
void prof_collect(lmc_cu *cu);
/* cudaMalloc recorded in cu->allocs / cu->bytes / cu->peak; the error says
 * how much was free */
int dalloc(lmc_cu *cu, void **p, size_t bytes, const char *what, lmc_error *err);
/* Frees p (from dalloc; NULL: nothing) before lmc_cu_free. */
void dfree(lmc_cu *cu, void *p);
/* cu->dn and cu->dn_params on cu's stream, created on first use (the
 * solvers of compress/cuda/). */
int lmc_cu_dn_handle(lmc_cu *cu, lmc_error *err);
/* A device buffer of cu's accounting that frees itself. */
struct cbuf {
    lmc_cu *cu = NULL;
    void *p = NULL;
    ~cbuf() { release(); }
    void release()
    {
        if (p)
            dfree(cu, p);
        p = NULL;
    }
    int alloc(lmc_cu *c, size_t bytes, lmc_error *err, const char *what = "the solver")
    {
        release();
        cu = c;
        return dalloc(c, &p, bytes, what, err);
    }
    template <typename T> T *as() const { return (T *)p; }
};

/* Observer of a block's linear inputs on the device (calibration):
 * fn(ctx, site, x [n][dim] in the weight type) after each site is computed;
 * skip_down: the down product is not needed (outputs discarded). */
typedef struct lmc_cu_observer {
    int (*fn)(void *ctx, int site, const void *x, int n, int dim, lmc_error *err);
    void *ctx;
    int skip_down;
} lmc_cu_observer;
/* Block l on cu->x (fp32 residual), n rows in windows of S; *pending: the
 * down bias the block's output still owes (NULL: none). forward.cu. */
int run_block_obs(lmc_cu *cu, int l, int n, int S, const float **pending,
                  const lmc_cu_observer *obs, lmc_error *err);
/* The parts of a block slot (QKV: 3, GU: 2 or 1, O and DOWN: 1): their
 * output sizes and the input size. */
int slot_parts(const lmc_cu_dims *d, int which, int out[3], int *in);
/* Releases calib.cu's state (lmc_cu_free). */
void calib_state_free(lmc_cu *cu);
/* The staging buffer holds at least `bytes`. */
int staging_reserve(lmc_cu *cu, size_t bytes, lmc_error *err);
/* n host values (src_type) converted into dst (the compute type) at element
 * offset off, through the staging buffer; *bad as lmc_cu_upload. */
int upload_to(lmc_cu *cu, void *dst, size_t off, const void *src, int src_type, size_t n,
              int64_t *bad, lmc_error *err);
/* A non-blocking stream and the GEMM engine on it (pedantic at fp32). */
int make_engine(lmc_gemm **g, cudaStream_t *st, int prec, lmc_error *err);

#endif
