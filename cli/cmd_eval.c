/* lmc eval MODEL (--text FILE | --ids FILE): perplexity on the CPU reference
 * backend, plus the model's size and FLOPs per token. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../core/threads.h"
#include "../eval/backend.h"
#include "../eval/flops.h"
#include "../eval/model_stats.h"
#include "../eval/perplexity.h"
#include "../formats/tokenizer.h"
#include "cli.h"

static const char help[] =
    "usage: lmc eval MODEL (--text FILE | --ids FILE) [options]\n"
    "\n"
    "Perplexity of MODEL (a Hugging Face checkpoint directory or an .lmc container)\n"
    "on a text, with its compression ratio and FLOPs per token. Protocol: the whole\n"
    "text is tokenized with the model's tokenizer and its default special tokens,\n"
    "cut into non-overlapping windows of SEQLEN tokens (the remainder is dropped);\n"
    "each window scores its SEQLEN-1 next-token predictions;\n"
    "ppl = exp(total NLL / scored tokens). On the CPU: math in fp32 (OpenBLAS sgemm),\n"
    "weights decoded to fp32 once at load.\n"
    "\n"
    "  --text FILE        UTF-8 text to evaluate on\n"
    "  --ids FILE         pre-tokenized ids instead (int32 little-endian)\n"
    "  --seqlen N         tokens per window (default: the model's max positions,\n"
    "                     capped at 2048)\n"
    "  --max-windows N    evaluate only the first N windows\n"
    "  --threads N        CPU threads (default: all cores)\n"
    "  --device D         cpu (default: the fp32 reference) or cuda\n"
    "  --precision P      with --device cuda: auto (default: bf16 for bfloat16\n"
    "                     checkpoints, else fp16), fp32, fp16 or bf16 weights and\n"
    "                     matrix products (accumulation, norms, softmax in fp32)\n"
    "  --residual R       with --device cuda at fp16/bf16: half (default: the\n"
    "                     residual stream in the compute type, as transformers\n"
    "                     keeps it; ppl within ~1e-4 of the CPU's at fp16) or fp32\n"
    "                     (closer agreement, ~1e-5 at fp16, a few % slower; no\n"
    "                     fp16 overflow of the residual)\n"
    "  --force            allow SEQLEN beyond the positions a RoPE model was trained\n"
    "                     on (a warning instead of an error; models with learned\n"
    "                     positions cannot go beyond their table at all)\n"
    "  --json             one JSON object on stdout\n"
    "  -q                 no progress on stderr\n"
    "  --expect-ppl X     regression check (CI): after printing the results, fail\n"
    "                     (exit 1, one line on stderr) when ppl > X x (1 + T)\n"
    "  --tolerance T      relative tolerance of --expect-ppl (default 0.01 = 1%)\n"
    "  --two-sided        also fail when ppl < X x (1 - T): an unexpected\n"
    "                     improvement usually means the evaluation itself changed\n"
    "\n"
    "Exit status: 0 success, 1 failure or a failed --expect-ppl check, 2 usage\n"
    "error.\n"
    "\n"
    "Reported: ppl, tokens (in the text), windows, scored, seconds (forward only),\n"
    "tokens_per_second (windows x seqlen / seconds), params, bytes_fp16 (params x 2),\n"
    "bytes_model (every tensor as stored), compression_ratio (bytes_fp16 /\n"
    "bytes_model), bits_per_weight (of blk.*.{q,k,v,o,gate,up,down}.weight),\n"
    "flops_per_token and flops_per_token_dense, device, precision, residual (its\n"
    "type: fp32, fp16 or bf16) and device_bytes (memory the backend holds: on\n"
    "the GPU the weights as kept there, low-rank linears as their factors, and\n"
    "the activation buffers; on the CPU the decoded fp32 weights); on the GPU\n"
    "also device_weights, the weights' device bytes per encoding and how they are\n"
    "held (dense, dequantized at load, factors, packed: qgroup expanded per GEMM\n"
    "into one shared expansion scratch, int8 kernel: W8A8 and LLM.int8() integer\n"
    "GEMMs), and their sum device_weight_bytes.\n"
    "\n"
    "FLOPs convention: 2 FLOPs per multiply-accumulate; every block linear and the\n"
    "LM head count rows x cols MACs per token (flops_per_token: the encoding's\n"
    "effective MACs, e.g. only kept weights of a pruned matrix); attention counts\n"
    "q.k and p.v, n_heads x head_dim MACs each per key, at the average causal context\n"
    "(SEQLEN+1)/2; embeddings, norms, biases, activations and softmax are not counted.\n";

typedef struct progress_ctx {
    int tty;
    int seqlen;
    double last;
} progress_ctx;

static void progress(void *ctx, int64_t done, int64_t total, double seconds)
{
    progress_ctx *p = ctx;
    double tps = seconds > 0 ? (double)(done * p->seqlen) / seconds : 0;
    if (p->tty) {
        lmc_progress("\reval: window %lld/%lld, %.0f tokens/s%s", (long long)done,
                     (long long)total, tps, done == total ? "\n" : "");
    } else if (done == total || seconds - p->last >= 10.0) {
        /* not a terminal (a log): a line every 10 s */
        p->last = seconds;
        lmc_progress("eval: window %lld/%lld, %.0f tokens/s\n", (long long)done,
                     (long long)total, tps);
    }
}

