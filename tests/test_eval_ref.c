/* eval/ against the numbers transformers computed (../shared/reference):
 * perplexity of the full evaluation text, the first logits of window 0, the
 * same model as fp32 / bf16 checkpoints and as an fp16 container; and an
 * always-on check of the vendored data/llama-xs. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "../core/threads.h"
#include "../eval/flops.h"
#include "../eval/forward.h"
#include "../eval/forward_ops.h"
#include "../eval/model_stats.h"
#include "../eval/perplexity.h"
#include "../eval/weights.h"
#include "../formats/container.h"
#include "../formats/hf_checkpoint.h"
#include "testutil.h"

/* ---- helpers ---- */

typedef struct ref_eval {
    double ppl, window0_mean_nll;
    int64_t tokens, windows, scored, params;
} ref_eval;

static void read_ref(const char *path, ref_eval *r)
{
    char *txt;
    size_t n;
    lmc_error err;
    ck_assert_msg(lmc_read_file(path, &txt, &n, &err) == 0, "%s", err.msg);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    ck_assert_ptr_nonnull(j);
    cJSON *e = cJSON_GetObjectItem(j, "eval");
    ck_assert_ptr_nonnull(e);
    r->ppl = cJSON_GetObjectItem(e, "ppl_fp32")->valuedouble;
    r->tokens = (int64_t)cJSON_GetObjectItem(e, "tokens")->valuedouble;
    r->windows = (int64_t)cJSON_GetObjectItem(e, "windows")->valuedouble;
    r->scored = (int64_t)cJSON_GetObjectItem(e, "scored")->valuedouble;
    cJSON *w0 = cJSON_GetObjectItem(e, "window0_mean_nll");
    r->window0_mean_nll = w0 ? w0->valuedouble : NAN;
    r->params = (int64_t)cJSON_GetObjectItem(j, "params")->valuedouble;
    cJSON_Delete(j);
}

static lmc_model *load(const char *path)
{
    lmc_model *m;
    lmc_error err;
    ck_assert_msg(lmc_model_load(path, &m, &err) == 0, "%s", err.msg);
    return m;
}

static double ppl_of(const lmc_model *m, const int32_t *ids, int64_t n, int seqlen,
                     int64_t max_windows, lmc_ppl_result *r)
{
    lmc_weights *w;
    lmc_error err;
    ck_assert_msg(lmc_weights_prepare(m, &w, &err) == 0, "%s", err.msg);
    lmc_ppl_opts o = {seqlen, max_windows, "eval.txt", NULL, NULL};
    ck_assert_msg(lmc_perplexity(w, ids, n, &o, r, &err) == 0, "%s", err.msg);
    lmc_weights_free(w);
    return r->ppl;
}

/* ---- full text against ppl_fp32 (the acceptance check), and the first 8
 * logits of window 0 ---- */

/* The whole-text perplexity takes 2.5-5 min per model on CI's 2 cores and
 * was most of the suite's time: it runs with LMC_TEST_FULL=1 (`make
 * check-full`). Without it the tokenization of the whole text, the window
 * counts and window 0 (its NLL and first logits) are still checked against
 * the reference for every model. */
static int full_text_wanted(void)
{
    const char *e = getenv("LMC_TEST_FULL");
    return e && *e && strcmp(e, "0");
}

