/* lmc convert MODEL -o OUT.lmc [--dtype f16|bf16|f32]: a checkpoint (or a
 * container) into a container. Dense tensors already in the target dtype are
 * copied bit for bit; others go through fp32 with round-to-nearest-even.
 * Tensors in non-dense encodings are copied unchanged. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/half.h"
#include "../formats/container.h"
#include "cli.h"

static const char help[] =
    "usage: lmc convert MODEL -o OUT.lmc [--dtype f16|bf16|f32] [-q]\n"
    "\n"
    "Write a Hugging Face checkpoint directory (or a container) as an .lmc\n"
    "container. The default dtype f16 is lossless from an fp16 checkpoint: tensors\n"
    "are copied bit for bit. Other conversions go through fp32 with\n"
    "round-to-nearest-even; a value outside the target's range is an error.\n"
    "\n"
    "  -o, --output OUT   output file (required; never the input)\n"
    "  --dtype D          f16 (default), bf16 or f32\n"
    "  -q                 no progress on stderr\n";

static int convert_tensor(lmc_model *m, lmc_tensor *t, lmc_enc_id to, lmc_error *err)
{
    lmc_enc_id from = t->enc.id;
    if (from == to || (from != LMC_ENC_F16 && from != LMC_ENC_BF16 && from != LMC_ENC_F32))
        return 0;
    size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
    float *f = malloc(n * sizeof *f);
    uint8_t *out = malloc(n * (to == LMC_ENC_F32 ? 4 : 2));
    if (!f || !out) {
        free(f);
        free(out);
        return lmc_fail(err, "tensor %s: out of memory", t->name);
    }
    lmc_encodings_init();
    if (lmc_enc_get(from)->to_f32(&t->enc, t->data, t->shape[0], n / (size_t)t->shape[0], f,
                                  err) != 0) {
        free(f);
        free(out);
        return lmc_fail_prefix(err, t->name);
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        float back;
        switch (to) {
        case LMC_ENC_F32: memcpy(out + 4 * i, &f[i], 4); continue;
        case LMC_ENC_F16:
            h = lmc_f32_to_f16(f[i]);
            back = lmc_f16_to_f32(h);
            break;
        default:
            h = lmc_f32_to_bf16(f[i]);
            back = lmc_bf16_to_f32(h);
            break;
        }
        if (isfinite(f[i]) && !isfinite(back)) {
            lmc_fail(err, "tensor %s: value %g at index %zu does not fit in %s", t->name,
                     (double)f[i], i, to == LMC_ENC_F16 ? "f16" : "bf16");
            free(f);
            free(out);
            return -1;
        }
        memcpy(out + 2 * i, &h, 2);
    }
    free(f);
    lmc_tensor nt = *t;
    nt.enc = lmc_enc_dense(to);
    nt.data = out;
    nt.nbytes = n * (to == LMC_ENC_F32 ? 4 : 2);
    nt.owned = out;
    return lmc_model_set_tensor(m, &nt, err);
}

static void iso_time(char *buf, size_t n)
{
    /* SOURCE_DATE_EPOCH makes outputs reproducible byte for byte */
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    time_t now = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int lmc_cmd_convert(int argc, char **argv)
{
    const char *cmd = "convert", *in = NULL, *out = NULL, *dtype = "f16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(help, stdout);
            return LMC_EXIT_OK;
        } else if (!strcmp(a, "-o") || lmc_is_opt(a, "--output")) {
            if (!(out = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (lmc_is_opt(a, "--dtype")) {
            if (!(dtype = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            lmc_quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return lmc_usage_error(cmd, "unknown option '%s'", a);
        } else if (in) {
            return lmc_usage_error(cmd, "unexpected argument '%s' (one MODEL only)", a);
        } else {
            in = a;
        }
    }
    if (!in)
        return lmc_usage_error(cmd, "MODEL is required");
    if (!out || !*out)
        return lmc_usage_error(cmd, "-o OUT.lmc is required");
    lmc_enc_id to;
    if (!strcmp(dtype, "f16"))
        to = LMC_ENC_F16;
    else if (!strcmp(dtype, "bf16"))
        to = LMC_ENC_BF16;
    else if (!strcmp(dtype, "f32"))
        to = LMC_ENC_F32;
    else
        return lmc_usage_error(cmd, "--dtype must be f16, bf16 or f32 (got '%s')", dtype);

    lmc_error err = {{0}};
    struct stat si, so;
    if (stat(in, &si) != 0) {
        lmc_fail(&err, "%s: no such file or directory", in);
        return lmc_report(&err);
    }
    if (stat(out, &so) == 0) {
        if (so.st_dev == si.st_dev && so.st_ino == si.st_ino) {
            lmc_fail(&err, "%s: refusing to overwrite the input", out);
            return lmc_report(&err);
        }
        /* replacing an older container is fine, anything else is likely a mistake */
        if (!S_ISREG(so.st_mode) || !lmc_container_sniff(out)) {
            lmc_fail(&err, "%s: exists and is not an lmc container; refusing to overwrite it",
                     out);
            return lmc_report(&err);
        }
    }

    double t0 = lmc_now();
    lmc_model *m;
    if (lmc_model_load(in, &m, &err) != 0)
        return lmc_report(&err);
    /* lossless or not, a NaN/Inf weight is refused here: every command that
     * would read the container refuses it (docs/DESIGN.md) */
    if (lmc_model_check_finite(m, &err) != 0) {
        lmc_model_free(m);
        return lmc_report(&err);
    }
    int converted = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        lmc_enc_id from = m->tensors[i].enc.id;
        if (convert_tensor(m, &m->tensors[i], to, &err) != 0) {
            lmc_model_free(m);
            char p[1100];
            snprintf(p, sizeof p, "%s", in);
            lmc_fail_prefix(&err, p);
            return lmc_report(&err);
        }
        converted += m->tensors[i].enc.id != from;
    }

    char when[32];
    iso_time(when, sizeof when);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "tool", "lmc");
    cJSON_AddStringToObject(rec, "version", LMC_VERSION);
    cJSON_AddStringToObject(rec, "pass", "convert");
    cJSON *args = cJSON_AddObjectToObject(rec, "args");
    cJSON_AddStringToObject(args, "dtype", dtype);
    cJSON_AddStringToObject(rec, "source", in);
    cJSON_AddStringToObject(rec, "source_format",
                            m->source_kind == LMC_SRC_CONTAINER ? "container" : "checkpoint");
    cJSON_AddStringToObject(rec, "time", when);
    char *rtext = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);
    if (!rtext) {
        lmc_model_free(m);
        lmc_fail(&err, "out of memory");
        return lmc_report(&err);
    }

    int rc = lmc_container_write(m, out, rtext, &err);
    free(rtext);
    if (rc != 0) {
        lmc_model_free(m);
        return lmc_report(&err);
    }
    size_t bytes = 0;
    for (int i = 0; i < m->n_tensors; i++)
        bytes += m->tensors[i].nbytes;
    printf("%s: %d tensors (%d converted to %s, %d copied), %lld params, %.2f MiB of tensors\n",
           out, m->n_tensors, converted, dtype, m->n_tensors - converted,
           (long long)lmc_model_params(m), bytes / 1048576.0);
    lmc_progress("lmc convert: %s -> %s in %.2f s\n", in, out, lmc_now() - t0);
    lmc_model_free(m);
    return LMC_EXIT_OK;
}
