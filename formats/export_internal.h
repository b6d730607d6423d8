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
 * exactly: REASON (t1, t2 (+3 more)); ...; N tensors: --dequant writes
 * them as f16 instead" (the hint only when dequant_helps).
 * Frees rf; returns -1. */
int lmc_refusals_fail(lmc_refusals *rf, const char *model, const lmc_export_opts *o,
                      int dequant_helps, lmc_error *err);
void lmc_refusals_free(lmc_refusals *rf);

int lmc_export_report_add(lmc_export_report *rep, const char *name, const char *from,
                          const char *to, int dequantized, uint64_t bytes);

/* The encoding of a tensor ("qgroup w4 g128 asym"), or "absent". */
void lmc_export_describe(const lmc_tensor *t, char *buf, size_t n);
/* o->dequant_to with 0 read as F16. */
lmc_enc_id lmc_export_dequant_to(const lmc_export_opts *o);

/* A qgroup linear unpacked for the Hugging Face packers: codes [out][in],
 * the raw fp16 bits of the scales and the zeros [out][ng], g_idx [in]. */
typedef struct lmc_qlinear {
    const lmc_tensor *t;
    int64_t out, in, ng, g; /* g: inputs per group (in for one group per row) */
    int bits, sym;
    uint8_t *codes;
    uint16_t *sbits;
    uint8_t *zeros;
    int32_t *g_idx;
    int plain_gidx; /* g_idx[i] == i / g for every i */
} lmc_qlinear;
/* codes: unpack the codes too (else q->codes is NULL: checks need only
 * scales, zeros and g_idx). */
int lmc_qlinear_load(lmc_qlinear *q, const lmc_tensor *t, int codes, lmc_error *err);
void lmc_qlinear_free(lmc_qlinear *q);

/* GPTQ v1 (export_gptq.c): 1 with the reason when q cannot be stored
 * exactly, else 0. Packing writes the module's outputs [col0, col0 +
 * q->out) of out_total: qweight int32 [in*bits/32][out_total], qzeros
 * int32 [ng][out_total*bits/32], scales fp16 [ng][out_total]. */
int lmc_gptq_refuse(const lmc_qlinear *q, char *why, size_t nwhy);
void lmc_gptq_pack(const lmc_qlinear *q, int64_t col0, int64_t out_total, uint32_t *qweight,
                   uint32_t *qzeros, uint16_t *scales);
/* AutoAWQ GEMM (export_awq.c), same conventions: qweight int32
 * [in][out_total/8], qzeros int32 [ng][out_total/8], scales fp16
 * [ng][out_total]. */
int lmc_awq_refuse(const lmc_qlinear *q, char *why, size_t nwhy);
void lmc_awq_pack(const lmc_qlinear *q, int64_t col0, int64_t out_total, uint32_t *qweight,
                  uint32_t *qzeros, uint16_t *scales);

int lmc_export_gguf(const lmc_model *m, const char *out, const lmc_export_opts *o,
                    lmc_export_report *rep, lmc_error *err);
int lmc_export_hf(const lmc_model *m, const char *out, const lmc_export_opts *o,
                  lmc_export_report *rep, lmc_error *err);

#endif
