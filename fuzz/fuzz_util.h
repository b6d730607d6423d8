/* Shared by the fuzz targets: the property every parser promises on bad
 * input (a message that names the source), checked on every rejection. */
#ifndef LMC_FUZZ_UTIL_H
#define LMC_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"

/* A rejection must say which file: abort (a crash the fuzzer records) when
 * the message is empty or does not name `source`. */
static inline void lmc_fuzz_check_error(const lmc_error *err, const char *source)
{
    if (!err->msg[0] || !strstr(err->msg, source)) {
        fprintf(stderr, "error message does not name %s: '%s'\n", source, err->msg);
        abort();
    }
}

/* A property the code promises was broken: report and abort. */
#define LMC_FUZZ_ASSERT(cond, ...)                                                             \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz property failed: %s: ", #cond);                              \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#endif
