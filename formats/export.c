/* lmc_export: dispatch, the per-tensor report and the refusal message the
 * exporters share. */
#include "export_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *lmc_export_format_name(lmc_export_format f)
{
    return f == LMC_EXPORT_GGUF ? "gguf" : f == LMC_EXPORT_GPTQ ? "gptq" : f == LMC_EXPORT_AWQ ? "awq" : "?";
}

void lmc_export_report_free(lmc_export_report *r)
{
    free(r->items);
    memset(r, 0, sizeof *r);
}

int lmc_export_report_add(lmc_export_report *rep, const char *name, const char *from,
                          const char *to, int dequantized, uint64_t bytes)
{
    if (rep->n == rep->cap) {
        int cap = rep->cap ? 2 * rep->cap : 64;
        lmc_export_item *ni = realloc(rep->items, (size_t)cap * sizeof *ni);
        if (!ni)
            return -1;
        rep->items = ni;
        rep->cap = cap;
    }
    lmc_export_item *it = &rep->items[rep->n++];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    snprintf(it->from, sizeof it->from, "%s", from);
    snprintf(it->to, sizeof it->to, "%s", to);
    it->dequantized = dequantized;
    it->bytes = bytes;
    rep->n_dequantized += dequantized;
    return 0;
}

void lmc_export_describe(const lmc_tensor *t, char *buf, size_t n)
{
    if (!t) {
        snprintf(buf, n, "absent");
        return;
    }
    lmc_enc_describe(&t->enc, buf, n);
}

lmc_enc_id lmc_export_dequant_to(const lmc_export_opts *o)
{
    return o->dequant_to == LMC_ENC_BF16 || o->dequant_to == LMC_ENC_F32 ? o->dequant_to
                                                                          : LMC_ENC_F16;
}

void lmc_refuse(lmc_refusals *rf, const char *tensor, const char *reason)
{
    lmc_refusal *r = NULL;
    for (int i = 0; i < rf->n && !r; i++)
        if (strcmp(rf->r[i].reason, reason) == 0)
            r = &rf->r[i];
    if (!r) {
        lmc_refusal *nr = realloc(rf->r, (size_t)(rf->n + 1) * sizeof *nr);
        if (!nr) {
            rf->oom = 1;
            return;
        }
        rf->r = nr;
        r = &rf->r[rf->n++];
        memset(r, 0, sizeof *r);
        snprintf(r->reason, sizeof r->reason, "%s", reason);
    }
    if (r->count < 4) {
        size_t l = strlen(r->names);
        snprintf(r->names + l, sizeof r->names - l, "%s%s", l ? ", " : "", tensor);
    }
    r->count++;
}

void lmc_refusals_free(lmc_refusals *rf)
{
    free(rf->r);
    memset(rf, 0, sizeof *rf);
}

int lmc_refusals_fail(lmc_refusals *rf, const char *model, const lmc_export_opts *o,
                      int dequant_helps, lmc_error *err)
{
    char msg[sizeof err->msg];
    int n = snprintf(msg, sizeof msg, "%s: cannot export to %s exactly: ", model,
                     lmc_export_format_name(o->format));
    int total = 0;
    for (int i = 0; i < rf->n; i++) {
        const lmc_refusal *r = &rf->r[i];
        total += r->count;
        char more[32] = "";
        if (r->count > 4)
            snprintf(more, sizeof more, " (+%d more)", r->count - 4);
        if (n < (int)sizeof msg)
            n += snprintf(msg + n, sizeof msg - (size_t)n, "%s%s (%s%s)", i ? "; " : "",
                          r->reason, r->names, more);
    }
    if (!dequant_helps && n < (int)sizeof msg)
        snprintf(msg + n, sizeof msg - (size_t)n, "; no linear fits, so nothing would be "
                                                  "quantized");
    else if (n < (int)sizeof msg)
        snprintf(msg + n, sizeof msg - (size_t)n,
                 "; %d tensor%s: --dequant writes %s as %s instead", total, total == 1 ? "" : "s",
                 total == 1 ? "it" : "them",
                 lmc_export_dequant_to(o) == LMC_ENC_F32    ? "f32"
                 : lmc_export_dequant_to(o) == LMC_ENC_BF16 ? "bf16"
                                                             : "f16");
    if (rf->oom)
        snprintf(msg, sizeof msg, "%s: out of memory", model);
    lmc_refusals_free(rf);
    return lmc_fail(err, "%s", msg);
}

int lmc_export(const lmc_model *m, const char *out, const lmc_export_opts *o,
               lmc_export_report *rep, lmc_error *err)
{
    memset(rep, 0, sizeof *rep);
    lmc_encodings_init();
    switch (o->format) {
    case LMC_EXPORT_GGUF: return lmc_export_gguf(m, out, o, rep, err);
    case LMC_EXPORT_GPTQ:
    case LMC_EXPORT_AWQ: return lmc_export_hf(m, out, o, rep, err);
    }
    return lmc_fail(err, "%s: unknown export format %d", out, (int)o->format);
}
