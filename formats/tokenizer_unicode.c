/* Unicode properties and normalization forms for the tokenizer. Tables
 * (tokenizer_unicode_tables.c) come from Python's unicodedata; the library
 * uses Rust's tables, which may be one Unicode version newer: characters
 * assigned in between can differ, nothing else. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* tokenizer_unicode_tables.c */
int tk_uc_is_punct_cat(uint32_t cp);
uint32_t tk_uc_lower1(uint32_t cp);
const uint32_t *tk_uc_decomp1(uint32_t cp, size_t *len, int *compat);
int tk_uc_ccc(uint32_t cp);
uint32_t tk_uc_compose(uint32_t a, uint32_t b);

int tk_uc_is_whitespace(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

int tk_uc_is_punct(uint32_t cp)
{
    /* Rust's is_ascii_punctuation also covers $ + < = > ^ ` | ~ */
    if (cp < 0x80)
        return (cp >= 0x21 && cp <= 0x2f) || (cp >= 0x3a && cp <= 0x40) ||
               (cp >= 0x5b && cp <= 0x60) || (cp >= 0x7b && cp <= 0x7e);
    return tk_uc_is_punct_cat(cp);
}

int tk_uc_lower(uint32_t cp, uint32_t out[3])
{
    if (cp == 0x130) { /* the one multi-character lowercase mapping */
        out[0] = 0x69;
        out[1] = 0x307;
        return 2;
    }
    out[0] = TK_IS_BADBYTE(cp) ? cp : tk_uc_lower1(cp);
    return 1;
}

/* ---- normalization forms ---- */

enum { SBASE = 0xac00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11a7 };
enum { LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

typedef struct cpvec {
    uint32_t *v;
    size_t n, cap;
} cpvec;

static int cp_push(cpvec *a, uint32_t cp)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        uint32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = cp;
    return 0;
}

static int decompose(uint32_t cp, int compat, cpvec *out, int depth)
{
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        if (cp_push(out, LBASE + s / NCOUNT) || cp_push(out, VBASE + (s % NCOUNT) / TCOUNT))
            return -1;
        if (s % TCOUNT)
            return cp_push(out, TBASE + s % TCOUNT);
        return 0;
    }
    size_t len;
    int isc;
    const uint32_t *d = TK_IS_BADBYTE(cp) ? NULL : tk_uc_decomp1(cp, &len, &isc);
    if (!d || (isc && !compat) || depth > 8)
        return cp_push(out, cp);
    for (size_t i = 0; i < len; i++)
        if (decompose(d[i], compat, out, depth + 1))
            return -1;
    return 0;
}

static int ccc_of(uint32_t cp)
{
    return TK_IS_BADBYTE(cp) ? 0 : tk_uc_ccc(cp);
}

static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    if (TK_IS_BADBYTE(a) || TK_IS_BADBYTE(b))
        return 0;
    return tk_uc_compose(a, b);
}

int tk_uc_normalize(const char *s, size_t n, int form, tk_buf *out)
{
    int compat = form >= TK_NFKD, comp = form == TK_NFC || form == TK_NFKC;
    cpvec a = {0};
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tk_utf8_next(s, n, i, &cp);
        if (decompose(cp, compat, &a, 0)) {
            free(a.v);
            return -1;
        }
    }
    /* canonical ordering: stable insertion sort of each run of non-starters */
    for (size_t i = 1; i < a.n; i++) {
        int c = ccc_of(a.v[i]);
        if (!c)
            continue;
        size_t j = i;
        uint32_t x = a.v[i];
        while (j > 0 && ccc_of(a.v[j - 1]) > c) {
            a.v[j] = a.v[j - 1];
            j--;
        }
        a.v[j] = x;
    }
    size_t len = a.n;
    if (comp && a.n > 0) {
        /* canonical composition (UAX #15 reference algorithm) */
        size_t starter = 0, w = 1;
        uint32_t starter_ch = a.v[0];
        int last = ccc_of(starter_ch) ? 256 : 0;
        for (size_t i = 1; i < a.n; i++) {
            uint32_t ch = a.v[i];
            int cc = ccc_of(ch);
            uint32_t c = compose_pair(starter_ch, ch);
            if (c && (last < cc || last == 0)) {
                a.v[starter] = c;
                starter_ch = c;
            } else {
                if (cc == 0) {
                    starter = w;
                    starter_ch = ch;
                }
                last = cc;
                a.v[w++] = ch;
            }
        }
        len = w;
    }
    for (size_t i = 0; i < len; i++)
        if (tk_buf_put_cp(out, a.v[i])) {
            free(a.v);
            return -1;
        }
    free(a.v);
    return tk_buf_put(out, "", 0);
}
