/* Shared by the subcommands: exit codes, option parsing helpers, printing. */
#ifndef LMC_CLI_H
#define LMC_CLI_H

#include <stdint.h>

#include "../core/clock.h" /* lmc_now */
#include "../core/error.h"

#define LMC_EXIT_OK 0
#define LMC_EXIT_FAIL 1
#define LMC_EXIT_USAGE 2

#define LMC_VERSION "0.1.0"

/* Each subcommand: argv[0] is the subcommand name. Returns an exit code. */
typedef int (*lmc_cmd_fn)(int argc, char **argv);

/* Print "lmc CMD: message" on stderr and return LMC_EXIT_USAGE. */
int lmc_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "lmc: message" (err->msg) on stderr and return LMC_EXIT_FAIL. */
int lmc_report(const lmc_error *err);

/* Strict number parsing: the whole string must be a number in range.
 * Return 0 on success, -1 otherwise. */
int lmc_parse_int(const char *s, long lo, long hi, long *out);
int lmc_parse_double(const char *s, double lo, double hi, double *out);

/* Option value: for "--opt VALUE" at argv[*i], returns VALUE and advances *i;
 * for "--opt=VALUE" returns VALUE. NULL (after printing a usage error) when
 * missing. */
const char *lmc_opt_value(const char *cmd, int argc, char **argv, int *i);
/* Does argv[i] name option OPT (as "--opt" or "--opt=...")? */
int lmc_is_opt(const char *arg, const char *opt);

/* Quiet mode for progress lines on stderr (-q). */
extern int lmc_quiet;
void lmc_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The library's log callback (core/log.h): warnings as "lmc: warning: ...",
 * progress through lmc_progress (silenced by -q), the rest as they are. */
#include "../core/log.h"
void lmc_cli_log(void *ctx, lmc_log_level level, const char *msg);


#endif
