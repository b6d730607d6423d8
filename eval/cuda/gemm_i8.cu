/* int8 x int8 products on Hopper's warpgroup MMA with the W8A8 /
 * LLM.int8() rescale in the epilogue (gemm_i8.cuh). cuBLAS's int8 GEMM
 * writes int32 only, and writing and reading back those 4 bytes per output
 * was the W8A8 forward's largest cost after the products themselves.
 *
 * A block of two warpgroups computes a 128 x BN tile (64 rows each, wgmma
 * m64nBNk32 s8.s8 -> s32); X and W tiles of 128 bytes of K go to shared
 * memory through cp.async in the 128-byte swizzled layout wgmma reads
 * (async.cuh), STAGES deep. The int32 sums are exact, so the outputs are
 * the bits of the cuBLAS path's k_i8_epilogue / k_i8_act (qslot.cu), which
 * the tests compare them with. */
#include "async.cuh"
#include "gemm_i8.cuh"
#include "kernels.cuh"

#include <assert.h>

#define I8_BM 128
#define I8_BK 128
#define I8_THREADS 256

/* A tile configuration: BN columns, S stages of shared memory, W0: wait
 * for each k tile's products before the next (then S - 1 tiles are in
 * flight, else S - 2 with one product group pending), MB blocks per SM. */
template <int BN_, int S_, bool W0_, int MB_> struct i8_cfg {
    static constexpr int BN = BN_, S = S_, MB = MB_;
    static constexpr bool W0 = W0_;
    static constexpr int L = W0 ? S - 1 : S - 2; /* tiles loaded ahead */
    static constexpr size_t smem = (size_t)S * (I8_BM + BN) * I8_BK + 1024;
};

#ifdef LMC_DEVICE_WGMMA
/* d (+)= A B^T for a 64 x 32 A and a BN x 32 B in shared memory (K-major) */
__device__ __forceinline__ void wg_i8_n128(int32_t (&d)[64], uint64_t da, uint64_t db, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
                 "}, %64, %65, p;\n}\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]),
                   "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]),
                   "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]),
                   "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
                   "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]),
                   "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]),
                   "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]),
                   "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
                   "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]),
                   "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]),
                   "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
                 : "l"(da), "l"(db), "r"(acc));
}
__device__ __forceinline__ void wg_i8_n256(int32_t (&d)[128], uint64_t da, uint64_t db, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
                 "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
                 "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
                 "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"
                 "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
                 "}, %128, %129, p;\n}\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]),
                   "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]),
                   "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]),
                   "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
                   "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]),
                   "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]),
                   "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]),
                   "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
                   "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]),
                   "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]),
                   "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]), "+r"(d[64]), "+r"(d[65]),
                   "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]),
                   "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]),
                   "+r"(d[78]), "+r"(d[79]), "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]),
                   "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]), "+r"(d[89]),
                   "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]),
                   "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]),
                   "+r"(d[102]), "+r"(d[103]), "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]),
                   "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]), "+r"(d[112]), "+r"(d[113]),
                   "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]),
                   "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]),
                   "+r"(d[126]), "+r"(d[127])
                 : "l"(da), "l"(db), "r"(acc));
}
#endif

/* Keeps the compiler from moving accesses to the accumulators across the
 * wgmma fences and waits (they are not operands of those). */
template <int N> __device__ __forceinline__ void acc_fence(int32_t (&d)[N])
{
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+r"(d[i])::"memory");
}

/* MODE: 0 y (=|+=) the rescaled products; 1 the activation a of an fc1
 * slot; 2 that of a gate|up slot, where a block's columns are BN/2 gate
 * rows j0.. of W and the BN/2 up rows F + j0.., so that each thread holds a
 * gate output and its up output in registers */
