/* Loading tokenizer.json (cJSON) into the component structures.
 *
 * Supported, as `tokenizers` 0.2x serializes them:
 *   model          BPE (vocab; merges as "a b" or ["a","b"]; unk_token, fuse_unk,
 *                  byte_fallback, ignore_merges, continuing_subword_prefix,
 *                  end_of_word_suffix). dropout is ignored: encoding is the
 *                  deterministic one the library gives with dropout off.
 *   normalizer     Sequence, Prepend, Replace (String or Regex), NFC, NFD, NFKC,
 *                  NFKD, Lowercase, Strip, StripAccents, ByteLevel
 *   pre_tokenizer  Sequence, ByteLevel, Split, Metaspace, Digits, Whitespace,
 *                  WhitespaceSplit, Punctuation, BertPreTokenizer, CharDelimiterSplit
 *   post_processor TemplateProcessing (single), ByteLevel, Sequence,
 *                  RobertaProcessing, BertProcessing
 *   decoder        Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 *                  Strip, WordPiece, BPEDecoder
 *   added_tokens   special or not, single_word, lstrip, rstrip, normalized
 * Anything else is an error naming the component, never a silent guess.
 *
 * Known departures, all outside what real checkpoints exercise:
 * - Regexes run on PCRE2 where the library uses Oniguruma. Both are
 *   backtracking engines with leftmost-first alternation and Unicode classes,
 *   so the patterns tokenizers ship (GPT-2, Llama-3, Qwen2, ...) split the
 *   same; Oniguruma-only syntax (\h as hex digit, ...) and \s/\w on a few
 *   code points (U+180E, marks) may differ.
 * - Unicode tables (normalization forms, lowercase, categories) are Unicode
 *   14 (Python's unicodedata); the library's Rust tables may be newer, which
 *   matters only for characters assigned since.
 * - Added tokens are matched leftmost-longest as the library's Aho-Corasick
 *   does, but by a direct scan (fine for the hundreds of tokens real files
 *   have).
 * - vocab_size is 1 + the largest id (the library counts distinct strings).
 * Every other behaviour was checked against tokenizers 0.23.2 on the
 * components above, including the id numbering of added tokens (the "id"
 * fields of added_tokens are not read: the library recomputes them) and the
 * decoding of normalized added tokens through their normalized form. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ids beyond this are refused: the id table is dense */
#define TK_MAX_ID 16777216.0

typedef struct loader {
    const char *src;
    lmc_error *err;
} loader;

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    return dflt;
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static int oom(loader *L)
{
    return lmc_fail(L->err, "%s: out of memory", L->src);
}

/* First (only) character of a one-character string field. */
static int jchar(loader *L, const cJSON *o, const char *key, const char *dflt, const char *what,
                 uint32_t *cp)
{
    const char *s = jstr(o, key);
    if (!s)
        s = dflt;
    if (!s)
        return lmc_fail(L->err, "%s: %s: missing string field '%s'", L->src, what, key);
    size_t n = strlen(s);
    if (n == 0)
        return lmc_fail(L->err, "%s: %s: field '%s' is empty", L->src, what, key);
    size_t k = tk_utf8_next(s, n, 0, cp);
    if (k != n)
        return lmc_fail(L->err, "%s: %s: field '%s' must be one character", L->src, what, key);
    return 0;
}

/* {"String": "..."} or {"Regex": "..."} */
static int load_pattern(loader *L, const cJSON *o, const char *what, tk_regex *re)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s;
    char w[128];
    snprintf(w, sizeof w, "%s: %s: pattern", L->src, what);
    if (cJSON_IsString(p)) /* a bare string is a literal */
        return tk_regex_compile(re, p->valuestring, strlen(p->valuestring), 1, w, L->err);
    if ((s = jstr(p, "String")))
        return tk_regex_compile(re, s, strlen(s), 1, w, L->err);
    if ((s = jstr(p, "Regex")))
        return tk_regex_compile(re, s, strlen(s), 0, w, L->err);
    return lmc_fail(L->err, "%s: %s: missing pattern ({\"String\": ...} or {\"Regex\": ...})",
                    L->src, what);
}

