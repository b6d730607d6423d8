/* The CUDA forward's elementwise and row kernels: embeddings, norms, bias
 * + RoPE, activations, the NLL of a row and of a window. Each has a CPU
 * twin in forward_cpu.c / forward_ops.h and a check in tests/test_cuda.c. */
#include "common.cuh"
#include "kernels.cuh"


/* x[t] = E[ids[t]] (+ P[t % S + pos_off]) */
template <typename T, typename R>
__global__ void k_embed(const int32_t *ids, const T *E, const float *P, int pos_off, int S, int H,
                        R *x)
{
    size_t t = blockIdx.x;
    const T *e = E + (size_t)ids[t] * H;
    const float *p = P ? P + (size_t)((int)(t % S) + pos_off) * H : NULL;
    R *xr = x + t * H;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        float v = tof(e[j]);
        if (p)
            v += p[j];
        xr[j] = fromf<R>(v);
    }
}

/* v rounded to the residual type R (identity for fp32) */
template <typename R> __device__ __forceinline__ float rnd(float v) { return tof(fromf<R>(v)); }

/* One row per block: x += badd (stored back), y = norm(x), as lmc_op_norm.
 * R is the residual's type: fp32, or the compute type (--residual half). */
template <typename T, typename R>
__global__ void k_norm(R *x, const float *badd, T *y, int H, const float *w, const float *b,
                       int rms, float eps)
{
    __shared__ double red[32];
    R *xr = x + (size_t)blockIdx.x * H;
    T *yr = y + (size_t)blockIdx.x * H;
    double s = 0;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        float v = tof(xr[j]);
        if (badd) {
            v = rnd<R>(v + badd[j]);
            xr[j] = fromf<R>(v);
        }
        s += rms ? (double)v * v : (double)v;
    }
    s = block_sum(s, red);
    if (rms) {
        float var = (float)(s / H);
        float r = 1.0f / sqrtf(var + eps);
        for (int j = threadIdx.x; j < H; j += blockDim.x)
            yr[j] = fromf<T>(w[j] * (tof(xr[j]) * r));
        return;
    }
    double mu = s / H, s2 = 0;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        double d = tof(xr[j]) - mu;
        s2 += d * d;
    }
    s2 = block_sum(s2, red);
    float r = (float)(1.0 / sqrt(s2 / H + (double)eps)), m = (float)mu;
    for (int j = threadIdx.x; j < H; j += blockDim.x)
        yr[j] = fromf<T>(__fadd_rn((tof(xr[j]) - m) * r * w[j], b ? b[j] : 0.0f));
}

/* The same for H % 4 == 0 and H <= 32 * blockDim: the row stays in
 * registers (one read of x), 16-byte loads, 8-byte stores of 16-bit y. */
template <typename T> __device__ __forceinline__ void store4(T *p, float a, float b, float c,
                                                            float d)
{
    if constexpr (sizeof(T) == 4) {
        *reinterpret_cast<float4 *>(p) = make_float4(a, b, c, d);
    } else {
        typename vec2<T>::type lo = fromf2<T>(a, b), hi = fromf2<T>(c, d);
        uint2 u;
        u.x = *reinterpret_cast<uint32_t *>(&lo);
        u.y = *reinterpret_cast<uint32_t *>(&hi);
        *reinterpret_cast<uint2 *>(p) = u;
    }
}

/* Four elements from p (16-byte aligned for fp32, 8-byte for 16-bit). */
template <typename T> __device__ __forceinline__ float4 load4(const T *p)
{
    if constexpr (sizeof(T) == 4) {
        return *reinterpret_cast<const float4 *>(p);
    } else {
        typedef typename vec2<T>::type V2;
        uint2 u = *reinterpret_cast<const uint2 *>(p);
        float2 lo = tof2(*reinterpret_cast<const V2 *>(&u.x)),
               hi = tof2(*reinterpret_cast<const V2 *>(&u.y));
        return make_float4(lo.x, lo.y, hi.x, hi.y);
    }
}