template <typename C, int MODE, typename Y>
__global__ void __launch_bounds__(I8_THREADS, C::MB)
    k_i8_wg(const int8_t *__restrict__ X, const int8_t *__restrict__ W, int M, int N, int K,
            i8wg_epi e)
{
#ifdef LMC_DEVICE_WGMMA
    constexpr int BN = C::BN, S = C::S, L = C::L, NB = BN / 32; /* B chunks per thread, stage */
    extern __shared__ __align__(16) unsigned char smraw[];
    /* swizzle atoms are 1024 bytes: align the base (the launch adds 1 KiB) */
    uint8_t *sA = reinterpret_cast<uint8_t *>(((uintptr_t)smraw + 1023) & ~(uintptr_t)1023);
    uint8_t *sB = sA + S * I8_BM * I8_BK;
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    constexpr bool gated = MODE == 2;
    const int m0 = blockIdx.y * I8_BM, n0 = blockIdx.x * (gated ? BN / 2 : BN);

    /* each thread copies 16-byte chunk c of rows r0 + 32 j of both tiles;
     * the swizzled chunk is the same for all of them (r % 8 is) */
    const int c = tid & 7, r0 = tid >> 3, soff = r0 * I8_BK + ((c ^ (r0 & 7)) << 4);
    const int8_t *pa[4], *pb[NB];
    bool va[4], vb[NB];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int r = m0 + r0 + 32 * j;
        va[j] = r < M;
        pa[j] = X + (size_t)(va[j] ? r : 0) * K + c * 16;
    }
#pragma unroll
    for (int j = 0; j < NB; j++) {
        int r = r0 + 32 * j, wr;
        if (gated) {
            int jj = n0 + (r < BN / 2 ? r : r - BN / 2);
            wr = jj < e.F ? (r < BN / 2 ? jj : e.F + jj) : -1;
        } else {
            wr = n0 + r < N ? n0 + r : -1;
        }
        vb[j] = wr >= 0;
        pb[j] = W + (size_t)(wr >= 0 ? wr : 0) * K + c * 16;
    }
    const int KT = (K + I8_BK - 1) / I8_BK;
    auto load = [&](int slot, int kt) {
        int k0 = kt * I8_BK;
        bool kv = k0 + c * 16 < K; /* K is a multiple of 16 */
        uint8_t *a = sA + slot * I8_BM * I8_BK + soff, *b = sB + slot * BN * I8_BK + soff;
#pragma unroll
        for (int j = 0; j < 4; j++)
            cp_async16(a + j * 32 * I8_BK, kv && va[j] ? pa[j] + k0 : X, kv && va[j]);
#pragma unroll
        for (int j = 0; j < NB; j++)
            cp_async16(b + j * 32 * I8_BK, kv && vb[j] ? pb[j] + k0 : W, kv && vb[j]);
    };

    int32_t d[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; i++)
        d[i] = 0;
    acc_fence(d);