static int parse_behavior(loader *L, const cJSON *o, const char *what, int dflt, int *out)
{
    const char *b = jstr(o, "behavior");
    if (!b) {
        *out = dflt;
        return 0;
    }
    static const struct {
        const char *name;
        int v;
    } tab[] = {{"Isolated", TK_ISOLATED}, {"Removed", TK_REMOVED},
               {"MergedWithPrevious", TK_MERGED_PREV}, {"MergedWithNext", TK_MERGED_NEXT},
               {"Contiguous", TK_CONTIGUOUS}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(b, tab[i].name)) {
            *out = tab[i].v;
            return 0;
        }
    return lmc_fail(L->err, "%s: %s: unknown split behavior '%s'", L->src, what, b);
}

static int parse_prepend_scheme(loader *L, const cJSON *o, const char *what, int *out)
{
    const char *s = jstr(o, "prepend_scheme");
    if (s) {
        if (!strcmp(s, "always"))
            *out = TK_PREPEND_ALWAYS;
        else if (!strcmp(s, "first"))
            *out = TK_PREPEND_FIRST;
        else if (!strcmp(s, "never"))
            *out = TK_PREPEND_NEVER;
        else
            return lmc_fail(L->err, "%s: %s: unknown prepend_scheme '%s'", L->src, what, s);
        return 0;
    }
    /* older files: add_prefix_space */
    *out = jbool(o, "add_prefix_space", 1) ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    return 0;
}

static const char *type_of(loader *L, const cJSON *o, const char *what)
{
    if (!cJSON_IsObject(o)) {
        lmc_fail(L->err, "%s: %s: expected an object", L->src, what);
        return NULL;
    }
    const char *t = jstr(o, "type");
    if (!t)
        lmc_fail(L->err, "%s: %s: missing \"type\"", L->src, what);
    return t;
}

static int unknown(loader *L, const char *what, const char *type)
{
    return lmc_fail(L->err, "%s: %s: unsupported type '%s'", L->src, what, type);
}

/* Allocates the array of sub-components of a Sequence. */
static const cJSON *seq_items(loader *L, const cJSON *o, const char *key, const char *what,
                              int *n)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a)) {
        lmc_fail(L->err, "%s: %s: Sequence without a \"%s\" array", L->src, what, key);
        return NULL;
    }
    *n = cJSON_GetArraySize(a);
    return a;
}

/* ---- normalizers ---- */

static int load_norm(loader *L, const cJSON *o, tk_norm *nm)
{
    const char *what = "normalizer";
    const char *t = type_of(L, o, what);
    if (!t)
        return -1;
    if (!strcmp(t, "Sequence")) {
        nm->type = TK_N_SEQUENCE;
        int n;
        const cJSON *a = seq_items(L, o, "normalizers", what, &n);
        if (!a)
            return -1;
        nm->sub = calloc((size_t)n + 1, sizeof *nm->sub);
        if (!nm->sub)
            return oom(L);
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
            if (load_norm(L, it, &nm->sub[nm->n_sub++]))
                return -1;
        }
        return 0;
    }
    if (!strcmp(t, "Prepend")) {
        nm->type = TK_N_PREPEND;
        const char *p = jstr(o, "prepend");
        if (!p)
            return lmc_fail(L->err, "%s: normalizer Prepend: missing \"prepend\"", L->src);
        nm->str_len = strlen(p);
        return (nm->str = dupn(p, nm->str_len)) ? 0 : oom(L);
    }
    if (!strcmp(t, "Replace")) {
        nm->type = TK_N_REPLACE;
        const char *c = jstr(o, "content");
        if (!c)
            return lmc_fail(L->err, "%s: normalizer Replace: missing \"content\"", L->src);
        nm->str_len = strlen(c);
        if (!(nm->str = dupn(c, nm->str_len)))
            return oom(L);
        return load_pattern(L, o, "normalizer Replace", &nm->re);
    }
    static const struct {
        const char *name;
        int type;
    } simple[] = {{"NFC", TK_N_NFC},           {"NFD", TK_N_NFD},
                  {"NFKC", TK_N_NFKC},         {"NFKD", TK_N_NFKD},
                  {"Lowercase", TK_N_LOWERCASE}, {"StripAccents", TK_N_STRIP_ACCENTS},
                  {"ByteLevel", TK_N_BYTELEVEL}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (!strcmp(t, simple[i].name)) {
            nm->type = simple[i].type;
            return 0;
        }
    if (!strcmp(t, "Strip")) {
        nm->type = TK_N_STRIP;
        nm->left = jbool(o, "strip_left", 1);
        nm->right = jbool(o, "strip_right", 1);
        return 0;
    }
    return unknown(L, what, t);
}

