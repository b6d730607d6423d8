/* compress/prune.c, magnitude.c, wanda.c: exact counts, N:M patterns, tie
 * handling, Wanda vs magnitude on a hand-made example, option errors, and
 * the passes run on a small in-memory model (no driver, no forward). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/arch.h"
#include "../compress/prune_passes.h"
#include "../core/half.h"
#include "../core/sparse.h"
#include "testutil.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
/* Coarse values so that ties are frequent. */
static float rnd_coarse(void) { return (float)((int)(rnd() % 41) - 20) / 8.0f; }

/* ---- reference: sort (score, index), prune the first k ---- */
static const float *ref_s;
static int cmp_idx(const void *a, const void *b)
{
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (ref_s[i] != ref_s[j])
        return ref_s[i] < ref_s[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}
static void ref_lowest(const float *s, int64_t n, int64_t k, uint8_t *keep)
{
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    ref_s = s;
    qsort(idx, (size_t)n, sizeof *idx, cmp_idx);
    for (int64_t i = 0; i < n; i++)
        keep[idx[i]] = i >= k;
    free(idx);
}

START_TEST(lowest_matches_sort)
{
    const int64_t ns[] = {1, 2, 7, 100, 1001, 4096};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (int trial = 0; trial < 4; trial++) {
            int64_t n = ns[a];
            float *s = malloc((size_t)n * sizeof *s);
            for (int64_t i = 0; i < n; i++) {
                s[i] = trial == 3 ? fabsf(rnd_coarse()) : rnd_coarse();
                if (trial == 2 && i % 5 == 0)
                    s[i] = -0.0f; /* -0 and +0 are one value */
            }
            uint8_t *k1 = malloc((size_t)n), *k2 = malloc((size_t)n);
            const int64_t ks[] = {0, 1, n / 3, n / 2, n - 1, n};
            for (int q = 0; q < 6; q++) {
                lmc_prune_lowest(s, n, ks[q], k1);
                for (int64_t i = 0; i < n; i++)
                    if (s[i] == 0.0f)
                        s[i] = 0.0f;
                ref_lowest(s, n, ks[q], k2);
                ck_assert_mem_eq(k1, k2, (size_t)n);
            }
            free(s);
            free(k1);
            free(k2);
        }
}
END_TEST

START_TEST(ties_by_index)
{
    float s[10];
    uint8_t keep[10];
    for (int i = 0; i < 10; i++)
        s[i] = 1.0f;
    lmc_prune_lowest(s, 10, 4, keep);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(keep[i], i >= 4);
    /* per matrix: the lowest flat indices go first */
    lmc_prune_mask_matrix(s, 2, 5, 0.5, keep);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(keep[i], i >= 5);
    /* per row */
    lmc_prune_mask_rows(s, 2, 5, 0.5, keep); /* int(5*0.5) = 2 per row */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(keep[i], i % 5 >= 2);
    /* N:M: within each group, the first m-n positions go */
    lmc_prune_mask_nm(s, 1, 8, 2, 4, keep);
    const uint8_t want[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    ck_assert_mem_eq(keep, want, 8);
    /* a tie straddling the threshold: 0.5 0.5 | 0.1 0.5 -> prune 0.1 and the first 0.5 */
    float t[4] = {0.5f, 0.5f, 0.1f, 0.5f};
    lmc_prune_lowest(t, 4, 2, keep);
    const uint8_t want2[4] = {0, 1, 0, 1};
    ck_assert_mem_eq(keep, want2, 4);
    /* same call twice, same answer */
    uint8_t again[4];
    lmc_prune_lowest(t, 4, 2, again);
    ck_assert_mem_eq(keep, again, 4);
}
END_TEST

static float *rand_w(int64_t rows, int64_t cols)
{
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++)
        w[i] = rnd_coarse();
    return w;
}

START_TEST(magnitude_matrix_exact)
{
    const double ps[] = {0.1, 0.29, 0.5, 0.77, 0.999};
    int64_t rows = 37, cols = 53, total = rows * cols;
    float *w = rand_w(rows, cols);
    uint8_t *keep = malloc((size_t)total);
    for (int q = 0; q < 5; q++) {
        lmc_prune_opts o;
        lmc_prune_opts_default(&o);
        o.sparsity = ps[q];
        lmc_error err;
        ck_assert_int_eq(lmc_magnitude_mask(w, rows, cols, &o, keep, &err), 0);
        int64_t pruned = 0;
        float max_pruned = -1, min_kept = 1e30f;
        for (int64_t i = 0; i < total; i++) {
            if (!keep[i]) {
                pruned++;
                max_pruned = fmaxf(max_pruned, fabsf(w[i]));
            } else {
                min_kept = fminf(min_kept, fabsf(w[i]));
            }
        }
        ck_assert_int_eq(pruned, (int64_t)((double)total * ps[q]));
        ck_assert(max_pruned <= min_kept); /* one threshold for the matrix */
        /* some rows lose more than others: it is not per row */
        if (ps[q] == 0.5) {
            int64_t lo = cols, hi = 0;
            for (int64_t r = 0; r < rows; r++) {
                int64_t c = 0;
                for (int64_t j = 0; j < cols; j++)
                    c += !keep[r * cols + j];
                lo = c < lo ? c : lo;
                hi = c > hi ? c : hi;
            }
            ck_assert(hi > lo);
        }
    }
    free(w);
    free(keep);
}
END_TEST

static void check_nm(const float *score, const uint8_t *keep, int64_t rows, int64_t cols, int n,
                     int m)
{
    for (int64_t g = 0; g < rows * cols; g += m) {
        int kept = 0;
        float min_kept = 1e30f, max_pruned = -1e30f;
        for (int j = 0; j < m; j++) {
            if (keep[g + j]) {
                kept++;
                min_kept = fminf(min_kept, score[g + j]);
            } else {
                max_pruned = fmaxf(max_pruned, score[g + j]);
            }
        }
        ck_assert_int_eq(kept, n);
        ck_assert(max_pruned <= min_kept);
    }
}

START_TEST(magnitude_nm_pattern)
{
    const int nms[][2] = {{2, 4}, {4, 8}, {1, 4}};
    int64_t rows = 19, cols = 64;
    float *w = rand_w(rows, cols), *a = malloc((size_t)(rows * cols) * sizeof *a);
    for (int64_t i = 0; i < rows * cols; i++)
        a[i] = fabsf(w[i]);
    uint8_t *keep = malloc((size_t)(rows * cols));
    for (int q = 0; q < 3; q++) {
        lmc_prune_opts o;
        lmc_prune_opts_default(&o);
        o.n = nms[q][0];
        o.m = nms[q][1];
        lmc_error err;
        ck_assert_int_eq(lmc_magnitude_mask(w, rows, cols, &o, keep, &err), 0);
        check_nm(a, keep, rows, cols, o.n, o.m);
    }
    free(w);
    free(a);
    free(keep);
}
END_TEST

START_TEST(wanda_rows_exact)
{
    int64_t rows = 23, cols = 40;
    float *w = rand_w(rows, cols), *score = malloc((size_t)(rows * cols) * sizeof *score);
    double sq[40];
    for (int j = 0; j < cols; j++)
        sq[j] = (double)(rnd() % 1000) * 0.37;
    int64_t ntok = 11;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            score[r * cols + j] = fabsf(w[r * cols + j]) * (float)sqrt(sq[j] / (double)ntok);
    uint8_t *keep = malloc((size_t)(rows * cols)), *ref = malloc((size_t)cols);
    const double ps[] = {0.3, 0.5, 0.6};
    for (int q = 0; q < 3; q++) {
        lmc_prune_opts o;
        lmc_prune_opts_default(&o);
        o.sparsity = ps[q];
        lmc_error err;
        ck_assert_int_eq(lmc_wanda_mask(w, rows, cols, sq, ntok, &o, keep, &err), 0);
        for (int64_t r = 0; r < rows; r++) {
            int64_t pruned = 0;
            for (int64_t j = 0; j < cols; j++)
                pruned += !keep[r * cols + j];
            ck_assert_int_eq(pruned, (int64_t)((double)cols * ps[q]));
            ref_lowest(score + r * cols, cols, (int64_t)((double)cols * ps[q]), ref);
            ck_assert_mem_eq(keep + r * cols, ref, (size_t)cols);
        }
    }
    lmc_prune_opts o;
    lmc_prune_opts_default(&o);
    o.n = 2;
    o.m = 4;
    lmc_error err;
    ck_assert_int_eq(lmc_wanda_mask(w, rows, cols, sq, ntok, &o, keep, &err), 0);
    check_nm(score, keep, rows, cols, 2, 4);
    ck_assert_int_eq(lmc_wanda_mask(w, rows, cols, sq, 0, &o, keep, &err), -1);
    ck_assert(strstr(err.msg, "calibration tokens") != NULL);
    free(w);
    free(score);
    free(keep);
    free(ref);
}
END_TEST

START_TEST(wanda_vs_magnitude)
{
    /* Row [1 2 3 4]: magnitude at 50% prunes 1 and 2. Inputs 0 and 1 carry
     * large activations (norm 10), inputs 2 and 3 small (0.1): the scores
     * are 10 20 0.3 0.4, so Wanda prunes 3 and 4 instead. */
    float w[8] = {1, 2, 3, 4, -4, 3, -2, 1};
    double sq[4] = {100 * 5, 100 * 5, 0.01 * 5, 0.01 * 5}; /* 5 tokens */
    uint8_t km[8], kw[8];
    lmc_prune_opts o;
    lmc_prune_opts_default(&o);
    o.sparsity = 0.5;
    lmc_error err;
    ck_assert_int_eq(lmc_magnitude_mask(w, 1, 4, &o, km, &err), 0);
    ck_assert_int_eq(lmc_wanda_mask(w, 1, 4, sq, 5, &o, kw, &err), 0);
    const uint8_t want_m[4] = {0, 0, 1, 1}, want_w[4] = {1, 1, 0, 0};
    ck_assert_mem_eq(km, want_m, 4);
    ck_assert_mem_eq(kw, want_w, 4);
    /* second row: per matrix magnitude takes 4 of the 8 overall (1 1 2 2 ... ties by index),
     * Wanda takes 2 per row */
    ck_assert_int_eq(lmc_magnitude_mask(w, 2, 4, &o, km, &err), 0);
    const uint8_t want_m2[8] = {0, 0, 1, 1, 1, 1, 0, 0};
    ck_assert_mem_eq(km, want_m2, 8);
    ck_assert_int_eq(lmc_wanda_mask(w, 2, 4, sq, 5, &o, kw, &err), 0);
    const uint8_t want_w2[8] = {1, 1, 0, 0, 1, 1, 0, 0};
    ck_assert_mem_eq(kw, want_w2, 8);
}
END_TEST

static void expect_fail(int rc, const lmc_error *err, const char *needle)
{
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err->msg, needle) != NULL, "'%s' lacks '%s'", err->msg, needle);
}

