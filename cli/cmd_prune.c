/* lmc magnitude and lmc wanda: the two pruning commands without a weight
 * update share their options (--sparsity, --nm, --inner), which
 * compress/prune.c parses and checks; they differ in the pass. */
#include <stdio.h>
#include <string.h>

#include "../compress/prune_passes.h"
#include "cli.h"
#include "pass_cli.h"
#include "pass_opts.h"

static const char magnitude_help[] =
    "usage: lmc magnitude MODEL -o OUT.lmc (--sparsity P | --nm N:M) [options]\n"
    "\n"
    "Magnitude pruning of every block linear (q k v o gate up down); embeddings,\n"
    "norms and the LM head stay as they are. Needs no calibration (the\n"
    "calibration options below are accepted and ignored).\n"
    "\n"
    "  --sparsity P        unstructured: prune exactly int(rows*cols*P) weights\n"
    "                      of each matrix, smallest |W| first (0 < P < 1);\n"
    "                      stored as a bitmask + kept values\n"
    "  --nm N:M            semi-structured: keep the N largest |W| of every M\n"
    "                      consecutive inputs of each row (2:4, 4:8; M must\n"
    "                      divide every input width)\n"
    "  --inner f16|f32     encoding of the kept values (default f16)\n";

static const char wanda_help[] =
    "usage: lmc wanda MODEL -o OUT.lmc (--sparsity P | --nm N:M) [options]\n"
    "\n"
    "Wanda pruning of every block linear (q k v o gate up down): score\n"
    "|W_ij| * sqrt(sum of x_j^2 / tokens) over the calibration inputs of the\n"
    "linear, blocks calibrated in sequence on the already pruned model; no\n"
    "weight update. Embeddings, norms and the LM head stay as they are.\n"
    "\n"
    "  --sparsity P        unstructured: prune exactly int(cols*P) weights of\n"
    "                      every output row, lowest score first (0 < P < 1);\n"
    "                      stored as a bitmask + kept values\n"
    "  --nm N:M            semi-structured: keep the N highest scores of every\n"
    "                      M consecutive inputs of each row (2:4, 4:8; M must\n"
    "                      divide every input width)\n"
    "  --inner f16|f32     encoding of the kept values (default f16)\n";

static int prune_opt(void *ctx, const char *cmd, int argc, char **argv, int *i)
{
    return lmc_prune_cli_opt(cmd, argc, argv, i, ctx);
}

typedef int (*prune_pass_fn)(lmc_pass *p, const lmc_prune_opts *o, lmc_error *err);

static int prune_cmd(const char *cmd, const char *help, prune_pass_fn make_pass, int argc,
                     char **argv)
{
    lmc_pass_cli c;
    lmc_pass_cli_init(&c, cmd);
    lmc_prune_opts o;
    lmc_prune_opts_default(&o);
    lmc_error err = {{0}};
    int rc = lmc_pass_cli_parse(&c, argc, argv, help, prune_opt, &o);
    if (rc >= 0)
        return rc;
    lmc_pass p;
    if (lmc_prune_opts_check(&o, &err) || make_pass(&p, &o, &err)) {
        cJSON_Delete(c.args);
        return lmc_usage_error(cmd, "%s", err.msg);
    }
    lmc_prune_opts_to_json(&o, c.args);
    return lmc_pass_cli_run(&c, &p);
}

int lmc_cmd_magnitude(int argc, char **argv)
{
    return prune_cmd("magnitude", magnitude_help, lmc_magnitude_pass, argc, argv);
}

int lmc_cmd_wanda(int argc, char **argv)
{
    return prune_cmd("wanda", wanda_help, lmc_wanda_pass, argc, argv);
}
