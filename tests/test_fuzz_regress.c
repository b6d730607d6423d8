/* Replays every input the fuzz targets ever failed on
 * (tests/fixtures/fuzz/TARGET/...) through the fuzz targets' own code (the
 * fuzz/fuzz_*.c sources are included here, each under its own name), so the
 * parsers' fixes stay fixed, under ASan/UBSan too (make asan-check). A
 * regression aborts the binary with the property or the sanitizer report;
 * the name of the input being replayed is printed first. */
#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "testutil.h"

#define LLVMFuzzerTestOneInput fuzz_safetensors_one
#include "../fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#undef SRC
#define LLVMFuzzerTestOneInput fuzz_config_one
#include "../fuzz/fuzz_config.c"
#undef LLVMFuzzerTestOneInput
#undef SRC
#define LLVMFuzzerTestOneInput fuzz_tokenizer_one
#include "../fuzz/fuzz_tokenizer.c"
#undef LLVMFuzzerTestOneInput
#undef SRC
#define LLVMFuzzerTestOneInput fuzz_container_one
#include "../fuzz/fuzz_container.c"
#undef LLVMFuzzerTestOneInput
#undef SRC

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file of tests/fixtures/fuzz/TARGET through fn; returns the count
 * (0 when the target never failed: no directory). */
static int replay(const char *target, int (*fn)(const uint8_t *, size_t))
{
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/fuzz/%s", target);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        char *path = lmc_path_join(dir, names[i]), *buf;
        size_t len;
        lmc_error err;
        ck_assert_msg(lmc_read_file(path, &buf, &len, &err) == 0, "%s", err.msg);
        fprintf(stderr, "replaying %s\n", path);
        fn((const uint8_t *)buf, len);
        free(buf);
        free(path);
        free(names[i]);
    }
    return n;
}

START_TEST(replay_all)
{
    ck_assert_msg(lmc_is_dir("tests/fixtures/fuzz"), "tests/fixtures/fuzz: not found (run from "
                                                    "the repository root)");
    int n = replay("fuzz_safetensors", fuzz_safetensors_one) +
            replay("fuzz_config", fuzz_config_one) + replay("fuzz_tokenizer", fuzz_tokenizer_one) +
            replay("fuzz_container", fuzz_container_one);
    ck_assert_int_gt(n, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz_regress");
    TCase *tc = tcase_create("replay");
    tcase_add_test(tc, replay_all);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