/* Q: the W8A8 codes of the row (launch_norm_q) instead of y */
template <typename T, typename R, bool Q = false>
__global__ void k_norm4(R *x, const float *badd, T *y, int H, const float *w, const float *b,
                        int rms, float eps, const float *smooth = NULL, int8_t *q = NULL,
                        float *sx = NULL, int kp = 0)
{
    __shared__ double red[32];
    __shared__ float redf[32];
    R *xr = x + (size_t)blockIdx.x * H;
    T *yr = y + (size_t)blockIdx.x * H;
    const float4 *ba = reinterpret_cast<const float4 *>(badd);
    const float4 *w4 = reinterpret_cast<const float4 *>(w), *b4 = reinterpret_cast<const float4 *>(b);
    int H4 = H / 4;
    float4 v[8];
    double s = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int j = threadIdx.x + i * blockDim.x;
        if (j < H4) {
            float4 a = load4<R>(xr + 4 * j);
            if (ba) {
                float4 c = ba[j];
                a.x = rnd<R>(a.x + c.x), a.y = rnd<R>(a.y + c.y), a.z = rnd<R>(a.z + c.z),
                a.w = rnd<R>(a.w + c.w);
                store4<R>(xr + 4 * j, a.x, a.y, a.z, a.w);
            }
            v[i] = a;
            s += rms ? (double)a.x * a.x + (double)a.y * a.y + (double)a.z * a.z +
                           (double)a.w * a.w
                     : (double)a.x + (double)a.y + (double)a.z + (double)a.w;
        }
    }
    s = block_sum(s, red);
    float r, m = 0.0f;
    if (rms) {
        float var = (float)(s / H);
        r = 1.0f / sqrtf(var + eps);
    } else {
        double mu = s / H, s2 = 0;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (threadIdx.x + i * blockDim.x < H4) {
                double d0 = v[i].x - mu, d1 = v[i].y - mu, d2 = v[i].z - mu, d3 = v[i].w - mu;
                s2 += d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3;
            }
        s2 = block_sum(s2, red);
        r = (float)(1.0 / sqrt(s2 / H + (double)eps));
        m = (float)mu;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int j = threadIdx.x + i * blockDim.x;
        if (j < H4) {
            float4 a = v[i], ww = w4[j], o;
            if (rms) {
                o = make_float4(ww.x * (a.x * r), ww.y * (a.y * r), ww.z * (a.z * r),
                                ww.w * (a.w * r));
            } else {
                float4 bb = b4 ? b4[j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                o = make_float4(__fadd_rn((a.x - m) * r * ww.x, bb.x),
                                __fadd_rn((a.y - m) * r * ww.y, bb.y),
                                __fadd_rn((a.z - m) * r * ww.z, bb.z),
                                __fadd_rn((a.w - m) * r * ww.w, bb.w));
            }
            if constexpr (Q) /* y as stored, then the quantizer's input */
                v[i] = make_float4(tof(fromf<T>(o.x)), tof(fromf<T>(o.y)), tof(fromf<T>(o.z)),
                                   tof(fromf<T>(o.w)));
            else
                store4<T>(yr + 4 * j, o.x, o.y, o.z, o.w);
        }
    }
    if constexpr (Q) {
        float am = 0.0f;
        int bad = 0;
        const float4 *s4 = reinterpret_cast<const float4 *>(smooth);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int j = threadIdx.x + i * blockDim.x;
            if (j < H4) {
                if (s4) {
                    float4 sm = s4[j];
                    v[i].x = v[i].x / sm.x, v[i].y = v[i].y / sm.y, v[i].z = v[i].z / sm.z,
                    v[i].w = v[i].w / sm.w;
                }
                const float e[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
                for (int k = 0; k < 4; k++) {
                    float a = fabsf(e[k]);
                    bad |= !isfinite(a);
                    am = a > am ? a : am;
                }
            }
        }
        bad = __syncthreads_or(bad);
        am = block_max(am, redf);
        float sc = w8a8_scale(am);
        int8_t *qr = q + (size_t)blockIdx.x * kp;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int j = threadIdx.x + i * blockDim.x;
            if (j < H4) {
                char4 c = make_char4(w8a8_code(v[i].x, sc), w8a8_code(v[i].y, sc),
                                     w8a8_code(v[i].z, sc), w8a8_code(v[i].w, sc));
                *reinterpret_cast<char4 *>(qr + 4 * j) = c;
            }
        }
        for (int j = H4 + threadIdx.x; j < kp / 4; j += blockDim.x)
            *reinterpret_cast<char4 *>(qr + 4 * j) = make_char4(0, 0, 0, 0);
        if (threadIdx.x == 0)
            sx[blockIdx.x] = bad ? NAN : sc;
    }
}

int norm_threads(int H)
{
    int t = (H / 4 + 31) / 32 * 32;
    return t < 64 ? 64 : (t > 1024 ? 1024 : t);
}

/* ~4 float4 per thread: smaller blocks, more rows in flight per SM
 * (2.3 -> ~3.3 TB/s at H = 2048; 2 and 8 per thread measured slower) */
