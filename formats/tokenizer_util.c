/* Tokenizer plumbing: buffers, tolerant UTF-8, string maps, PCRE2 matching
 * with the `tokenizers` library's split semantics. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---- tk_buf ---- */

int tk_buf_reserve(tk_buf *b, size_t extra)
{
    if (b->n + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tk_buf_put(tk_buf *b, const void *s, size_t n)
{
    if (tk_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int tk_buf_putc(tk_buf *b, char c)
{
    return tk_buf_put(b, &c, 1);
}

int tk_buf_put_cp(tk_buf *b, uint32_t cp)
{
    unsigned char u[4];
    size_t k;
    if (TK_IS_BADBYTE(cp)) {
        u[0] = (unsigned char)(cp - 0x110000u);
        k = 1;
    } else if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    return tk_buf_put(b, u, k);
}

void tk_buf_free(tk_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- UTF-8 ---- */

size_t tk_utf8_next(const char *str, size_t n, size_t i, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t k;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        *cp = TK_BADBYTE(c);
        return 1;
    }
    if (i + k > n) {
        *cp = TK_BADBYTE(c);
        return 1;
    }
    for (size_t j = 1; j < k; j++) {
        if ((s[i + j] & 0xc0) != 0x80) {
            *cp = TK_BADBYTE(c);
            return 1;
        }
        v = (v << 6) | (s[i + j] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        *cp = TK_BADBYTE(c);
        return 1;
    }
    *cp = v;
    return k;
}

size_t tk_utf8_prev(const char *s, size_t i)
{
    /* walk back over up to 3 continuation bytes, then check that the lead
     * byte really spans to i; otherwise the last byte stands alone */
    size_t j = i - 1;
    int back = 0;
    while (j > 0 && back < 3 && ((unsigned char)s[j] & 0xc0) == 0x80) {
        j--;
        back++;
    }
    uint32_t cp;
    size_t k = tk_utf8_next(s, i, j, &cp);
    if (j + k == i)
        return k;
    return 1;
}

int tk_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tk_utf8_next(s, n, i, &cp);
        if (TK_IS_BADBYTE(cp))
            return 0;
    }
    return 1;
}

int tk_utf8_lossy(const char *str, size_t n, tk_buf *out)
{
    /* Rust's from_utf8_lossy replaces each maximal prefix of a valid
     * sequence (or a lone bad byte) with one U+FFFD. */
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = tk_utf8_next(str, n, i, &cp);
        if (!TK_IS_BADBYTE(cp)) {
            if (tk_buf_put(out, s + i, k))
                return -1;
            i += k;
            continue;
        }
        /* length of the maximal valid prefix starting at i */
        unsigned c = s[i];
        size_t need = 0;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        }
        size_t j = i + 1;
        if (need && j < n && s[j] >= lo && s[j] <= hi) {
            j++;
            for (size_t t = 1; t < need && j < n && (s[j] & 0xc0) == 0x80; t++)
                j++;
        }
        if (tk_buf_put(out, "\xef\xbf\xbd", 3))
            return -1;
        i = j;
    }
    return tk_buf_put(out, "", 0);
}

/* ---- GPT-2 bytes_to_unicode ---- */

uint32_t tk_byte_to_cp(unsigned char b)
{
    /* printable Latin-1 bytes map to themselves; the 68 others, in byte
     * order (0x00-0x20, 0x7F-0xA0, 0xAD), to 256.. */
    if (b <= 0x20)
        return 256u + b;
    if (b >= 0x7f && b <= 0xa0)
        return 256u + 33u + (uint32_t)(b - 0x7f);
    if (b == 0xad)
        return 256u + 67u;
    return b;
}

int tk_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return (cp <= 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) ? -1 : (int)cp;
    uint32_t k = cp - 256;
    if (k < 33)
        return (int)k;
    if (k < 67)
        return (int)(0x7f + (k - 33));
    if (k == 67)
        return 0xad;
    return -1;
}

/* ---- string map ---- */

struct tk_sent {
    uint64_t h;
    uint32_t off, len;
    int32_t v;
    int used;
};

uint64_t tk_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static int smap_grow(tk_smap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct tk_sent *e = calloc(cap, sizeof *e);
    if (!e)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->e[i].used)
            continue;
        size_t j = m->e[i].h & (cap - 1);
        while (e[j].used)
            j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
    return 0;
}

