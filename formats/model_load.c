/* Placeholder until the checkpoint loader lands: fails honestly. */
#include "../core/model.h"

int lmc_model_load(const char *path, lmc_model **out, lmc_error *err)
{
    *out = 0;
    return lmc_fail(err, "%s: model loading is not implemented yet", path);
}
