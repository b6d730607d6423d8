/* Post-processors (special tokens around one sequence) and decoders (tokens
 * back to text), as the library's decode_chain steps. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---- post-processors ---- */

static int post_one(const tk_post *p, const tk_ids *in, tk_ids *out)
{
    out->n = 0;
    switch (p->type) {
    case TK_PP_TEMPLATE:
        for (int i = 0; i < p->n_single; i++) {
            if (p->single[i].ids) {
                for (int j = 0; j < p->single[i].n_ids; j++)
                    if (tk_ids_push(out, p->single[i].ids[j]))
                        return -1;
            } else {
                for (size_t j = 0; j < in->n; j++)
                    if (tk_ids_push(out, in->v[j]))
                        return -1;
            }
        }
        return 0;
    case TK_PP_ROBERTA:
    case TK_PP_BERT:
        if (tk_ids_push(out, p->cls))
            return -1;
        for (size_t j = 0; j < in->n; j++)
            if (tk_ids_push(out, in->v[j]))
                return -1;
        return tk_ids_push(out, p->sep);
    case TK_PP_BYTELEVEL: /* only offsets change */
    default:
        for (size_t j = 0; j < in->n; j++)
            if (tk_ids_push(out, in->v[j]))
                return -1;
        return 0;
    case TK_PP_SEQUENCE: {
        tk_ids a = {0}, b = {0};
        int rc = 0;
        for (size_t j = 0; j < in->n && !rc; j++)
            rc = tk_ids_push(&a, in->v[j]);
        for (int k = 0; k < p->n_sub && !rc; k++) {
            rc = post_one(&p->sub[k], &a, &b);
            tk_ids t = a;
            a = b;
            b = t;
        }
        for (size_t j = 0; j < a.n && !rc; j++)
            rc = tk_ids_push(out, a.v[j]);
        free(a.v);
        free(b.v);
        return rc;
    }
    }
}

int tk_post_apply(const tk_post *p, const tk_ids *in, tk_ids *out)
{
    return post_one(p, in, out);
}

void tk_post_free(tk_post *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_single; i++)
        free(p->single[i].ids);
    free(p->single);
    for (int i = 0; i < p->n_sub; i++)
        tk_post_free(&p->sub[i]);
    free(p->sub);
}

/* ---- decoders ---- */

static int oom(const char *source, lmc_error *err)
{
    return lmc_fail(err, "%s: out of memory", source);
}

static int is_byte_token(const char *s, size_t n, unsigned char *b)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return 0;
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *b = (unsigned char)v;
    return 1;
}

