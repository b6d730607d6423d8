/* lmc_config <-> JSON object (the "config" member of the container header and
 * of `lmc inspect --json`). Every struct field is one key of the same name;
 * enums are strings. */
#ifndef LMC_CONFIG_JSON_H
#define LMC_CONFIG_JSON_H

#include <cjson/cJSON.h>

#include "../core/model.h"

/* New JSON object with every field of c; NULL when out of memory. */
cJSON *lmc_config_to_json(const lmc_config *c);

/* Fill c from a JSON object. Every field is required; `what` names the
 * source in error messages ("FILE: config: ..."). */
int lmc_config_from_json(const cJSON *obj, lmc_config *c, const char *what, lmc_error *err);

/* Self-consistency: positive dimensions, known enums, n_heads a multiple of
 * n_kv_heads, ... */
int lmc_config_check(const lmc_config *c, const char *what, lmc_error *err);

/* Does tensor t (canonical name) agree with the config: block index below
 * n_layers and, for the known roles, the shape the config implies? Unknown
 * names pass. */
int lmc_config_check_tensor(const lmc_config *c, const lmc_tensor *t, const char *what,
                            lmc_error *err);

/* Strict integer from a JSON number: integral and within [lo, hi]. */
int lmc_json_get_i64(const cJSON *item, int64_t lo, int64_t hi, int64_t *out);

#endif
