#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmc_model_free(lmc_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_tensors; i++)
        free(m->tensors[i].owned);
    free(m->tensors);
    for (int i = 0; i < m->n_maps; i++)
        lmc_mmap_close(&m->maps[i]);
    free(m->maps);
    free(m->tokenizer_json);
    free(m->config_json);
    free(m->provenance_json);
    free(m->source_path);
    free(m);
}

lmc_tensor *lmc_model_find(const lmc_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

lmc_tensor *lmc_model_block_tensor(const lmc_model *m, int layer, const char *role,
                                   const char *kind)
{
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.%s", layer, role, kind);
    return lmc_model_find(m, name);
}

void lmc_model_release_pages(const lmc_model *m, const void *p, size_t n)
{
    for (int i = 0; p && i < m->n_maps; i++)
        if ((const unsigned char *)p >= m->maps[i].data &&
            (const unsigned char *)p < m->maps[i].data + m->maps[i].size)
            lmc_mmap_release(&m->maps[i], p, n);
}

void lmc_model_release_block_pages(const lmc_model *m, int layer)
{
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "blk.%d.", layer);
    for (int i = 0; i < m->n_tensors; i++)
        if (!strncmp(m->tensors[i].name, prefix, (size_t)n))
            lmc_model_release_pages(m, m->tensors[i].data, m->tensors[i].nbytes);
}

int lmc_model_set_tensor(lmc_model *m, const lmc_tensor *t, lmc_error *err)
{
    lmc_tensor *cur = lmc_model_find(m, t->name);
    if (cur) {
        if (cur->owned && cur->owned != t->owned)
            free(cur->owned);
        else if (!cur->owned && cur->data != t->data)
            /* a mapped tensor replaced: nothing reads its pages again, and a
             * model larger than memory must not keep them resident */
            lmc_model_release_pages(m, cur->data, cur->nbytes);
        *cur = *t;
        return 0;
    }
    lmc_tensor *nt = realloc(m->tensors, (size_t)(m->n_tensors + 1) * sizeof *nt);
    if (!nt)
        return lmc_fail(err, "out of memory adding tensor %s", t->name);
    m->tensors = nt;
    m->tensors[m->n_tensors++] = *t;
    return 0;
}

int64_t lmc_model_params(const lmc_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++)
        n += m->tensors[i].shape[0] * (m->tensors[i].ndim == 2 ? m->tensors[i].shape[1] : 1);
    return n;
}

void lmc_block_slots(const lmc_config *c, lmc_slot_desc out[LMC_SLOT_COUNT])
{
    int64_t H = c->hidden, F = c->ffn, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim;
    out[LMC_SLOT_QKV] = (lmc_slot_desc){LMC_SITE_ATTN_IN, 3, {"q", "k", "v"}, {qd, kvd, kvd}, H,
                                        c->qkv_bias};
    out[LMC_SLOT_O] = (lmc_slot_desc){LMC_SITE_ATTN_OUT, 1, {"o"}, {H}, qd, c->o_bias};
    out[LMC_SLOT_GU] = c->gated_ffn ? (lmc_slot_desc){LMC_SITE_FFN_IN, 2, {"gate", "up"},
                                                      {F, F}, H, c->mlp_bias}
                                    : (lmc_slot_desc){LMC_SITE_FFN_IN, 1, {"up"}, {F}, H,
                                                      c->mlp_bias};
    out[LMC_SLOT_DOWN] = (lmc_slot_desc){LMC_SITE_FFN_MID, 1, {"down"}, {H}, F, c->mlp_bias};
}

int lmc_block_linears(const lmc_config *cfg, lmc_linear_desc out[8])
{
    lmc_slot_desc s[LMC_SLOT_COUNT];
    lmc_block_slots(cfg, s);
    int n = 0;
    for (int k = 0; k < LMC_SLOT_COUNT; k++)
        for (int i = 0; i < s[k].n; i++)
            out[n++] = (lmc_linear_desc){s[k].roles[i], s[k].site};
    return n;
}

const char *lmc_site_name(lmc_site s)
{
    static const char *names[] = {"attn_in", "attn_out", "ffn_in", "ffn_mid"};
    return (unsigned)s < LMC_SITE_COUNT ? names[s] : "?";
}

int lmc_tensor_view(const lmc_tensor *t, lmc_enc_view *v, lmc_error *err)
{
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    if (!tr)
        return lmc_fail(err, "tensor %s: unknown encoding id %d", t->name, (int)t->enc.id);
    if (!tr->view)
        return 0;
    int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    if (tr->view(&t->enc, t->data, t->nbytes, rows, cols, v, err) < 0) {
        char pre[96];
        snprintf(pre, sizeof pre, "tensor %s", t->name);
        return lmc_fail_prefix(err, pre);
    }
    return 1;
}

