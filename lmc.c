/* lmc: argument dispatch only. Each subcommand lives in cli/cmd_<name>.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"

#define LMC_CMDS(X)                                                              \
    X(inspect, "show a checkpoint or container: architecture, tensors, bits")   \
    X(convert, "checkpoint -> lossless fp16 container")                         \
    X(tokenize, "text -> token ids (int32 LE), or --decode ids -> text")        \
    X(eval, "perplexity, compression ratio and FLOPs per token")                \
    X(rtn, "round-to-nearest grouped integer quantization")                     \
    X(gptq, "GPTQ quantization (error feedback with the inverse Hessian)")      \
    X(awq, "activation-aware weight quantization")                              \
    X(smoothquant, "SmoothQuant W8A8")                                          \
    X(int8, "LLM.int8() with fp16 outlier columns")                             \
    X(sparsegpt, "SparseGPT pruning (unstructured or N:M), optional joint quant") \
    X(wanda, "Wanda pruning (|W| * ||x||)")                                     \
    X(magnitude, "magnitude pruning")                                           \
    X(svd, "low-rank factorization (plain, activation-aware, whitened)")           \
    X(export, "GGUF (llama.cpp), GPTQ or AWQ checkpoint (transformers, vLLM)")

#define DECL(name, help) int lmc_cmd_##name(int argc, char **argv);
LMC_CMDS(DECL)
#undef DECL

struct cmd {
    const char *name;
    const char *help;
    lmc_cmd_fn fn;
};

static void usage(FILE *f, const struct cmd *cmds, size_t n)
{
    fprintf(f, "lmc %s - offline compression toolchain for large language models\n\n"
               "usage: lmc COMMAND [options]   (lmc COMMAND --help for its options)\n\n"
               "commands:\n",
            LMC_VERSION);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\nexit codes: 0 success, 1 failure (message on stderr), 2 usage error\n");
}

int main(int argc, char **argv)
{
    /* libgomp reads OMP_WAIT_POLICY once at start-up; its default spinning
     * threads fight OpenBLAS's pthreads for the cores (measured 3-10x slower
     * solves on 2 loaded cores). Re-exec once with the passive policy unless
     * the user chose one. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    /* the library reports through this callback (core/log.h) */
    lmc_log_set(lmc_cli_log, NULL);
#define ROW(name, help) {#name, help, lmc_cmd_##name},
    const struct cmd cmds[] = {LMC_CMDS(ROW)};
#undef ROW
    size_t n = sizeof cmds / sizeof cmds[0];
    if (argc < 2) {
        usage(stderr, cmds, n);
        return LMC_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout, cmds, n);
        return LMC_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lmc %s\n", LMC_VERSION);
        return LMC_EXIT_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], cmds[i].name))
            continue;
        return cmds[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "lmc: unknown command '%s' (see 'lmc --help')\n", argv[1]);
    return LMC_EXIT_USAGE;
}
