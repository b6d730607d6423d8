/* lmc inspect PATH [--json]: what a checkpoint directory or container holds,
 * and how many bits each weight costs. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/config_json.h"
#include "cli.h"

static const char help[] =
    "usage: lmc inspect PATH [--json]\n"
    "\n"
    "Show a checkpoint directory or an .lmc container: architecture, dimensions,\n"
    "parameters, bytes and bits per weight (overall and for the compressible\n"
    "linear weights blk.*.{q,k,v,o,gate,up,down}.weight), every tensor with its\n"
    "encoding, and a container's provenance records. Loading a container verifies\n"
    "all its checksums.\n"
    "\n"
    "  --json   one JSON object on stdout instead of text\n";

static int64_t elems(const lmc_tensor *t) { return t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1); }

static int is_linear_weight(const char *name)
{
    int layer, used = 0;
    char role[16];
    if (sscanf(name, "blk.%d.%15[a-z].weight%n", &layer, role, &used) != 2 || name[used])
        return 0;
    static const char *roles[] = {"q", "k", "v", "o", "gate", "up", "down"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (!strcmp(role, roles[i]))
            return 1;
    return 0;
}

static double bpw(uint64_t bytes, int64_t n) { return n > 0 ? 8.0 * (double)bytes / (double)n : 0; }

static void shape_str(const lmc_tensor *t, char *buf, size_t n)
{
    if (t->ndim == 2)
        snprintf(buf, n, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
    else
        snprintf(buf, n, "[%lld]", (long long)t->shape[0]);
}

static cJSON *json_report(const lmc_model *m, const char *path, int64_t params, uint64_t bytes,
                          int64_t lin_params, uint64_t lin_bytes)
{
    const lmc_config *c = &m->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "format",
                            m->source_kind == LMC_SRC_CONTAINER ? "container" : "checkpoint");
    cJSON_AddStringToObject(o, "architecture", lmc_arch_name(c->arch));
    cJSON_AddStringToObject(o, "model_type", c->model_type);
    cJSON *d = cJSON_AddObjectToObject(o, "dimensions");
    cJSON_AddNumberToObject(d, "hidden", c->hidden);
    cJSON_AddNumberToObject(d, "layers", c->n_layers);
    cJSON_AddNumberToObject(d, "heads", c->n_heads);
    cJSON_AddNumberToObject(d, "kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(d, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(d, "ffn", c->ffn);
    cJSON_AddNumberToObject(d, "vocab", c->vocab);
    cJSON_AddNumberToObject(d, "max_positions", c->max_pos);
    cJSON_AddNumberToObject(o, "params", (double)params);
    cJSON_AddNumberToObject(o, "n_tensors", m->n_tensors);
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "bits_per_weight", bpw(bytes, params));
    cJSON_AddNumberToObject(o, "linear_params", (double)lin_params);
    cJSON_AddNumberToObject(o, "linear_bytes", (double)lin_bytes);
    cJSON_AddNumberToObject(o, "linear_bits_per_weight", bpw(lin_bytes, lin_params));
    cJSON_AddNumberToObject(o, "tokenizer_bytes",
                            m->tokenizer_json ? (double)m->tokenizer_json_len : 0);
    cJSON_AddItemToObject(o, "config", lmc_config_to_json(c));
    cJSON *prov = m->provenance_json ? cJSON_Parse(m->provenance_json) : NULL;
    cJSON_AddItemToObject(o, "provenance", prov ? prov : cJSON_CreateArray());
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddItemToArray(ts, x);
        cJSON_AddStringToObject(x, "name", t->name);
        double sh[2] = {(double)t->shape[0], (double)t->shape[1]};
        cJSON_AddItemToObject(x, "shape", cJSON_CreateDoubleArray(sh, t->ndim));
        char desc[128];
        lmc_enc_describe(&t->enc, desc, sizeof desc);
        cJSON_AddStringToObject(x, "encoding", desc);
        cJSON_AddNumberToObject(x, "encoding_id", t->enc.id);
        cJSON_AddNumberToObject(x, "bytes", (double)t->nbytes);
        cJSON_AddNumberToObject(x, "params", (double)elems(t));
        cJSON_AddNumberToObject(x, "bits_per_weight", bpw(t->nbytes, elems(t)));
        cJSON_AddBoolToObject(x, "linear", is_linear_weight(t->name));
    }
    return o;
}

static void text_report(const lmc_model *m, const char *path, int64_t params, uint64_t bytes,
                        int64_t lin_params, uint64_t lin_bytes)
{
    const lmc_config *c = &m->cfg;
    printf("path:          %s\n", path);
    printf("format:        %s\n", m->source_kind == LMC_SRC_CONTAINER ? "container" : "checkpoint");
    printf("architecture:  %s (model_type %s, source dtype %s)\n", lmc_arch_name(c->arch),
           c->model_type, c->src_dtype[0] ? c->src_dtype : "?");
    printf("dimensions:    hidden %d, layers %d, heads %d, kv heads %d, head dim %d, ffn %d, "
           "vocab %d, max positions %d%s\n",
           c->hidden, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn, c->vocab,
           c->max_pos, c->tied ? ", tied embeddings" : "");
    printf("params:        %lld\n", (long long)params);
    printf("tensors:       %d\n", m->n_tensors);
    printf("bytes:         %llu (%.2f MiB)\n", (unsigned long long)bytes, bytes / 1048576.0);
    printf("bits/weight:   %.3f overall, %.3f linear (%lld linear weights, %llu bytes)\n",
           bpw(bytes, params), bpw(lin_bytes, lin_params), (long long)lin_params,
           (unsigned long long)lin_bytes);
    if (m->source_kind == LMC_SRC_CONTAINER) {
        cJSON *prov = m->provenance_json ? cJSON_Parse(m->provenance_json) : NULL;
        int n = cJSON_GetArraySize(prov);
        printf("provenance:    %d record%s\n", n, n == 1 ? "" : "s");
        const cJSON *r;
        int k = 0;
        cJSON_ArrayForEach(r, prov)
        {
            char *s = cJSON_PrintUnformatted(r);
            printf("  [%d] %s\n", k++, s ? s : "?");
            free(s);
        }
        cJSON_Delete(prov);
    }
    printf("\n%-28s %-14s %-26s %12s %7s\n", "tensor", "shape", "encoding", "bytes", "bits/w");
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        char sh[48], desc[128];
        shape_str(t, sh, sizeof sh);
        lmc_enc_describe(&t->enc, desc, sizeof desc);
        printf("%-28s %-14s %-26s %12zu %7.3f\n", t->name, sh, desc, t->nbytes,
               bpw(t->nbytes, elems(t)));
    }
}

int lmc_cmd_inspect(int argc, char **argv)
{
    const char *cmd = "inspect", *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(help, stdout);
            return LMC_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            return lmc_usage_error(cmd, "unknown option '%s'", a);
        } else if (path) {
            return lmc_usage_error(cmd, "unexpected argument '%s' (one PATH only)", a);
        } else {
            path = a;
        }
    }
    if (!path)
        return lmc_usage_error(cmd, "PATH is required");

    lmc_error err = {{0}};
    if (!lmc_file_exists(path)) {
        lmc_fail(&err, "%s: no such file or directory", path);
        return lmc_report(&err);
    }
    lmc_model *m;
    if (lmc_model_load(path, &m, &err) != 0)
        return lmc_report(&err);

    int64_t params = lmc_model_params(m), lin_params = 0;
    uint64_t bytes = 0, lin_bytes = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        bytes += t->nbytes;
        if (is_linear_weight(t->name)) {
            lin_bytes += t->nbytes;
            lin_params += elems(t);
        }
    }
    if (json) {
        cJSON *o = json_report(m, path, params, bytes, lin_params, lin_bytes);
        char *s = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!s) {
            lmc_model_free(m);
            lmc_fail(&err, "%s: out of memory formatting JSON", path);
            return lmc_report(&err);
        }
        puts(s);
        free(s);
    } else {
        text_report(m, path, params, bytes, lin_params, lin_bytes);
    }
    lmc_model_free(m);
    return LMC_EXIT_OK;
}
