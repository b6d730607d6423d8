/* Hugging Face checkpoint directory -> lmc_model.
 *
 * The directory holds config.json and either model.safetensors or
 * model.safetensors.index.json plus the shards its weight_map names.
 * Tensor names are mapped to the canonical names of core/model.h, with or
 * without the usual prefixes (LLaMA "model.", OPT "model.decoder." or
 * "decoder.", GPT-2 "transformer."). Every tensor is checked: dtype F16,
 * BF16 or F32, shape against the config, each required weight present
 * exactly once, and no tensor left over (an unknown tensor is an error, so
 * that no weight is ever silently ignored). Non-parameter buffers that old
 * exports carry (rotary_emb.inv_freq, GPT-2 attn.bias / attn.masked_bias)
 * are skipped.
 *
 * Tensors point into the memory maps, except GPT-2's Conv1D weights
 * (transposed to [out,in]) and fused c_attn (split into q, k, v), which are
 * owned heap copies in the file's dtype, and any tensor whose data is not
 * aligned to its element size in the file (copied so that readers may cast).
 *
 * Tied embeddings: with tie_word_embeddings the model has no head.weight;
 * an lm_head.weight in the file is then not used (transformers ties it to the
 * embedding, and save_pretrained writes the same values), so the head is
 * always embed.weight.
 *
 * tokenizer.json is read when present and must parse as a JSON object
 * (lmc_tokenizer_json_check; absent: tokenizer_json is NULL, and whoever
 * needs the tokenizer reports that). */
#ifndef LMC_HF_CHECKPOINT_H
#define LMC_HF_CHECKPOINT_H

#include "../core/model.h"

int lmc_hf_checkpoint_load(const char *dir, lmc_model **out, lmc_error *err);

/* How save_pretrained names and lays out a canonical tensor of ARCH (the
 * inverse of the load mapping, for writers of Hugging Face checkpoints). */
typedef enum {
    LMC_HF_PLAIN = 0,    /* the tensor itself ([out, in] for a Linear) */
    LMC_HF_CONV1D = 1,   /* GPT-2 Conv1D: stored transposed, [in, out] */
    LMC_HF_FUSED_QKV = 2 /* GPT-2 c_attn: q, k, v share one [in, q|k|v] tensor (bias [q|k|v]) */
} lmc_hf_layout;
/* 0 with the name in buf ("model.layers.0.self_attn.q_proj.weight"), or -1
 * when ARCH has no such tensor. */
int lmc_hf_tensor_name(lmc_arch arch, const char *canon, char *buf, size_t n,
                       lmc_hf_layout *layout);

/* Write a copy of checkpoint SRC_DIR into DST_DIR (created if absent) with
 * every floating-point tensor converted to DTYPE ("float16", "bfloat16" or
 * "float32", round to nearest even): config.json with dtype (or
 * torch_dtype) updated, the tokenizer and generation files copied, and one
 * model.safetensors with the original Hugging Face names. A stale
 * model.safetensors.index.json in DST_DIR is removed (it would shadow the
 * new file). For reference tests on bf16 / fp32 checkpoints. */
int lmc_checkpoint_write_variant(const char *src_dir, const char *dst_dir, const char *dtype,
                                 lmc_error *err);

#endif
