/* The CUDA forward's attention: causal, GQA, online softmax, fp32
 * accumulation. Three kernels: a SIMT fp32 one (any head_dim <= 256, fp32
 * precision), an mma.sync m16n8k16 one (head_dim 32/64/96/128, fp16/bf16)
 * and on Hopper a wgmma one (head_dim 64) that can rotate Q itself.
 * CPU twin: lmc_op_attention (forward_cpu.c); checks in tests/test_cuda.c. */
#include "async.cuh"
#include "attention.cuh"

/* ---------------------------------------------------------------- attention, SIMT */

/* Causal GQA attention, fp32 math, any head_dim <= 256. A block of 8 warps
 * takes 32 query rows of one head (4 per warp); key/value tiles of 32 rows
 * are staged in shared memory; each lane scores one key, then accumulates
 * head_dim / 32 output columns. Online softmax with exact expf. */
#define SIMT_BR 32
#define SIMT_BC 32
template <typename T>
__global__ void __launch_bounds__(256)
k_attn_simt(const T *qkv, T *ctx, int S, int ld, int qd, int kvd, int group, int hd, float scale)
{
    extern __shared__ float sm[];
    float *sQ = sm;                        /* [BR][hd] */
    float *sK = sQ + SIMT_BR * hd;         /* [BC][hd+1] */
    float *sV = sK + SIMT_BC * (hd + 1);   /* [BC][hd] */
    int qt = gridDim.x - 1 - blockIdx.x; /* longest rows first */
    int h = blockIdx.y, w = blockIdx.z, g = h / group;
    int q0 = qt * SIMT_BR;
    const T *base = qkv + (size_t)w * S * ld;
    const T *Qg = base + (size_t)h * hd, *Kg = base + qd + (size_t)g * hd,
            *Vg = base + qd + kvd + (size_t)g * hd;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int i = tid; i < SIMT_BR * hd; i += blockDim.x) {
        int r = i / hd, d = i - r * hd, q = q0 + r;
        sQ[i] = q < S ? tof(Qg[(size_t)q * ld + d]) : 0.0f;
    }
    const int RPW = SIMT_BR / 8; /* rows per warp */
    float acc[RPW][8], m[RPW], l[RPW];
    for (int r = 0; r < RPW; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int c = 0; c < 8; c++)
            acc[r][c] = 0.0f;
    }
    int qlast = min(q0 + SIMT_BR, S) - 1;
    int nkt = qlast / SIMT_BC + 1;
    for (int kt = 0; kt < nkt; kt++) {
        int k0 = kt * SIMT_BC;
        __syncthreads();
        for (int i = tid; i < SIMT_BC * hd; i += blockDim.x) {
            int r = i / hd, d = i - r * hd, k = k0 + r;
            float kv = 0.0f, vv = 0.0f;
            if (k < S) {
                kv = tof(Kg[(size_t)k * ld + d]);
                vv = tof(Vg[(size_t)k * ld + d]);
            }
            sK[r * (hd + 1) + d] = kv;
            sV[r * hd + d] = vv;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            int qr = warp * RPW + r, qi = q0 + qr;
            int kj = k0 + lane;
            float s = -INFINITY;
            if (kj <= qi) {
                const float *qv = sQ + qr * hd, *kv = sK + lane * (hd + 1);
                float d0 = 0.0f;
                for (int d = 0; d < hd; d++)
                    d0 += qv[d] * kv[d];
                s = d0 * scale;
            }
            float mx = warp_max(s);
            float mn = fmaxf(m[r], mx);
            float corr = expf(m[r] - mn); /* 0 on the first tile */
            float p = s == -INFINITY ? 0.0f : expf(s - mn);
            l[r] = l[r] * corr + warp_sumf(p);
            m[r] = mn;
#pragma unroll
            for (int c = 0; c < 8; c++)
                acc[r][c] *= corr;
            for (int j = 0; j < SIMT_BC; j++) {
                float pj = __shfl_sync(0xffffffffu, p, j);
                const float *vr = sV + j * hd;
#pragma unroll
                for (int c = 0; c < 8; c++) {
                    int d = lane + 32 * c;
                    if (d < hd)
                        acc[r][c] += pj * vr[d];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        int qi = q0 + warp * RPW + r;
        if (qi >= S)
            continue;
        float inv = 1.0f / l[r];
        T *out = ctx + ((size_t)w * S + qi) * qd + (size_t)h * hd;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            int d = lane + 32 * c;
            if (d < hd)
                out[d] = fromf<T>(acc[r][c] * inv);
        }
    }
}

/* ---------------------------------------------------------------- attention, tensor cores */

__device__ __forceinline__ void ldsm_x4(const void *p, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                        uint32_t &r3)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_t(const void *p, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                          uint32_t &r3)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(a));
}