/* ---- pre-tokenizers ---- */

static const char gpt2_re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_pretok(loader *L, const cJSON *o, tk_pretok *p)
{
    const char *what = "pre_tokenizer";
    const char *t = type_of(L, o, what);
    if (!t)
        return -1;
    if (!strcmp(t, "Sequence")) {
        p->type = TK_P_SEQUENCE;
        int n;
        const cJSON *a = seq_items(L, o, "pretokenizers", what, &n);
        if (!a)
            return -1;
        p->sub = calloc((size_t)n + 1, sizeof *p->sub);
        if (!p->sub)
            return oom(L);
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
            if (load_pretok(L, it, &p->sub[p->n_sub++]))
                return -1;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) {
        p->type = TK_P_BYTELEVEL;
        p->add_prefix_space = jbool(o, "add_prefix_space", 1);
        p->use_regex = jbool(o, "use_regex", 1);
        if (p->use_regex) {
            char w[300];
            snprintf(w, sizeof w, "%s: pre_tokenizer ByteLevel", L->src);
            return tk_regex_compile(&p->re, gpt2_re, sizeof gpt2_re - 1, 0, w, L->err);
        }
        return 0;
    }
    if (!strcmp(t, "Split")) {
        p->type = TK_P_SPLIT;
        p->invert = jbool(o, "invert", 0);
        if (parse_behavior(L, o, "pre_tokenizer Split", TK_ISOLATED, &p->behavior))
            return -1;
        if (!jstr(o, "behavior"))
            return lmc_fail(L->err, "%s: pre_tokenizer Split: missing \"behavior\"", L->src);
        return load_pattern(L, o, "pre_tokenizer Split", &p->re);
    }
    if (!strcmp(t, "Metaspace")) {
        p->type = TK_P_METASPACE;
        p->split = jbool(o, "split", 1);
        if (jchar(L, o, "replacement", "\xe2\x96\x81", "pre_tokenizer Metaspace", &p->replacement))
            return -1;
        return parse_prepend_scheme(L, o, "pre_tokenizer Metaspace", &p->prepend_scheme);
    }
    if (!strcmp(t, "Digits")) {
        p->type = TK_P_DIGITS;
        p->individual_digits = jbool(o, "individual_digits", 0);
        return 0;
    }
    if (!strcmp(t, "Whitespace")) {
        p->type = TK_P_WHITESPACE;
        return 0;
    }
    if (!strcmp(t, "WhitespaceSplit")) {
        p->type = TK_P_WHITESPACE_SPLIT;
        return 0;
    }
    if (!strcmp(t, "BertPreTokenizer")) {
        p->type = TK_P_BERT;
        return 0;
    }
    if (!strcmp(t, "Punctuation")) {
        p->type = TK_P_PUNCTUATION;
        return parse_behavior(L, o, "pre_tokenizer Punctuation", TK_ISOLATED, &p->behavior);
    }
    if (!strcmp(t, "CharDelimiterSplit")) {
        p->type = TK_P_CHAR_DELIMITER;
        return jchar(L, o, "delimiter", NULL, "pre_tokenizer CharDelimiterSplit", &p->replacement);
    }
    return unknown(L, what, t);
}

/* ---- post-processors ---- */

/* A token id: an integer in [0, TK_MAX_ID) (whether the vocabulary has it
 * is checked once the id table exists, by check_post_ids). */
static int json_id(const cJSON *v, int32_t *id)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < TK_MAX_ID) ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return -1;
    *id = (int32_t)v->valuedouble;
    return 0;
}

/* ["<s>", 1] */
static int token_pair(loader *L, const cJSON *o, const char *key, const char *what, int32_t *id)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a) || json_id(cJSON_GetArrayItem(a, 1), id) != 0)
        return lmc_fail(L->err, "%s: %s: \"%s\" must be [token, id]", L->src, what, key);
    return 0;
}

