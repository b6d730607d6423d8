/* compress/sparsegpt.c and prune-then-quantize (compress/quant_passes.c
 * lmc_store_quantized): the quantized sparse tensors decode to exactly what
 * the solver computed, the passes run on the vendored llama-xs through the
 * driver (few short windows), and the containers are read back to check
 * exact sparsity, the N:M pattern of every group, zeros that stay zero and
 * bits per weight. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/driver.h"
#include "../calib/windows.h"
#include "../compress/prune_passes.h"
#include "../compress/qstore.h"
#include "../compress/quant_passes.h"
#include "../compress/sparsegpt.h"
#include "../core/sparse.h"
#include "../formats/container.h"
#include "testutil.h"

static uint64_t rng = 0x6a09e667f3bcc909ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rndf(void) { return ((float)(rnd() % 20001) - 10000.0f) / 10000.0f; }

/* H = 2/N X^T X of N random correlated inputs (positive definite). */
static double *rand_hessian(int64_t cols, int64_t ntok)
{
    double *H = calloc((size_t)(cols * cols), sizeof *H);
    float *x = malloc((size_t)cols * sizeof *x);
    for (int64_t t = 0; t < ntok; t++) {
        float common = rndf();
        for (int64_t j = 0; j < cols; j++)
            x[j] = rndf() * (1.0f + (float)(j % 7)) + 0.5f * common;
        for (int64_t i = 0; i < cols; i++)
            for (int64_t j = 0; j < cols; j++)
                H[i * cols + j] += 2.0 * x[i] * x[j] / (double)ntok;
    }
    free(x);
    return H;
}

static float *decode_tensor(const lmc_tensor *t)
{
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    ck_assert_ptr_nonnull(tr);
    int64_t rows = t->shape[0], cols = t->shape[1];
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    lmc_error err;
    ck_assert_msg(tr->validate(&t->enc, rows, cols, &err) == 0, "%s", err.msg);
    ck_assert_msg(tr->to_f32(&t->enc, t->data, rows, cols, w, &err) == 0, "%s: %s", t->name,
                  err.msg);
    return w;
}

/* Pruned count of unstructured SparseGPT: floor(rows*count*p) per block. */
static int64_t expected_pruned(int64_t rows, int64_t cols, int bs, double p)
{
    int64_t k = 0;
    for (int64_t i1 = 0; i1 < cols; i1 += bs) {
        int64_t count = cols - i1 < bs ? cols - i1 : bs;
        k += (int64_t)((double)(rows * count) * p);
    }
    return k;
}

/* Every group of m consecutive inputs of every row has at most n nonzeros. */
static void check_nm_pattern(const float *w, int64_t rows, int64_t cols, int n, int m,
                             const char *name)
{
    ck_assert_int_eq(cols % m, 0);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += m) {
            int nz = 0;
            for (int j = 0; j < m; j++)
                nz += w[r * cols + c0 + j] != 0.0f;
            ck_assert_msg(nz <= n, "%s row %lld cols %lld..: %d nonzeros > %d", name,
                          (long long)r, (long long)c0, nz, n);
        }
}

/* ---- the solver's result as a sparse quantized tensor ---- */