template <typename T> struct mma_op;
template <> struct mma_op<f16> {
    static __device__ __forceinline__ void run(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        __half2 h = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};
template <> struct mma_op<bf16> {
    static __device__ __forceinline__ void run(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};

/* 2^x on the SFU (ex2.approx: ~2 ulp, 0 for -inf): the fp16/bf16 paths only */
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* FlashAttention-2 style: a block of 4 warps takes BR = 64 * MT query rows;
 * each warp owns MT m16 tiles (16 * MT rows, Q fragments in registers), so
 * every K/V fragment read from shared memory feeds MT tensor-core products
 * (MT = 2 halves the ldmatrix traffic that bounded MT = 1, and gives two
 * independent chains to overlap). 64-key K/V tiles are double-buffered in
 * shared memory with cp.async; S = Q K^T and O += P V on mma.sync with fp32
 * accumulators; online softmax in fp32, exp2 with the scale folded into one
 * FMA; P goes from accumulator to A-fragment registers.
 * GQA packing: the BR rows are BR/P positions x P query heads that share one
 * kv head (row r: position q0 + r / P, head h0 + r % P), so each K/V tile
 * loaded serves P heads. P = 1 is plain one-head tiles.
 * Grid: x = kv head x head pack, y = window, z = position tile, longest
 * rows first over the whole grid (blocks issue in x, y, z order), so the
 * short causal tiles fill the tail. */
#define TC_BC 64
template <typename T, int HD, int MT>
__global__ void __launch_bounds__(128, MT == 2 ? 2 : (HD <= 64 ? 4 : 2))
k_attn_tc(const T *qkv, T *ctx, int S, int ld, int qd, int kvd, int group, int lp,
          float scale_log2)
{
    constexpr int BR = 64 * MT;
    constexpr int LDS = HD + 8; /* +16 bytes: conflict-free ldmatrix */
    constexpr int CH = HD / 8;  /* 16-byte chunks per row */
    extern __shared__ __align__(16) unsigned char smraw[];
    T *sQ = reinterpret_cast<T *>(smraw);
    T *sK = sQ + BR * LDS; /* [2][BC][LDS] */
    T *sV = sK + 2 * TC_BC * LDS;
    const int P = 1 << lp, packs = group >> lp; /* heads per tile, tiles per kv head */
    int qt = gridDim.z - 1 - blockIdx.z;        /* longest rows first */
    int g = blockIdx.x / packs, h0 = g * group + (blockIdx.x - g * packs) * P, w = blockIdx.y;
    int q0 = qt * (BR >> lp); /* first position */
    const T *base = qkv + (size_t)w * S * ld;
    const T *Kg = base + qd + (size_t)g * HD, *Vg = base + qd + kvd + (size_t)g * HD;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    for (int c = tid; c < BR * CH; c += 128) {
        int r = c / CH, cc = c - r * CH, q = q0 + (r >> lp), h = h0 + (r & (P - 1));
        cp_async16(sQ + r * LDS + cc * 8, base + (size_t)min(q, S - 1) * ld + h * HD + cc * 8,
                   q < S);
    }
    int qlast = min(q0 + (BR >> lp), S) - 1;
    int nkt = qlast / TC_BC + 1;
    auto load_kv = [&](int kt, int buf) {
        T *dk = sK + buf * TC_BC * LDS, *dv = sV + buf * TC_BC * LDS;
        for (int c = tid; c < TC_BC * CH; c += 128) {
            int r = c / CH, cc = c - r * CH, k = kt * TC_BC + r;
            size_t off = (size_t)min(k, S - 1) * ld + cc * 8;
            cp_async16(dk + r * LDS + cc * 8, Kg + off, k < S);
            cp_async16(dv + r * LDS + cc * 8, Vg + off, k < S);
        }
    };
    load_kv(0, 0);
    cp_async_commit();

    uint32_t qf[MT][HD / 16][4];
    float o[MT][HD / 8][4];
    float mrow[MT][2], lrow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < HD / 8; i++)
            o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
        mrow[mt][0] = mrow[mt][1] = -INFINITY;
        lrow[mt][0] = lrow[mt][1] = 0.0f;
    }
    const int wr = warp * 16 * MT; /* this warp's first tile row */

    for (int kt = 0; kt < nkt; kt++) {
        int buf = kt & 1;
        if (kt + 1 < nkt)
            load_kv(kt + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
                    const T *p =
                        sQ + (wr + mt * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8;
                    ldsm_x4(p, qf[mt][kk][0], qf[mt][kk][1], qf[mt][kk][2], qf[mt][kk][3]);
                }
        }
        const T *tK = sK + buf * TC_BC * LDS, *tV = sV + buf * TC_BC * LDS;
        float s[MT][TC_BC / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int j = 0; j < TC_BC / 8; j++)
                s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
            for (int nn = 0; nn < TC_BC / 16; nn++) {
                uint32_t b0, b1, b2, b3;
                const T *p = tK + (nn * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk * 16 +
                             ((lane >> 3) & 1) * 8;
                ldsm_x4(p, b0, b1, b2, b3);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_op<T>::run(s[mt][2 * nn], qf[mt][kk], b0, b1);
                    mma_op<T>::run(s[mt][2 * nn + 1], qf[mt][kk], b2, b3);
                }
            }
        }
        /* causal mask (only tiles reaching past this warp's first row) */
        int k0 = kt * TC_BC;
        if (k0 + TC_BC - 1 > q0 + (wr >> lp)) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < TC_BC / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int col = k0 + j * 8 + 2 * (lane & 3) + (e & 1);
                        int row = wr + mt * 16 + (lane >> 2) + (e >> 1) * 8;
                        if (col > q0 + (row >> lp))
                            s[mt][j][e] = -INFINITY;
                    }
        }
        /* online softmax, per row (2 per m-tile and thread; a quad shares a
         * row), in units of log2 with the scale folded in */
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int hr = 0; hr < 2; hr++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < TC_BC / 8; j++)
                    mx = fmaxf(mx, fmaxf(s[mt][j][2 * hr], s[mt][j][2 * hr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float mn = fmaxf(mrow[mt][hr], mx * scale_log2);
                float corr = fast_exp2(mrow[mt][hr] - mn); /* 0 on the first tile */
                mrow[mt][hr] = mn;
                float sum = 0.0f;
#pragma unroll
                for (int j = 0; j < TC_BC / 8; j++) {
                    float p0 = fast_exp2(fmaf(s[mt][j][2 * hr], scale_log2, -mn));
                    float p1 = fast_exp2(fmaf(s[mt][j][2 * hr + 1], scale_log2, -mn));
                    s[mt][j][2 * hr] = p0;
                    s[mt][j][2 * hr + 1] = p1;
                    sum += p0 + p1;
                }
                lrow[mt][hr] = lrow[mt][hr] * corr + sum;
#pragma unroll
                for (int i = 0; i < HD / 8; i++) {
                    o[mt][i][2 * hr] *= corr;
                    o[mt][i][2 * hr + 1] *= corr;
                }
            }
        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < TC_BC / 16; kk++) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                a[mt][0] = mma_op<T>::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                a[mt][1] = mma_op<T>::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                a[mt][2] = mma_op<T>::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                a[mt][3] = mma_op<T>::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dn = 0; dn < HD / 16; dn++) {
                uint32_t b0, b1, b2, b3;
                const T *p = tV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + dn * 16 +
                             (lane >> 4) * 8;
                ldsm_x4_t(p, b0, b1, b2, b3);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_op<T>::run(o[mt][2 * dn], a[mt], b0, b1);
                    mma_op<T>::run(o[mt][2 * dn + 1], a[mt], b2, b3);
                }
            }
        }
        __syncthreads(); /* the buffer is refilled two tiles later */
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            float l = lrow[mt][hr];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            float inv = 1.0f / l;
            int r = wr + mt * 16 + (lane >> 2) + hr * 8, q = q0 + (r >> lp);
            if (q >= S)
                continue;
            T *out = ctx + ((size_t)w * S + q) * qd + (size_t)(h0 + (r & (P - 1))) * HD +
                     2 * (lane & 3);