static int load_post(loader *L, const cJSON *o, tk_post *p)
{
    const char *what = "post_processor";
    const char *t = type_of(L, o, what);
    if (!t)
        return -1;
    if (!strcmp(t, "Sequence")) {
        p->type = TK_PP_SEQUENCE;
        int n;
        const cJSON *a = seq_items(L, o, "processors", what, &n);
        if (!a)
            return -1;
        p->sub = calloc((size_t)n + 1, sizeof *p->sub);
        if (!p->sub)
            return oom(L);
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
            if (load_post(L, it, &p->sub[p->n_sub++]))
                return -1;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) {
        p->type = TK_PP_BYTELEVEL;
        return 0;
    }
    if (!strcmp(t, "RobertaProcessing") || !strcmp(t, "BertProcessing")) {
        p->type = t[0] == 'R' ? TK_PP_ROBERTA : TK_PP_BERT;
        if (token_pair(L, o, "cls", t, &p->cls) || token_pair(L, o, "sep", t, &p->sep))
            return -1;
        return 0;
    }
    if (!strcmp(t, "TemplateProcessing")) {
        p->type = TK_PP_TEMPLATE;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
        if (!cJSON_IsArray(single))
            return lmc_fail(L->err, "%s: post_processor TemplateProcessing: missing \"single\"",
                            L->src);
        int n = cJSON_GetArraySize(single);
        p->single = calloc((size_t)n + 1, sizeof *p->single);
        if (!p->single)
            return oom(L);
        const cJSON *it;
        cJSON_ArrayForEach(it, single)
        {
            tk_tpl_piece *pc = &p->single[p->n_single++];
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
            if (sq)
                continue; /* the sequence itself (ids NULL) */
            const char *name = jstr(sp, "id");
            if (!name)
                return lmc_fail(L->err,
                                "%s: post_processor TemplateProcessing: a piece of \"single\" is "
                                "neither SpecialToken nor Sequence",
                                L->src);
            const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, name);
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
            if (!cJSON_IsArray(ids))
                return lmc_fail(L->err,
                                "%s: post_processor TemplateProcessing: special token '%s' is not "
                                "in special_tokens",
                                L->src, name);
            int k = cJSON_GetArraySize(ids);
            pc->ids = calloc((size_t)k + 1, sizeof *pc->ids);
            if (!pc->ids)
                return oom(L);
            const cJSON *id;
            cJSON_ArrayForEach(id, ids)
            {
                if (json_id(id, &pc->ids[pc->n_ids]) != 0)
                    return lmc_fail(L->err,
                                    "%s: post_processor TemplateProcessing: ids of '%s' must be "
                                    "token ids",
                                    L->src, name);
                pc->n_ids++;
            }
        }
        return 0;
    }
    return unknown(L, what, t);
}

/* ---- decoders ---- */

/* A count (the library's usize): absent or null is 0, else an integer in
 * [0, INT_MAX]. */
static int jcount(loader *L, const cJSON *o, const char *key, const char *what, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= INT_MAX) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return lmc_fail(L->err, "%s: %s: \"%s\" must be a non-negative integer", L->src, what,
                        key);
    *out = (int)v->valuedouble;
    return 0;
}

