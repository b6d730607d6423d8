#include "safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/half.h"

/* Every dtype of the safetensors spec with a whole number of bytes per
 * element; the sub-byte float formats (F4, F6_*) are rejected as unknown. */
static const struct {
    const char *name;
    size_t size;
    const char *torch;
} dtypes[] = {
    {"BOOL", 1, "bool"},       {"U8", 1, "uint8"},        {"I8", 1, "int8"},
    {"F8_E5M2", 1, "float8_e5m2"}, {"F8_E4M3", 1, "float8_e4m3fn"},
    {"F8_E8M0", 1, "float8_e8m0fnu"},
    {"I16", 2, "int16"},       {"U16", 2, "uint16"},      {"F16", 2, "float16"},
    {"BF16", 2, "bfloat16"},   {"I32", 4, "int32"},       {"U32", 4, "uint32"},
    {"F32", 4, "float32"},     {"F64", 8, "float64"},     {"I64", 8, "int64"},
    {"U64", 8, "uint64"},      {"C64", 8, "complex64"},
};

size_t lmc_st_dtype_size(const char *dtype)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, dtype) == 0)
            return dtypes[i].size;
    return 0;
}

const char *lmc_st_dtype_from_torch(const char *torch_name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].torch, torch_name) == 0)
            return dtypes[i].name;
    return NULL;
}

const char *lmc_st_dtype_to_torch(const char *dtype)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, dtype) == 0)
            return dtypes[i].torch;
    return NULL;
}

static int float_dtype(const char *dtype, lmc_enc_id *id)
{
    if (strcmp(dtype, "F16") == 0)
        *id = LMC_ENC_F16;
    else if (strcmp(dtype, "BF16") == 0)
        *id = LMC_ENC_BF16;
    else if (strcmp(dtype, "F32") == 0)
        *id = LMC_ENC_F32;
    else
        return -1;
    return 0;
}

