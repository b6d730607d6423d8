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

int lmc_model_set_tensor(lmc_model *m, const lmc_tensor *t, lmc_error *err)
{
    lmc_tensor *cur = lmc_model_find(m, t->name);
    if (cur) {
        if (cur->owned && cur->owned != t->owned)
            free(cur->owned);
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

int lmc_block_linears(const lmc_config *cfg, lmc_linear_desc out[8])
{
    int n = 0;
    out[n++] = (lmc_linear_desc){"q", LMC_SITE_ATTN_IN};
    out[n++] = (lmc_linear_desc){"k", LMC_SITE_ATTN_IN};
    out[n++] = (lmc_linear_desc){"v", LMC_SITE_ATTN_IN};
    out[n++] = (lmc_linear_desc){"o", LMC_SITE_ATTN_OUT};
    if (cfg->arch == LMC_ARCH_LLAMA)
        out[n++] = (lmc_linear_desc){"gate", LMC_SITE_FFN_IN};
    out[n++] = (lmc_linear_desc){"up", LMC_SITE_FFN_IN};
    out[n++] = (lmc_linear_desc){"down", LMC_SITE_FFN_MID};
    return n;
}

const char *lmc_arch_name(lmc_arch a)
{
    switch (a) {
    case LMC_ARCH_LLAMA: return "llama";
    case LMC_ARCH_OPT: return "opt";
    case LMC_ARCH_GPT2: return "gpt2";
    }
    return "unknown";
}

const char *lmc_site_name(lmc_site s)
{
    static const char *names[] = {"attn_in", "attn_out", "ffn_in", "ffn_mid"};
    return (unsigned)s < LMC_SITE_COUNT ? names[s] : "?";
}
