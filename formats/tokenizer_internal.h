/* Internals of the tokenizer (formats/tokenizer_*.c); not a public API.
 *
 * The pipeline follows the `tokenizers` library: split the raw text on
 * non-normalized added tokens, normalize the other pieces, split those on
 * normalized added tokens, pre-tokenize into words, BPE each word, then the
 * post-processor adds special tokens. No offsets are tracked: ids do not need
 * them. The one place the library looks at offsets (Metaspace's
 * prepend_scheme "first": "does this piece start at original offset 0") is
 * carried as a per-span flag. */
#ifndef LMC_TOKENIZER_INTERNAL_H
#define LMC_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "tokenizer.h"

/* ---- growable byte buffer ---- */
typedef struct tk_buf {
    char *p;
    size_t n, cap;
} tk_buf;
int tk_buf_reserve(tk_buf *b, size_t extra);
int tk_buf_put(tk_buf *b, const void *s, size_t n);
int tk_buf_putc(tk_buf *b, char c);
int tk_buf_put_cp(tk_buf *b, uint32_t cp); /* UTF-8; TK_BADBYTE(x) writes the raw byte */
void tk_buf_free(tk_buf *b);

/* ---- UTF-8 that tolerates invalid bytes ----
 * An invalid byte decodes to TK_BADBYTE(byte), a value outside Unicode that
 * belongs to no category, and encodes back to the same byte. */
#define TK_BADBYTE(b) (0x110000u + (uint32_t)(b))
#define TK_IS_BADBYTE(cp) ((cp) >= 0x110000u)
/* Decode the character at s[i] (i < n): returns its byte length (>= 1). */
size_t tk_utf8_next(const char *s, size_t n, size_t i, uint32_t *cp);
/* Length of the character that ends at s[i-1] (i > 0). */
size_t tk_utf8_prev(const char *s, size_t i);
int tk_utf8_valid(const char *s, size_t n);

/* ---- Unicode properties (tokenizer_unicode.c) ---- */
int tk_uc_is_whitespace(uint32_t cp); /* White_Space (Rust char::is_whitespace) */
int tk_uc_is_numeric(uint32_t cp);    /* Nd, Nl, No (Rust char::is_numeric) */
int tk_uc_is_word(uint32_t cp);       /* regex \w: alphabetic, marks, Nd, Pc, joiners */
int tk_uc_is_punct(uint32_t cp);      /* ASCII punctuation or category P* */
int tk_uc_is_mark(uint32_t cp);       /* general category M* */
/* Full lowercase mapping of one character (Rust char::to_lowercase):
 * writes 1..3 code points, returns the count. */
int tk_uc_lower(uint32_t cp, uint32_t out[3]);
/* Unicode normalization form: 0 NFD, 1 NFC, 2 NFKD, 3 NFKC. */
enum { TK_NFD = 0, TK_NFC = 1, TK_NFKD = 2, TK_NFKC = 3 };
int tk_uc_normalize(const char *s, size_t n, int form, tk_buf *out);

/* ---- regex (PCRE2, UTF + UCP, invalid UTF tolerated, JIT when available) ---- */
typedef struct tk_regex {
    pcre2_code *code;
} tk_regex;
/* literal: match the pattern text as a plain string. */
int tk_regex_compile(tk_regex *re, const char *pat, size_t len, int literal, const char *what,
                     lmc_error *err);
void tk_regex_free(tk_regex *re);

/* Per-call scratch for matching (keeps lmc_tokenizer_encode thread-safe). */
typedef struct tk_ctx {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    struct tk_cache *cache; /* BPE word cache for this call */
} tk_ctx;
int tk_ctx_init(tk_ctx *c, lmc_error *err);
void tk_ctx_free(tk_ctx *c);

/* One piece of a string as a Pattern::find_matches gives it: the ranges cover
 * the whole string, each flagged match or not. */
typedef struct tk_match {
    size_t start, end;
    int is_match;
} tk_match;
typedef struct tk_matches {
    tk_match *v;
    size_t n, cap;
} tk_matches;
int tk_matches_push(tk_matches *m, size_t start, size_t end, int is_match);
void tk_matches_free(tk_matches *m);
/* find_matches of a regex (onig find_iter semantics for empty matches). */
int tk_regex_find(const tk_regex *re, tk_ctx *ctx, const char *s, size_t n, tk_matches *out,
                  lmc_error *err);
