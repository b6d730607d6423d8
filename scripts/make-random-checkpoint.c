/* The writer behind scripts/make-random-checkpoint (read its header first):
 * a Hugging Face checkpoint directory of a real model shape with random
 * weights, laid out as save_pretrained writes it.
 *
 *   build/tools/make-random-checkpoint --check SHAPE OUT_DIR [options]
 *       validates the arguments (exit 2 with one line when bad), prints OUT_DIR
 *   build/tools/make-random-checkpoint --into TMP_DIR SHAPE OUT_DIR [options]
 *       writes every file into TMP_DIR (the script renames it to OUT_DIR)
 *
 * Weights are streamed: each tensor is drawn in chunks of CHUNK elements,
 * converted to the file's dtype (round to nearest even, core/half.h) and
 * written, so memory is a few batches of chunks whatever the model size.
 * Every chunk has its own generator, seeded from (seed, tensor name, chunk
 * index), so the values do not depend on the thread count, on --shards or
 * --layers (a cut is a prefix of the full model), and the float16 and
 * bfloat16 files hold roundings of the same draws. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fileio.h"
#include "core/half.h"

/* SplitMix64: seeds the per-chunk generators from (seed, tensor, chunk). */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define CHUNK ((size_t)1 << 20) /* elements per generator */
#define TRANSFORMERS_VERSION "5.17.0" /* what ../shared's checkpoints were written with */

typedef enum { TOK_LLAMA2, TOK_LLAMA3, TOK_QWEN2 } tok_family;

typedef struct shape {
    const char *name;
    int qwen2; /* Qwen2ForCausalLM (q/k/v biases) rather than LlamaForCausalLM */
    int hidden, layers, heads, kv_heads, head_dim, ffn, vocab, max_pos;
    double rope_theta, eps;
    const char *dtype;
    int shards;
    tok_family tok;
    int special_base; /* id of the first special token */
} shape;

static const shape SHAPES[] = {
    /* small ones for tests */
    {"tiny", 0, 128, 2, 4, 2, 32, 352, 512, 512, 10000.0, 1e-5, "float16", 1, TOK_LLAMA2, 0},
    {"tiny-qwen2", 1, 128, 2, 4, 2, 32, 352, 512, 512, 1e6, 1e-6, "bfloat16", 1, TOK_QWEN2, 400},
    /* real shapes, dtype and shard count as the hub ships them */
    {"tinyllama", 0, 2048, 22, 32, 4, 64, 5632, 32000, 2048, 10000.0, 1e-5, "float16", 1,
     TOK_LLAMA2, 0},
    {"llama2-7b", 0, 4096, 32, 32, 32, 128, 11008, 32000, 4096, 10000.0, 1e-5, "float16", 2,
     TOK_LLAMA2, 0},
    {"llama3-8b", 0, 4096, 32, 32, 8, 128, 14336, 128256, 8192, 500000.0, 1e-5, "bfloat16", 4,
     TOK_LLAMA3, 128000},
    {"qwen2.5-7b", 1, 3584, 28, 28, 4, 128, 18944, 152064, 131072, 1e6, 1e-6, "bfloat16", 4,
     TOK_QWEN2, 151643},
};
#define N_SHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS } init_kind;

typedef struct tensor {
    char name[96];
    int ndim;
    int64_t shape[2];
    init_kind init;
    int shard;
} tensor;

typedef struct opts {
    const shape *s;
    const char *out;
    const char *dtype;
    int layers, shards;
    uint64_t seed;
    double std;
} opts;