static int load_dec(loader *L, const cJSON *o, tk_dec *d)
{
    const char *what = "decoder";
    const char *t = type_of(L, o, what);
    if (!t)
        return -1;
    if (!strcmp(t, "Sequence")) {
        d->type = TK_D_SEQUENCE;
        int n;
        const cJSON *a = seq_items(L, o, "decoders", what, &n);
        if (!a)
            return -1;
        d->sub = calloc((size_t)n + 1, sizeof *d->sub);
        if (!d->sub)
            return oom(L);
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
            if (load_dec(L, it, &d->sub[d->n_sub++]))
                return -1;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) {
        d->type = TK_D_BYTELEVEL;
        return 0;
    }
    if (!strcmp(t, "ByteFallback")) {
        d->type = TK_D_BYTE_FALLBACK;
        return 0;
    }
    if (!strcmp(t, "Fuse")) {
        d->type = TK_D_FUSE;
        return 0;
    }
    if (!strcmp(t, "Metaspace")) {
        d->type = TK_D_METASPACE;
        if (jchar(L, o, "replacement", "\xe2\x96\x81", "decoder Metaspace", &d->ch))
            return -1;
        return parse_prepend_scheme(L, o, "decoder Metaspace", &d->prepend_scheme);
    }
    if (!strcmp(t, "Replace")) {
        d->type = TK_D_REPLACE;
        const char *c = jstr(o, "content");
        if (!c)
            return lmc_fail(L->err, "%s: decoder Replace: missing \"content\"", L->src);
        d->str_len = strlen(c);
        if (!(d->str = dupn(c, d->str_len)))
            return oom(L);
        return load_pattern(L, o, "decoder Replace", &d->re);
    }
    if (!strcmp(t, "Strip")) {
        d->type = TK_D_STRIP;
        if (jchar(L, o, "content", " ", "decoder Strip", &d->ch))
            return -1;
        if (jcount(L, o, "start", "decoder Strip", &d->start) ||
            jcount(L, o, "stop", "decoder Strip", &d->stop))
            return -1;
        return 0;
    }
    if (!strcmp(t, "WordPiece") || !strcmp(t, "BPEDecoder")) {
        int wp = t[0] == 'W';
        d->type = wp ? TK_D_WORDPIECE : TK_D_BPE;
        const char *s = jstr(o, wp ? "prefix" : "suffix");
        if (!s)
            s = wp ? "##" : "</w>";
        d->str_len = strlen(s);
        d->cleanup = jbool(o, "cleanup", 1);
        return (d->str = dupn(s, d->str_len)) ? 0 : oom(L);
    }
    return unknown(L, what, t);
}

/* ---- model ---- */

static int load_model(loader *L, const cJSON *o, tk_bpe *b, int32_t *max_id)
{
    if (!cJSON_IsObject(o))
        return lmc_fail(L->err, "%s: missing \"model\" object", L->src);
    const char *t = jstr(o, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(o, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(o, "merges");
    if (t && strcmp(t, "BPE"))
        return lmc_fail(L->err, "%s: model: unsupported type '%s' (only BPE is implemented)",
                        L->src, t);
    if (!t && !merges)
        return lmc_fail(L->err, "%s: model: no \"type\" and no \"merges\": not a BPE model",
                        L->src);
    if (!cJSON_IsObject(vocab))
        return lmc_fail(L->err, "%s: model BPE: missing \"vocab\" object", L->src);
    if (merges && !cJSON_IsArray(merges) && !cJSON_IsNull(merges))
        return lmc_fail(L->err, "%s: model BPE: \"merges\" must be an array", L->src);
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= TK_MAX_ID ||
            it->valuedouble != (double)(int32_t)it->valuedouble)
            return lmc_fail(L->err, "%s: model BPE: vocab entry '%s' has no valid id", L->src,
                            it->string);
        int32_t id = (int32_t)it->valuedouble;
        if (tk_smap_put(&b->vocab, it->string, strlen(it->string), id))
            return oom(L);
        if (id > *max_id)
            *max_id = id;
    }
    const char *pre = jstr(o, "continuing_subword_prefix");
    const char *suf = jstr(o, "end_of_word_suffix");
    if (pre && *pre) {
        b->prefix_len = strlen(pre);
        if (!(b->prefix = dupn(pre, b->prefix_len)))
            return oom(L);
    }
    if (suf && *suf) {
        b->suffix_len = strlen(suf);
        if (!(b->suffix = dupn(suf, b->suffix_len)))
            return oom(L);
    }
    b->fuse_unk = jbool(o, "fuse_unk", 0);
    b->byte_fallback = jbool(o, "byte_fallback", 0);
    b->ignore_merges = jbool(o, "ignore_merges", 0);
    const char *unk = jstr(o, "unk_token");
    b->unk_id = -1;
    if (unk) {
        b->unk_id = tk_smap_get(&b->vocab, unk, strlen(unk));
        if (b->unk_id < 0)
            b->unk_id = -2; /* an error only if a character ever needs it, as in the library */
    }
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_ids[i] = tk_smap_get(&b->vocab, name, 6);
    }
    int nm = cJSON_IsArray(merges) ? cJSON_GetArraySize(merges) : 0;
    if (tk_bpe_init_merges(b, (size_t)nm))
        return oom(L);
    tk_buf joined = {0};
    int rank = 0, rc = 0;
    if (nm)
        cJSON_ArrayForEach(it, merges)
        {
            const char *a, *c;
            size_t al, cl;
            if (cJSON_IsString(it)) {
                const char *s = it->valuestring, *sp = strchr(s, ' ');
                if (!sp || strchr(sp + 1, ' ')) {
                    rc = lmc_fail(L->err,
                                  "%s: model BPE: merge %d \"%s\" is not two tokens separated by "
                                  "one space",
                                  L->src, rank, s);
                    break;
                }
                a = s;
                al = (size_t)(sp - s);
                c = sp + 1;
                cl = strlen(c);
            } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                       cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                       cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
                a = cJSON_GetArrayItem(it, 0)->valuestring;
                c = cJSON_GetArrayItem(it, 1)->valuestring;
                al = strlen(a);
                cl = strlen(c);
            } else {
                rc = lmc_fail(L->err, "%s: model BPE: merge %d is neither \"a b\" nor [\"a\", \"b\"]",
                              L->src, rank);
                break;
            }
            int32_t ia = tk_smap_get(&b->vocab, a, al), ic = tk_smap_get(&b->vocab, c, cl);
            if (ia < 0 || ic < 0) {
                rc = lmc_fail(L->err, "%s: model BPE: merge %d names token '%.*s' which is not in "
                                      "the vocab",
                              L->src, rank, (int)(ia < 0 ? al : cl), ia < 0 ? a : c);
                break;
            }
            /* merged token = a + b without b's continuing_subword_prefix */
            size_t skip = b->prefix_len <= cl ? b->prefix_len : cl;
            joined.n = 0;
            if (tk_buf_put(&joined, a, al) || tk_buf_put(&joined, c + skip, cl - skip)) {
                rc = oom(L);
                break;
            }
            int32_t in = tk_smap_get(&b->vocab, joined.p, joined.n);
            if (in < 0) {
                rc = lmc_fail(L->err,
                              "%s: model BPE: merge %d produces '%.*s' which is not in the vocab",
                              L->src, rank, (int)joined.n, joined.p);
                break;
            }
            if (tk_bpe_add_merge(b, ia, ic, rank, in)) {
                rc = oom(L);
                break;
            }
            rank++;
        }
    tk_buf_free(&joined);
    return rc;
}

