#include "model_stats.h"

#include <string.h>

void lmc_model_stats_compute(const lmc_model *m, lmc_model_stats *st)
{
    memset(st, 0, sizeof *st);
    st->params = lmc_model_params(m);
    st->bytes_fp16 = 2.0 * (double)st->params;
    for (int i = 0; i < m->n_tensors; i++)
        st->bytes_model += (double)m->tensors[i].nbytes;
    st->compression_ratio = st->bytes_model > 0 ? st->bytes_fp16 / st->bytes_model : 0;
    lmc_linear_desc lin[8];
    int nl = lmc_block_linears(&m->cfg, lin);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < nl; k++) {
            const lmc_tensor *t = lmc_model_block_tensor(m, l, lin[k].role, "weight");
            if (!t)
                continue;
            st->linear_params += t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
            st->linear_bytes += (double)t->nbytes;
        }
    st->bits_per_weight =
        st->linear_params > 0 ? 8.0 * st->linear_bytes / (double)st->linear_params : 0;
}
