/* The one internal description of a decoder-only model, whatever it was
 * loaded from. Architectures are normalized here: every tensor carries a
 * canonical role name (see below), never a Hugging Face name; Conv1D
 * weights are already [out,in]; GPT-2's fused c_attn is split into q, k, v.
 *
 * Canonical tensor names:
 *   embed.weight            [vocab, hidden]
 *   pos_embed.weight        [positions, hidden]        (OPT incl. offset rows, GPT-2)
 *   blk.N.attn_norm.weight  [hidden]   (+ .bias for LayerNorm models)
 *   blk.N.{q,k,v,o}.weight  [out, in]  (+ .bias when present)
 *   blk.N.ffn_norm.weight   [hidden]   (+ .bias)
 *   blk.N.{gate,up,down}.weight        LLaMA SwiGLU: down(silu(gate x) * up x)
 *   blk.N.{up,down}.weight  (+ .bias)  OPT fc1/fc2, GPT-2 c_fc/c_proj: down(act(up x))
 *   final_norm.weight       [hidden]   (+ .bias)
 *   head.weight             [vocab, hidden]  absent when tied to embed.weight
 */
#ifndef LMC_MODEL_H
#define LMC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "encoding.h"
#include "fileio.h"
#include "error.h"

typedef enum { LMC_ARCH_LLAMA = 1, LMC_ARCH_OPT = 2, LMC_ARCH_GPT2 = 3 } lmc_arch;

typedef enum { LMC_ACT_SILU = 1, LMC_ACT_RELU = 2, LMC_ACT_GELU_NEW = 3, LMC_ACT_GELU = 4 } lmc_act;

typedef enum { LMC_ROPE_NONE = 0, LMC_ROPE_DEFAULT, LMC_ROPE_LINEAR, LMC_ROPE_LLAMA3 } lmc_rope_type;

typedef struct lmc_config {
    lmc_arch arch;
    char model_type[32];   /* "llama", "mistral", "qwen2", "opt", "gpt2" */
    int vocab;
    int hidden;
    int n_layers;
    int n_heads;
    int n_kv_heads;        /* == n_heads for MHA */
    int head_dim;
    int ffn;               /* intermediate size */
    int max_pos;           /* max_position_embeddings / n_positions */
    int pos_offset;        /* OPT learned positions start at row 2 */
    int tied;              /* head shares embed.weight */
    int norm_is_rms;       /* RMSNorm (LLaMA) vs LayerNorm (OPT, GPT-2) */
    double norm_eps;
    lmc_act act;
    int qkv_bias, o_bias, mlp_bias; /* which linears carry biases */
    lmc_rope_type rope_type;
    double rope_theta;
    double rope_factor;            /* linear / llama3 */
    double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_orig_max_pos;                               /* llama3 */
    int bos_id, eos_id;            /* -1 when absent */
    char src_dtype[16];            /* "float16", "bfloat16", "float32" */
    /* Capabilities of the architecture, from its entry in formats/arch.c
     * (lmc_arch_caps, applied by both loaders; not stored in containers):
     * code outside formats/ tests these, never an architecture's name. */
    int gated_ffn;   /* down(act(gate x) * up x); else down(act(up x)), no gate */
    int learned_pos; /* a learned position table: windows of at most max_pos tokens */
    int fused_qkv;   /* the checkpoint stores q, k, v as one matrix (GPT-2's c_attn) */
} lmc_config;

/* One tensor. data points into a memory map or into owned heap memory. */
typedef struct lmc_tensor {
    char name[64];          /* canonical name, see above */
    int ndim;               /* 1 or 2 */
    int64_t shape[2];       /* [rows, cols]; for ndim 1, shape[1] == 1 */
    lmc_encoding enc;       /* how data is laid out, see encoding.h */
    const uint8_t *data;
    size_t nbytes;
    void *owned;            /* heap block to free with the model, or NULL */
} lmc_tensor;

typedef enum {
    LMC_SRC_CHECKPOINT = 1, /* Hugging Face directory */
    LMC_SRC_CONTAINER = 2   /* .lmc file */
} lmc_source_kind;

