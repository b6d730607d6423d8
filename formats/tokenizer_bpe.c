/* The BPE model, merging exactly as the library's Word::merge_all does: a
 * min-heap of (rank, position) over adjacent pairs, stale entries skipped when
 * the pair at that position no longer produces the same token. A per-call
 * word cache makes repeated words free. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

int tk_ids_push(tk_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

/* ---- merge map: (left, right) -> (rank, new id) ---- */

static size_t merge_slot(uint64_t key, size_t cap)
{
    /* splitmix64 finalizer: both halves of the key reach the low bits */
    uint64_t h = key;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    return (size_t)h & (cap - 1);
}

int tk_bpe_init_merges(tk_bpe *b, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2 + 16)
        cap *= 2;
    b->merges = calloc(cap, sizeof *b->merges);
    b->rank_new_id = calloc(n + 1, sizeof *b->rank_new_id);
    if (!b->merges || !b->rank_new_id)
        return -1;
    b->merge_cap = cap;
    b->n_merges = 0;
    return 0;
}

static uint64_t merge_key(int32_t l, int32_t r)
{
    return ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
}

int tk_bpe_add_merge(tk_bpe *b, int32_t left, int32_t right, int32_t rank, int32_t new_id)
{
    if ((b->n_merges + 1) * 2 > b->merge_cap)
        return -1; /* sized by tk_bpe_init_merges */
    uint64_t key = merge_key(left, right);
    size_t j = merge_slot(key, b->merge_cap);
    while (b->merges[j].key && b->merges[j].key != key)
        j = (j + 1) & (b->merge_cap - 1);
    if (!b->merges[j].key)
        b->n_merges++;
    b->rank_new_id[rank] = new_id;
    /* a repeated pair keeps the later rank, as the library's HashMap insert does */
    b->merges[j].key = key;
    b->merges[j].rank = rank;
    b->merges[j].new_id = new_id;
    return 0;
}

static const tk_merge_ent *merge_get(const tk_bpe *b, int32_t left, int32_t right)
{
    if (!b->merge_cap)
        return NULL;
    uint64_t key = merge_key(left, right);
    size_t j = merge_slot(key, b->merge_cap);
    while (b->merges[j].key) {
        if (b->merges[j].key == key)
            return &b->merges[j];
        j = (j + 1) & (b->merge_cap - 1);
    }
    return NULL;
}

void tk_bpe_free(tk_bpe *b)
{
    tk_smap_free(&b->vocab);
    free(b->merges);
    free(b->rank_new_id);
    free(b->prefix);
    free(b->suffix);
    memset(b, 0, sizeof *b);
}

/* ---- word cache (per encode call) ---- */

#define CACHE_MAX_WORD 256 /* the library caches words shorter than this */
#define CACHE_MAX_ENTRIES 500000

typedef struct tk_cache {
    tk_smap map;    /* word -> index into ent */
    struct {
        size_t off;
        uint32_t n;
    } *ent;
    size_t n_ent, cap_ent;
    tk_ids ids;
} tk_cache;

void tk_cache_free(tk_cache *c)
{
    tk_smap_free(&c->map);
    free(c->ent);
    free(c->ids.v);
    free(c);
}

static int cache_put(tk_cache *c, const char *w, size_t n, const int32_t *ids, size_t k)
{
    if (c->n_ent >= CACHE_MAX_ENTRIES)
        return 0;
    if (c->n_ent == c->cap_ent) {
        size_t cap = c->cap_ent ? c->cap_ent * 2 : 1024;
        void *e = realloc(c->ent, cap * sizeof *c->ent);
        if (!e)
            return -1;
        c->ent = e;
        c->cap_ent = cap;
    }
    size_t off = c->ids.n;
    for (size_t i = 0; i < k; i++)
        if (tk_ids_push(&c->ids, ids[i]))
            return -1;
    c->ent[c->n_ent].off = off;
    c->ent[c->n_ent].n = (uint32_t)k;
    if (tk_smap_put(&c->map, w, n, (int32_t)c->n_ent))
        return -1;
    c->n_ent++;
    return 0;
}

