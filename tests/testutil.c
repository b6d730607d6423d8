#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/fileio.h"
#include "../formats/tokenizer.h"

const char *lmc_test_shared(void)
{
    static char buf[4096];
    const char *env = getenv("LMC_SHARED");
    const char *p = env && *env ? env : "../shared";
    if (!lmc_is_dir(p))
        return NULL;
    snprintf(buf, sizeof buf, "%s", p);
    return buf;
}

const char *lmc_test_shared_path(const char *rel)
{
    static char buf[8][4096];
    static int k;
    const char *s = lmc_test_shared();
    if (!s) {
        printf("SKIP: ../shared absent (%s)\n", rel);
        return NULL;
    }
    char *b = buf[k++ & 7];
    snprintf(b, 4096, "%s/%s", s, rel);
    return b;
}

const char *lmc_test_data(const char *rel)
{
    static char buf[8][4096];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 4096, "data/%s", rel);
    return b;
}

static char tmpdir[256];

static void cleanup(void)
{
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    }
}

const char *lmc_test_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/lmc-test-XXXXXX");
        if (!mkdtemp(tmpdir))
            return "/tmp";
        atexit(cleanup);
    }
    return tmpdir;
}

int lmc_test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? 0 : 1;
}

int32_t *lmc_test_tokenize(const lmc_model *m, const char *text_path, int64_t *n)
{
    lmc_error err;
    char *text;
    size_t len;
    ck_assert_msg(lmc_read_file(text_path, &text, &len, &err) == 0, "%s", err.msg);
    ck_assert_ptr_nonnull(m->tokenizer_json);
    lmc_tokenizer *tok;
    ck_assert_msg(lmc_tokenizer_from_json(m->tokenizer_json, m->tokenizer_json_len, "model", &tok,
                                          &err) == 0,
                  "%s", err.msg);
    int32_t *ids;
    size_t cnt;
    ck_assert_msg(lmc_tokenizer_encode(tok, text, len, 1, &ids, &cnt, &err) == 0, "%s", err.msg);
    lmc_tokenizer_free(tok);
    free(text);
    *n = (int64_t)cnt;
    return ids;
}