static void full_reference(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    const char *mp = lmc_test_shared_path(rel);
    if (!mp)
        return;
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", mp);
    snprintf(rel, sizeof rel, "reference/%s.json", name);
    ref_eval ref;
    read_ref(lmc_test_shared_path(rel), &ref);

    lmc_model *m = load(mpath);
    ck_assert_int_eq(lmc_model_params(m), ref.params);
    /* --text path: the model's tokenizer gives the reference ids */
    int64_t n;
    int32_t *ids = lmc_test_tokenize(m, lmc_test_shared_path("data/eval.txt"), &n);
    snprintf(rel, sizeof rel, "reference/%s.eval.ids.i32", name);
    int32_t *rids;
    int64_t rn;
    lmc_error err;
    ck_assert_msg(lmc_read_ids_i32(lmc_test_shared_path(rel), &rids, &rn, &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(n, rn);
    ck_assert_int_eq(memcmp(ids, rids, (size_t)n * 4), 0);
    free(rids);

    if (full_text_wanted()) {
        lmc_ppl_result r;
        double ppl = ppl_of(m, ids, n, 1024, 0, &r);
        double rel_diff = (ppl - ref.ppl) / ref.ppl;
        printf("%s: ppl %.6f reference %.6f (relative %+.2e), tokens %lld windows %lld scored "
               "%lld, %.1f s, %.0f tokens/s\n",
               name, ppl, ref.ppl, rel_diff, (long long)r.tokens, (long long)r.windows,
               (long long)r.scored, r.seconds, r.tokens_per_second);
        ck_assert_int_eq(r.tokens, ref.tokens);
        ck_assert_int_eq(r.windows, ref.windows);
        ck_assert_int_eq(r.scored, ref.scored);
        ck_assert_msg(fabs(rel_diff) <= 5e-4, "%s: ppl %.6f vs reference %.6f", name, ppl,
                      ref.ppl);
    } else {
        /* the protocol's counts: non-overlapping windows of 1024, remainder dropped */
        printf("%s: whole-text ppl not run (LMC_TEST_FULL=1 runs it); tokens and window 0 "
               "checked\n",
               name);
        ck_assert_int_eq(n, ref.tokens);
        ck_assert_int_eq(n / 1024, ref.windows);
        ck_assert_int_eq((n / 1024) * 1023, ref.scored);
    }

    /* logits of the first 8 positions of window 0 */
    snprintf(rel, sizeof rel, "reference/%s.eval.logits8.f32", name);
    char *raw;
    size_t rawn;
    ck_assert_msg(lmc_read_file(lmc_test_shared_path(rel), &raw, &rawn, &err) == 0, "%s",
                  err.msg);
    int V = m->cfg.vocab;
    ck_assert_uint_eq(rawn, (size_t)8 * V * 4);
    lmc_weights *w;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), 0);
    lmc_scratch *s = lmc_scratch_new(&m->cfg, 1024);
    float *lg = malloc(sizeof(float) * 1024 * V);
    double nll;
    ck_assert_int_eq(lmc_forward_window_nll(w, ids, 1024, s, &nll, lg, &err), 0);
    double worst = 0;
    for (int i = 0; i < 8 * V; i++) {
        float want;
        memcpy(&want, raw + 4 * (size_t)i, 4);
        double d = fabs((double)lg[i] - want);
        worst = d > worst || isnan(d) ? d : worst;
    }
    printf("%s: window 0 mean NLL %.7f reference %.7f; logits8 max |diff| %.3g\n", name,
           nll / 1023, ref.window0_mean_nll, worst);
    ck_assert_msg(worst <= 1e-3, "%s: logits differ by %g", name, worst);
    ck_assert_double_eq_tol(nll / 1023, ref.window0_mean_nll, 1e-5);
    free(lg);
    free(raw);
    lmc_scratch_free(s);
    lmc_weights_free(w);
    free(ids);
    lmc_model_free(m);
}

START_TEST(llama_s_full_text) { full_reference("llama-s"); }
END_TEST
START_TEST(opt_s_full_text) { full_reference("opt-s"); }
END_TEST
START_TEST(gpt2_s_full_text) { full_reference("gpt2-s"); }
END_TEST

/* ---- the same weights stored differently ---- */

/* fp32 checkpoint: the very same values as the fp16 one, so the same ppl to
 * rounding noise; bf16: close (reported). 4 windows each. */
