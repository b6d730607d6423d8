/* GPTQ/AWQ checkpoints: next commit. */
#include "export_internal.h"
int lmc_export_hf(const lmc_model *m, const char *out, const lmc_export_opts *o,
                  lmc_export_report *rep, lmc_error *err)
{
    (void)m;
    (void)rep;
    return lmc_fail(err, "%s: --format %s is not implemented yet", out,
                    lmc_export_format_name(o->format));
}
