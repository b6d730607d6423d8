/* The .lmc container (docs/FORMAT.md). The reader trusts nothing: every
 * byte of the file is covered by a check (magic, version, header CRC, zero
 * padding, per-blob CRCs), and every header value is range-checked before it
 * is used as an offset. */
#define _POSIX_C_SOURCE 200809L
#include "container.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "config_json.h"
#include "tokenizer.h"

#define CTR_MAGIC "\x89LMC\r\n\x1a\n"
#define CTR_MAGIC_LEN 8
#define CTR_VERSION 1
#define CTR_PREAMBLE 24
#define CTR_ALIGN 64

static uint64_t align_up(uint64_t x) { return (x + CTR_ALIGN - 1) / CTR_ALIGN * CTR_ALIGN; }

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

/* zlib's crc32 takes a uInt length: feed large blobs in chunks. */
static uint32_t crc_of(const void *data, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *p = data;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

int lmc_container_sniff(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char buf[CTR_MAGIC_LEN];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == CTR_MAGIC_LEN && memcmp(buf, CTR_MAGIC, CTR_MAGIC_LEN) == 0;
}

/* ---- encoding <-> JSON ---- */

static cJSON *encoding_to_json(const lmc_encoding *e)
{
    const lmc_enc_traits *t = lmc_enc_get(e->id);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", e->id);
    cJSON_AddStringToObject(o, "name", t ? t->name : "unknown");
    cJSON_AddNumberToObject(o, "bits", e->bits);
    cJSON_AddNumberToObject(o, "group", e->group);
    cJSON_AddNumberToObject(o, "sym", e->sym);
    cJSON_AddNumberToObject(o, "has_gidx", e->has_gidx);
    cJSON_AddNumberToObject(o, "n", e->n);
    cJSON_AddNumberToObject(o, "m", e->m);
    cJSON_AddNumberToObject(o, "inner", e->inner);
    cJSON_AddNumberToObject(o, "nnz", (double)e->nnz);
    cJSON_AddNumberToObject(o, "rank", e->rank);
    cJSON_AddNumberToObject(o, "n_outlier", e->n_outlier);
    cJSON_AddNumberToObject(o, "has_smooth", e->has_smooth);
    return o;
}

static int encoding_from_json(const cJSON *o, lmc_encoding *e, const char *what,
                              const char *tname, lmc_error *err)
{
    memset(e, 0, sizeof *e);
    if (!cJSON_IsObject(o))
        return lmc_fail(err, "%s: tensor %s: encoding is not an object", what, tname);
    int64_t v;
    if (lmc_json_get_i64(cJSON_GetObjectItemCaseSensitive(o, "id"), 0, 1 << 30, &v) != 0)
        return lmc_fail(err, "%s: tensor %s: encoding has no valid 'id'", what, tname);
    const lmc_enc_traits *t = lmc_enc_get((lmc_enc_id)v);
    if (!t)
        return lmc_fail(err, "%s: tensor %s: unknown encoding id %lld (not supported by this build)",
                        what, tname, (long long)v);
    e->id = (lmc_enc_id)v;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (name && (!cJSON_IsString(name) || strcmp(name->valuestring, t->name) != 0))
        return lmc_fail(err, "%s: tensor %s: encoding name does not match id %d (%s)", what, tname,
                        (int)e->id, t->name);
    struct {
        const char *key;
        int *dst;
    } ints[] = {{"bits", &e->bits}, {"group", &e->group},         {"sym", &e->sym},
                {"has_gidx", &e->has_gidx}, {"n", &e->n},         {"m", &e->m},
                {"inner", &e->inner},       {"rank", &e->rank},   {"n_outlier", &e->n_outlier},
                {"has_smooth", &e->has_smooth}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, ints[i].key);
        if (!x)
            continue; /* absent parameters read as 0 */
        if (lmc_json_get_i64(x, -2147483647 - 1, 2147483647, &v) != 0)
            return lmc_fail(err, "%s: tensor %s: encoding '%s' is not an integer", what, tname,
                            ints[i].key);
        *ints[i].dst = (int)v;
    }
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "nnz");
    if (x) {
        if (lmc_json_get_i64(x, 0, INT64_MAX, &v) != 0)
            return lmc_fail(err, "%s: tensor %s: encoding 'nnz' is not an integer", what, tname);
        e->nnz = v;
    }
    return 0;
}