static int norm4_threads(int H) { return std::min(1024, std::max(64, (H / 4 / 4 + 31) / 32 * 32)); }

int norm_q_ok(int H) { return H % 4 == 0 && H / 4 <= 8 * norm4_threads(H); }

template <typename T, typename R>
void launch_norm(R *x, const float *badd, T *y, int n, int H, const float *w,
                        const float *b, int rms, float eps, cudaStream_t st)
{
    int t = norm4_threads(H);
    if (norm_q_ok(H))
        k_norm4<T, R><<<n, t, 0, st>>>(x, badd, y, H, w, b, rms, eps);
    else
        k_norm<T, R><<<n, norm_threads(H), 0, st>>>(x, badd, y, H, w, b, rms, eps);
}

template <typename T, typename R>
void launch_norm_q(R *x, const float *badd, int n, int H, const float *w, const float *b,
                   int rms, float eps, const float *smooth, int8_t *q, float *sx, int kp,
                   cudaStream_t st)
{
    k_norm4<T, R, true><<<n, norm4_threads(H), 0, st>>>(x, badd, NULL, H, w, b, rms, eps,
                                                        smooth, q, sx, kp);
}


/* Per token row of qkv [q | k | v]: + bias, then rotate_half RoPE on q and k
 * heads at position t % S. */
template <typename T>
__global__ void k_qkv_post(T *qkv, const float *bias, int ld, int qd, int kvd, int nh, int nkv,
                           int hd, int S, const float *cs, const float *sn)
{
    size_t t = blockIdx.x;
    T *row = qkv + t * ld;
    if (cs) {
        int half = hd / 2, pos = (int)(t % S);
        const float *c = cs + (size_t)pos * half, *s = sn + (size_t)pos * half;
        int npairs = (nh + nkv) * half;
        for (int idx = threadIdx.x; idx < npairs; idx += blockDim.x) {
            int hh = idx / half, i = idx - hh * half;
            int off = (hh < nh ? hh * hd : qd + (hh - nh) * hd) + i;
            float x1 = tof(row[off]), x2 = tof(row[off + half]);
            if (bias) {
                x1 += bias[off];
                x2 += bias[off + half];
            }
            float y1, y2;
            rope_pair(x1, x2, c[i], s[i], y1, y2);
            row[off] = fromf<T>(y1);
            row[off + half] = fromf<T>(y2);
        }
        if (bias)
            for (int j = threadIdx.x; j < kvd; j += blockDim.x) {
                int o = qd + kvd + j;
                row[o] = fromf<T>(tof(row[o]) + bias[o]);
            }
    } else if (bias) {
        for (int j = threadIdx.x; j < ld; j += blockDim.x)
            row[j] = fromf<T>(tof(row[j]) + bias[j]);
    }
}

/* k_qkv_post's RoPE for even half = head_dim / 2: two adjacent pairs per
 * thread (4-byte loads of 16-bit values, float2 tables): 1.35 -> 0.92 ms per
 * TinyLlama-shaped forward (ncu, H200). nh = 0: the k heads only (k_attn_wg
 * rotates Q itself). */
template <typename T>
__global__ void k_qkv_rope2(T *qkv, const float *bias, int ld, int qd, int kvd, int nh, int nkv,
                            int hd, int S, const float *cs, const float *sn)
{
    typedef typename vec2<T>::type T2;
    size_t t = blockIdx.x;
    T *row = qkv + t * ld;
    int half = hd / 2, hp = half / 2, pos = (int)(t % S);
    const float2 *c = reinterpret_cast<const float2 *>(cs + (size_t)pos * half),
                 *s = reinterpret_cast<const float2 *>(sn + (size_t)pos * half);
    int n2 = (nh + nkv) * hp;
    for (int idx = threadIdx.x; idx < n2; idx += blockDim.x) {
        int hh = idx / hp, i2 = idx - hh * hp;
        int off = (hh < nh ? hh * hd : qd + (hh - nh) * hd) + 2 * i2;
        float2 x1 = tof2(*reinterpret_cast<const T2 *>(row + off)),
               x2 = tof2(*reinterpret_cast<const T2 *>(row + off + half));
        if (bias) {
            x1.x += bias[off], x1.y += bias[off + 1];
            x2.x += bias[off + half], x2.y += bias[off + half + 1];
        }
        float2 cc = c[i2], ss = s[i2], y1, y2;
        rope_pair(x1.x, x2.x, cc.x, ss.x, y1.x, y2.x);
        rope_pair(x1.y, x2.y, cc.y, ss.y, y1.y, y2.y);
        *reinterpret_cast<T2 *>(row + off) = fromf2<T>(y1.x, y1.y);
        *reinterpret_cast<T2 *>(row + off + half) = fromf2<T>(y2.x, y2.y);
    }
    if (bias)
        for (int j = threadIdx.x; j < kvd; j += blockDim.x) {
            int o = qd + kvd + j;
            row[o] = fromf<T>(tof(row[o]) + bias[o]);
        }
}


