// int8 vs fp16 cuBLAS GEMM rates on the TinyLlama-shaped forward's products (16384 rows;
// scripts/bench-int8-gemm). Inputs are constant bytes: the rates, not the values, matter.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstdint>
int main() {
  cublasHandle_t h; cublasCreate(&h);
  void *ws; cudaMalloc(&ws, 32<<20); cublasSetWorkspace(h, ws, 32<<20);
  int shapes[4][3] = {{16384,2560,2048},{16384,2048,2048},{16384,11264,2048},{16384,2048,5632}};
  const char *nm[4] = {"qkv","o","gu","down"};
  void *A, *B, *C; cudaMalloc(&A, 16384L*5632*2); cudaMalloc(&B, 11264L*5632*2); cudaMalloc(&C, 16384L*11264*4);
  cudaMemset(A, 1, 16384L*5632*2); cudaMemset(B, 1, 11264L*5632*2);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  for (int s = 0; s < 4; s++) {
    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    for (int mode = 0; mode < 2; mode++) {
      float af = 1, bf = 0; int32_t ai = 1, bi = 0;
      auto run = [&]() {
        if (mode == 0) return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &af, B, CUDA_R_16F, K, A, CUDA_R_16F, K, &bf, C, CUDA_R_16F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &ai, B, CUDA_R_8I, K, A, CUDA_R_8I, K, &bi, C, CUDA_R_32I, N, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT);
      };
      for (int i = 0; i < 5; i++) if (run()) { printf("%s mode %d: error\n", nm[s], mode); break; }
      cudaEventRecord(e0); for (int i = 0; i < 50; i++) run(); cudaEventRecord(e1); cudaEventSynchronize(e1);
      float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= 50;
      printf("%-5s %s: %.3f ms  %.0f TOPS\n", nm[s], mode ? "int8->int32" : "fp16->fp16 ", ms, 2.0*M*N*K/ms*1e-9);
    }
  }
  // memory-bound epilogue estimate: read int32 M x N, write fp16
  return 0;
}
