/* lmc svd: low-rank factorization of the block linears (compress/svd.h). */
#include <stdio.h>
#include <string.h>

#include "../compress/svd.h"
#include "cli.h"
#include "pass_cli.h"

static const char help[] =
    "usage: lmc svd MODEL -o OUT.lmc (--keep F | --rank R) [options]\n"
    "\n"
    "Factor every block linear (q k v o gate up down) W [out, in] into\n"
    "A [out, r] . B [r, in], stored as a factor pair; evaluation runs the two\n"
    "products and counts r * (out + in) multiply-adds per token. Embeddings,\n"
    "norms and the LM head stay as they are.\n"
    "\n"
    "  --keep F            keep fraction F of each linear's parameters:\n"
    "                      r = floor(F * out * in / (out + in)), at least 1\n"
    "  --rank R            the same rank R for every linear (capped at min(out, in))\n"
    "                      A linear whose factors would not be smaller than W is\n"
    "                      left as it is (the report says so).\n"
    "  --method M          plain (default): SVD of W, no calibration;\n"
    "                      asvd: input channels scaled by (mean |x|)^alpha first;\n"
    "                      whiten: SVD-LLM, SVD of W L with L L^T = sum x x^T,\n"
    "                      minimizing the output error on the calibration inputs\n"
    "  --alpha A           asvd exponent (default 0.5)\n"
    "  --dtype f16|f32     factor storage (default f16)\n";

static int svd_opt(void *ctx, const char *cmd, int argc, char **argv, int *i)
{
    lmc_svd_opts *o = ctx;
    const char *a = argv[*i], *v;
    if (lmc_is_opt(a, "--keep")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_double(v, 0.0, 1.0, &o->keep) || !(o->keep > 0) || !(o->keep < 1)) {
            lmc_usage_error(cmd, "--keep %s: must be a fraction between 0 and 1 (exclusive)", v);
            return -1;
        }
    } else if (lmc_is_opt(a, "--rank")) {
        long x;
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_int(v, 1, 1 << 30, &x)) {
            lmc_usage_error(cmd, "--rank %s: must be a positive integer", v);
            return -1;
        }
        o->rank = (int)x;
    } else if (lmc_is_opt(a, "--method")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        lmc_error err;
        if (lmc_svd_parse_method(v, &o->method, &err)) {
            lmc_usage_error(cmd, "%s", err.msg);
            return -1;
        }
    } else if (lmc_is_opt(a, "--alpha")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_double(v, 0.0, 4.0, &o->alpha)) {
            lmc_usage_error(cmd, "--alpha %s: must be a number from 0 to 4", v);
            return -1;
        }
    } else if (lmc_is_opt(a, "--dtype")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (!strcmp(v, "f16")) {
            o->dtype = LMC_ENC_F16;
        } else if (!strcmp(v, "f32")) {
            o->dtype = LMC_ENC_F32;
        } else {
            lmc_usage_error(cmd, "--dtype '%s': expected f16 or f32", v);
            return -1;
        }
    } else {
        return 0;
    }
    return 1;
}

int lmc_cmd_svd(int argc, char **argv)
{
    const char *cmd = "svd";
    lmc_pass_cli c;
    lmc_pass_cli_init(&c, cmd);
    lmc_svd_run run;
    memset(&run, 0, sizeof run);
    lmc_svd_opts_default(&run.o);
    lmc_error err = {{0}};
    int rc = lmc_pass_cli_parse(&c, argc, argv, help, svd_opt, &run.o);
    if (rc >= 0)
        return rc;
    lmc_pass p;
    if (lmc_svd_pass(&p, &run, &err)) {
        cJSON_Delete(c.args);
        return lmc_usage_error(cmd, "%s", err.msg);
    }
    cJSON_AddStringToObject(c.args, "method", lmc_svd_method_name(run.o.method));
    if (run.o.rank > 0)
        cJSON_AddNumberToObject(c.args, "rank", run.o.rank);
    else
        cJSON_AddNumberToObject(c.args, "keep", run.o.keep);
    if (run.o.method == LMC_SVD_ASVD)
        cJSON_AddNumberToObject(c.args, "alpha", run.o.alpha);
    cJSON_AddStringToObject(c.args, "dtype", run.o.dtype == LMC_ENC_F16 ? "f16" : "f32");
    return lmc_pass_cli_run(&c, &p);
}