/* find_matches of a character predicate: every matching character is a match of its own. */
int tk_pred_find(int (*pred)(uint32_t cp, const void *arg), const void *arg, const char *s,
                 size_t n, tk_matches *out);

/* SplitDelimiterBehavior */
enum { TK_ISOLATED, TK_REMOVED, TK_MERGED_PREV, TK_MERGED_NEXT, TK_CONTIGUOUS };
/* Applies a behavior to matches (in place): the result lists the kept
 * ranges (is_match unused); empty ranges are dropped. */
void tk_apply_behavior(tk_matches *m, int behavior);

/* ---- a list of strings (words, decoder tokens) in one arena ---- */
typedef struct tk_span {
    size_t off, len;
    int first; /* starts at original offset 0 (Metaspace "first") */
    int32_t id; /* >= 0: already a token (an added token) */
} tk_span;
typedef struct tk_strs {
    tk_buf text;
    tk_span *v;
    size_t n, cap;
} tk_strs;
/* Append a string; returns the new span or NULL on OOM. */
tk_span *tk_strs_add(tk_strs *l, const char *s, size_t n, int first, int32_t id);
/* Start a span at the end of the arena, to be filled by tk_buf_put on l->text
 * and closed with tk_strs_close. */
int tk_strs_open(tk_strs *l, int first, int32_t id);
void tk_strs_close(tk_strs *l);
void tk_strs_reset(tk_strs *l);
void tk_strs_free(tk_strs *l);
#define TK_STR(l, i) ((l)->text.p + (l)->v[i].off)

/* ---- hash map string -> int32 ---- */
typedef struct tk_smap {
    struct tk_sent *e;
    size_t cap, n;
    tk_buf pool;
} tk_smap;
int tk_smap_put(tk_smap *m, const char *s, size_t n, int32_t v); /* replaces */
int32_t tk_smap_get(const tk_smap *m, const char *s, size_t n);    /* -1 if absent */
void tk_smap_free(tk_smap *m);
/* Iterate: *it starts at 0; returns 0 when done. */
int tk_smap_iter(const tk_smap *m, size_t *it, const char **s, size_t *n, int32_t *v);
uint64_t tk_hash(const void *p, size_t n);

/* ---- components ---- */
enum {
    TK_N_SEQUENCE = 1, TK_N_PREPEND, TK_N_REPLACE, TK_N_NFC, TK_N_NFD, TK_N_NFKC, TK_N_NFKD,
    TK_N_LOWERCASE, TK_N_STRIP, TK_N_STRIP_ACCENTS, TK_N_BYTELEVEL
};
typedef struct tk_norm {
    int type;
    char *str; /* Prepend text / Replace content */
    size_t str_len;
    tk_regex re; /* Replace */
    int left, right; /* Strip */
    struct tk_norm *sub;
    int n_sub;
} tk_norm;

enum {
    TK_P_SEQUENCE = 1, TK_P_BYTELEVEL, TK_P_SPLIT, TK_P_METASPACE, TK_P_DIGITS, TK_P_WHITESPACE,
    TK_P_WHITESPACE_SPLIT, TK_P_PUNCTUATION, TK_P_BERT, TK_P_CHAR_DELIMITER
};
enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };
typedef struct tk_pretok {
    int type;
    tk_regex re;       /* Split, ByteLevel (GPT-2 regex), Whitespace */
    int behavior, invert;
    int add_prefix_space, use_regex;   /* ByteLevel */
    uint32_t replacement;              /* Metaspace, CharDelimiterSplit */
    int prepend_scheme, split;         /* Metaspace */
    int individual_digits;             /* Digits */
    struct tk_pretok *sub;
    int n_sub;
} tk_pretok;

enum { TK_PP_TEMPLATE = 1, TK_PP_BYTELEVEL, TK_PP_SEQUENCE, TK_PP_ROBERTA, TK_PP_BERT };
typedef struct tk_tpl_piece {
    int32_t *ids; /* special token ids; NULL for the sequence itself */
    int n_ids;
} tk_tpl_piece;
typedef struct tk_post {
    int type;
    tk_tpl_piece *single;
    int n_single;
    int32_t cls, sep;
    struct tk_post *sub;
    int n_sub;
} tk_post;