int lmc_st_weight_encoding(const char *file, const lmc_st_tensor *t, lmc_enc_id *id,
                           lmc_error *err)
{
    if (float_dtype(t->dtype, id) != 0)
        return lmc_fail(err, "%s: tensor %s has dtype %s, expected F16, BF16 or F32", file,
                        t->name, t->dtype);
    return 0;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

/* ---------------------------------------------------------------- reader */

/* A non-negative integer that a double represents exactly. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d))
        return -1;
    *out = (uint64_t)d;
    return 0;
}

void lmc_safetensors_close(lmc_safetensors *st)
{
    for (int i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < 2 * st->n_meta; i++)
        free(st->meta[i]);
    free(st->meta);
    lmc_mmap_close(&st->map);
    free(st->path);
    memset(st, 0, sizeof *st);
}

lmc_mmap lmc_safetensors_take_map(lmc_safetensors *st)
{
    lmc_mmap m = st->map;
    st->map.data = NULL;
    st->map.size = 0;
    return m;
}

const lmc_st_tensor *lmc_safetensors_find(const lmc_safetensors *st, const char *name)
{
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

const char *lmc_safetensors_meta(const lmc_safetensors *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0)
            return st->meta[2 * i + 1];
    return NULL;
}

typedef struct span {
    uint64_t begin, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static const lmc_st_tensor *sort_base;
static int cmp_name(const void *a, const void *b)
{
    return strcmp(sort_base[*(const int *)a].name, sort_base[*(const int *)b].name);
}

/* Parse one header entry into t (name already set) and its span. */
static int parse_entry(const char *path, const cJSON *e, lmc_st_tensor *t, span *sp,
                       lmc_error *err)
{
    if (!cJSON_IsObject(e))
        return lmc_fail(err, "%s: header entry '%s' is not an object", path, t->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return lmc_fail(err, "%s: tensor %s has no string 'dtype'", path, t->name);
    size_t esz = lmc_st_dtype_size(dt->valuestring);
    if (!esz)
        return lmc_fail(err, "%s: tensor %s has unknown dtype '%.32s'", path, t->name,
                        dt->valuestring);
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->valuestring);
    if (!cJSON_IsArray(sh))
        return lmc_fail(err, "%s: tensor %s has no 'shape' array", path, t->name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > LMC_ST_MAX_DIMS)
        return lmc_fail(err, "%s: tensor %s has %d dimensions (at most %d supported)", path,
                        t->name, nd, LMC_ST_MAX_DIMS);
    t->ndim = nd;
    /* element count with overflow checks: the product must stay below 2^62 */
    uint64_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (json_uint(cJSON_GetArrayItem(sh, i), &d) != 0)
            return lmc_fail(err, "%s: tensor %s: shape entry %d is not a non-negative integer",
                            path, t->name, i);
        t->shape[i] = (int64_t)d;
        if (d && numel > (UINT64_C(1) << 62) / d)
            overflow = 1;
        numel *= d;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return lmc_fail(err, "%s: tensor %s has no 'data_offsets' [begin, end] pair", path,
                        t->name);
    if (json_uint(cJSON_GetArrayItem(off, 0), &sp->begin) != 0 ||
        json_uint(cJSON_GetArrayItem(off, 1), &sp->end) != 0)
        return lmc_fail(err, "%s: tensor %s: data_offsets are not non-negative integers", path,
                        t->name);
    if (sp->end < sp->begin)
        return lmc_fail(err, "%s: tensor %s: data_offsets [%llu, %llu) end before they begin",
                        path, t->name, (unsigned long long)sp->begin,
                        (unsigned long long)sp->end);
    char sbuf[160];
    shape_str(t->shape, t->ndim, sbuf, sizeof sbuf);
    if (overflow || numel > (UINT64_C(1) << 62) / esz)
        return lmc_fail(err, "%s: tensor %s: shape %s is too large", path, t->name, sbuf);
    if (numel * esz != sp->end - sp->begin)
        return lmc_fail(err,
                        "%s: tensor %s: shape %s of %s needs %llu bytes, but data_offsets "
                        "[%llu, %llu) span %llu",
                        path, t->name, sbuf, t->dtype, (unsigned long long)(numel * esz),
                        (unsigned long long)sp->begin, (unsigned long long)sp->end,
                        (unsigned long long)(sp->end - sp->begin));
    t->nbytes = (size_t)(sp->end - sp->begin);
    return 0;
}

static int parse_metadata(const char *path, const cJSON *md, lmc_safetensors *st,
                          lmc_error *err)
{
    if (!cJSON_IsObject(md))
        return lmc_fail(err, "%s: __metadata__ is not an object", path);
    int n = cJSON_GetArraySize(md);
    st->meta = calloc((size_t)(2 * n + 1), sizeof *st->meta);
    if (!st->meta)
        return lmc_fail(err, "%s: out of memory", path);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, md)
    {
        if (!cJSON_IsString(kv))
            return lmc_fail(err, "%s: __metadata__ value of '%.64s' is not a string", path,
                            kv->string);
        st->meta[2 * st->n_meta] = strdup(kv->string);
        st->meta[2 * st->n_meta + 1] = strdup(kv->valuestring);
        st->n_meta++;
        if (!st->meta[2 * st->n_meta - 2] || !st->meta[2 * st->n_meta - 1])
            return lmc_fail(err, "%s: out of memory", path);
    }
    return 0;
}

