/* Launchers of the elementwise and row kernels (kernels.cu), instantiated
 * for weights T in {float, f16, bf16} and a residual R in {float, T}. */
#ifndef LMC_CUDA_KERNELS_CUH
#define LMC_CUDA_KERNELS_CUH

#include "common.cuh"

/* lmc_act's values (core/model.h) */
enum { ACT_SILU = 1, ACT_RELU = 2, ACT_GELU_NEW = 3, ACT_GELU = 4 };

/* The activations, shared by k_act and the int8 gate|up epilogue
 * (qslot.cu) so that both round alike. */
__device__ __forceinline__ float act_f(float x, int act)
{
    switch (act) {
    case ACT_SILU: return x / (1.0f + expf(-x));
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    case ACT_GELU_NEW:
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    default: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
}

/* Activations for 16-bit passes: fast exponential and division (their
 * error is far below the output's rounding); fp32 keeps the exact ones. */
template <typename T> __device__ __forceinline__ float act_t(float x, int act)
{
    if constexpr (sizeof(T) == 2) {
        if (act == ACT_SILU)
            return __fdividef(x, 1.0f + __expf(-x));
    }
    return act_f(x, act);
}

/* W8A8's per-token activation quantizer (core/enc_w8a8.c), shared by its
 * kernels (qslot.cu) and the norm that feeds it: the scale from the row's
 * absmax, codes rint(v / s) clamped to +-127 (NaN: 0). */
__device__ __forceinline__ float w8a8_scale(float absmax)
{
    return (absmax < 1e-5f ? 1e-5f : absmax) / 127.0f;
}
__device__ __forceinline__ int8_t w8a8_code(float v, float s)
{
    float r = rintf(v / s);
    r = r > 127.0f ? 127.0f : r;
    r = r < -127.0f ? -127.0f : r;
    return (int8_t)(r == r ? r : 0.0f);
}

/* The rescaled int32 product a in the CPU kernels' expression order, W8A8
 * (a * sw) * sx, LLM.int8() (sx * sw) * a, plus y when accumulating; every
 * operation rounded on its own (no FMA contraction, as on the CPU), so that
 * all the int8 kernels (qslot.cu, gemm_i8.cu) compute the same bits. */
__device__ __forceinline__ float i8_rescale(float a, float sw, float sx, int int8_order,
                                            float y, int accumulate)
{
    float v = int8_order ? __fmul_rn(__fmul_rn(sx, sw), a) : __fmul_rn(__fmul_rn(a, sw), sx);
    return accumulate ? __fadd_rn(y, v) : v;
}

int norm_threads(int H);
/* x[t] = E[ids[t]] (+ P[t % S + pos_off]), n rows */
template <typename T, typename R>
void launch_embed(const int32_t *ids, const T *E, const float *P, int pos_off, int S, int H, R *x,
                  int n, cudaStream_t st);
/* per row: x += badd (stored back, may be NULL), y = norm(x) as lmc_op_norm */
template <typename T, typename R>
void launch_norm(R *x, const float *badd, T *y, int n, int H, const float *w, const float *b,
                 int rms, float eps, cudaStream_t st);
/* launch_norm feeding a W8A8 slot directly: y is not written; per row the
 * codes q[t][kp] (zeros from H) and scale sx[t] that the W8A8 quantizer
 * computes from y as launch_norm would store it (divided by smooth, when
 * not NULL). Only where norm_q_ok(H). */
int norm_q_ok(int H);
template <typename T, typename R>
void launch_norm_q(R *x, const float *badd, int n, int H, const float *w, const float *b,
                   int rms, float eps, const float *smooth, int8_t *q, float *sx, int kp,
                   cudaStream_t st);
/* qkv rows [n][q | k | v]: + bias (may be NULL), RoPE when cs is not NULL;
 * k_only: RoPE of the k heads alone, no bias (attention rotates Q) */
template <typename T>
void launch_qkv_post(const lmc_cu_dims *d, T *qkv, const float *bias, int n, int S,
                     const float *cs, const float *sn, int k_only, cudaStream_t st);
/* a[n][F] = act(g + bg) * (u + bu) (gated: gu rows g | u) or act(u + bu) */
template <typename T>
void launch_act(const T *gu, const float *bias, T *a, int n, int F, int gated, int act,
                cudaStream_t st);
/* out[r] = -log softmax(logits[r])[targets[r]], 0 where targets[r] < 0 */
template <typename L>
void launch_row_nll(const L *logits, int V, const int32_t *targets, double *out, int rows,
                    cudaStream_t st);
/* win[w] = sum of row_nll over window w's S rows, in a fixed order */
void launch_window_sum(const double *row_nll, int S, double *win, int nwin, cudaStream_t st);

#endif