#pragma unroll
            for (int i = 0; i < HD / 8; i++) {
                uint32_t v = mma_op<T>::pack(o[mt][i][2 * hr] * inv, o[mt][i][2 * hr + 1] * inv);
                *reinterpret_cast<uint32_t *>(out + i * 8) = v;
            }
        }
}

/* ---------------------------------------------------------------- attention, Hopper wgmma */

/* The same attention on Hopper's warpgroup MMA (sm_90a builds, head_dim 64,
 * fp16/bf16): a block of two warpgroups takes 128 query rows (64 each);
 * S = Q K^T and O += P V are wgmma m64n64k16 with Q, K and V read by the
 * tensor cores straight from shared memory (no ldmatrix), P from registers.
 * Tiles sit in shared memory in the 128-byte swizzled layout wgmma reads
 * (16-byte chunk c of 128-byte row r at chunk c ^ (r % 8)); V is read
 * transposed (its rows are the reduction dimension). Registers: S and O are
 * 32 floats per thread, so four warpgroups fit per SM, and one warpgroup's
 * softmax overlaps another's products. GQA packing, grid order and the
 * online softmax are k_attn_tc's. */
#define WG_BC 64
/* the 32 fp32 accumulators of a m64n64 tile, per thread: operand text and
 * constraint list */
