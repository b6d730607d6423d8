/* Tiny random models built in memory, for tests that run the forward pass or
 * a pass without a checkpoint on disk. One deterministic generator. */
#ifndef LMC_TINYMODEL_H
#define LMC_TINYMODEL_H

#include <stdint.h>

#include "../core/model.h"

void lmc_test_rng_seed(uint64_t s);
double lmc_test_urand(void); /* uniform in [-1, 1) */

/* fp32 tensor of offset + scale * urand() values, added to m. */
void lmc_tiny_add_f32(lmc_model *m, const char *name, int64_t rows, int64_t cols, double scale,
                      double offset);

/* A consistent config for each architecture (LLaMA: RMSNorm, SiLU, RoPE;
 * OPT: ReLU, biases, offset-2 positions, tied; GPT-2: gelu_new, biases,
 * tied); max_pos 64. */
lmc_config lmc_tiny_config(lmc_arch arch, int hidden, int nh, int nkv, int hd, int ffn,
                           int vocab, int layers);

typedef struct lmc_tiny_opts {
    double qk_scale;       /* q and k weights ~ qk_scale / sqrt(in) (others 1.5) */
    int outlier_ch[2];     /* norm weight channels set to outlier_val (both norms) */
    float outlier_val[2];  /* 0: no outlier */
    int f16;               /* matrices (embeddings, linears, head) as fp16 blobs */
} lmc_tiny_opts;

/* Every tensor the config needs, seeded. opts may be NULL (q/k scale 3.0,
 * no outliers). */
lmc_model *lmc_tiny_model(const lmc_config *c, uint64_t seed, const lmc_tiny_opts *opts);

/* Logits [ntok][vocab] of the window ids[i] = (i * mul + add) % vocab. */
float *lmc_tiny_logits(const lmc_model *m, int ntok, int mul, int add);

#endif
