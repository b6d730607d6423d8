/* Helpers shared by the Check tests. */
#ifndef LMC_TESTUTIL_H
#define LMC_TESTUTIL_H

#include <check.h>

/* Path of ../shared (or $LMC_SHARED), NULL when absent. */
const char *lmc_test_shared(void);
/* "<shared>/<rel>" in a static buffer, or NULL (and prints "SKIP: ...") when
 * ../shared is absent: a test calls this first and returns when NULL. */
const char *lmc_test_shared_path(const char *rel);
/* Repository data directory (data/). */
const char *lmc_test_data(const char *rel);
/* A fresh temporary directory for this process (removed at exit). */
const char *lmc_test_tmpdir(void);
/* Run a suite; returns process exit status. */
int lmc_test_run(Suite *s);

#endif