/* ---- arguments ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: make-random-checkpoint SHAPE OUT_DIR [--dtype float16|bfloat16] "
               "[--layers N] [--shards N] [--seed N] [--std X]\n  SHAPE:");
    for (int i = 0; i < N_SHAPES; i++)
        fprintf(f, " %s", SHAPES[i].name);
    fprintf(f, "\n");
}

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "make-random-checkpoint: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* 0, or 2 after printing one line and the usage. */
static int parse_args(int argc, char **argv, opts *o)
{
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    long layers = 0, shards = 0;
    memset(o, 0, sizeof *o);
    o->std = 0.02;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (npos == 2)
                return bad("unexpected argument '%s'%s", a, "");
            pos[npos++] = a;
            continue;
        }
        if (strcmp(a, "--dtype") && strcmp(a, "--layers") && strcmp(a, "--shards") &&
            strcmp(a, "--seed") && strcmp(a, "--std"))
            return bad("unknown option '%s'%s", a, "");
        if (i + 1 >= argc)
            return bad("%s needs a value%s", a, "");
        const char *v = argv[++i];
        if (!strcmp(a, "--dtype")) {
            if (strcmp(v, "float16") && strcmp(v, "bfloat16"))
                return bad("--dtype '%s': want float16 or bfloat16%s", v, "");
            o->dtype = v;
        } else if (!strcmp(a, "--layers")) {
            if (parse_long(v, 1, 4096, &layers) != 0)
                return bad("--layers '%s': want an integer >= 1%s", v, "");
        } else if (!strcmp(a, "--shards")) {
            if (parse_long(v, 1, 99999, &shards) != 0)
                return bad("--shards '%s': want an integer in [1, 99999]%s", v, "");
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (!*v || *end || errno || v[0] == '-')
                return bad("--seed '%s': want a non-negative integer%s", v, "");
            o->seed = s;
        } else {
            char *end;
            errno = 0;
            o->std = strtod(v, &end);
            /* 100 keeps the largest draws (~10 sigma) finite in float16 */
            if (!*v || *end || errno || !(o->std > 0) || o->std > 100)
                return bad("--std '%s': want a number in (0, 100]%s", v, "");
        }
    }
    if (npos != 2)
        return bad("need SHAPE and OUT_DIR%s%s", "", "");
    for (int i = 0; i < N_SHAPES; i++)
        if (!strcmp(pos[0], SHAPES[i].name))
            o->s = &SHAPES[i];
    if (!o->s)
        return bad("unknown shape '%s'%s", pos[0], "");
    o->out = pos[1];
    if (layers > o->s->layers) {
        char n[32];
        snprintf(n, sizeof n, "%d", o->s->layers);
        return bad("--layers: %s has only %s layers", o->s->name, n);
    }
    o->layers = layers ? (int)layers : o->s->layers;
    if (!o->dtype)
        o->dtype = o->s->dtype;
    int n_tensors = 2 + o->layers * (o->s->qwen2 ? 12 : 9) + 1;
    if (shards > n_tensors) {
        char n[32];
        snprintf(n, sizeof n, "%d", n_tensors);
        return bad("--shards: more shards than the %s tensors of this model%s", n, "");
    }
    o->shards = shards ? (int)shards : o->s->shards;
    if (o->shards > n_tensors)
        o->shards = n_tensors;
    return 0;
}

/* ---- the tensors, in the module order save_pretrained shards them in ---- */

static void add(tensor *t, int *n, int ndim, int64_t r, int64_t c, init_kind init,
                const char *name)
{
    tensor *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ndim = ndim;
    x->shape[0] = r;
    x->shape[1] = c;
    x->init = init;
}

static tensor *list_tensors(const opts *o, int *n_out)
{
    const shape *s = o->s;
    int per = s->qwen2 ? 12 : 9;
    tensor *t = calloc((size_t)(3 + o->layers * per), sizeof *t);
    if (!t)
        return NULL;
    int n = 0;
    int64_t h = s->hidden, q = (int64_t)s->heads * s->head_dim,
            kv = (int64_t)s->kv_heads * s->head_dim;
    add(t, &n, 2, s->vocab, h, INIT_NORMAL, "model.embed_tokens.weight");
    for (int l = 0; l < o->layers; l++) {
        char f[96];
#define T(ndim, r, c, init, suffix)                                                           \
    (snprintf(f, sizeof f, "model.layers.%d.%s", l, suffix), add(t, &n, ndim, r, c, init, f))
        T(2, q, h, INIT_NORMAL, "self_attn.q_proj.weight");
        if (s->qwen2)
            T(1, q, 0, INIT_ZEROS, "self_attn.q_proj.bias");
        T(2, kv, h, INIT_NORMAL, "self_attn.k_proj.weight");
        if (s->qwen2)
            T(1, kv, 0, INIT_ZEROS, "self_attn.k_proj.bias");
        T(2, kv, h, INIT_NORMAL, "self_attn.v_proj.weight");
        if (s->qwen2)
            T(1, kv, 0, INIT_ZEROS, "self_attn.v_proj.bias");
        T(2, h, q, INIT_NORMAL, "self_attn.o_proj.weight");
        T(2, s->ffn, h, INIT_NORMAL, "mlp.gate_proj.weight");
        T(2, s->ffn, h, INIT_NORMAL, "mlp.up_proj.weight");
        T(2, h, s->ffn, INIT_NORMAL, "mlp.down_proj.weight");
        T(1, h, 0, INIT_ONES, "input_layernorm.weight");
        T(1, h, 0, INIT_ONES, "post_attention_layernorm.weight");
#undef T
    }
    add(t, &n, 1, h, 0, INIT_ONES, "model.norm.weight");
    add(t, &n, 2, s->vocab, h, INIT_NORMAL, "lm_head.weight");
    *n_out = n;
    return t;
}

