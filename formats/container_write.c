/* The container writer (docs/FORMAT.md, version 2): blobs are appended as
 * they come (a pass streams each block's tensors once the block is done, so
 * a compressed model never has to sit in memory), the header follows the
 * last blob, and the preamble, written last, says where the header is: a
 * file cut short at any point has an empty preamble and is refused. */
#define _POSIX_C_SOURCE 200809L
#include "container.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "config_json.h"
#include "container_io.h"

struct lmc_container_out {
    lmc_atomic_file af;
    char *partial; /* the partial file's name (resume), or NULL */
    lmc_config cfg;
    char *path;
    cJSON *entries; /* tensor records, in the order written */
    uint64_t pos;   /* bytes of the data area written (it starts at CTR_PREAMBLE_V2) */
};

static int write_zeros(lmc_container_out *o, uint64_t n, lmc_error *err)
{
    static const unsigned char z[CTR_ALIGN];
    while (n) {
        size_t k = n > sizeof z ? sizeof z : (size_t)n;
        if (lmc_atomic_write(&o->af, z, k, err) != 0)
            return -1;
        n -= k;
    }
    return 0;
}

/* A blob at the next aligned offset of the data area; its offset in *off. */
static int put_blob(lmc_container_out *o, const void *data, size_t n, uint64_t *off,
                    lmc_error *err)
{
    uint64_t at = lmc_ctr_align(o->pos);
    if (write_zeros(o, at - o->pos, err) || lmc_atomic_write(&o->af, data, n, err))
        return -1;
    *off = at;
    o->pos = at + n;
    return 0;
}

static cJSON *blob_json(uint64_t off, size_t n, uint32_t crc)
{
    cJSON *b = cJSON_CreateObject();
    if (!b)
        return NULL;
    cJSON_AddNumberToObject(b, "offset", (double)off);
    cJSON_AddNumberToObject(b, "nbytes", (double)n);
    cJSON_AddNumberToObject(b, "crc32", crc);
    return b;
}

static int open_common(lmc_container_out **out, const char *path, const lmc_config *cfg,
                       lmc_error *err)
{
    *out = NULL;
    lmc_encodings_init();
    if (lmc_config_check(cfg, path, err) != 0)
        return -1;
    lmc_container_out *o = calloc(1, sizeof *o);
    if (!o || !(o->path = strdup(path)) || !(o->entries = cJSON_CreateArray())) {
        if (o)
            free(o->path);
        free(o);
        return lmc_fail(err, "%s: out of memory", path);
    }
    o->cfg = *cfg;
    *out = o;
    return 0;
}

static void out_free(lmc_container_out *o)
{
    cJSON_Delete(o->entries);
    free(o->partial);
    free(o->path);
    free(o);
}

int lmc_container_out_open(const char *path, const lmc_config *cfg, const char *partial_path,
                           lmc_container_out **out, lmc_error *err)
{
    lmc_container_out *o;
    if (open_common(&o, path, cfg, err))
        return -1;
    int rc = partial_path ? lmc_atomic_open_partial(&o->af, path, partial_path, -1, err)
                          : lmc_atomic_open(&o->af, path, err);
    if (rc) {
        out_free(o);
        return -1;
    }
    o->partial = partial_path ? strdup(partial_path) : NULL;
    /* the preamble stays empty (version 2, no header) until finish */
    unsigned char pre[CTR_PREAMBLE_V2] = {0};
    memcpy(pre, CTR_MAGIC, CTR_MAGIC_LEN);
    lmc_ctr_wr32(pre + 8, CTR_V2);
    if (lmc_atomic_write(&o->af, pre, sizeof pre, err)) {
        lmc_atomic_abort(&o->af);
        out_free(o);
        return -1;
    }
    *out = o;
    return 0;
}

int lmc_container_out_resume(const char *path, const lmc_config *cfg, const char *partial_path,
                             const cJSON *entries, uint64_t pos, lmc_container_out **out,
                             lmc_error *err)
{
    *out = NULL;
    if (!cJSON_IsArray(entries))
        return lmc_fail(err, "%s: resume state: no tensor list", partial_path);
    /* check what the state says against the partial file before trusting it */
    lmc_mmap map;
    if (lmc_mmap_open(partial_path, &map, err))
        return -1;
    const char *why = NULL;
    if (map.size < CTR_PREAMBLE_V2 + pos)
        why = "shorter than the resume state says";
    else if (memcmp(map.data, CTR_MAGIC, CTR_MAGIC_LEN) || lmc_ctr_rd32(map.data + 8) != CTR_V2)
        why = "not a partial lmc container";
    const cJSON *e;
    cJSON_ArrayForEach(e, entries)
    {
        if (why)
            break;
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "offset"),
                    *n = cJSON_GetObjectItemCaseSensitive(e, "nbytes"),
                    *crc = cJSON_GetObjectItemCaseSensitive(e, "crc32");
        if (!cJSON_IsNumber(off) || !cJSON_IsNumber(n) || !cJSON_IsNumber(crc) ||
            off->valuedouble < 0 || n->valuedouble < 0 ||
            off->valuedouble + n->valuedouble > (double)pos)
            why = "a tensor record of the resume state lies outside it";
        else if (lmc_ctr_crc(map.data + CTR_PREAMBLE_V2 + (uint64_t)off->valuedouble,
                             (size_t)n->valuedouble) != (uint32_t)crc->valuedouble)
            why = "a tensor written before does not match its checksum";
    }
    lmc_mmap_close(&map);
    if (why)
        return lmc_fail(err, "%s: cannot resume: %s", partial_path, why);
    lmc_container_out *o;
    if (open_common(&o, path, cfg, err))
        return -1;
    cJSON_Delete(o->entries);
    if (!(o->entries = cJSON_Duplicate(entries, 1))) {
        out_free(o);
        return lmc_fail(err, "%s: out of memory", path);
    }
    if (lmc_atomic_open_partial(&o->af, path, partial_path, (int64_t)(CTR_PREAMBLE_V2 + pos),
                                err)) {
        out_free(o);
        return -1;
    }
    o->pos = pos;
    o->partial = strdup(partial_path);
    *out = o;
    return 0;
}

