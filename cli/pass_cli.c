#define _POSIX_C_SOURCE 200809L
#include "pass_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../calib/driver.h"
#include "../calib/job.h"
#include "../calib/windows.h"
#include "../core/fileio.h"
#include "../core/sha256.h"
#include "../core/threads.h"
#include "../formats/container.h"
#include "../formats/tokenizer.h"
#include "cli.h"

const char lmc_pass_cli_common_help[] =
    "  -o, --output FILE   output container (.lmc), written atomically (required)\n"
    "  --calib FILE        calibration text (default: data/calib.txt)\n"
    "  --nsamples N        calibration windows (default 128)\n"
    "  --seqlen N          tokens per window (default: model max positions, at most 2048)\n"
    "  --seed N            window sampling seed (default 0)\n"
    "  --threads N         threads (default: all cores)\n"
    "  --device D          cpu (default: the fp32 reference) or cuda: the calibration\n"
    "                      forward, statistics and solvers on the GPU, one block on the\n"
    "                      device at a time\n"
    "  --precision P       with --device cuda: the calibration forward's weights and\n"
    "                      products, auto (default: bf16 for bfloat16 checkpoints, else\n"
    "                      fp16; accumulation, statistics and solvers in fp32/fp64),\n"
    "                      fp32, fp16 or bf16\n"
    "  --resume            continue a run of this job that was killed: passes that\n"
    "                      stream their output (rtn, gptq, wanda, magnitude) write each\n"
    "                      finished block to OUTPUT.partial and what it holds to\n"
    "                      OUTPUT.resume; the same command with --resume goes on after\n"
    "                      the last finished block (refused, saying what, if the pass,\n"
    "                      options, source or calibration differ)\n"
    "  --json              print the summary as one JSON object on stdout\n"
    "  -q, --quiet         no progress on stderr\n";

void lmc_pass_cli_init(lmc_pass_cli *c, const char *cmd)
{
    memset(c, 0, sizeof *c);
    c->cmd = cmd;
    c->nsamples = 128;
    c->calib_path = "data/calib.txt";
    c->args = cJSON_CreateObject();
}

int lmc_pass_cli_opt(lmc_pass_cli *c, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    if (!strcmp(a, "-o") || lmc_is_opt(a, "--output")) {
        if (!(v = lmc_opt_value(c->cmd, argc, argv, i)))
            return -1;
        c->out_path = v;
    } else if (lmc_is_opt(a, "--calib")) {
        if (!(v = lmc_opt_value(c->cmd, argc, argv, i)))
            return -1;
        c->calib_path = v;
    } else if (lmc_is_opt(a, "--nsamples")) {
        if (!(v = lmc_opt_value(c->cmd, argc, argv, i)) ||
            lmc_parse_int(v, 1, 1 << 20, &c->nsamples))
            return v ? lmc_usage_error(c->cmd, "--nsamples must be a positive integer"), -1 : -1;
    } else if (lmc_is_opt(a, "--seqlen")) {
        if (!(v = lmc_opt_value(c->cmd, argc, argv, i)) ||
            lmc_parse_int(v, 2, 1 << 20, &c->seqlen))
            return v ? lmc_usage_error(c->cmd, "--seqlen must be an integer >= 2"), -1 : -1;
    } else if (lmc_is_opt(a, "--seed")) {
        if (!(v = lmc_opt_value(c->cmd, argc, argv, i)) || lmc_parse_int(v, 0, 1L << 62, &c->seed))
            return v ? lmc_usage_error(c->cmd, "--seed must be a non-negative integer"), -1 : -1;
    } else if (lmc_is_opt(a, "--threads")) {
        if (!(v = lmc_opt_value(c->cmd, argc, argv, i)) ||
            lmc_parse_int(v, 1, 4096, &c->threads))
            return v ? lmc_usage_error(c->cmd, "--threads must be a positive integer"), -1 : -1;
    } else if (lmc_is_opt(a, "--device")) {
        if (!(v = lmc_opt_value(c->cmd, argc, argv, i)))
            return -1;
        if (lmc_device_parse(v, &c->device) < 0)
            return lmc_usage_error(c->cmd, "--device: '%s' is neither cpu nor cuda", v), -1;
    } else if (lmc_is_opt(a, "--precision")) {
        if (!(v = lmc_opt_value(c->cmd, argc, argv, i)))
            return -1;
        if (lmc_precision_parse(v, &c->precision) < 0)
            return lmc_usage_error(c->cmd, "--precision: '%s' is not auto, fp32, fp16 or bf16",
                                   v), -1;
        c->prec_set = 1;
    } else if (!strcmp(a, "--resume")) {
        c->resume = 1;
    } else if (!strcmp(a, "--json")) {
        c->json = 1;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        lmc_quiet = 1;
    } else if (a[0] != '-' || !a[1]) {
        if (c->model_path) {
            lmc_usage_error(c->cmd, "unexpected argument '%s'", a);
            return -1;
        }
        c->model_path = a;
    } else {
        return 0;
    }
    return 1;
}

