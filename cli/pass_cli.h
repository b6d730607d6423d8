/* The flow every compression subcommand shares: options common to all passes,
 * loading the model, calibration windows, running the driver, writing the
 * container with provenance, and the summary on stdout. */
#ifndef LMC_PASS_CLI_H
#define LMC_PASS_CLI_H

#include <cjson/cJSON.h>

#include "../calib/pass.h"
#include "../eval/backend.h"

typedef struct lmc_pass_cli {
    const char *cmd;
    const char *model_path;
    const char *out_path;
    const char *calib_path;
    long nsamples;  /* 128 */
    long seqlen;    /* 0: model's max positions capped at 2048 */
    long seed;      /* 0 */
    long threads;   /* 0: all cores */
    int json;
    lmc_device device;       /* --device: where the calibration forward and solvers run */
    lmc_precision precision; /* --precision (CUDA): the calibration forward's compute type */
    int prec_set;
    int resume;              /* --resume: continue an interrupted run of the same job */
    cJSON *args;    /* pass-specific arguments, recorded in the provenance */
} lmc_pass_cli;

void lmc_pass_cli_init(lmc_pass_cli *c, const char *cmd);
/* Consume a common option at argv[*i]: returns 1 if consumed, 0 if not ours,
 * -1 after a usage error was printed. A non-option argument is taken as the
 * MODEL path. */
int lmc_pass_cli_opt(lmc_pass_cli *c, int argc, char **argv, int *i);
/* Help text for the common options. */
extern const char lmc_pass_cli_common_help[];
/* A pass's own options: consume the one at argv[*i] (return 1, with *i on
 * its last word), decline it (0), or print a usage error (-1). */
typedef int (*lmc_pass_opt_fn)(void *ctx, const char *cmd, int argc, char **argv, int *i);
/* The option loop of every pass command: -h/--help prints help and the
 * common options' help; each argument goes to own (may be NULL), then to
 * the common options; anything else is an unknown option. Returns -1 to go
 * on, else the exit code to return (LMC_EXIT_OK after the help,
 * LMC_EXIT_USAGE after a usage error), c->args freed. */
int lmc_pass_cli_parse(lmc_pass_cli *c, int argc, char **argv, const char *help,
                       lmc_pass_opt_fn own, void *ctx);
/* Load, calibrate (when the pass needs it), run, write. Returns an exit code.
 * Frees c->args. */
int lmc_pass_cli_run(lmc_pass_cli *c, const lmc_pass *p);

#endif
