/* tokenizer.json -> tokenizer.ggml.* (see gguf_vocab.h). The strings come
 * from the JSON; the ids of added tokens from lmc's tokenizer, which numbers
 * them as the library does. */
#include "gguf_vocab.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* The split regexes llama.cpp knows by pre-tokenizer name (as tokenizer.json
 * spells them; llama.cpp's own copies are equivalent rewrites). */
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *type_of(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static const cJSON *item(const cJSON *o, const char *k)
{
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int is_true(const cJSON *o, const char *k) { return cJSON_IsTrue(item(o, k)); }

static int str_is(const cJSON *o, const char *k, const char *want)
{
    const cJSON *v = item(o, k);
    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

typedef struct vocab {
    int n;          /* entries: the model's embedding rows */
    char **tok;     /* NULL: unused id */
    int32_t *type;
    float *score;
    int bos, eos, unk, add_bos, add_eos;
} vocab;

static void vocab_free(vocab *v)
{
    for (int i = 0; i < v->n && v->tok; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->type);
    free(v->score);
}

/* "▁" U+2581 */
static const char SPACE_MARK[] = "\xe2\x96\x81";

/* SentencePiece-style (returns 1) or byte-level (2) family, and the
 * llama.cpp pre-tokenizer name; 0 with a reason when neither. */
static int family(const cJSON *root, const cJSON *model, const char **pre, int *space_prefix,
                  char *why, size_t nwhy)
{
    const cJSON *norm = item(root, "normalizer"), *pt = item(root, "pre_tokenizer");
    if (is_true(model, "byte_fallback")) {
        *pre = "default";
        const char *nt = norm ? type_of(norm) : NULL;
        if (!pt && nt && !strcmp(nt, "Sequence")) {
            const cJSON *ns = item(norm, "normalizers");
            int n = cJSON_GetArraySize(ns), k = 0, prepend = 0;
            const cJSON *a = n > 0 ? cJSON_GetArrayItem(ns, 0) : NULL;
            if (a && type_of(a) && !strcmp(type_of(a), "Prepend") && str_is(a, "prepend", SPACE_MARK)) {
                prepend = 1;
                k = 1;
            }
            const cJSON *r = k < n ? cJSON_GetArrayItem(ns, k) : NULL;
            if (r && n == k + 1 && type_of(r) && !strcmp(type_of(r), "Replace") &&
                str_is(item(r, "pattern"), "String", " ") && str_is(r, "content", SPACE_MARK)) {
                *space_prefix = prepend;
                return 1;
            }
        } else if (!norm && pt && type_of(pt) && !strcmp(type_of(pt), "Metaspace") &&
                   str_is(pt, "replacement", SPACE_MARK) && !is_true(pt, "split")) {
            *space_prefix = !str_is(pt, "prepend_scheme", "never");
            return 1;
        }
        snprintf(why, nwhy, "a byte-fallback BPE whose normalizer/pre-tokenizer is not the "
                            "SentencePiece layout llama.cpp's SPM tokenizer implements "
                            "(Prepend+Replace or an unsplit Metaspace)");
        return 0;
    }
    if (norm && !(type_of(norm) && !strcmp(type_of(norm), "NFC"))) {
        snprintf(why, nwhy, "a byte-level BPE with a %s normalizer, which llama.cpp does not apply",
                 type_of(norm) ? type_of(norm) : "(untyped)");
        return 0;
    }
    const char *t = pt ? type_of(pt) : NULL;
    if (t && !strcmp(t, "ByteLevel") && !is_true(pt, "add_prefix_space") &&
        is_true(pt, "use_regex") && !norm) {
        *pre = "gpt-2";
        return 2;
    }
    if (t && !strcmp(t, "Sequence")) {
        const cJSON *ps = item(pt, "pretokenizers");
        const cJSON *s = cJSON_GetArrayItem(ps, 0), *b = cJSON_GetArrayItem(ps, 1);
        if (cJSON_GetArraySize(ps) == 2 && type_of(s) && !strcmp(type_of(s), "Split") &&
            str_is(s, "behavior", "Isolated") && !is_true(s, "invert") && type_of(b) &&
            !strcmp(type_of(b), "ByteLevel") && !is_true(b, "add_prefix_space") &&
            !is_true(b, "use_regex")) {
            const cJSON *re = item(item(s, "pattern"), "Regex");
            int ign = is_true(model, "ignore_merges");
            if (cJSON_IsString(re) && !strcmp(re->valuestring, RE_LLAMA3) && ign && !norm) {
                *pre = "llama-bpe";
                return 2;
            }
            if (cJSON_IsString(re) && !strcmp(re->valuestring, RE_QWEN2) && !ign) {
                *pre = "qwen2"; /* Qwen2's NFC normalizer: llama.cpp skips it (same on NFC text) */
                return 2;
            }
        }
    }
    snprintf(why, nwhy, "a byte-level BPE whose pre-tokenizer is none of GPT-2's, Llama-3's or "
                        "Qwen2's (llama.cpp selects its regex by name)");
    return 0;
}

/* The post-processor's BOS (leading) and EOS (trailing) special tokens. */
static int specials(const cJSON *root, vocab *v, char *why, size_t nwhy)
{
    const cJSON *pp = item(root, "post_processor");
    const cJSON *tp = NULL;
    if (pp && type_of(pp) && !strcmp(type_of(pp), "TemplateProcessing"))
        tp = pp;
    else if (pp && type_of(pp) && !strcmp(type_of(pp), "Sequence")) {
        const cJSON *x;
        cJSON_ArrayForEach(x, item(pp, "processors")) if (type_of(x) &&
                                                           !strcmp(type_of(x), "TemplateProcessing"))
            tp = x;
        cJSON_ArrayForEach(x, item(pp, "processors")) if (type_of(x) &&
                                                           strcmp(type_of(x), "TemplateProcessing") &&
                                                           strcmp(type_of(x), "ByteLevel"))
        {
            snprintf(why, nwhy, "post-processor %s", type_of(x));
            return 1;
        }
    } else if (pp && !(type_of(pp) && !strcmp(type_of(pp), "ByteLevel"))) {
        snprintf(why, nwhy, "post-processor %s (llama.cpp adds at most one BOS and one EOS)",
                 type_of(pp) ? type_of(pp) : "(untyped)");
        return 1;
    }
    if (!tp)
        return 0;
    const cJSON *single = item(tp, "single"), *st = item(tp, "special_tokens"), *x;
    int seen_seq = 0, nlead = 0, ntrail = 0, lead = -1, trail = -1;
    cJSON_ArrayForEach(x, single)
    {
        const cJSON *sp = item(x, "SpecialToken");
        if (item(x, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const cJSON *name = item(sp, "id");
        const cJSON *ids = cJSON_IsString(name) ? item(item(st, name->valuestring), "ids") : NULL;
        if (!cJSON_IsArray(ids)) {
            snprintf(why, nwhy, "post-processor template item without ids");
            return 1;
        }
        const cJSON *id;
        cJSON_ArrayForEach(id, ids)
        {
            if (!cJSON_IsNumber(id) || id->valueint < 0 || id->valueint >= v->n) {
                snprintf(why, nwhy, "post-processor special token id out of the vocabulary");
                return 1;
            }
            if (seen_seq) {
                ntrail++;
                trail = id->valueint;
            } else {
                nlead++;
                lead = id->valueint;
            }
        }
    }
    if (nlead > 1 || ntrail > 1) {
        snprintf(why, nwhy, "the post-processor adds %d leading and %d trailing special tokens "
                            "(llama.cpp adds at most one BOS and one EOS)",
                 nlead, ntrail);
        return 1;
    }
    if (nlead) {
        v->add_bos = 1;
        v->bos = lead;
    }
    if (ntrail) {
        v->add_eos = 1;
        v->eos = trail;
    }
    return 0;
}

static int byte_token(const char *s)
{
    unsigned x;
    char tail;
    return strlen(s) == 6 && sscanf(s, "<0x%2X>%c", &x, &tail) == 1 && s[5] == '>';
}

/* Merge i as its two halves; 0 when malformed. */
static int merge_parts(const cJSON *m, const char **a, size_t *na, const char **b, size_t *nb)
{
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2) {
        const cJSON *x = cJSON_GetArrayItem(m, 0), *y = cJSON_GetArrayItem(m, 1);
        if (!cJSON_IsString(x) || !cJSON_IsString(y))
            return 0;
        *a = x->valuestring;
        *na = strlen(*a);
        *b = y->valuestring;
        *nb = strlen(*b);
        return 1;
    }
    if (!cJSON_IsString(m))
        return 0;
    const char *s = m->valuestring, *sp = strchr(s, ' ');
    if (!sp)
        return 0;
    *a = s;
    *na = (size_t)(sp - s);
    *b = sp + 1;
    *nb = strlen(sp + 1);
    return 1;
}

int lmc_gguf_add_vocab(lmc_gguf *g, const char *json, size_t len, const lmc_config *cfg,
                       char *why, size_t nwhy, lmc_error *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    lmc_tokenizer *tk = NULL;
    vocab v = {0};
    char **merges = NULL;
    int n_merges = 0, rc = -1;
    if (!cJSON_IsObject(root)) {
        lmc_fail(err, "tokenizer.json: not a JSON object");
        goto out;
    }
    if (lmc_tokenizer_from_json(json, len, "tokenizer.json", &tk, err) != 0)
        goto out;
    const cJSON *model = item(root, "model");
    if (!str_is(model, "type", "BPE")) {
        snprintf(why, nwhy, "tokenizer model %s (only BPE maps onto llama.cpp's SPM and BPE)",
                 type_of(model) ? type_of(model) : "(untyped)");
        rc = 1;
        goto out;
    }
    if (item(model, "continuing_subword_prefix") || item(model, "end_of_word_suffix")) {
        snprintf(why, nwhy, "a BPE with a subword prefix/suffix");
        rc = 1;
        goto out;
    }
    const char *pre = NULL;
    int space_prefix = 0;
    int fam = family(root, model, &pre, &space_prefix, why, nwhy);
    if (fam == 0) {
        rc = 1;
        goto out;
    }
    if (fam == 1 && is_true(model, "ignore_merges")) {
        snprintf(why, nwhy, "a byte-fallback BPE with ignore_merges");
        rc = 1;
        goto out;
    }

    v.n = cfg->vocab;
    v.bos = cfg->bos_id < cfg->vocab ? cfg->bos_id : -1;
    v.eos = cfg->eos_id < cfg->vocab ? cfg->eos_id : -1;
    v.unk = -1;
    v.tok = calloc((size_t)v.n, sizeof *v.tok);
    v.type = calloc((size_t)v.n, sizeof *v.type);
    v.score = calloc((size_t)v.n, sizeof *v.score);
    if (!v.tok || !v.type || !v.score) {
        lmc_fail(err, "tokenizer.json: out of memory");
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, item(model, "vocab"))
    {
        int id = e->valueint;
        if (!cJSON_IsNumber(e) || id < 0 || id >= v.n) {
            snprintf(why, nwhy, "token %.40s has id %d beyond the model's %d embedding rows",
                     e->string, id, v.n);
            rc = 1;
            goto out;
        }
        free(v.tok[id]);
        if (!(v.tok[id] = strdup(e->string))) {
            lmc_fail(err, "tokenizer.json: out of memory");
            goto out;
        }
        v.type[id] = fam == 1 && byte_token(e->string) ? TT_BYTE : TT_NORMAL;
    }
    const cJSON *unk = item(model, "unk_token");
    if (cJSON_IsString(unk)) {
        int u = lmc_tokenizer_token_id(tk, unk->valuestring);
        if (u >= 0 && u < v.n)
            v.unk = u;
    }
    cJSON_ArrayForEach(e, item(root, "added_tokens"))
    {
        const cJSON *c = item(e, "content");
        if (!cJSON_IsString(c))
            continue;
        int id = lmc_tokenizer_token_id(tk, c->valuestring);
        if (id < 0 || id >= v.n) {
            snprintf(why, nwhy, "added token %.40s has id %d beyond the model's %d embedding rows",
                     c->valuestring, id, v.n);
            rc = 1;
            goto out;
        }
        free(v.tok[id]);
        if (!(v.tok[id] = strdup(c->valuestring))) {
            lmc_fail(err, "tokenizer.json: out of memory");
            goto out;
        }
        v.type[id] = is_true(e, "special") ? TT_CONTROL : TT_USER;
    }
    if (v.unk >= 0 && v.type[v.unk] != TT_BYTE)
        v.type[v.unk] = TT_UNKNOWN;
    for (int i = 0; i < v.n; i++)
        if (!v.tok[i]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", i);
            if (!(v.tok[i] = strdup(pad))) {
                lmc_fail(err, "tokenizer.json: out of memory");
                goto out;
            }
            v.type[i] = TT_UNUSED;
        }
    if (specials(root, &v, why, nwhy)) {
        rc = 1;
        goto out;
    }

    /* merges: SPM scores from ranks, BPE the list itself */
    const cJSON *ml = item(model, "merges");
    int nm = cJSON_GetArraySize(ml);
    float lowest = -(float)nm - 1.0f;
    for (int i = 0; i < v.n; i++)
        v.score[i] = lowest - (float)i; /* below every merge: never preferred */
    if (fam == 2 && !(merges = calloc((size_t)nm + 1, sizeof *merges))) {
        lmc_fail(err, "tokenizer.json: out of memory");
        goto out;
    }
    int r = 0;
    cJSON_ArrayForEach(e, ml)
    {
        const char *a, *b;
        size_t na, nb;
        if (!merge_parts(e, &a, &na, &b, &nb)) {
            snprintf(why, nwhy, "merge %d is malformed", r);
            rc = 1;
            goto out;
        }
        char *cat = malloc(na + nb + 2);
        if (!cat) {
            lmc_fail(err, "tokenizer.json: out of memory");
            goto out;
        }
        if (fam == 2) {
            /* llama.cpp splits "a b" at the first space after the first byte */
            if (memchr(a + (na > 0), ' ', na - (na > 0)) || na == 0) {
                free(cat);
                snprintf(why, nwhy, "merge %d has a space inside its first half", r);
                rc = 1;
                goto out;
            }
            memcpy(cat, a, na);
            cat[na] = ' ';
            memcpy(cat + na + 1, b, nb);
            cat[na + nb + 1] = 0;
            merges[n_merges++] = cat;
        } else {
            memcpy(cat, a, na);
            memcpy(cat + na, b, nb);
            cat[na + nb] = 0;
            int id = lmc_tokenizer_token_id(tk, cat); /* a hash lookup */
            free(cat);
            if (id >= 0 && id < v.n && v.score[id] <= lowest)
                v.score[id] = -(float)r; /* the first (lowest-rank) merge wins */
        }
        r++;
    }

    lmc_gguf_set_str(g, "tokenizer.ggml.model", fam == 1 ? "llama" : "gpt2");
    lmc_gguf_set_str(g, "tokenizer.ggml.pre", pre);
    lmc_gguf_set_arr_str(g, "tokenizer.ggml.tokens", (const char *const *)v.tok, NULL,
                         (size_t)v.n);
    if (fam == 1)
        lmc_gguf_set_arr_f32(g, "tokenizer.ggml.scores", v.score, (size_t)v.n);
    lmc_gguf_set_arr_i32(g, "tokenizer.ggml.token_type", v.type, (size_t)v.n);
    if (fam == 2)
        lmc_gguf_set_arr_str(g, "tokenizer.ggml.merges", (const char *const *)merges, NULL,
                             (size_t)n_merges);
    if (v.bos >= 0)
        lmc_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)v.bos);
    if (v.eos >= 0)
        lmc_gguf_set_u32(g, "tokenizer.ggml.eos_token_id", (uint32_t)v.eos);
    if (v.unk >= 0)
        lmc_gguf_set_u32(g, "tokenizer.ggml.unknown_token_id", (uint32_t)v.unk);
    lmc_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", v.add_bos);
    lmc_gguf_set_bool(g, "tokenizer.ggml.add_eos_token", v.add_eos);
    if (fam == 1)
        lmc_gguf_set_bool(g, "tokenizer.ggml.add_space_prefix", space_prefix);
    rc = 0;
out:
    for (int i = 0; i < n_merges; i++)
        free(merges[i]);
    free(merges);
    vocab_free(&v);
    lmc_tokenizer_free(tk);
    cJSON_Delete(root);
    return rc;
}