/* ---- added tokens ---- */

/* Ids as the library assigns them when it loads the file (the "id" fields
 * are not read): a token of the model vocabulary keeps its model id, each
 * other new token takes the next id from the number of vocabulary entries. */
static int load_added(loader *L, const cJSON *arr, lmc_tokenizer *t, int32_t *max_id)
{
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return lmc_fail(L->err, "%s: \"added_tokens\" must be an array", L->src);
    int n = cJSON_GetArraySize(arr), k = 0;
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added)
        return oom(L);
    int32_t next_id = (int32_t)t->bpe.vocab.n;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        const char *c = jstr(it, "content");
        if (!c)
            return lmc_fail(L->err, "%s: added_tokens[%d]: missing \"content\"", L->src, k);
        k++;
        if (!*c)
            continue; /* the library ignores empty tokens */
        size_t len = strlen(c);
        tk_added tok = {0};
        tok.special = jbool(it, "special", 0);
        tok.single_word = jbool(it, "single_word", 0);
        tok.lstrip = jbool(it, "lstrip", 0);
        tok.rstrip = jbool(it, "rstrip", 0);
        tok.normalized = jbool(it, "normalized", !tok.special);
        int32_t id = tk_smap_get(&t->added_map, c, len);
        tk_added *a = NULL;
        if (id >= 0) { /* the same content again: its new properties win */
            for (int i = 0; i < t->n_added && !a; i++)
                if (t->added[i].id == id)
                    a = &t->added[i];
        } else {
            id = tk_smap_get(&t->bpe.vocab, c, len);
            if (id < 0) {
                if (next_id >= (int32_t)TK_MAX_ID)
                    return lmc_fail(L->err, "%s: added_tokens: too many tokens", L->src);
                id = next_id++;
            }
            /* one entry per id: a later token with the same id replaces it */
            for (int i = 0; i < t->n_added && !a; i++)
                if (t->added[i].id == id)
                    a = &t->added[i];
        }
        if (!a)
            a = &t->added[t->n_added++];
        free(a->content);
        free(a->ncontent);
        *a = tok;
        a->id = id;
        a->len = len;
        if (!(a->content = dupn(c, len)))
            return oom(L);
        if (tk_smap_put(&t->added_map, c, len, id))
            return oom(L);
        if (id > *max_id)
            *max_id = id;
    }
    return 0;
}

