// int8 vs fp16 GEMM rates on the TinyLlama-shaped forward's products (16384 rows;
// scripts/bench-int8-gemm): cuBLAS fp16 -> fp16, cuBLAS int8 -> int32 (the W8A8 path's
// products before its epilogue kernels), and lmc's wgmma int8 GEMM with the rescale
// (and, for gate|up, the SiLU activation) in its epilogue (eval/cuda/gemm_i8.cu), which
// replaces both. Inputs are constant bytes: the rates, not the values, matter.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include "../../eval/cuda/gemm_i8.cuh"
int main() {
  cublasHandle_t h; cublasCreate(&h);
  void *ws; cudaMalloc(&ws, 32<<20); cublasSetWorkspace(h, ws, 32<<20);
  int shapes[4][3] = {{16384,2560,2048},{16384,2048,2048},{16384,11264,2048},{16384,2048,5632}};
  const char *nm[4] = {"qkv","o","gu","down"};
  void *A, *B, *C, *S; cudaMalloc(&A, 16384L*5632*2); cudaMalloc(&B, 11264L*5632*2); cudaMalloc(&C, 16384L*11264*4);
  cudaMalloc(&S, 16384L*4);
  cudaMemset(A, 1, 16384L*5632*2); cudaMemset(B, 1, 11264L*5632*2); cudaMemset(S, 0, 16384L*4);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  bool wg = i8wg_ok();
  if (!wg) printf("lmc wgmma int8 GEMM: not on this device (needs an sm_90a build on a Hopper)\n");
  printf("(lmc tile width %s)\n", getenv("LMC_CUDA_I8_BN") ? getenv("LMC_CUDA_I8_BN") : "256");
  for (int s = 0; s < 4; s++) {
    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    float base = 0;
    for (int mode = 0; mode < 4; mode++) {
      if (mode >= 2 && !wg) continue;
      if (mode == 3 && s != 2) continue;
      float af = 1, bf = 0; int32_t ai = 1, bi = 0;
      lmc_error err;
      i8wg_epi e = {};
      e.sw = e.sx = (const float *)S;
      if (mode == 2) e.y = C, e.ldy = N;
      if (mode == 3) e.a = C, e.F = N / 2, e.gated = 1, e.act = 1, e.fast = 1;
      auto run = [&]() -> int {
        if (mode == 0) return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &af, B, CUDA_R_16F, K, A, CUDA_R_16F, K, &bf, C, CUDA_R_16F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (mode == 1) return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &ai, B, CUDA_R_8I, K, A, CUDA_R_8I, K, &bi, C, CUDA_R_32I, N, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT);
        return i8wg_run<__half>((const int8_t *)A, (const int8_t *)B, M, N, K, e, 0, &err) < 0;
      };
      int bad = 0;
      for (int i = 0; i < 5; i++) if (run()) { printf("%s mode %d: error\n", nm[s], mode); bad = 1; break; }
      if (bad) continue;
      cudaEventRecord(e0); for (int i = 0; i < 50; i++) run(); cudaEventRecord(e1); cudaEventSynchronize(e1);
      float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= 50;
      if (cudaGetLastError() != cudaSuccess) { printf("%s mode %d: CUDA error\n", nm[s], mode); continue; }
      if (mode == 0) base = ms;
      const char *what[4] = {"cuBLAS fp16->fp16      ", "cuBLAS int8->int32     ", "lmc int8->fp16 rescaled", "lmc int8->SiLU(g)*u    "};
      printf("%-5s %s: %.3f ms  %5.0f TOPS  %.2fx fp16\n", nm[s], what[mode], ms, 2.0*M*N*K/ms*1e-9, base / ms);
    }
  }
  return 0;
}