#pragma unroll
    for (int s = 0; s < L; s++) {
        if (s < KT)
            load(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < KT; kt++) {
        cp_async_wait<L - 1>(); /* tile kt landed (this thread's copies) */
        fence_proxy_async();
        /* everyone's copies of tile kt landed, and both warpgroups waited
         * for their products of tile kt - S + L (W0: kt - 1, else kt - 2),
         * whose slot is refilled now */
        __syncthreads();
        if (kt + L < KT)
            load((kt + L) % S, kt + L);
        cp_async_commit();
        const int slot = kt % S;
        uint64_t da = wg_desc(sA + slot * I8_BM * I8_BK + wg * 64 * I8_BK);
        uint64_t db = wg_desc(sB + slot * BN * I8_BK);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < I8_BK / 32; kk++) { /* 32 bytes of K: 2 descriptor units */
            if constexpr (BN == 256)
                wg_i8_n256(d, da + 2 * kk, db + 2 * kk, 1);
            else
                wg_i8_n128(d, da + 2 * kk, db + 2 * kk, 1);
        }
        wg_commit();
        if constexpr (C::W0)
            wg_wait<0>();
        else
            wg_wait<1>();
    }
    wg_wait<0>();
    acc_fence(d);

    /* The products go through shared memory (the tiles' slots are free
     * now), so that the epilogue reads rows of 4 and stores them whole, in
     * a loop not unrolled over the accumulators. Accumulator layout (per n8
     * block b): d[4b + 2h + i] is row 16 warp + lane / 4 + 8 h, column
     * 8 b + 2 (lane % 4) + i. */
    cp_async_wait<0>();
    __syncthreads();
    constexpr int LD = BN + 8; /* row stride in int32 */
    static_assert((size_t)I8_BM * LD * 4 <= (size_t)S * (I8_BM + BN) * I8_BK, "epilogue tile");
    int32_t *sC = reinterpret_cast<int32_t *>(sA);
    {
        const int rl = wg * 64 + warp * 16 + (lane >> 2), cq = (lane & 3) * 2;
#pragma unroll
        for (int b = 0; b < BN / 8; b++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                *(int2 *)(sC + (rl + 8 * h) * LD + 8 * b + cq) =
                    make_int2(d[4 * b + 2 * h], d[4 * b + 2 * h + 1]);
    }
    __syncthreads();
    /* outputs of the tile: BN columns of y, or the activation's BN/2 (gated) */
    constexpr int OC = MODE == 2 ? BN / 2 : BN;
    const int ncol = MODE == 0 ? N : e.F;
#pragma unroll 1
    for (int q = tid; q < I8_BM * OC / 4; q += I8_THREADS) {
        const int rl = q / (OC / 4), c0 = (q % (OC / 4)) * 4, row = m0 + rl, col = n0 + c0;
        if (row >= M || col >= ncol)
            continue;
        const float st = e.sx[row];
        const int32_t *cr = sC + rl * LD + c0;
        const bool v4 = e.vec && col + 3 < ncol;
        if constexpr (MODE == 0) {
            Y *yr = (Y *)e.y + (size_t)row * e.ldy + col;
            if (v4) {
                int4 p = *(const int4 *)cr;
                float4 w = *(const float4 *)(e.sw + col);
                const int pv[4] = {p.x, p.y, p.z, p.w};
                const float wv[4] = {w.x, w.y, w.z, w.w};
                float o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                typename vec2<Y>::type *yp = (typename vec2<Y>::type *)yr;
                if (e.accumulate) {
                    float2 a = tof2(yp[0]), b = tof2(yp[1]);
                    o[0] = a.x, o[1] = a.y, o[2] = b.x, o[3] = b.y;
                }
#pragma unroll
                for (int i = 0; i < 4; i++)
                    o[i] = i8_rescale((float)pv[i], wv[i], st, e.int8_order, o[i], e.accumulate);
                yp[0] = fromf2<Y>(o[0], o[1]);
                yp[1] = fromf2<Y>(o[2], o[3]);
            } else {
                for (int i = 0; i < 4 && col + i < ncol; i++)
                    yr[i] = fromf<Y>(i8_rescale((float)cr[i], e.sw[col + i], st, e.int8_order,
                                                e.accumulate ? tof(yr[i]) : 0.0f,
                                                e.accumulate));
            }
        } else {
            /* k_i8_act's expressions */
            const float *bg = e.bias, *bu = e.bias ? (gated ? e.bias + e.F : e.bias) : NULL;
            float r[4];
            const int nv = min(4, ncol - col);
            for (int i = 0; i < nv; i++) {
                const int j = col + i, uc = gated ? e.F + j : j;
                const int32_t up = gated ? cr[BN / 2 + i] : cr[i];
                float u = tof(fromf<Y>(i8_rescale((float)up, e.sw[uc], st, 0, 0.0f, 0)));
                float uv = __fadd_rn(u, bu ? bu[j] : 0.0f);
                if (gated) {
                    float g = tof(fromf<Y>(i8_rescale((float)cr[i], e.sw[j], st, 0, 0.0f, 0)));
                    g = __fadd_rn(g, bg ? bg[j] : 0.0f);
                    r[i] = (e.fast ? act_t<Y>(g, e.act) : act_f(g, e.act)) * uv;
                } else {
                    r[i] = e.fast ? act_t<Y>(uv, e.act) : act_f(uv, e.act);
                }
            }
            Y *ar = (Y *)e.a + (size_t)row * e.F + col;
            if (v4) {
                typename vec2<Y>::type *ap = (typename vec2<Y>::type *)ar;
                ap[0] = fromf2<Y>(r[0], r[1]);
                ap[1] = fromf2<Y>(r[2], r[3]);
            } else {
                for (int i = 0; i < nv; i++)
                    ar[i] = fromf<Y>(r[i]);
            }
        }
    }
#endif
}

/* The default where both run (0: cuBLAS): docs/CUDA.md has the measurements. */
#define I8WG_DEFAULT 0

bool i8wg_ok()
{
    const char *g = getenv("LMC_CUDA_I8_GEMM");
    int want = g ? !strcmp(g, "wgmma") : I8WG_DEFAULT;
    return want && wgmma_ok();
}

