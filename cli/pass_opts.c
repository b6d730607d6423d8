#include "pass_opts.h"

#include <string.h>

#include "cli.h"

int lmc_quant_cli_opt(const char *cmd, int argc, char **argv, int *i, int *bits, int *group,
                      int *sym)
{
    const char *a = argv[*i], *v;
    long x;
    if (lmc_is_opt(a, "--bits")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_int(v, 2, 8, &x))
            return lmc_usage_error(cmd, "--bits %s: must be an integer from 2 to 8", v), -1;
        *bits = (int)x;
    } else if (lmc_is_opt(a, "--group")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_int(v, -1, 1 << 30, &x) || x == 0)
            return lmc_usage_error(cmd, "--group %s: must be -1 or a positive integer", v), -1;
        *group = (int)x;
    } else if (!strcmp(a, "--sym")) {
        *sym = 1;
    } else {
        return 0;
    }
    return 1;
}

int lmc_solver_cli_opt(const char *cmd, int argc, char **argv, int *i, double *percdamp,
                       int *blocksize)
{
    const char *a = argv[*i], *v;
    long x;
    if (lmc_is_opt(a, "--damp")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_double(v, 0.0, 1e6, percdamp) || *percdamp <= 0)
            return lmc_usage_error(cmd, "--damp %s: must be a positive number", v), -1;
    } else if (lmc_is_opt(a, "--block")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        if (lmc_parse_int(v, 1, 1 << 20, &x))
            return lmc_usage_error(cmd, "--block %s: must be a positive integer", v), -1;
        *blocksize = (int)x;
    } else {
        return 0;
    }
    return 1;
}

int lmc_prune_cli_opt(const char *cmd, int argc, char **argv, int *i, lmc_prune_opts *o)
{
    const char *a = argv[*i], *v;
    lmc_error err = {{0}};
    int rc;
    if (lmc_is_opt(a, "--sparsity")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        rc = lmc_prune_parse_sparsity(v, &o->sparsity, &err);
    } else if (lmc_is_opt(a, "--nm")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        rc = lmc_prune_parse_nm(v, &o->n, &o->m, &err);
    } else if (lmc_is_opt(a, "--inner")) {
        if (!(v = lmc_opt_value(cmd, argc, argv, i)))
            return -1;
        rc = lmc_prune_parse_inner(v, &o->inner, &err);
    } else {
        return 0;
    }
    if (rc) {
        lmc_usage_error(cmd, "%s", err.msg);
        return -1;
    }
    return 1;
}
