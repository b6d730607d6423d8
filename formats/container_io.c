/* What the container's reader and writer share (container_io.h). */
#include "container_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "config_json.h"

uint64_t lmc_ctr_align(uint64_t x) { return (x + CTR_ALIGN - 1) / CTR_ALIGN * CTR_ALIGN; }

uint32_t lmc_ctr_rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t lmc_ctr_rd64(const unsigned char *p) { return lmc_ctr_rd32(p) | (uint64_t)lmc_ctr_rd32(p + 4) << 32; }

void lmc_ctr_wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

void lmc_ctr_wr64(unsigned char *p, uint64_t v)
{
    lmc_ctr_wr32(p, (uint32_t)v);
    lmc_ctr_wr32(p + 4, (uint32_t)(v >> 32));
}

/* zlib's crc32 takes a uInt length: feed large blobs in chunks. */
uint32_t lmc_ctr_crc(const void *data, size_t n)
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

/* ---- encoding <-> JSON ---- */

cJSON *lmc_ctr_encoding_to_json(const lmc_encoding *e)
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

int lmc_ctr_encoding_from_json(const cJSON *o, lmc_encoding *e, const char *what,
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

int64_t lmc_ctr_tensor_cols(const lmc_tensor *t) { return t->ndim == 2 ? t->shape[1] : 1; }

/* Name, shape, encoding, nbytes; the config agreement. */
int lmc_ctr_check_tensor(const lmc_config *cfg, const lmc_tensor *t, const char *what,
                        lmc_error *err)
{
    size_t nl = strnlen(t->name, sizeof t->name);
    if (nl == 0 || nl >= sizeof t->name)
        return lmc_fail(err, "%s: tensor with an empty or over-long name", what);
    if ((t->ndim != 1 && t->ndim != 2) || t->shape[0] <= 0 || lmc_ctr_tensor_cols(t) <= 0 ||
        (t->ndim == 1 && t->shape[1] != 1))
        return lmc_fail(err, "%s: tensor %s: bad shape", what, t->name);
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    if (!tr)
        return lmc_fail(err, "%s: tensor %s: unknown encoding id %d", what, t->name,
                        (int)t->enc.id);
    if (tr->validate && tr->validate(&t->enc, t->shape[0], lmc_ctr_tensor_cols(t), err) != 0) {
        char p[200];
        snprintf(p, sizeof p, "%s: tensor %s: encoding %s", what, t->name, tr->name);
        return lmc_fail_prefix(err, p);
    }
    size_t want = tr->nbytes(&t->enc, t->shape[0], lmc_ctr_tensor_cols(t));
    if (t->nbytes != want)
        return lmc_fail(err, "%s: tensor %s: %zu bytes but encoding %s of this shape needs %zu",
                        what, t->name, t->nbytes, tr->name, want);
    return lmc_config_check_tensor(cfg, t, what, err);
}

int lmc_ctr_check_unique(const lmc_tensor *ts, int n, const char *what, lmc_error *err)
{
    /* quadratic, but models have at most a few thousand tensors */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(ts[i].name, ts[j].name) == 0)
                return lmc_fail(err, "%s: duplicate tensor %s", what, ts[i].name);
    return 0;
}

