/* lmc smoothquant: SmoothQuant smoothing + W8A8 (compress/smoothquant.h). */
#include <stdio.h>
#include <string.h>

#include "../compress/smoothquant.h"
#include "cli.h"
#include "pass_cli.h"

static const char help[] =
    "usage: lmc smoothquant MODEL -o OUT.lmc [--alpha A] [--no-smooth]\n"
    "\n"
    "SmoothQuant (Xiao et al.): per input channel of q/k/v and of gate/up (up),\n"
    "s = max|x|^A / max|W|^(1-A) from the calibration activations, folded into\n"
    "the preceding norm; then every block linear (q k v o gate up down) is\n"
    "stored W8A8: int8 weights per output channel (symmetric absmax), and the\n"
    "evaluator quantizes each token's activations to int8 (dynamic absmax)\n"
    "and multiplies int8 x int8 with int32 accumulation. Embeddings, norms\n"
    "and the LM head stay as they are.\n"
    "\n"
    "  --alpha A           migration strength, 0..1 (default 0.5; 0.8-0.85 is\n"
    "                      usual for Llama-family models)\n"
    "  --no-smooth         plain W8A8, no smoothing (needs no calibration)\n"
    "  --no-quant          smoothing only, linears kept fp32 (a check: the\n"
    "                      result must compute the original model's function)\n";

static int smoothquant_opt(void *ctx, const char *cmd, int argc, char **argv, int *i)
{
    lmc_smoothquant_opts *o = ctx;
    const char *a = argv[*i], *v;
    if (lmc_is_opt(a, "--alpha")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_double(v, 0.0, 1.0, &o->alpha)) {
            lmc_usage_error(cmd, "--alpha %s: must be a number from 0 to 1", v);
            return -1;
        }
    } else if (!strcmp(a, "--no-smooth")) {
        o->smooth = 0;
    } else if (!strcmp(a, "--no-quant")) {
        o->quantize = 0;
    } else {
        return 0;
    }
    return 1;
}

int lmc_cmd_smoothquant(int argc, char **argv)
{
    const char *cmd = "smoothquant";
    lmc_pass_cli c;
    lmc_pass_cli_init(&c, cmd);
    lmc_smoothquant_opts o;
    lmc_smoothquant_opts_default(&o);
    int rc = lmc_pass_cli_parse(&c, argc, argv, help, smoothquant_opt, &o);
    if (rc >= 0)
        return rc;
    if (!o.smooth && !o.quantize) {
        cJSON_Delete(c.args);
        return lmc_usage_error(cmd, "--no-smooth with --no-quant would leave the model unchanged");
    }
    if (o.smooth)
        cJSON_AddNumberToObject(c.args, "alpha", o.alpha);
    cJSON_AddBoolToObject(c.args, "smooth", o.smooth);
    cJSON_AddBoolToObject(c.args, "w8a8", o.quantize);
    lmc_pass p;
    lmc_smoothquant_pass(&p, &o);
    return lmc_pass_cli_run(&c, &p);
}
