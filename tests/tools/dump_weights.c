/* dump_weights MODEL OUTDIR: every tensor of a checkpoint or container as
 * lmc decodes it (the encoding table's to_f32, the values lmc eval
 * multiplies), one raw fp32 little-endian file per tensor,
 * OUTDIR/<canonical name>.f32, row-major [rows, cols]. The export tests
 * compare these with an independent reader of the exported files. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "../../core/model.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: dump_weights MODEL OUTDIR\n");
        return 2;
    }
    lmc_error err;
    lmc_model *m;
    if (lmc_model_load(argv[1], &m, &err) != 0) {
        fprintf(stderr, "dump_weights: %s\n", err.msg);
        return 1;
    }
    mkdir(argv[2], 0755);
    lmc_encodings_init();
    for (int i = 0; i < m->n_tensors; i++) {
        const lmc_tensor *t = &m->tensors[i];
        int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
        float *f = malloc((size_t)(rows * cols) * sizeof *f);
        const lmc_enc_traits *tr = lmc_enc_get(t->enc.id);
        if (!f || !tr || tr->to_f32(&t->enc, t->data, rows, cols, f, &err) != 0) {
            fprintf(stderr, "dump_weights: %s: %s\n", t->name, f && tr ? err.msg : "cannot decode");
            return 1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.f32", argv[2], t->name);
        FILE *o = fopen(path, "wb");
        if (!o || fwrite(f, sizeof *f, (size_t)(rows * cols), o) != (size_t)(rows * cols) ||
            fclose(o) != 0) {
            fprintf(stderr, "dump_weights: cannot write %s\n", path);
            return 1;
        }
        free(f);
    }
    lmc_model_free(m);
    return 0;
}
