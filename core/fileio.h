/* File access: read-only memory maps, whole-file reads, and atomic output
 * (temporary file in the destination directory, fsync, rename) so that no
 * reader ever sees a half-written output, whatever happens to the writer. */
#ifndef LMC_FILEIO_H
#define LMC_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef struct lmc_mmap {
    const unsigned char *data; /* NULL for an empty file */
    size_t size;
} lmc_mmap;

int lmc_mmap_open(const char *path, lmc_mmap *m, lmc_error *err);
void lmc_mmap_close(lmc_mmap *m);
/* Drop the resident pages of [p, p + n) within m (rounded out to whole
 * pages, clipped to the map): the map stays valid, a later read faults the
 * pages back in from the file. For scans of models larger than memory. */
void lmc_mmap_release(const lmc_mmap *m, const void *p, size_t n);

/* Whole file into a NUL-terminated heap buffer (caller frees). */
int lmc_read_file(const char *path, char **data, size_t *size, lmc_error *err);

int lmc_is_dir(const char *path);
int lmc_file_exists(const char *path);
/* path_join into a heap string: dir + "/" + name */
char *lmc_path_join(const char *dir, const char *name);

typedef struct lmc_atomic_file {
    FILE *f;
    char *tmp_path;
    char *final_path;
    int keep; /* a resumable job's partial output: signals leave it */
} lmc_atomic_file;

/* Opens PATH.tmp.XXXXXX beside PATH. Until commit, SIGINT/SIGTERM/SIGHUP
 * remove the temporary file before the process dies. */
int lmc_atomic_open(lmc_atomic_file *af, const char *path, lmc_error *err);
/* Flush, fsync, rename into place, fsync the directory. On failure the
 * temporary file is removed. */
int lmc_atomic_commit(lmc_atomic_file *af, lmc_error *err);
/* Remove the temporary file; safe to call after commit (no-op). */
void lmc_atomic_abort(lmc_atomic_file *af);
/* fwrite that reports errors with the destination's name. */
int lmc_atomic_write(lmc_atomic_file *af, const void *buf, size_t n, lmc_error *err);
/* Overwrite n bytes at offset off (already written); the stream goes on at
 * its end. */
int lmc_atomic_pwrite(lmc_atomic_file *af, uint64_t off, const void *buf, size_t n,
                      lmc_error *err);
/* Bytes written so far. */
uint64_t lmc_atomic_size(lmc_atomic_file *af);
/* Flush and fdatasync what was written so far (before a record that says it
 * is there). */
int lmc_atomic_sync(lmc_atomic_file *af, lmc_error *err);

/* A resumable output: the temporary has a fixed name (tmp_path, e.g.
 * PATH.partial) and survives SIGINT/SIGTERM/SIGHUP as well as SIGKILL, so
 * that a later run can continue it. keep_bytes < 0: start it afresh
 * (truncated); >= 0: continue an existing one after its first keep_bytes
 * bytes (what follows, a blob cut short by the kill, is dropped). Commit and
 * abort as for lmc_atomic_open. */
int lmc_atomic_open_partial(lmc_atomic_file *af, const char *path, const char *tmp_path,
                            int64_t keep_bytes, lmc_error *err);

/* Copy a whole file to dst through lmc_atomic_open/commit. */
int lmc_copy_file(const char *src, const char *dst, lmc_error *err);

/* Atomic output directory (a Hugging Face checkpoint written as a whole):
 * PATH.tmp.XXXXXX is created beside PATH, its files are written through
 * lmc_atomic_open on the paths lmc_atomic_dir_file returns, and commit
 * renames the directory into place (PATH must not exist, or be an empty
 * directory). Until commit, SIGINT/SIGTERM/SIGHUP and abort remove the
 * files and the directory. At most LMC_ATOMIC_DIR_FILES files. */
#define LMC_ATOMIC_DIR_FILES 16
typedef struct lmc_atomic_dir {
    char *tmp_path;
    char *final_path;
    int slot; /* signal-cleanup slot */
} lmc_atomic_dir;
int lmc_atomic_dir_open(lmc_atomic_dir *ad, const char *path, lmc_error *err);
/* "TMPDIR/name" (heap, caller frees), registered for cleanup; NULL on OOM
 * or when the directory already holds LMC_ATOMIC_DIR_FILES files. */
char *lmc_atomic_dir_file(lmc_atomic_dir *ad, const char *name);
int lmc_atomic_dir_commit(lmc_atomic_dir *ad, lmc_error *err);
void lmc_atomic_dir_abort(lmc_atomic_dir *ad);

#endif
