/* snap_scales IN.lmc OUT.lmc: a test fixture. Every asymmetric qgroup
 * tensor keeps its codes and zeros, and each fp16 scale loses its 4 lowest
 * mantissa bits (7 significant bits left), so that scale * zero (zero <=
 * 15) is an fp16 number: the tensors then map exactly onto GGUF Q4_1,
 * which lmc's own quantizers' asymmetric output practically never does
 * (docs/EXPORT.md). The result is an ordinary container: lmc eval scores it
 * and the exporters see it like any other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/half.h"
#include "../../core/qgroup.h"
#include "../../formats/container.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: snap_scales IN.lmc OUT.lmc\n");
        return 2;
    }
    lmc_error err;
    lmc_model *m;
    if (lmc_model_load(argv[1], &m, &err) != 0) {
        fprintf(stderr, "snap_scales: %s\n", err.msg);
        return 1;
    }
    int snapped = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        lmc_tensor *t = &m->tensors[i];
        if (t->enc.id != LMC_ENC_QGROUP || t->enc.sym)
            continue;
        int64_t rows = t->shape[0], cols = t->shape[1];
        int64_t ng = lmc_qgroup_ngroups(&t->enc, cols);
        uint8_t *codes = malloc((size_t)(rows * cols)), *zeros = malloc((size_t)(rows * ng));
        float *scales = malloc((size_t)(rows * ng) * sizeof *scales);
        int32_t *gidx = malloc((size_t)cols * sizeof *gidx);
        uint8_t *blob = malloc(t->nbytes);
        if (!codes || !zeros || !scales || !gidx || !blob) {
            fprintf(stderr, "snap_scales: out of memory\n");
            return 1;
        }
        lmc_qgroup_unpack(&t->enc, rows, cols, t->data, codes, scales, zeros, gidx);
        for (int64_t k = 0; k < rows * ng; k++)
            scales[k] = lmc_f16_to_f32((uint16_t)(lmc_f32_to_f16(scales[k]) & ~0xfu));
        lmc_qgroup_pack(&t->enc, rows, cols, codes, scales, zeros, gidx, blob);
        lmc_tensor nt = *t;
        nt.data = blob;
        nt.owned = blob;
        if (lmc_model_set_tensor(m, &nt, &err) != 0) {
            fprintf(stderr, "snap_scales: %s\n", err.msg);
            return 1;
        }
        free(codes);
        free(zeros);
        free(scales);
        free(gidx);
        snapped++;
    }
    const char *rec = "{\"tool\":\"tests/tools/snap_scales\",\"pass\":\"snap-scales-test-fixture\"}";
    if (lmc_container_write(m, argv[2], rec, &err) != 0) {
        fprintf(stderr, "snap_scales: %s\n", err.msg);
        return 1;
    }
    printf("%s: %d tensors with 7-bit scales\n", argv[2], snapped);
    lmc_model_free(m);
    return 0;
}
