/* SHA-256 (FIPS 180-4), for provenance records (hash of the calibration data)
 * and tests. */
#ifndef LMC_SHA256_H
#define LMC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct lmc_sha256_ctx {
    uint32_t h[8];
    uint64_t len;      /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
} lmc_sha256_ctx;

void lmc_sha256_init(lmc_sha256_ctx *c);
void lmc_sha256_update(lmc_sha256_ctx *c, const void *data, size_t n);
void lmc_sha256_final(lmc_sha256_ctx *c, uint8_t out[32]);

/* One-shot digest. */
void lmc_sha256(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex of a digest: 64 characters + NUL. */
void lmc_sha256_hex(const uint8_t digest[32], char hex[65]);
/* Hex digest of a whole file. */
int lmc_sha256_file(const char *path, char hex[65], lmc_error *err);

#endif