int lmc_pass_cli_parse(lmc_pass_cli *c, int argc, char **argv, const char *help,
                       lmc_pass_opt_fn own, void *ctx)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("%s%s", help, lmc_pass_cli_common_help);
            cJSON_Delete(c->args);
            c->args = NULL;
            return LMC_EXIT_OK;
        }
        int r = own ? own(ctx, c->cmd, argc, argv, &i) : 0;
        if (r == 0)
            r = lmc_pass_cli_opt(c, argc, argv, &i);
        if (r == 0)
            lmc_usage_error(c->cmd, "unknown option '%s'", argv[i]);
        if (r <= 0) {
            cJSON_Delete(c->args);
            c->args = NULL;
            return LMC_EXIT_USAGE;
        }
    }
    return -1;
}

/* Calibration text: must exist, be non-empty and look like text. */
static int load_calib_text(const char *path, char **text, size_t *len, lmc_error *err)
{
    if (lmc_read_file(path, text, len, err))
        return -1;
    const char *why = NULL;
    if (*len == 0)
        why = "calibration file is empty";
    else if (memchr(*text, 0, *len))
        why = "calibration file contains NUL bytes (binary, not text)";
    if (why) {
        free(*text);
        *text = NULL;
        return lmc_fail(err, "%s: %s", path, why);
    }
    return 0;
}

/* SOURCE_DATE_EPOCH (the reproducible-builds convention): the provenance's
 * time comes from it and its timings are left out, so that two runs of one
 * job (or a resumed and an uninterrupted one) write identical bytes. */
static int reproducible(void)
{
    const char *e = getenv("SOURCE_DATE_EPOCH");
    return e && *e;
}