static int parse_header(const char *path, const char *hdr, size_t hlen, size_t data_size,
                        lmc_safetensors *st, lmc_error *err)
{
    /* The reference library requires an object; it pads with spaces only. */
    size_t lead = 0;
    while (lead < hlen && (hdr[lead] == ' ' || hdr[lead] == '\n' || hdr[lead] == '\r' ||
                           hdr[lead] == '\t'))
        lead++;
    if (lead == hlen || hdr[lead] != '{')
        return lmc_fail(err, "%s: header is not a JSON object", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        long at = ep && ep >= hdr && ep <= hdr + hlen ? (long)(ep - hdr) : -1;
        return lmc_fail(err, "%s: header is not valid JSON (error near byte %ld of %zu)", path,
                        at, hlen);
    }
    int rc = -1;
    span *spans = NULL;
    int *order = NULL;
    for (const char *p = end; p < hdr + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            lmc_fail(err, "%s: header has trailing bytes after the JSON object (byte %ld)",
                     path, (long)(p - hdr));
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        lmc_fail(err, "%s: header is not a JSON object", path);
        goto out;
    }
    int n = cJSON_GetArraySize(root);
    st->tensors = calloc((size_t)n + 1, sizeof *st->tensors);
    spans = calloc((size_t)n + 1, sizeof *spans);
    order = calloc((size_t)n + 1, sizeof *order);
    if (!st->tensors || !spans || !order) {
        lmc_fail(err, "%s: out of memory", path);
        goto out;
    }
    const cJSON *e;
    int seen_meta = 0;
    cJSON_ArrayForEach(e, root)
    {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta++) {
                lmc_fail(err, "%s: __metadata__ appears twice in the header", path);
                goto out;
            }
            if (parse_metadata(path, e, st, err) != 0)
                goto out;
            continue;
        }
        lmc_st_tensor *t = &st->tensors[st->n_tensors];
        if (!(t->name = strdup(e->string))) {
            lmc_fail(err, "%s: out of memory", path);
            goto out;
        }
        st->n_tensors++;
        span *sp = &spans[st->n_tensors - 1];
        sp->idx = st->n_tensors - 1;
        if (parse_entry(path, e, t, sp, err) != 0)
            goto out;
    }

    /* names must be unique (JSON objects may repeat keys; safetensors may not) */
    for (int i = 0; i < st->n_tensors; i++)
        order[i] = i;
    sort_base = st->tensors;
    qsort(order, (size_t)st->n_tensors, sizeof *order, cmp_name);
    for (int i = 1; i < st->n_tensors; i++)
        if (strcmp(st->tensors[order[i]].name, st->tensors[order[i - 1]].name) == 0) {
            lmc_fail(err, "%s: tensor %s appears twice in the header", path,
                     st->tensors[order[i]].name);
            goto out;
        }

    /* offsets must tile [0, data_size) exactly */
    qsort(spans, (size_t)st->n_tensors, sizeof *spans, cmp_span);
    uint64_t pos = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const span *s = &spans[i];
        if (s->begin < pos) {
            lmc_fail(err, "%s: tensor %s (bytes [%llu, %llu)) overlaps tensor %s", path,
                     st->tensors[s->idx].name, (unsigned long long)s->begin,
                     (unsigned long long)s->end, st->tensors[spans[i - 1].idx].name);
            goto out;
        }
        if (s->begin > pos) {
            lmc_fail(err, "%s: bytes [%llu, %llu) of the data area belong to no tensor (gap "
                          "before %s)",
                     path, (unsigned long long)pos, (unsigned long long)s->begin,
                     st->tensors[s->idx].name);
            goto out;
        }
        pos = s->end;
    }
    if (pos > data_size) {
        lmc_fail(err, "%s: data area is %zu bytes but the tensors need %llu (file truncated?)",
                 path, data_size, (unsigned long long)pos);
        goto out;
    }
    if (pos < data_size) {
        lmc_fail(err, "%s: data area is %zu bytes but the tensors end at byte %llu "
                      "(%llu unexplained trailing bytes)",
                 path, data_size, (unsigned long long)pos,
                 (unsigned long long)(data_size - pos));
        goto out;
    }
    for (int i = 0; i < st->n_tensors; i++) {
        const span *s = &spans[i];
        lmc_st_tensor *t = &st->tensors[s->idx];
        t->data = t->nbytes ? (const uint8_t *)hdr + hlen + s->begin : NULL;
    }
    rc = 0;
out:
    free(spans);
    free(order);
    cJSON_Delete(root);
    return rc;
}

int lmc_safetensors_parse(const void *buf, size_t size, const char *path, lmc_safetensors *st,
                          lmc_error *err)
{
    memset(st, 0, sizeof *st);
    if (!(st->path = strdup(path)))
        return lmc_fail(err, "%s: out of memory", path);
    if (size < 8) {
        lmc_safetensors_close(st);
        return lmc_fail(err, "%s: file is %zu bytes, too short for a safetensors header", path,
                        size);
    }
    const unsigned char *d = buf;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | d[i];
    if (n > LMC_ST_MAX_HEADER) {
        lmc_safetensors_close(st);
        return lmc_fail(err, "%s: header length %llu exceeds the 100 MB limit (not a "
                             "safetensors file?)",
                        path, (unsigned long long)n);
    }
    if (n > size - 8) {
        lmc_safetensors_close(st);
        return lmc_fail(err, "%s: header length %llu goes beyond the end of the file (%zu "
                             "bytes)",
                        path, (unsigned long long)n, size);
    }
    if (parse_header(path, (const char *)d + 8, (size_t)n, size - 8 - (size_t)n, st, err) !=
        0) {
        lmc_safetensors_close(st);
        return -1;
    }
    return 0;
}