/* ---- checks shared by reader and writer ---- */

static int64_t tensor_cols(const lmc_tensor *t) { return t->ndim == 2 ? t->shape[1] : 1; }

/* Name, shape, encoding, nbytes; the config agreement. */
static int check_tensor(const lmc_config *cfg, const lmc_tensor *t, const char *what,
                        lmc_error *err)
{
    size_t nl = strnlen(t->name, sizeof t->name);
    if (nl == 0 || nl >= sizeof t->name)
        return lmc_fail(err, "%s: tensor with an empty or over-long name", what);
    if ((t->ndim != 1 && t->ndim != 2) || t->shape[0] <= 0 || tensor_cols(t) <= 0 ||
        (t->ndim == 1 && t->shape[1] != 1))
        return lmc_fail(err, "%s: tensor %s: bad shape", what, t->name);
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    if (!tr)
        return lmc_fail(err, "%s: tensor %s: unknown encoding id %d", what, t->name,
                        (int)t->enc.id);
    if (tr->validate && tr->validate(&t->enc, t->shape[0], tensor_cols(t), err) != 0) {
        char p[200];
        snprintf(p, sizeof p, "%s: tensor %s: encoding %s", what, t->name, tr->name);
        return lmc_fail_prefix(err, p);
    }
    size_t want = tr->nbytes(&t->enc, t->shape[0], tensor_cols(t));
    if (t->nbytes != want)
        return lmc_fail(err, "%s: tensor %s: %zu bytes but encoding %s of this shape needs %zu",
                        what, t->name, t->nbytes, tr->name, want);
    return lmc_config_check_tensor(cfg, t, what, err);
}

static int check_unique(const lmc_tensor *ts, int n, const char *what, lmc_error *err)
{
    /* quadratic, but models have at most a few thousand tensors */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(ts[i].name, ts[j].name) == 0)
                return lmc_fail(err, "%s: duplicate tensor %s", what, ts[i].name);
    return 0;
}

/* ---- writer ---- */

static int write_zeros(lmc_atomic_file *af, uint64_t n, lmc_error *err)
{
    static const unsigned char z[CTR_ALIGN];
    while (n) {
        size_t k = n > sizeof z ? sizeof z : (size_t)n;
        if (lmc_atomic_write(af, z, k, err) != 0)
            return -1;
        n -= k;
    }
    return 0;
}

static cJSON *blob_json(uint64_t off, size_t n, uint32_t crc)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "offset", (double)off);
    cJSON_AddNumberToObject(o, "nbytes", (double)n);
    cJSON_AddNumberToObject(o, "crc32", crc);
    return o;
}

/* Build the header JSON object; fills offs[] (tokenizer first, then the
 * tensors) relative to the data area. */
