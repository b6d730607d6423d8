#include "flops.h"

#include <string.h>

static int tensor_macs(const lmc_tensor *t, double *eff, double *dense, lmc_error *err)
{
    const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
    if (!tr)
        return lmc_fail(err, "tensor %s: encoding id %d is not supported by this build", t->name,
                        (int)t->enc.id);
    int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    *dense = (double)rows * (double)cols;
    *eff = tr->effective_macs ? (double)tr->effective_macs(&t->enc, t->data, rows, cols) : *dense;
    return 0;
}

int lmc_flops_per_token(const lmc_model *m, int seqlen, lmc_flops *f, lmc_error *err)
{
    memset(f, 0, sizeof *f);
    const lmc_config *c = &m->cfg;
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(c, lin);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < nl; k++) {
            const lmc_tensor *t = lmc_model_block_tensor(m, l, lin[k].role, "weight");
            if (!t)
                return lmc_fail(err, "tensor blk.%d.%s.weight is missing", l, lin[k].role);
            double e, d;
            if (tensor_macs(t, &e, &d, err) < 0)
                return -1;
            f->linear += 2 * e;
            f->linear_dense += 2 * d;
        }
    const lmc_tensor *h = lmc_model_find(m, "head.weight");
    if (!h)
        h = lmc_model_find(m, "embed.weight"); /* tied */
    if (!h)
        return lmc_fail(err, "neither head.weight nor embed.weight is present");
    double e, d;
    if (tensor_macs(h, &e, &d, err) < 0)
        return -1;
    f->head = 2 * e;
    f->head_dense = 2 * d;
    f->avg_context = (seqlen + 1) / 2.0;
    /* scores and context: two products of n_heads x head_dim MACs per key */
    f->attention = 2.0 * 2.0 * c->n_layers * (double)c->n_heads * c->head_dim * f->avg_context;
    f->per_token = f->linear + f->head + f->attention;
    f->per_token_dense = f->linear_dense + f->head_dense + f->attention;
    return 0;
}
