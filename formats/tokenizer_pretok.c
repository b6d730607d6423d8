/* Pre-tokenizers: ByteLevel, Split, Metaspace, Digits, Whitespace,
 * WhitespaceSplit, Punctuation, BertPreTokenizer, CharDelimiterSplit,
 * Sequence. Each turns a list of strings into a finer list; spans that are
 * already tokens (added tokens) pass through untouched. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

static int oom(const char *source, lmc_error *err)
{
    return lmc_fail(err, "%s: out of memory", source);
}

/* Emit the kept ranges of m (after tk_apply_behavior) as spans of out. */
static int emit_ranges(const char *s, const tk_matches *m, int first, tk_strs *out)
{
    for (size_t i = 0; i < m->n; i++)
        if (!tk_strs_add(out, s + m->v[i].start, m->v[i].end - m->v[i].start,
                         first && m->v[i].start == 0, -1))
            return -1;
    return 0;
}

static int pred_numeric(uint32_t cp, const void *arg)
{
    (void)arg;
    return tk_uc_is_numeric(cp);
}

static int pred_space(uint32_t cp, const void *arg)
{
    (void)arg;
    return tk_uc_is_whitespace(cp);
}

static int pred_punct(uint32_t cp, const void *arg)
{
    (void)arg;
    return tk_uc_is_punct(cp);
}

static int pred_char(uint32_t cp, const void *arg)
{
    return cp == *(const uint32_t *)arg;
}

/* Whitespace: the regex \w+|[^\w\s]+ inverted and removed, i.e. maximal runs
 * of word characters or of other non-space characters. */
static int split_whitespace(const char *s, size_t n, int first, tk_strs *out)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = tk_utf8_next(s, n, i, &cp);
        if (tk_uc_is_whitespace(cp)) {
            i += k;
            continue;
        }
        int word = tk_uc_is_word(cp);
        size_t j = i + k;
        while (j < n) {
            k = tk_utf8_next(s, n, j, &cp);
            if (tk_uc_is_whitespace(cp) || tk_uc_is_word(cp) != word)
                break;
            j += k;
        }
        if (!tk_strs_add(out, s + i, j - i, first && i == 0, -1))
            return -1;
        i = j;
    }
    return 0;
}

