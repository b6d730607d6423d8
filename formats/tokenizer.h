/* Hugging Face tokenizer.json, encoded exactly as the `tokenizers` library
 * (0.2x) does: added tokens, normalizers, pre-tokenizers, the BPE model,
 * post-processors and decoders. The supported components, and the few known
 * departures, are listed at the top of formats/tokenizer_json.c; anything
 * else is a load error naming the file and the component.
 *
 * Input text is UTF-8. Invalid UTF-8 (which the Python library cannot even
 * receive) is accepted: every invalid byte is a character of its own that no
 * regex class matches; the byte-level alphabet maps it like any byte, and a
 * byte_fallback model encodes it as its <0xNN> token (else unk). */
#ifndef LMC_TOKENIZER_H
#define LMC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"

typedef struct lmc_tokenizer lmc_tokenizer;

/* json: the text of tokenizer.json; source names it in error messages. */
int lmc_tokenizer_from_json(const char *json, size_t len, const char *source, lmc_tokenizer **out,
                            lmc_error *err);
/* Is json a JSON object? What the model loaders check at load, so that a
 * tokenizer.json that does not parse is refused naming the file before any
 * work is done; the components are checked by lmc_tokenizer_from_json. */
int lmc_tokenizer_json_check(const char *json, size_t len, const char *source, lmc_error *err);
/* ids: malloc'ed array (caller frees). add_special: the tokenizer's default
 * special tokens (post-processor), as tokenizer(text).input_ids does.
 * Safe to call from several threads on one tokenizer. */
int lmc_tokenizer_encode(const lmc_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, size_t *n, lmc_error *err);
/* text: malloc'ed, NUL-terminated (caller frees). Unknown ids are skipped, as
 * the library does. */
int lmc_tokenizer_decode(const lmc_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                         char **text, size_t *len, lmc_error *err);
/* 1 + the largest id of the model vocabulary and the added tokens. */
int lmc_tokenizer_vocab_size(const lmc_tokenizer *t);
int lmc_tokenizer_token_id(const lmc_tokenizer *t, const char *token); /* -1 if absent */
void lmc_tokenizer_free(lmc_tokenizer *t);

#endif