typedef struct lmc_model {
    lmc_config cfg;
    lmc_tensor *tensors;
    int n_tensors;
    char *tokenizer_json;       /* NUL-terminated text of tokenizer.json (may be NULL) */
    size_t tokenizer_json_len;
    char *config_json;          /* original config.json text */
    char *provenance_json;      /* JSON array of pass records (container), or NULL */
    lmc_source_kind source_kind;
    char *source_path;
    struct lmc_mmap *maps;      /* memory maps the tensors point into */
    int n_maps;
} lmc_model;

/* Load a Hugging Face checkpoint directory or an .lmc container. */
int lmc_model_load(const char *path, lmc_model **out, lmc_error *err);
void lmc_model_free(lmc_model *m);

/* Tensor by canonical name, NULL when absent. */
lmc_tensor *lmc_model_find(const lmc_model *m, const char *name);
/* Tensor "blk.<layer>.<role>.<kind>" (kind "weight" or "bias"). */
lmc_tensor *lmc_model_block_tensor(const lmc_model *m, int layer, const char *role,
                                   const char *kind);
/* Drop the resident pages of [p, p + n) if they lie in one of m's maps. */
void lmc_model_release_pages(const lmc_model *m, const void *p, size_t n);
/* The same for every tensor of block `layer` (a streamed evaluation, once
 * the block has run). */
void lmc_model_release_block_pages(const lmc_model *m, int layer);
/* Replace (or add) a tensor; the model takes ownership of t->owned. A
 * replaced tensor that pointed into a map gives its pages back. */
int lmc_model_set_tensor(lmc_model *m, const lmc_tensor *t, lmc_error *err);

/* Every weight finite (no NaN, no ±Inf; other encodings: the decoded
 * values): 0, or -1 with "SOURCE: tensor NAME: non-finite weight (NaN) at
 * [row, col]" for the first bad element. Called by every command that
 * computes with or writes a model's weights (docs/DESIGN.md). The pages of
 * memory-mapped tensors are released once scanned. */
int lmc_model_check_finite(const lmc_model *m, lmc_error *err);

/* Parameter count: elements of all logical tensors (tied head counted once). */
int64_t lmc_model_params(const lmc_model *m);

/* Where a linear reads its input from. Linears sharing a site share
 * calibration statistics. */
typedef enum {
    LMC_SITE_ATTN_IN = 0, /* output of attn_norm: q, k, v */
    LMC_SITE_ATTN_OUT,    /* attention context: o */
    LMC_SITE_FFN_IN,      /* output of ffn_norm: gate, up */
    LMC_SITE_FFN_MID,     /* activation output: down */
    LMC_SITE_COUNT
} lmc_site;

typedef struct lmc_linear_desc {
    const char *role; /* "q", "k", ... */
    lmc_site site;
} lmc_linear_desc;

/* The compressible linears of one block for this architecture, in execution
 * order. Returns the count (at most 7). */
int lmc_block_linears(const lmc_config *cfg, lmc_linear_desc out[8]);

/* The products of a block as every backend runs them: linears reading one
 * input, stacked along rows into one matrix (q|k|v; o; gate|up, or up
 * alone without a gate; down). The one listing the CPU and CUDA loaders
 * share. */
typedef enum { LMC_SLOT_QKV = 0, LMC_SLOT_O, LMC_SLOT_GU, LMC_SLOT_DOWN, LMC_SLOT_COUNT } lmc_slot;
typedef struct lmc_slot_desc {
    lmc_site site;
    int n;                /* linears in the slot */
    const char *roles[3]; /* "q", "k", "v", ... */
    int64_t out[3];       /* rows of each */
    int64_t in;           /* their common input width */
    int bias;             /* the config announces biases for them */
} lmc_slot_desc;
void lmc_block_slots(const lmc_config *cfg, lmc_slot_desc out[LMC_SLOT_COUNT]);

/* "llama", "opt", "gpt2" (formats/arch.c, the table of architectures) */
const char *lmc_arch_name(lmc_arch a);
const char *lmc_site_name(lmc_site s);

#endif
