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

/* Write m to path atomically (temporary file, fsync, rename), in one go. If
 * provenance_record is not NULL it is a JSON object appended to the model's
 * provenance array (the tool version, pass, arguments, seed, calibration
 * sha256, source...). */
int lmc_container_write(const lmc_model *m, const char *path, const char *provenance_record,
                        lmc_error *err);

/* A container written tensor by tensor (format version 2: blobs first, the
 * header at the end), so that a pass can stream each finished block and a
 * killed job can be continued. Open with the model's config (every tensor
 * is checked against it); partial_path NULL: an atomic temporary beside
 * path, removed by SIGINT/SIGTERM/SIGHUP; else that fixed name, which
 * signals leave for a later resume. */
typedef struct lmc_container_out lmc_container_out;
struct cJSON;
int lmc_container_out_open(const char *path, const lmc_config *cfg, const char *partial_path,
                           lmc_container_out **out, lmc_error *err);
/* Continue partial_path after its first pos data bytes, whose tensor
 * records (lmc_container_out_entries of the interrupted writer) are
 * entries; each one's CRC is checked against the file first. */
int lmc_container_out_resume(const char *path, const lmc_config *cfg, const char *partial_path,
                             const struct cJSON *entries, uint64_t pos, lmc_container_out **out,
                             lmc_error *err);
/* After lmc_container_out_resume: the tensors written before replace m's
 * tensors of the same names (pointing into a read-only map of the partial
 * file, which m keeps). */
int lmc_container_out_adopt(lmc_container_out *o, lmc_model *m, lmc_error *err);
/* Append t's blob and record it. */
int lmc_container_out_add(lmc_container_out *o, const lmc_tensor *t, lmc_error *err);
/* Whether a tensor of that name was written. */
int lmc_container_out_written(const lmc_container_out *o, const char *name);
/* What a resume needs: the records written and the data bytes. */
const struct cJSON *lmc_container_out_entries(const lmc_container_out *o);
uint64_t lmc_container_out_pos(const lmc_container_out *o);
/* Everything written so far on disk (before a resume state says so). */
int lmc_container_out_sync(lmc_container_out *o, lmc_error *err);
/* Append the tensors of m not written yet (in m's order), the tokenizer
 * and the header with provenance_record (may be NULL), fsync, rename into
 * place; o is freed, and on failure nothing stays under path. */
int lmc_container_out_finish(lmc_container_out *o, const lmc_model *m,
                             const char *provenance_record, lmc_error *err);
/* Give up: the temporary (or partial) file is removed; o is freed. */
void lmc_container_out_abort(lmc_container_out *o);

/* Does the file start with the container magic? */
int lmc_container_sniff(const char *path);

#endif