START_TEST(qtensor_decodes_to_solver_output)
{
    const int64_t rows = 24, cols = 96;
    double *H = rand_hessian(cols, 400);
    struct {
        double p;
        int pn, pm, bits, group, sym, want_enc;
    } cases[] = {
        {0.5, 0, 0, 4, -1, 0, LMC_ENC_SPARSE},  {0.7, 0, 0, 3, 32, 0, LMC_ENC_SPARSE},
        {0.3, 0, 0, 8, 40, 1, LMC_ENC_SPARSE},  {0, 2, 4, 4, 32, 0, LMC_ENC_NM},
        {0, 2, 4, 2, -1, 1, LMC_ENC_NM},        {0, 4, 8, 3, 40, 0, LMC_ENC_NM},
        {0, 2, 4, 4, 6, 0, LMC_ENC_SPARSE}, /* group 6: no N:M layout, bitmask instead */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float *W = malloc((size_t)(rows * cols) * sizeof *W);
        for (int64_t i = 0; i < rows * cols; i++)
            W[i] = rndf();
        lmc_solver_opts o;
        lmc_solver_opts_default(&o);
        o.blocksize = 32;
        o.sparsity = cases[k].p;
        o.prune_n = cases[k].pn ? cases[k].pm - cases[k].pn : 0; /* pruned of every M */
        o.prune_m = cases[k].pm;
        o.bits = cases[k].bits;
        o.group = cases[k].group;
        o.sym = cases[k].sym;
        lmc_solver_result r;
        lmc_error err;
        ck_assert_msg(lmc_solve(W, rows, cols, H, &o, &r, &err) == 0, "%s", err.msg);
        ck_assert_ptr_nonnull(r.mask);
        uint8_t *keep = malloc((size_t)(rows * cols));
        for (int64_t i = 0; i < rows * cols; i++)
            keep[i] = !r.mask[i];
        lmc_tensor t;
        ck_assert_msg(lmc_sparse_qtensor("blk.0.q.weight", &r.q, keep, cases[k].pn, cases[k].pm,
                                         &t, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(t.enc.id, cases[k].want_enc);
        ck_assert_int_eq(t.enc.inner, LMC_ENC_QGROUP);
        ck_assert_int_eq(t.enc.bits, cases[k].bits);
        ck_assert_uint_eq(t.nbytes, lmc_enc_get(t.enc.id)->nbytes(&t.enc, rows, cols));
        float *d = decode_tensor(&t);
        /* bit for bit what the solver left in W (dequantized, pruned = 0) */
        for (int64_t i = 0; i < rows * cols; i++) {
            ck_assert_msg(d[i] == W[i], "case %zu at %lld: %g vs %g", k, (long long)i,
                          (double)d[i], (double)W[i]);
            if (r.mask[i])
                ck_assert(d[i] == 0.0f);
        }
        if (cases[k].p > 0)
            ck_assert_int_eq(r.n_pruned, expected_pruned(rows, cols, 32, cases[k].p));
        else
            check_nm_pattern(d, rows, cols, cases[k].pn, cases[k].pm, "solver");
        double bpw = 8.0 * (double)t.nbytes / (double)(rows * cols);
        double kept = 1.0 - (double)r.n_pruned / (double)(rows * cols);
        /* mask or indices <= 1.5 bits here, codes kept*b, plus group parameters */
        ck_assert(bpw > kept * cases[k].bits && bpw < 1.5 + kept * cases[k].bits + 24.0 / 6);
        free(d);
        free(t.owned);
        free(keep);
        lmc_solver_result_free(&r);
        free(W);
    }
    free(H);
}
END_TEST

START_TEST(bad_options)
{
    lmc_sparsegpt_opts o;
    lmc_sparsegpt_opts_default(&o);
    lmc_error err;
    lmc_pass p;
    ck_assert_int_eq(lmc_sparsegpt_pass(&p, &o, &err), -1);
    ck_assert_msg(strstr(err.msg, "give --sparsity P") != NULL, "%s", err.msg);
    o.prune.sparsity = 1.0;
    ck_assert_int_eq(lmc_sparsegpt_opts_check(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "--sparsity 1: must be in (0, 1)") != NULL, "%s", err.msg);
    o.prune.sparsity = 0.5;
    ck_assert_int_eq(lmc_sparsegpt_opts_check(&o, &err), 0);
    o.prune.sparsity = 0;
    o.prune.n = 4;
    o.prune.m = 4;
    ck_assert_int_eq(lmc_sparsegpt_opts_check(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "N must satisfy") != NULL, "%s", err.msg);
    o.prune.n = 2;
    o.prune.m = 128;
    ck_assert_int_eq(lmc_sparsegpt_opts_check(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "M up to 64") != NULL, "%s", err.msg);
    o.prune.m = 4;
    o.solver.blocksize = 30;
    ck_assert_int_eq(lmc_sparsegpt_opts_check(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "block size 30 must be a multiple of M") != NULL, "%s",
                  err.msg);
    o.solver.blocksize = 128;
    o.solver.bits = 9;
    ck_assert_int_eq(lmc_sparsegpt_opts_check(&o, &err), -1);
    ck_assert_msg(strstr(err.msg, "--bits 9") != NULL, "%s", err.msg);
    o.solver.bits = 4;
    o.solver.group = 0;
    ck_assert_int_eq(lmc_sparsegpt_opts_check(&o, &err), -1);
    o.solver.group = 128;
    ck_assert_int_eq(lmc_sparsegpt_pass(&p, &o, &err), 0);
    ck_assert_str_eq(p.name, "sparsegpt");
}
END_TEST

/* ---- passes on llama-xs through the driver ---- */

static lmc_windows g_win;

static void make_windows(const lmc_model *m)
{
    if (g_win.n)
        return;
    const int64_t ntok = 4096;
    int32_t *ids = malloc((size_t)ntok * sizeof *ids);
    for (int64_t i = 0; i < ntok; i++)
        ids[i] = (int32_t)(rnd() % (uint32_t)m->cfg.vocab);
    lmc_error err;
    ck_assert_msg(lmc_windows_sample(ids, ntok, 4, 64, 0, &g_win, "random ids", &err) == 0, "%s",
                  err.msg);
    free(ids);
}

static lmc_model *load(const char *path)
{
    lmc_model *m = NULL;
    lmc_error err;
    ck_assert_msg(lmc_model_load(path, &m, &err) == 0, "%s", err.msg);
    return m;
}

/* Run p on the model at src, write dst, return dst loaded back. */
static lmc_model *run_pass(const char *src, const lmc_pass *p, const char *dst, cJSON **summary)
{
    lmc_model *m = load(src);
    make_windows(m);
    lmc_error err;
    cJSON *s = cJSON_CreateObject();
    lmc_driver_opts dopt;
    lmc_driver_opts_default(&dopt);
    ck_assert_msg(lmc_driver_run(m, p, p->stats ? &g_win : NULL, &dopt, s, &err) == 0, "%s: %s",
                  p->name, err.msg);
    ck_assert_msg(lmc_container_write(m, dst, "{\"pass\":\"test\"}", &err) == 0, "%s", err.msg);
    lmc_model_free(m);
    if (summary)
        *summary = s;
    else
        cJSON_Delete(s);
    return load(dst);
}

static char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", lmc_test_tmpdir(), name);
    return b;
}

typedef void (*linear_fn)(const lmc_tensor *t, const float *w, void *ctx);

static void each_linear(const lmc_model *m, linear_fn fn, void *ctx)
{
    lmc_linear_desc d[8];
    int nl = lmc_block_linears(&m->cfg, d);
    ck_assert_int_gt(nl, 0);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < nl; i++) {
            const lmc_tensor *t = lmc_model_block_tensor(m, l, d[i].role, "weight");
            ck_assert_ptr_nonnull(t);
            float *w = decode_tensor(t);
            fn(t, w, ctx);
            free(w);
        }
}