static cJSON *build_header(const lmc_model *m, const char *tok, size_t tok_len,
                           const char *record, uint64_t *offs, const char *path, lmc_error *err)
{
    cJSON *h = cJSON_CreateObject();
    if (!h) {
        lmc_fail(err, "%s: out of memory", path);
        return NULL;
    }
    cJSON_AddNumberToObject(h, "format_version", CTR_VERSION);
    cJSON *cfg = lmc_config_to_json(&m->cfg);
    if (!cfg)
        goto oom;
    cJSON_AddItemToObject(h, "config", cfg);
    if (m->config_json)
        cJSON_AddStringToObject(h, "hf_config", m->config_json);
    else
        cJSON_AddNullToObject(h, "hf_config");

    uint64_t pos = 0;
    if (tok) {
        offs[0] = 0;
        cJSON *b = blob_json(0, tok_len, crc_of(tok, tok_len));
        if (!b)
            goto oom;
        cJSON_AddItemToObject(h, "tokenizer", b);
        pos = align_up(tok_len);
    } else {
        cJSON_AddNullToObject(h, "tokenizer");
    }

    cJSON *prov;
    if (m->provenance_json) {
        prov = cJSON_Parse(m->provenance_json);
        if (!cJSON_IsArray(prov)) {
            cJSON_Delete(prov);
            cJSON_Delete(h);
            lmc_fail(err, "%s: the model's provenance is not a JSON array", path);
            return NULL;
        }
    } else {
        prov = cJSON_CreateArray();
    }
    if (!prov)
        goto oom;
    cJSON_AddItemToObject(h, "provenance", prov);
    if (record) {
        cJSON *r = cJSON_Parse(record);
        if (!cJSON_IsObject(r)) {
            cJSON_Delete(r);
            cJSON_Delete(h);
            lmc_fail(err, "%s: provenance record is not a JSON object", path);
            return NULL;
        }
        cJSON_AddItemToArray(prov, r);
    }

    cJSON *arr = cJSON_AddArrayToObject(h, "tensors");
    if (!arr)
        goto oom;
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        offs[1 + i] = pos;
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto oom;
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "name", t->name);
        double shape[2] = {(double)t->shape[0], (double)t->shape[1]};
        cJSON *s = cJSON_CreateDoubleArray(shape, t->ndim);
        cJSON *e = encoding_to_json(&t->enc);
        if (!s || !e) {
            cJSON_Delete(s);
            cJSON_Delete(e);
            goto oom;
        }
        cJSON_AddItemToObject(o, "shape", s);
        cJSON_AddItemToObject(o, "encoding", e);
        cJSON_AddNumberToObject(o, "offset", (double)pos);
        cJSON_AddNumberToObject(o, "nbytes", (double)t->nbytes);
        cJSON_AddNumberToObject(o, "crc32", crc_of(t->data, t->nbytes));
        pos = align_up(pos + t->nbytes);
    }
    return h;
oom:
    cJSON_Delete(h);
    lmc_fail(err, "%s: out of memory building the header", path);
    return NULL;
}

int lmc_container_write(const lmc_model *m, const char *path, const char *provenance_record,
                        lmc_error *err)
{
    lmc_encodings_init();
    /* refuse anything the reader would refuse, before creating a file */
    if (lmc_config_check(&m->cfg, path, err) != 0)
        return -1;
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        if (check_tensor(&m->cfg, t, path, err) != 0)
            return -1;
        if (!t->data)
            return lmc_fail(err, "%s: tensor %s has no data", path, t->name);
    }
    if (check_unique(m->tensors, m->n_tensors, path, err) != 0)
        return -1;

    const char *tok = m->tokenizer_json;
    size_t tok_len = tok ? (m->tokenizer_json_len ? m->tokenizer_json_len : strlen(tok)) : 0;
    uint64_t *offs = calloc((size_t)m->n_tensors + 1, sizeof *offs);
    if (!offs)
        return lmc_fail(err, "%s: out of memory", path);
    cJSON *h = build_header(m, tok, tok_len, provenance_record, offs, path, err);
    if (!h) {
        free(offs);
        return -1;
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) {
        free(offs);
        return lmc_fail(err, "%s: out of memory printing the header", path);
    }
    size_t hlen = strlen(text);

    unsigned char pre[CTR_PREAMBLE];
    memcpy(pre, CTR_MAGIC, CTR_MAGIC_LEN);
    wr32(pre + 8, CTR_VERSION);
    wr32(pre + 12, crc_of(text, hlen));
    wr64(pre + 16, hlen);

    lmc_atomic_file af;
    if (lmc_atomic_open(&af, path, err) != 0) {
        free(text);
        free(offs);
        return -1;
    }
    uint64_t data_start = align_up(CTR_PREAMBLE + hlen);
    int rc = lmc_atomic_write(&af, pre, sizeof pre, err);
    if (!rc)
        rc = lmc_atomic_write(&af, text, hlen, err);
    if (!rc)
        rc = write_zeros(&af, data_start - CTR_PREAMBLE - hlen, err);
    uint64_t pos = 0; /* bytes of the data area written so far */
    if (!rc && tok) {
        rc = lmc_atomic_write(&af, tok, tok_len, err);
        pos = tok_len;
    }
    for (int i = 0; !rc && i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        rc = write_zeros(&af, offs[1 + i] - pos, err);
        if (!rc)
            rc = lmc_atomic_write(&af, t->data, t->nbytes, err);
        pos = offs[1 + i] + t->nbytes;
    }
    free(text);
    free(offs);
    if (rc) {
        lmc_atomic_abort(&af);
        return -1;
    }
    return lmc_atomic_commit(&af, err);
}