int lmc_safetensors_open(const char *path, lmc_safetensors *st, lmc_error *err)
{
    lmc_mmap map;
    memset(st, 0, sizeof *st);
    if (lmc_mmap_open(path, &map, err) != 0)
        return -1;
    if (lmc_safetensors_parse(map.data, map.size, path, st, err) != 0) {
        lmc_mmap_close(&map);
        return -1;
    }
    st->map = map;
    return 0;
}

/* ---------------------------------------------------------------- writer */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, long long v)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, fmt, v);
    sb_put(b, tmp, (size_t)k);
}

/* JSON string literal: escape quotes, backslashes and control characters;
 * other bytes (UTF-8) pass through. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_put(b, e, 6);
        } else {
            sb_put(b, (const char *)s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Convert n elements from one float dtype to another into dst. */
static int convert_chunk(const void *src, lmc_enc_id sid, void *dst, lmc_enc_id did, size_t n,
                         float *tmp, const char *path, const char *tname, lmc_error *err)
{
    switch (sid) {
    case LMC_ENC_F32: memcpy(tmp, src, n * 4); break;
    case LMC_ENC_F16: lmc_f16_to_f32_n(src, tmp, n); break;
    case LMC_ENC_BF16: lmc_bf16_to_f32_n(src, tmp, n); break;
    default: return lmc_fail(err, "%s: tensor %s: bad source dtype", path, tname);
    }
    switch (did) {
    case LMC_ENC_F32: memcpy(dst, tmp, n * 4); break;
    case LMC_ENC_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = lmc_f32_to_f16(tmp[i]);
            if (isfinite(tmp[i]) && (h & 0x7c00) == 0x7c00)
                return lmc_fail(err, "%s: tensor %s: value %g overflows float16", path, tname,
                                (double)tmp[i]);
            ((uint16_t *)dst)[i] = h;
        }
        break;
    case LMC_ENC_BF16:
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = lmc_f32_to_bf16(tmp[i]);
        break;
    default: return lmc_fail(err, "%s: tensor %s: bad destination dtype", path, tname);
    }
    return 0;
}

#define CONV_CHUNK 65536

