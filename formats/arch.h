/* The architectures lmc knows, one table entry each: the name stored in
 * containers and the capabilities the rest of lmc tests (core/model.h),
 * so that a new architecture is an entry here plus its Hugging Face
 * parser (hf_config.c) and tensor names (hf_checkpoint.c). */
#ifndef LMC_ARCH_H
#define LMC_ARCH_H

#include "../core/model.h"

/* Sets c's capability flags from c->arch; -1 (and a message) for an
 * unknown architecture. */
int lmc_arch_caps(lmc_config *c, lmc_error *err);
/* By name ("llama", "opt", "gpt2"): 0 and *a, or -1. */
int lmc_arch_by_name(const char *name, lmc_arch *a);

#endif
