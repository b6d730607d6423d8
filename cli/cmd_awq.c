/* lmc awq: activation-aware weight quantization (compress/awq.h). */
#include <stdio.h>
#include <string.h>

#include "../compress/awq.h"
#include "cli.h"
#include "pass_cli.h"
#include "pass_opts.h"

static const char help[] =
    "usage: lmc awq MODEL -o OUT.lmc [--bits B] [--group G] [--grid N] [--no-clip] [--sym]\n"
    "\n"
    "AWQ (Lin et al.): per group of linears sharing an input (attn_norm -> q k v,\n"
    "v -> o without GQA, ffn_norm -> gate up, up -> down for gated/ReLU FFNs)\n"
    "search s = mean|x|^r, r = 0, 1/N, ..., minimizing the error of the block's\n"
    "attention / MLP / linear output when the weights are quantized as\n"
    "Q(W diag(s)) diag(s)^-1; fold s into the preceding norm or linear; then\n"
    "search a clipping range per row and group (all linears but q, k); then\n"
    "round to nearest with AWQ's min/max quantizer. The output is a plain\n"
    "grouped-integer model, the encoding lmc gptq writes.\n"
    "\n"
    "  --bits B            2..8 (default 4)\n"
    "  --group G           input columns per scale/zero, -1 = one per row (default 128)\n"
    "  --sym               symmetric grid (AWQ's zero_point=False)\n"
    "  --grid N            scale ratios searched (default 20)\n"
    "  --no-clip           no clipping search\n"
    "  --no-scale          no scale search (with --no-clip: plain RTN with AWQ's quantizer)\n"
    "  --scale-only        fold the scales and clip, keep fp16 weights: input for\n"
    "                      'lmc gptq' (AWQ + GPTQ)\n"
    "  --sequential        round each block before calibrating the next (default:\n"
    "                      later blocks see unrounded outputs, as llm-awq)\n"
    "  --search-tokens N   calibration tokens the searches run on (default 65536;\n"
    "                      whole windows, at least one)\n"
    "Calibration default here: 128 windows of 512 tokens, as llm-awq.\n";

static int awq_opt(void *ctx, const char *cmd, int argc, char **argv, int *i)
{
    lmc_awq_opts *o = ctx;
    const char *a = argv[*i], *v;
    long x;
    int r = lmc_quant_cli_opt(cmd, argc, argv, i, &o->bits, &o->group, &o->sym);
    if (r != 0)
        return r;
    if (lmc_is_opt(a, "--grid")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_int(v, 1, 1000, &x)) {
            lmc_usage_error(cmd, "--grid %s: must be an integer from 1 to 1000", v);
            return -1;
        }
        o->grid = (int)x;
    } else if (lmc_is_opt(a, "--search-tokens")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_int(v, 1, 1L << 40, &x)) {
            lmc_usage_error(cmd, "--search-tokens %s: must be a positive integer", v);
            return -1;
        }
        o->search_tokens = x;
    } else if (!strcmp(a, "--no-clip")) {
        o->clip = 0;
    } else if (!strcmp(a, "--no-scale")) {
        o->scale = 0;
    } else if (!strcmp(a, "--scale-only")) {
        o->scale_only = 1;
    } else if (!strcmp(a, "--sequential")) {
        o->sequential = 1;
    } else {
        return 0;
    }
    return 1;
}

int lmc_cmd_awq(int argc, char **argv)
{
    const char *cmd = "awq";
    lmc_pass_cli c;
    lmc_pass_cli_init(&c, cmd);
    c.seqlen = 512; /* llm-awq: 128 samples x 512 tokens */
    lmc_awq_opts o;
    lmc_awq_opts_default(&o);
    int rc = lmc_pass_cli_parse(&c, argc, argv, help, awq_opt, &o);
    if (rc >= 0)
        return rc;
    if (o.scale_only && !o.scale && !o.clip) {
        cJSON_Delete(c.args);
        return lmc_usage_error(cmd,
                               "--scale-only with --no-scale and --no-clip leaves nothing to do");
    }
    cJSON_AddNumberToObject(c.args, "bits", o.bits);
    cJSON_AddNumberToObject(c.args, "group", o.group);
    cJSON_AddBoolToObject(c.args, "sym", o.sym);
    cJSON_AddNumberToObject(c.args, "grid", o.grid);
    cJSON_AddBoolToObject(c.args, "scale", o.scale);
    cJSON_AddBoolToObject(c.args, "clip", o.clip);
    cJSON_AddBoolToObject(c.args, "scale_only", o.scale_only);
    cJSON_AddBoolToObject(c.args, "sequential", o.sequential);
    cJSON_AddNumberToObject(c.args, "search_tokens", (double)o.search_tokens);
    lmc_pass p;
    lmc_awq_pass(&p, &o);
    return lmc_pass_cli_run(&c, &p);
}