int lmc_safetensors_write(const char *path, const lmc_st_write_tensor *tensors, int n,
                          const char *const *metadata, lmc_error *err)
{
    if (n < 0)
        return lmc_fail(err, "%s: negative tensor count", path);
    uint64_t *sizes = calloc((size_t)n + 1, sizeof *sizes);
    if (!sizes)
        return lmc_fail(err, "%s: out of memory", path);
    sbuf hb = {0};
    int rc = -1;
    float *tmp = NULL;
    void *out = NULL, *stage = NULL, *fbuf = NULL;

    sb_str(&hb, "{");
    int first = 1;
    if (metadata && metadata[0]) {
        sb_str(&hb, "\"__metadata__\":{");
        for (int i = 0; metadata[i]; i += 2) {
            if (!metadata[i + 1]) {
                lmc_fail(err, "%s: metadata key '%s' has no value", path, metadata[i]);
                goto out;
            }
            if (i)
                sb_str(&hb, ",");
            sb_json_str(&hb, metadata[i]);
            sb_str(&hb, ":");
            sb_json_str(&hb, metadata[i + 1]);
        }
        sb_str(&hb, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const lmc_st_write_tensor *t = &tensors[i];
        if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0) {
            lmc_fail(err, "%s: tensor %d has an invalid name", path, i);
            goto out;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0) {
                lmc_fail(err, "%s: tensor %s given twice", path, t->name);
                goto out;
            }
        size_t esz = t->dtype ? lmc_st_dtype_size(t->dtype) : 0;
        if (!esz) {
            lmc_fail(err, "%s: tensor %s: unknown dtype '%s'", path, t->name,
                     t->dtype ? t->dtype : "(null)");
            goto out;
        }
        if (t->src_dtype && strcmp(t->src_dtype, t->dtype) != 0) {
            lmc_enc_id a, b;
            if (float_dtype(t->src_dtype, &a) != 0 || float_dtype(t->dtype, &b) != 0) {
                lmc_fail(err, "%s: tensor %s: cannot convert %s to %s (only F16, BF16, F32)",
                         path, t->name, t->src_dtype, t->dtype);
                goto out;
            }
        }
        if (t->ndim < 0 || t->ndim > LMC_ST_MAX_DIMS) {
            lmc_fail(err, "%s: tensor %s: bad ndim %d", path, t->name, t->ndim);
            goto out;
        }
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) {
                lmc_fail(err, "%s: tensor %s: negative dimension", path, t->name);
                goto out;
            }
            numel *= (uint64_t)t->shape[d];
        }
        sizes[i] = numel * esz;
        if (t->fill && t->src_dtype && strcmp(t->src_dtype, t->dtype) != 0) {
            lmc_fail(err, "%s: tensor %s: a filled tensor cannot be converted", path, t->name);
            goto out;
        }
        if (sizes[i] && !t->data && !t->fill) {
            lmc_fail(err, "%s: tensor %s has no data", path, t->name);
            goto out;
        }
        if (!first)
            sb_str(&hb, ",");
        first = 0;
        sb_json_str(&hb, t->name);
        sb_str(&hb, ":{\"dtype\":");
        sb_json_str(&hb, t->dtype);
        sb_str(&hb, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++)
            sb_fmt(&hb, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        sb_str(&hb, "],\"data_offsets\":[");
        sb_fmt(&hb, "%lld", (long long)off);
        sb_fmt(&hb, ",%lld", (long long)(off + sizes[i]));
        sb_str(&hb, "]}");
        off += sizes[i];
    }
    sb_str(&hb, "}");
    while (!hb.oom && hb.n % 8)
        sb_str(&hb, " ");
    if (hb.oom) {
        lmc_fail(err, "%s: out of memory", path);
        goto out;
    }

    tmp = malloc(CONV_CHUNK * sizeof *tmp);
    out = malloc(CONV_CHUNK * 4);
    stage = malloc(CONV_CHUNK * 4);
    if (!tmp || !out || !stage) {
        lmc_fail(err, "%s: out of memory", path);
        goto out;
    }
    lmc_atomic_file af;
    if (lmc_atomic_open(&af, path, err) != 0)
        goto out;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hb.n >> (8 * i));
    if (lmc_atomic_write(&af, len8, 8, err) != 0 || lmc_atomic_write(&af, hb.p, hb.n, err) != 0)
        goto fail;
    for (int i = 0; i < n; i++) {
        const lmc_st_write_tensor *t = &tensors[i];
        if (t->fill) {
            if (!fbuf) { /* one buffer, the largest filled tensor's size */
                size_t most = 1;
                for (int k = i; k < n; k++)
                    most = tensors[k].fill && sizes[k] > most ? sizes[k] : most;
                if (!(fbuf = malloc(most))) {
                    lmc_fail(err, "%s: out of memory for tensor %s", path, t->name);
                    goto fail;
                }
            }
            const void *data = fbuf;
            if (t->fill(t->fill_ctx, fbuf, sizes[i], &data, err) != 0 ||
                lmc_atomic_write(&af, data, sizes[i], err) != 0)
                goto fail;
            continue;
        }
        if (!t->src_dtype || strcmp(t->src_dtype, t->dtype) == 0) {
            if (lmc_atomic_write(&af, t->data, sizes[i], err) != 0)
                goto fail;
            continue;
        }
        lmc_enc_id sid, did;
        float_dtype(t->src_dtype, &sid);
        float_dtype(t->dtype, &did);
        size_t ssz = lmc_st_dtype_size(t->src_dtype), dsz = lmc_st_dtype_size(t->dtype);
        size_t numel = sizes[i] / dsz;
        for (size_t k = 0; k < numel; k += CONV_CHUNK) {
            size_t m = numel - k < CONV_CHUNK ? numel - k : CONV_CHUNK;
            /* the source may be unaligned (a map at any offset): stage it first */
            memcpy(stage, (const uint8_t *)t->data + k * ssz, m * ssz);
            if (convert_chunk(stage, sid, out, did, m, tmp, path, t->name, err) != 0)
                goto fail;
            if (lmc_atomic_write(&af, out, m * dsz, err) != 0)
                goto fail;
        }
    }
    if (lmc_atomic_commit(&af, err) != 0)
        goto out;
    rc = 0;
    goto out;
fail:
    lmc_atomic_abort(&af);
out:
    free(sizes);
    free(hb.p);
    free(tmp);
    free(out);
    free(stage);
    free(fbuf);
    return rc;
}