#define LMC_WG_D                                                                              \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23," \
    "%24,%25,%26,%27,%28,%29,%30,%31}, "
#define LMC_WG_ACC4(r) "+f"(r[0]), "+f"(r[1]), "+f"(r[2]), "+f"(r[3])
#define LMC_WG_ACC(d)                                                                         \
    LMC_WG_ACC4(d[0]), LMC_WG_ACC4(d[1]), LMC_WG_ACC4(d[2]), LMC_WG_ACC4(d[3]),               \
        LMC_WG_ACC4(d[4]), LMC_WG_ACC4(d[5]), LMC_WG_ACC4(d[6]), LMC_WG_ACC4(d[7])

template <typename T> struct wg_op;
#define LMC_WG_OPS(TY, PT)                                                                    \
    template <> struct wg_op<TY> {                                                            \
        /* d (+)= A B, A and B from shared memory (both K-major) */                           \
        static __device__ __forceinline__ void ss(float (&d)[8][4], uint64_t da, uint64_t db, \
                                                  int acc)                                    \
        {                                                                                     \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                         \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." PT "." PT " "          \
                         LMC_WG_D                                                             \
                         "%32, %33, p, 1, 1, 0, 0;\n}\n"                                      \
                         : LMC_WG_ACC(d)                                                      \
                         : "l"(da), "l"(db), "r"(acc));                                       \
        }                                                                                     \
        /* d += A B, A from registers, B from shared memory read transposed */                \
        static __device__ __forceinline__ void rs_t(float (&d)[8][4], const uint32_t (&a)[4], \
                                                    uint64_t db)                              \
        {                                                                                     \
            asm volatile("{\n"                                                                \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." PT "." PT " "          \
                         LMC_WG_D                                                             \
                         "{%32,%33,%34,%35}, %36, 1, 1, 1, 1;\n}\n"                           \
                         : LMC_WG_ACC(d)                                                      \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));              \
        }                                                                                     \
    };
LMC_WG_OPS(f16, "f16")
LMC_WG_OPS(bf16, "bf16")
#undef LMC_WG_OPS
#undef LMC_WG_ACC
#undef LMC_WG_ACC4
#undef LMC_WG_D

/* Causal mask of one warp's 16 x 64 score tile (rows from tile row wr). */
__device__ __forceinline__ void wg_mask(float (&s)[8][4], int k0, int q0, int wr, int lp,
                                        int lane)
{
    if (k0 + WG_BC - 1 <= q0 + (wr >> lp)) /* the whole tile is visible */
        return;
#pragma unroll
    for (int j = 0; j < WG_BC / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int col = k0 + j * 8 + 2 * (lane & 3) + (e & 1);
            int row = wr + (lane >> 2) + (e >> 1) * 8;
            if (col > q0 + (row >> lp))
                s[j][e] = -INFINITY;
        }
}