/* ---- reader ---- */

typedef struct {
    uint64_t off, n;
    uint32_t crc;
    const char *what; /* tensor name or "tokenizer" */
} region;

static int cmp_region(const void *a, const void *b)
{
    const region *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off ? 1 : (x->n > y->n) - (x->n < y->n);
}

static int all_zero(const unsigned char *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* offset/nbytes/crc32 of one blob description; data_size bounds it. */
static int parse_blob(const cJSON *o, const char *path, const char *what, uint64_t data_size,
                      region *r, lmc_error *err)
{
    int64_t off, n, crc;
    if (lmc_json_get_i64(cJSON_GetObjectItemCaseSensitive(o, "offset"), 0, INT64_MAX, &off) ||
        lmc_json_get_i64(cJSON_GetObjectItemCaseSensitive(o, "nbytes"), 0, INT64_MAX, &n) ||
        lmc_json_get_i64(cJSON_GetObjectItemCaseSensitive(o, "crc32"), 0, 0xffffffffLL, &crc))
        return lmc_fail(err, "%s: %s: missing or invalid offset/nbytes/crc32", path, what);
    if (off % CTR_ALIGN)
        return lmc_fail(err, "%s: %s: offset %lld is not %d-byte aligned", path, what,
                        (long long)off, CTR_ALIGN);
    if ((uint64_t)off > data_size || (uint64_t)n > data_size - (uint64_t)off)
        return lmc_fail(err,
                        "%s: truncated or corrupt: %s spans data bytes [%lld, %lld) but the data "
                        "area has %llu",
                        path, what, (long long)off, (long long)off + (long long)n,
                        (unsigned long long)data_size);
    r->off = (uint64_t)off;
    r->n = (uint64_t)n;
    r->crc = (uint32_t)crc;
    r->what = what;
    return 0;
}

/* Parse and check the header, build the model. On failure everything
 * allocated here is freed by the caller through lmc_model_free. */
static int load_header(const char *path, const unsigned char *base, size_t size,
                       const cJSON *h, uint64_t data_start, lmc_model *m, lmc_error *err)
{
    if (!cJSON_IsObject(h))
        return lmc_fail(err, "%s: header is not a JSON object", path);
    int64_t fv;
    if (lmc_json_get_i64(cJSON_GetObjectItemCaseSensitive(h, "format_version"), 0, INT32_MAX,
                         &fv) != 0)
        return lmc_fail(err, "%s: header has no format_version", path);
    if (fv != CTR_VERSION)
        return lmc_fail(err, "%s: header format_version %lld, this build reads %d", path,
                        (long long)fv, CTR_VERSION);

    char what[1200];
    snprintf(what, sizeof what, "%s", path);
    if (lmc_config_from_json(cJSON_GetObjectItemCaseSensitive(h, "config"), &m->cfg, what, err) ||
        lmc_config_check(&m->cfg, what, err))
        return -1;

    const cJSON *hf = cJSON_GetObjectItemCaseSensitive(h, "hf_config");
    if (hf && !cJSON_IsNull(hf)) {
        if (!cJSON_IsString(hf))
            return lmc_fail(err, "%s: hf_config is not a string", path);
        if (!(m->config_json = strdup(hf->valuestring)))
            return lmc_fail(err, "%s: out of memory", path);
    }

    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(h, "provenance");
    if (prov && !cJSON_IsNull(prov)) {
        if (!cJSON_IsArray(prov))
            return lmc_fail(err, "%s: provenance is not an array", path);
        if (!(m->provenance_json = cJSON_PrintUnformatted(prov)))
            return lmc_fail(err, "%s: out of memory", path);
    }

    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(h, "tensors");
    if (!cJSON_IsArray(tensors))
        return lmc_fail(err, "%s: header has no tensors array", path);
    int nt = cJSON_GetArraySize(tensors);
    uint64_t data_size = size - data_start;
    region *rs = calloc((size_t)nt + 1, sizeof *rs);
    m->tensors = calloc((size_t)nt + 1, sizeof *m->tensors);
    if (!rs || !m->tensors) {
        free(rs);
        return lmc_fail(err, "%s: out of memory", path);
    }
    int nr = 0, rc = -1;

    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(h, "tokenizer");
    if (tok && !cJSON_IsNull(tok)) {
        if (!cJSON_IsObject(tok)) {
            lmc_fail(err, "%s: tokenizer is not an object", path);
            goto out;
        }
        if (parse_blob(tok, path, "tokenizer", data_size, &rs[nr], err))
            goto out;
        nr++;
    }

    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, tensors)
    {
        lmc_tensor *t = &m->tensors[i];
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        if (!cJSON_IsString(name) || !name->valuestring[0] ||
            strlen(name->valuestring) >= sizeof t->name) {
            lmc_fail(err, "%s: tensor #%d has no valid name", path, i);
            goto out;
        }
        strcpy(t->name, name->valuestring);
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(o, "shape");
        int nd = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : 0;
        int64_t d0 = 0, d1 = 1;
        if ((nd != 1 && nd != 2) ||
            lmc_json_get_i64(cJSON_GetArrayItem(shape, 0), 1, INT64_MAX, &d0) ||
            (nd == 2 && lmc_json_get_i64(cJSON_GetArrayItem(shape, 1), 1, INT64_MAX, &d1)) ||
            d0 > ((int64_t)1 << 40) / d1) {
            lmc_fail(err, "%s: tensor %s: bad shape", path, t->name);
            goto out;
        }
        t->ndim = nd;
        t->shape[0] = d0;
        t->shape[1] = d1;
        if (encoding_from_json(cJSON_GetObjectItemCaseSensitive(o, "encoding"), &t->enc, path,
                               t->name, err) ||
            parse_blob(o, path, t->name, data_size, &rs[nr], err))
            goto out;
        t->nbytes = (size_t)rs[nr].n;
        t->data = base + data_start + rs[nr].off;
        nr++;
        m->n_tensors = ++i;
        if (check_tensor(&m->cfg, t, path, err))
            goto out;
    }
    if (check_unique(m->tensors, m->n_tensors, path, err))
        goto out;

    /* Layout: no overlap, zero padding in every gap, nothing after the end. */
    qsort(rs, (size_t)nr, sizeof *rs, cmp_region);
    uint64_t end = 0;
    const unsigned char *data = base + data_start;
    for (int k = 0; k < nr; k++) {
        if (rs[k].off < end) {
            lmc_fail(err, "%s: %s overlaps the blob before it (offset %llu < %llu)", path,
                     rs[k].what, (unsigned long long)rs[k].off, (unsigned long long)end);
            goto out;
        }
        if (!all_zero(data + end, rs[k].off - end)) {
            lmc_fail(err, "%s: nonzero padding before %s (data bytes %llu..%llu): corrupted",
                     path, rs[k].what, (unsigned long long)end, (unsigned long long)rs[k].off);
            goto out;
        }
        end = rs[k].off + rs[k].n;
    }
    if (end != data_size) {
        lmc_fail(err, "%s: %llu unexpected bytes after the last blob", path,
                 (unsigned long long)(data_size - end));
        goto out;
    }
    for (int k = 0; k < nr; k++) {
        uint32_t c = crc_of(data + rs[k].off, rs[k].n);
        if (c != rs[k].crc) {
            lmc_fail(err, "%s: %s%s: CRC mismatch (stored %08x, computed %08x): data corrupted",
                     path, strcmp(rs[k].what, "tokenizer") ? "tensor " : "", rs[k].what,
                     rs[k].crc, c);
            goto out;
        }
    }
    if (tok && !cJSON_IsNull(tok)) {
        region r;
        parse_blob(tok, path, "tokenizer", data_size, &r, err);
        if (!(m->tokenizer_json = malloc(r.n + 1))) {
            lmc_fail(err, "%s: out of memory", path);
            goto out;
        }
        memcpy(m->tokenizer_json, data + r.off, r.n);
        m->tokenizer_json[r.n] = 0;
        m->tokenizer_json_len = r.n;
        char src[1100];
        snprintf(src, sizeof src, "%s: tokenizer", path);
        if (lmc_tokenizer_json_check(m->tokenizer_json, r.n, src, err) != 0)
            goto out;
    }
    rc = 0;
out:
    free(rs);
    return rc;
}

