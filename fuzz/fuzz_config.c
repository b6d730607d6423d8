/* libFuzzer target: config.json normalization (lmc_hf_config_parse) and the
 * container's config object (lmc_config_from_json, lmc_config_check).
 * Input: JSON text.
 *
 * Properties: a config the Hugging Face parser accepts is one the container
 * accepts (lmc_config_check), and it survives lmc_config_to_json ->
 * lmc_config_from_json unchanged (what a container stores and reads back). */
#include <cjson/cJSON.h>
#include <stdint.h>

#include "../formats/config_json.h"
#include "../formats/hf_config.h"
#include "fuzz_util.h"

#define SRC "fuzz/config.json"

static char *print_config(const lmc_config *c)
{
    cJSON *j = lmc_config_to_json(c);
    LMC_FUZZ_ASSERT(j != NULL, "lmc_config_to_json");
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    LMC_FUZZ_ASSERT(s != NULL, "print");
    return s;
}

/* c must round-trip through the container's JSON form. */
static void round_trip(const lmc_config *c)
{
    char *s = print_config(c);
    cJSON *j = cJSON_Parse(s);
    lmc_config back;
    lmc_error err = {{0}};
    LMC_FUZZ_ASSERT(lmc_config_from_json(j, &back, SRC, &err) == 0, "reading back %s: %s", s,
                    err.msg);
    LMC_FUZZ_ASSERT(lmc_config_check(&back, SRC, &err) == 0, "checking back %s: %s", s,
                    err.msg);
    char *s2 = print_config(&back);
    LMC_FUZZ_ASSERT(strcmp(s, s2) == 0, "%s != %s", s, s2);
    free(s2);
    cJSON_Delete(j);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmc_config cfg;
    lmc_error err = {{0}};
    if (lmc_hf_config_parse((const char *)data, size, SRC, &cfg, &err) == 0) {
        /* the checkpoint loader sets src_dtype from the tensors; "" is the
         * parser's answer when the config names none */
        LMC_FUZZ_ASSERT(lmc_config_check(&cfg, SRC, &err) == 0, "accepted by the parser, "
                        "refused by the check: %s", err.msg);
        round_trip(&cfg);
    } else {
        lmc_fuzz_check_error(&err, SRC);
    }

    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    if (root) {
        err.msg[0] = 0;
        if (lmc_config_from_json(root, &cfg, SRC, &err) == 0 &&
            lmc_config_check(&cfg, SRC, &err) == 0)
            round_trip(&cfg);
        else
            lmc_fuzz_check_error(&err, SRC);
        cJSON_Delete(root);
    }
    return 0;
}