static void iso_time(char *buf, size_t n)
{
    time_t t = reproducible() ? (time_t)strtoll(getenv("SOURCE_DATE_EPOCH"), NULL, 10)
                              : time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int lmc_pass_cli_run(lmc_pass_cli *c, const lmc_pass *p)
{
    lmc_error err = {{0}};
    lmc_model *m = NULL;
    lmc_tokenizer *tok = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    lmc_windows win;
    memset(&win, 0, sizeof win);
    cJSON *summary = NULL, *prov = NULL;
    char *prov_text = NULL;
    lmc_job *job = NULL;
    int rc = LMC_EXIT_FAIL;
    double t0 = lmc_now();

    if (!c->model_path) {
        cJSON_Delete(c->args);
        return lmc_usage_error(c->cmd, "missing MODEL (checkpoint directory or .lmc container)");
    }
    if (!c->out_path) {
        cJSON_Delete(c->args);
        return lmc_usage_error(c->cmd, "missing -o OUTPUT.lmc");
    }
    if (!strcmp(c->out_path, c->model_path)) {
        cJSON_Delete(c->args);
        return lmc_usage_error(c->cmd, "output %s would overwrite the input", c->out_path);
    }
    if (c->prec_set && c->device == LMC_DEVICE_CPU) {
        cJSON_Delete(c->args);
        return lmc_usage_error(c->cmd, "--precision applies to --device cuda (the CPU computes "
                                       "in fp32)");
    }
    if (c->resume && !p->streams) {
        cJSON_Delete(c->args);
        return lmc_usage_error(c->cmd, "--resume: %s does not stream its output (it needs the "
                                       "whole model at the end), so there is nothing to resume",
                               p->name);
    }
    lmc_threads_set((int)c->threads);
    /* no device: say so before loading anything */
    if (lmc_device_available(c->device, NULL, 0, &err)) {
        char pre[32];
        snprintf(pre, sizeof pre, "--device %s", lmc_device_name(c->device));
        lmc_fail_prefix(&err, pre);
        goto out;
    }

    if (lmc_model_load(c->model_path, &m, &err) || lmc_model_check_finite(m, &err))
        goto out;
    if (p->stats) {
        size_t len = 0, nids = 0;
        if (!m->tokenizer_json) {
            lmc_fail(&err, "%s: no tokenizer.json, needed to tokenize the calibration text",
                     c->model_path);
            goto out;
        }
        if (load_calib_text(c->calib_path, &text, &len, &err))
            goto out;
        if (lmc_tokenizer_from_json(m->tokenizer_json, m->tokenizer_json_len, c->model_path,
                                    &tok, &err) ||
            lmc_tokenizer_encode(tok, text, len, 1, &ids, &nids, &err))
            goto out;
        int seqlen = (int)c->seqlen;
        if (!seqlen)
            seqlen = m->cfg.max_pos > 2048 ? 2048 : m->cfg.max_pos;
        if (seqlen > m->cfg.max_pos && m->cfg.learned_pos) {
            lmc_fail(&err, "--seqlen %d exceeds the model's %d learned positions", seqlen,
                     m->cfg.max_pos);
            goto out;
        }
        if (lmc_windows_sample(ids, (int64_t)nids, (int)c->nsamples, seqlen, (uint64_t)c->seed,
                               &win, c->calib_path, &err))
            goto out;
        uint8_t dig[32];
        lmc_sha256(text, len, dig);
        lmc_sha256_hex(dig, win.sha256);
        lmc_progress("[%s] calibration: %d windows x %d tokens from %s (%lld tokens)\n", p->name,
                     win.n, win.seqlen, c->calib_path, (long long)win.source_tokens);
    }

    lmc_driver_opts dopt;
    lmc_driver_opts_default(&dopt);
    dopt.backend.device = c->device;
    dopt.backend.precision = c->precision;
    if (p->streams) {
        /* each finished block goes to the output at once (bounded memory),
         * resumable: what a resumed run must share with the first */
        cJSON *id = cJSON_CreateObject();
        cJSON_AddStringToObject(id, "pass", p->name);
        cJSON_AddItemToObject(id, "args", cJSON_Duplicate(c->args, 1));
        cJSON_AddStringToObject(id, "device", lmc_device_name(c->device));
        cJSON_AddStringToObject(id, "precision", lmc_precision_name(c->precision));
        if (p->stats) {
            cJSON *cal = cJSON_AddObjectToObject(id, "calibration");
            cJSON_AddStringToObject(cal, "sha256", win.sha256);
            cJSON_AddNumberToObject(cal, "nsamples", win.n);
            cJSON_AddNumberToObject(cal, "seqlen", win.seqlen);
            cJSON_AddNumberToObject(cal, "seed", (double)c->seed);
        }
        int jrc = lmc_job_start(c->out_path, m, id, c->resume, &job, &err);
        cJSON_Delete(id);
        if (jrc)
            goto out;
        dopt.start_layer = lmc_job_blocks_done(job);
        dopt.block_done = lmc_job_block_done;
        dopt.block_done_ctx = job;
        dopt.earlier_reports = (cJSON *)lmc_job_reports(job);
        if (c->resume)
            lmc_progress("[%s] resuming %s after block %d of %d\n", p->name, c->out_path,
                         dopt.start_layer, m->cfg.n_layers);
    }
    double t_loaded = lmc_now(); /* model, text, tokenization, windows */
    summary = cJSON_CreateObject();
    if (lmc_driver_run(m, p, p->stats ? &win : NULL, &dopt, summary, &err))
        goto out;

    prov = cJSON_CreateObject();
    char tbuf[32];
    iso_time(tbuf, sizeof tbuf);
    cJSON_AddStringToObject(prov, "tool", "lmc");
    cJSON_AddStringToObject(prov, "version", LMC_VERSION);
    cJSON_AddStringToObject(prov, "pass", p->name);
    cJSON_AddItemToObject(prov, "args", c->args);
    c->args = NULL;
    cJSON_AddStringToObject(prov, "source", c->model_path);
    cJSON_AddStringToObject(prov, "device", lmc_device_name(c->device));
    if (p->stats && cJSON_GetObjectItem(summary, "precision"))
        cJSON_AddStringToObject(prov, "precision",
                                cJSON_GetObjectItem(summary, "precision")->valuestring);
    if (p->stats) {
        cJSON *cal = cJSON_AddObjectToObject(prov, "calibration");
        cJSON_AddStringToObject(cal, "file", c->calib_path);
        cJSON_AddStringToObject(cal, "sha256", win.sha256);
        cJSON_AddNumberToObject(cal, "nsamples", win.n);
        cJSON_AddNumberToObject(cal, "seqlen", win.seqlen);
        cJSON_AddNumberToObject(cal, "seed", (double)c->seed);
        cJSON_AddNumberToObject(cal, "tokens", (double)win.source_tokens);
    }
    cJSON_AddStringToObject(prov, "time", tbuf);
    if (!reproducible()) /* timings differ from run to run */
        cJSON_AddItemToObject(prov, "seconds",
                              cJSON_Duplicate(cJSON_GetObjectItem(summary, "seconds"), 1));
    prov_text = cJSON_PrintUnformatted(prov);
    double t_write = lmc_now();
    int wrc = job ? lmc_job_finish(job, m, prov_text, &err)
                  : lmc_container_write(m, c->out_path, prov_text, &err);
    job = NULL;
    if (wrc)
        goto out;
    t_write = lmc_now() - t_write;
    cJSON *secs = cJSON_GetObjectItem(summary, "seconds");
    cJSON_AddNumberToObject(secs, "load", t_loaded - t0);
    cJSON_AddNumberToObject(secs, "write", t_write);

    cJSON_AddStringToObject(summary, "pass", p->name);
    cJSON_AddStringToObject(summary, "output", c->out_path);
    cJSON_AddNumberToObject(summary, "wall_seconds", lmc_now() - t0);
    if (c->json) {
        char *s = cJSON_Print(summary);
        printf("%s\n", s);
        free(s);
    } else {
        cJSON *sec = cJSON_GetObjectItem(summary, "seconds");
        printf("%s: wrote %s in %.2f s (forward %.2f s, statistics %.2f s, %s %.2f s)\n", p->name,
               c->out_path, lmc_now() - t0, cJSON_GetObjectItem(sec, "forward")->valuedouble,
               cJSON_GetObjectItem(sec, "statistics")->valuedouble, p->name,
               cJSON_GetObjectItem(sec, "solve")->valuedouble);
    }
    rc = LMC_EXIT_OK;
out:
    if (rc != LMC_EXIT_OK)
        lmc_report(&err);
    lmc_job_abort(job);
    cJSON_Delete(c->args);
    c->args = NULL;
    cJSON_Delete(prov);
    cJSON_Delete(summary);
    free(prov_text);
    lmc_windows_free(&win);
    free(ids);
    free(text);
    if (tok)
        lmc_tokenizer_free(tok);
    lmc_model_free(m);
    return rc;
}
