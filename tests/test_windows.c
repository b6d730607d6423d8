/* calib/windows.c: calibration crops drawn exactly as the references draw
 * them. Expected starts were produced by CPython's own generator:
 *   python3 -c "import random; random.seed(0);
 *               print([random.randint(0, 266233-1024-1) for _ in range(5)])"
 * (and likewise for the other seeds below). */
#include <stdlib.h>
#include <string.h>

#include "../calib/windows.h"
#include "testutil.h"

static void check_starts(uint64_t seed, int64_t ntok, int seqlen, const int64_t *want, int n)
{
    int32_t *ids = malloc((size_t)ntok * sizeof *ids);
    for (int64_t i = 0; i < ntok; i++)
        ids[i] = (int32_t)i; /* a window's first id is its start */
    lmc_windows w;
    lmc_error err;
    ck_assert_int_eq(lmc_windows_sample(ids, ntok, n, seqlen, seed, &w, "test", &err), 0);
    for (int k = 0; k < n; k++) {
        ck_assert_int_eq(w.ids[(size_t)k * seqlen], want[k]);
        ck_assert_int_eq(w.ids[(size_t)k * seqlen + seqlen - 1], want[k] + seqlen - 1);
    }
    lmc_windows_free(&w);
    free(ids);
}

START_TEST(python_random_seed0)
{
    /* llama-s calib.txt has 266233 tokens; windows of 1024 */
    const int64_t want[] = {201979, 220500, 21225, 135746, 254766};
    check_starts(0, 266233, 1024, want, 5);
}
END_TEST

START_TEST(python_random_other_seeds)
{
    const int64_t want7[] = {331, 970, 154, 404, 666}; /* randint(0, 1000) */
    check_starts(7, 1001 + 4, 4, want7, 5);
    const int64_t wantbig[] = {66110, 67753, 35206}; /* seed 2**40+5, randint(0, 100000) */
    check_starts((1ull << 40) + 5, 100001 + 2, 2, wantbig, 3);
}
END_TEST

START_TEST(too_short_text)
{
    int32_t ids[10] = {0};
    lmc_windows w;
    lmc_error err;
    ck_assert_int_eq(lmc_windows_sample(ids, 10, 4, 10, 0, &w, "short.txt", &err), -1);
    ck_assert(strstr(err.msg, "short.txt") != NULL);
    ck_assert(strstr(err.msg, "fewer than one calibration window") != NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("windows");
    TCase *tc = tcase_create("windows");
    tcase_add_test(tc, python_random_seed0);
    tcase_add_test(tc, python_random_other_seeds);
    tcase_add_test(tc, too_short_text);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
