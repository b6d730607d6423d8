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
#include "container_io.h"
#include "tokenizer.h"


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
                       const cJSON *h, uint32_t version, uint64_t data_start, lmc_model *m,
                       const lmc_mmap *map, lmc_error *err)
{
    if (!cJSON_IsObject(h))
        return lmc_fail(err, "%s: header is not a JSON object", path);
    int64_t fv;
    if (lmc_json_get_i64(cJSON_GetObjectItemCaseSensitive(h, "format_version"), 0, INT32_MAX,
                         &fv) != 0)
        return lmc_fail(err, "%s: header has no format_version", path);
    if (fv != version)
        return lmc_fail(err, "%s: header format_version %lld, the preamble says %u", path,
                        (long long)fv, version);

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
        if (lmc_ctr_encoding_from_json(cJSON_GetObjectItemCaseSensitive(o, "encoding"), &t->enc, path,
                               t->name, err) ||
            parse_blob(o, path, t->name, data_size, &rs[nr], err))
            goto out;
        t->nbytes = (size_t)rs[nr].n;
        t->data = base + data_start + rs[nr].off;
        nr++;
        m->n_tensors = ++i;
        if (lmc_ctr_check_tensor(&m->cfg, t, path, err))
            goto out;
    }
    if (lmc_ctr_check_unique(m->tensors, m->n_tensors, path, err))
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
        uint32_t c = lmc_ctr_crc(data + rs[k].off, rs[k].n);
        if (c != rs[k].crc) {
            lmc_fail(err, "%s: %s%s: CRC mismatch (stored %08x, computed %08x): data corrupted",
                     path, strcmp(rs[k].what, "tokenizer") ? "tensor " : "", rs[k].what,
                     rs[k].crc, c);
            goto out;
        }
        /* checked: its pages need not stay resident (a model larger than
         * memory is read block by block later) */
        if (map)
            lmc_mmap_release(map, data + rs[k].off, rs[k].n);
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

static int parse(const void *buf, size_t size, const char *path, const lmc_mmap *map,
                 lmc_model **out, lmc_error *err);

int lmc_container_parse(const void *buf, size_t size, const char *path, lmc_model **out,
                        lmc_error *err)
{
    return parse(buf, size, path, NULL, out, err);
}

/* map: the file buf is mapped from, whose pages are released once checked */
static int parse(const void *buf, size_t size, const char *path, const lmc_mmap *map,
                 lmc_model **out, lmc_error *err)
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
    uint32_t version = lmc_ctr_rd32(p + 8);
    if (version != CTR_V1 && version != CTR_V2) {
        lmc_fail(err, "%s: unsupported container version %u (this build reads 1 and 2)", path,
                 version);
        goto fail;
    }
    /* v1: the header after the preamble, the data after it. v2: the data
     * from byte 64, the header at [hoff, hoff + hlen) ending the file. */
    uint64_t hlen = lmc_ctr_rd64(p + 16), hoff = CTR_PREAMBLE, data_start, data_end = size;
    if (version == CTR_V2) {
        if (size < CTR_PREAMBLE_V2) {
            lmc_fail(err, "%s: truncated: %zu bytes, shorter than the %d-byte preamble", path,
                     size, CTR_PREAMBLE_V2);
            goto fail;
        }
        hoff = lmc_ctr_rd64(p + 24);
        if (hlen == 0 && hoff == 0) {
            lmc_fail(err, "%s: incomplete container: its writer did not finish", path);
            goto fail;
        }
        if (!all_zero(p + 32, CTR_PREAMBLE_V2 - 32) || hoff < CTR_PREAMBLE_V2 || hoff > size ||
            hlen != size - hoff) {
            lmc_fail(err, "%s: truncated or corrupt: header at %llu, %llu bytes, in a file of "
                          "%zu",
                     path, (unsigned long long)hoff, (unsigned long long)hlen, size);
            goto fail;
        }
        data_start = CTR_PREAMBLE_V2;
        data_end = hoff;
    } else if (hlen > size - CTR_PREAMBLE) {
        lmc_fail(err, "%s: truncated or corrupt: header length %llu exceeds the file size %zu",
                 path, (unsigned long long)hlen, size);
        goto fail;
    }
    uint32_t hcrc = lmc_ctr_crc(p + hoff, hlen);
    if (hcrc != lmc_ctr_rd32(p + 12)) {
        lmc_fail(err, "%s: header CRC mismatch (stored %08x, computed %08x): header corrupted",
                 path, lmc_ctr_rd32(p + 12), hcrc);
        goto fail;
    }
    if (version == CTR_V1) {
        data_start = lmc_ctr_align(CTR_PREAMBLE + hlen);
        if (data_start > size) {
            lmc_fail(err, "%s: truncated: the data area starts at %llu, beyond the file size %zu",
                     path, (unsigned long long)data_start, size);
            goto fail;
        }
        if (!all_zero(p + CTR_PREAMBLE + hlen, data_start - CTR_PREAMBLE - hlen)) {
            lmc_fail(err, "%s: nonzero padding after the header: corrupted", path);
            goto fail;
        }
    }
    const char *end = NULL;
    cJSON *h = cJSON_ParseWithLengthOpts((const char *)p + hoff, hlen, &end, 0);
    if (!h) {
        const char *ep = cJSON_GetErrorPtr();
        long at = ep ? (long)(ep - ((const char *)p + hoff)) : -1;
        lmc_fail(err, "%s: header is not valid JSON (near byte %ld)", path, at);
        goto fail;
    }
    if ((size_t)(end - ((const char *)p + hoff)) != hlen) {
        cJSON_Delete(h);
        lmc_fail(err, "%s: header has trailing bytes after the JSON", path);
        goto fail;
    }
    int rc = load_header(path, p, (size_t)data_end, h, version, data_start, m, map, err);
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
    if (parse(map.data, map.size, path, &map, &m, err) != 0) {
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
