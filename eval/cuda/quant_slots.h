/* Host side of the quantized device slots (qslot.cu): which slots stay
 * compressed on the device, and their tensors' blobs taken apart into
 * lmc_cu_qpart. C, internal to eval/cuda/. */
#ifndef LMC_CUDA_QUANT_SLOTS_H
#define LMC_CUDA_QUANT_SLOTS_H

#include "../../core/model.h"
#include "dev.h"

/* The LMC_CU_Q_* kind slot tensors ts[n] are held as, or 0 (dense, decoded
 * or factors as before): W8A8 or LLM.int8() when every tensor has that
 * encoding (a slot that mixes them with another encoding is an error: its
 * activation quantization cannot be skipped), packed when every tensor is
 * qgroup and `packed` is set (LMC_CUDA_PACKED=0 clears it). */
int lmc_cuda_quant_kind(const lmc_tensor *const *ts, int n, int packed, lmc_error *err);

/* Uploads the slot as `kind`; *dev_bytes: the device bytes of its weights.
 * prec_name: for the message when a value overflows the compute type. */
int lmc_cuda_put_quant(lmc_cu *cu, const lmc_tensor *const *ts, int n, int which, int layer,
                       int kind, const char *prec_name, double *dev_bytes, lmc_error *err);

#endif
