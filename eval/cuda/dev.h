/* Internal interface between the CUDA evaluator's host side (forward_cuda.c,
 * C: model, encodings, protocol) and its device side (forward_cuda.cu:
 * device memory, kernels, cuBLAS). Plain C types only: core/encoding.h is C
 * and does not compile as C++, so the .cu never sees lmc_model.
 * Precisions use lmc_precision's values: 1 fp32, 2 fp16, 3 bf16. */
#ifndef LMC_FORWARD_CUDA_DEV_H
#define LMC_FORWARD_CUDA_DEV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* error.h is C: its functions keep C linkage in the .cu */
#endif

#include "../../core/error.h"

typedef struct lmc_cu_dims {
    int vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim, ffn;
    int gated;       /* LLaMA: down(act(gate x) * up x), gate|up fused */
    int pos_rows;    /* rows of the learned position table; 0: none */
    int pos_offset;  /* OPT: positions start at row 2 */
    int norm_is_rms; /* else LayerNorm */
    double norm_eps;
    int act;         /* lmc_act */
    int rope;        /* RoPE on q and k (tables: lmc_cu_set_rope) */
    int tied;        /* head shares the embedding matrix */
} lmc_cu_dims;

/* Matrices, stored in the weight type; [rows][cols] row-major:
 *   EMBED [vocab][H], HEAD [vocab][H] (not when tied), QKV [qd+2kvd][H]
 *   (q | k | v rows), O [H][qd], GU [2F or F][H] (gate | up rows), DOWN [H][F] */
enum { LMC_CU_EMBED, LMC_CU_HEAD, LMC_CU_QKV, LMC_CU_O, LMC_CU_GU, LMC_CU_DOWN };
/* fp32 vectors, allocated (zeros) on their first upload; absent = NULL */
enum {
    LMC_CU_POS, LMC_CU_FINAL_NORM_W, LMC_CU_FINAL_NORM_B, LMC_CU_ATTN_NORM_W, LMC_CU_ATTN_NORM_B,
    LMC_CU_FFN_NORM_W, LMC_CU_FFN_NORM_B, LMC_CU_QKV_B, LMC_CU_O_B, LMC_CU_GU_B, LMC_CU_DOWN_B
};
/* source element types of an upload */
enum { LMC_CU_SRC_F32 = 0, LMC_CU_SRC_F16 = 1, LMC_CU_SRC_BF16 = 2 };

typedef struct lmc_cu lmc_cu;

/* A usable device (compute capability >= 8.0); name may be NULL. */
int lmc_cu_device(char *name, size_t name_len, lmc_error *err);

/* Allocates the embeddings (and head) and the activations for max_tokens
 * tokens; block matrices are allocated by their first upload. res_half:
 * the residual stream in the compute type (prec fp16/bf16 only). calib: for
 * calibration (no head, no logits, an fp32 residual, lmc_cu_calib_*). */
int lmc_cu_new(const lmc_cu_dims *d, int prec, int res_half, int max_tokens, int calib,
               lmc_cu **out, lmc_error *err);
void lmc_cu_free(lmc_cu *cu);
/* A context without a model: a stream, cuBLAS (cuSOLVER on first use) and
 * the device-memory accounting, for the solvers of passes that run no
 * calibration forward (compress/cuda/svd.cu). Free with lmc_cu_free. */
int lmc_cu_new_compute(lmc_cu **out, lmc_error *err);
/* Device memory held by lmc's own buffers now, and the most held. */
size_t lmc_cu_bytes(const lmc_cu *cu);
size_t lmc_cu_peak_bytes(const lmc_cu *cu);
/* Frees every block's matrices, factors and vectors (calibration holds one
 * block at a time), or the embeddings (after the calibration embedding). */
void lmc_cu_release_blocks(lmc_cu *cu);
void lmc_cu_release_embed(lmc_cu *cu);

/* n values from host src (type src_type) into matrix `which` of `layer`
 * (ignored for EMBED/HEAD) at element offset off, converted on the device.
 * *bad: index (within src) of the first value that is not finite after
 * conversion, else -1. */
int lmc_cu_upload(lmc_cu *cu, int which, int layer, size_t off, const void *src, int src_type,
                  size_t n, int64_t *bad, lmc_error *err);
