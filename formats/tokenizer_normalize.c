/* Normalizers: Sequence, Prepend, Replace, NFC/NFD/NFKC/NFKD, Lowercase,
 * Strip, StripAccents, ByteLevel. Each maps a string to a new string; no
 * alignments are kept since ids do not depend on them. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

static int oom(const char *source, lmc_error *err)
{
    return lmc_fail(err, "%s: out of memory", source);
}

int tk_norm_apply(const tk_norm *nm, tk_ctx *ctx, const char *s, size_t n, tk_buf *out,
                  const char *source, lmc_error *err)
{
    out->n = 0;
    switch (nm->type) {
    case TK_N_SEQUENCE: {
        tk_buf a = {0}, b = {0};
        if (tk_buf_put(&a, s, n))
            return oom(source, err);
        for (int i = 0; i < nm->n_sub; i++) {
            if (tk_norm_apply(&nm->sub[i], ctx, a.p, a.n, &b, source, err)) {
                tk_buf_free(&a);
                tk_buf_free(&b);
                return -1;
            }
            tk_buf t = a;
            a = b;
            b = t;
        }
        int rc = tk_buf_put(out, a.p, a.n);
        tk_buf_free(&a);
        tk_buf_free(&b);
        return rc ? oom(source, err) : 0;
    }
    case TK_N_PREPEND:
        if (n && tk_buf_put(out, nm->str, nm->str_len))
            return oom(source, err);
        return tk_buf_put(out, s, n) ? oom(source, err) : 0;
    case TK_N_REPLACE: {
        tk_matches m = {0};
        if (tk_regex_find(&nm->re, ctx, s, n, &m, err)) {
            tk_matches_free(&m);
            return lmc_fail_prefix(err, source);
        }
        int rc = tk_buf_put(out, "", 0);
        for (size_t i = 0; i < m.n && !rc; i++) {
            if (m.v[i].is_match)
                rc = tk_buf_put(out, nm->str, nm->str_len);
            else
                rc = tk_buf_put(out, s + m.v[i].start, m.v[i].end - m.v[i].start);
        }
        tk_matches_free(&m);
        return rc ? oom(source, err) : 0;
    }
    case TK_N_NFD:
    case TK_N_NFC:
    case TK_N_NFKD:
    case TK_N_NFKC: {
        int form = nm->type == TK_N_NFD ? TK_NFD : nm->type == TK_N_NFC ? TK_NFC
                 : nm->type == TK_N_NFKD ? TK_NFKD : TK_NFKC;
        return tk_uc_normalize(s, n, form, out) ? oom(source, err) : 0;
    }
    case TK_N_LOWERCASE:
        if (tk_buf_put(out, "", 0))
            return oom(source, err);
        for (size_t i = 0; i < n;) {
            uint32_t cp, lo[3];
            i += tk_utf8_next(s, n, i, &cp);
            int k = tk_uc_lower(cp, lo);
            for (int j = 0; j < k; j++)
                if (tk_buf_put_cp(out, lo[j]))
                    return oom(source, err);
        }
        return 0;
    case TK_N_STRIP: {
        size_t a = 0, b = n;
        if (nm->left)
            while (a < b) {
                uint32_t cp;
                size_t k = tk_utf8_next(s, n, a, &cp);
                if (!tk_uc_is_whitespace(cp))
                    break;
                a += k;
            }
        if (nm->right)
            while (b > a) {
                uint32_t cp;
                size_t k = tk_utf8_prev(s, b);
                tk_utf8_next(s, n, b - k, &cp);
                if (!tk_uc_is_whitespace(cp))
                    break;
                b -= k;
            }
        return tk_buf_put(out, s + a, b - a) ? oom(source, err) : 0;
    }
    case TK_N_STRIP_ACCENTS:
        if (tk_buf_put(out, "", 0))
            return oom(source, err);
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t k = tk_utf8_next(s, n, i, &cp);
            if (!tk_uc_is_mark(cp) && tk_buf_put(out, s + i, k))
                return oom(source, err);
            i += k;
        }
        return 0;
    case TK_N_BYTELEVEL:
        if (tk_buf_put(out, "", 0))
            return oom(source, err);
        for (size_t i = 0; i < n; i++)
            if (tk_buf_put_cp(out, tk_byte_to_cp((unsigned char)s[i])))
                return oom(source, err);
        return 0;
    }
    return lmc_fail(err, "%s: normalizer: internal error (type %d)", source, nm->type);
}

void tk_norm_free(tk_norm *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n_sub; i++)
        tk_norm_free(&n->sub[i]);
    free(n->sub);
    free(n->str);
    tk_regex_free(&n->re);
}