static double peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_maxrss * 1024.0; /* kilobytes on Linux */
}

static int load_ids_from_text(const lmc_model *m, const char *model_path, const char *path,
                              int32_t **ids, int64_t *n, lmc_error *err)
{
    char *text;
    size_t len;
    if (lmc_read_file(path, &text, &len, err) < 0)
        return -1;
    if (len == 0) {
        free(text);
        return lmc_fail(err, "%s: empty file", path);
    }
    if (!m->tokenizer_json) {
        free(text);
        return lmc_fail(err, "%s: no tokenizer.json in the model (use --ids with pre-tokenized "
                             "ids)",
                        model_path);
    }
    lmc_tokenizer *tok;
    if (lmc_tokenizer_from_json(m->tokenizer_json, m->tokenizer_json_len, model_path, &tok,
                                err) < 0) {
        free(text);
        return -1;
    }
    size_t cnt;
    int rc = lmc_tokenizer_encode(tok, text, len, 1, ids, &cnt, err);
    lmc_tokenizer_free(tok);
    free(text);
    if (rc < 0)
        return lmc_fail_prefix(err, path);
    *n = (int64_t)cnt;
    return 0;
}

/* --bench-gemm (not in --help; scripts/bench-eval, scripts/bench-cuda): the
 * backend's GEMM rate on the model's own linear shapes (CPU: sgemm on
 * x[seqlen][in] . W^T; CUDA: cuBLAS with the output types of --precision /
 * --residual, and the attention kernel alone) and their mix weighted by the
 * FLOPs each shape contributes to one forward pass. */
