/* Weights ready for the forward pass: every tensor of the model decoded to
 * fp32 once (dequantize-on-load), or pointed at directly when it is fp32 in
 * memory already. Encodings with a kernel of their own (later: W8A8, int8
 * outliers) keep their encoded tensor in lmc_linear.src for that kernel. */
#ifndef LMC_WEIGHTS_H
#define LMC_WEIGHTS_H

#include <stdint.h>

#include "../core/model.h"

typedef struct lmc_linear {
    int64_t out, in;
    const float *w;          /* [out][in] row-major fp32; NULL when kstate is used */
    const float *b;          /* [out] or NULL */
    const lmc_tensor *src;   /* the encoded weight tensor */
    const lmc_enc_traits *kernel; /* encoding with its own CPU kernel, or NULL */
    void *kstate;            /* that kernel's prepared state */
} lmc_linear;

typedef struct lmc_block_w {
    const float *attn_norm_w, *attn_norm_b; /* b NULL for RMSNorm */
    const float *ffn_norm_w, *ffn_norm_b;
    lmc_linear q, k, v, o;
    lmc_linear gate;         /* w NULL when the architecture has no gate */
    lmc_linear up, down;
    void *owned;             /* private: buffers to free */
} lmc_block_w;

typedef struct lmc_weights {
    const lmc_model *model;
    const lmc_config *cfg;
    const float *embed;      /* [vocab][hidden]; NULL: rows decoded from embed_src when used */
    const lmc_tensor *embed_src;
    const float *pos_embed;  /* [positions][hidden] or NULL */
    const float *final_norm_w, *final_norm_b;
    lmc_linear head;         /* w may alias embed when tied; w NULL (and no kernel): decoded
                              * from src in row chunks when used */
    lmc_block_w *blocks;     /* [n_layers] */
    void *owned;             /* private */
} lmc_weights;

/* Decode all tensors. Fails on a missing tensor, a shape that does not match
 * the config, or a NaN/Inf weight (naming the tensor). */
int lmc_weights_prepare(const lmc_model *m, lmc_weights **out, lmc_error *err);
/* (Re)build one block from the model's current tensors, e.g. after a pass
 * replaced them. Frees what bw held before. */
int lmc_weights_prepare_block(const lmc_model *m, int layer, lmc_block_w *bw, lmc_error *err);
void lmc_block_w_release(lmc_block_w *bw);
/* The linear of bw by role ("q" ... "down"), NULL for an unknown role. */
lmc_linear *lmc_block_w_linear(lmc_block_w *bw, const char *role);
void lmc_weights_free(lmc_weights *w);
/* Everything but the blocks (embeddings, positions, final norm, head); the
 * blocks are left empty, for lmc_weights_prepare_block one at a time. Dense
 * (f32/f16/bf16) embeddings and head are not decoded here but a piece at a
 * time when used (at 8B they are 2.1 GB each in fp32). */
int lmc_weights_prepare_outer(const lmc_model *m, lmc_weights **out, lmc_error *err);
/* Bytes of the fp32 buffers w decoded (tensors used in place not counted). */
size_t lmc_weights_bytes(const lmc_weights *w);

/* t has shape [rows, cols] (cols == 1: a vector, [rows] or [rows, 1]);
 * else fails naming the tensor, its shape and the config's. */
int lmc_tensor_expect_shape(const lmc_tensor *t, int64_t rows, int64_t cols, lmc_error *err);

/* Decode one tensor to a fresh fp32 buffer (caller frees). Checks finiteness. */
int lmc_tensor_to_f32(const lmc_tensor *t, float **out, lmc_error *err);
/* The checks lmc_tensor_to_f32 makes before decoding: a known encoding,
 * parameters valid for the shape, a blob of the exact size. */
int lmc_tensor_check_blob(const lmc_tensor *t, lmc_error *err);
/* Whether rows of t can be decoded alone (a dense 2-D tensor), and rows
 * [r0, r0 + n) of such a tensor into out[n][cols] (finiteness checked). */
int lmc_tensor_rows_sliceable(const lmc_tensor *t);
int lmc_tensor_rows_f32(const lmc_tensor *t, int64_t r0, int64_t n, float *out, lmc_error *err);

#endif