START_TEST(bad_options)
{
    lmc_error err;
    double p;
    int n, m;
    lmc_enc_id inner;
    const char *bad_p[] = {"0", "1", "1.5", "-0.2", "abc", "", "0.5x", "nan"};
    for (size_t i = 0; i < sizeof bad_p / sizeof bad_p[0]; i++)
        expect_fail(lmc_prune_parse_sparsity(bad_p[i], &p, &err), &err, "--sparsity");
    ck_assert_int_eq(lmc_prune_parse_sparsity("0.5", &p, &err), 0);
    ck_assert(p == 0.5);
    expect_fail(lmc_prune_parse_nm("4:4", &n, &m, &err), &err, "--nm '4:4': N must");
    expect_fail(lmc_prune_parse_nm("5:4", &n, &m, &err), &err, "--nm");
    expect_fail(lmc_prune_parse_nm("0:4", &n, &m, &err), &err, "--nm");
    expect_fail(lmc_prune_parse_nm("2-4", &n, &m, &err), &err, "expected N:M");
    expect_fail(lmc_prune_parse_nm("2:", &n, &m, &err), &err, "expected N:M");
    expect_fail(lmc_prune_parse_nm("2:4x", &n, &m, &err), &err, "expected N:M");
    expect_fail(lmc_prune_parse_nm("1:1000", &n, &m, &err), &err, "M must be in");
    ck_assert_int_eq(lmc_prune_parse_nm("2:4", &n, &m, &err), 0);
    ck_assert(n == 2 && m == 4);
    expect_fail(lmc_prune_parse_inner("qgroup", &inner, &err), &err, "--inner");
    ck_assert_int_eq(lmc_prune_parse_inner("f32", &inner, &err), 0);
    ck_assert_int_eq(inner, LMC_ENC_F32);

    lmc_prune_opts o;
    lmc_prune_opts_default(&o);
    expect_fail(lmc_prune_opts_check(&o, &err), &err, "give --sparsity P");
    o.sparsity = 1.0;
    expect_fail(lmc_prune_opts_check(&o, &err), &err, "--sparsity 1: must be in (0, 1)");
    o.sparsity = -0.1;
    expect_fail(lmc_prune_opts_check(&o, &err), &err, "--sparsity");
    o.sparsity = NAN;
    expect_fail(lmc_prune_opts_check(&o, &err), &err, "--sparsity");
    o.sparsity = 0.5;
    ck_assert_int_eq(lmc_prune_opts_check(&o, &err), 0);
    o.n = 2;
    o.m = 4;
    expect_fail(lmc_prune_opts_check(&o, &err), &err, "not both");
    o.sparsity = 0;
    ck_assert_int_eq(lmc_prune_opts_check(&o, &err), 0);
    o.n = 4;
    expect_fail(lmc_prune_opts_check(&o, &err), &err, "--nm 4:4: N must");
    o.n = 2;
    expect_fail(lmc_prune_check_width(&o, "blk.0.down.weight", 690, &err), &err,
                "--nm 2:4: M = 4 does not divide the input width 690 of blk.0.down.weight");
    ck_assert_int_eq(lmc_prune_check_width(&o, "blk.0.down.weight", 688, &err), 0);
    o.inner = LMC_ENC_QGROUP;
    expect_fail(lmc_prune_opts_check(&o, &err), &err, "--inner: inner encoding qgroup not supported yet");
    o.inner = LMC_ENC_F16;
    /* the mask functions check too */
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint8_t keep[6];
    expect_fail(lmc_magnitude_mask(w, 1, 6, &o, keep, &err), &err, "does not divide");
    lmc_pass pass;
    o.n = 5;
    expect_fail(lmc_magnitude_pass(&pass, &o, &err), &err, "--nm 5:4");
    expect_fail(lmc_wanda_pass(&pass, &o, &err), &err, "--nm 5:4");

    cJSON *args = cJSON_CreateObject();
    o.n = 2;
    lmc_prune_opts_to_json(&o, args);
    char *txt = cJSON_PrintUnformatted(args);
    ck_assert_str_eq(txt, "{\"nm\":\"2:4\",\"inner\":\"f16\"}");
    free(txt);
    cJSON_Delete(args);
}
END_TEST

