/* core/finite.c (lmc_model_check_finite) and lmc_mmap_release. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "../core/half.h"
#include "../core/model.h"
#include "testutil.h"

/* A model holding one tensor of n values v[i] in encoding id, stored at a
 * byte offset `skew` into its buffer (unaligned when skew is odd). */
static lmc_model *one_tensor(lmc_enc_id id, int ndim, int64_t rows, int64_t cols,
                             const float *v, size_t skew)
{
    lmc_model *m = calloc(1, sizeof *m);
    m->source_path = strdup("test.lmc");
    lmc_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "blk.0.q.weight");
    t.ndim = ndim;
    t.shape[0] = rows;
    t.shape[1] = ndim == 2 ? cols : 1;
    t.enc = lmc_enc_dense(id);
    size_t n = (size_t)(rows * t.shape[1]), esz = id == LMC_ENC_F32 ? 4 : 2;
    uint8_t *buf = calloc(1, n * esz + skew);
    for (size_t i = 0; i < n; i++) {
        uint16_t h = id == LMC_ENC_F16 ? lmc_f32_to_f16(v[i]) : lmc_f32_to_bf16(v[i]);
        memcpy(buf + skew + i * esz, id == LMC_ENC_F32 ? (const void *)&v[i] : (void *)&h, esz);
    }
    t.owned = buf;
    t.data = buf + skew;
    t.nbytes = n * esz;
    lmc_error err;
    ck_assert_int_eq(lmc_model_set_tensor(m, &t, &err), 0);
    return m;
}

/* check_finite's message for v, or "" when it passes. */
static const char *check(lmc_enc_id id, int ndim, int64_t rows, int64_t cols, const float *v,
                         size_t skew)
{
    static lmc_error err;
    lmc_model *m = one_tensor(id, ndim, rows, cols, v, skew);
    err.msg[0] = 0;
    int rc = lmc_model_check_finite(m, &err);
    ck_assert_int_eq(rc, err.msg[0] ? -1 : 0);
    lmc_model_free(m);
    return err.msg;
}

START_TEST(first_bad_element_named)
{
    float v[15];
    for (int i = 0; i < 15; i++)
        v[i] = (float)i - 7.5f;
    v[14] = NAN; /* [2, 4] */
    v[11] = INFINITY; /* [2, 1]: the first in row-major order */
    const lmc_enc_id ids[3] = {LMC_ENC_F16, LMC_ENC_BF16, LMC_ENC_F32};
    for (int k = 0; k < 3; k++)
        for (size_t skew = 0; skew < 3; skew++)
            ck_assert_str_eq(check(ids[k], 2, 3, 5, v, skew),
                             "test.lmc: tensor blk.0.q.weight: non-finite weight (+Inf) at [2, 1]");
    v[11] = 0;
    ck_assert_str_eq(check(LMC_ENC_BF16, 2, 3, 5, v, 1),
                     "test.lmc: tensor blk.0.q.weight: non-finite weight (NaN) at [2, 4]");
    v[3] = -INFINITY;
    ck_assert_str_eq(check(LMC_ENC_F32, 1, 15, 1, v, 0),
                     "test.lmc: tensor blk.0.q.weight: non-finite weight (-Inf) at [3]");
}
END_TEST

START_TEST(finite_extremes_pass)
{
    /* the largest finite values, subnormals, zeros of both signs */
    float f16[6] = {65504.0f, -65504.0f, 5.960464477539063e-08f, -0.0f, 0.0f, 1.0f};
    float bf16[6] = {3.3895314e38f, -3.3895314e38f, 9.2e-41f, -0.0f, 0.0f, 1.0f};
    float f32[6] = {3.4028235e38f, -3.4028235e38f, 1e-45f, -0.0f, 0.0f, 1.0f};
    ck_assert_str_eq(check(LMC_ENC_F16, 2, 2, 3, f16, 0), "");
    ck_assert_str_eq(check(LMC_ENC_BF16, 2, 2, 3, bf16, 0), "");
    ck_assert_str_eq(check(LMC_ENC_F32, 2, 2, 3, f32, 0), "");
}
END_TEST

START_TEST(chunk_boundaries)
{
    /* the scan works in chunks of 4096: a bad value on either side of one */
    enum { N = 3 * 4096 + 7 }; /* 2459 rows of 5 */
    float *v = calloc(N, sizeof *v);
    const int64_t at[4] = {4095, 4096, 8191, N - 1};
    for (int k = 0; k < 4; k++) {
        v[at[k]] = NAN;
        char want[200];
        snprintf(want, sizeof want,
                 "test.lmc: tensor blk.0.q.weight: non-finite weight (NaN) at [%lld, %lld]",
                 (long long)(at[k] / 5), (long long)(at[k] % 5));
        ck_assert_str_eq(check(LMC_ENC_F16, 2, N / 5, 5, v, 0), want);
        v[at[k]] = 0;
    }
    free(v);
}
END_TEST

START_TEST(mmap_release_keeps_data)
{
    char path[600];
    snprintf(path, sizeof path, "%s/release.bin", lmc_test_tmpdir());
    size_t n = 5 * 4096 + 123;
    unsigned char *d = malloc(n);
    for (size_t i = 0; i < n; i++)
        d[i] = (unsigned char)(i * 131 + 7);
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(d, 1, n, f), n);
    fclose(f);
    lmc_mmap m;
    lmc_error err;
    ck_assert_int_eq(lmc_mmap_open(path, &m, &err), 0);
    ck_assert_int_eq(memcmp(m.data, d, n), 0);
    /* an unaligned range inside, a range at the end, one outside (ignored) */
    lmc_mmap_release(&m, m.data + 100, 2 * 4096);
    lmc_mmap_release(&m, m.data + n - 10, 10);
    lmc_mmap_release(&m, d, n);
    ck_assert_int_eq(memcmp(m.data, d, n), 0);
    lmc_mmap_close(&m);
    free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("finite");
    TCase *tc = tcase_create("finite");
    tcase_add_test(tc, first_bad_element_named);
    tcase_add_test(tc, finite_extremes_pass);
    tcase_add_test(tc, chunk_boundaries);
    tcase_add_test(tc, mmap_release_keeps_data);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