static int build_id_table(loader *L, lmc_tokenizer *t, int32_t max_id)
{
    t->n_ids = max_id + 1;
    t->id_tok = calloc((size_t)t->n_ids + 1, sizeof *t->id_tok);
    t->id_len = calloc((size_t)t->n_ids + 1, sizeof *t->id_len);
    t->id_special = calloc((size_t)t->n_ids + 1, 1);
    if (!t->id_tok || !t->id_len || !t->id_special)
        return oom(L);
    /* model vocab: the strings live in the map's pool */
    size_t it = 0, n;
    const char *s;
    int32_t v;
    while (tk_smap_iter(&t->bpe.vocab, &it, &s, &n, &v)) {
        t->id_tok[v] = (char *)s;
        t->id_len[v] = (uint32_t)n;
    }
    /* added tokens decode as their normalized form (so that the decoder
     * inverts the normalizer), as the library's simple_id_to_token does */
    for (int i = 0; i < t->n_added; i++) {
        const tk_added *a = &t->added[i];
        int norm = a->normalized && t->norm;
        t->id_tok[a->id] = norm ? a->ncontent : a->content;
        t->id_len[a->id] = (uint32_t)(norm ? a->nlen : a->len);
    }
    /* special: the token's text is the content of a special added token */
    tk_smap special = {0};
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].special && tk_smap_put(&special, t->added[i].content, t->added[i].len, 1)) {
            tk_smap_free(&special);
            return oom(L);
        }
    for (int32_t i = 0; i < t->n_ids && special.n; i++)
        if (t->id_tok[i] && tk_smap_get(&special, t->id_tok[i], t->id_len[i]) >= 0)
            t->id_special[i] = 1;
    tk_smap_free(&special);
    return 0;
}

/* The ids a post-processor adds must be tokens of the vocabulary: the
 * library would emit them as they are, but an id no token has is no input a
 * model can take (and would break ids < vocab_size). */
static int check_post_ids(loader *L, const lmc_tokenizer *t, const tk_post *p)
{
    int32_t pair[2] = {p->cls, p->sep};
    if (p->type == TK_PP_BERT || p->type == TK_PP_ROBERTA)
        for (int i = 0; i < 2; i++)
            if (pair[i] >= t->n_ids || !t->id_tok[pair[i]])
                return lmc_fail(L->err, "%s: post_processor: special token id %d is not in the "
                                        "vocabulary",
                                L->src, pair[i]);
    for (int i = 0; i < p->n_single; i++)
        for (int j = 0; j < p->single[i].n_ids; j++) {
            int32_t id = p->single[i].ids[j];
            if (id >= t->n_ids || !t->id_tok[id])
                return lmc_fail(L->err, "%s: post_processor TemplateProcessing: special token "
                                        "id %d is not in the vocabulary",
                                L->src, id);
        }
    for (int i = 0; i < p->n_sub; i++)
        if (check_post_ids(L, t, &p->sub[i]))
            return -1;
    return 0;
}

/* normalized added tokens are matched in their normalized form */
static int normalize_added(loader *L, lmc_tokenizer *t)
{
    tk_ctx ctx;
    if (tk_ctx_init(&ctx, L->err))
        return lmc_fail_prefix(L->err, L->src);
    int rc = 0;
    tk_buf out = {0};
    for (int i = 0; i < t->n_added && !rc; i++) {
        tk_added *a = &t->added[i];
        if (!a->normalized)
            continue;
        if (t->norm) {
            rc = tk_norm_apply(t->norm, &ctx, a->content, a->len, &out, L->src, L->err);
            if (!rc) {
                a->nlen = out.n;
                if (!(a->ncontent = dupn(out.p ? out.p : "", out.n)))
                    rc = oom(L);
            }
        } else {
            a->nlen = a->len;
            if (!(a->ncontent = dupn(a->content, a->len)))
                rc = oom(L);
        }
    }
    tk_buf_free(&out);
    tk_ctx_free(&ctx);
    for (int i = 0; i < t->n_added && !rc; i++) {
        const tk_added *a = &t->added[i];
        const char *c = a->normalized ? a->ncontent : a->content;
        size_t cl = a->normalized ? a->nlen : a->len;
        if (cl)
            t->added_first[a->normalized ? 1 : 0][(unsigned char)c[0]] = 1;
    }
    return rc;
}