/* Online softmax of a score tile in place (s <- P, in units of log2 with
 * the scale folded in); corr[hr]: the factor O's rows must be scaled by. */
__device__ __forceinline__ void wg_softmax(float (&s)[8][4], float (&mrow)[2], float (&lrow)[2],
                                           float (&corr)[2], float scale_log2)
{
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < WG_BC / 8; j++)
            mx = fmaxf(mx, fmaxf(s[j][2 * hr], s[j][2 * hr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        float mn = fmaxf(mrow[hr], mx * scale_log2);
        corr[hr] = fast_exp2(mrow[hr] - mn); /* 0 on the first tile */
        mrow[hr] = mn;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < WG_BC / 8; j++) {
            float p0 = fast_exp2(fmaf(s[j][2 * hr], scale_log2, -mn));
            float p1 = fast_exp2(fmaf(s[j][2 * hr + 1], scale_log2, -mn));
            s[j][2 * hr] = p0;
            s[j][2 * hr + 1] = p1;
            sum += p0 + p1;
        }
        lrow[hr] = lrow[hr] * corr[hr] + sum;
    }
}

template <typename T>
__device__ __forceinline__ void wg_pack_p(const float (&s)[8][4], uint32_t (&a)[4][4])
{
#pragma unroll
    for (int kk = 0; kk < WG_BC / 16; kk++) {
        a[kk][0] = mma_op<T>::pack(s[2 * kk][0], s[2 * kk][1]);
        a[kk][1] = mma_op<T>::pack(s[2 * kk][2], s[2 * kk][3]);
        a[kk][2] = mma_op<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        a[kk][3] = mma_op<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

/* Three K/V buffers: iteration kt issues S = Q K(kt)^T and then
 * O += P(kt-1) V(kt-1) before waiting for the former, so the exponentials
 * of tile kt run while the tensor cores do the previous tile's P V (the
 * ordering of FlashAttention-3's intra-warpgroup overlap: 330 against 320
 * TFLOP/s for the plain order, scripts/bench-cuda's attention line, H200). */
template <typename T>
__global__ void __launch_bounds__(256, 2)
k_attn_wg(const T *qkv, T *ctx, int S, int ld, int qd, int kvd, int group, int lp,
          float scale_log2, const float *rcs, const float *rsn)
{
#ifdef LMC_DEVICE_WGMMA
    constexpr int HD = 64, BR = 128, NB = 3; /* K/V buffers */
    extern __shared__ unsigned char smraw[];
    /* swizzle atoms are 1024 bytes: align the base (the launch adds 1 KiB) */
    T *sQ = reinterpret_cast<T *>(((uintptr_t)smraw + 1023) & ~(uintptr_t)1023);
    T *sK = sQ + BR * HD; /* [NB][BC][HD] */
    T *sV = sK + NB * WG_BC * HD;
    const int P = 1 << lp, packs = group >> lp;
    int qt = gridDim.z - 1 - blockIdx.z; /* longest rows first */
    int g = blockIdx.x / packs, h0 = g * group + (blockIdx.x - g * packs) * P, w = blockIdx.y;
    int q0 = qt * (BR >> lp);
    const T *base = qkv + (size_t)w * S * ld;
    const T *Kg = base + qd + (size_t)g * HD, *Vg = base + qd + kvd + (size_t)g * HD;
    int tid = threadIdx.x, lane = tid & 31, wgi = tid >> 7, warp = (tid >> 5) & 3;

    for (int c = tid; c < BR * 8; c += 256) {
        int r = c >> 3, cc = c & 7, q = q0 + (r >> lp), h = h0 + (r & (P - 1));
        cp_async16(sQ + r * HD + ((cc ^ (r & 7)) << 3),
                   base + (size_t)min(q, S - 1) * ld + h * HD + cc * 8, q < S);
    }
    int qlast = min(q0 + (BR >> lp), S) - 1;
    int nkt = qlast / WG_BC + 1;
    auto load_kv = [&](int kt, int buf) {
        T *dk = sK + buf * WG_BC * HD, *dv = sV + buf * WG_BC * HD;
        for (int c = tid; c < WG_BC * 8; c += 256) {
            int r = c >> 3, cc = c & 7, k = kt * WG_BC + r;
            size_t off = (size_t)min(k, S - 1) * ld + cc * 8;
            int sw = r * HD + ((cc ^ (r & 7)) << 3);
            cp_async16(dk + sw, Kg + off, k < S);
            cp_async16(dv + sw, Vg + off, k < S);
        }
    };
    auto kdesc = [&](int buf) { return wg_desc(sK + buf * WG_BC * HD); };
    auto vdesc = [&](int buf) { return wg_desc(sV + buf * WG_BC * HD); };
    load_kv(0, 0);
    cp_async_commit();
    if (rcs) {
        /* RoPE of Q in shared memory (rcs/rsn: [S][HD/2] tables; K was
         * rotated by k_qkv_rope2): pairs (i, i + 32) are the 16-byte chunks
         * cc and cc + 4 of a row. Saves a pass over q in global memory. */
        cp_async_wait<0>(); /* Q, committed with K/V tile 0 */
        __syncthreads();
        for (int c = tid; c < BR * 4; c += 256) {
            int r = c >> 2, cc = c & 3, q = q0 + (r >> lp);
            if (q >= S)
                continue;
            T *p1 = sQ + r * HD + ((cc ^ (r & 7)) << 3);
            T *p2 = sQ + r * HD + (((cc + 4) ^ (r & 7)) << 3);
            size_t t0 = (size_t)q * (HD / 2) + cc * 8;
            const float4 *c4 = reinterpret_cast<const float4 *>(rcs + t0);
            const float4 *s4 = reinterpret_cast<const float4 *>(rsn + t0);
            float4 ca = c4[0], cb = c4[1], sa = s4[0], sb = s4[1];
            float cv[8] = {ca.x, ca.y, ca.z, ca.w, cb.x, cb.y, cb.z, cb.w};
            float sv[8] = {sa.x, sa.y, sa.z, sa.w, sb.x, sb.y, sb.z, sb.w};
            uint4 u1 = *reinterpret_cast<const uint4 *>(p1);
            uint4 u2 = *reinterpret_cast<const uint4 *>(p2);
            T *a1 = reinterpret_cast<T *>(&u1), *a2 = reinterpret_cast<T *>(&u2);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float y1, y2;
                rope_pair(tof(a1[i]), tof(a2[i]), cv[i], sv[i], y1, y2);
                a1[i] = fromf<T>(y1);
                a2[i] = fromf<T>(y2);
            }
            *reinterpret_cast<uint4 *>(p1) = u1;
            *reinterpret_cast<uint4 *>(p2) = u2;
        }
        /* the loop's first fence.proxy.async and barrier publish these
         * writes to the tensor cores */
    }

    float o[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f}, corr[2];
    const int wr = wgi * 64 + warp * 16; /* this warp's first tile row */
    const uint64_t dq = wg_desc(sQ + wgi * 64 * HD);
    float s[8][4];
    uint32_t a[WG_BC / 16][4];

    {
        /* tile t lives in buffer t % 3; one cp.async group per tile.
         * Before iteration kt: a[] holds P(kt-1), O is in P(kt-1)'s units. */
        for (int kt = 0; kt < nkt; kt++) {
            int buf = kt % 3;
            cp_async_wait<0>(); /* tile kt (and Q) landed */
            fence_proxy_async();
            /* every warpgroup is past iteration kt - 1, hence done with
             * buffer (kt + 1) % 3 = (kt - 2) % 3 */
            __syncthreads();
            if (kt + 1 < nkt)
                load_kv(kt + 1, (kt + 1) % 3);
            cp_async_commit();
            wg_fence(); /* orders the last iteration's writes of o and a[] */
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++)
                wg_op<T>::ss(s, dq + 2 * kk, kdesc(buf) + 2 * kk, kk > 0);
            wg_commit();
            if (kt == 0) {
                wg_wait<0>();
                wg_mask(s, 0, q0, wr, lp, lane);
                wg_softmax(s, mrow, lrow, corr, scale_log2); /* O is zero: no rescale */
                wg_pack_p<T>(s, a);
                continue;
            }
            /* O += P(kt-1) V(kt-1) on the tensor cores while this tile's
             * softmax runs */
            int pb = (kt + 2) % 3;
#pragma unroll
            for (int kk = 0; kk < WG_BC / 16; kk++)
                wg_op<T>::rs_t(o, a[kk], vdesc(pb) + kk * (2048 >> 4));
            wg_commit();
            wg_wait<1>(); /* the scores (groups complete in order) */
            wg_mask(s, kt * WG_BC, q0, wr, lp, lane);
            wg_softmax(s, mrow, lrow, corr, scale_log2);
            wg_wait<0>(); /* P(kt-1) V(kt-1) is in O and a[] is free */
#pragma unroll
            for (int i = 0; i < 8; i++) {
                o[i][0] *= corr[0], o[i][1] *= corr[0];
                o[i][2] *= corr[1], o[i][3] *= corr[1];
            }
            wg_pack_p<T>(s, a);
        }
        wg_fence();
        int pb = (nkt - 1) % 3;
#pragma unroll
        for (int kk = 0; kk < WG_BC / 16; kk++)
            wg_op<T>::rs_t(o, a[kk], vdesc(pb) + kk * (2048 >> 4));
        wg_commit();
        wg_wait<0>();
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        float l = lrow[hr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        float inv = 1.0f / l;
        int r = wr + (lane >> 2) + hr * 8, q = q0 + (r >> lp);
        if (q >= S)
            continue;
        T *out = ctx + ((size_t)w * S + q) * qd + (size_t)(h0 + (r & (P - 1))) * HD +
                 2 * (lane & 3);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t v = mma_op<T>::pack(o[i][2 * hr] * inv, o[i][2 * hr + 1] * inv);
            *reinterpret_cast<uint32_t *>(out + i * 8) = v;
        }
    }
#else
    (void)qkv, (void)ctx, (void)S, (void)ld, (void)qd, (void)kvd, (void)group, (void)lp,
        (void)scale_log2, (void)rcs, (void)rsn;
    __trap(); /* never launched: the host checks wgmma_ok() */
#endif
}