int tk_smap_put(tk_smap *m, const char *s, size_t n, int32_t v)
{
    if ((m->n + 1) * 2 > m->cap && smap_grow(m))
        return -1;
    uint64_t h = tk_hash(s, n);
    size_t j = h & (m->cap - 1);
    while (m->e[j].used) {
        if (m->e[j].h == h && m->e[j].len == n && !memcmp(m->pool.p + m->e[j].off, s, n)) {
            m->e[j].v = v;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->pool.n + n > UINT32_MAX || n > UINT32_MAX)
        return -1;
    size_t off = m->pool.n;
    if (tk_buf_put(&m->pool, s, n))
        return -1;
    m->e[j].used = 1;
    m->e[j].h = h;
    m->e[j].off = (uint32_t)off;
    m->e[j].len = (uint32_t)n;
    m->e[j].v = v;
    m->n++;
    return 0;
}

int32_t tk_smap_get(const tk_smap *m, const char *s, size_t n)
{
    if (!m->cap)
        return -1;
    uint64_t h = tk_hash(s, n);
    size_t j = h & (m->cap - 1);
    while (m->e[j].used) {
        if (m->e[j].h == h && m->e[j].len == n && !memcmp(m->pool.p + m->e[j].off, s, n))
            return m->e[j].v;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

int tk_smap_iter(const tk_smap *m, size_t *it, const char **s, size_t *n, int32_t *v)
{
    while (*it < m->cap) {
        const struct tk_sent *e = &m->e[(*it)++];
        if (e->used) {
            *s = m->pool.p + e->off;
            *n = e->len;
            *v = e->v;
            return 1;
        }
    }
    return 0;
}

void tk_smap_free(tk_smap *m)
{
    free(m->e);
    tk_buf_free(&m->pool);
    memset(m, 0, sizeof *m);
}

/* ---- string lists ---- */

static int strs_grow(tk_strs *l)
{
    if (l->n < l->cap)
        return 0;
    size_t cap = l->cap ? l->cap * 2 : 16;
    tk_span *v = realloc(l->v, cap * sizeof *v);
    if (!v)
        return -1;
    l->v = v;
    l->cap = cap;
    return 0;
}

tk_span *tk_strs_add(tk_strs *l, const char *s, size_t n, int first, int32_t id)
{
    if (strs_grow(l))
        return NULL;
    size_t off = l->text.n;
    if (tk_buf_put(&l->text, s, n))
        return NULL;
    tk_span *sp = &l->v[l->n++];
    sp->off = off;
    sp->len = n;
    sp->first = first;
    sp->id = id;
    return sp;
}

int tk_strs_open(tk_strs *l, int first, int32_t id)
{
    if (strs_grow(l) || tk_buf_reserve(&l->text, 0))
        return -1;
    tk_span *sp = &l->v[l->n];
    sp->off = l->text.n;
    sp->len = 0;
    sp->first = first;
    sp->id = id;
    return 0;
}

void tk_strs_close(tk_strs *l)
{
    tk_span *sp = &l->v[l->n++];
    sp->len = l->text.n - sp->off;
}

void tk_strs_reset(tk_strs *l)
{
    l->n = 0;
    l->text.n = 0;
}

void tk_strs_free(tk_strs *l)
{
    tk_buf_free(&l->text);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- matches ---- */

int tk_matches_push(tk_matches *m, size_t start, size_t end, int is_match)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        tk_match *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return -1;
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n].start = start;
    m->v[m->n].end = end;
    m->v[m->n].is_match = is_match;
    m->n++;
    return 0;
}

void tk_matches_free(tk_matches *m)
{
    free(m->v);
    memset(m, 0, sizeof *m);
}

/* ---- regex ---- */

int tk_regex_compile(tk_regex *re, const char *pat, size_t len, int literal, const char *what,
                     lmc_error *err)
{
    int ec;
    PCRE2_SIZE eo;
    uint32_t opt = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    opt |= literal ? PCRE2_LITERAL : PCRE2_UCP; /* UCP is refused with LITERAL */
    re->code = pcre2_compile((PCRE2_SPTR)pat, len, opt, &ec, &eo, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return lmc_fail(err, "%s: regex does not compile at offset %zu: %s", what, (size_t)eo,
                        (const char *)msg);
    }
    /* JIT is only a speed-up: the interpreter gives the same matches */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    return 0;
}

void tk_regex_free(tk_regex *re)
{
    if (re->code)
        pcre2_code_free(re->code);
    re->code = NULL;
}

int tk_ctx_init(tk_ctx *c, lmc_error *err)
{
    memset(c, 0, sizeof *c);
    c->md = pcre2_match_data_create(16, NULL);
    c->mctx = pcre2_match_context_create(NULL);
    c->jstack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!c->md || !c->mctx) {
        tk_ctx_free(c);
        return lmc_fail(err, "tokenizer: out of memory");
    }
    if (c->jstack)
        pcre2_jit_stack_assign(c->mctx, NULL, c->jstack);
    return 0;
}

void tk_ctx_free(tk_ctx *c)
{
    if (c->md)
        pcre2_match_data_free(c->md);
    if (c->mctx)
        pcre2_match_context_free(c->mctx);
    if (c->jstack)
        pcre2_jit_stack_free(c->jstack);
    if (c->cache)
        tk_cache_free(c->cache);
    memset(c, 0, sizeof *c);
}

int tk_regex_find(const tk_regex *re, tk_ctx *ctx, const char *s, size_t n, tk_matches *out,
                  lmc_error *err)
{
    out->n = 0;
    if (n == 0)
        return tk_matches_push(out, 0, 0, 0);
    size_t prev = 0, last_end = 0;
    int have_last = 0;
    size_t last_match_end = 0;
    while (last_end <= n) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, last_end, 0, ctx->md, ctx->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return lmc_fail(err, "regex match failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ctx->md);
        size_t ms = ov[0], me = ov[1];
        if (me < ms) /* \K games; not used by tokenizers */
            me = ms;
        /* as onig's find_iter: an empty match right after the previous
         * match is skipped by stepping one character */
        if (ms == me && have_last && last_match_end == me) {
            if (last_end >= n)
                break;
            uint32_t cp;
            last_end += tk_utf8_next(s, n, last_end, &cp);
            continue;
        }
        last_end = me;
        last_match_end = me;
        have_last = 1;
        if (prev != ms && tk_matches_push(out, prev, ms, 0))
            return lmc_fail(err, "tokenizer: out of memory");
        if (tk_matches_push(out, ms, me, 1))
            return lmc_fail(err, "tokenizer: out of memory");
        prev = me;
    }
    if (prev != n && tk_matches_push(out, prev, n, 0))
        return lmc_fail(err, "tokenizer: out of memory");
    return 0;
}

int tk_pred_find(int (*pred)(uint32_t cp, const void *arg), const void *arg, const char *s,
                 size_t n, tk_matches *out)
{
    out->n = 0;
    if (n == 0)
        return tk_matches_push(out, 0, 0, 0);
    size_t last = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = tk_utf8_next(s, n, i, &cp);
        if (pred(cp, arg)) {
            if (last < i && tk_matches_push(out, last, i, 0))
                return -1;
            if (tk_matches_push(out, i, i + k, 1))
                return -1;
            last = i + k;
        }
        i += k;
    }
    if (n > last && tk_matches_push(out, last, n, 0))
        return -1;
    return 0;
}