static int64_t numel(const tensor *t)
{
    return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}

/* Shards in module order, about equal in bytes; never an empty one. */
static void assign_shards(tensor *t, int n, int shards)
{
    int64_t total = 0, at = 0;
    for (int i = 0; i < n; i++)
        total += numel(&t[i]);
    int prev = -1;
    for (int i = 0; i < n; i++) {
        int k = (int)((double)at * shards / (double)total);
        if (k > prev + 1)
            k = prev + 1;
        if (k < shards - (n - i))
            k = shards - (n - i);
        if (k < prev)
            k = prev;
        t[i].shard = k;
        prev = k;
        at += numel(&t[i]);
    }
}

/* ---- normal draws: xoshiro256** and the Marsaglia-Tsang ziggurat (128 layers) ---- */

typedef struct rng {
    uint64_t s[4];
} rng;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t next_u64(rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* uniform in (0, 1) */
static inline double next_open01(rng *r) { return ((double)(next_u64(r) >> 11) + 0.5) * 0x1p-53; }

static uint32_t zk[128];
static double zw[128], zf[128];
#define ZIG_R 3.442619855899

static void zig_setup(void)
{
    const double m = 2147483648.0, v = 9.91256303526217e-3;
    double d = ZIG_R, t = d, q = v / exp(-0.5 * d * d);
    zk[0] = (uint32_t)((d / q) * m);
    zk[1] = 0;
    zw[0] = q / m;
    zw[127] = d / m;
    zf[0] = 1.0;
    zf[127] = exp(-0.5 * d * d);
    for (int i = 126; i >= 1; i--) {
        d = sqrt(-2.0 * log(v / d + exp(-0.5 * d * d)));
        zk[i + 1] = (uint32_t)((d / t) * m);
        t = d;
        zf[i] = exp(-0.5 * d * d);
        zw[i] = d / m;
    }
}

/* The rejection steps of the ziggurat for a draw (layer i, signed value hz,
 * x = its abscissa) that missed the rectangle's core; later tries take a
 * fresh 64-bit draw: layer from the low 7 bits, value from the high 32. */
static double zig_slow(rng *r, int i, int32_t hz, double x)
{
    for (;;) {
        if (i == 0) { /* the tail beyond R */
            double xt, y;
            do {
                xt = -log(next_open01(r)) / ZIG_R;
                y = -log(next_open01(r));
            } while (y + y < xt * xt);
            return hz > 0 ? ZIG_R + xt : -ZIG_R - xt;
        }
        if (zf[i] + next_open01(r) * (zf[i - 1] - zf[i]) < exp(-0.5 * x * x))
            return x;
        uint64_t u = next_u64(r);
        i = (int)(u & 127);
        hz = (int32_t)(uint32_t)(u >> 32);
        x = hz * zw[i];
        if ((hz < 0 ? -(int64_t)hz : hz) < zk[i])
            return x;
    }
}

/* A standard normal from 32 random bits f: the low 7 pick the layer, the
 * other 25 are the signed value (24 bits of magnitude, plenty for 16-bit
 * output). Two per 64-bit draw, each from its own bits. */
static inline double zig_normal32(rng *r, uint32_t f)
{
    int i = (int)(f & 127);
    int32_t hz = (int32_t)(f & ~127u) / 128; /* exact: a multiple of 128 */
    double x = hz * zw[i] * 128.0;
    if ((uint32_t)(hz < 0 ? -hz : hz) < zk[i] >> 7)
        return x;
    return zig_slow(r, i, hz, x);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Elements [c*CHUNK, c*CHUNK + n) of tensor t, as 16-bit values. */
static void fill_chunk(const tensor *t, uint64_t seed, int64_t c, size_t n, double std, int bf16,
                       uint16_t *dst)
{
    if (t->init != INIT_NORMAL) {
        uint16_t one = bf16 ? lmc_f32_to_bf16(1.0f) : lmc_f32_to_f16(1.0f);
        uint16_t v = t->init == INIT_ONES ? one : 0;
        for (size_t i = 0; i < n; i++)
            dst[i] = v;
        return;
    }
    uint64_t st = seed ^ fnv1a(t->name) ^ ((uint64_t)c * 0x9e3779b97f4a7c15ull);
    rng r;
    for (int k = 0; k < 4; k++)
        r.s[k] = splitmix64(&st);
    for (size_t i = 0; i < n; i += 2) {
        uint64_t u = next_u64(&r);
        float a = (float)(std * zig_normal32(&r, (uint32_t)u));
        float b = (float)(std * zig_normal32(&r, (uint32_t)(u >> 32)));
        dst[i] = bf16 ? lmc_f32_to_bf16(a) : lmc_f32_to_f16(a);
        if (i + 1 < n)
            dst[i + 1] = bf16 ? lmc_f32_to_bf16(b) : lmc_f32_to_f16(b);
    }
}

/* ---- files ---- */

/* A growing string (JSON headers and small files). */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* JSON string literal (the token names hold '"' and '\\'). */
static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sb_add(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            sb_add(b, "\\u%04x", (unsigned)(unsigned char)*s);
        else
            sb_add(b, "%c", *s);
    }
    sb_add(b, "\"");
}

/* A double as Python's json writes it: 10000.0, 0.02, 1e-05. */
static void sb_float(sbuf *b, double v)
{
    if (v == floor(v) && fabs(v) < 1e16) {
        sb_add(b, "%.1f", v);
        return;
    }
    char s[32];
    for (int p = 1; p <= 17; p++) {
        snprintf(s, sizeof s, "%.*g", p, v);
        if (strtod(s, NULL) == v)
            break;
    }
    sb_add(b, "%s", s);
}

static int write_file(const char *dir, const char *name, const void *data, size_t n,
                      lmc_error *err)
{
    char *p = lmc_path_join(dir, name);
    if (!p)
        return lmc_fail(err, "%s: out of memory", dir);
    lmc_atomic_file af;
    int rc = lmc_atomic_open(&af, p, err);
    free(p);
    if (rc == 0 && (rc = lmc_atomic_write(&af, data, n, err)) == 0)
        rc = lmc_atomic_commit(&af, err);
    if (rc != 0)
        lmc_atomic_abort(&af);
    return rc;
}

static int write_sbuf(const char *dir, const char *name, sbuf *b, lmc_error *err)
{
    if (b->oom)
        return lmc_fail(err, "%s/%s: out of memory", dir, name);
    return write_file(dir, name, b->p, b->n, err);
}

static void shard_name(char *dst, size_t n, int k, int shards)
{
    if (shards == 1)
        snprintf(dst, n, "model.safetensors");
    else
        snprintf(dst, n, "model-%05d-of-%05d.safetensors", k + 1, shards);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const tensor *const *)a)->name, (*(const tensor *const *)b)->name);
}