/* a[t][j] = act(g + bg) * (u + bu) (gated: gu row = g[F] | u[F]) or act(u + bu). */
template <typename T>
__global__ void k_act(const T *gu, const float *bias, T *a, int F, int gated, int act)
{
    size_t t = blockIdx.y;
    int ldg = gated ? 2 * F : F;
    const T *g = gu + t * ldg, *u = gated ? g + F : g;
    const float *bg = bias, *bu = bias ? (gated ? bias + F : bias) : NULL;
    T *ar = a + t * F;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < F; j += gridDim.x * blockDim.x) {
        float uv = __fadd_rn(tof(u[j]), bu ? bu[j] : 0.0f);
        float r;
        if (gated) {
            float gv = __fadd_rn(tof(g[j]), bg ? bg[j] : 0.0f);
            r = act_f(gv, act) * uv;
        } else {
            r = act_f(uv, act);
        }
        ar[j] = fromf<T>(r);
    }
}

/* The same with 16-byte loads and stores (F a multiple of 16 / sizeof(T)):
 * the kernel is memory-bound. */
template <typename T>
__global__ void k_act_v(const T *gu, const float *bias, T *a, int F, int gated, int act)
{
    constexpr int V = 16 / sizeof(T);
    size_t t = blockIdx.y;
    int ldg = gated ? 2 * F : F, FV = F / V;
    const uint4 *g = reinterpret_cast<const uint4 *>(gu + t * ldg);
    const uint4 *u = reinterpret_cast<const uint4 *>(gu + t * ldg + (gated ? F : 0));
    uint4 *ar = reinterpret_cast<uint4 *>(a + t * F);
    const float *bg = bias, *bu = bias ? (gated ? bias + F : bias) : NULL;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < FV; j += gridDim.x * blockDim.x) {
        uint4 uw = u[j], gw = gated ? g[j] : uw, ow;
        const T *ue = reinterpret_cast<const T *>(&uw), *ge = reinterpret_cast<const T *>(&gw);
        T *oe = reinterpret_cast<T *>(&ow);
#pragma unroll
        for (int e = 0; e < V; e++) {
            float uv = __fadd_rn(tof(ue[e]), bu ? bu[j * V + e] : 0.0f), r;
            if (gated)
                r = act_t<T>(__fadd_rn(tof(ge[e]), bg ? bg[j * V + e] : 0.0f), act) * uv;
            else
                r = act_t<T>(uv, act);
            oe[e] = fromf<T>(r);
        }
        ar[j] = ow;
    }
}

template <typename T>
void launch_act(const T *gu, const float *bias, T *a, int n, int F, int gated, int act,
                       cudaStream_t st)
{
    constexpr int V = 16 / sizeof(T);
    if (F % V == 0) {
        dim3 g((F / V + 127) / 128, n);
        k_act_v<T><<<g, 128, 0, st>>>(gu, bias, a, F, gated, act);
    } else {
        dim3 g((F + 255) / 256, n);
        k_act<T><<<g, 256, 0, st>>>(gu, bias, a, F, gated, act);
    }
}

/* One row per block: nll = log sum exp(l - max) + max - l[target], one pass
 * over the row (online max), the exponentials summed in double. */
__device__ __forceinline__ void lse_add(float v, float &m, double &s)
{
    if (v > m) { /* rare after the first few values */
        s = s * exp((double)m - (double)v) + 1.0;
        m = v;
    } else {
        s += (double)expf(v - m);
    }
}

