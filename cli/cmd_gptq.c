/* lmc gptq / lmc rtn: grouped integer weight quantization. */
#include <stdio.h>
#include <string.h>

#include "../compress/quant_passes.h"
#include "cli.h"
#include "pass_cli.h"
#include "pass_opts.h"

static const char rtn_help[] =
    "usage: lmc rtn MODEL -o OUT.lmc [--bits B] [--group G] [--sym]\n"
    "Round-to-nearest with the min/max quantizer (asymmetric unless --sym).\n"
    "  --bits B            2..8 (default 4)\n"
    "  --group G           input columns per scale/zero, -1 = one per row (default 128)\n"
    "  --sym               symmetric grid (zero fixed at 2^(B-1))\n";

static const char gptq_help[] =
    "usage: lmc gptq MODEL -o OUT.lmc [options]\n"
    "GPTQ (Frantar et al.): column-by-column quantization with error feedback\n"
    "through the inverse Hessian of the calibration inputs, block by block.\n"
    "  --bits B            2..8 (default 4)\n"
    "  --group G           input columns per scale/zero, -1 = one per row (default 128)\n"
    "  --sym               symmetric grid\n"
    "  --act-order         columns in descending diag(H) order (stores g_idx)\n"
    "  --static-groups     with --act-order: fit all groups up front (no g_idx needed)\n"
    "  --damp F            damping, fraction of mean diag(H) (default 0.01); raised x10\n"
    "                      with a warning while H is not positive definite\n"
    "  --block N           columns per lazy-update block (default 128)\n";

static int rtn_opt(void *ctx, const char *cmd, int argc, char **argv, int *i)
{
    lmc_rtn_opts *o = ctx;
    return lmc_quant_cli_opt(cmd, argc, argv, i, &o->bits, &o->group, &o->sym);
}

static int gptq_opt(void *ctx, const char *cmd, int argc, char **argv, int *i)
{
    lmc_solver_opts *o = ctx;
    const char *a = argv[*i];
    int r = lmc_quant_cli_opt(cmd, argc, argv, i, &o->bits, &o->group, &o->sym);
    if (r == 0)
        r = lmc_solver_cli_opt(cmd, argc, argv, i, &o->percdamp, &o->blocksize);
    if (r != 0)
        return r;
    if (!strcmp(a, "--act-order"))
        o->act_order = 1;
    else if (!strcmp(a, "--static-groups"))
        o->static_groups = 1;
    else
        return 0;
    return 1;
}

int lmc_cmd_rtn(int argc, char **argv)
{
    lmc_pass_cli c;
    lmc_pass_cli_init(&c, "rtn");
    lmc_rtn_opts o = {4, 128, 0};
    int rc = lmc_pass_cli_parse(&c, argc, argv, rtn_help, rtn_opt, &o);
    if (rc >= 0)
        return rc;
    cJSON_AddNumberToObject(c.args, "bits", o.bits);
    cJSON_AddNumberToObject(c.args, "group", o.group);
    cJSON_AddBoolToObject(c.args, "sym", o.sym);
    lmc_pass p;
    lmc_rtn_pass(&p, &o);
    return lmc_pass_cli_run(&c, &p);
}

int lmc_cmd_gptq(int argc, char **argv)
{
    lmc_pass_cli c;
    lmc_pass_cli_init(&c, "gptq");
    lmc_solver_opts o;
    lmc_solver_opts_default(&o);
    o.bits = 4;
    o.group = 128;
    int rc = lmc_pass_cli_parse(&c, argc, argv, gptq_help, gptq_opt, &o);
    if (rc >= 0)
        return rc;
    if (o.static_groups && o.group <= 0) {
        cJSON_Delete(c.args);
        return lmc_usage_error("gptq", "--static-groups needs --group > 0");
    }
    cJSON_AddNumberToObject(c.args, "bits", o.bits);
    cJSON_AddNumberToObject(c.args, "group", o.group);
    cJSON_AddBoolToObject(c.args, "sym", o.sym);
    cJSON_AddBoolToObject(c.args, "act_order", o.act_order);
    cJSON_AddBoolToObject(c.args, "static_groups", o.static_groups);
    cJSON_AddNumberToObject(c.args, "damp", o.percdamp);
    cJSON_AddNumberToObject(c.args, "block", o.blocksize);
    lmc_pass p;
    lmc_gptq_pass(&p, &o);
    return lmc_pass_cli_run(&c, &p);
}
