/* Hugging Face config.json -> lmc_config.
 *
 * model_type llama, mistral, qwen2 (LMC_ARCH_LLAMA), opt (LMC_ARCH_OPT) and
 * gpt2 (LMC_ARCH_GPT2); both transformers 4.x keys (rope_theta, rope_scaling,
 * torch_dtype) and 5.x keys (rope_parameters, dtype). Keys that
 * save_pretrained may leave out take the transformers class default; the
 * shape-defining keys are required. Anything the evaluator could not
 * reproduce exactly (post-LN OPT, yarn RoPE, ...) is refused with a message
 * saying so, never approximated.
 *
 * Sliding-window attention (mistral, qwen2 with use_sliding_window): lmc
 * evaluates with full causal attention, which is exact as long as a window
 * is no longer than sliding_window. max_pos is therefore lowered to
 * sliding_window when that is smaller, so that longer windows are refused
 * by whatever checks seqlen <= max_pos. */
#ifndef LMC_HF_CONFIG_H
#define LMC_HF_CONFIG_H

#include <stddef.h>

#include "../core/model.h"

/* Parse config.json text (len bytes; need not be NUL-terminated). path is
 * used in messages only. cfg.src_dtype is the config's dtype/torch_dtype
 * ("" when absent or not float16/bfloat16/float32); the checkpoint loader
 * replaces it with the tensors' actual dtype. */
int lmc_hf_config_parse(const char *text, size_t len, const char *path, lmc_config *cfg,
                        lmc_error *err);

/* Read and parse PATH; if text is not NULL it receives the file's text
 * (caller frees). */
int lmc_hf_config_load(const char *path, lmc_config *cfg, char **text, lmc_error *err);

#endif
