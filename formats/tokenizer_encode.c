/* encode / decode: the library's pipeline (AddedVocabulary::extract_and_normalize,
 * pre-tokenization, the model, the post-processor) and decode. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

static int oom(const lmc_tokenizer *t, lmc_error *err)
{
    return lmc_fail(err, "%s: out of memory", t->source);
}

/* Rust regex \w$ and ^\w, used by single_word */
static int ends_with_word(const char *s, size_t n)
{
    if (!n)
        return 0;
    uint32_t cp;
    tk_utf8_next(s, n, n - tk_utf8_prev(s, n), &cp);
    return tk_uc_is_word(cp);
}

static int starts_with_word(const char *s, size_t n)
{
    if (!n)
        return 0;
    uint32_t cp;
    tk_utf8_next(s, n, 0, &cp);
    return tk_uc_is_word(cp);
}

/* Leftmost-longest match of the added tokens of one kind (normalized or not)
 * at or after pos. Returns the token index or -1. */
static int find_added(const lmc_tokenizer *t, int normalized, const char *s, size_t n, size_t pos,
                      size_t *mstart, size_t *mend)
{
    const unsigned char *fb = t->added_first[normalized ? 1 : 0];
    for (size_t i = pos; i < n; i++) {
        if (!fb[(unsigned char)s[i]])
            continue;
        int best = -1;
        size_t best_len = 0;
        for (int k = 0; k < t->n_added; k++) {
            const tk_added *a = &t->added[k];
            if (a->normalized != normalized)
                continue;
            const char *c = normalized ? a->ncontent : a->content;
            size_t cl = normalized ? a->nlen : a->len;
            if (cl == 0 || cl > n - i || (unsigned char)c[0] != (unsigned char)s[i])
                continue;
            if (cl > best_len && !memcmp(s + i, c, cl)) {
                best = k;
                best_len = cl;
            }
        }
        if (best >= 0) {
            *mstart = i;
            *mend = i + best_len;
            return best;
        }
    }
    return -1;
}

/* AddedVocabulary::find_matches + split: appends the pieces of s to out. */
static int split_added(const lmc_tokenizer *t, int normalized, const char *s, size_t n, int first,
                       tk_strs *out)
{
    int any = 0;
    for (int k = 0; k < t->n_added && !any; k++)
        any = t->added[k].normalized == normalized;
    size_t start_offset = 0, pos = 0, ms, me;
    int k;
    while (any && pos < n && (k = find_added(t, normalized, s, n, pos, &ms, &me)) >= 0) {
        const tk_added *a = &t->added[k];
        pos = me; /* the matcher moves on even when single_word rejects the match */
        size_t start = ms, stop = me;
        if (a->single_word) {
            int start_space = start == 0 || !ends_with_word(s, start);
            int stop_space = stop == n || !starts_with_word(s + stop, n - stop);
            if (!start_space || !stop_space)
                continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                uint32_t cp;
                size_t l = tk_utf8_prev(s, ns);
                tk_utf8_next(s, n, ns - l, &cp);
                if (!tk_uc_is_whitespace(cp))
                    break;
                ns -= l;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                size_t l = tk_utf8_next(s, n, stop, &cp);
                if (!tk_uc_is_whitespace(cp))
                    break;
                stop += l;
            }
        }
        if (start_offset < start &&
            !tk_strs_add(out, s + start_offset, start - start_offset, first && start_offset == 0, -1))
            return -1;
        if (stop > start && !tk_strs_add(out, s + start, stop - start, first && start == 0, a->id))
            return -1;
        start_offset = stop;
        if (pos < stop)
            pos = stop;
    }
    if (start_offset < n &&
        !tk_strs_add(out, s + start_offset, n - start_offset, first && start_offset == 0, -1))
        return -1;
    return 0;
}

