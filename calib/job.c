/* Streamed, resumable pass output (see job.h). */
#define _POSIX_C_SOURCE 200809L
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../core/fileio.h"
#include "../core/sha256.h"
#include "../formats/config_json.h"
#include "../formats/container.h"

struct lmc_job {
    char *out_path, *partial, *state;
    lmc_container_out *out;
    cJSON *identity; /* with "source_fingerprint" */
    cJSON *reports;  /* of the finished blocks */
    int blocks_done;
};

static char *with_suffix(const char *path, const char *suf)
{
    size_t n = strlen(path) + strlen(suf) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s", path, suf);
    return p;
}

/* The source model's fingerprint: its config and every tensor's name,
 * shape, encoding, size and the CRC of its first and last 64 KiB (a full
 * checksum of an 8B model would read 16 GB on every run). */
static void fingerprint(const lmc_model *m, char hex[65])
{
    lmc_sha256_ctx c;
    lmc_sha256_init(&c);
    cJSON *cfg = lmc_config_to_json(&m->cfg);
    char *ct = cfg ? cJSON_PrintUnformatted(cfg) : NULL;
    if (ct)
        lmc_sha256_update(&c, ct, strlen(ct));
    free(ct);
    cJSON_Delete(cfg);
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        size_t k = t->nbytes < 65536 ? t->nbytes : 65536;
        uint32_t head = (uint32_t)crc32(0L, t->data, (uInt)k);
        uint32_t tail = (uint32_t)crc32(0L, t->data + t->nbytes - k, (uInt)k);
        char line[256];
        int n = snprintf(line, sizeof line, "%s %d %lld %lld %d %zu %08x %08x\n", t->name, t->ndim,
                         (long long)t->shape[0], (long long)t->shape[1], (int)t->enc.id,
                         t->nbytes, head, tail);
        lmc_sha256_update(&c, line, (size_t)n);
        lmc_model_release_pages(m, t->data, k);
        lmc_model_release_pages(m, t->data + t->nbytes - k, k);
    }
    uint8_t d[32];
    lmc_sha256_final(&c, d);
    lmc_sha256_hex(d, hex);
}

static void job_free(lmc_job *j)
{
    if (!j)
        return;
    cJSON_Delete(j->identity);
    cJSON_Delete(j->reports);
    free(j->out_path);
    free(j->partial);
    free(j->state);
    free(j);
}

/* The first key of `want` whose value the state's identity does not share. */
static const char *differs(const cJSON *want, const cJSON *have)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, want)
    {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(have, w->string);
        if (!h || !cJSON_Compare(w, h, 1))
            return w->string;
    }
    return NULL;
}

static int read_state(lmc_job *j, lmc_model *m, lmc_error *err)
{
    char *text;
    size_t n;
    if (!lmc_file_exists(j->state))
        return lmc_fail(err, "%s: cannot resume: no %s (nothing to continue)", j->out_path,
                        j->state);
    if (lmc_read_file(j->state, &text, &n, err))
        return -1;
    cJSON *s = cJSON_ParseWithLength(text, n);
    free(text);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(s, "identity"),
                *tensors = cJSON_GetObjectItemCaseSensitive(s, "tensors"),
                *reports = cJSON_GetObjectItemCaseSensitive(s, "reports"),
                *done = cJSON_GetObjectItemCaseSensitive(s, "blocks_done"),
                *pos = cJSON_GetObjectItemCaseSensitive(s, "pos");
    int rc = -1;
    if (!cJSON_IsObject(id) || !cJSON_IsArray(tensors) || !cJSON_IsArray(reports) ||
        !cJSON_IsNumber(done) || !cJSON_IsNumber(pos) || done->valuedouble < 0 ||
        done->valuedouble > m->cfg.n_layers || pos->valuedouble < 0) {
        lmc_fail(err, "%s: not a resume state of lmc", j->state);
        goto out;
    }
    const char *d = differs(j->identity, id);
    if (d) {
        char *a = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(j->identity, d));
        char *b = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(id, d));
        lmc_fail(err,
                 "%s: cannot resume: \"%s\" differs from the interrupted run's (now %.200s, "
                 "then %.200s)",
                 j->out_path, d, a ? a : "?", b ? b : "(absent)");
        free(a);
        free(b);
        goto out;
    }
    if (lmc_container_out_resume(j->out_path, &m->cfg, j->partial, tensors,
                                 (uint64_t)pos->valuedouble, &j->out, err) ||
        lmc_container_out_adopt(j->out, m, err))
        goto out;
    j->blocks_done = (int)done->valuedouble;
    cJSON_Delete(j->reports);
    j->reports = cJSON_Duplicate(reports, 1);
    rc = j->reports ? 0 : lmc_fail(err, "out of memory");