typedef struct {
    double p;
    int n, m, bits, bs;
    int64_t linears;
} expect_t;

static void check_pruned(const lmc_tensor *t, const float *w, void *c)
{
    expect_t *e = c;
    int64_t rows = t->shape[0], cols = t->shape[1], zeros = 0;
    for (int64_t i = 0; i < rows * cols; i++)
        zeros += w[i] == 0.0f;
    ck_assert_int_eq(t->enc.inner, e->bits ? LMC_ENC_QGROUP : LMC_ENC_F16);
    if (e->bits)
        ck_assert_int_eq(t->enc.bits, e->bits);
    if (e->m) {
        ck_assert_msg(t->enc.id == LMC_ENC_NM && t->enc.n == e->n && t->enc.m == e->m,
                      "%s: not %d:%d", t->name, e->n, e->m);
        check_nm_pattern(w, rows, cols, e->n, e->m, t->name);
        /* exactly M-N pruned per group: at least that many zeros */
        ck_assert_int_ge(zeros, rows * cols / e->m * (e->m - e->n));
    } else {
        ck_assert_int_eq(t->enc.id, LMC_ENC_SPARSE);
        int64_t want = expected_pruned(rows, cols, e->bs, e->p);
        /* stored positions: exactly the unpruned ones */
        ck_assert_int_eq(t->enc.nnz, rows * cols - want);
        ck_assert_int_ge(zeros, want);
        /* a kept weight that is exactly 0 is rare (unless it was rounded to 0) */
        ck_assert_int_le(zeros - want, rows * cols / (e->bits ? 10 : 100));
    }
    e->linears++;
}

