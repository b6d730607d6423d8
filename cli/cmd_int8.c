/* lmc int8: LLM.int8() weights with fp16 outlier columns (compress/int8.h). */
#include <stdio.h>
#include <string.h>

#include "../compress/int8.h"
#include "cli.h"
#include "pass_cli.h"

static const char help[] =
    "usage: lmc int8 MODEL -o OUT.lmc [--threshold T] [options]\n"
    "\n"
    "LLM.int8() (Dettmers et al. 2022) for every block linear (q k v o gate up\n"
    "down): weights int8 per output row (absmax / 127) with fp16 row scales,\n"
    "plus the original fp16 weights of the outlier input columns. At evaluation\n"
    "the outlier columns of the input run in fp32 against those weights, the\n"
    "rest is quantized to int8 per token and multiplied in int8 with int32\n"
    "accumulation.\n"
    "\n"
    "Outlier columns are fixed from calibration: the input columns of a linear\n"
    "whose max |x| over the calibration tokens reaches T (bitsandbytes picks\n"
    "them per batch; see docs). A column that reaches T only at evaluation\n"
    "is computed in int8.\n"
    "\n"
    "  --threshold T       outlier threshold on |x| (default 6.0)\n";

static int int8_opt(void *ctx, const char *cmd, int argc, char **argv, int *i)
{
    lmc_int8_opts *o = ctx;
    const char *v;
    if (!lmc_is_opt(argv[*i], "--threshold"))
        return 0;
    if (!(v = lmc_opt_value(cmd, argc, argv, i)))
        return -1;
    if (lmc_parse_double(v, 0.0, 3.0e38, &o->threshold) || !(o->threshold > 0)) {
        lmc_usage_error(cmd, "--threshold %s: must be a positive number", v);
        return -1;
    }
    return 1;
}

int lmc_cmd_int8(int argc, char **argv)
{
    const char *cmd = "int8";
    lmc_pass_cli c;
    lmc_pass_cli_init(&c, cmd);
    lmc_int8_run run;
    memset(&run, 0, sizeof run);
    lmc_int8_opts_default(&run.o);
    lmc_error err = {{0}};
    int rc = lmc_pass_cli_parse(&c, argc, argv, help, int8_opt, &run.o);
    if (rc >= 0)
        return rc;
    lmc_pass p;
    if (lmc_int8_pass(&p, &run, &err)) {
        cJSON_Delete(c.args);
        return lmc_usage_error(cmd, "%s", err.msg);
    }
    cJSON_AddNumberToObject(c.args, "threshold", run.o.threshold);
    /* per-tensor outlier statistics travel with the arguments into the
     * container's provenance (filled while the pass runs) */
    run.record = cJSON_AddArrayToObject(c.args, "outliers");
    return lmc_pass_cli_run(&c, &p);
}