static int pretok_one(const tk_pretok *p, tk_ctx *ctx, const char *s, size_t n, int first,
                      tk_strs *out, tk_matches *m, tk_buf *tmp, const char *source,
                      lmc_error *err)
{
    switch (p->type) {
    case TK_P_BYTELEVEL: {
        tmp->n = 0;
        if (p->add_prefix_space && n > 0 && s[0] != ' ' && tk_buf_putc(tmp, ' '))
            return oom(source, err);
        if (tk_buf_put(tmp, s, n))
            return oom(source, err);
        const char *t = tmp->p;
        size_t tn = tmp->n;
        if (p->use_regex) {
            if (tk_regex_find(&p->re, ctx, t, tn, m, err))
                return lmc_fail_prefix(err, source);
            tk_apply_behavior(m, TK_ISOLATED);
        } else {
            m->n = 0;
            if (tn && tk_matches_push(m, 0, tn, 0))
                return oom(source, err);
        }
        /* then every byte becomes its byte-level character */
        for (size_t i = 0; i < m->n; i++) {
            if (tk_strs_open(out, first && m->v[i].start == 0, -1))
                return oom(source, err);
            for (size_t j = m->v[i].start; j < m->v[i].end; j++)
                if (tk_buf_put_cp(&out->text, tk_byte_to_cp((unsigned char)t[j])))
                    return oom(source, err);
            tk_strs_close(out);
        }
        return 0;
    }
    case TK_P_SPLIT:
        if (tk_regex_find(&p->re, ctx, s, n, m, err))
            return lmc_fail_prefix(err, source);
        if (p->invert)
            for (size_t i = 0; i < m->n; i++)
                m->v[i].is_match = !m->v[i].is_match;
        tk_apply_behavior(m, p->behavior);
        return emit_ranges(s, m, first, out) ? oom(source, err) : 0;
    case TK_P_METASPACE: {
        char rep[4];
        tk_buf rb = {0};
        if (tk_buf_put_cp(&rb, p->replacement))
            return oom(source, err);
        size_t rl = rb.n;
        memcpy(rep, rb.p, rl);
        tk_buf_free(&rb);
        tmp->n = 0;
        int starts = n >= rl && !memcmp(s, rep, rl);
        int prepend = 0;
        if (p->prepend_scheme == TK_PREPEND_ALWAYS)
            prepend = !starts;
        else if (p->prepend_scheme == TK_PREPEND_FIRST)
            prepend = !starts && first;
        /* the library replaces spaces first, then tests "starts with the
         * replacement": a leading space counts as one */
        if (n && s[0] == ' ')
            prepend = 0;
        if (n == 0)
            prepend = 0;
        if (prepend && tk_buf_put(tmp, rep, rl))
            return oom(source, err);
        for (size_t i = 0; i < n; i++) {
            int rc = s[i] == ' ' ? tk_buf_put(tmp, rep, rl) : tk_buf_putc(tmp, s[i]);
            if (rc)
                return oom(source, err);
        }
        if (!p->split) {
            if (tmp->n && !tk_strs_add(out, tmp->p, tmp->n, first, -1))
                return oom(source, err);
            return 0;
        }
        if (tk_pred_find(pred_char, &p->replacement, tmp->p, tmp->n, m))
            return oom(source, err);
        tk_apply_behavior(m, TK_MERGED_NEXT);
        return emit_ranges(tmp->p, m, first, out) ? oom(source, err) : 0;
    }
    case TK_P_DIGITS:
        if (tk_pred_find(pred_numeric, NULL, s, n, m))
            return oom(source, err);
        tk_apply_behavior(m, p->individual_digits ? TK_ISOLATED : TK_CONTIGUOUS);
        return emit_ranges(s, m, first, out) ? oom(source, err) : 0;
    case TK_P_WHITESPACE:
        return split_whitespace(s, n, first, out) ? oom(source, err) : 0;
    case TK_P_WHITESPACE_SPLIT:
        if (tk_pred_find(pred_space, NULL, s, n, m))
            return oom(source, err);
        tk_apply_behavior(m, TK_REMOVED);
        return emit_ranges(s, m, first, out) ? oom(source, err) : 0;
    case TK_P_PUNCTUATION:
        if (tk_pred_find(pred_punct, NULL, s, n, m))
            return oom(source, err);
        tk_apply_behavior(m, p->behavior);
        return emit_ranges(s, m, first, out) ? oom(source, err) : 0;
    case TK_P_CHAR_DELIMITER:
        if (tk_pred_find(pred_char, &p->replacement, s, n, m))
            return oom(source, err);
        tk_apply_behavior(m, TK_REMOVED);
        return emit_ranges(s, m, first, out) ? oom(source, err) : 0;
    case TK_P_BERT: {
        /* whitespace split (removed), then punctuation isolated */
        tk_matches w = {0};
        if (tk_pred_find(pred_space, NULL, s, n, &w)) {
            tk_matches_free(&w);
            return oom(source, err);
        }
        tk_apply_behavior(&w, TK_REMOVED);
        for (size_t i = 0; i < w.n; i++) {
            const char *ws = s + w.v[i].start;
            if (tk_pred_find(pred_punct, NULL, ws, w.v[i].end - w.v[i].start, m)) {
                tk_matches_free(&w);
                return oom(source, err);
            }
            tk_apply_behavior(m, TK_ISOLATED);
            if (emit_ranges(ws, m, first && w.v[i].start == 0, out)) {
                tk_matches_free(&w);
                return oom(source, err);
            }
        }
        tk_matches_free(&w);
        return 0;
    }
    }
    return lmc_fail(err, "%s: pre_tokenizer: internal error (type %d)", source, p->type);
}

int tk_pretok_apply(const tk_pretok *p, tk_ctx *ctx, const tk_strs *in, tk_strs *out,
                    const char *source, lmc_error *err)
{
    tk_strs_reset(out);
    if (p->type == TK_P_SEQUENCE) {
        tk_strs a = {0}, b = {0};
        int rc = 0;
        for (size_t i = 0; i < in->n && !rc; i++)
            if (!tk_strs_add(&a, TK_STR(in, i), in->v[i].len, in->v[i].first, in->v[i].id))
                rc = oom(source, err);
        for (int k = 0; k < p->n_sub && !rc; k++) {
            rc = tk_pretok_apply(&p->sub[k], ctx, &a, &b, source, err);
            tk_strs t = a;
            a = b;
            b = t;
        }
        for (size_t i = 0; i < a.n && !rc; i++)
            if (!tk_strs_add(out, TK_STR(&a, i), a.v[i].len, a.v[i].first, a.v[i].id))
                rc = oom(source, err);
        tk_strs_free(&a);
        tk_strs_free(&b);
        return rc;
    }
    tk_matches m = {0};
    tk_buf tmp = {0};
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        if (in->v[i].id >= 0) {
            if (!tk_strs_add(out, TK_STR(in, i), in->v[i].len, in->v[i].first, in->v[i].id))
                rc = oom(source, err);
            continue;
        }
        rc = pretok_one(p, ctx, TK_STR(in, i), in->v[i].len, in->v[i].first, out, &m, &tmp,
                        source, err);
    }
    tk_matches_free(&m);
    tk_buf_free(&tmp);
    return rc;
}

void tk_pretok_free(tk_pretok *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_sub; i++)
        tk_pretok_free(&p->sub[i]);
    free(p->sub);
    tk_regex_free(&p->re);
}