/* m16 tiles per warp: two where the registers allow (head_dim <= 64) */
template <int HD> constexpr int tc_mtiles() { return HD <= 64 ? 2 : 1; }

template <typename T, int HD>
static int launch_tc(const lmc_cu_dims *d, const T *qkv, T *ctx, int nwin, int S,
                     cudaStream_t st, lmc_error *err)
{
    constexpr int MT = tc_mtiles<HD>(), BR = 64 * MT, LDS = HD + 8;
    size_t smem = (size_t)(BR + 4 * TC_BC) * LDS * sizeof(T);
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_OK(cudaFuncSetAttribute(k_attn_tc<T, HD, MT>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                "attention shared memory");
        attr_set = true;
    }
    int qd = d->n_heads * HD, kvd = d->n_kv_heads * HD, ld = qd + 2 * kvd;
    int group = d->n_heads / d->n_kv_heads, lp = 0;
    /* pack P = 2^lp heads of a kv group per tile: P divides the group, <= 8
     * (fewer K/V tile loads per query row; LMC_CUDA_ATTN_NOPACK=1 turns it
     * off for comparison) */
    static const int nopack = getenv("LMC_CUDA_ATTN_NOPACK") != NULL;
    while (!nopack && lp < 3 && group % (2 << lp) == 0)
        lp++;
    float scale_log2 = (1.0f / sqrtf((float)HD)) * 1.4426950408889634f;
    int rows = BR >> lp; /* positions per tile */
    int tiles = (S + rows - 1) / rows;
    if (tiles > 65535 || nwin > 65535)
        return lmc_fail(err, "attention: %d windows of %d tokens exceed the launch grid", nwin,
                        S);
    dim3 grid(d->n_kv_heads * (group >> lp), nwin, tiles);
    k_attn_tc<T, HD, MT><<<grid, 128, smem, st>>>(qkv, ctx, S, ld, qd, kvd, group, lp,
                                                  scale_log2);
    LAUNCH_OK("attention kernel");
    return 0;
}

