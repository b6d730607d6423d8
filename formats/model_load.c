/* lmc_model_load: one entry point for every model source. A directory is a
 * Hugging Face checkpoint; a file is an .lmc container when it starts with
 * the container magic; anything else is refused with a hint. */
#include <string.h>

#include "../core/model.h"
#include "container.h"
#include "hf_checkpoint.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int lmc_model_load(const char *path, lmc_model **out, lmc_error *err)
{
    *out = NULL;
    if (lmc_is_dir(path))
        return lmc_hf_checkpoint_load(path, out, err);
    if (!lmc_file_exists(path))
        return lmc_fail(err, "%s: no such file or directory", path);
    if (lmc_container_sniff(path))
        return lmc_container_load(path, out, err);
    if (ends_with(path, ".safetensors") || ends_with(path, "config.json") ||
        ends_with(path, ".index.json"))
        return lmc_fail(err, "%s: pass the checkpoint directory that holds this file, not the "
                             "file itself",
                        path);
    return lmc_fail(err, "%s: neither a Hugging Face checkpoint directory nor an .lmc container",
                    path);
}
