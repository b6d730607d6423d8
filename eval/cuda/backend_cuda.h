/* The CUDA backend's device model behind an lmc_backend, for the CUDA
 * twins of the passes' solvers (compress/cuda/), which work where the
 * backend keeps the statistics. Internal: CUDA builds only. */
#ifndef LMC_BACKEND_CUDA_H
#define LMC_BACKEND_CUDA_H

#include "../backend.h"
#include "dev.h"

/* The device model of a CUDA backend, NULL for any other. */
lmc_cu *lmc_cuda_backend_cu(lmc_backend *b);

#endif