void lmc_tokenizer_free(lmc_tokenizer *t)
{
    if (!t)
        return;
    tk_bpe_free(&t->bpe);
    if (t->norm) {
        tk_norm_free(t->norm);
        free(t->norm);
    }
    if (t->pretok) {
        tk_pretok_free(t->pretok);
        free(t->pretok);
    }
    if (t->post) {
        tk_post_free(t->post);
        free(t->post);
    }
    if (t->dec) {
        tk_dec_free(t->dec);
        free(t->dec);
    }
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].ncontent);
    }
    free(t->added);
    tk_smap_free(&t->added_map);
    free(t->id_tok);
    free(t->id_len);
    free(t->id_special);
    free(t->source);
    free(t);
}

/* The document, a JSON object; NULL with a message naming source. */
static cJSON *parse_root(const char *json, size_t len, const char *source, lmc_error *err)
{
    const char *end = NULL;
    cJSON *root = json ? cJSON_ParseWithLengthOpts(json, len, &end, 0) : NULL;
    if (!root) {
        size_t at = json && end && end >= json ? (size_t)(end - json) : 0;
        lmc_fail(err, "%s: not valid JSON (error near byte %zu)", source, at);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        lmc_fail(err, "%s: not a tokenizer.json (top level is not an object)", source);
        return NULL;
    }
    return root;
}

int lmc_tokenizer_json_check(const char *json, size_t len, const char *source, lmc_error *err)
{
    cJSON *root = parse_root(json, len, source ? source : "tokenizer.json", err);
    cJSON_Delete(root);
    return root ? 0 : -1;
}

int lmc_tokenizer_from_json(const char *json, size_t len, const char *source, lmc_tokenizer **out,
                            lmc_error *err)
{
    *out = NULL;
    if (!source)
        source = "tokenizer.json";
    loader L = {source, err};
    cJSON *root = parse_root(json, len, source, err);
    if (!root)
        return -1;
    lmc_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->source = dupn(source, strlen(source)))) {
        free(t);
        cJSON_Delete(root);
        return lmc_fail(err, "%s: out of memory", source);
    }
    int32_t max_id = -1;
    int rc = load_model(&L, cJSON_GetObjectItemCaseSensitive(root, "model"), &t->bpe, &max_id);
    const cJSON *o;
    if (!rc && (o = cJSON_GetObjectItemCaseSensitive(root, "normalizer")) && !cJSON_IsNull(o)) {
        t->norm = calloc(1, sizeof *t->norm);
        rc = t->norm ? load_norm(&L, o, t->norm) : oom(&L);
    }
    if (!rc && (o = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) && !cJSON_IsNull(o)) {
        t->pretok = calloc(1, sizeof *t->pretok);
        rc = t->pretok ? load_pretok(&L, o, t->pretok) : oom(&L);
    }
    if (!rc && (o = cJSON_GetObjectItemCaseSensitive(root, "post_processor")) && !cJSON_IsNull(o)) {
        t->post = calloc(1, sizeof *t->post);
        rc = t->post ? load_post(&L, o, t->post) : oom(&L);
    }
    if (!rc && (o = cJSON_GetObjectItemCaseSensitive(root, "decoder")) && !cJSON_IsNull(o)) {
        t->dec = calloc(1, sizeof *t->dec);
        rc = t->dec ? load_dec(&L, o, t->dec) : oom(&L);
    }
    if (!rc)
        rc = load_added(&L, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), t, &max_id);
    if (!rc)
        rc = normalize_added(&L, t);
    if (!rc)
        rc = build_id_table(&L, t, max_id);
    if (!rc && t->post)
        rc = check_post_ids(&L, t, t->post);
    cJSON_Delete(root);
    if (rc) {
        lmc_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int lmc_tokenizer_vocab_size(const lmc_tokenizer *t)
{
    return (int)t->n_ids;
}

int lmc_tokenizer_token_id(const lmc_tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    int32_t id = tk_smap_get(&t->added_map, token, n);
    return id >= 0 ? id : tk_smap_get(&t->bpe.vocab, token, n);
}