enum {
    TK_D_SEQUENCE = 1, TK_D_BYTELEVEL, TK_D_METASPACE, TK_D_REPLACE, TK_D_BYTE_FALLBACK,
    TK_D_FUSE, TK_D_STRIP, TK_D_WORDPIECE, TK_D_BPE
};
typedef struct tk_dec {
    int type;
    tk_regex re;     /* Replace */
    char *str;       /* Replace content, WordPiece prefix, BPEDecoder suffix */
    size_t str_len;
    uint32_t ch;     /* Strip content, Metaspace replacement */
    int start, stop; /* Strip */
    int prepend_scheme;
    int cleanup;     /* WordPiece */
    struct tk_dec *sub;
    int n_sub;
} tk_dec;

typedef struct tk_added {
    char *content;
    size_t len;
    char *ncontent; /* normalized content (normalized tokens) */
    size_t nlen;
    int32_t id;
    int special, single_word, lstrip, rstrip, normalized;
} tk_added;

/* The BPE model. */
typedef struct tk_merge_ent {
    uint64_t key; /* left id << 32 | right id; 0 marks an empty slot (ids + 1) */
    int32_t rank, new_id;
} tk_merge_ent;
typedef struct tk_bpe {
    tk_smap vocab;
    tk_merge_ent *merges;
    size_t merge_cap, n_merges;
    int32_t *rank_new_id; /* merge rank -> the token it makes */
    int32_t unk_id; /* -1: none */
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256]; /* <0xNN> tokens, -1 when absent */
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix */
    size_t prefix_len, suffix_len;
} tk_bpe;

struct lmc_tokenizer {
    char *source;
    tk_bpe bpe;
    tk_norm *norm;
    tk_pretok *pretok;
    tk_post *post;
    tk_dec *dec;
    tk_added *added;
    int n_added;
    tk_smap added_map; /* content -> id */
    unsigned char added_first[2][256]; /* [normalized][byte]: some token starts with it */
    /* id -> token text (added tokens override the model) and special flag */
    char **id_tok;
    uint32_t *id_len;
    unsigned char *id_special;
    int32_t n_ids;
};

/* component loaders (tokenizer_json.c) are static; these apply them */
int tk_norm_apply(const tk_norm *nm, tk_ctx *ctx, const char *s, size_t n, tk_buf *out,
                  const char *source, lmc_error *err);
int tk_pretok_apply(const tk_pretok *p, tk_ctx *ctx, const tk_strs *in, tk_strs *out,
                    const char *source, lmc_error *err);
void tk_norm_free(tk_norm *n);
void tk_pretok_free(tk_pretok *p);
void tk_post_free(tk_post *p);
void tk_dec_free(tk_dec *d);

/* BPE one word, appending ids. */
typedef struct tk_ids {
    int32_t *v;
    size_t n, cap;
} tk_ids;
int tk_ids_push(tk_ids *a, int32_t id);
int tk_bpe_init_merges(tk_bpe *b, size_t n); /* n: number of merges (ranks 0..n-1) */
int tk_bpe_add_merge(tk_bpe *b, int32_t left, int32_t right, int32_t rank, int32_t new_id);
int tk_bpe_word(const tk_bpe *b, tk_ctx *ctx, const char *w, size_t n, tk_ids *out,
                const char *source, lmc_error *err);
void tk_bpe_free(tk_bpe *b);
void tk_cache_free(struct tk_cache *c);

/* Steps before the model: added tokens, normalizer, pre-tokenizer. words
 * gets the strings the model sees (and added tokens, id >= 0). */
int tk_encode_words(const lmc_tokenizer *t, tk_ctx *ctx, const char *text, size_t len,
                    tk_strs *words, lmc_error *err);

/* post-processing of a single sequence */
int tk_post_apply(const tk_post *p, const tk_ids *in, tk_ids *out);

/* decoding: tokens (strings) -> joined text */
int tk_dec_apply(const tk_dec *d, tk_ctx *ctx, tk_strs *toks, const char *source, lmc_error *err);

/* GPT-2 bytes_to_unicode */
uint32_t tk_byte_to_cp(unsigned char b);
int tk_cp_to_byte(uint32_t cp); /* -1 if cp is not in the byte-level alphabet */

/* Lossy UTF-8 (Rust String::from_utf8_lossy): invalid sequences -> U+FFFD. */
int tk_utf8_lossy(const char *s, size_t n, tk_buf *out);

#endif
