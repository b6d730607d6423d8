/* Shared by the exporters (formats/export*.c); not a public API. */
#ifndef LMC_EXPORT_INTERNAL_H
#define LMC_EXPORT_INTERNAL_H

#include "export.h"

/* Tensors that have no exact form in the target, grouped by reason, for
 * one error line that names them. */
typedef struct lmc_refusal {
    char reason[200];
    char names[400]; /* the first few tensors */
    int count;
} lmc_refusal;
typedef struct lmc_refusals {
    lmc_refusal *r;
    int n;
    int oom;
} lmc_refusals;

void lmc_refuse(lmc_refusals *rf, const char *tensor, const char *reason);
/* The error for rf (when rf->n > 0): "MODEL: cannot export to FMT
 * exactly: REASON: t1, t2 (+3 more); ...; --dequant writes them as f16".
 * Frees rf; returns -1. */
int lmc_refusals_fail(lmc_refusals *rf, const char *model, const lmc_export_opts *o,
                      lmc_error *err);
void lmc_refusals_free(lmc_refusals *rf);

int lmc_export_report_add(lmc_export_report *rep, const char *name, const char *from,
                          const char *to, int dequantized, uint64_t bytes);

/* The encoding of a tensor ("qgroup w4 g128 asym"), or "absent". */
void lmc_export_describe(const lmc_tensor *t, char *buf, size_t n);
/* o->dequant_to with 0 read as F16. */
lmc_enc_id lmc_export_dequant_to(const lmc_export_opts *o);

int lmc_export_gguf(const lmc_model *m, const char *out, const lmc_export_opts *o,
                    lmc_export_report *rep, lmc_error *err);
int lmc_export_hf(const lmc_model *m, const char *out, const lmc_export_opts *o,
                  lmc_export_report *rep, lmc_error *err);

#endif
