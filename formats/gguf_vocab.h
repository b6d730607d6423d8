/* tokenizer.json as GGUF tokenizer metadata (tokenizer.ggml.*) that makes
 * llama.cpp tokenize text exactly as the Hugging Face tokenizer does.
 *
 * Two tokenizer families are mapped; any other tokenizer.json is refused:
 * - SentencePiece-style BPE with byte fallback (Llama-2 layout: normalizer
 *   Prepend("▁") + Replace(" ", "▁"), or a Metaspace pre-tokenizer) ->
 *   tokenizer.ggml.model "llama". llama.cpp's SPM tokenizer merges, over the
 *   whole text, the adjacent pair whose concatenation is the best-scored
 *   token; score = -(rank of the first merge that produces the token) makes
 *   that the lowest-rank merge, which is what the BPE model applies. (The
 *   two agree when every token is reached through the merge list, as in
 *   tokenizers converted from SentencePiece; the tests check data/eval.txt.)
 * - Byte-level BPE (GPT-2 ByteLevel with its regex; Llama-3 and Qwen2 Split
 *   regexes + ByteLevel) -> "gpt2" with merges and tokenizer.ggml.pre
 *   "gpt-2", "llama-bpe" or "qwen2", which select the same regex in
 *   llama.cpp.
 * Token types: added special tokens CONTROL, other added tokens
 * USER_DEFINED, <0xNN> byte tokens (SPM) BYTE, the unk token UNKNOWN; ids
 * the tokenizer does not use (vocab_size larger) are "[PADn]" UNUSED, as
 * llama.cpp's converter writes them. BOS/EOS and add_bos/add_eos follow
 * the post-processor (what lmc tokenize adds by default). */
#ifndef LMC_GGUF_VOCAB_H
#define LMC_GGUF_VOCAB_H

#include <stddef.h>

#include "../core/model.h"
#include "gguf.h"

/* Adds the tokenizer.ggml.* keys for tokenizer.json (json, len) of a model
 * with cfg->vocab embedding rows. Returns 0; 1 when llama.cpp's tokenizers
 * cannot reproduce it (the reason in why); -1 on an error. */
int lmc_gguf_add_vocab(lmc_gguf *g, const char *json, size_t len, const lmc_config *cfg,
                       char *why, size_t nwhy, lmc_error *err);

#endif