int lmc_container_out_adopt(lmc_container_out *o, lmc_model *m, lmc_error *err)
{
    if (!o->partial)
        return lmc_fail(err, "%s: nothing written before to adopt", o->path);
    if (lmc_atomic_sync(&o->af, err))
        return -1;
    lmc_mmap *maps = realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *maps);
    if (!maps)
        return lmc_fail(err, "%s: out of memory", o->path);
    m->maps = maps;
    lmc_mmap *map = &m->maps[m->n_maps];
    if (lmc_mmap_open(o->partial, map, err))
        return -1;
    m->n_maps++;
    const cJSON *e;
    cJSON_ArrayForEach(e, o->entries)
    {
        lmc_tensor t;
        memset(&t, 0, sizeof t);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name"),
                    *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        if (!cJSON_IsString(name) || strlen(name->valuestring) >= sizeof t.name ||
            !cJSON_IsArray(shape) || cJSON_GetArraySize(shape) < 1 ||
            cJSON_GetArraySize(shape) > 2)
            return lmc_fail(err, "%s: resume state: a bad tensor record", o->partial);
        strcpy(t.name, name->valuestring);
        t.ndim = cJSON_GetArraySize(shape);
        t.shape[0] = (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble;
        t.shape[1] = t.ndim == 2 ? (int64_t)cJSON_GetArrayItem(shape, 1)->valuedouble : 1;
        if (lmc_ctr_encoding_from_json(cJSON_GetObjectItemCaseSensitive(e, "encoding"), &t.enc,
                                       o->partial, t.name, err))
            return -1;
        uint64_t off = (uint64_t)cJSON_GetObjectItemCaseSensitive(e, "offset")->valuedouble;
        t.nbytes = (size_t)cJSON_GetObjectItemCaseSensitive(e, "nbytes")->valuedouble;
        if (CTR_PREAMBLE_V2 + off + t.nbytes > map->size)
            return lmc_fail(err, "%s: resume state: tensor %s beyond the file", o->partial,
                            t.name);
        t.data = map->data + CTR_PREAMBLE_V2 + off;
        if (!lmc_model_find(m, t.name))
            return lmc_fail(err, "%s: tensor %s written before is not in the model", o->partial,
                            t.name);
        if (lmc_ctr_check_tensor(&o->cfg, &t, o->partial, err) ||
            lmc_model_set_tensor(m, &t, err))
            return -1;
    }
    return 0;
}

static const cJSON *entry_named(const lmc_container_out *o, const char *name)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, o->entries)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
            return e;
    }
    return NULL;
}

int lmc_container_out_add(lmc_container_out *o, const lmc_tensor *t, lmc_error *err)
{
    if (lmc_ctr_check_tensor(&o->cfg, t, o->path, err))
        return -1;
    if (!t->data)
        return lmc_fail(err, "%s: tensor %s has no data", o->path, t->name);
    if (entry_named(o, t->name))
        return lmc_fail(err, "%s: duplicate tensor %s", o->path, t->name);
    uint64_t off;
    if (put_blob(o, t->data, t->nbytes, &off, err))
        return -1;
    cJSON *r = cJSON_CreateObject();
    double shape[2] = {(double)t->shape[0], (double)t->shape[1]};
    cJSON *s = cJSON_CreateDoubleArray(shape, t->ndim);
    cJSON *e = lmc_ctr_encoding_to_json(&t->enc);
    if (!r || !s || !e) {
        cJSON_Delete(r), cJSON_Delete(s), cJSON_Delete(e);
        return lmc_fail(err, "%s: out of memory", o->path);
    }
    cJSON_AddStringToObject(r, "name", t->name);
    cJSON_AddItemToObject(r, "shape", s);
    cJSON_AddItemToObject(r, "encoding", e);
    cJSON_AddNumberToObject(r, "offset", (double)off);
    cJSON_AddNumberToObject(r, "nbytes", (double)t->nbytes);
    cJSON_AddNumberToObject(r, "crc32", lmc_ctr_crc(t->data, t->nbytes));
    cJSON_AddItemToArray(o->entries, r);
    return 0;
}