/* Double buffering: the main thread draws one batch (on every core) while
 * this thread writes the previous one, so the disk never waits for the
 * generator nor the generator for the disk. */
typedef struct writer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lmc_atomic_file *af;
    uint16_t *buf[2];
    size_t len[2]; /* bytes waiting in buf[k]; 0: free */
    int done, failed;
    lmc_error err;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    for (int k = 0;; k ^= 1) {
        pthread_mutex_lock(&w->mu);
        while (!w->len[k] && !w->done)
            pthread_cond_wait(&w->cv, &w->mu);
        size_t n = w->len[k];
        pthread_mutex_unlock(&w->mu);
        if (!n) /* done: slots fill in turn, so nothing is left */
            return NULL;
        int rc = lmc_atomic_write(w->af, w->buf[k], n, &w->err);
        pthread_mutex_lock(&w->mu);
        w->len[k] = 0;
        w->failed = rc != 0;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        if (rc)
            return NULL;
    }
}

/* The next free buffer, NULL once the writer failed. */
static uint16_t *writer_wait(writer *w, int k)
{
    pthread_mutex_lock(&w->mu);
    while (w->len[k] && !w->failed)
        pthread_cond_wait(&w->cv, &w->mu);
    uint16_t *b = w->failed ? NULL : w->buf[k];
    pthread_mutex_unlock(&w->mu);
    return b;
}

