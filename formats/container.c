/* Placeholder until the container lands: fails honestly. */
#include "container.h"

int lmc_container_load(const char *path, lmc_model **out, lmc_error *err)
{
    *out = 0;
    return lmc_fail(err, "%s: containers are not supported yet", path);
}

int lmc_container_write(const lmc_model *m, const char *path, const char *prov, lmc_error *err)
{
    (void)m;
    (void)prov;
    return lmc_fail(err, "%s: containers are not supported yet", path);
}

int lmc_container_sniff(const char *path)
{
    (void)path;
    return 0;
}