template <typename T>
static int launch_wg(const lmc_cu_dims *d, const T *qkv, T *ctx, int nwin, int S,
                     const float *rcs, const float *rsn, cudaStream_t st, lmc_error *err)
{
    constexpr int HD = 64, BR = 128;
    size_t smem = (size_t)(BR + 2 * 3 * WG_BC) * HD * sizeof(T) + 1024;
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_OK(cudaFuncSetAttribute(k_attn_wg<T>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                "attention shared memory");
        attr_set = true;
    }
    int qd = d->n_heads * HD, kvd = d->n_kv_heads * HD, ld = qd + 2 * kvd;
    int group = d->n_heads / d->n_kv_heads, lp = 0;
    while (lp < 3 && group % (2 << lp) == 0)
        lp++;
    float scale_log2 = (1.0f / sqrtf((float)HD)) * 1.4426950408889634f;
    int rows = BR >> lp, tiles = (S + rows - 1) / rows;
    if (tiles > 65535 || nwin > 65535)
        return lmc_fail(err, "attention: %d windows of %d tokens exceed the launch grid", nwin,
                        S);
    dim3 grid(d->n_kv_heads * (group >> lp), nwin, tiles);
    k_attn_wg<T><<<grid, 256, smem, st>>>(qkv, ctx, S, ld, qd, kvd, group, lp, scale_log2,
                                          rcs, rsn);
    LAUNCH_OK("attention kernel");
    return 0;
}