out:
    cJSON_Delete(s);
    return rc;
}

int lmc_job_start(const char *out_path, lmc_model *m, const cJSON *identity, int resume,
                  lmc_job **out, lmc_error *err)
{
    *out = NULL;
    lmc_job *j = calloc(1, sizeof *j);
    if (!j || !(j->out_path = strdup(out_path)) ||
        !(j->partial = with_suffix(out_path, ".partial")) ||
        !(j->state = with_suffix(out_path, ".resume")) ||
        !(j->identity = cJSON_Duplicate(identity, 1)) || !(j->reports = cJSON_CreateArray())) {
        job_free(j);
        return lmc_fail(err, "out of memory");
    }
    char hex[65];
    fingerprint(m, hex);
    cJSON_AddStringToObject(j->identity, "source_fingerprint", hex);
    if (resume ? read_state(j, m, err)
               : lmc_container_out_open(out_path, &m->cfg, j->partial, &j->out, err)) {
        job_free(j);
        return -1;
    }
    if (!resume)
        unlink(j->state); /* an earlier run's state no longer describes the partial file */
    *out = j;
    return 0;
}

int lmc_job_blocks_done(const lmc_job *j) { return j->blocks_done; }
const cJSON *lmc_job_reports(const lmc_job *j) { return j->reports; }

/* OUT.resume, atomically: what is in the partial file now. */
static int write_state(lmc_job *j, lmc_error *err)
{
    if (lmc_container_out_sync(j->out, err))
        return -1;
    cJSON *s = cJSON_CreateObject();
    if (!s)
        return lmc_fail(err, "out of memory");
    cJSON_AddNumberToObject(s, "lmc_resume", 1);
    cJSON_AddItemReferenceToObject(s, "identity", j->identity);
    cJSON_AddNumberToObject(s, "blocks_done", j->blocks_done);
    cJSON_AddNumberToObject(s, "pos", (double)lmc_container_out_pos(j->out));
    cJSON_AddItemReferenceToObject(s, "tensors", (cJSON *)lmc_container_out_entries(j->out));
    cJSON_AddItemReferenceToObject(s, "reports", j->reports);
    char *text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (!text)
        return lmc_fail(err, "out of memory");
    lmc_atomic_file af;
    int rc = lmc_atomic_open(&af, j->state, err);
    if (!rc && (rc = lmc_atomic_write(&af, text, strlen(text), err)))
        lmc_atomic_abort(&af);
    if (!rc)
        rc = lmc_atomic_commit(&af, err);
    free(text);
    return rc;
}

int lmc_job_block_done(void *ctx, lmc_model *m, int layer, const cJSON *reports, lmc_error *err)
{
    lmc_job *j = ctx;
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "blk.%d.", layer);
    /* the block's tensors, in the model's order, then their memory back */
    for (int i = 0; i < m->n_tensors; i++) {
        lmc_tensor *t = &m->tensors[i];
        if (strncmp(t->name, prefix, (size_t)n) || lmc_container_out_written(j->out, t->name))
            continue;
        if (lmc_container_out_add(j->out, t, err))
            return -1;
        if (t->owned) {
            free(t->owned);
            t->owned = NULL;
            t->data = NULL;
        } else {
            lmc_model_release_pages(m, t->data, t->nbytes);
        }
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, reports) cJSON_AddItemToArray(j->reports, cJSON_Duplicate(r, 1));
    j->blocks_done = layer + 1;
    return write_state(j, err);
}

int lmc_job_finish(lmc_job *j, const lmc_model *m, const char *provenance_record,
                   lmc_error *err)
{
    int rc = lmc_container_out_finish(j->out, m, provenance_record, err);
    j->out = NULL;
    if (rc == 0) {
        unlink(j->state);
        unlink(j->partial); /* renamed away already: a no-op */
    } else {
        unlink(j->state);
    }
    job_free(j);
    return rc;
}

void lmc_job_abort(lmc_job *j)
{
    if (!j)
        return;
    lmc_container_out_abort(j->out);
    unlink(j->state);
    unlink(j->partial);
    job_free(j);
}
