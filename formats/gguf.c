/* GGUF v3 writer: layout in gguf.h. */
#include "gguf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"

enum { // gguf_type
    GT_UINT32 = 4, GT_INT32 = 5, GT_FLOAT32 = 6, GT_BOOL = 7, GT_STRING = 8, GT_ARRAY = 9
};

const char *lmc_ggml_type_name(lmc_ggml_type t)
{
    switch (t) {
    case LMC_GGML_F32: return "f32";
    case LMC_GGML_F16: return "f16";
    case LMC_GGML_BF16: return "bf16";
    case LMC_GGML_Q4_0: return "q4_0";
    case LMC_GGML_Q4_1: return "q4_1";
    case LMC_GGML_Q5_0: return "q5_0";
    case LMC_GGML_Q5_1: return "q5_1";
    case LMC_GGML_Q8_0: return "q8_0";
    }
    return NULL;
}

int lmc_ggml_block_elems(lmc_ggml_type t)
{
    return t == LMC_GGML_F32 || t == LMC_GGML_F16 || t == LMC_GGML_BF16 ? 1 : 32;
}

/* ggml-common.h: block_q4_0 {d; qs[16]}, block_q4_1 {d, m; qs[16]},
 * block_q5_0 {d; qh[4]; qs[16]}, block_q5_1 {d, m; qh[4]; qs[16]},
 * block_q8_0 {d; qs[32]}, every d and m fp16. */
size_t lmc_ggml_block_bytes(lmc_ggml_type t)
{
    switch (t) {
    case LMC_GGML_F32: return 4;
    case LMC_GGML_F16:
    case LMC_GGML_BF16: return 2;
    case LMC_GGML_Q4_0: return 18;
    case LMC_GGML_Q4_1: return 20;
    case LMC_GGML_Q5_0: return 22;
    case LMC_GGML_Q5_1: return 24;
    case LMC_GGML_Q8_0: return 34;
    }
    return 0;
}

size_t lmc_ggml_row_bytes(lmc_ggml_type t, int64_t n)
{
    int be = lmc_ggml_block_elems(t);
    assert(n % be == 0);
    return (size_t)(n / be) * lmc_ggml_block_bytes(t);
}

/* ------------------------------------------------------------ the header */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

/* little-endian by construction, whatever the host */
static void put_u32(buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}

