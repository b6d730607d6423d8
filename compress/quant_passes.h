/* The weight-quantization passes: RTN and GPTQ, as lmc_pass objects. */
#ifndef LMC_QUANT_PASSES_H
#define LMC_QUANT_PASSES_H

#include "../calib/pass.h"
#include "solver.h"

typedef struct lmc_rtn_opts {
    int bits, group, sym;
} lmc_rtn_opts;


/* Fill p; o must outlive p. */
void lmc_rtn_pass(lmc_pass *p, const lmc_rtn_opts *o);
void lmc_gptq_pass(lmc_pass *p, const lmc_solver_opts *o);

#endif
