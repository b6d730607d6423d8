#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "../core/clock.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lmc_quiet;

int lmc_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lmc %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'lmc %s --help')\n", cmd);
    va_end(ap);
    return LMC_EXIT_USAGE;
}

int lmc_report(const lmc_error *err)
{
    fprintf(stderr, "lmc: error: %s\n", err->msg[0] ? err->msg : "unknown error");
    return LMC_EXIT_FAIL;
}

int lmc_parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int lmc_parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int lmc_is_opt(const char *arg, const char *opt)
{
    size_t n = strlen(opt);
    return strncmp(arg, opt, n) == 0 && (arg[n] == 0 || arg[n] == '=');
}

const char *lmc_opt_value(const char *cmd, int argc, char **argv, int *i)
{
    const char *eq = strchr(argv[*i], '=');
    if (eq && argv[*i][0] == '-' && argv[*i][1] == '-')
        return eq + 1;
    if (*i + 1 >= argc) {
        lmc_usage_error(cmd, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

void lmc_progress(const char *fmt, ...)
{
    if (lmc_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

void lmc_cli_log(void *ctx, lmc_log_level level, const char *msg)
{
    (void)ctx;
    switch (level) {
    case LMC_LOG_WARN: fprintf(stderr, "lmc: warning: %s\n", msg); break;
    case LMC_LOG_PROGRESS: lmc_progress("%s\n", msg); break;
    default: fprintf(stderr, "%s\n", msg); break;
    }
}