template <typename L>
__global__ void k_row_nll(const L *logits, int V, const int32_t *targets, double *out)
{
    __shared__ float redf[32];
    __shared__ double redd[32];
    size_t row = blockIdx.x;
    int tgt = targets[row];
    if (tgt < 0) { /* block-uniform */
        if (threadIdx.x == 0)
            out[row] = 0.0;
        return;
    }
    const L *l = logits + row * V;
    float m = -INFINITY;
    double s = 0.0;
    if (V % 4 == 0) { /* rows aligned: vector loads */
        /* per group of 4: one max update, then four independent exps
         * (0.92 -> 0.60 ms per TinyLlama-shaped forward, ncu, H200) */
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
            float4 v = load4<L>(l + 4 * j);
            float m4 = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
            if (m4 > m) {
                s = m == -INFINITY ? 0.0 : s * exp((double)m - (double)m4);
                m = m4;
            }
            s += (double)(expf(v.x - m) + expf(v.y - m) + expf(v.z - m) + expf(v.w - m));
        }
    } else {
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            lse_add(tof(l[j]), m, s);
    }
    float M = block_max(m, redf);
    s = m == -INFINITY ? 0.0 : s * exp((double)m - (double)M);
    s = block_sum(s, redd);
    if (threadIdx.x == 0)
        out[row] = log(s) + (double)M - (double)tof(l[tgt]);
}

/* win[w] = sum of row_nll over window w's S rows, in a fixed order. */
__global__ void k_window_sum(const double *row_nll, int S, double *win)
{
    __shared__ double red[32];
    const double *r = row_nll + (size_t)blockIdx.x * S;
    double s = 0;
    for (int j = threadIdx.x; j < S; j += blockDim.x)
        s += r[j];
    s = block_sum(s, red);
    if (threadIdx.x == 0)
        win[blockIdx.x] = s;
}



/* qkv rows [n][q | k | v]: + bias (may be NULL), RoPE when cs is not NULL;
 * k_only: RoPE of the k heads alone, no bias (attention rotates Q) */
template <typename T>
void launch_qkv_post(const lmc_cu_dims *d, T *qkv, const float *bias, int n, int S,
                            const float *cs, const float *sn, int k_only, cudaStream_t st)
{
    int hd = d->head_dim, qd = qdim(d), kvd = kvdim(d), ld = qd + 2 * kvd;
    if (k_only) {
        int t = std::min(128, (d->n_kv_heads * hd / 4 + 31) / 32 * 32);
        k_qkv_rope2<T><<<n, t, 0, st>>>(qkv, NULL, ld, qd, kvd, 0, d->n_kv_heads, hd, S, cs,
                                        sn);
    } else if (cs && hd % 4 == 0)
        k_qkv_rope2<T><<<n, 128, 0, st>>>(qkv, bias, ld, qd, kvd, d->n_heads, d->n_kv_heads, hd,
                                          S, cs, sn);
    else
        k_qkv_post<T><<<n, 128, 0, st>>>(qkv, bias, ld, qd, kvd, d->n_heads, d->n_kv_heads, hd,
                                         S, cs, sn);
}

/* x <- embeddings of cu->ids[0..n) (positions t % S). */

template <typename T, typename R>
void launch_embed(const int32_t *ids, const T *E, const float *P, int pos_off, int S, int H, R *x,
                  int n, cudaStream_t st)
{
    k_embed<T, R><<<n, norm_threads(H), 0, st>>>(ids, E, P, pos_off, S, H, x);
}

template <typename L>
void launch_row_nll(const L *logits, int V, const int32_t *targets, double *out, int rows,
                    cudaStream_t st)
{
    k_row_nll<<<rows, 256, 0, st>>>(logits, V, targets, out);
}

void launch_window_sum(const double *row_nll, int S, double *win, int nwin, cudaStream_t st)
{
    k_window_sum<<<nwin, 256, 0, st>>>(row_nll, S, win);
}

/* every type pair the forward uses: weights T, residual R in {fp32, T} */
#define INST_TR(T, R)                                                                        \
    template void launch_embed<T, R>(const int32_t *, const T *, const float *, int, int, int, \
                                     R *, int, cudaStream_t);                                \
    template void launch_norm<T, R>(R *, const float *, T *, int, int, const float *,         \
                                    const float *, int, float, cudaStream_t);                 \
    template void launch_norm_q<T, R>(R *, const float *, int, int, const float *,            \
                                      const float *, int, float, const float *, int8_t *,     \
                                      float *, int, cudaStream_t);
#define INST_T(T)                                                                            \
    INST_TR(T, float)                                                                        \
    template void launch_qkv_post<T>(const lmc_cu_dims *, T *, const float *, int, int,        \
                                     const float *, const float *, int, cudaStream_t);       \
    template void launch_act<T>(const T *, const float *, T *, int, int, int, int,            \
                                cudaStream_t);                                               \
    template void launch_row_nll<T>(const T *, int, const int32_t *, double *, int,           \
                                    cudaStream_t);
INST_T(float)
INST_T(f16)
INST_T(bf16)
INST_TR(f16, f16)
INST_TR(bf16, bf16)
