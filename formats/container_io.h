/* Internal to formats/container*.c: the layout constants of docs/FORMAT.md
 * and the pieces the reader and the writer share. */
#ifndef LMC_CONTAINER_IO_H
#define LMC_CONTAINER_IO_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "../core/model.h"

#define CTR_MAGIC "\x89LMC\r\n\x1a\n"
#define CTR_MAGIC_LEN 8
#define CTR_V1 1          /* header after a 24-byte preamble, data after it */
#define CTR_V2 2          /* data from byte 64, header at the end (streamed writes) */
#define CTR_PREAMBLE 24   /* v1 */
#define CTR_PREAMBLE_V2 64
#define CTR_ALIGN 64

uint64_t lmc_ctr_align(uint64_t x);
uint32_t lmc_ctr_rd32(const unsigned char *p);
uint64_t lmc_ctr_rd64(const unsigned char *p);
void lmc_ctr_wr32(unsigned char *p, uint32_t v);
void lmc_ctr_wr64(unsigned char *p, uint64_t v);
/* zlib crc32 of any length */
uint32_t lmc_ctr_crc(const void *data, size_t n);
cJSON *lmc_ctr_encoding_to_json(const lmc_encoding *e);
int lmc_ctr_encoding_from_json(const cJSON *o, lmc_encoding *e, const char *what,
                               const char *tname, lmc_error *err);
int64_t lmc_ctr_tensor_cols(const lmc_tensor *t);
/* Name, shape, encoding, nbytes; the config agreement. */
int lmc_ctr_check_tensor(const lmc_config *cfg, const lmc_tensor *t, const char *what,
                         lmc_error *err);
int lmc_ctr_check_unique(const lmc_tensor *ts, int n, const char *what, lmc_error *err);

#endif