/* ---- merging ---- */

typedef struct sym {
    int32_t c;          /* token id, -1 once merged into its left neighbour */
    int32_t prev, next; /* -1 at the ends */
} sym;

/* A heap entry packs (rank, position) so that one integer compare orders
 * them as the library does: lowest rank first, then leftmost. The merge's new
 * id follows from its rank (rank_new_id). */
typedef uint64_t hent;
#define HENT(rank, pos) (((uint64_t)(uint32_t)(rank) << 32) | (uint32_t)(pos))

typedef struct heap {
    hent *v;
    size_t n, cap;
} heap;

static int heap_push(heap *h, hent e)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        hent *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e >= h->v[p])
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = e;
    return 0;
}

static hent heap_pop(heap *h)
{
    hent top = h->v[0], last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t m = l + 1 < n && h->v[l + 1] < h->v[l] ? l + 1 : l;
        if (h->v[m] >= last)
            break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (n)
        h->v[i] = last;
    return top;
}

typedef struct word {
    sym *s;
    size_t n, cap;
} word;

static int word_add(word *w, int32_t id)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        sym *s = realloc(w->s, cap * sizeof *s);
        if (!s)
            return -1;
        w->s = s;
        w->cap = cap;
    }
    int32_t i = (int32_t)w->n;
    w->s[i].c = id;
    w->s[i].prev = i - 1;
    w->s[i].next = -1;
    if (i > 0)
        w->s[i - 1].next = i;
    w->n++;
    return 0;
}

static int merge_all(const tk_bpe *b, word *w)
{
    heap h = {0};
    for (size_t i = 0; i + 1 < w->n; i++) {
        const tk_merge_ent *m = merge_get(b, w->s[i].c, w->s[i + 1].c);
        if (m && heap_push(&h, HENT(m->rank, i)))
            goto oom;
    }
    while (h.n) {
        hent top = heap_pop(&h);
        uint32_t pos = (uint32_t)top;
        int32_t new_id = b->rank_new_id[top >> 32];
        sym *cur = &w->s[pos];
        if (cur->c < 0 || cur->next < 0)
            continue;
        int32_t nx = cur->next;
        const tk_merge_ent *m = merge_get(b, cur->c, w->s[nx].c);
        /* a stale entry still applies when the pair now there makes the
         * same token, as in the library */
        if (!m || m->new_id != new_id)
            continue;
        cur->c = new_id;
        cur->next = w->s[nx].next;
        w->s[nx].c = -1;
        if (cur->next >= 0)
            w->s[cur->next].prev = (int32_t)pos;
        if (cur->prev >= 0) {
            m = merge_get(b, w->s[cur->prev].c, cur->c);
            if (m && heap_push(&h, HENT(m->rank, cur->prev)))
                goto oom;
        }
        if (cur->next >= 0) {
            m = merge_get(b, cur->c, w->s[cur->next].c);
            if (m && heap_push(&h, HENT(m->rank, pos)))
                goto oom;
        }
    }
    free(h.v);
    return 0;
oom:
    free(h.v);
    return -1;
}