/* Slot `which` (QKV, O, GU or DOWN) of `layer` as low-rank factor pairs,
 * one per part of the slot (QKV: q, k, v; GU: gate, up, or up alone; O and
 * DOWN: one): the part's output rows are (x . B^T) . A^T with A
 * [out][ranks[p]] and B [ranks[p]][in]. Call before any upload to the slot;
 * its dense matrix is then never allocated. */
int lmc_cu_set_lowrank(lmc_cu *cu, int which, int layer, int nparts, const int *ranks,
                       lmc_error *err);
/* Ranks are padded on the device to a multiple of 8 (16-byte rows). */
static inline int lmc_cu_rank_pad(int rank) { return (rank + 7) & ~7; }
/* Part p's factor A (is_b 0), given as [out][lmc_cu_rank_pad(rank)] with
 * zeros in the padding columns, or B (is_b 1), [rank][in]; converted as
 * lmc_cu_upload converts (same *bad). */
int lmc_cu_upload_factor(lmc_cu *cu, int which, int layer, int part, int is_b, const void *src,
                         int src_type, size_t n, int64_t *bad, lmc_error *err);
/* Slots whose weights stay compressed on the device (qslot.cu). */
enum { LMC_CU_Q_W8A8 = 1, LMC_CU_Q_INT8 = 2, LMC_CU_Q_PACKED = 3 };
typedef struct lmc_cu_qpart {
    int rows; /* output rows of this linear (the slot's part) */
    /* W8A8 and LLM.int8(): codes int8 [rows][cols] (LLM.int8(): 0 in the
     * outlier columns), sw fp32 [rows] */
    const int8_t *codes;
    const float *sw;
    const float *smooth; /* W8A8: fp32 [cols] or NULL */
    const int32_t *oidx; /* LLM.int8(): [nout] ascending */
    int nout;
    const float *ow;     /* LLM.int8(): fp32 [rows][nout] */
    /* packed (a qgroup blob of nbytes, core/qgroup.h) */
    const uint8_t *blob;
    size_t nbytes;
    int bits, group, sym, has_gidx, ngroups;
    size_t code_row_bytes, zero_row_bytes, off_scales, off_zeros, off_gidx;
} lmc_cu_qpart;
/* Slot `which` of `layer` as `kind` from its nparts linears (slot order, as
 * lmc_cu_set_lowrank); call before any upload to the slot. *bad_part: the
 * part with a value that is not finite in the compute type (-1: none), at
 * element *bad of it (LLM.int8(): of ow; packed: of the dequantized
 * [rows][cols] matrix). */
int lmc_cu_set_quant(lmc_cu *cu, int which, int layer, int kind, int nparts,
                     const lmc_cu_qpart *parts, int *bad_part, int64_t *bad, lmc_error *err);
/* Bytes of the scratch matrix packed slots are expanded into. */
size_t lmc_cu_expand_bytes(const lmc_cu *cu);
/* n fp32 values into vector `which` of `layer` at offset off (the vector has
 * its full length, see lmc_cu_vec_len, zeros where nothing was uploaded). */
int lmc_cu_upload_vec(lmc_cu *cu, int which, int layer, size_t off, const float *src, size_t n,
                      lmc_error *err);
size_t lmc_cu_vec_len(const lmc_cu_dims *d, int which);
/* RoPE cos/sin tables [positions][head_dim/2] (positions >= max_tokens). */
int lmc_cu_set_rope(lmc_cu *cu, const float *cs, const float *sn, int positions, lmc_error *err);
/* Frees the upload staging buffer. */
void lmc_cu_upload_done(lmc_cu *cu);

/* nwin windows of S tokens (ids checked by the caller): nll[w] = sum over
 * rows t with targets[t] >= 0 of -log p(targets[t] | ids[..t]). */
int lmc_cu_windows_nll(lmc_cu *cu, const int32_t *ids, const int32_t *targets, int nwin, int S,
                       double *nll, lmc_error *err);
/* One window: logits[n][vocab]. */
int lmc_cu_forward_logits(lmc_cu *cu, const int32_t *ids, int n, float *logits, lmc_error *err);
/* One block in place on host x[n][H] (one window), pending biases applied. */
int lmc_cu_forward_block(lmc_cu *cu, int layer, float *x, int n, lmc_error *err);

/* The quantized slot `which` of `layer` on host x[n][K] -> y[n][N] (fp32
 * models; test_hooks.h). */
int lmc_cu_test_qslot(lmc_cu *cu, int which, int layer, const float *x, int n, float *y,
                      lmc_error *err);
