/* One lmc tensor as ggml data, exactly: the values llama.cpp decodes are
 * the values lmc's decoder (the encoding table's to_f32) gives, bit for bit
 * (but for the sign of a zero).
 *
 * Dense f16/bf16/f32 keep their type. A qgroup tensor (w = s * (q - z),
 * fp16 s) maps onto a ggml block type when its groups cover whole 32-column
 * blocks (group a multiple of 32, or one group per row, and cols a multiple
 * of 32) and its g_idx, if any, is the plain c / group. With v = q - z:
 *   Q4_0  w = d * (x - 8):   x = v + 8,  needs -8 <= v <= 7   (4.5 bits/w)
 *   Q4_1  w = d * x + m:     x = v + k, m = -s * k, one k per group with
 *                            0 <= v + k <= 15 and s * k exact in fp16 (5.0)
 *   Q5_0  w = d * (x - 16):  x = v + 16, needs -16 <= v <= 15 (5.5)
 *   Q5_1  w = d * x + m:     as Q4_1 with 0 <= v + k <= 31   (6.0)
 *   Q8_0  w = d * x:         x = v (int8), needs -128 <= v <= 127 (8.5)
 * with d = s (the same fp16 bits). Every product above is exact in fp32
 * (at most 5 + 11 significant bits) and so is the sum d*x + m, whose exact
 * value s*(q - z) is what lmc computes: the decode is exact whenever the
 * stored numbers are. The smallest type whose conditions hold is chosen:
 * symmetric 4-bit codes (v in [-8, 7]) are Q4_0, symmetric 5-bit Q5_0,
 * 8-bit Q8_0; 2- and 3-bit codes fit Q4_0 too (|v| <= 7); asymmetric
 * 4-bit codes are Q4_1 only when every group's s * k is an fp16 number,
 * else Q5_0. */
#ifndef LMC_GGUF_TENSOR_H
#define LMC_GGUF_TENSOR_H

#include "../core/model.h"
#include "gguf.h"

/* The smallest ggml type holding t exactly. Returns 0 with *type, 1 when
 * none does (the reason in why, "group size 48 is not a multiple of 32"),
 * -1 on an error (a damaged blob, out of memory). Vectors (ndim 1) are F32:
 * llama.cpp multiplies norms and adds biases in fp32. */
int lmc_gguf_exact_type(const lmc_tensor *t, lmc_ggml_type *type, char *why, size_t nwhy,
                        lmc_error *err);

/* t as ggml data of the given type, row after row: output row i is source
 * row rowmap[i] (NULL: the identity). type is lmc_gguf_exact_type's answer,
 * or F16/BF16/F32 for a tensor decoded through to_f32 (--dequant; a value
 * the type cannot hold is an error). dst holds rows * row_bytes(type, cols). */
int lmc_gguf_encode(const lmc_tensor *t, lmc_ggml_type type, const int64_t *rowmap,
                    uint8_t *dst, lmc_error *err);

#endif