/* ---- passes on a tiny in-memory LLaMA block ---- */

static void add_f16(lmc_model *m, const char *name, int64_t rows, int64_t cols)
{
    lmc_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.enc = lmc_enc_dense(LMC_ENC_F16);
    uint16_t *d = malloc((size_t)(rows * cols) * 2);
    for (int64_t i = 0; i < rows * cols; i++)
        d[i] = lmc_f32_to_f16(rnd_coarse() + (float)(rnd() % 64) / 512.0f);
    t.data = (const uint8_t *)d;
    t.nbytes = (size_t)(rows * cols) * 2;
    t.owned = d;
    lmc_error err;
    ck_assert_int_eq(lmc_model_set_tensor(m, &t, &err), 0);
}

static lmc_model *tiny_model(int ffn)
{
    lmc_model *m = calloc(1, sizeof *m);
    m->cfg.arch = LMC_ARCH_LLAMA;
    lmc_arch_caps(&m->cfg, NULL);
    m->cfg.hidden = 16;
    m->cfg.n_layers = 2;
    m->cfg.n_heads = 2;
    m->cfg.n_kv_heads = 1;
    m->cfg.head_dim = 8;
    m->cfg.ffn = ffn;
    m->cfg.vocab = 10;
    add_f16(m, "embed.weight", 10, 16);
    for (int l = 0; l < 2; l++) {
        char b[64];
        const char *roles[] = {"q", "k", "v", "o", "gate", "up", "down"};
        const int64_t shp[][2] = {{16, 16}, {8, 16}, {8, 16}, {16, 16},
                                  {ffn, 16}, {ffn, 16}, {16, ffn}};
        for (int i = 0; i < 7; i++) {
            snprintf(b, sizeof b, "blk.%d.%s.weight", l, roles[i]);
            add_f16(m, b, shp[i][0], shp[i][1]);
        }
    }
    return m;
}

