/* lmc export MODEL -o OUT --format gguf|gptq|awq: a checkpoint or container
 * in a format other engines load (formats/export.h, docs/EXPORT.md). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/fileio.h"
#include "../formats/export.h"
#include "cli.h"

static const char *CMD = "export";

static const char help[] =
    "usage: lmc export MODEL -o OUT --format gguf|gptq|awq [options]\n"
    "\n"
    "Write a checkpoint directory or .lmc container for another engine:\n"
    "  gguf   one GGUF v3 file for llama.cpp (architectures llama/mistral, qwen2,\n"
    "         gpt2; OPT is refused: llama.cpp has none)\n"
    "  gptq   a Hugging Face checkpoint directory in the AutoGPTQ v1 layout\n"
    "         (transformers, vLLM, TGI)\n"
    "  awq    a Hugging Face checkpoint directory in the AutoAWQ GEMM layout\n"
    "Every tensor is stored exactly: the engine decodes the weights lmc eval\n"
    "uses, or the export is refused naming the tensors and why (docs/EXPORT.md\n"
    "lists the mappings). Nothing is requantized. The output appears complete\n"
    "or not at all.\n"
    "\n"
    "  -o, --output OUT      the GGUF file, or the checkpoint directory (which must\n"
    "                        not exist yet); never the input\n"
    "  --format F            gguf, gptq or awq (required)\n"
    "  --dequant             write the tensors that have no exact form as dense\n"
    "                        weights (decoded by lmc) instead of refusing\n"
    "  --dequant-type T      f16 (default), bf16 or f32 for those tensors (f32 keeps\n"
    "                        the decoded values exactly)\n"
    "  --name NAME           GGUF general.name (default: the model's file name)\n"
    "  --hf-files DIR        gptq/awq: copy tokenizer_config.json, special_tokens_map.json,\n"
    "                        generation_config.json, ... from DIR (the original\n"
    "                        checkpoint; default: MODEL when it is one, else only\n"
    "                        the container's tokenizer.json is written)\n"
    "  --json                print the summary and every tensor as one JSON object\n"
    "  -q, --quiet           no progress on stderr\n";

typedef struct progress_ctx {
    int tty;
    double t0, last;
} progress_ctx;

static void on_progress(void *ctx, int done, int total, const char *tensor)
{
    progress_ctx *p = ctx;
    double s = lmc_now() - p->t0;
    if (p->tty) {
        lmc_progress("\rexport: tensor %d/%d %-40.40s%s", done, total, tensor,
                     done == total ? "\n" : "");
    } else if (done == total || s - p->last >= 10.0) {
        /* not a terminal (a log): a line every 10 s */
        p->last = s;
        lmc_progress("export: tensor %d/%d %s, %.1f s\n", done, total, tensor, s);
    }
}

/* The file name without directories and extension, for general.name. */
static void base_name(const char *path, char *buf, size_t n)
{
    size_t l = strlen(path);
    while (l > 1 && path[l - 1] == '/')
        l--;
    size_t b = l;
    while (b > 0 && path[b - 1] != '/')
        b--;
    size_t e = l;
    for (size_t i = b; i < l; i++)
        if (path[i] == '.')
            e = i;
    if (e == b)
        e = l;
    snprintf(buf, n, "%.*s", (int)(e - b), path + b);
}

static int is_gguf_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    int ok = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    if (f)
        fclose(f);
    return ok;
}

static void print_summary(const lmc_export_report *r, const char *out, const char *fmt,
                          double secs, int json)
{
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "output", out);
        cJSON_AddStringToObject(o, "format", fmt);
        cJSON_AddStringToObject(o, "note", r->format_note);
        cJSON_AddNumberToObject(o, "bytes_written", (double)r->bytes_written);
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddNumberToObject(o, "tensors", r->n);
        cJSON_AddNumberToObject(o, "dequantized", r->n_dequantized);
        cJSON *a = cJSON_AddArrayToObject(o, "items");
        for (int i = 0; i < r->n; i++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "name", r->items[i].name);
            cJSON_AddStringToObject(t, "from", r->items[i].from);
            cJSON_AddStringToObject(t, "to", r->items[i].to);
            cJSON_AddBoolToObject(t, "dequantized", r->items[i].dequantized);
            cJSON_AddNumberToObject(t, "bytes", (double)r->items[i].bytes);
            cJSON_AddItemToArray(a, t);
        }
        char *s = cJSON_Print(o);
        if (s)
            printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    /* one line: the types written and how many tensors each */
    char types[512] = "";
    int done[1024] = {0};
    for (int i = 0; i < r->n && i < 1024; i++) {
        if (done[i])
            continue;
        int k = 0;
        for (int j = i; j < r->n && j < 1024; j++)
            if (!done[j] && strcmp(r->items[j].to, r->items[i].to) == 0) {
                done[j] = 1;
                k++;
            }
        size_t l = strlen(types);
        snprintf(types + l, sizeof types - l, "%s%d %s", l ? ", " : "", k, r->items[i].to);
    }
    printf("%s: %s, %d tensors (%s), %.2f MiB written in %.2f s\n", out, r->format_note, r->n,
           types, r->bytes_written / 1048576.0, secs);
    for (int i = 0; i < r->n; i++)
        if (r->items[i].dequantized)
            printf("  dequantized: %s (%s -> %s)\n", r->items[i].name, r->items[i].from,
                   r->items[i].to);
}

