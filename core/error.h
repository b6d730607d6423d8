/* Error reporting: every fallible function takes an lmc_error * and returns
 * 0 on success or -1 on failure with a one-line message naming the file and
 * the problem. The CLI prints err.msg on stderr and exits 1. */
#ifndef LMC_ERROR_H
#define LMC_ERROR_H

typedef struct lmc_error {
    char msg[1024];
} lmc_error;

/* printf-style; writes into err (which may be NULL) and returns -1. */
int lmc_fail(lmc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix an existing message ("PREFIX: old message"), returns -1. */
int lmc_fail_prefix(lmc_error *err, const char *prefix);

#endif
