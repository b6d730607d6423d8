#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static lmc_log_fn log_fn;
static void *log_ctx;

void lmc_log_set(lmc_log_fn fn, void *ctx)
{
    log_fn = fn;
    log_ctx = ctx;
}

void lmc_log(lmc_log_level level, const char *fmt, ...)
{
    if (!log_fn)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_fn(log_ctx, level, msg);
}