static void variants(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    const char *mp = lmc_test_shared_path(rel);
    if (!mp)
        return;
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", mp);
    lmc_model *m = load(mpath);
    int64_t n;
    int32_t *ids = lmc_test_tokenize(m, lmc_test_shared_path("data/eval.txt"), &n);
    lmc_ppl_result r;
    double base = ppl_of(m, ids, n, 1024, 4, &r);
    lmc_model_stats st;
    lmc_model_stats_compute(m, &st);
    ck_assert_double_eq(st.compression_ratio, 1.0);
    ck_assert_double_eq(st.bits_per_weight, 16.0);

    const char *dtypes[2] = {"float32", "bfloat16"};
    for (int k = 0; k < 2; k++) {
        char dst[4096];
        snprintf(dst, sizeof dst, "%s/%s-%s", lmc_test_tmpdir(), name, dtypes[k]);
        lmc_error err;
        ck_assert_msg(lmc_checkpoint_write_variant(mpath, dst, dtypes[k], &err) == 0, "%s",
                      err.msg);
        lmc_model *mv = load(dst);
        double p = ppl_of(mv, ids, n, 1024, 4, &r);
        lmc_model_stats sv;
        lmc_model_stats_compute(mv, &sv);
        printf("%s %s: ppl %.6f (fp16 %.6f, relative %+.2e) over 4 windows; compression %.2f, "
               "%.1f bits/weight\n",
               name, dtypes[k], p, base, (p - base) / base, sv.compression_ratio,
               sv.bits_per_weight);
        ck_assert_int_eq(lmc_model_params(mv), lmc_model_params(m));
        if (k == 0) {
            ck_assert_msg(fabs(p - base) <= 1e-6 * base, "fp32 variant %.9g vs %.9g", p, base);
            ck_assert_double_eq(sv.compression_ratio, 0.5);
            ck_assert_double_eq(sv.bits_per_weight, 32.0);
        } else {
            ck_assert_msg(fabs(p - base) <= 0.02 * base, "bf16 variant %.9g vs %.9g", p, base);
            ck_assert_double_eq(sv.bits_per_weight, 16.0);
        }
        lmc_model_free(mv);
    }

    /* fp16 container (what lmc convert writes): identical numbers */
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/%s.lmc", lmc_test_tmpdir(), name);
    lmc_error err;
    ck_assert_msg(lmc_container_write(m, cpath, NULL, &err) == 0, "%s", err.msg);
    lmc_model *mc = load(cpath);
    ck_assert_int_eq(mc->source_kind, LMC_SRC_CONTAINER);
    double pc = ppl_of(mc, ids, n, 1024, 4, &r);
    printf("%s container: ppl %.6f (checkpoint %.6f)\n", name, pc, base);
    ck_assert_double_eq(pc, base);
    lmc_model_stats sc;
    lmc_model_stats_compute(mc, &sc);
    ck_assert_double_eq(sc.bytes_model, st.bytes_model);
    ck_assert_int_eq(sc.params, st.params);
    lmc_flops f1, f2;
    ck_assert_int_eq(lmc_flops_per_token(m, 1024, &f1, &err), 0);
    ck_assert_int_eq(lmc_flops_per_token(mc, 1024, &f2, &err), 0);
    ck_assert_double_eq(f1.per_token, f2.per_token);
    lmc_model_free(mc);
    free(ids);
    lmc_model_free(m);
}

START_TEST(llama_s_variants) { variants("llama-s"); }
END_TEST
START_TEST(opt_s_variants) { variants("opt-s"); }
END_TEST
START_TEST(gpt2_s_variants) { variants("gpt2-s"); }
END_TEST

/* ---- FLOPs and sizes from first principles ---- */

START_TEST(flops_and_stats_llama_s)
{
    const char *mp = lmc_test_shared_path("models/llama-s");
    if (!mp)
        return;
    lmc_model *m = load(mp);
    lmc_flops f;
    lmc_error err;
    ck_assert_int_eq(lmc_flops_per_token(m, 1024, &f, &err), 0);
    /* hidden 256, 8 layers, 8 heads x 32, 4 kv heads, ffn 688, vocab 8192, untied */
    double lin = 8.0 * (256 * 256 + 2 * 128 * 256 + 256 * 256 + 3 * 688 * 256);
    ck_assert_double_eq(f.linear, 2 * lin);
    ck_assert_double_eq(f.head, 2.0 * 8192 * 256);
    ck_assert_double_eq(f.attention, 2.0 * 2 * 8 * 8 * 32 * 512.5);
    ck_assert_double_eq(f.per_token, f.per_token_dense);
    lmc_model_stats st;
    lmc_model_stats_compute(m, &st);
    ck_assert_int_eq(st.params, 9998592);
    ck_assert_double_eq(st.bytes_fp16, 2.0 * 9998592);
    ck_assert_int_eq(st.linear_params, (int64_t)lin);
    lmc_model_free(m);
}
END_TEST