static void writer_push(writer *w, int k, size_t bytes)
{
    pthread_mutex_lock(&w->mu);
    w->len[k] = bytes;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Draws every tensor of the shard into the file behind w->af. */
static int stream_tensors(writer *w, const opts *o, tensor *const *in, int m, size_t batch,
                          lmc_error *err)
{
    int bf16 = !strcmp(o->dtype, "bfloat16");
    pthread_t th;
    if (pthread_create(&th, NULL, writer_main, w) != 0)
        return lmc_fail(err, "cannot start the writer thread");
    int slot = 0, stopped = 0;
    for (int i = 0; i < m && !stopped; i++) {
        const tensor *x = in[i];
        int64_t total = numel(x), nchunks = (total + (int64_t)CHUNK - 1) / (int64_t)CHUNK;
        for (int64_t c0 = 0; c0 < nchunks; c0 += (int64_t)batch, slot ^= 1) {
            uint16_t *buf = writer_wait(w, slot);
            if (!buf) {
                stopped = 1;
                break;
            }
            int64_t nb = nchunks - c0 < (int64_t)batch ? nchunks - c0 : (int64_t)batch;
            size_t elems = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : elems)
            for (int64_t j = 0; j < nb; j++) {
                int64_t c = c0 + j, begin = c * (int64_t)CHUNK;
                size_t cn = total - begin < (int64_t)CHUNK ? (size_t)(total - begin) : CHUNK;
                fill_chunk(x, o->seed, c, cn, o->std, bf16, buf + (size_t)j * CHUNK);
                elems += cn;
            }
            writer_push(w, slot, elems * 2);
        }
    }
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(th, NULL);
    if (w->failed) {
        *err = w->err;
        return -1;
    }
    return 0;
}

/* One shard: header (tensors sorted by name, as the safetensors library
 * lays them out), then the data, streamed in batches of chunks. */
