/* Option parsers that several pass commands share, each in
 * lmc_pass_opt_fn's convention: 1 consumed (*i on its last word), 0 not its
 * option, -1 after a usage error was printed. */
#ifndef LMC_PASS_OPTS_H
#define LMC_PASS_OPTS_H

#include "../compress/prune.h"

/* --bits B (2..8), --group G (-1: one group per row, else > 0), --sym */
int lmc_quant_cli_opt(const char *cmd, int argc, char **argv, int *i, int *bits, int *group,
                      int *sym);
/* The GPTQ solver's --damp F (> 0) and --block N (> 0) */
int lmc_solver_cli_opt(const char *cmd, int argc, char **argv, int *i, double *percdamp,
                       int *blocksize);
/* --sparsity P, --nm N:M, --inner f16|f32 (parsed by compress/prune.c) */
int lmc_prune_cli_opt(const char *cmd, int argc, char **argv, int *i, lmc_prune_opts *o);

#endif
