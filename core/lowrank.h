/* LMC_ENC_LOWRANK: a [rows, cols] weight stored as a factor pair
 * W ~= A . B with A [rows][rank] and B [rank][cols] (SVD, ASVD, SVD-LLM).
 *
 * Encoding fields: rank (1 <= rank <= min(rows, cols)), inner = the factor
 * value encoding, LMC_ENC_F16 or LMC_ENC_F32.
 *
 * Blob layout (little-endian):
 *   1. A   inner [rows][rank] row-major
 *      zero padding to a multiple of 4 bytes (f16 with rows*rank odd)
 *   2. B   inner [rank][cols] row-major
 * nbytes = align4(rows*rank*size) + rank*cols*size, size 2 (f16) or 4 (f32).
 *
 * Decoding: W = A . B in fp32 (sgemm). Effective MACs per token:
 * rank * (rows + cols). The CPU kernel computes y = (x . B^T) . A^T as two
 * sgemms on fp32 copies of the factors made once at load. */
#ifndef LMC_LOWRANK_H
#define LMC_LOWRANK_H

#include <stddef.h>
#include <stdint.h>

#include "encoding.h"

extern const lmc_enc_traits lmc_enc_lowrank_traits;

/* Exact blob size; 0 when the parameters are invalid. */
size_t lmc_lowrank_nbytes(int inner, int64_t rows, int64_t cols, int rank);

/* Encode A [rows][rank] and B [rank][cols] (fp32) with values in inner
 * (LMC_ENC_F16 or LMC_ENC_F32). Fails on bad parameters or a value that is
 * not finite or overflows fp16 (naming the factor, row and column). On
 * success *blob (malloc'd, caller frees) holds *nbytes bytes and *e the
 * encoding. */
int lmc_lowrank_encode(const float *A, const float *B, int64_t rows, int64_t cols, int rank,
                       int inner, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                       lmc_error *err);

/* Decode the factors of a blob into fp32 A [rows][rank] and B [rank][cols]
 * (either may be NULL). Parameters must be valid (validate first). */
void lmc_lowrank_factors(const lmc_encoding *e, const uint8_t *blob, int64_t rows, int64_t cols,
                         float *A, float *B);

#endif
