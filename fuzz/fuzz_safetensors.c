/* libFuzzer target: the safetensors reader (lmc_safetensors_parse, the code
 * lmc_safetensors_open runs on the mapped file). Input: a whole file image.
 * On acceptance every tensor's bytes are read (ASan catches a data pointer
 * outside the input) and the lookups are checked against the table. */
#include <stdint.h>

#include "../formats/safetensors.h"
#include "fuzz_util.h"

#define SRC "fuzz.safetensors"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmc_safetensors st;
    lmc_error err = {{0}};
    if (lmc_safetensors_parse(data, size, SRC, &st, &err) != 0) {
        lmc_fuzz_check_error(&err, SRC);
        return 0;
    }
    volatile uint8_t acc = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const lmc_st_tensor *t = &st.tensors[i];
        LMC_FUZZ_ASSERT(lmc_safetensors_find(&st, t->name) == t, "tensor %s", t->name);
        LMC_FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= LMC_ST_MAX_DIMS, "ndim %d", t->ndim);
        LMC_FUZZ_ASSERT(!t->nbytes || (t->data >= data && t->data + t->nbytes <= data + size),
                        "tensor %s outside the input", t->name);
        for (size_t k = 0; k < t->nbytes; k++)
            acc ^= t->data[k];
        lmc_enc_id id;
        if (lmc_st_weight_encoding(SRC, t, &id, &err) != 0)
            lmc_fuzz_check_error(&err, SRC);
    }
    for (int i = 0; i < st.n_meta; i++)
        LMC_FUZZ_ASSERT(lmc_safetensors_meta(&st, st.meta[2 * i]) != NULL, "meta %d", i);
    (void)acc;
    lmc_safetensors_close(&st);
    return 0;
}