/* merge_word: characters -> symbols (with prefix/suffix, byte fallback, unk) */
static int build_word(const tk_bpe *b, const char *s, size_t n, word *w, tk_buf *tmp,
                      const char *source, lmc_error *err)
{
    int32_t unk_pending = -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = tk_utf8_next(s, n, i, &cp);
        const char *piece = s + i;
        size_t plen = k;
        int first = i == 0, last = i + k == n;
        if ((!first && b->prefix) || (last && b->suffix)) {
            tmp->n = 0;
            if ((!first && b->prefix && tk_buf_put(tmp, b->prefix, b->prefix_len)) ||
                tk_buf_put(tmp, piece, k) ||
                (last && b->suffix && tk_buf_put(tmp, b->suffix, b->suffix_len)))
                return lmc_fail(err, "%s: out of memory", source);
            piece = tmp->p;
            plen = tmp->n;
        }
        i += k;
        int32_t id = tk_smap_get(&b->vocab, piece, plen);
        if (id >= 0) {
            if (unk_pending >= 0) {
                if (word_add(w, unk_pending))
                    return lmc_fail(err, "%s: out of memory", source);
                unk_pending = -1;
            }
            if (word_add(w, id))
                return lmc_fail(err, "%s: out of memory", source);
            continue;
        }
        if (b->byte_fallback) {
            size_t j;
            for (j = 0; j < plen; j++)
                if (b->byte_ids[(unsigned char)piece[j]] < 0)
                    break;
            if (j == plen) {
                /* as the library: a pending unk is not flushed first */
                for (j = 0; j < plen; j++)
                    if (word_add(w, b->byte_ids[(unsigned char)piece[j]]))
                        return lmc_fail(err, "%s: out of memory", source);
                continue;
            }
        }
        if (b->unk_id == -2)
            return lmc_fail(err, "%s: model: unk_token is not in the vocabulary", source);
        if (b->unk_id >= 0) {
            if (unk_pending >= 0 && !b->fuse_unk && word_add(w, unk_pending))
                return lmc_fail(err, "%s: out of memory", source);
            unk_pending = b->unk_id;
        }
        /* no unk token: the character is dropped, as the library does */
    }
    if (unk_pending >= 0 && word_add(w, unk_pending))
        return lmc_fail(err, "%s: out of memory", source);
    return 0;
}

int tk_bpe_word(const tk_bpe *b, tk_ctx *ctx, const char *s, size_t n, tk_ids *out,
                const char *source, lmc_error *err)
{
    if (n == 0)
        return 0;
    if (n >= (size_t)INT32_MAX / 4) /* symbol positions are 32-bit */
        return lmc_fail(err, "%s: a word of %zu bytes is too long to encode", source, n);
    if (b->ignore_merges) {
        int32_t id = tk_smap_get(&b->vocab, s, n);
        if (id >= 0)
            return tk_ids_push(out, id) ? lmc_fail(err, "%s: out of memory", source) : 0;
    }
    tk_cache *c = ctx->cache;
    if (n < CACHE_MAX_WORD) {
        if (!c) {
            c = ctx->cache = calloc(1, sizeof *c);
            if (!c)
                return lmc_fail(err, "%s: out of memory", source);
        }
        int32_t e = tk_smap_get(&c->map, s, n);
        if (e >= 0) {
            for (uint32_t i = 0; i < c->ent[e].n; i++)
                if (tk_ids_push(out, c->ids.v[c->ent[e].off + i]))
                    return lmc_fail(err, "%s: out of memory", source);
            return 0;
        }
    }
    word w = {0};
    tk_buf tmp = {0};
    int rc = build_word(b, s, n, &w, &tmp, source, err);
    tk_buf_free(&tmp);
    if (rc) {
        free(w.s);
        return -1;
    }
    if (merge_all(b, &w)) {
        free(w.s);
        return lmc_fail(err, "%s: out of memory", source);
    }
    size_t start = out->n;
    for (size_t i = 0; i < w.n; i++)
        if (w.s[i].c >= 0 && tk_ids_push(out, w.s[i].c)) {
            free(w.s);
            return lmc_fail(err, "%s: out of memory", source);
        }
    free(w.s);
    /* a word may yield no ids (unknown, no unk token): out->v may be NULL */
    if (n < CACHE_MAX_WORD &&
        cache_put(c, s, n, out->n > start ? out->v + start : NULL, out->n - start))
        return lmc_fail(err, "%s: out of memory", source);
    return 0;
}