static int bench_gemm(const lmc_model *m, lmc_device dev, int seqlen, lmc_precision prec,
                      lmc_residual res, int json)
{
    lmc_gemm_rate rates[8];
    int n = 0;
    double mix = 0;
    lmc_error err;
    if (lmc_backend_bench_gemm(dev, &m->cfg, seqlen, prec, res, rates, &n, &mix, &err) < 0)
        return lmc_report(&err);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seqlen", seqlen);
        cJSON_AddStringToObject(o, "device", lmc_device_name(dev));
        cJSON_AddNumberToObject(o, "threads", lmc_threads_get());
        cJSON *a = cJSON_AddArrayToObject(o, "shapes");
        for (int k = 0; k < n; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, rates[k].is_attention ? "kernel" : "linear",
                                    rates[k].name);
            cJSON_AddNumberToObject(e, "m", (double)rates[k].m);
            cJSON_AddNumberToObject(e, "n", (double)rates[k].n);
            cJSON_AddNumberToObject(e, "k", (double)rates[k].k);
            cJSON_AddNumberToObject(e, "per_forward", rates[k].per_forward);
            cJSON_AddNumberToObject(e, "gflops", rates[k].gflops);
            cJSON_AddItemToArray(a, e);
        }
        cJSON_AddNumberToObject(o, "sgemm_gflops", mix); /* the GEMMs only */
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return LMC_EXIT_OK;
    }
    for (int k = 0; k < n; k++) {
        const lmc_gemm_rate *r = &rates[k];
        if (r->is_attention)
            printf("attention %lld rows in windows of %lld, head_dim %lld  x%-3d %10.1f "
                   "GFLOP/s (causal; not in the mix)\n",
                   (long long)r->m, (long long)r->n, (long long)r->k, r->per_forward, r->gflops);
        else
            printf("gemm %-8s [%lld x %lld] . [%lld x %lld]^T  x%-3d %10.1f GFLOP/s\n", r->name,
                   (long long)r->m, (long long)r->k, (long long)r->n, (long long)r->k,
                   r->per_forward, r->gflops);
    }
    printf("GEMM mix weighted by FLOPs per forward: %.1f GFLOP/s (%s, %d threads)\n", mix,
           lmc_device_name(dev), lmc_threads_get());
    return LMC_EXIT_OK;
}

/* Relative slack on every bound: an expectation copied from lmc's --json
 * has 15 significant digits (cJSON prints %1.15g where that reads back
 * within DBL_EPSILON), so --tolerance 0 must accept the value it printed. */
#define PPL_PRINT_SLACK 1e-14

/* --expect-ppl: 1 (and a message on stderr) when PPL is outside the
 * tolerance; NaN fails too. */
static int ppl_regressed(double ppl, double expect, double tol, int two_sided)
{
    if (!(ppl <= expect * (1 + tol) * (1 + PPL_PRINT_SLACK))) {
        fprintf(stderr, "lmc eval: perplexity regressed: %.4f > %.4f x (1 + %g)\n", ppl, expect,
                tol);
        return 1;
    }
    if (two_sided && ppl < expect * (1 - tol) * (1 - PPL_PRINT_SLACK)) {
        fprintf(stderr, "lmc eval: perplexity improved beyond the tolerance: %.4f < %.4f x (1 - "
                        "%g) (update the expectation if this is intended)\n",
                ppl, expect, tol);
        return 1;
    }
    lmc_progress("eval: perplexity %.4f within %.4f x (1 %s %g)\n", ppl, expect,
                 two_sided ? "+/-" : "+", tol);
    return 0;
}

static void fmt_bytes(double b, char *buf, size_t n)
{
    if (b >= 1e9)
        snprintf(buf, n, "%.3f GB", b / 1e9);
    else if (b >= 1e6)
        snprintf(buf, n, "%.3f MB", b / 1e6);
    else
        snprintf(buf, n, "%.1f kB", b / 1e3);
}