int tk_encode_words(const lmc_tokenizer *t, tk_ctx *ctx, const char *text, size_t len,
                    tk_strs *words, lmc_error *err)
{
    tk_strs a = {0}, b = {0};
    tk_buf nb = {0};
    int rc = 0;
    tk_strs_reset(words);
    /* 1. added tokens that match the raw text */
    if (split_added(t, 0, text ? text : "", len, 1, &a))
        rc = oom(t, err);
    /* 2. normalize the other pieces, then match normalized added tokens */
    for (size_t i = 0; i < a.n && !rc; i++) {
        if (a.v[i].id >= 0) {
            if (!tk_strs_add(&b, TK_STR(&a, i), a.v[i].len, a.v[i].first, a.v[i].id))
                rc = oom(t, err);
            continue;
        }
        const char *s = TK_STR(&a, i);
        size_t sl = a.v[i].len;
        if (t->norm) {
            if (tk_norm_apply(t->norm, ctx, s, sl, &nb, t->source, err)) {
                rc = -1;
                break;
            }
            s = nb.p ? nb.p : "";
            sl = nb.n;
        }
        if (split_added(t, 1, s, sl, a.v[i].first, &b))
            rc = oom(t, err);
    }
    /* 3. pre-tokenize */
    if (!rc && t->pretok)
        rc = tk_pretok_apply(t->pretok, ctx, &b, words, t->source, err);
    else if (!rc) {
        tk_strs tmp = *words;
        *words = b;
        b = tmp;
    }
    tk_strs_free(&a);
    tk_strs_free(&b);
    tk_buf_free(&nb);
    return rc;
}

int lmc_tokenizer_encode(const lmc_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, size_t *n, lmc_error *err)
{
    *ids = NULL;
    *n = 0;
    if (!text && len)
        return lmc_fail(err, "%s: encode: NULL text", t->source);
    tk_ctx ctx;
    if (tk_ctx_init(&ctx, err))
        return lmc_fail_prefix(err, t->source);
    tk_strs words = {0};
    tk_ids out = {0}, fin = {0};
    int rc = tk_encode_words(t, &ctx, text, len, &words, err);
    /* 4. the model */
    for (size_t i = 0; i < words.n && !rc; i++) {
        if (words.v[i].id >= 0) {
            if (tk_ids_push(&out, words.v[i].id))
                rc = oom(t, err);
        } else if (tk_bpe_word(&t->bpe, &ctx, TK_STR(&words, i), words.v[i].len, &out, t->source,
                               err)) {
            rc = -1;
        }
    }
    /* 5. special tokens */
    if (!rc && add_special && t->post) {
        if (tk_post_apply(t->post, &out, &fin))
            rc = oom(t, err);
        else {
            free(out.v);
            out = fin;
            fin = (tk_ids){0};
        }
    }
    tk_strs_free(&words);
    free(fin.v);
    tk_ctx_free(&ctx);
    if (rc) {
        free(out.v);
        return -1;
    }
    if (!out.v && !(out.v = malloc(sizeof(int32_t))))
        return oom(t, err);
    *ids = out.v;
    *n = out.n;
    return 0;
}

int lmc_tokenizer_decode(const lmc_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                         char **text, size_t *len, lmc_error *err)
{
    *text = NULL;
    *len = 0;
    tk_strs toks = {0};
    tk_buf res = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->id_tok[id])
            continue; /* unknown ids are skipped, as the library does */
        if (skip_special && t->id_special[id])
            continue;
        if (!tk_strs_add(&toks, t->id_tok[id], t->id_len[id], 0, -1))
            rc = oom(t, err);
    }
    if (!rc && t->dec) {
        tk_ctx ctx;
        if (tk_ctx_init(&ctx, err))
            rc = lmc_fail_prefix(err, t->source);
        else {
            rc = tk_dec_apply(t->dec, &ctx, &toks, t->source, err);
            tk_ctx_free(&ctx);
        }
    }
    /* the decoder's pieces are concatenated; without a decoder, joined by spaces */
    for (size_t i = 0; i < toks.n && !rc; i++) {
        if (!t->dec && i > 0 && tk_buf_putc(&res, ' '))
            rc = oom(t, err);
        if (!rc && tk_buf_put(&res, TK_STR(&toks, i), toks.v[i].len))
            rc = oom(t, err);
    }
    if (!rc && tk_buf_put(&res, "", 0))
        rc = oom(t, err);
    tk_strs_free(&toks);
    if (rc) {
        tk_buf_free(&res);
        return -1;
    }
    *text = res.p;
    *len = res.n;
    return 0;
}
