#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int lmc_fail(lmc_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int lmc_fail_prefix(lmc_error *err, const char *prefix)
{
    if (err) {
        size_t cap = sizeof err->msg, pl = strlen(prefix) + 2;
        size_t ol = strnlen(err->msg, cap - 1);
        if (pl >= cap)
            pl = cap - 1;
        if (ol > cap - 1 - pl)
            ol = cap - 1 - pl;
        memmove(err->msg + pl, err->msg, ol);
        err->msg[pl + ol] = 0;
        memcpy(err->msg, prefix, pl - 2);
        err->msg[pl - 2] = ':';
        err->msg[pl - 1] = ' ';
    }
    return -1;
}