int lmc_cmd_eval(int argc, char **argv)
{
    const char *cmd = "eval";
    const char *model_path = NULL, *text_path = NULL, *ids_path = NULL;
    long seqlen = 0, max_windows = 0, threads = 0;
    int json = 0, force = 0, bench = 0, prec_set = 0;
    lmc_device dev = LMC_DEVICE_CPU; /* the one place the device is chosen */
    double expect_ppl = 0, tolerance = 0.01;
    int tol_set = 0, two_sided = 0, regressed = 0;
    lmc_precision prec = LMC_PREC_AUTO;
    lmc_residual res = LMC_RESIDUAL_AUTO;
    int res_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return LMC_EXIT_OK;
        } else if (lmc_is_opt(a, "--text")) {
            if (!(text_path = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (lmc_is_opt(a, "--ids")) {
            if (!(ids_path = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
        } else if (lmc_is_opt(a, "--seqlen")) {
            if (!(v = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
            if (lmc_parse_int(v, 2, 1 << 20, &seqlen) < 0)
                return lmc_usage_error(cmd, "--seqlen: '%s' is not an integer in [2, %d]", v,
                                       1 << 20);
        } else if (lmc_is_opt(a, "--max-windows")) {
            if (!(v = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
            if (lmc_parse_int(v, 1, 1L << 40, &max_windows) < 0)
                return lmc_usage_error(cmd, "--max-windows: '%s' is not a positive integer", v);
        } else if (lmc_is_opt(a, "--threads")) {
            if (!(v = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
            if (lmc_parse_int(v, 1, 4096, &threads) < 0)
                return lmc_usage_error(cmd, "--threads: '%s' is not an integer in [1, 4096]", v);
        } else if (lmc_is_opt(a, "--device")) {
            if (!(v = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
            if (lmc_device_parse(v, &dev) < 0)
                return lmc_usage_error(cmd, "--device: '%s' is neither cpu nor cuda", v);
        } else if (lmc_is_opt(a, "--precision")) {
            if (!(v = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
            if (lmc_precision_parse(v, &prec) < 0)
                return lmc_usage_error(cmd, "--precision: '%s' is not auto, fp32, fp16 or bf16", v);
            prec_set = 1;
        } else if (lmc_is_opt(a, "--residual")) {
            if (!(v = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
            if (lmc_residual_parse(v, &res) < 0)
                return lmc_usage_error(cmd, "--residual: '%s' is not auto, fp32 or half", v);
            res_set = 1;
        } else if (lmc_is_opt(a, "--expect-ppl")) {
            if (!(v = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
            if (lmc_parse_double(v, 0, 1e300, &expect_ppl) < 0 || expect_ppl <= 0)
                return lmc_usage_error(cmd, "--expect-ppl: '%s' is not a positive number", v);
        } else if (lmc_is_opt(a, "--tolerance")) {
            if (!(v = lmc_opt_value(cmd, argc, argv, &i)))
                return LMC_EXIT_USAGE;
            if (lmc_parse_double(v, 0, 1, &tolerance) < 0)
                return lmc_usage_error(cmd, "--tolerance: '%s' is not a number in [0, 1]", v);
            tol_set = 1;
        } else if (!strcmp(a, "--two-sided")) {
            two_sided = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--bench-gemm")) {
            bench = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            lmc_quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return lmc_usage_error(cmd, "unknown option '%s'", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            return lmc_usage_error(cmd, "one MODEL only (got '%s' and '%s')", model_path, a);
        }
    }
    if (!model_path)
        return lmc_usage_error(cmd, "MODEL is required");
    if (!bench && !text_path && !ids_path)
        return lmc_usage_error(cmd, "--text FILE or --ids FILE is required");
    if (text_path && ids_path)
        return lmc_usage_error(cmd, "--text and --ids are exclusive");
    if ((tol_set || two_sided) && expect_ppl == 0)
        return lmc_usage_error(cmd, "--tolerance and --two-sided go with --expect-ppl X");
    if (expect_ppl > 0 && bench)
        return lmc_usage_error(cmd, "--expect-ppl checks a perplexity, not --bench-gemm");
    if (prec_set && dev == LMC_DEVICE_CPU)
        return lmc_usage_error(cmd, "--precision applies to --device cuda (the CPU evaluator "
                                    "computes in fp32)");
    if (res_set && dev == LMC_DEVICE_CPU)
        return lmc_usage_error(cmd, "--residual applies to --device cuda (the CPU evaluator "
                                    "computes in fp32)");
    if (res == LMC_RESIDUAL_HALF && prec == LMC_PREC_FP32)
        return lmc_usage_error(cmd, "--residual half needs --precision fp16 or bf16");
    lmc_threads_set((int)threads);

    lmc_error err;
    /* no device: say so before loading anything */
    if (lmc_device_available(dev, NULL, 0, &err) < 0) {
        char pre[32];
        snprintf(pre, sizeof pre, "--device %s", lmc_device_name(dev));
        lmc_fail_prefix(&err, pre);
        return lmc_report(&err);
    }
    lmc_model *m = NULL;
    lmc_backend *be = NULL;
    int32_t *ids = NULL;
    int rc = LMC_EXIT_FAIL;
    /* the weights' finiteness up front (also when evaluation streams blocks) */
    if (lmc_model_load(model_path, &m, &err) < 0 || (!bench && lmc_model_check_finite(m, &err))) {
        lmc_model_free(m);
        return lmc_report(&err);
    }
    const lmc_config *c = &m->cfg;
    if (seqlen == 0) {
        seqlen = c->max_pos < 2048 ? c->max_pos : 2048;
    } else if (seqlen > c->max_pos) {
        if (c->learned_pos) {
            lmc_fail(&err, "%s: --seqlen %ld exceeds the model's %d learned positions",
                     model_path, seqlen, c->max_pos);
            goto out;
        }
        if (!force) {
            lmc_fail(&err, "%s: --seqlen %ld exceeds the %d positions the model was trained on "
                           "(--force evaluates anyway)",
                     model_path, seqlen, c->max_pos);
            goto out;
        }
        fprintf(stderr, "lmc eval: warning: --seqlen %ld beyond the model's %d positions\n",
                seqlen, c->max_pos);
    }
    if (bench) {
        rc = bench_gemm(m, dev, (int)seqlen, prec, res, json);
        goto out;
    }

    int64_t n_ids = 0;
    const char *source = text_path ? text_path : ids_path;
    if (text_path) {
        if (load_ids_from_text(m, model_path, text_path, &ids, &n_ids, &err) < 0)
            goto out;
    } else if (lmc_read_ids_i32(ids_path, &ids, &n_ids, &err) < 0) {
        goto out;
    }
    if (n_ids < seqlen) {
        lmc_fail(&err, "%s: %lld tokens, fewer than one window of %ld", source, (long long)n_ids,
                 seqlen);
        goto out;
    }
    lmc_model_stats st;
    lmc_model_stats_compute(m, &st);
    lmc_flops fl;
    if (lmc_flops_per_token(m, (int)seqlen, &fl, &err) < 0)
        goto out;
    double t_load = lmc_now();
    lmc_backend_opts bo;
    lmc_backend_opts_default(&bo);
    bo.device = dev;
    bo.precision = prec;
    bo.residual = res;
    bo.seqlen_hint = (int)seqlen;
    if (lmc_backend_open(m, &bo, &be, &err) < 0) {
        if (dev == LMC_DEVICE_CPU) /* the CUDA backend names the model itself */
            lmc_fail_prefix(&err, model_path);
        goto out;
    }
    t_load = lmc_now() - t_load;

    progress_ctx pc = {isatty(2), (int)seqlen, 0};
    lmc_ppl_opts po = {(int)seqlen, max_windows, source, progress, &pc};
    lmc_ppl_result r;
    if (lmc_backend_perplexity(be, ids, n_ids, &po, &r, &err))
        goto out;
    const char *prec_name = lmc_precision_name(lmc_backend_precision(be));
    /* the residual is held in the compute type or in fp32 */
    const char *res_name = lmc_backend_residual(be) == LMC_RESIDUAL_HALF ? prec_name : "fp32";

    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model_path);
        cJSON_AddStringToObject(o, "source", source);
        cJSON_AddNumberToObject(o, "seqlen", (double)seqlen);
        cJSON_AddNumberToObject(o, "threads", lmc_threads_get());
        cJSON_AddStringToObject(o, "device", lmc_device_name(dev));
        cJSON_AddStringToObject(o, "precision", prec_name);
        cJSON_AddStringToObject(o, "residual", res_name);
        cJSON_AddNumberToObject(o, "ppl", r.ppl);
        cJSON_AddNumberToObject(o, "nll_mean", r.nll / (double)r.scored);
        cJSON_AddNumberToObject(o, "tokens", (double)r.tokens);
        cJSON_AddNumberToObject(o, "windows", (double)r.windows);
        cJSON_AddNumberToObject(o, "scored", (double)r.scored);
        cJSON_AddNumberToObject(o, "seconds", r.seconds);
        cJSON_AddNumberToObject(o, "tokens_per_second", r.tokens_per_second);
        cJSON_AddNumberToObject(o, "params", (double)st.params);
        cJSON_AddNumberToObject(o, "bytes_fp16", st.bytes_fp16);
        cJSON_AddNumberToObject(o, "bytes_model", st.bytes_model);
        cJSON_AddNumberToObject(o, "compression_ratio", st.compression_ratio);
        cJSON_AddNumberToObject(o, "bits_per_weight", st.bits_per_weight);
        cJSON_AddNumberToObject(o, "flops_per_token", fl.per_token);
        cJSON_AddNumberToObject(o, "flops_per_token_dense", fl.per_token_dense);
        cJSON_AddNumberToObject(o, "gflops_per_second",
                                r.seconds > 0 ? fl.per_token * (double)(r.windows * seqlen) /
                                                    r.seconds * 1e-9
                                              : 0);
        cJSON_AddNumberToObject(o, "load_seconds", t_load);
        cJSON_AddNumberToObject(o, "peak_rss_bytes", peak_rss_bytes());
        cJSON_AddNumberToObject(o, "device_bytes", (double)lmc_backend_bytes(be));
        lmc_weight_bytes wb[LMC_MAX_WEIGHT_BYTES];
        int nwb = lmc_backend_weight_bytes(be, wb, LMC_MAX_WEIGHT_BYTES);
        if (nwb > 0) {
            cJSON *arr = cJSON_AddArrayToObject(o, "device_weights");
            double tot = 0;
            for (int i = 0; i < nwb; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "encoding", wb[i].encoding);
                cJSON_AddStringToObject(e, "held", wb[i].held);
                cJSON_AddNumberToObject(e, "bytes", wb[i].bytes);
                cJSON_AddNumberToObject(e, "tensors", (double)wb[i].tensors);
                cJSON_AddItemToArray(arr, e);
                tot += wb[i].bytes;
            }
            cJSON_AddNumberToObject(o, "device_weight_bytes", tot);
        }
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        char b1[32], b2[32];
        fmt_bytes(st.bytes_model, b1, sizeof b1);
        fmt_bytes(st.bytes_fp16, b2, sizeof b2);
        printf("model         %s (%s, %.3fM params)\n", model_path, lmc_arch_name(c->arch),
               (double)st.params / 1e6);
        printf("perplexity    %.4f   (%lld windows of %ld tokens, %lld predictions scored, "
               "%lld tokens in %s)\n",
               r.ppl, (long long)r.windows, seqlen, (long long)r.scored, (long long)r.tokens,
               source);
        char where[64];
        snprintf(where, sizeof where, "%s, %s, %s residual, %d threads", lmc_device_name(dev),
                 prec_name, res_name, lmc_threads_get());
        printf("speed         %.1f s, %.0f tokens/s, %.1f GFLOP/s (%s)\n", r.seconds,
               r.tokens_per_second,
               r.seconds > 0 ? fl.per_token * (double)(r.windows * seqlen) / r.seconds * 1e-9 : 0,
               where);
        printf("size          %s as stored, %s in fp16: compression %.2fx, %.2f bits/weight "
               "(linears)\n",
               b1, b2, st.compression_ratio, st.bits_per_weight);
        printf("FLOPs/token   %.4g effective, %.4g dense (attention at %.1f keys)\n",
               fl.per_token, fl.per_token_dense, fl.avg_context);
        fmt_bytes((double)lmc_backend_bytes(be), b1, sizeof b1);
        printf("%s memory    %s (weights as the backend keeps them, activation buffers)\n",
               lmc_device_name(dev), b1);
    }
    rc = LMC_EXIT_OK;
    if (expect_ppl > 0)
        regressed = ppl_regressed(r.ppl, expect_ppl, tolerance, two_sided);
out:
    if (rc == LMC_EXIT_FAIL)
        lmc_report(&err);
    free(ids);
    lmc_backend_close(be);
    lmc_model_free(m);
    return regressed ? LMC_EXIT_FAIL : rc;
}