START_TEST(sparsegpt_pass_llama_xs)
{
    const char *xs = lmc_test_data("llama-xs");
    struct {
        double p;
        int n, m, bits, group;
    } cases[] = {{0.5, 0, 0, 0, 0}, {0.7, 0, 0, 0, 0}, {0, 2, 4, 0, 0},
                 {0.5, 0, 0, 4, -1}, {0, 2, 4, 3, 32}, {0, 4, 8, 4, 128}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lmc_sparsegpt_opts o;
        lmc_sparsegpt_opts_default(&o);
        o.prune.sparsity = cases[k].p;
        o.prune.n = cases[k].n;
        o.prune.m = cases[k].m;
        o.solver.bits = cases[k].bits;
        o.solver.group = cases[k].group;
        lmc_pass p;
        lmc_error err;
        ck_assert_msg(lmc_sparsegpt_pass(&p, &o, &err) == 0, "%s", err.msg);
        cJSON *s;
        lmc_model *m = run_pass(xs, &p, tmp_path("sg.lmc"), &s);
        expect_t e = {cases[k].p, cases[k].n, cases[k].m, cases[k].bits, 128, 0};
        each_linear(m, check_pruned, &e);
        ck_assert_int_eq(e.linears, m->cfg.n_layers * 7);
        /* embeddings and head untouched */
        ck_assert_int_eq(lmc_model_find(m, "embed.weight")->enc.id, LMC_ENC_F16);
        double z, bpw;
        ck_assert_int_eq(lmc_linear_sparsity(m, &z, &bpw, &err), 0);
        double zs = cJSON_GetObjectItem(s, "zero_fraction")->valuedouble;
        double want = cases[k].m ? 1.0 - (double)cases[k].n / cases[k].m : cases[k].p;
        printf("sparsegpt p %.1f %d:%d bits %d g %d: zero fraction %.5f, %.3f bits/weight\n",
               cases[k].p, cases[k].n, cases[k].m, cases[k].bits, cases[k].group, z, bpw);
        ck_assert(fabs(z - zs) < 1e-12);
        ck_assert(z >= want - 1e-3 && z < want + (cases[k].bits ? 0.05 : 0.01));
        if (cases[k].bits)
            ck_assert(bpw < 1.6 + (1 - want) * cases[k].bits + 0.5);
        else
            ck_assert(bpw <= (cases[k].m == 8 ? 1.5 : 1.0) + (1 - want) * 16 + 0.01);
        cJSON_Delete(s);
        lmc_model_free(m);
    }
}
END_TEST

START_TEST(nm_width_error)
{
    lmc_sparsegpt_opts o;
    lmc_sparsegpt_opts_default(&o);
    o.prune.n = 2;
    o.prune.m = 64; /* divides 128 but not llama-xs's FFN width 352 */
    lmc_pass p;
    lmc_error err;
    ck_assert_int_eq(lmc_sparsegpt_pass(&p, &o, &err), 0);
    lmc_model *m = load(lmc_test_data("llama-xs"));
    make_windows(m);
    cJSON *s = cJSON_CreateObject();
    lmc_driver_opts dopt;
    lmc_driver_opts_default(&dopt);
    ck_assert_int_eq(lmc_driver_run(m, &p, &g_win, &dopt, s, &err), -1);
    ck_assert_msg(strstr(err.msg, "M = 64 does not divide the input width 352 of "
                                  "blk.0.down.weight") != NULL, "%s", err.msg);
    cJSON_Delete(s);
    lmc_model_free(m);
}
END_TEST