/* ---- the vendored demo model ---- */

START_TEST(llama_xs_full_text_shared)
{
    const char *rp = lmc_test_shared_path("reference/llama-xs.json");
    if (!rp)
        return;
    ref_eval ref;
    read_ref(rp, &ref);
    lmc_model *m = load(lmc_test_data("llama-xs"));
    int64_t n;
    int32_t *ids = lmc_test_tokenize(m, lmc_test_data("eval.txt"), &n);
    lmc_ppl_result r;
    double ppl = ppl_of(m, ids, n, 1024, 0, &r);
    printf("llama-xs (vendored): ppl %.6f reference %.6f (relative %+.2e), %.1f s\n", ppl,
           ref.ppl, (ppl - ref.ppl) / ref.ppl, r.seconds);
    ck_assert_int_eq(r.tokens, ref.tokens);
    ck_assert_int_eq(r.windows, ref.windows);
    ck_assert_int_eq(r.scored, ref.scored);
    ck_assert_msg(fabs(ppl - ref.ppl) <= 5e-4 * ref.ppl, "ppl %.6f vs %.6f", ppl, ref.ppl);
    free(ids);
    lmc_model_free(m);
}
END_TEST

/* Always on (no ../shared): the first 8 windows through lmc_perplexity, and
 * again step by step (embed, blocks, head, a naive double log-softmax) on one
 * thread: same number, and a plausible one for a trained model (far below
 * the vocabulary size a random model would give). */
START_TEST(llama_xs_vendored_two_paths)
{
    lmc_model *m = load(lmc_test_data("llama-xs"));
    int64_t n;
    int32_t *ids = lmc_test_tokenize(m, lmc_test_data("eval.txt"), &n);
    ck_assert_int_ge(n, 8 * 1024);
    lmc_ppl_result r;
    double ppl = ppl_of(m, ids, n, 1024, 8, &r);
    ck_assert_int_eq(r.windows, 8);
    ck_assert_int_eq(r.scored, 8 * 1023);

    int save = lmc_threads_get();
    lmc_threads_set(1);
    lmc_weights *w;
    lmc_error err;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), 0);
    int T = 1024, V = m->cfg.vocab, H = m->cfg.hidden;
    lmc_scratch *s = lmc_scratch_new(&m->cfg, T);
    float *x = malloc(sizeof(float) * T * H), *lg = malloc(sizeof(float) * T * V);
    double total = 0;
    for (int k = 0; k < 8; k++) {
        const int32_t *wi = ids + (size_t)k * T;
        ck_assert_int_eq(lmc_forward_embed(w, wi, T, x, &err), 0);
        for (int l = 0; l < m->cfg.n_layers; l++)
            ck_assert_int_eq(lmc_forward_block(w, l, &w->blocks[l], x, T, s, NULL, NULL, &err),
                             0);
        ck_assert_int_eq(lmc_forward_head(w, x, T, lg, s, &err), 0);
        for (int t = 0; t + 1 < T; t++) {
            const float *l = lg + (size_t)t * V;
            double mx = l[0], sum = 0;
            for (int j = 1; j < V; j++)
                mx = l[j] > mx ? l[j] : mx;
            for (int j = 0; j < V; j++)
                sum += exp(l[j] - mx);
            total += log(sum) + mx - l[wi[t + 1]];
        }
    }
    lmc_threads_set(save);
    double ppl2 = exp(total / (8 * 1023));
    printf("llama-xs (vendored), 8 windows: ppl %.6f, step by step on 1 thread %.6f\n", ppl,
           ppl2);
    ck_assert_msg(fabs(ppl - ppl2) <= 1e-5 * ppl, "%.9g vs %.9g", ppl, ppl2);
    ck_assert(ppl > 1.0 && ppl < V / 20.0);
    free(x);
    free(lg);
    lmc_scratch_free(s);
    lmc_weights_free(w);
    free(ids);
    lmc_model_free(m);
}
END_TEST

