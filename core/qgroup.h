/* LMC_ENC_QGROUP: grouped asymmetric/symmetric integer weights (GPTQ, RTN,
 * AWQ), b = 2..8 bits, fp16 scales, b-bit zeros, optional act-order g_idx.
 *
 * Blob layout for a [rows, cols] weight (all little-endian; every section
 * starts at a multiple of 4 bytes from the start of the blob, padding bytes
 * are zero):
 *
 *   ngroups  = group > 0 ? ceil(cols / group) : 1    (last group may be short)
 *   rowbytes(n) = ceil(n * bits / 8)
 *
 *   1. codes   rows x rowbytes(cols) bytes: row r holds the cols codes of
 *              row r, packed LSB-first into a bit stream (code c of the row
 *              occupies bits [c*bits, (c+1)*bits) of the row, bit k of the
 *              stream is bit (k % 8) of byte k / 8); each row is padded
 *              with zero bits to a whole byte.
 *   2. scales  fp16 [rows][ngroups]
 *   3. zeros   rows x rowbytes(ngroups) bytes, b-bit codes packed exactly like
 *              the codes (per row, LSB-first, byte-padded).
 *              Omitted when sym: the zero is then 2^(bits-1).
 *   4. g_idx   int32 [cols], only when has_gidx: the group of each column
 *              (act-order). Without it the group of column c is c / group
 *              (or 0 when group == -1).
 *
 * Dequantization: w[r][c] = scale[r][g] * (float)(code[r][c] - zero[r][g])
 * with g the group of c, computed in fp32 exactly as lmc_qgroup_dequant does
 * (the quantizer uses the same expression, so what the solver assumed is
 * what eval gets, bit for bit).
 *
 * W4 g128 asym costs 4 + 16/128 + 4/128 = 4.16 bits per weight. */
#ifndef LMC_QGROUP_H
#define LMC_QGROUP_H

#include <stddef.h>
#include <stdint.h>

#include "encoding.h"

typedef struct lmc_qgroup_layout {
    int64_t ngroups;
    size_t code_row_bytes; /* rowbytes(cols) */
    size_t zero_row_bytes; /* rowbytes(ngroups), 0 when sym */
    size_t off_codes, off_scales, off_zeros, off_gidx; /* off_* of absent sections: 0 */
    size_t nbytes;         /* total blob size */
} lmc_qgroup_layout;

/* Number of groups along cols. */
int64_t lmc_qgroup_ngroups(const lmc_encoding *e, int64_t cols);
/* Section offsets and the exact blob size. */
void lmc_qgroup_layout_of(const lmc_encoding *e, int64_t rows, int64_t cols,
                          lmc_qgroup_layout *l);

/* The one dequantization expression (see above). */
static inline float lmc_qgroup_dequant(float scale, int code, int zero)
{
    return scale * (float)(code - zero);
}

/* Pack n b-bit codes LSB-first into ceil(n*bits/8) bytes (padding bits 0). */
void lmc_pack_bits(const uint8_t *codes, int64_t n, int bits, uint8_t *dst);
/* Inverse of lmc_pack_bits. */
void lmc_unpack_bits(const uint8_t *src, int64_t n, int bits, uint8_t *codes);

/* Write the blob (layout_of(e).nbytes bytes). codes [rows][cols], every
 * value < 2^bits; scales [rows][ngroups] (stored as fp16, round to nearest
 * even: pass fp16-representable values to keep them exact); zeros
 * [rows][ngroups] (ignored when e->sym, may then be NULL); g_idx [cols]
 * (used only when e->has_gidx). Parameters must be valid (validate first). */
void lmc_qgroup_pack(const lmc_encoding *e, int64_t rows, int64_t cols, const uint8_t *codes,
                     const float *scales, const uint8_t *zeros, const int32_t *g_idx,
                     uint8_t *blob);
/* Read a blob back. Any output pointer may be NULL (not wanted). For sym
 * encodings zeros are filled with 2^(bits-1); without has_gidx g_idx is
 * filled with c / group (0 for group -1). g_idx values are copied as stored,
 * unchecked (to_f32 checks them). */
void lmc_qgroup_unpack(const lmc_encoding *e, int64_t rows, int64_t cols, const uint8_t *blob,
                       uint8_t *codes, float *scales, uint8_t *zeros, int32_t *g_idx);

#endif
