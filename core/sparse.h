/* LMC_ENC_SPARSE (unstructured) and LMC_ENC_NM (N:M semi-structured):
 * pruned weights stored so that the file really shrinks. Builders take a
 * dense fp32 matrix and a keep mask; the decoders are the encodings' to_f32.
 *
 * Blob layouts for a [rows, cols] weight (little-endian; sections start at a
 * multiple of 4 bytes from the start of the blob; every padding bit and byte
 * is zero and the decoders reject anything else, except inside the QGROUP
 * blob of an NM inner QGROUP tensor, which follows QGROUP's own rules):
 *
 * SPARSE (e.nnz = kept count, e.inner = value encoding)
 *   1. mask    ceil(rows*cols / 8) bytes: weight k = r*cols + c is kept when
 *              bit (k % 8) of byte k / 8 is set (one row-major LSB-first bit
 *              stream, not padded per row). Exactly e.nnz bits are set.
 *   2. pad     zero bytes up to a multiple of 4.
 *   3. values  the e.nnz kept values, row-major, in e.inner:
 *              F16: nnz x 2 bytes; F32: nnz x 4 bytes.
 *   50% kept, f16: 1 + 8 = 9 bits per weight = 0.5625 x dense f16.
 *
 * NM (e.n kept of every e.m consecutive inputs of a row; m divides cols)
 *   ib = ceil(log2 m) bits per index (2 for m = 4, 3 for m = 8)
 *   G  = cols / m groups per row, K = G * n kept values per row
 *   1. indices rows x ceil(K*ib / 8) bytes: row r holds, group after group,
 *              the n positions (0..m-1, strictly ascending) of the kept values
 *              in that group, ib bits each, packed LSB-first (bit k of the row
 *              stream is bit k % 8 of byte k / 8), row padded to a byte.
 *   2. pad     zero bytes up to a multiple of 4.
 *   3. values  the compacted matrix [rows][K] of kept values (same order as
 *              the indices) in e.inner: F16 or F32 as for SPARSE.
 *   A group that the mask leaves with fewer than n kept positions is padded
 *   with its lowest unkept positions holding a stored 0.0, so every group
 *   lists exactly n positions (the format stays fixed-rate, as a 2:4 kernel
 *   wants). e.nnz = rows * K (informative; 0 is accepted on load).
 *   2:4 f16: 1 + 8 = 9 bits per weight = 0.5625 x dense f16;
 *   4:8 f16: 1.5 + 8 = 9.5 bits per weight = 0.594 x.
 *
 * Inner QGROUP (e.inner = LMC_ENC_QGROUP): the kept values are quantized.
 * The quantization parameters are e.bits/group/sym/has_gidx, read as for a
 * dense QGROUP tensor (core/qgroup.h: bits 2..8, group -1 or > 0), and the
 * groups are always groups of the ORIGINAL columns, so a joint
 * prune+quantize solver (SparseGPT, GPTQ under a prune mask) fits them
 * exactly as for the dense layout and w = kept ? scale*(code - zero) : 0,
 * bit for bit the value lmc_qgroup_dequant gives.
 *   SPARSE: mask | pad | codes: the nnz kept codes as one b-bit LSB-first
 *     stream in row-major order, zero-padded to a byte | pad | scales fp16
 *     [rows][ngroups] | pad | zeros rows x rowbytes(ngroups), each row
 *     packed and byte-padded like the codes of a QGROUP row (absent when
 *     sym) | pad | g_idx int32 [cols] (only has_gidx; every entry in
 *     [0, ngroups)). Storing the QGROUP blob of the dense matrix with pruned
 *     codes forced to the zero point would be exact too but would not shrink
 *     anything; this costs 1 + p_kept*b + (16+b)/g bits per weight: 50%
 *     4-bit g128 = 3.16 b/w (dense 4.16).
 *   NM: indices as above | pad | values = an unchanged QGROUP blob
 *     (core/qgroup.h) of the compacted [rows][K] matrix, same bits and sym,
 *     group size g*n/m (-1 stays -1), no g_idx. Requires g % m == 0 (or
 *     g = -1) so that each original group of g columns maps to exactly g*n/m
 *     stored values (a short last group maps to a short last group: same
 *     ngroups), and has_gidx = 0 (act-order would mix groups across
 *     m-blocks; lmc_nm_qgroup_ok says whether a result fits). A padding
 *     position (group with fewer than n kept) stores the zero point of its
 *     group, so it decodes to exactly 0. 2:4 4-bit g128: 1 + 2 + 20/128 =
 *     3.16 b/w.
 *
 * The kept fraction is not compressed further: at the sparsities that keep a
 * model usable (<= 90%) a plain bitmask costs at most 1 bit per weight and a
 * 50% mask is incompressible, so no flag is spent on a zlib variant. */
#ifndef LMC_SPARSE_H
#define LMC_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "encoding.h"
#include "error.h"