static int write_shard(const char *dir, const opts *o, tensor *t, int n, int k, writer *wr,
                       size_t batch, lmc_error *err)
{
    const char *st_dtype = strcmp(o->dtype, "bfloat16") ? "F16" : "BF16";
    tensor **in = malloc((size_t)n * sizeof *in);
    if (!in)
        return lmc_fail(err, "%s: out of memory", dir);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (t[i].shard == k)
            in[m++] = &t[i];
    qsort(in, (size_t)m, sizeof *in, cmp_name);

    sbuf h = {0};
    sb_add(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    int64_t off = 0;
    for (int i = 0; i < m; i++) {
        int64_t bytes = numel(in[i]) * 2;
        sb_add(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld", in[i]->name, st_dtype,
               (long long)in[i]->shape[0]);
        if (in[i]->ndim == 2)
            sb_add(&h, ",%lld", (long long)in[i]->shape[1]);
        sb_add(&h, "],\"data_offsets\":[%lld,%lld]}", (long long)off, (long long)(off + bytes));
        off += bytes;
    }
    sb_add(&h, "}");
    while (!h.oom && h.n % 8)
        sb_add(&h, " ");

    char name[64];
    shard_name(name, sizeof name, k, o->shards);
    char *path = lmc_path_join(dir, name);
    lmc_atomic_file af;
    int rc = -1;
    if (h.oom || !path) {
        lmc_fail(err, "%s: out of memory", dir);
        goto out;
    }
    if (lmc_atomic_open(&af, path, err) != 0)
        goto out;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    if (lmc_atomic_write(&af, len, 8, err) != 0 || lmc_atomic_write(&af, h.p, h.n, err) != 0)
        goto fail;
    writer *w = wr;
    w->af = &af;
    w->len[0] = w->len[1] = 0;
    w->done = w->failed = 0;
    if (stream_tensors(w, o, in, m, batch, err) != 0)
        goto fail;
    if (lmc_atomic_commit(&af, err) != 0)
        goto out;
    rc = 0;
    goto out;
fail:
    lmc_atomic_abort(&af);
out:
    free(path);
    free(h.p);
    free(in);
    return rc;
}

static int write_index(const char *dir, const opts *o, tensor *t, int n, lmc_error *err)
{
    tensor **all = malloc((size_t)n * sizeof *all);
    if (!all)
        return lmc_fail(err, "%s: out of memory", dir);
    int64_t params = 0;
    for (int i = 0; i < n; i++) {
        all[i] = &t[i];
        params += numel(&t[i]);
    }
    qsort(all, (size_t)n, sizeof *all, cmp_name);
    sbuf b = {0};
    sb_add(&b, "{\n  \"metadata\": {\n    \"total_parameters\": %lld,\n    \"total_size\": %lld\n"
               "  },\n  \"weight_map\": {\n",
           (long long)params, (long long)params * 2);
    for (int i = 0; i < n; i++) {
        char name[64];
        shard_name(name, sizeof name, all[i]->shard, o->shards);
        sb_add(&b, "    \"%s\": \"%s\"%s\n", all[i]->name, name, i + 1 < n ? "," : "");
    }
    sb_add(&b, "  }\n}\n");
    free(all);
    int rc = write_sbuf(dir, "model.safetensors.index.json", &b, err);
    free(b.p);
    return rc;
}

/* ---- config, generation config ---- */

static void special_ids(const shape *s, int *bos, int *eos)
{
    *bos = s->tok == TOK_LLAMA2 ? 1 : s->special_base;
    *eos = s->tok == TOK_LLAMA2 ? 2 : s->tok == TOK_LLAMA3 ? s->special_base + 1 : s->special_base;
}

static int write_config(const char *dir, const opts *o, lmc_error *err)
{
    const shape *s = o->s;
    int bos, eos;
    special_ids(s, &bos, &eos);
    sbuf b = {0};
    /* keys sorted, as PreTrainedConfig.to_json_string writes them */
    sb_add(&b, "{\n  \"architectures\": [\n    \"%s\"\n  ],\n",
           s->qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
    if (!s->qwen2)
        sb_add(&b, "  \"attention_bias\": false,\n");
    sb_add(&b, "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": %d,\n  \"dtype\": \"%s\",\n"
               "  \"eos_token_id\": %d,\n",
           bos, o->dtype, eos);
    if (!s->qwen2)
        sb_add(&b, "  \"head_dim\": %d,\n", s->head_dim);
    sb_add(&b, "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n"
               "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n",
           s->hidden, s->ffn);
    if (s->qwen2) {
        sb_add(&b, "  \"layer_types\": [\n");
        for (int l = 0; l < o->layers; l++)
            sb_add(&b, "    \"full_attention\"%s\n", l + 1 < o->layers ? "," : "");
        sb_add(&b, "  ],\n");
    }
    sb_add(&b, "  \"max_position_embeddings\": %d,\n", s->max_pos);
    if (s->qwen2)
        sb_add(&b, "  \"max_window_layers\": %d,\n", s->layers);
    else
        sb_add(&b, "  \"mlp_bias\": false,\n");
    sb_add(&b, "  \"model_type\": \"%s\",\n  \"num_attention_heads\": %d,\n"
               "  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n"
               "  \"pad_token_id\": null,\n",
           s->qwen2 ? "qwen2" : "llama", s->heads, o->layers, s->kv_heads);
    if (!s->qwen2)
        sb_add(&b, "  \"pretraining_tp\": 1,\n");
    sb_add(&b, "  \"rms_norm_eps\": ");
    sb_float(&b, s->eps);
    sb_add(&b, ",\n  \"rope_parameters\": {\n    \"rope_theta\": ");
    sb_float(&b, s->rope_theta);
    sb_add(&b, ",\n    \"rope_type\": \"default\"\n  },\n");
    if (s->qwen2)
        sb_add(&b, "  \"sliding_window\": null,\n");
    sb_add(&b, "  \"tie_word_embeddings\": false,\n  \"transformers_version\": \"%s\",\n"
               "  \"use_cache\": true,\n",
           TRANSFORMERS_VERSION);
    if (s->qwen2)
        sb_add(&b, "  \"use_sliding_window\": false,\n");
    sb_add(&b, "  \"vocab_size\": %d\n}\n", s->vocab);
    int rc = write_sbuf(dir, "config.json", &b, err);
    free(b.p);
    return rc;
}

static int write_generation_config(const char *dir, const opts *o, lmc_error *err)
{
    int bos, eos;
    special_ids(o->s, &bos, &eos);
    sbuf b = {0};
    sb_add(&b, "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": %d,\n"
               "  \"eos_token_id\": %d,\n  \"output_attentions\": false,\n"
               "  \"output_hidden_states\": false,\n  \"transformers_version\": \"%s\",\n"
               "  \"use_cache\": true\n}\n",
           bos, eos, TRANSFORMERS_VERSION);
    int rc = write_sbuf(dir, "generation_config.json", &b, err);
    free(b.p);
    return rc;
}

/* ---- tokenizer ----
 * A byte-fallback BPE in Llama-2's layout with no merges: the family's
 * special tokens at their real ids, the 256 <0xNN> byte tokens, U+2581 and
 * the printable ASCII characters, then unreachable filler up to the vocab
 * size. Text therefore encodes to about one token per character. */

/* The lowest id not taken yet, from *at on. */
static int next_free(char **v, int *at)
{
    while (v[*at])
        (*at)++;
    return *at;
}

static char **tokenizer_vocab(const shape *s, int *n_special, const char **bos, const char **eos,
                              const char **unk)
{
    int V = s->vocab;
    char **v = calloc((size_t)V, sizeof *v);
    if (!v)
        return NULL;
    int base = s->special_base, ns = 0;
    char tmp[64];
#define SET(id, str) (v[id] = strdup(str))
    if (s->tok == TOK_LLAMA2) {
        SET(0, "<unk>");
        SET(1, "<s>");
        SET(2, "</s>");
        ns = 3;
        *bos = "<s>", *eos = "</s>", *unk = "<unk>";
    } else if (s->tok == TOK_LLAMA3) {
        SET(base, "<|begin_of_text|>");
        SET(base + 1, "<|end_of_text|>");
        for (ns = 2; base + ns < V; ns++) {
            snprintf(tmp, sizeof tmp, "<|reserved_special_token_%d|>", ns - 2);
            SET(base + ns, tmp);
        }
        *bos = "<|begin_of_text|>", *eos = "<|end_of_text|>", *unk = NULL;
    } else {
        SET(base, "<|endoftext|>");
        SET(base + 1, "<|im_start|>");
        SET(base + 2, "<|im_end|>");
        ns = 3;
        *bos = NULL, *eos = "<|endoftext|>", *unk = NULL;
    }
    *n_special = ns;
    int id = 0;
#define NEXT() next_free(v, &id)
    for (int c = 0; c < 256; c++) {
        snprintf(tmp, sizeof tmp, "<0x%02X>", c);
        SET(NEXT(), tmp);
    }
    SET(NEXT(), "\xe2\x96\x81");
    for (int c = 0x21; c < 0x7f; c++) {
        tmp[0] = (char)c;
        tmp[1] = 0;
        SET(NEXT(), tmp);
    }
    for (int f = 0;; f++) {
        while (id < V && v[id])
            id++;
        if (id == V)
            break;
        snprintf(tmp, sizeof tmp, "<extra_%d>", f);
        SET(id, tmp);
    }
#undef NEXT
#undef SET
    for (int i = 0; i < V; i++)
        if (!v[i]) {
            for (int j = 0; j < V; j++)
                free(v[j]);
            free(v);
            return NULL;
        }
    return v;
}

static int write_tokenizer(const char *dir, const opts *o, lmc_error *err)
{
    const shape *s = o->s;
    int ns;
    const char *bos, *eos, *unk;
    char **v = tokenizer_vocab(s, &ns, &bos, &eos, &unk);
    if (!v)
        return lmc_fail(err, "%s: out of memory", dir);
    int first_special = s->tok == TOK_LLAMA2 ? 0 : s->special_base;
    sbuf b = {0};
    sb_add(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
               "  \"added_tokens\": [");
    for (int i = 0; i < ns; i++) {
        sb_add(&b, "%s\n    {\n      \"id\": %d,\n      \"content\": ", i ? "," : "",
               first_special + i);
        sb_str(&b, v[first_special + i]);
        sb_add(&b, ",\n      \"single_word\": false,\n      \"lstrip\": false,\n"
                   "      \"rstrip\": false,\n      \"normalized\": false,\n"
                   "      \"special\": true\n    }");
    }
    sb_add(&b, "\n  ],\n  \"normalizer\": {\n    \"type\": \"Sequence\",\n    \"normalizers\": [\n"
               "      {\n        \"type\": \"Prepend\",\n        \"prepend\": \"\xe2\x96\x81\"\n"
               "      },\n      {\n        \"type\": \"Replace\",\n        \"pattern\": {\n"
               "          \"String\": \" \"\n        },\n        \"content\": \"\xe2\x96\x81\"\n"
               "      }\n    ]\n  },\n  \"pre_tokenizer\": null,\n");
    if (bos) {
        int bos_id = s->tok == TOK_LLAMA2 ? 1 : s->special_base;
        sb_add(&b, "  \"post_processor\": {\n    \"type\": \"TemplateProcessing\",\n"
                   "    \"single\": [\n      {\n        \"SpecialToken\": {\n"
                   "          \"id\": \"%s\",\n          \"type_id\": 0\n        }\n      },\n"
                   "      {\n        \"Sequence\": {\n          \"id\": \"A\",\n"
                   "          \"type_id\": 0\n        }\n      }\n    ],\n"
                   "    \"pair\": [\n      {\n        \"SpecialToken\": {\n"
                   "          \"id\": \"%s\",\n          \"type_id\": 0\n        }\n      },\n"
                   "      {\n        \"Sequence\": {\n          \"id\": \"A\",\n"
                   "          \"type_id\": 0\n        }\n      },\n"
                   "      {\n        \"SpecialToken\": {\n          \"id\": \"%s\",\n"
                   "          \"type_id\": 1\n        }\n      },\n"
                   "      {\n        \"Sequence\": {\n          \"id\": \"B\",\n"
                   "          \"type_id\": 1\n        }\n      }\n    ],\n"
                   "    \"special_tokens\": {\n      \"%s\": {\n        \"id\": \"%s\",\n"
                   "        \"ids\": [\n          %d\n        ],\n        \"tokens\": [\n"
                   "          \"%s\"\n        ]\n      }\n    }\n  },\n",
               bos, bos, bos, bos, bos, bos_id, bos);
    } else {
        sb_add(&b, "  \"post_processor\": null,\n");
    }
    sb_add(&b, "  \"decoder\": {\n    \"type\": \"Sequence\",\n    \"decoders\": [\n"
               "      {\n        \"type\": \"Replace\",\n        \"pattern\": {\n"
               "          \"String\": \"\xe2\x96\x81\"\n        },\n        \"content\": \" \"\n"
               "      },\n      {\n        \"type\": \"ByteFallback\"\n      },\n"
               "      {\n        \"type\": \"Fuse\"\n      },\n      {\n"
               "        \"type\": \"Strip\",\n        \"content\": \" \",\n"
               "        \"start\": 1,\n        \"stop\": 0\n      }\n    ]\n  },\n");
    sb_add(&b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
               "    \"unk_token\": ");
    if (unk)
        sb_str(&b, unk);
    else
        sb_add(&b, "null");
    sb_add(&b, ",\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
               "    \"fuse_unk\": true,\n    \"byte_fallback\": true,\n"
               "    \"ignore_merges\": false,\n    \"vocab\": {");
    for (int i = 0; i < s->vocab; i++) {
        sb_add(&b, "%s\n      ", i ? "," : "");
        sb_str(&b, v[i]);
        sb_add(&b, ": %d", i);
    }
    sb_add(&b, "\n    },\n    \"merges\": []\n  }\n}");
    int rc = write_sbuf(dir, "tokenizer.json", &b, err);
    free(b.p);
    for (int i = 0; i < s->vocab; i++)
        free(v[i]);
    free(v);
    if (rc != 0)
        return rc;

    sbuf c = {0};
    sb_add(&c, "{\n  \"backend\": \"tokenizers\",\n  \"bos_token\": ");
    if (bos)
        sb_str(&c, bos);
    else
        sb_add(&c, "null");
    sb_add(&c, ",\n  \"eos_token\": ");
    sb_str(&c, eos);
    sb_add(&c, ",\n  \"model_max_length\": %d,\n  \"tokenizer_class\": \"TokenizersBackend\"",
           s->max_pos);
    if (unk) {
        sb_add(&c, ",\n  \"unk_token\": ");
        sb_str(&c, unk);
    }
    sb_add(&c, "\n}\n");
    rc = write_sbuf(dir, "tokenizer_config.json", &c, err);
    free(c.p);
    return rc;
}

static int write_all(const char *dir, const opts *o, lmc_error *err)
{
    int n;
    tensor *t = list_tensors(o, &n);
    if (!t)
        return lmc_fail(err, "%s: out of memory", dir);
    assign_shards(t, n, o->shards);
    /* two chunks per thread keep them all busy; at most 2 x 32 x 2 MiB in flight */
    size_t batch = (size_t)omp_get_max_threads() * 2;
    if (batch > 32)
        batch = 32;
    writer w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    w.buf[0] = malloc(batch * CHUNK * sizeof(uint16_t));
    w.buf[1] = malloc(batch * CHUNK * sizeof(uint16_t));
    int rc = -1;
    if (!w.buf[0] || !w.buf[1]) {
        lmc_fail(err, "%s: out of memory", dir);
        goto out;
    }
    zig_setup();
    for (int k = 0; k < o->shards; k++)
        if (write_shard(dir, o, t, n, k, &w, batch, err) != 0)
            goto out;
    if ((o->shards > 1 && write_index(dir, o, t, n, err) != 0) ||
        write_config(dir, o, err) != 0 || write_generation_config(dir, o, err) != 0 ||
        write_tokenizer(dir, o, err) != 0)
        goto out;
    rc = 0;
out:
    free(w.buf[0]);
    free(w.buf[1]);
    free(t);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    int check = argc >= 2 && !strcmp(argv[1], "--check");
    int into = argc >= 3 && !strcmp(argv[1], "--into");
    if (!check && !into) {
        fprintf(stderr, "make-random-checkpoint: run it through scripts/make-random-checkpoint\n");
        return 2;
    }
    opts o;
    int skip = check ? 2 : 3;
    int rc = parse_args(argc - skip, argv + skip, &o);
    if (rc != 0)
        return rc;
    if (check) {
        printf("%s\n", o.out);
        return 0;
    }
    /* past a file-size limit, a write error with the file's name, not a silent death */
    signal(SIGXFSZ, SIG_IGN);
    lmc_error err;
    if (write_all(argv[2], &o, &err) != 0) {
        fprintf(stderr, "make-random-checkpoint: %s\n", err.msg);
        return 1;
    }
    return 0;
}