/* Kernel tests on host arrays, see forward_cuda.h. */
int lmc_cu_test_norm(const float *x, const float *badd, float *xo, float *y, int n, int H,
                     const float *w, const float *b, int rms, double eps, int prec,
                     lmc_error *err);
int lmc_cu_test_qkv(const lmc_cu_dims *d, const float *cs, const float *sn, float *qkv,
                    const float *bias, int n, int S, int prec, lmc_error *err);
/* cs/sn: RoPE tables [S][head_dim/2] to rotate q and k first (NULL: none);
 * *q_in_kernel: in, rotate Q inside the attention kernel if it can; out,
 * whether it did */
int lmc_cu_test_attention(const lmc_cu_dims *d, const float *q, const float *k, const float *v,
                          const float *cs, const float *sn, int *q_in_kernel, float *ctx,
                          int nwin, int S, int kind, int prec, lmc_error *err);
int lmc_cu_test_act(int act, int gated, const float *gu, const float *bias, float *a, int n,
                    int F, int prec, lmc_error *err);
/* 1: no wgmma int8 GEMM here */
int lmc_cu_test_i8_gemm(const int8_t *X, const int8_t *W, int M, int N, int K, float *y,
                        lmc_error *err);
int lmc_cu_test_row_nll(const float *logits, int rows, int V, const int32_t *targets, int half,
                        double *nll, lmc_error *err);

typedef struct lmc_cu_gemm_rate {
    char name[16];
    int64_t m, n, k;
    int per_forward;
    double tflops;
    int is_attention; /* the attention kernel: m rows, n-token windows, k head_dim */
} lmc_cu_gemm_rate;
int lmc_cu_bench_gemm(const lmc_cu_dims *d, int tokens, int window, int prec, int res_half,
                      lmc_cu_gemm_rate *rates, int *n_rates, double *mix_tflops,
                      lmc_error *err);

/* ---- calibration (calib.cu) ---- */

/* The activations of nwin windows of S tokens, fp32 on the device. */
typedef struct lmc_cu_acts lmc_cu_acts;
/* Embeds ids[nwin][S] (checked by the caller) into new activations. */
int lmc_cu_acts_new(lmc_cu *cu, const int32_t *ids, int nwin, int S, lmc_cu_acts **out,
                    lmc_error *err);
void lmc_cu_acts_free(lmc_cu_acts *a);
/* Host copy [nwin][S][hidden], owned by a, valid until the next forward. */
int lmc_cu_acts_host(lmc_cu_acts *a, const float **x, lmc_error *err);
/* The block whose weights were just uploaded is `layer`. */
int lmc_cu_calib_set_block(lmc_cu *cu, int layer, lmc_error *err);
/* The statistics a calibration forward accumulates and downloads: per site
 * (lmc_site order: attn_in, attn_out, ffn_in, ffn_mid) host arrays in
 * double, NULL where not wanted (eval/stats.h's lmc_site_stats fields);
 * hessian_dev: keep Sum x x^T on the device (lmc_cu_site_hessian) even
 * when its host array is NULL. */
typedef struct lmc_cu_stats {
    int want_hessian, want_abs_sum, want_abs_max, want_sq_sum;
    int capture_windows; /* keep every site's inputs of the first windows on the device
                            (lmc_cu_site_capture): AWQ's search runs on them */
    double *xtx[4], *abs_sum[4], *abs_max[4], *sq_sum[4];
    int64_t ntok[4];  /* out: rows accumulated per site */
    double seconds;   /* out: device time of the accumulation */
} lmc_cu_stats;
/* Runs the block set last on every window of a. st != NULL: accumulates
 * into fresh sums (a unchanged); st == NULL: the outputs replace a's
 * activations. */
int lmc_cu_calib_forward(lmc_cu *cu, lmc_cu_acts *a, lmc_cu_stats *st, lmc_error *err);
/* Site s's inputs of the last observed forward's first capture_windows
 * windows, [rows][dim] in the compute type (valid until the next observed
 * forward). */
int lmc_cu_site_capture(lmc_cu *cu, int s, const void **x, int64_t *rows, int64_t *dim,
                        lmc_error *err);
/* Site s's Sum x x^T of the last observed forward, double [dim][dim] on the
 * device (valid until the next observed forward), its dim and rows. */
int lmc_cu_site_hessian(lmc_cu *cu, int s, const double **H, int64_t *dim, int64_t *ntok,
                        lmc_error *err);

#ifdef __cplusplus
}
#endif

#endif