/* GPT-2 stores q, k, v as one matrix (c_attn) and the reference prunes that
 * module: one unstructured threshold per block over the three. */
START_TEST(gpt2_fused_qkv)
{
    const char *gpt2 = lmc_test_shared_path("models/gpt2-s");
    if (!gpt2)
        return;
    lmc_model *m = load(gpt2);
    const int64_t ntok = 2048;
    int32_t *ids = malloc((size_t)ntok * sizeof *ids);
    for (int64_t i = 0; i < ntok; i++)
        ids[i] = (int32_t)(rnd() % (uint32_t)m->cfg.vocab);
    lmc_windows win;
    lmc_error err;
    ck_assert_msg(lmc_windows_sample(ids, ntok, 2, 64, 0, &win, "random ids", &err) == 0, "%s",
                  err.msg);
    free(ids);
    lmc_sparsegpt_opts o;
    lmc_sparsegpt_opts_default(&o);
    o.prune.sparsity = 0.7;
    lmc_pass p;
    ck_assert_int_eq(lmc_sparsegpt_pass(&p, &o, &err), 0);
    cJSON *s = cJSON_CreateObject();
    lmc_driver_opts dopt;
    lmc_driver_opts_default(&dopt);
    ck_assert_msg(lmc_driver_run(m, &p, &win, &dopt, s, &err) == 0, "%s", err.msg);
    int64_t h = m->cfg.hidden, kv = (int64_t)m->cfg.n_kv_heads * m->cfg.head_dim;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        int64_t pruned = 0, sep = 0;
        const char *roles[3] = {"q", "k", "v"};
        for (int j = 0; j < 3; j++) {
            const lmc_tensor *t = lmc_model_block_tensor(m, l, roles[j], "weight");
            ck_assert_int_eq(t->enc.id, LMC_ENC_SPARSE);
            pruned += t->shape[0] * t->shape[1] - t->enc.nnz;
            sep += expected_pruned(t->shape[0], t->shape[1], 128, 0.7);
        }
        int64_t joint = expected_pruned(h + 2 * kv, h, 128, 0.7);
        ck_assert_int_eq(pruned, joint);
        ck_assert_int_ne(joint, sep); /* 256 inputs: 137624 vs 137622 */
        const lmc_tensor *o_ = lmc_model_block_tensor(m, l, "o", "weight");
        ck_assert_int_eq(o_->shape[0] * o_->shape[1] - o_->enc.nnz,
                         expected_pruned(o_->shape[0], o_->shape[1], 128, 0.7));
    }
    cJSON *layers = cJSON_GetObjectItem(s, "layers");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(layers, 1), "pruned_with")->valuestring,
                     "q,k,v");
    ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetArrayItem(layers, 3), "pruned_with"));
    cJSON_Delete(s);
    lmc_windows_free(&win);
    lmc_model_free(m);
}
END_TEST

/* ---- prune, then quantize ---- */

typedef struct {
    const lmc_model *pruned;
    int want_enc, n, m, bits;
    int64_t linears, zeros, total;
    double bytes;
} ptq_t;