/* Largest M accepted by LMC_ENC_NM (indices fit 8 bits). */
#define LMC_NM_MAX_M 256

/* Section sizes of a SPARSE blob (parameters must be valid). */
size_t lmc_sparse_mask_bytes(int64_t rows, int64_t cols);
/* Bits per stored N:M index: ceil(log2 m). */
int lmc_nm_index_bits(int m);
/* Bytes of one row of N:M indices. */
size_t lmc_nm_index_row_bytes(int n, int m, int64_t cols);

/* Build a SPARSE blob of w[rows][cols] (fp32, row-major) keeping the
 * positions where keep[i] != 0, values in inner (LMC_ENC_F16 or LMC_ENC_F32).
 * On success *e describes the blob and *blob (malloc'd, caller frees) holds
 * *nbytes bytes. Fails on an unsupported inner encoding or a kept value that
 * does not fit it (f16 overflow). */
int lmc_sparse_encode(const float *w, const uint8_t *keep, int64_t rows, int64_t cols,
                      lmc_enc_id inner, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                      lmc_error *err);

/* Build an NM blob: keep must select at most n positions in every group of m
 * consecutive columns of each row (fewer are padded with stored zeros, see
 * above); m must divide cols. */
int lmc_nm_encode(const float *w, const uint8_t *keep, int64_t rows, int64_t cols, int n, int m,
                  lmc_enc_id inner, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                  lmc_error *err);

/* Quantized kept values for an inner-QGROUP blob: the codes of the dense
 * [rows][cols] matrix (only the kept positions are read) and the group
 * parameters, exactly what a dense QGROUP tensor of the same matrix would
 * hold (lmc_qgroup_pack's arguments). */
typedef struct lmc_sparse_qvals {
    int bits, group, sym, has_gidx;
    const uint8_t *codes;  /* [rows][cols], each < 2^bits */
    const float *scales;   /* [rows][ngroups], stored as fp16 (pass fp16-representable values) */
    const uint8_t *zeros;  /* [rows][ngroups], each < 2^bits; ignored (may be NULL) when sym */
    const int32_t *g_idx;  /* [cols], read only when has_gidx */
} lmc_sparse_qvals;

/* SPARSE blob with inner QGROUP keeping the positions where keep[i] != 0.
 * Fails on invalid parameters (naming them). */
int lmc_sparse_encode_q(const lmc_sparse_qvals *q, const uint8_t *keep, int64_t rows,
                        int64_t cols, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                        lmc_error *err);
/* NM blob with inner QGROUP (keep as for lmc_nm_encode). Fails when the
 * groups cannot be laid out as N:M (see lmc_nm_qgroup_ok). */
int lmc_nm_encode_q(const lmc_sparse_qvals *q, const uint8_t *keep, int64_t rows, int64_t cols,
                    int n, int m, lmc_encoding *e, uint8_t **blob, size_t *nbytes,
                    lmc_error *err);
/* 1 when quantization groups (group, has_gidx) fit an NM inner QGROUP of
 * M = m: group -1 or a multiple of m, and no g_idx. */
int lmc_nm_qgroup_ok(int group, int has_gidx, int m);

/* The stored positions of a SPARSE or NM tensor: keep[rows*cols] gets 1 where
 * a value is stored (for NM: the n listed positions of every group, padding
 * zeros included), 0 elsewhere. Checks the blob like to_f32 does. Fails for
 * any other encoding. */
int lmc_sparse_mask(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                    uint8_t *keep, lmc_error *err);

/* Shared by enc_sparse.c and enc_nm.c. */
/* Bytes per kept value of a float inner (F16 2, F32 4), 0 for any other. */
size_t lmc_sparse_inner_size(int inner);
/* Float inner (f16 or f32, what lmc_sparse_encode/lmc_nm_encode and
 * --inner take): 0, or -1 with "<what>: inner encoding X ...". */
int lmc_sparse_check_inner(int inner, const char *what, lmc_error *err);
/* The QGROUP parameters of an inner-QGROUP encoding (bits 2..8, group -1 or
 * > 0, sym and has_gidx 0 or 1): 0, or -1 with "<what>: ...". */
int lmc_sparse_check_qinner(const lmc_encoding *e, const char *what, lmc_error *err);
/* Store v as value i of a values section in inner; fails on f16 overflow
 * (naming row r, column c). */
int lmc_sparse_put_value(int inner, uint8_t *vals, int64_t i, float v, int64_t r, int64_t c,
                         lmc_error *err);
/* Value i of a values section. */
float lmc_sparse_get_value(int inner, const uint8_t *vals, int64_t i);
static inline size_t lmc_align4(size_t n) { return (n + 3) & ~(size_t)3; }

/* NM half of lmc_sparse_mask (enc_nm.c). */
int lmc_nm_mask(const lmc_encoding *e, const uint8_t *data, int64_t rows, int64_t cols,
                uint8_t *keep, lmc_error *err);

#endif