/* The tile configurations (LMC_CUDA_I8_CFG picks one, for measurements):
 * 0 128 columns, 6 stages, 1 block per SM; 1 128 columns, 3 stages,
 * waiting for each tile's products, 2 blocks per SM; 2 256 columns, 4
 * stages; 3 256 columns, 4 stages, waiting. */
typedef i8_cfg<128, 6, false, 1> i8_c0;
typedef i8_cfg<128, 3, true, 2> i8_c1;
typedef i8_cfg<256, 4, false, 1> i8_c2;
typedef i8_cfg<256, 4, true, 1> i8_c3;
static int i8wg_cfg()
{
    static int c = -1;
    if (c < 0) {
        const char *s = getenv("LMC_CUDA_I8_CFG");
        c = s ? atoi(s) & 3 : 1;
    }
    return c;
}

template <typename C, int MODE, typename Y>
static int launch(const int8_t *X, const int8_t *W, int M, int N, int K, const i8wg_epi &e,
                  int cols, cudaStream_t st, lmc_error *err)
{
    static bool attr = false;
    if (!attr) {
        CUDA_OK(cudaFuncSetAttribute(k_i8_wg<C, MODE, Y>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::smem),
                "int8 GEMM shared memory");
        attr = true;
    }
    dim3 g((unsigned)((cols + C::BN - 1) / C::BN), (unsigned)((M + I8_BM - 1) / I8_BM));
    k_i8_wg<C, MODE, Y><<<g, I8_THREADS, C::smem, st>>>(X, W, M, N, K, e);
    LAUNCH_OK("int8 GEMM");
    return 0;
}

template <typename C, typename Y>
static int launch_mode(int mode, const int8_t *X, const int8_t *W, int M, int N, int K,
                       const i8wg_epi &e, cudaStream_t st, lmc_error *err)
{
    /* columns the grid covers: gated, BN/2 gate (and as many up) rows per block */
    int cols = mode == 2 ? 2 * e.F : N;
    return mode == 0   ? launch<C, 0, Y>(X, W, M, N, K, e, cols, st, err)
           : mode == 1 ? launch<C, 1, Y>(X, W, M, N, K, e, cols, st, err)
                       : launch<C, 2, Y>(X, W, M, N, K, e, cols, st, err);
}

template <typename Y>
int i8wg_run(const int8_t *X, const int8_t *W, int M, int N, int K, const i8wg_epi &e_,
             cudaStream_t st, lmc_error *err)
{
    assert(K % 16 == 0);
    i8wg_epi e = e_;
    int mode = !e.a ? 0 : e.gated ? 2 : 1;
    /* rows of 4 outputs (and scales) on 4-element boundaries */
    size_t al = 4 * sizeof(Y);
    e.vec = mode ? e.F % 4 == 0 && (uintptr_t)e.a % al == 0
                 : N % 4 == 0 && e.ldy % 4 == 0 && (uintptr_t)e.y % al == 0 &&
                       (uintptr_t)e.sw % 16 == 0;
    if constexpr (!std::is_same<Y, f16>::value) { /* the other configurations: measurements */
        return launch_mode<i8_c1, Y>(mode, X, W, M, N, K, e, st, err);
    } else {
        switch (i8wg_cfg()) {
        case 0: return launch_mode<i8_c0, Y>(mode, X, W, M, N, K, e, st, err);
        case 2: return launch_mode<i8_c2, Y>(mode, X, W, M, N, K, e, st, err);
        case 3: return launch_mode<i8_c3, Y>(mode, X, W, M, N, K, e, st, err);
        default: return launch_mode<i8_c1, Y>(mode, X, W, M, N, K, e, st, err);
        }
    }
}
template int i8wg_run<float>(const int8_t *, const int8_t *, int, int, int, const i8wg_epi &,
                             cudaStream_t, lmc_error *);
template int i8wg_run<f16>(const int8_t *, const int8_t *, int, int, int, const i8wg_epi &,
                           cudaStream_t, lmc_error *);
template int i8wg_run<bf16>(const int8_t *, const int8_t *, int, int, int, const i8wg_epi &,
                            cudaStream_t, lmc_error *);
