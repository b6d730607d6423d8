/* core/: half-precision conversion, atomic output, encoding table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/encoding.h"
#include "../core/fileio.h"
#include "../core/half.h"
#include "testutil.h"

START_TEST(f16_roundtrip_all)
{
    /* every finite f16 survives f16 -> f32 -> f16 */
    for (unsigned h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue;
        float f = lmc_f16_to_f32((uint16_t)h);
        ck_assert_uint_eq(lmc_f32_to_f16(f), h);
    }
}
END_TEST

START_TEST(f16_rounding)
{
    ck_assert_uint_eq(lmc_f32_to_f16(1.0f), 0x3c00);
    /* 1 + 2^-11 is a tie between 1 and 1+2^-10: rounds to even (1.0) */
    ck_assert_uint_eq(lmc_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);
    ck_assert_uint_eq(lmc_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    ck_assert_uint_eq(lmc_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(lmc_f32_to_f16(65520.0f), 0x7c00);
    ck_assert_uint_eq(lmc_f32_to_f16(-2.0f), 0xc000);
    ck_assert_uint_eq(lmc_f32_to_f16(5.960464477539063e-08f), 0x0001); /* smallest subnormal */
    ck_assert_uint_eq(lmc_f32_to_f16(2.98e-08f), 0x0000);
    ck_assert(isnan(lmc_f16_to_f32(lmc_f32_to_f16(NAN))));
}
END_TEST

START_TEST(bf16_rounding)
{
    ck_assert_uint_eq(lmc_f32_to_bf16(1.0f), 0x3f80);
    ck_assert(lmc_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is a tie: rounds to even */
    ck_assert_uint_eq(lmc_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
    ck_assert_uint_eq(lmc_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
}
END_TEST

START_TEST(atomic_commit_and_abort)
{
    char path[512];
    snprintf(path, sizeof path, "%s/out.bin", lmc_test_tmpdir());
    lmc_error err;
    lmc_atomic_file af;
    ck_assert_int_eq(lmc_atomic_open(&af, path, &err), 0);
    ck_assert_int_eq(lmc_atomic_write(&af, "hello", 5, &err), 0);
    ck_assert(!lmc_file_exists(path)); /* nothing visible before commit */
    ck_assert_int_eq(lmc_atomic_commit(&af, &err), 0);
    ck_assert(lmc_file_exists(path));
    char *data;
    size_t n;
    ck_assert_int_eq(lmc_read_file(path, &data, &n, &err), 0);
    ck_assert_uint_eq(n, 5);
    free(data);

    char p2[512];
    snprintf(p2, sizeof p2, "%s/aborted.bin", lmc_test_tmpdir());
    ck_assert_int_eq(lmc_atomic_open(&af, p2, &err), 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s", af.tmp_path);
    ck_assert(lmc_file_exists(tmp));
    lmc_atomic_abort(&af);
    ck_assert(!lmc_file_exists(tmp));
    ck_assert(!lmc_file_exists(p2));
}
END_TEST

START_TEST(atomic_open_bad_dir)
{
    lmc_error err;
    lmc_atomic_file af;
    ck_assert_int_eq(lmc_atomic_open(&af, "/nonexistent-dir/x.lmc", &err), -1);
    ck_assert(strstr(err.msg, "/nonexistent-dir/x.lmc") != NULL);
}
END_TEST

START_TEST(encoding_table_dense)
{
    const lmc_enc_traits *t = lmc_enc_get(LMC_ENC_F16);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "f16");
    lmc_encoding e = lmc_enc_dense(LMC_ENC_BF16);
    ck_assert_uint_eq(lmc_enc_get(LMC_ENC_BF16)->nbytes(&e, 3, 5), 30);
    ck_assert_ptr_eq(lmc_enc_by_name("f32"), lmc_enc_get(LMC_ENC_F32));
    ck_assert_ptr_null(lmc_enc_get((lmc_enc_id)99));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, f16_roundtrip_all);
    tcase_add_test(tc, f16_rounding);
    tcase_add_test(tc, bf16_rounding);
    tcase_add_test(tc, atomic_commit_and_abort);
    tcase_add_test(tc, atomic_open_bad_dir);
    tcase_add_test(tc, encoding_table_dense);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
