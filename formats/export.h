/* Exports that other engines load: GGUF v3 for llama.cpp, and Hugging Face
 * checkpoints in the AutoGPTQ "v1" and AutoAWQ GEMM layouts for
 * transformers / vLLM / TGI. Mappings, what is exact and what is refused:
 * docs/EXPORT.md.
 *
 * Every tensor is written exactly (the loader decodes the values lmc's own
 * decoder gives) or the export is refused, naming the tensors and why; with
 * dequant set, the refused tensors are decoded and written as dense
 * dequant_to instead (reported per tensor). Output is atomic: a GGUF file,
 * or a checkpoint directory, appears complete or not at all. */
#ifndef LMC_EXPORT_H
#define LMC_EXPORT_H

#include <stdint.h>

#include "../core/model.h"

typedef enum { LMC_EXPORT_GGUF = 1, LMC_EXPORT_GPTQ = 2, LMC_EXPORT_AWQ = 3 } lmc_export_format;

typedef struct lmc_export_opts {
    lmc_export_format format;
    int dequant;              /* decode what has no exact form instead of refusing */
    lmc_enc_id dequant_to;    /* LMC_ENC_F16 (0 means F16), LMC_ENC_BF16 or LMC_ENC_F32 */
    const char *source_dir;   /* GPTQ/AWQ: checkpoint directory whose tokenizer and
                                 generation files are copied (NULL: tokenizer.json only) */
    const char *name;         /* GGUF general.name (NULL: none) */
    /* Progress, once per output tensor (may be NULL). */
    void (*progress)(void *ctx, int done, int total, const char *tensor);
    void *progress_ctx;
} lmc_export_opts;

typedef struct lmc_export_item {
    char name[96];   /* the output tensor (GGUF name, or the HF module/tensor name) */
    char from[64];   /* lmc encoding(s) of its source tensor(s) */
    char to[32];     /* what was written: "q4_0", "f16", "gptq w4 g128", ... */
    int dequantized; /* decoded through to_f32 because no exact form exists */
    uint64_t bytes;  /* bytes of its data in the output */
} lmc_export_item;

typedef struct lmc_export_report {
    lmc_export_item *items;
    int n, cap;
    int n_dequantized;
    uint64_t bytes_written; /* every byte of every file written */
    char format_note[160];  /* e.g. the GGUF architecture and tokenizer family */
} lmc_export_report;

void lmc_export_report_free(lmc_export_report *r);

/* Write m to out in o->format. Returns 0; -1 with err naming the model (or
 * the output) and the problem, with nothing left at out. */
int lmc_export(const lmc_model *m, const char *out, const lmc_export_opts *o,
               lmc_export_report *rep, lmc_error *err);

const char *lmc_export_format_name(lmc_export_format f);

#endif