int lmc_container_out_written(const lmc_container_out *o, const char *name)
{
    return entry_named(o, name) != NULL;
}

const cJSON *lmc_container_out_entries(const lmc_container_out *o) { return o->entries; }
uint64_t lmc_container_out_pos(const lmc_container_out *o) { return o->pos; }

int lmc_container_out_sync(lmc_container_out *o, lmc_error *err)
{
    return lmc_atomic_sync(&o->af, err);
}

int lmc_container_out_finish(lmc_container_out *o, const lmc_model *m, const char *record,
                             lmc_error *err)
{
    const char *path = o->path;
    cJSON *h = NULL, *prov = NULL;
    char *text = NULL;
    int rc = -1;
    /* every tensor of m exactly once: what was not streamed, in m's order */
    for (int i = 0; i < m->n_tensors; i++)
        if (!entry_named(o, m->tensors[i].name) &&
            lmc_container_out_add(o, &m->tensors[i], err))
            goto out;
    const cJSON *e;
    cJSON_ArrayForEach(e, o->entries)
    {
        const char *name = cJSON_GetObjectItemCaseSensitive(e, "name")->valuestring;
        if (!lmc_model_find(m, name)) {
            lmc_fail(err, "%s: tensor %s was written but is not in the model", path, name);
            goto out;
        }
    }
    if (!(h = cJSON_CreateObject()))
        goto oom;
    cJSON_AddNumberToObject(h, "format_version", CTR_V2);
    cJSON *cfg = lmc_config_to_json(&m->cfg);
    if (!cfg)
        goto oom;
    cJSON_AddItemToObject(h, "config", cfg);
    if (m->config_json)
        cJSON_AddStringToObject(h, "hf_config", m->config_json);
    else
        cJSON_AddNullToObject(h, "hf_config");
    const char *tok = m->tokenizer_json;
    if (tok) {
        size_t n = m->tokenizer_json_len ? m->tokenizer_json_len : strlen(tok);
        uint64_t off;
        if (put_blob(o, tok, n, &off, err))
            goto out;
        cJSON *b = blob_json(off, n, lmc_ctr_crc(tok, n));
        if (!b)
            goto oom;
        cJSON_AddItemToObject(h, "tokenizer", b);
    } else {
        cJSON_AddNullToObject(h, "tokenizer");
    }
    if (m->provenance_json) {
        prov = cJSON_Parse(m->provenance_json);
        if (!cJSON_IsArray(prov)) {
            lmc_fail(err, "%s: the model's provenance is not a JSON array", path);
            goto out;
        }
    } else if (!(prov = cJSON_CreateArray())) {
        goto oom;
    }
    if (record) {
        cJSON *r = cJSON_Parse(record);
        if (!cJSON_IsObject(r)) {
            cJSON_Delete(r);
            lmc_fail(err, "%s: provenance record is not a JSON object", path);
            goto out;
        }
        cJSON_AddItemToArray(prov, r);
    }
    cJSON_AddItemToObject(h, "provenance", prov);
    prov = NULL;
    cJSON_AddItemReferenceToObject(h, "tensors", o->entries);
    if (!(text = cJSON_PrintUnformatted(h)))
        goto oom;
    size_t hlen = strlen(text);
    uint64_t hoff = o->pos; /* right after the last blob: the data area ends there */
    if (lmc_atomic_write(&o->af, text, hlen, err))
        goto out;
    /* last, the preamble that says where the header is */
    unsigned char pre[32];
    memcpy(pre, CTR_MAGIC, CTR_MAGIC_LEN);
    lmc_ctr_wr32(pre + 8, CTR_V2);
    lmc_ctr_wr32(pre + 12, lmc_ctr_crc(text, hlen));
    lmc_ctr_wr64(pre + 16, hlen);
    lmc_ctr_wr64(pre + 24, CTR_PREAMBLE_V2 + hoff);
    if (lmc_atomic_pwrite(&o->af, 0, pre, sizeof pre, err) || lmc_atomic_commit(&o->af, err))
        goto out;
    rc = 0;
    goto out;
oom:
    lmc_fail(err, "%s: out of memory writing the header", path);
out:
    if (rc)
        lmc_atomic_abort(&o->af); /* after a failed commit: already removed, a no-op */
    cJSON_Delete(prov);
    cJSON_Delete(h); /* the tensor list is only referenced: o owns it */
    free(text);
    out_free(o);
    return rc;
}

void lmc_container_out_abort(lmc_container_out *o)
{
    if (!o)
        return;
    lmc_atomic_abort(&o->af);
    out_free(o);
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
        if (lmc_ctr_check_tensor(&m->cfg, t, path, err) != 0)
            return -1;
        if (!t->data)
            return lmc_fail(err, "%s: tensor %s has no data", path, t->name);
    }
    if (lmc_ctr_check_unique(m->tensors, m->n_tensors, path, err) != 0)
        return -1;
    lmc_container_out *o;
    if (lmc_container_out_open(path, &m->cfg, NULL, &o, err))
        return -1;
    return lmc_container_out_finish(o, m, provenance_record, err);
}