static void put_u64(buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(buf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

typedef struct tinfo {
    char *name;
    int ndim;
    int64_t ne[4];
    lmc_ggml_type type;
    size_t nbytes;
    uint64_t offset;
} tinfo;

struct lmc_gguf {
    buf kv;        /* serialized key/values */
    int64_t n_kv;
    char **keys;   /* for the duplicate check */
    tinfo *t;
    int n_t, cap_t;
    uint64_t data_size;
    int oom;
};

lmc_gguf *lmc_gguf_new(void) { return calloc(1, sizeof(lmc_gguf)); }

void lmc_gguf_free(lmc_gguf *g)
{
    if (!g)
        return;
    free(g->kv.p);
    for (int64_t i = 0; i < g->n_kv; i++)
        free(g->keys[i]);
    free(g->keys);
    for (int i = 0; i < g->n_t; i++)
        free(g->t[i].name);
    free(g->t);
    free(g);
}

static void key(lmc_gguf *g, const char *k, uint32_t type)
{
    for (int64_t i = 0; i < g->n_kv; i++)
        assert(strcmp(g->keys[i], k) != 0);
    char **nk = realloc(g->keys, (size_t)(g->n_kv + 1) * sizeof *nk);
    char *c = strdup(k);
    if (!nk || !c) {
        free(c);
        if (nk)
            g->keys = nk;
        g->oom = 1;
        return;
    }
    g->keys = nk;
    g->keys[g->n_kv++] = c;
    put_str(&g->kv, k, strlen(k));
    put_u32(&g->kv, type);
}

void lmc_gguf_set_u32(lmc_gguf *g, const char *k, uint32_t v)
{
    key(g, k, GT_UINT32);
    put_u32(&g->kv, v);
}

void lmc_gguf_set_f32(lmc_gguf *g, const char *k, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    key(g, k, GT_FLOAT32);
    put_u32(&g->kv, u);
}

void lmc_gguf_set_bool(lmc_gguf *g, const char *k, int v)
{
    uint8_t b = v ? 1 : 0;
    key(g, k, GT_BOOL);
    put(&g->kv, &b, 1);
}

void lmc_gguf_set_str(lmc_gguf *g, const char *k, const char *v)
{
    key(g, k, GT_STRING);
    put_str(&g->kv, v, strlen(v));
}

void lmc_gguf_set_arr_str(lmc_gguf *g, const char *k, const char *const *v, const size_t *lens,
                          size_t n)
{
    key(g, k, GT_ARRAY);
    put_u32(&g->kv, GT_STRING);
    put_u64(&g->kv, n);
    for (size_t i = 0; i < n; i++)
        put_str(&g->kv, v[i], lens ? lens[i] : strlen(v[i]));
}

void lmc_gguf_set_arr_f32(lmc_gguf *g, const char *k, const float *v, size_t n)
{
    key(g, k, GT_ARRAY);
    put_u32(&g->kv, GT_FLOAT32);
    put_u64(&g->kv, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_u32(&g->kv, u);
    }
}

void lmc_gguf_set_arr_i32(lmc_gguf *g, const char *k, const int32_t *v, size_t n)
{
    key(g, k, GT_ARRAY);
    put_u32(&g->kv, GT_INT32);
    put_u64(&g->kv, n);
    for (size_t i = 0; i < n; i++)
        put_u32(&g->kv, (uint32_t)v[i]);
}

static uint64_t align_up(uint64_t x) { return (x + LMC_GGUF_ALIGNMENT - 1) / LMC_GGUF_ALIGNMENT * LMC_GGUF_ALIGNMENT; }

int lmc_gguf_add_tensor(lmc_gguf *g, const char *name, int ndim, const int64_t *ne,
                        lmc_ggml_type type)
{
    assert(ndim >= 1 && ndim <= 4);
    if (g->n_t == g->cap_t) {
        int cap = g->cap_t ? 2 * g->cap_t : 64;
        tinfo *nt = realloc(g->t, (size_t)cap * sizeof *nt);
        if (!nt) {
            g->oom = 1;
            return -1;
        }
        g->t = nt;
        g->cap_t = cap;
    }
    tinfo *t = &g->t[g->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        g->oom = 1;
        return -1;
    }
    t->ndim = ndim;
    int64_t rows = 1;
    for (int d = 0; d < ndim; d++) {
        t->ne[d] = ne[d];
        if (d)
            rows *= ne[d];
    }
    t->type = type;
    t->nbytes = lmc_ggml_row_bytes(type, ne[0]) * (size_t)rows;
    t->offset = g->data_size;
    g->data_size = align_up(g->data_size + t->nbytes);
    return g->n_t++;
}

size_t lmc_gguf_tensor_bytes(const lmc_gguf *g, int index) { return g->t[index].nbytes; }
int lmc_gguf_n_tensors(const lmc_gguf *g) { return g->n_t; }

int lmc_gguf_write(lmc_gguf *g, const char *path, lmc_gguf_fill_fn fill, void *ctx,
                   uint64_t *written, lmc_error *err)
{
    buf h = {0};
    put(&h, "GGUF", 4);
    put_u32(&h, 3);
    put_u64(&h, (uint64_t)g->n_t);
    put_u64(&h, (uint64_t)g->n_kv);
    put(&h, g->kv.p, g->kv.n);
    for (int i = 0; i < g->n_t; i++) {
        const tinfo *t = &g->t[i];
        put_str(&h, t->name, strlen(t->name));
        put_u32(&h, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            put_u64(&h, (uint64_t)t->ne[d]);
        put_u32(&h, (uint32_t)t->type);
        put_u64(&h, t->offset);
    }
    static const uint8_t zeros[LMC_GGUF_ALIGNMENT];
    if (g->n_t)
        put(&h, zeros, align_up(h.n) - h.n);
    if (g->oom || g->kv.oom || h.oom) {
        free(h.p);
        return lmc_fail(err, "%s: out of memory building the GGUF header", path);
    }
    lmc_atomic_file af;
    if (lmc_atomic_open(&af, path, err) != 0) {
        free(h.p);
        return -1;
    }
    int rc = lmc_atomic_write(&af, h.p, h.n, err);
    uint64_t total = h.n;
    free(h.p);
    /* one buffer for every tensor: fresh pages per tensor cost a fault each */
    size_t most = 1;
    for (int i = 0; i < g->n_t; i++)
        most = g->t[i].nbytes > most ? g->t[i].nbytes : most;
    uint8_t *b = malloc(most);
    if (!b && rc == 0)
        rc = lmc_fail(err, "%s: out of memory for the largest tensor", path);
    for (int i = 0; i < g->n_t && rc == 0; i++) {
        const tinfo *t = &g->t[i];
        const uint8_t *data = b;
        rc = fill(ctx, i, b, t->nbytes, &data, err);
        if (rc == 0)
            rc = lmc_atomic_write(&af, data, t->nbytes, err);
        /* every tensor padded, the last one too, as ggml's own writer does
         * (a reader that loads the data area reads the padded size) */
        size_t pad = (size_t)(align_up(t->nbytes) - t->nbytes);
        if (rc == 0)
            rc = lmc_atomic_write(&af, zeros, pad, err);
        total += t->nbytes + pad;
    }
    free(b);
    if (rc != 0) {
        lmc_atomic_abort(&af);
        return -1;
    }
    if (lmc_atomic_commit(&af, err) != 0)
        return -1;
    if (written)
        *written = total;
    return 0;
}