void tk_apply_behavior(tk_matches *m, int behavior)
{
    size_t w = 0;
    int prev_match = 0;
    switch (behavior) {
    case TK_ISOLATED:
        w = m->n;
        break;
    case TK_REMOVED:
        for (size_t i = 0; i < m->n; i++)
            if (!m->v[i].is_match)
                m->v[w++] = m->v[i];
        break;
    case TK_CONTIGUOUS:
        for (size_t i = 0; i < m->n; i++) {
            int is = m->v[i].is_match;
            if (is == prev_match && w > 0)
                m->v[w - 1].end = m->v[i].end;
            else
                m->v[w++] = m->v[i];
            prev_match = is;
        }
        break;
    case TK_MERGED_PREV:
        for (size_t i = 0; i < m->n; i++) {
            int is = m->v[i].is_match;
            if (is && !prev_match && w > 0)
                m->v[w - 1].end = m->v[i].end;
            else
                m->v[w++] = m->v[i];
            prev_match = is;
        }
        break;
    case TK_MERGED_NEXT: {
        /* the library folds from the right: a match absorbs the piece after it */
        size_t r = m->n; /* write from the end */
        for (size_t i = m->n; i-- > 0;) {
            int is = m->v[i].is_match;
            if (is && !prev_match && r < m->n)
                m->v[r].start = m->v[i].start;
            else
                m->v[--r] = m->v[i];
            prev_match = is;
        }
        memmove(m->v, m->v + r, (m->n - r) * sizeof *m->v);
        w = m->n - r;
        break;
    }
    }
    m->n = w;
    /* drop empty pieces, as PreTokenizedString::split does */
    w = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].end > m->v[i].start)
            m->v[w++] = m->v[i];
    m->n = w;
}
