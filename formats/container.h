/* The .lmc container: one versioned, checksummed file holding a model's
 * normalized config, its tokenizer.json, provenance records and tensors in
 * any encoding of core/encoding.h. Specified in docs/FORMAT.md. */
#ifndef LMC_CONTAINER_H
#define LMC_CONTAINER_H

#include "../core/model.h"

/* Load (mmap) a container into a model. Verifies magic, version, header CRC
 * and every tensor's CRC; fails naming the file and the problem. */
int lmc_container_load(const char *path, lmc_model **out, lmc_error *err);
/* The same checks on an in-memory file image of SIZE bytes; path names it
 * in messages. The tensors point into buf, which must outlive the model
 * (which owns no map). */
int lmc_container_parse(const void *buf, size_t size, const char *path, lmc_model **out,
                        lmc_error *err);

/* Write m to path atomically (temporary file, fsync, rename). If
 * provenance_record is not NULL it is a JSON object appended to the model's
 * provenance array (the tool version, pass, arguments, seed, calibration
 * sha256, source...). */
int lmc_container_write(const lmc_model *m, const char *path, const char *provenance_record,
                        lmc_error *err);

/* Does the file start with the container magic? */
int lmc_container_sniff(const char *path);

#endif