int lmc_container_parse(const void *buf, size_t size, const char *path, lmc_model **out,
                        lmc_error *err)
{
    *out = NULL;
    lmc_encodings_init();
    lmc_model *m = calloc(1, sizeof *m);
    if (!m || !(m->source_path = strdup(path))) {
        lmc_model_free(m);
        return lmc_fail(err, "%s: out of memory", path);
    }
    m->source_kind = LMC_SRC_CONTAINER;
    const unsigned char *p = buf;

    size_t k = size < CTR_MAGIC_LEN ? size : CTR_MAGIC_LEN;
    if (k == 0 || memcmp(p, CTR_MAGIC, k) != 0) {
        lmc_fail(err, "%s: not an lmc container (wrong magic)", path);
        goto fail;
    }
    if (size < CTR_PREAMBLE) {
        lmc_fail(err, "%s: truncated: %zu bytes, shorter than the %d-byte preamble", path, size,
                 CTR_PREAMBLE);
        goto fail;
    }
    uint32_t version = rd32(p + 8);
    if (version != CTR_VERSION) {
        lmc_fail(err, "%s: unsupported container version %u (this build reads %d)", path, version,
                 CTR_VERSION);
        goto fail;
    }
    uint64_t hlen = rd64(p + 16);
    if (hlen > size - CTR_PREAMBLE) {
        lmc_fail(err, "%s: truncated or corrupt: header length %llu exceeds the file size %zu",
                 path, (unsigned long long)hlen, size);
        goto fail;
    }
    uint32_t hcrc = crc_of(p + CTR_PREAMBLE, hlen);
    if (hcrc != rd32(p + 12)) {
        lmc_fail(err, "%s: header CRC mismatch (stored %08x, computed %08x): header corrupted",
                 path, rd32(p + 12), hcrc);
        goto fail;
    }
    uint64_t data_start = align_up(CTR_PREAMBLE + hlen);
    if (data_start > size) {
        lmc_fail(err, "%s: truncated: the data area starts at %llu, beyond the file size %zu",
                 path, (unsigned long long)data_start, size);
        goto fail;
    }
    if (!all_zero(p + CTR_PREAMBLE + hlen, data_start - CTR_PREAMBLE - hlen)) {
        lmc_fail(err, "%s: nonzero padding after the header: corrupted", path);
        goto fail;
    }
    const char *end = NULL;
    cJSON *h = cJSON_ParseWithLengthOpts((const char *)p + CTR_PREAMBLE, hlen, &end, 0);
    if (!h) {
        const char *ep = cJSON_GetErrorPtr();
        long at = ep ? (long)(ep - ((const char *)p + CTR_PREAMBLE)) : -1;
        lmc_fail(err, "%s: header is not valid JSON (near byte %ld)", path, at);
        goto fail;
    }
    if ((size_t)(end - ((const char *)p + CTR_PREAMBLE)) != hlen) {
        cJSON_Delete(h);
        lmc_fail(err, "%s: header has trailing bytes after the JSON", path);
        goto fail;
    }
    int rc = load_header(path, p, size, h, data_start, m, err);
    cJSON_Delete(h);
    if (rc)
        goto fail;
    *out = m;
    return 0;
fail:
    lmc_model_free(m);
    return -1;
}

int lmc_container_load(const char *path, lmc_model **out, lmc_error *err)
{
    *out = NULL;
    lmc_mmap map;
    if (lmc_mmap_open(path, &map, err) != 0)
        return -1;
    lmc_model *m;
    if (lmc_container_parse(map.data, map.size, path, &m, err) != 0) {
        lmc_mmap_close(&map);
        return -1;
    }
    if (!(m->maps = calloc(1, sizeof *m->maps))) {
        lmc_model_free(m);
        lmc_mmap_close(&map);
        return lmc_fail(err, "%s: out of memory", path);
    }
    m->maps[0] = map;
    m->n_maps = 1;
    *out = m;
    return 0;
}
