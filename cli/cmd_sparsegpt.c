/* lmc sparsegpt: SparseGPT pruning (unstructured or N:M) with the GPTQ
 * error-feedback solver, optionally quantizing the kept weights jointly.
 * Pruning options are parsed and checked by compress/prune.c, the rest by
 * compress/sparsegpt.c. */
#include <stdio.h>
#include <string.h>

#include "../compress/sparsegpt.h"
#include "cli.h"
#include "pass_cli.h"
#include "pass_opts.h"

static const char help[] =
    "usage: lmc sparsegpt MODEL -o OUT.lmc (--sparsity P | --nm N:M) [options]\n"
    "\n"
    "SparseGPT (Frantar & Alistarh 2023) on every block linear (q k v o gate\n"
    "up down), blocks calibrated in sequence on the already pruned model:\n"
    "columns are decided one at a time, pruned by w^2 / [H^-1]_jj^2, and each\n"
    "column's error is pushed onto the columns not yet decided through the\n"
    "inverse Hessian of the calibration inputs (the GPTQ solver). GPT-2's q, k, v\n"
    "(one c_attn matrix in the checkpoint) are pruned as one matrix, as the\n"
    "reference does. Embeddings, norms and the LM head stay as they are.\n"
    "\n"
    "  --sparsity P        unstructured: in every block of columns, prune the\n"
    "                      int(rows*block*P) lowest scores (0 < P < 1); stored\n"
    "                      as a bitmask + kept values\n"
    "  --nm N:M            semi-structured: keep N of every M consecutive inputs\n"
    "                      of each row (2:4, 4:8; M <= 64 must divide every\n"
    "                      input width and the block size)\n"
    "  --inner f16|f32     encoding of the kept values without --bits (default f16)\n"
    "  --bits B            quantize the kept weights jointly, 2..8 bits; stored as\n"
    "                      sparse/N:M with grouped-integer values\n"
    "  --group G           with --bits: input columns per scale/zero, -1 = one per\n"
    "                      row (default -1, as the SparseGPT reference)\n"
    "  --sym               with --bits: symmetric grid\n"
    "  --damp F            damping, fraction of mean diag(H) (default 0.01); raised\n"
    "                      x10 with a warning while H is not positive definite\n"
    "  --block N           columns per lazy-update block (default 128)\n";

/* options, and which of them were given (checked together afterwards) */
typedef struct sgpt_args {
    lmc_sparsegpt_opts o;
    int inner_set, quant_set;
} sgpt_args;

static int sgpt_opt(void *ctx, const char *cmd, int argc, char **argv, int *i)
{
    sgpt_args *sa = ctx;
    lmc_solver_opts *so = &sa->o.solver;
    const char *a = argv[*i];
    int r = lmc_prune_cli_opt(cmd, argc, argv, i, &sa->o.prune);
    if (r > 0 && lmc_is_opt(a, "--inner"))
        sa->inner_set = 1;
    if (r == 0) {
        r = lmc_quant_cli_opt(cmd, argc, argv, i, &so->bits, &so->group, &so->sym);
        if (r > 0 && (lmc_is_opt(a, "--group") || !strcmp(a, "--sym")))
            sa->quant_set = 1;
    }
    if (r == 0)
        r = lmc_solver_cli_opt(cmd, argc, argv, i, &so->percdamp, &so->blocksize);
    return r;
}

int lmc_cmd_sparsegpt(int argc, char **argv)
{
    const char *cmd = "sparsegpt";
    lmc_pass_cli c;
    lmc_pass_cli_init(&c, cmd);
    sgpt_args sa;
    memset(&sa, 0, sizeof sa);
    lmc_sparsegpt_opts_default(&sa.o);
    lmc_error err = {{0}};
    int rc = lmc_pass_cli_parse(&c, argc, argv, help, sgpt_opt, &sa);
    if (rc >= 0)
        return rc;
    const char *bad = NULL;
    if (sa.quant_set && !sa.o.solver.bits)
        bad = "--group and --sym need --bits";
    else if (sa.inner_set && sa.o.solver.bits)
        bad = "--inner applies to unquantized values; with --bits the kept values are integers";
    lmc_pass p;
    if (bad || lmc_sparsegpt_pass(&p, &sa.o, &err)) {
        cJSON_Delete(c.args);
        return lmc_usage_error(cmd, "%s", bad ? bad : err.msg);
    }
    lmc_prune_opts_to_json(&sa.o.prune, c.args);
    if (sa.o.solver.bits) {
        cJSON_DeleteItemFromObject(c.args, "inner");
        cJSON_AddNumberToObject(c.args, "bits", sa.o.solver.bits);
        cJSON_AddNumberToObject(c.args, "group", sa.o.solver.group);
        cJSON_AddBoolToObject(c.args, "sym", sa.o.solver.sym);
    }
    cJSON_AddNumberToObject(c.args, "damp", sa.o.solver.percdamp);
    cJSON_AddNumberToObject(c.args, "block", sa.o.solver.blocksize);
    return lmc_pass_cli_run(&c, &p);
}