int lmc_cmd_export(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *fmt = NULL, *dqt = "f16", *name = NULL, *hf_files = NULL;
    int dequant = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(help, stdout);
            return LMC_EXIT_OK;
        } else if (!strcmp(a, "-o") || lmc_is_opt(a, "--output")) {
            if (!(out = lmc_opt_value(CMD, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (lmc_is_opt(a, "--format")) {
            if (!(fmt = lmc_opt_value(CMD, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (lmc_is_opt(a, "--dequant-type")) {
            if (!(dqt = lmc_opt_value(CMD, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (lmc_is_opt(a, "--hf-files")) {
            if (!(hf_files = lmc_opt_value(CMD, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (lmc_is_opt(a, "--name")) {
            if (!(name = lmc_opt_value(CMD, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (!strcmp(a, "--dequant")) {
            dequant = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            lmc_quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return lmc_usage_error(CMD, "unknown option '%s'", a);
        } else if (in) {
            return lmc_usage_error(CMD, "unexpected argument '%s' (one MODEL only)", a);
        } else {
            in = a;
        }
    }
    if (!in)
        return lmc_usage_error(CMD, "MODEL is required");
    if (!out || !*out)
        return lmc_usage_error(CMD, "-o OUT is required");
    char outbuf[4096];
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/') /* "dir/" names the directory itself */
        ol--;
    snprintf(outbuf, sizeof outbuf, "%.*s", (int)ol, out);
    out = outbuf;
    lmc_export_opts o = {0};
    if (!fmt)
        return lmc_usage_error(CMD, "--format gguf|gptq|awq is required");
    if (!strcmp(fmt, "gguf"))
        o.format = LMC_EXPORT_GGUF;
    else if (!strcmp(fmt, "gptq"))
        o.format = LMC_EXPORT_GPTQ;
    else if (!strcmp(fmt, "awq"))
        o.format = LMC_EXPORT_AWQ;
    else
        return lmc_usage_error(CMD, "--format must be gguf, gptq or awq (got '%s')", fmt);
    if (!strcmp(dqt, "f16"))
        o.dequant_to = LMC_ENC_F16;
    else if (!strcmp(dqt, "bf16"))
        o.dequant_to = LMC_ENC_BF16;
    else if (!strcmp(dqt, "f32"))
        o.dequant_to = LMC_ENC_F32;
    else
        return lmc_usage_error(CMD, "--dequant-type must be f16, bf16 or f32 (got '%s')", dqt);
    o.dequant = dequant;

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
        /* a GGUF file may be replaced; a directory is never merged into */
        if (o.format != LMC_EXPORT_GGUF || !S_ISREG(so.st_mode) || !is_gguf_file(out)) {
            lmc_fail(&err, "%s: exists%s; refusing to overwrite it", out,
                     o.format == LMC_EXPORT_GGUF ? " and is not a GGUF file"
                                                 : " (remove it first: the export is a new "
                                                   "directory)");
            return lmc_report(&err);
        }
    }
    char nm[256];
    base_name(in, nm, sizeof nm);
    o.name = name ? name : nm;
    if (hf_files && !lmc_is_dir(hf_files)) {
        lmc_fail(&err, "%s: --hf-files needs a checkpoint directory", hf_files);
        return lmc_report(&err);
    }
    o.source_dir = hf_files ? hf_files : S_ISDIR(si.st_mode) ? in : NULL;
    double t0 = lmc_now();
    progress_ctx pc = {isatty(2), t0, 0};
    o.progress = on_progress;
    o.progress_ctx = &pc;

    lmc_model *m;
    if (lmc_model_load(in, &m, &err) != 0)
        return lmc_report(&err);
    lmc_export_report rep;
    int rc = lmc_export(m, out, &o, &rep, &err);
    lmc_model_free(m);
    if (rc != 0) {
        if (pc.tty)
            lmc_progress("\n");
        lmc_export_report_free(&rep);
        return lmc_report(&err);
    }
    print_summary(&rep, out, fmt, lmc_now() - t0, json);
    lmc_export_report_free(&rep);
    return LMC_EXIT_OK;
}