/* in -> out, one decoder step */
static int dec_one(const tk_dec *d, tk_ctx *ctx, const tk_strs *in, tk_strs *out,
                   const char *source, lmc_error *err)
{
    tk_strs_reset(out);
    switch (d->type) {
    case TK_D_BYTELEVEL: {
        tk_buf raw = {0}, txt = {0};
        int rc = 0;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const char *s = TK_STR(in, i);
            size_t n = in->v[i].len, start = raw.n, j = 0;
            while (j < n) {
                uint32_t cp;
                j += tk_utf8_next(s, n, j, &cp);
                int b = tk_cp_to_byte(cp);
                if (b < 0)
                    break;
                rc |= tk_buf_putc(&raw, (char)b);
            }
            if (j < n) {
                raw.n = start; /* a character outside the alphabet: raw bytes */
                rc |= tk_buf_put(&raw, s, n);
            }
        }
        if (!rc)
            rc = tk_utf8_lossy(raw.p ? raw.p : "", raw.n, &txt);
        if (!rc && !tk_strs_add(out, txt.p ? txt.p : "", txt.n, 0, -1))
            rc = -1;
        tk_buf_free(&raw);
        tk_buf_free(&txt);
        return rc ? oom(source, err) : 0;
    }
    case TK_D_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_STR(in, i);
            size_t n = in->v[i].len;
            if (tk_strs_open(out, 0, -1))
                return oom(source, err);
            for (size_t j = 0; j < n;) {
                uint32_t cp;
                size_t k = tk_utf8_next(s, n, j, &cp);
                int rc;
                if (cp == d->ch)
                    rc = (i == 0 && d->prepend_scheme != TK_PREPEND_NEVER) ? 0
                                                                         : tk_buf_putc(&out->text, ' ');
                else
                    rc = tk_buf_put(&out->text, s + j, k);
                if (rc)
                    return oom(source, err);
                j += k;
            }
            tk_strs_close(out);
        }
        return 0;
    case TK_D_REPLACE: {
        tk_matches m = {0};
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_STR(in, i);
            if (tk_regex_find(&d->re, ctx, s, in->v[i].len, &m, err)) {
                tk_matches_free(&m);
                return lmc_fail_prefix(err, source);
            }
            if (tk_strs_open(out, 0, -1)) {
                tk_matches_free(&m);
                return oom(source, err);
            }
            for (size_t j = 0; j < m.n; j++) {
                int rc = m.v[j].is_match
                             ? tk_buf_put(&out->text, d->str, d->str_len)
                             : tk_buf_put(&out->text, s + m.v[j].start, m.v[j].end - m.v[j].start);
                if (rc) {
                    tk_matches_free(&m);
                    return oom(source, err);
                }
            }
            tk_strs_close(out);
        }
        tk_matches_free(&m);
        return 0;
    }
    case TK_D_BYTE_FALLBACK: {
        tk_buf bytes = {0};
        int rc = 0;
        for (size_t i = 0; i <= in->n && !rc; i++) {
            unsigned char b;
            if (i < in->n && is_byte_token(TK_STR(in, i), in->v[i].len, &b)) {
                rc = tk_buf_putc(&bytes, (char)b);
                continue;
            }
            if (bytes.n) {
                if (tk_utf8_valid(bytes.p, bytes.n)) {
                    rc = !tk_strs_add(out, bytes.p, bytes.n, 0, -1);
                } else {
                    /* one U+FFFD per byte, as the library does */
                    for (size_t j = 0; j < bytes.n && !rc; j++)
                        rc = !tk_strs_add(out, "\xef\xbf\xbd", 3, 0, -1);
                }
                bytes.n = 0;
            }
            if (i < in->n && !rc)
                rc = !tk_strs_add(out, TK_STR(in, i), in->v[i].len, 0, -1);
        }
        tk_buf_free(&bytes);
        return rc ? oom(source, err) : 0;
    }
    case TK_D_FUSE:
        if (tk_strs_open(out, 0, -1))
            return oom(source, err);
        for (size_t i = 0; i < in->n; i++)
            if (tk_buf_put(&out->text, TK_STR(in, i), in->v[i].len))
                return oom(source, err);
        tk_strs_close(out);
        return 0;
    case TK_D_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_STR(in, i);
            size_t n = in->v[i].len, a = 0, b = n;
            for (int k = 0; k < d->start && a < n; k++) {
                uint32_t cp;
                size_t l = tk_utf8_next(s, n, a, &cp);
                if (cp != d->ch)
                    break;
                a += l;
            }
            for (int k = 0; k < d->stop && b > a; k++) {
                uint32_t cp;
                size_t l = tk_utf8_prev(s, b);
                tk_utf8_next(s, n, b - l, &cp);
                if (cp != d->ch)
                    break;
                b -= l;
            }
            if (!tk_strs_add(out, s + a, b - a, 0, -1))
                return oom(source, err);
        }
        return 0;
    case TK_D_WORDPIECE: {
        static const char *const pairs[][2] = {
            {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
            {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
        tk_buf a = {0}, b = {0};
        int rc = 0;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const char *s = TK_STR(in, i);
            size_t n = in->v[i].len;
            a.n = 0;
            rc |= tk_buf_put(&a, "", 0);
            if (i > 0) {
                if (n >= d->str_len && !memcmp(s, d->str, d->str_len)) {
                    s += d->str_len;
                    n -= d->str_len;
                } else {
                    rc |= tk_buf_putc(&a, ' ');
                }
            }
            rc |= tk_buf_put(&a, s, n);
            if (d->cleanup)
                for (size_t p = 0; p < sizeof pairs / sizeof pairs[0] && !rc; p++) {
                    size_t fl = strlen(pairs[p][0]);
                    b.n = 0;
                    rc |= tk_buf_put(&b, "", 0);
                    for (size_t j = 0; j < a.n && !rc;) {
                        if (j + fl <= a.n && !memcmp(a.p + j, pairs[p][0], fl)) {
                            rc |= tk_buf_put(&b, pairs[p][1], strlen(pairs[p][1]));
                            j += fl;
                        } else {
                            rc |= tk_buf_putc(&b, a.p[j++]);
                        }
                    }
                    tk_buf t = a;
                    a = b;
                    b = t;
                }
            if (!rc && !tk_strs_add(out, a.p, a.n, 0, -1))
                rc = -1;
        }
        tk_buf_free(&a);
        tk_buf_free(&b);
        return rc ? oom(source, err) : 0;
    }
    case TK_D_BPE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TK_STR(in, i);
            size_t n = in->v[i].len;
            const char *rep = i + 1 == in->n ? "" : " ";
            if (tk_strs_open(out, 0, -1))
                return oom(source, err);
            for (size_t j = 0; j < n;) {
                int rc;
                if (d->str_len && j + d->str_len <= n && !memcmp(s + j, d->str, d->str_len)) {
                    rc = tk_buf_put(&out->text, rep, strlen(rep));
                    j += d->str_len;
                } else {
                    rc = tk_buf_putc(&out->text, s[j++]);
                }
                if (rc)
                    return oom(source, err);
            }
            tk_strs_close(out);
        }
        return 0;
    case TK_D_SEQUENCE: {
        tk_strs a = {0}, b = {0};
        int rc = 0;
        for (size_t i = 0; i < in->n && !rc; i++)
            if (!tk_strs_add(&a, TK_STR(in, i), in->v[i].len, 0, -1))
                rc = oom(source, err);
        for (int k = 0; k < d->n_sub && !rc; k++) {
            rc = dec_one(&d->sub[k], ctx, &a, &b, source, err);
            tk_strs t = a;
            a = b;
            b = t;
        }
        for (size_t i = 0; i < a.n && !rc; i++)
            if (!tk_strs_add(out, TK_STR(&a, i), a.v[i].len, 0, -1))
                rc = oom(source, err);
        tk_strs_free(&a);
        tk_strs_free(&b);
        return rc;
    }
    }
    return lmc_fail(err, "%s: decoder: internal error (type %d)", source, d->type);
}

int tk_dec_apply(const tk_dec *d, tk_ctx *ctx, tk_strs *toks, const char *source, lmc_error *err)
{
    tk_strs out = {0};
    int rc = dec_one(d, ctx, toks, &out, source, err);
    if (rc) {
        tk_strs_free(&out);
        return -1;
    }
    tk_strs_free(toks);
    *toks = out;
    return 0;
}

void tk_dec_free(tk_dec *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->n_sub; i++)
        tk_dec_free(&d->sub[i]);
    free(d->sub);
    free(d->str);
    tk_regex_free(&d->re);
}