START_TEST(text_errors)
{
    lmc_model *m = load(lmc_test_data("llama-xs"));
    lmc_weights *w;
    lmc_error err;
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), 0);
    int32_t ids[600];
    for (int i = 0; i < 600; i++)
        ids[i] = i;
    lmc_ppl_result r;
    lmc_ppl_opts o = {1024, 0, "eval.txt", NULL, NULL};
    ck_assert_int_eq(lmc_perplexity(w, ids, 500, &o, &r, &err), -1);
    ck_assert_str_eq(err.msg, "eval.txt: 500 tokens, fewer than one window of 1024");
    o.seqlen = 100;
    ids[250] = m->cfg.vocab;
    ck_assert_int_eq(lmc_perplexity(w, ids, 600, &o, &r, &err), -1);
    ck_assert_msg(strstr(err.msg, "position 250") && strstr(err.msg, "vocabulary"), "%s",
                  err.msg);
    ids[250] = 7;
    ck_assert_int_eq(lmc_perplexity(w, ids, 600, &o, &r, &err), 0);
    ck_assert_int_eq(r.windows, 6);
    ck_assert_int_eq(r.scored, 6 * 99);
    o.max_windows = 2;
    ck_assert_int_eq(lmc_perplexity(w, ids, 600, &o, &r, &err), 0);
    ck_assert_int_eq(r.windows, 2);
    ck_assert_int_eq(r.tokens, 600);
    o.seqlen = 1;
    ck_assert_int_eq(lmc_perplexity(w, ids, 600, &o, &r, &err), -1);
    lmc_weights_free(w);

    /* a NaN weight in a loaded model fails naming the tensor */
    lmc_tensor *t = lmc_model_find(m, "blk.2.down.weight");
    uint8_t *copy = malloc(t->nbytes);
    memcpy(copy, t->data, t->nbytes);
    copy[2 * 100] = 0x01; /* f16 0x7e01: a NaN */
    copy[2 * 100 + 1] = 0x7e;
    lmc_tensor nt = *t;
    nt.data = copy;
    nt.owned = copy;
    ck_assert_int_eq(lmc_model_set_tensor(m, &nt, &err), 0);
    ck_assert_int_eq(lmc_weights_prepare(m, &w, &err), -1);
    ck_assert_msg(strstr(err.msg, "blk.2.down.weight") && strstr(err.msg, "NaN"), "%s", err.msg);
    lmc_model_free(m);

    int32_t *rid;
    int64_t rn;
    char p[4096];
    snprintf(p, sizeof p, "%s/odd.i32", lmc_test_tmpdir());
    FILE *f = fopen(p, "wb");
    fwrite("abcdefg", 1, 7, f);
    fclose(f);
    ck_assert_int_eq(lmc_read_ids_i32(p, &rid, &rn, &err), -1);
    ck_assert_msg(strstr(err.msg, "odd.i32"), "%s", err.msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("eval_ref");
    TCase *tc = tcase_create("eval_ref");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, text_errors);
    tcase_add_test(tc, llama_xs_vendored_two_paths);
    tcase_add_test(tc, flops_and_stats_llama_s);
    tcase_add_test(tc, llama_s_variants);
    tcase_add_test(tc, opt_s_variants);
    tcase_add_test(tc, gpt2_s_variants);
    tcase_add_test(tc, llama_xs_full_text_shared);
    tcase_add_test(tc, llama_s_full_text);
    tcase_add_test(tc, opt_s_full_text);
    tcase_add_test(tc, gpt2_s_full_text);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
