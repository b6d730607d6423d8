/* lmc tokenize: text -> token ids (int32 LE) with the model's own
 * tokenizer.json, or ids -> text with --decode. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "../core/model.h"
#include "../formats/tokenizer.h"
#include "cli.h"

static const char *CMD = "tokenize";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lmc tokenize MODEL TEXTFILE [-o IDS.i32] [--no-special] [--json]\n"
            "       lmc tokenize MODEL --decode IDSFILE [-o TEXT] [--skip-special]\n\n"
            "MODEL is a checkpoint directory or an .lmc container; its tokenizer.json\n"
            "is applied exactly as Hugging Face `tokenizers` does.\n\n"
            "  -o FILE          write ids as int32 little-endian (or the decoded text);\n"
            "                   without -o, ids are printed one per line on stdout\n"
            "  --no-special     do not add the tokenizer's default special tokens\n"
            "                   (default: added, as tokenizer(text).input_ids does)\n"
            "  --json           print {\"tokens\": N, \"bytes\": B, \"seconds\": S} instead of ids\n"
            "                   (S: encoding time, tokenizer loading excluded)\n"
            "  --decode IDSFILE decode int32 LE ids to text (stdout, or -o FILE)\n"
            "  --skip-special   with --decode: leave special tokens out\n\n"
            "Text is UTF-8; invalid bytes are kept as single bytes (byte-level or\n"
            "byte-fallback tokens, else the unk token).\n");
}

/* The tokenizer of MODEL (checkpoint directory or container). */
static int load_tokenizer(const char *path, lmc_tokenizer **t, lmc_error *err)
{
    lmc_model *m = NULL;
    if (lmc_model_load(path, &m, err))
        return -1;
    if (!m->tokenizer_json) {
        lmc_model_free(m);
        return lmc_fail(err, "%s: the model has no tokenizer.json", path);
    }
    /* name the file in messages: DIR/tokenizer.json, or FILE.lmc[tokenizer.json] */
    char *src = lmc_is_dir(path) ? lmc_path_join(path, "tokenizer.json") : NULL;
    char buf[1100];
    if (!src)
        snprintf(buf, sizeof buf, "%s[tokenizer.json]", path);
    int rc = lmc_tokenizer_from_json(m->tokenizer_json, m->tokenizer_json_len, src ? src : buf, t,
                                     err);
    free(src);
    lmc_model_free(m);
    return rc;
}

static int write_all(FILE *f, const void *p, size_t n, const char *what, lmc_error *err)
{
    if (n && fwrite(p, 1, n, f) != n)
        return lmc_fail(err, "%s: write failed", what);
    return 0;
}

static int do_decode(const lmc_tokenizer *t, const char *idsfile, const char *out, int skip,
                     lmc_error *err)
{
    char *data;
    size_t size;
    if (lmc_read_file(idsfile, &data, &size, err))
        return -1;
    if (size % 4) {
        free(data);
        return lmc_fail(err, "%s: size %zu is not a multiple of 4 (int32 ids expected)", idsfile,
                        size);
    }
    size_t n = size / 4;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        free(data);
        return lmc_fail(err, "%s: out of memory", idsfile);
    }
    const unsigned char *b = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)((uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                           (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24);
    free(data);
    char *text;
    size_t len;
    int rc = lmc_tokenizer_decode(t, ids, n, skip, &text, &len, err);
    free(ids);
    if (rc)
        return -1;
    if (out) {
        lmc_atomic_file af;
        rc = lmc_atomic_open(&af, out, err);
        if (!rc && (rc = lmc_atomic_write(&af, text, len, err)) == 0)
            rc = lmc_atomic_commit(&af, err);
        if (rc)
            lmc_atomic_abort(&af);
    } else {
        rc = write_all(stdout, text, len, "stdout", err);
        if (!rc && fflush(stdout))
            rc = lmc_fail(err, "stdout: write failed");
    }
    free(text);
    return rc;
}

static int do_encode(const lmc_tokenizer *t, const char *textfile, const char *out, int special,
                     int json, lmc_error *err)
{
    char *text;
    size_t len;
    if (lmc_read_file(textfile, &text, &len, err))
        return -1;
    int32_t *ids;
    size_t n;
    double t0 = lmc_now();
    int rc = lmc_tokenizer_encode(t, text, len, special, &ids, &n, err);
    double secs = lmc_now() - t0;
    free(text);
    if (rc)
        return lmc_fail_prefix(err, textfile);
    if (out) {
        unsigned char *b = malloc(n * 4 + 1);
        if (!b) {
            free(ids);
            return lmc_fail(err, "%s: out of memory", out);
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)ids[i];
            b[4 * i] = (unsigned char)v;
            b[4 * i + 1] = (unsigned char)(v >> 8);
            b[4 * i + 2] = (unsigned char)(v >> 16);
            b[4 * i + 3] = (unsigned char)(v >> 24);
        }
        lmc_atomic_file af;
        rc = lmc_atomic_open(&af, out, err);
        if (!rc && (rc = lmc_atomic_write(&af, b, n * 4, err)) == 0)
            rc = lmc_atomic_commit(&af, err);
        if (rc)
            lmc_atomic_abort(&af);
        free(b);
    } else if (!json) {
        for (size_t i = 0; i < n; i++)
            printf("%d\n", (int)ids[i]);
        if (fflush(stdout))
            rc = lmc_fail(err, "stdout: write failed");
    }
    free(ids);
    if (!rc && json) {
        printf("{\"tokens\": %zu, \"bytes\": %zu, \"seconds\": %.6f}\n", n, len, secs);
        fflush(stdout);
    }
    return rc;
}

int lmc_cmd_tokenize(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL}, *out = NULL, *decode = NULL;
    int npos = 0, special = 1, json = 0, skip = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return LMC_EXIT_OK;
        } else if (!strcmp(a, "-o") || lmc_is_opt(a, "--output")) {
            if (!(out = lmc_opt_value(CMD, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (lmc_is_opt(a, "--decode")) {
            if (!(decode = lmc_opt_value(CMD, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (!strcmp(a, "--no-special")) {
            special = 0;
        } else if (!strcmp(a, "--skip-special")) {
            skip = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            return lmc_usage_error(CMD, "unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return lmc_usage_error(CMD, "unexpected argument '%s'", a);
        }
    }
    if (!pos[0])
        return lmc_usage_error(CMD, "missing MODEL");
    if (decode && npos > 1)
        return lmc_usage_error(CMD, "--decode takes the ids file; no TEXTFILE with it");
    if (!decode && npos < 2)
        return lmc_usage_error(CMD, "missing TEXTFILE (or --decode IDSFILE)");
    if (decode && (json || !special))
        return lmc_usage_error(CMD, "--json and --no-special apply to encoding only");
    if (!decode && skip)
        return lmc_usage_error(CMD, "--skip-special applies to --decode only");

    lmc_error err = {{0}};
    lmc_tokenizer *t;
    if (load_tokenizer(pos[0], &t, &err))
        return lmc_report(&err);
    int rc = decode ? do_decode(t, decode, out, skip, &err)
                    : do_encode(t, pos[1], out, special, json, &err);
    lmc_tokenizer_free(t);
    return rc ? lmc_report(&err) : LMC_EXIT_OK;
}
