#include "arch.h"

#include <string.h>

typedef struct arch_entry {
    lmc_arch arch;
    const char *name;
    int gated_ffn, learned_pos, fused_qkv;
} arch_entry;

static const arch_entry table[] = {
    /* LLaMA family (Llama 2/3, Mistral, Qwen2): SwiGLU, RoPE */
    {LMC_ARCH_LLAMA, "llama", 1, 0, 0},
    /* OPT: ReLU fc1/fc2, learned positions (offset 2) */
    {LMC_ARCH_OPT, "opt", 0, 1, 0},
    /* GPT-2: gelu_new c_fc/c_proj, learned positions, c_attn = q|k|v */
    {LMC_ARCH_GPT2, "gpt2", 0, 1, 1},
};

static const arch_entry *find(lmc_arch a)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].arch == a)
            return &table[i];
    return NULL;
}

int lmc_arch_caps(lmc_config *c, lmc_error *err)
{
    const arch_entry *e = find(c->arch);
    if (!e)
        return lmc_fail(err, "unsupported architecture id %d", (int)c->arch);
    c->gated_ffn = e->gated_ffn;
    c->learned_pos = e->learned_pos;
    c->fused_qkv = e->fused_qkv;
    return 0;
}

int lmc_arch_by_name(const char *name, lmc_arch *a)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (name && !strcmp(name, table[i].name)) {
            *a = table[i].arch;
            return 0;
        }
    return -1;
}

const char *lmc_arch_name(lmc_arch a)
{
    const arch_entry *e = find(a);
    return e ? e->name : "unknown";
}