/* Whether attention(kind) runs k_attn_wg, which can rotate Q itself. */
template <typename T> bool attn_is_wg(const lmc_cu_dims *d, int kind)
{
    static const bool no_wgmma = getenv("LMC_CUDA_NO_WGMMA") != NULL;
    return !std::is_same<T, float>::value && kind == ATTN_AUTO && d->head_dim == 64 &&
           !no_wgmma && wgmma_ok();
}

/* rcs/rsn: RoPE tables when Q is still to be rotated (only where
 * attn_is_wg), else NULL. */
template <typename T>
int attention(const lmc_cu_dims *d, const T *qkv, T *ctx, int nwin, int S, int kind,
                     const float *rcs, const float *rsn, cudaStream_t st, lmc_error *err)
{
    int hd = d->head_dim;
    if constexpr (!std::is_same<T, float>::value)
        if (attn_is_wg<T>(d, kind))
            return launch_wg<T>(d, qkv, ctx, nwin, S, rcs, rsn, st, err);
    if (rcs)
        return lmc_fail(err, "attention: RoPE of Q asked of a kernel that does not do it");
    if constexpr (!std::is_same<T, float>::value) {
        if (kind != ATTN_SIMT && (hd == 32 || hd == 64 || hd == 96 || hd == 128)) {
            switch (hd) {
            case 32: return launch_tc<T, 32>(d, qkv, ctx, nwin, S, st, err);
            case 64: return launch_tc<T, 64>(d, qkv, ctx, nwin, S, st, err);
            case 96: return launch_tc<T, 96>(d, qkv, ctx, nwin, S, st, err);
            default: return launch_tc<T, 128>(d, qkv, ctx, nwin, S, st, err);
            }
        }
    }
    if (hd > 256)
        return lmc_fail(err, "head_dim %d: the CUDA attention kernels take at most 256", hd);
    int qd = d->n_heads * hd, kvd = d->n_kv_heads * hd, ld = qd + 2 * kvd;
    size_t smem = (size_t)(SIMT_BR * hd + SIMT_BC * (hd + 1) + SIMT_BC * hd) * sizeof(float);
    static bool attr_set = false;
    if (!attr_set) { /* enough for head_dim 256 */
        CUDA_OK(cudaFuncSetAttribute(k_attn_simt<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)((SIMT_BR * 256 + SIMT_BC * 257 + SIMT_BC * 256) * 4)),
                "attention shared memory");
        attr_set = true;
    }
    dim3 grid((S + SIMT_BR - 1) / SIMT_BR, d->n_heads, nwin);
    k_attn_simt<T><<<grid, 256, smem, st>>>(qkv, ctx, S, ld, qd, kvd, d->n_heads / d->n_kv_heads,
                                            hd, 1.0f / sqrtf((float)hd));
    LAUNCH_OK("attention kernel");
    return 0;
}

#define INST(T)                                                                              \
    template bool attn_is_wg<T>(const lmc_cu_dims *, int);                                   \
    template int attention<T>(const lmc_cu_dims *, const T *, T *, int, int, int,             \
                              const float *, const float *, cudaStream_t, lmc_error *);
INST(float)
INST(f16)
INST(bf16)
