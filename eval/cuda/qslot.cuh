/* Block slots whose weights stay compressed on the device (qslot.cu):
 * W8A8 and LLM.int8() run integer GEMMs on int8 codes with the activation
 * quantization of their CPU kernels (core/enc_w8a8.c, core/enc_int8.c);
 * grouped integer weights (qgroup) keep their packed blob and are expanded
 * into one shared scratch matrix just before their GEMM. Internal to
 * eval/cuda/. */
#ifndef LMC_CUDA_QSLOT_CUH
#define LMC_CUDA_QSLOT_CUH

#include "common.cuh"

/* One linear of a quantized slot: output rows [row0, row0 + rows). */
struct dqpart {
    int row0, rows;
    /* int8 kinds: parts with equal activation quantization (same smoothing
     * or outlier columns) form a group led by its first part, quantized and
     * multiplied once */
    int lead, grows;  /* lead: index of the group's first part; grows: rows of the group (lead) */
    float *smooth;    /* W8A8 [K] or NULL */
    uint8_t *is_out;  /* LLM.int8() [K] outlier mask */
    int *oidx;        /* LLM.int8() [nout] */
    int nout;
    void *ow;         /* LLM.int8() outlier weights, compute type [rows][nout] */
    /* packed qgroup */
    uint8_t *blob;
    int bits, group, sym, has_gidx, ngroups;
    size_t crb, zrb, off_scales, off_zeros, off_gidx;
};

struct dquant {
    int kind; /* LMC_CU_Q_*; 0: not a quantized slot */
    int nparts, N, K, kp;
    int8_t *codes; /* int8 kinds: [N][kp], zero columns from K */
    float *sw;     /* int8 kinds: [N] per-row weight scales */
    dqpart p[3];
};

struct dblock;
/* Y (=|+= with beta 1) X . W^T for the quantized slot q (N outputs, K
 * inputs, n rows of X in the compute type, Y in tout; X NULL: after
 * launch_norm_q, see qslot_norm_quant). */
int qslot_gemm(lmc_cu *cu, const dquant &q, const void *X, void *Y, int n, int N, int K,
               cudaDataType tout, float beta, lmc_error *err);
/* The activation of the gate|up (fc1) slot fused into a W8A8 slot's
 * epilogue: a[n][F] = act(g + bg) * (u + bu) as launch_act computes it from
 * the slot's outputs, which are never stored. */
struct qslot_act {
    const float *bias; /* the slot's bias [N] or NULL */
    void *a;           /* [n][F] in the compute type */
    int F, gated, act;
};
/* 1: q is a W8A8 slot of one activation quantization (gate and up equally
 * smoothed) that qslot_gemm_act runs (LMC_CUDA_I8_UNFUSED=1: never). */
int qslot_fuses_act(const dquant &q, int F);
/* 1: the norm before the W8A8 slot q can write its n rows' codes and
 * scales (launch_norm_q) where qslot_gemm with X NULL reads them: q has one
 * activation quantization and n rows make one product (smooth, codes, sx,
 * kp: the arguments for launch_norm_q). */
int qslot_norm_quant(const lmc_cu *cu, const dquant &q, int n, const float **smooth,
                     int8_t **codes, float **sx, int *kp);
int qslot_gemm_act(lmc_cu *cu, const dquant &q, const void *X, int n, int K,
                   const qslot_act &af, lmc_error *err);
/* Frees q's device memory. */
void qslot_free(lmc_cu *cu, dquant &q);

#endif
