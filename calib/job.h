/* A pass's output written block by block, and resumable: for a pass that
 * streams (lmc_pass.streams), each finished block's tensors go into
 * OUT.partial (a version 2 container being written, formats/container.h)
 * and are freed, and OUT.resume records, atomically after each block, what
 * is there and what the run was: the pass and its arguments, a fingerprint
 * of the source model, the calibration (file hash, windows, seed), the
 * device and precision. A later run with resume set continues after the
 * last finished block if all of that matches (and says which part differs
 * if not); its output is byte-identical to an uninterrupted run's (with
 * SOURCE_DATE_EPOCH set, which also fixes the provenance's time).
 *
 * The partial file and the state outlive SIGINT/SIGTERM/SIGKILL (that is
 * their point) and are removed by a finished or failed run; nothing is ever
 * written under OUT itself before the final rename. */
#ifndef LMC_JOB_H
#define LMC_JOB_H

#include <cjson/cJSON.h>

#include "../core/model.h"

typedef struct lmc_job lmc_job;

/* identity: a JSON object of what a resumed run must share (copied); the
 * source fingerprint is added here. resume 0: start afresh (an earlier
 * OUT.partial / OUT.resume are replaced); 1: continue them, adopting the
 * finished blocks' tensors into m. */
int lmc_job_start(const char *out_path, lmc_model *m, const cJSON *identity, int resume,
                  lmc_job **out, lmc_error *err);
/* Blocks finished by earlier runs (0 for a fresh start), and their tensor
 * reports (a JSON array, owned by the job). */
int lmc_job_blocks_done(const lmc_job *j);
const cJSON *lmc_job_reports(const lmc_job *j);
/* The driver's block_done hook (calib/driver.h): ctx is the job. */
int lmc_job_block_done(void *ctx, lmc_model *m, int layer, const cJSON *reports, lmc_error *err);
/* Write the rest of m and the header with provenance_record, rename into
 * place, remove the state; j is freed. */
int lmc_job_finish(lmc_job *j, const lmc_model *m, const char *provenance_record,
                   lmc_error *err);
/* A failed run: partial file and state removed; j is freed (NULL: no-op). */
void lmc_job_abort(lmc_job *j);

#endif
