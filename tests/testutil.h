/* Helpers shared by the Check tests. */
#ifndef LMC_TESTUTIL_H
#define LMC_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "../core/model.h"

/* Path of ../shared (or $LMC_SHARED), NULL when absent. */
const char *lmc_test_shared(void);
/* "<shared>/<rel>" in a static buffer, or NULL (and prints "SKIP: ...") when
 * ../shared is absent: a test calls this first and returns when NULL. */
const char *lmc_test_shared_path(const char *rel);
/* Repository data directory (data/). */
const char *lmc_test_data(const char *rel);
/* A fresh temporary directory for this process (removed at exit). */
const char *lmc_test_tmpdir(void);
/* The file's text tokenized by the model's own tokenizer, default special
 * tokens (asserts on failure; caller frees). */
int32_t *lmc_test_tokenize(const lmc_model *m, const char *text_path, int64_t *n);
/* Run a suite; returns process exit status. */
int lmc_test_run(Suite *s);

#endif