static void check_ptq(const lmc_tensor *t, const float *w, void *c)
{
    ptq_t *e = c;
    const lmc_tensor *src = lmc_model_find(e->pruned, t->name);
    ck_assert_ptr_nonnull(src);
    float *w0 = decode_tensor(src);
    int64_t n = t->shape[0] * t->shape[1], changed = 0;
    for (int64_t i = 0; i < n; i++) {
        if (w0[i] == 0.0f) /* pruned before: exactly zero after */
            ck_assert_msg(w[i] == 0.0f, "%s [%lld]: %g", t->name, (long long)i, (double)w[i]);
        changed += w[i] != w0[i];
        e->zeros += w[i] == 0.0f;
    }
    ck_assert_int_gt(changed, 0); /* really quantized */
    if (e->want_enc) /* 0: N:M unless act-order made a g_idx, then the bitmask */
        ck_assert_msg((int)t->enc.id == e->want_enc, "%s: encoding %d", t->name, (int)t->enc.id);
    else
        ck_assert_msg(t->enc.id == LMC_ENC_NM || (t->enc.id == LMC_ENC_SPARSE && t->enc.has_gidx),
                      "%s: encoding %d", t->name, (int)t->enc.id);
    ck_assert_int_eq(t->enc.inner, LMC_ENC_QGROUP);
    ck_assert_int_eq(t->enc.bits, e->bits);
    if (e->m)
        check_nm_pattern(w, t->shape[0], t->shape[1], e->n, e->m, t->name);
    e->linears++;
    e->total += n;
    e->bytes += (double)t->nbytes;
    free(w0);
}

START_TEST(prune_then_quantize)
{
    const char *xs = lmc_test_data("llama-xs");
    struct {
        int nm, rtn, act_order, want_enc;
    } cases[] = {{0, 0, 0, LMC_ENC_SPARSE}, {1, 0, 0, LMC_ENC_NM}, {1, 1, 0, LMC_ENC_NM},
                 {0, 1, 0, LMC_ENC_SPARSE}, {1, 0, 1, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lmc_prune_opts po;
        lmc_prune_opts_default(&po);
        if (cases[k].nm)
            po.n = 2, po.m = 4;
        else
            po.sparsity = 0.5;
        lmc_pass wp, qp;
        lmc_error err;
        ck_assert_int_eq(lmc_wanda_pass(&wp, &po, &err), 0);
        lmc_model *pruned = run_pass(xs, &wp, tmp_path("w.lmc"), NULL);
        lmc_solver_opts so;
        lmc_solver_opts_default(&so);
        so.bits = 4;
        so.group = 128; /* llama-xs's 352 inputs: a short last group of 96 */
        so.act_order = cases[k].act_order; /* g_idx: N:M falls back to the bitmask */
        lmc_rtn_opts ro = {4, 128, 0};
        if (cases[k].rtn)
            lmc_rtn_pass(&qp, &ro);
        else
            lmc_gptq_pass(&qp, &so);
        lmc_model *q = run_pass(tmp_path("w.lmc"), &qp, tmp_path("wq.lmc"), NULL);
        ptq_t e = {pruned, cases[k].want_enc, 2, cases[k].nm ? 4 : 0, 4, 0, 0, 0, 0};
        each_linear(q, check_ptq, &e);
        ck_assert_int_eq(e.linears, q->cfg.n_layers * 7);
        double zf = (double)e.zeros / (double)e.total, bpw = 8 * e.bytes / (double)e.total;
        printf("wanda %s then %s w4 g128%s: zero fraction %.4f, %.3f bits/weight\n",
               cases[k].nm ? "2:4" : "50%", cases[k].rtn ? "rtn" : "gptq",
               cases[k].act_order ? " act-order" : "", zf, bpw);
        ck_assert(zf >= 0.5);
        /* 1 (mask or 2-bit indices at 2:4) + 0.5 x 4 + groups (+ g_idx) */
        ck_assert(bpw > 3.0 && bpw < 3.0 + (cases[k].act_order ? 0.6 : 0.35));
        lmc_model_free(pruned);
        lmc_model_free(q);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sparsegpt");
    TCase *tc = tcase_create("sparsegpt");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, qtensor_decodes_to_solver_output);
    tcase_add_test(tc, bad_options);
    tcase_add_test(tc, sparsegpt_pass_llama_xs);
    tcase_add_test(tc, nm_width_error);
    tcase_add_test(tc, gpt2_fused_qkv);
    tcase_add_test(tc, prune_then_quantize);
    suite_add_tcase(s, tc);
    int rc = lmc_test_run(s);
    lmc_windows_free(&g_win);
    return rc;
}