static float *decode_t(const lmc_tensor *t)
{
    size_t n = (size_t)(t->shape[0] * t->shape[1]);
    float *o = malloc(n * sizeof *o);
    lmc_error err;
    ck_assert_msg(lmc_enc_get(t->enc.id)->to_f32(&t->enc, t->data, t->shape[0], t->shape[1], o,
                                                 &err) == 0, "%s", err.msg);
    return o;
}

/* Run a pass over both blocks as the driver would (without the forward). */
static int run_pass(const lmc_pass *p, lmc_model *m, lmc_block_stats *st, cJSON *report,
                    lmc_error *err)
{
    if (p->begin && p->begin(p, m, err))
        return -1;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        lmc_pass_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.model = m;
        ctx.layer = l;
        ctx.stats = st;
        ctx.report = report;
        if (p->compress_block(p, &ctx, err))
            return -1;
    }
    return 0;
}

START_TEST(magnitude_pass_model)
{
    const int modes[][2] = {{0, 0}, {2, 4}};
    for (int q = 0; q < 2; q++) {
        lmc_model *m = tiny_model(24);
        /* keep decoded originals */
        float *before[16];
        for (int i = 0; i < m->n_tensors; i++)
            before[i] = decode_t(&m->tensors[i]);
        lmc_prune_opts o;
        lmc_prune_opts_default(&o);
        if (modes[q][1]) {
            o.n = modes[q][0];
            o.m = modes[q][1];
        } else {
            o.sparsity = 0.5;
        }
        lmc_pass p;
        lmc_error err;
        ck_assert_int_eq(lmc_magnitude_pass(&p, &o, &err), 0);
        ck_assert_str_eq(p.name, "magnitude");
        ck_assert_uint_eq(p.stats, 0);
        cJSON *report = cJSON_CreateArray();
        ck_assert_msg(run_pass(&p, m, NULL, report, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(cJSON_GetArraySize(report), 14);
        ck_assert_int_eq(m->n_tensors, 15);
        for (int i = 0; i < m->n_tensors; i++) {
            lmc_tensor *t = &m->tensors[i];
            int64_t rows = t->shape[0], cols = t->shape[1], total = rows * cols;
            float *after = decode_t(t);
            if (!strcmp(t->name, "embed.weight")) {
                ck_assert_int_eq(t->enc.id, LMC_ENC_F16); /* embeddings stay dense */
                ck_assert_mem_eq(after, before[i], (size_t)total * 4);
                free(after);
                continue;
            }
            ck_assert_int_eq(t->enc.id, modes[q][1] ? LMC_ENC_NM : LMC_ENC_SPARSE);
            ck_assert_uint_eq(t->nbytes, lmc_enc_get(t->enc.id)->nbytes(&t->enc, rows, cols));
            ck_assert(t->nbytes <= (size_t)(0.6 * 2 * (double)total));
            uint8_t *keep = malloc((size_t)total), *want = malloc((size_t)total);
            ck_assert_int_eq(lmc_sparse_mask(&t->enc, t->data, rows, cols, keep, &err), 0);
            ck_assert_int_eq(lmc_magnitude_mask(before[i], rows, cols, &o, want, &err), 0);
            ck_assert_mem_eq(keep, want, (size_t)total);
            int64_t pruned = 0;
            for (int64_t k = 0; k < total; k++) {
                pruned += !keep[k];
                ck_assert(after[k] == (keep[k] ? before[i][k] : 0.0f));
            }
            ck_assert_int_eq(pruned, total / 2);
            free(keep);
            free(want);
            free(after);
        }
        cJSON *r0 = cJSON_GetArrayItem(report, 0);
        ck_assert_str_eq(cJSON_GetObjectItem(r0, "tensor")->valuestring, "blk.0.q.weight");
        ck_assert(cJSON_GetObjectItem(r0, "sparsity")->valuedouble == 0.5);
        cJSON_Delete(report);
        for (int i = 0; i < m->n_tensors; i++)
            free(before[i]);
        lmc_model_free(m);
    }
}
END_TEST

START_TEST(nm_pass_checks_widths_first)
{
    lmc_model *m = tiny_model(20); /* down's input width 20: 2:4 fits, 4:8 does not */
    lmc_prune_opts o;
    lmc_prune_opts_default(&o);
    o.n = 4;
    o.m = 8;
    lmc_pass p;
    lmc_error err;
    ck_assert_int_eq(lmc_magnitude_pass(&p, &o, &err), 0);
    expect_fail(run_pass(&p, m, NULL, NULL, &err), &err,
                "M = 8 does not divide the input width 20 of blk.0.down.weight");
    /* nothing was touched before the error */
    for (int i = 0; i < m->n_tensors; i++)
        ck_assert_int_eq(m->tensors[i].enc.id, LMC_ENC_F16);
    lmc_model_free(m);
}
END_TEST

START_TEST(wanda_pass_model)
{
    lmc_model *m = tiny_model(24);
    lmc_block_stats st;
    memset(&st, 0, sizeof st);
    st.flags = LMC_STAT_SQ_SUM;
    const int64_t dims[LMC_SITE_COUNT] = {16, 16, 16, 24};
    for (int s = 0; s < LMC_SITE_COUNT; s++) {
        st.site[s].dim = dims[s];
        st.site[s].ntok = 7;
        st.site[s].sq_sum = malloc((size_t)dims[s] * sizeof(double));
        for (int j = 0; j < dims[s]; j++)
            st.site[s].sq_sum[j] = (double)(1 + rnd() % 5000) / 13.0;
    }
    float *before[16];
    for (int i = 0; i < m->n_tensors; i++)
        before[i] = decode_t(&m->tensors[i]);
    lmc_prune_opts o;
    lmc_prune_opts_default(&o);
    o.sparsity = 0.5;
    o.inner = LMC_ENC_F32;
    lmc_pass p;
    lmc_error err;
    ck_assert_int_eq(lmc_wanda_pass(&p, &o, &err), 0);
    ck_assert_str_eq(p.name, "wanda");
    ck_assert_uint_eq(p.stats, LMC_STAT_SQ_SUM);
    /* without statistics: a clear error */
    expect_fail(run_pass(&p, m, NULL, NULL, &err), &err, "blk.0.q.weight: no sum of squares");
    ck_assert_msg(run_pass(&p, m, &st, NULL, &err) == 0, "%s", err.msg);
    lmc_linear_desc d[8];
    int nl = lmc_block_linears(&m->cfg, d);
    ck_assert_int_eq(nl, 7);
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < nl; i++) {
            lmc_tensor *t = lmc_model_block_tensor(m, l, d[i].role, "weight");
            int idx = (int)(t - m->tensors);
            int64_t rows = t->shape[0], cols = t->shape[1];
            ck_assert_int_eq(t->enc.id, LMC_ENC_SPARSE);
            ck_assert_int_eq(t->enc.inner, LMC_ENC_F32);
            uint8_t *keep = malloc((size_t)(rows * cols)), *want = malloc((size_t)(rows * cols));
            ck_assert_int_eq(lmc_sparse_mask(&t->enc, t->data, rows, cols, keep, &err), 0);
            const lmc_site_stats *ss = &st.site[d[i].site];
            ck_assert_int_eq(ss->dim, cols);
            ck_assert_int_eq(lmc_wanda_mask(before[idx], rows, cols, ss->sq_sum, ss->ntok, &o,
                                            want, &err), 0);
            ck_assert_mem_eq(keep, want, (size_t)(rows * cols));
            for (int64_t r = 0; r < rows; r++) {
                int64_t pr = 0;
                for (int64_t j = 0; j < cols; j++)
                    pr += !keep[r * cols + j];
                ck_assert_int_eq(pr, cols / 2);
            }
            free(keep);
            free(want);
        }
    /* a statistics width that does not match the linear is refused */
    lmc_model *m2 = tiny_model(24);
    st.site[LMC_SITE_FFN_MID].dim = 20;
    expect_fail(run_pass(&p, m2, &st, NULL, &err), &err,
                "blk.0.down.weight: input width 24 but site");
    lmc_model_free(m2);
    for (int i = 0; i < m->n_tensors; i++)
        free(before[i]);
    for (int s = 0; s < LMC_SITE_COUNT; s++)
        free(st.site[s].sq_sum);
    lmc_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prune");
    TCase *tc = tcase_create("prune");
    tcase_add_test(tc, lowest_matches_sort);
    tcase_add_test(tc, ties_by_index);
    tcase_add_test(tc, magnitude_matrix_exact);
    tcase_add_test(tc, magnitude_nm_pattern);
    tcase_add_test(tc, wanda_rows_exact);
    tcase_add_test(tc, wanda_vs_magnitude);
    tcase_add_test(tc, bad_options);
    tcase_add_test(tc, magnitude_pass_model);
    tcase_add_test(tc, nm_pass_checks_widths_first);
    tcase_add_test(tc, wanda_pass_model);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
